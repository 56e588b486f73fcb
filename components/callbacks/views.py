"""The eight single-snapshot views (the Backtest tab has its own callbacks: :mod:`components.callbacks.backtest`).
Only the active tab is drawn; a tab is drawn again only when what it shows has changed.

Each tab has two callbacks. A clientside gate (in the browser, no request) watches the active tab, the tab's
data (the fit in ``RESULT_STORE``, the snapshot key, or the pinned fits), the theme and the tab's options; when
its tab is active and what it would show differs from what it last drew, it writes the new stamp into the tab's
``{"type": RENDERED, "tab": ...}`` store. That store is the only input of the tab's server callback, which draws
the figures from the data (read as State). So a new fit costs one drawing request (the active tab), not eight,
and going back to a tab already drawn costs nothing. The page opens on the Surface tab drawn by the layout, its
stamp in the store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dash import Input, Output, State, callback, clientside_callback

from components import ids
from components.callbacks.render import (
    THEMES,
    render_compare,
    render_greeks,
    render_params,
    render_quality,
    render_residuals,
    render_smiles,
    render_surface,
    render_term,
)

#: The gate of one tab (``%s``: its name). Mirrors ``render.render_stamp`` and ``common.result_id``: the stamp is
#: JSON of [identity, theme, options], a fit's identity "hash|model|optimizer|nfev|elapsed µs".
DRAW_GATE = """
function (active, data, theme, ...rest) {
    const last = rest.pop();
    const skip = window.dash_clientside.no_update;
    if (active !== %s) { return skip; }
    const fit = (d) => d ? [d.snapshot_hash, d.model, d.optimizer, d.nfev,
                            Math.floor((d.elapsed_s || 0) * 1e6)].join('|') : null;
    let identity = null;
    if (Array.isArray(data)) { identity = data.map(fit); }
    else if (data && typeof data === 'object') {
        identity = ('snapshot_hash' in data) ? fit(data) : (data.hash || null);
    }
    const stamp = JSON.stringify([identity, (theme === 'light' || theme === 'dark') ? theme : 'dark', rest]);
    return stamp === last ? skip : stamp;
}
"""


def _register(tab: str, outputs: list[Output], source: str, options: list[tuple[str, str]],
              render: Callable[..., tuple]) -> Callable[..., tuple]:
    """Wire one tab: its clientside gate and its server callback (``render(data, theme, *options)``)."""
    rendered = {"type": ids.RENDERED, "tab": tab}
    clientside_callback(
        DRAW_GATE % repr(tab),
        Output(rendered, "data"),
        Input(ids.TABS, "value"),
        Input(source, "data"),
        Input(ids.THEME_STORE, "data"),
        *[Input(cid, prop) for cid, prop in options],
        State(rendered, "data"),
        prevent_initial_call=True,  # the layout draws the first tab
    )

    @callback(
        list(outputs),  # a list, even of one: the render functions return tuples
        Input(rendered, "data"),
        State(source, "data"),
        State(ids.THEME_STORE, "data"),
        *[State(cid, prop) for cid, prop in options],
        prevent_initial_call=True,
    )
    def view(_stamp: str, data: Any, theme: str | None, *opts: Any) -> tuple:
        return render(data, theme if theme in THEMES else "dark", *opts)

    view.__name__ = f"view_{tab}"
    return view


FIT = ids.RESULT_STORE
VIEWS: dict[str, Callable[..., tuple]] = {
    "surface": _register("surface", [Output(ids.SURFACE_GRAPH, "figure")], FIT, [(ids.SURFACE_AXIS, "value")],
                         render_surface),
    "smiles": _register("smiles", [Output(ids.SMILES_GRAPH, "figure")], FIT, [], render_smiles),
    "residuals": _register("residuals", [Output(ids.RESIDUALS_GRAPH, "figure")], FIT,
                           [(ids.RESIDUALS_SPACE, "value")], render_residuals),
    "term": _register("term", [Output(ids.TERM_GRAPH, "figure")], FIT, [], render_term),
    "greeks": _register("greeks", [Output(ids.GREEKS_GRAPH, "figure"), Output(ids.DENSITY_GRAPH, "figure")], FIT,
                        [(ids.GREEKS_SELECT, "value")], render_greeks),
    "params": _register(
        "params",
        [Output(ids.PARAMS_TABLE, "rowData"), Output(ids.PARAMS_TABLE, "columnDefs"), Output(ids.FIT_STATS, "children"),
         Output(ids.CORRELATION_GRAPH, "figure"), Output(ids.SENSITIVITY_GRAPH, "figure")],
        FIT, [], render_params),
    "quality": _register(
        "quality",
        [Output(ids.FORWARDS_GRAPH, "figure"), Output(ids.DROP_TABLE, "rowData"), Output(ids.FORWARD_TABLE, "rowData"),
         Output(ids.QUOTES_GRID, "rowData")],
        ids.SNAPSHOT_KEY, [], render_quality),
    "compare": _register(
        "compare",
        [Output(ids.COMPARE_TABLE, "rowData"), Output(ids.COMPARE_TABLE, "columnDefs"),
         Output(ids.COMPARE_SMILES_GRAPH, "figure"), Output(ids.COMPARE_RESIDUALS_GRAPH, "figure")],
        ids.COMPARE_STORE, [], render_compare),
}
