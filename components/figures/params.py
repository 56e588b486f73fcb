"""The Parameters view: parameter table, fit statistics, parameter correlations and sensitivities."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from calibration.calibrate import quote_arrays
from calibration.errors import CalibrationError
from calibration.models import get_model
from calibration.models.base import ParamSpec
from calibration.result import CalibrationResult
from calibration.sensitivity import sensitivity
from calibration.snapshot import QuoteSnapshot
from components.figures.common import (
    DAYS_PER_YEAR,
    base_layout,
    call_delta,
    empty_figure,
    expiry_labels,
    f32,
    failure_note,
    has_model,
)
from components.figures.residuals import BUCKET_LABELS, delta_bucket
from components.theme import PALETTE, RESIDUAL_SCALE, Theme

# ---------------------------------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------------------------------

#: Display symbol of common parameter names (anything else is shown as its name).
PARAM_SYMBOLS: dict[str, str] = {
    "alpha": "α", "beta": "β", "rho": "ρ", "nu": "ν", "sigma": "σ", "kappa": "κ", "theta": "θ", "v0": "v₀",
    "eta": "η", "gamma": "γ", "lambda": "λ", "lam": "λ", "mu_j": "μⱼ", "sigma_j": "σⱼ", "delta_j": "δⱼ",
    "delta": "δ",
}

CORRELATION_TITLE = "Correlation (−1 … 1)"
PAIR_TITLE = "Parameter pair"
PARAM_TITLE = "Parameter"


_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def param_label(name: str) -> str:
    """Display symbol of a parameter: "rho" -> "ρ", "theta_1" -> "θ₁", "dtheta_12" -> "Δθ₁₂", "eta_frac" ->
    "η_frac" (unknown names unchanged)."""
    if name in PARAM_SYMBOLS:
        return PARAM_SYMBOLS[name]
    head, _, tail = name.rpartition("_")
    if head and tail.isdigit():
        delta = head.startswith("d") and head[1:] in PARAM_SYMBOLS
        base = PARAM_SYMBOLS.get(head[1:] if delta else head, head[1:] if delta else head)
        return ("Δ" if delta else "") + base + tail.translate(_SUBSCRIPT)
    if head in PARAM_SYMBOLS:
        return f"{PARAM_SYMBOLS[head]}_{tail}"
    return name


def _model(result: CalibrationResult) -> Any | None:
    """The fitted model, rebuilt with its fields (``None`` when it is not installed or the fields do not fit)."""
    try:
        return get_model(result.model, result.model_options())
    except CalibrationError:
        return None


def model_label(result: CalibrationResult) -> str:
    """Display name of the result's model ("Heston"), its key when the model is not installed."""
    model = _model(result)
    return str(model.label) if model is not None else result.model.upper()


def _specs(result: CalibrationResult) -> dict[str, ParamSpec]:
    model = _model(result)
    return {} if model is None else {s.name: s for s in model.params}


def _expiry_index(result: CalibrationResult) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(pd.Series(list(result.expiries), dtype=object), utc=True, errors="coerce"))


def _expiry_labels(result: CalibrationResult) -> tuple[str, ...]:
    """Labels of the parameter rows of a slice-model result ("27 Nov 26"; "t=0.0192" when the date is unknown)."""
    labels = expiry_labels(_expiry_index(result))
    return tuple(lab if lab != "?" else f"t={t:.4f}" for lab, t in zip(labels, result.expiry_ttm))


def failure_suffix(result: CalibrationResult | None, theme: Theme) -> str:
    """" · Fit did not converge: ..." in the violation colour, for a subtitle; "" for a converged fit."""
    note = failure_note(result)
    return f" · <span style='color:{PALETTE[theme]['violation']}'>{note}</span>" if note else ""


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


# ---------------------------------------------------------------------------------------------------------------
# parameter table
# ---------------------------------------------------------------------------------------------------------------

#: Columns of :func:`params_records` (field, header, d3 number format) for :func:`components.tables.column_defs`.
PARAM_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("expiry", "Expiry", None),
    ("days", "Days", ",.1f"),
    ("name", "Parameter", None),
    ("value", "Value", ",.6~g"),
    ("std_error", "Std error", ",.3~g"),
    ("rel_error", "Std error / |value|", ".0%"),
    ("lower", "Lower bound", ",.4~g"),
    ("upper", "Upper bound", ",.4~g"),
    ("at_bound", "At bound", None),
    ("doc", "Meaning (unit)", None),
)


