"""The Backtest view: runs of :func:`calibration.backtest.backtest` over a history, ranked and compared.

Every function takes the runs (:class:`calibration.backtest.BacktestResult`) and their labels, same length, in
the order the user asked for them; run ``i`` keeps colour :data:`RUN_COLOURS` ``[i]`` on every figure, with a
dash per start (warm: solid, cold: dashed, regularised: dash-dot). Units: parameters in their own units (from the
model's :class:`calibration.models.base.ParamSpec`), errors in vol points (1 vol point = 0.01), hedge errors in vol
points of the market vega (``100 |error| / vega_market``), times UTC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from calibration.backtest import BUCKETS, REFERENCE_TENOR_DAYS, BacktestResult
from calibration.errors import CalibrationError
from calibration.models import get_model
from components.figures.common import base_layout, empty_figure, f32
from components.figures.greeks import nice_log_ticks
from components.figures.params import param_label
from components.figures.smiles import grid_shape
from components.theme import PALETTE, SERIES, Theme

#: One colour per run (at most 3 models x 3 starts): the compare colours first, then six more.
RUN_COLOURS: tuple[str, ...] = (*SERIES, "#da77f2", "#ff8787", "#3bc9db", "#ffd43b", "#a9e34b", "#f783ac")
#: Line dash of a run by its start.
START_DASH: dict[str, str] = {"warm": "solid", "cold": "dash", "regularised": "dashdot"}
#: Display labels of :data:`calibration.backtest.BUCKETS` (time to expiry at t+1).
BUCKET_TITLES: dict[str, str] = {"lt7d": "< 7d", "7_30d": "7-30d", "30_90d": "30-90d", "gt90d": "> 90d"}
#: Hedge orders of :attr:`BacktestResult.hedge` (``error_<kind>``) and their display names.
HEDGE_KINDS: dict[str, str] = {"first": "1st order", "second": "2nd order", "baseline": "sticky-strike BS"}
#: Percentiles (of |hedge error|) drawn as the whiskers of the hedge boxes.
WHISKER_PERCENTILES = (5.0, 95.0)
#: Distance between the boxes of one run on the hedge figure's run axis (runs are 1 apart).
BOX_STEP = 0.27
#: Smallest value drawn on a log axis (vol points, dimensionless drift).
LOG_FLOOR = 1e-6
#: Standard errors of the stability bands: a 95 % normal interval.
Z_BAND = 1.96

TIME_TITLE = "Snapshot time (UTC)"
RMSE_TITLE = "RMSE vs mid (vol points)"
DRIFT_TITLE = "Scaled drift (dimensionless, log)"
HEDGE_ERROR_TITLE = "|Hedge error| (vol points, log)"
HEDGE_RATIO_TITLE = "RMSE / baseline RMSE (ratio)"
BUCKET_TITLE = "Time to expiry at t+1 (days)"
#: Height (px) of one row of stability panels and the gap between rows; header and footer of the figure.
STABILITY_ROW_PX = 190
#: At most this many panels side by side (about 300 px each in the tab on a laptop screen).
STABILITY_MAX_COLUMNS = 3
#: Longest panel title (characters) before it is cut with an ellipsis.
PANEL_TITLE_CHARS = 44
STABILITY_GAP_PX = 70
STABILITY_HEADER_PX = 100
STABILITY_FOOTER_PX = 60
#: Height (px) of the title block of the out-of-sample and hedge figures.
HEADER_PX = 100
TIME_FORMAT = "%d %b<br>%H:%M"


# ---------------------------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------------------------

def run_start(result: BacktestResult) -> str:
    """The start of a run: "regularised" (lambda > 0), else "warm" or "cold"."""
    s = result.settings
    return "regularised" if s.regularisation > 0 else "warm" if s.warm_start else "cold"


def _start_text(result: BacktestResult) -> str:
    s = result.settings
    text = "warm" if s.warm_start else "cold"
    return text + (f", λ={s.regularisation:g}" if s.regularisation > 0 else "")


def _model_label(name: str) -> str:
    try:
        return str(get_model(name).label)
    except CalibrationError:
        return name.upper()


def _check(runs: Sequence[BacktestResult], labels: Sequence[str]) -> None:
    if len(runs) != len(labels):
        raise ValueError(f"{len(runs)} runs but {len(labels)} labels")


def _ok(table: pd.DataFrame) -> pd.DataFrame:
    return table.loc[table["status"] == "ok"] if len(table) else table


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=float) if name in frame and len(frame) else np.full(len(frame), np.nan)


def _times(table: pd.DataFrame) -> pd.DatetimeIndex:
    """Snapshot time of every row (UTC); an unreadable file has none: linear in the row index between its
    neighbours (extrapolated at the ends with the median step)."""
    asof = pd.DatetimeIndex(pd.to_datetime(table["asof"], utc=True)) if len(table) else pd.DatetimeIndex([], tz="UTC")
    asof = asof.as_unit("ns")  # asi8 below: nanoseconds whatever the unit the table came with
    known = ~asof.isna()
    if known.all() or not known.any():
        return asof
    i = table["i"].to_numpy(dtype=float)
    ns = asof[known].asi8.astype(float)
    step = float(np.median(np.diff(ns) / np.diff(i[known]))) if known.sum() > 1 else 3.6e12
    x = np.interp(i, i[known], ns)
    x = np.where(i < i[known].min(), ns[0] + (i - i[known].min()) * step, x)
    x = np.where(i > i[known].max(), ns[-1] + (i - i[known].max()) * step, x)
    return pd.DatetimeIndex(pd.to_datetime(x.astype("int64"), utc=True))


def _time_text(times: pd.DatetimeIndex) -> list[str]:
    return [t.strftime("%Y-%m-%d %H:%M") for t in times]


def _style(i: int, result: BacktestResult) -> dict[str, Any]:
    return dict(color=RUN_COLOURS[i % len(RUN_COLOURS)], dash=START_DASH[run_start(result)])


def _bad_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table.loc[table["status"] != "ok"] if len(table) else table


def _no_fit_reason(runs: Sequence[BacktestResult]) -> str:
    """Why nothing can be drawn: the first bad row's reason, or the cancellation."""
    for r in runs:
        bad = _bad_rows(r.table)
        if len(bad):
            row = bad.iloc[0]
            return f" (e.g. {row['file']}: {row['status']}: {str(row['reason'])[:90]})"
    return " (the run was cancelled)" if any(r.cancelled for r in runs) else ""


