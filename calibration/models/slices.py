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

from dataclasses import dataclass, fields, replace

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
        return theta.T.take(self.expiry_index, axis=1)

    def restrict(self, keep: NDArray[np.bool_]) -> "SlicePlan":
        """The plan of the quotes of the expiries where ``keep`` (shape ``(m,)``) is True, renumbered in order.

        Every per-quote field (an array of length ``n``, or a tuple of such arrays, as subclasses add) is
        subset, so a subclass keeps its precomputed terms.
        """
        rows = keep[self.expiry_index]
        n = self.expiry_index.shape[0]
        renumber = np.cumsum(keep) - 1

        def subset(value: object) -> object:
            if isinstance(value, np.ndarray) and value.shape[:1] == (n,):
                return value[rows]
            if isinstance(value, tuple) and value and all(
                    isinstance(v, np.ndarray) and v.shape[:1] == (n,) for v in value):
                return tuple(v[rows] for v in value)
            return value

        changes = {f.name: subset(getattr(self, f.name)) for f in fields(self)
                   if f.name not in ("expiry_index", "n_expiries")}
        return replace(self, **changes, expiry_index=renumber[self.expiry_index[rows]],
                       n_expiries=int(np.count_nonzero(keep)))


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
    n = expiry_index.shape[0]
    if n and n % n_expiries == 0 and (expiry_index.reshape(n_expiries, -1) == np.arange(n_expiries)[:, None]).all():
        # already sorted by expiry with as many quotes in every expiry: the layout is a reshape
        return (*(np.array(values, dtype=float).reshape(n_expiries, -1) for values in arrays),
                np.ones((n_expiries, n // n_expiries), dtype=bool))
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
#: Largest relative size (max-norm, against the parameters' max-norm) of the final step that :func:`fit_slices`
#: takes without evaluating the model (its predicted gain must also be below ``ftol`` of the cost, or leave an
#: exact fit, and the damping at most 1).
FINAL_STEP = 1e-5
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
        ``(m,)`` half sum of squared weighted residuals per expiry (vol units squared), at the last evaluated
        parameters: a final small Gauss-Newton step, predicted to gain less than ``ftol`` of it or to leave an
        exact fit, may follow without a model evaluation.
    converged
        ``(m,)`` True where the expiry met a tolerance before ``max_iter``.
    iterations
        Number of Levenberg-Marquardt iterations (one model evaluation with Jacobian each).
    """

    theta: FloatArray
    cost: FloatArray
    converged: NDArray[np.bool_]
    iterations: int


class _GramEvaluator:
    """``[J | r]`` of a slice model at ``(m, p)`` parameters, reduced to the Gram matrix of every expiry.

    Residuals ``weight (values - target)`` and the Jacobian are laid out per expiry in a padded ``(m, width, p+1)``
    array (padding rows stay zero; a reshape when the quotes are sorted by expiry with as many per expiry) and
    one batched matrix product gives ``J'J``, ``J'r`` and ``r'r`` (twice the cost) of every expiry at once,
    shape ``(m, p+1, p+1)``. :meth:`restrict` keeps some expiries (same ``width``, so each expiry's numbers
    are those of the full layout).
    """

    def __init__(self, model: Model, plan: SlicePlan, target: FloatArray, weight: FloatArray | None, width: int,
                 p: int) -> None:
        self.model, self.plan, self.target, self.weight, self.width, self.p = model, plan, target, weight, width, p
        self.fused = getattr(model, "value_and_jacobian", None)
        m, index = plan.n_expiries, plan.expiry_index
        n = index.shape[0]
        # sorted by expiry with as many quotes in every expiry: the padded layout is a reshape
        self.dense = m > 0 and n == m * width and bool((index.reshape(m, -1) == np.arange(m)[:, None]).all())
        if self.dense:
            self.slot = None
        else:
            _, row, col = expiry_layout(index, m)
            self.slot = row * width + col  # flat position of each quote in the padded (m, width) layout
        self.augmented = np.zeros((m * width, p + 1))
        self.stacked = self.augmented.reshape(m, width, p + 1)
        self.gram_of = self.stacked.transpose(0, 2, 1)
        self.can_restrict = callable(getattr(plan, "restrict", None))

    def __call__(self, theta: FloatArray) -> FloatArray:
        model, plan, p = self.model, self.plan, self.p
        if self.fused is not None:
            value, jacobian = self.fused(theta, plan)
        else:
            value, jacobian = model.values(theta, plan), model.jacobian(theta, plan)
        if self.weight is not None:
            value, jacobian = (value - self.target) * self.weight, jacobian * self.weight[:, None]
        else:
            value = value - self.target
        if self.dense:
            self.augmented[:, :p] = jacobian
            self.augmented[:, p] = value
        else:
            self.augmented[self.slot, :p] = jacobian
            self.augmented[self.slot, p] = value
        return self.gram_of @ self.stacked

    def restrict(self, keep: NDArray[np.bool_]) -> _GramEvaluator:
        """The evaluator of the expiries where ``keep`` is True (renumbered in order)."""
        rows = keep[self.plan.expiry_index]
        return _GramEvaluator(
            self.model, self.plan.restrict(keep), self.target[rows],
            None if self.weight is None else self.weight[rows], self.width, self.p,
        )


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
        its parameters by less than ``xtol`` relative, or when the next step is small and predicted (by the
        linear model) to gain less than ``ftol`` of the cost or to leave an exact fit: that last step is taken
        without evaluating the model.

    Notes
    -----
    Each iteration costs one model evaluation with Jacobian. Residuals and Jacobian are laid out as ``[J | r]``
    in the padded ``(m, N)`` layout (a reshape when the quotes are sorted by expiry with as many per expiry), and
    one batched matrix product gives ``J'J``, ``J'r`` and ``r'r`` of every expiry; only these ``(m, p+1, p+1)``
    Gram matrices are kept between iterations, and the ``(m, p, p)`` damped normal equations are solved by one
    batched ``np.linalg.solve``. Once half the expiries still iterating are done, the finished ones leave the
    batch (plans with a ``restrict`` method, as :class:`SlicePlan`): a slow expiry no longer pays for evaluating
    the others, and since every step is per expiry the numbers are those of the full batch.
    """
    theta = np.array(theta0, dtype=float)
    m, p = theta.shape
    by_expiry = getattr(model, "expiry_bounds", None)
    if by_expiry is not None:
        lower, upper = by_expiry(plan)
    else:  # the same bounds for every expiry, (1, p)
        lower = np.array([[spec.lower for spec in model.params]])
        upper = np.array([[spec.upper for spec in model.params]])
    theta = np.minimum(np.maximum(theta, lower), upper)
    target = np.asarray(target, dtype=float)
    wt = None if weight is None else np.asarray(weight, dtype=float)
    counts = np.bincount(plan.expiry_index, minlength=m)
    width = max(int(counts.max(initial=0)), 1)
    evaluate = _GramEvaluator(model, plan, target, wt, width, p)
    constraints = np.asarray(model.constraints(theta))
    constrained = constraints.size > 0

    gram = evaluate(theta)
    cost = 0.5 * gram[:, p, p]
    # a start that breaks the constraints may move anywhere that lowers the cost; a feasible one stays feasible
    feasible = (constraints.reshape(m, -1) >= 0.0).all(axis=1) if constrained else None
    scale_wt = 1.0 if wt is None else float(np.max(wt, initial=0.0))
    exact = 0.5 * (EXACT_FIT_RMS * scale_wt) ** 2 * counts  # an exact fit: nothing left to gain
    damping = np.full(m, INITIAL_DAMPING)
    growth = np.full(m, 2.0)
    done = (counts == 0) | (cost <= exact)
    eye = np.eye(p)
    tiny = np.finfo(float).tiny
    iterations = 0
    # The iteration works on the expiries still running ("active", rows of the full problem): once half of them
    # are done the working arrays and the evaluation drop the finished ones (their rows are written back first).
    # Every operation is per expiry, so this changes the cost of an iteration, not its numbers.
    active = np.arange(m)
    full_theta, full_cost, full_done = theta, cost, done
    while iterations < max_iter and not done.all():
        if 2 * np.count_nonzero(done) >= done.shape[0] and evaluate.can_restrict:
            full_theta[active], full_cost[active], full_done[active] = theta, cost, done
            keep = ~done
            active = active[keep]
            theta, cost, done, gram = theta[keep], cost[keep], done[keep], gram[keep]
            damping, growth, exact = damping[keep], growth[keep], exact[keep]
            feasible = None if feasible is None else feasible[keep]
            lower, upper = (b if b.shape[0] == 1 else b[keep] for b in (lower, upper))
            evaluate = evaluate.restrict(keep)
        m = done.shape[0]
        hess = gram[:, :p, :p]
        rhs = -gram[:, :p, p]  # minus the gradient
        shift = damping[:, None] * (hess.diagonal(0, 1, 2) + tiny)  # Marquardt: damping scaled by diag(J'J)
        system = hess + shift[:, :, None] * eye
        if ((theta <= lower) | (theta >= upper)).any():
            # a parameter on a bound that the gradient pushes outwards stays there (projected LM)
            fixed = ((theta <= lower) & (rhs < 0.0)) | ((theta >= upper) & (rhs > 0.0))
            system = np.where(fixed[:, :, None] | fixed[:, None, :], eye, system)
            rhs[fixed] = 0.0
        step = np.linalg.solve(system, rhs[..., None])[..., 0]
        # predicted decrease of the cost for the (unclipped) step: (shift.step^2 + rhs.step) / 2
        predicted = 0.5 * ((shift * step + rhs) * step).sum(axis=1)
        # at the optimum: a small, nearly Gauss-Newton step that the linear model says gains less than ftol of the
        # cost, or leaves an exact fit, is taken without evaluating the model there (it would only confirm it)
        final = (predicted <= ftol * cost) | (cost - predicted <= exact)
        if final.any():
            final &= (damping <= 1.0) & ~done & (
                np.abs(step).max(axis=1) <= FINAL_STEP * (np.abs(theta).max(axis=1) + FINAL_STEP))
            last = np.minimum(np.maximum(theta + step, lower), upper)
            if constrained:
                final &= (np.asarray(model.constraints(last)).reshape(m, -1) >= 0.0).all(axis=1) | ~feasible
            np.copyto(theta, last, where=final[:, None])
            done |= final
            if done.all():
                break
        iterations += 1
        if done.any():
            step[done] = 0.0
        trial = np.minimum(np.maximum(theta + step, lower), upper)
        t_gram = evaluate(trial)
        t_cost = 0.5 * t_gram[:, p, p]
        accept = (t_cost <= cost) & ~done
        if constrained and accept.any():  # (with nothing accepted there is nothing to check)
            t_feasible = (np.asarray(model.constraints(trial)).reshape(m, -1) >= 0.0).all(axis=1)
            accept &= t_feasible | ~feasible
            np.copyto(feasible, t_feasible, where=accept)
        small = np.abs(trial - theta).max(axis=1) <= xtol * (np.abs(theta).max(axis=1) + xtol)
        gained = cost - t_cost
        done |= (accept & ((gained <= ftol * cost) | (t_cost <= exact))) | small | (damping > 1e16)
        gain = gained / np.where(predicted > 0.0, predicted, np.inf)
        shrink = np.where(gain > GOOD_GAIN, 0.1, np.maximum(1.0 / 3.0, 1.0 - (2.0 * gain - 1.0) ** 3))
        if accept.all():
            damping = damping * shrink
            growth.fill(2.0)
            theta, gram, cost = trial, t_gram, t_cost
            continue
        damping = np.where(accept, damping * shrink, np.minimum(damping * growth, 1e20))
        growth = np.where(accept, 2.0, np.minimum(growth * 2.0, 1e3))
        np.copyto(theta, trial, where=accept[:, None])
        np.copyto(gram, t_gram, where=accept[:, None, None])
        np.copyto(cost, t_cost, where=accept)
    full_theta[active], full_cost[active], full_done[active] = theta, cost, done
    theta, cost, done = full_theta, full_cost, full_done
    return SliceFit(theta=theta, cost=cost, converged=done & (counts > 0), iterations=iterations)
