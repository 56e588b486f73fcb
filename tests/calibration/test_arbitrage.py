"""Static-arbitrage checks against published examples, closed forms and arbitrage-free constructions.

The surfaces are test-only models written here independently of calibration/models (a raw SVI slice and a
power-law SSVI surface with closed-form Durrleman functions), plus an independent Heston pricer (QuantLib) to show
that a price-output model's numerical noise is not reported as arbitrage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq, minimize_scalar

from calibration.arbitrage import (
    BUTTERFLY_COLUMNS,
    CALENDAR_COLUMNS,
    ArbitrageReport,
    check_arbitrage,
    durrleman_g,
)
from calibration.black import black_price
from calibration.errors import CalibrationError
from calibration.models.black_flat import FlatBlack
from calibration.surface import FittedSurface
from tests.calibration.surfaces import VOGT, FixedSurfaceModel, raw_svi, ssvi_w, surface_of



# ---------------------------------------------------------------------------------------------------------------
# test-only models


def raw_svi_g(k, a, b, rho, m, sigma):
    """Durrleman's g of a raw SVI slice with closed-form derivatives (written out here, not imported)."""
    u = np.asarray(k) - m
    r = np.sqrt(u * u + sigma * sigma)
    w = a + b * (rho * u + r)
    w1 = b * (rho + u / r)
    w2 = b * sigma * sigma / r**3
    return (1 - k * w1 / (2 * w)) ** 2 - w1 * w1 / 4 * (1 / w + 0.25) + w2 / 2


# ---------------------------------------------------------------------------------------------------------------
# Durrleman's g


