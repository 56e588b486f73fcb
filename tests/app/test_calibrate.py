"""Calibrations in the browser: progress and cancel, the cache, and two users at once."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

#: Records, from now on, whether the progress bar was shown, the Calibrate button disabled, and the progress texts.
WATCH = """() => {
  window.__seen = {bar: false, disabled: false, texts: []};
  const check = () => {
    const bar = document.getElementById('progress-bar');
    const text = document.getElementById('progress-text');
    const button = document.getElementById('calibrate-button');
    if (bar && getComputedStyle(bar).visibility === 'visible') window.__seen.bar = true;
    if (button && button.disabled) window.__seen.disabled = true;
    const t = text && text.innerText;
    if (t && !window.__seen.texts.includes(t)) window.__seen.texts.push(t);
  };
  new MutationObserver(check).observe(document.body,
    {subtree: true, childList: true, attributes: true, characterData: true});
}"""


def _idle(page) -> bool:
    bar_hidden = page.evaluate("() => getComputedStyle(document.getElementById('progress-bar')).visibility") == "hidden"
    return bar_hidden and page.locator("#calibrate-button").is_enabled()


def test_svi_and_heston_calibrations_show_their_progress(app_url, page, artifacts, ui):
    ui.open_app(page, app_url)
    ui.pick(page, "weights-select", "Uniform")  # not the pre-computed default fit: a real run
    page.evaluate(WATCH)
    svi = ui.calibrate(page)
    seen = page.evaluate("() => window.__seen")
    assert seen["bar"] and seen["disabled"]
    assert "SVI" in svi["title"]

    ui.pick(page, "model-select", "Heston · stochastic vol")
    ui.pick(page, "optimizer-select", "Nelder–Mead")
    page.locator("#max-evals-input").fill("300")
    page.evaluate(WATCH)
    heston = ui.calibrate(page)
    seen = page.evaluate("() => window.__seen")
    assert seen["bar"] and seen["disabled"]
    assert any("evaluations" in t and "vol pts" in t for t in seen["texts"]), seen["texts"]
    assert "HESTON" in heston["title"]
    assert "HESTON" in page.locator("#result-summary").inner_text().upper()
    page.wait_for_function("() => getComputedStyle(document.getElementById('progress-bar')).visibility === 'hidden'")
    assert _idle(page)
    page.screenshot(path=str(artifacts / "02_heston_fit.png"))
    assert page.console_errors == []


def test_cancel_stops_a_long_differential_evolution_run(app_url, page, ui):
    before = ui.open_app(page, app_url)
    ui.pick(page, "model-select", "Bates · Heston + jumps")
    ui.pick(page, "optimizer-select", "Differential evolution + polish")
    page.locator("#max-evals-input").fill("20000")
    page.locator("#calibrate-button").click()
    page.wait_for_function("() => document.getElementById('progress-text').innerText.includes('evaluations')",
                           timeout=30_000)
    assert page.locator("#cancel-button").is_enabled()
    page.locator("#cancel-button").click()
    ui.notification(page, "Calibration cancelled")
    page.wait_for_function("() => !document.getElementById('calibrate-button').disabled", timeout=10_000)
    assert _idle(page)
    assert ui.figure(page, "surface-graph")["result"] == before["result"]  # the previous fit stays

    ui.pick(page, "model-select", "SVI · per expiry")
    ui.pick(page, "optimizer-select", "Levenberg–Marquardt")
    page.locator("#max-evals-input").fill("2000")
    ui.pick(page, "loss-select", "Soft L1")
    after = ui.calibrate(page)  # the app is still usable
    assert "SVI" in after["title"]
    assert page.console_errors == []


def test_a_repeated_fit_answers_from_the_cache_with_the_same_numbers(app_url, page, ui):
    ui.open_app(page, app_url)
    ui.pick(page, "model-select", "Heston · stochastic vol")
    ui.pick(page, "optimizer-select", "Trust-region reflective")
    first = ui.calibrate(page)
    ui.pick(page, "model-select", "SABR · per expiry")
    ui.calibrate(page)
    ui.pick(page, "model-select", "Heston · stochastic vol")
    again = ui.calibrate(page)
    # The same result, evaluation count and run time included: the stored fit, not a second run.
    assert again["result"] == first["result"]
    assert page.console_errors == []


def test_two_users_calibrating_different_snapshots_each_see_their_own_fit(app_url, page, second_context, ui):
    other = second_context.new_page()
    ui.open_app(page, app_url)
    before = ui.open_app(other, app_url)
    page.locator("#snapshot-select").click()
    page.get_by_role("option", name="spx_demo.csv", exact=True).click()
    ui.wait_figure(page, "surface-graph", other_than=before["result"])
    ui.pick(page, "model-select", "Heston · stochastic vol")
    ui.pick(page, "optimizer-select", "Trust-region reflective")
    ui.pick(other, "model-select", "SABR · per expiry")
    other.locator("#multistart-input").fill("3")
    spx_before = ui.figure(page, "surface-graph")["result"]
    btc_before = ui.figure(other, "surface-graph")["result"]
    page.locator("#calibrate-button").click()
    other.locator("#calibrate-button").click()
    spx = ui.wait_figure(page, "surface-graph", other_than=spx_before, timeout=90)
    btc = ui.wait_figure(other, "surface-graph", other_than=btc_before, timeout=90)
    assert "SPX" in spx["title"] and "HESTON" in spx["title"]
    assert "BTC" in btc["title"] and "SABR" in btc["title"]
    assert "SPX" in page.locator("#snapshot-summary").inner_text()
    assert "BTC" in other.locator("#snapshot-summary").inner_text()
    assert "HESTON" in page.locator("#result-summary").inner_text().upper()
    assert "SABR" in other.locator("#result-summary").inner_text().upper()
