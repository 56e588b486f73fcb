"""The dashboard's callbacks and helpers called directly (no browser, no server).

References are independent of the code under test: the bundled demo files and their documented contents
(data/README.md: btc_demo.csv has 821 quotes and 13 expiries at 2026-11-20T14:00:00Z), hand-built inputs, and
round trips.
"""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import dash
import pandas as pd
import plotly.graph_objects as go
import pytest
from dash.exceptions import PreventUpdate

from calibration.calibrate import CalibrationSettings
from calibration.errors import CalibrationError, FileTooLargeError, SnapshotError
from components import ids

ROOT = Path(__file__).resolve().parents[2]
BTC = ROOT / "data" / "btc_demo.csv"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch) -> Path:
    """Every test gets its own empty server-side cache."""
    monkeypatch.setenv("SMILESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def data_url(data: bytes) -> str:
    return "data:application/octet-stream;base64," + base64.b64encode(data).decode()


def is_no_update(value) -> bool:
    return isinstance(value, dash._callback.NoUpdate)


def note_text(notes) -> str:
    return " ".join(f"{n['title']} {n['message']}" for n in notes)


@pytest.fixture()
def btc_key():
    from components.server_store import data_key

    return dict(data_key("btc_demo.csv")[1])


@pytest.fixture()
def btc_fit(btc_key):
    from components.server_store import cached_fit, snapshot_for

    return cached_fit(snapshot_for(btc_key), CalibrationSettings())


# ---------------------------------------------------------------------------------------------------------------
# controls <-> settings <-> URL
# ---------------------------------------------------------------------------------------------------------------


def test_controls_build_settings_with_model_options():
    from components.controls import settings_from_controls

    s = settings_from_controls("sabr", "trf", "price", "spread", "huber", "band", 500, 3, 7, "", False)
    assert (s.model, s.optimizer, s.space) == ("sabr", "trf", "price")
    assert (s.weights, s.loss, s.fit_to) == ("spread", "huber", "band")
    assert (s.max_evals, s.multistart, s.seed) == (500, 3, 7)
    assert dict(s.model_options) == {"beta": None}  # blank beta: fitted
    base = ("lm", "vol", "vega", "linear", "mid", 100, 0, 0)
    assert dict(settings_from_controls("sabr", *base, 0.7).model_options) == {"beta": 0.7}
    heston = settings_from_controls("heston", "lm", "vol", "vega", "linear", "mid", 100, 0, 0, 0.5, True)
    assert dict(heston.model_options) == {"enforce_feller": True}
    assert dict(settings_from_controls("svi", *base, 0.5, True).model_options) == {}


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("svi", "lm", "vol", "vega", "linear", "mid", None, 0, 0), "Max evaluations"),
        (("svi", "lm", "vol", "vega", "linear", "mid", 10.5, 0, 0), "Max evaluations"),
        (("svi", "lm", "vol", "vega", "linear", "mid", 100, -1, 0), "Multistart"),
        (("sabr", "lm", "vol", "vega", "linear", "mid", 100, 0, 0, 1.5), "beta"),
        (("svi", "de", "vol", "vega", "linear", "mid", 100, 3, 0), "multistart"),
        (("nope", "lm", "vol", "vega", "linear", "mid", 100, 0, 0), "model"),
    ],
)
def test_bad_control_values_are_calibration_errors_naming_the_control(args, says):
    from components.controls import settings_from_controls

    with pytest.raises(CalibrationError, match=says):
        settings_from_controls(*args)


def test_a_link_round_trips_snapshot_settings_and_view():
    from components.controls import (
        CONTROL_FIELDS,
        controls_from_settings,
        query_from_state,
        settings_from_controls,
        state_from_query,
    )

    settings = CalibrationSettings(model="sabr", optimizer="nelder", weights="uniform", max_evals=700, seed=3,
                                   model_options={"beta": None})
    search = query_from_state({"source": "data", "name": "history/btc_2026-11-18_1400.csv", "hash": "h"}, settings,
                              tab="smiles", surface_axis="delta")
    state = state_from_query(search)
    assert state["snapshot"] == "history/btc_2026-11-18_1400.csv" and state["upload"] is None
    assert (state["tab"], state["surface_axis"]) == ("smiles", "delta")
    controls = controls_from_settings(CalibrationSettings()) | state["controls"]
    order = [cid for cid, _ in CONTROL_FIELDS] + [ids.SABR_BETA_INPUT, ids.FELLER_SWITCH]
    assert settings_from_controls(*(controls[c] for c in order)) == settings
    upload = query_from_state({"source": "upload", "name": "x.csv", "hash": "abc123"}, CalibrationSettings())
    assert state_from_query(upload)["upload"] == "abc123" and "snapshot=" not in upload


