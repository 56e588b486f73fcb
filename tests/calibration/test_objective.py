"""Residuals, weights, band, penalties and regularisation against hand-computed small cases and QuantLib."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import QuantLib as ql

from calibration.black import black_price
from calibration.errors import CalibrationError
from calibration.models.base import ParamSpec, QuoteArrays
from calibration.models.black_flat import FlatBlack
from calibration.objective import (
    PENALTY_WEIGHT,
    Objective,
    Prior,
    band_errors,
    default_f_scale,
    prior_scale,
    quote_weights,
    usable_quotes,
)


def ql_black(F, K, t, vol, is_call, D):
    kind = ql.Option.Call if is_call else ql.Option.Put
    return ql.blackFormula(kind, float(K), float(F), float(vol * np.sqrt(t)), float(D))


def ql_vega(F, K, t, vol, D):
    """Black vega per 1.00 vol, D F phi(d1) sqrt(t), written out by hand."""
    s = vol * math.sqrt(t)
    d1 = math.log(F / K) / s + 0.5 * s
    return D * F * math.exp(-0.5 * d1 * d1) / math.sqrt(2.0 * math.pi) * math.sqrt(t)


def small_quotes() -> QuoteArrays:
    """Four quotes on one expiry, market data hand-set."""
    F, D, t = 100.0, 0.99, 0.5
    K = np.array([80.0, 95.0, 105.0, 125.0])
    is_call = K >= F
    vol_mid = np.array([0.30, 0.25, 0.24, 0.27])
    vol_bid = vol_mid - np.array([0.02, 0.005, 0.004, 0.03])
    vol_ask = vol_mid + np.array([0.02, 0.005, 0.004, 0.03])
    px = lambda v: np.array([ql_black(F, k, t, s, c, D) for k, s, c in zip(K, v, is_call)])  # noqa: E731
    return QuoteArrays.from_arrays(
        forward=F, strike=K, ttm=t, discount=D, is_call=is_call, vol_bid=vol_bid, vol_mid=vol_mid, vol_ask=vol_ask,
        price_bid=px(vol_bid), price_mid=px(vol_mid), price_ask=px(vol_ask),
        vega=np.array([ql_vega(F, k, t, s, D) for k, s in zip(K, vol_mid)]),
        open_interest=np.array([10.0, 0.0, 30.0, np.nan]),
    )


# -- band ------------------------------------------------------------------------------------------------------


def test_band_residual_is_zero_inside_and_the_distance_to_the_nearer_side_outside():
    y = np.array([0.9, 1.0, 1.5, 2.0, 2.4])
    bid, ask = np.full(5, 1.0), np.full(5, 2.0)
    e, d = band_errors(y, np.full(5, 1.5), bid, ask, fit_to="band")
    np.testing.assert_allclose(e, [-0.1, 0.0, 0.0, 0.0, 0.4], atol=1e-15)
    np.testing.assert_array_equal(d, [1, 0, 0, 0, 1])
    e, d = band_errors(y, np.full(5, 1.5), bid, ask, fit_to="mid")
    np.testing.assert_allclose(e, y - 1.5)
    np.testing.assert_array_equal(d, 1)


# -- weights ---------------------------------------------------------------------------------------------------


def test_uniform_weights():
    np.testing.assert_array_equal(quote_weights(small_quotes(), scheme="uniform", space="vol"), 1.0)


def test_vega_weights_in_both_spaces():
    q = small_quotes()
    vega = q.vega
    w = quote_weights(q, scheme="vega", space="vol")
    np.testing.assert_allclose(w, vega / vega.mean())
    w = quote_weights(q, scheme="vega", space="price")
    inv2 = 1.0 / vega**2
    np.testing.assert_allclose(w, inv2 / inv2.mean())
    # price residuals with these weights are vol-equivalent: sqrt(w) e = c e / vega, the same c for every quote
    ratio = np.sqrt(w) * vega
    np.testing.assert_allclose(ratio, ratio[0])


def test_spread_weights_in_both_spaces():
    q = small_quotes()
    w = quote_weights(q, scheme="spread", space="vol")
    spread = np.array([0.04, 0.01, 0.008, 0.06])
    ref = 1.0 / spread**2
    np.testing.assert_allclose(w, ref / ref.mean())
    w = quote_weights(q, scheme="spread", space="price")
    spread = q.price_ask - q.price_bid
    ref = 1.0 / spread**2
    np.testing.assert_allclose(w, ref / ref.mean())


def test_spread_weights_floor_tiny_spreads_and_fill_missing_ones():
    q = small_quotes().with_values(
        vol_bid=np.array([0.28, 0.25, np.nan, 0.24]), vol_ask=np.array([0.32, 0.2500001, 0.25, np.nan])
    )
    w = quote_weights(q, scheme="spread", space="vol")
    # spreads 0.04, 1e-7 (floored to 10 % of the median), 0.25 (no bid vol counts as 0), missing (the median)
    median = np.median([0.04, 1e-7, 0.25])
    spread = np.array([0.04, 0.1 * median, 0.25, median])
    ref = 1.0 / spread**2
    np.testing.assert_allclose(w, ref / ref.mean(), rtol=1e-6)


def test_open_interest_weights():
    q = small_quotes()
    w = quote_weights(q, scheme="oi", space="price")
    oi = np.array([10.0, 0.0, 30.0, 0.0])
    ref = oi + 0.01 * oi.mean()
    np.testing.assert_allclose(w, ref / ref.mean())
    with pytest.raises(CalibrationError, match="open interest"):
        quote_weights(q.with_values(open_interest=np.full(4, np.nan)), scheme="oi", space="vol")


def test_unknown_choices_are_calibration_errors():
    q = small_quotes()
    with pytest.raises(CalibrationError, match="unknown weights"):
        quote_weights(q, scheme="volume", space="vol")
    with pytest.raises(CalibrationError, match="unknown residual space"):
        quote_weights(q, scheme="vega", space="variance")


# -- exclusions ------------------------------------------------------------------------------------------------


def test_quotes_without_the_market_data_of_the_space_are_not_usable():
    q = small_quotes().with_values(
        vol_mid=np.array([0.3, np.nan, 0.24, 0.27]), price_ask=np.array([np.nan, 1.0, 2.0, 3.0]),
    )
    np.testing.assert_array_equal(usable_quotes(q, space="vol", fit_to="mid", weights="uniform"), [1, 0, 1, 1])
    np.testing.assert_array_equal(usable_quotes(q, space="vol", fit_to="band", weights="uniform"), [1, 1, 1, 1])
    np.testing.assert_array_equal(usable_quotes(q, space="price", fit_to="mid", weights="uniform"), [1, 1, 1, 1])
    np.testing.assert_array_equal(usable_quotes(q, space="price", fit_to="band", weights="uniform"), [0, 1, 1, 1])


# -- residuals -------------------------------------------------------------------------------------------------


def test_vol_space_residuals_of_flat_black():
    q = small_quotes()
    w = quote_weights(q, scheme="vega", space="vol")
    obj = Objective(FlatBlack(), q, weights=w, space="vol")
    r = obj.residuals(np.array([0.26]))
    np.testing.assert_allclose(r, np.sqrt(w) * (0.26 - q.vol_mid), rtol=1e-14)
    np.testing.assert_allclose(obj.jacobian(np.array([0.26])), np.sqrt(w)[:, None], rtol=1e-14)


def test_price_space_residuals_of_flat_black_against_quantlib():
    q = small_quotes()
    w = quote_weights(q, scheme="uniform", space="price")
    obj = Objective(FlatBlack(), q, weights=w, space="price")
    model = np.array([ql_black(100.0, k, 0.5, 0.26, c, 0.99) for k, c in zip(q.strike, q.is_call)])
    np.testing.assert_allclose(obj.residuals(np.array([0.26])), model - q.price_mid, rtol=1e-10, atol=1e-12)
    vega = np.array([ql_vega(100.0, k, 0.5, 0.26, 0.99) for k in q.strike])
    np.testing.assert_allclose(obj.jacobian(np.array([0.26]))[:, 0], vega, rtol=1e-8)


def test_band_residuals_in_vol_and_price_space():
    q = small_quotes()
    obj = Objective(FlatBlack(), q, weights=np.ones(4), space="vol", fit_to="band")
    # sigma 0.248: inside the bands of quotes 2 (0.245-0.255) and 4 (0.24-0.30), below quote 1, above quote 3
    r = obj.residuals(np.array([0.248]))
    np.testing.assert_allclose(r, [0.248 - 0.28, 0.0, 0.248 - 0.244, 0.0], atol=1e-15)
    np.testing.assert_array_equal(obj.jacobian(np.array([0.248]))[:, 0], [1, 0, 1, 0])
    obj = Objective(FlatBlack(), q, weights=np.ones(4), space="price", fit_to="band")
    model = black_price(q.forward, q.strike, q.ttm, 0.248, is_call=q.is_call, discount=q.discount)
    expected = np.where(model > q.price_ask, model - q.price_ask, np.where(model < q.price_bid, model - q.price_bid, 0))
    np.testing.assert_allclose(obj.residuals(np.array([0.248])), expected, rtol=1e-12)
    assert (expected == 0).sum() == 2


@dataclass(frozen=True)
class BlackPrices:
    """A surface model with one flat vol whose native output is Black prices (a stand-in for Heston & co)."""

    analytic: bool = True
    name: ClassVar[str] = "black_prices"
    label: ClassVar[str] = "Black prices"
    kind: ClassVar[str] = "surface"
    output: ClassVar[str] = "price"
    params: ClassVar[tuple] = (ParamSpec("sigma", 0.01, 3.0, 0.5, "flat vol, decimal"),)

    def initial_guess(self, quotes):
        return np.array([0.5])

    def constraints(self, theta):
        return np.empty(0)

    def prepare(self, quotes):
        return quotes

    def values(self, theta, plan):
        return black_price(plan.forward, plan.strike, plan.ttm, theta[0], is_call=plan.is_call, discount=plan.discount)

    def jacobian(self, theta, plan):
        if not self.analytic:
            return None
        return np.array([ql_vega(f, k, t, theta[0], d) for f, k, t, d in
                         zip(plan.forward, plan.strike, plan.ttm, plan.discount)])[:, None]


@pytest.mark.parametrize("analytic", [True, False], ids=["analytic", "finite-differences"])
def test_price_model_in_vol_space_residuals_are_implied_vol_errors(analytic):
    # a Black price model with flat vol sigma has implied vol sigma at every quote: r = sigma - vol_mid, J = 1
    q = small_quotes()
    obj = Objective(BlackPrices(analytic=analytic), q, weights=np.ones(4), space="vol")
    np.testing.assert_allclose(obj.residuals(np.array([0.26])), 0.26 - q.vol_mid, atol=1e-13)
    np.testing.assert_allclose(obj.jacobian(np.array([0.26])), np.ones((4, 1)), rtol=1e-8)


def test_price_model_without_an_implied_vol_falls_back_to_the_vega_scaled_price_error():
    @dataclass(frozen=True)
    class TooExpensive(BlackPrices):
        def values(self, theta, plan):  # a price above the forward has no implied vol
            out = super().values(theta, plan)
            out[0] = plan.forward[0] * 1.5
            return out

    q = small_quotes()
    obj = Objective(TooExpensive(), q, weights=np.ones(4), space="vol")
    r = obj.residuals(np.array([0.26]))
    market = ql_black(100.0, 80.0, 0.5, 0.30, False, 0.99)
    assert r[0] == pytest.approx((150.0 - market) / q.vega[0], rel=1e-10)
    np.testing.assert_allclose(r[1:], 0.26 - q.vol_mid[1:], atol=1e-13)


def test_finite_difference_jacobian_matches_the_analytic_one_in_price_space():
    q = small_quotes()
    w = quote_weights(q, scheme="vega", space="price")
    a = Objective(BlackPrices(analytic=True), q, weights=w, space="price").jacobian(np.array([0.31]))
    b = Objective(BlackPrices(analytic=False), q, weights=w, space="price").jacobian(np.array([0.31]))
    np.testing.assert_allclose(b, a, rtol=1e-8)
    # one-sided at the upper bound
    a = Objective(BlackPrices(analytic=True), q, weights=w, space="price").jacobian(np.array([3.0]))
    b = Objective(BlackPrices(analytic=False), q, weights=w, space="price").jacobian(np.array([3.0]))
    np.testing.assert_allclose(b, a, rtol=1e-4)


# -- constraints and regularisation ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConstrainedBlack(FlatBlack):
    """Flat Black with the extra constraint sigma <= 0.25 (0.25 - sigma >= 0)."""

    def constraints(self, theta):
        return np.array([0.25 - theta[0]])


def test_constraint_violations_become_penalty_rows():
    q = small_quotes()
    obj = Objective(ConstrainedBlack(), q, weights=np.ones(4), space="vol")
    r = obj.residuals(np.array([0.27]))
    assert r.shape == (5,)
    assert r[4] == pytest.approx(PENALTY_WEIGHT * -0.02)
    assert obj.jacobian(np.array([0.27]))[4, 0] == pytest.approx(-PENALTY_WEIGHT, rel=1e-6)
    assert obj.residuals(np.array([0.2]))[4] == 0.0
    assert obj.jacobian(np.array([0.2]))[4, 0] == 0.0
    # price space: scaled by the mean market vega
    obj = Objective(ConstrainedBlack(), q, weights=np.ones(4), space="price")
    assert obj.residuals(np.array([0.27]))[4] == pytest.approx(PENALTY_WEIGHT * q.vega.mean() * -0.02)


def test_regularisation_rows():
    q = small_quotes()
    prev = np.array([0.3])
    scale = prior_scale(FlatBlack(), prev)
    np.testing.assert_allclose(scale, 10.0 - 1e-4)  # the bound width of sigma
    obj = Objective(FlatBlack(), q, weights=np.ones(4), prior=Prior(theta=prev, scale=scale, lam=4.0))
    r = obj.residuals(np.array([0.26]))
    assert r[-1] == pytest.approx(2.0 * (0.26 - 0.3) / scale[0])
    assert obj.jacobian(np.array([0.26]))[-1, 0] == pytest.approx(2.0 / scale[0])


def test_prior_scale_falls_back_to_the_previous_value_for_unbounded_parameters():
    @dataclass(frozen=True)
    class Unbounded:
        params: tuple = (ParamSpec("a", -np.inf, np.inf, 0.0, ""), ParamSpec("b", 0.0, np.inf, 1.0, ""),
                         ParamSpec("c", -1.0, 1.0, 0.0, ""))

    np.testing.assert_allclose(prior_scale(Unbounded(), np.array([-3.0, 0.0, 0.5])), [3.0, 1.0, 2.0])


# -- reporting -------------------------------------------------------------------------------------------------


def test_progress_error_is_the_rmse_in_vol_points():
    q = small_quotes()
    w = quote_weights(q, scheme="vega", space="vol")
    obj = Objective(FlatBlack(), q, weights=w, space="vol")
    expected = 100.0 * np.sqrt(np.mean((0.26 - q.vol_mid) ** 2))
    assert obj.rmse_vol_points(obj.residuals(np.array([0.26]))) == pytest.approx(expected, rel=1e-12)
    # price space: first-order vol equivalent e / vega
    obj = Objective(FlatBlack(), q, weights=quote_weights(q, scheme="uniform", space="price"), space="price")
    e = obj.errors(np.array([0.26]))
    expected = 100.0 * np.sqrt(np.mean((e / q.vega) ** 2))
    assert obj.rmse_vol_points(obj.residuals(np.array([0.26]))) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(100.0 * np.sqrt(np.mean((0.26 - q.vol_mid) ** 2)), rel=0.1)  # first order


def test_default_loss_scale():
    q = small_quotes()
    assert default_f_scale(q, space="vol") == 0.01
    assert default_f_scale(q, space="price") == pytest.approx(0.01 * np.median(q.vega))


def test_bad_objective_input():
    q = small_quotes()
    with pytest.raises(CalibrationError, match="unknown loss"):
        Objective(FlatBlack(), q, weights=np.ones(4), loss="tukey")
    with pytest.raises(CalibrationError, match="f_scale"):
        Objective(FlatBlack(), q, weights=np.ones(4), f_scale=-1.0)
    with pytest.raises(CalibrationError, match="no quotes"):
        Objective(FlatBlack(), q.take(np.zeros(4, dtype=bool)), weights=np.ones(0))
