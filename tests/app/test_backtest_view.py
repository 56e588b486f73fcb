"""The Backtest tab's callbacks called directly (no browser, no server), on a short history.

The history is a temporary data directory with four of the bundled hourly BTC snapshots and one corrupt file
between them (data/README.md: the history runs hourly from 2026-11-18T14:00:00Z). References are independent of
the dashboard code: :func:`calibration.backtest.backtest` run directly with plain ``calibrate`` fits, counts of
the fits actually made, and round trips through the exports.
"""

from __future__ import annotations

import io
import os
import json
import shutil
from dataclasses import replace
from pathlib import Path

import dash
import pandas as pd
import plotly.graph_objects as go
import pytest

from calibration.backtest import BacktestResult, backtest
from components import ids

ROOT = Path(__file__).resolve().parents[2]
HISTORY = ROOT / "data" / "history"
#: The short history: four hourly snapshots and, between the third and the fourth, a corrupt file.
FILES = ("btc_2026-11-18_1400.csv", "btc_2026-11-18_1500.csv", "btc_2026-11-18_1600.csv",
         "btc_2026-11-18_1630.csv", "btc_2026-11-18_1700.csv")
CORRUPT = 3
#: The left panel at its defaults (CONTROL_IDS order): SVI, LM, vol space, vega weights, least squares, mid.
CONTROLS = ("svi", "lm", "vol", "vega", "linear", "mid", 2000, 0, 0, 0.5, False)


