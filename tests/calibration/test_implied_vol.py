"""Implied volatility: accuracy against mpmath, agreement with QuantLib and vollib, reason codes.

"Where the price carries the information" is made precise as: the vol change implied by one unit in the last
place of the price, ``cond = |V| eps / vega``, is at most ``1e-14`` (a hundredth of the target). There the
solver must be within ``1e-12`` of the true vol. Elsewhere it must either fail with NaN and a reason code, or
stay within ``1e-12 + 8 cond`` (its error follows the conditioning of the input, nothing worse).

Reference prices are computed in 40-digit arithmetic with mpmath from the exact float64 inputs and rounded to
float64 once, so the only information lost is the one ulp of the price that ``cond`` accounts for.
"""

from __future__ import annotations

import warnings

import mpmath as mp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calibration.black import black_price, normalised_black
from calibration.implied_vol import IV_REASONS, ImpliedVolResult, implied_std_normalised, implied_vol

EPS = np.finfo(float).eps
TOL = 1e-12
WELL_CONDITIONED = 1e-14


def mp_black(F: float, K: float, t: float, sigma: float, is_call: bool, D: float = 1.0) -> tuple[float, float]:
    """Discounted Black price and vega (dV/dsigma) at 40 digits from exact float64 inputs, rounded once."""
    with mp.workdps(40):
        F_, K_, t_, sig_, D_ = (mp.mpf(float(v)) for v in (F, K, t, sigma, D))
        s = sig_ * mp.sqrt(t_)
        d1 = mp.log(F_ / K_) / s + s / 2
        d2 = d1 - s
        if is_call:
            v = F_ * mp.ncdf(d1) - K_ * mp.ncdf(d2)
        else:
            v = K_ * mp.ncdf(-d2) - F_ * mp.ncdf(-d1)
        vega = D_ * F_ * mp.npdf(d1) * mp.sqrt(t_)
        return float(D_ * v), float(vega)


def conditioning(price: np.ndarray, vega: np.ndarray) -> np.ndarray:
    """Vol change implied by one ulp of the price."""
    with np.errstate(divide="ignore"):
        return np.abs(price) * EPS / vega


def check_against_truth(result: ImpliedVolResult, sigma: np.ndarray, cond: np.ndarray) -> None:
    err = np.abs(result.vol - sigma)
    good = cond <= WELL_CONDITIONED
    assert np.all(result.code[good] == 0), IV_REASONS
    worst = np.max(err[good], initial=0.0)
    assert worst <= TOL, f"max error {worst:.3e} where the price carries the information"
    rest = ~good
    failed = result.code[rest] != 0
    assert np.all(np.isnan(result.vol[rest][failed]))
    solved_err = err[rest][~failed]
    assert np.all(solved_err <= TOL + 8.0 * cond[rest][~failed])


# --------------------------------------------------------------------------------------------------------
# the grid of the issue: 1 day .. 5 years, 5 % .. 300 % vol, out to 6 standard deviations
# --------------------------------------------------------------------------------------------------------

TTMS = np.array([1.0 / 365.0, 7.0 / 365.0, 30.0 / 365.0, 0.25, 1.0, 5.0])
VOLS = np.array([0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0])
N_SD = np.linspace(-6.0, 6.0, 13)


@pytest.fixture(scope="module")
def grid() -> dict[str, np.ndarray]:
    rows = []
    F = 100.0
    for t in TTMS:
        for sigma in VOLS:
            for n in N_SD:
                K = F * np.exp(n * sigma * np.sqrt(t))
                for is_call in (True, False):
                    for rate in (0.0, 0.05):
                        D = np.exp(-rate * t)
                        price, vega = mp_black(F, K, t, sigma, is_call, D)
                        rows.append((K, t, sigma, is_call, D, price, vega, n))
    cols = list(zip(*rows))
    names = ["strike", "ttm", "vol", "is_call", "discount", "price", "vega", "n_sd"]
    out = {name: np.array(col) for name, col in zip(names, cols)}
    out["forward"] = np.full(len(rows), F)
    return out


def test_grid_against_mpmath(grid):
    g = grid
    res = implied_vol(g["price"], g["forward"], g["strike"], g["ttm"], is_call=g["is_call"], discount=g["discount"])
    cond = conditioning(g["price"], g["vega"])
    # the grid must exercise both regimes, or the test says nothing
    assert (cond <= WELL_CONDITIONED).sum() > 1400
    assert (cond > WELL_CONDITIONED).sum() > 100
    check_against_truth(res, g["vol"], cond)


