"""Figure functions of the Greeks, Parameters, Data-quality and Compare views (pure: no browser).

Real fits of the bundled BTC demo snapshot (slice models SVI and SABR, surface models SSVI, Heston and Bates) and
the SPX demo (no venue forwards); checks of structure, units in the titles, float32 payloads, JSON size, dark and
light themes, a failed fit and 1-3 compared fits. Numbers are checked against independent routes: QuantLib's
Black formula differentiated numerically for the greeks' units, the total probability and the mean of the
risk-neutral density, a bumped parameter re-evaluated through the fitted surface for the sensitivities, the
snapshot's own forward table and quote statuses for the data-quality figures, and the results' residual tables for
the comparison.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from scipy.stats import norm

from calibration.calibrate import CalibrationSettings, calibrate, quote_arrays
from calibration.models import get_model
from calibration.sensitivity import sensitivity
from calibration.snapshot import load_snapshot
from components.figures.common import fitted_expiries
from components.figures.compare import (
    compare_columns,
    compare_records,
    compare_residuals_figure,
    compare_smiles_figure,
    fit_name,
)
from components.figures.greeks import (
    GREEK_SPECS,
    density_figure,
    greek_values,
    greeks_figure,
    greeks_of_fit,
    nice_log_ticks,
)
from components.figures.params import (
    correlation_figure,
    fit_stats_records,
    param_columns,
    param_label,
    params_records,
    sensitivity_cells,
    sensitivity_figure,
)
from components.figures.quality import BY_DESIGN_REASONS, drops_figure, forwards_figure
from components.figures.residuals import BUCKET_LABELS, delta_bucket
from components.theme import PALETTE, SERIES

ql = pytest.importorskip("QuantLib")

DATA = Path(__file__).resolve().parents[2] / "data"
JSON_LIMIT = 1_000_000
THEMES = ("dark", "light")


# -- fixtures -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def btc():
    return load_snapshot(DATA / "btc_demo.csv")


@pytest.fixture(scope="module")
def spx():
    return load_snapshot(DATA / "spx_demo.csv")


@pytest.fixture(scope="module")
def fits(btc):
    """model -> CalibrationResult on the BTC demo."""
    return {m: calibrate(btc, CalibrationSettings(model=m)) for m in ("svi", "sabr", "ssvi", "heston", "bates")}


@pytest.fixture(scope="module")
def failed(btc):
    """A Heston fit stopped after two evaluations (finite parameters, success False)."""
    result = calibrate(btc, CalibrationSettings(model="heston", max_evals=2))
    assert not result.success
    return result


@pytest.fixture(scope="module")
def broken(fits):
    """A result whose parameters are NaN (a diverged fit): nothing can be drawn from it."""
    r = fits["heston"]
    return dataclasses.replace(r, params={k: math.nan for k in r.params}, success=False, message="diverged")


# -- helpers ------------------------------------------------------------------------------------------------------

def _assert_sane(fig: go.Figure, theme: str = "dark") -> dict:
    """JSON-able, under the budget, themed, no all-NaN trace; returns the parsed JSON."""
    text = fig.to_json()
    assert len(text) < JSON_LIMIT
    assert fig.layout.template.layout.paper_bgcolor == PALETTE[theme]["paper"]
    for trace in fig.data:
        for attr in ("x", "y", "z"):
            values = getattr(trace, attr, None)
            if values is None or trace.type == "heatmap" and attr != "z":
                continue
            try:
                v = np.asarray(values, dtype=float).ravel()
            except (TypeError, ValueError):
                continue  # category labels
            assert v.size == 0 or np.isfinite(v).any(), f"{trace.type} {trace.name!r}: {attr} is all NaN"
    return json.loads(text)


def _is_empty_message(fig: go.Figure, words: str) -> bool:
    return len(fig.data) == 0 and any(words in (a.text or "") for a in fig.layout.annotations)


def _axis_titles(fig: go.Figure) -> list[str]:
    out = []
    for name in fig.layout:
        axis = fig.layout[name]
        if (name.startswith(("xaxis", "yaxis")) and axis is not None and axis.visible is not False
                and axis.title is not None and axis.title.text):
            out.append(axis.title.text)
    return out


def _black(F, K, t, vol, D, call=True) -> float:
    """QuantLib's undiscounted Black formula times D."""
    kind = ql.Option.Call if call else ql.Option.Put
    return ql.blackFormula(kind, float(K), float(F), float(vol * math.sqrt(t)), float(D))