def make_history(root: Path) -> Path:
    """A data directory: btc_demo.csv, ``hist/`` (the short history), ``single/`` (one snapshot: no history)."""
    (root / "hist").mkdir(parents=True)
    (root / "single").mkdir()
    shutil.copy(ROOT / "data" / "btc_demo.csv", root / "btc_demo.csv")
    for i, name in enumerate(FILES):
        if i == CORRUPT:
            (root / "hist" / name).write_text("this is,not a snapshot\n1,2\n")
        else:
            shutil.copy(HISTORY / name, root / "hist" / name)
    shutil.copy(HISTORY / FILES[0], root / "single" / FILES[0])
    return root


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch) -> Path:
    """Every test: its own data directory with the short history, and its own empty server-side cache."""
    monkeypatch.setenv("SMILESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    root = make_history(tmp_path / "data")
    monkeypatch.setenv("SMILESCOPE_DATA_DIR", str(root))
    return root


@pytest.fixture()
def fits(monkeypatch) -> list[tuple[str, pd.Timestamp, bool]]:
    """Every calibration actually made from now on: ``(model, snapshot time, warm-started)``."""
    from components import server_store

    made: list[tuple[str, pd.Timestamp, bool]] = []
    real = server_store.calibrate

    def counting(snapshot, settings, **kwargs):
        made.append((settings.model, pd.Timestamp(snapshot.asof), kwargs.get("initial") is not None))
        return real(snapshot, settings, **kwargs)

    monkeypatch.setattr(server_store, "calibrate", counting)
    return made


def is_no_update(value) -> bool:
    return isinstance(value, dash._callback.NoUpdate)


def note_text(notes) -> str:
    return " ".join(f"{n['title']} {n['message']}" for n in notes)


def spec_of(models=("svi", "heston"), starts=("warm", "cold"), lam=1.0, controls=CONTROLS):
    from components.callbacks.backtest import backtest_spec

    return backtest_spec("hist", list(models), list(starts), lam, *controls)


def run_job(spec, reports=None):
    from components.callbacks.backtest import backtest_job

    return backtest_job(spec, (reports if reports is not None else []).append)


def comparable(result: BacktestResult, *, timings: bool = False) -> BacktestResult:
    """A result as stored (through its JSON form), without the fit times unless ``timings``."""
    result = BacktestResult.from_dict(json.loads(json.dumps(result.to_dict())))
    return result if timings else replace(result, table=result.table.drop(columns=["elapsed_s"]))


# ---------------------------------------------------------------------------------------------------------------
# histories and the gate
# ---------------------------------------------------------------------------------------------------------------


def test_histories_are_the_folders_with_two_or_more_snapshots(data_dir):
    from components.backtest_view import history_options
    from components.data_files import history_folders

    assert history_folders() == {"hist": [f"hist/{name}" for name in FILES]}  # not "single", not the top level
    bundled = history_folders(ROOT / "data")
    assert list(bundled) == ["history"] and len(bundled["history"]) == 48  # data/README.md: 48 hourly snapshots
    (option,) = history_options()
    assert option == {"value": "hist", "label": "hist · 5 snapshots · 2026-11-18 14:00 → 17:00 UTC"}


def test_the_request_carries_history_settings_and_one_entry_per_run(data_dir):
    from components.callbacks.backtest import request_backtest

    spec, note = request_backtest(1, "hist", ["svi", "heston"], ["warm", "cold", "regularised"], 2.5,
                                  "svi", "trf", "price", "uniform", "huber", "mid", 500, 0, 7, 0.5, True)
    assert is_no_update(note)
    assert spec["history"] == "hist" and spec["names"] == [f"hist/{name}" for name in FILES]
    assert (spec["calibration"]["optimizer"], spec["calibration"]["space"], spec["calibration"]["loss"],
            spec["calibration"]["max_evals"], spec["calibration"]["seed"]) == ("trf", "price", "huber", 500, 7)
    runs = [(r["model"], r["warm_start"], r["regularisation"]) for r in spec["runs"]]
    assert runs == [("svi", True, 0.0), ("svi", False, 0.0), ("svi", True, 2.5),
                    ("heston", True, 0.0), ("heston", False, 0.0), ("heston", True, 2.5)]
    # each model with its own options from the left panel: Heston gets the Feller switch, SVI nothing
    assert spec["runs"][0]["model_options"] == {} and spec["runs"][3]["model_options"] == {"enforce_feller": True}


@pytest.mark.parametrize(
    ("history", "models", "starts", "lam", "says"),
    [
        (None, ["svi"], ["warm"], 1.0, "pick a history"),
        ("nowhere", ["svi"], ["warm"], 1.0, "unknown history 'nowhere'"),
        ("single", ["svi"], ["warm"], 1.0, "unknown history 'single'"),
        ("../data", ["svi"], ["warm"], 1.0, "unknown history '../data'"),
        ("hist", [], ["warm"], 1.0, "at least one model"),
        ("hist", None, ["warm"], 1.0, "at least one model"),
        ("hist", ["svi", "heston", "sabr", "black"], ["warm"], 1.0, "at most 3 models"),
        ("hist", ["garch"], ["warm"], 1.0, "unknown model 'garch'"),
        ("hist", ["svi"], [], 1.0, "at least one start"),
        ("hist", ["svi"], ["warm", "lukewarm"], 1.0, "unknown start 'lukewarm'"),
        ("hist", ["svi"], ["regularised"], 0, "must be a number > 0"),
        ("hist", ["svi"], ["regularised"], None, "is not a number"),
    ],
)
def test_a_bad_request_is_a_notification_and_starts_nothing(history, models, starts, lam, says):
    from components.callbacks.backtest import request_backtest

    spec, note = request_backtest(1, history, models, starts, lam, *CONTROLS)
    assert is_no_update(spec)
    assert note_text(note).startswith("Backtest not started") and says in note_text(note)


def test_left_panel_errors_name_the_control():
    from components.callbacks.backtest import request_backtest

    spec, note = request_backtest(1, "hist", ["sabr"], ["warm"], 1.0, *CONTROLS[:-2], 1.7, False)
    assert is_no_update(spec) and "SABR beta must lie in [0, 1]" in note_text(note)
    spec, note = request_backtest(1, "hist", ["svi"], ["warm"], 1.0, *CONTROLS[:6], "", *CONTROLS[7:])
    assert is_no_update(spec) and "Max evaluations" in note_text(note)


# ---------------------------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------------------------


def test_the_job_stores_what_a_direct_backtest_computes(data_dir, fits):
    from components.callbacks.backtest import run_settings
    from components.history import load_outcome

    spec = spec_of()
    reports: list[tuple[float, str]] = []
    data, note = run_job(spec, reports)
    assert data["labels"] == ["svi warm", "svi cold", "heston warm", "heston cold"]
    assert data["n"] == 5 and data["names"] == spec["names"]
    assert data["asof"] == ["2026-11-18T14:00:00Z", "2026-11-18T15:00:00Z", "2026-11-18T16:00:00Z", None,
                            "2026-11-18T17:00:00Z"]
    assert "1 snapshot(s) not used" in note_text(note) and "btc_2026-11-18_1630.csv: unreadable" in note_text(note)
    assert "hedge" not in json.dumps(data)  # the browser gets the key, never the tables
    outcome = load_outcome(data["key"])
    for run, stored in zip(spec["runs"], outcome.results):
        direct = backtest([str(data_dir / name) for name in spec["names"]], run_settings(spec, run))
        got, want = comparable(stored), comparable(direct)
        pd.testing.assert_frame_equal(got.table, want.table)
        pd.testing.assert_frame_equal(got.hedge, want.hedge)
        pd.testing.assert_frame_equal(got.params, want.params)
        assert got.table["status"].tolist() == ["ok", "ok", "ok", "unreadable", "ok"]
    # progress: "snapshot i of 5" of every run in order, the bar reaching 100 %
    texts = [text for _, text in reports]
    assert texts[0].startswith("snapshot 0 of 5 · SVI warm (run 1 of 4)")
    assert any(t.startswith("snapshot 3 of 5 · HESTON cold (run 4 of 4)") for t in texts)
    assert reports[-1][0] == 100.0 and [share for share, _ in reports] == sorted(share for share, _ in reports)
    # the fits made: one per distinct fit (a cold run's first fit is the warm run's first fit)
    keys = {key for run in outcome.runs for key in run.fit_keys.values()}
    assert len(fits) == len(keys) == 14 and sum(len(run.fit_keys) for run in outcome.runs) == 16


def test_a_second_run_is_served_from_the_fit_cache(fits):
    from components.history import load_outcome

    spec = spec_of()
    first, _ = run_job(spec)
    made = len(fits)
    again, _ = run_job(spec)
    assert len(fits) == made  # not one calibration more
    assert again == first
    a, b = (load_outcome(d["key"]) for d in (first, again))
    for x, y in zip(a.results, b.results):
        pd.testing.assert_frame_equal(comparable(x, timings=True).table, comparable(y, timings=True).table)


def test_a_stopped_run_resumes_from_the_fits_it_made(fits):
    from components.history import load_outcome

    spec = spec_of()
    k = 2
    done: list[str] = []

    def stop_after_k(value):
        text = value[1]
        if not text.startswith("snapshot 0 "):
            done.append(text)
        return len(done) >= k

    data, note = run_job_with(spec, stop_after_k)
    assert is_no_update(data) and "Backtest stopped" in note_text(note)
    t0, t1, t2 = (pd.Timestamp(f"2026-11-18T{h}:00:00Z") for h in (14, 15, 16))
    assert fits == [("svi", t0, False), ("svi", t1, True)]  # k snapshots of the first run
    fits.clear()
    data, _ = run_job(spec)
    outcome = load_outcome(data["key"])
    keys = {key for run in outcome.runs for key in run.fit_keys.values()}
    assert len(fits) == len(keys) - k  # the k fits made before the stop are not made again
    assert ("svi", t0, False) not in fits and ("svi", t1, True) not in fits and ("svi", t2, True) in fits


def run_job_with(spec, set_progress):
    from components.callbacks.backtest import backtest_job

    return backtest_job(spec, set_progress)


def test_a_run_that_fails_is_a_notification_and_keeps_the_backtest_on_screen(monkeypatch):
    from components.callbacks import backtest as module

    def broken(*args, **kwargs):
        raise MemoryError("out of memory in the pricing engine")

    monkeypatch.setattr(module, "run_history", broken)
    data, note = run_job(spec_of())
    assert is_no_update(data) and "MemoryError: out of memory" in note_text(note)


def test_progress_text():
    from calibration.backtest import BacktestSettings
    from calibration.calibrate import CalibrationSettings
    from components.callbacks.backtest import progress_values

    settings = BacktestSettings(calibration=CalibrationSettings(model="heston"), regularisation=0.5)
    share, text = progress_values(12, 48, 1, 4, settings, 3.14)
    assert share == pytest.approx(100 * (48 + 12) / (4 * 48))
    assert text == "snapshot 12 of 48 · HESTON regularised λ=0.5 (run 2 of 4) · 3.1 s"


# ---------------------------------------------------------------------------------------------------------------
# drawing, replay, exports
# ---------------------------------------------------------------------------------------------------------------


def _shown(outputs):
    """``{output position: value}`` of the outputs that are not no_update (after the note line)."""
    return {i: value for i, value in enumerate(outputs[1:]) if not is_no_update(value)}


def test_only_the_chosen_sub_view_is_drawn():
    from components.callbacks.backtest import NO_BACKTEST, render_backtest

    data, _ = run_job(spec_of())
    note, *_ = render_backtest(data, "dark", "ranking", None, None)
    assert note.startswith("hist · 4 runs × 5 snapshots") and "btc_2026-11-18_1630.csv (unreadable)" in note
    ranking = _shown(render_backtest(data, "dark", "ranking", None, None))
    assert list(ranking) == [0, 1]
    rows, columns = ranking[0], ranking[1]
    assert sorted(r["run"] for r in rows) == sorted(data["labels"]) and [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert {c["field"] for c in columns} >= {"rank", "run", "oos_rmse"}
    for view, position in (("stability", 2), ("oos", 3), ("hedge", 4)):
        shown = _shown(render_backtest(data, "light", view, None, None))
        assert list(shown) == [position]
        assert isinstance(shown[position], go.Figure) and len(shown[position].data) > 0
        assert shown[position].layout.meta == {"result": data["key"]}
    replay = _shown(render_backtest(data, "dark", "replay", "2", 1))
    surface, smiles = replay[5], replay[6]
    assert "2026-11-18 15:00 UTC" in surface.layout.title.text and "HESTON" in surface.layout.title.text
    assert len(surface.data) > 0 and len(smiles.data) > 0
    assert surface.layout.meta["result"] == smiles.layout.meta["result"]
    corrupt = _shown(render_backtest(data, "dark", "replay", "0", CORRUPT))
    assert "unreadable" in corrupt[5].layout.annotations[0].text and len(corrupt[5].data) == 0
    nothing = render_backtest(None, "dark", "hedge", None, None)
    assert nothing[0] == NO_BACKTEST and NO_BACKTEST in _shown(nothing)[4].layout.annotations[0].text


def test_a_backtest_no_longer_stored_says_so(data_dir):
    from components.callbacks.backtest import GONE, export_backtest, render_backtest

    data = {"key": "0" * 64, "labels": ["svi warm"], "n": 5, "asof": [None] * 5, "names": []}
    outputs = render_backtest(data, "dark", "stability", None, None)
    assert outputs[0] == GONE and GONE in _shown(outputs)[2].layout.annotations[0].text
    with pytest.raises(ValueError, match="no longer on the server"):
        export_backtest(ids.BACKTEST_EXPORT_CSV, data)
    with pytest.raises(ValueError, match="no backtest"):
        export_backtest(ids.BACKTEST_EXPORT_JSON, None)


def test_the_replay_slider_is_set_for_a_new_backtest():
    from components.callbacks.backtest import replay_choices

    data, _ = run_job(spec_of(models=("svi",), starts=("warm", "cold")))
    runs, run, last, marks, step = replay_choices(data)
    assert runs == [{"value": "0", "label": "svi warm"}, {"value": "1", "label": "svi cold"}] and run == "0"
    assert (last, step) == (4, 0)
    assert marks == [{"value": 0, "label": "11-18 14:00"}, {"value": 1, "label": "11-18 15:00"},
                     {"value": 2, "label": "11-18 16:00"}, {"value": 3, "label": "not read"},
                     {"value": 4, "label": "11-18 17:00"}]


def test_the_csv_export_has_one_row_per_snapshot_and_run():
    from components.callbacks.backtest import export_backtest
    from components.history import load_outcome

    data, _ = run_job(spec_of())
    sent = export_backtest(ids.BACKTEST_EXPORT_CSV, data)
    assert sent["filename"].startswith("smilescope_backtest_hist_") and sent["filename"].endswith(".csv")
    frame = pd.read_csv(io.StringIO(sent["content"]))
    assert len(frame) == 5 * 4
    assert frame.groupby("run").size().to_dict() == {label: 5 for label in data["labels"]}
    outcome = load_outcome(data["key"])
    heston_warm = frame[frame["run"] == "heston warm"].reset_index(drop=True)
    table = outcome.results[2].table
    assert heston_warm["status"].tolist() == table["status"].tolist()
    pd.testing.assert_series_equal(heston_warm["oos_rmse_vol_points"], table["oos_rmse_vol_points"].astype(float),
                                   check_names=False, rtol=1e-9)
    assert heston_warm["param_kappa"].notna().sum() == 4


def test_the_json_export_round_trips():
    from components.callbacks.backtest import export_backtest
    from components.history import load_outcome

    data, _ = run_job(spec_of(models=("svi",), starts=("warm", "regularised")))
    sent = export_backtest(ids.BACKTEST_EXPORT_JSON, data)
    document = json.loads(sent["content"])
    assert [run["label"] for run in document["runs"]] == ["svi warm", "svi warm reg=1"]
    assert document["spec"]["history"] == "hist"
    for run, stored in zip(document["runs"], load_outcome(data["key"]).results):
        back = BacktestResult.from_dict(run["result"])
        assert back.settings == stored.settings
        for name in ("table", "hedge", "params"):
            pd.testing.assert_frame_equal(getattr(back, name), getattr(stored, name))
        assert len(back.hedge) > 100  # the options hedged over three steps


def test_history_files_are_parsed_once_per_process_and_again_when_they_change(data_dir, monkeypatch):
    from calibration.backtest import BacktestSettings
    from components import history

    parsed: list[str] = []
    real = history.load_snapshot

    def counting(path):
        parsed.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(history, "load_snapshot", counting)
    history._parsed_file.cache_clear()  # a new process
    names = [f"hist/{name}" for name in FILES]
    first = history.run_history(names, BacktestSettings()).result
    assert parsed == list(FILES)
    again = history.run_history(names, BacktestSettings(warm_start=False)).result  # another run, same process
    assert parsed[5:] == [FILES[CORRUPT]]  # only the unreadable file is tried again
    assert list(first.table["status"]) == list(again.table["status"])
    path = data_dir / names[1]
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # the file changes
    history.run_history(names, BacktestSettings())
    assert parsed[6:] == [FILES[1], FILES[CORRUPT]]


def test_a_request_for_an_evicted_outcome_runs_again_from_the_fit_cache(fits):
    from components.callbacks.backtest import request_backtest
    from components.history import load_outcome, outcome_key, outcome_stored
    from components.server_store import store

    panel = ("svi", "lm", "vol", "vega", "linear", "mid", 2000, 0, 0, 0.5, False)
    spec, _ = request_backtest(1, "hist", ["svi"], ["warm"], 1.0, *panel)
    assert "attempt" in spec  # nothing stored yet: a one-off tag, so no job memo of an older run can answer
    first, _ = run_job(spec)
    assert first["key"] == outcome_key(spec) == outcome_key({k: v for k, v in spec.items() if k != "attempt"})
    again, _ = request_backtest(2, "hist", ["svi"], ["warm"], 1.0, *panel)
    assert "attempt" not in again  # stored: the same request, the job shows it without running
    made = len(fits)
    store("backtests").delete(first["key"])  # evicted
    assert not outcome_stored(first["key"])
    retry, _ = request_backtest(3, "hist", ["svi"], ["warm"], 1.0, *panel)
    assert retry.get("attempt") not in (None, spec["attempt"])
    data, _ = run_job(retry)
    assert data["key"] == first["key"] and outcome_stored(data["key"]) and load_outcome(data["key"]) is not None
    assert len(fits) == made  # every fit came from the fit cache