def test_a_link_with_junk_values_is_ignored_value_by_value():
    from components.controls import state_from_query

    state = state_from_query("?model=nope&optimizer=de&max_evals=-3&seed=x&beta=2&tab=evil&x=%3Cscript%3E")
    assert state["controls"] == {ids.OPTIMIZER_SELECT: "de"}
    assert state["tab"] is None and state["surface_axis"] is None


def test_the_picker_groups_folders_and_adds_uploads_once():
    from components.controls import snapshot_options, with_upload

    options = snapshot_options(["btc_demo.csv", "spx_demo.csv", "history/a.csv", "history/b.csv"])
    assert [g["group"] for g in options] == ["Snapshots", "history/"]
    assert [i["value"] for i in options[1]["items"]] == ["history/a.csv", "history/b.csv"]
    once = with_upload(options, "mine.csv", "abcdef0123")
    twice = with_upload(once, "mine.csv", "abcdef0123")
    assert twice == once and once[-1] == {"group": "Uploaded", "items": [{"value": "upload:abcdef0123:mine.csv",
                                                                           "label": "mine.csv · abcdef"}]}
    assert options == snapshot_options(["btc_demo.csv", "spx_demo.csv", "history/a.csv", "history/b.csv"])  # untouched


# ---------------------------------------------------------------------------------------------------------------
# server-side store
# ---------------------------------------------------------------------------------------------------------------


def test_the_size_cap_is_checked_before_decoding():
    from components.server_store import decode_upload

    # 2 MB of characters that are not even base64: refused for the size, so never decoded
    with pytest.raises(FileTooLargeError, match="above the 1 MB cap"):
        decode_upload("data:text/csv;base64," + "!" * (2 * 1024**2), max_bytes=1024**2)
    with pytest.raises(SnapshotError, match="base64"):
        decode_upload("data:text/csv;base64,!!!!", max_bytes=1024**2)
    with pytest.raises(SnapshotError, match="data URL"):
        decode_upload("just text", max_bytes=1024**2)
    assert decode_upload(data_url(b"abc"), max_bytes=10) == b"abc"


def test_an_upload_is_kept_by_content_hash_and_equals_the_data_file(btc_key):
    from components.server_store import snapshot_by_hash, upload_snapshot

    snapshot, key = upload_snapshot(data_url(gzip.compress(BTC.read_bytes())), "copy.csv.gz")
    assert key == {"source": "upload", "name": "copy.csv.gz", "hash": btc_key["hash"]}  # same quotes, same hash
    assert len(snapshot.quotes) == 821  # data/README.md
    snapshot_by_hash.cache_clear()  # parsed again from the stored bytes
    assert snapshot_by_hash(key["hash"]).content_hash == key["hash"]


def test_unknown_hashes_and_paths_outside_the_data_directory_are_refused():
    from components.server_store import SnapshotGone, data_key, snapshot_by_hash

    with pytest.raises(SnapshotGone):
        snapshot_by_hash("0" * 32)
    with pytest.raises(FileNotFoundError):
        data_key("../pyproject.toml")


def test_demo_files_are_labelled_synthetic_and_uploads_are_not():
    from components.server_store import is_synthetic

    assert is_synthetic({"source": "data", "name": "btc_demo.csv"})
    assert is_synthetic({"source": "data", "name": "history/btc_2026-11-18_1400.csv"})
    assert not is_synthetic({"source": "upload", "name": "btc_demo.csv", "hash": "x"})


