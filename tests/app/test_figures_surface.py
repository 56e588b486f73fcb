"""Figure functions of the Surface, Smiles, Residuals and Term-structure views (pure: no browser).

Real fits of the bundled demo snapshots (a slice model, SVI, and surface models, SSVI and Heston); checks of the
figure structure, units in every axis title, float32 payloads, JSON size, themes, and the behaviour without a fit,
with a failed fit and with a snapshot whose quotes were all dropped. Numbers are checked against independent
routes: the per-quote model vols and residuals computed by ``calibrate`` itself, hand-computed deltas, and smiles
whose ATM vol, skew and wings are known in closed form.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from calibration.calibrate import CalibrationSettings, calibrate
from calibration.cleaning import REASONS
from calibration.snapshot import load_snapshot
from components.figures import residuals_figure, smiles_figure, surface_figure, term_figure
from components.figures import common
from components.figures.residuals import BUCKET_LABELS, delta_bucket, residual_table
from components.figures.smiles import grid_shape
from components.figures.term import term_measures
from components.theme import PALETTE

DATA = Path(__file__).resolve().parents[2] / "data"
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
#: Surface tab budget (issue 4): JSON sent for the surface figure.
SURFACE_JSON_LIMIT = 1_000_000


# -- fixtures -----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def snapshots():
    return {name: load_snapshot(DATA / f"{name}_demo.csv") for name in ("btc", "spx")}


@pytest.fixture(scope="module")
def fits(snapshots):
    """(snapshot name, model) -> CalibrationResult: a slice model and two surface models (vol and price output)."""
    out = {}
    for name, snap in snapshots.items():
        for model in ("svi", "ssvi", "heston"):
            out[name, model] = calibrate(snap, CalibrationSettings(model=model))
    return out


CASES = [("btc", "svi"), ("spx", "svi"), ("btc", "ssvi"), ("spx", "heston")]


def _values(array) -> np.ndarray:
    return np.asarray(array, dtype=float).ravel()


def _assert_no_nan_only_traces(fig: go.Figure) -> None:
    for trace in fig.data:
        for attr in ("z", "y"):
            values = getattr(trace, attr, None)
            if values is not None and trace.type != "heatmap":
                v = _values(values)
                assert v.size == 0 or np.isfinite(v).any(), f"{trace.type} {trace.name!r}: {attr} is all NaN"


def _layout_axes(fig: go.Figure, prefix: str) -> list:
    layout = fig.layout
    return [layout[name] for name in layout if name.startswith(prefix) and layout[name] is not None]


# -- common helpers -----------------------------------------------------------------------------------------------

def test_call_delta_matches_hand_computed_values():
    # k = 0, vol 20%, t = 1: d1 = 0.1, N(0.1) = 0.539827837277029 (normal table / mpmath)
    assert common.call_delta(0.0, 0.2, 1.0) == pytest.approx(0.539827837277029, abs=1e-12)
    # k = ln(1.1), vol 50%, t = 0.25: d1 = -ln(1.1)/0.25 + 0.125 = -0.256244...; N(d1) by erfc
    d1 = -math.log(1.1) / 0.25 + 0.125
    assert common.call_delta(math.log(1.1), 0.5, 0.25) == pytest.approx(0.5 * math.erfc(-d1 / math.sqrt(2)), abs=1e-12)
    put = common.option_delta(0.0, 0.2, 1.0, False)
    assert put == pytest.approx(0.539827837277029 - 1.0, abs=1e-12)
    assert np.isnan(common.call_delta(0.0, np.nan, 1.0)) and np.isnan(common.call_delta(0.0, 0.0, 1.0))


def test_f32_and_pct_send_float32():
    out = common.pct([0.5, np.nan])
    assert out.dtype == np.float32 and out[0] == pytest.approx(50.0) and np.isnan(out[1])


def test_expiry_ticks_cover_the_range_with_trader_labels():
    vals, text = common.expiry_ticks([1.7, 307.8])
    assert text[0] in ("1d", "2d") and "1y" in text and len(vals) == len(text) <= 8
    assert all(a < b for a, b in zip(vals, vals[1:]))
    assert common.expiry_ticks([]) == ([], [])


def test_expiry_labels_add_the_time_only_when_two_expiries_share_a_date():
    ex = pd.to_datetime(["2026-12-18T14:30:00Z", "2026-12-18T21:00:00Z", "2027-01-15T21:00:00Z"], utc=True)
    assert common.expiry_labels(ex) == ("18 Dec 26 14:30", "18 Dec 26 21:00", "15 Jan 27")


@pytest.mark.parametrize("case", CASES)
def test_model_vols_reproduce_calibrate_residual_table(snapshots, fits, case):
    """The figures' model evaluation agrees with the per-quote model vols computed by calibrate."""
    snap, result = snapshots[case[0]], fits[case]
    q = common.quote_frame(snap, result)
    fitted = q.loc[q["fitted"]]
    assert len(fitted) == result.n_quotes
    res = result.residual_frame()
    assert np.nansum(fitted["residual_vol_points"]) == pytest.approx(np.nansum(res["residual_vol_points"]), abs=1e-9)
    vols = common.model_vols(result, fitted["forward"], fitted["strike"], fitted["ttm"], fitted["discount"])
    ok = np.isfinite(fitted["model_vol"].to_numpy())
    np.testing.assert_allclose(vols[ok], fitted["model_vol"].to_numpy()[ok], rtol=0, atol=2e-6)


