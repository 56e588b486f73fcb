"""SABR per expiry: Hagan et al. (2002) lognormal implied vol with Obloj's (2008) leading term.

Conventions (see DESIGN.md): log-moneyness ``k = ln(K/F)``, Black vol as a decimal, ``t`` in years (ACT/365).

The implied Black vol of SABR (``dF = a F^beta dW``, ``da = nu a dZ``, ``dW dZ = rho dt``) is

``sigma_B(K) = nu ln(F/K) / x(z) * (1 + t [(1-beta)^2 a^2 / (24 (FK)^(1-beta)) + rho beta nu a / (4 (FK)^((1-beta)/2))
+ (2 - 3 rho^2) nu^2 / 24])``

with Obloj's ``z = nu (F^(1-beta) - K^(1-beta)) / (a (1-beta))`` (``nu ln(F/K)/a`` when ``beta = 1``) and
``x(z) = ln((sqrt(1 - 2 rho z + z^2) + z - rho) / (1 - rho))``. Obloj's leading term is the correct small-time
limit; Hagan's original (QuantLib's ``sabrVolatility``) uses ``z = nu/a (FK)^((1-beta)/2) ln(F/K)`` and a
``(FK)^((1-beta)/2) (1 + (1-beta)^2 ln^2/24 + (1-beta)^4 ln^4/1920)`` denominator instead. The two agree at the
money and everywhere for ``beta = 1``; otherwise they agree near the money (to about 1e-5 relative within
``|k| < 0.1``) and part in the wings (by a few vol points three standard deviations out on a two-year expiry).

Parameter ``alpha`` is quoted **forward-normalised**: ``alpha = a F^(beta - 1)``, a vol level close to the ATM vol
(decimal), so bounds, guesses and values compare across expiries and underlyings (the textbook ``a`` is
``alpha * F^(1 - beta)``). SABR is homogeneous of degree one in ``(F, K)`` with ``a`` scaled by ``F^(1-beta)``, so
the vol depends on ``k`` and the normalised ``alpha`` only. Everything is written in ``k`` and evaluated in forms
that stay finite at the money (``K = F``, ``z -> 0``) and for ``nu -> 0`` (no NaN).

The Jacobian is analytic (closed-form derivatives of every factor, with the same cancellation-free forms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike

from calibration.models.base import FloatArray, ParamSpec, QuoteArrays
from calibration.models.slices import SlicePlan, atm_smile, single_expiry

#: Largest ``|rho|`` allowed.
RHO_MAX = 0.999
#: Below this ``|z|`` the ratio ``z / x(z)`` and its derivatives are taken from their third-order series.
_Z_SERIES = 1e-4
#: Below this ``|(1 - beta) k|`` the ratio ``expm1(x)/x`` is taken from its series.
_X_SERIES = 1e-6

_ALPHA = ParamSpec("alpha", 1e-4, 10.0, 0.5,
                   "forward-normalised vol level alpha F^(beta-1) (close to the ATM vol), decimal per sqrt(year)",
                   de_lower=0.01, de_upper=3.0)
_BETA = ParamSpec("beta", 0.0, 1.0, 0.5, "CEV exponent of the forward, dimensionless in [0, 1]")
_RHO = ParamSpec("rho", -RHO_MAX, RHO_MAX, -0.2, "correlation of forward and vol, dimensionless")
_NU = ParamSpec("nu", 0.0, 50.0, 1.0, "vol of vol, per sqrt(year)", de_lower=0.01, de_upper=10.0)


def _expm1_ratio(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``R(x) = expm1(x)/x`` and ``R'(x)``; ``R(0) = 1``, ``R'(0) = 1/2``."""
    small = np.abs(x) < _X_SERIES
    safe = np.where(small, 1.0, x)
    em1 = np.expm1(safe)
    ratio = np.where(small, 1.0 + x * (0.5 + x / 6.0), em1 / safe)
    slope = np.where(small, 0.5 + x * (1.0 / 3.0 + x / 8.0), (em1 + 1.0 - ratio) / safe)
    return ratio, slope