def test_a_fit_is_memoised_on_disk_and_survives_a_new_process_cache(btc_key, cache_dir):
    from components import server_store
    from components.server_store import cached_fit, snapshot_for

    first = cached_fit(snapshot_for(btc_key), CalibrationSettings(model="black"))
    assert first["model"] == "black" and first["snapshot_hash"] == btc_key["hash"]
    server_store._cache.cache_clear()  # a fresh handle, as after a restart
    again = cached_fit(snapshot_for(btc_key), CalibrationSettings(model="black"))
    assert again == first  # elapsed time included: the stored fit, not a second run
    assert any((cache_dir / "results").iterdir())
    other = cached_fit(snapshot_for(btc_key), CalibrationSettings(model="black", weights="uniform"))
    assert other["settings"]["weights"] == "uniform" and other != first
    # settings that went through the browser (0 for 0.0) find the same fit
    browser = json.loads(json.dumps(CalibrationSettings(model="black").to_dict()).replace("0.0", "0"))
    assert browser["regularisation"] == 0 and isinstance(browser["regularisation"], int)
    assert cached_fit(snapshot_for(btc_key), CalibrationSettings.from_dict(browser)) == first


# ---------------------------------------------------------------------------------------------------------------
# snapshot callbacks
# ---------------------------------------------------------------------------------------------------------------


def test_opening_a_snapshot_sets_its_key_summary_badge_and_clears_the_pins(btc_key):
    from components.callbacks.snapshot import open_snapshot

    key, summary, badge, pinned, picker, note = open_snapshot("spx_demo.csv", btc_key)
    assert key["source"] == "data" and key["name"] == "spx_demo.csv" and key["hash"] != btc_key["hash"]
    assert "SPX" in json.dumps(summary, default=lambda c: c.to_plotly_json())
    assert badge == {"display": "inline-flex"} and pinned == []
    assert is_no_update(picker) and is_no_update(note)
    with pytest.raises(PreventUpdate):  # the snapshot already loaded: nothing to do (no refit)
        open_snapshot("btc_demo.csv", btc_key)


def test_a_snapshot_that_fails_keeps_the_previous_one(btc_key):
    from components.callbacks.snapshot import open_snapshot

    *kept, picker, note = open_snapshot("../app.py", btc_key)
    assert all(is_no_update(v) for v in kept)
    assert picker == "btc_demo.csv"  # the picker goes back to what is loaded
    assert "Snapshot not loaded" in note_text(note) and "app.py" in note_text(note)
    assert note[0]["color"] == "red"


def test_uploads_select_the_new_snapshot_or_name_the_problem():
    from components.callbacks.snapshot import receive_upload

    data, value, contents, note = receive_upload(data_url(BTC.read_bytes()), "mine.csv", [])
    assert value.startswith("upload:") and contents is None
    assert data[-1]["group"] == "Uploaded" and "Uploaded mine.csv" in note_text(note)
    data, value, contents, note = receive_upload(data_url(b"a,b\n1,2\n"), "bad.csv", [])
    assert is_no_update(data) and is_no_update(value) and contents is None
    assert "Upload rejected: bad.csv" in note_text(note) and note[0]["color"] == "red"


# ---------------------------------------------------------------------------------------------------------------
# calibration callbacks
# ---------------------------------------------------------------------------------------------------------------

DEFAULT_CONTROLS = ("svi", "lm", "vol", "vega", "linear", "mid", 2000, 0, 0, 0.5, False)


def test_the_fit_request_carries_content_hash_and_settings_only(btc_key):
    from components.callbacks.calibrate import request_fit

    spec, note = request_fit(1, btc_key, None, *DEFAULT_CONTROLS)
    assert spec == {"snapshot": btc_key, "settings": CalibrationSettings().to_dict()} and is_no_update(note)
    upload = {"source": "upload", "name": "a.csv", "hash": btc_key["hash"]}
    from components.server_store import upload_snapshot

    upload_snapshot(data_url(BTC.read_bytes()), "a.csv")
    spec, _ = request_fit(1, upload, None, *DEFAULT_CONTROLS)
    assert spec["snapshot"] == {"source": "upload", "hash": btc_key["hash"]}  # the file name is not part of it