def test_durrleman_g_is_one_for_a_flat_smile_and_matches_the_svi_closed_form():
    k = np.linspace(-1, 1, 11)
    assert np.allclose(durrleman_g(k, np.full(11, 0.04), np.zeros(11), np.zeros(11)), 1.0)
    a, b, rho, m, sigma = VOGT
    u = k - m
    r = np.sqrt(u * u + sigma * sigma)
    g = durrleman_g(k, raw_svi(k, *VOGT), b * (rho + u / r), b * sigma * sigma / r**3)
    assert np.allclose(g, raw_svi_g(k, *VOGT), rtol=1e-14, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------------
# butterfly


def test_vogt_svi_is_flagged_where_g_is_negative_with_the_published_minimum():
    surface = surface_of(lambda k, t: raw_svi(k, *VOGT))
    report = check_arbitrage(surface, [1.0], [100.0], [1.0], k_range=(-1.5, 1.5), n_k=601)
    assert report.n_butterfly > 0 and report.n_calendar == 0
    assert list(report.butterfly.columns) == list(BUTTERFLY_COLUMNS)

    # independent reference: the closed-form g and its minimum
    best = minimize_scalar(lambda x: raw_svi_g(x, *VOGT), bounds=(0.3, 1.5), method="bounded",
                           options={"xatol": 1e-10})
    assert best.fun == pytest.approx(-0.033, abs=5e-4)  # published: minimum near -0.033
    worst = report.butterfly.loc[report.butterfly["g"].idxmin()]
    grid_step = 3.0 / 600
    assert abs(worst["k"] - best.x) <= grid_step
    assert worst["g"] == pytest.approx(best.fun, abs=1e-5)
    assert worst["strike"] == pytest.approx(100.0 * np.exp(worst["k"]), rel=1e-14)
    assert worst["severity"] == pytest.approx(-worst["g"])

    # flagged exactly where the closed-form g is negative (up to the points where |g| is within noise)
    k = report.k_grid[0]
    g_ref = raw_svi_g(k, *VOGT)
    flagged = np.isin(k, report.butterfly["k"].to_numpy())
    assert np.array_equal(flagged[np.abs(g_ref) > 1e-6], (g_ref < 0)[np.abs(g_ref) > 1e-6])
    assert np.allclose(report.butterfly["g"], raw_svi_g(report.butterfly["k"].to_numpy(), *VOGT), atol=1e-7)
    # the density of S_T at those strikes is negative
    assert (report.butterfly["density"] < 0).all()

    summary = report.butterfly_summary()
    assert len(summary) == 1
    assert summary.loc[0, "k_min"] == pytest.approx(brentq(lambda x: raw_svi_g(x, *VOGT), 0.5, best.x), abs=grid_step)
    assert summary.loc[0, "k_max"] == pytest.approx(brentq(lambda x: raw_svi_g(x, *VOGT), best.x, 1.5), abs=grid_step)


def test_vogt_svi_is_flagged_on_the_default_grid_too():
    report = check_arbitrage(surface_of(lambda k, t: raw_svi(k, *VOGT)), [1.0], [100.0], [1.0])
    assert report.n_butterfly > 0
    assert (report.butterfly["k"] > 0.6).all()


def test_vogt_through_the_real_svi_model_gives_the_same_flags():
    svi = pytest.importorskip("calibration.models.svi")
    ref = check_arbitrage(surface_of(lambda k, t: raw_svi(k, *VOGT)), [1.0], [100.0], [1.0],
                          k_range=(-1.5, 1.5))
    real = FittedSurface(svi.SVI(), np.array([VOGT]), np.array([1.0]), np.array([100.0]))
    report = check_arbitrage(real, [1.0], [100.0], [1.0], k_range=(-1.5, 1.5))
    assert np.array_equal(report.butterfly["k"].to_numpy(), ref.butterfly["k"].to_numpy())


SSVI_BOX = dict(
    rho=st.floats(-0.95, 0.95),
    eta_share=st.floats(0.05, 1.0),  # eta = share * 2 / (1 + |rho|): the Gatheral-Jacquier bound
    gamma=st.floats(0.05, 0.5),
    atm_vol=st.floats(0.08, 1.5),
    vol_steps=st.lists(st.floats(0.0, 0.3), min_size=4, max_size=4),
)


@settings(max_examples=40, deadline=None)
@given(**SSVI_BOX)
def test_ssvi_within_the_gatheral_jacquier_conditions_is_never_flagged(rho, eta_share, gamma, atm_vol, vol_steps):
    eta = eta_share * 2.0 / (1.0 + abs(rho))
    ttm = np.array([2.0, 14.0, 60.0, 180.0, 730.0]) / 365.0
    # ATM total variance non-decreasing in t (the ATM vol may fall, as long as sigma^2 t does not)
    theta = np.cumsum(np.concatenate(([atm_vol**2 * ttm[0]], np.diff(ttm) * (atm_vol * (1 + np.array(vol_steps))) ** 2)))
    surface = surface_of(lambda k, t: ssvi_w(k, np.interp(t, ttm, theta), rho, eta, gamma))
    report = check_arbitrage(surface, ttm, np.full(5, 50_000.0), np.full(5, 0.99), n_k=101)
    assert report.n_butterfly == 0, report.butterfly_summary()
    assert report.n_calendar == 0, report.calendar_summary()
    assert report.n_unchecked == 0


def _real_ssvi():
    ssvi = pytest.importorskip("calibration.models.ssvi")
    if not hasattr(ssvi, "SSVI"):
        pytest.skip("calibration.models.ssvi.SSVI not written yet")
    return ssvi.SSVI


@settings(max_examples=40, deadline=None)
@given(
    theta_1=st.floats(1e-5, 0.05),
    dtheta=st.lists(st.floats(0.0, 0.5), min_size=3, max_size=3),
    rho=st.floats(-0.999, 0.999),
    eta_frac=st.floats(1e-4, 1.0),
    gamma=st.floats(1e-3, 0.5),
)
def test_real_ssvi_over_its_parameter_box_is_never_flagged(theta_1, dtheta, rho, eta_frac, gamma):
    fitted = np.array([2.0, 30.0, 180.0, 1095.0]) / 365.0
    model = _real_ssvi()(expiry_ttm=tuple(fitted))
    surface = FittedSurface(model, np.array([theta_1, *dtheta, rho, eta_frac, gamma]), np.empty(0), np.empty(0))
    checked = np.sort(np.concatenate((fitted, [1.0 / 365.0, 10.0 / 365.0, 1.0, 5.0])))  # between and beyond too
    report = check_arbitrage(surface, checked, np.full(8, 3000.0), np.full(8, 0.97), n_k=101)
    assert report.n_butterfly == 0, report.butterfly_summary()
    assert report.n_calendar == 0, report.calendar_summary()


def test_ssvi_outside_the_butterfly_condition_is_flagged():
    # eta (1 + |rho|) far above 2 with a long expiry: theta phi^2 (1 + |rho|) > 4, the wings fall under Lee's bound
    ttm = np.array([1.0])
    surface = surface_of(lambda k, t: ssvi_w(k, np.full_like(k, 0.01), -0.7, 4.0, 0.5))
    report = check_arbitrage(surface, ttm, [100.0], [1.0], k_range=(-2.0, 2.0))
    assert report.n_butterfly > 0


# ---------------------------------------------------------------------------------------------------------------
# calendar


def test_crossing_total_variances_are_flagged_for_calendar_where_they_cross():
    short = (0.01, 0.10, -0.9, 0.0, 0.1)  # steep left wing
    long = (0.02, 0.05, 0.0, 0.0, 0.1)
    ttm = np.array([0.25, 0.5])
    surface = surface_of(lambda k, t: np.where(t < 0.3, raw_svi(k, *short), raw_svi(k, *long)))
    report = check_arbitrage(surface, ttm, [100.0, 101.0], [1.0, 0.99], k_range=(-1.0, 1.0), n_k=401)
    assert report.n_butterfly == 0
    assert list(report.calendar.columns) == list(CALENDAR_COLUMNS)

    crossing = brentq(lambda x: raw_svi(x, *short) - raw_svi(x, *long), -1.0, 0.0)
    k = report.k_grid[0]
    expected = k[raw_svi(k, *short) > raw_svi(k, *long) * (1 + 1e-7)]
    assert np.array_equal(report.calendar["k"].to_numpy(), expected)
    assert expected.max() == pytest.approx(crossing, abs=2.0 / 400)
    assert (report.calendar["ttm_short"] == 0.25).all() and (report.calendar["ttm_long"] == 0.5).all()
    assert np.allclose(report.calendar["w_short"], raw_svi(expected, *short), rtol=1e-13)
    assert np.allclose(report.calendar["w_long"], raw_svi(expected, *long), rtol=1e-13)
    assert np.allclose(report.calendar["strike_long"], 101.0 * np.exp(expected), rtol=1e-14)
    assert (report.calendar["severity"] > 0).all()
    summary = report.calendar_summary()
    assert len(summary) == 1 and summary.loc[0, "worst_k"] == pytest.approx(-1.0)


def test_black_flat_with_increasing_total_variance_is_clean():
    ttm = np.array([7, 30, 91, 365]) / 365.0
    vols = np.array([0.80, 0.65, 0.55, 0.50])  # falling vols, rising total variance
    assert np.all(np.diff(vols**2 * ttm) > 0)
    surface = FittedSurface(FlatBlack(), vols[:, None], ttm, np.full(4, 100.0))
    report = check_arbitrage(surface, ttm, np.full(4, 100.0), np.ones(4))
    assert report.arbitrage_free and report.n_unchecked == 0
    assert report.k_grid.shape == (4, 201)
    assert np.allclose(report.k_grid[:, -1], 6.0 * vols * np.sqrt(ttm))


def test_black_flat_with_decreasing_total_variance_is_flagged_everywhere():
    ttm = np.array([0.25, 0.5])
    surface = FittedSurface(FlatBlack(), np.array([[0.8], [0.3]]), ttm, np.full(2, 100.0))
    report = check_arbitrage(surface, ttm, [100.0, 100.0], [1.0, 1.0], n_k=51)
    assert report.n_butterfly == 0
    assert report.n_calendar == 51
    assert np.allclose(report.calendar["severity"], 0.8**2 * 0.25 - 0.3**2 * 0.5)


# ---------------------------------------------------------------------------------------------------------------
# price-output models: noise is not arbitrage


@dataclass(frozen=True)
class QuantLibHeston(FixedSurfaceModel):
    """Test-only price-output surface model: Heston prices from QuantLib's AnalyticHestonEngine (r = q = 0,
    spot = forward). ``theta = (v0, kappa, theta, sigma, rho)``; times to expiry must be whole days."""

    name: ClassVar[str] = "ql_heston"
    label: ClassVar[str] = "QuantLib Heston"
    output: ClassVar[str] = "price"

    def values(self, theta, quotes):
        ql = pytest.importorskip("QuantLib")
        today = ql.Date(2, 1, 2025)
        ql.Settings.instance().evaluationDate = today
        v0, kappa, theta_, sigma, rho = (float(x) for x in theta)
        out = np.empty(quotes.n)
        flat = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, ql.Actual365Fixed()))
        engines = {}
        for i in range(quotes.n):
            forward = float(quotes.forward[i])
            if forward not in engines:
                spot = ql.QuoteHandle(ql.SimpleQuote(forward))
                process = ql.HestonProcess(flat, flat, spot, v0, kappa, theta_, sigma, rho)
                engines[forward] = ql.AnalyticHestonEngine(ql.HestonModel(process))
            option = ql.VanillaOption(
                ql.PlainVanillaPayoff(ql.Option.Call if quotes.is_call[i] else ql.Option.Put, float(quotes.strike[i])),
                ql.EuropeanExercise(today + int(round(quotes.ttm[i] * 365))),
            )
            option.setPricingEngine(engines[forward])
            out[i] = option.NPV()
        return out * quotes.discount


