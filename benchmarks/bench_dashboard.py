"""Dashboard speed in a real browser: page load, calibration round trips, the Surface tab's payload.

Run standalone: ``.venv/bin/python benchmarks/bench_dashboard.py`` (about a minute). It starts ``app.py`` on a
free loopback port with a fresh cache directory, drives Debian's Chromium (headless, the flags of DESIGN.md)
with Playwright, and prints each figure with its target:

- page load to the first fitted surface visible (bundled BTC demo): navigation start to the first frame after
  plotly has drawn the surface (``Plotly.react`` resolved), cold (first visit) and warm (median of repeats);
- click Calibrate (Heston, LM) to all views updated: the click to the first frame after the surface (the view
  on screen; other tabs draw when opened) shows the new fit; then the same fit again, answered by the cache;
- JSON sent for the Surface tab: the ``_dash-update-component`` responses that carry the surface figure (each x
  axis), and the page layout (which carries the first surface).

Headless Chromium has no GPU: WebGL runs in SwiftShader (software), so the 3D drawing time printed apart is far
above what a desktop browser spends.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1366, "height": 768}
WARM_LOADS = 5

#: Installed before any page script: wraps Plotly.react to record, per graph, when a figure was drawn (first
#: animation frame after the promise resolved) and which fit it shows.
RECORDER = """
window.__drawn = {};
let plotly;
Object.defineProperty(window, 'Plotly', {
  configurable: true,
  get() { return plotly; },
  set(value) {
    plotly = value;
    const react = value.react;
    value.react = function (gd, ...rest) {
      const started = performance.now();
      return react.call(this, gd, ...rest).then((out) => {
        const host = gd.parentElement && gd.parentElement.id;
        requestAnimationFrame(() => {
          const meta = (gd.layout && gd.layout.meta) || {};
          (window.__drawn[host] = window.__drawn[host] || []).push(
            {at: performance.now(), started: started, plot_ms: performance.now() - started,
             result: meta.result || null, traces: (gd.data || []).length});
        });
        return out;
      });
    };
  },
});
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_app(cache: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), SMILESCOPE_CACHE_DIR=cache, PYTHONUNBUFFERED="1")
    log = open(Path(cache) / "app.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited ({proc.returncode}); see {log.name}") from None
            time.sleep(0.2)
    raise TimeoutError("the app did not answer")


def drawn(page, graph: str) -> list[dict]:
    return page.evaluate("(g) => window.__drawn[g] || []", graph)


def wait_drawn(page, graph: str, *, other_than: str | None, after: float = 0.0, timeout_s: float = 120.0) -> dict:
    """The first drawing of ``graph`` after ``after`` (ms) showing a fit other than ``other_than``."""
    page.wait_for_function(
        "([g, prev, t]) => (window.__drawn[g] || []).some(d => d.at > t && d.result && d.result !== prev"
        " && d.traces > 0)", arg=[graph, other_than, after], timeout=timeout_s * 1000)
    return next(d for d in drawn(page, graph)
                if d["at"] > after and d["result"] and d["result"] != other_than and d["traces"] > 0)


