"""The Smiles view: small multiples, one panel per expiry (bid-ask bars, mid, fitted curve, venue IVs, drops)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from calibration.cleaning import REASONS
from calibration.result import CalibrationResult
from calibration.snapshot import QuoteSnapshot
from components.figures.common import (
    K_TITLE,
    QUOTE_HOVER,
    VOL_TITLE,
    Expiries,
    base_layout,
    empty_figure,
    expiry_labels,
    f32,
    failure_note,
    fit_title,
    has_model,
    pct,
    quote_customdata,
    quote_frame,
    quote_text,
    quoted_k_range,
    vol_grid,
)
from components.theme import PALETTE, Theme

#: Points of each fitted curve.
N_CURVE = 101
#: Height of one row of panels, pixels, and of the title/legend band.
ROW_HEIGHT = 230
HEADER_HEIGHT = 80
#: Share of the vol range by which the y axis may grow to show dropped quotes (beyond it they are clipped).
DROPPED_SLACK = 0.5


def grid_shape(n_panels: int) -> tuple[int, int]:
    """(rows, columns) of the small multiples: at most 5 columns, so a panel stays about 250 px wide on a
    laptop screen."""
    if n_panels <= 0:
        return 0, 0
    cols = 1 if n_panels == 1 else 2 if n_panels <= 4 else 3 if n_panels <= 9 else 4 if n_panels <= 16 else 5
    return math.ceil(n_panels / cols), cols


def _panel_expiries(snapshot: QuoteSnapshot, quotes: pd.DataFrame, result: CalibrationResult | None) -> Expiries:
    """Every expiry with something to draw (a plottable quote), ascending; forwards from the snapshot."""
    drawable = quotes.loc[np.isfinite(quotes["vol"].to_numpy(dtype=float))]
    fwd = snapshot.forwards.drop_duplicates("expiry").set_index("expiry").sort_values("ttm")
    present = fwd.index[fwd.index.isin(drawable["expiry"].unique())]
    rows = fwd.loc[present]
    expiry = pd.DatetimeIndex(rows.index)
    return Expiries(expiry=expiry, label=expiry_labels(expiry), ttm=rows["ttm"].to_numpy(dtype=float),
                    forward=rows["forward"].to_numpy(dtype=float), discount=rows["discount"].to_numpy(dtype=float))


def smiles_figure(snapshot: QuoteSnapshot, result: CalibrationResult | None, *, theme: Theme = "dark") -> go.Figure:
    """Small multiples of the smiles, one panel per expiry.

    Each panel: the market's bid-ask vol bars with the mid (fitted quotes), the fitted curve over the quoted range,
    the venue's own bid/ask IVs when the snapshot has them, and the quotes not fitted greyed, with the reason on
    hover. Vols in percent against log-moneyness ``ln(K/F)``.

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
    ex = _panel_expiries(snapshot, quotes, result)
    if ex.m == 0:
        return empty_figure("No quotes with an implied vol in this snapshot", theme=theme)
    n_rows, n_cols = grid_shape(ex.m)
    fitted = has_model(result)
    curves = None
    if fitted:
        lo, hi = quoted_k_range(snapshot, ex)
        curves = vol_grid(snapshot, result, n=N_CURVE, axis="k", expiries=ex, k_range=(lo, hi))
        fitted_ttm = np.asarray(result.expiry_ttm, dtype=float)

    axes = panel_axes(ex.m, n_cols)
    traces: list[dict] = []
    annotations: list[dict] = []
    layout_axes: dict[str, dict] = {}
    legend_done: set[str] = set()

    def legend(name: str) -> dict:
        first = name not in legend_done
        legend_done.add(name)
        return dict(name=name, legendgroup=name, showlegend=first)

    columns = ["expiry", "label", "option_type", "strike", "k", "days", "delta", "status", "vol", "iv_bid", "iv_mid",
               "iv_ask", "model_vol", "residual_vol_points", "venue_iv_bid", "venue_iv_ask"]
    by_expiry = dict(tuple(quotes[[c for c in columns if c in quotes]].groupby("expiry", sort=False)))
    for j in range(ex.m):
        xa, ya, x_domain, y_domain = axes[j]
        on = dict(xaxis=xa, yaxis=ya)
        rows = by_expiry[ex.expiry[j]].sort_values("k")
        fit = rows.loc[(rows["status"] == "ok") & np.isfinite(rows["iv_mid"].to_numpy(dtype=float))]
        dropped = rows.loc[(rows["status"] != "ok") & np.isfinite(rows["vol"].to_numpy(dtype=float))]
        y_parts = [fit["iv_bid"], fit["iv_ask"], fit["iv_mid"]]

        if not dropped.empty:
            reasons = [REASONS.get(s, s) for s in dropped["status"]]
            traces.append(dict(
                type="scatter", x=f32(dropped["k"]), y=pct(dropped["vol"]), mode="markers",
                marker=dict(color=c["dropped"], size=5, symbol="x-thin", line=dict(width=1.2, color=c["dropped"])),
                text=[f"{lab} · {kind} · K {k:,.6g}<br>not fitted: {why}" for lab, kind, k, why in
                      zip(dropped["label"], dropped["option_type"], dropped["strike"], reasons)],
                hovertemplate="%{text}<br>vol %{y:.2f} %<extra></extra>", **legend("Not fitted"), **on,
            ))
        venue = rows.iloc[:0]
        if "venue_iv_bid" in rows and "venue_iv_ask" in rows:
            venue = rows.loc[np.isfinite(rows["venue_iv_bid"].to_numpy(dtype=float))
                             | np.isfinite(rows["venue_iv_ask"].to_numpy(dtype=float))]
        if not venue.empty:
            traces.append(dict(
                type="scatter", x=f32(np.concatenate([venue["k"], venue["k"]])),
                y=pct(np.concatenate([venue["venue_iv_bid"], venue["venue_iv_ask"]])), mode="markers",
                marker=dict(color=c["venue"], size=5, opacity=0.9,
                            symbol=["triangle-up"] * len(venue) + ["triangle-down"] * len(venue)),
                customdata=["bid"] * len(venue) + ["ask"] * len(venue),
                hovertemplate="venue %{customdata} IV %{y:.2f} %<extra></extra>", **legend("Venue bid/ask IV"),
                **on,
            ))
            y_parts += [venue["venue_iv_bid"], venue["venue_iv_ask"]]
        if curves is not None and np.isfinite(curves.vol[j]).any():
            in_fit = result.kind == "surface" or bool(np.any(np.abs(fitted_ttm - ex.ttm[j]) <= 1e-6))
            traces.append(dict(
                type="scatter", x=f32(curves.k[j]), y=pct(curves.vol[j]), mode="lines",
                line=dict(color=c["model"], width=2, dash="solid" if in_fit else "dot"),
                customdata=f32(curves.strike[j]),
                hovertemplate="model %{y:.2f} % · K %{customdata:,.6g} · k %{x:.3f}<extra></extra>",
                **legend(f"{result.model.upper()} fit" if in_fit else "Model (expiry not fitted)"), **on,
            ))
            y_parts.append(pd.Series(curves.vol[j]))
        if not fit.empty:
            mid = fit["iv_mid"].to_numpy(dtype=float)
            down = mid - fit["iv_bid"].to_numpy(dtype=float)
            traces.append(dict(
                type="scatter", x=f32(fit["k"]), y=pct(mid), mode="markers",
                marker=dict(color=c["market"], size=4),
                error_y=dict(type="data", symmetric=False, array=pct(fit["iv_ask"].to_numpy(dtype=float) - mid),
                             arrayminus=pct(np.where(np.isfinite(down), down, mid)),  # no bid vol: bar to zero
                             color=c["bid_ask"], thickness=1.2, width=0),
                text=quote_text(fit), customdata=quote_customdata(fit), hovertemplate=QUOTE_HOVER,
                **legend("Market bid–ask (mid)"), **on,
            ))
        res = rows["residual_vol_points"].to_numpy(dtype=float)
        res = res[np.isfinite(res)]
        rmse = f" · rmse {math.sqrt(float(np.mean(res * res))):.2f} vol pts" if res.size else ""
        annotations.append(dict(text=f"<b>{ex.label[j]}</b> · {ex.days[j]:.1f}d{rmse}", showarrow=False,
                                xref="paper", yref="paper", x=sum(x_domain) / 2, y=y_domain[1], yanchor="bottom",
                                xanchor="center", font=dict(size=11, color=c["text"])))
        if fit.empty:
            annotations.append(dict(text="not fitted", showarrow=False, xref=f"{xa} domain", yref=f"{ya} domain",
                                    x=0.5, y=0.92, font=dict(size=11, color=c["muted"])))
        name = lambda a: a.replace("x", "xaxis").replace("y", "yaxis")  # noqa: E731  "x2" -> "xaxis2"
        layout_axes[name(xa)] = dict(domain=x_domain, anchor=ya, tickfont=dict(size=10), nticks=6, zeroline=True)
        layout_axes[name(ya)] = dict(domain=y_domain, anchor=xa, tickfont=dict(size=10), nticks=6,
                                     range=_y_range(y_parts, dropped["vol"]))

    height = HEADER_HEIGHT + ROW_HEIGHT * n_rows
    annotations += [
        dict(text=K_TITLE, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.0, yshift=-26, yanchor="top",
             font=dict(size=14)),
        dict(text=VOL_TITLE, showarrow=False, xref="paper", yref="paper", x=0.0, xshift=-55, y=0.5, textangle=-90,
             font=dict(size=14)),
    ]
    note = failure_note(result)
    if note:
        annotations.append(dict(text=note, showarrow=False, xref="paper", yref="paper", x=1.0, y=1.0, yshift=24,
                                xanchor="right", yanchor="bottom", font=dict(color=c["violation"], size=12)))
    fig = go.Figure(data=traces, layout=dict(annotations=annotations, **layout_axes))
    return base_layout(
        fig, theme, height=height,
        title=dict(text=fit_title(snapshot, result), x=0.01, xanchor="left", y=1.0, yanchor="top", yref="container",
                   pad=dict(t=10), font=dict(size=14)),
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="top", yref="container",
                    font=dict(size=11)),
        margin=dict(l=70, r=20, t=HEADER_HEIGHT, b=60), hovermode="closest", uirevision="smiles",
    )