# ---------------------------------------------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------------------------------------------

#: Columns of :func:`ranking_records` (field, header, d3 number format) for :func:`components.tables.column_defs`.
RANKING_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("rank", "Rank", "d"),
    ("run", "Run", None),
    ("model", "Model", None),
    ("start", "Start", None),
    ("converged", "Converged", ".0%"),
    ("snapshots", "Snapshots ok / bad", None),
    ("is_rmse", "In-sample RMSE t+1 (vol pts)", ".3f"),
    ("oos_rmse", "Out-of-sample RMSE t+1 (vol pts)", ".3f"),
    ("oos_is_ratio", "OOS / IS", ".2f"),
    ("drift", "Drift per step (scaled)", ".3~g"),
    ("hedge_median", "Hedge median |err| 2nd order (vol pts)", ".3f"),
    ("hedge_ratio", "Hedge RMSE / baseline (2nd order)", ".3f"),
    ("fit_time", "Fit time (s)", ",.2f"),
    ("best", "Best at", None),
)
#: Ranking fields where lower is better (the "best" marker) -> short name in the "Best at" column.
_LOWER_IS_BETTER: dict[str, str] = {
    "oos_rmse": "out-of-sample", "is_rmse": "in-sample", "oos_is_ratio": "OOS/IS", "drift": "drift",
    "hedge_median": "hedge median", "hedge_ratio": "hedge ratio", "fit_time": "fit time",
}


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def ranking_records(runs: Sequence[BacktestResult], labels: Sequence[str]) -> list[dict[str, Any]]:
    """One row per run, ranked by mean out-of-sample RMSE (then the hedge median error; runs without an
    out-of-sample error last).

    Returns
    -------
    list of dict
        The fields of :data:`RANKING_COLUMNS`: ``rank`` (1 = best), ``run`` (its label), ``model``, ``start``,
        ``converged`` (share of the fitted snapshots, 0..1), ``snapshots`` ("47 / 1"), ``is_rmse`` and
        ``oos_rmse`` (mean over the steps that have both, vol points; see
        :meth:`calibration.backtest.BacktestResult.summary`), ``oos_is_ratio``, ``drift`` (mean scaled drift per
        step, dimensionless), ``hedge_median`` (median ``100 |error| / vega_market`` of the 2nd-order hedge, vol
        points), ``hedge_ratio`` (its RMSE over the sticky-strike baseline's), ``fit_time`` (sum, seconds) and
        ``best`` (the metrics where this run is strictly the best of two or more, comma separated). Numbers are
        None where undefined (JSON-safe).
    """
    _check(runs, labels)
    rows = []
    for r, label in zip(runs, labels):
        s = r.summary()
        n_bad = sum(s[f"n_{k}"] for k in ("unreadable", "empty", "failed"))
        oos, is_ = s["oos_rmse_vol_points"], s["is_rmse_vol_points"]
        rows.append({
            "run": label, "model": _model_label(r.settings.calibration.model), "start": _start_text(r),
            "converged": _finite(s["converged_share"]),
            "snapshots": f"{s['n_ok']:.0f} / {n_bad:.0f}" + (" (cancelled)" if r.cancelled else ""),
            "is_rmse": _finite(is_), "oos_rmse": _finite(oos),
            "oos_is_ratio": _finite(oos / is_) if is_ > 0 else None,
            "drift": _finite(s["drift"]),
            "hedge_median": _finite(s["hedge_median_vol_points_second"]),
            "hedge_ratio": _finite(s["hedge_ratio_second"]),
            "fit_time": _finite(s["fit_elapsed_s"]),
        })
    key = lambda row: (row["oos_rmse"] is None, row["oos_rmse"] or 0.0,  # noqa: E731
                       row["hedge_median"] is None, row["hedge_median"] or 0.0)
    rows.sort(key=key)
    for field, name in _LOWER_IS_BETTER.items():
        values = [row[field] for row in rows if row[field] is not None]
        if len(values) >= 2 and min(values) < max(values) and values.count(min(values)) == 1:
            for row in rows:
                if row[field] == min(values):
                    row.setdefault("_best", []).append(name)
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
        row["best"] = ", ".join(row.pop("_best", []))
    order = [c[0] for c in RANKING_COLUMNS]
    return [{k: row[k] for k in order} for row in rows]