def test_grid_out_of_the_money_all_solved(grid):
    """Out-of-the-money quotes, even 6 sd out at 1 day and 5 % vol, are all solved to 1e-12."""
    g = grid
    otm = np.where(g["is_call"], g["strike"] >= g["forward"], g["strike"] <= g["forward"])
    res = implied_vol(
        g["price"][otm], 100.0, g["strike"][otm], g["ttm"][otm], is_call=g["is_call"][otm], discount=g["discount"][otm]
    )
    assert np.all(res.code == 0)
    assert np.max(np.abs(res.vol - g["vol"][otm])) <= TOL


def test_one_day_five_percent_six_sd():
    F, t, sigma = 100.0, 1.0 / 365.0, 0.05
    K = F * np.exp(np.array([-6.0, 6.0]) * sigma * np.sqrt(t))
    calls = np.array([False, True])
    prices = np.array([mp_black(F, k, t, sigma, c)[0] for k, c in zip(K, calls)])
    assert np.all(prices > 0.0) and np.all(prices < 1e-9)  # tiny time values
    res = implied_vol(prices, F, K, t, is_call=calls)
    np.testing.assert_array_equal(res.code, 0)
    assert np.max(np.abs(res.vol - sigma)) <= TOL


def test_deep_wings_and_short_expiries():
    """Beyond the issue's grid: 1 hour to 1 day, out to 12 sd, still within 1e-12."""
    rows = []
    F = 2500.0
    for t in (1.0 / (365 * 24), 1.0 / (365 * 4), 1.0 / 365.0):
        for sigma in (0.05, 0.3, 1.5):
            for n in (-12.0, -9.0, -7.5, 7.5, 9.0, 12.0):
                K = F * np.exp(n * sigma * np.sqrt(t))
                price, vega = mp_black(F, K, t, sigma, n > 0)
                rows.append((K, t, sigma, n > 0, price, vega))
    K, t, sigma, calls, price, vega = (np.array(c) for c in zip(*rows))
    res = implied_vol(price, F, K, t, is_call=calls)
    check_against_truth(res, sigma, conditioning(price, vega))
    assert np.all(res.code == 0)


# --------------------------------------------------------------------------------------------------------
# other implementations (their own accuracy is lower; compare on the central part of the grid)
# --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def central(grid) -> dict[str, np.ndarray]:
    g = grid
    keep = (np.abs(g["n_sd"]) <= 3.0) & (g["ttm"] >= 7.0 / 365.0) & (g["vol"] <= 2.0)
    keep &= conditioning(g["price"], g["vega"]) <= WELL_CONDITIONED
    out = {k: v[keep] for k, v in g.items()}
    out["ours"] = implied_vol(
        out["price"], out["forward"], out["strike"], out["ttm"], is_call=out["is_call"], discount=out["discount"]
    ).vol
    assert out["ours"].size > 300
    return out


def test_agrees_with_quantlib(central):
    ql = pytest.importorskip("QuantLib")
    c = central
    theirs = np.array(
        [
            ql.blackFormulaImpliedStdDev(
                ql.Option.Call if call else ql.Option.Put, K, F, p, D, 0.0, ql.nullDouble(), 1e-12, 100
            )
            / np.sqrt(t)
            for call, K, F, p, D, t in zip(c["is_call"], c["strike"], c["forward"], c["price"], c["discount"], c["ttm"])
        ]
    )
    # QuantLib's own solver stops at a 1e-12 std-dev accuracy; it agrees to ~5e-12 in vol here.
    assert np.max(np.abs(theirs - c["ours"])) <= 1e-10
    assert np.max(np.abs(theirs - c["vol"])) <= 1e-10


def test_agrees_with_vollib(central):
    vollib_iv = pytest.importorskip("vollib.black.implied_volatility")
    c = central
    theirs = np.array(
        [
            vollib_iv.implied_volatility(p, F, K, -np.log(D) / t, t, "c" if call else "p")
            for call, K, F, p, D, t in zip(c["is_call"], c["strike"], c["forward"], c["price"], c["discount"], c["ttm"])
        ]
    )
    # vollib runs Let's Be Rational in C: full precision too, up to its discounting through exp(r t).
    assert np.max(np.abs(theirs - c["ours"])) <= 1e-12


