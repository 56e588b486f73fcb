"""SSVI total implied variance (Gatheral & Jacquier 2014), vectorized.

Conventions (see DESIGN.md): log-moneyness ``k = ln(K/F)`` against the forward of the expiry, total implied
variance ``w = sigma**2 * t`` (dimensionless; ``sigma`` a decimal Black vol per sqrt(year), ``t`` in years ACT/365),
``theta = w(0, t)`` the at-the-money total variance of the expiry.

The surface ``w(k, theta) = theta/2 * (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2))`` with the power-law
``phi(theta) = eta / (theta^gamma (1 + theta)^(1 - gamma))`` is free of static arbitrage when ``theta(t)`` is
non-decreasing, ``0 < gamma <= 1/2`` and ``eta (1 + |rho|) <= 2`` (Gatheral & Jacquier 2014, section 4.2).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.float64]


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