# -- greeks -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("greek", list(GREEK_SPECS))
@pytest.mark.parametrize("theme", THEMES)
def test_greeks_figure_structure_units_and_payload(btc, fits, greek, theme):
    fig = greeks_figure(btc, fits["svi"], greek=greek, theme=theme)
    data = _assert_sane(fig, theme)
    assert [t.type for t in fig.data] == ["surface"]
    surface = data["data"][0]
    assert "bdata" in surface["z"] and surface["z"]["dtype"] == "f4"  # float32 typed array
    m = len(fits["svi"].expiry_ttm)
    assert np.asarray(fig.data[0].z).shape[0] == m
    scene = fig.layout.scene
    for axis in (scene.xaxis, scene.yaxis, scene.zaxis):
        assert axis.title.text
    assert "std devs" in scene.xaxis.title.text and "days" in scene.yaxis.title.text
    colourbar = fig.data[0].colorbar.title.text
    unit = {"delta": "%", "gamma": "1% move", "vega": "per vol point", "theta": "per day", "vanna": "per vol point",
            "volga": "per vol pt²"}[greek]
    assert unit in colourbar
    assert ("log scale" in colourbar) == GREEK_SPECS[greek].log


def test_greek_units_match_quantlib_black_differences(btc, fits):
    """Display units checked against finite differences of QuantLib's Black formula at a few grid points."""
    result = fits["heston"]
    ex = fitted_expiries(btc, result)
    grid, _ = greeks_of_fit(btc, result, ex, n=21, quoted=True)
    for j, i in [(0, 10), (3, 6), (len(ex.ttm) - 1, 15), (len(ex.ttm) - 1, 3)]:
        F, K, t, vol = grid.forward[j], grid.strike[j, i], grid.expiry_ttm[j], grid.vol[j, i]
        D = grid.discount[j]
        call = bool(grid.is_call[j, i])
        r = -math.log(D) / t
        price = lambda F_=F, vol_=vol, t_=t: _black(F_, K, t_, vol_, math.exp(-r * t_), call)  # noqa: E731
        # call delta in percent: 100 D N(d1)
        d1 = (math.log(F / K) + 0.5 * vol * vol * t) / (vol * math.sqrt(t))
        assert greek_values(grid, "delta")[j, i] == pytest.approx(100 * D * norm.cdf(d1), abs=1e-9)
        # vega per vol point: price change for +/- half a vol point
        vega = price(vol_=vol + 0.005) - price(vol_=vol - 0.005)
        assert greek_values(grid, "vega")[j, i] == pytest.approx(vega, rel=1e-4, abs=1e-9 * F)
        # gamma: change of delta (percent) for a 1% move of the forward
        h = 1e-3 * F
        gamma = (price(F_=F + h) - 2 * price() + price(F_=F - h)) / (h * h)
        assert greek_values(grid, "gamma")[j, i] == pytest.approx(gamma * F, rel=1e-3, abs=1e-9)
        # theta per calendar day, forward and rate held: value change as time passes
        dt = min(1e-4, 0.01 * t)
        theta = -(price(t_=t + dt) - price(t_=t - dt)) / (2 * dt) / 365.0
        assert greek_values(grid, "theta")[j, i] == pytest.approx(theta, rel=1e-4, abs=1e-9 * F)


def test_gamma_and_decay_use_a_labelled_log_axis(btc, fits):
    for greek in ("gamma", "theta"):
        fig = greeks_figure(btc, fits["heston"], greek=greek)
        z = np.asarray(fig.data[0].z, dtype=float)
        shown = np.asarray(fig.data[0].customdata, dtype=float) * (-1 if greek == "theta" else 1)
        positive = np.isfinite(shown) & (shown > np.nanmax(shown) * 1e-3)
        np.testing.assert_allclose(z[positive], np.log10(shown[positive]), rtol=1e-5, atol=1e-5)
        ticks = fig.layout.scene.zaxis
        assert len(ticks.tickvals) >= 3 and len(ticks.tickvals) == len(ticks.ticktext)
        assert "log" in ticks.title.text
        # the short end, where these greeks are largest, is put at the back
        assert fig.layout.scene.yaxis.autorange == "reversed"
    assert greeks_figure(btc, fits["heston"], greek="vega").layout.scene.yaxis.autorange is True


