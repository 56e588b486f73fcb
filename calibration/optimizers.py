"""One front door to every optimizer: :func:`minimize` on a :class:`LeastSquaresProblem`.

Every method works on ONE residual vector ``r(theta)`` and minimises the same cost

``C(theta) = 1/2 * sum_{i < n_robust} f^2 rho((r_i / f)^2) + 1/2 * sum_{i >= n_robust} r_i^2``

where ``rho`` is the robust loss (the definitions of :func:`scipy.optimize.least_squares`: linear ``z``,
soft_l1 ``2 (sqrt(1 + z) - 1)``, huber ``z`` for ``z <= 1`` else ``2 sqrt(z) - 1``, cauchy ``ln(1 + z)``) and
``f`` the loss scale, in the units of the residuals. The rows from ``n_robust`` on (constraint penalties,
regularisation) always get the plain square.

Methods (:data:`OPTIMIZERS`):

- ``lm``: Levenberg-Marquardt (MINPACK through :func:`scipy.optimize.least_squares`). MINPACK has neither bounds
  nor robust losses: bounds are removed by a smooth transform (``theta = l + (u - l)(1 + sin x)/2`` for two-sided
  bounds, ``theta = l + s (sqrt(x^2 + 1) - 1)`` for a lower bound only, mirrored for an upper bound only, ``s`` the
  width of the search box), and the loss by the square-root transform ``r~ = r sqrt(rho(z)/z)`` whose squares sum
  to exactly ``C``.
- ``trf``: trust-region reflective with native bounds and the robust loss passed natively (as a callable that
  is linear on the penalty rows).
- ``lbfgsb``: L-BFGS-B on ``C`` with its analytic gradient ``J^T psi`` (``psi_i = rho'(z_i) r_i``), native
  bounds, in coordinates scaled by the Jacobian's column norms at the start.
- ``nelder``: Nelder-Mead on ``C`` in the transformed (unbounded) coordinates of ``lm``.
- ``de``: differential evolution (seeded, in the finite search box), followed by a ``trf`` polish within the
  hard bounds.

Before any method sees them, residuals are divided by their root-mean-square at the starting point (floored at
:data:`MIN_RESIDUAL_SCALE` times ``f``), so that tolerances that some methods apply in absolute terms (trf's
gradient, L-BFGS-B's cost change below 1) act relative to the starting error; costs are reported unscaled.

Any local method can be wrapped in a multistart: the starting point plus ``starts - 1`` seeded Latin-hypercube
points of the search box; the best end point wins. Parameters are always reported in the original space.

A :class:`ProgressMonitor` reports evaluations and the error of the best point so far to a callback, at most
every ``interval_s`` seconds; the callback stops the fit by returning True or raising
:class:`CalibrationCancelled`; the outcome is then ``success=False`` with message ``"cancelled"``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.optimize as so

from calibration.errors import CalibrationError
from calibration.models.base import FloatArray

#: Optimizer registry keys.
OPTIMIZERS: tuple[str, ...] = ("lm", "trf", "lbfgsb", "nelder", "de")
#: Local methods (those a multistart can wrap).
LOCAL_OPTIMIZERS: tuple[str, ...] = ("lm", "trf", "lbfgsb", "nelder")
#: Robust losses (scipy.optimize.least_squares definitions).
LOSSES: tuple[str, ...] = ("linear", "soft_l1", "huber", "cauchy")

#: Population size multiplier of differential evolution (scipy's ``popsize``: ``popsize * p`` members).
DE_POPSIZE = 15
#: Share of the evaluation budget differential evolution may use before its polish.
DE_BUDGET_SHARE = 0.75
#: Relative distance from a bound a starting point is moved to for the transformed methods (lm, nelder), whose
#: transform has a zero derivative exactly on the bound.
INTERIOR_MARGIN = 1e-6

#: L-BFGS-B line-search failures count as convergence when the Gauss-Newton step left is below this, relative.
LINE_SEARCH_STEP_TOL = 1e-8
#: Floor of the residual scale :func:`minimize` divides by, relative to the loss scale ``f_scale``.
MIN_RESIDUAL_SCALE = 1e-6

CANCELLED = "cancelled"


class CalibrationCancelled(Exception):
    """Raised by a progress callback (or by the monitor when the callback returns True) to stop a fit."""


# ---------------------------------------------------------------------------------------------------------------
# robust losses
# ---------------------------------------------------------------------------------------------------------------


def loss_rho(z: FloatArray, loss: str) -> FloatArray:
    """``rho(z)``, ``rho'(z)`` and ``rho''(z)`` of a robust loss, stacked as ``(3, n)``.

    Parameters
    ----------
    z
        Squared scaled residuals ``(r / f)^2``, dimensionless, ``>= 0``.
    loss
        One of :data:`LOSSES`.
    """
    z = np.asarray(z, dtype=float)
    out = np.empty((3,) + z.shape)
    if loss == "linear":
        out[0] = z
        out[1] = 1.0
        out[2] = 0.0
    elif loss == "soft_l1":
        t = 1.0 + z
        out[0] = 2.0 * z / (np.sqrt(t) + 1.0)  # = 2 (sqrt(1 + z) - 1) without cancellation
        out[1] = t**-0.5
        out[2] = -0.5 * t**-1.5
    elif loss == "huber":
        small = z <= 1.0
        sz = np.sqrt(np.where(small, 1.0, z))
        out[0] = np.where(small, z, 2.0 * sz - 1.0)
        out[1] = np.where(small, 1.0, 1.0 / sz)
        out[2] = np.where(small, 0.0, -0.5 / (sz * sz * sz))
    elif loss == "cauchy":
        t = 1.0 + z
        out[0] = np.log1p(z)
        out[1] = 1.0 / t
        out[2] = -1.0 / (t * t)
    else:
        raise CalibrationError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")
    return out


def _rho_over_z(z: FloatArray, loss: str) -> FloatArray:
    """``rho(z) / z`` evaluated without cancellation (1 at ``z = 0``)."""
    if loss == "linear":
        return np.ones_like(z)
    if loss == "soft_l1":
        return 2.0 / (np.sqrt(1.0 + z) + 1.0)
    if loss == "huber":
        return np.where(z <= 1.0, 1.0, (2.0 * np.sqrt(np.maximum(z, 1.0)) - 1.0) / np.maximum(z, 1.0))
    if loss == "cauchy":
        safe = np.where(z > 1e-8, z, 1.0)
        return np.where(z > 1e-8, np.log1p(safe) / safe, 1.0 - 0.5 * z)
    raise CalibrationError(f"unknown loss {loss!r}: choose one of {', '.join(LOSSES)}")


# ---------------------------------------------------------------------------------------------------------------
# problem, settings, outcome, progress
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeastSquaresProblem:
    """A bounded nonlinear least-squares problem.

    Attributes
    ----------
    fun
        ``theta (p,) -> r (m,)``: the residual vector (weighted data residuals first, then penalty rows).
    x0
        Starting point ``(p,)``, original parameter space.
    lower, upper
        Hard bounds ``(p,)`` (``-inf``/``inf`` allowed).
    search_lower, search_upper
        Finite search box ``(p,)`` of differential evolution and the multistart points.
    jac
        ``theta -> J (m, p)``, the Jacobian of ``fun``; ``None``: finite differences by scipy.
    n_robust
        The first ``n_robust`` rows get the robust loss (``None``: all rows).
    loss
        One of :data:`LOSSES`.
    f_scale
        Loss scale ``f``, in the units of the residuals.
    error
        ``r -> float``: the error shown to the progress callback (``None``: root-mean-square of the robust rows).
    """

    fun: Callable[[FloatArray], FloatArray]
    x0: FloatArray
    lower: FloatArray
    upper: FloatArray
    search_lower: FloatArray
    search_upper: FloatArray
    jac: Callable[[FloatArray], FloatArray] | None = None
    n_robust: int | None = None
    loss: str = "linear"
    f_scale: float = 1.0
    error: Callable[[FloatArray], float] | None = None

    def robust_rows(self, m: int) -> int:
        """Number of rows with the robust loss in a residual vector of length ``m``."""
        return m if self.n_robust is None else min(self.n_robust, m)

    def cost(self, r: FloatArray) -> float:
        """The cost ``C`` (see the module docstring) of a residual vector."""
        n = self.robust_rows(r.shape[0])
        head, tail = r[:n], r[n:]
        if self.loss == "linear":
            data = float(head @ head)
        else:
            f = self.f_scale
            data = f * f * float(np.sum(loss_rho((head / f) ** 2, self.loss)[0]))
        return 0.5 * (data + float(tail @ tail))

    def report(self, r: FloatArray) -> float:
        """The error shown to the progress callback (``error``, or the rms of the robust rows)."""
        if self.error is not None:
            return float(self.error(r))
        head = r[: self.robust_rows(r.shape[0])]
        return float(np.sqrt(np.mean(head * head))) if head.size else 0.0

    def psi(self, r: FloatArray) -> FloatArray:
        """``dC/dr``: ``rho'(z) r`` on the robust rows, ``r`` on the others (gradient ``J^T psi``)."""
        if self.loss == "linear":
            return r
        n = self.robust_rows(r.shape[0])
        out = r.copy()
        out[:n] *= loss_rho((r[:n] / self.f_scale) ** 2, self.loss)[1]
        return out