def test_a_bad_request_is_a_notification_and_starts_nothing(btc_key):
    from components.callbacks.calibrate import request_fit

    spec, note = request_fit(1, btc_key, None, "svi", "de", "vol", "vega", "linear", "mid", 2000, 4, 0, 0.5, False)
    assert is_no_update(spec) and "multistart" in note_text(note)
    spec, note = request_fit(1, {"source": "upload", "name": "x", "hash": "f" * 32}, None, *DEFAULT_CONTROLS)
    assert is_no_update(spec) and "no longer on the server" in note_text(note)
    spec, note = request_fit(1, None, None, *DEFAULT_CONTROLS)
    assert is_no_update(spec) and "no snapshot" in note_text(note)


def test_the_job_forwards_progress_and_returns_the_result(btc_key, monkeypatch):
    from calibration.optimizers import ProgressInfo
    from components.callbacks import calibrate as module
    from components.callbacks.calibrate import fit_job, job_spec

    real = module.cached_fit

    def reporting(snapshot, settings, *, progress=None):
        progress(ProgressInfo(nfev=10, rmse_vol_points=2.5, elapsed_s=0.5, stage="expiry 1/12"))
        return real(snapshot, settings, progress=progress)

    monkeypatch.setattr(module, "cached_fit", reporting)
    reports = []
    result, summary, note = fit_job(job_spec(btc_key, CalibrationSettings(model="black")), reports.append)
    assert result["model"] == "black" and result["success"] and is_no_update(note)
    assert "Black" in json.dumps(summary, default=lambda c: c.to_plotly_json())
    # black is a slice model: a budget of 2000 evaluations per expiry with quotes to fit
    from components.server_store import snapshot_for

    m = len(snapshot_for(btc_key).expiries)
    assert reports[0] == (100 * 10 / (m * 2000), "10 evaluations · error 2.50 vol pts · expiry 1/12 · 0.5 s")
    again, _, _ = fit_job(job_spec(btc_key, CalibrationSettings(model="black")), reports.append)
    assert again == result  # the stored fit, not a second run


def test_a_job_that_fails_keeps_the_previous_fit(btc_key):
    from components.callbacks.calibrate import fit_job, job_spec

    spec = job_spec(btc_key, CalibrationSettings())
    spec["settings"]["model_options"] = {"nonsense": 1}
    result, summary, note = fit_job(spec, lambda _: None)
    assert is_no_update(result) and is_no_update(summary)
    assert "Calibration failed" in note_text(note) and "nonsense" in note_text(note)


def test_an_unexpected_error_in_a_fit_is_a_notification(btc_key, monkeypatch):
    from components.callbacks import calibrate as module

    def broken(*args, **kwargs):
        raise FloatingPointError("overflow in the characteristic function")

    monkeypatch.setattr(module, "cached_fit", broken)
    result, summary, note = module.fit_job(module.job_spec(btc_key, CalibrationSettings()), lambda _: None)
    assert is_no_update(result) and is_no_update(summary)
    assert "FloatingPointError: overflow" in note_text(note)


def test_progress_text_and_budget():
    from calibration.optimizers import ProgressInfo
    from components.callbacks.calibrate import budget, progress_values

    assert budget(CalibrationSettings(max_evals=100, multistart=3), 12, "slice") == 3600
    assert budget(CalibrationSettings(max_evals=100), 12, "surface") == 100
    share, text = progress_values(ProgressInfo(nfev=50, rmse_vol_points=1.234, elapsed_s=2.0, stage="expiry 3/12"), 100)
    assert share == 50.0 and text == "50 evaluations · error 1.23 vol pts · expiry 3/12 · 2.0 s"
    assert progress_values(ProgressInfo(nfev=500, rmse_vol_points=float("nan"), elapsed_s=0, stage=""), 100)[0] == 99.0


def test_model_options_are_editable_for_their_model_only():
    from components.callbacks.calibrate import model_options_enabled

    assert model_options_enabled("sabr") == (False, True)
    assert model_options_enabled("bates") == (True, False)
    assert model_options_enabled("svi") == (True, True)


# ---------------------------------------------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------------------------------------------


def test_a_tab_callback_draws_from_its_data_theme_and_options(btc_fit):
    from components.callbacks.views import VIEWS

    (fig,) = VIEWS["surface"]("stamp", btc_fit, "light", "strike")
    assert isinstance(fig, go.Figure) and len(fig.data) >= 2
    assert fig.layout.template.layout.paper_bgcolor == "#ffffff"  # components/theme.py, light
    assert fig.layout.scene.xaxis.title.text.startswith("Strike")
    (fig,) = VIEWS["surface"]("stamp", btc_fit, "bogus", "k")  # an unknown theme falls back to dark
    assert fig.layout.template.layout.paper_bgcolor == "#15181e"