def test_nice_log_ticks_are_1_2_5():
    assert nice_log_ticks(0.03, 12.0) == [0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10]
    assert nice_log_ticks(-1.0, 2.0) == []


@pytest.mark.parametrize("model", ["sabr", "ssvi", "bates"])
def test_greeks_and_density_for_other_models(btc, fits, model):
    fig = greeks_figure(btc, fits[model], greek="gamma")
    _assert_sane(fig)
    assert fig.data and np.isfinite(np.asarray(fig.data[0].z, dtype=float)).mean() > 0.95
    assert len(density_figure(btc, fits[model]).data) >= len(fits[model].expiry_ttm)


def test_density_is_a_probability_with_the_forward_as_mean(btc, fits):
    result = fits["svi"]
    fig = density_figure(btc, result, theme="light")
    _assert_sane(fig, "light")
    lines = [t for t in fig.data if t.mode == "lines"]
    assert len(lines) == len(result.expiry_ttm)
    assert fig.layout.xaxis.type == "log" and "Strike" in fig.layout.xaxis.title.text
    assert "%" in fig.layout.yaxis.title.text
    ex = fitted_expiries(btc, result)
    for j, line in enumerate(lines):  # +/- 6 ATM sd: the fat wings beyond hold a few tenths of a percent at most
        K = np.asarray(line.x, dtype=float)
        y = np.asarray(line.y, dtype=float)  # percent per 1 % of strike = q(K) K
        total = np.trapezoid(y, np.log(K))
        mean = np.trapezoid(y * K, np.log(K))
        assert total == pytest.approx(1.0, abs=5e-3)
        assert mean == pytest.approx(ex.forward[j], rel=2e-3)  # a martingale: the mean is the forward


def test_greeks_without_a_usable_fit(btc, fits, failed, broken):
    assert _is_empty_message(greeks_figure(btc, None, greek="vega"), "calibrate")
    assert _is_empty_message(greeks_figure(btc, broken, greek="vega"), "No fitted model")
    assert _is_empty_message(density_figure(btc, broken), "No fitted model")
    fig = greeks_figure(btc, failed, greek="delta")
    assert len(fig.data) == 1
    assert any("did not converge" in a.text for a in fig.layout.annotations)
    with pytest.raises(ValueError):
        greeks_figure(btc, fits["svi"], greek="rho")


# -- parameters ---------------------------------------------------------------------------------------------------

def test_params_records_surface_model(fits):
    result = fits["heston"]
    rows = params_records(result)
    specs = {s.name: s for s in get_model("heston").params}
    assert [r["name"] for r in rows] == list(result.param_names)
    for row in rows:
        spec = specs[row["name"]]
        assert row["value"] == result.params[row["name"]]
        assert row["std_error"] == result.std_errors[row["name"]]
        assert row["rel_error"] == pytest.approx(abs(row["std_error"] / row["value"]))
        assert (row["lower"], row["upper"], row["doc"]) == (spec.lower, spec.upper, spec.doc)
        assert row["expiry"] is None and row["at_bound"] == ""
    assert [c[0] for c in param_columns(result)][:2] == ["name", "value"]
    json.dumps(rows, allow_nan=False)


def test_params_records_ssvi_has_bounds_for_every_expiry_parameter(fits):
    rows = params_records(fits["ssvi"])
    assert len(rows) == len(fits["ssvi"].param_names) > 3
    assert all(r["lower"] is not None and r["doc"] for r in rows)


def test_params_records_slice_model_one_row_per_expiry_and_parameter(fits):
    result = fits["svi"]
    rows = params_records(result)
    m, p = len(result.expiry_ttm), len(result.param_names)
    assert len(rows) == m * p
    assert len({r["expiry"] for r in rows}) == m
    for j in range(m):
        block = rows[j * p:(j + 1) * p]
        assert [r["name"] for r in block] == list(result.param_names)
        assert block[0]["days"] == pytest.approx(365.0 * result.expiry_ttm[j])
        assert [r["value"] for r in block] == [result.params[n][j] for n in result.param_names]
    assert param_columns(result)[0][0] == "expiry"


