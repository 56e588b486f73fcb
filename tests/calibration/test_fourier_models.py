"""Fourier-priced models: Heston, Merton, Bates (calibration/pricing/fourier.py and their model modules).

Independent references only: published values (Fang & Oosterlee 2008; Alan Lewis's 50-digit Heston reference
prices), QuantLib's AnalyticHestonEngine and BatesEngine, the Merton (1976) series written out here, the
Lewis integral evaluated in mpmath, and finite differences of QuantLib prices for the Jacobians.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import mpmath as mp
import numpy as np
import pytest

from calibration.black import black_price
from calibration.implied_vol import implied_vol
from calibration.models import get_model
from calibration.models.base import Model, QuoteArrays, bounds_of
from calibration.models.bates import Bates
from calibration.models.heston import Heston
from calibration.models.merton import Merton
from calibration.pricing.fourier import cumulants

ql = pytest.importorskip("QuantLib")

TODAY = ql.Date(20, 11, 2026)
FO = np.array([1.5768, 0.0398, 0.5751, -0.5711, 0.0175])  # Fang & Oosterlee (2008), kappa theta sigma rho v0


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _quotes(forward, strike, ttm, *, is_call=None, discount=1.0, vol_mid=np.nan) -> QuoteArrays:
    strike = np.asarray(strike, dtype=float)
    forward = np.broadcast_to(np.asarray(forward, dtype=float), strike.shape)
    if is_call is None:
        is_call = strike >= forward
    return QuoteArrays.from_arrays(
        forward=forward, strike=strike, ttm=ttm, is_call=is_call, discount=discount, vol_mid=vol_mid
    )


def _ivs(prices: np.ndarray, q: QuoteArrays) -> np.ndarray:
    return implied_vol(prices, q.forward, q.strike, q.ttm, is_call=q.is_call, discount=q.discount).vol


@dataclass(frozen=True)
class _Market:
    """Spot, rates and whole-day expiries so that QuantLib sees exactly the same contracts."""

    spot: float = 100.0
    r: float = 0.03
    q: float = 0.01

    def handles(self):
        ql.Settings.instance().evaluationDate = TODAY
        dc = ql.Actual365Fixed()
        rts = ql.YieldTermStructureHandle(ql.FlatForward(TODAY, self.r, dc))
        qts = ql.YieldTermStructureHandle(ql.FlatForward(TODAY, self.q, dc))
        return rts, qts, ql.QuoteHandle(ql.SimpleQuote(self.spot))

    def quotes(self, days: np.ndarray, k_sd: np.ndarray, vol: float) -> tuple[QuoteArrays, np.ndarray]:
        """Quotes at ``k = k_sd * vol * sqrt(t)`` per expiry (whole days); the days of every quote."""
        days = np.repeat(days, k_sd.size)
        t = days / 365.0
        forward = self.spot * np.exp((self.r - self.q) * t)
        k = np.tile(k_sd, days.size // k_sd.size) * vol * np.sqrt(t)
        return _quotes(forward, forward * np.exp(k), t, discount=np.exp(-self.r * t)), days

    def heston_model(self, theta):
        rts, qts, s0 = self.handles()
        kappa, long_var, sigma, rho, v0 = (float(x) for x in theta[:5])
        if len(theta) == 5:
            return ql.HestonModel(ql.HestonProcess(rts, qts, s0, v0, kappa, long_var, sigma, rho))
        lam, mu, delta = (float(x) for x in theta[5:])
        return ql.BatesModel(ql.BatesProcess(rts, qts, s0, v0, kappa, long_var, sigma, rho, lam, mu, delta))

    def prices(self, theta, q: QuoteArrays, days: np.ndarray, *, engine: str = "accurate") -> np.ndarray:
        model = self.heston_model(theta)
        if isinstance(model, ql.BatesModel):
            eng = ql.BatesEngine(model, 1e-13, 1_000_000)
        elif engine == "accurate":
            eng = ql.AnalyticHestonEngine(
                model, ql.AnalyticHestonEngine.OptimalCV, ql.FourierIntegration.expSinh(1e-14)
            )
        elif engine == "lobatto":  # adaptive Gauss-Lobatto with Andersen-Piterbarg's control variate: robust
            eng = ql.AnalyticHestonEngine(
                model, ql.AnalyticHestonEngine.AndersenPiterbarg,
                ql.FourierIntegration.gaussLobatto(1e-12, 1e-14, 100_000),
            )
        else:  # fixed Gauss-Laguerre: smooth in the parameters, for finite differences
            eng = ql.AnalyticHestonEngine(model, 192)
        out = np.empty(q.n)
        for i in range(q.n):
            kind = ql.Option.Call if q.is_call[i] else ql.Option.Put
            option = ql.VanillaOption(
                ql.PlainVanillaPayoff(kind, float(q.strike[i])), ql.EuropeanExercise(TODAY + int(days[i]))
            )
            option.setPricingEngine(eng)
            out[i] = option.NPV()
        return out


MARKET = _Market()


# ---------------------------------------------------------------------------------------------------------------
# independent references written out here


def _merton_series(F, K, t, sigma, lam, mu, delta, *, is_call, discount) -> np.ndarray:
    """Merton (1976): Poisson mixture of Black prices, given ``n`` jumps (vectorized over the quotes)."""
    kj = math.exp(mu + 0.5 * delta * delta) - 1.0
    total = np.zeros(np.shape(K))
    for n in range(150):
        weight = np.exp(-lam * t + n * np.log(lam * t) - math.lgamma(n + 1))
        vol_n = np.sqrt(sigma * sigma + n * delta * delta / t)
        forward_n = F * np.exp(-lam * kj * t + n * (mu + 0.5 * delta * delta))
        total += weight * black_price(forward_n, K, t, vol_n, is_call=is_call, discount=discount)
        if n > lam * np.max(t) + 10 and np.max(weight) < 1e-30:
            break
    return total


def _lewis_mp(k: float, t: float, cf) -> float:
    """Undiscounted out-of-the-money price per unit forward by the Lewis integral in 30-digit arithmetic."""
    with mp.workdps(30):
        f = lambda u: mp.re(mp.exp(-1j * u * k) * cf(u - 0.5j)) / (u * u + 0.25)  # noqa: E731
        integral = mp.quad(f, [0, 2, 20, 200, mp.inf])
        call = 1 - mp.exp(k / 2) * integral / mp.pi
        return float(call if k >= 0 else call - 1 + mp.exp(k))


def _heston_cf_mp(t, kappa, theta, sigma, rho, v0, lam=0.0, mu=0.0, delta=0.0):
    """Heston (original formulation, principal branch is safe for these short-dated inputs) plus jumps."""

    def cf(z):
        iz = 1j * z
        xi = kappa - sigma * rho * iz
        d = mp.sqrt(xi**2 + sigma**2 * (z**2 + iz))
        g = (xi - d) / (xi + d)
        e = mp.exp(-d * t)
        b = (xi - d) / sigma**2 * (1 - e) / (1 - g * e)
        a = kappa * theta / sigma**2 * ((xi - d) * t - 2 * mp.log((1 - g * e) / (1 - g)))
        kj = mp.exp(mu + delta**2 / 2) - 1
        jumps = lam * t * (mp.exp(iz * mu - delta**2 * z**2 / 2) - 1 - iz * kj)
        return mp.exp(a + v0 * b + jumps)

    return cf


# ---------------------------------------------------------------------------------------------------------------
# published values


def test_fang_oosterlee_heston_call():
    # S = K = 100, T = 1, r = q = 0: 5.785155450 published (good to about 8 digits); the Lewis integral in
    # 30-digit arithmetic gives 5.78515543437619
    q = _quotes(100.0, [100.0], 1.0, is_call=[True])
    model = Heston()
    price = model.values(FO, model.prepare(q))[0]
    assert abs(price - 5.785155450) < 2e-8
    assert abs(price - 5.78515543437619) < 1e-12


ALAN_STRIKES = np.array([80.0, 90.0, 100.0, 110.0, 120.0])
ALAN_CALLS = np.array([
    26.774758743998854221382195325726949201687074848341,
    20.933349000596710388139445766564068085476194042256,
    16.070154917028834278213466703938231827658768230714,
    12.132211516709844867860534767549426052805766831181,
    9.024913483457835636553375454092357136489051667150,
])
ALAN_PUTS = np.array([
    7.958878113256768285213263077598987193482161301733,
    12.017966707346304987709573290236471654992071308187,
    17.055270961270109413522653999411000974895436309183,
    23.017825898442800538908781834822560777763225722188,
    29.811026202682471843340682293165857439167301370697,
])
JOSHI_STRIKES = np.array([90.0, 95.0, 100.0, 105.0, 110.0])
JOSHI_CALLS = np.array([
    9.989001595065276544935948045293485530832966049263,
    4.989963479738160122154264702582719627807098780529,
    0.467782671512844263098248405184095087949465507760,
    2.527447823194706060519991248106500619490942e-6,
    1.29932760052624920704881258510264466e-13,
])
JOSHI_PUTS = np.array([
    4.5183603586861772614990106188215872180542e-8,
    0.000461954855653851579672612557018857858641926937,
    0.477781171629504680023239655436072890669645669297,
    5.009501052563650299130635110520904481889436667608,
    10.008998550115123724684210555728039829315964456261,
])


@pytest.mark.parametrize(
    ("ttm", "v0", "strikes", "calls", "puts"),
    [(1.0, 0.04, ALAN_STRIKES, ALAN_CALLS, ALAN_PUTS), (0.01, 0.01, JOSHI_STRIKES, JOSHI_CALLS, JOSHI_PUTS)],
    ids=["one-year", "short-expiry"],
)
def test_alan_lewis_reference_prices(ttm, v0, strikes, calls, puts):
    # Alan Lewis's 50-digit Heston reference prices (financepress.com, 2019): S = 100, r = 1 %, q = 2 %,
    # kappa 4, theta 0.25, sigma 1, rho -0.5; the second set is his short-expiry (t = 0.01) set
    forward = 100.0 * math.exp((0.01 - 0.02) * ttm)
    strike = np.concatenate([strikes, strikes])
    is_call = np.r_[np.ones(5, bool), np.zeros(5, bool)]
    q = _quotes(forward, strike, ttm, is_call=is_call, discount=math.exp(-0.01 * ttm))
    model = Heston()
    prices = model.values(np.array([4.0, 0.25, 1.0, -0.5, v0]), model.prepare(q))
    reference = np.r_[calls, puts]
    assert np.max(np.abs(prices - reference)) < 1e-13 * 100.0 * 2
    # the vols agree where the time value carries information (down to 2.5e-6, five standard deviations out)
    intrinsic = q.discount * np.maximum(np.where(q.is_call, 1.0, -1.0) * (q.forward - q.strike), 0.0)
    informative = reference - intrinsic > 1e-6
    assert np.max(np.abs(_ivs(prices, q) - _ivs(reference, q))[informative]) < 1e-8


def test_lewis_integral_in_mpmath_deep_wings():
    # Bates, 5 years, calls 3 and 4 standard deviations out at 25 % vol (4.4 and 5.9 at the model's own 17 %
    # at-the-money vol): QuantLib's BatesEngine is only good to about 1e-12 here
    theta = (2.0, 0.04, 0.6, -0.7, 0.03, 1.0, -0.1, 0.1)
    t = 5.0
    k = np.array([3.0, 4.0]) * 0.25 * math.sqrt(t)
    q = _quotes(1.0, np.exp(k), t)
    model = Bates()
    reference = np.array([_lewis_mp(float(x), t, _heston_cf_mp(t, *theta)) for x in k])
    # a plan set up for these parameters (market vols given: the guess is close) is at the design accuracy
    market = q.with_values(vol_mid=_ivs(reference, q))
    prices = model.values(np.array(theta), model.prepare(market))
    assert np.max(np.abs(prices - reference)) < 1e-15
    assert np.max(np.abs(_ivs(prices, q) - _ivs(reference, q))) < 1e-8
    # a plan set up for the default parameters is within the guard's tolerance (1e-13 of the forward)
    prices = model.values(np.array(theta), model.prepare(q))
    assert np.max(np.abs(prices - reference)) < 1e-13


# ---------------------------------------------------------------------------------------------------------------
# QuantLib grids


HESTON_SETS = {
    "equity": [2.0, 0.04, 0.6, -0.7, 0.03],
    "fang-oosterlee": list(FO),
    "crypto": [3.0, 0.5, 2.5, 0.3, 0.6],
    "high-vol-of-vol": [0.5, 0.05, 1.5, -0.9, 0.04],
    "near-deterministic": [1.0, 0.09, 0.05, 0.2, 0.09],
}


@pytest.mark.parametrize("name", list(HESTON_SETS))
def test_heston_matches_quantlib_on_a_grid(name):
    theta = np.array(HESTON_SETS[name])
    days = np.array([1, 7, 30, 91, 365, 1825])
    k_sd = np.linspace(-4.0, 4.0, 9)
    q, qdays = MARKET.quotes(days, k_sd, math.sqrt(min(theta[4], theta[1])))
    model = Heston()
    prices = model.values(theta, model.prepare(q))
    reference = MARKET.prices(theta, q, qdays)
    scale = q.forward * q.discount
    assert np.max(np.abs(prices - reference) / scale) < 2e-14
    relevant = reference / scale > 1e-7
    assert np.max(np.abs(prices / reference - 1.0)[relevant]) < 1e-8
    # implied vols: 1e-8 where the price is above 1e-10 of the forward (every quote but the deepest 1-day wings)
    informative = reference / scale > 1e-10
    assert informative.mean() > 0.9
    assert np.max(np.abs(_ivs(prices, q) - _ivs(reference, q))[informative]) < 1e-8


def test_bates_matches_quantlib():
    theta = np.array([2.0, 0.04, 0.6, -0.7, 0.03, 1.0, -0.1, 0.1])
    q, qdays = MARKET.quotes(np.array([1, 7, 30, 365, 1825]), np.linspace(-4.0, 4.0, 9), 0.2)
    model = Bates()
    prices = model.values(theta, model.prepare(q))
    reference = MARKET.prices(theta, q, qdays)
    scale = q.forward * q.discount
    # QuantLib's BatesEngine (adaptive, 1e-13) is itself good to about 1e-14 of the forward
    assert np.max(np.abs(prices - reference) / scale) < 5e-14
    informative = reference / scale > 1e-10
    assert np.max(np.abs(_ivs(prices, q) - _ivs(reference, q))[informative]) < 2e-7


def test_merton_matches_series_and_quantlib():
    sigma, lam, mu, delta = 0.2, 3.0, -0.1, 0.15
    theta = np.array([sigma, lam, mu, delta])
    q, qdays = MARKET.quotes(np.array([1, 7, 91, 365, 1825]), np.linspace(-4.0, 4.0, 9), 0.3)
    model = Merton()
    prices = model.values(theta, model.prepare(q))
    series = _merton_series(q.forward, q.strike, q.ttm, *theta, is_call=q.is_call, discount=q.discount)
    scale = q.forward * q.discount
    assert np.max(np.abs(prices - series) / scale) < 1e-14
    assert np.max(np.abs(_ivs(prices, q) - _ivs(series, q))) < 1e-10
    # QuantLib: Bates with an almost deterministic variance (v0 = theta = sigma^2, kappa 10, vol of variance
    # 0.01); what is left of the variance's randomness moves vols by about 1e-6
    bates_like = np.array([10.0, sigma**2, 1e-2, 0.0, sigma**2, lam, mu, delta])
    reference = MARKET.prices(bates_like, q, qdays)
    assert np.max(np.abs(_ivs(prices, q) - _ivs(reference, q))) < 3e-6


# ---------------------------------------------------------------------------------------------------------------
# Jacobians, parity, cache


PARAMS = {
    "heston": np.array([2.0, 0.06, 0.7, -0.6, 0.05]),
    "merton": np.array([0.25, 2.0, -0.08, 0.12]),
    "bates": np.array([2.0, 0.05, 0.6, -0.6, 0.04, 0.8, -0.1, 0.12]),
}


def _surface_quotes() -> tuple[QuoteArrays, np.ndarray]:
    return MARKET.quotes(np.array([7, 30, 91, 365, 730]), np.linspace(-3.0, 3.0, 7), 0.25)


def _central(fun, theta: np.ndarray, rel: float = 1e-5) -> np.ndarray:
    cols = []
    for i in range(theta.size):
        h = rel * max(abs(theta[i]), 1e-2)
        up, down = theta.copy(), theta.copy()
        up[i] += h
        down[i] -= h
        cols.append((fun(up) - fun(down)) / (2.0 * h))
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("name", list(PARAMS))
def test_jacobian_matches_finite_differences_of_the_model(name):
    model = get_model(name)
    theta = PARAMS[name]
    q, _ = _surface_quotes()
    plan = model.prepare(q)
    prices, jac = model.values_and_jacobian(theta, plan)
    fd = _central(lambda x: model.values(x, plan), theta)
    assert jac.shape == (q.n, theta.size)
    np.testing.assert_allclose(prices, model.values(theta, plan), rtol=0, atol=0)
    scale = np.max(np.abs(fd), axis=0)
    assert np.max(np.abs(jac - fd) / scale) < 1e-7


@pytest.mark.parametrize("name", ["heston", "bates"])
def test_jacobian_matches_finite_differences_of_quantlib(name):
    model = get_model(name)
    theta = PARAMS[name]
    q, days = MARKET.quotes(np.array([30, 365]), np.linspace(-2.0, 2.0, 5), 0.25)
    jac = model.jacobian(theta, model.prepare(q))
    engine = "laguerre" if name == "heston" else "accurate"
    fd = _central(lambda x: MARKET.prices(x, q, days, engine=engine), theta, rel=1e-4)
    scale = np.max(np.abs(fd), axis=0)
    assert np.max(np.abs(jac - fd) / scale) < 1e-5


def test_small_vol_of_vol_gradient_is_stable():
    # sigma -> 0: the little-trap terms are evaluated without cancellation, so the Jacobian stays accurate
    model = Heston()
    theta = np.array([1.5, 0.05, 0.02, -0.3, 0.04])
    q, _ = _surface_quotes()
    plan = model.prepare(q)
    jac = model.jacobian(theta, plan)
    fd = _central(lambda x: model.values(x, plan), theta, rel=1e-4)
    assert np.max(np.abs(jac - fd) / np.max(np.abs(fd), axis=0)) < 1e-5


@pytest.mark.parametrize("name", list(PARAMS))
def test_put_call_parity(name):
    model = get_model(name)
    q, _ = _surface_quotes()
    calls = QuoteArrays.from_arrays(forward=q.forward, strike=q.strike, ttm=q.ttm, is_call=True, discount=q.discount)
    puts = calls.with_values(is_call=np.zeros(q.n, dtype=bool))
    c = model.values(PARAMS[name], model.prepare(calls))
    p = model.values(PARAMS[name], model.prepare(puts))
    np.testing.assert_allclose(c - p, q.discount * (q.forward - q.strike), rtol=0, atol=1e-12)
    assert np.all(c > 0.0) and np.all(p > 0.0)


def test_values_then_jacobian_evaluate_the_characteristic_function_once():
    calls = []

    @dataclass(frozen=True)
    class CountingHeston(Heston):
        def log_cf(self, theta, freq):
            calls.append(freq.w.size)
            return super().log_cf(theta, freq)

    model = CountingHeston()
    q, _ = _surface_quotes()
    theta = PARAMS["heston"]
    plan = model.prepare(q)
    model.values(theta, plan)  # may rebuild the grid for these parameters
    calls.clear()
    model.values(theta * 1.01, plan)
    model.jacobian(theta * 1.01, plan)
    model.values(theta * 1.01, plan)
    assert len(calls) == 1


def test_grid_is_rebuilt_when_parameters_outgrow_it():
    # a plan prepared for a thin-tailed market, evaluated at heavy-tailed parameters, stays accurate
    model = Heston()
    days = np.array([7, 91, 730])
    q, qdays = MARKET.quotes(days, np.linspace(-3.0, 3.0, 7), 0.2)
    thin = np.array([2.0, 0.04, 0.1, 0.0, 0.04])
    market = q.with_values(vol_mid=_ivs(model.values(thin, model.prepare(q)), q))
    plan = model.prepare(market)
    heavy = np.array([1.0, 0.09, 1.5, -0.8, 0.06])
    prices = model.values(heavy, plan)
    assert plan.rebuilds >= 1
    reference = MARKET.prices(heavy, q, qdays)
    assert np.max(np.abs(prices - reference) / (q.forward * q.discount)) < 2e-14


# ---------------------------------------------------------------------------------------------------------------
# model interface


def test_registry_builds_the_fourier_models():
    for name, cls in (("heston", Heston), ("merton", Merton), ("bates", Bates)):
        model = get_model(name)
        assert type(model) is cls and isinstance(model, Model)
        assert model.kind == "surface" and model.output == "price"
        lower, upper = bounds_of(model.params)
        assert np.all(lower < upper)
        defaults = np.array([s.default for s in model.params])
        assert np.all((defaults >= lower) & (defaults <= upper))
    assert get_model("heston", {"enforce_feller": True}).enforce_feller


def test_feller_margin_and_constraint():
    theta = np.array([1.5, 0.04, 0.5, -0.5, 0.04])
    margin = 2 * 1.5 * 0.04 - 0.25
    assert Heston().feller_margin(theta) == pytest.approx(margin)
    assert Heston().constraints(theta).size == 0
    np.testing.assert_allclose(Heston(enforce_feller=True).constraints(theta), [margin])
    np.testing.assert_allclose(Bates(enforce_feller=True).constraints(np.r_[theta, 1.0, -0.1, 0.1]), [margin])


@pytest.mark.parametrize("name", list(PARAMS))
def test_initial_guess_is_inside_the_bounds_and_near_the_truth(name):
    model = get_model(name)
    truth = PARAMS[name]
    q, _ = _surface_quotes()
    market = q.with_values(vol_mid=_ivs(model.values(truth, model.prepare(q)), q))
    guess = model.initial_guess(market)
    lower, upper = bounds_of(model.params)
    assert np.all((guess >= lower) & (guess <= upper))
    # the variance level is right within a factor 2 and the skew has the right sign
    plan = model.prepare(market)
    atm = np.abs(np.log(q.strike / q.forward)) < 1e-12
    ratio = _ivs(model.values(guess, plan), q)[atm] / market.vol_mid[atm]
    assert np.all((ratio > 0.7) & (ratio < 1.4))
    if name != "merton":
        assert guess[3] < 0.0  # rho
    if name == "heston":
        assert Heston(enforce_feller=True).feller_margin(Heston(enforce_feller=True).initial_guess(market)) >= 0


def test_expired_quotes_and_nan_parameters():
    model = Heston()
    q = _quotes([100.0, 100.0, 100.0], [90.0, 110.0, 100.0], [0.0, 0.0, 0.5], is_call=[True, True, False])
    plan = model.prepare(q)
    prices = model.values(FO, plan)
    np.testing.assert_allclose(prices[:2], [10.0, 0.0])
    assert prices[2] > 0.0
    assert np.isnan(model.values(np.full(5, np.nan), plan)).all()


def test_numerical_cumulants_match_closed_forms():
    t = np.array([0.01, 0.5, 3.0])
    sigma, lam, mu, delta = 0.2, 3.0, -0.1, 0.15
    c1, c2, c4 = cumulants(Merton(), np.array([sigma, lam, mu, delta]), t)
    kj = math.exp(mu + 0.5 * delta**2) - 1.0
    # finite differences: a few digits, all the truncation rule needs
    np.testing.assert_allclose(c1, (-0.5 * sigma**2 - lam * kj + lam * mu) * t, rtol=1e-3)
    np.testing.assert_allclose(c2, (sigma**2 + lam * (mu**2 + delta**2)) * t, rtol=1e-3)
    np.testing.assert_allclose(c4, lam * t * (mu**4 + 6 * mu**2 * delta**2 + 3 * delta**4), rtol=1e-2)
    kappa, theta, v0 = FO[0], FO[1], FO[4]
    mean_var = theta * t + (v0 - theta) * (1.0 - np.exp(-kappa * t)) / kappa
    np.testing.assert_allclose(cumulants(Heston(), FO, t)[0], -0.5 * mean_var, rtol=1e-5)


def test_node_budget_caps_extreme_parameters(monkeypatch):
    # rho near -1 and a high vol of variance: the characteristic function barely decays and the tolerance would
    # ask for over 17000 nodes on these 3 expiries; under a (here deliberately small) budget the plan stops
    # rebuilding and prices stay close to QuantLib's (1e-8 of the forward with 6000 nodes)
    import calibration.pricing.fourier as fourier

    monkeypatch.setattr(fourier, "MAX_TOTAL_NODES", 6000)
    theta = np.array([1.0, 0.05, 2.0, -0.99, 0.05])
    q, days = MARKET.quotes(np.array([7, 91, 365]), np.linspace(-2.0, 2.0, 5), 0.2)
    model = Heston()
    plan = model.prepare(q)
    prices = model.values(theta, plan)
    assert plan.grid.capped and plan.grid.nodes.sum() <= 6000 + 3 * fourier.NODE_MULTIPLE
    assert plan.check_tol == np.inf
    rebuilds = plan.rebuilds
    model.values(theta * 1.001, plan)
    assert plan.rebuilds == rebuilds
    reference = MARKET.prices(theta, q, days, engine="lobatto")
    assert np.max(np.abs(prices - reference) / (q.forward * q.discount)) < 1e-7
