"""Browser fixtures and page helpers, shared by every test package (loaded as a plugin by tests/conftest.py, so
one Playwright serves the whole session): Debian's Chromium driven by Playwright, and the few page helpers the
tests share (pick an option, calibrate, read what a figure shows, wait for a notification).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.processes import MAX_SNAPSHOT_MB, ROOT

ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
#: A laptop screen: the smallest the layout is designed for.
VIEWPORT = {"width": 1366, "height": 768}


def _launch(pw, profile: Path):
    return pw.chromium.launch_persistent_context(
        str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT,
        accept_downloads=True,
    )


@pytest.fixture(scope="session")
def playwright_instance():
    """Playwright, with Debian's Chromium present (never a downloaded browser)."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser_context(playwright_instance, tmp_path_factory):
    """A headless Chromium context with a fresh profile."""
    context = _launch(playwright_instance, tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield context
    finally:
        context.close()


@pytest.fixture()
def second_context(playwright_instance, tmp_path_factory):
    """Another user: a second Chromium with its own fresh profile (own storage, own session)."""
    context = _launch(playwright_instance, tmp_path_factory.mktemp("chromium-profile-2"))
    try:
        yield context
    finally:
        context.close()


def _record_errors(page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors


@pytest.fixture()
def page(browser_context):
    """A new page that records console errors in ``page.console_errors``."""
    page = browser_context.new_page()
    page.console_errors = _record_errors(page)
    yield page
    page.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# ---------------------------------------------------------------------------------------------------------------
# page helpers
# ---------------------------------------------------------------------------------------------------------------

#: JS: what a figure shows, ``{result, traces, types, title}`` (null until it has traces).
FIGURE_STATE = """(id) => {
  const gd = document.querySelector('#' + id + ' .js-plotly-plot');
  if (!gd || !gd.data || !gd.data.length || !gd._fullLayout) return null;
  const meta = gd.layout.meta || {};
  const title = gd.layout.title ? (gd.layout.title.text || gd.layout.title) : '';
  return {result: meta.result || null, traces: gd.data.length, types: gd.data.map(t => t.type || 'scatter'),
          title: String(title), paper: gd._fullLayout.paper_bgcolor};
}"""


def figure(page, graph_id: str):
    """What the figure ``graph_id`` shows now, or None."""
    return page.evaluate(FIGURE_STATE, graph_id)


def wait_figure(page, graph_id: str, *, other_than: str | None = None, timeout: float = 30.0):
    """Wait until ``graph_id`` shows a fit (its ``layout.meta.result``), different from ``other_than``."""
    page.wait_for_function(
        f"""(prev) => {{ const s = ({FIGURE_STATE})('{graph_id}'); return s && s.result && s.result !== prev; }}""",
        arg=other_than, timeout=timeout * 1000,
    )
    return figure(page, graph_id)


def pick(page, select_id: str, option: str) -> None:
    """Choose ``option`` (its visible label) in the Mantine select ``select_id``."""
    page.locator(f"#{select_id}").click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_function("([id, label]) => document.getElementById(id).value === label", arg=[select_id, option])


def open_app(page, url: str):
    """Open the app and wait for the first fitted surface; returns what it shows."""
    page.goto(url)
    return wait_figure(page, "surface-graph")


def calibrate(page, *, timeout: float = 60.0):
    """Click Calibrate and wait for the surface to show the new fit; returns what it shows."""
    before = (figure(page, "surface-graph") or {}).get("result")
    page.locator("#calibrate-button").click()
    return wait_figure(page, "surface-graph", other_than=before, timeout=timeout)


def notification(page, text: str, *, timeout: float = 15.0):
    """The notification containing ``text`` (waits for it)."""
    note = page.locator(".mantine-Notification-root", has_text=text).first
    note.wait_for(timeout=timeout * 1000)
    return note


@pytest.fixture(scope="session")
def ui():
    """The page helpers above, the repository root and the upload cap of the app under test."""
    return SimpleNamespace(figure=figure, wait_figure=wait_figure, pick=pick, open_app=open_app,
                           calibrate=calibrate, notification=notification, root=ROOT,
                           max_snapshot_mb=MAX_SNAPSHOT_MB)
