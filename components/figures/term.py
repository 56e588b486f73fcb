"""The Term-structure view: ATM vol, ATM skew, 25-delta risk reversal and butterfly by expiry, market vs model.

Both market and model are measured the same way on the strikes of the fitted quotes of each expiry (the model's
vols at those strikes in place of the mid vols), so that they differ only where the fit misses the quotes:

- at-the-money vol and skew: a quadratic in log-moneyness fitted by least squares to the mid vols of the quotes
  within one at-the-money standard deviation ``sigma sqrt(t)`` of the forward (at least the five nearest), read at
  ``k = 0``; the same fit to the bid and ask vols gives the error bars of the ATM vol;
- 25-delta vols: the vols interpolated linearly in forward call delta (each quote's delta at its own vol).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from calibration.result import CalibrationResult
from calibration.snapshot import QuoteSnapshot
from components.figures.common import (
    DAYS_TITLE,
    Expiries,
    base_layout,
    call_delta,
    empty_figure,
    expiry_labels,
    expiry_ticks,
    f32,
    failure_note,
    fit_title,
    fitted_expiries,
    has_model,
    model_vols,
    quote_frame,
)
from components.theme import PALETTE, Theme

#: The four panels: key, title (with unit).
PANELS: tuple[tuple[str, str], ...] = (
    ("atm", "ATM vol (%)"),
    ("skew", "ATM skew dσ/dk (vol pts per 0.1 of ln(K/F))"),
    ("rr", "25Δ risk reversal, call − put (vol pts)"),
    ("bf", "25Δ butterfly, wings − ATM (vol pts)"),
)
#: Minimum number of quotes in the local quadratic fit around the money.
MIN_LOCAL = 5
HEIGHT = 640


def _local_quadratic(k: np.ndarray, vol: np.ndarray, half_width: float) -> tuple[float, float]:
    """Value and slope at ``k = 0`` of a quadratic fitted to ``(k, vol)`` within ``half_width`` of 0 (at least the
    :data:`MIN_LOCAL` nearest points); NaN when too few points or they do not straddle the money."""
    ok = np.isfinite(k) & np.isfinite(vol)
    k, vol = k[ok], vol[ok]
    if k.size < 3:
        return np.nan, np.nan
    order = np.argsort(np.abs(k))
    near = np.abs(k) <= half_width
    use = order[: max(int(near.sum()), min(MIN_LOCAL, k.size))]
    kk, vv = k[use], vol[use]
    if kk.min() > 0 or kk.max() < 0 or np.unique(kk).size < 3:
        return np.nan, np.nan
    c2, c1, c0 = np.polyfit(kk, vv, 2)
    return float(c0), float(c1)


def term_measures(quotes: pd.DataFrame, expiries: Expiries, *, vol: str = "iv_mid") -> pd.DataFrame:
    """ATM vol (with bid and ask), ATM skew and 25-delta vols per expiry, measured on the quotes' column ``vol``.

    Parameters
    ----------
    quotes
        Quotes with ``ttm``, ``k``, the vol column, ``iv_bid`` and ``iv_ask`` (decimals), e.g. the fitted rows of
        :func:`components.figures.common.quote_frame`.
    expiries
        The expiries to measure.
    vol
        "iv_mid" for the market, "model_vol" for the model at the same strikes (same estimator, so the two
        differ only where the fit misses the quotes).

    Returns
    -------
    pandas.DataFrame
        One row per expiry: ``atm``, ``atm_bid``, ``atm_ask``, ``skew`` (vol per unit k), ``call25``, ``put25``
        (the vols at forward call deltas 0.25 and 0.75, each quote's delta at its own vol); NaN where the quotes
        do not reach.
    """
    rows = []
    for j in range(expiries.m):
        e = quotes.loc[np.abs(quotes["ttm"].to_numpy(dtype=float) - expiries.ttm[j]) <= 1e-6]
        k = e["k"].to_numpy(dtype=float)
        mid = e[vol].to_numpy(dtype=float)
        ok = np.isfinite(k) & np.isfinite(mid)
        out = dict.fromkeys(("atm", "atm_bid", "atm_ask", "skew", "call25", "put25"), np.nan)
        if ok.any():
            guess = float(mid[ok][np.argmin(np.abs(k[ok]))])
            h = guess * np.sqrt(expiries.ttm[j])
            out["atm"], out["skew"] = _local_quadratic(k, mid, h)
            if vol == "iv_mid":
                out["atm_bid"] = _local_quadratic(k, e["iv_bid"].to_numpy(dtype=float), h)[0]
                out["atm_ask"] = _local_quadratic(k, e["iv_ask"].to_numpy(dtype=float), h)[0]
            d = call_delta(k[ok], mid[ok], expiries.ttm[j])
            order = np.argsort(d)
            d, v = d[order], mid[ok][order]
            if d.size >= 2 and np.all(np.diff(d) > 0):
                for name, target in (("call25", 0.25), ("put25", 0.75)):
                    if d[0] <= target <= d[-1]:
                        out[name] = float(np.interp(target, d, v))
        rows.append(out)
    return pd.DataFrame(rows, columns=["atm", "atm_bid", "atm_ask", "skew", "call25", "put25"])


def _measures(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The plotted values in display units: ATM vol %, skew in vol points per 0.1 k, RR and BF in vol points."""
    atm = frame["atm"].to_numpy(dtype=float)
    call, put = frame["call25"].to_numpy(dtype=float), frame["put25"].to_numpy(dtype=float)
    return {
        "atm": 100.0 * atm,
        "skew": 10.0 * frame["skew"].to_numpy(dtype=float),
        "rr": 100.0 * (call - put),
        "bf": 100.0 * (0.5 * (call + put) - atm),
    }


def _padded_range(values: np.ndarray, pad: float = 0.1) -> list[float] | None:
    """``[lo, hi]`` of the finite values, widened by ``pad`` of the span on each side (``None`` when empty)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    span = max(hi - lo, 0.1)
    return [lo - pad * span, hi + pad * span]


def term_figure(snapshot: QuoteSnapshot, result: CalibrationResult | None, *, theme: Theme = "dark") -> go.Figure:
    """ATM vol, ATM skew, 25-delta risk reversal and 25-delta butterfly by expiry: market (markers, ATM vol with
    its bid-ask) against the model (line), on a log-days axis.

    Parameters
    ----------
    snapshot
        The snapshot.
    result
        The fit, or ``None`` for the market alone.
    theme
        "dark" or "light".
    """
    c = PALETTE[theme]
    quotes = quote_frame(snapshot, result)
    ex = fitted_expiries(snapshot, result)
    if ex.m == 0:
        return empty_figure("No quotes to fit in this snapshot: no term structure", theme=theme, height=HEIGHT)
    fit = quotes.loc[(quotes["status"] == "ok") & np.isfinite(quotes["iv_mid"].to_numpy(dtype=float))].copy()
    fitted = has_model(result)
    mt = term_measures(fit, ex)
    market = _measures(mt)
    if fitted:
        fit["model_vol"] = model_vols(result, fit["forward"], fit["strike"], fit["ttm"], fit["discount"])
    model = _measures(term_measures(fit, ex, vol="model_vol"))
    days = ex.days
    labels = np.asarray(expiry_labels(ex.expiry), dtype=object)

    fig = make_subplots(rows=2, cols=2, subplot_titles=[title for _, title in PANELS], shared_xaxes=True,
                        vertical_spacing=0.14, horizontal_spacing=0.09)
    for i, (key, _title) in enumerate(PANELS):
        row, col = i // 2 + 1, i % 2 + 1
        first = i == 0
        error = None
        if key == "atm":
            error = dict(type="data", symmetric=False, array=f32(100.0 * mt["atm_ask"] - market["atm"]),
                         arrayminus=f32(market["atm"] - 100.0 * mt["atm_bid"]), color=c["bid_ask"], thickness=1.2,
                         width=3)
        fig.add_trace(go.Scatter(
            x=f32(days), y=f32(market[key]), mode="markers", name="Market (quotes)", legendgroup="market",
            showlegend=first, marker=dict(color=c["market"], size=7, symbol="circle-open", line=dict(width=1.6)),
            error_y=error, text=labels,
            hovertemplate="<b>%{text}</b> · %{x:.1f} d<br>market %{y:.2f}<extra></extra>",
        ), row=row, col=col)
        if fitted:
            fig.add_trace(go.Scatter(
                x=f32(days), y=f32(model[key]), mode="lines+markers", name=f"{result.model.upper()} model",
                legendgroup="model", showlegend=first, line=dict(color=c["model"], width=2),
                marker=dict(color=c["model"], size=4), text=labels,
                hovertemplate="<b>%{text}</b> · %{x:.1f} d<br>model %{y:.2f}<extra></extra>",
            ), row=row, col=col)
        values = [market[key], model[key]]
        if key == "atm":
            values += [100.0 * mt["atm_bid"].to_numpy(dtype=float), 100.0 * mt["atm_ask"].to_numpy(dtype=float)]
        else:
            fig.add_hline(y=0.0, line=dict(color=c["muted"], width=1, dash="dot"), row=row, col=col)
            values.append(np.zeros(1))
        fig.update_yaxes(range=_padded_range(np.concatenate(values)), row=row, col=col)

    tickvals, ticktext = expiry_ticks(days)
    fig.update_xaxes(type="log", tickvals=tickvals, ticktext=ticktext, showticklabels=True)
    fig.update_xaxes(title_text=DAYS_TITLE, row=2)
    for annotation in fig.layout.annotations:
        annotation.font = dict(size=12, color=c["text"])
    note = failure_note(result)
    if note:
        fig.add_annotation(text=note, showarrow=False, xref="paper", yref="paper", x=1.0, y=1.0, yshift=30,
                           xanchor="right", yanchor="bottom", font=dict(color=c["violation"], size=12))
    return base_layout(
        fig, theme, height=HEIGHT, hovermode="closest",
        title=dict(text=fit_title(snapshot, result), x=0.01, xanchor="left", y=1.0, yanchor="top",
                   yref="container", pad=dict(t=10), font=dict(size=14)),
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="top", yref="container"),
        margin=dict(l=60, r=30, t=80, b=60), uirevision="term",
    )


__all__ = ["PANELS", "term_figure", "term_measures"]
