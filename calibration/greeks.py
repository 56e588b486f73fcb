"""Greeks and the risk-neutral density of a fitted surface on a (log-moneyness or strike) x expiry grid.

Conventions (see DESIGN.md and :mod:`calibration.black`): forward space, ``k = ln(K/F_t)``, prices discounted in
the quote currency, vols as decimals, times in years (ACT/365).

Greeks
    Black-76 greeks of the out-of-the-money option at each grid point (a call where ``K >= F``, a put where
    ``K < F``; :attr:`GreeksGrid.is_call` says which), at the fitted surface's implied vol there, **sticky
    strike**: the vol of each strike is held fixed while the forward (delta, gamma, vanna), the vol (vega, vanna,
    volga) or the time (theta) moves. Delta is therefore positive on the call side and negative on the put side.
    Units are those of :class:`calibration.black.BlackGreeks` (delta per unit of forward, vega per 1.00 of vol,
    theta per year with the forward held fixed).
Density
    The risk-neutral density of ``S_T`` at the strike, per unit of strike, ``q(K) = (1/D) d2C/dK2``
    (Breeden-Litzenberger). It is taken analytically from the smile, ``q(K) = g(k) / (K sqrt(2 pi w))
    exp(-d2^2/2)`` with Durrleman's ``g`` (:func:`calibration.arbitrage.durrleman_g`) and the ``k``-derivatives of
    the total variance ``w`` from the same five-point stencil as the arbitrage check. It equals the second strike
    derivative of the fitted call prices (to about 1e-8 relative for vol-output models: tests/calibration/
    test_greeks.py compares it with a 30-digit Breeden-Litzenberger differentiation), avoids the cancellation of
    differencing prices on a strike grid, and is negative exactly where the butterfly check reports arbitrage.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from calibration.arbitrage import (
    array_from_json,
    default_k_bounds,
    smile_density,
    smile_derivatives,
    validate_expiries,
)
from calibration.black import black_greeks, black_price
from calibration.errors import CalibrationError
from calibration.models.base import FloatArray
from calibration.result import to_json_value
from calibration.surface import FittedSurface

__all__ = ["GREEK_NAMES", "GreeksGrid", "greeks_grid"]

#: The greeks of :class:`GreeksGrid`, in display order.
GREEK_NAMES: tuple[str, ...] = ("delta", "gamma", "vega", "theta", "vanna", "volga")

#: Default half-width of the grid, in at-the-money standard deviations ``sqrt(w(0, t))``.
GRID_N_SD = 4.0


@dataclass(frozen=True)
class GreeksGrid:
    """Greeks and density of a fitted surface on a grid: row ``j`` is expiry ``j``, shape ``(m, n)`` per field.

    Attributes
    ----------
    axis
        "k" (each row evenly spaced in log-moneyness) or "strike" (one strike grid shared by every row).
    expiry_ttm, forward, discount
        Per expiry ``(m,)``: years, forward (quote currency), discount factor.
    k
        Log-moneyness ``ln(K/F)`` of each point.
    strike
        Strike, quote currency.
    is_call
        True where the point is a call (``K >= F``), False for a put.
    vol
        The surface's implied vol, decimal (NaN where it has none).
    price
        Black-76 price of the out-of-the-money option at ``vol``, discounted, quote currency.
    delta, gamma, vega, theta, vanna, volga
        Black-76 greeks at ``vol``, sticky strike, units of :class:`calibration.black.BlackGreeks`.
    density
        Risk-neutral density of ``S_T`` at the strike, per unit of strike (1 / quote currency); negative where the
        surface has butterfly arbitrage; NaN where the surface has no vol, or where a price-output model's option
        is worth less than its pricer resolves (deep wings, see :data:`calibration.arbitrage.PRICE_RESOLUTION`).
    """

    axis: str
    expiry_ttm: FloatArray
    forward: FloatArray
    discount: FloatArray
    k: FloatArray
    strike: FloatArray
    is_call: np.ndarray
    vol: FloatArray
    price: FloatArray
    delta: FloatArray
    gamma: FloatArray
    vega: FloatArray
    theta: FloatArray
    vanna: FloatArray
    volga: FloatArray
    density: FloatArray

    @property
    def shape(self) -> tuple[int, int]:
        """``(m, n)``: expiries x grid points."""
        return tuple(self.k.shape)  # type: ignore[return-value]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: ``axis`` and every array as (nested) lists; NaN becomes ``None``."""
        return to_json_value({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GreeksGrid":
        """Inverse of :meth:`to_dict`."""
        values: dict[str, Any] = {"axis": str(data["axis"])}
        for f in fields(cls):
            if f.name == "axis":
                continue
            if f.name == "is_call":
                values[f.name] = np.array(data[f.name], dtype=bool)
            else:
                values[f.name] = array_from_json(data[f.name])
        return cls(**values)


def greeks_grid(
    surface: FittedSurface,
    expiry_ttm: ArrayLike,
    expiry_forward: ArrayLike,
    expiry_discount: ArrayLike,
    *,
    axis: Literal["k", "strike"] = "k",
    k_range: tuple[ArrayLike, ArrayLike] | None = None,
    n: int = 81,
) -> GreeksGrid:
    """Greeks (sticky strike, out-of-the-money side) and risk-neutral density of a fitted surface on a grid.

    Parameters
    ----------
    surface
        Any fitted model (evaluated through :meth:`FittedSurface.vols`).
    expiry_ttm
        Expiries, years (ACT/365), distinct and ascending, ``(m,)``.
    expiry_forward
        Forward of each expiry, quote currency, ``(m,)`` (or one number for all).
    expiry_discount
        Discount factor of each expiry, ``(m,)`` or one number.
    axis
        "k": per expiry, ``n`` points evenly spaced in log-moneyness over ``k_range``; "strike": one grid of ``n``
        strikes evenly spaced from the lowest to the highest strike those ranges reach over all expiries.
    k_range
        ``(k_min, k_max)``: two numbers for every expiry or two ``(m,)`` arrays; default ``+/- 4`` at-the-money
        standard deviations ``sqrt(w(0, t))`` per expiry.
    n
        Grid points per expiry (``>= 2``).

    Returns
    -------
    GreeksGrid
        Fields of shape ``(m, n)`` (see the module docstring for conventions and units).

    Raises
    ------
    CalibrationError
        Bad expiries, axis or grid settings, or no at-the-money vol at some expiry.
    """
    if axis not in ("k", "strike"):
        raise CalibrationError(f"axis must be 'k' or 'strike', got {axis!r}")
    if int(n) < 2:
        raise CalibrationError(f"n must be at least 2 grid points, got {n}")
    t, F, D = validate_expiries(expiry_ttm, expiry_forward, expiry_discount)
    k_lo, k_hi, sd = default_k_bounds(surface, t, F, D, k_range=k_range, n_sd=GRID_N_SD)
    if axis == "k":
        k = np.linspace(k_lo, k_hi, int(n), axis=1)
        strike = F[:, None] * np.exp(k)
    else:
        strikes = np.linspace(np.min(F * np.exp(k_lo)), np.max(F * np.exp(k_hi)), int(n))
        strike = np.broadcast_to(strikes, (t.size, int(n))).copy()
        k = np.log(strike / F[:, None])

    smile = smile_derivatives(surface, t, F, D, k, sd=sd)
    vol = np.sqrt(smile.w / t[:, None])
    is_call = k >= 0.0
    forward, ttm, discount = (np.broadcast_to(x[:, None], k.shape) for x in (F, t, D))
    with np.errstate(invalid="ignore", divide="ignore"):
        greeks = black_greeks(forward, strike, ttm, vol, is_call=is_call, discount=discount)
        price = black_price(forward, strike, ttm, vol, is_call=is_call, discount=discount)
        density = smile_density(k, smile.w, smile.g, strike)
    density = np.where(np.isfinite(smile.g_error), density, np.nan)  # below a pricer's resolution: unknown
    return GreeksGrid(
        axis=axis,
        expiry_ttm=t,
        forward=F,
        discount=D,
        k=k,
        strike=strike,
        is_call=is_call,
        vol=vol,
        price=price,
        density=density,
        **{name: np.asarray(getattr(greeks, name), dtype=float) for name in GREEK_NAMES},
    )

