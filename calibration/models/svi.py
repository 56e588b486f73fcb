"""Raw SVI (Gatheral 2004), one parameter vector per expiry, with a quasi-explicit initial fit.

Conventions (see DESIGN.md): log-moneyness ``k = ln(K/F)``, total implied variance ``w = sigma_B**2 * t``
(dimensionless), Black vol ``sigma_B = sqrt(w / t)`` (decimal), ``t`` in years (ACT/365).

The raw SVI slice is ``w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))`` with ``b >= 0``, ``|rho| < 1``,
``sigma > 0``. Its minimum ``a + b sigma sqrt(1 - rho^2)`` must be ``>= 0`` and its wings, of slopes
``b (1 +/- rho)``, obey Roger Lee's moment bound ``b (1 + |rho|) <= 2``; both are returned by
:meth:`SVI.constraints`. Butterfly arbitrage is absent where Durrleman's ``g(k) >= 0``
(:func:`durrleman_g`, Gatheral & Jacquier 2014, eq. 2.1).

The initial guess is the quasi-explicit fit of Zeliade (2009) and De Marco & Martini: with ``Y = k - m`` and
``Z = sqrt(Y^2 + sigma^2)`` the slice is ``w = a + u (Z + Y) + v (Z - Y)``, linear in ``(a, u, v)`` once
``(m, sigma)`` is fixed, where ``u = b (1 + rho)/2`` and ``v = b (1 - rho)/2`` are half the wing slopes; the Lee
bound and ``|rho| <= 1`` are the box ``0 <= u, v <= 1``, so the inner problem is a box-constrained linear
least-squares problem, solved exactly in closed form (total-variance residuals weighted by ``1/sigma_B^2``, close
to an unweighted fit in vol). The outer problem in ``(m, sigma)`` is searched, for every expiry at once, on a
coarse grid spanning the quotes, then on finer grids around the three best coarse points (the valleys of the SVI
objective are long and narrow).
A grid search cannot fall into the degenerate local minima (``sigma -> 0``, or ``b -> 0`` with a spurious ``m``)
that a local optimizer started from a fixed point finds on short-dated slices.

On some real slices the least-squares optimum lies at infinity (a parabola with its vertex far outside the
quotes); :meth:`SVI.for_quotes` bounds ``m`` and ``sigma`` by the quotes' range so every optimizer converges.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike

from calibration.models.base import FloatArray, ParamSpec, QuoteArrays
from calibration.arbitrage import durrleman_g
from calibration.models.slices import SlicePlan, market_vols, pad_by_expiry, single_expiry

#: Largest ``|rho|`` allowed (the bound of the parameter).
RHO_MAX = 0.999
#: Smallest ``sigma`` allowed, dimensionless (log-moneyness).
SIGMA_MIN = 1e-4
#: Smallest width of a slice's range of log-moneyness used to scale the search and the bounds.
MIN_WIDTH = 0.02
#: The vertex ``m`` stays within this many widths of the quotes' range of log-moneyness.
M_REACH = 1.0
#: ``sigma`` stays within these multiples of the width of the quotes' range of log-moneyness.
SIGMA_SPAN = (0.01, 2.0)
#: Total variance below which the model vol is floored (a negative ``w`` has no vol).
W_FLOOR = 1e-12

_PARAMS = (
    ParamSpec("a", -5.0, 10.0, 0.04, "vertical level of the total variance smile, dimensionless (variance x years)",
              de_lower=-0.5, de_upper=1.0),
    ParamSpec("b", 0.0, 2.0, 0.1, "wing slope scale, total variance per unit log-moneyness", de_upper=1.0),
    ParamSpec("rho", -RHO_MAX, RHO_MAX, -0.3, "skew (rotation of the smile), dimensionless in (-1, 1)"),
    ParamSpec("m", -5.0, 5.0, 0.0, "log-moneyness of the smile's vertex, dimensionless", de_lower=-1.0, de_upper=1.0),
    ParamSpec("sigma", SIGMA_MIN, 10.0, 0.1, "curvature width of the vertex, in log-moneyness", de_lower=1e-3,
              de_upper=2.0),
)


def svi_total_variance(k: ArrayLike, a: ArrayLike, b: ArrayLike, rho: ArrayLike, m: ArrayLike,
                       sigma: ArrayLike) -> FloatArray:
    """Raw SVI total implied variance ``w(k)`` (dimensionless), with numpy broadcasting.

    Parameters
    ----------
    k
        Log-moneyness ``ln(K/F)``.
    a, b, rho, m, sigma
        Raw SVI parameters (see the module docstring).
    """
    u = np.asarray(k, dtype=float) - m
    return a + b * (rho * u + np.sqrt(u * u + np.asarray(sigma, dtype=float) ** 2))


def svi_derivatives(k: ArrayLike, a: ArrayLike, b: ArrayLike, rho: ArrayLike, m: ArrayLike,
                    sigma: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``w``, ``dw/dk`` and ``d2w/dk2`` of a raw SVI slice at log-moneyness ``k`` (closed form)."""
    u = np.asarray(k, dtype=float) - m
    s2 = np.asarray(sigma, dtype=float) ** 2
    r = np.sqrt(u * u + s2)
    w = a + b * (rho * u + r)
    return w, b * (rho + u / r), b * s2 / (r * r * r)


