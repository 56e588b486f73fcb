"""The Residuals view: expiry x delta-bucket heatmap, histogram, and the fitted points outside the bid-ask band."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from calibration.result import CalibrationResult
from calibration.snapshot import QuoteSnapshot
from components.figures.common import (
    COUNT_TITLE,
    QUOTE_HOVER,
    DELTA_TITLE,
    RESIDUAL_PRICE_TITLE,
    RESIDUAL_VOL_TITLE,
    base_layout,
    call_delta,
    empty_figure,
    expiry_labels,
    f32,
    failure_note,
    fit_title,
    quote_customdata,
    quote_frame,
    quote_text,
    symmetric_range,
)
from components.theme import PALETTE, RESIDUAL_SCALE, Theme

Space = Literal["vol", "price"]
SPACES: tuple[str, ...] = ("vol", "price")

#: Moneyness buckets by forward call delta (decimal, descending: low strikes first) and their labels.
BUCKET_EDGES: tuple[float, ...] = (1.0, 0.9, 0.75, 0.6, 0.4, 0.25, 0.1, 0.0)
BUCKET_LABELS: tuple[str, ...] = ("<10Δ put", "10–25Δ put", "25–40Δ put", "ATM ±10Δ", "25–40Δ call",
                                  "10–25Δ call", "<10Δ call")
BAND_TITLE = "Model − mid (half bid-ask spreads)"
HEIGHT = 820


def delta_bucket(delta: np.ndarray) -> np.ndarray:
    """Index into :data:`BUCKET_LABELS` of forward call deltas (decimal); -1 where the delta is NaN."""
    d = np.asarray(delta, dtype=float)
    edges = np.asarray(BUCKET_EDGES[1:-1])  # descending inner edges
    idx = np.searchsorted(-edges, -d, side="right")
    return np.where(np.isfinite(d), idx, -1)


def residual_table(snapshot: QuoteSnapshot, result: CalibrationResult, *, space: Space = "vol") -> pd.DataFrame:
    """The fitted quotes with their residual in ``space``, half spread, distance to the band, bucket and flags.

    Columns: the :func:`quote_frame` columns plus ``residual`` (vol points or quote currency), ``half_spread``
    (same unit), ``band`` (``residual / half_spread``), ``call_delta`` (decimal), ``bucket`` (index into
    :data:`BUCKET_LABELS`), ``outside`` (bool: the model lies outside the market's bid-ask).
    """
    q = quote_frame(snapshot, result)
    q = q.loc[q["fitted"]].copy()
    if space == "vol":
        q["residual"] = q["residual_vol_points"]
        q["half_spread"] = 50.0 * (q["iv_ask"] - q["iv_bid"])
    else:
        q["residual"] = q["residual_price"]
        q["half_spread"] = 0.5 * (q["ask"] - q["bid"])
    with np.errstate(all="ignore"):
        q["band"] = q["residual"] / q["half_spread"].where(q["half_spread"] > 0)
    q["call_delta"] = call_delta(q["k"], q["iv_mid"], q["ttm"])
    q["bucket"] = delta_bucket(q["call_delta"].to_numpy(dtype=float))
    q["outside"] = [v is not None and v == v and not bool(v) for v in q["inside_spread"]]  # None/NaN: unknown
    return q


def residuals_figure(snapshot: QuoteSnapshot, result: CalibrationResult | None, *, space: Space = "vol",
                     theme: Theme = "dark") -> go.Figure:
    """Residuals of a fit: mean by expiry and delta bucket (heatmap), their distribution (histogram split by inside
    or outside the bid-ask band) and each fitted quote's distance to the band in half spreads.

    Parameters
    ----------
    snapshot
        The snapshot the result was fitted to.
    result
        The fit; ``None`` gives a placeholder figure.
    space
        "vol" (model − mid, vol points) or "price" (model − mid premium, quote currency).
    theme
        "dark" or "light".
    """
    if space not in SPACES:
        raise ValueError(f"space must be one of {SPACES}, got {space!r}")
    if result is None:
        return empty_figure("No fit yet: run a calibration to see its residuals", theme=theme, height=HEIGHT)
    c = PALETTE[theme]
    q = residual_table(snapshot, result, space=space)
    q = q.loc[np.isfinite(q["residual"].to_numpy(dtype=float))]
    if q.empty:
        return empty_figure("The fit has no residuals to show (no quote could be priced)", theme=theme,
                            height=HEIGHT)
    unit = RESIDUAL_VOL_TITLE if space == "vol" else RESIDUAL_PRICE_TITLE
    fmt = "+.2f" if space == "vol" else "+,.4~g"
    n_out = int(q["outside"].sum())
    fig = make_subplots(
        rows=2, cols=2, specs=[[{"colspan": 2}, None], [{}, {}]], row_heights=[0.56, 0.44],
        vertical_spacing=0.16, horizontal_spacing=0.09,
        subplot_titles=(f"Mean {unit.lower().replace('model − mid ', 'residual ')} by expiry and delta bucket",
                        "Distribution", f"Distance to the bid-ask band · {n_out} of {len(q)} outside"),
    )

    # heatmap ---------------------------------------------------------------------------------------------------
    expiries = pd.DatetimeIndex(np.sort(q["expiry"].unique()))
    labels = list(expiry_labels(expiries))
    j = expiries.get_indexer(pd.DatetimeIndex(q["expiry"]))
    b = q["bucket"].to_numpy()
    ok = b >= 0
    shape = (len(expiries), len(BUCKET_LABELS))
    res = q["residual"].to_numpy(dtype=float)
    total = np.zeros(shape)
    count = np.zeros(shape)
    worst = np.zeros(shape)
    outside = np.zeros(shape)
    np.add.at(total, (j[ok], b[ok]), res[ok])
    np.add.at(count, (j[ok], b[ok]), 1.0)
    np.maximum.at(worst, (j[ok], b[ok]), np.abs(res[ok]))
    np.add.at(outside, (j[ok], b[ok]), q["outside"].to_numpy(dtype=float)[ok])
    with np.errstate(all="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    span = symmetric_range(mean, quantile=0.95, floor=0.05 if space == "vol" else 1e-9)
    text = np.where(count > 0, np.char.add(count.astype(int).astype(str), ""), "")
    fig.add_trace(go.Heatmap(
        z=f32(mean), x=list(BUCKET_LABELS), y=labels, zmid=0.0, zmin=-span, zmax=span, colorscale=RESIDUAL_SCALE,
        text=text, texttemplate="%{text}", textfont=dict(size=10, color="#1f2430"),
        customdata=f32(np.stack([count, worst, outside], axis=-1)), xgap=1, ygap=1,
        colorbar=dict(title=dict(text=unit, side="right"), len=0.5, y=1.0, yanchor="top", thickness=12),
        hovertemplate=(f"<b>%{{y}}</b> · %{{x}}<br>mean %{{z:{fmt}}}<br>largest |residual| %{{customdata[1]:,.4~g}}"
                       "<br>%{customdata[0]:.0f} quotes, %{customdata[2]:.0f} outside the band<extra></extra>"),
        name="Mean residual", showlegend=False,
    ), row=1, col=1)
    fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=10), title_text="Expiry",
                     row=1, col=1)
    fig.update_xaxes(type="category", side="bottom", title_text="Moneyness bucket (forward delta, cell: quotes)",
                     row=1, col=1)

    # histogram -------------------------------------------------------------------------------------------------
    lim = symmetric_range(res, quantile=0.995, floor=0.05 if space == "vol" else 1e-9)
    clipped = np.clip(res, -lim, lim)
    bins = dict(start=-lim, end=lim, size=2 * lim / 40)
    out_mask = q["outside"].to_numpy(dtype=bool)
    for name, mask, colour in (("Inside bid-ask", ~out_mask, c["model"]), ("Outside bid-ask", out_mask,
                                                                            c["violation"])):
        fig.add_trace(go.Histogram(
            x=f32(clipped[mask]), xbins=bins, marker=dict(color=colour, line=dict(width=0)), name=name,
            legendgroup=name, opacity=0.85, hovertemplate="%{x}<br>%{y} quotes<extra>" + name + "</extra>",
        ), row=2, col=1)
    fig.update_xaxes(title_text=unit + (" (clipped)" if np.any(np.abs(res) > lim) else ""), row=2, col=1)
    fig.update_yaxes(title_text=COUNT_TITLE, row=2, col=1)

    # band distance ---------------------------------------------------------------------------------------------
    band = q["band"].to_numpy(dtype=float)
    band_lim = float(np.clip(np.nanquantile(np.abs(band), 0.99) if np.isfinite(band).any() else 2.0, 2.0, 20.0))
    shown = np.clip(band, -band_lim, band_lim)
    for name, mask, colour, size in (("Inside bid-ask", ~out_mask, c["bid_ask"], 4),
                                     ("Outside bid-ask", out_mask, c["violation"], 6)):
        sub = q.loc[mask]
        if sub.empty:
            continue
        fig.add_trace(go.Scatter(
            x=f32(100.0 * sub["call_delta"]), y=f32(shown[mask]), mode="markers", name=name, legendgroup=name,
            showlegend=False, marker=dict(color=colour, size=size, opacity=0.8),
            text=quote_text(sub), customdata=quote_customdata(sub), hovertemplate=QUOTE_HOVER,
        ), row=2, col=2)
    for level in (-1.0, 1.0):
        fig.add_hline(y=level, line=dict(color=c["muted"], width=1, dash="dash"), row=2, col=2)
    fig.update_xaxes(title_text=DELTA_TITLE, autorange="reversed", row=2, col=2)
    clipped_band = bool(np.any(np.abs(band[np.isfinite(band)]) > band_lim))
    fig.update_yaxes(title_text=BAND_TITLE + (f", clipped at ±{band_lim:.0f}" if clipped_band else ""),
                     range=[-band_lim * 1.05, band_lim * 1.05], row=2, col=2)

    for a in fig.layout.annotations:  # subplot titles
        a.font = dict(size=12, color=c["text"])
    note = failure_note(result)
    if note:
        fig.add_annotation(text=note, showarrow=False, xref="paper", yref="paper", x=1.0, y=1.0, yshift=36,
                           xanchor="right", yanchor="bottom", font=dict(color=c["violation"], size=12))
    return base_layout(
        fig, theme, height=HEIGHT, barmode="stack", bargap=0.05,
        title=dict(text=fit_title(snapshot, result), x=0.01, xanchor="left", y=1.0, yanchor="top",
                   yref="container", pad=dict(t=10), font=dict(size=14)),
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="top", yref="container"),
        margin=dict(l=90, r=30, t=80, b=60), uirevision=f"residuals-{space}",
    )


__all__ = ["BUCKET_LABELS", "delta_bucket", "residual_table", "residuals_figure"]