def test_heston_from_an_independent_pricer_is_not_flagged_for_its_noise():
    ttm = np.array([3, 30, 182, 730]) / 365.0
    surface = FittedSurface(QuantLibHeston(), np.array([0.04, 1.5, 0.06, 0.6, -0.7]), np.empty(0), np.empty(0))
    report = check_arbitrage(surface, ttm, np.full(4, 100.0), np.ones(4), n_k=41)
    assert report.arbitrage_free, (report.butterfly_summary(), report.calendar_summary())


@dataclass(frozen=True)
class NoisyPriceModel(FixedSurfaceModel):
    """Price-output surface model: Black prices of a total-variance function plus seeded noise of ``noise * D F``
    (a stand-in for a Fourier pricer's rounding)."""

    w: Callable[[np.ndarray, np.ndarray], np.ndarray]
    noise: float = 0.0
    name: ClassVar[str] = "noisy_price"
    label: ClassVar[str] = "noisy prices"
    output: ClassVar[str] = "price"

    def values(self, theta, q):
        vol = np.sqrt(self.w(q.k, q.ttm) / q.ttm)
        price = black_price(q.forward, q.strike, q.ttm, vol, is_call=q.is_call, discount=q.discount)
        rng = np.random.default_rng(7)
        return price + self.noise * q.discount * q.forward * rng.standard_normal(q.n)