def svi_durrleman_g(k: ArrayLike, theta: ArrayLike) -> FloatArray:
    """Durrleman's ``g(k)`` of the raw SVI slice ``theta = (a, b, rho, m, sigma)`` in closed form."""
    a, b, rho, m, sigma = np.asarray(theta, dtype=float)
    return durrleman_g(k, *svi_derivatives(k, a, b, rho, m, sigma))


def svi_constraints(theta: ArrayLike) -> FloatArray:
    """``[a + b sigma sqrt(1 - rho^2), 2 - b (1 + |rho|)]`` for ``theta`` of shape ``(..., 5)``: the minimum total
    variance and the slack of Roger Lee's bound, both ``>= 0`` when satisfied; shape ``(..., 2)``."""
    theta = np.asarray(theta, dtype=float)
    out = np.empty(theta.shape[:-1] + (2,))
    a, b, rho, sigma = theta[..., 0], theta[..., 1], theta[..., 2], theta[..., 4]
    out[..., 0] = a + b * sigma * np.sqrt(np.maximum(1.0 - rho * rho, 0.0))
    out[..., 1] = 2.0 - b * (1.0 + np.abs(rho))
    return out


# ---------------------------------------------------------------------------------------------------------------
# quasi-explicit fit


# The coarse grid, relative to the quotes' range of log-moneyness ``width``: the vertex ``m`` from half a width
# below the lowest quote to half a width above the highest, ``sigma`` from width/100 to twice the width.
_COARSE_M = np.repeat(np.linspace(-0.5, 1.5, 13), 9)
_COARSE_S = np.tile(np.geomspace(0.01, 2.0, 9), 13)
_COARSE_STEP_M = 2.0 / 12.0
_COARSE_STEP_S = np.log(200.0) / 8.0
# a zoomed grid: 5 x 5 points spanning one coarse step either side of the best point, shrunk by _ZOOM_SHRINK each time
_ZOOM = np.linspace(-1.0, 1.0, 5)
_ZOOM_M = np.repeat(_ZOOM, 5)
_ZOOM_S = np.tile(_ZOOM, 5)
_ZOOM_SHRINK = 2.5
# number of coarse points the first zoom looks around
_CANDIDATES = 3
_LOWER = np.array([p.lower for p in _PARAMS])
_UPPER = np.array([p.upper for p in _PARAMS])


