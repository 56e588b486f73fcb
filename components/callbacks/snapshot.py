"""Load the picked snapshot and fill the summary, data-quality tables and quotes grid."""

from __future__ import annotations

import dash_mantine_components as dmc
from dash import Input, Output, callback, no_update

from calibration.errors import SmilescopeError
from calibration.snapshot import QuoteSnapshot, load_snapshot
from components import ids
from components.data_files import resolve_snapshot
from components.tables import drop_records, forward_records, quote_records


def _stat(label: str, value: str) -> dmc.Paper:
    return dmc.Paper(
        [dmc.Text(label, size="xs", c="dimmed", tt="uppercase"), dmc.Text(value, fw=600, size="lg")],
        p="xs",
        radius="md",
        withBorder=True,
    )


def summary(snapshot: QuoteSnapshot) -> dmc.SimpleGrid:
    """Summary strip of a snapshot: what, when, how many quotes kept."""
    drops = snapshot.drops
    return dmc.SimpleGrid(
        [
            _stat("Underlying", snapshot.underlying),
            _stat("As of (UTC)", f"{snapshot.asof:%Y-%m-%d %H:%M:%S}"),
            _stat("Spot", f"{snapshot.spot:,.2f}"),
            _stat("Expiries", str(len(snapshot.expiries))),
            _stat("Quotes", f"{drops.n_input:,}"),
            _stat("Kept for fitting", f"{drops.n_kept:,} ({drops.n_kept / max(drops.n_input, 1):.0%})"),
        ],
        cols={"base": 2, "sm": 3, "lg": 6},
    )


@callback(
    Output(ids.SNAPSHOT_SUMMARY, "children"),
    Output(ids.DROP_TABLE, "rowData"),
    Output(ids.FORWARD_TABLE, "rowData"),
    Output(ids.QUOTES_GRID, "rowData"),
    Output(ids.SNAPSHOT_KEY, "data"),
    Output(ids.SNAPSHOT_ERROR, "children"),
    Output(ids.SNAPSHOT_ERROR, "hide"),
    Input(ids.SNAPSHOT_SELECT, "value"),
)
def show_snapshot(name: str | None):
    """Load the picked snapshot; on bad input show the reason and keep what is on screen."""
    if not name:
        return (no_update,) * 5 + ("", True)
    try:
        snapshot = load_snapshot(resolve_snapshot(name))
    except (SmilescopeError, OSError) as exc:
        return (no_update,) * 5 + (str(exc), False)
    key = {"name": name, "hash": snapshot.content_hash}
    return (
        summary(snapshot),
        drop_records(snapshot),
        forward_records(snapshot),
        quote_records(snapshot),
        key,
        "",
        True,
    )