def _z_over_x(z: FloatArray, rho: FloatArray, *, derivatives: bool
              ) -> tuple[FloatArray, FloatArray | None, FloatArray | None]:
    """``Q = z / x(z)`` with ``x(z) = ln((sqrt(1 - 2 rho z + z^2) + z - rho)/(1 - rho))``, and (optionally)
    ``dQ/dz`` and ``dQ/drho``, in cancellation-free forms; a third-order series below ``|z| = 1e-4``.

    ``x`` is odd under ``(z, rho) -> (-z, -rho)`` (the product of the two logarithms' arguments is ``1 - rho^2``),
    so ``Q`` is even and its derivatives odd: everything is evaluated at ``|z|`` and ``sign(z) rho``, where
    ``x = log1p((s - 1 + |z|)/(1 - sign(z) rho))`` has a non-negative argument and no cancellation.
    """
    sign = np.where(z >= 0.0, 1.0, -1.0)
    za = sign * z  # |z|
    ra = sign * rho
    tail = za * (za - 2.0 * ra)  # s^2 - 1
    s = np.sqrt(1.0 + tail)
    s1 = s + 1.0
    gap = tail / s1 + za  # s - 1 + |z| >= 0
    one_minus = 1.0 - ra
    x = np.log1p(gap / one_minus)  # x(|z|, sign(z) rho) >= 0
    small = za < _Z_SERIES
    series = bool(small.any())  # only quotes at (or within 1e-4 of) the money take the series
    safe_x = np.where(small, 1.0, x) if series else x
    q = za / safe_x
    if series:
        c2 = (2.0 - 3.0 * rho * rho) / 12.0
        c3 = rho * (5.0 - 6.0 * rho * rho) / 24.0
        q = np.where(small, 1.0 + z * (-0.5 * rho + z * (c2 + z * c3)), q)
    if not derivatives:
        return q, None, None
    dq_dz = sign * (x - za / s) / (safe_x * safe_x)
    # at (|z|, sign(z) rho): dx/drho = z^2 (s + z - 2 rho - rho (z - 2 rho)/(s + 1))
    #                                  / ((s + 1) s (s + z - rho) (1 - rho)), and s + z - rho = gap + 1 - rho
    bracket = s + za - 2.0 * ra - ra * (za - 2.0 * ra) / s1
    dq_drho = (-sign) * q * q * za * bracket / ((gap + one_minus) * s1 * s * one_minus)
    if series:
        dq_dz = np.where(small, -0.5 * rho + z * (2.0 * c2 + 3.0 * c3 * z), dq_dz)
        dq_drho = np.where(small, z * (-0.5 + z * (-0.5 * rho + z * (5.0 - 18.0 * rho * rho) / 24.0)), dq_drho)
    return q, dq_dz, dq_drho


def _sabr(k: FloatArray, t: FloatArray, alpha: FloatArray, beta: FloatArray | float, rho: FloatArray,
          nu: FloatArray, *, gradient: bool, fit_beta: bool,
          beta_terms: tuple[FloatArray, FloatArray, FloatArray] | None = None) -> tuple[FloatArray, list[FloatArray]]:
    """SABR vol and (optionally) its derivatives in ``alpha, [beta,] rho, nu``.

    ``beta_terms`` optionally holds the beta-only terms ``R((1-beta)k), R'((1-beta)k), exp(-(1-beta)k/2)``,
    precomputed when beta is fixed.
    """
    c = 1.0 - beta
    if beta_terms is None:
        ratio, ratio_slope = _expm1_ratio(c * k)  # (F^c - K^c)/(c F^c) = -k R(ck)
        decay = np.exp(-0.5 * c * k)  # (F/K)^(c/2), the normalised (FK)^(-c/2)
    else:
        ratio, ratio_slope, decay = beta_terms
    z = (nu / alpha) * (-k * ratio)
    ad = alpha * decay
    t24 = t / 24.0
    # correction = 1 + t/24 (c^2 ad^2 + 6 rho beta nu ad + (2 - 3 rho^2) nu^2), ad = alpha (F/K)^(c/2)
    c2ad = (c * c) * ad
    six_rbn = (6.0 * beta) * rho * nu
    curv_nu = (2.0 - 3.0 * rho * rho) * nu
    correction = 1.0 + t24 * ((c2ad + six_rbn) * ad + curv_nu * nu)
    q, dq_dz, dq_drho = _z_over_x(z, rho, derivatives=gradient)
    level = alpha / ratio
    lq = level * q
    vol = lq * correction
    if not gradient:
        return vol, []
    assert dq_dz is not None and dq_drho is not None
    lt = lq * t24
    lc = correction / ratio
    d_alpha = lc * (q - z * dq_dz) + lt * decay * (2.0 * c2ad + six_rbn)
    d_rho = lc * alpha * dq_drho + lt * (6.0 * nu) * (beta * ad - rho * nu)
    d_nu = lt * ((6.0 * beta) * rho * ad + 2.0 * curv_nu) - correction * k * dq_dz
    if not fit_beta:
        return vol, [d_alpha, d_rho, d_nu]
    ratio_beta = -k * ratio_slope  # dR/dbeta
    d_correction = t24 * (ad * ad * c * (c * k - 2.0) + 6.0 * rho * nu * ad * (1.0 + 0.5 * beta * k))
    d_beta = level * (dq_dz * z * ratio_beta / ratio * correction + q * d_correction) - vol * ratio_beta / ratio
    return vol, [d_alpha, d_beta, d_rho, d_nu]