# ---------------------------------------------------------------------------------------------------------------
# stability
# ---------------------------------------------------------------------------------------------------------------

#: Units of parameters, recognised in a ParamSpec's ``doc`` (first match wins); anything else: "model units".
_UNIT_PHRASES: tuple[tuple[str, str], ...] = (
    ("variance per unit log-moneyness", "total variance per unit k"),
    ("variance x years", "variance × years"),
    ("per sqrt(year)", "per √year"),
    ("jumps per year", "jumps per year"),
    ("per year", "per year"),
    ("log-moneyness", "log-moneyness"),
    ("log jump", "log units"),
    ("dimensionless", "dimensionless"),
    ("correlation", "dimensionless"),
    ("decimal", "decimal"),
)


def param_unit(doc: str) -> str:
    """Unit of a parameter from its ParamSpec ``doc`` ("mean-reversion speed, per year" -> "per year")."""
    text = doc.lower()
    return next((unit for phrase, unit in _UNIT_PHRASES if phrase in text), "model units")


#: Legend rank of the marks (after the runs, whose rank is their index).
MARK_RANK = 100
#: ``meta`` of the traces of the drift panel (a parameter panel's traces carry :func:`panel_key`).
DRIFT_KEY = "drift"


def panel_key(model: str, name: str) -> str:
    """``meta`` of the traces of a parameter's panel in :func:`stability_figure`: "heston/kappa"."""
    return f"{model}/{name}"


@dataclass(frozen=True)
class _Panel:
    model: str
    name: str
    title: str
    axis_title: str


def _panels(runs: Sequence[BacktestResult]) -> list[_Panel]:
    """One panel per (model, parameter) of the runs' tables, in the order of the runs and of the columns."""
    out: dict[tuple[str, str], _Panel] = {}
    for r in runs:
        model = r.settings.calibration.model
        try:
            docs = {p.name: p.doc for p in get_model(model).params}
        except (CalibrationError, ValueError, TypeError):
            docs = {}
        for column in r.table.columns:
            if not column.startswith("param_") or (model, column[6:]) in out:
                continue
            name = column[6:]
            if not np.isfinite(_col(_ok(r.table), column)).any():
                continue
            doc = docs.get(name, "")
            meaning = doc.split(",")[0].split(" (")[0].strip()
            symbol = param_label(name)
            title = f"{_model_label(model)} · {symbol}" + (f" · {meaning}" if meaning else "")
            title = title if len(title) <= PANEL_TITLE_CHARS else title[: PANEL_TITLE_CHARS - 1].rstrip() + "…"
            out[(model, name)] = _Panel(model, name, title, f"{symbol} ({param_unit(doc)})")
    return list(out.values())


def _range(values: Sequence[np.ndarray], *, log: bool = False, pad: float = 0.08) -> tuple[float, float] | None:
    """Axis range covering the finite values (log10 units on a log axis), padded; None without values."""
    v = np.concatenate([np.asarray(a, dtype=float).ravel() for a in values]) if values else np.empty(0)
    v = v[np.isfinite(v) & ((v > 0) if log else True)]
    if v.size == 0:
        return None
    if log:
        v = np.log10(v)
    lo, hi = float(v.min()), float(v.max())
    span = hi - lo if hi > lo else max(abs(hi), 1e-3 if not log else 0.5)
    return lo - pad * span, hi + pad * span


