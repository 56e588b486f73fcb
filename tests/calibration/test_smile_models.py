"""Smile models: flat Black, raw SVI, SSVI, SABR, and the batched slice fitter.

References are independent of the code under test: QuantLib's ``sabrVolatility`` (Hagan 2002), Obloj's formula
evaluated directly in mpmath, the published Vogt example of Gatheral & Jacquier (2014), hand-computed values,
finite differences, and fits that must recover the parameters the data were generated with.
"""

from __future__ import annotations

import json
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import least_squares

from calibration.black import black_greeks
from calibration.errors import CalibrationError
from calibration.models import get_model
from calibration.models.base import QuoteArrays, bounds_of
from calibration.models.black_flat import FlatBlack
from calibration.models.slices import fit_slices
from calibration.models.sabr import SABR, hagan_alpha, sabr_vol
from calibration.models.ssvi import SSVI, power_law_phi, ssvi_to_svi_raw, ssvi_total_variance
from calibration.arbitrage import durrleman_g
from calibration.models.svi import (
    SVI,
    quasi_explicit,
    svi_constraints,
    svi_durrleman_g,
    svi_total_variance,
)
from calibration.snapshot import load_snapshot

QuantLib = pytest.importorskip("QuantLib")

REPO = Path(__file__).resolve().parents[2]
ETH = REPO / ".." / "shared" / "data" / "eth_deribit_2026-05-21.csv"
BTC_DEMO = REPO / "data" / "btc_demo.csv"
VOGT = np.array([-0.0410, 0.1331, 0.3060, 0.3586, 0.4153])  # Gatheral & Jacquier (2014), Example 3.1, t = 1


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _quotes(k, t, vol=np.nan, forward=100.0) -> QuoteArrays:
    k = np.asarray(k, dtype=float)
    return QuoteArrays.from_arrays(forward=forward, strike=forward * np.exp(k), ttm=t, is_call=k >= 0.0, vol_mid=vol)


def _snapshot_quotes(path: Path) -> QuoteArrays:
    if not path.exists():
        pytest.skip(f"sample snapshot {path.name} not found (expected in ../shared/data next to the repository)")
    fq = load_snapshot(path).fit_quotes
    col = lambda name: fq[name].to_numpy(dtype=float)  # noqa: E731
    return QuoteArrays.from_arrays(
        forward=col("forward"), strike=col("strike"), ttm=col("ttm"), discount=col("discount"),
        is_call=(fq["option_type"].astype(str) == "C").to_numpy(), vol_mid=col("iv_mid"), vol_bid=col("iv_bid"),
        vol_ask=col("iv_ask"), vega=col("vega"),
    )


def _fd_jacobian(model, theta, plan, h=1e-6):
    theta = np.asarray(theta, dtype=float)
    cols = []
    for i in range(theta.size):
        step = np.zeros_like(theta)
        step[i] = h * max(1.0, abs(theta[i]))
        cols.append((model.values(theta + step, plan) - model.values(theta - step, plan)) / (2.0 * step[i]))
    return np.stack(cols, axis=1)


def _fit(model, quotes, start):
    plan = model.prepare(quotes)
    lower, upper = bounds_of(model.params)
    return least_squares(
        lambda x: model.values(x, plan) - quotes.vol_mid, np.clip(start, lower, upper),
        jac=lambda x: model.jacobian(x, plan), bounds=(lower, upper), method="trf", xtol=1e-15, ftol=1e-15,
        gtol=1e-15, max_nfev=500,
    )


def _rmse_points(values, target):
    return float(np.sqrt(np.mean((values - target) ** 2)) * 100.0)


# ---------------------------------------------------------------------------------------------------------------
# registry


def test_registry_builds_every_smile_model_with_defaults_and_options():
    assert isinstance(get_model("black"), FlatBlack)
    assert [p.name for p in get_model("svi").params] == ["a", "b", "rho", "m", "sigma"]
    assert [p.name for p in get_model("sabr").params] == ["alpha", "rho", "nu"]
    assert [p.name for p in get_model("sabr", {"beta": None}).params] == ["alpha", "beta", "rho", "nu"]
    ssvi = get_model("ssvi", {"expiry_ttm": [0.1, 0.25, 0.5]})  # as rebuilt from a JSON result
    assert [p.name for p in ssvi.params] == ["theta_1", "dtheta_2", "dtheta_3", "rho", "eta_frac", "gamma"]
    with pytest.raises(CalibrationError):
        get_model("sabr", {"beta": 1.5})


