"""Black-76 prices and greeks against QuantLib and 40-digit mpmath references."""

from __future__ import annotations

import mpmath as mp
import numpy as np
import pytest

from calibration.black import (
    black_greeks,
    black_price,
    normalised_black,
    normalised_otm_call,
    option_sign,
)

F0 = 100.0
TTMS = (1.0 / 365.0, 30.0 / 365.0, 0.25, 1.0, 5.0)
VOLS = (0.05, 0.2, 0.5, 1.0, 3.0)
N_SD = (-6.0, -3.0, -1.0, 0.0, 1.0, 3.0, 6.0)


def mp_price(F, K, t, sigma, is_call, D):
    """Discounted Black price as an mpf, from the exact float64 inputs."""
    return mp_price_mp(*(mp.mpf(float(v)) for v in (F, K, t, sigma)), is_call, mp.mpf(float(D)))


def mp_price_mp(F, K, t, sigma, is_call, D):
    """Discounted Black price for mpf arguments (also those mpmath.diff varies)."""
    F, K, t, sigma = mp.mpf(F), mp.mpf(float(K)), mp.mpf(t), mp.mpf(sigma)
    s = sigma * mp.sqrt(t)
    d1 = mp.log(F / K) / s + s / 2
    d2 = d1 - s
    if is_call:
        return D * (F * mp.ncdf(d1) - K * mp.ncdf(d2))
    return D * (K * mp.ncdf(-d2) - F * mp.ncdf(-d1))


def grid():
    for t in TTMS:
        for sigma in VOLS:
            for n in N_SD:
                K = F0 * np.exp(n * sigma * np.sqrt(t))
                for is_call in (True, False):
                    yield K, t, sigma, is_call


def test_price_against_mpmath():
    """Relative error a few ulps, growing like eps / s for tiny total std dev s (the two Black terms cancel);
    out of the money, in vol units (error / vega), it stays below 1e-13 (a tenth of the implied-vol target)."""
    D = 0.97
    with mp.workdps(40):
        for K, t, sigma, is_call in grid():
            ref = mp_price(F0, K, t, sigma, is_call, D)
            got = black_price(F0, K, t, sigma, is_call=is_call, discount=D)
            s = sigma * np.sqrt(t)
            err = abs(mp.mpf(float(got)) - ref)
            assert float(err / ref) <= 1e-14 + 4e-15 / s, (K, t, sigma, is_call)
            if (K >= F0) == is_call:  # out of the money: the price is all time value
                d1 = mp.log(mp.mpf(F0) / mp.mpf(float(K))) / s + s / 2
                vega = D * F0 * mp.npdf(d1) * mp.sqrt(mp.mpf(t))
                assert float(err / vega) <= 1e-13, (K, t, sigma, is_call)


def test_price_against_quantlib():
    ql = pytest.importorskip("QuantLib")
    D = 0.95
    for K, t, sigma, is_call in grid():
        kind = ql.Option.Call if is_call else ql.Option.Put
        ref = ql.blackFormula(kind, K, F0, sigma * np.sqrt(t), D)
        got = float(black_price(F0, K, t, sigma, is_call=is_call, discount=D))
        # QuantLib subtracts F N(d1) - K N(d2) directly: its absolute error is ~eps * max(F, K)
        assert abs(got - ref) <= 1e-12 * abs(ref) + 1e-13 * max(F0, K), (K, t, sigma, is_call)


def test_normalised_otm_call_deep_wing_relative_accuracy():
    with mp.workdps(40):
        for s in (0.05, 0.2, 1.0, 3.0):
            for x in (-0.01, -0.5, -2.0, -8.0, -20.0):
                xs, ss = mp.mpf(x), mp.mpf(s)
                h, t = xs / ss, ss / 2
                ref = mp.exp(xs / 2) * mp.ncdf(h + t) - mp.exp(-xs / 2) * mp.ncdf(h - t)
                if ref < mp.mpf("1e-300"):
                    continue
                got = float(normalised_otm_call(x, s))
                assert float(abs((mp.mpf(got) - ref) / ref)) <= 2e-13, (x, s)


def test_normalised_edge_values():
    assert normalised_otm_call(-0.5, 0.0) == 0.0
    assert np.isnan(normalised_otm_call(np.nan, 0.2))
    assert np.isnan(normalised_otm_call(-0.2, np.nan))
    x, s = 0.3, 0.4
    # put-call symmetry and parity in normalised space: b_put(x) = b_call(-x), b_call(x) - b_put(x) = 2 sinh(x/2)
    assert normalised_black(x, s, -1.0) == pytest.approx(float(normalised_otm_call(-x, s)), rel=1e-15)
    diff = normalised_black(x, s, 1.0) - normalised_black(x, s, -1.0)
    assert diff == pytest.approx(2 * np.sinh(x / 2), rel=1e-14)
    np.testing.assert_array_equal(option_sign([True, False]), [1.0, -1.0])


