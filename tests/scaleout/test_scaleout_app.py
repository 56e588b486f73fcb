"""The dashboard in scale-out mode, in the browser: calibrations run on a Celery worker; no worker, a worker killed
mid-job and a Redis outage are each told to the user within seconds, and the page stays usable throughout."""

from __future__ import annotations

import os
import signal
import time
import urllib.request

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: Seconds within which the page must tell the user what changed (heartbeats expire after 4 s, badge polls 2 s).
TELL_S = 15


def badge_says(page, text: str, *, timeout: float = TELL_S) -> float:
    """Wait until the header badge shows ``text``; returns how long it took, s."""
    start = time.monotonic()
    page.wait_for_function("(t) => (document.getElementById('scaleout-badge') || {}).textContent?.includes(t)",
                           arg=text, timeout=timeout * 1000)
    return time.monotonic() - start


def calibrate_enabled(page, *, timeout: float = TELL_S) -> None:
    page.wait_for_function("() => !document.getElementById('calibrate-button').disabled", timeout=timeout * 1000)


def test_calibrations_run_on_a_worker_and_no_worker_is_told(scaleout_app, celery_worker, page, ui, artifacts):
    before = ui.open_app(page, scaleout_app)  # the page-load fit needs no worker
    badge_says(page, "no worker")
    ui.pick(page, "weights-select", "Uniform")  # not the pre-computed default fit
    page.locator("#calibrate-button").click()
    note = ui.notification(page, "Calibration not started")
    assert "no worker is running" in note.inner_text()
    assert ui.figure(page, "surface-graph")["result"] == before["result"]

    worker = celery_worker()
    badge_says(page, "1 worker")
    fitted = ui.calibrate(page)
    assert "SVI" in fitted["title"] and fitted["result"] != before["result"]
    log = worker.log.read_text()
    assert "background_callback_" in log and "succeeded" in log  # the fit ran on the worker
    page.screenshot(path=str(artifacts / "scaleout_01_worker_fit.png"))

    start = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    badge_says(page, "no worker")
    print(f"stopped worker told after {time.monotonic() - start:.1f} s")
    assert page.console_errors == []


def test_a_worker_killed_mid_job_is_reported_and_the_page_stays_usable(scaleout_app, celery_worker, page, ui):
    before = ui.open_app(page, scaleout_app)
    worker = celery_worker(name="doomed")
    badge_says(page, "1 worker")
    ui.pick(page, "model-select", "Bates · Heston + jumps")
    ui.pick(page, "optimizer-select", "Differential evolution + polish")
    page.locator("#max-evals-input").fill("20000")
    page.locator("#calibrate-button").click()
    page.wait_for_function("() => document.getElementById('progress-text').innerText.includes('evaluations')",
                           timeout=60_000)  # running on the worker, reporting progress
    os.killpg(worker.pid, signal.SIGKILL)  # kill -9 the worker and its pool
    start = time.monotonic()
    note = ui.notification(page, "Background job failed", timeout=TELL_S)
    print(f"killed job told after {time.monotonic() - start:.1f} s")
    assert worker.hostname in note.inner_text() and "stopped before it finished" in note.inner_text()
    calibrate_enabled(page)
    assert ui.figure(page, "surface-graph")["result"] == before["result"]  # the previous fit stays
    badge_says(page, "no worker")

    celery_worker(name="replacement")
    badge_says(page, "1 worker")
    ui.pick(page, "model-select", "SVI · per expiry")
    ui.pick(page, "optimizer-select", "Levenberg–Marquardt")
    page.locator("#max-evals-input").fill("2000")
    ui.pick(page, "loss-select", "Soft L1")  # not the page-load fit
    after = ui.calibrate(page)
    assert "SVI" in after["title"]


def test_a_redis_outage_is_told_and_the_app_recovers_when_redis_returns(scaleout_app, redis_server, celery_worker,
                                                                        page, ui):
    ui.open_app(page, scaleout_app)
    celery_worker()
    badge_says(page, "1 worker")
    redis_server.stop()
    try:
        print(f"Redis outage told after {badge_says(page, 'queue down'):.1f} s")
        ui.pick(page, "weights-select", "1 / spread")
        page.locator("#calibrate-button").click()
        note = ui.notification(page, "Calibration not started")
        assert "Redis" in note.inner_text() and "unreachable" in note.inner_text()
        with urllib.request.urlopen(scaleout_app, timeout=30) as response:  # a new page load is still served
            assert response.status == 200
    finally:
        redis_server.start()  # same port, empty
    print(f"Redis back told after {badge_says(page, '1 worker', timeout=60):.1f} s")
    fitted = ui.calibrate(page, timeout=90)  # no restart of the web app or the worker
    assert "SVI" in fitted["title"]


def test_cancel_frees_the_worker_for_the_next_fit(scaleout_app, celery_worker, page, ui):
    before = ui.open_app(page, scaleout_app)
    worker = celery_worker(name="single")  # concurrency 1: a cancelled fit still running would block the next
    badge_says(page, "1 worker")
    ui.pick(page, "model-select", "Bates · Heston + jumps")
    ui.pick(page, "optimizer-select", "Differential evolution + polish")
    page.locator("#max-evals-input").fill("50000")
    page.locator("#calibrate-button").click()
    page.wait_for_function("() => document.getElementById('progress-text').innerText.includes('evaluations')",
                           timeout=60_000)
    page.locator("#cancel-button").click()
    ui.notification(page, "Calibration cancelled")
    calibrate_enabled(page)
    assert ui.figure(page, "surface-graph")["result"] == before["result"]

    ui.pick(page, "model-select", "SABR · per expiry")
    after = ui.calibrate(page, timeout=60)
    assert "SABR" in after["title"]
    assert worker.poll() is None  # the worker survived the cancel
    assert page.console_errors == []
