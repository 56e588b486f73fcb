"""Scale-out on Celery and Redis, used only when ``SMILESCOPE_REDIS_URL`` is set.

Unset (the default): diskcache stores and background jobs in local processes. Set: background callbacks run on
Celery workers through Dash's ``CeleryManager``, the shared stores live in Redis, and backtests fan out as
Celery tasks by chunks of snapshots.
"""

from __future__ import annotations

import os

REDIS_URL_ENV = "SMILESCOPE_REDIS_URL"


def redis_url() -> str | None:
    """The Redis URL of the deployment (``SMILESCOPE_REDIS_URL``), ``None`` when unset or blank."""
    return os.environ.get(REDIS_URL_ENV, "").strip() or None


def enabled() -> bool:
    """Whether this process runs in scale-out mode (Celery + Redis)."""
    return redis_url() is not None