def param_columns(result: CalibrationResult) -> tuple[tuple[str, str, str | None], ...]:
    """:data:`PARAM_COLUMNS` for this result: without the expiry columns for surface models."""
    if result.kind == "slice":
        return PARAM_COLUMNS
    return tuple(c for c in PARAM_COLUMNS if c[0] not in ("expiry", "days"))


def _at_bound(value: float, spec: ParamSpec | None) -> str:
    """"lower" / "upper" when ``value`` sits on that bound (relative 1e-6), else ""."""
    if spec is None or not math.isfinite(value):
        return ""
    for side, bound in (("lower", spec.lower), ("upper", spec.upper)):
        if math.isfinite(bound) and abs(value - bound) <= 1e-6 * max(1.0, abs(bound)):
            return side
    return ""


def params_records(result: CalibrationResult) -> list[dict[str, Any]]:
    """One row per parameter (slice models: per expiry and parameter, expiry by expiry).

    Returns
    -------
    list of dict
        Keys of :data:`PARAM_COLUMNS`: ``expiry`` (label, ``None`` for surface models), ``days`` (calendar days to
        expiry), ``name``, ``value``, ``std_error`` (Laplace approximation, same unit as the value),
        ``rel_error`` (``std_error / |value|``), ``lower``/``upper`` (hard bounds, ``None`` when infinite),
        ``at_bound`` ("lower", "upper" or ""), ``doc`` (what the parameter is, with its unit). NaN is ``None``.
    """
    specs = _specs(result)
    values = result.param_array
    errors = result.std_error_array
    slice_model = result.kind == "slice"
    labels = _expiry_labels(result) if slice_model else (None,)
    days = np.asarray(result.expiry_ttm, dtype=float) * DAYS_PER_YEAR if slice_model else np.array([np.nan])
    values = np.atleast_2d(values)
    errors = np.atleast_2d(errors)
    out = []
    for j, label in enumerate(labels):
        for i, name in enumerate(result.param_names):
            spec = specs.get(name)
            v, se = float(values[j, i]), float(errors[j, i])
            rel = abs(se / v) if math.isfinite(se) and math.isfinite(v) and v != 0.0 else float("nan")
            out.append({
                "expiry": label,
                "days": _finite_or_none(days[j]),
                "name": name,
                "value": _finite_or_none(v),
                "std_error": _finite_or_none(se),
                "rel_error": _finite_or_none(rel),
                "lower": _finite_or_none(spec.lower) if spec else None,
                "upper": _finite_or_none(spec.upper) if spec else None,
                "at_bound": _at_bound(v, spec),
                "doc": spec.doc if spec else "",
            })
    return out


# ---------------------------------------------------------------------------------------------------------------
# fit statistics
# ---------------------------------------------------------------------------------------------------------------

#: Columns of :func:`fit_stats_records`.
FIT_STATS_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("statistic", "Statistic", None),
    ("value", "Value", None),
    ("unit", "Unit", None),
)


@dataclass(frozen=True)
class Stat:
    """One fit statistic of a result.

    Attributes
    ----------
    key
        Stable identifier ("rmse_vol_points").
    label
        What a trader reads ("RMSE vs mid (vol)").
    unit
        Unit of the number ("vol points"; "" for text).
    number
        The number (``None`` for text or when unknown).
    text
        The value formatted for display.
    better
        "lower" or "higher" when one value is better than another (for comparisons), else ``None``.
    flag
        "" (fine), "warn" or "bad": how the UI may highlight the row.
    """

    key: str
    label: str
    unit: str
    number: float | None
    text: str
    better: str | None = None
    flag: str = ""


def _num(key: str, label: str, unit: str, value: Any, fmt: str, better: str | None = None,
         scale: float = 1.0) -> Stat:
    number = _finite_or_none(None if value is None else float(value) * scale)
    return Stat(key, label, unit, number, "n/a" if number is None else format(number, fmt), better)


def _arbitrage_stat(result: CalibrationResult, key: str, label: str) -> Stat:
    count = result.arbitrage.get(key) if isinstance(result.arbitrage, dict) else None
    if count is None:
        return Stat(key, label, "grid points", None, "not checked")
    count = int(count)
    return Stat(key, label, "grid points", float(count), "none" if count == 0 else f"{count} points", "lower",
                "warn" if count else "")


