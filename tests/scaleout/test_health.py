"""Worker liveness and lost jobs: heartbeats in a real Redis, task states written by Celery's own result backend,
and real workers (started, stopped, killed)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from components.scaleout import health
from components.scaleout.celery_app import get_celery
from components.scaleout.manager import ScaleoutManager, failure_message
from components.scaleout.redis_store import client
from tests.scaleout.conftest import RedisServer, redis_binary


def wait_until(predicate, *, timeout: float, step: float = 0.2):
    """Poll ``predicate`` until it is truthy (returns it) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    pytest.fail(f"not true within {timeout} s")


def test_heartbeats_make_a_worker_alive_and_forgetting_it_removes_it(scaleout_env):
    redis_client = client()
    assert health.live_workers() == {}
    health.beat(redis_client, "a@host", {"pid": 1})
    health.beat(redis_client, "b@host", {"pid": 2})
    assert health.live_workers() == {"a@host": {"pid": 1}, "b@host": {"pid": 2}}
    assert health.check() == health.Health(True, {"a@host": {"pid": 1}, "b@host": {"pid": 2}}, None)
    health.forget(redis_client, "a@host")
    redis_client.delete(health.worker_key("b@host"))  # what the expiry does to a killed worker's heartbeat
    assert health.live_workers() == {}
    assert not redis_client.sismember(health.WORKERS_KEY, "b@host")  # a gone worker leaves the list
    assert health.check().problem == health.NO_WORKER
    health.beat(redis_client, "c@host", {})
    assert 0 < redis_client.ttl(health.worker_key("c@host")) <= health.HEARTBEAT_TTL_S
    health.forget(redis_client, "c@host")


@pytest.mark.parametrize(
    ("state", "info", "workers", "lost"),
    [
        ("STARTED", {"hostname": "w1@h", "pid": 5}, {"w1@h": {}}, None),  # running on a live worker
        ("STARTED", {"hostname": "w1@h", "pid": 5}, {"w2@h": {}}, "worker running it (w1@h) stopped"),
        ("PENDING", None, {"w2@h": {}}, None),  # queued, a worker will take it
        ("PENDING", None, {}, "no worker is running"),
        ("RETRY", None, {}, None),
        ("FAILURE", "WorkerLostError()", {"w1@h": {}}, "ended it without a result (failure"),
        ("REVOKED", None, {"w1@h": {}}, "ended it without a result (revoked"),
    ],
)
def test_which_jobs_can_never_finish(state, info, workers, lost):
    reason = health.lost_job(state, info, workers)
    assert (reason is None) == (lost is None)
    if lost:
        assert lost in reason


def test_outside_the_scaleout_mode_nothing_is_ever_unavailable(monkeypatch):
    monkeypatch.delenv("SMILESCOPE_REDIS_URL", raising=False)
    assert health.unavailable() is None


def test_the_manager_reports_a_job_whose_worker_is_gone_and_waits_for_one_that_runs(scaleout_env):
    """Task states written by Celery's result backend itself (what a worker writes when it starts a task)."""
    celery = get_celery()
    manager = ScaleoutManager(celery, cache_by=[lambda: "v"])
    health.beat(client(), "alive@h", {})
    celery.backend.store_result("job-alive", {"hostname": "alive@h", "pid": 1}, "STARTED")
    celery.backend.store_result("job-orphan", {"hostname": "killed@h", "pid": 2}, "STARTED")
    assert manager.get_result("key-alive", "job-alive") is manager.UNDEFINED  # still running: keep polling
    orphan = manager.get_result("key-orphan", "job-orphan")
    assert "killed@h" in orphan["background_callback_error"]["msg"]
    assert celery.backend.get("key-orphan") is None  # reported, never memoised: a new request runs again

    celery.backend.set("key-done", '{"answer": 42}')  # a finished job's output wins over any liveness
    assert manager.get_result("key-done", "job-orphan") == {"answer": 42}
    health.forget(client(), "alive@h")
    assert "no worker" in manager.get_result("key-queued", "job-never-started")["background_callback_error"]["msg"]


def test_the_manager_reports_a_redis_outage_instead_of_failing_the_poll(tmp_path, monkeypatch):
    server = RedisServer(redis_binary(), tmp_path)
    server.start()
    monkeypatch.setenv("SMILESCOPE_REDIS_URL", server.url)
    get_celery.cache_clear()
    client.cache_clear()
    try:
        manager = ScaleoutManager(get_celery(), cache_by=[lambda: "v"])
        server.stop()
        result = manager.get_result("key", "job")
        assert "Redis" in result["background_callback_error"]["msg"]
        assert manager.get_progress("key") is None and manager.get_updated_props("key") == {}
        assert manager.job_running("job") is False
        assert health.check().redis_ok is False and "unreachable" in health.unavailable()
    finally:
        server.stop()
        get_celery.cache_clear()
        client.cache_clear()


def test_failure_message_drops_dashs_prefix_and_traceback():
    from dash.exceptions import BackgroundCallbackError

    exc = BackgroundCallbackError("An error occurred inside a background callback: the worker stopped\nTraceback")
    assert failure_message(exc) == "the worker stopped"


@pytest.mark.slow
def test_a_real_worker_is_alive_while_it_runs_and_gone_soon_after_it_is_killed(scaleout_env, celery_worker):
    first = celery_worker(name="stays")
    second = celery_worker(name="killed")
    alive = wait_until(lambda: {first.hostname, second.hostname} <= set(health.live_workers()), timeout=10)
    assert alive
    os.killpg(second.pid, signal.SIGKILL)  # the whole worker, pool included: a machine lost
    start = time.monotonic()
    wait_until(lambda: second.hostname not in health.live_workers(), timeout=3 * health.HEARTBEAT_TTL_S)
    print(f"killed worker seen gone after {time.monotonic() - start:.1f} s")
    assert first.hostname in health.live_workers()
    first.send_signal(signal.SIGTERM)  # a clean stop removes its heartbeat at once
    first.wait(timeout=30)
    assert health.live_workers() == {}
