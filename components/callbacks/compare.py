"""Pin up to three fits of the same snapshot to compare them (cleared when the snapshot changes)."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, Patch, State, callback, no_update
from dash.exceptions import PreventUpdate

from components import ids
from components.callbacks.common import notify
from components.controls import MODEL_LABELS

MAX_PINNED = 3


def _same_fit(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("snapshot_hash") == b.get("snapshot_hash") and a.get("settings") == b.get("settings")


def pin(result: dict[str, Any] | None, pinned: list[dict[str, Any]] | None):
    """``(COMPARE_STORE update, notification)`` for pinning ``result``: appended (a Patch, the pinned fits are
    not sent back), the oldest dropped beyond three, a fit of another snapshot replacing them all."""
    pinned = pinned or []
    if not result:
        return no_update, notify("Nothing to compare", "There is no fit on screen yet.", color="gray")
    label = MODEL_LABELS.get(result["model"], result["model"]).split(" · ")[0]
    if any(_same_fit(result, p) for p in pinned):
        return no_update, notify("Already pinned", f"This {label} fit is already in Compare.", color="gray")
    if pinned and pinned[0].get("snapshot_hash") != result.get("snapshot_hash"):
        return [result], notify("Compare restarted", f"{label} pinned; the fits of the previous snapshot were "
                                "removed.", color="blue")
    patch = Patch()
    message = f"{label} pinned ({min(len(pinned) + 1, MAX_PINNED)} of {MAX_PINNED})."
    if len(pinned) >= MAX_PINNED:
        del patch[0]
        message += " The oldest pin was dropped."
    patch.append(result)
    return patch, notify("Added to compare", message, color="teal")


@callback(
    Output(ids.COMPARE_STORE, "data", allow_duplicate=True),
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.COMPARE_ADD, "n_clicks"),
    State(ids.RESULT_STORE, "data"),
    State(ids.COMPARE_STORE, "data"),
    prevent_initial_call=True,
)
def add_to_compare(_clicks: int | None, result: dict[str, Any] | None, pinned: list[dict[str, Any]] | None):
    """Pin the fit on screen."""
    return pin(result, pinned)


@callback(
    Output(ids.COMPARE_STORE, "data", allow_duplicate=True),
    Input(ids.COMPARE_CLEAR, "n_clicks"),
    State(ids.COMPARE_STORE, "data"),
    prevent_initial_call=True,
)
def clear_compare(_clicks: int | None, pinned: list[dict[str, Any]] | None):
    """Unpin every fit."""
    if not pinned:
        raise PreventUpdate
    return []