def n_fitted_params(result: CalibrationResult) -> int:
    """Parameters fitted in all: ``p`` for surface models, ``p`` per fitted expiry for slice models."""
    p = len(result.param_names)
    return p * len(result.expiry_ttm) if result.kind == "slice" else p


def fit_stats(result: CalibrationResult) -> list[Stat]:
    """The statistics of a fit, in display order (shared by the fit-statistics table and the comparison)."""
    stats = [
        Stat("model", "Model", "", None, model_label(result)),
        Stat("optimizer", "Optimizer", "", None, result.optimizer),
        _num("rmse_vol_points", "RMSE vs mid (vol)", "vol points", result.rmse_vol_points, ".3f", "lower"),
        _num("max_error_vol_points", "Max |error| vs mid (vol)", "vol points", result.max_error_vol_points, ".2f",
             "lower"),
        _num("rmse_price", "RMSE vs mid (premium)", "quote currency", result.rmse_price, ",.4g", "lower"),
        _num("inside_spread_share", "Model inside bid-ask", "% of quotes", result.inside_spread_share, ".1f",
             "higher", scale=100.0),
        _num("n_quotes", "Quotes fitted", "count", result.n_quotes, ",.0f"),
        _num("n_excluded", "Quotes not fitted (no data)", "count", result.n_excluded, ",.0f"),
        _num("n_dropped", "Quotes dropped by cleaning", "count", result.n_dropped, ",.0f"),
        _num("n_params", "Parameters fitted", "count", n_fitted_params(result), ",.0f"),
        _num("nfev", "Evaluations", "count", result.nfev, ",.0f"),
        _num("elapsed_s", "Calibration time", "s", result.elapsed_s, ".2f", "lower"),
        Stat("success", "Converged", "", 1.0 if result.success else 0.0, "yes" if result.success else "no",
             "higher", "" if result.success else "bad"),
        Stat("message", "Optimizer message", "", None, result.message or ""),
    ]
    if result.feller_margin is not None:
        feller = _num("feller_margin", "Feller margin 2κθ − σ²", "per year² (≥ 0: holds)", result.feller_margin,
                      ".4f", "higher")
        if feller.number is not None and feller.number < 0:
            feller = Stat(feller.key, feller.label, feller.unit, feller.number, feller.text + " (violated)",
                          feller.better, "warn")
        stats.append(feller)
    stats.append(_arbitrage_stat(result, "butterfly_violations", "Butterfly arbitrage"))
    stats.append(_arbitrage_stat(result, "calendar_violations", "Calendar arbitrage"))
    if result.notes:
        stats.append(Stat("notes", "Notes", "", None, "; ".join(result.notes), None, "warn"))
    return stats


def fit_stats_records(result: CalibrationResult) -> list[dict[str, Any]]:
    """The fit statistics as table rows.

    Returns
    -------
    list of dict
        ``key``, ``statistic`` (label), ``value`` (formatted text), ``unit``, ``number`` (float or ``None``) and
        ``flag`` ("", "warn", "bad") per row: model, optimizer, RMSE (vol points and premium), max error,
        share inside bid-ask, quote counts, parameters, evaluations, time, convergence and message, Feller
        margin (Heston-type models), arbitrage counts (from ``result.arbitrage``; "not checked" when empty) and
        notes.
    """
    return [
        {"key": s.key, "statistic": s.label, "value": s.text, "unit": s.unit, "number": s.number, "flag": s.flag}
        for s in fit_stats(result)
    ]


# ---------------------------------------------------------------------------------------------------------------
# correlation
# ---------------------------------------------------------------------------------------------------------------

#: Above this many parameters the correlation matrix is not annotated with numbers (hover gives them).
MAX_ANNOTATED_PARAMS = 10