def _box_fit(stats: tuple[FloatArray, ...], k: FloatArray, weights: FloatArray, m: FloatArray,
             s: FloatArray) -> tuple[FloatArray, ...]:
    """Exact inner fit for every ``(m, sigma)`` of a grid, every expiry at once.

    With ``Y = k - m`` and ``Z = sqrt(Y^2 + sigma^2)`` the slice is ``w = a + u (Z + Y) + v (Z - Y)`` where
    ``u = b (1 + rho)/2`` and ``v = b (1 - rho)/2``; ``|rho| <= 1`` and Lee's bound are the box ``0 <= u, v <= 1``.
    ``a`` is eliminated (weighted means); the 2-D box problem is solved exactly: the unconstrained minimum if
    inside, otherwise the best of the four edge minima (each a 1-D convex problem, solved by clipping).
    Costs are computed from the weighted moments ``E[Z], E[kZ], E[Zw]`` (one matrix product per grid).

    Parameters
    ----------
    stats
        Weighted ``E[k], Var[k], E[w], Var[w], Cov[k, w]`` of each expiry, each ``(S, 1)``.
    k
        Log-moneyness, ``(S, N)``.
    weights
        ``(S, N, 3)`` stack of ``wn, wn k, wn w`` (``wn`` the weights normalised to sum 1 per expiry).
    m, s
        Grid of ``(m, sigma)``, each ``(S, G)``.

    Returns
    -------
    tuple of numpy.ndarray
        Weighted mean squared error, ``a``, ``u``, ``v``, each ``(S, G)``.
    """
    ek, vk, ew, vw, ckw = stats
    z = k[:, None, :] - m[..., None]  # Y, then Z in place
    z *= z
    z += (s * s)[..., None]
    moments = np.sqrt(z, out=z) @ weights  # E[Z], E[kZ], E[Zw], (S, G, 3)
    ez, ekz, ezw = moments[..., 0], moments[..., 1], moments[..., 2]
    ey = ek - m
    s2 = s * s
    vz = (vk + ey * ey) + (s2 - ez * ez)
    cyz = ekz - ek * ez
    czw = ezw - ew * ez
    huv = vz - vk
    huu = huv + 2.0 * (vk + cyz)
    hvv = huu - 4.0 * cyz
    gu = czw + ckw
    gv = czw - ckw
    inv_det = 1.0 / np.maximum(huu * hvv - huv * huv, 1e-300)
    inv_huu = 1.0 / np.maximum(huu, 1e-300)
    inv_hvv = 1.0 / np.maximum(hvv, 1e-300)
    # candidates: the unconstrained minimum (clipped into the box: a feasible point, the optimum when inside)
    # and the minimum on each edge of the box (1-D convex problems: clipping is exact); the best is the optimum
    u = np.empty((5,) + m.shape)
    v = np.empty((5,) + m.shape)
    u[0] = (gu * hvv - gv * huv) * inv_det
    v[0] = (gv * huu - gu * huv) * inv_det
    u[1], u[2] = 0.0, 1.0  # edges u = 0 and u = 1: v at its 1-D minimum
    v[1] = gv * inv_hvv
    v[2] = v[1] - huv * inv_hvv
    v[3], v[4] = 0.0, 1.0  # edges v = 0 and v = 1
    u[3] = gu * inv_huu
    u[4] = u[3] - huv * inv_huu
    np.minimum(np.maximum(u, 0.0, out=u), 1.0, out=u)
    np.minimum(np.maximum(v, 0.0, out=v), 1.0, out=v)
    f = u * (huu * u + (2.0 * huv) * v - 2.0 * gu) + v * (hvv * v - 2.0 * gv)
    pick = np.argmin(f, axis=0).ravel() * f[0].size + np.arange(f[0].size)  # flat index of the best candidate
    best_u = u.reshape(-1)[pick].reshape(m.shape)
    best_v = v.reshape(-1)[pick].reshape(m.shape)
    a = ew - best_u * (ez + ey) - best_v * (ez - ey)
    # the minimum total variance a + 2 sigma sqrt(uv) must not be negative: raise a, at a cost of shift^2
    shift = np.maximum(-2.0 * s * np.sqrt(best_u * best_v) - a, 0.0)
    return vw + f.reshape(-1)[pick].reshape(m.shape) + shift * shift, a + shift, best_u, best_v


