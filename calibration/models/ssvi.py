"""SSVI total implied variance (Gatheral & Jacquier 2014), vectorized.

Conventions (see DESIGN.md): log-moneyness ``k = ln(K/F)`` against the forward of the expiry, total implied
variance ``w = sigma**2 * t`` (dimensionless; ``sigma`` a decimal Black vol per sqrt(year), ``t`` in years ACT/365),
``theta = w(0, t)`` the at-the-money total variance of the expiry.

The surface ``w(k, theta) = theta/2 * (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2))`` with the power-law
``phi(theta) = eta / (theta^gamma (1 + theta)^(1 - gamma))`` is free of static arbitrage when ``theta(t)`` is
non-decreasing, ``0 < gamma <= 1/2`` and ``eta (1 + |rho|) <= 2`` (Gatheral & Jacquier 2014, section 4.2).
:class:`SSVI` is the calibration model, parametrised so that every point inside its bounds meets these
conditions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike

from calibration.errors import CalibrationError
from calibration.models.base import FloatArray, ParamSpec, QuoteArrays
from calibration.models.slices import atm_smile


def ssvi_total_variance(k: ArrayLike, theta: ArrayLike, *, rho: ArrayLike, phi: ArrayLike) -> FloatArray:
    """SSVI total implied variance ``w(k, theta)``, with numpy broadcasting.

    Parameters
    ----------
    k
        Log-moneyness ``ln(K/F)``, dimensionless.
    theta
        At-the-money total implied variance ``sigma_atm**2 * t`` of the expiry, dimensionless, ``> 0``.
    rho
        Skew parameter, dimensionless, ``|rho| < 1`` (the correlation-like slope of the smile).
    phi
        Curvature ``phi(theta)``, per unit of log-moneyness, ``> 0`` (e.g. :func:`power_law_phi`).

    Returns
    -------
    numpy.ndarray
        Total implied variance ``sigma**2 * t`` (dimensionless); ``sqrt(w / t)`` is the Black vol (decimal).
    """
    k = np.asarray(k, dtype=float)
    theta = np.asarray(theta, dtype=float)
    rho = np.asarray(rho, dtype=float)
    phi = np.asarray(phi, dtype=float)
    pk = phi * k
    return 0.5 * theta * (1.0 + rho * pk + np.sqrt((pk + rho) ** 2 + (1.0 - rho * rho)))


def power_law_phi(theta: ArrayLike, *, eta: ArrayLike, gamma: ArrayLike) -> FloatArray:
    """Power-law SSVI curvature ``phi(theta) = eta / (theta^gamma (1 + theta)^(1 - gamma))``.

    Parameters
    ----------
    theta
        At-the-money total implied variance, dimensionless, ``> 0``.
    eta
        Curvature level, dimensionless, ``> 0``; no butterfly arbitrage when ``eta (1 + |rho|) <= 2``.
    gamma
        Decay exponent, dimensionless, ``0 < gamma <= 1/2`` for an arbitrage-free surface.

    Returns
    -------
    numpy.ndarray
        ``phi(theta)``, per unit of log-moneyness.
    """
    theta = np.asarray(theta, dtype=float)
    gamma = np.asarray(gamma, dtype=float)
    return np.asarray(eta, dtype=float) / (theta**gamma * (1.0 + theta) ** (1.0 - gamma))


# ---------------------------------------------------------------------------------------------------------------
# the SSVI model: free of static arbitrage by construction

#: Largest ``|rho|`` allowed.
RHO_MAX = 0.999
#: Two times to expiry closer than this (years) are the same expiry.
_SAME_EXPIRY = 1e-9


def ssvi_to_svi_raw(theta: ArrayLike, *, rho: ArrayLike, phi: ArrayLike) -> FloatArray:
    """The raw SVI parameters ``(a, b, rho, m, sigma)`` of SSVI slices (Gatheral & Jacquier 2014, Lemma 3.3):
    ``a = theta (1 - rho^2)/2``, ``b = theta phi / 2``, ``m = -rho/phi``, ``sigma = sqrt(1 - rho^2)/phi``.

    Returns shape ``(..., 5)`` (broadcast of the inputs).
    """
    theta, rho, phi = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (theta, rho, phi)))
    root = np.sqrt(1.0 - rho * rho)
    return np.stack((0.5 * theta * (1.0 - rho * rho), 0.5 * theta * phi, rho, -rho / phi, root / phi), axis=-1)


@dataclass(frozen=True)
class SSVIPlan:
    """Precomputed for a set of quotes: log-moneyness, times, and the linear map from the ATM-variance
    parameters to each quote's ``theta(t)``.

    Attributes
    ----------
    k
        Log-moneyness ``ln(K/F)`` per quote.
    ttm
        Time to expiry per quote, years.
    theta_map
        ``(n, m)``: ``theta(t_i) = theta_map[i] @ params[:m]`` (linear interpolation in ``t`` of the cumulated
        increments; constant ATM vol before the first and after the last fitted expiry).
    """

    k: FloatArray
    ttm: FloatArray
    theta_map: FloatArray


@dataclass(frozen=True)
class SSVI:
    """SSVI surface (Gatheral & Jacquier 2014) with a power-law ``phi``, free of static arbitrage by construction.

    Parameters, for fitted expiries ``t_1 < ... < t_m`` (the field ``expiry_ttm``):

    - ``theta_1``: ATM total variance ``sigma_atm^2 t`` of the first expiry (dimensionless);
    - ``dtheta_j`` (``j = 2..m``): increase of the ATM total variance from expiry ``j-1`` to ``j``, ``>= 0``, so
      ``theta(t)`` is non-decreasing: no calendar arbitrage;
    - ``rho``: skew, ``|rho| <= 0.999``;
    - ``eta_frac``: ``eta (1 + |rho|) / 2`` in ``(0, 1]``, the curvature level as a share of its no-butterfly
      limit: ``eta = 2 eta_frac / (1 + |rho|)``, so ``eta (1 + |rho|) <= 2`` always holds;
    - ``gamma``: power-law exponent in ``(0, 1/2]``.

    With ``gamma <= 1/2`` and ``eta (1 + |rho|) <= 2`` the power law satisfies ``theta phi (1 + |rho|) < 4`` and
    ``theta phi^2 (1 + |rho|) <= 4`` (Theorem 4.2 of Gatheral & Jacquier): no butterfly arbitrage. Every point
    inside the parameter bounds is therefore an arbitrage-free surface, whatever the optimizer.

    ``theta(t)`` between fitted expiries is interpolated linearly in ``t`` (non-decreasing); before the first and
    after the last expiry the ATM vol is held constant (``theta`` proportional to ``t``).

    Attributes
    ----------
    expiry_ttm
        Times to expiry (years, ascending) of the fitted expiries; the parameter list depends on them. Build
        the model for a snapshot with :meth:`for_quotes`.
    """

    expiry_ttm: tuple[float, ...] = ()
    name: ClassVar[str] = "ssvi"
    label: ClassVar[str] = "SSVI"
    kind: ClassVar[Literal["slice", "surface"]] = "surface"
    output: ClassVar[Literal["vol", "price"]] = "vol"

    def __post_init__(self) -> None:
        object.__setattr__(self, "expiry_ttm", tuple(float(t) for t in self.expiry_ttm))  # JSON gives lists
        ttm = np.asarray(self.expiry_ttm, dtype=float)
        if ttm.size and (not np.all(np.isfinite(ttm)) or ttm[0] <= 0.0 or np.any(np.diff(ttm) <= 0.0)):
            raise ValueError(f"SSVI expiry_ttm must be positive and increasing, got {self.expiry_ttm}")

    def for_quotes(self, quotes: QuoteArrays) -> "SSVI":
        """This model sized for the expiries of ``quotes`` (one ATM-variance parameter per expiry)."""
        return replace(self, expiry_ttm=tuple(float(t) for t in quotes.expiry_ttm))

    @property
    def n_expiries(self) -> int:
        """Number of fitted expiries ``m``."""
        return len(self.expiry_ttm)

    @property
    def params(self) -> tuple[ParamSpec, ...]:
        """``theta_1, dtheta_2 .. dtheta_m, rho, eta_frac, gamma`` (see the class docstring)."""
        levels = [ParamSpec("theta_1", 1e-8, 5.0, 0.01, "ATM total variance of the first expiry (variance x years)",
                            de_lower=1e-5, de_upper=0.5)]
        levels += [
            ParamSpec(f"dtheta_{j}", 0.0, 5.0, 0.01,
                      f"increase of ATM total variance from expiry {j - 1} to {j} (variance x years)",
                      de_upper=0.5)
            for j in range(2, self.n_expiries + 1)
        ]
        return (*levels[: self.n_expiries], *_SHARED)

    def _require_expiries(self) -> None:
        if not self.n_expiries:
            raise CalibrationError(
                "SSVI has one ATM-variance parameter per expiry: build it for the snapshot with "
                "SSVI().for_quotes(quotes) before fitting or evaluating"
            )

    def components(self, theta: FloatArray) -> tuple[FloatArray, float, float, float]:
        """``(theta_j per fitted expiry, rho, eta, gamma)`` from a parameter vector."""
        self._require_expiries()
        theta = np.asarray(theta, dtype=float)
        m = self.n_expiries
        rho, frac, gamma = (float(x) for x in theta[m:])
        return np.cumsum(theta[:m]), rho, 2.0 * frac / (1.0 + abs(rho)), gamma

    def initial_guess(self, quotes: QuoteArrays) -> FloatArray:
        """A guess from the ATM level, skew and curvature of each expiry (see :func:`atm_smile`).

        ``theta_j`` is the ATM total variance (made non-decreasing); the SSVI ATM skew ``dw/dk = theta rho phi``
        and curvature ``d2w/dk2 = theta phi^2 (1 - rho^2)/2`` give ``rho phi_j`` and ``phi_j`` per expiry, then
        ``rho`` (their weighted mean) and ``eta, gamma`` (a log-linear fit of the power law).
        """
        self._require_expiries()
        model_t = np.asarray(self.expiry_ttm)
        level, slope, curve = atm_smile(quotes)
        t = np.asarray(quotes.expiry_ttm, dtype=float)
        theta_q = np.maximum.accumulate(np.maximum(level * level * t, 1e-8))
        # ATM variance at the model's expiries (they are normally the quotes' own)
        theta_m = np.maximum.accumulate(np.interp(model_t, t, theta_q, left=np.nan, right=np.nan))
        theta_m = np.where(np.isfinite(theta_m), theta_m, level[0] ** 2 * model_t if t.size else 0.01)
        theta_m = np.maximum.accumulate(np.maximum(theta_m, 1e-8))
        rho_phi = 2.0 * slope / level  # from d vol/dk = rho phi sigma / 2
        w2 = 2.0 * t * (2.0 * level * curve + slope * slope)  # d2w/dk2 = 2 t (sigma sigma'' + sigma'^2)
        phi2 = 2.0 * w2 / theta_q + rho_phi * rho_phi
        good = np.isfinite(phi2) & (phi2 > 0.0) & np.isfinite(rho_phi)
        counts = np.bincount(quotes.expiry_index, minlength=t.size).astype(float)
        if good.sum() >= 2:
            phi = np.sqrt(phi2[good])
            weight = counts[good]
            rho = float(np.clip(np.average(rho_phi[good] / phi, weights=weight), -0.9, 0.9))
            x = np.log(theta_q[good] / (1.0 + theta_q[good]))
            y = np.log(phi) + np.log1p(theta_q[good])
            design = np.stack((np.ones_like(x), -x), axis=1) * weight[:, None]
            (log_eta, gamma), *_ = np.linalg.lstsq(design, y * weight, rcond=None)
            gamma = float(np.clip(gamma, 0.05, 0.5))
            eta = float(np.exp(np.average(y + gamma * x, weights=weight)))
        else:
            rho, eta, gamma = _SHARED[0].default, 1.0, _SHARED[2].default
        frac = float(np.clip(0.5 * eta * (1.0 + abs(rho)), 0.01, 0.95))
        return np.concatenate((np.diff(theta_m, prepend=0.0), [rho, frac, gamma]))

    def constraints(self, theta: FloatArray) -> FloatArray:
        """None beyond the bounds: the bounds alone guarantee no static arbitrage."""
        return np.empty(0)

    def prepare(self, quotes: QuoteArrays) -> SSVIPlan:
        """Log-moneyness, times and the ``theta(t)`` interpolation map of ``quotes`` (any expiries)."""
        self._require_expiries()
        fitted = np.asarray(self.expiry_ttm, dtype=float)
        t = np.asarray(quotes.ttm, dtype=float)
        m = fitted.size
        weights = np.zeros((t.size, m))  # theta(t) = weights @ cumulated theta
        hi = np.clip(np.searchsorted(fitted, t), 1, max(m - 1, 1))
        lo = hi - 1
        rows = np.arange(t.size)
        if m == 1:
            weights[:, 0] = t / fitted[0]
        else:
            frac = (t - fitted[lo]) / (fitted[hi] - fitted[lo])
            inside = (t >= fitted[0]) & (t <= fitted[-1])
            weights[rows[inside], lo[inside]] = 1.0 - frac[inside]
            weights[rows[inside], hi[inside]] += frac[inside]
            before, after = t < fitted[0], t > fitted[-1]
            weights[rows[before], 0] = t[before] / fitted[0]
            weights[rows[after], m - 1] = t[after] / fitted[-1]
            exact = np.abs(fitted[np.clip(np.searchsorted(fitted, t - _SAME_EXPIRY), 0, m - 1)] - t) <= _SAME_EXPIRY
            if exact.any():  # a quote on a fitted expiry takes that expiry's theta exactly
                j = np.clip(np.searchsorted(fitted, t[exact] - _SAME_EXPIRY), 0, m - 1)
                weights[exact] = 0.0
                weights[rows[exact], j] = 1.0
        # theta_j = sum of the first j increments: fold the cumulative sum into the map
        theta_map = np.cumsum(weights[:, ::-1], axis=1)[:, ::-1]
        return SSVIPlan(k=np.log(quotes.strike / quotes.forward), ttm=t, theta_map=np.ascontiguousarray(theta_map))

    def _pieces(self, theta: FloatArray, plan: SSVIPlan) -> tuple[FloatArray, ...]:
        theta = np.asarray(theta, dtype=float)
        m = self.n_expiries
        rho, frac, gamma = theta[m], theta[m + 1], theta[m + 2]
        eta = 2.0 * frac / (1.0 + abs(rho))
        th = np.maximum(plan.theta_map @ theta[:m], 1e-300)
        phi = power_law_phi(th, eta=eta, gamma=gamma)
        pk = phi * plan.k
        root = np.sqrt((pk + rho) ** 2 + (1.0 - rho * rho))
        w = 0.5 * th * (1.0 + rho * pk + root)
        return th, phi, pk, root, w, rho, frac, gamma

    def values(self, theta: FloatArray, plan: SSVIPlan) -> FloatArray:
        """SSVI Black vols ``sqrt(w(k, theta(t))/t)`` (decimals), shape ``(n,)``."""
        w = self._pieces(theta, plan)[4]
        return np.sqrt(w / plan.ttm)

    def jacobian(self, theta: FloatArray, plan: SSVIPlan) -> FloatArray:
        """d vol / d parameters in closed form, shape ``(n, m + 3)``."""
        return self.value_and_jacobian(theta, plan)[1]

    def value_and_jacobian(self, theta: FloatArray, plan: SSVIPlan) -> tuple[FloatArray, FloatArray]:
        """:meth:`values` and :meth:`jacobian` in one pass (they share every intermediate)."""
        th, phi, pk, root, w, rho, frac, gamma = self._pieces(theta, plan)
        vol = np.sqrt(w / plan.ttm)
        scale = 0.5 / (vol * plan.ttm)  # d vol / d w
        k = plan.k
        dw_dphi = 0.5 * th * k * (rho + (pk + rho) / root)
        dphi_dtheta = phi * (-gamma / th + (gamma - 1.0) / (1.0 + th))
        dw_dtheta = w / th + dw_dphi * dphi_dtheta
        sign = np.sign(rho)
        dw_drho = 0.5 * th * pk * (1.0 + 1.0 / root) + dw_dphi * (-phi * sign / (1.0 + abs(rho)))
        dw_dfrac = dw_dphi * phi / frac
        dw_dgamma = dw_dphi * phi * np.log1p(1.0 / th)
        m = self.n_expiries
        jac = np.empty((k.size, m + 3))
        jac[:, :m] = (scale * dw_dtheta)[:, None] * plan.theta_map
        jac[:, m] = scale * dw_drho
        jac[:, m + 1] = scale * dw_dfrac
        jac[:, m + 2] = scale * dw_dgamma
        return vol, jac


_SHARED = (
    ParamSpec("rho", -RHO_MAX, RHO_MAX, -0.3, "skew of every slice, dimensionless"),
    ParamSpec("eta_frac", 1e-4, 1.0, 0.5,
              "curvature level as a share of its no-butterfly limit: eta = 2 eta_frac / (1 + |rho|), dimensionless"),
    ParamSpec("gamma", 1e-3, 0.5, 0.4, "power-law decay of the curvature with ATM variance, dimensionless"),
)
