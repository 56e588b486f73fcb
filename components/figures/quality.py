"""The Data-quality view: forwards and put-call parity per expiry, and the quotes dropped by cleaning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from calibration.cleaning import REASONS
from calibration.forwards import FORWARD_METHODS
from calibration.snapshot import QuoteSnapshot
from components.figures.common import COUNT_TITLE, DAYS_PER_YEAR, base_layout, empty_figure, expiry_labels, f32
from components.theme import PALETTE, Theme

#: Drop reasons that are rules of the fit rather than problems of the data (the in-the-money side of a strike is
#: replaced by its out-of-the-money twin; a duplicate keeps its tightest copy; expiries under the minimum days are
#: left out on purpose).
BY_DESIGN_REASONS: frozenset[str] = frozenset({"itm", "duplicate", "near_expiry", "expired"})

FORWARD_TITLE = "Forward<br>(quote currency)"
VENUE_DIFF_TITLE = "vs venue<br>(bp)"
PARITY_RMSE_TITLE = "Parity RMSE<br>(bp of F)"
BAND_SHARE_TITLE = "Pairs in<br>bid-ask (%)"


def _forward_table(snapshot: QuoteSnapshot) -> pd.DataFrame:
    """``snapshot.forwards`` sorted by expiry with labels, days, annualised basis and parity RMSE in bp."""
    f = snapshot.forwards.sort_values("ttm").reset_index(drop=True).copy()
    f["label"] = expiry_labels(pd.DatetimeIndex(f["expiry"]))
    f["days"] = f["ttm"].to_numpy(dtype=float) * DAYS_PER_YEAR
    F = f["forward"].to_numpy(dtype=float)
    spot = f["spot"].to_numpy(dtype=float)
    t = f["ttm"].to_numpy(dtype=float)
    with np.errstate(all="ignore"):
        f["basis_pct"] = np.where(t > 0, 100.0 * np.log(F / spot) / t, np.nan)
        f["rmse_bp"] = 1e4 * f["parity_rmse"].to_numpy(dtype=float) / (f["discount"].to_numpy(dtype=float) * F)
    return f


def _forward_hover(f: pd.DataFrame) -> tuple[np.ndarray, list[str], str]:
    """customdata, hover titles and hovertemplate of the forward diagnostics (one entry per expiry)."""
    custom = np.column_stack([
        f["days"], f["forward"], f["venue_forward"], f["forward_vs_venue_bp"], f["basis_pct"],
        f["discount"], 100.0 * f["rate"].to_numpy(dtype=float), f["parity_rmse"], f["rmse_bp"],
        100.0 * f["parity_band_share"].to_numpy(dtype=float), f["n_pairs"], f["n_outliers"],
    ]).astype(float)
    text = [
        f"{label} · {FORWARD_METHODS.get(method, method)}" + (f"<br><i>{note}</i>" if note else "")
        for label, method, note in zip(f["label"], f["method"], f["note"].fillna(""))
    ]
    template = (
        "<b>%{text}</b><br>%{customdata[0]:.1f} days to expiry<br>"
        "forward %{customdata[1]:,.2f} · venue %{customdata[2]:,.2f} (%{customdata[3]:+.1f} bp)<br>"
        "basis ln(F/S)/t %{customdata[4]:+.2f} % a year<br>"
        "discount %{customdata[5]:.6f} (rate %{customdata[6]:.2f} %)<br>"
        "parity RMSE %{customdata[7]:,.4g} (%{customdata[8]:.1f} bp of F) · "
        "%{customdata[9]:.0f} % of %{customdata[10]:.0f} pairs in bid-ask · %{customdata[11]:.0f} outlier(s)"
        "<extra></extra>"
    )
    return custom, text, template


def forwards_figure(snapshot: QuoteSnapshot, *, theme: Theme = "dark") -> go.Figure:
    """Forward per expiry (put-call parity against the venue's forward) and how well parity held.

    Rows, sharing the expiry axis (one category per expiry, nearest first):

    1. the forward used (quote currency) with the venue's forward and the spot;
    2. when the snapshot has venue forwards: parity forward minus venue forward, basis points;
    3. parity quality: RMS of the mid parity residuals in basis points of the forward (bars; expiries whose
       forward did not come from parity are drawn in the violation colour; a log axis when one expiry's RMSE is
       over 30 times the median, so the others stay readable) and the share of call/put pairs whose parity line
       lies inside their bid-ask band (percent, right axis).

    Parameters
    ----------
    snapshot
        The snapshot (``snapshot.forwards`` is drawn).
    theme
        "dark" or "light".
    """
    c = PALETTE[theme]
    f = _forward_table(snapshot)
    if f.empty:
        return empty_figure("No expiries in this snapshot", theme=theme)
    has_venue = bool(np.isfinite(f["venue_forward"].to_numpy(dtype=float)).any())
    rows = 3 if has_venue else 2
    fig = make_subplots(
        rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.09,
        row_heights=[0.45, 0.25, 0.30] if has_venue else [0.55, 0.45],
        specs=[[{}]] * (rows - 1) + [[{"secondary_y": True}]],
    )
    x = list(f["label"])
    custom, text, hover = _forward_hover(f)
    parity = (f["method"] == "parity").to_numpy()

    fig.add_trace(go.Scatter(
        x=x, y=f32(f["forward"]), mode="lines+markers", name="Forward used",
        line=dict(color=c["model"], width=2), marker=dict(size=7, color=np.where(parity, c["model"], c["violation"])),
        text=text, customdata=f32(custom), hovertemplate=hover,
    ), row=1, col=1)
    if has_venue:
        fig.add_trace(go.Scatter(
            x=x, y=f32(f["venue_forward"]), mode="markers", name="Venue forward",
            marker=dict(symbol="diamond-open", size=9, color=c["venue"], line=dict(width=1.5)),
            text=text, customdata=f32(custom), hovertemplate=hover,
        ), row=1, col=1)
    fig.add_trace(go.Scatter(
        x=x, y=f32(f["spot"]), mode="lines", name="Spot", line=dict(color=c["muted"], width=1, dash="dot"),
        hovertemplate="spot %{y:,.2f}<extra></extra>",
    ), row=1, col=1)

    if has_venue:
        diff = f["forward_vs_venue_bp"].to_numpy(dtype=float)
        fig.add_trace(go.Bar(
            x=x, y=f32(diff), name="Parity − venue", showlegend=False,
            marker=dict(color=np.where(diff >= 0, c["positive"], c["negative"])),
            text=text, textposition="none", customdata=f32(custom), hovertemplate=hover,
        ), row=2, col=1)
        fig.add_hline(y=0, line=dict(color=c["muted"], width=1), row=2, col=1)

    fig.add_trace(go.Bar(
        x=x, y=f32(f["rmse_bp"]), name="Parity RMSE", showlegend=True,
        marker=dict(color=np.where(parity, c["bid_ask"], c["violation"])),
        text=text, textposition="none", customdata=f32(custom), hovertemplate=hover,
    ), row=rows, col=1, secondary_y=False)
    fig.add_trace(go.Scatter(
        x=x, y=f32(100.0 * f["parity_band_share"].to_numpy(dtype=float)), mode="markers", name="Pairs in bid-ask",
        marker=dict(symbol="circle", size=8, color=c["venue"], line=dict(width=1, color=c["paper"])),
        text=text, customdata=f32(custom), hovertemplate=hover,
    ), row=rows, col=1, secondary_y=True)

    fig.update_yaxes(title_text=FORWARD_TITLE, tickformat=",.6~g", row=1, col=1)
    if has_venue:
        fig.update_yaxes(title_text=VENUE_DIFF_TITLE, zeroline=False, row=2, col=1)
    rmse_bp = f["rmse_bp"].to_numpy(dtype=float)
    positive = rmse_bp[np.isfinite(rmse_bp) & (rmse_bp > 0)]
    wide = positive.size > 1 and positive.max() > 30.0 * np.median(positive)  # one bad expiry hides the others
    fig.update_yaxes(title_text=PARITY_RMSE_TITLE.replace(")", ", log)") if wide else PARITY_RMSE_TITLE,
                     type="log" if wide else "linear", rangemode="normal" if wide else "tozero",
                     row=rows, col=1, secondary_y=False)
    fig.update_yaxes(title_text=BAND_SHARE_TITLE, range=[-5, 105], tickvals=[0, 50, 100], showgrid=False,
                     row=rows, col=1, secondary_y=True)
    fig.update_xaxes(type="category", automargin=True)
    fig.update_xaxes(title_text="Expiry", tickangle=-45 if len(x) > 14 else 0, row=rows, col=1)

    share = f["parity_band_share"].to_numpy(dtype=float)
    summary = (f"{int(parity.sum())} of {len(f)} forwards from put-call parity"
               + (f" · median parity RMSE {np.nanmedian(rmse_bp):.2g} bp" if np.isfinite(rmse_bp).any() else "")
               + (f" · {100 * np.nanmean(share):.0f}% of pairs in bid-ask" if np.isfinite(share).any() else ""))
    base_layout(
        fig, theme, height=660 if has_venue else 500, bargap=0.35,
        title=dict(text=f"{snapshot.underlying} forwards and parity<br><sup>{summary}</sup>", x=0.01, y=0.97),
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.02, yanchor="bottom"),
        margin=dict(l=70, r=70, t=80, b=60),
        hovermode="closest",
    )
    return fig


def _drop_counts(snapshot: QuoteSnapshot) -> pd.DataFrame:
    """Quotes per expiry (rows, ascending) and status (columns: "ok" then reasons in precedence order)."""
    q = snapshot.quotes
    counts = q.groupby(["expiry", "status"]).size().unstack(fill_value=0)
    order = ["ok"] + [r for r in REASONS if r in counts.columns] + sorted(
        set(counts.columns) - set(REASONS) - {"ok"})
    counts = counts.reindex(columns=[c for c in order if c in counts.columns]).sort_index()
    return counts


def drops_figure(snapshot: QuoteSnapshot, *, theme: Theme = "dark") -> go.Figure:
    """The DropReport: quotes dropped by reason (left) and fitted/dropped quotes per expiry (right).

    Reasons that are rules of the fit (:data:`BY_DESIGN_REASONS`: the in-the-money side of a strike, duplicates)
    are drawn muted; reasons that are problems of the data (no bid, crossed, wide spread, no implied vol...) in the
    violation colour. Hover gives each reason's description.
    """
    c = PALETTE[theme]
    report = snapshot.drops
    if report.n_input == 0:
        return empty_figure("No quotes in this snapshot", theme=theme)
    reasons = list(report.counts)
    counts = np.array([report.counts[r] for r in reasons], dtype=float)
    design = np.array([r in BY_DESIGN_REASONS for r in reasons])
    per_expiry = _drop_counts(snapshot)
    labels = list(expiry_labels(pd.DatetimeIndex(per_expiry.index)))

    fig = make_subplots(rows=1, cols=2, column_widths=[0.38, 0.62], horizontal_spacing=0.14)
    share = 100.0 * counts / report.n_input
    fig.add_trace(go.Bar(
        y=reasons[::-1], x=f32(counts[::-1]), orientation="h", showlegend=False, name="Dropped",
        marker=dict(color=np.where(design, c["bid_ask"], c["violation"])[::-1]),
        text=[f"{int(n)} ({s:.0f}%)" for n, s in zip(counts[::-1], share[::-1])], textposition="auto",
        customdata=[REASONS.get(r, r) for r in reasons[::-1]],
        hovertemplate="<b>%{y}</b>: %{x:.0f} quotes<br>%{customdata}<extra></extra>",
    ), row=1, col=1)

    groups = [
        ("Fitted", ["ok"], c["model"]),
        ("Dropped by rule (ITM side, near expiry, duplicate)",
         [r for r in per_expiry.columns if r in BY_DESIGN_REASONS], c["bid_ask"]),
        ("Dropped: data problem", [r for r in per_expiry.columns if r not in BY_DESIGN_REASONS and r != "ok"],
         c["violation"]),
    ]
    for name, columns, colour in groups:
        if not columns:
            continue
        values = per_expiry[columns].sum(axis=1).to_numpy(dtype=float)
        detail = [
            "<br>".join(f"{col}: {int(per_expiry.loc[idx, col])}" for col in columns if per_expiry.loc[idx, col])
            or "none"
            for idx in per_expiry.index
        ]
        fig.add_trace(go.Bar(
            x=labels, y=f32(values), name=name, marker=dict(color=colour), customdata=detail,
            hovertemplate=f"<b>%{{x}}</b> · {name}: %{{y:.0f}}<br>%{{customdata}}<extra></extra>",
        ), row=1, col=2)

    fig.update_xaxes(title_text="Dropped " + COUNT_TITLE.lower(), row=1, col=1)
    fig.update_yaxes(title_text="Reason dropped", row=1, col=1)
    fig.update_xaxes(title_text="Expiry", type="category", tickangle=-45 if len(labels) > 10 else 0, automargin=True,
                     row=1, col=2)
    fig.update_yaxes(title_text=COUNT_TITLE, row=1, col=2)
    base_layout(
        fig, theme, height=420, barmode="stack", bargap=0.3,
        title=dict(text=(f"{report.n_kept} of {report.n_input} quotes fitted · {report.n_dropped} dropped "
                         f"({int(counts[~design].sum())} for data problems)"), x=0.01),
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.02, yanchor="bottom"),
        margin=dict(l=110, r=20, t=90, b=60),
    )
    return fig