def quasi_explicit(k: ArrayLike, w: ArrayLike, weight: ArrayLike, *, zooms: int = 1) -> FloatArray:
    """Quasi-explicit SVI fit of several slices at once (one per row), in total-variance space.

    Minimises ``sum_i weight_i (w_model(k_i) - w_i)^2`` per row over the raw SVI parameters under
    ``b (1 + |rho|) <= 2``, ``|rho| <= 1`` and a non-negative minimum total variance: exactly in ``(a, b, rho)``
    for each ``(m, sigma)`` of a grid (see the module docstring): a coarse 13 x 9 search over the quotes'
    range, then 5 x 5 grids one coarse step wide around each of the three best coarse points, then
    ``zooms - 1`` finer 5 x 5 grids around the best point so far.

    Parameters
    ----------
    k
        Log-moneyness ``ln(K/F)``, shape ``(S, N)`` (one row per expiry; pad short rows with any finite value).
    w
        Market total implied variance ``sigma**2 t``, shape ``(S, N)``.
    weight
        Non-negative weights, shape ``(S, N)``; 0 marks padding. ``1/sigma**2`` makes the fit close to an
        unweighted fit in vol space (a vol error is ``dw / (2 sigma t)``).
    zooms
        Number of zoom stages after the coarse grid (0: the coarse grid alone).

    Returns
    -------
    numpy.ndarray
        ``(S, 5)`` raw SVI parameters ``(a, b, rho, m, sigma)``, inside the bounds of :class:`SVI`.
    """
    k = np.atleast_2d(np.asarray(k, dtype=float))
    w = np.atleast_2d(np.asarray(w, dtype=float))
    weight = np.atleast_2d(np.asarray(weight, dtype=float))
    valid = weight > 0.0
    total = weight.sum(axis=1, keepdims=True)
    wn = np.where(valid, weight, 0.0) / np.where(total > 0.0, total, 1.0)
    k = np.where(valid, k, 0.0)
    w = np.where(valid, w, 0.0)
    weights = np.stack((wn, wn * k, wn * w), axis=-1)
    # weighted moments E[x y] of x, y in (1, k, w), one (3, 3) matrix per expiry
    moments = weights.transpose(0, 2, 1) @ np.stack((np.ones_like(k), k, w), axis=-1)
    ek, ew = moments[:, 0, 1:2], moments[:, 0, 2:3]
    stats = (ek, moments[:, 1, 1:2] - ek * ek, ew, moments[:, 2, 2:3] - ew * ew, moments[:, 1, 2:3] - ek * ew)
    kmin = np.where(valid, k, np.inf).min(axis=1)
    kmax = np.where(valid, k, -np.inf).max(axis=1)
    kmin = np.where(np.isfinite(kmin), kmin, -0.1)
    width = np.maximum(np.where(np.isfinite(kmax), kmax, 0.1) - kmin, MIN_WIDTH)[:, None]
    rows = np.arange(k.shape[0])[:, None]
    m_lo, m_hi = kmin[:, None] - M_REACH * width, kmin[:, None] + (1.0 + M_REACH) * width
    s_lo, s_hi = np.maximum(SIGMA_SPAN[0] * width, SIGMA_MIN), SIGMA_SPAN[1] * width

    def inside(m: FloatArray, s: FloatArray) -> tuple[FloatArray, FloatArray]:
        return np.minimum(np.maximum(m, m_lo), m_hi), np.minimum(np.maximum(s, s_lo), s_hi)

    m = kmin[:, None] + width * _COARSE_M
    s = width * _COARSE_S
    step_m, step_s = width * _COARSE_STEP_M, _COARSE_STEP_S  # (S, 1) and scalar
    for zoom in range(zooms + 1):
        if zoom:
            # first zoom: around each of the best _CANDIDATES coarse points, one coarse step either side (the
            # valleys of the SVI objective are long and narrow: the best coarse point can sit in the wrong one);
            # then around the best point, _ZOOM_SHRINK times finer each time
            if zoom > 1:
                step_m, step_s = step_m / _ZOOM_SHRINK, step_s / _ZOOM_SHRINK
            m, s = inside((m_best[:, :, None] + step_m[:, :, None] * _ZOOM_M).reshape(k.shape[0], -1),
                          (s_best[:, :, None] * np.exp(step_s * _ZOOM_S)).reshape(k.shape[0], -1))
        f, a, u, v = _box_fit(stats, k, weights, m, s)
        if zoom == 0 and zooms:
            j = np.argpartition(f, _CANDIDATES - 1, axis=1)[:, :_CANDIDATES]
        else:
            j = np.argmin(f, axis=1)[:, None]
        m_best, s_best = m[rows, j], s[rows, j]
    a_best, u_best, v_best = (x[rows, j][:, 0] for x in (a, u, v))
    m_best, s_best = m_best[:, 0], s_best[:, 0]
    b = u_best + v_best
    rho = (u_best - v_best) / np.where(b > 0.0, b, 1.0)
    theta = np.stack((a_best, b, rho, m_best, s_best), axis=1)
    return np.clip(theta, _LOWER, _UPPER)


