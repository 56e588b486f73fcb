"""Greeks and risk-neutral density on a grid, against closed forms, QuantLib and 30-digit Breeden-Litzenberger.

The density is computed analytically from the smile (Durrleman's g with five-point k-derivatives of w); the
mpmath test below justifies that choice: it matches the second strike derivative of the fitted call prices,
differentiated at 30 digits, to about 1e-8 relative.
"""

from __future__ import annotations

import json

import mpmath as mp
import numpy as np
import pytest

from calibration.arbitrage import check_arbitrage
from calibration.black import black_greeks
from calibration.errors import CalibrationError
from calibration.greeks import GREEK_NAMES, GreeksGrid, greeks_grid
from calibration.models.base import QuoteArrays
from calibration.models.black_flat import FlatBlack
from calibration.surface import FittedSurface
from tests.calibration.surfaces import VOGT, raw_svi, ssvi_w, surface_of

SVI_SLICES = np.array([[0.010, 0.10, -0.6, 0.02, 0.10],  # a, b, rho, m, sigma
                       [0.025, 0.12, -0.5, 0.03, 0.20],
                       [0.060, 0.14, -0.4, 0.05, 0.30]])
SVI_TTM = np.array([0.1, 0.5, 1.5])
SVI_FWD = np.array([100.0, 101.0, 103.0])
SVI_DISC = np.array([0.995, 0.98, 0.94])


def flat_surface(vols, ttm, forward):
    return FittedSurface(FlatBlack(), np.asarray(vols, float)[:, None], np.asarray(ttm, float),
                         np.asarray(forward, float))


# ---------------------------------------------------------------------------------------------------------------
# flat vol: closed forms


def test_flat_vol_density_is_the_lognormal_density_and_greeks_are_black():
    ttm, fwd, disc, vols = np.array([0.05, 1.0]), np.array([100.0, 104.0]), np.array([0.999, 0.96]), np.array([0.6, 0.3])
    grid = greeks_grid(flat_surface(vols, ttm, fwd), ttm, fwd, disc, n=41)
    assert grid.shape == (2, 41)
    s = (vols * np.sqrt(ttm))[:, None]
    K, F = grid.strike, fwd[:, None]
    lognormal = np.exp(-0.5 * ((np.log(K / F) + 0.5 * s * s) / s) ** 2) / (K * s * np.sqrt(2 * np.pi))
    assert np.allclose(grid.density, lognormal, rtol=1e-9, atol=0)
    assert np.allclose(grid.vol, vols[:, None], rtol=1e-15)
    assert np.array_equal(grid.is_call, grid.k >= 0)
    ref = black_greeks(F, K, ttm[:, None], vols[:, None], is_call=grid.is_call, discount=disc[:, None])
    for name in GREEK_NAMES:
        assert np.allclose(getattr(grid, name), getattr(ref, name), rtol=1e-12, atol=1e-300), name


def test_flat_vol_greeks_agree_with_quantlib_black_calculator():
    ql = pytest.importorskip("QuantLib")
    ttm, fwd, disc, vol = np.array([0.5]), np.array([100.0]), np.array([0.97]), 0.4
    grid = greeks_grid(flat_surface([vol], ttm, fwd), ttm, fwd, disc, n=9)
    for j in range(9):
        K, call = float(grid.strike[0, j]), bool(grid.is_call[0, j])
        payoff = ql.PlainVanillaPayoff(ql.Option.Call if call else ql.Option.Put, K)
        calc = ql.BlackCalculator(payoff, 100.0, vol * np.sqrt(0.5), 0.97)
        assert grid.price[0, j] == pytest.approx(calc.value(), rel=1e-12)
        assert grid.delta[0, j] == pytest.approx(calc.deltaForward(), rel=1e-10)
        assert grid.gamma[0, j] == pytest.approx(calc.gammaForward(), rel=1e-10)
        assert grid.vega[0, j] == pytest.approx(calc.vega(0.5), rel=1e-10)


# ---------------------------------------------------------------------------------------------------------------
# density of a smile


def mp_bl_density(K, F, t, w_of_k, digits=30):
    """Breeden-Litzenberger ``d2C/dK2`` (undiscounted) of the Black call with the smile's vol, at 30 digits."""
    with mp.workdps(digits):
        F, t = mp.mpf(F), mp.mpf(t)

        def call(strike):
            k = mp.log(strike / F)
            s = mp.sqrt(w_of_k(k))
            d1 = -k / s + s / 2
            return F * mp.ncdf(d1) - strike * mp.ncdf(d1 - s)

        return float(mp.diff(call, mp.mpf(K), 2))