def test_put_call_parity_prices():
    rng = np.random.default_rng(3)
    K = F0 * np.exp(rng.uniform(-1, 1, 200))
    t = rng.uniform(0.01, 3, 200)
    sigma = rng.uniform(0.05, 2, 200)
    D = rng.uniform(0.8, 1.0, 200)
    c = black_price(F0, K, t, sigma, is_call=True, discount=D)
    p = black_price(F0, K, t, sigma, is_call=False, discount=D)
    np.testing.assert_allclose(c - p, D * (F0 - K), rtol=0, atol=1e-12 * F0)


# --------------------------------------------------------------------------------------------------------
# greeks
# --------------------------------------------------------------------------------------------------------

GREEK_CASES = [
    (100.0, 110.0, 0.7, 0.3, 0.95, True),
    (100.0, 90.0, 0.7, 0.3, 0.95, False),
    (2500.0, 3500.0, 0.1, 0.9, 0.99, True),
    (2500.0, 1800.0, 2.0, 0.6, 0.9, False),
    (50.0, 50.0, 1.0 / 365.0, 0.2, 1.0, True),
]


@pytest.mark.parametrize(("F", "K", "t", "sigma", "D", "is_call"), GREEK_CASES)
def test_greeks_against_quantlib(F, K, t, sigma, D, is_call):
    ql = pytest.importorskip("QuantLib")
    payoff = ql.PlainVanillaPayoff(ql.Option.Call if is_call else ql.Option.Put, K)
    calc = ql.BlackCalculator(payoff, F, sigma * np.sqrt(t), D)
    g = black_greeks(F, K, t, sigma, is_call=is_call, discount=D)
    assert float(g.delta) == pytest.approx(calc.deltaForward(), rel=1e-12, abs=1e-15)
    assert float(g.gamma) == pytest.approx(calc.gammaForward(), rel=1e-12)
    assert float(g.vega) == pytest.approx(calc.vega(t), rel=1e-12)
    assert float(g.vanna) == pytest.approx(calc.vanna(F, t), rel=1e-11, abs=1e-14)
    # QuantLib's BlackCalculator.volga follows another convention; volga is checked against mpmath below.


@pytest.mark.parametrize(("F", "K", "t", "sigma", "D", "is_call"), GREEK_CASES)
def test_greeks_against_mpmath_derivatives(F, K, t, sigma, D, is_call):
    """All six greeks as derivatives of the 40-digit price, theta with F fixed and D = exp(-r t)."""
    g = black_greeks(F, K, t, sigma, is_call=is_call, discount=D)
    with mp.workdps(40):
        r = -mp.log(mp.mpf(D)) / mp.mpf(t)

        def price(f=F, tt=t, vol=sigma):
            return mp_price_mp(f, K, tt, vol, is_call, mp.exp(-r * tt))

        refs = {
            "delta": mp.diff(lambda f: price(f=f), F),
            "gamma": mp.diff(lambda f: price(f=f), F, 2),
            "vega": mp.diff(lambda v: price(vol=v), sigma),
            "theta": -mp.diff(lambda tt: price(tt=tt), t),
            "vanna": mp.diff(lambda f, v: price(f=f, vol=v), (F, sigma), (1, 1)),
            "volga": mp.diff(lambda v: price(vol=v), sigma, 2),
        }
    for name, ref in refs.items():
        got = float(getattr(g, name))
        assert got == pytest.approx(float(ref), rel=1e-11, abs=1e-13 * F), name


def test_greeks_parity_and_broadcasting():
    K = np.array([80.0, 100.0, 125.0])
    t = np.array([[0.1], [1.0]])
    c = black_greeks(F0, K, t, 0.4, is_call=True, discount=0.97)
    p = black_greeks(F0, K, t, 0.4, is_call=False, discount=0.97)
    assert c.delta.shape == (2, 3)
    np.testing.assert_allclose(c.delta - p.delta, 0.97, rtol=1e-14)
    for name in ("gamma", "vega", "vanna", "volga"):
        np.testing.assert_allclose(getattr(c, name), getattr(p, name), rtol=1e-14)
    # theta parity: -d/dt [D (F - K)] = r D (F - K)
    r = -np.log(0.97) / t
    np.testing.assert_allclose(c.theta - p.theta, r * 0.97 * (F0 - K), rtol=1e-10, atol=1e-12)
