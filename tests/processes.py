"""Real processes for the tests: the web app on a free loopback port, started and stopped by PID.

Shared by the browser tests (tests/app) and the scale-out tests (tests/scaleout), which start the same app with
more environment (``SMILESCOPE_REDIS_URL``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Upload cap of every app under test, MB (``SMILESCOPE_MAX_SNAPSHOT_MB``).
MAX_SNAPSHOT_MB = 1


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, *, timeout: float, proc: subprocess.Popen) -> None:
    """Poll ``url`` until it answers 200, the process dies, or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with code {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def start_app(log: Path, cache: Path, env: Mapping[str, str] | None = None, *,
              timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """Start ``python app.py`` on a free loopback port with the cache directory ``cache``, the upload cap
    :data:`MAX_SNAPSHOT_MB`, its output in ``log``, and ``env`` on top of this process's environment; returns the process and its URL once it answers
    (the process is stopped, and the log printed, if it never does)."""
    port = free_port()
    full_env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), PYTHONUNBUFFERED="1",
                    SMILESCOPE_CACHE_DIR=str(cache), SMILESCOPE_MAX_SNAPSHOT_MB=str(MAX_SNAPSHOT_MB), **(env or {}))
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=full_env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url, timeout=timeout, proc=proc)
    except Exception:
        stop_process(proc)
        print(log.read_text())
        raise
    return proc, url


def stop_process(proc: subprocess.Popen, *, timeout: float = 10) -> None:
    """Stop ``proc`` (SIGTERM, then SIGKILL after ``timeout`` s) and the children of its session, by PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    try:  # children left behind (a worker's pool processes) share its session: its process group
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