def test_the_stamp_of_a_fit_is_the_same_after_a_trip_through_the_browser(btc_fit):
    from components.callbacks.render import render_stamp

    through_browser = json.loads(json.dumps(btc_fit).replace(": 0.0,", ": 0,"))
    assert render_stamp(through_browser, "dark", ["k"]) == render_stamp(btc_fit, "dark", ["k"])
    assert render_stamp(btc_fit, "light", ["k"]) != render_stamp(btc_fit, "dark", ["k"])
    assert render_stamp(btc_fit, "dark", ["delta"]) != render_stamp(btc_fit, "dark", ["k"])
    # the browser's gate builds the same text: compact JSON of [identity, theme, options]
    micros = int(btc_fit["elapsed_s"] * 1e6)
    identity = f"{btc_fit['snapshot_hash']}|svi|lm|{btc_fit['nfev']}|{micros}"
    assert render_stamp(btc_fit, "dark", ["k"]) == f'["{identity}","dark",["k"]]'


def test_a_figure_carries_the_identity_of_its_fit_even_after_a_trip_through_the_browser(btc_fit):
    from components.callbacks.common import result_id
    from components.callbacks.render import render_surface

    through_browser = json.loads(json.dumps(btc_fit).replace(": 0.0,", ": 0,"))
    (fig,) = render_surface(through_browser, "dark", "k")
    assert fig.layout.meta["result"] == result_id(btc_fit) and result_id(btc_fit).startswith(btc_fit["snapshot_hash"])


def test_no_fit_or_a_lost_snapshot_draws_a_blank_figure_saying_why(btc_fit):
    from components.callbacks.render import render_params, render_smiles, render_surface

    (blank,) = render_surface(None, "dark", "k")
    assert len(blank.data) == 0 and "Calibrate" in blank.layout.annotations[0].text
    lost = dict(btc_fit, snapshot_hash="0" * 32)
    (blank,) = render_smiles(lost, "dark")
    assert len(blank.data) == 0 and "no longer on the server" in blank.layout.annotations[0].text
    rows, columns, stats, corr, sens = render_params(None, "dark")
    assert rows == [] and len(corr.data) == 0 and len(sens.data) == 0


def test_a_failing_figure_function_does_not_raise(btc_fit, monkeypatch):
    from components.callbacks import render

    def broken(*args, **kwargs):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(render, "term_figure", broken)
    (fig,) = render.render_term(btc_fit, "dark")
    assert len(fig.data) == 0 and "boom" in fig.layout.annotations[0].text


def test_the_quality_tab_lists_every_quote_of_the_snapshot(btc_key):
    from components.callbacks.render import render_quality

    from components.server_store import snapshot_for

    fig, drops, forwards, quotes = render_quality(btc_key, "dark")
    assert len(quotes) == 821 and len(forwards) == 13  # data/README.md: 821 quotes, 13 expiries
    assert sum(d["count"] for d in drops) + len(snapshot_for(btc_key).fit_quotes) == 821


# ---------------------------------------------------------------------------------------------------------------
# compare, theme, URL, exports
# ---------------------------------------------------------------------------------------------------------------


def _fake_fit(model: str, snapshot_hash: str = "h1") -> dict:
    return {"model": model, "snapshot_hash": snapshot_hash, "settings": {"model": model}}


def test_pinning_appends_up_to_three_fits_of_one_snapshot():
    from components.callbacks.compare import pin

    patch, note = pin(_fake_fit("svi"), [])
    assert isinstance(patch, dash.Patch) and "1 of 3" in note_text(note)
    assert is_no_update(pin(_fake_fit("svi"), [_fake_fit("svi")])[0])  # already pinned
    patch, note = pin(_fake_fit("bates"), [_fake_fit("svi"), _fake_fit("sabr"), _fake_fit("heston")])
    assert "oldest" in note_text(note)
    ops = patch.to_plotly_json()["operations"]
    assert [op["operation"] for op in ops] == ["Delete", "Append"]
    fresh, note = pin(_fake_fit("svi", "h2"), [_fake_fit("svi")])
    assert fresh == [_fake_fit("svi", "h2")]  # another snapshot restarts the comparison
    assert is_no_update(pin(None, [])[0])


