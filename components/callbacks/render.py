"""What each view shows, as pure functions of the stored data (no callbacks here: see ``views.py``).

The figures come from the pure functions of :mod:`components.figures`; a figure that fails to draw is a blank
figure saying why (logged), so a bad fit or a bug in one figure never takes the page down. Every figure drawn
from a fit carries ``layout.meta = {"result": result_id(fit)}`` (what it shows, for tests and benchmarks).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import dash_mantine_components as dmc
import plotly.graph_objects as go

from calibration.result import CalibrationResult
from calibration.snapshot import QuoteSnapshot
from components.callbacks.common import result_id
from components.figures.common import empty_figure
from components.figures.compare import (
    compare_columns,
    compare_records,
    compare_residuals_figure,
    compare_smiles_figure,
)
from components.figures.greeks import density_figure, greeks_figure
from components.figures.params import (
    correlation_figure,
    fit_stats_records,
    param_columns,
    params_records,
    sensitivity_figure,
)
from components.figures.quality import forwards_figure
from components.figures.residuals import residuals_figure
from components.figures.smiles import smiles_figure
from components.figures.surface import surface_figure
from components.figures.term import term_figure
from components.server_store import snapshot_by_hash, snapshot_for
from components.tables import column_defs, drop_records, forward_records, quote_records, record_columns

log = logging.getLogger(__name__)

THEMES = ("dark", "light")
NO_FIT = "No fit yet: press Calibrate"


# ---------------------------------------------------------------------------------------------------------------
# calling the figure functions safely
# ---------------------------------------------------------------------------------------------------------------


def draw_safely(figure: Callable[..., go.Figure], *args: Any, theme: str, tag: str | None, **options: Any) -> go.Figure:
    """Call a figure function; on failure a blank figure saying why (logged), never an exception."""
    try:
        fig = figure(*args, theme=theme, **options)
    except Exception as exc:  # noqa: BLE001 - a figure that fails must not take the page down
        log.exception("%s failed", figure.__name__)
        fig = empty_figure(f"Could not draw this view: {exc}", theme=theme)
    if tag is not None:
        fig.update_layout(meta={"result": tag})
    return fig


def records_safely(records: Callable[..., list[dict[str, Any]]], *args: Any) -> list[dict[str, Any]]:
    """Table rows from a figure module; empty (logged) if it fails."""
    try:
        return list(records(*args))
    except Exception:  # noqa: BLE001 - a table that fails shows empty
        log.exception("%s failed", records.__name__)
        return []


def _columns(spec: Callable[..., Any], arg: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Grid columns from a figure module's ``(field, header, d3 format)`` spec; the rows' own keys if it fails."""
    try:
        return column_defs(tuple(spec(arg)))
    except Exception:  # noqa: BLE001 - a table still shows, with plain headers
        log.exception("%s failed", spec.__name__)
        return record_columns(rows)


def _fit(data: dict[str, Any] | None) -> tuple[QuoteSnapshot, CalibrationResult] | None:
    """The snapshot and result of a stored fit, or ``None`` (no fit)."""
    if not data:
        return None
    return snapshot_by_hash(data["snapshot_hash"]), CalibrationResult.from_dict(data)


def _no_fit(theme: str, why: str = NO_FIT) -> go.Figure:
    return empty_figure(why, theme=theme)


# ---------------------------------------------------------------------------------------------------------------
# render functions (pure: data in, outputs out)
# ---------------------------------------------------------------------------------------------------------------


def _with_fit(data: dict[str, Any] | None, draw: Callable[..., tuple], blank: Callable[[str], tuple]) -> tuple:
    """``draw(snapshot, result, tag)``, or ``blank(why)`` when there is no fit or its snapshot is gone."""
    try:
        fit = _fit(data)
    except Exception as exc:  # noqa: BLE001 - snapshot gone, bad stored data: say so, keep the page up
        log.warning("stored fit not usable: %s", exc)
        return blank(f"Cannot show this fit: {exc}")
    if fit is None:
        return blank(NO_FIT)
    return draw(*fit, result_id(data))


def _blank(theme: str, n: int = 1) -> Callable[[str], tuple]:
    return lambda why: tuple(_no_fit(theme, why) for _ in range(n))


def render_surface(data: dict[str, Any] | None, theme: str, axis: str) -> tuple[go.Figure]:
    """Surface tab: the fitted surface in 3D on the chosen x axis."""
    return _with_fit(data, lambda s, r, tag: (
        draw_safely(surface_figure, s, r, x_axis=axis or "k", theme=theme, tag=tag),), _blank(theme))


def render_smiles(data: dict[str, Any] | None, theme: str) -> tuple[go.Figure]:
    """Smiles tab: one panel per expiry."""
    return _with_fit(data, lambda s, r, tag: (
        draw_safely(smiles_figure, s, r, theme=theme, tag=tag),), _blank(theme))


def render_residuals(data: dict[str, Any] | None, theme: str, space: str) -> tuple[go.Figure]:
    """Residuals tab, in vol points or premium."""
    return _with_fit(data, lambda s, r, tag: (
        draw_safely(residuals_figure, s, r, space=space or "vol", theme=theme, tag=tag),), _blank(theme))


