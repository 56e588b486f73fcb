"""Liveness of the scale-out mode: worker heartbeats in Redis, and what the web app tells the user from them.

Each worker's consumer writes a heartbeat every :data:`HEARTBEAT_S` seconds (the :class:`Heartbeat` bootstep,
added by :mod:`components.scaleout.worker`): a key ``smilescope:worker:<hostname>`` expiring after
:data:`HEARTBEAT_TTL_S` seconds, its host name listed in the set ``smilescope:workers``. A worker that stops
cleanly deletes its key; one that is killed stops writing and counts as gone :data:`HEARTBEAT_TTL_S` seconds
later. Reading the liveness is two Redis round trips, so the web app checks it on every Calibrate and every few
seconds for the header badge, and when it polls a job whose worker is gone (see
:mod:`components.scaleout.manager`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from celery import bootsteps
from celery.exceptions import BackendError
from kombu.exceptions import OperationalError

from components.scaleout import enabled
from components.scaleout.redis_store import PREFIX, StoreUnavailable, client

log = logging.getLogger(__name__)

#: Seconds between two heartbeats of a worker.
HEARTBEAT_S = 1.0
#: Seconds after its last heartbeat when a worker counts as gone.
HEARTBEAT_TTL_S = 4
WORKERS_KEY = f"{PREFIX}:workers"
#: What a Redis outage raises: in redis-py (connection refused, timeouts, a server restarting), in kombu (publishing
#: a task) and in Celery's result backend.
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.BusyLoadingError,
                OperationalError, BackendError, StoreUnavailable)
NO_WORKER = "no worker is running, so nothing can calculate: start one with `make worker`"


def worker_key(hostname: str) -> str:
    """The heartbeat key of the worker ``hostname``."""
    return f"{PREFIX}:worker:{hostname}"


def beat(redis_client: redis.Redis, hostname: str, info: dict[str, Any]) -> None:
    """Write one heartbeat of the worker ``hostname`` (``info``: what the badge may show of it)."""
    with redis_client.pipeline() as pipe:
        pipe.sadd(WORKERS_KEY, hostname)
        pipe.set(worker_key(hostname), json.dumps(info), ex=HEARTBEAT_TTL_S)
        pipe.execute()


def forget(redis_client: redis.Redis, hostname: str) -> None:
    """Remove the worker ``hostname`` at once (a clean shutdown)."""
    with redis_client.pipeline() as pipe:
        pipe.srem(WORKERS_KEY, hostname)
        pipe.delete(worker_key(hostname))
        pipe.execute()


def live_workers(redis_client: redis.Redis | None = None) -> dict[str, dict[str, Any]]:
    """The workers whose heartbeat is fresh, by host name (those gone are dropped from the list).

    Raises
    ------
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError
        Redis is unreachable.
    """
    redis_client = redis_client or client()
    names = sorted(name.decode() for name in redis_client.smembers(WORKERS_KEY))
    if not names:
        return {}
    values = redis_client.mget([worker_key(name) for name in names])
    gone = [name for name, value in zip(names, values, strict=True) if value is None]
    if gone:
        redis_client.srem(WORKERS_KEY, *gone)
    return {name: json.loads(value) for name, value in zip(names, values, strict=True) if value is not None}


@dataclass(frozen=True)
class Health:
    """What the web app knows of the scale-out back end now: ``problem`` is ``None`` when jobs can run, else a
    sentence for the user."""

    redis_ok: bool
    workers: dict[str, dict[str, Any]]
    problem: str | None


def redis_down_message(exc: Exception) -> str:
    """The user's sentence for a Redis outage."""
    return f"the job queue (Redis) is unreachable ({type(exc).__name__}: {exc}); try again when it is back"


def check() -> Health:
    """Redis reachable and at least one worker alive? Never raises for an outage: it is the answer."""
    try:
        workers = live_workers()
    except REDIS_ERRORS as exc:
        return Health(redis_ok=False, workers={}, problem=redis_down_message(exc))
    return Health(redis_ok=True, workers=workers, problem=None if workers else NO_WORKER)


def unavailable() -> str | None:
    """Why a background job cannot run now (Redis unreachable, no worker alive), ``None`` when it can; always
    ``None`` outside the scale-out mode (local jobs need nothing)."""
    return check().problem if enabled() else None


def lost_job(state: str, info: Any, workers: dict[str, dict[str, Any]]) -> str | None:
    """Why a job that has no result yet will never have one, or ``None`` while it may still finish.

    Parameters
    ----------
    state
        The Celery task state (``PENDING``: queued or unknown, ``STARTED``: running on the worker ``info``
        names, ``FAILURE``/``REVOKED``: ended without a result).
    info
        The task's meta: for ``STARTED``, ``{"hostname": ..., "pid": ...}``.
    workers
        The live workers (:func:`live_workers`).
    """
    if state == "STARTED":
        hostname = info.get("hostname") if isinstance(info, dict) else None
        if hostname and hostname not in workers:
            return f"the worker running it ({hostname}) stopped before it finished; run it again to retry"
        return None
    if state == "PENDING" and not workers:
        return "no worker is running to take it: start one with `make worker`, then run it again"
    if state in ("FAILURE", "REVOKED"):
        return f"its worker ended it without a result ({state.lower()}: {info}); run it again to retry"
    return None


class Heartbeat(bootsteps.StartStopStep):
    """Worker consumer step: a thread writing this worker's heartbeat while the consumer runs."""

    requires = {"celery.worker.consumer.connection:Connection"}

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self, parent: Any) -> None:
        hostname = parent.hostname
        info = {"pid": os.getpid(), "concurrency": getattr(parent.controller, "concurrency", None),
                "started": time.time()}
        stop = threading.Event()
        self._stop = stop
        self._thread = threading.Thread(target=self._run, args=(client(), hostname, info, stop),
                                        name="smilescope-heartbeat", daemon=True)
        self._thread.start()

    @staticmethod
    def _run(redis_client: redis.Redis, hostname: str, info: dict[str, Any], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                beat(redis_client, hostname, info)
            except REDIS_ERRORS as exc:  # Redis away: no heartbeat until it is back
                log.warning("heartbeat not written: %s", exc)
            stop.wait(HEARTBEAT_S)

    def stop(self, parent: Any) -> None:
        if self._stop is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * HEARTBEAT_S)
        try:
            forget(client(), parent.hostname)
        except REDIS_ERRORS:
            pass  # the key expires by itself
        self._stop = None

    shutdown = stop