def _matrix_trace(corr: np.ndarray, names: tuple[str, ...]) -> go.Heatmap:
    """The matrix, annotated up to :data:`MAX_ANNOTATED_PARAMS` parameters; the diagonal (always 1) is left blank
    so that the eye goes to the pairs."""
    labels = [param_label(n) for n in names]
    text = np.where(np.isfinite(corr), np.char.mod("%.2f", np.nan_to_num(corr)), "n/a")
    z = corr.copy()
    np.fill_diagonal(z, np.nan)
    np.fill_diagonal(text, "")
    return go.Heatmap(
        z=z, x=labels, y=labels, zmin=-1.0, zmax=1.0, zmid=0.0, colorscale=RESIDUAL_SCALE,
        text=text, texttemplate="%{text}" if len(names) <= MAX_ANNOTATED_PARAMS else "", textfont=dict(size=13),
        hovertemplate="corr(%{y}, %{x}) = %{text}<extra></extra>", xgap=2 if len(names) <= 12 else 0,
        ygap=2 if len(names) <= 12 else 0,
        colorbar=dict(title=dict(text=CORRELATION_TITLE, side="right"), thickness=14, tickvals=[-1, -0.5, 0, 0.5, 1]),
    )


def _strongest(corr: np.ndarray, names: tuple[str, ...]) -> str:
    """"strongest: κ–θ −0.97" (largest |off-diagonal| correlation), or ""."""
    p = corr.shape[0]
    iu = np.triu_indices(p, 1)
    off = corr[iu]
    if not np.isfinite(off).any():
        return ""
    i = int(np.nanargmax(np.abs(off)))
    a, b = iu[0][i], iu[1][i]
    return f"strongest: {param_label(names[a])}–{param_label(names[b])} {off[i]:+.2f}"


def correlation_figure(result: CalibrationResult | None, *, theme: Theme = "dark",
                       expiry: int | None = None) -> go.Figure:
    """Correlation of the fitted parameters (Laplace approximation at the optimum), annotated, on −1 … 1.

    Surface models (or ``expiry`` given): the ``p x p`` matrix. Slice models: one row per parameter pair and one
    column per expiry, so that the term structure of which parameters the quotes cannot tell apart is read at
    a glance (a correlation near ±1: the pair is not identified separately).

    Parameters
    ----------
    result
        The fit (``None``: an empty figure saying so).
    theme
        "dark" or "light".
    expiry
        Slice models: index of a parameter row (expiry) to show as a full matrix instead.
    """
    if result is None:
        return empty_figure("No fit yet: calibrate to see parameter correlations", theme=theme)
    names = tuple(result.param_names)
    corr = np.asarray(result.correlation, dtype=float)
    note = failure_suffix(result, theme)
    if result.kind == "slice":
        labels = _expiry_labels(result)
        if corr.ndim != 3 or corr.shape[0] == 0:
            return empty_figure("No parameter correlations in this result", theme=theme)
        if expiry is not None:
            if not 0 <= expiry < corr.shape[0]:
                raise ValueError(f"expiry must be in 0..{corr.shape[0] - 1}, got {expiry}")
            return _matrix_figure(corr[expiry], names, theme,
                                  f"{model_label(result)} parameter correlation · {labels[expiry]}", note)
        if len(names) < 2:
            return empty_figure(f"{model_label(result)} has a single parameter per expiry: no correlations",
                                theme=theme)
        return _pairs_figure(corr, names, labels, result, theme, note)
    if corr.ndim != 2 or corr.size == 0:
        return empty_figure("No parameter correlations in this result", theme=theme)
    return _matrix_figure(corr, names, theme, f"{model_label(result)} parameter correlation", note)


def _matrix_figure(corr: np.ndarray, names: tuple[str, ...], theme: Theme, title: str, note: str) -> go.Figure:
    if not np.isfinite(corr).any():
        return empty_figure(f"{title}: not available (standard errors could not be computed)", theme=theme)
    fig = go.Figure(_matrix_trace(corr, names))
    sub = _strongest(corr, names)
    base_layout(
        fig, theme, height=max(460, 160 + 22 * len(names)),
        title=dict(text=f"{title}<br><sup>{sub}{note}</sup>", x=0.01),
        xaxis=dict(title=dict(text=PARAM_TITLE), side="bottom", showgrid=False, constrain="domain", tickangle=0,
                   type="category"),
        yaxis=dict(title=dict(text=PARAM_TITLE), autorange="reversed", showgrid=False, scaleanchor="x",
                   type="category"),
        margin=dict(l=80, r=20, t=80, b=60),
    )
    return fig


