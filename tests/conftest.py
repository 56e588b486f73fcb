"""Shared fixtures: the repository root and the real market samples of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Chromium, Playwright and the page helpers, for every test package (one Playwright per session).
pytest_plugins = ["tests.browser"]

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real market samples; the test is skipped when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real market samples not found at {SHARED_DATA}")
    return SHARED_DATA