def test_delta_grid_is_even_in_delta_within_the_limits(snapshots, fits):
    grid = common.vol_grid(snapshots["btc"], fits["btc", "svi"], n=11, axis="delta")
    np.testing.assert_allclose(grid.delta, np.tile(np.linspace(0.95, 0.05, 11), (grid.expiries.m, 1)), atol=2e-3)
    assert np.all(np.diff(grid.k, axis=1) > 0)


def test_standardised_range_scales_with_sqrt_time(snapshots, fits):
    snap, result = snapshots["spx"], fits["spx", "svi"]
    ex = common.fitted_expiries(snap, result)
    atm = common.atm_vols(result, ex)
    lo, hi = common.standardised_k_range(snap, ex, atm)
    sd = atm * np.sqrt(ex.ttm)
    q_lo, q_hi = common.quoted_k_range(snap, ex)
    inner = (lo > q_lo.min()) & (hi < q_hi.max())  # not clipped to the snapshot's quoted envelope
    assert inner.sum() >= ex.m // 2
    np.testing.assert_allclose((lo / sd)[inner], lo[inner][0] / sd[inner][0])
    np.testing.assert_allclose((hi / sd)[inner], hi[inner][0] / sd[inner][0])
    assert common.Z_LIMITS[0] <= -lo[inner][0] / sd[inner][0] <= common.Z_LIMITS[1]
    assert lo.min() >= q_lo.min() - 1e-12 and hi.max() <= q_hi.max() + 1e-12


# -- surface ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("x_axis", ["k", "strike", "delta"])
def test_surface_figure_structure_units_and_size(snapshots, fits, case, x_axis):
    snap, result = snapshots[case[0]], fits[case]
    fig = surface_figure(snap, result, x_axis=x_axis, theme="dark")
    kinds = [t.type for t in fig.data]
    assert kinds[0] == "surface" and "scatter3d" in kinds
    surface = fig.data[0]
    assert surface.z.dtype == np.float32 and surface.z.shape == (len(result.expiry_ttm), 61)
    z = _values(surface.z)
    assert np.isfinite(z).mean() > 0.95 and 1.0 < np.nanmin(z) and np.nanmax(z) < 500.0  # percent, not decimals
    assert surface.cmin <= np.nanmin(z) and surface.cmax >= np.nanmax(z)
    scene = fig.layout.scene
    assert "(%)" in scene.zaxis.title.text
    assert "days" in scene.yaxis.title.text and list(scene.yaxis.ticktext)
    assert scene.xaxis.title.text == common.X_TITLES[x_axis]
    assert "(%)" in surface.colorbar.title.text
    market = next(t for t in fig.data if t.name == "Market mid")
    assert "vol points" in market.marker.colorbar.title.text
    assert market.marker.cmid == 0.0 and market.marker.cmin == -market.marker.cmax
    for word in ("K ", "days", "delta", "bid / mid / ask", "model", "vol pts"):
        assert word in market.hovertemplate
    assert market.customdata.shape[1] == len(common.QUOTE_HOVER_FIELDS)
    _assert_no_nan_only_traces(fig)
    text = fig.to_json()
    assert len(text) < SURFACE_JSON_LIMIT
    assert '"dtype":"f4"' in text