def _pairs_figure(corr: np.ndarray, names: tuple[str, ...], labels: tuple[str, ...], result: CalibrationResult,
                  theme: Theme, note: str) -> go.Figure:
    p = len(names)
    iu = np.triu_indices(p, 1)
    z = corr[:, iu[0], iu[1]].T  # (pairs, expiries)
    if not np.isfinite(z).any():
        return empty_figure("Parameter correlations not available (standard errors could not be computed)",
                            theme=theme)
    pair_labels = [f"{param_label(names[a])}–{param_label(names[b])}" for a, b in zip(*iu)]
    text = np.where(np.isfinite(z), np.char.mod("%.2f", np.nan_to_num(z)), "n/a")
    m = z.shape[1]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(labels), y=pair_labels, zmin=-1.0, zmax=1.0, zmid=0.0, colorscale=RESIDUAL_SCALE,
        text=text, texttemplate="%{text}", textfont=dict(size=11 if m <= 14 else 9),
        hovertemplate="%{x}: corr(%{y}) = %{text}<extra></extra>", xgap=1, ygap=1,
        colorbar=dict(title=dict(text=CORRELATION_TITLE, side="right"), thickness=14, tickvals=[-1, -0.5, 0, 0.5, 1]),
    ))
    strong = int(np.sum(np.abs(z[np.isfinite(z)]) > 0.95))
    sub = f"{strong} of {z.size} pair-expiries beyond ±0.95 (not separately identified)"
    base_layout(
        fig, theme, height=max(300, 90 + 34 * len(pair_labels)),
        title=dict(text=f"{model_label(result)} parameter correlation by expiry<br><sup>{sub}"
                        f"{note}</sup>", x=0.01),
        xaxis=dict(title=dict(text="Expiry"), type="category", showgrid=False, tickangle=-45 if m > 12 else 0,
                   automargin=True),
        yaxis=dict(title=dict(text=PAIR_TITLE), autorange="reversed", showgrid=False, type="category"),
        margin=dict(l=90, r=20, t=80, b=60),
    )
    return fig


# ---------------------------------------------------------------------------------------------------------------
# sensitivity
# ---------------------------------------------------------------------------------------------------------------

#: At most this many parameters get a heatmap panel (the most influential; the ranking lists every one).
MAX_SENSITIVITY_PANELS = 8
SENSITIVITY_TITLE = "Vol change for +1 std error (vol points)"
RANKING_TITLE = "RMS vol change over the quotes (vol points)"
BUCKET_TITLE = "Moneyness bucket (forward delta)"


@dataclass(frozen=True)
class SensitivityCells:
    """The sensitivity of a fit at a snapshot's fit quotes, per (expiry, delta bucket).

    Attributes
    ----------
    names
        Parameter names (base names for slice models).
    cells
        ``(p, m, b)`` mean model-vol change, vol points, for a +1 standard-error move of each parameter, per quote
        expiry (nearest first) and delta bucket (:data:`components.figures.residuals.BUCKET_LABELS`); NaN where
        there is no quote, and on expiries not identified.
    counts
        ``(m, b)`` quotes per cell.
    labels
        Expiry label of each of the ``m`` rows.
    identified
        ``(m,)`` False for slice-model expiries whose parameters the quotes do not pin down (see
        :data:`NOT_IDENTIFIED_VOL_POINTS`).
    ranking
        ``(name, rms)`` per parameter, descending: root-mean-square of the vol change (vol points) over the quotes
        of the identified expiries.
    scale_source
        Per parameter column of the core's :class:`calibration.sensitivity.Sensitivity`: "std_error" or
        "bound_width".
    """

    names: tuple[str, ...]
    cells: np.ndarray
    counts: np.ndarray
    labels: tuple[str, ...]
    identified: np.ndarray
    ranking: list[tuple[str, float]]
    scale_source: list[str]


#: A slice-model expiry whose one-standard-error parameter moves change its vols by more than this (RMS over its
#: quotes and parameters, vol points) is not identified by its quotes: drawn blank and left out of the ranking.
NOT_IDENTIFIED_VOL_POINTS = 25.0