@pytest.mark.parametrize("noise", [0.0, 1e-15, 1e-14])
def test_price_noise_is_not_arbitrage_but_real_arbitrage_through_prices_is(noise):
    ttm = np.array([2.0, 30.0, 365.0]) / 365.0
    theta = np.array([0.8, 0.7, 0.6]) ** 2 * ttm
    clean = NoisyPriceModel(lambda k, t: ssvi_w(k, np.interp(t, ttm, theta), -0.6, 1.2, 0.45), noise)
    surface = FittedSurface(clean, np.empty(0), np.empty(0), np.empty(0))
    report = check_arbitrage(surface, ttm, np.full(3, 3000.0), np.full(3, 0.99))
    assert report.arbitrage_free, (report.butterfly_summary(), report.calendar_summary())

    vogt = FittedSurface(NoisyPriceModel(lambda k, t: raw_svi(k, *VOGT), noise), np.empty(0), np.empty(0),
                         np.empty(0))
    report = check_arbitrage(vogt, [1.0], [100.0], [1.0], k_range=(-1.5, 1.5), n_k=301)
    best = minimize_scalar(lambda x: raw_svi_g(x, *VOGT), bounds=(0.3, 1.5), method="bounded")
    worst = report.butterfly.loc[report.butterfly["g"].idxmin()]
    assert abs(worst["k"] - best.x) <= 0.02 and worst["g"] == pytest.approx(best.fun, abs=2e-3)
    k = report.k_grid[0]
    clearly_negative = k[raw_svi_g(k, *VOGT) < -0.005]
    assert np.isin(clearly_negative, report.butterfly["k"]).all()
    assert (raw_svi_g(report.butterfly["k"].to_numpy(), *VOGT) < 0).all()