# ---------------------------------------------------------------------------------------------------------------
# flat Black


def test_flat_black_guess_is_the_vega_weighted_atm_vol():
    k = np.linspace(-0.5, 0.5, 21)
    model = FlatBlack()
    assert model.initial_guess(_quotes(k, 0.5, 0.42)) == pytest.approx([0.42], abs=1e-14)
    smile = 0.40 + 0.5 * k * k  # ATM vol 0.40; the guess leans on the quotes near the money
    vega = black_greeks(100.0, 100.0 * np.exp(k), 0.5, smile, is_call=k >= 0).vega
    quotes = QuoteArrays.from_arrays(forward=100.0, strike=100.0 * np.exp(k), ttm=0.5, is_call=k >= 0,
                                     vol_mid=smile, vega=vega)
    guess = model.initial_guess(quotes)[0]
    assert 0.40 < guess < smile.mean()  # vega weights favour the money over the wings
    plan = model.prepare(quotes)
    fit = least_squares(lambda x: model.values(x, plan) - smile, [guess], jac=lambda x: model.jacobian(x, plan))
    assert fit.x[0] == pytest.approx(smile.mean(), abs=1e-12)  # a flat fit is the mean vol


# ---------------------------------------------------------------------------------------------------------------
# SVI


def test_svi_total_variance_hand_computed():
    theta = (0.04, 0.4, -0.4, 0.1, 0.2)  # (k - m, sigma) = (+-0.15, 0.2): sqrt = 0.25
    assert svi_total_variance([0.1, 0.25, -0.05], *theta) == pytest.approx([0.12, 0.116, 0.164], abs=1e-15)
    plan = SVI().prepare(_quotes([0.1, 0.25], 0.5))
    assert SVI().values(np.array(theta), plan) == pytest.approx(np.sqrt([0.24, 0.232]), rel=1e-14)


def test_vogt_example_has_butterfly_arbitrage():
    k = np.linspace(-1.5, 1.5, 30001)
    g = svi_durrleman_g(k, VOGT)
    assert g.min() == pytest.approx(-0.033, abs=5e-4)  # Gatheral & Jacquier (2014), Example 3.1
    assert 0.8 < k[np.argmin(g)] < 0.95
    assert g[np.abs(k) < 0.3].min() > 0.0  # positive near the money: the arbitrage is in the right wing


def test_closed_form_g_matches_finite_differences_of_w():
    k = np.linspace(-1.2, 1.2, 241)
    h = 1e-4
    w = lambda x: svi_total_variance(x, *VOGT)  # noqa: E731
    dw = (w(k + h) - w(k - h)) / (2 * h)
    d2w = (w(k + h) - 2 * w(k) + w(k - h)) / (h * h)
    assert svi_durrleman_g(k, VOGT) == pytest.approx(durrleman_g(k, w(k), dw, d2w), abs=1e-6)


def test_svi_constraints_are_the_minimum_variance_and_lee_slack():
    k = np.linspace(-3.0, 3.0, 600001)
    min_w, lee = svi_constraints(VOGT)
    assert min_w == pytest.approx(svi_total_variance(k, *VOGT).min(), abs=1e-10)
    assert lee == pytest.approx(2.0 - VOGT[1] * (1.0 + abs(VOGT[2])))
    at_bound = np.array([0.0, 2.0 / 1.5, 0.5, 0.0, 0.1])  # b (1 + |rho|) = 2 exactly
    assert svi_constraints(at_bound)[1] == pytest.approx(0.0, abs=1e-15)
    assert svi_constraints(at_bound * [1, 1.01, 1, 1, 1])[1] < 0.0
    # the wings of total variance have slopes b (1 + rho) and b (1 - rho): Lee's bound caps them at 2
    far = np.array([1e4, 2e4])
    right = np.diff(svi_total_variance(far, *VOGT))[0] / 1e4
    left = np.diff(svi_total_variance(-far, *VOGT))[0] / 1e4
    assert (right, left) == pytest.approx((VOGT[1] * (1 + VOGT[2]), VOGT[1] * (1 - VOGT[2])), rel=1e-6)
    assert SVI().constraints(np.vstack([VOGT, at_bound])).shape == (2, 2)