@dataclass(frozen=True)
class SVI:
    """Raw SVI per expiry (Gatheral 2004): parameters ``a, b, rho, m, sigma`` of the total variance smile.

    Attributes
    ----------
    m_range, sigma_range
        Bounds of the vertex ``m`` and of ``sigma`` (log-moneyness); None: the wide defaults. :meth:`for_quotes`
        sets them from the quotes (see :meth:`expiry_bounds`): without them SVI's least-squares optimum on
        some real slices lies at infinity (a parabola with its vertex far outside the quotes, ``sigma`` and
        ``m`` drifting for ever while the error falls by a hair), and no optimizer converges.
    """

    m_range: tuple[float, float] | None = None
    sigma_range: tuple[float, float] | None = None
    name: ClassVar[str] = "svi"
    label: ClassVar[str] = "SVI (raw)"
    kind: ClassVar[Literal["slice", "surface"]] = "slice"
    output: ClassVar[Literal["vol", "price"]] = "vol"

    def __post_init__(self) -> None:
        for field_name in ("m_range", "sigma_range"):
            value = getattr(self, field_name)
            if value is None:
                continue
            lo, hi = (float(x) for x in value)  # JSON gives lists
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise ValueError(f"SVI {field_name} must be two finite increasing numbers, got {value}")
            object.__setattr__(self, field_name, (lo, hi))
        if self.sigma_range is not None and self.sigma_range[0] <= 0.0:
            raise ValueError(f"SVI sigma_range must be positive, got {self.sigma_range}")

    @property
    def params(self) -> tuple[ParamSpec, ...]:
        """``a, b, rho, m, sigma`` (see the module docstring)."""
        a, b, rho, m, sigma = _PARAMS
        if self.m_range is not None:
            lo, hi = self.m_range
            m = replace(m, lower=lo, upper=hi, default=min(max(m.default, lo), hi), de_lower=None, de_upper=None)
        if self.sigma_range is not None:
            lo, hi = self.sigma_range
            sigma = replace(sigma, lower=lo, upper=hi, default=min(max(sigma.default, lo), hi), de_lower=None,
                            de_upper=None)
        return (a, b, rho, m, sigma)

    def expiry_bounds(self, plan: SlicePlan) -> tuple[FloatArray, FloatArray]:
        """Lower and upper bounds of each expiry's parameters, each ``(m, 5)``, from its quotes' log-moneyness.

        The vertex ``m`` stays within one width of the quotes' range of ``k`` (``[k_min - width, k_max +
        width]``) and ``sigma`` within ``[width/100, 2 width]`` (``width = k_max - k_min``, at least
        ``MIN_WIDTH``), intersected with :attr:`params`. The quasi-explicit guess searches the same region.
        """
        n = plan.n_expiries
        params = self.params
        lo = np.array([p.lower for p in params])
        hi = np.array([p.upper for p in params])
        lower = np.empty((n, 5))
        upper = np.empty((n, 5))
        lower[:] = lo
        upper[:] = hi
        kk, mask = pad_by_expiry(plan.expiry_index, n, plan.k)  # padding repeats a quote of the expiry
        kmin, kmax = kk.min(axis=1), kk.max(axis=1)
        width = np.maximum(kmax - kmin, MIN_WIDTH)
        lower[:, 3] = np.maximum(lo[3], kmin - M_REACH * width)
        upper[:, 3] = np.minimum(hi[3], kmax + M_REACH * width)
        lower[:, 4] = np.maximum(lo[4], SIGMA_SPAN[0] * width)
        upper[:, 4] = np.minimum(hi[4], SIGMA_SPAN[1] * width)
        unseen = ~mask.any(axis=1)
        if unseen.any():  # an expiry without quotes keeps the bounds of the parameters
            lower[unseen] = lo
            upper[unseen] = hi
        return lower, np.maximum(upper, lower)

    def for_quotes(self, quotes: QuoteArrays) -> "SVI":
        """This model with ``m`` and ``sigma`` bounded by the quotes' range (:meth:`expiry_bounds`; the union over
        expiries when ``quotes`` holds several: fit expiry by expiry with the model of each expiry's quotes)."""
        if quotes.n == 0:
            return self
        lower, upper = self.expiry_bounds(SlicePlan.of(quotes))
        return replace(self, m_range=(float(lower[:, 3].min()), float(upper[:, 3].max())),
                       sigma_range=(float(lower[:, 4].min()), float(upper[:, 4].max())))

    def initial_guesses(self, quotes: QuoteArrays) -> FloatArray:
        """Quasi-explicit fit of every expiry of ``quotes`` at once (uniform weights in vol space), ``(m, 5)``,
        inside :meth:`expiry_bounds`."""
        vol = market_vols(quotes)
        ok = np.isfinite(vol) & (vol > 0.0)
        plan = SlicePlan.of(quotes)
        w = np.where(ok, vol * vol * plan.ttm, 0.0)
        weight = np.where(ok, 1.0 / np.where(ok, vol * vol, 1.0), 0.0)
        kk, ww, weights, mask = pad_by_expiry(plan.expiry_index, plan.n_expiries, plan.k, w, weight)
        theta = quasi_explicit(kk, ww, np.where(mask, weights, 0.0))
        none = ~(weights > 0.0).any(axis=1)
        if none.any():  # an expiry without a usable vol: the parameter defaults
            theta[none] = [p.default for p in self.params]
        lower, upper = self.expiry_bounds(plan)
        return np.minimum(np.maximum(theta, lower), upper)

    def initial_guess(self, quotes: QuoteArrays) -> FloatArray:
        """Quasi-explicit fit of the (single) expiry of ``quotes``, shape ``(5,)``."""
        single_expiry(quotes, self.label)
        return self.initial_guesses(quotes)[0]

    def constraints(self, theta: FloatArray) -> FloatArray:
        """``[a + b sigma sqrt(1 - rho^2), 2 - b (1 + |rho|)]`` (minimum total variance, Lee bound), ``>= 0`` when
        satisfied; shape ``(2,)`` for one slice, ``(m, 2)`` for ``(m, 5)`` parameters."""
        return svi_constraints(theta)

    def prepare(self, quotes: QuoteArrays) -> SlicePlan:
        """The slice plan of ``quotes``."""
        return SlicePlan.of(quotes)

    def values(self, theta: FloatArray, plan: SlicePlan) -> FloatArray:
        """Black vols ``sqrt(w(k)/t)`` (decimals), shape ``(n,)``; ``w`` is floored at ``W_FLOOR``."""
        a, b, rho, m, sigma = plan.columns(theta, 5)
        w = svi_total_variance(plan.k, a, b, rho, m, sigma)
        return np.sqrt(np.maximum(w, W_FLOOR) / plan.ttm)

    def jacobian(self, theta: FloatArray, plan: SlicePlan) -> FloatArray:
        """d vol / d (a, b, rho, m, sigma) in closed form, shape ``(n, 5)``."""
        return self.value_and_jacobian(theta, plan)[1]

    def value_and_jacobian(self, theta: FloatArray, plan: SlicePlan) -> tuple[FloatArray, FloatArray]:
        """:meth:`values` and :meth:`jacobian` in one pass (they share every intermediate)."""
        a, b, rho, m, sigma = plan.columns(theta, 5)
        u = plan.k - m
        r = np.sqrt(u * u + sigma * sigma)
        shape = rho * u + r  # d w / d b
        w = np.maximum(a + b * shape, W_FLOOR)
        vol = np.sqrt(w / plan.ttm)
        scale = 0.5 / (vol * plan.ttm)  # d vol / d w = 1 / (2 vol t)
        scale_b = scale * b
        jac = np.empty((plan.k.shape[0], 5))
        jac[:, 0] = scale
        np.multiply(scale, shape, out=jac[:, 1])
        np.multiply(scale_b, u, out=jac[:, 2])
        np.multiply(-scale_b, rho + u / r, out=jac[:, 3])  # (-s) b = -(s b) exactly
        np.divide(scale_b * sigma, r, out=jac[:, 4])
        return vol, jac
