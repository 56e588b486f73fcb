"""The Compare view: up to three fits of the same snapshot side by side (statistics, smiles, residual difference)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from calibration.result import CalibrationResult
from calibration.snapshot import QuoteSnapshot
from components.figures.common import (
    K_TITLE,
    VOL_TITLE,
    Expiries,
    base_layout,
    call_delta,
    empty_figure,
    expiry_labels,
    f32,
    has_model,
    pct,
    quote_frame,
    quoted_k_range,
    symmetric_range,
    vol_grid,
)
from components.figures.params import fit_stats, model_label
from components.figures.residuals import BUCKET_LABELS, delta_bucket
from components.figures.smiles import ROW_HEIGHT, grid_shape, panel_axes
from components.theme import PALETTE, RESIDUAL_SCALE, SERIES, Theme

#: Fits compared at most (one colour of :data:`components.theme.SERIES` each).
MAX_FITS = len(SERIES)
N_CURVE = 101
HEADER_HEIGHT = 90
DIFF_TITLE = "Difference to fit 1 (vol points)"
RMSE_TITLE = "RMSE vs mid (vol points)"


def fit_name(result: CalibrationResult, i: int) -> str:
    """Short name of the ``i``-th compared fit (0-based): "1. Heston · lm", "2. SVI (raw) · lm (not converged)"."""
    return f"{i + 1}. {model_label(result)} · {result.optimizer}" + ("" if result.success else " (not converged)")


def _usable(snapshot: QuoteSnapshot | None, results: Sequence[CalibrationResult | None]
            ) -> tuple[list[CalibrationResult], list[str]]:
    """The fits to draw (at most :data:`MAX_FITS`, of this snapshot) and notes on those left out."""
    given = [r for r in results if r is not None]
    notes = []
    if snapshot is not None:
        other = [r for r in given if r.snapshot_hash and r.snapshot_hash != snapshot.content_hash]
        if other:
            notes.append(f"{len(other)} fit(s) of another snapshot not shown")
        given = [r for r in given if r not in other]
    if len(given) > MAX_FITS:
        notes.append(f"only the first {MAX_FITS} of {len(given)} fits are compared")
        given = given[:MAX_FITS]
    return given, notes


# ---------------------------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------------------------

def compare_columns(results: Sequence[CalibrationResult]) -> tuple[tuple[str, str, str | None], ...]:
    """Columns of :func:`compare_records` (field, header, d3 format) for :func:`components.tables.column_defs`."""
    fits, _ = _usable(None, results)
    return (("statistic", "Statistic", None), ("unit", "Unit", None),
            *((f"fit_{i + 1}", fit_name(r, i), None) for i, r in enumerate(fits)),
            ("best", "Best", None))


def compare_records(results: Sequence[CalibrationResult]) -> list[dict[str, Any]]:
    """The fit statistics of up to three fits side by side.

    Returns
    -------
    list of dict
        One row per statistic (those of :func:`components.figures.params.fit_stats`, in that order; a statistic
        only some models have, such as the Feller margin, shows "—" for the others): ``key``, ``statistic``,
        ``unit``, ``fit_1`` .. ``fit_n`` (formatted values) and ``best`` (the name of the best fit where lower or
        higher is better and the fits differ, else "").
    """
    fits, _ = _usable(None, results)
    if not fits:
        return []
    per_fit = [{s.key: s for s in fit_stats(r)} for r in fits]
    keys: list[str] = []
    for stats in per_fit:  # union in display order: a key only some fits have goes after its predecessor
        previous = None
        for key in stats:
            if key not in keys:
                keys.insert(keys.index(previous) + 1 if previous in keys else len(keys), key)
            previous = key
    rows = []
    for key in keys:
        stats = [p.get(key) for p in per_fit]
        first = next(s for s in stats if s is not None)
        row: dict[str, Any] = {"key": key, "statistic": first.label, "unit": first.unit}
        for i, s in enumerate(stats):
            row[f"fit_{i + 1}"] = "—" if s is None else s.text
        row["best"] = _best(fits, stats, first.better)
        rows.append(row)
    return rows


def _best(fits: list[CalibrationResult], stats: list, better: str | None) -> str:
    if better is None or len(fits) < 2:
        return ""
    values = [s.number if s is not None and s.number is not None else math.nan for s in stats]
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < 2 or max(finite) == min(finite):
        return ""
    target = min(finite) if better == "lower" else max(finite)
    winners = [fit_name(fits[i], i) for i, v in enumerate(values) if v == target]
    return winners[0] if len(winners) == 1 else ""


# ---------------------------------------------------------------------------------------------------------------
# smiles
# ---------------------------------------------------------------------------------------------------------------

def _expiries(snapshot: QuoteSnapshot, quotes: pd.DataFrame) -> Expiries:
    """The snapshot's expiries with fitted market quotes (a mid vol), ascending."""
    fit = quotes.loc[(quotes["status"] == "ok") & np.isfinite(quotes["iv_mid"].to_numpy(dtype=float))]
    fwd = snapshot.forwards.drop_duplicates("expiry").set_index("expiry").sort_values("ttm")
    rows = fwd.loc[fwd.index[fwd.index.isin(fit["expiry"].unique())]]
    expiry = pd.DatetimeIndex(rows.index)
    return Expiries(expiry=expiry, label=expiry_labels(expiry), ttm=rows["ttm"].to_numpy(dtype=float),
                    forward=rows["forward"].to_numpy(dtype=float), discount=rows["discount"].to_numpy(dtype=float))