def test_svi_jacobian_matches_finite_differences():
    model = SVI()
    plan = model.prepare(_quotes(np.linspace(-0.6, 0.5, 23), 0.3))
    theta = np.array([0.01, 0.08, -0.35, 0.05, 0.12])
    assert model.jacobian(theta, plan) == pytest.approx(_fd_jacobian(model, theta, plan), rel=1e-6, abs=1e-8)


SVI_CASES = [
    (0.005, np.array([-0.0003, 0.012, -0.3, 0.01, 0.05]), 0.12),  # two days: a narrow, kinked smile
    (0.08, np.array([0.004, 0.06, -0.45, 0.03, 0.15]), 0.5),
    (1.0, np.array([0.04, 0.15, -0.6, 0.1, 0.3]), 1.5),
    (0.5, np.array([0.09, 0.05, 0.4, -0.05, 0.6]), 1.0),  # positive skew, wide vertex
]


@pytest.mark.parametrize(("t", "truth", "span"), SVI_CASES)
def test_svi_recovers_its_own_parameters(t, truth, span):
    k = np.linspace(-span, 0.8 * span, 25)
    vol = np.sqrt(svi_total_variance(k, *truth) / t)
    quotes = _quotes(k, t, vol)
    model = SVI()
    guess = model.initial_guess(quotes)
    assert _rmse_points(model.values(guess, model.prepare(quotes)), vol) < 0.25  # the quasi-explicit fit alone
    fit = _fit(model, quotes, guess)
    assert fit.x == pytest.approx(truth, abs=1e-7)
    assert (model.constraints(fit.x) >= 0.0).all()


def test_quasi_explicit_is_exact_in_total_variance_on_a_grid_point():
    # when (m, sigma) of the truth lies on the coarse grid the inner problem alone recovers (a, b, rho)
    k = np.linspace(-0.4, 0.6, 21)  # width 1.0: the grid holds m = -0.4 + 1.0 * (-0.5 + i/6), sigma = geomspace
    m, sigma = -0.4 + 1.0 / 6.0 * 3, np.geomspace(0.01, 2.0, 9)[5]
    truth = np.array([0.02, 0.1, -0.25, m, sigma])
    w = svi_total_variance(k, *truth)
    theta = quasi_explicit(k[None], w[None], np.ones((1, k.size)), zooms=0)[0]
    assert theta == pytest.approx(truth, abs=1e-10)


def test_quasi_explicit_keeps_the_lee_bound_and_a_positive_minimum_variance():
    rng = np.random.default_rng(7)
    k = np.linspace(-0.3, 0.3, 15)
    w = np.abs(0.002 + 0.5 * np.abs(k) ** 1.5 + rng.normal(0, 5e-4, k.size))  # ragged, steep wings
    theta = quasi_explicit(np.vstack([k, k]), np.vstack([w, 3 * w]), np.ones((2, k.size)))
    assert (svi_constraints(theta) >= -1e-12).all()
    lower, upper = bounds_of(SVI().params)
    assert ((theta >= lower) & (theta <= upper)).all()


@pytest.mark.parametrize("path", [ETH, BTC_DEMO], ids=["eth-deribit", "btc-demo"])
def test_svi_quasi_explicit_fits_real_slices_without_degenerate_parameters(path):
    quotes = _snapshot_quotes(path)
    model = SVI()
    guess = model.initial_guesses(quotes)
    plan = model.prepare(quotes)
    fitted = fit_slices(model, plan, quotes.vol_mid, guess, max_iter=60)
    k = quotes.k
    for j, t in enumerate(quotes.expiry_ttm):
        rows = quotes.expiry_index == j
        kj = k[rows]
        width = kj.max() - kj.min()
        a, b, rho, m, sigma = guess[j]
        assert sigma > 0.05 * width, f"t={t:.4f}: sigma {sigma} collapsed (kinked smile)"
        assert b > 1e-3 and abs(rho) < 0.99, f"t={t:.4f}: degenerate b={b}, rho={rho}"
        assert kj.min() - width <= m <= kj.max() + width, f"t={t:.4f}: vertex m={m} far from the quotes"
        assert (svi_constraints(guess[j]) >= 0.0).all()
        guess_rmse = _rmse_points(model.values(guess[j], plan)[rows], quotes.vol_mid[rows])
        fit_rmse = _rmse_points(model.values(fitted.theta, plan)[rows], quotes.vol_mid[rows])
        assert guess_rmse < 1.0, f"t={t:.4f}: quasi-explicit RMSE {guess_rmse:.2f} vol points"
        assert fit_rmse <= guess_rmse + 1e-9  # the polish from the guess only improves the fit