def _band_polygons(x: Sequence[str], lo: np.ndarray, hi: np.ndarray) -> tuple[list[Any], list[Any]]:
    """The closed outline of a band over each run of consecutive finite points (upper edge forward, lower edge
    back), the runs separated by ``None`` so that a gap (a bad snapshot) leaves a gap, not a bridge."""
    finite = np.isfinite(lo) & np.isfinite(hi)
    xs: list[Any] = []
    ys: list[Any] = []
    edges = np.flatnonzero(np.diff(np.r_[0, finite.astype(int), 0]))
    for start, stop in zip(edges[::2], edges[1::2]):
        rows = range(start, stop)
        if xs:
            xs.append(None)
            ys.append(None)
        xs += [x[k] for k in rows] + [x[k] for k in reversed(rows)]
        ys += [float(hi[k]) for k in rows] + [float(lo[k]) for k in reversed(rows)]
    return xs, ys


def _band_limits(value: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """What the y range of a parameter panel shows: the values and the bands, except bands so wide that they
    would flatten the values (those run off the panel; the hover still gives them)."""
    v = value[np.isfinite(value)]
    if v.size == 0:
        return [value]
    spread = max(float(v.max() - v.min()), 1e-6 * max(1.0, float(np.abs(v).max())))
    keep = np.isfinite(lo) & np.isfinite(hi) & (hi - lo <= 6.0 * spread)
    return [value, lo[keep], hi[keep]]


def stability_figure(runs: Sequence[BacktestResult], labels: Sequence[str], *, theme: Theme = "dark") -> go.Figure:
    """Parameters of every run against snapshot time, with their +/-1.96 standard-error band, and the drift.

    One panel per parameter of each model (slice models: the expiry nearest
    :data:`calibration.backtest.REFERENCE_TENOR_DAYS`, as in the backtest table), one colour per run (dash by
    start); fits that did not converge are circled, bad snapshots (status other than "ok") are crosses along the
    bottom of every panel with their reason in the hover. A band too wide for its panel runs off it. The last
    panel: the scaled parameter drift per step of every run (dimensionless, log axis).
    """
    _check(runs, labels)
    c = PALETTE[theme]
    if not runs:
        return empty_figure("Run a backtest to see how the parameters move from snapshot to snapshot", theme=theme)
    if not any(len(_ok(r.table)) >= 2 for r in runs):
        return empty_figure("Parameter stability needs at least two fitted snapshots in a run"
                            + _no_fit_reason(runs), theme=theme)
    panels = _panels(runs)
    n_panels = len(panels) + 1
    n_cols = min(grid_shape(n_panels)[1], STABILITY_MAX_COLUMNS)
    n_rows = math.ceil(n_panels / n_cols)
    plot_px = n_rows * STABILITY_ROW_PX + (n_rows - 1) * STABILITY_GAP_PX
    fig = make_subplots(
        rows=n_rows, cols=n_cols, subplot_titles=[p.title for p in panels] + ["Parameter drift per step, all runs"],
        vertical_spacing=STABILITY_GAP_PX / plot_px if n_rows > 1 else 0.0, horizontal_spacing=0.07,
        specs=[[{} if r * n_cols + k < n_panels else None for k in range(n_cols)] for r in range(n_rows)],
    )
    cell = lambda j: dict(row=j // n_cols + 1, col=j % n_cols + 1)  # noqa: E731
    frames = [(r.table, _times(r.table)) for r in runs]
    shown: set[str] = set()

    def legend(name: str, rank: int) -> dict[str, Any]:
        first = name not in shown
        shown.add(name)
        return dict(name=name, legendgroup=name, showlegend=first, legendrank=rank)

    def bad_marks(j: int, key: str, y: float, log: bool, model: str | None = None) -> None:
        """Crosses at height ``y`` of panel ``j`` for the bad rows of the runs (of ``model`` when given)."""
        for i, (r, label) in enumerate(zip(runs, labels)):
            if model is not None and r.settings.calibration.model != model:
                continue
            table, times = frames[i]
            bad = table["status"].to_numpy() != "ok" if len(table) else np.zeros(0, bool)
            if not bad.any():
                continue
            text = [f"{label} · {f}: {s}<br>{str(reason)[:160]}" for f, s, reason in
                    zip(table.loc[bad, "file"], table.loc[bad, "status"], table.loc[bad, "reason"])]
            fig.add_trace(go.Scatter(
                x=_time_text(times[bad]), y=f32(np.full(int(bad.sum()), 10 ** y if log else y)), mode="markers",
                marker=dict(symbol="x-thin", size=11, line=dict(width=2.5, color=c["violation"])),
                text=text, hovertemplate="%{x} UTC<br>%{text}<extra>bad snapshot</extra>", meta=key,
                **legend("bad snapshot (cross)", MARK_RANK + 1),
            ), **cell(j))

    for j, panel in enumerate(panels):
        column, key = f"param_{panel.name}", panel_key(panel.model, panel.name)
        extents: list[np.ndarray] = []
        for i, (r, label) in enumerate(zip(runs, labels)):
            if r.settings.calibration.model != panel.model or column not in r.table:
                continue
            table, times = frames[i]
            ok = (table["status"] == "ok").to_numpy()
            value = _col(table, column)  # NaN on the bad rows: they have no fit
            se = _col(table, f"se_{panel.name}")
            lo, hi = value - Z_BAND * se, value + Z_BAND * se
            x = _time_text(times)
            style = _style(i, r)
            fill = _rgba(style["color"], 0.16)
            band_x, band_y = _band_polygons(x, lo, hi)
            fig.add_trace(go.Scatter(x=band_x, y=band_y, mode="lines", line=dict(width=0), fill="toself",
                                     fillcolor=fill, hoverinfo="skip", name=f"{label} ±{Z_BAND} se",
                                     legendgroup=label, showlegend=False, meta=key), **cell(j))
            fig.add_trace(go.Scatter(
                x=x, y=f32(value), mode="lines+markers", line=dict(width=1.8, **style), marker=dict(size=3.5),
                customdata=f32(Z_BAND * se), connectgaps=False, meta=key,
                hovertemplate=(f"{label}<br>%{{x}} UTC<br>{param_label(panel.name)} = %{{y:.5~g}} "
                               "± %{customdata:.3~g} (1.96 se)<extra></extra>"),
                **legend(label, i),
            ), **cell(j))
            failed = ok & (table["success"].astype(object).to_numpy() == False)  # noqa: E712
            if failed.any():
                fig.add_trace(go.Scatter(
                    x=[x[k] for k in np.flatnonzero(failed)], y=f32(value[failed]), mode="markers",
                    marker=dict(symbol="circle-open", size=11, color=c["violation"], line=dict(width=2)),
                    text=[f"{label}: {str(m)[:160]}" for m in table.loc[failed, "message"]],
                    hovertemplate="%{x} UTC<br>not converged: %{text}<extra></extra>", meta=key,
                    **legend("not converged (circle)", MARK_RANK),
                ), **cell(j))
            extents += _band_limits(value, lo, hi)
        y_range = _range(extents)
        if y_range is not None:
            fig.update_yaxes(range=list(y_range), **cell(j))
            bad_marks(j, key, y_range[0] + 0.04 * (y_range[1] - y_range[0]), log=False, model=panel.model)
        fig.update_yaxes(title=dict(text=panel.axis_title, font=dict(size=11), standoff=4), **cell(j))

    j = len(panels)
    drifts = []
    for i, (r, label) in enumerate(zip(runs, labels)):
        table, times = frames[i]
        drift = _col(table, "drift")
        drift = np.where(drift > 0, drift, np.nan)
        drifts.append(drift)
        fig.add_trace(go.Scatter(
            x=_time_text(times), y=f32(drift), mode="lines+markers", line=dict(width=1.5, **_style(i, r)),
            marker=dict(size=3.5), hovertemplate=f"{label}<br>%{{x}} UTC<br>drift %{{y:.3~g}}<extra></extra>",
            meta=DRIFT_KEY,
            **legend(label, i),
        ), **cell(j))
    y_range = _range(drifts, log=True)
    fig.update_yaxes(type="log", title=dict(text=DRIFT_TITLE, font=dict(size=11), standoff=4),
                     **({"range": list(y_range), **_log_ticks(*y_range)} if y_range else {}), **cell(j))
    if y_range is not None:
        bad_marks(j, DRIFT_KEY, y_range[0] + 0.04 * (y_range[1] - y_range[0]), log=True)

    fig.update_xaxes(matches="x", tickformat=TIME_FORMAT, nticks=5, tickfont=dict(size=10), showticklabels=True)
    for k in range(n_panels):  # a time title under the lowest panel of each column
        if k + n_cols >= n_panels:
            fig.update_xaxes(title=dict(text=TIME_TITLE, font=dict(size=11), standoff=4), **cell(k))
    fig.update_annotations(font=dict(size=12))
    slice_models = [_model_label(p.model) for p in panels if _kind(p.model) == "slice"]
    tenor = (f" · {', '.join(dict.fromkeys(slice_models))}: the expiry nearest {REFERENCE_TENOR_DAYS:.0f} days"
             if slice_models else "")
    sub = (f"band: ±{Z_BAND} standard errors{tenor} · circle: fit did not converge · cross: bad snapshot "
           "(hover for the reason)")
    height = STABILITY_HEADER_PX + plot_px + STABILITY_FOOTER_PX
    return base_layout(
        fig, theme, margin=dict(l=70, r=20, t=STABILITY_HEADER_PX, b=STABILITY_FOOTER_PX),
        **_header(f"Parameter stability · {len(runs)} run(s)", sub, height, "backtest-stability"),
    )


def _log_ticks(lo: float, hi: float) -> dict[str, Any]:
    """1-2-5 ticks of a log axis whose range is ``lo .. hi`` in log10 units (plotly's own minor labels read
    "2", "5")."""
    values = nice_log_ticks(10.0 ** lo, 10.0 ** hi)
    return dict(tickvals=values, ticktext=[f"{v:g}" for v in values]) if values else {}


def _header(title: str, sub: str, height: int, uirevision: str) -> dict[str, Any]:
    """Layout of a figure's header: the title and its subtitle on the left, the legend on a row under them."""
    return dict(
        title=dict(text=f"{title}<br><sup>{sub}</sup>", x=0.01, xanchor="left", y=1.0, yanchor="top",
                   yref="container", pad=dict(t=16), font=dict(size=14)),
        legend=dict(orientation="h", x=0.01, xanchor="left", xref="container", y=1.0 - 50.0 / height,
                    yanchor="top", yref="container", font=dict(size=11)),
        height=height, hovermode="closest", uirevision=uirevision,
    )


def _kind(model: str) -> str:
    try:
        return str(getattr(get_model(model), "kind", ""))
    except CalibrationError:
        return ""


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha})"


