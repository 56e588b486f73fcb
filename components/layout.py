"""The page: a Mantine shell with the controls in a left navbar, a summary strip, and the nine views as tabs
(the Backtest tab's own layout is in :mod:`components.backtest_view`).

``build_layout`` runs on every page load: it opens the default snapshot, puts its default fit (memoised on disk,
pre-warmed at start-up) straight into the stores and draws the Surface tab, so the first fitted surface needs
neither a background job nor a callback: it is on screen as soon as plotly.js has drawn it.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import dash_ag_grid as dag
import dash_mantine_components as dmc
from dash import dcc, html

from calibration.errors import SmilescopeError
from calibration.snapshot import QuoteSnapshot
from components import ids
from components.callbacks.render import render_stamp, render_surface
from components.controls import (
    DEFAULTS,
    GREEKS,
    MODEL_LABELS,
    OPTIMIZER_LABELS,
    RESIDUAL_SPACES,
    SURFACE_AXES,
    TABS,
    navbar,
)
from components.data_files import DEFAULT_SNAPSHOT, list_snapshots
from components.scaleout.badge import status_badge
from components.server_store import cached_fit, data_key, is_synthetic
from components.tables import DROP_COLUMNS, FORWARD_COLUMNS, QUOTE_COLUMNS, column_defs, grid_theme
from components.theme import FONT

log = logging.getLogger(__name__)

HEADER_HEIGHT = 52
NAVBAR_WIDTH = 292
#: Mantine theme: the app font stack (no web fonts), compact radius, blue accents.
MANTINE_THEME = {
    "primaryColor": "blue",
    "fontFamily": FONT,
    "headings": {"fontFamily": FONT},
    "defaultRadius": "sm",
}
#: PNG export from the mode bar: 2x a 1600x900 frame.
PNG_SIZE = {"format": "png", "width": 1600, "height": 900, "scale": 2}


def graph_config(name: str) -> dict[str, Any]:
    """Mode bar of a figure: PNG export named after the view, no plotly logo, no cloud buttons."""
    return {
        "displaylogo": False,
        "responsive": True,
        "toImageButtonOptions": {**PNG_SIZE, "filename": f"smilescope-{name}"},
        "modeBarButtonsToRemove": ["sendDataToCloud", "lasso2d", "select2d"],
    }


def _graph(gid: str, name: str, *, css: str = "graph-full", figure: Any = None) -> html.Div:
    """A figure filling a box of class ``css`` (the box sets the height: a responsive graph is 100% of it)."""
    graph = dcc.Graph(id=gid, figure=figure if figure is not None else {"data": [], "layout": {}},
                      config=graph_config(name), responsive=True, style={"height": "100%"})
    return html.Div(graph, className=f"graph-box {css}")


def _grid(
    grid_id: str, columns: list[dict], *, height: str, pagination: bool = False, min_width: int = 60
) -> dag.AgGrid:
    """A sortable, filterable grid (columns fit the width, never narrower than ``min_width`` px: then it scrolls)."""
    options: dict[str, Any] = {"theme": grid_theme("dark"), "animateRows": False}
    if pagination:
        options |= {"pagination": True, "paginationPageSize": 100, "paginationPageSizeSelector": [50, 100, 500]}
    return dag.AgGrid(
        id=grid_id,
        columnDefs=columns,
        rowData=[],
        defaultColDef={"resizable": True, "sortable": True, "filter": True, "floatingFilter": pagination,
                       "minWidth": min_width},
        columnSize="responsiveSizeToFit",
        dashGridOptions=options,
        style={"height": height, "width": "100%"},
        className="grid",
    )


def _card(title: str, *children: Any, **kwargs: Any) -> dmc.Paper:
    return dmc.Paper([dmc.Text(title, fw=600, size="xs", c="dimmed", tt="uppercase", mb=4), *children],
                     p="xs", radius="sm", withBorder=True, **kwargs)


def _choices(pairs: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"value": value, "label": label} for value, label in pairs]


def _toolbar(*children: Any) -> dmc.Group:
    return dmc.Group(list(children), gap="sm", mb=6, className="toolbar")


# ---------------------------------------------------------------------------------------------------------------
# summaries (also used by the callbacks)
# ---------------------------------------------------------------------------------------------------------------


def _fact(label: str, value: str) -> html.Span:
    return html.Span([html.Span(label, className="fact-label"), html.Span(value, className="fact-value")],
                     className="fact")


def snapshot_summary(snapshot: QuoteSnapshot | None, name: str | None = None) -> list[Any]:
    """One line about a snapshot: underlying, time, spot, expiries, quotes, how many are fitted, file name."""
    if snapshot is None:
        return [html.Span("No snapshot loaded", className="fact-label")]
    drops = snapshot.drops
    kept = drops.n_kept / max(drops.n_input, 1)
    return [
        _fact("Underlying", snapshot.underlying),
        _fact("As of", f"{snapshot.asof:%Y-%m-%d %H:%M} UTC"),
        _fact("Spot", f"{snapshot.spot:,.2f}"),
        _fact("Expiries", str(len(snapshot.expiries))),
        _fact("Quotes", f"{drops.n_input:,}"),
        _fact("Fitted", f"{drops.n_kept:,} ({kept:.0%})"),
        _fact("File", name or snapshot.source),
    ]


def _number(value: Any, fmt: str) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, fmt)


def result_summary(result: dict[str, Any] | None) -> list[Any]:
    """Badges about the fit on screen: model, optimizer, RMSE, inside-spread share, effort, status."""
    if not result:
        return [dmc.Badge("no fit", color="gray", variant="outline")]
    if result.get("message") == "cancelled":
        status = dmc.Badge("cancelled", color="orange", variant="light")
    elif result.get("success"):
        status = dmc.Badge("converged", color="teal", variant="light")
    else:
        status = dmc.Badge("not converged", color="orange", variant="light")
    model = MODEL_LABELS.get(result["model"], result["model"]).split(" · ")[0]
    optimizer = OPTIMIZER_LABELS.get(result["optimizer"], result["optimizer"])
    return [
        dmc.Badge(model, variant="filled", className="model-badge"),
        dmc.Text(optimizer, size="xs", c="dimmed"),
        _fact("RMSE", f"{_number(result.get('rmse_vol_points'), '.2f')} vol pts"),
        _fact("In spread", _number(result.get("inside_spread_share"), ".0%")),
        _fact("Evals", f"{result.get('nfev', 0):,}"),
        _fact("Time", f"{_number(result.get('elapsed_s'), '.2f')} s"),
        status,
    ]


# ---------------------------------------------------------------------------------------------------------------
# views
# ---------------------------------------------------------------------------------------------------------------


def _views(surface: Any) -> dmc.Tabs:
    """The tabs; ``surface`` is the first tab's figure (drawn by the layout). Inactive panels are not mounted:
    their figures are drawn when the tab is opened."""
    from components.backtest_view import backtest_panel  # here: it builds on this module's helpers

    panels = {
        "surface": [
            _toolbar(dmc.Text("x axis", size="xs", c="dimmed"),
                     dmc.SegmentedControl(id=ids.SURFACE_AXIS, data=_choices(SURFACE_AXES), value=SURFACE_AXES[0][0],
                                          size="xs")),
            _graph(ids.SURFACE_GRAPH, "surface", figure=surface),
        ],
        "smiles": [_graph(ids.SMILES_GRAPH, "smiles", css="graph-tall")],
        "residuals": [
            _toolbar(dmc.Text("residual in", size="xs", c="dimmed"),
                     dmc.SegmentedControl(id=ids.RESIDUALS_SPACE, data=_choices(RESIDUAL_SPACES), value="vol",
                                          size="xs")),
            _graph(ids.RESIDUALS_GRAPH, "residuals"),
        ],
        "term": [_graph(ids.TERM_GRAPH, "term-structure")],
        "greeks": [
            _toolbar(dmc.Text("greek", size="xs", c="dimmed"),
                     dmc.SegmentedControl(id=ids.GREEKS_SELECT, data=_choices(GREEKS), value="delta", size="xs")),
            dmc.SimpleGrid([_graph(ids.GREEKS_GRAPH, "greeks"), _graph(ids.DENSITY_GRAPH, "density")],
                           cols={"base": 1, "lg": 2}, spacing="sm"),
        ],
        "params": [
            dmc.Grid(
                [
                    dmc.GridCol(_card("Parameters (± standard error)",
                                      _grid(ids.PARAMS_TABLE, [], height="calc(50vh - 70px)", min_width=84)),
                                span={"base": 12, "lg": 8}),
                    dmc.GridCol(_card("Fit statistics", html.Div(id=ids.FIT_STATS, className="fit-stats")),
                                span={"base": 12, "lg": 4}),
                    dmc.GridCol(_graph(ids.CORRELATION_GRAPH, "correlation", css="graph-panel"),
                                span={"base": 12, "lg": 6}),
                    dmc.GridCol(_graph(ids.SENSITIVITY_GRAPH, "sensitivity", css="graph-panel"),
                                span={"base": 12, "lg": 6}),
                ],
                gutter="sm",
            )
        ],
        "quality": [
            dmc.Grid(
                [
                    dmc.GridCol(_graph(ids.FORWARDS_GRAPH, "forwards", css="graph-panel"), span={"base": 12, "xl": 8}),
                    dmc.GridCol(_card("Dropped quotes, by reason",
                                      _grid(ids.DROP_TABLE, column_defs(DROP_COLUMNS), height="220px", min_width=90)),
                                span={"base": 12, "xl": 4}),
                    dmc.GridCol(_card("Forwards and put-call parity, per expiry",
                                      _grid(ids.FORWARD_TABLE, column_defs(FORWARD_COLUMNS), height="260px",
                                            min_width=90)), span=12),
                    dmc.GridCol(_card("Quotes (every row; status says why a quote is not fitted)",
                                      _grid(ids.QUOTES_GRID, column_defs(QUOTE_COLUMNS), height="560px",
                                            pagination=True, min_width=80)), span=12),
                ],
                gutter="sm",
            )
        ],
        "compare": [
            dmc.Text("Pin up to three fits of this snapshot with “Add to compare” (left); they are cleared when "
                     "the snapshot changes.", size="xs", c="dimmed", mb=6),
            _card("Fits side by side", _grid(ids.COMPARE_TABLE, [], height="250px", min_width=110)),
            dmc.Stack([_graph(ids.COMPARE_SMILES_GRAPH, "compare-smiles"),
                       _graph(ids.COMPARE_RESIDUALS_GRAPH, "compare-residuals")], gap="sm", mt="sm"),
        ],
        "backtest": [dmc.Stack(backtest_panel(), gap=6)],
    }
    return dmc.Tabs(
        [
            dmc.TabsList([dmc.TabsTab(label, value=value) for value, label in TABS]),
            *[
                dmc.TabsPanel(dcc.Loading(html.Div(panels[value]), type="dot", delay_show=400,
                                          overlay_style={"visibility": "visible", "opacity": 0.6}),
                              value=value, pt="xs")
                for value, _ in TABS
            ],
        ],
        id=ids.TABS,
        value=TABS[0][0],
        keepMounted=False,
        variant="outline",
    )


# ---------------------------------------------------------------------------------------------------------------
# page
# ---------------------------------------------------------------------------------------------------------------


def _initial_state(names: list[str]) -> tuple[str | None, QuoteSnapshot | None, dict | None, dict | None]:
    """The default snapshot (picker value, snapshot, key) and its default fit; ``None`` where they fail."""
    default = DEFAULT_SNAPSHOT if DEFAULT_SNAPSHOT in names else (names[0] if names else None)
    if default is None:
        return None, None, None, None
    try:
        snapshot, key = data_key(default)
    except (SmilescopeError, OSError) as exc:
        log.warning("default snapshot %s not loaded: %s", default, exc)
        return default, None, None, None
    try:
        result = cached_fit(snapshot, DEFAULTS)
    except (SmilescopeError, OSError) as exc:
        log.warning("default fit of %s failed: %s", default, exc)
        result = None
    return default, snapshot, dict(key), result


def _header(key: dict | None, result: dict | None) -> dmc.Group:
    exports = dmc.Menu(
        [
            dmc.MenuTarget(dmc.Button("Export", size="xs", variant="default")),
            dmc.MenuDropdown(
                [
                    dmc.MenuItem("Parameters (JSON)", id=ids.EXPORT_PARAMS),
                    dmc.MenuItem("Fitted vol grid (CSV)", id=ids.EXPORT_GRID),
                    dmc.MenuItem("Quotes with implied vols (CSV)", id=ids.EXPORT_QUOTES),
                    dmc.MenuDivider(),
                    dmc.MenuLabel("Figures: camera icon of each chart (PNG)"),
                ]
            ),
        ],
        position="bottom-end",
        withinPortal=True,
    )
    return dmc.Group(
        [
            dmc.Group(
                [
                    html.Img(src="/assets/favicon.ico", className="logo", alt=""),
                    dmc.Title("Smilescope", order=4, className="brand"),
                    dmc.Badge("synthetic demo data", id=ids.SYNTHETIC_BADGE, color="yellow", variant="light",
                              size="sm", style={"display": "inline-flex" if key and is_synthetic(key) else "none"}),
                ],
                gap=8,
                wrap="nowrap",
            ),
            dmc.Group(result_summary(result), id=ids.RESULT_SUMMARY, gap=10, className="result-summary",
                      wrap="nowrap"),
            dmc.Group(
                [
                    *status_badge(),
                    exports,
                    dmc.SegmentedControl(id=ids.THEME_TOGGLE, data=["dark", "light"], value="dark", size="xs"),
                ],
                gap="xs",
                wrap="nowrap",
            ),
        ],
        justify="space-between",
        h="100%",
        px="md",
        wrap="nowrap",
    )


def build_layout() -> dmc.MantineProvider:
    """The whole page, with the default snapshot loaded and fitted."""
    names = list_snapshots()
    selected, snapshot, key, result = _initial_state(names)
    axis = SURFACE_AXES[0][0]
    (surface,) = render_surface(result, "dark", axis)
    rendered = {TABS[0][0]: render_stamp(result, "dark", [axis])}
    stores = [
        dcc.Location(id=ids.URL, refresh=False),
        dcc.Store(id=ids.THEME_STORE, storage_type="local", data="dark"),
        dcc.Store(id=ids.SNAPSHOT_KEY, data=key),
        dcc.Store(id=ids.RESULT_STORE, data=result),
        dcc.Store(id=ids.COMPARE_STORE, data=[]),
        dcc.Store(id=ids.FIT_REQUEST),
        dcc.Store(id=ids.URL_APPLIED),
        dcc.Store(id=ids.BACKTEST_REQUEST),
        dcc.Store(id=ids.BACKTEST_STORE),
        # "" rather than None: a memory store mounted with None sets itself, which would draw every tab at once
        *[dcc.Store(id={"type": ids.RENDERED, "tab": value}, data=rendered.get(value, "")) for value, _ in TABS],
        dcc.Download(id=ids.DOWNLOAD),
        dmc.NotificationContainer(id=ids.NOTIFICATIONS, position="bottom-right", autoClose=8000, zIndex=1000),
    ]
    main = dmc.Stack(
        [html.Div(snapshot_summary(snapshot), id=ids.SNAPSHOT_SUMMARY, className="summary-strip"), _views(surface)],
        gap=6,
    )
    shell = dmc.AppShell(
        [
            dmc.AppShellHeader(_header(key, result)),
            dmc.AppShellNavbar(navbar(names, selected)),
            dmc.AppShellMain(main),
        ],
        header={"height": HEADER_HEIGHT},
        navbar={"width": NAVBAR_WIDTH, "breakpoint": "sm"},
        padding="sm",
    )
    return dmc.MantineProvider([*stores, shell], id=ids.THEME_PROVIDER, forceColorScheme="dark",
                               theme=MANTINE_THEME)