def test_density_matches_30_digit_breeden_litzenberger_on_an_svi_smile():
    a, b, rho, m, sig = SVI_SLICES[1]
    surface = surface_of(lambda k, t: raw_svi(k, a, b, rho, m, sig))
    grid = greeks_grid(surface, [0.5], [101.0], [0.98], n=9)

    def w_mp(k):
        return a + b * (rho * (k - m) + mp.sqrt((k - m) ** 2 + sig * sig))

    ref = np.array([mp_bl_density(K, 101.0, 0.5, w_mp) for K in grid.strike[0]])
    assert np.allclose(grid.density[0], ref, rtol=1e-8, atol=0)


def test_svi_density_integrates_to_one_and_has_the_forward_as_mean():
    svi = pytest.importorskip("calibration.models.svi")
    surface = FittedSurface(svi.SVI(), SVI_SLICES, SVI_TTM, SVI_FWD)
    grid = greeks_grid(surface, SVI_TTM, SVI_FWD, SVI_DISC, k_range=(-4.0, 3.0), n=1201)
    mass = np.trapezoid(grid.density, grid.strike, axis=1)
    mean = np.trapezoid(grid.density * grid.strike, grid.strike, axis=1)
    assert np.allclose(mass, 1.0, atol=1e-3)
    assert np.allclose(mean / SVI_FWD, 1.0, atol=1e-3)
    assert (grid.density > 0).all()


def test_ssvi_density_integrates_to_one_and_has_the_forward_as_mean():
    ttm = np.array([7, 60, 365]) / 365.0
    fwd = np.array([60_000.0, 61_000.0, 64_000.0])
    theta = np.array([0.6, 0.55, 0.5]) ** 2 * ttm
    surface = surface_of(lambda k, t: ssvi_w(k, np.interp(t, ttm, theta), -0.3, 1.2, 0.4))
    grid = greeks_grid(surface, ttm, fwd, np.ones(3), k_range=(-10 * np.sqrt(theta), 10 * np.sqrt(theta)), n=1601)
    mass = np.trapezoid(grid.density, grid.strike, axis=1)
    mean = np.trapezoid(grid.density * grid.strike, grid.strike, axis=1)
    assert np.allclose(mass, 1.0, atol=1e-3)
    assert np.allclose(mean / fwd, 1.0, atol=1e-3)


def test_real_ssvi_density_integrates_to_one_and_has_the_forward_as_mean():
    ssvi = pytest.importorskip("calibration.models.ssvi")
    if not hasattr(ssvi, "SSVI"):
        pytest.skip("calibration.models.ssvi.SSVI not written yet")
    ttm = np.array([7, 60, 365]) / 365.0
    fwd = np.array([60_000.0, 61_000.0, 64_000.0])
    theta = np.array([0.6, 0.55, 0.5]) ** 2 * ttm
    model = ssvi.SSVI(expiry_ttm=tuple(ttm))
    params = np.concatenate((np.diff(theta, prepend=0.0), [-0.3, 0.9, 0.4]))  # rho, eta_frac, gamma
    surface = FittedSurface(model, params, np.empty(0), np.empty(0))
    sd = np.sqrt(theta)
    grid = greeks_grid(surface, ttm, fwd, np.ones(3), k_range=(-10 * sd, 10 * sd), n=1601)
    assert np.allclose(np.trapezoid(grid.density, grid.strike, axis=1), 1.0, atol=1e-3)
    assert np.allclose(np.trapezoid(grid.density * grid.strike, grid.strike, axis=1) / fwd, 1.0, atol=1e-3)
    # and it is the same surface as the independent power-law SSVI written in this file
    eta = 2 * 0.9 / 1.3
    ref = greeks_grid(surface_of(lambda k, t: ssvi_w(k, np.interp(t, ttm, theta), -0.3, eta, 0.4)), ttm, fwd,
                      np.ones(3), k_range=(-10 * sd, 10 * sd), n=1601)
    assert np.allclose(grid.vol, ref.vol, rtol=1e-13)


def test_heston_density_integrates_to_one_and_has_the_forward_as_mean():
    heston = pytest.importorskip("calibration.models.heston", reason="calibration/models/heston.py not written yet")
    model = heston.Heston()
    typical = {"v0": 0.04, "kappa": 1.5, "theta": 0.06, "sigma": 0.6, "rho": -0.7}
    names = [p.name for p in model.params]
    if set(names) != set(typical):
        pytest.skip(f"unexpected Heston parameter names {names}")
    ttm = np.array([30, 365]) / 365.0
    surface = FittedSurface(model, np.array([typical[n] for n in names]), np.empty(0), np.empty(0))
    grid = greeks_grid(surface, ttm, np.full(2, 100.0), np.ones(2), k_range=(-1.5, 0.8), n=801)
    ok = np.isfinite(grid.density)
    # far in the wings Fourier prices reach the pricer's floor (~1e-16 of the forward): no vol, no density there;
    # wherever the price is well above that floor the density exists
    assert ok[grid.price > 1e-12 * 100.0].all()
    assert ok.mean() > 0.8
    density = np.where(ok, grid.density, 0.0)
    assert np.allclose(np.trapezoid(density, grid.strike, axis=1), 1.0, atol=1e-3)
    assert np.allclose(np.trapezoid(density * grid.strike, grid.strike, axis=1), 100.0, rtol=1e-3)