def panel_axes(n_panels: int, n_cols: int, *, h_gap: float = 0.045, v_gap_px: float = 60.0,
               row_px: float = ROW_HEIGHT) -> list[tuple[str, str, list[float], list[float]]]:
    """Axis names and paper domains of a grid of panels, row by row from the top: ``(xaxis, yaxis, x_domain,
    y_domain)`` per panel (``"x"``, ``"y"`` for the first, then ``"x2"``, ``"y2"``...). The vertical gap is given in
    pixels of a row of ``row_px`` so that panel titles keep their room whatever the number of rows."""
    n_rows = math.ceil(n_panels / n_cols)
    width = (1.0 - h_gap * (n_cols - 1)) / n_cols
    v_gap = v_gap_px / (row_px * n_rows)
    height = (1.0 - v_gap * (n_rows - 1)) / n_rows
    out = []
    for j in range(n_panels):
        r, col = divmod(j, n_cols)
        x0 = col * (width + h_gap)
        y1 = 1.0 - r * (height + v_gap)
        suffix = "" if j == 0 else str(j + 1)
        out.append((f"x{suffix}", f"y{suffix}", [x0, x0 + width], [max(y1 - height, 0.0), y1]))
    return out


def _y_range(parts: list[pd.Series], dropped: pd.Series) -> list[float] | None:
    """Vol-percent range of a panel: the fitted quotes and the curve, grown to show the dropped quotes unless they
    lie far outside (then clipped)."""
    values = np.concatenate([np.asarray(p, dtype=float) for p in parts]) if parts else np.empty(0)
    values = values[np.isfinite(values)]
    extra = np.asarray(dropped, dtype=float)
    extra = extra[np.isfinite(extra)]
    if values.size == 0:
        values = extra
    if values.size == 0:
        return None
    lo, hi = float(values.min()), float(values.max())
    width = max(hi - lo, 0.02)
    if extra.size:
        lo = max(min(lo, float(extra.min())), lo - DROPPED_SLACK * width)
        hi = min(max(hi, float(extra.max())), hi + DROPPED_SLACK * width)
    pad = 0.06 * max(hi - lo, 0.02)
    return [100.0 * max(lo - pad, 0.0), 100.0 * (hi + pad)]


__all__ = ["grid_shape", "panel_axes", "smiles_figure"]
