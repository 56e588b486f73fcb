"""A copied link reproduces the view: snapshot, model, optimizer, settings, tab, axis; the fit follows."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser


def test_a_link_opens_its_snapshot_settings_and_tab_and_fits(app_url, page, ui):
    page.goto(app_url + "?snapshot=spx_demo.csv&model=sabr&optimizer=trf&weights=uniform&beta=0.7&tab=smiles")
    shown = ui.wait_figure(page, "smiles-graph")
    assert "SPX" in shown["title"] and "SABR" in shown["title"]
    assert page.get_by_role("tab", name="Smiles", exact=True).get_attribute("aria-selected") == "true"
    assert page.locator("#model-select").input_value() == "SABR · per expiry"
    assert page.locator("#optimizer-select").input_value() == "Trust-region reflective"
    assert page.locator("#weights-select").input_value() == "Uniform"
    assert page.locator("#sabr-beta-input").input_value() == "0.7"
    assert "SPX" in page.locator("#snapshot-summary").inner_text()
    # the address bar keeps describing the fit on screen
    for part in ("snapshot=spx_demo.csv", "model=sabr", "optimizer=trf", "weights=uniform", "beta=0.7", "tab=smiles"):
        assert part in page.url
    assert page.console_errors == []


def test_a_link_to_a_file_outside_the_data_directory_is_refused(app_url, page, ui):
    before = ui.open_app(page, app_url + "?snapshot=../pyproject.toml")
    ui.notification(page, "Snapshot not loaded")
    assert "btc_demo.csv" in page.locator("#snapshot-summary").inner_text()
    assert ui.figure(page, "surface-graph")["result"] == before["result"]
