"""The app starts as a real process and shows the bundled demo snapshot in headless Chromium."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_page_loads_demo_snapshot_without_console_errors(app_url, page, artifacts):
    page.goto(app_url)
    page.wait_for_selector(".ag-row", timeout=30_000)  # the quotes grid has rows
    page.get_by_text("Kept for fitting").wait_for(timeout=10_000)
    assert page.get_by_text("synthetic demo data").is_visible()
    assert page.get_by_text("BTC", exact=True).first.is_visible()
    page.screenshot(path=str(artifacts / "quotes.png"), full_page=True)
    assert page.console_errors == []


def test_picker_lists_only_data_files_and_switches_snapshot(app_url, page):
    page.goto(app_url)
    page.wait_for_selector(".ag-row", timeout=30_000)
    page.get_by_role("textbox").first.click()
    options = page.get_by_role("option").all_inner_texts()
    assert "spx_demo.csv" in options
    assert all(not name.startswith(("/", "..")) for name in options)
    page.get_by_role("option", name="spx_demo.csv").click()
    page.get_by_text("SPX", exact=True).first.wait_for(timeout=30_000)
    assert page.console_errors == []