# ---------------------------------------------------------------------------------------------------------------
# out-of-sample
# ---------------------------------------------------------------------------------------------------------------

def _steps(table: pd.DataFrame) -> pd.DataFrame:
    """The good rows with both an out-of-sample and an in-sample RMSE (the steps the statistics use)."""
    ok = _ok(table)
    if not len(ok):
        return ok
    return ok.loc[np.isfinite(_col(ok, "oos_rmse_vol_points")) & np.isfinite(_col(ok, "is_rmse_vol_points"))]


def _nanmean(values: np.ndarray) -> tuple[float, int]:
    v = values[np.isfinite(values)]
    return (float(v.mean()) if v.size else math.nan), int(v.size)


def out_of_sample_figure(runs: Sequence[BacktestResult], labels: Sequence[str], *,
                         theme: Theme = "dark") -> go.Figure:
    """Out-of-sample against in-sample error at t+1, per expiry bucket and over time.

    Left: per bucket of :data:`calibration.backtest.BUCKETS` (time to expiry at t+1), the mean over the steps of
    each run's out-of-sample RMSE (parameters of t on the quotes of t+1; solid bars) and in-sample RMSE (the fit
    at t+1 on the same quotes; hatched bars), vol points. Right: both per step against time (out-of-sample solid,
    in-sample dotted).
    """
    _check(runs, labels)
    if not runs:
        return empty_figure("Run a backtest to compare out-of-sample and in-sample errors", theme=theme)
    steps = [_steps(r.table) for r in runs]
    if not any(len(s) for s in steps):
        return empty_figure("No out-of-sample step yet: it needs two consecutive fitted snapshots"
                            + _no_fit_reason(runs), theme=theme)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.09,
                        subplot_titles=["Mean RMSE per expiry bucket", "RMSE per step"])
    buckets = [BUCKET_TITLES.get(b, b) for b in BUCKETS]
    for i, (r, label, s) in enumerate(zip(runs, labels, steps)):
        style = _style(i, r)
        for kind, name, pattern in (("oos", "out-of-sample", ""), ("is", "in-sample", "/")):
            means, counts = zip(*(_nanmean(_col(s, f"{kind}_rmse_{b}")) for b in BUCKETS))
            fig.add_trace(go.Bar(
                x=buckets, y=f32(means), name=f"{label} · {name}", legendgroup=label, offsetgroup=f"{i}{kind}",
                marker=dict(color=style["color"] if kind == "oos" else _rgba(style["color"], 0.35),
                            line=dict(color=style["color"], width=1), pattern=dict(shape=pattern)),
                customdata=np.asarray(counts), showlegend=False,
                hovertemplate=(f"{label} · {name}<br>%{{x}}: mean RMSE %{{y:.3f}} vol pts over %{{customdata}} "
                               "step(s)<extra></extra>"),
            ), row=1, col=1)
        # every row of the run, NaN off the steps: a bad snapshot is a gap in the line, not a straight join
        table = r.table
        x = _time_text(_times(table))
        on_step = table.index.isin(s.index)
        for kind, name, dash, width in (("oos", "out-of-sample", style["dash"], 2.0), ("is", "in-sample", "dot", 1.3)):
            fig.add_trace(go.Scatter(  # one legend entry per run: the line styles are in the subtitle
                x=x, y=f32(np.where(on_step, _col(table, f"{kind}_rmse_vol_points"), np.nan)), mode="lines+markers",
                connectgaps=False,
                name=label if kind == "oos" else f"{label} · {name}", legendgroup=label, showlegend=kind == "oos",
                line=dict(color=style["color"], dash=dash, width=width),
                marker=dict(size=3.5, symbol="circle" if kind == "oos" else "circle-open"),
                hovertemplate=f"{label} · {name}<br>%{{x}} UTC<br>RMSE %{{y:.3f}} vol pts<extra></extra>",
            ), row=1, col=2)
    fig.update_xaxes(title=dict(text=BUCKET_TITLE, standoff=6), type="category", row=1, col=1)
    fig.update_yaxes(title=dict(text=RMSE_TITLE, standoff=4), rangemode="tozero", row=1, col=1)
    fig.update_xaxes(title=dict(text=TIME_TITLE, standoff=6), tickformat=TIME_FORMAT, nticks=8, row=1, col=2)
    fig.update_yaxes(title=dict(text=RMSE_TITLE, standoff=4), rangemode="tozero", row=1, col=2)
    fig.update_annotations(font=dict(size=12))
    sub = ("out-of-sample: the parameters of t on the quotes of t+1 (solid); in-sample: the fit at t+1 on the "
           "same quotes (hatched bars, dotted lines)")
    return base_layout(
        fig, theme, barmode="group", bargap=0.2, bargroupgap=0.05, margin=dict(l=70, r=20, t=HEADER_PX, b=60),
        **_header(f"Out-of-sample error at t+1 · {len(runs)} run(s)", sub, 520, "backtest-oos"),
    )