def test_params_records_flag_a_parameter_on_its_bound(fits):
    r = fits["heston"]
    lower = {s.name: s.lower for s in get_model("heston").params}["rho"]
    pinned = dataclasses.replace(r, params=dict(r.params, rho=lower))
    flags = {row["name"]: row["at_bound"] for row in params_records(pinned)}
    assert flags["rho"] == "lower" and flags["kappa"] == ""


def test_fit_stats_records(fits, failed, btc):
    from calibration.arbitrage import check_arbitrage

    rows = {r["key"]: r for r in fit_stats_records(fits["heston"])}
    assert rows["rmse_vol_points"]["value"] == f"{fits['heston'].rmse_vol_points:.3f}"
    assert rows["rmse_vol_points"]["unit"] == "vol points"
    assert rows["inside_spread_share"]["number"] == pytest.approx(100 * fits["heston"].inside_spread_share)
    assert rows["elapsed_s"]["unit"] == "s" and rows["nfev"]["number"] == fits["heston"].nfev
    feller = rows["feller_margin"]
    assert feller["number"] == pytest.approx(fits["heston"].feller_margin)
    assert feller["flag"] == ("warn" if feller["number"] < 0 else "")
    assert rows["butterfly_violations"]["number"] == fits["heston"].arbitrage["butterfly_violations"]
    unchecked = dataclasses.replace(fits["heston"], arbitrage={"butterfly_violations": None,
                                                               "calendar_violations": None})
    assert {r["key"]: r["value"] for r in fit_stats_records(unchecked)}["butterfly_violations"] == "not checked"
    assert rows["n_params"]["number"] == 5

    svi = {r["key"]: r for r in fit_stats_records(fits["svi"])}
    assert "feller_margin" not in svi
    assert svi["n_params"]["number"] == 5 * len(fits["svi"].expiry_ttm)

    bad = {r["key"]: r for r in fit_stats_records(failed)}
    assert bad["success"]["value"] == "no" and bad["success"]["flag"] == "bad"
    assert bad["message"]["value"] == failed.message

    ex = fitted_expiries(btc, fits["svi"])
    report = check_arbitrage(fits["svi"].fitted_surface(), ex.ttm, ex.forward, ex.discount)
    checked = dataclasses.replace(fits["svi"], arbitrage=report.to_dict())
    arb = {r["key"]: r for r in fit_stats_records(checked)}
    assert arb["butterfly_violations"]["number"] == report.n_butterfly
    assert arb["calendar_violations"]["number"] == report.n_calendar
    json.dumps(fit_stats_records(checked), allow_nan=False)


def test_param_labels():
    assert [param_label(n) for n in ("rho", "v0", "theta_1", "dtheta_12", "mu_j", "a")] == \
        ["ρ", "v₀", "θ₁", "Δθ₁₂", "μⱼ", "a"]


@pytest.mark.parametrize("theme", THEMES)
def test_correlation_figure_surface_model_is_the_annotated_matrix(fits, theme):
    result = fits["heston"]
    fig = correlation_figure(result, theme=theme)
    _assert_sane(fig, theme)
    (heat,) = fig.data
    z = np.asarray(heat.z, dtype=float)
    corr = np.asarray(result.correlation, dtype=float)
    assert z.shape == corr.shape == (5, 5)
    off = ~np.eye(5, dtype=bool)
    np.testing.assert_allclose(z[off], corr[off])
    assert np.isnan(np.diag(z)).all()  # the diagonal is left blank
    assert (heat.zmin, heat.zmax) == (-1.0, 1.0)
    assert heat.texttemplate == "%{text}"
    assert np.asarray(heat.text)[0, 1] == f"{corr[0, 1]:.2f}"
    assert all(_axis_titles(fig))


