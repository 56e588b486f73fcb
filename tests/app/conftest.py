"""Browser-test fixtures: the app as a real process on a free port (Chromium, Playwright and the page helpers
are in tests/browser.py, shared with the other test packages).

The app runs with its own cache directory (``SMILESCOPE_CACHE_DIR`` in a tmp dir, so every run starts cold) and
a 1 MB upload cap (``SMILESCOPE_MAX_SNAPSHOT_MB``), and is stopped by its PID at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import start_app, stop_process


@pytest.fixture(scope="session")
def app_log(tmp_path_factory) -> Path:
    """The app's stdout/stderr."""
    return tmp_path_factory.mktemp("app") / "app.log"


@pytest.fixture(scope="session")
def app_url(tmp_path_factory, app_log) -> Iterator[str]:
    """Start ``python app.py`` as a real process on a free loopback port with a fresh cache directory; stop it
    by PID at the end."""
    proc, url = start_app(app_log, tmp_path_factory.mktemp("cache"))
    try:
        yield url
    finally:
        stop_process(proc)