@dataclass(frozen=True)
class OptimizerSettings:
    """How to minimise.

    Attributes
    ----------
    method
        One of :data:`OPTIMIZERS`.
    max_evals
        Largest number of residual evaluations per local run (per start of a multistart); differential
        evolution and its polish share it.
    ftol, xtol, gtol
        Relative cost change, relative step and (scaled) gradient tolerances (scipy's meanings for each method;
        Nelder-Mead: ``fatol = ftol * max(C(x0), f_scale^2)``, ``xatol = xtol`` in the transformed coordinates).
    seed
        Seed of differential evolution and of the multistart points.
    starts
        Number of starting points of a local method (0 or 1: the initial point only).
    """

    method: str = "lm"
    max_evals: int = 2000
    ftol: float = 1e-10
    xtol: float = 1e-10
    gtol: float = 1e-10
    seed: int = 0
    starts: int = 1

    def __post_init__(self) -> None:
        if self.method not in OPTIMIZERS:
            raise CalibrationError(f"unknown optimizer {self.method!r}: choose one of {', '.join(OPTIMIZERS)}")
        if int(self.max_evals) < 1:
            raise CalibrationError(f"max_evals must be a positive number of evaluations, got {self.max_evals!r}")
        for name in ("ftol", "xtol", "gtol"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0.0):
                raise CalibrationError(f"{name} must be a non-negative number, got {value!r}")
        if int(self.starts) < 0:
            raise CalibrationError(f"the number of starts must be >= 0, got {self.starts!r}")
        if self.method == "de" and int(self.starts) > 1:
            raise CalibrationError(
                "multistart wraps a local optimizer (lm, trf, lbfgsb, nelder); differential evolution is already "
                "global: set the number of starts to 0"
            )