def test_the_theme_follows_the_store_and_the_toggle_writes_it():
    from components.callbacks.theme import GRIDS, apply_theme, choose_theme

    toggle, scheme, *grids = apply_theme("light")
    assert (toggle, scheme) == ("light", "light") and len(grids) == len(GRIDS)
    assert "'#ffffff'" in grids[0].to_plotly_json()["operations"][0]["params"]["value"]["function"]
    assert apply_theme("bogus")[:2] == ("dark", "dark")
    assert choose_theme("light", "dark") == "light"
    with pytest.raises(PreventUpdate):
        choose_theme("dark", "dark")


def test_a_link_sets_controls_and_requests_a_fit_only_when_it_asks_for_other_settings():
    from components.callbacks.url import apply_link

    out = apply_link("/", "?snapshot=spx_demo.csv&model=heston&tab=greeks", [])
    *controls, data, value, tab, axis, applied, note = out
    assert controls[0] == "heston" and all(is_no_update(c) for c in controls[1:])
    assert value == "spx_demo.csv" and tab == "greeks" and is_no_update(axis)
    assert applied == "?snapshot=spx_demo.csv&model=heston&tab=greeks" and is_no_update(note)
    *_, applied, _ = apply_link("/", "?snapshot=btc_demo.csv&model=svi&optimizer=lm", [])
    assert is_no_update(applied)  # the defaults: the page already shows that fit
    with pytest.raises(PreventUpdate):
        apply_link("/", "", [])
    *_, value, _, _, _, note = apply_link("/", "?upload=" + "f" * 32, [])
    assert is_no_update(value) and "not available" in note_text(note)


def test_the_address_bar_follows_the_fit_on_screen(btc_fit, btc_key):
    from components.callbacks.url import write_link

    search = write_link(btc_fit, "residuals", "k", btc_key, "")
    assert search == "?snapshot=btc_demo.csv&model=svi&optimizer=lm&tab=residuals"
    with pytest.raises(PreventUpdate):
        write_link(btc_fit, "residuals", "k", btc_key, search)
    with pytest.raises(PreventUpdate):  # a new snapshot whose fit is not there yet
        write_link(btc_fit, "surface", "k", dict(btc_key, hash="other"), "")


def test_exports_hold_the_fit_and_the_quotes(btc_fit, btc_key):
    from components.callbacks.exports import export_file, fitted_grid
    from components.server_store import snapshot_for
    from calibration.result import CalibrationResult

    params = export_file(ids.EXPORT_PARAMS, btc_fit, btc_key)
    assert params["filename"] == "smilescope_BTC_20261120T1400_svi_params.json"
    doc = json.loads(params["content"])
    assert doc["params"] == btc_fit["params"] and "residuals" not in doc
    quotes = export_file(ids.EXPORT_QUOTES, None, btc_key)
    frame = pd.read_csv(__import__("io").StringIO(quotes["content"]))
    assert len(frame) == 821 and {"iv_bid", "iv_mid", "iv_ask", "status"} <= set(frame.columns)
    result = CalibrationResult.from_dict(btc_fit)
    grid = fitted_grid(snapshot_for(btc_key), result, n_k=5)
    assert len(grid) == 5 * len(result.expiries) and grid["model_vol"].notna().all()
    # raw SVI by hand (Gatheral 2004): w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2)), vol = sqrt(w / t)
    row = grid.iloc[len(grid) // 2]
    j = result.expiries.index(row["expiry"])
    a, b, rho, m, sigma = (result.params[n][j] for n in ("a", "b", "rho", "m", "sigma"))
    w = a + b * (rho * (row["k"] - m) + ((row["k"] - m) ** 2 + sigma**2) ** 0.5)
    assert row["model_vol"] == pytest.approx((w / row["ttm"]) ** 0.5, rel=1e-9)
    with pytest.raises(ValueError, match="no fit"):
        export_file(ids.EXPORT_GRID, None, btc_key)
