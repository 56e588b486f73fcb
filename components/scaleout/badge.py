"""The header's scale-out status badge: how many workers are alive, or what stops jobs from running."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import dash_mantine_components as dmc
from dash import dcc

from components import ids, scaleout

if TYPE_CHECKING:
    from components.scaleout.health import Health

#: How often the page re-checks the back end, ms.
CHECK_MS = 2000


def badge_state(health: Health) -> tuple[str, str]:
    """The badge's ``(text, color)`` for a :class:`Health`."""
    if not health.redis_ok:
        return "queue down", "red"
    if not health.workers:
        return "no worker", "red"
    n = len(health.workers)
    return f"{n} worker{'s' if n > 1 else ''}", "teal"


def status_badge() -> list[Any]:
    """The badge and its timer in scale-out mode; nothing otherwise."""
    if not scaleout.enabled():
        return []
    return [
        dmc.Badge("workers…", id=ids.SCALEOUT_BADGE, color="gray", variant="light", size="sm"),
        dcc.Interval(id=ids.SCALEOUT_TIMER, interval=CHECK_MS),
    ]