def sensitivity_cells(snapshot: QuoteSnapshot, result: CalibrationResult) -> SensitivityCells:
    """The fit's sensitivity (:func:`calibration.sensitivity.sensitivity` at the snapshot's fit quotes, scaled
    by the standard errors) averaged per expiry and delta bucket; slice models: each quote against its own
    expiry's parameters.

    Raises
    ------
    CalibrationError
        When the fitted surface cannot be evaluated.
    """
    quotes = quote_arrays(snapshot)
    labels = _expiry_labels(result) if result.kind == "slice" else None
    sens = sensitivity(result.fitted_surface(), quotes, std_errors=result.std_error_array, expiry_labels=labels)
    names = tuple(result.param_names)
    columns = [[c for c, p in enumerate(sens.param) if p == name] for name in names]
    per_param = 100.0 * np.stack([np.sum(sens.scaled[:, cols], axis=1) for cols in columns])  # (p, n) vol points
    m, b = quotes.expiry_ttm.shape[0], len(BUCKET_LABELS)

    with np.errstate(invalid="ignore"):
        row_rms = np.sqrt(np.array([np.nanmean(per_param[:, quotes.expiry_index == j] ** 2) for j in range(m)]))
    identified = ~(np.isfinite(row_rms) & (row_rms > NOT_IDENTIFIED_VOL_POINTS)) if result.kind == "slice" \
        else np.ones(m, dtype=bool)
    keep = identified[quotes.expiry_index]
    with np.errstate(invalid="ignore"):
        rms = np.sqrt(np.nanmean(per_param[:, keep] ** 2, axis=1)) if keep.any() else np.full(len(names), np.nan)
    order = sorted(range(len(names)), key=lambda i: (np.isnan(rms[i]), -np.nan_to_num(rms[i])))

    vol = np.where(np.isfinite(sens.vol), sens.vol, quotes.vol_mid)
    bucket = delta_bucket(call_delta(quotes.k, vol, quotes.ttm))
    ok = bucket >= 0
    flat = quotes.expiry_index[ok] * b + bucket[ok]
    counts = np.bincount(flat, minlength=m * b).reshape(m, b)
    cells = np.full((len(names), m, b), np.nan)
    for i in range(len(names)):
        values = per_param[i, ok]
        finite = np.isfinite(values)
        sums = np.bincount(flat[finite], weights=values[finite], minlength=m * b).reshape(m, b)
        n = np.bincount(flat[finite], minlength=m * b).reshape(m, b)
        with np.errstate(invalid="ignore", divide="ignore"):
            cells[i] = np.where(n > 0, sums / n, np.nan)
    cells[:, ~identified, :] = np.nan
    expiry = pd.Series(pd.DatetimeIndex(snapshot.fit_quotes["expiry"])).groupby(quotes.expiry_index).first()
    return SensitivityCells(
        names=names, cells=cells, counts=counts,
        labels=expiry_labels(pd.DatetimeIndex(expiry.sort_index().to_numpy())),
        identified=identified,
        ranking=[(names[i], float(rms[i])) for i in order],
        scale_source=list(sens.scale_source),
    )