def test_surface_hover_text_is_laid_out_the_way_plotly_indexes_it(snapshots, fits):
    """plotly.js reads a surface's per-point text as text[column][row] (checked by hovering in Chromium)."""
    snap, result = snapshots["btc"], fits["btc", "svi"]
    fig = surface_figure(snap, result, x_axis="strike")
    surface = fig.data[0]
    m, n = surface.z.shape
    text = np.asarray(surface.text, dtype=object)
    assert text.shape == (n, m)
    labels = common.fitted_expiries(snap, result).label
    for row, col in ((0, 0), (m - 1, 5), (3, n - 1)):
        assert text[col][row].startswith(labels[row])
        assert f"K {float(surface.x[row][col]):,.6g}"[:6] in text[col][row]


def test_surface_market_points_are_the_fitted_mids_coloured_by_their_residual(snapshots, fits):
    snap, result = snapshots["btc"], fits["btc", "svi"]
    market = next(t for t in surface_figure(snap, result).data if t.name == "Market mid")
    res = result.residual_frame()
    assert len(market.z) == result.n_quotes
    np.testing.assert_allclose(np.sort(market.z), np.sort(100 * res["vol_mid"].to_numpy()), atol=1e-4)
    np.testing.assert_allclose(np.sort(market.marker.color), np.sort(res["residual_vol_points"].to_numpy()),
                               atol=1e-5)


def test_surface_reports_and_marks_arbitrage(snapshots, fits):
    """The SPX SVI fit has calendar violations on its quoted range: the figure states the counts, and marks in the
    violation colour those that fall on the drawn surface, on the model surface itself."""
    snap, result = snapshots["spx"], fits["spx", "svi"]
    points = common.arbitrage_points(snap, result)
    assert len(points) > 0
    fig = surface_figure(snap, result, theme="light")
    summary = next(a.text for a in fig.layout.annotations if "arbitrage" in a.text)
    n_fly, n_cal = (int((points["kind"] == kind).sum()) for kind in ("butterfly", "calendar"))
    assert f"{n_fly} butterfly and {n_cal} calendar" in summary
    marks = [t for t in fig.data if "arbitrage" in (t.name or "")]
    assert sum(len(t.x) for t in marks) <= len(points)
    for t in marks:
        assert t.marker.color == PALETTE["light"]["violation"]
        assert np.isfinite(_values(t.z)).all()
    clean = surface_figure(snapshots["btc"], fits["btc", "ssvi"])
    if common.arbitrage_points(snapshots["btc"], fits["btc", "ssvi"]).empty:
        assert any(a.text.startswith("No static arbitrage") for a in clean.layout.annotations)


def test_surface_uses_the_report_stored_in_the_result(snapshots, fits):
    """A report stored in the result (ArbitrageReport.to_dict) is used as is; its points are drawn on the model
    surface: the marker's vol is the fitted surface's vol at that expiry and strike."""
    from calibration.arbitrage import BUTTERFLY_COLUMNS, CALENDAR_COLUMNS, ArbitrageReport
    from calibration.models.base import QuoteArrays

    snap, result = snapshots["btc"], fits["btc", "svi"]
    ex = common.fitted_expiries(snap, result)
    j = 4
    row = dict.fromkeys(BUTTERFLY_COLUMNS, 0.0) | {"expiry_ttm": ex.ttm[j], "forward": ex.forward[j], "k": 0.01,
                                                   "strike": ex.forward[j] * math.exp(0.01), "g": -0.1}
    report = ArbitrageReport(
        butterfly=pd.DataFrame([row], columns=list(BUTTERFLY_COLUMNS)),
        calendar=pd.DataFrame({c: pd.Series(dtype=float) for c in CALENDAR_COLUMNS}),
        expiry_ttm=ex.ttm, k_grid=np.linspace(-0.2, 0.2, 5)[None, :].repeat(ex.m, 0),
    )
    stored = dataclasses.replace(result, arbitrage=report.to_dict())
    points = common.arbitrage_points(snap, stored)
    assert list(points["kind"]) == ["butterfly"] and points["k"].iloc[0] == pytest.approx(0.01)
    fig = surface_figure(snap, stored)
    mark = next(t for t in fig.data if (t.name or "").startswith("Butterfly arbitrage (1 pts"))
    quote = QuoteArrays.from_arrays(forward=ex.forward[j], strike=ex.forward[j] * math.exp(0.01), ttm=ex.ttm[j],
                                    is_call=True, discount=ex.discount[j])
    assert mark.z[0] == pytest.approx(100 * result.fitted_surface().vols(quote)[0], abs=1e-4)