# ---------------------------------------------------------------------------------------------------------------
# SABR


def _ql_sabr(k, forward, t, alpha_norm, beta, rho, nu):
    alpha = alpha_norm * forward ** (1.0 - beta)  # the textbook alpha
    return np.array([QuantLib.sabrVolatility(forward * np.exp(x), forward, t, alpha, beta, nu, rho) for x in k])


SABR_CASES = [(0.02, 0.6, 0.4, 3.0), (0.5, 0.3, -0.3, 0.8), (2.0, 0.2, -0.7, 0.4), (0.25, 0.8, 0.1, 1.5)]


@pytest.mark.parametrize(("t", "alpha", "rho", "nu"), SABR_CASES)
def test_sabr_with_beta_one_equals_quantlib(t, alpha, rho, nu):
    # for beta = 1 Obloj's and Hagan's leading terms coincide: QuantLib is an exact reference
    k = np.linspace(-1.2, 1.2, 49)
    assert sabr_vol(k, t, alpha, 1.0, rho, nu) == pytest.approx(_ql_sabr(k, 2500.0, t, alpha, 1.0, rho, nu), rel=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.7])
def test_sabr_at_the_money_equals_quantlib_and_differs_from_hagan_away_from_it(beta):
    t, alpha, rho, nu = 0.5, 0.3, -0.3, 0.8
    assert sabr_vol(0.0, t, alpha, beta, rho, nu) == pytest.approx(
        _ql_sabr([0.0], 100.0, t, alpha, beta, rho, nu)[0], rel=1e-14
    )
    # QuantLib's sabrVolatility is Hagan (2002) eq. 2.17a, not Obloj: near the money the two agree to O(k^2)
    near = np.linspace(-0.1, 0.1, 21)
    assert sabr_vol(near, t, alpha, beta, rho, nu) == pytest.approx(_ql_sabr(near, 100.0, t, alpha, beta, rho, nu),
                                                                    rel=1e-4)
    far = np.array([-1.0, 1.0])
    gap = np.abs(sabr_vol(far, t, alpha, beta, rho, nu) / _ql_sabr(far, 100.0, t, alpha, beta, rho, nu) - 1.0)
    assert gap.max() > 1e-4


def _obloj_mp(strike, forward, t, a, beta, rho, nu):
    """Obloj (2008) eq. (3.3) as printed, evaluated in 40 digits (absolute alpha, no rewriting)."""
    with mp.workdps(40):
        K, F, t, a, beta, rho, nu = (mp.mpf(x) for x in (strike, forward, t, a, beta, rho, nu))
        c = 1 - beta
        if K == F:
            lead = a / F**c
        elif nu == 0:
            lead = a * mp.log(F / K) / (mp.log(F / K) if c == 0 else (F**c - K**c) / c)
        else:
            z = nu / a * (mp.log(F / K) if c == 0 else (F**c - K**c) / c)
            x = mp.log((mp.sqrt(1 - 2 * rho * z + z * z) + z - rho) / (1 - rho))
            lead = nu * mp.log(F / K) / x
        term = (c**2 * a**2 / (24 * (F * K) ** c) + rho * beta * nu * a / (4 * (F * K) ** (c / 2))
                + (2 - 3 * rho**2) * nu**2 / 24)
        return float(lead * (1 + term * t))


@pytest.mark.parametrize("beta", [0.0, 0.5, 0.8, 1.0])
@pytest.mark.parametrize(("t", "alpha", "rho", "nu"), [(0.1, 0.5, -0.4, 2.0), (1.5, 0.25, 0.3, 0.0)])
def test_sabr_matches_obloj_formula_in_high_precision(beta, t, alpha, rho, nu):
    forward = 3000.0
    k = np.concatenate([np.linspace(-1.5, 1.5, 13), [0.0, 1e-9, -1e-9, 1e-5, -1e-5]])
    ours = sabr_vol(k, t, alpha, beta, rho, nu)
    ref = [_obloj_mp(forward * np.exp(x), forward, t, alpha * forward ** (1 - beta), beta, rho, nu) for x in k]
    assert ours == pytest.approx(ref, rel=1e-12)


