"""Black-76 prices and greeks in forward space, vectorized.

Conventions (see DESIGN.md): an option on a forward ``F`` with strike ``K``, time to expiry ``t`` in years
(ACT/365), Black volatility ``sigma`` as a decimal (0.55 = 55 %), discount factor ``D`` to expiry.
Price in the quote currency ``V = D * (F N(d1) - K N(d2))`` for a call. Greeks are derivatives of that price:
``delta = dV/dF``, ``gamma = d2V/dF2``, ``vega = dV/dsigma`` per 1.00 of vol, ``theta = -dV/dt`` per year with
``F`` held fixed and ``D = exp(-r t)`` rolling down at its own rate, ``vanna = d2V/dF dsigma``,
``volga = d2V/dsigma2``.

Out-of-the-money prices are computed through the normalised Black function in its scaled-erfc form, so the
deep wings keep full relative precision (no ``F N(d1) - K N(d2)`` cancellation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erfcx, ndtr

_INV_SQRT2 = 1.0 / np.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)

FloatArray = NDArray[np.float64]


def option_sign(is_call: ArrayLike) -> FloatArray:
    """+1.0 for calls, -1.0 for puts (accepts booleans)."""
    return np.where(np.asarray(is_call, dtype=bool), 1.0, -1.0)


def otm_call_kernel(
    x: FloatArray, s: FloatArray, e_pos: FloatArray, e_neg: FloatArray, *, scaled: bool
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Low-level kernel: ``b(x, s)``, ``db/ds``, ``h = x/s`` and ``t = s/2`` for ``x <= 0`` and ``s > 0``.

    Shared by :func:`normalised_otm_call` and the implied-vol solver; most callers want those instead.

    Parameters
    ----------
    x, s
        Log-moneyness ``ln(F/K) <= 0`` and total standard deviation ``s > 0`` (float arrays, dimensionless).
    e_pos, e_neg
        ``exp(x/2)`` and ``exp(-x/2)``, passed in because a solver keeps them while ``s`` moves (used only
        when ``scaled`` is False).
    scaled
        True: ``b = exp(-(h^2 + t^2)/2) / 2 * (erfcx(-(h+t)/sqrt 2) - erfcx(-(h-t)/sqrt 2))``; both terms share
        the Gaussian factor, so in the wings (``h + t`` well below 0) the rounding of ``h +/- t`` is not
        amplified by the difference. Use it while ``h + t`` is below about 1. False: ``b = exp(x/2) N(h+t) -
        exp(-x/2) N(h-t)``, about 1.5x cheaper and as accurate once ``h + t`` is not far below 0.

    Returns
    -------
    tuple of numpy.ndarray
        ``b``, ``b' = exp(-(h^2 + t^2)/2) / sqrt(2 pi)``, ``h``, ``t``.
    """
    h = x / s
    t = 0.5 * s
    gauss = h * h
    gauss += t * t
    gauss *= -0.5
    np.exp(gauss, out=gauss)
    if scaled:
        b = erfcx((h + t) * -_INV_SQRT2)
        b -= erfcx((h - t) * -_INV_SQRT2)
        b *= 0.5 * gauss
    else:
        b = ndtr(h + t)
        b *= e_pos
        b -= e_neg * ndtr(h - t)
    gauss *= _INV_SQRT_2PI
    return b, gauss, h, t