def sabr_vol(k: ArrayLike, t: ArrayLike, alpha: ArrayLike, beta: ArrayLike, rho: ArrayLike,
             nu: ArrayLike) -> FloatArray:
    """SABR lognormal implied vol (Hagan 2002 with Obloj's leading term), with numpy broadcasting.

    Parameters
    ----------
    k
        Log-moneyness ``ln(K/F)``.
    t
        Time to expiry, years.
    alpha
        Forward-normalised vol level ``a F^(beta - 1)``, decimal per sqrt(year).
    beta, rho, nu
        CEV exponent, correlation, vol of vol (per sqrt(year)).

    Returns
    -------
    numpy.ndarray
        Black implied vol, decimal.
    """
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (k, t, alpha, beta, rho, nu)))
    return _sabr(*arrays, gradient=False, fit_beta=False)[0]


def hagan_alpha(atm_vol: ArrayLike, t: ArrayLike, beta: ArrayLike, rho: ArrayLike, nu: ArrayLike) -> FloatArray:
    """Forward-normalised ``alpha`` that reproduces an ATM vol (decimal) for given ``beta, rho, nu``.

    Solves the cubic ``alpha (1 + t (c^2 alpha^2/24 + rho beta nu alpha/4 + (2 - 3 rho^2) nu^2/24)) = atm_vol``
    (``c = 1 - beta``) by Newton's method from ``atm_vol``; the left side is increasing in ``alpha`` where it
    matters, and the iterate is kept positive.
    """
    atm, t, beta, rho, nu = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (atm_vol, t, beta, rho, nu)))
    c = 1.0 - beta
    a3 = t * c * c / 24.0
    a2 = t * rho * beta * nu / 4.0
    a1 = 1.0 + t * (2.0 - 3.0 * rho * rho) * nu * nu / 24.0
    alpha = atm / np.maximum(a1, 0.1)
    floor, tol, three_a3, two_a2 = 0.1 * a1, 1e-15 * atm, 3.0 * a3, 2.0 * a2
    for _ in range(20):
        f = ((a3 * alpha + a2) * alpha + a1) * alpha - atm
        if (np.abs(f) <= tol).all():
            break
        df = (three_a3 * alpha + two_a2) * alpha + a1
        alpha = np.maximum(alpha - f / np.maximum(df, floor), 0.1 * alpha)
    return alpha


@dataclass(frozen=True)
class SabrPlan(SlicePlan):
    """A :class:`SlicePlan` plus, when beta is fixed, ``R((1-beta)k), R'((1-beta)k), exp(-(1-beta)k/2)``."""

    beta_terms: tuple[FloatArray, FloatArray, FloatArray] | None = None


