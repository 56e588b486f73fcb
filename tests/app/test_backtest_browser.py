"""The Backtest tab in the browser: a run with its progress, the five sub-views, cancel and resume, the replay.

The app runs as its own process on a data directory holding a short history (four hourly BTC snapshots and a
corrupt file, see ``test_backtest_view.make_history``) with a fresh cache. Screenshots of every sub-view go to
tests/artifacts/.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.app.test_backtest_view import make_history
from tests.app.test_calibrate import WATCH as CALIBRATE_WATCH
from tests.processes import start_app, stop_process

pytestmark = pytest.mark.browser

#: Records, from now on, the backtest progress texts and whether the bar was shown and Run disabled (the
#: Calibrate job's watcher on the Backtest tab's ids).
WATCH = (CALIBRATE_WATCH.replace("'progress-", "'backtest-progress-")
         .replace("'calibrate-button'", "'backtest-run'"))
SUBVIEW_GRAPHS = {"Stability": "backtest-stability-graph", "Out-of-sample": "backtest-oos-graph",
                  "Hedge": "backtest-hedge-graph"}


@pytest.fixture(scope="module")
def history_app(tmp_path_factory):
    """The app on a data directory with the short history ("hist"); yields ``(url, cache directory)``."""
    data = make_history(tmp_path_factory.mktemp("backtest-data"))
    cache = tmp_path_factory.mktemp("backtest-cache")
    log = tmp_path_factory.mktemp("backtest-app") / "app.log"
    proc, url = start_app(log, cache, {"SMILESCOPE_DATA_DIR": str(data)})
    try:
        yield url, cache
    finally:
        stop_process(proc)


def open_backtest(page, url: str, ui) -> None:
    ui.open_app(page, url)
    page.get_by_role("tab", name="Backtest", exact=True).click()
    page.locator("#backtest-run").wait_for()


def subview(page, label: str) -> None:
    page.locator("#backtest-view").get_by_text(label, exact=True).click()


def ranking_rows(page, n: int, *, timeout: float = 90.0) -> list[str]:
    """Wait for ``n`` rows in the ranking grid; returns the run names."""
    page.wait_for_function(
        "(n) => document.querySelectorAll('#backtest-ranking .ag-center-cols-container .ag-row').length === n",
        arg=n, timeout=timeout * 1000)
    return page.locator("#backtest-ranking .ag-center-cols-container [col-id='run']").all_inner_texts()


def surface_title(page) -> str:
    return page.evaluate("() => { const gd = document.querySelector('#replay-surface-graph .js-plotly-plot');"
                         " return gd && gd.layout && gd.layout.title ? String(gd.layout.title.text) : ''; }")


def wait_title(page, text: str) -> str:
    page.wait_for_function(
        "(t) => { const gd = document.querySelector('#replay-surface-graph .js-plotly-plot');"
        " return gd && gd.layout && gd.layout.title && String(gd.layout.title.text).includes(t); }",
        arg=text, timeout=30_000)
    return surface_title(page)


def fits_stored(cache: Path, optimizer: str) -> dict[str, float]:
    """The fits in the app's fit cache made with ``optimizer``: key -> its run time (s)."""
    import diskcache

    with diskcache.Cache(str(cache / "results")) as store:
        fits = {key: json.loads(store[key]) for key in store.iterkeys()}
    return {key: fit["elapsed_s"] for key, fit in fits.items() if fit["optimizer"] == optimizer}