def normalised_otm_call(x: ArrayLike, s: ArrayLike) -> FloatArray:
    """Normalised Black call ``b(x, s) = exp(x/2) N(x/s + s/2) - exp(-x/2) N(x/s - s/2)`` for ``x <= 0``.

    Parameters
    ----------
    x
        Log-moneyness ``ln(F/K)``, dimensionless; must be ``<= 0`` (out of the money call).
    s
        Total standard deviation ``sigma * sqrt(t)``, dimensionless, ``>= 0`` (0 gives 0).

    Returns
    -------
    numpy.ndarray
        ``b``, the call price divided by ``D * sqrt(F K)``. Relative error: a few ulps for ``s`` above about
        0.05, growing like ``eps / s`` below (cancellation of the two terms; the absolute error stays of the
        order of ``eps * db/ds``, i.e. an error of order ``eps`` in ``s``).
    """
    x, s = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(s, dtype=float))
    shape = x.shape
    x, s = x.ravel(), s.ravel()
    b = np.zeros(x.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        pos = s > 0.0
        wing = pos & (x < -0.5 * s * s + s)  # h + t < 1: the scaled form
        for mask, scaled in ((wing, True), (pos & ~wing, False)):
            if mask.any():
                xm = x[mask]
                e_pos = np.exp(0.5 * xm)
                b[mask] = otm_call_kernel(xm, s[mask], e_pos, 1.0 / e_pos, scaled=scaled)[0]
        nan = np.isnan(x) | np.isnan(s)
        b[nan] = np.nan
    return np.maximum(b, 0.0).reshape(shape)


def normalised_black(x: ArrayLike, s: ArrayLike, theta: ArrayLike) -> FloatArray:
    """Normalised Black price ``V / (D sqrt(F K))`` for calls (``theta=+1``) and puts (``theta=-1``).

    Parameters
    ----------
    x
        Log-moneyness ``ln(F/K)``, dimensionless.
    s
        Total standard deviation ``sigma * sqrt(t)``, dimensionless.
    theta
        +1 for a call, -1 for a put.
    """
    y = np.asarray(theta, dtype=float) * np.asarray(x, dtype=float)
    otm = normalised_otm_call(-np.abs(y), s)
    intrinsic = np.where(y > 0.0, 2.0 * np.sinh(0.5 * y), 0.0)
    return otm + intrinsic


def black_price(
    forward: ArrayLike,
    strike: ArrayLike,
    ttm: ArrayLike,
    vol: ArrayLike,
    *,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
) -> FloatArray:
    """Black-76 option price, vectorized with numpy broadcasting.

    Parameters
    ----------
    forward
        Forward price ``F`` of the underlying for the option's expiry (quote currency).
    strike
        Strike ``K`` (quote currency), ``> 0``.
    ttm
        Time to expiry in years (ACT/365).
    vol
        Black volatility, decimal per sqrt(year) (0.55 = 55 %).
    is_call
        True for calls, False for puts.
    discount
        Discount factor ``D`` from expiry to today, dimensionless.

    Returns
    -------
    numpy.ndarray
        Price in the quote currency (``D`` times the undiscounted Black price).
    """
    F = np.asarray(forward, dtype=float)
    K = np.asarray(strike, dtype=float)
    s = np.asarray(vol, dtype=float) * np.sqrt(np.maximum(np.asarray(ttm, dtype=float), 0.0))
    x = np.log(F / K)
    return np.asarray(discount, dtype=float) * np.sqrt(F * K) * normalised_black(x, s, option_sign(is_call))


@dataclass(frozen=True)
class BlackGreeks:
    """Black-76 greeks, each an array shaped like the broadcast inputs.

    Attributes
    ----------
    delta
        dV/dF, quote currency per unit of forward (forward delta times the discount factor).
    gamma
        d2V/dF2, per unit of forward squared.
    vega
        dV/dsigma, quote currency per 1.00 of vol (divide by 100 for per vol point).
    theta
        -dV/dt, quote currency per year, forward held fixed (divide by 365 for per calendar day).
    vanna
        d2V/dF dsigma, per unit of forward per 1.00 of vol.
    volga
        d2V/dsigma2, quote currency per 1.00 of vol squared.
    """

    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray
    vanna: FloatArray
    volga: FloatArray


def black_greeks(
    forward: ArrayLike,
    strike: ArrayLike,
    ttm: ArrayLike,
    vol: ArrayLike,
    *,
    is_call: ArrayLike,
    discount: ArrayLike = 1.0,
) -> BlackGreeks:
    """Black-76 greeks in forward space (units in :class:`BlackGreeks`).

    Parameters are those of :func:`black_price`. The rate used for theta is ``r = -ln(D) / t``.
    """
    F = np.asarray(forward, dtype=float)
    K = np.asarray(strike, dtype=float)
    t = np.asarray(ttm, dtype=float)
    sigma = np.asarray(vol, dtype=float)
    D = np.asarray(discount, dtype=float)
    theta_sign = option_sign(is_call)
    with np.errstate(divide="ignore", invalid="ignore"):
        sqrt_t = np.sqrt(t)
        s = sigma * sqrt_t
        d1 = np.log(F / K) / s + 0.5 * s
        d2 = d1 - s
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
        price = black_price(F, K, t, sigma, is_call=is_call, discount=D)
        rate = np.where(t > 0.0, -np.log(D) / t, 0.0)
        delta = D * theta_sign * ndtr(theta_sign * d1)
        gamma = D * pdf / (F * s)
        vega = D * F * pdf * sqrt_t
        theta = -D * F * pdf * sigma / (2.0 * sqrt_t) + rate * price
        vanna = -D * pdf * d2 / sigma
        volga = vega * d1 * d2 / sigma
    return BlackGreeks(delta=delta, gamma=gamma, vega=vega, theta=theta, vanna=vanna, volga=volga)


def black_vega(x: FloatArray, sqrt_t: FloatArray, df: FloatArray, vol: FloatArray) -> FloatArray:
    """Black vega ``D F n(d1) sqrt(t)`` (quote currency per 1.00 vol) from its vol-independent terms ``x = ln(F/K)``,
    ``sqrt(t)`` (years^0.5) and ``D F`` (quote currency): the vega of :func:`black_greeks`, same
    arithmetic, without the other greeks (calibration objectives need it at every Jacobian)."""
    s = vol * sqrt_t
    d1 = x / s + 0.5 * s
    return df * (_INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)) * sqrt_t