def render_term(data: dict[str, Any] | None, theme: str) -> tuple[go.Figure]:
    """Term-structure tab: ATM vol, skew and curvature by expiry."""
    return _with_fit(data, lambda s, r, tag: (
        draw_safely(term_figure, s, r, theme=theme, tag=tag),), _blank(theme))


def render_greeks(data: dict[str, Any] | None, theme: str, greek: str) -> tuple[go.Figure, go.Figure]:
    """Greeks tab: the chosen greek in 3D and the risk-neutral densities."""
    return _with_fit(data, lambda s, r, tag: (
        draw_safely(greeks_figure, s, r, greek=greek or "delta", theme=theme, tag=tag),
        draw_safely(density_figure, s, r, theme=theme, tag=tag),
    ), _blank(theme, 2))


#: Text colour of a statistic flagged by :func:`components.figures.params.fit_stats_records`.
FLAG_COLORS = {"warn": "orange", "bad": "red"}


def fit_stats_table(records: list[dict[str, Any]]) -> Any:
    """The fit statistics (``statistic``, ``value``, ``unit``, ``flag`` of each record) as a compact table."""
    if not records:
        return dmc.Text("No fit statistics", size="sm", c="dimmed")
    rows = [
        dmc.TableTr(
            [
                dmc.TableTd(rec.get("statistic", ""), c="dimmed"),
                dmc.TableTd(str(rec.get("value", "")), className="num", fw=600,
                            **({"c": FLAG_COLORS[rec["flag"]]} if rec.get("flag") in FLAG_COLORS else {})),
                dmc.TableTd(rec.get("unit", ""), c="dimmed"),
            ]
        )
        for rec in records
    ]
    return dmc.Table([dmc.TableTbody(rows)], striped=True, highlightOnHover=True, verticalSpacing=2, fz="xs")


def render_params(data: dict[str, Any] | None, theme: str) -> tuple:
    """Parameters tab: parameter rows and columns, fit statistics, correlation and sensitivity heatmaps."""
    def draw(s: QuoteSnapshot, r: CalibrationResult, tag: str) -> tuple:
        rows = records_safely(params_records, r)
        stats = records_safely(fit_stats_records, r)
        return (rows, _columns(param_columns, r, rows), fit_stats_table(stats),
                draw_safely(correlation_figure, r, theme=theme, tag=tag),
                draw_safely(sensitivity_figure, s, r, theme=theme, tag=tag))

    def blank(why: str) -> tuple:
        return [], [], dmc.Text(why, size="sm", c="dimmed"), _no_fit(theme, why), _no_fit(theme, why)

    return _with_fit(data, draw, blank)


def render_quality(key: dict[str, Any] | None, theme: str) -> tuple:
    """Data-quality tab (the snapshot alone): forwards figure, drop report, forwards and quotes grids."""
    try:
        snapshot = snapshot_for(key or {})
    except Exception as exc:  # noqa: BLE001
        return _no_fit(theme, f"No snapshot: {exc}"), [], [], []
    return (draw_safely(forwards_figure, snapshot, theme=theme, tag=None), drop_records(snapshot),
            forward_records(snapshot), quote_records(snapshot))


def render_compare(pinned: list[dict[str, Any]] | None, theme: str) -> tuple:
    """Compare tab: statistics side by side, overlaid smiles, residual difference."""
    pinned = pinned or []
    if not pinned:
        why = "Pin fits with “Add to compare” to see them side by side"
        return [], [], _no_fit(theme, why), _no_fit(theme, why)
    try:
        snapshot = snapshot_by_hash(pinned[0]["snapshot_hash"])
        results = [CalibrationResult.from_dict(d) for d in pinned]
    except Exception as exc:  # noqa: BLE001
        return [], [], _no_fit(theme, f"Cannot compare: {exc}"), _no_fit(theme, f"Cannot compare: {exc}")
    rows = records_safely(compare_records, results)
    tag = "|".join(result_id(d) or "" for d in pinned)
    return (rows, _columns(compare_columns, results, rows),
            draw_safely(compare_smiles_figure, snapshot, results, theme=theme, tag=tag),
            draw_safely(compare_residuals_figure, snapshot, results, theme=theme, tag=tag))


def render_stamp(source: Any, theme: str, options: list[Any]) -> str:
    """What a tab is drawn from: its data's identity (a fit's :func:`result_id`, the pinned fits' ids, or the
    snapshot key's hash), the theme and the tab's options, as compact JSON. ``views.DRAW_GATE`` computes the same
    text in the browser."""
    if isinstance(source, list):
        identity: Any = [result_id(d) for d in source]
    elif isinstance(source, dict) and "snapshot_hash" in source:
        identity = result_id(source)
    elif isinstance(source, dict):
        identity = source.get("hash")
    else:
        identity = None
    return json.dumps([identity, theme, list(options)], separators=(",", ":"), ensure_ascii=False)