def compare_smiles_figure(snapshot: QuoteSnapshot, results: Sequence[CalibrationResult | None], *,
                          theme: Theme = "dark") -> go.Figure:
    """The fitted smiles of up to three fits overlaid, one panel per expiry, over the market's bid-ask.

    Each panel: the market mid vols with their bid-ask bars (the fitted quotes) and one curve per fit (colours of
    :data:`components.theme.SERIES`, in the order given) over the quoted range; the panel title gives each fit's
    RMSE on that expiry. Vols in percent against log-moneyness.
    """
    c = PALETTE[theme]
    fits, notes = _usable(snapshot, results)
    if not fits:
        return empty_figure("Pin up to three fits of this snapshot to compare them", theme=theme)
    quotes = quote_frame(snapshot, None)
    ex = _expiries(snapshot, quotes)
    if ex.m == 0:
        return empty_figure("No fitted quotes in this snapshot", theme=theme)
    n_rows, n_cols = grid_shape(ex.m)
    axes = panel_axes(ex.m, n_cols)
    k_range = quoted_k_range(snapshot, ex)
    curves = [vol_grid(snapshot, r, n=N_CURVE, axis="k", expiries=ex, k_range=k_range) if has_model(r) else None
              for r in fits]
    residuals = [quote_frame(snapshot, r) for r in fits]

    traces: list[dict] = []
    annotations: list[dict] = []
    layout_axes: dict[str, dict] = {}
    shown: set[str] = set()

    def legend(name: str) -> dict:
        first = name not in shown
        shown.add(name)
        return dict(name=name, legendgroup=name, showlegend=first)

    fit_quotes = quotes.loc[(quotes["status"] == "ok") & np.isfinite(quotes["iv_mid"].to_numpy(dtype=float))]
    by_expiry = dict(tuple(fit_quotes.groupby("expiry", sort=False)))
    for j in range(ex.m):
        xa, ya, x_domain, y_domain = axes[j]
        on = dict(xaxis=xa, yaxis=ya)
        rows = by_expiry[ex.expiry[j]].sort_values("k")
        mid = rows["iv_mid"].to_numpy(dtype=float)
        down = mid - rows["iv_bid"].to_numpy(dtype=float)
        traces.append(dict(
            type="scatter", x=f32(rows["k"]), y=pct(mid), mode="markers", marker=dict(color=c["market"], size=4),
            error_y=dict(type="data", symmetric=False, array=pct(rows["iv_ask"].to_numpy(dtype=float) - mid),
                         arrayminus=pct(np.where(np.isfinite(down), down, mid)), color=c["bid_ask"],
                         thickness=1.2, width=0),
            customdata=f32(np.column_stack([rows["strike"], 100 * rows["iv_bid"], 100 * rows["iv_ask"]])),
            hovertemplate=("K %{customdata[0]:,.6g} · k %{x:.3f}<br>mid %{y:.2f} % · bid %{customdata[1]:.2f} · "
                           "ask %{customdata[2]:.2f}<extra>market</extra>"),
            **legend("Market bid–ask (mid)"), **on,
        ))
        lows, highs = [rows["iv_bid"], rows["iv_ask"], rows["iv_mid"]], []
        rmse_parts = []
        for i, (r, grid) in enumerate(zip(fits, curves)):
            name = fit_name(r, i)
            if grid is not None and np.isfinite(grid.vol[j]).any():
                traces.append(dict(
                    type="scatter", x=f32(grid.k[j]), y=pct(grid.vol[j]), mode="lines",
                    line=dict(color=SERIES[i], width=2, dash=("solid", "dash", "dot")[i]),
                    customdata=f32(grid.strike[j]),
                    hovertemplate=f"{name}<br>%{{y:.2f}} % · K %{{customdata:,.6g}} · k %{{x:.3f}}<extra></extra>",
                    **legend(name), **on,
                ))
                highs.append(pd.Series(grid.vol[j]))
            res = residuals[i]
            res = res.loc[res["expiry"] == ex.expiry[j], "residual_vol_points"].to_numpy(dtype=float)
            res = res[np.isfinite(res)]
            rmse_parts.append(f"<span style='color:{SERIES[i]}'>{math.sqrt(float(np.mean(res ** 2))):.2f}</span>"
                              if res.size else "<span>–</span>")
        annotations.append(dict(
            text=f"<b>{ex.label[j]}</b> · {ex.days[j]:.0f}d · rmse {' / '.join(rmse_parts)}", showarrow=False,
            xref="paper", yref="paper", x=sum(x_domain) / 2, y=y_domain[1], yanchor="bottom", xanchor="center",
            font=dict(size=11, color=c["text"]),
        ))
        values = np.concatenate([np.asarray(v, dtype=float) for v in lows + highs])
        values = values[np.isfinite(values)]
        y_range = None
        if values.size:
            lo, hi = float(values.min()), float(values.max())
            pad = 0.06 * max(hi - lo, 0.02)
            y_range = [100.0 * max(lo - pad, 0.0), 100.0 * (hi + pad)]
        name = lambda a: a.replace("x", "xaxis").replace("y", "yaxis")  # noqa: E731  "x2" -> "xaxis2"
        layout_axes[name(xa)] = dict(domain=x_domain, anchor=ya, tickfont=dict(size=10), nticks=6)
        layout_axes[name(ya)] = dict(domain=y_domain, anchor=xa, tickfont=dict(size=10), nticks=6, range=y_range)

    annotations += [
        dict(text=K_TITLE, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.0, yshift=-26, yanchor="top",
             font=dict(size=14)),
        dict(text=VOL_TITLE, showarrow=False, xref="paper", yref="paper", x=0.0, xshift=-55, y=0.5, textangle=-90,
             font=dict(size=14)),
    ]
    fig = go.Figure(data=traces, layout=dict(annotations=annotations, **layout_axes))
    sub = "rmse per panel: vol points, in the order of the fits" + ("; " + "; ".join(notes) if notes else "")
    return base_layout(
        fig, theme, height=HEADER_HEIGHT + ROW_HEIGHT * n_rows,
        title=dict(text=f"{snapshot.underlying} · {len(fits)} fit(s) compared<br><sup>{sub}</sup>", x=0.01,
                   xanchor="left", y=1.0, yanchor="top", yref="container", pad=dict(t=24), font=dict(size=14)),
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="top", yref="container",
                    font=dict(size=11)),
        margin=dict(l=70, r=20, t=HEADER_HEIGHT, b=60), hovermode="closest", uirevision="compare-smiles",
    )