def test_correlation_figure_slice_model_pairs_by_expiry(fits):
    result = fits["svi"]
    fig = correlation_figure(result)
    (heat,) = fig.data
    z = np.asarray(heat.z, dtype=float)
    m = len(result.expiry_ttm)
    assert z.shape == (10, m)  # 5 parameters: 10 pairs
    corr = np.asarray(result.correlation, dtype=float)
    assert z[0, 2] == pytest.approx(corr[2, 0, 1])  # pair (a, b) at the third expiry
    assert list(heat.y)[0] == "a–b"
    single = correlation_figure(result, expiry=2)
    assert np.asarray(single.data[0].z).shape == (5, 5)
    assert correlation_figure(fits["sabr"]).data[0].z.shape == (3, m)


def test_correlation_figure_many_parameters_and_missing_values(fits, broken):
    ssvi = correlation_figure(fits["ssvi"])
    p = len(fits["ssvi"].param_names)
    assert p > 10 and ssvi.data[0].texttemplate == ""  # too many to annotate: numbers on hover
    assert ssvi.layout.height >= 22 * p
    assert _is_empty_message(correlation_figure(None), "No fit")
    nan = dataclasses.replace(broken, correlation=np.full((5, 5), np.nan).tolist())
    assert _is_empty_message(correlation_figure(nan), "not available")


@pytest.mark.parametrize("theme", THEMES)
def test_sensitivity_figure_heston_panels_and_ranking(btc, fits, theme):
    result = fits["heston"]
    fig = sensitivity_figure(btc, result, theme=theme)
    _assert_sane(fig, theme)
    heats = [t for t in fig.data if t.type == "heatmap"]
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(heats) == 5 and len(bars) == 1
    assert list(heats[0].x) == list(BUCKET_LABELS)
    assert fig.layout.coloraxis.cmin == -fig.layout.coloraxis.cmax
    assert "vol points" in fig.layout.coloraxis.colorbar.title.text
    # the ranking equals the core's ranking (surface model: one column per parameter)
    sens = sensitivity(result.fitted_surface(), quote_arrays(btc), std_errors=result.std_error_array)
    cells = sensitivity_cells(btc, result)
    assert [n for n, _ in cells.ranking] == [n for n, _ in sens.ranking_by_param]
    for (_, mine), (_, core) in zip(cells.ranking, sens.ranking_by_param):
        assert mine == pytest.approx(100 * core, rel=1e-9)
    bar_values = np.asarray(bars[0].x, dtype=float)[::-1]  # drawn bottom-up
    assert np.all(np.diff(bar_values) <= 1e-6)
    # v0 (the spot variance) moves the short end up; the first panel is the most influential parameter
    v0 = cells.cells[cells.names.index("v0")]
    assert np.nanmean(v0[0]) > 0
    assert heats[0].name == cells.ranking[0][0]


def test_sensitivity_slice_model_matches_a_bumped_parameter(btc, fits):
    """SVI (12 expiries x 5 parameters) reads as 5 panels; a cell equals the mean vol change of its quotes for a
    one-standard-error move, to first order: the change for a thousandth of it, re-evaluated through the fitted
    surface, times a thousand."""
    result = fits["svi"]
    fig = sensitivity_figure(btc, result)
    assert len([t for t in fig.data if t.type == "heatmap"]) == 5
    cells = sensitivity_cells(btc, result)
    quotes = quote_arrays(btc)
    j, name = 5, "a"
    i = list(result.param_names).index(name)
    se = result.std_error_array[j, i]
    bumped = result.param_array.copy()
    bumped[j, i] += 1e-3 * se
    base = result.fitted_surface()
    moved = dataclasses.replace(base, params=bumped)
    rows = quotes.expiry_index == j
    sub = quotes.take(rows)
    change = 100 * 1e3 * (moved.vols(sub) - base.vols(sub))
    from components.figures.common import call_delta

    bucket = delta_bucket(call_delta(sub.k, base.vols(sub), sub.ttm))
    for b in np.unique(bucket):
        assert cells.cells[i, j, b] == pytest.approx(change[bucket == b].mean(), rel=1e-3, abs=1e-6)


def test_sensitivity_flags_expiries_the_quotes_do_not_identify(btc, fits):
    result = fits["svi"]
    se = {k: list(v) for k, v in result.std_errors.items()}
    se["b"][0] = 1e3  # a hopeless standard error on the first expiry
    fig = sensitivity_figure(btc, dataclasses.replace(result, std_errors=se))
    cells = sensitivity_cells(btc, dataclasses.replace(result, std_errors=se))
    assert not cells.identified[0] and cells.identified[1:].all()
    assert np.isnan(cells.cells[:, 0, :]).all()
    heat = next(t for t in fig.data if t.type == "heatmap")
    assert "(n/i)" in list(heat.y)[0]
    assert "not identified" in fig.layout.title.text


