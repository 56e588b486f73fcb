"""Open the picked snapshot, receive uploads. A file that fails keeps the previous snapshot on screen."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, callback, no_update
from dash.exceptions import PreventUpdate

from calibration.errors import SmilescopeError
from components import ids
from components.callbacks.common import error, notify
from components.controls import parse_upload_value, upload_value, with_upload
from components.layout import snapshot_summary
from components.server_store import data_key, is_synthetic, upload_key, upload_snapshot

SHOWN = {"display": "inline-flex"}
HIDDEN = {"display": "none"}


def picker_value(key: dict[str, Any] | None) -> str | None:
    """The picker value naming a snapshot key."""
    if not key:
        return None
    return key["name"] if key.get("source") == "data" else upload_value(key["hash"], key["name"])


def open_key(value: str):
    """The snapshot and key a picker value names (an upload's ``upload:<hash>:<name>`` or a data-file name)."""
    upload = parse_upload_value(value)
    return upload_key(*upload) if upload else data_key(value)


@callback(
    Output(ids.SNAPSHOT_KEY, "data"),
    Output(ids.SNAPSHOT_SUMMARY, "children"),
    Output(ids.SYNTHETIC_BADGE, "style"),
    Output(ids.COMPARE_STORE, "data", allow_duplicate=True),
    Output(ids.SNAPSHOT_SELECT, "value", allow_duplicate=True),
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.SNAPSHOT_SELECT, "value"),
    State(ids.SNAPSHOT_KEY, "data"),
    prevent_initial_call=True,
)
def open_snapshot(value: str | None, current: dict[str, Any] | None):
    """Open the picked snapshot: new key (which starts a fit), summary, badge; compare pins are cleared.

    On failure: a notification naming the problem, the picker goes back to the snapshot still loaded.
    """
    if not value:
        raise PreventUpdate
    try:
        snapshot, key = open_key(value)
    except (SmilescopeError, OSError) as exc:
        return no_update, no_update, no_update, no_update, picker_value(current), error("Snapshot not loaded", exc)
    if current and dict(key) == current:
        raise PreventUpdate
    badge = SHOWN if is_synthetic(key) else HIDDEN
    return dict(key), snapshot_summary(snapshot, key["name"]), badge, [], no_update, no_update


@callback(
    Output(ids.SNAPSHOT_SELECT, "data"),
    Output(ids.SNAPSHOT_SELECT, "value", allow_duplicate=True),
    Output(ids.SNAPSHOT_UPLOAD, "contents"),
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.SNAPSHOT_UPLOAD, "contents"),
    State(ids.SNAPSHOT_UPLOAD, "filename"),
    State(ids.SNAPSHOT_SELECT, "data"),
    prevent_initial_call=True,
)
def receive_upload(contents: str | None, filename: str | None, options: list[dict[str, Any]] | None):
    """Parse an upload on the server and keep it by content hash; the picker then selects it.

    A bad file (too large, unknown format, invalid rows) gives a notification naming the problem; the snapshot
    on screen stays loaded. The upload's contents are cleared so the same file can be sent again.
    """
    if not contents:
        raise PreventUpdate
    name = filename or "upload"
    try:
        snapshot, key = upload_snapshot(contents, name)
    except (SmilescopeError, OSError) as exc:  # OSError: the shared store (disk or Redis) is unavailable
        return no_update, no_update, None, error(f"Upload rejected: {name}", exc)
    message = (f"{snapshot.underlying} at {snapshot.asof:%Y-%m-%d %H:%M} UTC: {snapshot.drops.n_input:,} quotes, "
               f"{snapshot.drops.n_kept:,} fitted")
    return (with_upload(options, name, key["hash"]), upload_value(key["hash"], name), None,
            notify(f"Uploaded {name}", message, color="teal"))