@dataclass(frozen=True)
class OptimizeOutcome:
    """The end point of a minimisation.

    Attributes
    ----------
    x
        Best parameters found, original space, ``(p,)``.
    cost
        ``C(x)`` (see the module docstring).
    nfev, njev
        Residual and Jacobian evaluations (all starts, DE and polish together).
    success
        True when the method reports convergence (never when cancelled or out of evaluations).
    message
        Why it stopped, in words.
    """

    x: FloatArray
    cost: float
    nfev: int
    njev: int
    success: bool
    message: str

    @property
    def cancelled(self) -> bool:
        """True when the progress callback stopped the fit."""
        return self.message == CANCELLED


@dataclass(frozen=True)
class ProgressInfo:
    """What a progress callback receives.

    Attributes
    ----------
    nfev
        Residual evaluations so far (all slices and starts of the calibration).
    rmse_vol_points
        Error of the best point so far of the current problem (a calibration: rmse of the data residuals, in vol
        points; a bare problem: its ``error`` function).
    elapsed_s
        Wall-clock seconds since the monitor started.
    stage
        What is running ("expiry 3/10", "start 2/5", ...), possibly empty.
    """

    nfev: int
    rmse_vol_points: float
    elapsed_s: float
    stage: str


ProgressCallback = Callable[[ProgressInfo], "bool | None"]


@dataclass
class ProgressMonitor:
    """Counts evaluations and calls ``callback`` at most every ``interval_s`` seconds (the first evaluation always).

    ``callback`` returning True (or raising :class:`CalibrationCancelled`) cancels the fit.
    """

    callback: ProgressCallback | None = None
    interval_s: float = 0.05
    stage: str = ""
    nfev: int = 0
    _started: float = field(default_factory=time.perf_counter)
    _last: float = -np.inf

    def evaluated(self, error: Callable[[], float]) -> None:
        """Record one evaluation; report if due. ``error`` is called only when a report is sent."""
        self.nfev += 1
        if self.callback is None:
            return
        now = time.perf_counter()
        if now - self._last < self.interval_s:
            return
        self._last = now
        info = ProgressInfo(
            nfev=self.nfev, rmse_vol_points=float(error()), elapsed_s=now - self._started, stage=self.stage
        )
        if self.callback(info):
            raise CalibrationCancelled