def test_sensitivity_many_parameters_and_no_fit(btc, fits, broken):
    fig = sensitivity_figure(btc, fits["ssvi"])
    heats = [t for t in fig.data if t.type == "heatmap"]
    bar = next(t for t in fig.data if t.type == "bar")
    assert len(heats) == 8 and len(bar.y) == len(fits["ssvi"].param_names)  # 8 panels, every one ranked
    assert _is_empty_message(sensitivity_figure(btc, None), "calibrate")
    assert _is_empty_message(sensitivity_figure(btc, broken), "calibrate")


# -- data quality -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("theme", THEMES)
def test_forwards_figure_btc_with_venue_forwards(btc, theme):
    fig = forwards_figure(btc, theme=theme)
    _assert_sane(fig, theme)
    f = btc.forwards.sort_values("ttm")
    names = [t.name for t in fig.data]
    assert {"Forward used", "Venue forward", "Spot", "Parity − venue", "Parity RMSE", "Pairs in bid-ask"} <= set(names)
    used = next(t for t in fig.data if t.name == "Forward used")
    assert len(used.x) == len(f)
    np.testing.assert_allclose(np.asarray(used.y, dtype=float), f["forward"], rtol=1e-6)
    diff = next(t for t in fig.data if t.name == "Parity − venue")
    expected = 1e4 * (f["forward"] / f["venue_forward"] - 1.0)
    np.testing.assert_allclose(np.asarray(diff.y, dtype=float), expected, rtol=1e-4, atol=1e-4)
    rmse = next(t for t in fig.data if t.name == "Parity RMSE")
    expected = 1e4 * f["parity_rmse"] / (f["discount"] * f["forward"])
    np.testing.assert_allclose(np.asarray(rmse.y, dtype=float), expected, rtol=1e-5)
    titles = _axis_titles(fig)
    assert any("bp" in t for t in titles) and any("(%)" in t for t in titles) and "Expiry" in titles


def test_forwards_figure_spx_without_venue_forwards_uses_a_log_rmse_axis(spx):
    fig = forwards_figure(spx)
    names = {t.name for t in fig.data}
    assert "Venue forward" not in names and "Parity − venue" not in names
    rmse = next(t for t in fig.data if t.name == "Parity RMSE")
    values = np.asarray(rmse.y, dtype=float)
    assert values.max() > 30 * np.median(values)  # one expiry's parity is much worse than the rest
    assert fig.layout[rmse.yaxis.replace("y", "yaxis")].type == "log"


def test_drops_figure_counts(btc):
    fig = drops_figure(btc, theme="light")
    _assert_sane(fig, "light")
    by_reason = next(t for t in fig.data if t.orientation == "h")
    counts = dict(zip(by_reason.y, np.asarray(by_reason.x, dtype=float)))
    assert counts == {k: float(v) for k, v in btc.drops.counts.items()}
    stacks = [t for t in fig.data if t.orientation != "h"]
    totals = sum(np.asarray(t.y, dtype=float) for t in stacks)
    per_expiry = btc.quotes.groupby("expiry").size().sort_index().to_numpy()
    np.testing.assert_array_equal(totals, per_expiry)
    fitted = next(t for t in stacks if t.name == "Fitted")
    assert np.asarray(fitted.y, dtype=float).sum() == btc.drops.n_kept
    problems = sum(v for k, v in btc.drops.counts.items() if k not in BY_DESIGN_REASONS)
    assert f"({problems} for data problems)" in fig.layout.title.text