# --------------------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    forward=st.floats(0.01, 1e5),
    n_sd=st.floats(-6.0, 6.0),
    ttm=st.floats(1.0 / 365.0, 5.0),
    sigma=st.floats(0.05, 3.0),
    is_call=st.booleans(),
    discount=st.floats(0.3, 1.0),
)
def test_round_trip_hypothesis(forward, n_sd, ttm, sigma, is_call, discount):
    strike = forward * np.exp(n_sd * sigma * np.sqrt(ttm))
    price, vega = mp_black(forward, strike, ttm, sigma, is_call, discount)
    res = implied_vol(price, forward, strike, ttm, is_call=is_call, discount=discount)
    check_against_truth(
        ImpliedVolResult(vol=np.atleast_1d(res.vol), code=np.atleast_1d(res.code)),
        np.atleast_1d(sigma),
        np.atleast_1d(conditioning(np.array(price), np.array(vega))),
    )


def test_normalised_solver_round_trip():
    rng = np.random.default_rng(7)
    x = rng.uniform(-3.0, 3.0, 2000)
    s = np.exp(rng.uniform(np.log(0.01), np.log(5.0), 2000))
    theta = np.where(rng.random(2000) < 0.5, 1.0, -1.0)
    beta = normalised_black(x, s, theta)
    got = implied_std_normalised(beta, x, is_call=theta > 0)
    # out of the money the normalised price carries full information; in the money the intrinsic value
    # swamps it: bound by the conditioning of the normalised price (vega of b in s is b'(s)).
    h, t = x / s, s / 2
    slope = np.exp(-0.5 * (h * h + t * t)) / np.sqrt(2 * np.pi)
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = 1e-13 + 16 * np.spacing(np.abs(beta)) / slope  # spacing: subnormal prices hold fewer digits
    bound[np.isnan(bound)] = np.inf  # beta underflowed to 0: nothing to invert
    lost = np.isnan(got)  # deep in the money, the time value can vanish below one ulp of the intrinsic value
    assert np.all(bound[lost] > 1e-6)
    assert np.all(np.abs(got - s)[~lost] <= bound[~lost])
    assert np.isnan(implied_std_normalised(-0.1, 0.0))
    assert np.isnan(implied_std_normalised(1.5, -0.2, is_call=True))  # above exp(x/2)


def test_through_black_price_shapes_and_broadcasting():
    F = np.array([[90.0], [110.0]])  # (2, 1)
    K = np.array([80.0, 100.0, 120.0])  # (3,)
    sigma = 0.4
    t = 0.5
    calls = np.array([False, True, True])
    price = black_price(F, K, t, sigma, is_call=calls, discount=0.98)
    res = implied_vol(price, F, K, t, is_call=calls, discount=0.98)
    assert res.vol.shape == (2, 3) and res.code.shape == (2, 3)
    assert res.code.dtype == np.int8
    np.testing.assert_allclose(res.vol, sigma, rtol=0, atol=1e-12)
    scalar = implied_vol(float(price[0, 1]), 90.0, 100.0, t, is_call=True, discount=0.98)
    assert scalar.vol.shape == ()
    assert abs(float(scalar.vol) - sigma) <= 1e-12


def test_in_the_money_through_parity():
    """ITM quotes with well-conditioned prices solve as accurately as OTM ones, calls and puts alike."""
    F, t = 100.0, 0.5
    sigma = np.array([0.3, 0.3, 0.8, 0.8])
    K = np.array([90.0, 110.0, 70.0, 140.0])
    calls = np.array([True, False, True, False])  # all in the money
    out = [mp_black(F, k, t, s, c) for k, s, c in zip(K, sigma, calls)]
    price = np.array([p for p, _ in out])
    vega = np.array([v for _, v in out])
    assert np.all(conditioning(price, vega) <= WELL_CONDITIONED)
    res = implied_vol(price, F, K, t, is_call=calls)
    assert np.max(np.abs(res.vol - sigma)) <= TOL


# --------------------------------------------------------------------------------------------------------
# failures: NaN plus a reason, never 0, never an exception, never a warning
# --------------------------------------------------------------------------------------------------------


def code_of(name: str) -> int:
    return {v: k for k, v in IV_REASONS.items()}[name]


def test_reason_table():
    assert IV_REASONS[0] == "ok"
    assert sorted(IV_REASONS) == list(range(len(IV_REASONS)))
    assert all(name.replace("_", "").isalpha() and name.islower() for name in IV_REASONS.values())