# ---------------------------------------------------------------------------------------------------------------
# residual difference
# ---------------------------------------------------------------------------------------------------------------

def compare_residuals_figure(snapshot: QuoteSnapshot, results: Sequence[CalibrationResult | None], *,
                             theme: Theme = "dark") -> go.Figure:
    """Where the fits differ, and which is closer to the market there.

    Top: RMSE of each fit against the mids, per expiry (vol points; grouped bars in the fits' colours). Bottom,
    one heatmap per fit after the first: that fit's model vol minus the first fit's (equivalently the difference
    of their residuals), mean per expiry and delta bucket, vol points, over the quotes both fitted.
    """
    fits, notes = _usable(snapshot, results)
    if not fits:
        return empty_figure("Pin up to three fits of this snapshot to compare them", theme=theme)
    frames = [quote_frame(snapshot, r) for r in fits]
    fitted = np.logical_or.reduce([f["fitted"].to_numpy(dtype=bool) for f in frames])
    base = frames[0].loc[fitted]
    if base.empty:
        return empty_figure("The fits have no residuals on this snapshot", theme=theme)
    expiries = pd.DatetimeIndex(np.sort(base["expiry"].unique()))
    labels = list(expiry_labels(expiries))
    n_diff = len(fits) - 1
    rows = 2 if n_diff else 1
    fig = make_subplots(
        rows=rows, cols=max(n_diff, 1), specs=[[{"colspan": max(n_diff, 1)}] + [None] * (max(n_diff, 1) - 1)]
        + ([[{} for _ in range(n_diff)]] if n_diff else []),
        row_heights=[0.38, 0.62] if n_diff else None, vertical_spacing=0.16, horizontal_spacing=0.1,
        subplot_titles=["RMSE vs mid by expiry"] + [f"{fit_name(fits[i], i)} minus {fit_name(fits[0], 0)}"
                                                    for i in range(1, len(fits))],
    )
    j_of = expiries.get_indexer(pd.DatetimeIndex(base["expiry"]))
    for i, frame in enumerate(frames):
        res = frame.loc[fitted, "residual_vol_points"].to_numpy(dtype=float)
        ok = np.isfinite(res)
        sq = np.bincount(j_of[ok], weights=res[ok] ** 2, minlength=len(expiries))
        n = np.bincount(j_of[ok], minlength=len(expiries))
        with np.errstate(invalid="ignore", divide="ignore"):
            rmse = np.where(n > 0, np.sqrt(sq / n), np.nan)
        fig.add_trace(go.Bar(
            x=labels, y=f32(rmse), name=fit_name(fits[i], i), marker=dict(color=SERIES[i]),
            customdata=n, hovertemplate="%{x}: rmse %{y:.3f} vol pts over %{customdata} quotes<extra>"
                                        + fit_name(fits[i], i) + "</extra>",
        ), row=1, col=1)
    fig.update_xaxes(type="category", tickangle=-45 if len(labels) > 12 else 0, row=1, col=1)
    fig.update_yaxes(title_text=RMSE_TITLE, rangemode="tozero", row=1, col=1)

    if n_diff:
        k = base["k"].to_numpy(dtype=float)
        d = call_delta(k, base["iv_mid"].to_numpy(dtype=float), base["ttm"].to_numpy(dtype=float))
        bucket = delta_bucket(d)
        cells = []
        for i in range(1, len(fits)):
            diff = (frames[i].loc[fitted, "model_vol"].to_numpy(dtype=float)
                    - frames[0].loc[fitted, "model_vol"].to_numpy(dtype=float)) * 100.0
            ok = np.isfinite(diff) & (bucket >= 0)
            shape = (len(expiries), len(BUCKET_LABELS))
            flat = j_of[ok] * shape[1] + bucket[ok]
            total = np.bincount(flat, weights=diff[ok], minlength=shape[0] * shape[1]).reshape(shape)
            count = np.bincount(flat, minlength=shape[0] * shape[1]).reshape(shape)
            with np.errstate(invalid="ignore", divide="ignore"):
                cells.append((np.where(count > 0, total / count, np.nan), count))
        span = symmetric_range(np.concatenate([m.ravel() for m, _ in cells]), quantile=0.98, floor=0.05)
        for i, (mean, count) in enumerate(cells, start=1):
            text = np.where(np.isfinite(mean), np.char.mod("%+.1f", np.nan_to_num(mean)), "")
            fig.add_trace(go.Heatmap(
                z=f32(mean), x=list(BUCKET_LABELS), y=labels, zmin=-span, zmax=span, zmid=0.0,
                colorscale=RESIDUAL_SCALE, text=text,
                texttemplate="%{text}" if len(labels) <= 16 else "", textfont=dict(size=10),
                customdata=count, xgap=1, ygap=1, showscale=i == 1,
                colorbar=dict(title=dict(text=DIFF_TITLE, side="right"), len=0.55, y=0.0, yanchor="bottom",
                              thickness=12),
                hovertemplate=(f"<b>%{{y}}</b> · %{{x}}<br>{fit_name(fits[i], i)} − fit 1: %{{z:+.2f}} vol pts"
                               "<br>mean of %{customdata} quotes<extra></extra>"),
            ), row=2, col=i)
            fig.update_yaxes(autorange="reversed", type="category", tickfont=dict(size=10),
                             showticklabels=i == 1, row=2, col=i)
            fig.update_xaxes(type="category", tickangle=-35, tickfont=dict(size=10),
                             title=dict(text="Moneyness bucket (forward delta)", standoff=8), automargin=True,
                             row=2, col=i)
        fig.update_yaxes(title_text="Expiry", row=2, col=1)

    sub = ("positive: the later fit's vol is above fit 1's" if n_diff
           else "one fit pinned: pin a second fit to see where the fits differ")
    if notes:
        sub += "; " + "; ".join(notes)
    return base_layout(
        fig, theme, height=760 if n_diff else 420, barmode="group", bargap=0.25,
        title=dict(text=f"{snapshot.underlying} · residuals compared<br><sup>{sub}</sup>", x=0.01),
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.02, yanchor="bottom"),
        margin=dict(l=80, r=30, t=90, b=100 if n_diff else 70),
        yaxis_title=dict(text=RMSE_TITLE), xaxis_title=dict(text="Expiry"),
    )