def test_surface_without_a_fit_shows_the_market_alone(snapshots, fits):
    snap = snapshots["btc"]
    fig = surface_figure(snap, None)
    assert [t.type for t in fig.data] == ["scatter3d"]
    assert any("No fitted model" in a.text for a in fig.layout.annotations)
    nan_params = dataclasses.replace(fits["btc", "ssvi"], params={k: float("nan") for k in fits["btc", "ssvi"].params})
    assert [t.type for t in surface_figure(snap, nan_params).data] == ["scatter3d"]


def test_surface_rejects_an_unknown_axis(snapshots, fits):
    with pytest.raises(ValueError, match="x_axis"):
        surface_figure(snapshots["btc"], fits["btc", "svi"], x_axis="moneyness")


# -- themes, failed fits, empty snapshots -------------------------------------------------------------------------

FIGURES = {
    "surface": lambda s, r, theme: surface_figure(s, r, theme=theme),
    "smiles": lambda s, r, theme: smiles_figure(s, r, theme=theme),
    "residuals": lambda s, r, theme: residuals_figure(s, r, theme=theme),
    "term": lambda s, r, theme: term_figure(s, r, theme=theme),
}


@pytest.mark.parametrize("name", sorted(FIGURES))
@pytest.mark.parametrize("theme", ["dark", "light"])
def test_every_figure_follows_the_theme(snapshots, fits, name, theme):
    fig = FIGURES[name](snapshots["btc"], fits["btc", "svi"], theme)
    assert fig.layout.template.layout.paper_bgcolor == PALETTE[theme]["paper"]
    assert fig.layout.title.text.startswith("BTC · 2026-11-20 14:00 UTC · SVI")
    assert len(fig.data) > 0
    _assert_no_nan_only_traces(fig)
    json.loads(fig.to_json())  # serialisable


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_a_failed_fit_is_drawn_with_a_warning(snapshots, fits, name):
    failed = dataclasses.replace(fits["btc", "heston"], success=False, message="maximum number of evaluations")
    fig = FIGURES[name](snapshots["btc"], failed, "dark")
    notes = [a.text for a in fig.layout.annotations if a.text]
    assert any("did not converge" in t and "maximum number of evaluations" in t for t in notes)
    assert "NOT CONVERGED" in fig.layout.title.text
    assert len(fig.data) > 0
    assert all(a.font.size for a in fig.layout.annotations)  # subplot titles keep their styling


def test_without_a_fit(snapshots):
    snap = snapshots["btc"]
    smiles = smiles_figure(snap, None)
    assert smiles.data and not any(t.mode == "lines" for t in smiles.data)
    residuals = residuals_figure(snap, None)
    assert not residuals.data and "No fit yet" in residuals.layout.annotations[0].text
    term = term_figure(snap, None)
    assert {t.name for t in term.data} == {"Market (quotes)"}


def test_a_snapshot_with_every_quote_dropped(snapshots):
    snap = snapshots["btc"]
    dropped = dataclasses.replace(snap, quotes=snap.quotes.assign(status="crossed"))
    for name in ("surface", "term"):
        fig = FIGURES[name](dropped, None, "dark")
        assert not fig.data and fig.layout.annotations[0].text
    smiles = smiles_figure(dropped, None)  # the dropped quotes, greyed
    assert smiles.data and all(t.name == "Not fitted" for t in smiles.data)


# -- smiles -------------------------------------------------------------------------------------------------------

def test_grid_shape_fits_a_laptop_screen():
    assert grid_shape(1) == (1, 1) and grid_shape(4) == (2, 2) and grid_shape(13) == (4, 4)
    assert grid_shape(22) == (5, 5) and grid_shape(0) == (0, 0)
    assert all(grid_shape(n)[1] <= 5 for n in range(1, 40))