def test_a_backtest_runs_with_progress_and_draws_every_sub_view(history_app, page, artifacts, ui):
    url, _ = history_app
    open_backtest(page, url, ui)
    assert "hist · 5 snapshots · 2026-11-18 14:00 → 17:00 UTC" in page.locator("#backtest-history").input_value()
    page.get_by_label("cold", exact=True).check()
    page.evaluate(WATCH)
    page.locator("#backtest-run").click()
    runs = ranking_rows(page, 4)
    assert sorted(runs) == ["heston cold", "heston warm", "svi cold", "svi warm"]
    seen = page.evaluate("() => window.__seen")
    assert seen["bar"] and seen["disabled"]
    assert any(t.startswith("snapshot ") and " of 5 · " in t for t in seen["texts"]), seen["texts"]
    note = ui.notification(page, "1 snapshot(s) not used")
    assert "btc_2026-11-18_1630.csv: unreadable: unknown snapshot format" in note.inner_text()
    note.locator("button").click()  # closed: it would hide the figures in the screenshots
    assert "btc_2026-11-18_1630.csv (unreadable)" in page.locator("#backtest-note").inner_text()
    page.wait_for_timeout(300)
    page.screenshot(path=str(artifacts / "backtest_1_ranking.png"))

    for i, (label, graph) in enumerate(SUBVIEW_GRAPHS.items(), start=2):
        subview(page, label)
        shown = ui.wait_figure(page, graph)
        assert shown["traces"] > 0, label
        page.wait_for_timeout(400)
        page.screenshot(path=str(artifacts / f"backtest_{i}_{label.lower()}.png"))

    subview(page, "Replay")
    first = wait_title(page, "2026-11-18 14:00")
    assert "SVI" in first
    page.locator("#replay-play").click()
    assert "2026-11-18 15:00" in wait_title(page, "15:00")  # playing steps to the next snapshot
    page.locator("#replay-play").click()  # pause
    page.locator("#replay-step [role='slider']").focus()
    page.keyboard.press("End")
    assert "2026-11-18 17:00" in wait_title(page, "17:00")
    ui.pick(page, "replay-run", "heston warm")
    assert "HESTON" in wait_title(page, "HESTON")
    page.wait_for_timeout(600)
    page.screenshot(path=str(artifacts / "backtest_5_replay.png"))
    smiles = page.locator("#replay-smiles-graph")
    smiles.scroll_into_view_if_needed()
    assert ui.wait_figure(page, "replay-smiles-graph")["traces"] > 0
    page.wait_for_timeout(300)
    smiles.screenshot(path=str(artifacts / "backtest_6_replay_smiles.png"))

    subview(page, "Hedge")
    dark = ui.wait_figure(page, "backtest-hedge-graph")["paper"]
    page.locator("#theme-toggle").get_by_text("light", exact=True).click()
    page.wait_for_function(  # drawn again in the light theme
        "(dark) => { const gd = document.querySelector('#backtest-hedge-graph .js-plotly-plot');"
        " return gd && gd._fullLayout && gd._fullLayout.paper_bgcolor !== dark; }", arg=dark, timeout=30_000)
    subview(page, "Ranking")
    page.wait_for_timeout(400)
    page.screenshot(path=str(artifacts / "backtest_7_ranking_light.png"))
    assert page.console_errors == []


def test_cancel_keeps_the_app_usable_and_a_rerun_resumes(history_app, page, ui):
    url, cache = history_app
    open_backtest(page, url, ui)
    ui.pick(page, "optimizer-select", "Differential evolution + polish")
    page.locator("#max-evals-input").fill("6000")
    page.locator(".mantine-MultiSelect-pill", has_text="Heston").locator("button").click()
    page.locator("#backtest-run").click()
    page.wait_for_function(
        "() => /snapshot [1-4] of 5/.test(document.getElementById('backtest-progress-text').innerText)",
        timeout=120_000)
    assert page.locator("#backtest-cancel").is_enabled()
    page.locator("#backtest-cancel").click()
    ui.notification(page, "Backtest cancelled")
    page.wait_for_function("() => !document.getElementById('backtest-run').disabled", timeout=15_000)
    before = fits_stored(cache, "de")
    assert 1 <= len(before) < 4  # some of the four good snapshots fitted, not all

    subview(page, "Hedge")  # the app still answers: no backtest on this page yet, and it says so
    page.wait_for_function(
        "() => { const gd = document.querySelector('#backtest-hedge-graph .js-plotly-plot');"
        " return gd && gd.layout && JSON.stringify(gd.layout.annotations || []).includes('No backtest yet'); }",
        timeout=30_000)
    subview(page, "Ranking")
    page.locator("#backtest-run").click()
    assert ranking_rows(page, 1, timeout=180) == ["svi warm"]
    after = fits_stored(cache, "de")
    assert len(after) == 4  # one fit per good snapshot: the ones made before the cancel were not made again
    assert {key: after[key] for key in before} == before
    assert page.console_errors == []