class _Tracker:
    """Wraps a problem's residual function: counts, keeps the best point, reports progress."""

    def __init__(self, problem: LeastSquaresProblem, monitor: ProgressMonitor) -> None:
        self.problem = problem
        self.monitor = monitor
        self.nfev = 0
        self.njev = 0
        self.best_cost = np.inf
        self.best_x: FloatArray | None = None
        self.best_r: FloatArray | None = None
        self._last: tuple[FloatArray, FloatArray] | None = None

    def fun(self, theta: FloatArray) -> FloatArray:
        r = np.asarray(self.problem.fun(theta), dtype=float)
        self.nfev += 1
        self._last = (np.array(theta, dtype=float), r)
        cost = self.problem.cost(r)
        if cost < self.best_cost or self.best_x is None:
            self.best_cost, self.best_x, self.best_r = cost, np.array(theta, dtype=float), r
        self.monitor.evaluated(self._error)
        return r

    def residuals_at(self, theta: FloatArray) -> FloatArray:
        """The residuals at ``theta``: those of the last evaluation when it was at ``theta`` (not counted)."""
        if self._last is not None and np.array_equal(self._last[0], theta):
            return self._last[1]
        return np.asarray(self.problem.fun(theta), dtype=float)

    def jac(self, theta: FloatArray) -> FloatArray:
        self.njev += 1
        assert self.problem.jac is not None
        return np.asarray(self.problem.jac(theta), dtype=float)

    def _error(self) -> float:
        return float("nan") if self.best_r is None else self.problem.report(self.best_r)


# ---------------------------------------------------------------------------------------------------------------
# bound transform (lm, nelder)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoundTransform:
    """Smooth map from unbounded internal coordinates ``x`` to bounded parameters ``theta``.

    Two-sided bounds: ``theta = l + (u - l)(1 + sin x)/2``; lower bound only: ``theta = l + s (sqrt(x^2 + 1) - 1)``;
    upper bound only: ``theta = u - s (sqrt(x^2 + 1) - 1)``; no bound: ``theta = x``. ``s`` is the width of the
    search box (1 when that is not finite). Every ``theta`` within bounds has an internal ``x``.
    """

    lower: FloatArray
    upper: FloatArray
    scale: FloatArray
    _both: FloatArray = field(init=False, repr=False)
    _lo: FloatArray = field(init=False, repr=False)
    _hi: FloatArray = field(init=False, repr=False)
    _all_both: bool = field(init=False, repr=False)

    def __post_init__(self) -> None:
        has_lo, has_hi = np.isfinite(self.lower), np.isfinite(self.upper)
        object.__setattr__(self, "_both", has_lo & has_hi)
        object.__setattr__(self, "_all_both", bool(np.all(has_lo & has_hi)))
        object.__setattr__(self, "_lo", has_lo & ~has_hi)
        object.__setattr__(self, "_hi", ~has_lo & has_hi)

    @classmethod
    def of(cls, problem: LeastSquaresProblem) -> "BoundTransform":
        width = problem.search_upper - problem.search_lower
        scale = np.where(np.isfinite(width) & (width > 0.0), width, 1.0)
        return cls(lower=problem.lower, upper=problem.upper, scale=scale)

    def to_external(self, x: FloatArray) -> FloatArray:
        """``theta(x)``."""
        x = np.asarray(x, dtype=float)
        b, lo, hi = self._both, self._lo, self._hi
        if self._all_both:  # the common case, without masks (same arithmetic)
            return np.clip(self.lower + (self.upper - self.lower) * 0.5 * (1.0 + np.sin(x)), self.lower, self.upper)
        theta = x.copy()
        theta[b] = self.lower[b] + (self.upper[b] - self.lower[b]) * 0.5 * (1.0 + np.sin(x[b]))
        theta[b] = np.clip(theta[b], self.lower[b], self.upper[b])
        theta[lo] = self.lower[lo] + self.scale[lo] * (np.sqrt(x[lo] ** 2 + 1.0) - 1.0)
        theta[hi] = self.upper[hi] - self.scale[hi] * (np.sqrt(x[hi] ** 2 + 1.0) - 1.0)
        return theta

    def derivative(self, x: FloatArray) -> FloatArray:
        """``d theta / d x`` (diagonal of the transform's Jacobian)."""
        x = np.asarray(x, dtype=float)
        b, lo, hi = self._both, self._lo, self._hi
        if self._all_both:
            return (self.upper - self.lower) * 0.5 * np.cos(x)
        d = np.ones_like(x)
        d[b] = (self.upper[b] - self.lower[b]) * 0.5 * np.cos(x[b])
        d[lo] = self.scale[lo] * x[lo] / np.sqrt(x[lo] ** 2 + 1.0)
        d[hi] = -self.scale[hi] * x[hi] / np.sqrt(x[hi] ** 2 + 1.0)
        return d

    def to_internal(self, theta: FloatArray) -> FloatArray:
        """An ``x`` with ``theta(x) = theta`` (``theta`` moved :data:`INTERIOR_MARGIN` inside the bounds first)."""
        theta = _interior(np.asarray(theta, dtype=float), self.lower, self.upper, self.scale)
        x = theta.copy()
        b, lo, hi = self._both, self._lo, self._hi
        x[b] = np.arcsin(np.clip(2.0 * (theta[b] - self.lower[b]) / (self.upper[b] - self.lower[b]) - 1.0, -1, 1))
        x[lo] = np.sqrt(np.maximum(((theta[lo] - self.lower[lo]) / self.scale[lo] + 1.0) ** 2 - 1.0, 0.0))
        x[hi] = np.sqrt(np.maximum(((self.upper[hi] - theta[hi]) / self.scale[hi] + 1.0) ** 2 - 1.0, 0.0))
        return x


