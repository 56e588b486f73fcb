"""The app starts as a real process and opens on the bundled demo snapshot, already fitted."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_page_opens_with_the_demo_fit_and_no_console_errors(app_url, page, artifacts, ui):
    shown = ui.open_app(page, app_url)
    assert {"surface", "scatter3d"} <= set(shown["types"])  # fitted surface and market points
    assert "BTC" in shown["title"] and "SVI" in shown["title"]
    header = page.locator("#result-summary")
    assert "SVI" in header.inner_text() and "CONVERGED" in header.inner_text().upper()
    assert page.locator("#synthetic-badge").is_visible()
    assert "btc_demo.csv" in page.locator("#snapshot-summary").inner_text()
    assert page.locator("#calibrate-button").is_enabled()
    page.screenshot(path=str(artifacts / "01_page_load.png"))
    assert page.console_errors == []


def test_picker_lists_only_data_files_grouped_and_refits_the_picked_snapshot(app_url, page, ui):
    before = ui.open_app(page, app_url)
    page.locator("#snapshot-select").click()
    options = page.get_by_role("option").all_inner_texts()
    assert "spx_demo.csv" in options and "btc_demo.csv" in options
    assert "btc_2026-11-18_1400.csv" in options  # the history folder, as its own group
    assert page.get_by_text("history/", exact=True).is_visible()
    assert all(not name.startswith(("/", "..")) for name in options)
    page.get_by_role("option", name="spx_demo.csv", exact=True).click()
    shown = ui.wait_figure(page, "surface-graph", other_than=before["result"])
    assert "SPX" in shown["title"]
    assert "SPX" in page.locator("#snapshot-summary").inner_text()
    assert "snapshot=spx_demo.csv" in page.url
    assert page.console_errors == []