TYPICAL = {
    "heston": {"v0": 0.04, "kappa": 1.5, "theta": 0.06, "sigma": 0.6, "rho": -0.7},
    "merton": {"sigma": 0.5, "lam": 2.0, "mu_j": -0.1, "delta_j": 0.15},
    "bates": {"v0": 0.25, "kappa": 2.0, "theta": 0.3, "sigma": 1.0, "rho": 0.1, "lam": 3.0, "mu_j": -0.05,
              "delta_j": 0.2},
}


@pytest.mark.parametrize("name", sorted(TYPICAL))
def test_real_price_models_with_typical_parameters_are_clean(name):
    """Heston, Merton and Bates are free of static arbitrage: anything reported would be pricing noise."""
    from calibration.errors import CalibrationError as Unavailable
    from calibration.models import get_model

    try:
        model = get_model(name)
    except Unavailable as exc:
        pytest.skip(str(exc))
    typical = TYPICAL[name]
    names = [p.name for p in model.params]
    if set(names) != set(typical):
        pytest.skip(f"unexpected {name} parameter names {names}")
    ttm = np.array([3, 14, 30, 91, 182, 365, 730]) / 365.0
    surface = FittedSurface(model, np.array([typical[n] for n in names]), np.empty(0), np.empty(0))
    report = check_arbitrage(surface, ttm, np.full(7, 100.0), np.full(7, 0.98), n_k=101)
    assert report.arbitrage_free, (report.butterfly_summary(), report.calendar_summary())
    assert report.n_unchecked < 0.05 * 2 * report.k_grid.size


# ---------------------------------------------------------------------------------------------------------------
# report, errors


def test_report_round_trips_through_json():
    short = (0.01, 0.10, -0.9, 0.0, 0.1)
    surface = surface_of(lambda k, t: np.where(t < 0.3, raw_svi(k, *short), raw_svi(k, *VOGT) * t))
    report = check_arbitrage(surface, [0.25, 1.0], [100.0, 100.0], [1.0, 1.0], k_range=(-1.5, 1.5), n_k=101)
    assert report.n_butterfly > 0 and report.n_calendar > 0
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["butterfly_violations"] == report.n_butterfly
    assert data["calendar_violations"] == report.n_calendar
    assert data["butterfly_expiries"][0]["expiry_ttm"] == 1.0
    back = ArbitrageReport.from_dict(data)
    assert np.array_equal(back.k_grid, report.k_grid)
    assert back.butterfly.equals(report.butterfly) and back.calendar.equals(report.calendar)
    assert back.n_butterfly == report.n_butterfly and back.n_calendar == report.n_calendar


def test_clean_report_serialises_with_zero_counts():
    surface = FittedSurface(FlatBlack(), np.array([[0.5]]), np.array([1.0]), np.array([100.0]))
    data = check_arbitrage(surface, [1.0], [100.0], [1.0], n_k=11).to_dict()
    assert data["butterfly_violations"] == 0 and data["calendar_violations"] == 0
    assert data["butterfly_expiries"] == [] and data["calendar_pairs"] == []
    assert ArbitrageReport.from_dict(json.loads(json.dumps(data))).arbitrage_free


@pytest.mark.parametrize(
    ("ttm", "forward", "discount", "options", "match"),
    [
        ([0.5, 0.25], [100, 100], [1, 1], {}, "ascending"),
        ([0.0], [100], [1], {}, "> 0 years"),
        ([0.5], [100, 100], [1], {}, "one length"),
        ([0.5], [-1], [1], {}, "forwards"),
        ([0.5], [100], [1], {"k_range": (0.5, -0.5)}, "low < high"),
        ([0.5], [100], [1], {"n_k": 2}, "n_k"),
    ],
)
def test_bad_inputs_raise_calibration_errors(ttm, forward, discount, options, match):
    surface = FittedSurface(FlatBlack(), np.array([[0.5]]), np.array([0.5]), np.array([100.0]))
    with pytest.raises(CalibrationError, match=match):
        check_arbitrage(surface, ttm, forward, discount, **options)