def _interior(theta: FloatArray, lower: FloatArray, upper: FloatArray, scale: FloatArray) -> FloatArray:
    """``theta`` clipped into the bounds and moved a small relative margin away from them."""
    width = np.where(np.isfinite(upper - lower), upper - lower, scale)
    margin = INTERIOR_MARGIN * width
    lo = np.where(np.isfinite(lower), lower + margin, -np.inf)
    hi = np.where(np.isfinite(upper), upper - margin, np.inf)
    return np.clip(theta, np.minimum(lo, hi), np.maximum(lo, hi))


# ---------------------------------------------------------------------------------------------------------------
# the methods
# ---------------------------------------------------------------------------------------------------------------


def _least_squares_message(res: so.OptimizeResult, max_evals: int) -> str:
    if res.status == 0:
        return f"stopped after the maximum number of evaluations ({max_evals})"
    return str(res.message)


def _run_lm(problem: LeastSquaresProblem, x0: FloatArray, s: OptimizerSettings, t: _Tracker) -> tuple:
    transform = BoundTransform.of(problem)
    p = x0.shape[0]

    def robust(r: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Square-root loss transform of the robust rows and its derivative d r~ / d r."""
        if problem.loss == "linear":
            return r, np.ones_like(r)
        n = problem.robust_rows(r.shape[0])
        f = problem.f_scale
        z = (r[:n] / f) ** 2
        g = np.sqrt(_rho_over_z(z, problem.loss))
        out, d = r.copy(), np.ones_like(r)
        out[:n] *= g
        d[:n] = loss_rho(z, problem.loss)[1] / g
        return out, d

    def pad(a: FloatArray) -> FloatArray:  # MINPACK needs at least as many residuals as parameters
        short = p - a.shape[0]
        return a if short <= 0 else np.concatenate([a, np.zeros((short,) + a.shape[1:])])

    def fun(x: FloatArray) -> FloatArray:
        r = t.fun(transform.to_external(x))
        return pad(r if problem.loss == "linear" else robust(r)[0])

    jac: Callable | str = "2-point"
    if problem.jac is not None:

        def jac(x: FloatArray) -> FloatArray:  # noqa: F811
            theta = transform.to_external(x)
            d = robust(t.residuals_at(theta))[1] if problem.loss != "linear" else 1.0
            return pad(np.reshape(d, (-1, 1)) * t.jac(theta) * transform.derivative(x)[None, :])

    res = so.least_squares(
        fun, transform.to_internal(x0), jac=jac, method="lm", ftol=s.ftol or None, xtol=s.xtol or None,
        gtol=s.gtol or None, max_nfev=int(s.max_evals), x_scale="jac",
    )
    return transform.to_external(res.x), res.status > 0, _least_squares_message(res, s.max_evals)


def _mixed_loss(problem: LeastSquaresProblem, m: int) -> Callable[[FloatArray], FloatArray]:
    """A callable loss for least_squares: robust on the first rows, linear on the penalty rows."""
    n = problem.robust_rows(m)

    def loss(z: FloatArray) -> FloatArray:
        out = np.empty((3, z.shape[0]))
        out[:, :n] = loss_rho(z[:n], problem.loss)
        out[0, n:] = z[n:]
        out[1, n:] = 1.0
        out[2, n:] = 0.0
        return out

    return loss


def _run_trf(problem: LeastSquaresProblem, x0: FloatArray, s: OptimizerSettings, t: _Tracker) -> tuple:
    x0 = np.clip(x0, problem.lower, problem.upper)
    loss: str | Callable = "linear"
    if problem.loss != "linear":
        loss = _mixed_loss(problem, np.asarray(problem.fun(x0)).shape[0])
    res = so.least_squares(
        t.fun, x0, jac=t.jac if problem.jac is not None else "2-point", bounds=(problem.lower, problem.upper),
        method="trf", ftol=s.ftol or None, xtol=s.xtol or None, gtol=s.gtol or None, max_nfev=int(s.max_evals),
        x_scale="jac", loss=loss, f_scale=problem.f_scale,
    )
    return res.x, res.status > 0, _least_squares_message(res, s.max_evals)


def _lbfgsb_scale(problem: LeastSquaresProblem, x0: FloatArray, t: _Tracker) -> FloatArray:
    """Per-parameter scale ``d`` of L-BFGS-B's coordinates ``u = d theta``: the column norms of the Jacobian at
    the start (so that the Gauss-Newton Hessian in ``u`` has a unit diagonal and L-BFGS-B's first, unit-length
    step is of the right size), else the inverse width of the search box."""
    if problem.jac is not None:
        d = np.sqrt(np.sum(t.jac(x0) ** 2, axis=0))
    else:
        d = 1.0 / (problem.search_upper - problem.search_lower)
    return np.where(np.isfinite(d) & (d > 0.0), d, 1.0)


def _run_lbfgsb(problem: LeastSquaresProblem, x0: FloatArray, s: OptimizerSettings, t: _Tracker) -> tuple:
    x0 = np.clip(x0, problem.lower, problem.upper)
    d = _lbfgsb_scale(problem, x0, t)
    if problem.jac is not None:

        def fun(u: FloatArray) -> tuple[float, FloatArray]:
            theta = np.clip(u / d, problem.lower, problem.upper)
            r = t.fun(theta)
            return problem.cost(r), (t.jac(theta).T @ problem.psi(r)) / d

        jac: bool | str = True
    else:

        def fun(u: FloatArray) -> float:  # type: ignore[misc]
            return problem.cost(t.fun(np.clip(u / d, problem.lower, problem.upper)))

        jac = "2-point"
    res = so.minimize(
        fun, x0 * d, jac=jac, method="L-BFGS-B", bounds=so.Bounds(problem.lower * d, problem.upper * d),
        options={"maxfun": int(s.max_evals), "maxiter": int(s.max_evals), "ftol": s.ftol, "gtol": s.gtol},
    )
    message = str(res.message)
    success = bool(res.success)
    theta = np.clip(res.x / d, problem.lower, problem.upper)
    if "LIMIT" in message.upper():
        message = f"stopped after the maximum number of evaluations ({s.max_evals})"
    elif not success and "ABNORMAL" in message.upper() and problem.jac is not None:
        # the line search found no decrease: converged if the Gauss-Newton step left is negligible
        step = np.linalg.lstsq(t.jac(theta), -t.residuals_at(theta), rcond=None)[0]
        if np.linalg.norm(step) <= LINE_SEARCH_STEP_TOL * (np.linalg.norm(theta) + LINE_SEARCH_STEP_TOL):
            success = True
            message = "converged: no further decrease possible and the remaining Gauss-Newton step is negligible"
    return theta, success, message


def _run_nelder(problem: LeastSquaresProblem, x0: FloatArray, s: OptimizerSettings, t: _Tracker) -> tuple:
    transform = BoundTransform.of(problem)
    z0 = transform.to_internal(x0)
    p = z0.shape[0]

    def fun(x: FloatArray) -> float:
        return problem.cost(t.fun(transform.to_external(x)))

    # initial simplex: steps of 0.2 rad for two-sided bounds (about 10 % of the range), 10 % or 0.1 otherwise
    steps = np.where(np.isfinite(problem.lower) & np.isfinite(problem.upper), 0.2, np.maximum(0.1 * np.abs(z0), 0.1))
    steps = np.where(z0 + steps > np.pi / 2, -steps, steps)  # step toward the interior of the sine's branch
    simplex = np.vstack([z0, z0 + np.diag(steps)])
    f0 = fun(z0)
    res = so.minimize(
        fun, z0, method="Nelder-Mead",
        options={
            "maxfev": int(s.max_evals), "xatol": s.xtol, "fatol": s.ftol * max(f0, problem.f_scale**2),
            "initial_simplex": simplex, "adaptive": p > 2,
        },
    )
    message = str(res.message)
    if "maximum number" in message.lower():
        message = f"stopped after the maximum number of evaluations ({s.max_evals})"
    return transform.to_external(res.x), bool(res.success), message


_LOCAL = {"lm": _run_lm, "trf": _run_trf, "lbfgsb": _run_lbfgsb, "nelder": _run_nelder}


def _search_box(problem: LeastSquaresProblem) -> tuple[FloatArray, FloatArray]:
    """The search box intersected with the hard bounds; raises when it is not finite."""
    lo = np.maximum(problem.search_lower, problem.lower)
    hi = np.minimum(problem.search_upper, problem.upper)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(hi > lo)):
        raise CalibrationError(
            "differential evolution and multistart need a finite search box for every parameter "
            f"(got lower {lo.tolist()}, upper {hi.tolist()})"
        )
    return lo, hi


def _run_de(problem: LeastSquaresProblem, x0: FloatArray, s: OptimizerSettings, t: _Tracker) -> tuple:
    lo, hi = _search_box(problem)
    p = x0.shape[0]
    popsize = DE_POPSIZE * p
    generations = max(1, int(DE_BUDGET_SHARE * s.max_evals) // popsize - 1)
    res = so.differential_evolution(
        lambda theta: problem.cost(t.fun(theta)), list(zip(lo, hi)), maxiter=generations, popsize=DE_POPSIZE,
        rng=np.random.default_rng(s.seed), polish=False, init="latinhypercube", x0=np.clip(x0, lo, hi),
        updating="immediate",
    )
    budget = max(int(s.max_evals) - t.nfev, 100)
    polish = OptimizerSettings(method="trf", max_evals=budget, ftol=s.ftol, xtol=s.xtol, gtol=s.gtol)
    x, success, message = _run_trf(problem, res.x, polish, t)
    return x, success, f"differential evolution ({res.nit} generations), then trf polish: {message}"


def multistart_points(problem: LeastSquaresProblem, n: int, *, seed: int) -> FloatArray:
    """``n`` seeded Latin-hypercube points of the search box (within the hard bounds), shape ``(n, p)``."""
    from scipy.stats import qmc  # scipy.stats is slow to import: only when a multistart needs it

    lo, hi = _search_box(problem)
    sample = qmc.LatinHypercube(d=lo.shape[0], rng=np.random.default_rng(seed)).random(n)
    return qmc.scale(sample, lo, hi)


def _residual_scale(problem: LeastSquaresProblem, r: FloatArray) -> float:
    """Root-mean-square of the robust rows of ``r``, floored at :data:`MIN_RESIDUAL_SCALE` times the loss scale
    (a start that is already a zero-residual solution must not blow rounding noise up to order one)."""
    head = r[: problem.robust_rows(r.shape[0])]
    scale = float(np.sqrt(np.mean(head * head))) if head.size else 0.0
    return max(scale, MIN_RESIDUAL_SCALE * problem.f_scale) if np.isfinite(scale) else 1.0


def _scaled(problem: LeastSquaresProblem, scale: float) -> LeastSquaresProblem:
    """The same problem with residuals (and the loss scale) divided by ``scale``; errors reported unscaled."""
    if scale == 1.0:
        return problem
    jac = problem.jac
    return replace(
        problem,
        fun=lambda theta: np.asarray(problem.fun(theta), dtype=float) / scale,
        jac=None if jac is None else (lambda theta: np.asarray(jac(theta), dtype=float) / scale),
        f_scale=problem.f_scale / scale,
        error=lambda r: problem.report(r * scale),
    )


def _first_point(problem: LeastSquaresProblem, method: str, x0: FloatArray) -> FloatArray:
    """The first point a method evaluates from ``x0``: through the bound transform for lm and nelder."""
    if method in ("lm", "nelder"):
        transform = BoundTransform.of(problem)
        return transform.to_external(transform.to_internal(x0))
    return x0


def minimize(
    problem: LeastSquaresProblem,
    settings: OptimizerSettings | None = None,
    *,
    monitor: ProgressMonitor | None = None,
) -> OptimizeOutcome:
    """Minimise the cost of ``problem`` (see the module docstring) with the method of ``settings``.

    Parameters
    ----------
    problem
        The residuals, bounds, loss and starting point.
    settings
        Method, budget, tolerances, seed and number of starts; defaults when omitted.
    monitor
        Progress reporting and cancellation (shared across the problems of one calibration).

    Returns
    -------
    OptimizeOutcome
        The best point found; never raises for a fit that does not converge (``success=False`` and the reason).
        A cancelled fit returns the best point seen so far with message ``"cancelled"``.

    Raises
    ------
    CalibrationError
        Differential evolution or multistart without a finite search box.
    """
    settings = settings or OptimizerSettings()
    monitor = monitor or ProgressMonitor()
    x0 = np.clip(np.asarray(problem.x0, dtype=float), problem.lower, problem.upper)
    starts = [x0]
    if settings.method in LOCAL_OPTIMIZERS and settings.starts > 1:
        starts += list(multistart_points(problem, settings.starts - 1, seed=settings.seed))
    elif settings.method == "de":
        _search_box(problem)
    run = _run_de if settings.method == "de" else _LOCAL[settings.method]

    # Residuals are divided by their rms at the start, so that the absolute tolerances of some methods (the
    # gradient of trf, the cost change of L-BFGS-B below 1) act relative to the starting error.
    # the scale is measured where the method starts (lm and nelder: x0 through their bound transform), so that
    # the method's first evaluation is the one already made (a residual function that caches its last point)
    first = _Tracker(problem, monitor)
    try:
        r0 = first.fun(_first_point(problem, settings.method, x0))
    except CalibrationCancelled:
        return OptimizeOutcome(x=x0, cost=float("nan"), nfev=1, njev=0, success=False, message=CANCELLED)
    scale = _residual_scale(problem, r0)
    scaled = _scaled(problem, scale)

    outcomes: list[tuple[float, FloatArray, bool, str]] = []
    nfev, njev = first.nfev, 0
    base_stage = monitor.stage
    for i, start in enumerate(starts):
        if len(starts) > 1:
            monitor.stage = f"{base_stage}, start {i + 1}/{len(starts)}".lstrip(", ")
        tracker = _Tracker(scaled, monitor)
        try:
            x, success, message = run(scaled, start, settings, tracker)
        except CalibrationCancelled:
            x, success, message = tracker.best_x if tracker.best_x is not None else start, False, CANCELLED
        x = np.clip(np.asarray(x, dtype=float), problem.lower, problem.upper)
        cost = scaled.cost(tracker.residuals_at(x))
        if message != CANCELLED and tracker.best_x is not None and tracker.best_cost < cost:
            x, cost = tracker.best_x, tracker.best_cost  # a method may end on a worse point than it has seen
        nfev += tracker.nfev
        njev += tracker.njev
        outcomes.append((cost * scale * scale if np.isfinite(cost) else np.inf, x, success, message))
        if message == CANCELLED:
            break
    monitor.stage = base_stage
    cancelled = outcomes[-1][3] == CANCELLED
    best = min(range(len(outcomes)), key=lambda j: outcomes[j][0])
    cost, x, success, message = outcomes[best]
    if cancelled:
        success, message = False, CANCELLED
    elif len(starts) > 1:
        message = f"best of {len(starts)} starts (start {best + 1}): {message}"
    return OptimizeOutcome(x=x, cost=float(cost), nfev=nfev, njev=njev, success=bool(success), message=message)