def test_sabr_is_finite_and_continuous_at_its_limits():
    k = np.array([-1e-300, 0.0, 1e-14, 1e-9, -1e-9])
    for nu in (0.0, 1e-14, 1e-9, 2.0):
        vols = sabr_vol(k, 0.25, 0.4, 0.5, -0.5, nu)
        assert np.isfinite(vols).all()
        assert vols == pytest.approx(vols[1], rel=1e-8)
    tiny = sabr_vol(np.linspace(-1, 1, 9), 0.25, 0.4, 0.5, -0.5, 1e-12)
    assert tiny == pytest.approx(sabr_vol(np.linspace(-1, 1, 9), 0.25, 0.4, 0.5, -0.5, 0.0), rel=1e-10)


def test_hagan_alpha_reproduces_the_atm_vol():
    for beta, rho, nu, t in [(0.5, -0.3, 1.2, 2.0), (0.0, 0.6, 4.0, 0.05), (1.0, -0.9, 0.3, 5.0)]:
        alpha = hagan_alpha(0.55, t, beta, rho, nu)
        assert sabr_vol(0.0, t, alpha, beta, rho, nu) == pytest.approx(0.55, rel=1e-12)


@pytest.mark.parametrize("beta", [0.5, None])
def test_sabr_jacobian_matches_finite_differences(beta):
    model = SABR(beta=beta)
    plan = model.prepare(_quotes(np.concatenate([np.linspace(-0.8, 0.8, 17), [1e-7, -2e-6]]), 0.4))
    theta = np.array([0.45, -0.35, 1.3]) if beta is not None else np.array([0.45, 0.6, -0.35, 1.3])
    jac = model.jacobian(theta, plan)
    assert jac == pytest.approx(_fd_jacobian(model, theta, plan), rel=1e-6, abs=1e-8)
    value, both = model.value_and_jacobian(theta, plan)
    assert value == pytest.approx(model.values(theta, plan), rel=1e-15) and (both == jac).all()


