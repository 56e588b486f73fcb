"""The Celery application of the scale-out mode: Redis as broker and result backend.

Configured so that a lost worker never loses a job silently: tasks are acknowledged after they run
(``task_acks_late``) and handed back to the queue when the worker process running them dies
(``task_reject_on_worker_lost``); each worker takes one task at a time (``worker_prefetch_multiplier=1``), so a
long fit never holds a queue of others hostage; a started task records its worker's host name
(``task_track_started``), which is how the web app tells a job whose worker is gone (see
:mod:`components.scaleout.health`). Socket timeouts of a few seconds make a Redis outage an error the user sees
quickly rather than a hung request.
"""

from __future__ import annotations

import functools

from celery import Celery

from components.scaleout import redis_url

#: Seconds to connect to Redis, and to wait for one reply, before the operation counts as failed.
REDIS_TIMEOUT_S = 3.0
#: Seconds a result (and the memoised background-callback outputs) stays in Redis: a week.
RESULT_EXPIRES_S = 7 * 24 * 3600
#: Seconds after which Redis hands an unacknowledged task to another worker: longer than any job may run, so a
#: slow job is never run twice at once; a job whose whole worker was killed is reported failed by the web app
#: long before that (it sees the worker's heartbeat stop) and re-runs on the next request.
VISIBILITY_TIMEOUT_S = 6 * 3600


@functools.lru_cache(maxsize=1)
def get_celery() -> Celery:
    """The process's Celery app, configured from ``SMILESCOPE_REDIS_URL`` (one per process)."""
    url = redis_url()
    if url is None:
        raise RuntimeError("SMILESCOPE_REDIS_URL is not set: the scale-out mode is off")
    app = Celery("smilescope", broker=url, backend=url, include=["components.scaleout.tasks"])
    transport = {
        "visibility_timeout": VISIBILITY_TIMEOUT_S,
        "socket_timeout": REDIS_TIMEOUT_S,
        "socket_connect_timeout": REDIS_TIMEOUT_S,
    }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_track_started=True,
        worker_prefetch_multiplier=1,
        result_expires=RESULT_EXPIRES_S,
        broker_connection_retry_on_startup=True,
        # a job running when Redis goes away is reported failed by the web app: stop it rather than finish it
        # unacknowledged and have it delivered again
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        redis_socket_timeout=REDIS_TIMEOUT_S,
        redis_socket_connect_timeout=REDIS_TIMEOUT_S,
        # publishing a job while Redis is down fails within a second instead of retrying for long
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0, "interval_step": 0.2,
                                   "interval_max": 0.5},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    return app
