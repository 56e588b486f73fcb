"""The URL carries the snapshot, the settings and the view: a copied link reproduces what is on screen."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, State, callback, no_update
from dash.exceptions import PreventUpdate

from calibration.calibrate import CalibrationSettings
from calibration.errors import SmilescopeError
from components import ids
from components.callbacks.common import error
from components.controls import (
    CONTROL_IDS,
    CONTROL_PROPS,
    DEFAULTS,
    controls_from_settings,
    query_from_state,
    settings_from_controls,
    state_from_query,
    upload_value,
    with_upload,
)
from components.server_store import upload_key


def _asks_for_other_settings(controls: dict[str, Any]) -> bool:
    """Whether a link's controls describe other settings than the defaults the page opened with."""
    merged = controls_from_settings(DEFAULTS) | controls
    try:
        return settings_from_controls(*(merged[cid] for cid in CONTROL_IDS)) != DEFAULTS
    except SmilescopeError:
        return True  # let the fit request report the problem


@callback(
    *[Output(cid, CONTROL_PROPS[cid]) for cid in CONTROL_IDS],
    Output(ids.SNAPSHOT_SELECT, "data", allow_duplicate=True),
    Output(ids.SNAPSHOT_SELECT, "value", allow_duplicate=True),
    Output(ids.TABS, "value"),
    Output(ids.SURFACE_AXIS, "value"),
    Output(ids.URL_APPLIED, "data"),
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.URL, "pathname"),
    State(ids.URL, "search"),
    State(ids.SNAPSHOT_SELECT, "data"),
    prevent_initial_call="initial_duplicate",
)
def apply_link(_pathname: str | None, search: str | None, options: list[dict[str, Any]] | None):
    """On page load: set the snapshot, controls, tab and axis a link asks for; a fit follows when the link's
    snapshot or settings differ from the page's defaults."""
    state = state_from_query(search)
    controls = state["controls"]
    if not (controls or state["snapshot"] or state["upload"] or state["tab"] or state["surface_axis"]):
        raise PreventUpdate
    picker_data, picker_value, note = no_update, no_update, no_update
    if state["upload"]:
        try:
            snapshot, key = upload_key(state["upload"])
            picker_data = with_upload(options, key["name"], key["hash"])
            picker_value = upload_value(key["hash"], key["name"])
        except SmilescopeError as exc:
            note = error("The link's snapshot is not available", exc)
    elif state["snapshot"]:
        picker_value = state["snapshot"]  # opening it checks it is a file of the data directory
    refit = _asks_for_other_settings(controls)
    return (
        *[controls.get(cid, no_update) for cid in CONTROL_IDS],
        picker_data,
        picker_value,
        state["tab"] or no_update,
        state["surface_axis"] or no_update,
        search if refit else no_update,
        note,
    )


@callback(
    Output(ids.URL, "search"),
    Input(ids.RESULT_STORE, "data"),
    Input(ids.TABS, "value"),
    Input(ids.SURFACE_AXIS, "value"),
    State(ids.SNAPSHOT_KEY, "data"),
    State(ids.URL, "search"),
    prevent_initial_call=True,
)
def write_link(result: dict[str, Any] | None, tab: str | None, axis: str | None, key: dict[str, Any] | None,
               current: str | None):
    """Keep the address bar in step with the fit on screen and the view."""
    if not result or not key or result.get("snapshot_hash") != key.get("hash"):
        raise PreventUpdate
    try:
        settings = CalibrationSettings.from_dict(result["settings"])
    except SmilescopeError as exc:
        raise PreventUpdate from exc
    search = query_from_state(key, settings, tab=tab, surface_axis=axis)
    if search == (current or ""):
        raise PreventUpdate
    return search