# ---------------------------------------------------------------------------------------------------------------
# hedge
# ---------------------------------------------------------------------------------------------------------------

def hedge_errors_vol_points(result: BacktestResult, kind: str) -> np.ndarray:
    """``100 |error_<kind>| / vega_market`` of the run's hedge rows (vol points), finite values only."""
    h = result.hedge
    if not len(h):
        return np.empty(0)
    with np.errstate(all="ignore"):
        v = np.abs(100.0 * _col(h, f"error_{kind}") / _col(h, "vega_market"))
    return v[np.isfinite(v)]


def hedge_figure(runs: Sequence[BacktestResult], labels: Sequence[str], *, theme: Theme = "dark") -> go.Figure:
    """How well each run's parameters hedge an option from one snapshot to the next.

    Left: the distribution of ``|hedge error|`` in vol points (``100 |error| / vega_market``) per run and order:
    1st order (theta, delta, vega on the model's sticky-strike vol change), 2nd order (+ gamma, vanna, volga) and
    the sticky-strike Black-Scholes baseline (market vol held), as boxes of precomputed quartiles with whiskers at
    the :data:`WHISKER_PERCENTILES`, log axis, medians written above. Right: the RMSE (quote currency) of the 1st
    and 2nd order hedges over the baseline's, per run (below 1: better than sticky strike).
    """
    _check(runs, labels)
    c = PALETTE[theme]
    if not runs:
        return empty_figure("Run a backtest to see the hedge test", theme=theme)
    if not any(len(r.hedge) for r in runs):
        return empty_figure("No hedge step yet: it needs an option quoted in two consecutive fitted snapshots"
                            + _no_fit_reason(runs), theme=theme)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.64, 0.36], horizontal_spacing=0.1,
                        subplot_titles=["|Hedge error| per option and step", "Hedge RMSE vs sticky-strike baseline"])
    kind_colours = {"first": c["model"], "second": "#69db7c" if theme == "dark" else "#2f9e44",
                    "baseline": c["muted"]}
    offsets = dict(zip(HEDGE_KINDS, (-BOX_STEP, 0.0, BOX_STEP)))
    tops = []
    for kind, kind_name in HEDGE_KINDS.items():
        where, stats = [], []
        for i, r in enumerate(runs):
            v = hedge_errors_vol_points(r, kind)
            if v.size:
                where.append(i + offsets[kind])
                stats.append((*np.percentile(v, [WHISKER_PERCENTILES[0], 25.0, 50.0, 75.0, WHISKER_PERCENTILES[1]]),
                              np.mean(v), v.size))
        if not stats:
            continue
        s = np.asarray(stats, dtype=float)
        s[:, :6] = np.maximum(s[:, :6], LOG_FLOOR)
        fig.add_trace(go.Box(
            x=f32(where), lowerfence=f32(s[:, 0]), q1=f32(s[:, 1]), median=f32(s[:, 2]), q3=f32(s[:, 3]),
            upperfence=f32(s[:, 4]), mean=f32(s[:, 5]), name=kind_name, legendgroup=kind_name, width=0.8 * BOX_STEP,
            marker=dict(color=kind_colours[kind]), line=dict(color=kind_colours[kind], width=1.5),
            fillcolor=_rgba(kind_colours[kind], 0.3), boxpoints=False, hoverinfo="y",
        ), row=1, col=1)
        fig.add_trace(go.Scatter(
            x=f32(where), y=f32(s[:, 4]), mode="text", text=[f"{m:.2f}" for m in s[:, 2]],
            textposition="top center", textfont=dict(size=11, color=kind_colours[kind]),
            customdata=s[:, [2, 1, 3, 6]], name=f"{kind_name} median", legendgroup=kind_name, showlegend=False,
            hovertemplate=(f"{kind_name}<br>median %{{customdata[0]:.3f}} vol pts (quartiles %{{customdata[1]:.3f}} "
                           "– %{customdata[2]:.3f}) over %{customdata[3]:,.0f} option-steps<extra></extra>"),
        ), row=1, col=1)
        tops.append(s[:, [0, 4]])
    if tops:
        both = np.concatenate(tops)
        lo, hi = np.log10(both[:, 0].min()), np.log10(both[:, 1].max())
        y_range = [lo - 0.08 * (hi - lo), hi + 0.18 * (hi - lo)]  # room for the medians above the whiskers
        fig.update_yaxes(range=y_range, **_log_ticks(*y_range), row=1, col=1)
    fig.update_yaxes(type="log", title=dict(text=HEDGE_ERROR_TITLE, standoff=4), row=1, col=1)
    fig.update_xaxes(title=dict(text="Run (boxes: 1st order · 2nd order · sticky-strike BS)", standoff=6),
                     tickvals=list(range(len(runs))), ticktext=list(labels), range=[-0.6, len(runs) - 0.4],
                     showgrid=False, zeroline=False, row=1, col=1)

    summaries = [r.summary() for r in runs]
    for kind in ("first", "second"):
        kind_name = HEDGE_KINDS[kind]
        ratios = np.array([s[f"hedge_ratio_{kind}"] for s in summaries], dtype=float)
        fig.add_trace(go.Bar(  # hanging from the baseline: below 1 is better than sticky strike
            x=list(labels), y=f32(ratios - 1.0), base=1.0, name=f"{kind_name} / baseline", legendgroup=kind_name,
            showlegend=False, marker=dict(color=kind_colours[kind]), customdata=f32(ratios),
            text=[f"{v:.3f}" if np.isfinite(v) else "" for v in ratios], textposition="outside",
            textfont=dict(size=10),
            hovertemplate=f"%{{x}}<br>{kind_name}: RMSE / baseline RMSE %{{customdata:.4f}}<extra></extra>",
        ), row=1, col=2)
    finite = [v for s in summaries for v in (s["hedge_ratio_first"], s["hedge_ratio_second"]) if np.isfinite(v)]
    if finite:
        lo, hi = min(finite + [1.0]), max(finite + [1.0])
        span = max(hi - lo, 0.01)
        fig.update_yaxes(range=[lo - 0.35 * span, hi + 0.35 * span], row=1, col=2)
    fig.add_hline(y=1.0, line=dict(color=c["muted"], dash="dash", width=1), row=1, col=2,
                  annotation=dict(text="baseline = 1", font=dict(size=10, color=c["muted"]),
                                  xanchor="right", x=1.0, yanchor="bottom"))
    fig.update_yaxes(title=dict(text=HEDGE_RATIO_TITLE, standoff=4), row=1, col=2)
    fig.update_xaxes(title=dict(text="Run", standoff=6), type="category", row=1, col=2)
    fig.update_annotations(font=dict(size=12))
    n_opts = " / ".join(dict.fromkeys(f"{len(r.hedge):,}" for r in runs))
    lo_p, hi_p = WHISKER_PERCENTILES
    sub = (f"boxes: quartiles, whiskers {lo_p:.0f}th–{hi_p:.0f}th percentile, dashed: mean, number: median · "
           f"{n_opts} option-steps · 2nd order adds gamma, vanna, volga; baseline holds the market vol")
    return base_layout(
        fig, theme, barmode="group", bargap=0.35, margin=dict(l=70, r=20, t=HEADER_PX, b=60),
        **_header(f"Hedge test t → t+1 · {len(runs)} run(s)", sub, 540, "backtest-hedge"),
    )


__all__ = [
    "DRIFT_KEY", "RANKING_COLUMNS", "hedge_errors_vol_points", "hedge_figure", "out_of_sample_figure", "panel_key",
    "param_unit", "ranking_records", "run_start", "stability_figure",
]
