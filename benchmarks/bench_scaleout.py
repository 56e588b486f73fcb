"""Scale-out on Celery + Redis: backtest throughput with 1 and 2 workers, and 20 concurrent users calibrating.

Run: ``.venv/bin/python benchmarks/bench_scaleout.py`` (a few minutes; needs Debian's ``redis-server``). Everything
runs as real processes on loopback ports, stopped by PID at the end: one ``redis-server`` (no persistence), Celery
workers started with ``make worker``'s command (each ``--concurrency=1``: one worker = one process = one core),
and for the users the web app (``python app.py``) in scale-out mode.

1. Throughput: the bundled 48-snapshot BTC history (SVI, warm starts: the dashboard's defaults), four runs at once
   (four users' backtests: 192 snapshots) fanned out in chunks of :data:`CHUNK` snapshots. Each measurement uses
   seeds of its own, so no fit is served by the cache: every fit really runs. Printed: snapshots/s (rows of the
   backtests), fits/s (calibrations made, counted in the Redis fit cache: the snapshots plus each chunk's context
   fit), the CPU seconds per fit spent by the workers (their processes' user + system time), and for reference
   one run of the history in this process without Celery (``run_history``'s path: fits through the same cache).
   From the measured per-fit cost: workers needed for a year of minute snapshots (525,000 fits) in an hour.
2. Users: :data:`USERS` HTTP clients (threads) each load the page and press Calibrate with settings of their own
   (model, optimizer, seed) by driving Dash's protocol: the gate callback (``request_fit``) and the background job
   (``run_fit``: first request, then polls with the signed ``cacheKey``/``job`` every ``interval`` ms) until its
   result arrives. Latency: click to result. Each user checks that the result is the fit of its own settings.

The machine is shared (2 cores): the load average is printed before each measurement.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from calibration.backtest import BacktestSettings, backtest  # noqa: E402
from calibration.calibrate import CalibrationSettings  # noqa: E402
from components.controls import CONTROL_IDS, CONTROL_PROPS, controls_from_settings  # noqa: E402
from components.data_files import list_snapshots  # noqa: E402
from components.history import cached_fit_function, snapshot_sources  # noqa: E402
from tests.processes import start_app, stop_process  # noqa: E402
from tests.scaleout.conftest import WORKER_COMMAND, RedisServer, ping_worker  # noqa: E402

#: Concurrent backtests of the throughput measurement (each the whole 48-snapshot history).
RUNS = 4
#: Snapshots per chunk task.
CHUNK = 12
MODEL = "svi"
#: Fits of a year of minute snapshots, and the hour they should take.
YEAR_OF_MINUTES = 525_000
HOUR_S = 3600.0
USERS = 20
#: Seconds a user may wait for its result before it counts as failed (the run is bounded).
USER_TIMEOUT_S = 180.0
#: (model, optimizer) of the users, cycled; each user also has its own seed.
USER_SETTINGS = (("svi", "lm"), ("ssvi", "lm"), ("sabr", "trf"), ("heston", "lm"), ("svi", "trf"),
                 ("ssvi", "trf"), ("sabr", "lm"), ("heston", "trf"))


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} cores"


# ---------------------------------------------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------------------------------------------


def start_worker(redis: RedisServer, name: str, cache: Path, logs: Path) -> subprocess.Popen:
    """One worker process (``--concurrency=1``), returned once it answers a ping."""
    hostname = f"{name}-{redis.port}@localhost"
    env = dict(os.environ, SMILESCOPE_REDIS_URL=redis.url, SMILESCOPE_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1")
    with (logs / f"{name}.log").open("w") as out:
        proc = subprocess.Popen([*WORKER_COMMAND, "--concurrency=1", f"--hostname={hostname}"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    ping_worker(redis.url, hostname, proc=proc)
    return proc


def cpu_seconds(procs: list[subprocess.Popen]) -> float:
    """User + system CPU time of the processes and their children (the workers' pool processes), s."""
    total = 0.0
    for proc in procs:
        parent = psutil.Process(proc.pid)
        for p in [parent, *parent.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
    return total


def fits_stored() -> int:
    """Calibration results in the shared fit cache (Redis)."""
    from components.scaleout.redis_store import client

    return sum(1 for _ in client().scan_iter(match="smilescope:results:*", count=1000))


# ---------------------------------------------------------------------------------------------------------------
# 1. throughput
# ---------------------------------------------------------------------------------------------------------------


def history_names() -> list[str]:
    names = [n for n in list_snapshots() if n.startswith("history/")]
    if len(names) < 48:
        raise SystemExit("the bundled history (data/history, 48 snapshots) is not there")
    return names


def settings(seed: int) -> BacktestSettings:
    return BacktestSettings(calibration=CalibrationSettings(model=MODEL, seed=seed), warm_start=True)


def in_process(names: list[str]) -> dict[str, float]:
    """The history backtested here, without Celery: :func:`components.history.run_history`'s in-process path (every
    fit through the shared fit cache, as on the workers)."""
    paths = snapshot_sources(names)
    wall, cpu = time.perf_counter(), time.process_time()
    result = backtest(paths, settings(seed=0), fit=cached_fit_function(settings(seed=0)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = len(result.table)
    return {"snapshots": n, "fits": n, "wall_s": wall, "cpu_s": cpu}


def distributed(names: list[str], workers: list[subprocess.Popen], seed0: int) -> dict[str, float]:
    """:data:`RUNS` backtests of ``names`` at once on the workers (seeds ``seed0 ...``: nothing cached)."""
    from components.scaleout.fanout import run_history_distributed

    run_history_distributed(names[:2], settings(seed0 + 99), chunk_size=1)  # warm-up: imports in the pool
    fits0, cpu0 = fits_stored(), cpu_seconds(workers)
    wall = time.perf_counter()
    with ThreadPoolExecutor(RUNS) as pool:
        runs = list(pool.map(lambda r: run_history_distributed(names, settings(seed0 + r), chunk_size=CHUNK),
                             range(RUNS)))
    wall = time.perf_counter() - wall
    cpu, fits = cpu_seconds(workers) - cpu0, fits_stored() - fits0
    rows = sum(len(run.result.table) for run in runs)
    ok = all(not run.result.cancelled and (run.result.table["status"] == "ok").all() for run in runs)
    return {"snapshots": rows, "fits": fits, "wall_s": wall, "cpu_s": cpu, "ok": float(ok)}


# ---------------------------------------------------------------------------------------------------------------
# 2. users
# ---------------------------------------------------------------------------------------------------------------


def outputs(spec: str) -> list[dict[str, str]]:
    """The ``outputs`` of a request, from a callback's ``output`` string (``..id.prop...id.prop..``)."""
    out = []
    for part in spec.strip(".").split("..."):
        cid, _, prop = part.rpartition(".")
        out.append({"id": cid, "property": prop})
    return out


class Page:
    """One browser page's worth of Dash protocol over HTTP (its own page load, so its own signed handles)."""

    def __init__(self, url: str) -> None:
        self.url = url
        html = self.get("")
        config = re.search(r'<script id="_dash-config" type="application/json">(.*?)</script>', html, re.S)
        if config is None:
            raise RuntimeError("the page has no _dash-config")
        self.end_id = quote(json.loads(config.group(1))["end_id"])

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return response.read().decode()

    def post(self, body: dict[str, Any], **handles: str) -> tuple[int, Any]:
        query = f"?endId={self.end_id}" + "".join(f"&{k}={quote(v)}" for k, v in handles.items())
        request = urllib.request.Request(self.url + "_dash-update-component" + query, method="POST",
                                         data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            data = response.read()
            return response.status, json.loads(data) if data else None


def calibrate_callbacks(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The gate (inputs: the Calibrate button) and the background job (input: the fit request) of the app."""
    with urllib.request.urlopen(url + "_dash-dependencies", timeout=30) as response:
        deps = json.loads(response.read())
    gate = next(c for c in deps if {"id": "calibrate-button", "property": "n_clicks"} in c["inputs"])
    job = next(c for c in deps if c["inputs"] == [{"id": "fit-request", "property": "data"}] and c.get("background"))
    return gate, job


def user(url: str, gate: dict[str, Any], job: dict[str, Any], snapshot_key: dict[str, Any], u: int,
         deadline: float) -> dict[str, Any]:
    """One user: load the page, press Calibrate with settings of its own, poll until the fit arrives."""
    model, optimizer = USER_SETTINGS[u % len(USER_SETTINGS)]
    mine = CalibrationSettings(model=model, optimizer=optimizer, seed=1000 + u)
    page = Page(url)
    values = controls_from_settings(mine)
    started = time.perf_counter()
    status, answer = page.post({
        "output": gate["output"], "outputs": outputs(gate["output"]),
        "inputs": [{"id": "calibrate-button", "property": "n_clicks", "value": 1},
                   {"id": "snapshot-key", "property": "data", "value": snapshot_key},
                   {"id": "url-applied", "property": "data", "value": None}],
        "changedPropIds": ["calibrate-button.n_clicks"],
        "state": [{"id": c, "property": CONTROL_PROPS[c], "value": values[c]} for c in CONTROL_IDS],
    })
    spec = answer["response"].get("fit-request", {}).get("data") if status == 200 else None
    if spec is None:
        return {"user": u, "ok": False, "why": f"the gate refused: {json.dumps(answer)[:300]}"}
    body = {"output": job["output"], "outputs": outputs(job["output"]), "changedPropIds": ["fit-request.data"],
            "inputs": [{"id": "fit-request", "property": "data", "value": spec}], "state": []}
    status, handles = page.post(body)
    poll = dict(body, inputs=[{"id": "fit-request", "property": "data", "value": None}])
    interval = job["background"].get("interval", 500) / 1000.0
    polls = 0
    while time.monotonic() < deadline:
        status, answer = page.post(poll, cacheKey=handles["cacheKey"], job=handles["job"])
        polls += 1
        if status == 200 and answer and "response" in answer:
            break
        time.sleep(interval)
    else:
        return {"user": u, "ok": False, "why": "no result before the deadline"}
    latency = time.perf_counter() - started
    result = answer["response"].get("result-store", {}).get("data")
    if not result:
        return {"user": u, "ok": False, "why": f"no fit in the answer: {json.dumps(answer)[:300]}"}
    own = (result["settings"] == spec["settings"] and result["model"] == model and result["optimizer"] == optimizer
           and result["settings"]["seed"] == mine.seed and result["snapshot_hash"] == snapshot_key["hash"])
    return {"user": u, "ok": True, "own": own, "latency_s": latency, "polls": polls, "model": model,
            "optimizer": optimizer, "seed": mine.seed}


def users(url: str) -> list[dict[str, Any]]:
    from components.server_store import data_key

    gate, job = calibrate_callbacks(url)
    _, key = data_key("btc_demo.csv")
    deadline = time.monotonic() + USER_TIMEOUT_S
    outcomes: list[dict[str, Any]] = [{} for _ in range(USERS)]

    def run(u: int) -> None:
        try:
            outcomes[u] = user(url, gate, job, dict(key), u, deadline)
        except Exception as exc:  # noqa: BLE001 -- a failed user is reported, the others go on
            outcomes[u] = {"user": u, "ok": False, "why": f"{type(exc).__name__}: {exc}"}

    threads = [threading.Thread(target=run, args=(u,), daemon=True) for u in range(USERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(0.0, deadline - time.monotonic()) + 35)
    return outcomes


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100.0 * len(ordered)) - 1)]


# ---------------------------------------------------------------------------------------------------------------


def main() -> int:
    binary = subprocess.run(["which", "redis-server"], capture_output=True, text=True).stdout.strip()
    if not binary:
        print("redis-server is not installed (`make system-deps`)")
        return 2
    names = history_names()
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        tmp_path = Path(tmp)
        redis = RedisServer(binary, tmp_path)
        redis.start()
        os.environ["SMILESCOPE_REDIS_URL"] = redis.url
        os.environ["SMILESCOPE_CACHE_DIR"] = str(tmp_path / "cache")
        started: list[subprocess.Popen] = []
        try:
            print(load())
            base = in_process(names)
            print(f"in process: {base['snapshots']} snapshots in {base['wall_s']:.2f} s")
            measured: dict[int, dict[str, float]] = {}
            for n_workers in (1, 2):
                workers = [start_worker(redis, f"bench{n_workers}{w}", tmp_path / "cache", tmp_path)
                           for w in range(n_workers)]
                started += workers
                print(load())
                measured[n_workers] = distributed(names, workers, seed0=100 * n_workers)
                m = measured[n_workers]
                print(f"{n_workers} worker(s): {m['snapshots']:.0f} snapshots, {m['fits']:.0f} fits in "
                      f"{m['wall_s']:.2f} s" + ("" if m["ok"] else "  (SOME RUN FAILED)"))
                for proc in workers:
                    stop_process(proc)
            report_throughput(base, measured)

            workers = [start_worker(redis, f"users{w}", tmp_path / "cache", tmp_path) for w in range(2)]
            started += workers
            app, url = start_app(tmp_path / "app.log", tmp_path / "app-cache", {"SMILESCOPE_REDIS_URL": redis.url})
            started.append(app)
            print(load())
            report_users(users(url))
        finally:
            for proc in started:
                stop_process(proc)
            redis.stop()
    return 0


def report_throughput(base: dict[str, float], measured: dict[int, dict[str, float]]) -> None:
    one, two = measured[1], measured[2]
    rows = [
        ("snapshots (backtest rows)", base["snapshots"], one["snapshots"], two["snapshots"], "{:.0f}"),
        ("fits made (incl. chunk contexts)", base["fits"], one["fits"], two["fits"], "{:.0f}"),
        ("wall time, s", base["wall_s"], one["wall_s"], two["wall_s"], "{:.2f}"),
        ("snapshots/s", *(m["snapshots"] / m["wall_s"] for m in (base, one, two)), "{:.2f}"),
        ("fits/s", *(m["fits"] / m["wall_s"] for m in (base, one, two)), "{:.2f}"),
        ("CPU per fit, s (process / workers)", *(m["cpu_s"] / m["fits"] for m in (base, one, two)), "{:.3f}"),
        ("cores used (CPU s / wall s)", *(m["cpu_s"] / m["wall_s"] for m in (base, one, two)), "{:.2f}"),
    ]
    print(f"\nBacktest throughput: {MODEL.upper()} warm starts, 48-snapshot history x {RUNS} concurrent runs, "
          f"chunks of {CHUNK}; workers of --concurrency=1 each")
    print(f"{'':<38}{'in process':>14}{'1 worker':>14}{'2 workers':>14}")
    for label, a, b, c, fmt in rows:
        print(f"{label:<38}{fmt.format(a):>14}{fmt.format(b):>14}{fmt.format(c):>14}")
    speedup = (two["fits"] / two["wall_s"]) / (one["fits"] / one["wall_s"])
    print(f"speed-up 2 workers / 1 worker: {speedup:.2f}x (fits/s); "
          f"{(two['snapshots'] / two['wall_s']) / (one['snapshots'] / one['wall_s']):.2f}x (snapshots/s); "
          "on a shared machine the cores the workers got (above) bound it")
    need = YEAR_OF_MINUTES / HOUR_S  # fits per second
    per_fit = two["cpu_s"] / two["fits"]
    per_worker = one["fits"] / one["wall_s"]
    print(f"525,000 fits in an hour = {need:.1f} fits/s: at {per_fit:.3f} CPU s per fit that is "
          f"{math.ceil(need * per_fit)} busy worker processes (cores); at the measured {per_worker:.2f} fits/s of "
          f"one worker, {math.ceil(need / per_worker)} workers. A year of minute snapshots backtested adds one "
          f"context fit per chunk: x{1 + 1 / CHUNK:.2f} at chunks of {CHUNK}, x{1 + 1 / 64:.2f} at 64 (the default "
          "for long histories)")


def report_users(outcomes: list[dict[str, Any]]) -> None:
    done = [o for o in outcomes if o.get("ok")]
    print(f"\n{USERS} concurrent users pressing Calibrate (btc_demo.csv; models x optimizers x seeds of their own),"
          " 2 workers of --concurrency=1, one web process")
    print(f"completed: {len(done)} of {USERS}; saw their own result: {sum(1 for o in done if o['own'])} of "
          f"{len(done)}")
    for o in outcomes:
        if not o.get("ok") or not o.get("own"):
            print(f"  user {o.get('user')}: {o.get('why', 'saw another result')}")
    if done:
        lat = [o["latency_s"] for o in done]
        polls = statistics.median(o["polls"] for o in done)
        print("latency click -> result, s: " + "  ".join(f"p{q}={percentile(lat, q):.2f}" for q in (50, 90, 99))
              + f"  max={max(lat):.2f}  mean={statistics.mean(lat):.2f}  (polls per user: median {polls:.0f})")


if __name__ == "__main__":
    sys.exit(main())
