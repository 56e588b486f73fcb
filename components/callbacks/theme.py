"""Dark (default) or light theme, persisted in the browser; Mantine, the grids and the figures follow it."""

from __future__ import annotations

from dash import Input, Output, Patch, State, callback
from dash.exceptions import PreventUpdate

from components import ids
from components.tables import grid_theme

THEMES = ("dark", "light")
GRIDS = (ids.PARAMS_TABLE, ids.DROP_TABLE, ids.FORWARD_TABLE, ids.QUOTES_GRID, ids.COMPARE_TABLE, ids.BACKTEST_RANKING)


@callback(
    Output(ids.THEME_STORE, "data"),
    Input(ids.THEME_TOGGLE, "value"),
    State(ids.THEME_STORE, "data"),
    prevent_initial_call=True,
)
def choose_theme(toggled: str | None, stored: str | None):
    """The toggle sets the stored theme (kept in the browser's local storage)."""
    if toggled not in THEMES or toggled == stored:
        raise PreventUpdate
    return toggled


@callback(
    Output(ids.THEME_TOGGLE, "value"),
    Output(ids.THEME_PROVIDER, "forceColorScheme"),
    *[Output(grid, "dashGridOptions") for grid in GRIDS],
    Input(ids.THEME_STORE, "data"),
)
def apply_theme(stored: str | None):
    """Mantine and the grids follow the stored theme (the grids' theme is patched, their other options stay);
    the figures are drawn again by their tabs, whose colours follow the theme. On load the stored theme sets
    the toggle; nothing is written back to the store then, so no view waits on this callback."""
    theme = stored if stored in THEMES else "dark"
    grids = []
    for _ in GRIDS:
        patch = Patch()
        patch["theme"] = grid_theme(theme)
        grids.append(patch)
    return theme, theme, *grids