def page_load(context, url: str) -> tuple[float, float]:
    """Milliseconds from navigation start to the first surface frame, and the plotting part of it."""
    page = context.new_page()
    page.goto(url)
    first = wait_drawn(page, "surface-graph", other_than=None)
    if os.environ.get("BENCH_DEBUG"):
        nav = page.evaluate("() => performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
        js = page.evaluate("() => performance.getEntriesByType('resource').filter(e => e.name.includes('plotly.min'))"
                           ".map(e => e.responseEnd)[0]")
        layout = page.evaluate("() => performance.getEntriesByType('resource').filter(e => e.name.endsWith("
                               "'_dash-layout')).map(e => e.responseEnd)[0]")
        print(f"  dom {nav:.0f} layout {layout:.0f} plotly.js {js:.0f} react {first['started']:.0f}"
              f" drawn {first['at']:.0f}")
    page.close()
    return first["at"], first["plot_ms"]


def pick(page, select_id: str, option: str) -> None:
    page.locator(f"#{select_id}").click()
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_function("([id, label]) => document.getElementById(id).value === label", arg=[select_id, option])


def click_to_surface(page) -> tuple[float, float, str]:
    """Milliseconds from the Calibrate click to the surface frame showing the new fit; its plotting part."""
    before = drawn(page, "surface-graph")
    previous = before[-1]["result"] if before else None
    clicked = page.evaluate("() => { const t = performance.now(); document.getElementById('calibrate-button')"
                            ".click(); return t; }")
    shown = wait_drawn(page, "surface-graph", other_than=previous, after=clicked)
    return shown["at"] - clicked, shown["plot_ms"], shown["result"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="smilescope-bench-") as tmp:
        cache = Path(tmp) / "cache"
        cache.mkdir()
        proc, url = start_app(str(cache))
        try:
            with sync_playwright() as pw:
                context = pw.chromium.launch_persistent_context(
                    str(Path(tmp) / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
                    viewport=VIEWPORT)
                context.add_init_script(RECORDER)
                cold, cold_plot = page_load(context, url)
                warm = [page_load(context, url) for _ in range(WARM_LOADS)]

                page = context.new_page()
                sizes: list[tuple[str, int]] = []

                def on_response(response):
                    if "_dash-update-component" in response.url and response.request.method == "POST":
                        body = json.loads(response.request.post_data or "{}")
                        if "surface-graph.figure" in str(body.get("output", "")):
                            sizes.append((str(body.get("inputs")), len(response.body())))
                    elif response.url.endswith("_dash-layout"):
                        sizes.append(("layout", len(response.body())))

                page.on("response", on_response)
                page.goto(url)
                wait_drawn(page, "surface-graph", other_than=None)
                pick(page, "model-select", "Heston · stochastic vol")
                heston, heston_plot, heston_id = click_to_surface(page)
                pick(page, "model-select", "SVI · per expiry")
                pick(page, "weights-select", "Uniform")
                click_to_surface(page)
                pick(page, "model-select", "Heston · stochastic vol")
                pick(page, "weights-select", "Vega")
                cached, cached_plot, cached_id = click_to_surface(page)
                if os.environ.get("BENCH_DEBUG"):
                    for d in drawn(page, "surface-graph"):
                        print("  drawn", round(d["at"]), d["result"])
                for axis in ("Strike", "Delta"):
                    page.get_by_text(axis, exact=True).click()
                    page.wait_for_timeout(1500)
                page.wait_for_timeout(500)
                context.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    warm_total = statistics.median(t for t, _ in warm)
    warm_plot = statistics.median(p for _, p in warm)
    layout = max((n for what, n in sizes if what == "layout"), default=0)
    surface = [n for what, n in sizes if what != "layout"]
    print("Smilescope dashboard, headless Chromium (WebGL in SwiftShader, no GPU), 1366x768")
    print(f"{'figure':58s} {'measured':>10s} {'target':>9s}")
    rows = [
        ("page load -> first fitted surface (cold, first visit)", cold / 1000, 2.0),
        (f"page load -> first fitted surface (warm, median of {WARM_LOADS})", warm_total / 1000, 2.0),
        ("Calibrate (Heston, LM) -> views updated", heston / 1000, 1.5),
        ("Calibrate again (cached) -> views updated", cached / 1000, 0.5),
    ]
    for label, value, target in rows:
        print(f"{label:58s} {value:9.2f}s {target:8.1f}s {'ok' if value < target else 'OVER'}")
    print(f"{'largest Surface-tab response (3 x axes)':58s} {max(surface, default=0) / 1e6:8.3f}MB {1.0:7.1f}MB "
          f"{'ok' if max(surface, default=0) < 1e6 else 'OVER'}")
    print(f"{'page layout (holds the first surface)':58s} {layout / 1e6:8.3f}MB")
    print("of which WebGL/plotly drawing (SwiftShader): "
          f"cold load {cold_plot / 1000:.2f}s, warm load {warm_plot / 1000:.2f}s, "
          f"Heston {heston_plot / 1000:.2f}s, cached {cached_plot / 1000:.2f}s")
    print(f"cached repeat shows the same fit: {cached_id == heston_id}")


if __name__ == "__main__":
    main()