@pytest.mark.parametrize(
    ("price", "forward", "strike", "ttm", "is_call", "discount", "reason"),
    [
        (np.nan, 100.0, 100.0, 1.0, True, 1.0, "non_finite_input"),
        (5.0, np.nan, 100.0, 1.0, True, 1.0, "non_finite_input"),
        (5.0, 100.0, np.inf, 1.0, True, 1.0, "non_finite_input"),
        (5.0, 100.0, 100.0, np.nan, True, 1.0, "non_finite_input"),
        (5.0, 100.0, 100.0, 1.0, True, np.nan, "non_finite_input"),
        (np.inf, 100.0, 100.0, 1.0, True, 1.0, "non_finite_input"),
        (5.0, 100.0, 100.0, 0.0, True, 1.0, "non_positive_ttm"),
        (5.0, 100.0, 100.0, -0.1, False, 1.0, "non_positive_ttm"),
        (5.0, 0.0, 100.0, 1.0, True, 1.0, "non_positive_forward_or_strike"),
        (5.0, 100.0, -5.0, 1.0, False, 1.0, "non_positive_forward_or_strike"),
        (5.0, 100.0, 100.0, 1.0, True, 0.0, "non_positive_discount"),
        (0.0, 100.0, 120.0, 1.0, True, 1.0, "non_positive_price"),
        (-1.0, 100.0, 80.0, 1.0, False, 1.0, "non_positive_price"),
        (19.0, 100.0, 80.0, 1.0, True, 1.0, "below_intrinsic"),  # call intrinsic 20
        (9.0, 90.0, 100.0, 1.0, False, 0.95, "below_intrinsic"),  # put intrinsic 0.95 * 10 = 9.5
        (20.0, 100.0, 80.0, 1.0, True, 1.0, "no_time_value"),  # exactly intrinsic
        (9.5, 90.0, 100.0, 1.0, False, 0.95, "no_time_value"),
        (100.0, 100.0, 80.0, 1.0, True, 1.0, "above_max_price"),  # call <= D F
        (95.0, 100.0, 120.0, 1.0, True, 0.95, "above_max_price"),
        (80.0, 100.0, 80.0, 1.0, False, 1.0, "above_max_price"),  # put <= D K
        (150.0, 100.0, 120.0, 1.0, False, 1.0, "above_max_price"),
    ],
)
def test_failure_codes(price, forward, strike, ttm, is_call, discount, reason):
    res = implied_vol(price, forward, strike, ttm, is_call=is_call, discount=discount)
    assert np.isnan(res.vol)
    assert int(res.code) == code_of(reason)
    assert res.reasons() == reason


def test_mixed_array_no_exception_no_warning():
    F, t = 100.0, 0.25
    good_price = black_price(F, 105.0, t, 0.35, is_call=True)
    price = np.array([good_price, np.nan, -1.0, 0.0, 150.0, good_price, good_price])
    K = np.array([105.0, 105.0, 105.0, 105.0, 105.0, 105.0, 105.0])
    ttm = np.array([t, t, t, t, t, 0.0, t])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        res = implied_vol(price, F, K, ttm, is_call=True)
    names = list(res.reasons())
    assert names == [
        "ok",
        "non_finite_input",
        "non_positive_price",
        "non_positive_price",
        "above_max_price",
        "non_positive_ttm",
        "ok",
    ]
    assert abs(res.vol[0] - 0.35) <= 1e-12 and abs(res.vol[6] - 0.35) <= 1e-12
    assert np.all(np.isnan(res.vol[1:6]))
    assert not np.any(res.vol == 0.0)


def test_prices_at_the_edges_of_the_range():
    """Prices a hair inside the bounds still solve (or fail with a code), never return garbage."""
    F, K, t = 100.0, 100.0, 1.0
    tiny = np.nextafter(0.0, 1.0) * 2**60  # far below any meaningful premium
    near_max = np.nextafter(F, 0.0)
    res = implied_vol(np.array([tiny, near_max]), F, K, t, is_call=True)
    for vol, code in zip(res.vol, res.code):
        assert (code == 0 and np.isfinite(vol) and vol > 0) or (code != 0 and np.isnan(vol))
    assert res.code[1] == 0 and res.vol[1] > 10.0  # a call worth almost the forward: huge vol, but a vol


def test_empty_input():
    res = implied_vol(np.array([]), 100.0, 100.0, 1.0, is_call=True)
    assert res.vol.shape == (0,) and res.code.shape == (0,)
    assert res.reasons().shape == (0,)
