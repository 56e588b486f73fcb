"""Static-arbitrage checks of a fitted surface: butterfly (negative density) and calendar (decreasing variance).

Conventions (see DESIGN.md): log-moneyness ``k = ln(K/F_t)`` against the forward of each expiry, total implied
variance ``w(k, t) = sigma(k, t)^2 t`` (dimensionless), times in years (ACT/365).

Butterfly
    A smile is free of butterfly arbitrage where its risk-neutral density is non-negative, i.e. where Durrleman's
    function ``g(k) = (1 - k w'/(2 w))^2 - w'^2/4 (1/w + 1/4) + w''/2`` is ``>= 0`` (Gatheral & Jacquier 2014,
    lemma 2.2); the density of ``S_T`` at the strike ``K = F e^k`` is
    ``q(K) = g(k) / (K sqrt(2 pi w)) exp(-d2^2/2)`` with ``d2 = -k/sqrt(w) - sqrt(w)/2`` (per unit of strike).
    ``w`` comes from :meth:`FittedSurface.vols` (any model), its ``k``-derivatives from a five-point central
    stencil. A point is reported only when ``g < -(tol + g_error)``, ``g_error`` being an estimate of the
    numerical error of ``g``: finite-difference truncation and noise, seen in the gap between the five-point and
    three-point values of ``g`` (:data:`NOISE_FACTOR`), and, for price-output models whose vols come from an
    implied-vol inversion of Fourier prices, the pricer's resolution (:data:`PRICE_RESOLUTION`) carried through
    the vega. Price-output models (Heston, Merton, Bates) are free of static arbitrage by construction, so for
    them the check can only find pricing errors; it must not report rounding.
Calendar
    At fixed forward-moneyness ``k``, total variance must not decrease with the expiry: each pair of consecutive
    expiries is compared on the grid of the shorter one, and a point is reported when
    ``w_short - w_long > calendar_tol * w_long`` plus, for price-output models, the resolution of both ``w``.

Default grid: per expiry, ``n_k`` points evenly spaced over ``+/- 6`` at-the-money standard deviations
``sqrt(w(0, t))`` (that far out a Black option is worth about 1e-11 of the forward), or the ``k_range`` passed:
the quoted range of each expiry, say. Points where the surface has no vol, or where a price-output model's option
is below its pricer's resolution, are counted in :attr:`ArbitrageReport.n_unchecked`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from calibration.errors import CalibrationError
from calibration.models.base import FloatArray, QuoteArrays
from calibration.result import to_json_value
from calibration.surface import FittedSurface

__all__ = [
    "BUTTERFLY_COLUMNS",
    "CALENDAR_COLUMNS",
    "ArbitrageReport",
    "SmileDerivatives",
    "array_from_json",
    "check_arbitrage",
    "default_k_bounds",
    "durrleman_g",
    "expiry_grid_quotes",
    "smile_density",
    "smile_derivatives",
    "total_variance_resolution",
    "validate_expiries",
]

#: Columns of :attr:`ArbitrageReport.butterfly` (one row per grid point where the density is negative).
BUTTERFLY_COLUMNS: tuple[str, ...] = (
    "expiry_ttm", "forward", "k", "strike", "w", "g", "g_error", "density", "severity",
)
#: Columns of :attr:`ArbitrageReport.calendar` (one row per grid point where total variance decreases).
CALENDAR_COLUMNS: tuple[str, ...] = (
    "ttm_short", "ttm_long", "k", "strike_short", "strike_long", "w_short", "w_long", "severity",
)

#: Default half-width of the checked range, in at-the-money standard deviations ``sqrt(w(0, t))``.
N_SD = 6.0
#: Stencil step as a fraction of the at-the-money standard deviation: vol-output models are evaluated to full
#: precision, so the step only balances truncation against rounding; price-output models carry the noise of
#: their pricer through the implied-vol inversion, which a wider step damps (error ~ noise / step^2).
STEP_FRACTION = {"vol": 2e-3, "price": 5e-2}
#: Error estimate of ``g``, first part: this multiple of the largest five-point/three-point gap ``|g_5 - g_3|``
#: within ``NOISE_WINDOW`` grid points either side. For smooth ``w`` the gap bounds the truncation error of the
#: five-point ``g`` (it is about that of the three-point one), which is all a vol-output model needs. For noisy ``w``
#: (a price-output model) the gap is the fourth difference ``(w_-2 - 4 w_-1 + 6 w_0 - 4 w_1 + w_2) / (24 h^2)``,
#: whose spread is about 4.5 times smaller than that of the noise in the five-point ``g``; the factor and the
#: window make the estimate a few standard deviations wide.
NOISE_FACTOR = {"vol": 1.0, "price": 10.0}
NOISE_WINDOW = 3
#: Price resolution of each kind of model, as a fraction of ``D F``: a price-output model (Fourier pricing)
#: cannot tell prices apart below about this, so its total variance is uncertain by ``2 eps sqrt(w) / n(d1)``
#: (the price error over the vega, ``n`` the standard normal density), which is what remains of an implied vol
#: deep in the wings. Vol-output models are exact to rounding.
PRICE_RESOLUTION = {"vol": 0.0, "price": 1e-13}


def durrleman_g(k: ArrayLike, w: ArrayLike, dw: ArrayLike, d2w: ArrayLike) -> FloatArray:
    """Durrleman's butterfly function of a total-variance smile (Gatheral & Jacquier 2014, eq. 2.1).

    Parameters
    ----------
    k
        Log-moneyness ``ln(K/F)``, dimensionless.
    w, dw, d2w
        Total implied variance ``sigma^2 t`` at ``k`` and its first and second derivatives in ``k``.

    Returns
    -------
    numpy.ndarray
        ``g(k) = (1 - k w'/(2 w))^2 - w'^2/4 (1/w + 1/4) + w''/2`` (dimensionless; ``g = 1`` for a flat smile).
        The density is negative, i.e. butterfly arbitrage, exactly where ``g < 0``.
    """
    k, w, dw, d2w = (np.asarray(x, dtype=float) for x in (k, w, dw, d2w))
    return (1.0 - 0.5 * k * dw / w) ** 2 - 0.25 * dw * dw * (1.0 / w + 0.25) + 0.5 * d2w


def smile_density(k: ArrayLike, w: ArrayLike, g: ArrayLike, strike: ArrayLike) -> FloatArray:
    """Risk-neutral density of ``S_T`` at ``strike`` from the smile: ``g / (K sqrt(2 pi w)) exp(-d2^2/2)``.

    Parameters
    ----------
    k
        Log-moneyness ``ln(K/F)``.
    w
        Total implied variance at ``k``, ``> 0``.
    g
        Durrleman's function at ``k`` (:func:`durrleman_g`).
    strike
        ``K = F e^k``, quote currency.

    Returns
    -------
    numpy.ndarray
        Density per unit of strike (1 / quote currency); equal to ``(1/D) d2C/dK2`` (Breeden-Litzenberger).
    """
    k, w, g, strike = (np.asarray(x, dtype=float) for x in (k, w, g, strike))
    sqrt_w = np.sqrt(w)
    d2 = -k / sqrt_w - 0.5 * sqrt_w
    return g * np.exp(-0.5 * d2 * d2) / (strike * np.sqrt(2.0 * np.pi * w))


# ---------------------------------------------------------------------------------------------------------------
# evaluation of a surface on a grid


def validate_expiries(
    expiry_ttm: ArrayLike, expiry_forward: ArrayLike, expiry_discount: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The expiries as float arrays ``(m,)`` (a single forward or discount factor is used for every expiry);
    raises :class:`CalibrationError` unless times are finite, positive, distinct and ascending, and forwards and
    discount factors finite and positive."""
    t = np.atleast_1d(np.asarray(expiry_ttm, dtype=float))
    F = np.asarray(expiry_forward, dtype=float)
    D = np.asarray(expiry_discount, dtype=float)
    F, D = (np.full(t.shape, float(x)) if x.ndim == 0 else x for x in (F, D))
    if t.ndim != 1 or t.shape != F.shape or t.shape != D.shape:
        raise CalibrationError(
            f"expiry_ttm, expiry_forward and expiry_discount must be 1-D of one length, got shapes "
            f"{t.shape}, {F.shape}, {D.shape}"
        )
    if t.size == 0:
        raise CalibrationError("no expiry to check: the surface needs at least one expiry")
    if not (np.all(np.isfinite(t)) and np.all(t > 0.0)):
        raise CalibrationError(f"times to expiry must be finite and > 0 years, got {t.tolist()}")
    if np.any(np.diff(t) <= 0.0):
        raise CalibrationError(f"times to expiry must be distinct and ascending, got {t.tolist()}")
    if not (np.all(np.isfinite(F)) and np.all(F > 0.0) and np.all(np.isfinite(D)) and np.all(D > 0.0)):
        raise CalibrationError("forwards and discount factors must be finite and > 0")
    return t, F, D


def expiry_grid_quotes(
    expiry_ttm: FloatArray, expiry_forward: FloatArray, expiry_discount: FloatArray, k: FloatArray
) -> QuoteArrays:
    """Grid points as :class:`QuoteArrays`: row ``j`` of ``k`` (shape ``(m, n)``) at expiry ``j``, flattened row by
    row; out-of-the-money side (calls where ``k >= 0``, puts below)."""
    m, n = k.shape
    F = np.repeat(expiry_forward, n)
    kk = k.ravel()
    return QuoteArrays.from_arrays(
        forward=F,
        strike=F * np.exp(kk),
        ttm=np.repeat(expiry_ttm, n),
        discount=np.repeat(expiry_discount, n),
        is_call=kk >= 0.0,
    )


def _total_variance(
    surface: FittedSurface, t: FloatArray, F: FloatArray, D: FloatArray, k: FloatArray
) -> FloatArray:
    """``w = vol^2 t`` of ``surface`` at the ``(m, n)`` grid ``k`` (row ``j`` at expiry ``j``)."""
    vol = surface.vols(expiry_grid_quotes(t, F, D, k)).reshape(k.shape)
    return vol * vol * t[:, None]


def default_k_bounds(
    surface: FittedSurface,
    expiry_ttm: ArrayLike,
    expiry_forward: ArrayLike,
    expiry_discount: ArrayLike,
    *,
    k_range: tuple[ArrayLike, ArrayLike] | None = None,
    n_sd: float = N_SD,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-expiry grid bounds and at-the-money standard deviations.

    Parameters
    ----------
    surface
        The fitted surface.
    expiry_ttm, expiry_forward, expiry_discount
        Expiries (years, ascending), forwards (quote currency) and discount factors, shape ``(m,)``.
    k_range
        ``(k_min, k_max)`` in log-moneyness: two numbers for every expiry, or two ``(m,)`` arrays (one range per
        expiry); default ``+/- n_sd`` standard deviations.
    n_sd
        Half-width of the default range, in at-the-money standard deviations.

    Returns
    -------
    tuple of numpy.ndarray
        ``k_lo``, ``k_hi`` and ``sd = sqrt(w(0, t))``, each ``(m,)``.

    Raises
    ------
    CalibrationError
        Bad expiries, a bad ``k_range``, or a surface without an at-the-money vol at some expiry.
    """
    t, F, D = validate_expiries(expiry_ttm, expiry_forward, expiry_discount)
    w_atm = _total_variance(surface, t, F, D, np.zeros((t.size, 1)))[:, 0]
    if not np.all(np.isfinite(w_atm) & (w_atm > 0.0)):
        bad = t[~(np.isfinite(w_atm) & (w_atm > 0.0))]
        raise CalibrationError(f"the surface has no at-the-money vol at expiries {bad.tolist()} (years)")
    sd = np.sqrt(w_atm)
    if k_range is None:
        return -n_sd * sd, n_sd * sd, sd
    try:
        lo, hi = (np.broadcast_to(np.asarray(x, dtype=float), t.shape).copy() for x in k_range)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"k_range must be (k_min, k_max), numbers or one per expiry: {exc}") from exc
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo < hi)):
        raise CalibrationError(f"k_range must be finite log-moneyness values with low < high, got {k_range}")
    return lo, hi, sd


@dataclass(frozen=True)
class SmileDerivatives:
    """Total variance and its ``k``-derivatives on an ``(m, n)`` grid (row ``j`` at expiry ``j``).

    Attributes
    ----------
    w, dw, d2w
        ``w = sigma^2 t`` (dimensionless), ``dw/dk`` and ``d2w/dk2``.
    g
        Durrleman's function from the five-point derivatives.
    g_error
        Numerical error estimate of ``g``: the larger of :data:`NOISE_FACTOR` times the largest gap ``|g_5 - g_3|``
        between the five-point and three-point values within :data:`NOISE_WINDOW` grid points, and the worst case
        of ``w_error`` through the five-point second derivative (NaN near a point without vol).
    w_error
        Resolution of ``w`` from the model's price resolution (:data:`PRICE_RESOLUTION`; 0 for vol-output models,
        ``inf`` where the option is worth less than the pricer can resolve).
    step
        Stencil step per expiry, in log-moneyness, ``(m,)``.
    """

    w: FloatArray
    dw: FloatArray
    d2w: FloatArray
    g: FloatArray
    g_error: FloatArray
    w_error: FloatArray
    step: FloatArray


def smile_derivatives(
    surface: FittedSurface, expiry_ttm: FloatArray, expiry_forward: FloatArray, expiry_discount: FloatArray,
    k: FloatArray, *, sd: FloatArray,
) -> SmileDerivatives:
    """``w``, ``w'``, ``w''`` and Durrleman's ``g`` of ``surface`` on the grid ``k`` (``(m, n)``).

    One vectorized evaluation of the surface at ``k + {-2, -1, 0, 1, 2} h_j`` gives fourth-order central
    differences; their gap to the second-order ones from the inner three points gives the error estimate (see
    :class:`SmileDerivatives`). The step ``h_j`` is :data:`STEP_FRACTION` of the expiry's at-the-money standard
    deviation ``sd`` (``(m,)``) for the model's kind of output.
    """
    output = surface.model.output
    step = STEP_FRACTION[output] * np.asarray(sd, dtype=float)
    h = step[:, None, None]
    offsets = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    m, n = k.shape
    kk = (k[:, :, None] + offsets * h).reshape(m, n * 5)
    w_all = _total_variance(surface, expiry_ttm, expiry_forward, expiry_discount, kk).reshape(m, n, 5)
    wm2, wm1, w0, wp1, wp2 = np.moveaxis(w_all, -1, 0)
    h = h[..., 0]
    dw5 = (wm2 - 8.0 * wm1 + 8.0 * wp1 - wp2) / (12.0 * h)
    d2w5 = (-wm2 + 16.0 * wm1 - 30.0 * w0 + 16.0 * wp1 - wp2) / (12.0 * h * h)
    dw3 = (wp1 - wm1) / (2.0 * h)
    d2w3 = (wp1 - 2.0 * w0 + wm1) / (h * h)
    w_errors = total_variance_resolution(kk.reshape(m, n, 5), w_all, PRICE_RESOLUTION[output])
    w_error = w_errors[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        g5 = durrleman_g(k, w0, dw5, d2w5)
        g3 = durrleman_g(k, w0, dw3, d2w3)
        gap = NOISE_FACTOR[output] * _rolling_max(np.abs(g5 - g3), NOISE_WINDOW)
        # |d2w5| <= (1 + 16 + 30 + 16 + 1) / 12 * w_error / h^2 when every w is off by w_error; g takes half of it
        resolution = (64.0 / 24.0) * w_errors.max(axis=-1) / (h * h)
    return SmileDerivatives(w=w0, dw=dw5, d2w=d2w5, g=g5, g_error=np.maximum(gap, resolution),
                            w_error=w_error, step=step)


def total_variance_resolution(k: FloatArray, w: FloatArray, eps: float) -> FloatArray:
    """How far ``w`` can be off when prices are known to ``eps * D F``: ``2 eps sqrt(w) / n(d1)``.

    ``d1 = -k / sqrt(w) + sqrt(w) / 2`` and ``n`` the standard normal density; ``inf`` where ``n(d1)`` underflows,
    0 when ``eps`` is 0.
    """
    if eps == 0.0:
        return np.zeros_like(w)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        sqrt_w = np.sqrt(w)
        d1 = -k / sqrt_w + 0.5 * sqrt_w
        return 2.0 * eps * sqrt_w * np.sqrt(2.0 * np.pi) * np.exp(0.5 * d1 * d1)


def _rolling_max(x: FloatArray, half_width: int) -> FloatArray:
    """Maximum over ``+/- half_width`` neighbours along the last axis (NaN propagates)."""
    n = x.shape[-1]
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(half_width, half_width)], mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half_width + 1, axis=-1)
    return windows[..., :n, :].max(axis=-1)


# ---------------------------------------------------------------------------------------------------------------
# the report


@dataclass(frozen=True)
class ArbitrageReport:
    """Where a fitted surface admits static arbitrage.

    Attributes
    ----------
    butterfly
        One row per grid point with a negative density (:data:`BUTTERFLY_COLUMNS`): the expiry (years), its
        forward, ``k``, the strike ``F e^k`` (quote currency), ``w``, Durrleman's ``g`` and its numerical error
        estimate, the density of ``S_T`` at the strike (per unit of strike, negative) and ``severity = -g``.
    calendar
        One row per grid point where total variance decreases between consecutive expiries
        (:data:`CALENDAR_COLUMNS`): both expiries, ``k``, the strike at each expiry, both total variances and
        ``severity = w_short - w_long`` (total variance).
    expiry_ttm
        Expiries checked, years, ``(m,)``.
    k_grid
        Log-moneyness grid checked, ``(m, n_k)``: row ``j`` for expiry ``j`` (evenly spaced); the calendar check
        of expiries ``j`` and ``j+1`` uses row ``j``.
    n_unchecked
        Checks that could not be made: butterfly grid points plus calendar grid points where the surface has no
        vol (NaN), or where a price-output model's option is worth less than its pricer resolves
        (:data:`PRICE_RESOLUTION`).
    tol, calendar_tol
        Tolerances used (``g`` units; relative total variance).
    """

    butterfly: pd.DataFrame
    calendar: pd.DataFrame
    expiry_ttm: FloatArray
    k_grid: FloatArray
    n_unchecked: int = 0
    tol: float = 0.0
    calendar_tol: float = 0.0

    @property
    def n_butterfly(self) -> int:
        """Number of grid points with a negative density."""
        return int(len(self.butterfly))

    @property
    def n_calendar(self) -> int:
        """Number of grid points with decreasing total variance."""
        return int(len(self.calendar))

    @property
    def arbitrage_free(self) -> bool:
        """True when neither check found anything."""
        return self.n_butterfly == 0 and self.n_calendar == 0

    def butterfly_summary(self) -> pd.DataFrame:
        """One row per expiry with a violation: ``expiry_ttm, n_points, k_min, k_max, worst_k, worst_g``."""
        columns = ["expiry_ttm", "n_points", "k_min", "k_max", "worst_k", "worst_g"]
        if self.butterfly.empty:
            return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
        grouped = self.butterfly.groupby("expiry_ttm", sort=True)
        worst = self.butterfly.loc[grouped["g"].idxmin()].set_index("expiry_ttm")
        out = pd.DataFrame({
            "n_points": grouped.size(),
            "k_min": grouped["k"].min(),
            "k_max": grouped["k"].max(),
            "worst_k": worst["k"],
            "worst_g": worst["g"],
        }).reset_index()
        return out[columns]

    def calendar_summary(self) -> pd.DataFrame:
        """One row per expiry pair with a violation: ``ttm_short, ttm_long, n_points, k_min, k_max, worst_k,
        worst_severity``."""
        columns = ["ttm_short", "ttm_long", "n_points", "k_min", "k_max", "worst_k", "worst_severity"]
        if self.calendar.empty:
            return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
        keys = ["ttm_short", "ttm_long"]
        grouped = self.calendar.groupby(keys, sort=True)
        worst = self.calendar.loc[grouped["severity"].idxmax()].set_index(keys)
        out = pd.DataFrame({
            "n_points": grouped.size(),
            "k_min": grouped["k"].min(),
            "k_max": grouped["k"].max(),
            "worst_k": worst["k"],
            "worst_severity": worst["severity"],
        }).reset_index()
        return out[columns]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict: the counts the CLI reports (``butterfly_violations``, ``calendar_violations``:
        numbers of flagged grid points), per-expiry summaries, every flagged point (column -> list) and the grid
        as ``k_lo, k_hi, n_k`` per expiry (NaN becomes ``None``)."""
        return to_json_value({
            "butterfly_violations": self.n_butterfly,
            "calendar_violations": self.n_calendar,
            "butterfly_expiries": self.butterfly_summary().to_dict("records"),
            "calendar_pairs": self.calendar_summary().to_dict("records"),
            "butterfly": {c: self.butterfly[c].to_numpy() for c in BUTTERFLY_COLUMNS},
            "calendar": {c: self.calendar[c].to_numpy() for c in CALENDAR_COLUMNS},
            "expiry_ttm": self.expiry_ttm,
            "k_lo": self.k_grid[:, 0],
            "k_hi": self.k_grid[:, -1],
            "n_k": int(self.k_grid.shape[1]),
            "n_unchecked": self.n_unchecked,
            "tol": self.tol,
            "calendar_tol": self.calendar_tol,
        })

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ArbitrageReport":
        """Inverse of :meth:`to_dict`."""
        def frame(table: dict[str, list[Any]], columns: tuple[str, ...]) -> pd.DataFrame:
            return pd.DataFrame({c: array_from_json(table.get(c, [])).reshape(-1) for c in columns})

        n_k = int(data["n_k"])
        k_lo = array_from_json(data["k_lo"]).reshape(-1)
        k_hi = array_from_json(data["k_hi"]).reshape(-1)
        return cls(
            butterfly=frame(data["butterfly"], BUTTERFLY_COLUMNS),
            calendar=frame(data["calendar"], CALENDAR_COLUMNS),
            expiry_ttm=array_from_json(data["expiry_ttm"]).reshape(-1),
            k_grid=np.linspace(k_lo, k_hi, n_k, axis=1).reshape(k_lo.shape[0], n_k),
            n_unchecked=int(data.get("n_unchecked", 0)),
            tol=float(data.get("tol", 0.0)),
            calendar_tol=float(data.get("calendar_tol", 0.0)),
        )


def array_from_json(values: Any) -> FloatArray:
    """Float array from (nested) JSON lists written by :func:`calibration.result.to_json_value` (``None`` -> NaN)."""
    raw = np.array(values, dtype=object)
    return np.where(np.equal(raw, None), np.nan, raw).astype(float)


def check_arbitrage(
    surface: FittedSurface,
    expiry_ttm: ArrayLike,
    expiry_forward: ArrayLike,
    expiry_discount: ArrayLike,
    *,
    k_range: tuple[ArrayLike, ArrayLike] | None = None,
    n_k: int = 201,
    tol: float = 1e-6,
    calendar_tol: float = 1e-7,
) -> ArbitrageReport:
    """Butterfly and calendar arbitrage of a fitted surface, with where it happens.

    Parameters
    ----------
    surface
        Any fitted model (evaluated through :meth:`FittedSurface.vols`).
    expiry_ttm
        Expiries to check, years (ACT/365), distinct and ascending, shape ``(m,)``.
    expiry_forward
        Forward of each expiry, quote currency, ``(m,)`` (or one number for all).
    expiry_discount
        Discount factor of each expiry, ``(m,)`` or one number (it does not change the density or the checks; it
        only prices the grid points as quotes).
    k_range
        ``(k_min, k_max)`` log-moneyness range: two numbers for every expiry or two ``(m,)`` arrays (e.g. the
        quoted range of each expiry); default ``+/- 6`` at-the-money standard deviations ``sqrt(w(0, t))``.
    n_k
        Grid points per expiry (``>= 3``).
    tol
        Butterfly tolerance on ``g`` (dimensionless), added to the numerical error estimate of ``g``: a point is
        reported when ``g < -(tol + g_error)``.
    calendar_tol
        Calendar tolerance, relative to the longer expiry's total variance: a point is reported when
        ``w_short - w_long > calendar_tol * w_long``.

    Returns
    -------
    ArbitrageReport
        Flagged points (empty frames when the surface is free of static arbitrage on the grid).

    Raises
    ------
    CalibrationError
        Bad expiries or grid settings, or no at-the-money vol at some expiry.
    """
    if int(n_k) < 3:
        raise CalibrationError(f"n_k must be at least 3 grid points, got {n_k}")
    t, F, D = validate_expiries(expiry_ttm, expiry_forward, expiry_discount)
    k_lo, k_hi, sd = default_k_bounds(surface, t, F, D, k_range=k_range)
    k = np.linspace(k_lo, k_hi, int(n_k), axis=1)
    smile = smile_derivatives(surface, t, F, D, k, sd=sd)
    strike = F[:, None] * np.exp(k)

    with np.errstate(invalid="ignore"):
        checked = np.isfinite(smile.g) & np.isfinite(smile.g_error) & (smile.w > 0.0)
        bad = checked & (smile.g < -(tol + smile.g_error))
        density = smile_density(k, smile.w, smile.g, strike)
    rows, cols = np.nonzero(bad)
    butterfly = pd.DataFrame({
        "expiry_ttm": t[rows],
        "forward": F[rows],
        "k": k[rows, cols],
        "strike": strike[rows, cols],
        "w": smile.w[rows, cols],
        "g": smile.g[rows, cols],
        "g_error": smile.g_error[rows, cols],
        "density": density[rows, cols],
        "severity": -smile.g[rows, cols],
    }, columns=list(BUTTERFLY_COLUMNS))

    n_unchecked = int((~checked).sum())
    calendar = pd.DataFrame({c: pd.Series(dtype=float) for c in CALENDAR_COLUMNS})
    if t.size > 1:
        k_short = k[:-1]
        w_short = smile.w[:-1]
        w_long = _total_variance(surface, t[1:], F[1:], D[1:], k_short)
        noise = smile.w_error[:-1] + total_variance_resolution(k_short, w_long, PRICE_RESOLUTION[surface.model.output])
        with np.errstate(invalid="ignore"):
            both = np.isfinite(w_short) & np.isfinite(w_long) & np.isfinite(noise)
            crossed = both & (w_short - w_long > calendar_tol * np.abs(w_long) + noise)
        n_unchecked += int((~both).sum())
        rows, cols = np.nonzero(crossed)
        kk = k_short[rows, cols]
        calendar = pd.DataFrame({
            "ttm_short": t[rows],
            "ttm_long": t[rows + 1],
            "k": kk,
            "strike_short": F[rows] * np.exp(kk),
            "strike_long": F[rows + 1] * np.exp(kk),
            "w_short": w_short[rows, cols],
            "w_long": w_long[rows, cols],
            "severity": w_short[rows, cols] - w_long[rows, cols],
        }, columns=list(CALENDAR_COLUMNS))
    return ArbitrageReport(
        butterfly=butterfly,
        calendar=calendar,
        expiry_ttm=t,
        k_grid=k,
        n_unchecked=n_unchecked,
        tol=float(tol),
        calendar_tol=float(calendar_tol),
    )