def test_vogt_density_is_negative_exactly_where_the_butterfly_check_flags():
    surface = surface_of(lambda k, t: raw_svi(k, *VOGT))
    grid = greeks_grid(surface, [1.0], [100.0], [1.0], k_range=(-1.5, 1.5), n=301)
    report = check_arbitrage(surface, [1.0], [100.0], [1.0], k_range=(-1.5, 1.5), n_k=301)
    assert np.allclose(grid.k, report.k_grid, rtol=0, atol=1e-15)
    flagged = np.isin(report.k_grid[0], report.butterfly["k"].to_numpy())
    negative = grid.density[0] < 0
    assert negative.any()
    assert np.array_equal(flagged, negative)
    assert np.allclose(report.butterfly["density"], grid.density[0][negative], rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# sanity of the greeks on a smile


def test_greek_signs_and_monotonicity_on_an_svi_surface():
    svi = pytest.importorskip("calibration.models.svi")
    surface = FittedSurface(svi.SVI(), SVI_SLICES, SVI_TTM, SVI_FWD)
    grid = greeks_grid(surface, SVI_TTM, SVI_FWD, np.ones(3), n=81)
    call, put = grid.is_call, ~grid.is_call
    assert call.any(axis=1).all() and put.any(axis=1).all()
    assert ((grid.delta > 0) & (grid.delta < 1))[call].all()
    assert ((grid.delta < 0) & (grid.delta > -1))[put].all()
    for j in range(3):  # delta falls with the strike on each side (calls towards 0, puts towards -1/2)
        assert (np.diff(grid.delta[j][call[j]]) < 0).all()
        assert (np.diff(grid.delta[j][put[j]]) < 0).all()
        assert (np.diff(grid.strike[j]) > 0).all()
    assert (grid.gamma > 0).all() and (grid.vega > 0).all()
    assert (grid.theta < 0).all()  # no discounting: time decay only
    assert (grid.price > 0).all()
    # vega = D F n(d1) sqrt(t) peaks near the money (at d1 = 0, i.e. k = w/2 for a flat smile)
    atm = np.argmin(np.abs(grid.k), axis=1)
    assert (np.abs(np.argmax(grid.vega, axis=1) - atm) <= 4).all()


def test_strike_axis_shares_one_strike_grid_and_matches_the_surface():
    svi = pytest.importorskip("calibration.models.svi")
    surface = FittedSurface(svi.SVI(), SVI_SLICES, SVI_TTM, SVI_FWD)
    grid = greeks_grid(surface, SVI_TTM, SVI_FWD, SVI_DISC, axis="strike", n=25)
    assert grid.axis == "strike"
    assert (grid.strike == grid.strike[0]).all()
    assert np.allclose(grid.k, np.log(grid.strike / SVI_FWD[:, None]), rtol=1e-15)
    quotes = QuoteArrays.from_arrays(forward=np.repeat(SVI_FWD, 25), strike=grid.strike.ravel(),
                                     ttm=np.repeat(SVI_TTM, 25), is_call=True)
    assert np.allclose(grid.vol.ravel(), surface.vols(quotes), rtol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# JSON, errors


def test_grid_round_trips_through_json():
    grid = greeks_grid(flat_surface([0.5, 0.4], [0.1, 1.0], [100.0, 100.0]), [0.1, 1.0], [100.0, 100.0],
                       [1.0, 0.97], n=7)
    data = json.loads(json.dumps(grid.to_dict(), allow_nan=False))
    back = GreeksGrid.from_dict(data)
    assert back.axis == grid.axis and back.is_call.dtype == bool
    for name in ("k", "strike", "vol", "density", *GREEK_NAMES):
        assert np.array_equal(getattr(back, name), getattr(grid, name)), name


@pytest.mark.parametrize(("options", "match"), [({"axis": "delta"}, "axis"), ({"n": 1}, "n must")])
def test_bad_options_raise(options, match):
    with pytest.raises(CalibrationError, match=match):
        greeks_grid(flat_surface([0.5], [1.0], [100.0]), [1.0], [100.0], [1.0], **options)
