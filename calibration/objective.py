"""The residual vector of a calibration: residual space, weights, bid-ask band, penalties and regularisation.

Data residuals
--------------
For quote ``i`` with model output ``y_i(theta)`` in the residual space and market ``bid_i <= mid_i <= ask_i``:

- space ``"vol"``: ``y`` is the model's Black implied vol (decimal) and the market values are the bid/mid/ask
  implied vols; space ``"price"``: ``y`` is the model premium and the market values the bid/mid/ask premiums
  (discounted, quote currency). Vol models are priced with Black-76; price models are inverted with the
  vectorized implied-vol solver (where a model price has no implied vol, the error falls back to the price error
  divided by the market vega, its first-order vol equivalent).
- ``fit_to="mid"``: error ``e_i = y_i - mid_i``; ``fit_to="band"``: ``e_i = 0`` inside ``[bid_i, ask_i]``,
  otherwise the signed distance to the nearer side (``y_i - ask_i`` above, ``y_i - bid_i`` below).
- The residual is ``r_i = sqrt(w_i) e_i`` with weights ``w_i`` (dimensionless, mean 1 over the fitted quotes, see
  :func:`quote_weights`), so residuals keep the units of the space: vol decimals or quote currency.

Extra rows (never subject to the robust loss)
---------------------------------------------
- Constraints ``c(theta) >= 0`` of the model: ``PENALTY_WEIGHT * s * min(c, 0)`` with ``s = 1`` in vol space and
  the mean market vega (quote currency per 1.00 vol) in price space.
- Regularisation toward previous parameters (penalised least squares): ``sqrt(lambda) (theta_j - prev_j) /
  scale_j``, ``scale_j`` the width of the parameter's bounds when both are finite, else ``|prev_j|`` (1 when that
  is zero). ``lambda`` is in squared residual units (vol decimals squared in vol space): moving every parameter by
  its full bound width costs as much as a residual of ``sqrt(lambda)`` on each of ``p`` quotes.

Jacobian
--------
From the model's analytic ``jacobian`` when it has one, otherwise central finite differences of ``values`` (one
vectorized model call per step, one-sided at a bound), chained through the space conversion: ``J_vol = J_price /
vega_model`` for a price model in vol space, ``J_price = vega_model J_vol`` for a vol model in price space.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from calibration.black import black_greeks, black_price, black_vega
from calibration.errors import CalibrationError
from calibration.implied_vol import implied_std_normalised, implied_vol
from calibration.models.base import FloatArray, Model, QuoteArrays, bounds_of
from calibration.optimizers import LOSSES, LeastSquaresProblem

#: Residual spaces.
SPACES: tuple[str, ...] = ("vol", "price")
#: Weight schemes (see :func:`quote_weights`).
WEIGHTS: tuple[str, ...] = ("uniform", "vega", "spread", "oi")
#: What the model is fitted to.
FIT_TO: tuple[str, ...] = ("mid", "band")

#: Weight of a constraint violation (residual per unit of violation, times the space scale).
PENALTY_WEIGHT = 1e4
#: Residual (vol decimals; times the mean vega in price space) of a quote where the model returns NaN.
NAN_RESIDUAL_VOL = 1.0
#: Relative step of the finite-difference Jacobian (about eps^(1/3), optimal for central differences).
FD_STEP = 6e-6
#: Evaluations (model values, errors and, once asked for, the Jacobian) an objective keeps: Levenberg-Marquardt
#: asks again for the Jacobian at its last accepted point after trying steps from it.
RECENT_EVALUATIONS = 4
#: Default robust-loss scale in vol space: one vol point.
DEFAULT_F_SCALE_VOL = 0.01

_MARKET = {
    ("vol", "mid"): ("vol_mid",),
    ("vol", "band"): ("vol_bid", "vol_ask"),
    ("price", "mid"): ("price_mid",),
    ("price", "band"): ("price_bid", "price_ask"),
}


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raise :class:`CalibrationError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise CalibrationError(f"unknown {name} {value!r}: choose one of {', '.join(choices)}")


def reference_vol(quotes: QuoteArrays) -> FloatArray:
    """Market vol per quote: the mid vol, else the middle of the bid and ask vols (decimal; NaN if neither)."""
    return np.where(np.isfinite(quotes.vol_mid), quotes.vol_mid, 0.5 * (quotes.vol_bid + quotes.vol_ask))


def reference_vega(quotes: QuoteArrays) -> FloatArray:
    """Market vega per quote (quote currency per 1.00 vol): the quote's ``vega``, else Black vega at
    :func:`reference_vol`; NaN when neither is known."""
    have = np.isfinite(quotes.vega) & (quotes.vega > 0.0)
    if have.all():
        return quotes.vega
    with np.errstate(all="ignore"):
        computed = black_vega(
            np.log(quotes.forward / quotes.strike), np.sqrt(quotes.ttm), quotes.discount * quotes.forward,
            reference_vol(quotes),
        )
    return np.where(have, quotes.vega, computed)


def usable_quotes(quotes: QuoteArrays, *, space: str, fit_to: str, weights: str) -> np.ndarray:
    """Quotes with the market data the fit needs (finite targets of the space and ``fit_to``, a valid contract,
    and a market vega when the weights or the space conversion need one)."""
    check_choice("residual space", space, SPACES)
    check_choice("fit_to", fit_to, FIT_TO)
    check_choice("weights", weights, WEIGHTS)
    ok = (quotes.ttm > 0.0) & (quotes.forward > 0.0) & (quotes.strike > 0.0) & (quotes.discount > 0.0)
    for name in _MARKET[(space, fit_to)]:
        ok &= np.isfinite(getattr(quotes, name))
    if weights == "vega" or space == "vol":
        vega = reference_vega(quotes)
        ok &= np.isfinite(vega) & (vega > 0.0)
    return ok


def quote_weights(quotes: QuoteArrays, *, scheme: str, space: str) -> FloatArray:
    """Weights ``w_i`` of the squared errors, dimensionless, normalised to mean 1.

    Schemes (``vega_i`` the market vega per 1.00 vol, :func:`reference_vega`):

    - ``"uniform"``: ``w_i = 1``.
    - ``"vega"``: vol space ``w_i ~ vega_i`` (the classical vega-weighted vol fit: wing vols resting on a
      tick-sized premium count less; approximately the price-space fit with ``1/vega`` weights); price space
      ``w_i ~ 1 / vega_i^2``, i.e. residuals ``e_i / vega_i`` in vol-equivalent units.
    - ``"spread"``: ``w_i ~ 1 / spread_i^2`` with the bid-ask spread in the units of the space (ask vol - bid vol,
      a bid without implied vol counting as 0 as in cleaning; ask - bid premium): residuals measured in spreads.
      Spreads are floored at 10 % of the median spread; a missing spread takes the median.
    - ``"oi"``: ``w_i ~ OI_i + 0.01 mean(OI)`` (open interest in contracts, NaN counted as 0): the 1 % floor keeps
      quotes without open interest in the fit with a small weight.

    Raises
    ------
    CalibrationError
        Unknown scheme or space, no quotes, ``"oi"`` without any open interest, ``"spread"`` without any spread.
    """
    check_choice("weights", scheme, WEIGHTS)
    check_choice("residual space", space, SPACES)
    n = quotes.n
    if n == 0:
        raise CalibrationError("no quotes to weight")
    if scheme == "uniform":
        w = np.ones(n)
    elif scheme == "vega":
        vega = reference_vega(quotes)
        w = vega if space == "vol" else 1.0 / (vega * vega)
    elif scheme == "spread":
        if space == "vol":
            spread = quotes.vol_ask - np.where(np.isfinite(quotes.vol_bid), quotes.vol_bid, 0.0)
        else:
            spread = quotes.price_ask - quotes.price_bid
        good = np.isfinite(spread) & (spread > 0.0)
        if not good.any():
            raise CalibrationError(f"spread weights need bid and ask {space}s: these quotes have no spread")
        median = float(np.median(spread[good]))
        spread = np.where(good, np.maximum(spread, 0.1 * median), median)
        w = 1.0 / (spread * spread)
    else:
        oi = np.where(np.isfinite(quotes.open_interest), np.maximum(quotes.open_interest, 0.0), 0.0)
        if not (oi > 0.0).any():
            raise CalibrationError("open-interest weights need open interest: these quotes have none")
        w = oi + 0.01 * float(oi.mean())
    return w / float(np.mean(w))


def default_f_scale(quotes: QuoteArrays, *, space: str) -> float:
    """Default robust-loss scale: one vol point (0.01) in vol space; in price space the premium of one vol point
    on the median quote (``0.01 * median(vega)``, quote currency)."""
    if space == "vol":
        return DEFAULT_F_SCALE_VOL
    vega = reference_vega(quotes)
    vega = vega[np.isfinite(vega)]
    return DEFAULT_F_SCALE_VOL * float(np.median(vega)) if vega.size else 1.0


def band_errors(y: FloatArray, mid: FloatArray, bid: FloatArray, ask: FloatArray, *, fit_to: str) -> tuple[
    FloatArray, FloatArray
]:
    """Errors of model values ``y`` against the market, and ``de/dy`` (1 or 0).

    ``fit_to="mid"``: ``e = y - mid``; ``"band"``: 0 inside ``[bid, ask]``, ``y - ask`` above, ``y - bid`` below.
    """
    if fit_to == "mid":
        return y - mid, np.ones_like(y)
    above = y > ask
    below = y < bid
    e = np.where(above, y - ask, np.where(below, y - bid, 0.0))
    return e, (above | below).astype(float)


@dataclass(frozen=True)
class Prior:
    """Regularisation toward previous parameters: rows ``sqrt(lam) (theta - theta) / scale``.

    Attributes
    ----------
    theta
        Previous parameters ``(p,)``.
    scale
        Per-parameter scale ``(p,)``, in parameter units (see :func:`prior_scale`).
    lam
        ``lambda``, squared residual units.
    """

    theta: FloatArray
    scale: FloatArray
    lam: float


def prior_scale(model: Model, previous: FloatArray) -> FloatArray:
    """Bound width where both bounds are finite, else ``|previous|`` (1 where that is 0)."""
    lower, upper = bounds_of(model.params)
    width = upper - lower
    fallback = np.where(np.abs(previous) > 0.0, np.abs(previous), 1.0)
    return np.where(np.isfinite(width) & (width > 0.0), width, fallback)


@dataclass
class _Evaluation:
    theta: FloatArray
    values: FloatArray  # model output (vols or prices)
    errors: FloatArray  # unweighted errors in the residual space
    dedv: FloatArray | None  # d errors / d values (computed when a Jacobian first needs it)
    vol: FloatArray | None = None  # Black implied vols of a price model's values (vol space only)
    jacobian: FloatArray | None = None  # d residuals / d theta, once computed


class Objective:
    """Residuals and their Jacobian for one model on one set of quotes (one slice, or the whole surface).

    Parameters
    ----------
    model
        The model (slice models: ``quotes`` holds one expiry).
    quotes
        The fitted quotes (all with usable market data, see :func:`usable_quotes`).
    weights
        ``w_i`` per quote (see :func:`quote_weights`).
    space, fit_to
        Residual space and target (see the module docstring).
    loss, f_scale
        Robust loss and its scale in residual units (``None``: :func:`default_f_scale`).
    prior
        Regularisation toward previous parameters, or ``None``.
    """

    def __init__(
        self,
        model: Model,
        quotes: QuoteArrays,
        *,
        weights: FloatArray,
        space: str = "vol",
        fit_to: str = "mid",
        loss: str = "linear",
        f_scale: float | None = None,
        prior: Prior | None = None,
    ) -> None:
        check_choice("residual space", space, SPACES)
        check_choice("fit_to", fit_to, FIT_TO)
        check_choice("loss", loss, LOSSES)
        if quotes.n == 0:
            raise CalibrationError("no quotes to fit")
        self.model = model
        self.quotes = quotes
        self.space = space
        self.fit_to = fit_to
        self.loss = loss
        self.f_scale = float(default_f_scale(quotes, space=space) if f_scale is None else f_scale)
        if not (np.isfinite(self.f_scale) and self.f_scale > 0.0):
            raise CalibrationError(f"the loss scale f_scale must be a positive number, got {f_scale!r}")
        self.prior = prior
        self.plan = model.prepare(quotes)
        self.sqrt_w = np.sqrt(np.asarray(weights, dtype=float))
        self.lower, self.upper = bounds_of(model.params)
        search = np.array([s.search_bounds for s in model.params], dtype=float).reshape(-1, 2)
        self.search_lower, self.search_upper = search[:, 0], search[:, 1]
        if space == "vol":
            self.space_scale = 1.0
        else:
            self.space_scale = float(np.nanmean(self.ref_vega)) if np.isfinite(self.ref_vega).any() else 1.0
        self.nan_residual = NAN_RESIDUAL_VOL * self.space_scale
        q = quotes
        if space == "vol":
            self.target = (q.vol_mid, q.vol_bid, q.vol_ask)
        else:
            self.target = (q.price_mid, q.price_bid, q.price_ask)
        self._price_target: tuple[FloatArray, ...] | None = None
        self._black_terms: tuple[FloatArray, FloatArray, FloatArray, FloatArray | None] | None = None
        self._recent: list[_Evaluation] = []  # the last few evaluations, most recent first
        self.n_data = q.n
        defaults = np.array([spec.default for spec in model.params], dtype=float)
        self.n_constraints = int(np.asarray(model.constraints(defaults)).size)

    @cached_property
    def ref_vega(self) -> FloatArray:
        """Market vega per quote (quote currency per 1.00 vol, :func:`reference_vega`), computed on first need."""
        return reference_vega(self.quotes)

    # -- model output and errors -----------------------------------------------------------------------------

    @property
    def price_target(self) -> tuple[FloatArray, ...]:
        """Black prices (quote currency) of the mid, bid and ask vol targets: the fallback targets of a price
        model in vol space where a model price has no implied vol (computed on first need)."""
        if self._price_target is None:
            q = self.quotes
            with np.errstate(all="ignore"):
                self._price_target = tuple(
                    black_price(q.forward, q.strike, q.ttm, v, is_call=q.is_call, discount=q.discount)
                    for v in self.target
                )
        return self._price_target

    def _terms(self) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray | None]:
        """Vol-independent Black terms per quote: ``x = ln(F/K)``, ``sqrt(t)``, ``D F`` and the price normalisation
        ``D sqrt(F K)`` (``None`` unless every quote has a valid contract: positive finite ``t, F, K, D``)."""
        if self._black_terms is None:
            q = self.quotes
            with np.errstate(all="ignore"):
                valid = np.all(np.isfinite(q.ttm) & (q.ttm > 0.0) & (q.discount > 0.0) & np.isfinite(q.discount))
                valid &= np.all((q.forward > 0.0) & np.isfinite(q.forward) & (q.strike > 0.0) & np.isfinite(q.strike))
                norm = q.discount * np.sqrt(q.forward * q.strike) if valid else None
                self._black_terms = (np.log(q.forward / q.strike), np.sqrt(q.ttm), q.discount * q.forward, norm)
        return self._black_terms

    def _implied_vol(self, price: FloatArray) -> FloatArray:
        """Black implied vols (decimal, NaN where none) of model prices (quote currency, discounted): the
        normalised solver on ``V / (D sqrt(F K))`` with the vol-independent terms kept (the same solver as
        :func:`calibration.implied_vol.implied_vol`, without its per-call validation of the contracts)."""
        x, sqrt_t, _, norm = self._terms()
        q = self.quotes
        if norm is None:
            return implied_vol(price, q.forward, q.strike, q.ttm, is_call=q.is_call, discount=q.discount).vol
        return implied_std_normalised(price / norm, x, is_call=q.is_call) / sqrt_t

    def _model_vega(self, vol: FloatArray) -> FloatArray:
        """Black vega (quote currency per 1.00 vol) at the model vols: ``D F n(d1) sqrt(t)``, as
        :func:`calibration.black.black_greeks` computes it, with the vol-independent factors kept."""
        x, sqrt_t, df, _ = self._terms()
        with np.errstate(all="ignore"):
            return black_vega(x, sqrt_t, df, vol)

    def _evaluate(self, theta: FloatArray) -> _Evaluation:
        theta = np.asarray(theta, dtype=float)
        for ev in self._recent:
            if np.array_equal(ev.theta, theta):
                return ev
        q = self.quotes
        values = np.asarray(self.model.values(theta, self.plan), dtype=float)
        mid, bid, ask = self.target
        vol = None
        dedv = None
        with np.errstate(all="ignore"):
            if self.space == "vol" and self.model.output == "vol":
                e, dedv = band_errors(values, mid, bid, ask, fit_to=self.fit_to)
            elif self.space == "vol":  # price model, vol residuals: d errors / d values on first need
                vol = self._implied_vol(values)
                e = band_errors(vol, mid, bid, ask, fit_to=self.fit_to)[0]
                has_vol = np.isfinite(vol)
                if not has_vol.all():
                    e_px = band_errors(values, *self.price_target, fit_to=self.fit_to)[0]
                    e = np.where(has_vol, e, e_px / self.ref_vega)
            elif self.model.output == "price":
                e, dedv = band_errors(values, mid, bid, ask, fit_to=self.fit_to)
            else:  # vol model, price residuals
                price = black_price(q.forward, q.strike, q.ttm, values, is_call=q.is_call, discount=q.discount)
                e, dedv = band_errors(price, mid, bid, ask, fit_to=self.fit_to)
                dedv = dedv * black_greeks(
                    q.forward, q.strike, q.ttm, values, is_call=q.is_call, discount=q.discount
                ).vega
        bad = ~np.isfinite(e)
        if bad.any():
            e = np.where(bad, self.nan_residual, e)
        if dedv is not None:
            dedv = self._finite_dedv(dedv, bad)
        ev = _Evaluation(theta=theta.copy(), values=values, errors=e, dedv=dedv, vol=vol)
        self._recent = [ev] + self._recent[: RECENT_EVALUATIONS - 1]
        return ev

    @staticmethod
    def _finite_dedv(dedv: FloatArray, bad: np.ndarray) -> FloatArray:
        """``dedv`` with 0 where the error is not finite (NaN model output) or ``dedv`` itself is not."""
        if bad.any():
            dedv = np.where(bad, 0.0, dedv)
        return np.where(np.isfinite(dedv), dedv, 0.0)

    def _dedv(self, ev: _Evaluation) -> FloatArray:
        """d errors / d values of an evaluation (a price model in vol space: ``de/dvol / vega`` at the model vol,
        ``de/dprice / market vega`` where the model price has no vol)."""
        if ev.dedv is None:
            assert ev.vol is not None
            mid, bid, ask = self.target
            with np.errstate(all="ignore"):
                d_vol = band_errors(ev.vol, mid, bid, ask, fit_to=self.fit_to)[1]
                dedv = d_vol / self._model_vega(ev.vol)
                has_vol = np.isfinite(ev.vol)
                if not has_vol.all():
                    d_px = band_errors(ev.values, *self.price_target, fit_to=self.fit_to)[1]
                    dedv = np.where(has_vol, dedv, d_px / self.ref_vega)
            ev.dedv = self._finite_dedv(dedv, ~np.isfinite(ev.errors))
        return ev.dedv

    def model_values(self, theta: FloatArray) -> FloatArray:
        """The model's native output (vols or prices, see ``model.output``) at every quote, at ``theta``."""
        return self._evaluate(theta).values

    def model_vols(self, theta: FloatArray) -> FloatArray | None:
        """Black implied vols (decimal) of a price model's values at ``theta`` in vol space (``None`` otherwise:
        the values are vols, or the residuals are in price space)."""
        return self._evaluate(theta).vol

    def errors(self, theta: FloatArray) -> FloatArray:
        """Unweighted errors ``e_i`` (vol decimals or quote currency) at ``theta``."""
        return self._evaluate(theta).errors

    # -- residuals and Jacobian ------------------------------------------------------------------------------

    def residuals(self, theta: FloatArray) -> FloatArray:
        """The full residual vector: weighted data rows, constraint rows, regularisation rows."""
        theta = np.asarray(theta, dtype=float)
        parts = [self.sqrt_w * self._evaluate(theta).errors]
        if self.n_constraints:
            c = np.asarray(self.model.constraints(theta), dtype=float)
            parts.append(PENALTY_WEIGHT * self.space_scale * np.where(c >= 0.0, 0.0, np.where(np.isnan(c), -1.0, c)))
        if self.prior is not None:
            parts.append(np.sqrt(self.prior.lam) * (theta - self.prior.theta) / self.prior.scale)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def jacobian(self, theta: FloatArray) -> FloatArray:
        """d residuals / d theta, shape ``(m, p)``."""
        theta = np.asarray(theta, dtype=float)
        ev = self._evaluate(theta)
        if ev.jacobian is not None:
            return ev.jacobian.copy()
        jv = self.model.jacobian(theta, self.plan)
        if jv is None:
            jv = self._finite_differences(theta, lambda th: self.model.values(th, self.plan), ev.values)
        jv = np.where(np.isfinite(jv), jv, 0.0)
        parts = [(self.sqrt_w * self._dedv(ev))[:, None] * jv]
        if self.n_constraints:
            c = np.asarray(self.model.constraints(theta), dtype=float)
            jc = np.zeros((c.shape[0], theta.shape[0]))
            active = ~(c >= 0.0)  # violated (or NaN): the penalty row is live
            if active.any():
                jc[active] = PENALTY_WEIGHT * self.space_scale * self._finite_differences(
                    theta, self.model.constraints, c
                )[active]
            parts.append(jc)
        if self.prior is not None:
            parts.append(np.diag(np.sqrt(self.prior.lam) / self.prior.scale))
        ev.jacobian = np.vstack(parts) if len(parts) > 1 else parts[0]
        return ev.jacobian.copy()

    def _finite_differences(self, theta: FloatArray, fun, at: FloatArray) -> FloatArray:
        """Central differences of ``fun`` (one-sided next to a bound), shape ``(len(at), p)``."""
        width = np.where(np.isfinite(self.search_upper - self.search_lower), self.search_upper - self.search_lower, 1.0)
        steps = FD_STEP * np.maximum(np.maximum(np.abs(theta), 0.01 * width), 1e-6)
        out = np.empty((np.asarray(at).shape[0], theta.shape[0]))
        for j, h in enumerate(steps):
            up, down = theta.copy(), theta.copy()
            up[j] += h
            down[j] -= h
            if up[j] > self.upper[j]:
                out[:, j] = (at - np.asarray(fun(down), dtype=float)) / h
            elif down[j] < self.lower[j]:
                out[:, j] = (np.asarray(fun(up), dtype=float) - at) / h
            else:
                out[:, j] = (np.asarray(fun(up), dtype=float) - np.asarray(fun(down), dtype=float)) / (2.0 * h)
        return out

    # -- reporting -------------------------------------------------------------------------------------------

    def rmse_vol_points(self, r: FloatArray) -> float:
        """Root-mean-square data error of a residual vector, in vol points (price space: ``e / vega``, the
        first-order vol equivalent)."""
        e = r[: self.n_data] / self.sqrt_w
        if self.space == "price":
            e = e / self.ref_vega
        return 100.0 * float(np.sqrt(np.mean(e * e)))

    def problem(self, x0: FloatArray) -> LeastSquaresProblem:
        """The least-squares problem for :func:`calibration.optimizers.minimize`, starting at ``x0``."""
        return LeastSquaresProblem(
            fun=self.residuals,
            jac=self.jacobian,
            x0=np.asarray(x0, dtype=float),
            lower=self.lower,
            upper=self.upper,
            search_lower=self.search_lower,
            search_upper=self.search_upper,
            n_robust=self.n_data,
            loss=self.loss,
            f_scale=self.f_scale,
            error=self.rmse_vol_points,
        )
