"""Scale-out fixtures: a real Redis, real Celery workers and the web app in Celery mode, all as processes on the
loopback interface, started on free ports and stopped by PID.

- ``redis_server`` (session): ``redis-server`` without persistence on a free port; ``.url``, ``.stop()`` and
  ``.start()`` (again on the same port, empty) for the outage tests. Debian's package comes with
  ``make system-deps``; without the binary the tests are skipped, except under CI (``CI`` set), where they fail.
- ``scaleout_env``: this test process in scale-out mode (``SMILESCOPE_REDIS_URL`` and a fresh
  ``SMILESCOPE_CACHE_DIR``), the per-process Celery app and Redis client rebuilt before and after.
- ``celery_worker``: a factory ``celery_worker(concurrency=1, name=None) -> Popen`` starting ``make worker``'s
  command with the test's Redis and cache directory; it returns once the worker answers a ping, and every worker
  it started is killed at the end of the test.
- ``scaleout_app`` (session): ``python app.py`` with ``SMILESCOPE_REDIS_URL`` set; its URL (its log:
  ``scaleout_app_log``).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from celery import Celery
from kombu.exceptions import OperationalError

from tests.processes import ROOT, free_port, start_app, stop_process

#: The worker command of ``make worker`` (concurrency and host name are added per worker).
WORKER_COMMAND = [sys.executable, "-m", "celery", "-A", "components.scaleout.worker:celery_app", "worker",
                  "--loglevel=INFO", "--without-gossip", "--without-mingle"]
#: Seconds a worker or Redis may take to answer after it starts.
START_TIMEOUT_S = 60.0


def redis_binary() -> str:
    """Path of ``redis-server``; skips the test without it (fails under CI, where ``make test`` installs it)."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed (`make system-deps` installs Debian's redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class RedisServer:
    """A ``redis-server`` process of the tests: no persistence, loopback only, stopped by PID."""

    binary: str
    workdir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it on its port (empty: nothing is saved) and wait until it answers."""
        log = (self.workdir / f"redis-{self.port}.log").open("a")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.ping()
                return
            except redis.exceptions.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start: {(self.workdir / log.name).read_text()}")
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        """Stop it (its data is lost)."""
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    """A real Redis for the session, on a free loopback port."""
    server = RedisServer(redis_binary(), tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _reset_process_clients() -> None:
    """Forget this process's Celery app, Redis clients and memoised snapshots (they belong to one store)."""
    from components import server_store
    from components.scaleout.celery_app import get_celery
    from components.scaleout.redis_store import client

    get_celery.cache_clear()
    client.cache_clear()
    server_store._parse_data_file.cache_clear()  # noqa: SLF001 - it stores the bytes on first parse only
    server_store.snapshot_by_hash.cache_clear()


@pytest.fixture()
def scaleout_env(redis_server, tmp_path, monkeypatch) -> Iterator[RedisServer]:
    """This process in scale-out mode on the test Redis, with its own empty cache directory."""
    monkeypatch.setenv("SMILESCOPE_REDIS_URL", redis_server.url)
    monkeypatch.setenv("SMILESCOPE_CACHE_DIR", str(tmp_path / "cache"))
    _reset_process_clients()
    yield redis_server
    _reset_process_clients()


def ping_worker(url: str, hostname: str, *, timeout: float = START_TIMEOUT_S, proc: subprocess.Popen) -> None:
    """Wait until the worker ``hostname`` answers a Celery ping (raises if it exits or times out)."""
    probe = Celery("probe", broker=url, backend=url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with code {proc.returncode} before answering")
            try:
                if probe.control.ping(destination=[hostname], timeout=0.5):
                    return
            except (redis.exceptions.ConnectionError, OperationalError):
                time.sleep(0.2)  # a connection left over from before a Redis restart: the next try reconnects
        raise TimeoutError(f"worker {hostname} did not answer a ping within {timeout} s")
    finally:
        probe.close()


@pytest.fixture()
def celery_worker(redis_server, tmp_path_factory) -> Iterator[Callable[..., subprocess.Popen]]:
    """Factory of real Celery workers on the test Redis; each is killed (with its pool) at the end of the test.

    ``celery_worker(concurrency=1, name=None, env=None)`` returns the worker's ``Popen`` once it answers a
    ping; its host name is ``proc.hostname`` and its log ``proc.log``.
    """
    started: list[subprocess.Popen] = []
    cache = tmp_path_factory.mktemp("worker-cache")
    counter = itertools.count()

    def start(concurrency: int = 1, name: str | None = None, env: dict[str, str] | None = None):
        hostname = f"{name or f'w{next(counter)}'}-{redis_server.port}@localhost"
        log = tmp_path_factory.mktemp("worker") / "worker.log"
        full_env = dict(os.environ, SMILESCOPE_REDIS_URL=redis_server.url, SMILESCOPE_CACHE_DIR=str(cache),
                        PYTHONUNBUFFERED="1", **(env or {}))
        with log.open("w") as out:
            proc = subprocess.Popen([*WORKER_COMMAND, f"--concurrency={concurrency}", f"--hostname={hostname}"],
                                    cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        proc.hostname = hostname
        proc.log = log
        started.append(proc)
        try:
            ping_worker(redis_server.url, hostname, proc=proc)
        except Exception:
            print(log.read_text())
            raise
        return proc

    yield start
    for proc in started:
        stop_process(proc, timeout=5)


@pytest.fixture(scope="session")
def scaleout_app_log(tmp_path_factory) -> Path:
    """The scale-out app's stdout/stderr."""
    return tmp_path_factory.mktemp("scaleout-app") / "app.log"


@pytest.fixture(scope="session")
def scaleout_app(redis_server, scaleout_app_log, tmp_path_factory) -> Iterator[str]:
    """The web app in scale-out mode on the test Redis (started before any worker: the page loads without
    one); its URL."""
    proc, url = start_app(scaleout_app_log, tmp_path_factory.mktemp("scaleout-cache"),
                          {"SMILESCOPE_REDIS_URL": redis_server.url})
    try:
        yield url
    finally:
        stop_process(proc)
