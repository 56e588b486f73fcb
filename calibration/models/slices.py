"""What the slice models (flat Black, SVI, SABR) share: the slice plan, market-vol helpers and the batched fit.

A slice model is normally evaluated on one expiry with a ``(p,)`` parameter vector. Its plan
(:class:`SlicePlan`) may also hold several expiries, evaluated with a ``(m, p)`` parameter array (row ``j`` for
expiry ``j``) in one vectorized call; the Jacobian then has shape ``(n, p)``: row ``i`` is the derivative of quote
``i`` with respect to the parameters of its own expiry, i.e. the non-zero blocks of the block-diagonal Jacobian.
:func:`fit_slices` uses this to fit every expiry of a surface at once (Levenberg-Marquardt with a damping per
expiry); each slice model's ``initial_guesses`` guesses every expiry at once (``initial_guess`` is the one-expiry
case).

Helpers: market vols (:func:`market_vols`), the vega-weighted ATM vol (:func:`atm_vols`), the ATM level, skew and
curvature (:func:`atm_smile`) and the padded ``(m, N)`` layout of per-quote arrays (:func:`pad_by_expiry`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from calibration.errors import CalibrationError
from calibration.models.base import FloatArray, Model, QuoteArrays


@dataclass(frozen=True)
class SlicePlan:
    """What a slice model needs of the quotes, computed once per set of quotes.

    Attributes
    ----------
    k
        Log-moneyness ``ln(K/F)`` per quote, dimensionless.
    ttm
        Time to expiry per quote, years.
    expiry_index
        Expiry of each quote (row of a ``(m, p)`` parameter array).
    n_expiries
        Number of expiries ``m`` in the quotes.
    """

    k: FloatArray
    ttm: FloatArray
    expiry_index: NDArray[np.intp]
    n_expiries: int

    @classmethod
    def of(cls, quotes: QuoteArrays) -> "SlicePlan":
        """The plan of ``quotes`` (any number of expiries)."""
        return cls(
            k=np.log(quotes.strike / quotes.forward),
            ttm=np.asarray(quotes.ttm, dtype=float),
            expiry_index=np.asarray(quotes.expiry_index, dtype=np.intp),
            n_expiries=int(quotes.expiry_ttm.shape[0]),
        )

    def columns(self, theta: FloatArray, p: int) -> FloatArray:
        """Parameters per quote, shape ``(p, n)``: ``theta`` of shape ``(p,)`` is shared by every quote, row ``j``
        of a ``(m, p)`` array belongs to expiry ``j``."""
        theta = np.asarray(theta, dtype=float)
        if theta.ndim == 1:
            if theta.shape[0] != p:
                raise ValueError(f"expected {p} parameters, got {theta.shape[0]}")
            return theta[:, None]
        if theta.shape != (self.n_expiries, p):
            raise ValueError(f"expected parameters of shape ({self.n_expiries}, {p}), got {theta.shape}")
        return theta[self.expiry_index].T


def single_expiry(quotes: QuoteArrays, model: str) -> None:
    """Raise :class:`CalibrationError` unless ``quotes`` hold exactly one expiry (``initial_guess`` of a slice
    model)."""
    if quotes.expiry_ttm.shape[0] != 1:
        raise CalibrationError(
            f"{model}: initial_guess takes the quotes of one expiry, got {quotes.expiry_ttm.shape[0]} expiries; "
            "use initial_guesses for several"
        )


def market_vols(quotes: QuoteArrays) -> FloatArray:
    """Mid implied vols of the quotes (decimals); bid/ask average where the mid vol is missing."""
    mid = np.asarray(quotes.vol_mid, dtype=float)
    band = 0.5 * (np.asarray(quotes.vol_bid, dtype=float) + np.asarray(quotes.vol_ask, dtype=float))
    return np.where(np.isfinite(mid), mid, band)


def atm_vols(quotes: QuoteArrays, *, default: float = 0.5) -> FloatArray:
    """Vega-weighted at-the-money vol per expiry (decimals), shape ``(m,)``.

    The weight of a quote is its Black vega at the mid vol times a Gaussian in log-moneyness with the width of
    one standard deviation of the expiry, so the estimate leans on the quotes nearest the money; expiries
    without a usable vol get ``default``.
    """
    vol = market_vols(quotes)
    k = quotes.k
    t = np.asarray(quotes.ttm, dtype=float)
    vega = np.asarray(quotes.vega, dtype=float)
    m = quotes.expiry_ttm.shape[0]
    ok = np.isfinite(vol) & (vol > 0.0)
    # a first, unweighted look at the level sets the width of the ATM window
    level = np.bincount(quotes.expiry_index[ok], weights=vol[ok], minlength=m) / np.maximum(
        np.bincount(quotes.expiry_index[ok], minlength=m), 1
    )
    level = np.where(level > 0.0, level, default)
    sd = level[quotes.expiry_index] * np.sqrt(np.maximum(t, 1e-12))
    base = np.where(np.isfinite(vega) & (vega > 0.0), vega, 1.0)
    weight = np.where(ok, base * np.exp(-0.5 * (k / sd) ** 2), 0.0)
    total = np.bincount(quotes.expiry_index, weights=weight, minlength=m)
    atm = np.bincount(quotes.expiry_index, weights=weight * np.where(ok, vol, 0.0), minlength=m)
    return np.where(total > 0.0, atm / np.where(total > 0.0, total, 1.0), default)


def atm_smile(quotes: QuoteArrays) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Level, slope and curvature of the smile at the money per expiry, each ``(m,)``.

    A quadratic ``vol(k) ~ c0 + c1 k + c2 k^2`` (vols as decimals, ``k = ln(K/F)``) is fitted to the market vols
    of each expiry with Gaussian weights centred at the money, one and a half ATM standard deviations wide (at
    least the median distance of the quotes to the money). Returns ``c0`` (the ATM vol), ``c1`` and ``c2``;
    expiries with fewer than three usable vols get the vega-weighted ATM vol and a flat smile.
    """
    m = quotes.expiry_ttm.shape[0]
    vol = market_vols(quotes)
    ok = np.isfinite(vol) & (vol > 0.0)
    atm = atm_vols(quotes)
    t = np.asarray(quotes.expiry_ttm, dtype=float)
    kk, vv, okk, mask = pad_by_expiry(quotes.expiry_index, m, quotes.k, np.where(ok, vol, 0.0), ok.astype(float))
    use = mask & (okk > 0.0)
    counts = use.sum(axis=1)
    ranked = np.sort(np.where(use, np.abs(kk), np.inf), axis=1)
    spread = np.where(counts > 0, ranked[np.arange(m), np.maximum(counts - 1, 0) // 2], 0.0)  # median |k| (lower)
    width = np.maximum(1.5 * atm * np.sqrt(np.maximum(t, 1e-8)), spread)[:, None]
    x = kk / width  # scaled for conditioning
    weight = np.where(use, np.exp(-0.5 * x * x), 0.0)
    basis = np.stack((np.ones_like(x), x, x * x), axis=-1)
    bw = (basis * weight[..., None]).transpose(0, 2, 1)
    coef = np.linalg.solve(bw @ basis + 1e-10 * np.eye(3), bw @ vv[..., None])[..., 0]
    enough = (counts >= 3) & (coef[:, 0] > 0.0)
    return (
        np.where(enough, coef[:, 0], atm),
        np.where(enough, coef[:, 1] / width[:, 0], 0.0),
        np.where(enough, coef[:, 2] / width[:, 0] ** 2, 0.0),
    )


def expiry_layout(expiry_index: NDArray[np.intp], n_expiries: int) -> tuple[NDArray[np.intp], ...]:
    """Where each quote goes in the padded ``(m, N)`` layout (``N`` the most quotes of an expiry): returns
    ``counts`` per expiry and, per quote, its ``row`` (expiry) and ``col``; quotes keep their order within
    an expiry."""
    counts = np.bincount(expiry_index, minlength=n_expiries)
    order = np.argsort(expiry_index, kind="stable")
    col = np.empty_like(order)
    col[order] = np.arange(order.shape[0]) - np.concatenate(([0], np.cumsum(counts)[:-1]))[expiry_index[order]]
    return counts, np.asarray(expiry_index, dtype=np.intp), col


def pad_by_expiry(expiry_index: NDArray[np.intp], n_expiries: int, *arrays: FloatArray) -> tuple[FloatArray, ...]:
    """Lay per-quote arrays out as ``(m, N)`` rows, one per expiry, ``N`` the largest number of quotes of an
    expiry; the last array returned is the mask of real entries (padding holds the expiry's first value, or 0).
    """
    counts, row, col = expiry_layout(expiry_index, n_expiries)
    width = max(int(counts.max(initial=0)), 1)
    mask = np.zeros((n_expiries, width), dtype=bool)
    mask[row, col] = True
    out = []
    for values in arrays:
        grid = np.zeros((n_expiries, width))
        grid[row, col] = values
        first = np.where(counts > 0, grid[:, 0], 0.0)
        out.append(np.where(mask, grid, first[:, None]))
    return (*out, mask)


#: Initial Levenberg-Marquardt damping of :func:`fit_slices` (relative to the diagonal of J'J).
INITIAL_DAMPING = 1e-4
#: An accepted step whose actual/predicted cost decrease exceeds this ratio divides the damping by 10 (otherwise
#: Nielsen's rule: ``max(1/3, 1 - (2 ratio - 1)^3)``): near the optimum the iteration becomes Gauss-Newton fast.
GOOD_GAIN = 0.9
#: Root-mean-square residual (model units) below which :func:`fit_slices` calls a slice fitted exactly.
EXACT_FIT_RMS = 1e-11


@dataclass(frozen=True)
class SliceFit:
    """Result of :func:`fit_slices`.

    Attributes
    ----------
    theta
        ``(m, p)`` fitted parameters, one row per expiry.
    cost
        ``(m,)`` half sum of squared weighted residuals per expiry (vol units squared).
    converged
        ``(m,)`` True where the expiry met a tolerance before ``max_iter``.
    iterations
        Number of Levenberg-Marquardt iterations (one model evaluation with Jacobian each).
    """

    theta: FloatArray
    cost: FloatArray
    converged: NDArray[np.bool_]
    iterations: int


def fit_slices(
    model: Model,
    plan: SlicePlan,
    target: FloatArray,
    theta0: FloatArray,
    *,
    weight: FloatArray | None = None,
    max_iter: int = 100,
    ftol: float = 1e-10,
    xtol: float = 1e-10,
) -> SliceFit:
    """Least squares of every expiry of a slice model at once: a Levenberg-Marquardt iteration on the
    block-diagonal problem, each expiry with its own damping, acceptance and stopping test.

    Minimises, for each expiry ``j``, ``1/2 sum_i (weight_i (values_i(theta_j) - target_i))^2`` over the quotes
    of that expiry. Steps are clipped to the parameter bounds (per expiry from ``model.expiry_bounds(plan)``
    when the model has it, else ``model.params``), and a step that breaks ``model.constraints`` is rejected (the
    damping grows), so a feasible start stays feasible.

    Parameters
    ----------
    model
        A slice model (``values``/``jacobian`` accept ``(m, p)`` parameters on a multi-expiry plan).
    plan
        ``model.prepare(quotes)`` of the quotes of every expiry.
    target
        Values to fit at every quote (vols, decimals, for ``output == "vol"``), shape ``(n,)``.
    theta0
        ``(m, p)`` starting parameters (e.g. ``model.initial_guesses(quotes)``).
    weight
        Residual weights, shape ``(n,)``; uniform when omitted.
    max_iter
        Largest number of iterations.
    ftol, xtol
        An expiry stops when an accepted step lowers its cost by less than ``ftol`` times the cost, or moves
        its parameters by less than ``xtol`` relative.
    """
    theta = np.array(theta0, dtype=float)
    m, p = theta.shape
    by_expiry = getattr(model, "expiry_bounds", None)
    if by_expiry is not None:
        lower, upper = by_expiry(plan)
    else:
        lower = np.tile([spec.lower for spec in model.params], (m, 1))
        upper = np.tile([spec.upper for spec in model.params], (m, 1))
    theta = np.minimum(np.maximum(theta, lower), upper)
    target = np.asarray(target, dtype=float)
    wt = None if weight is None else np.asarray(weight, dtype=float)
    counts, row, col = expiry_layout(plan.expiry_index, m)
    width = max(int(counts.max(initial=0)), 1)
    slot = row * width + col  # flat position of each quote in the padded (m, width) layout
    fused = getattr(model, "value_and_jacobian", None)
    constrained = np.asarray(model.constraints(theta)).size > 0

    def evaluate(th: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        value, jacobian = fused(th, plan) if fused is not None else (model.values(th, plan), model.jacobian(th, plan))
        res = np.zeros(m * width)
        jac = np.zeros((m * width, p))
        if wt is None:
            res[slot] = value - target
            jac[slot] = jacobian
        else:
            res[slot] = (value - target) * wt
            jac[slot] = jacobian * wt[:, None]
        res = res.reshape(m, width)
        return res, jac.reshape(m, width, p), 0.5 * (res * res).sum(axis=1)

    res, jac, cost = evaluate(theta)
    # a start that breaks the constraints may move anywhere that lowers the cost; a feasible one stays feasible
    feasible = (np.asarray(model.constraints(theta)).reshape(m, -1) >= 0.0).all(axis=1) if constrained else None
    scale_wt = 1.0 if wt is None else float(np.max(wt, initial=0.0))
    exact = 0.5 * (EXACT_FIT_RMS * scale_wt) ** 2 * counts  # an exact fit: nothing left to gain
    damping = np.full(m, INITIAL_DAMPING)
    growth = np.full(m, 2.0)
    done = (counts == 0) | (cost <= exact)
    eye = np.eye(p)
    tiny = np.finfo(float).tiny
    iterations = 0
    while iterations < max_iter and not done.all():
        iterations += 1
        jt = jac.transpose(0, 2, 1)
        hess = jt @ jac
        rhs = -(jt @ res[..., None])[..., 0]  # minus the gradient
        shift = damping[:, None] * (hess.diagonal(0, 1, 2) + tiny)  # Marquardt: damping scaled by diag(J'J)
        system = hess + shift[:, :, None] * eye
        if ((theta <= lower) | (theta >= upper)).any():
            # a parameter on a bound that the gradient pushes outwards stays there (projected LM)
            fixed = ((theta <= lower) & (rhs < 0.0)) | ((theta >= upper) & (rhs > 0.0))
            system = np.where(fixed[:, :, None] | fixed[:, None, :], eye, system)
            rhs[fixed] = 0.0
        step = np.linalg.solve(system, rhs[..., None])[..., 0]
        step[done] = 0.0
        # predicted decrease of the cost for the (unclipped) step: (shift.step^2 + rhs.step) / 2
        predicted = 0.5 * ((shift * step + rhs) * step).sum(axis=1)
        trial = np.minimum(np.maximum(theta + step, lower), upper)
        t_res, t_jac, t_cost = evaluate(trial)
        accept = (t_cost <= cost) & ~done
        if constrained:
            t_feasible = (np.asarray(model.constraints(trial)).reshape(m, -1) >= 0.0).all(axis=1)
            accept &= t_feasible | ~feasible
            np.copyto(feasible, t_feasible, where=accept)
        small = np.abs(trial - theta).max(axis=1) <= xtol * (np.abs(theta).max(axis=1) + xtol)
        done |= (accept & ((cost - t_cost <= ftol * cost) | (t_cost <= exact))) | small | (damping > 1e16)
        gain = (cost - t_cost) / np.where(predicted > 0.0, predicted, np.inf)
        shrink = np.where(gain > GOOD_GAIN, 0.1, np.maximum(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3))
        damping = np.where(accept, damping * shrink, np.minimum(damping * growth, 1e20))
        growth = np.where(accept, 2.0, np.minimum(growth * 2.0, 1e3))
        np.copyto(theta, trial, where=accept[:, None])
        np.copyto(res, t_res, where=accept[:, None])
        np.copyto(jac, t_jac, where=accept[:, None, None])
        np.copyto(cost, t_cost, where=accept)
    return SliceFit(theta=theta, cost=cost, converged=done & (counts > 0), iterations=iterations)