# -- compare ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [1, 2, 3])
def test_compare_records_side_by_side(fits, n):
    results = [fits[m] for m in ("svi", "heston", "bates")[:n]]
    rows = compare_records(results)
    columns = [c[0] for c in compare_columns(results)]
    assert columns == ["statistic", "unit"] + [f"fit_{i + 1}" for i in range(n)] + ["best"]
    by_key = {r["key"]: r for r in rows}
    for i, r in enumerate(results):
        assert by_key["rmse_vol_points"][f"fit_{i + 1}"] == f"{r.rmse_vol_points:.3f}"
    best = min(range(n), key=lambda i: results[i].rmse_vol_points)
    assert by_key["rmse_vol_points"]["best"] == (fit_name(results[best], best) if n > 1 else "")
    keys = [r["key"] for r in rows]
    if n > 1:  # the Feller margin (Heston, Bates) sits where fit_stats puts it, with a dash for SVI
        assert by_key["feller_margin"]["fit_1"] == "—"
        assert keys.index("feller_margin") < keys.index("butterfly_violations")
    json.dumps(rows, allow_nan=False)


def test_compare_keeps_at_most_three_fits_of_the_snapshot(btc, spx, fits):
    results = [fits[m] for m in ("svi", "sabr", "heston", "bates")]
    assert len(compare_records(results)[0]) == 2 + 3 + 2  # key, statistic, unit, 3 fits, best
    fig = compare_smiles_figure(btc, results)
    assert "only the first 3" in fig.layout.title.text
    other = calibrate(spx, CalibrationSettings(model="black"))
    fig = compare_residuals_figure(btc, [fits["svi"], other])
    assert "another snapshot" in fig.layout.title.text
    assert len([t for t in fig.data if t.type == "bar"]) == 1
    assert compare_records([]) == []
    assert _is_empty_message(compare_smiles_figure(btc, []), "Pin up to three")
    assert _is_empty_message(compare_residuals_figure(btc, [None]), "Pin up to three")


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("theme", THEMES)
def test_compare_smiles_figure(btc, fits, n, theme):
    results = [fits[m] for m in ("svi", "heston", "bates")[:n]]
    fig = compare_smiles_figure(btc, results, theme=theme)
    _assert_sane(fig, theme)
    m = len(fitted_expiries(btc, None).ttm)
    curves = [t for t in fig.data if t.mode == "lines"]
    assert len(curves) == n * m
    for i, r in enumerate(results):
        mine = [t for t in curves if t.name == fit_name(r, i)]
        assert len(mine) == m and all(t.line.color == SERIES[i] for t in mine)
    assert sum(1 for t in fig.data if t.showlegend) == n + 1  # each fit once, and the market
    titles = [a.text for a in fig.layout.annotations]
    assert "Log-moneyness ln(K/F)" in titles and "Implied vol (%)" in titles


@pytest.mark.parametrize("n", [1, 2, 3])
def test_compare_residuals_figure_difference_matches_residual_tables(btc, fits, n):
    results = [fits[m] for m in ("svi", "heston", "bates")[:n]]
    fig = compare_residuals_figure(btc, results, theme="light")
    _assert_sane(fig, "light")
    bars = [t for t in fig.data if t.type == "bar"]
    heats = [t for t in fig.data if t.type == "heatmap"]
    assert len(bars) == n and len(heats) == n - 1
    assert "vol points" in fig.layout.yaxis.title.text
    # per-expiry RMSE of the first fit from its own residual table
    res = results[0].residual_frame()
    expected = res.groupby("expiry")["residual_vol_points"].apply(lambda s: math.sqrt((s ** 2).mean()))
    np.testing.assert_allclose(np.asarray(bars[0].y, dtype=float), expected.sort_index().to_numpy(), rtol=1e-5)
    for i, heat in enumerate(heats, start=1):
        other = results[i].residual_frame()
        merged = res.merge(other, on=["expiry", "strike", "option_type"], suffixes=("_a", "_b"))
        diff = 100 * (merged["model_vol_b"] - merged["model_vol_a"])
        z = np.asarray(heat.z, dtype=float)
        count = np.asarray(heat.customdata, dtype=float)
        ok = np.isfinite(z)
        assert count.sum() == len(merged)
        assert np.sum(z[ok] * count[ok]) / count.sum() == pytest.approx(diff.mean(), rel=1e-4, abs=1e-5)
        assert "vol points" in heat.colorbar.title.text or i > 1


def test_compare_marks_a_failed_fit(btc, fits, failed):
    fig = compare_smiles_figure(btc, [fits["svi"], failed])
    assert any("(not converged)" in (t.name or "") for t in fig.data)
    assert compare_columns([failed])[2][1].endswith("(not converged)")