@dataclass(frozen=True)
class SABR:
    """SABR per expiry (Hagan 2002 lognormal with Obloj's correction).

    Attributes
    ----------
    beta
        CEV exponent held fixed (parameters ``alpha, rho, nu``), or None to fit it (``alpha, beta, rho, nu``).
    """

    beta: float | None = 0.5
    name: ClassVar[str] = "sabr"
    label: ClassVar[str] = "SABR"
    kind: ClassVar[Literal["slice", "surface"]] = "slice"
    output: ClassVar[Literal["vol", "price"]] = "vol"

    def __post_init__(self) -> None:
        if self.beta is not None and not 0.0 <= float(self.beta) <= 1.0:
            raise ValueError(f"SABR beta must lie in [0, 1], got {self.beta}")

    @property
    def params(self) -> tuple[ParamSpec, ...]:
        """``alpha, rho, nu`` with ``beta`` fixed, ``alpha, beta, rho, nu`` when it is fitted."""
        return (_ALPHA, _RHO, _NU) if self.beta is not None else (_ALPHA, _BETA, _RHO, _NU)

    def _full(self, columns: FloatArray) -> tuple[FloatArray, FloatArray | float, FloatArray, FloatArray]:
        """``alpha, beta, rho, nu`` from parameter columns (the fixed beta inserted)."""
        if self.beta is None:
            return columns[0], columns[1], columns[2], columns[3]
        return columns[0], float(self.beta), columns[1], columns[2]

    def initial_guesses(self, quotes: QuoteArrays) -> FloatArray:
        """Guess of every expiry from its ATM vol, skew and curvature, shape ``(m, p)``.

        The quadratic ``c0 + c1 k + c2 k^2`` of the smile at the money (:func:`atm_smile`) and Hagan's
        expansion ``sigma(k) ~ alpha (1 + (1 - beta - rho lam)/2 k + ((1-beta)^2 + (2 - 3 rho^2) lam^2)/12 k^2)``
        with ``lam = nu/alpha`` is solved for ``rho`` and ``nu``; ``alpha`` then matches the ATM vol including
        the time correction (:func:`hagan_alpha`). A fitted beta starts at 0.5.
        """
        beta = 0.5 if self.beta is None else float(self.beta)
        m = quotes.expiry_ttm.shape[0]
        level, slope, curve = atm_smile(quotes)
        slope, curve = slope / level, curve / level
        rho_lam = 2.0 * slope + (1.0 - beta)
        lam2 = 0.5 * (12.0 * curve - (1.0 - beta) ** 2 + 3.0 * rho_lam**2)
        lam = np.sqrt(np.maximum(lam2, (rho_lam / 0.9) ** 2 + 1e-4))
        rho = np.clip(rho_lam / lam, -0.9, 0.9)
        nu = np.clip(lam * level, 1e-3, _NU.upper)
        alpha = np.clip(hagan_alpha(level, quotes.expiry_ttm, beta, rho, nu), _ALPHA.lower, _ALPHA.upper)
        if self.beta is None:
            return np.stack((alpha, np.full(m, beta), rho, nu), axis=1)
        return np.stack((alpha, rho, nu), axis=1)

    def initial_guess(self, quotes: QuoteArrays) -> FloatArray:
        """Guess of the (single) expiry of ``quotes`` from its ATM vol, skew and curvature, shape ``(p,)``."""
        single_expiry(quotes, self.label)
        return self.initial_guesses(quotes)[0]

    def constraints(self, theta: FloatArray) -> FloatArray:
        """None beyond the bounds."""
        return np.empty(np.shape(theta)[:-1] + (0,))

    def prepare(self, quotes: QuoteArrays) -> SabrPlan:
        """The slice plan of ``quotes``, with the beta-only terms precomputed when beta is fixed."""
        plan = SlicePlan.of(quotes)
        if self.beta is None:
            return SabrPlan(plan.k, plan.ttm, plan.expiry_index, plan.n_expiries, None)
        ck = (1.0 - float(self.beta)) * plan.k
        ratio, slope = _expm1_ratio(ck)
        return SabrPlan(plan.k, plan.ttm, plan.expiry_index, plan.n_expiries, (ratio, slope, np.exp(-0.5 * ck)))

    def _evaluate(self, theta: FloatArray, plan: SlicePlan, *, gradient: bool) -> tuple[FloatArray, list[FloatArray]]:
        alpha, beta, rho, nu = self._full(plan.columns(theta, len(self.params)))
        terms = plan.beta_terms if isinstance(plan, SabrPlan) and self.beta is not None else None
        return _sabr(plan.k, plan.ttm, alpha, beta, rho, nu, gradient=gradient, fit_beta=self.beta is None,
                     beta_terms=terms)

    def values(self, theta: FloatArray, plan: SlicePlan) -> FloatArray:
        """SABR Black vols (decimals), shape ``(n,)``."""
        return self._evaluate(theta, plan, gradient=False)[0]

    def jacobian(self, theta: FloatArray, plan: SlicePlan) -> FloatArray:
        """d vol / d parameters in closed form, shape ``(n, p)``."""
        return self.value_and_jacobian(theta, plan)[1]

    def value_and_jacobian(self, theta: FloatArray, plan: SlicePlan) -> tuple[FloatArray, FloatArray]:
        """:meth:`values` and :meth:`jacobian` in one pass (they share every intermediate)."""
        vol, grads = self._evaluate(theta, plan, gradient=True)
        return vol, np.stack(grads, axis=1)
