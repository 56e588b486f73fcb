"""Figure functions of the Backtest view (pure: no browser).

Real backtests of the bundled BTC history (the first 12 hourly snapshots; SVI warm and cold, Heston warm), a run
with a missing file, a failed fit and a fit that did not converge, and a cancelled run. Everything a figure shows
is checked against the backtest's own tables, recomputed here independently: the ranking order from the
out-of-sample column of ``table``, the stability bands from ``param_`` / ``se_`` columns, the out-of-sample bars
from the bucket columns, the hedge medians and quartiles from ``hedge`` (``100 |error| / vega_market``) and the
RMSE ratios from the raw errors. Plus units in every axis title, both themes, float32 payloads, JSON size, and
the empty / failed / cancelled cases.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from calibration.backtest import (
    BUCKETS,
    BacktestResult,
    BacktestSettings,
    backtest,
    default_fit,
    load_history,
    run_label,
)
from calibration.calibrate import CalibrationSettings
from calibration.errors import CalibrationError
from calibration.models import get_model
from components.figures import (
    RANKING_COLUMNS,
    hedge_figure,
    out_of_sample_figure,
    ranking_records,
    stability_figure,
)
from components.figures.backtest import BUCKET_TITLES, DRIFT_KEY, HEDGE_KINDS, WHISKER_PERCENTILES, panel_key
from components.theme import PALETTE

HISTORY = Path(__file__).resolve().parents[2] / "data" / "history"
N_FILES = 12
JSON_LIMIT = 1_000_000
FIGURES = (stability_figure, out_of_sample_figure, hedge_figure)
#: An axis title ends with its unit in parentheses: "RMSE vs mid (vol points)", "κ (per year)".
UNIT = re.compile(r"\(([^()]+)\)\s*$")


def _files() -> list[Path]:
    files = sorted(p for p in HISTORY.glob("*.csv"))
    if len(files) < N_FILES:
        pytest.skip(f"bundled history not found under {HISTORY}")
    return files


def _settings(model: str, **kw) -> BacktestSettings:
    return BacktestSettings(calibration=CalibrationSettings(model=model), **kw)


def _run_all(snapshots: list) -> tuple[list[BacktestResult], list[str]]:
    runs = [backtest(snapshots, _settings("svi", warm_start=True)),
            backtest(snapshots, _settings("svi", warm_start=False)),
            backtest(snapshots, _settings("heston", warm_start=True))]
    return runs, [run_label(r) for r in runs]


@pytest.fixture(scope="session")
def snapshots() -> list:
    return load_history(_files()[:N_FILES])


@pytest.fixture(scope="session")
def three(snapshots) -> tuple[list[BacktestResult], list[str]]:
    """SVI warm, SVI cold and Heston warm over the first 12 snapshots."""
    return _run_all(snapshots)


#: Rows of the damaged run: a missing file, a fit that raises, a fit reported as not converged.
MISSING_AT, FAILED_AT, UNCONVERGED_AT = 2, 5, 7


@pytest.fixture(scope="session")
def damaged(snapshots) -> BacktestResult:
    """SVI warm over 10 sources: a missing file at row 2, a fit that raises at row 5 and one that did not
    converge at row 7 (a real fit with its flag turned off)."""
    sources = list(snapshots[:9])
    sources.insert(MISSING_AT, HISTORY / "btc_missing_snapshot.csv")
    fit0 = default_fit()

    def fit(snapshot, settings, initial, previous):
        if snapshot is sources[FAILED_AT]:
            raise CalibrationError("optimizer blew up on purpose")
        result = fit0(snapshot, settings, initial, previous)
        if snapshot is sources[UNCONVERGED_AT]:
            return dataclasses.replace(result, success=False, message="maximum evaluations reached")
        return result

    return backtest(sources, _settings("svi"), fit=fit)


def _ok_steps(table: pd.DataFrame) -> pd.DataFrame:
    ok = table[table["status"] == "ok"]
    both = np.isfinite(ok["oos_rmse_vol_points"].astype(float)) & np.isfinite(ok["is_rmse_vol_points"].astype(float))
    return ok[both]


def _vol_points(result: BacktestResult, kind: str) -> np.ndarray:
    h = result.hedge
    v = np.abs(100.0 * h[f"error_{kind}"].to_numpy(float) / h["vega_market"].to_numpy(float))
    return v[np.isfinite(v)]


def _times(series: pd.Series) -> list[str]:
    return [t.strftime("%Y-%m-%d %H:%M") for t in pd.to_datetime(series, utc=True)]


def _axis_titles(fig: go.Figure, *, quantities: bool = False) -> dict[str, str]:
    """Title of every axis (``quantities``: only the axes of numbers, not those of run names or categories)."""
    layout = fig.to_plotly_json()["layout"]
    out = {}
    for name, axis in layout.items():
        if re.fullmatch(r"[xy]axis\d*", name) and isinstance(axis, dict):
            if quantities and (axis.get("type") == "category" or axis.get("ticktext") is not None
                               and name.startswith("x")):
                continue
            out[name] = (axis.get("title") or {}).get("text") or ""
    return out


def _annotation_texts(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def _is_empty(fig: go.Figure) -> bool:
    return len(fig.data) == 0 and len(fig.layout.annotations) == 1


# ---------------------------------------------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------------------------------------------

def test_ranking_follows_the_out_of_sample_error_of_the_tables(three):
    runs, labels = three
    records = ranking_records(runs, labels)
    assert [list(r) for r in records] == [[c[0] for c in RANKING_COLUMNS]] * len(runs)
    oos = {label: float(_ok_steps(r.table)["oos_rmse_vol_points"].astype(float).mean())
           for r, label in zip(runs, labels)}
    is_ = {label: float(_ok_steps(r.table)["is_rmse_vol_points"].astype(float).mean())
           for r, label in zip(runs, labels)}
    assert [r["run"] for r in records] == sorted(labels, key=oos.get)
    assert [r["rank"] for r in records] == list(range(1, len(runs) + 1))
    for row in records:
        assert row["oos_rmse"] == pytest.approx(oos[row["run"]], rel=1e-12)
        assert row["is_rmse"] == pytest.approx(is_[row["run"]], rel=1e-12)
        assert row["oos_is_ratio"] == pytest.approx(oos[row["run"]] / is_[row["run"]], rel=1e-12)
    assert "out-of-sample" in records[0]["best"].split(", ")
    assert not any("out-of-sample" in r["best"] for r in records[1:])


def test_ranking_hedge_drift_and_time_columns_match_the_tables(three):
    runs, labels = three
    by_run = {r["run"]: r for r in ranking_records(runs, labels)}
    for result, label in zip(runs, labels):
        row, t = by_run[label], result.table
        ok = t[t["status"] == "ok"]
        assert row["hedge_median"] == pytest.approx(float(np.median(_vol_points(result, "second"))), rel=1e-12)
        e2, eb = (result.hedge[f"error_{k}"].to_numpy(float) for k in ("second", "baseline"))
        assert row["hedge_ratio"] == pytest.approx(np.sqrt(np.mean(e2 ** 2) / np.mean(eb ** 2)), rel=1e-10)
        assert row["drift"] == pytest.approx(float(np.nanmean(ok["drift"].astype(float))), rel=1e-12)
        assert row["fit_time"] == pytest.approx(float(ok["elapsed_s"].sum()), rel=1e-12)
        assert row["converged"] == pytest.approx(float(ok["success"].astype(bool).mean()))
        assert row["snapshots"] == f"{len(ok)} / {len(t) - len(ok)}"
        assert row["model"] == get_model(result.settings.calibration.model).label
        assert row["start"] == ("warm" if result.settings.warm_start else "cold")
    fastest = min(by_run.values(), key=lambda r: r["fit_time"])
    assert "fit time" in fastest["best"]


def test_ranking_of_a_damaged_run_counts_its_bad_snapshots(damaged, three):
    runs, labels = three
    records = ranking_records([damaged, runs[0]], ["damaged", labels[0]])
    row = next(r for r in records if r["run"] == "damaged")
    assert row["snapshots"] == f"{len(damaged.table) - 2} / 2"
    ok = damaged.table[damaged.table["status"] == "ok"]
    assert row["converged"] == pytest.approx((len(ok) - 1) / len(ok))
    assert ranking_records([], []) == []
    with pytest.raises(ValueError, match="labels"):
        ranking_records(runs, labels[:1])


# ---------------------------------------------------------------------------------------------------------------
# stability
# ---------------------------------------------------------------------------------------------------------------

def _traces(fig: go.Figure, meta: str, name: str | None = None) -> list:
    return [t for t in fig.data if t.meta == meta and (name is None or t.name == name)]


def _band_edges(band) -> tuple[list[float], list[float], list[str]]:
    """Upper and lower edges and x of a band outline (one closed run of points per segment, ``None`` between)."""
    upper: list[float] = []
    lower: list[float] = []
    xs: list[str] = []
    xb, yb = list(band.x), list(band.y)
    breaks = [-1] + [k for k, v in enumerate(xb) if v is None] + [len(xb)]
    for a, b in zip(breaks[:-1], breaks[1:]):
        seg_x, seg_y = xb[a + 1:b], yb[a + 1:b]
        m = len(seg_x) // 2
        assert seg_x[:m] == seg_x[m:][::-1]  # forward along the top, back along the bottom
        xs += seg_x[:m]
        upper += seg_y[:m]
        lower += seg_y[m:][::-1]
    return upper, lower, xs


def test_stability_bands_are_the_value_plus_minus_1_96_standard_errors(three):
    runs, labels = three
    fig = stability_figure(runs, labels)
    for result, label in zip(runs, labels):
        model = result.settings.calibration.model
        t = result.table
        for name in ("rho", "sigma"):  # a parameter both models have, under different panels
            key = panel_key(model, name)
            value, se = t[f"param_{name}"].to_numpy(float), t[f"se_{name}"].to_numpy(float)
            (band,) = _traces(fig, key, f"{label} ±1.96 se")
            (line,) = _traces(fig, key, label)
            np.testing.assert_allclose(line.y, value, rtol=1e-6)
            upper, lower, xs = _band_edges(band)
            np.testing.assert_allclose(upper, value + 1.96 * se, rtol=1e-6)
            np.testing.assert_allclose(lower, value - 1.96 * se, rtol=1e-6)
            assert list(line.x) == _times(t["asof"]) == xs
            assert band.xaxis == line.xaxis and band.fill == "toself"
            assert line.y.dtype == np.float32
    # the SVI runs share their panels; the Heston run has its own
    assert _traces(fig, panel_key("svi", "rho"), labels[0])[0].xaxis == \
        _traces(fig, panel_key("svi", "rho"), labels[1])[0].xaxis
    assert _traces(fig, panel_key("svi", "rho"), labels[0])[0].xaxis != \
        _traces(fig, panel_key("heston", "rho"), labels[2])[0].xaxis


def test_stability_has_one_panel_per_parameter_and_a_drift_panel(three):
    runs, labels = three
    fig = stability_figure(runs, labels)
    expected = [panel_key(m, p.name) for m in ("svi", "heston") for p in get_model(m).params]
    keys = list(dict.fromkeys(t.meta for t in fig.data))
    assert keys == expected + [DRIFT_KEY]
    axes = {key: {t.yaxis for t in fig.data if t.meta == key} for key in keys}
    assert all(len(a) == 1 for a in axes.values())
    assert len({a.pop() for a in axes.values()}) == len(keys)  # every panel its own axes
    titles = _annotation_texts(fig)
    assert any(t.startswith("Heston · κ") for t in titles) and any(t.startswith("SVI (raw) · ρ") for t in titles)
    assert "30 days" in fig.layout.title.text  # the slice model's reference tenor is said
    for result, label in zip(runs, labels):
        (drift,) = _traces(fig, DRIFT_KEY, label)
        d = result.table["drift"].to_numpy(float)
        np.testing.assert_allclose(drift.y, np.where(d > 0, d, np.nan), rtol=1e-6)
    drift_axis = _traces(fig, DRIFT_KEY)[0].yaxis
    assert fig.layout[drift_axis.replace("y", "yaxis")].type == "log"


def test_stability_marks_bad_snapshots_and_unconverged_fits(damaged):
    fig = stability_figure([damaged], ["damaged"])
    t = damaged.table
    assert list(t["status"])[MISSING_AT] == "unreadable" and list(t["status"])[FAILED_AT] == "failed"
    key = panel_key("svi", "a")
    (crosses,) = _traces(fig, key, "bad snapshot (cross)")
    # the missing file has no time: it sits halfway between its neighbours (hourly snapshots)
    asof = pd.to_datetime(t["asof"], utc=True)
    halfway = asof[MISSING_AT - 1] + (asof[MISSING_AT + 1] - asof[MISSING_AT - 1]) / 2
    assert list(crosses.x) == _times(pd.Series([halfway, asof[FAILED_AT]]))
    assert "No such file" in crosses.text[0] and "unreadable" in crosses.text[0]
    assert "optimizer blew up on purpose" in crosses.text[1]
    y_range = fig.layout[crosses.yaxis.replace("y", "yaxis")].range
    assert y_range[0] < crosses.y[0] < y_range[1]  # inside the panel, at its bottom
    (line,) = _traces(fig, key, "damaged")
    assert np.isnan(line.y[MISSING_AT]) and np.isnan(line.y[FAILED_AT])
    # the band leaves the same gaps (no bridge across a bad snapshot): one outline per run of good fits
    (band,) = _traces(fig, key, "damaged ±1.96 se")
    good = np.isfinite(t["param_a"].to_numpy(float)) & np.isfinite(t["se_a"].to_numpy(float))
    runs_of_good = int(np.sum(np.diff(np.r_[0, good.astype(int)]) == 1))
    assert list(band.x).count(None) == runs_of_good - 1 >= 2
    assert _band_edges(band)[2] == [x for x, g in zip(line.x, good) if g]
    (circle,) = _traces(fig, key, "not converged (circle)")
    assert list(circle.x) == _times(t["asof"].iloc[[UNCONVERGED_AT]])
    assert circle.y[0] == pytest.approx(t["param_a"].iloc[UNCONVERGED_AT], rel=1e-6)
    assert "maximum evaluations reached" in circle.text[0]
    assert len(_traces(fig, DRIFT_KEY, "bad snapshot (cross)")) == 1
    assert circle.marker.color == PALETTE["dark"]["violation"]
    # one legend entry per kind of mark
    assert sum(bool(t.showlegend) for t in fig.data if t.name == "bad snapshot (cross)") == 1


def test_bad_snapshots_of_one_model_stay_on_its_panels(damaged, three):
    runs, labels = three
    fig = stability_figure([damaged, runs[2]], ["damaged", labels[2]])
    assert len(_traces(fig, panel_key("svi", "rho"), "bad snapshot (cross)")) == 1
    assert not _traces(fig, panel_key("heston", "rho"), "bad snapshot (cross)")  # the Heston run has none
    assert len(_traces(fig, DRIFT_KEY, "bad snapshot (cross)")) == 1


# ---------------------------------------------------------------------------------------------------------------
# out-of-sample
# ---------------------------------------------------------------------------------------------------------------

def test_out_of_sample_bars_and_lines_are_the_table_means(three):
    runs, labels = three
    fig = out_of_sample_figure(runs, labels)
    bars = [t for t in fig.data if t.type == "bar"]
    lines = [t for t in fig.data if t.type == "scatter"]
    assert len(bars) == len(lines) == 2 * len(runs)
    for result, label in zip(runs, labels):
        steps = _ok_steps(result.table)
        for kind, name in (("oos", "out-of-sample"), ("is", "in-sample")):
            (bar,) = [b for b in bars if b.name == f"{label} · {name}"]
            assert list(bar.x) == [BUCKET_TITLES[b] for b in BUCKETS]
            expected = [np.nanmean(steps[f"{kind}_rmse_{b}"].astype(float)) for b in BUCKETS]
            np.testing.assert_allclose(bar.y, expected, rtol=1e-6)
            (line,) = [s for s in lines if s.legendgroup == label and (s.name == label) == (kind == "oos")]
            on_step = line.y[np.isfinite(line.y)]
            np.testing.assert_allclose(on_step, steps[f"{kind}_rmse_vol_points"].astype(float), rtol=1e-6)
            assert [x for x, y in zip(line.x, line.y) if np.isfinite(y)] == _times(steps["asof"])
    # out-of-sample is worse than in-sample on real drift, overall
    oos = [np.nanmean(b.y) for b in bars if "out-of-sample" in b.name]
    ins = [np.nanmean(b.y) for b in bars if "in-sample" in b.name]
    assert all(o >= i for o, i in zip(oos, ins))


def test_out_of_sample_lines_break_at_bad_snapshots(damaged):
    fig = out_of_sample_figure([damaged], ["damaged"])
    t = damaged.table
    (line,) = [s for s in fig.data if s.type == "scatter" and s.name == "damaged"]
    assert len(line.y) == len(t) and not line.connectgaps
    finite = np.isfinite(line.y)
    # no step at the first row nor at a bad one (a gap in the line, not a join); the next good row has one,
    # against the last good row before the gap
    assert not finite[[0, MISSING_AT, FAILED_AT]].any()
    assert finite[MISSING_AT + 1] and t["oos_rmse_vol_points"].iloc[MISSING_AT + 1] == pytest.approx(
        line.y[MISSING_AT + 1], rel=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# hedge
# ---------------------------------------------------------------------------------------------------------------

def test_hedge_boxes_and_medians_are_the_vol_point_errors(three):
    runs, labels = three
    fig = hedge_figure(runs, labels)
    for k, (kind, kind_name) in enumerate(HEDGE_KINDS.items()):
        (box,) = [t for t in fig.data if t.type == "box" and t.name == kind_name]
        (text,) = [t for t in fig.data if t.type == "scatter" and t.name == f"{kind_name} median"]
        lo, hi = WHISKER_PERCENTILES
        q = np.array([np.percentile(_vol_points(r, kind), [lo, 25, 50, 75, hi]) for r in runs])
        np.testing.assert_allclose(box.median, q[:, 2], rtol=1e-6)
        np.testing.assert_allclose(box.q1, q[:, 1], rtol=1e-6)
        np.testing.assert_allclose(box.q3, q[:, 3], rtol=1e-6)
        np.testing.assert_allclose(box.lowerfence, q[:, 0], rtol=1e-6)
        np.testing.assert_allclose(box.upperfence, q[:, 4], rtol=1e-6)
        medians = [float(np.median(_vol_points(r, kind))) for r in runs]
        np.testing.assert_allclose(np.asarray(text.customdata)[:, 0], medians, rtol=1e-12)
        assert list(text.text) == [f"{m:.2f}" for m in medians]
        np.testing.assert_allclose(text.x, box.x)  # the label sits on its box
        assert [round(float(x)) for x in box.x] == list(range(len(runs)))
    assert fig.layout.yaxis.type == "log"
    assert list(fig.layout.xaxis.ticktext) == labels
    for kind in ("first", "second"):
        (bar,) = [t for t in fig.data if t.type == "bar" and t.name == f"{HEDGE_KINDS[kind]} / baseline"]
        ratios = [np.sqrt(np.mean(r.hedge[f"error_{kind}"].to_numpy(float) ** 2)
                          / np.mean(r.hedge["error_baseline"].to_numpy(float) ** 2)) for r in runs]
        np.testing.assert_allclose(np.asarray(bar.base) + np.asarray(bar.y), ratios, rtol=1e-6)
        assert list(bar.x) == labels


# ---------------------------------------------------------------------------------------------------------------
# every figure
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("figure", FIGURES, ids=lambda f: f.__name__)
def test_every_axis_title_has_a_unit_in_both_themes(three, figure, theme):
    runs, labels = three
    fig = figure(runs, labels, theme=theme)
    assert fig.layout.template.layout.paper_bgcolor == PALETTE[theme]["paper"]
    titles = _axis_titles(fig, quantities=True)
    y_titles = [t for name, t in titles.items() if name.startswith("y")]
    assert y_titles and all(y_titles), titles  # every y axis is titled
    for name, text in titles.items():
        if text:
            assert UNIT.search(text), f"{name}: {text!r} has no unit"
    if figure is not stability_figure:
        assert all(titles.values()), titles
        assert all(_axis_titles(fig).values())  # the run axes are titled too
    else:
        assert sum("UTC" in t for n, t in titles.items() if n.startswith("x")) >= 1
    assert len(fig.to_json()) < JSON_LIMIT


def test_units_of_the_parameter_axes_come_from_the_models(three):
    runs, labels = three
    titles = set(_axis_titles(stability_figure(runs, labels)).values())
    assert {"κ (per year)", "ρ (dimensionless)", "σ (per √year)", "a (variance × years)", "m (log-moneyness)",
            "Scaled drift (dimensionless, log)"} <= titles


def test_figures_survive_a_json_round_trip_of_the_results(three, damaged):
    runs, labels = [*three[0], damaged], [*three[1], "damaged"]
    again = [BacktestResult.from_dict(r.to_dict()) for r in runs]
    for figure in FIGURES:
        a, b = figure(runs, labels), figure(again, labels)
        assert len(a.data) == len(b.data)
        for ta, tb in zip(a.data, b.data):
            if ta.x is not None and np.asarray(ta.x).dtype.kind in "OU":  # times, run names, buckets
                assert list(ta.x) == list(tb.x)
            if ta.y is not None and np.asarray(ta.y).dtype.kind == "f":
                np.testing.assert_allclose(np.asarray(ta.y, float), np.asarray(tb.y, float), rtol=1e-6)
    assert ranking_records(again, labels) == ranking_records(runs, labels)


# ---------------------------------------------------------------------------------------------------------------
# empty, failed, cancelled
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("figure", FIGURES, ids=lambda f: f.__name__)
def test_no_runs_gives_an_explanation(figure, theme):
    fig = figure([], [], theme=theme)
    assert _is_empty(fig) and "Run a backtest" in fig.layout.annotations[0].text
    assert fig.layout.template.layout.paper_bgcolor == PALETTE[theme]["paper"]


@pytest.mark.parametrize("figure", FIGURES, ids=lambda f: f.__name__)
def test_a_history_of_unreadable_files_gives_the_reason(figure, tmp_path):
    bad = tmp_path / "not_a_snapshot.csv"
    bad.write_text("this,is\nnot,options\n")
    run = backtest([tmp_path / "gone.csv", bad], _settings("svi"))
    assert set(run.table["status"]) == {"unreadable"}
    fig = figure([run], [run_label(run)])
    assert _is_empty(fig)
    assert "gone.csv: unreadable" in fig.layout.annotations[0].text
    (row,) = ranking_records([run], ["x"])
    assert row["snapshots"] == "0 / 2" and row["oos_rmse"] is None and row["rank"] == 1


@pytest.mark.parametrize("figure", FIGURES, ids=lambda f: f.__name__)
def test_a_run_cancelled_after_one_snapshot_gives_an_explanation(figure, snapshots):
    run = backtest(snapshots[:4], _settings("svi"), progress=lambda done, n: True)
    assert run.cancelled and len(run.table) == 1
    fig = figure([run], [run_label(run)], theme="light")
    assert _is_empty(fig) and "cancelled" in fig.layout.annotations[0].text
    assert ranking_records([run], ["c"])[0]["snapshots"] == "1 / 0 (cancelled)"


# ---------------------------------------------------------------------------------------------------------------
# size over the whole history
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_figures_of_three_runs_over_the_whole_history_stay_under_1_mb():
    files = _files()
    runs, labels = _run_all(load_history(files))
    assert all(len(r.table) == len(files) for r in runs) and sum(len(r.hedge) for r in runs) > 10_000
    for figure in FIGURES:
        for theme in ("dark", "light"):
            size = len(figure(runs, labels, theme=theme).to_json())
            assert size < JSON_LIMIT, f"{figure.__name__}: {size} bytes"
