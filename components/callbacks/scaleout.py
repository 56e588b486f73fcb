"""The scale-out mode's user-facing side: the header badge, refreshed every few seconds from the workers'
heartbeats, and the notification of a background job that ended without a result (the app's ``on_error``)."""

from __future__ import annotations

from typing import Any

from dash import Input, Output, callback, set_props
from dash.exceptions import BackgroundCallbackError

from components import ids
from components.callbacks.common import error
from components.scaleout.badge import badge_state
from components.scaleout.health import check
from components.scaleout.manager import failure_message


@callback(
    Output(ids.SCALEOUT_BADGE, "children"),
    Output(ids.SCALEOUT_BADGE, "color"),
    Input(ids.SCALEOUT_TIMER, "n_intervals"),
)
def refresh_badge(_n: Any):
    """Workers alive, none, or the queue unreachable."""
    return badge_state(check())


def report_job_failure(exc: Exception) -> None:
    """The app's error handler in scale-out mode: a background job that can never finish (its worker gone,
    Redis unreachable; see :class:`components.scaleout.manager.ScaleoutManager`) becomes a notification and the
    page keeps what it shows; any other error is raised as without a handler."""
    if not isinstance(exc, BackgroundCallbackError):
        raise exc
    set_props(ids.NOTIFICATIONS, {"sendNotifications": error("Background job failed", failure_message(exc))})
