"""The page: a Mantine shell with the snapshot picker, a summary strip, data quality and the quotes grid."""

from __future__ import annotations

import dash_ag_grid as dag
import dash_mantine_components as dmc
from dash import dcc, html

from components import ids
from components.data_files import DEFAULT_SNAPSHOT, list_snapshots
from components.tables import DROP_COLUMNS, FORWARD_COLUMNS, QUOTE_COLUMNS, column_defs

GRID_THEME = {
    "function": (
        "themeQuartz.withParams({backgroundColor: '#15181e', foregroundColor: '#d7dae0', "
        "headerBackgroundColor: '#1c2028', oddRowBackgroundColor: '#181b22', borderColor: '#2a2f3a', "
        "fontSize: 12, spacing: 5, accentColor: '#4dabf7'})"
    )
}


def _grid(grid_id: str, columns: list[dict], *, height: str) -> dag.AgGrid:
    return dag.AgGrid(
        id=grid_id,
        columnDefs=columns,
        rowData=[],
        defaultColDef={"resizable": True, "sortable": True},
        columnSize="responsiveSizeToFit",
        dashGridOptions={"theme": GRID_THEME, "animateRows": False},
        style={"height": height, "width": "100%"},
    )


def _section(title: str, child) -> dmc.Paper:
    return dmc.Paper(
        [dmc.Text(title, fw=600, size="sm", c="dimmed", mb=6), child],
        p="sm",
        radius="md",
        withBorder=True,
    )


def build_layout() -> dmc.MantineProvider:
    """The whole page. The snapshot picker lists only files in the data directory."""
    snapshots = list_snapshots()
    default = DEFAULT_SNAPSHOT if DEFAULT_SNAPSHOT in snapshots else (snapshots[0] if snapshots else None)
    header = dmc.Group(
        [
            dmc.Group(
                [
                    dmc.Title("Smilescope", order=3),
                    dmc.Badge("synthetic demo data", id=ids.SYNTHETIC_BADGE, color="yellow", variant="light"),
                ],
                gap="sm",
            ),
            dmc.Select(
                id=ids.SNAPSHOT_SELECT,
                data=snapshots,
                value=default,
                searchable=True,
                allowDeselect=False,
                w=360,
                size="sm",
                comboboxProps={"withinPortal": True},
            ),
        ],
        justify="space-between",
        h="100%",
        px="md",
    )
    main = dmc.Stack(
        [
            dmc.Alert(id=ids.SNAPSHOT_ERROR, color="red", title="Snapshot not loaded", hide=True),
            html.Div(id=ids.SNAPSHOT_SUMMARY),
            dmc.SimpleGrid(
                [
                    _section("Dropped quotes, by reason", _grid(ids.DROP_TABLE, column_defs(DROP_COLUMNS), height="260px")),
                    _section("Forwards from put-call parity", _grid(ids.FORWARD_TABLE, column_defs(FORWARD_COLUMNS), height="260px")),
                ],
                cols={"base": 1, "lg": 2},
            ),
            _section("Quotes (all rows; status says why a quote is not fitted)", _grid(ids.QUOTES_GRID, column_defs(QUOTE_COLUMNS), height="520px")),
            dcc.Store(id=ids.SNAPSHOT_KEY),
        ],
        gap="md",
    )
    shell = dmc.AppShell(
        [dmc.AppShellHeader(header), dmc.AppShellMain(main)],
        header={"height": 60},
        padding="md",
    )
    return dmc.MantineProvider(shell, forceColorScheme="dark", theme={"primaryColor": "blue"})