@pytest.mark.parametrize("case", CASES)
def test_smiles_one_panel_per_expiry_with_curve_bars_and_drops(snapshots, fits, case):
    snap, result = snapshots[case[0]], fits[case]
    fig = smiles_figure(snap, result, theme="dark")
    drawable = snap.quotes.loc[np.isfinite(snap.quotes[["iv_mid", "iv_ask", "iv_bid"]]).any(axis=1), "expiry"]
    n_panels = drawable.nunique()
    titles = [a for a in fig.layout.annotations if a.text.startswith("<b>")]
    assert len(titles) == n_panels
    rows, cols = grid_shape(n_panels)
    assert fig.layout.height <= 100 + 240 * rows
    market = [t for t in fig.data if t.legendgroup == "Market bid–ask (mid)"]
    assert len(market) == snap.fit_quotes["expiry"].nunique()
    assert all(t.error_y.array is not None and t.error_y.arrayminus is not None for t in market)
    curves = [t for t in fig.data if t.mode == "lines"]
    assert len(curves) >= len(result.expiry_ttm)
    dropped = [t for t in fig.data if t.name == "Not fitted"]
    assert dropped and all(t.marker.color == PALETTE["dark"]["dropped"] for t in dropped)
    reasons = " ".join(" ".join(t.text) for t in dropped)
    assert REASONS["itm"] in reasons
    shown = [t.name for t in fig.data if t.showlegend]
    assert len(shown) == len(set(shown))  # one legend entry per series
    assert any("Log-moneyness" in a.text for a in fig.layout.annotations)
    assert any("Implied vol (%)" == a.text for a in fig.layout.annotations)
    _assert_no_nan_only_traces(fig)
    assert len(fig.to_json()) < 1_000_000


def test_smiles_show_the_venue_ivs_when_the_snapshot_has_them():
    path = SHARED / "eth_deribit_2026-05-21.csv"
    if not path.exists():
        pytest.skip(f"real market sample not found at {path}")
    snap = load_snapshot(path)
    result = calibrate(snap, CalibrationSettings(model="svi"))
    fig = smiles_figure(snap, result, theme="light")
    venue = [t for t in fig.data if t.legendgroup == "Venue bid/ask IV"]
    assert venue
    ys = np.concatenate([_values(t.y) for t in venue])
    assert np.nanmedian(ys) > 10.0  # percent


# -- residuals ----------------------------------------------------------------------------------------------------

def test_delta_buckets():
    np.testing.assert_array_equal(delta_bucket(np.array([0.97, 0.8, 0.5, 0.3, 0.2, 0.03, np.nan])),
                                  [0, 1, 3, 4, 5, 6, -1])
    assert len(BUCKET_LABELS) == 7


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("space", ["vol", "price"])
def test_residuals_figure(snapshots, fits, case, space):
    snap, result = snapshots[case[0]], fits[case]
    fig = residuals_figure(snap, result, space=space, theme="dark")
    heat = next(t for t in fig.data if t.type == "heatmap")
    table = residual_table(snap, result, space=space)
    finite = table.loc[np.isfinite(table["residual"]) & (table["bucket"] >= 0)]
    counts = np.asarray(heat.customdata)[..., 0]
    assert counts.sum() == len(finite)
    assert heat.zmid == 0 and heat.zmin == -heat.zmax
    unit = "vol points" if space == "vol" else "quote currency"
    assert unit in heat.colorbar.title.text
    hist = [t for t in fig.data if t.type == "histogram"]
    assert sum(len(t.x) for t in hist) == int(np.isfinite(table["residual"]).sum())
    outside = next((t for t in fig.data if t.type == "scatter" and t.name == "Outside bid-ask"), None)
    n_out = int(table.loc[np.isfinite(table["residual"]), "outside"].sum())
    assert (0 if outside is None else len(outside.x)) == n_out
    titles = [fig.layout[a].title.text for a in fig.layout if a.startswith(("xaxis", "yaxis"))]
    assert all(titles) and any(unit in t for t in titles) and any("(count)" in t for t in titles)
    _assert_no_nan_only_traces(fig)


