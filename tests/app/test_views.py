"""Every view draws a figure with traces from the fit on screen; Compare pins fits; the theme toggles and
persists. Screenshots of every tab go to tests/artifacts/."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

#: Tab label -> the figures it shows (those drawn from the fit carry its id in ``layout.meta``).
TAB_FIGURES = {
    "Surface": ["surface-graph"],
    "Smiles": ["smiles-graph"],
    "Residuals": ["residuals-graph"],
    "Term structure": ["term-graph"],
    "Greeks": ["greeks-graph", "density-graph"],
    "Parameters": ["correlation-graph", "sensitivity-graph"],
}


def _wait_traces(page, graph_id: str) -> dict:
    page.wait_for_function(
        "(id) => { const gd = document.querySelector('#' + id + ' .js-plotly-plot');"
        " return gd && gd.data && gd.data.length > 0; }", arg=graph_id, timeout=30_000)
    return page.evaluate("(id) => document.querySelector('#' + id + ' .js-plotly-plot').data.length", graph_id)


def test_every_tab_draws_the_fit_on_screen(app_url, page, artifacts, ui):
    shown = ui.open_app(page, app_url)
    for i, (tab, graphs) in enumerate(TAB_FIGURES.items(), start=1):
        page.get_by_role("tab", name=tab, exact=True).click()
        for graph in graphs:
            drawn = ui.wait_figure(page, graph)
            assert drawn["result"] == shown["result"], (tab, graph)
            assert drawn["traces"] > 0
        if tab == "Parameters":
            page.locator("#params-table .ag-row").first.wait_for()
            assert "RMSE" in page.locator("#fit-stats").inner_text()
        page.wait_for_timeout(400)  # let the WebGL scenes and transitions settle for the screenshot
        page.screenshot(path=str(artifacts / f"tab_{i}_{tab.split()[0].lower()}.png"))
    page.get_by_role("tab", name="Data quality", exact=True).click()
    assert _wait_traces(page, "forwards-graph") > 0
    page.locator("#quotes-grid .ag-row").first.wait_for()
    page.locator("#drop-table .ag-row").first.wait_for()
    assert page.locator("#forward-table .ag-row").count() > 0
    page.wait_for_timeout(400)
    page.screenshot(path=str(artifacts / "tab_7_quality.png"))
    assert page.console_errors == []


def test_view_options_redraw_only_their_tab(app_url, page, ui):
    shown = ui.open_app(page, app_url)
    page.get_by_text("Strike", exact=True).click()
    page.wait_for_function(
        "() => { const gd = document.querySelector('#surface-graph .js-plotly-plot');"
        " return gd && gd.layout.scene && String(gd.layout.scene.xaxis.title.text || '').startsWith('Strike'); }",
        timeout=30_000)
    assert "x=strike" in page.url
    page.get_by_role("tab", name="Residuals", exact=True).click()
    ui.wait_figure(page, "residuals-graph")
    page.get_by_text("Premium", exact=True).click()
    page.wait_for_function(
        "() => JSON.stringify(document.querySelector('#residuals-graph .js-plotly-plot').layout).includes('premium')",
        timeout=30_000)
    assert ui.figure(page, "residuals-graph")["result"] == shown["result"]
    assert page.console_errors == []


def test_compare_shows_pinned_fits_side_by_side(app_url, page, artifacts, ui):
    ui.open_app(page, app_url)
    page.locator("#compare-add").click()
    ui.notification(page, "Added to compare")
    ui.pick(page, "model-select", "Heston · stochastic vol")
    ui.calibrate(page)
    page.locator("#compare-add").click()
    ui.notification(page, "(2 of 3)")
    page.get_by_role("tab", name="Compare", exact=True).click()
    for graph in ("compare-smiles-graph", "compare-residuals-graph"):
        assert ui.wait_figure(page, graph)["traces"] > 0
    page.locator("#compare-table .ag-row").first.wait_for()
    text = page.locator("#compare-table").inner_text().upper()
    assert "SVI" in text and "HESTON" in text
    page.wait_for_timeout(400)
    page.screenshot(path=str(artifacts / "tab_8_compare.png"))
    page.locator("#compare-clear").click()
    page.wait_for_function(
        "() => { const gd = document.querySelector('#compare-smiles-graph .js-plotly-plot');"
        " return gd && gd.data && gd.data.length === 0; }", timeout=30_000)
    assert page.console_errors == []


def test_light_theme_applies_everywhere_and_persists(app_url, page, artifacts, ui):
    dark = ui.open_app(page, app_url)
    page.locator("#theme-toggle").get_by_text("light", exact=True).click()
    page.wait_for_function("() => document.documentElement.getAttribute('data-mantine-color-scheme') === 'light'")
    page.wait_for_function(
        "(p) => { const gd = document.querySelector('#surface-graph .js-plotly-plot');"
        " return gd && gd._fullLayout && gd._fullLayout.paper_bgcolor !== p; }", arg=dark["paper"], timeout=30_000)
    page.wait_for_timeout(400)
    page.screenshot(path=str(artifacts / "05_light_theme.png"))
    page.reload()
    light = ui.wait_figure(page, "surface-graph")
    page.wait_for_function("() => document.documentElement.getAttribute('data-mantine-color-scheme') === 'light'")
    page.wait_for_function(
        "(p) => document.querySelector('#surface-graph .js-plotly-plot')._fullLayout.paper_bgcolor !== p",
        arg=dark["paper"], timeout=30_000)
    assert light["result"] == dark["result"]
    page.locator("#theme-toggle").get_by_text("dark", exact=True).click()  # leave the profile as found
    page.wait_for_function("() => document.documentElement.getAttribute('data-mantine-color-scheme') === 'dark'")
    assert page.console_errors == []
