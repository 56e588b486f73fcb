"""The Heston (1993) stochastic volatility model in forward space, priced by the shared Fourier engine.

Dynamics under the ``t``-forward measure of each expiry (the model never sees spot or rates):

    dF / F = sqrt(v) dW,   dv = kappa (theta - v) dt + sigma sqrt(v) dZ,   dW dZ = rho dt,   v(0) = v0.

The characteristic function of ``X = ln(F_t / F_0)`` is written in the "little trap" form of Albrecher, Mayer,
Schoutens and Tistaert (2007), which stays on the principal branch of the complex logarithm for every ``t``:

    xi = kappa - sigma rho i z,   d = sqrt(xi^2 + sigma^2 (z^2 + i z)),   g = (xi - d) / (xi + d),
    B = (xi - d) / sigma^2 * (1 - e^{-d t}) / (1 - g e^{-d t}),
    A = kappa theta / sigma^2 * [(xi - d) t - 2 ln((1 - g e^{-d t}) / (1 - g))],
    ln phi(z) = A + v0 B.

It is evaluated without cancellation for small ``sigma``: ``n = xi - d = -sigma^2 (z^2 + i z) / (xi + d)``,
``Y = (xi + d) - n e^{-dt} = 2d + n (1 - e^{-dt})``, ``B = -(z^2 + i z) (1 - e^{-dt}) / Y`` and the logarithm as
``ln(Y / 2d) = log1p(n (1 - e^{-dt}) / 2d)`` with an accurate complex ``log1p``; ``e^{-dt}`` is flushed to 0
where it would be subnormal (:func:`calibration.pricing.fourier.safe_exp`).

The gradient (in the spirit of Cui, del Baño Rollin and Germano 2017, derived here for the little trap form) is
closed form: every quantity depends on ``(kappa, sigma, rho)`` only through ``xi`` and ``sigma^2``, so two
directional derivatives (along ``xi`` and along ``sigma^2``) give the three, and ``theta``, ``v0`` enter
linearly: ``d ln phi / d v0 = B``, ``d ln phi / d theta = A / theta``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from calibration.models.base import FloatArray, ParamSpec, QuoteArrays
from calibration.pricing.fourier import ComplexArray, FourierModel, Frequencies, atm_smile, safe_exp

HESTON_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("kappa", 1e-3, 50.0, 1.5, "mean-reversion speed of the variance, per year", 0.05, 10.0),
    ParamSpec("theta", 1e-4, 4.0, 0.04, "long-run variance, per year (vol 20 % = 0.04)", 1e-3, 1.5),
    ParamSpec("sigma", 1e-2, 10.0, 0.5, "volatility of the variance, per sqrt(year)", 0.05, 3.0),
    ParamSpec("rho", -0.99, 0.99, -0.5, "correlation of forward and variance shocks", -0.95, 0.95),
    ParamSpec("v0", 1e-4, 4.0, 0.04, "initial variance, per year (vol 20 % = 0.04)", 1e-3, 1.5),
)
"""Heston parameters and bounds: ``kappa`` 0.001 .. 50 per year, variances 1e-4 .. 4 (vols 1 % .. 200 %), vol of
variance 0.01 .. 10, ``|rho| <= 0.99`` (at ``|rho| -> 1`` the law degenerates and its characteristic function stops
decaying: the Fourier cost explodes for no gain in fit)."""


def clog1p(z: ComplexArray) -> ComplexArray:
    """``log(1 + z)`` for complex ``z``, accurate for small ``|z|`` (numpy's complex log1p is not)."""
    re = z.real
    im = z.imag
    out = np.empty_like(z)
    modulus = re + 2.0
    modulus *= re
    modulus += im * im
    np.log1p(modulus, out=modulus)
    modulus *= 0.5
    out.real = modulus
    out.imag = np.arctan2(im, re + 1.0)
    return out


def heston_log_cf(
    kappa: float, theta: float, sigma: float, rho: float, v0: float, freq: Frequencies
) -> tuple[ComplexArray, tuple[Any, ...]]:
    """``ln phi`` of the Heston model at ``freq`` (little trap form) and the state its gradient reuses.

    With ``q = xi + d``, ``n = xi - d = -sigma^2 beta / q`` and ``Y = q - n e^{-dt} = 2d + n (1 - e^{-dt})``:
    ``B = -beta (1 - e^{-dt}) / Y`` and ``ln((1 - g e^{-dt}) / (1 - g)) = ln(Y / 2d) = log1p(n (1 - e^{-dt}) / 2d)``.
    """
    w, beta, t = freq.w, freq.beta, freq.t
    s2 = sigma * sigma
    xi = w * (-sigma * rho)
    xi += kappa
    d = xi * xi
    d += s2 * beta
    np.sqrt(d, out=d)
    q = xi + d
    inv_d = q * d
    np.reciprocal(inv_d, out=inv_d)  # 1 / (q d), then the two reciprocals from it
    inv_q = inv_d * d
    inv_d *= q
    n = beta * inv_q
    n *= -s2  # xi - d without cancellation
    e = d * t
    np.negative(e, out=e)
    e = safe_exp(e)
    om = 1.0 - e
    n_om = n * om
    y = n_om + 2.0 * d
    inv_y = np.reciprocal(y, out=y)
    b = beta * om
    b *= inv_y
    np.negative(b, out=b)
    n_om *= inv_d
    n_om *= 0.5
    log_term = clog1p(n_om)  # ln((1 - g e) / (1 - g))
    bt_q = freq.beta_t * inv_q
    m = log_term * (-2.0 / s2)
    m -= bt_q  # A / (kappa theta)
    logphi = m * (kappa * theta)
    logphi += v0 * b
    return logphi, (xi, d, q, inv_q, n, e, inv_y, inv_d, b, log_term, m, bt_q)


def heston_log_cf_grad(
    kappa: float,
    theta: float,
    sigma: float,
    rho: float,
    v0: float,
    freq: Frequencies,
    state: tuple[Any, ...],
    out: ComplexArray,
) -> None:
    """Write ``d ln phi / d (kappa, theta, sigma, rho, v0)`` into ``out[0:5]``.

    Along ``xi`` (``sigma^2`` fixed): ``d' = xi/d``, ``q' = q/d``, ``n' = -n/d``, ``Y' = (q + n e (1 + t xi))/d``;
    along ``sigma^2`` (``xi`` fixed): ``d' = c = beta/(2d)``, ``Y' = c (1 + e + n t e)``. Then
    ``B' = -(beta (1 - e)' + B Y')/Y``, ``ln(Y/2d)' = Y'/Y - d'/d`` and ``M = -beta t/q - 2 ln(Y/2d)/sigma^2``.
    """
    w, beta, t = freq.w, freq.beta, freq.t
    xi, d, q, inv_q, n, e, inv_y, inv_d, b, log_term, m, bt_q = state
    two_s2 = 2.0 / (sigma * sigma)
    te = t * e
    ne = n * e
    # along xi
    y_x = t * xi
    y_x += 1.0
    y_x *= ne
    y_x += q
    y_x *= inv_d
    om_x = te * xi * inv_d
    b_x = beta * om_x
    b_x += b * y_x
    b_x *= -inv_y
    l_x = y_x * inv_y
    l_x -= xi * inv_d * inv_d
    m_x = bt_q * inv_d
    m_x -= two_s2 * l_x
    # along sigma^2
    c = 0.5 * beta * inv_d
    y_s = n * te
    y_s += e
    y_s += 1.0
    y_s *= c
    b_s = beta * (te * c)
    b_s += b * y_s
    b_s *= -inv_y
    l_s = y_s * inv_y
    l_s -= c * inv_d
    m_s = bt_q * c * inv_q
    m_s -= two_s2 * l_s
    m_s += (two_s2 / (sigma * sigma)) * log_term
    kt = kappa * theta
    p_x = kt * m_x
    p_x += v0 * b_x
    p_s = kt * m_s
    p_s += v0 * b_s
    w_px = w * p_x
    np.multiply(theta, m, out=out[0])
    out[0] += p_x
    np.multiply(kappa, m, out=out[1])
    np.multiply(-rho, w_px, out=out[2])
    out[2] += (2.0 * sigma) * p_s
    np.multiply(-sigma, w_px, out=out[3])
    out[4] = b


#: Time to expiry (years) of the slice whose skew and curvature set ``rho`` and ``sigma`` in the initial guess.
SMILE_TTM = 0.04


def _variance_term_structure(t: FloatArray, variance: FloatArray, kappa: float) -> tuple[float, float]:
    """``(v0, theta)`` of ``variance(t) ~ theta + (v0 - theta) (1 - e^{-kappa t}) / (kappa t)``."""
    x = kappa * t
    f = np.where(x > 1e-8, -np.expm1(-x) / np.maximum(x, 1e-300), 1.0)
    if t.size >= 3 and np.ptp(f) > 0.1:
        v0, theta = np.linalg.lstsq(np.stack([f, 1.0 - f], axis=1), variance, rcond=None)[0]
        if v0 > 0.0 and theta > 0.0:
            return float(v0), float(theta)
    return float(variance[0]), float(variance[-1])


def heston_initial_guess(quotes: QuoteArrays, *, variance_share: float = 1.0, smile_share: float = 1.0) -> FloatArray:
    """Heston parameters from the market smile.

    ``variance_share`` of the ATM variance and ``smile_share`` of the short-dated skew and curvature are
    attributed to the stochastic variance (Bates gives the rest to its jumps).

    ``v0`` and ``theta`` from the at-the-money variances ``atm^2(t) = theta + (v0 - theta) (1 - e^{-x}) / x``,
    ``x = kappa t`` (least squares; the nearest and farthest variances when only one or two expiries, or when
    the fit is not positive); from the slice nearest two weeks, ``rho sigma`` from the at-the-money skew
    (short-expiry Heston: ``d vol / dk = rho sigma / (4 vol)``, damped by ``2 (x - 1 + e^{-x}) / x^2``,
    ``x = kappa t``) and ``sigma^2`` from the curvature ``d2 vol / dk2 = sigma^2 (2 - 5 rho^2) / (48 vol^3)``;
    ``kappa = 1.5``.
    """
    atm, skew, curv = atm_smile(quotes)
    t = quotes.expiry_ttm
    ok = np.isfinite(atm)
    if not ok.any():
        return np.array([s.default for s in HESTON_PARAMS])
    kappa = 1.5
    v0, theta = _variance_term_structure(t[ok], variance_share * atm[ok] ** 2, kappa)
    # the expiry nearest two weeks carries the skew and curvature estimates (short enough for the small-time
    # formulas, long enough to be less noisy than the first days)
    j = np.flatnonzero(ok)[np.argmin(np.abs(np.log(np.maximum(t[ok], 1e-6) / SMILE_TTM)))]
    x = kappa * t[j]
    damp = 2.0 * (x - 1.0 + np.exp(-x)) / (x * x) if x > 1e-6 else 1.0
    vol = atm[j]
    rho_sigma = smile_share * 4.0 * vol * skew[j] / damp
    sigma2 = max((smile_share * 48.0 * vol**3 * max(curv[j], 0.0) + 5.0 * rho_sigma**2) / 2.0, 0.0)
    sigma = float(np.clip(np.sqrt(sigma2), 0.2, 3.0))
    rho = float(np.clip(rho_sigma / sigma, -0.9, 0.9))
    guess = np.array([kappa, theta, sigma, rho, v0])
    lower = np.array([s.lower for s in HESTON_PARAMS])
    upper = np.array([s.upper for s in HESTON_PARAMS])
    return np.clip(guess, lower, upper)


@dataclass(frozen=True)
class Heston(FourierModel):
    """Heston stochastic volatility, parameters ``(kappa, theta, sigma, rho, v0)`` (see :data:`HESTON_PARAMS`).

    Attributes
    ----------
    enforce_feller
        When True, :meth:`constraints` returns the Feller margin ``2 kappa theta - sigma^2`` (must be ``>= 0``);
        otherwise no constraint (the margin is always available from :meth:`feller_margin`).
    """

    enforce_feller: bool = False

    name: ClassVar[str] = "heston"
    label: ClassVar[str] = "Heston"
    params: ClassVar[tuple[ParamSpec, ...]] = HESTON_PARAMS

    def feller_margin(self, theta: FloatArray) -> float:
        """``2 kappa theta - sigma^2`` (per year squared); the variance stays away from 0 when ``>= 0``."""
        kappa, long_var, sigma = (float(x) for x in np.asarray(theta, dtype=float)[:3])
        return 2.0 * kappa * long_var - sigma * sigma

    def constraints(self, theta: FloatArray) -> FloatArray:
        """The Feller margin when ``enforce_feller``, else an empty array."""
        if self.enforce_feller:
            return np.array([self.feller_margin(theta)])
        return np.empty(0)

    def initial_guess(self, quotes: QuoteArrays) -> FloatArray:
        """From the market smile (see :func:`heston_initial_guess`); Feller-feasible when enforced."""
        guess = heston_initial_guess(quotes)
        if self.enforce_feller and self.feller_margin(guess) < 0.0:
            guess[0] = min(1.05 * guess[2] ** 2 / (2.0 * guess[1]), HESTON_PARAMS[0].upper)
        return guess

    def log_cf(self, theta: FloatArray, freq: Frequencies) -> tuple[ComplexArray, Any]:
        """``ln phi`` at ``freq`` and the state reused by the gradient."""
        return heston_log_cf(*(float(x) for x in theta), freq)

    def log_cf_grad(self, theta: FloatArray, freq: Frequencies, state: Any, out: ComplexArray) -> None:
        """``d ln phi / d theta`` into ``out`` (shape ``(5,) + freq.w.shape``)."""
        heston_log_cf_grad(*(float(x) for x in theta), freq, state, out)