def test_outside_flags_agree_with_the_result(snapshots, fits):
    snap, result = snapshots["spx"], fits["spx", "svi"]
    table = residual_table(snap, result)
    share_inside = 1.0 - table["outside"].mean()
    assert share_inside == pytest.approx(result.inside_spread_share, abs=1e-12)


def test_residuals_rejects_an_unknown_space(snapshots, fits):
    with pytest.raises(ValueError, match="space"):
        residuals_figure(snapshots["btc"], fits["btc", "svi"], space="delta")


# -- term structure -----------------------------------------------------------------------------------------------

def _smile_frame(vol_of_k, *, ttm=0.25, n=41, width=0.4) -> tuple[pd.DataFrame, common.Expiries]:
    k = np.linspace(-width, width, n)
    vol = vol_of_k(k)
    frame = pd.DataFrame({"ttm": ttm, "k": k, "iv_mid": vol, "iv_bid": vol - 0.01, "iv_ask": vol + 0.01})
    ex = common.Expiries(expiry=pd.DatetimeIndex([pd.Timestamp("2027-01-01", tz="UTC")]), label=("01 Jan 27",),
                         ttm=np.array([ttm]), forward=np.array([100.0]), discount=np.array([1.0]))
    return frame, ex


def test_term_measures_of_a_flat_smile():
    frame, ex = _smile_frame(lambda k: np.full_like(k, 0.5))
    m = term_measures(frame, ex).iloc[0]
    assert m["atm"] == pytest.approx(0.5) and m["skew"] == pytest.approx(0.0, abs=1e-12)
    assert m["atm_bid"] == pytest.approx(0.49) and m["atm_ask"] == pytest.approx(0.51)
    assert m["call25"] == pytest.approx(0.5) and m["put25"] == pytest.approx(0.5)


def test_term_measures_of_a_quadratic_smile():
    """sigma(k) = 0.4 - 0.2 k + 0.5 k^2: ATM vol 0.4 and skew -0.2 exactly (the local fit is a quadratic)."""
    frame, ex = _smile_frame(lambda k: 0.4 - 0.2 * k + 0.5 * k * k, n=161)
    m = term_measures(frame, ex).iloc[0]
    assert m["atm"] == pytest.approx(0.4, abs=1e-12) and m["skew"] == pytest.approx(-0.2, abs=1e-10)
    # 25-delta strikes solved independently: N(d1) = 0.25 / 0.75 with d1 = -k/(s sqrt t) + s sqrt t / 2
    from scipy.optimize import brentq
    from scipy.stats import norm

    def vol_at_delta(delta):
        f = lambda k: norm.cdf(-k / ((0.4 - 0.2 * k + 0.5 * k * k) * 0.5) + (0.4 - 0.2 * k + 0.5 * k * k) * 0.25) - delta  # noqa: E731
        k = brentq(f, -0.4, 0.4)
        return 0.4 - 0.2 * k + 0.5 * k * k

    assert m["call25"] == pytest.approx(vol_at_delta(0.25), abs=2e-4)  # linear interpolation between quotes
    assert m["put25"] == pytest.approx(vol_at_delta(0.75), abs=2e-4)


@pytest.mark.parametrize("case", CASES)
def test_term_figure(snapshots, fits, case):
    snap, result = snapshots[case[0]], fits[case]
    fig = term_figure(snap, result, theme="dark")
    market = [t for t in fig.data if t.name == "Market (quotes)"]
    model = [t for t in fig.data if t.name and t.name.endswith("model")]
    assert len(market) == len(model) == 4
    m = len(result.expiry_ttm)
    assert all(len(t.x) == m for t in market + model)
    atm_market, atm_model = _values(market[0].y), _values(model[0].y)
    ok = np.isfinite(atm_market) & np.isfinite(atm_model)
    assert ok.mean() > 0.8
    # a good fit (rmse well under a vol point) agrees with the market ATM vols to about a vol point
    assert np.nanmax(np.abs(atm_market[ok] - atm_model[ok])) < max(3.0, 3 * result.rmse_vol_points)
    titles = [a.text for a in fig.layout.annotations]
    assert "ATM vol (%)" in titles and sum("(vol pts" in t for t in titles) == 3
    assert fig.layout.xaxis3.title.text == common.DAYS_TITLE and fig.layout.xaxis.type == "log"
    _assert_no_nan_only_traces(fig)