@pytest.mark.parametrize("beta", [0.5, 1.0, None])
@pytest.mark.parametrize(("t", "truth"), [(0.01, (0.55, -0.2, 6.0)), (0.75, (0.45, -0.4, 1.1))])
def test_sabr_recovers_its_own_parameters(beta, t, truth):
    k = np.linspace(-2.5, 2.0, 25) * 0.5 * np.sqrt(t)
    model = SABR(beta=beta)
    used_beta = 0.7 if beta is None else beta
    vol = sabr_vol(k, t, truth[0], used_beta, truth[1], truth[2])
    quotes = _quotes(k, t, vol)
    fit = _fit(model, quotes, model.initial_guess(quotes))
    expected = truth if beta is not None else (truth[0], used_beta, truth[1], truth[2])
    assert fit.x == pytest.approx(expected, rel=1e-5, abs=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# SSVI


def _ssvi_slices(model, theta, k):
    thetas, rho, eta, gamma = model.components(theta)
    return thetas, rho, power_law_phi(thetas, eta=eta, gamma=gamma)


ssvi_params = st.tuples(
    st.floats(1e-6, 0.2),
    st.lists(st.floats(0.0, 0.5), min_size=4, max_size=4),
    st.floats(-0.999, 0.999),
    st.floats(1e-4, 1.0),
    st.floats(1e-3, 0.5),
)


@settings(max_examples=60, deadline=None)
@given(ssvi_params)
def test_ssvi_inside_its_bounds_is_free_of_static_arbitrage(params):
    first, steps, rho, frac, gamma = params
    model = SSVI(expiry_ttm=(0.01, 0.1, 0.5, 1.0, 3.0))
    theta = np.array([first, *steps, rho, frac, gamma])
    lower, upper = bounds_of(model.params)
    assert ((theta >= lower) & (theta <= upper)).all()
    thetas, rho_, phi = _ssvi_slices(model, theta, None)
    # Gatheral & Jacquier (2014) Theorem 4.2: sufficient conditions for no butterfly arbitrage
    assert (thetas * phi * (1 + abs(rho_)) < 4.0).all()
    assert (thetas * phi**2 * (1 + abs(rho_)) <= 4.0 * (1 + 1e-12)).all()
    k = np.linspace(-3.0, 3.0, 121)
    for raw in ssvi_to_svi_raw(thetas, rho=rho_, phi=phi):
        assert svi_durrleman_g(k, raw).min() >= -1e-9
    # calendar: total variance non-decreasing in t at every k, fitted and interpolated expiries alike
    t = np.array([0.005, 0.01, 0.05, 0.1, 0.3, 0.5, 0.8, 1.0, 2.0, 3.0, 4.0])
    kk, tt = np.meshgrid(k, t)
    vol = model.values(theta, model.prepare(_quotes(kk.ravel(), tt.ravel()))).reshape(tt.shape)
    assert (np.diff(vol**2 * tt, axis=0) >= -1e-12).all()


def test_slice_models_guess_one_expiry_at_a_time():
    quotes = _quotes(np.tile(np.linspace(-0.2, 0.2, 7), 2), np.repeat([0.1, 0.3], 7), 0.5)
    for model in (FlatBlack(), SVI(), SABR()):
        assert model.initial_guesses(quotes).shape == (2, len(model.params))
        with pytest.raises(CalibrationError, match="one expiry"):
            model.initial_guess(quotes)


def test_ssvi_slices_are_svi_slices():
    thetas, rho, phi = np.array([0.01, 0.3]), -0.6, np.array([5.0, 0.8])
    k = np.linspace(-2, 2, 41)
    for th, ph, raw in zip(thetas, phi, ssvi_to_svi_raw(thetas, rho=rho, phi=phi)):
        assert svi_total_variance(k, *raw) == pytest.approx(ssvi_total_variance(k, th, rho=rho, phi=ph), rel=1e-13)


def test_ssvi_theta_of_t_interpolates_linearly_and_keeps_atm_vol_outside():
    model = SSVI(expiry_ttm=(0.1, 0.5))
    theta = np.array([0.01, 0.03, -0.3, 0.5, 0.4])  # theta(0.1) = 0.01, theta(0.5) = 0.04
    t = np.array([0.05, 0.1, 0.3, 0.5, 1.0])
    plan = model.prepare(_quotes(np.zeros(5), t))
    assert plan.theta_map @ theta[:2] == pytest.approx([0.005, 0.01, 0.025, 0.04, 0.08], rel=1e-14)
    assert model.values(theta, plan) == pytest.approx(np.sqrt(plan.theta_map @ theta[:2] / t), rel=1e-14)


def test_ssvi_must_be_sized_for_its_expiries():
    quotes = _quotes([0.0, 0.1], [0.1, 0.2], 0.5)
    with pytest.raises(CalibrationError, match="for_quotes"):
        SSVI().prepare(quotes)
    assert SSVI().for_quotes(quotes).expiry_ttm == (0.1, 0.2)


def test_ssvi_jacobian_matches_finite_differences():
    model = SSVI(expiry_ttm=(0.02, 0.1, 0.4))
    k = np.linspace(-0.5, 0.5, 9)
    t = np.array([0.01, 0.02, 0.06, 0.1, 0.4, 0.7])  # fitted, interpolated and extrapolated expiries
    kk, tt = np.meshgrid(k, t)
    plan = model.prepare(_quotes(kk.ravel(), tt.ravel()))
    for rho in (-0.4, 0.3):
        theta = np.array([0.004, 0.01, 0.03, rho, 0.7, 0.35])
        assert model.jacobian(theta, plan) == pytest.approx(_fd_jacobian(model, theta, plan, h=1e-7), rel=1e-5,
                                                            abs=1e-7)


@pytest.mark.parametrize("path", [BTC_DEMO, ETH], ids=["btc-demo", "eth-deribit"])
def test_ssvi_fits_stay_free_of_static_arbitrage(path):
    quotes = _snapshot_quotes(path)
    model = SSVI().for_quotes(quotes)
    fit = _fit(model, quotes, model.initial_guess(quotes))
    thetas, rho, eta, gamma = model.components(fit.x)
    assert _rmse_points(model.values(fit.x, model.prepare(quotes)), quotes.vol_mid) < 2.5
    k = np.linspace(-2.0, 2.0, 401)
    phi = power_law_phi(thetas, eta=eta, gamma=gamma)
    for raw in ssvi_to_svi_raw(thetas, rho=rho, phi=phi):  # every fitted slice: Durrleman's g >= 0
        assert svi_durrleman_g(k, raw).min() >= 0.0
    w = np.array([ssvi_total_variance(k, th, rho=rho, phi=ph) for th, ph in zip(thetas, phi)])
    assert (np.diff(w, axis=0) >= 0.0).all()  # no calendar arbitrage across the fitted expiries
    if path == BTC_DEMO:  # synthetic: the true parameters are known
        truth = json.loads(BTC_DEMO.with_suffix(".params.json").read_text())
        surface = truth["surface"]
        assert (rho, eta, gamma) == pytest.approx((surface["rho"], surface["eta"], surface["gamma"]), abs=0.02)
        known = {round(e["ttm"], 6): e["theta"] for e in truth["expiries"]}
        for t, th in zip(quotes.expiry_ttm, thetas):
            assert th == pytest.approx(known[round(t, 6)], rel=0.02)


# ---------------------------------------------------------------------------------------------------------------
# the batched slice fitter


def _svi_surface(noise, seed=3):
    rng = np.random.default_rng(seed)
    ts = np.array([0.01, 0.05, 0.2, 0.6, 1.5])
    thetas = 0.36 * ts
    raw = ssvi_to_svi_raw(thetas, rho=-0.35, phi=power_law_phi(thetas, eta=0.9, gamma=0.4))
    k = np.concatenate([np.linspace(-2.5, 2.0, 21) * np.sqrt(th) for th in thetas])
    t = np.repeat(ts, 21)
    vol = np.sqrt(svi_total_variance(k, *raw[np.repeat(np.arange(5), 21)].T) / t) + rng.normal(0, noise, k.size)
    return _quotes(k, t, vol), raw


def test_fit_slices_reaches_the_per_slice_least_squares_optimum():
    quotes, _ = _svi_surface(noise=0.002)
    model = SVI()
    plan = model.prepare(quotes)
    batched = fit_slices(model, plan, quotes.vol_mid, model.initial_guesses(quotes))
    assert batched.converged.all()
    for j in range(quotes.expiry_ttm.size):
        one = quotes.slice(j)
        reference = _fit(model, one, model.initial_guess(one))
        assert batched.cost[j] == pytest.approx(reference.cost, rel=1e-8)
        assert (model.constraints(batched.theta[j]) >= 0.0).all()


def _uneven(quotes: QuoteArrays, seed: int = 2) -> QuoteArrays:
    """Drop about a third of the quotes at random: expiries with different numbers of quotes (padded layout)."""
    return quotes.take(np.random.default_rng(seed).random(quotes.n) >= 0.3)


@pytest.mark.parametrize("model", [SVI(), SABR(beta=0.5), SABR(beta=None)], ids=["svi", "sabr", "sabr-beta"])
def test_slice_plan_restrict_is_the_plan_of_the_kept_expiries(model):
    quotes = _uneven(_svi_surface(noise=0.002)[0])
    keep = np.array([True, False, True, False, True])
    direct = model.prepare(quotes.take(keep[quotes.expiry_index]))
    restricted = model.prepare(quotes).restrict(keep)
    assert restricted.n_expiries == direct.n_expiries == 3
    np.testing.assert_array_equal(restricted.expiry_index, direct.expiry_index)
    theta = model.initial_guesses(quotes)[keep]
    for a, b in zip(model.value_and_jacobian(theta, restricted), model.value_and_jacobian(theta, direct)):
        np.testing.assert_array_equal(a, b)  # same quotes and precomputed terms (SABR's fixed-beta terms)


@pytest.mark.parametrize("model", [SVI(), SABR(beta=0.5)], ids=["svi", "sabr"])
def test_fit_slices_gives_every_expiry_the_fit_it_gets_alone(model):
    """Expiries that finish early leave the batch; the others go on with the same numbers as a fit of their own."""
    quotes = _uneven(_svi_surface(noise=0.004, seed=5)[0])
    weight = 1.0 + np.abs(quotes.k)
    start = model.initial_guesses(quotes)
    start[[0, 3]] = 0.5 * (start[[0, 3]] + start[[1, 4]])  # two expiries start further away: they finish later
    batched = fit_slices(model, model.prepare(quotes), quotes.vol_mid, start, weight=weight)
    alone = []
    for j in range(quotes.expiry_ttm.size):
        rows = quotes.expiry_index == j
        one = quotes.take(rows)
        # the weights of one expiry scaled so that its exact-fit threshold (from the largest weight) is the same
        scale = np.max(weight) / np.max(weight[rows])
        alone.append(fit_slices(model, model.prepare(one), one.vol_mid, start[j:j + 1], weight=weight[rows] * scale))
        assert batched.theta[j] == pytest.approx(alone[j].theta[0], rel=1e-9, abs=1e-12)
        assert batched.cost[j] * scale**2 == pytest.approx(alone[j].cost[0], rel=1e-9)
    assert batched.converged.all()
    iterations = [a.iterations for a in alone]
    assert batched.iterations == max(iterations) and min(iterations) < max(iterations)


def test_fit_slices_with_weights_matches_weighted_least_squares():
    quotes, _ = _svi_surface(noise=0.003, seed=11)
    model = SABR(beta=0.5)
    weight = 1.0 + np.abs(quotes.k) * 3.0
    plan = model.prepare(quotes)
    batched = fit_slices(model, plan, quotes.vol_mid, model.initial_guesses(quotes), weight=weight)
    lower, upper = bounds_of(model.params)
    for j in range(quotes.expiry_ttm.size):
        rows = quotes.expiry_index == j
        one = model.prepare(quotes.slice(j))
        ref = least_squares(lambda x: (model.values(x, one) - quotes.vol_mid[rows]) * weight[rows],
                            model.initial_guess(quotes.slice(j)), bounds=(lower, upper), xtol=1e-15, ftol=1e-15,
                            jac=lambda x: model.jacobian(x, one) * weight[rows][:, None])
        assert batched.cost[j] == pytest.approx(ref.cost, rel=1e-8)


def test_svi_bounds_follow_each_expiry_and_survive_json():
    quotes, _ = _svi_surface(noise=0.0)
    model = SVI()
    lower, upper = model.expiry_bounds(model.prepare(quotes))
    static_lower, static_upper = bounds_of(model.params)
    for j in range(quotes.expiry_ttm.size):
        k = quotes.k[quotes.expiry_index == j]
        width = k.max() - k.min()
        expected = np.clip([k.min() - width, k.max() + width], static_lower[3], static_upper[3])
        assert (lower[j, 3], upper[j, 3]) == pytest.approx(tuple(expected))
        assert (lower[j, 4], upper[j, 4]) == pytest.approx((0.01 * width, 2.0 * width))
    guesses = model.initial_guesses(quotes)
    assert ((guesses >= lower) & (guesses <= upper)).all()
    sized = model.for_quotes(quotes.slice(0))
    assert sized.m_range == pytest.approx((lower[0, 3], upper[0, 3]))
    rebuilt = get_model("svi", {"m_range": list(sized.m_range), "sigma_range": list(sized.sigma_range)})
    assert rebuilt == sized and bounds_of(rebuilt.params)[1][3] == pytest.approx(upper[0, 3])


def test_fit_slices_recovers_clean_surfaces_of_every_slice_model():
    quotes, raw = _svi_surface(noise=0.0)
    model = SVI()
    fitted = fit_slices(model, model.prepare(quotes), quotes.vol_mid, model.initial_guesses(quotes))
    assert fitted.converged.all() and fitted.theta == pytest.approx(raw, abs=1e-7)
    sabr = SABR(beta=0.5)
    truth = np.array([[0.5, -0.3, 4.0], [0.45, -0.25, 2.0], [0.42, -0.2, 1.0], [0.4, -0.15, 0.6], [0.4, -0.1, 0.4]])
    vol = sabr_vol(quotes.k, quotes.ttm, *truth[quotes.expiry_index].T[:1], 0.5, *truth[quotes.expiry_index].T[1:])
    fitted = fit_slices(sabr, sabr.prepare(quotes), vol, sabr.initial_guesses(quotes.with_values(vol_mid=vol)))
    assert fitted.converged.all() and fitted.theta == pytest.approx(truth, rel=1e-7)
    flat = FlatBlack()
    fitted = fit_slices(flat, flat.prepare(quotes), vol, flat.initial_guesses(quotes.with_values(vol_mid=vol)))
    means = np.bincount(quotes.expiry_index, weights=vol) / np.bincount(quotes.expiry_index)
    assert fitted.theta[:, 0] == pytest.approx(means, rel=1e-10)
