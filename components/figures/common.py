"""Shared helpers of the figure functions: expiries, evaluation grids, deltas, float32, axis titles, hover text.

Everything here is pure (data in, arrays or small frames out) and knows nothing of Dash. Conventions: vols are
decimals in the core and percent on screen, residuals in vol points (1 vol point = 0.01), forward deltas
``N(d1)`` (undiscounted, premium-unadjusted) as decimals in the core and percent on screen, expiries in calendar
days (ACT/365) on screen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from numpy.typing import ArrayLike, NDArray
from scipy.special import ndtr

from calibration.errors import CalibrationError
from calibration.models.base import FloatArray, QuoteArrays
from calibration.result import CalibrationResult
from calibration.snapshot import QuoteSnapshot
from components.theme import PALETTE, Theme, template

XAxis = Literal["k", "strike", "delta"]

DAYS_PER_YEAR = 365.0

# -- axis titles (every one with its unit) ----------------------------------------------------------------------
VOL_TITLE = "Implied vol (%)"
MODEL_VOL_TITLE = "Model vol (%)"
K_TITLE = "Log-moneyness ln(K/F)"
STRIKE_TITLE = "Strike (quote currency)"
DELTA_TITLE = "Call delta (%, forward)"
DAYS_TITLE = "Days to expiry (log scale)"
SCENE_DAYS_TITLE = "Expiry (days, √ scale)"
EXPIRY_TITLE = "Expiry (UTC)"
RESIDUAL_VOL_TITLE = "Model − mid (vol points)"
RESIDUAL_PRICE_TITLE = "Model − mid (premium, quote currency)"
COUNT_TITLE = "Quotes (count)"
X_TITLES: dict[str, str] = {"k": K_TITLE, "strike": STRIKE_TITLE, "delta": DELTA_TITLE}
X_AXES: tuple[str, ...] = ("k", "strike", "delta")

#: Expiry ticks of a log-days axis: calendar days and the label a trader reads.
EXPIRY_TICKS: tuple[tuple[float, str], ...] = (
    (1, "1d"), (2, "2d"), (7, "1w"), (14, "2w"), (30, "1m"), (61, "2m"), (91, "3m"), (182, "6m"),
    (273, "9m"), (365, "1y"), (547, "18m"), (730, "2y"), (1095, "3y"), (1825, "5y"), (3650, "10y"),
)

#: Fraction of its width added to each side of the quoted log-moneyness range of an expiry.
K_PAD = 0.05
#: Half-width of the log-moneyness range, in at-the-money standard deviations, where an expiry has no quotes.
K_SD_FALLBACK = 3.0
#: Narrowest and widest half-range of a surface grid, in at-the-money standard deviations (:func:`standardised_k_range`).
Z_LIMITS = (1.5, 5.0)
#: Grid points per expiry of the arbitrage check run for a figure (when the result does not carry its report).
ARBITRAGE_N_K = 61
#: Points per expiry of the dense log-moneyness grid on which model deltas are inverted (linear interpolation).
N_DENSE = 241
#: Call-delta range of a grid drawn against delta (decimal): the 5-delta wings.
DELTA_LIMITS = (0.05, 0.95)


# -- numbers ------------------------------------------------------------------------------------------------------

def f32(values: ArrayLike) -> NDArray[np.float32]:
    """``values`` as a contiguous float32 array (plotly sends it base64-encoded, NaN kept)."""
    return np.ascontiguousarray(np.asarray(values, dtype=np.float32))


def pct(vol: ArrayLike) -> NDArray[np.float32]:
    """Decimal vols (or deltas) as float32 percent."""
    return f32(100.0 * np.asarray(vol, dtype=float))


def call_delta(k: ArrayLike, vol: ArrayLike, ttm: ArrayLike) -> FloatArray:
    """Forward call delta ``N(d1)``, ``d1 = (-k + w/2)/sqrt(w)``, ``w = vol^2 ttm`` (decimal; NaN without a vol).

    Parameters
    ----------
    k
        Log-moneyness ``ln(K/F)``.
    vol
        Implied vol, decimal.
    ttm
        Time to expiry, years.
    """
    k, vol, ttm = (np.asarray(a, dtype=float) for a in (k, vol, ttm))
    with np.errstate(all="ignore"):
        sd = vol * np.sqrt(ttm)
        d1 = -k / sd + 0.5 * sd
        out = ndtr(d1)
    return np.where(np.isfinite(sd) & (sd > 0.0), out, np.nan)


def option_delta(k: ArrayLike, vol: ArrayLike, ttm: ArrayLike, is_call: ArrayLike) -> FloatArray:
    """Forward delta of the option itself: ``N(d1)`` for calls, ``N(d1) - 1`` for puts (decimal)."""
    delta = call_delta(k, vol, ttm)
    return np.where(np.asarray(is_call, dtype=bool), delta, delta - 1.0)


def symmetric_range(values: ArrayLike, *, quantile: float = 0.98, floor: float = 0.1) -> float:
    """Half-width of a colour range centred on zero: the ``quantile`` of ``|values|`` (at least ``floor``), so a
    single outlier does not wash out the colours of the other points."""
    v = np.abs(np.asarray(values, dtype=float))
    v = v[np.isfinite(v)]
    if v.size == 0:
        return floor
    return float(max(np.quantile(v, quantile), floor))


# -- expiries -----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expiries:
    """The expiries a figure shows, ascending.

    Attributes
    ----------
    expiry
        Expiry times (UTC); ``NaT`` where unknown.
    label
        Short labels ("27 Nov 26"; with the time when two expiries share a date).
    ttm
        Times to expiry, years (ACT/365).
    forward
        Forward per expiry, quote currency.
    discount
        Discount factor per expiry.
    """

    expiry: pd.DatetimeIndex
    label: tuple[str, ...]
    ttm: FloatArray
    forward: FloatArray
    discount: FloatArray

    @property
    def m(self) -> int:
        """Number of expiries."""
        return int(self.ttm.shape[0])

    @property
    def days(self) -> FloatArray:
        """Calendar days to expiry."""
        return self.ttm * DAYS_PER_YEAR


def expiry_labels(expiry: pd.DatetimeIndex | pd.Series) -> tuple[str, ...]:
    """"27 Nov 26" per expiry; "27 Nov 26 21:00" where two distinct expiries share a date; "?" where unknown."""
    index = pd.DatetimeIndex(expiry)
    if len(index) == 0:
        return ()
    codes, uniques = pd.factorize(index)
    dates = uniques.strftime("%d %b %y")
    clash = pd.Index(dates).duplicated(keep=False)
    text = np.where(clash, uniques.strftime("%d %b %y %H:%M"), dates).astype(object)
    return tuple(np.where(codes >= 0, text[np.maximum(codes, 0)], "?"))


def _utc(values: Any) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(pd.Series(list(values), dtype=object), utc=True, errors="coerce"))


def fitted_expiries(snapshot: QuoteSnapshot, result: CalibrationResult | None) -> Expiries:
    """The expiries of a fit (the result's rows), or of the snapshot's fit quotes when there is no result.

    Discount factors come from ``snapshot.forwards`` (matched by expiry, else 1).
    """
    fwd = snapshot.forwards
    if result is not None and len(result.expiry_ttm):
        expiry = _utc(result.expiries)
        ttm = np.asarray(result.expiry_ttm, dtype=float)
        forward = np.asarray(result.expiry_forward, dtype=float)
    else:
        present = set(snapshot.fit_quotes["expiry"].unique())
        rows = fwd.loc[fwd["expiry"].isin(present)].sort_values("ttm")
        expiry = pd.DatetimeIndex(rows["expiry"])
        ttm = rows["ttm"].to_numpy(dtype=float)
        forward = rows["forward"].to_numpy(dtype=float)
    by_expiry = pd.Series(fwd["discount"].to_numpy(dtype=float), index=pd.DatetimeIndex(fwd["expiry"]))
    by_expiry = by_expiry[~by_expiry.index.duplicated()]
    discount = by_expiry.reindex(expiry).to_numpy(dtype=float)
    discount = np.where(np.isfinite(discount), discount, 1.0)
    if not np.all(np.isfinite(forward)):  # result without forwards (surface models fitted from arrays)
        fallback = pd.Series(fwd["forward"].to_numpy(dtype=float), index=pd.DatetimeIndex(fwd["expiry"]))
        fallback = fallback[~fallback.index.duplicated()].reindex(expiry).to_numpy(dtype=float)
        forward = np.where(np.isfinite(forward), forward, fallback)
    return Expiries(expiry=expiry, label=expiry_labels(expiry), ttm=ttm, forward=forward, discount=discount)


# -- quotes -------------------------------------------------------------------------------------------------------

def _iso(expiry: pd.Series) -> pd.Series:
    return pd.to_datetime(expiry, utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def quote_frame(snapshot: QuoteSnapshot, result: CalibrationResult | None) -> pd.DataFrame:
    """Every quote of the snapshot with what the figures show about it.

    Returns
    -------
    pandas.DataFrame
        ``snapshot.quotes`` plus ``label`` (expiry label), ``days`` (calendar days to expiry), ``fitted`` (the
        quote is in the result's residual table), ``model_vol`` (decimal), ``residual_vol_points``,
        ``residual_price`` (quote currency), ``inside_spread`` (bool or None), ``vol`` (the vol to plot: mid,
        else ask, else bid; decimal) and ``delta`` (the option's own forward delta at that vol, decimal).
    """
    q = snapshot.quotes.copy()
    q["label"] = list(expiry_labels(q["expiry"]))
    q["days"] = q["ttm"].to_numpy(dtype=float) * DAYS_PER_YEAR
    q["fitted"] = False
    for column in ("model_vol", "residual_vol_points", "residual_price"):
        q[column] = np.nan
    q["inside_spread"] = pd.Series([None] * len(q), index=q.index, dtype=object)
    if result is not None and result.residuals.get("strike"):
        res = result.residual_frame()
        ok = q.index[q["status"] == "ok"]
        key_q = pd.MultiIndex.from_arrays([_iso(q.loc[ok, "expiry"]), q.loc[ok, "strike"].astype(float),
                                           q.loc[ok, "option_type"].astype(str)])
        key_r = pd.MultiIndex.from_arrays([res["expiry"].astype(str), res["strike"].astype(float),
                                           res["option_type"].astype(str)])
        where = key_r.get_indexer(key_q) if key_r.is_unique else pd.Index(key_r).get_indexer_for(key_q)[: len(ok)]
        hit = where >= 0
        rows = ok[hit]
        src = where[hit]
        q.loc[rows, "fitted"] = True
        for column in ("model_vol", "residual_vol_points", "residual_price"):
            q.loc[rows, column] = res[column].to_numpy(dtype=float)[src]
        q.loc[rows, "inside_spread"] = pd.Series(res["inside_spread"].to_numpy(dtype=object)[src], index=rows)
    vol = q["iv_mid"].to_numpy(dtype=float)
    for side in ("iv_ask", "iv_bid"):
        vol = np.where(np.isfinite(vol), vol, q[side].to_numpy(dtype=float))
    q["vol"] = vol
    q["delta"] = option_delta(q["k"], vol, q["ttm"], (q["option_type"] == "C").to_numpy())
    return q


def quoted_k_range(snapshot: QuoteSnapshot, expiries: Expiries, *, pad: float = K_PAD,
                   atm_vol: ArrayLike | None = None) -> tuple[FloatArray, FloatArray]:
    """Log-moneyness range of each expiry: its fit quotes' range padded by ``pad`` of the width on each side;
    where an expiry has fewer than two quotes, ``+/- 3`` standard deviations ``atm_vol sqrt(t)`` (vol 50% when
    unknown)."""
    fit = snapshot.fit_quotes
    k = fit["k"].to_numpy(dtype=float)
    ttm = fit["ttm"].to_numpy(dtype=float)
    lo = np.full(expiries.m, np.nan)
    hi = np.full(expiries.m, np.nan)
    for j, t in enumerate(expiries.ttm):
        kk = k[np.abs(ttm - t) <= 1e-6]
        kk = kk[np.isfinite(kk)]
        if kk.size >= 2 and kk.max() > kk.min():
            width = kk.max() - kk.min()
            lo[j], hi[j] = kk.min() - pad * width, kk.max() + pad * width
    vol = np.full(expiries.m, 0.5) if atm_vol is None else np.asarray(atm_vol, dtype=float)
    vol = np.where(np.isfinite(vol) & (vol > 0), vol, 0.5)
    sd = K_SD_FALLBACK * vol * np.sqrt(np.maximum(expiries.ttm, 1e-6))
    lo = np.where(np.isfinite(lo), lo, -sd)
    hi = np.where(np.isfinite(hi), hi, sd)
    return lo, hi


def standardised_k_range(snapshot: QuoteSnapshot, expiries: Expiries, atm_vol: ArrayLike, *,
                         limits: tuple[float, float] = Z_LIMITS, quantile: float = 0.75
                         ) -> tuple[FloatArray, FloatArray]:
    """A smooth log-moneyness range for a whole surface: ``k = z atm_vol sqrt(t)`` with one ``z`` range for every
    expiry: the quoted ranges in at-the-money standard deviations, the ``quantile`` of their extremes over the
    expiries (clipped to ``limits``).

    Every expiry then spans about the same deltas, and a 3D surface has straight edges instead of the jagged
    outline of the expiries' own quoted ranges. The range is clipped to the widest quoted range of all expiries.
    """
    vol = np.asarray(atm_vol, dtype=float)
    vol = np.where(np.isfinite(vol) & (vol > 0), vol, np.nan)
    if not np.isfinite(vol).any():
        vol = np.full(expiries.m, 0.5)
    vol = np.where(np.isfinite(vol), vol, np.nanmedian(vol))
    sd = vol * np.sqrt(np.maximum(expiries.ttm, 1e-6))
    lo, hi = quoted_k_range(snapshot, expiries, pad=0.0, atm_vol=vol)
    with np.errstate(all="ignore"):
        z_lo = float(np.clip(np.nanquantile(lo / sd, 1.0 - quantile), -limits[1], -limits[0]))
        z_hi = float(np.clip(np.nanquantile(hi / sd, quantile), limits[0], limits[1]))
    # never beyond the widest quoted range of the snapshot (padded), so a strike axis keeps to quoted strikes
    env_lo, env_hi = quoted_k_range(snapshot, expiries, atm_vol=vol)
    return np.maximum(z_lo * sd, env_lo.min()), np.minimum(z_hi * sd, env_hi.max())


# -- model --------------------------------------------------------------------------------------------------------

def model_vols(result: CalibrationResult | None, forward: ArrayLike, strike: ArrayLike, ttm: ArrayLike,
               discount: ArrayLike = 1.0) -> FloatArray:
    """Model implied vols (decimal) at the broadcast points, shaped like them; all NaN without a usable result
    (no result, NaN parameters, or a model that cannot be evaluated there). Out-of-the-money options are priced
    (calls at ``K >= F``) so that price-output models keep their accuracy in the wings."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (forward, strike, ttm, discount)))
    shape = arrays[0].shape
    nan = np.full(shape, np.nan)
    if result is None or not np.all(np.isfinite(result.param_array)) or arrays[0].size == 0:
        return nan
    F, K, t, D = arrays
    quotes = QuoteArrays.from_arrays(forward=F, strike=K, ttm=t, discount=D, is_call=K >= F)
    try:
        with np.errstate(all="ignore"):
            vols = result.fitted_surface().vols(quotes)
    except (CalibrationError, ValueError, FloatingPointError, ZeroDivisionError, IndexError):
        return nan
    return np.asarray(vols, dtype=float).reshape(shape)


def has_model(result: CalibrationResult | None) -> bool:
    """True when the result has finite parameters to draw a model from (a failed fit still does)."""
    return result is not None and result.param_array.size > 0 and bool(np.all(np.isfinite(result.param_array)))


@dataclass(frozen=True)
class VolGrid:
    """Model vols on a per-expiry grid (rows: expiries, columns: grid points).

    Attributes
    ----------
    expiries
        The expiries of the rows.
    k, strike, delta, vol
        ``(m, n)``: log-moneyness, strike (quote currency), forward call delta (decimal) and model vol (decimal).
    """

    expiries: Expiries
    k: FloatArray
    strike: FloatArray
    delta: FloatArray
    vol: FloatArray

    def x(self, axis: XAxis) -> FloatArray:
        """The grid in display units of ``axis``: k, strike, or call delta in percent."""
        return {"k": self.k, "strike": self.strike, "delta": 100.0 * self.delta}[axis]


def atm_vols(result: CalibrationResult | None, expiries: Expiries) -> FloatArray:
    """Model at-the-money-forward vol (``k = 0``) per expiry, decimal (NaN without a usable result)."""
    return model_vols(result, expiries.forward, expiries.forward, expiries.ttm, expiries.discount)


def vol_grid(snapshot: QuoteSnapshot, result: CalibrationResult | None, *, n: int = 61, axis: XAxis = "k",
             expiries: Expiries | None = None, k_range: tuple[ArrayLike, ArrayLike] | None = None) -> VolGrid:
    """Model vols on ``n`` points per expiry.

    ``axis="k"`` or ``"strike"``: evenly spaced in log-moneyness over ``k_range`` (``(lo, hi)``, each a number
    or one per expiry; default: each expiry's quoted range, :func:`quoted_k_range`). ``axis="delta"``: evenly
    spaced in call delta over :data:`DELTA_LIMITS` (``k_range`` is ignored), so that every expiry spans the same
    deltas and the at-the-money region keeps its resolution.
    """
    if axis not in X_AXES:
        raise ValueError(f"axis must be one of {X_AXES}, got {axis!r}")
    ex = expiries if expiries is not None else fitted_expiries(snapshot, result)
    t = ex.ttm[:, None]
    F = ex.forward[:, None]
    D = ex.discount[:, None]
    if axis == "delta" and has_model(result) and ex.m:
        k = _delta_grid(result, ex, n)
    else:
        lo, hi = k_range if k_range is not None else quoted_k_range(snapshot, ex)
        lo = np.broadcast_to(np.asarray(lo, dtype=float), (ex.m,))
        hi = np.broadcast_to(np.asarray(hi, dtype=float), (ex.m,))
        k = np.linspace(lo, hi, n, axis=1) if ex.m else np.empty((0, n))
    strike = F * np.exp(k)
    vol = model_vols(result, F, strike, t, D)
    return VolGrid(expiries=ex, k=k, strike=strike, delta=call_delta(k, vol, t), vol=vol)


def _dense_deltas(result: CalibrationResult, ex: Expiries) -> tuple[FloatArray, FloatArray]:
    """Model call deltas on a dense log-moneyness grid of +/- 6 at-the-money standard deviations, ``(m, N_DENSE)``."""
    atm = atm_vols(result, ex)
    sd = np.where(np.isfinite(atm) & (atm > 0), atm, 0.5) * np.sqrt(ex.ttm)
    dense_k = np.linspace(-6.0 * sd, 6.0 * sd, N_DENSE, axis=1)
    t, F, D = ex.ttm[:, None], ex.forward[:, None], ex.discount[:, None]
    return dense_k, call_delta(dense_k, model_vols(result, F, F * np.exp(dense_k), t, D), t)


def _monotone_section(k: FloatArray, delta: FloatArray) -> tuple[FloatArray, FloatArray]:
    """The stretch of a smile around the money where delta falls strictly with k, as ``(delta ascending, k)``;
    a smile with butterfly arbitrage can turn back in the wings, beyond which no delta maps to one strike."""
    ok = np.isfinite(delta)
    if ok.sum() < 2:
        return np.empty(0), np.empty(0)
    i0 = int(np.argmin(np.where(ok, np.abs(k), np.inf)))
    lo = i0
    while lo > 0 and ok[lo - 1] and delta[lo - 1] > delta[lo]:
        lo -= 1
    hi = i0
    while hi < k.size - 1 and ok[hi + 1] and delta[hi + 1] < delta[hi]:
        hi += 1
    return delta[lo : hi + 1][::-1], k[lo : hi + 1][::-1]


def model_k_at_delta(result: CalibrationResult | None, expiries: Expiries, deltas: ArrayLike) -> FloatArray:
    """Log-moneyness where the model's forward call delta equals each of ``deltas`` (decimal), per expiry.

    Returns
    -------
    numpy.ndarray
        ``(m, len(deltas))``; NaN where the model has no vol, or the delta is not reached on the stretch of the
        smile around the money where delta falls with strike (within +/- 6 at-the-money standard deviations).
    """
    deltas = np.atleast_1d(np.asarray(deltas, dtype=float))
    out = np.full((expiries.m, deltas.size), np.nan)
    if not has_model(result) or expiries.m == 0:
        return out
    dense_k, dense_delta = _dense_deltas(result, expiries)
    for j in range(expiries.m):
        d, kk = _monotone_section(dense_k[j], dense_delta[j])
        if d.size >= 2:
            out[j] = np.where((deltas >= d[0]) & (deltas <= d[-1]), np.interp(deltas, d, kk), np.nan)
    return out


def _delta_grid(result: CalibrationResult, ex: Expiries, n: int) -> FloatArray:
    """``(m, n)`` log-moneyness points evenly spaced in model call delta over :data:`DELTA_LIMITS`, or the part of
    it the smile reaches (ascending k); +/- 2 at-the-money standard deviations where the model has no delta."""
    dense_k, dense_delta = _dense_deltas(result, ex)
    k = np.empty((ex.m, n))
    for j in range(ex.m):
        d, kk = _monotone_section(dense_k[j], dense_delta[j])
        if d.size >= 2:
            targets = np.linspace(min(d[-1], DELTA_LIMITS[1]), max(d[0], DELTA_LIMITS[0]), n)
            k[j] = np.interp(targets, d, kk)
        else:
            k[j] = np.linspace(dense_k[j, 0], dense_k[j, -1], n) / 3.0
    return k


def arbitrage_points(snapshot: QuoteSnapshot, result: CalibrationResult | None,
                     expiries: Expiries | None = None) -> pd.DataFrame:
    """Where the fitted surface admits static arbitrage, one row per flagged point on the quoted range.

    Uses the report stored in ``result.arbitrage`` when it holds the flagged points (``ArbitrageReport.to_dict``),
    else runs :func:`calibration.arbitrage.check_arbitrage` on the quoted range of each expiry.

    Returns
    -------
    pandas.DataFrame
        Columns ``kind`` ("butterfly" | "calendar"), ``ttm`` (years, the shorter expiry for calendar), ``k``,
        ``strike`` (quote currency), ``severity`` (``-g``, or the decrease of total variance). Empty without a
        usable result or when the check cannot run.
    """
    columns = ["kind", "ttm", "k", "strike", "severity"]
    empty = pd.DataFrame({c: pd.Series(dtype=object if c == "kind" else float) for c in columns})
    if not has_model(result):
        return empty
    try:
        from calibration.arbitrage import ArbitrageReport, check_arbitrage
    except ImportError:  # pragma: no cover - the diagnostics module is part of the package
        return empty
    stored = result.arbitrage if isinstance(result.arbitrage, dict) else {}
    try:
        if "butterfly" in stored and "calendar" in stored and "n_k" in stored:
            report = ArbitrageReport.from_dict(stored)
        else:
            ex = expiries if expiries is not None else fitted_expiries(snapshot, result)
            if ex.m == 0:
                return empty
            report = check_arbitrage(result.fitted_surface(), ex.ttm, ex.forward, ex.discount,
                                     k_range=quoted_k_range(snapshot, ex), n_k=ARBITRAGE_N_K)
    except (CalibrationError, ValueError, KeyError, FloatingPointError):
        return empty
    fly = report.butterfly
    cal = report.calendar
    return pd.concat([
        pd.DataFrame({"kind": "butterfly", "ttm": fly["expiry_ttm"], "k": fly["k"], "strike": fly["strike"],
                      "severity": fly["severity"]}),
        pd.DataFrame({"kind": "calendar", "ttm": cal["ttm_short"], "k": cal["k"], "strike": cal["strike_short"],
                      "severity": cal["severity"]}),
    ], ignore_index=True)[columns] if len(fly) or len(cal) else empty


# -- axes and layout ----------------------------------------------------------------------------------------------

def expiry_ticks(days: ArrayLike) -> tuple[list[float], list[str]]:
    """Tick positions (days) and labels ("1w", "3m", "1y") of a log-days axis covering ``days``."""
    d = np.asarray(days, dtype=float)
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        return [], []
    lo, hi = d.min() / 1.5, d.max() * 1.5
    ticks = [(v, s) for v, s in EXPIRY_TICKS if lo <= v <= hi]
    while len(ticks) > 8:  # thin out on very wide ranges, keeping the longest
        ticks = ticks[::-2][::-1]
    return [float(v) for v, _ in ticks], [s for _, s in ticks]


def sqrt_days(days: ArrayLike) -> NDArray[np.float32]:
    """The expiry coordinate of 3D scenes: ``sqrt(days)``, float32. A square-root axis keeps dailies apart
    without stretching them over half the scene (as a log axis would), and a surface whose moneyness range
    grows like ``sqrt(t)`` gets straight edges."""
    return f32(np.sqrt(np.maximum(np.asarray(days, dtype=float), 0.0)))


def scene_expiry_axis(days: ArrayLike) -> dict[str, Any]:
    """Layout of a 3D scene's expiry axis drawn with :func:`sqrt_days`: title and day ticks ("1w", "3m")."""
    tickvals, ticktext = expiry_ticks(days)
    return dict(title=dict(text=SCENE_DAYS_TITLE), tickvals=[float(np.sqrt(v)) for v in tickvals],
                ticktext=ticktext)


def base_layout(fig: go.Figure, theme: Theme, **layout: Any) -> go.Figure:
    """Apply the theme's template and ``layout`` (keyword layout properties) to ``fig``; returns ``fig``."""
    fig.update_layout(template=template(theme), **layout)
    return fig


def empty_figure(message: str, *, theme: Theme = "dark", height: int | None = None) -> go.Figure:
    """A blank figure with ``message`` in the middle (no data, no fit, failed fit)."""
    c = PALETTE[theme]
    fig = go.Figure()
    base_layout(
        fig, theme,
        xaxis=dict(visible=False), yaxis=dict(visible=False),
        annotations=[dict(text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                          font=dict(size=15, color=c["muted"]))],
        **({"height": height} if height else {}),
    )
    return fig


def fit_title(snapshot: QuoteSnapshot, result: CalibrationResult | None) -> str:
    """One-line title: underlying, snapshot time, model and fit quality (or why there is no fit)."""
    head = f"{snapshot.underlying} · {pd.Timestamp(snapshot.asof).strftime('%Y-%m-%d %H:%M')} UTC"
    if result is None:
        return f"{head} · no fit"
    rmse = result.rmse_vol_points
    quality = f"rmse {rmse:.2f} vol pts" if np.isfinite(rmse) else "no rmse"
    state = "" if result.success else " · NOT CONVERGED"
    return f"{head} · {result.model.upper()} · {quality}{state}"


def failure_note(result: CalibrationResult | None) -> str | None:
    """A short warning to show on a figure when the fit did not converge, else ``None``."""
    if result is None or result.success:
        return None
    message = (result.message or "fit failed").strip()
    return f"Fit did not converge: {message[:120]}"


# -- hover --------------------------------------------------------------------------------------------------------

#: ``customdata`` columns of a quote's hover (:func:`quote_customdata`), in order.
QUOTE_HOVER_FIELDS: tuple[str, ...] = (
    "strike", "days", "delta_pct", "bid_vol_pct", "mid_vol_pct", "ask_vol_pct", "model_vol_pct", "residual_vp",
)

#: Hover of a quote: ``text`` is "expiry label · C|P", ``customdata`` the columns of :data:`QUOTE_HOVER_FIELDS`.
QUOTE_HOVER = (
    "<b>%{text}</b>  K %{customdata[0]:,.6~g}<br>"
    "%{customdata[1]:.1f} days · delta %{customdata[2]:.0f}%<br>"
    "vol bid / mid / ask  %{customdata[3]:.2f} / %{customdata[4]:.2f} / %{customdata[5]:.2f} %<br>"
    "model %{customdata[6]:.2f} % · model − mid %{customdata[7]:+.2f} vol pts"
    "<extra></extra>"
)


def surface_point_array(values: ArrayLike) -> np.ndarray:
    """Per-point hover data (``text``, ``customdata``) of a ``go.Surface`` whose ``z`` has shape ``(m, n)``.

    plotly.js indexes a surface's per-point arrays ``[column][row]`` (``[x index][y index]``), unlike ``z``
    (verified by hovering in Chromium, plotly.js 4): pass them transposed, ``(n, m)`` or ``(n, m, c)``.
    """
    return np.swapaxes(np.asarray(values), 0, 1)


def quote_customdata(frame: pd.DataFrame) -> NDArray[np.float32]:
    """``(n, 8)`` float32 hover data of the quotes of a :func:`quote_frame` (see :data:`QUOTE_HOVER_FIELDS`)."""
    col = lambda name: frame[name].to_numpy(dtype=float)  # noqa: E731
    return f32(np.column_stack([
        col("strike"), col("days"), 100.0 * col("delta"), 100.0 * col("iv_bid"), 100.0 * col("iv_mid"),
        100.0 * col("iv_ask"), 100.0 * col("model_vol"), col("residual_vol_points"),
    ]) if len(frame) else np.empty((0, len(QUOTE_HOVER_FIELDS))))


def quote_text(frame: pd.DataFrame) -> list[str]:
    """Hover title of each quote: "27 Nov 26 · C"."""
    return [f"{label} · {kind}" for label, kind in zip(frame["label"], frame["option_type"])]
