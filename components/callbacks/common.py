"""Small helpers shared by the callbacks: notifications and the identity of a stored result."""

from __future__ import annotations

import math
import uuid
from typing import Any

#: How long a notification stays, ms (errors stay until closed).
NOTICE_MS = 6000


def notify(title: str, message: str, *, color: str = "blue", sticky: bool = False) -> list[dict[str, Any]]:
    """A ``sendNotifications`` payload of one notification (errors: ``color="red", sticky=True``)."""
    return [
        {
            "action": "show",
            "id": uuid.uuid4().hex[:12],
            "title": title,
            "message": message,
            "color": color,
            "autoClose": False if sticky else NOTICE_MS,
            "withBorder": True,
        }
    ]


def error(title: str, exc: Exception | str) -> list[dict[str, Any]]:
    """A notification of a failure, naming the problem; it stays until closed."""
    return notify(title, str(exc), color="red", sticky=True)


def result_id(result: dict[str, Any] | None) -> str | None:
    """The identity of a stored result: ``"<snapshot hash>|<model>|<optimizer>|<nfev>|<elapsed µs>"``, ``None`` for
    none. Fits are memoised by snapshot and settings, so this names one run; it is built from strings and whole
    numbers only, so the browser computes the same text (see ``views.DRAW_GATE``)."""
    if not result:
        return None
    micros = math.floor(float(result.get("elapsed_s") or 0.0) * 1e6)
    parts = (result.get("snapshot_hash"), result.get("model"), result.get("optimizer"), result.get("nfev"), micros)
    return "|".join(str(part) for part in parts)