def sensitivity_figure(snapshot: QuoteSnapshot, result: CalibrationResult | None, *,
                       theme: Theme = "dark") -> go.Figure:
    """Which parameter moves which part of the surface, and which parameters matter most.

    One heatmap per parameter (the :data:`MAX_SENSITIVITY_PANELS` most influential ones): rows are expiries
    (nearest on top), columns the Residuals view's delta buckets (puts on the left), colour the change of the
    model vol, in vol points, when that parameter moves up by one standard error (by the width of its search
    bounds where no standard error is known), averaged over the fitted quotes in the cell. Slice models (one
    parameter row per expiry) show, for each quote, its own expiry's parameter, so that 13 expiries x 5
    parameters read as 5 panels. The last panel ranks every parameter by the root-mean-square of that vol change
    over the quotes.
    """
    if not has_model(result):
        return empty_figure("No fitted model: calibrate to see the parameter sensitivities", theme=theme)
    try:
        sc = sensitivity_cells(snapshot, result)
    except (CalibrationError, ValueError) as exc:
        return empty_figure(f"Sensitivities not available: {exc}", theme=theme)
    names, cells, counts = sc.names, sc.cells, sc.counts
    if not np.isfinite(cells).any():
        why = "no expiry's parameters are identified by its quotes" if not sc.identified.any() \
            else "the model has no vols at the quotes"
        return empty_figure(f"Sensitivities not available: {why}", theme=theme)

    c = PALETTE[theme]
    ranking = sc.ranking
    labels = [lab if ok else f"{lab} (n/i)" for lab, ok in zip(sc.labels, sc.identified)]
    shown = [name for name, _ in ranking][:MAX_SENSITIVITY_PANELS]
    n_cells = len(shown) + 1
    cols = 3 if n_cells > 4 else 2
    rows = -(-n_cells // cols)
    m = len(labels)
    titles = [f"{param_label(n)} ({n})" if param_label(n) != n else n for n in shown]
    titles += [""] * (rows * cols - n_cells) + ["Ranking (all parameters)"]
    specs = [[{} for _ in range(cols)] for _ in range(rows)]
    row_px = max(230, 18 * m + 70)
    gap_px = 90  # angled bucket labels and the next row's panel titles
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, specs=specs, horizontal_spacing=0.07,
                        vertical_spacing=gap_px / (rows * row_px + (rows - 1) * gap_px) if rows > 1 else 0.0)
    span = float(np.nanquantile(np.abs(cells), 0.98)) if np.isfinite(cells).any() else 1.0
    span = span if span > 0 else 1.0
    buckets = list(BUCKET_LABELS)
    index = {name: i for i, name in enumerate(names)}
    for panel, name in enumerate(shown):
        r, col = divmod(panel, cols)
        z = cells[index[name]]
        fig.add_trace(go.Heatmap(
            z=f32(z), x=buckets, y=list(labels), coloraxis="coloraxis", xgap=1, ygap=1, name=name,
            customdata=counts,
            hovertemplate=(f"<b>{param_label(name)}</b> +1 SE · %{{y}} · %{{x}}<br>"
                           "model vol %{z:+.3f} vol pts (mean of %{customdata} quotes)<extra></extra>"),
        ), row=r + 1, col=col + 1)
        fig.update_yaxes(autorange="reversed", type="category", showgrid=False, showticklabels=col == 0,
                         tickfont=dict(size=10 if m <= 14 else 8), row=r + 1, col=col + 1)
        fig.update_xaxes(type="category", showgrid=False, tickfont=dict(size=9), tickangle=-35, row=r + 1,
                         col=col + 1)
        if col == 0:
            fig.update_yaxes(title_text="Expiry", row=r + 1, col=col + 1)
        if r == rows - 1:
            fig.update_xaxes(title_text=BUCKET_TITLE, title_font=dict(size=11), row=r + 1, col=col + 1)

    top = ranking[::-1]
    fig.add_trace(go.Bar(
        y=[param_label(n) for n, _ in top], x=f32([v for _, v in top]), orientation="h", showlegend=False,
        marker=dict(color=[c["model"] if n in shown else c["bid_ask"] for n, _ in top]),
        customdata=[n for n, _ in top], name="ranking",
        hovertemplate="<b>%{customdata}</b>: RMS %{x:.3f} vol pts<extra></extra>",
    ), row=rows, col=cols)
    fig.update_xaxes(title_text=RANKING_TITLE, title_font=dict(size=11), row=rows, col=cols)
    fig.update_yaxes(title_text=PARAM_TITLE, type="category", row=rows, col=cols)

    fallback = sum(1 for s in sc.scale_source if s != "std_error")
    sub = "model vol change for a +1 standard-error move, mean per expiry and delta bucket"
    if result.kind == "slice":
        sub += "; each quote against its own expiry's parameter"
    if fallback:
        sub += f"; {fallback} of {len(sc.scale_source)} parameters without a std error moved by their bound width"
    if not sc.identified.all():
        sub += (f"<br>n/i: {int((~sc.identified).sum())} expiries whose parameters are not identified (a 1-SE move "
                f"shifts vols by over {NOT_IDENTIFIED_VOL_POINTS:.0f} vol pts), blank and left out of the ranking")
    note = failure_suffix(result, theme)
    base_layout(
        fig, theme, height=(100 if sc.identified.all() else 125) + 60 + rows * row_px + (rows - 1) * gap_px,
        title=dict(text=f"{model_label(result)} parameter sensitivity<br><sup>{sub}"
                        f"{note}</sup>", x=0.01),
        coloraxis=dict(colorscale=RESIDUAL_SCALE, cmin=-span, cmax=span, cmid=0.0,
                       colorbar=dict(title=dict(text=SENSITIVITY_TITLE, side="right"), thickness=14, len=0.8)),
        margin=dict(l=80, r=30, t=100 if sc.identified.all() else 125, b=60),
    )
    return fig
