"""Backtests fanned out over real Celery workers on a real Redis, against the same backtest run in this process.

Every test uses settings of its own (the fit cache in Redis lives for the session), so the fits really run.
"""

from __future__ import annotations

import gc
import json
import os
import signal

import pytest

from calibration.backtest import BacktestResult, BacktestSettings, backtest
from calibration.calibrate import CalibrationSettings
from calibration.history_chunks import merge_chunks, plan_chunks, run_chunk
from calibration.snapshot import load_snapshot
from components.data_files import list_snapshots
from components.history import snapshot_sources
from components.scaleout.celery_app import get_celery
from components.scaleout.fanout import FanoutError, run_history_distributed
from components.scaleout.redis_store import client
from components.scaleout.tasks import CHUNK_TASK, HISTORY_TASK, RunKeys
from components.server_store import cached_result, fit_key

#: Seconds a test waits for a Celery result before failing (no test should come near it).
RESULT_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def names() -> list[str]:
    """Ten hourly snapshots of the bundled history with a missing one in the middle (an "unreadable" row)."""
    found = [n for n in list_snapshots() if n.startswith("history/")][:10]
    if len(found) < 10:
        pytest.skip("the bundled history (data/history) is not there")
    return [*found[:5], "history/missing.csv", *found[5:]]


@pytest.fixture(autouse=True)
def _collect_results():
    """Collect Celery's result objects while Redis is up (their finaliser talks to it)."""
    yield
    gc.collect()


def _settings(model: str = "ssvi", *, seed: int, warm_start: bool) -> BacktestSettings:
    return BacktestSettings(calibration=CalibrationSettings(model=model, seed=seed), warm_start=warm_start)


def _comparable(result: BacktestResult) -> dict:
    """The result as JSON (as it travels between processes) without the measured fit times."""
    data = json.loads(json.dumps(result.to_dict()))
    for row in data["table"]:
        row.pop("elapsed_s")
    data["summary"].pop("fit_elapsed_s")
    return data


def test_a_cold_backtest_through_celery_equals_the_in_process_run(scaleout_env, celery_worker, names):
    celery_worker(concurrency=2)
    settings = _settings(seed=101, warm_start=False)
    seen: list[tuple[int, int]] = []
    run = run_history_distributed(names, settings, chunk_size=3, progress=lambda done, n: seen.append((done, n)))
    reference = backtest(snapshot_sources(names), settings)  # here, no cache, no chunks
    assert _comparable(run.result) == _comparable(reference)
    assert list(run.result.table["status"]) == ["ok"] * 5 + ["unreadable"] + ["ok"] * 5
    assert run.result.table["oos_rmse_vol_points"].iloc[[1, 2, 3, 4, 6, 7, 8, 9, 10]].notna().all()
    # progress counts snapshots over all chunks, up to the whole history
    assert seen[-1] == (11, 11) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    # the fit keys are those of the fits, stored in the shared (Redis) cache by the workers
    fit_settings = settings.fit_settings()
    paths = snapshot_sources(names)
    expected = {i: fit_key(load_snapshot(paths[i]), fit_settings, check_arbitrage=False) for i in range(11) if i != 5}
    assert run.fit_keys == expected
    for i, key in run.fit_keys.items():
        assert cached_result(key)["rmse_vol_points"] == reference.table["rmse_vol_points"].iloc[i]
    # the run's outcomes and progress are removed; small markers (who ran each chunk, run over) expire
    left = {key.decode().split(":", 3)[3] for key in client().scan_iter(match="smilescope:fanout:*")}
    assert left == {"cancel", *(f"claim:{k}" for k in range(4))}
    assert 0 < client().ttl(next(client().scan_iter(match="smilescope:fanout:*:cancel"))) <= 24 * 3600

    # stopped by its progress callback: the rows done, in order, said so
    stop = _settings(seed=102, warm_start=False)
    stopped = run_history_distributed(names, stop, chunk_size=2, progress=lambda done, n: done >= 2)
    assert stopped.result.cancelled and stopped.result.n_sources == 11
    k = len(stopped.result.table)
    assert k < 11
    full = _comparable(backtest(snapshot_sources(names), stop))
    assert _comparable(stopped.result)["table"] == full["table"][:k]


def test_a_backtest_started_on_a_worker_with_one_process_runs_its_chunks_itself(scaleout_env, celery_worker, names):
    """The caller is a task on the only worker process: it must not wait for chunks queued behind itself."""
    celery_worker(concurrency=1)
    settings = _settings(seed=103, warm_start=True)
    task = get_celery().send_task(HISTORY_TASK, args=(names, settings.to_dict(), 4))
    outcome = task.get(timeout=RESULT_TIMEOUT_S)
    result = BacktestResult.from_dict(outcome["result"])
    # warm starts run within each chunk: the chunks run here, in process, from their context snapshot
    paths = snapshot_sources(names)
    expected = merge_chunks([run_chunk(c.own(paths), settings, start=c.start, context=c.context(paths)).result
                             for c in plan_chunks(len(paths), 4)])
    assert _comparable(result) == _comparable(expected)
    assert sorted(int(i) for i in outcome["fit_keys"]) == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]
    task.forget()


def test_a_caller_running_the_chunks_itself_needs_no_worker(scaleout_env, names):
    settings = _settings("sabr", seed=107, warm_start=False)
    seen: list[tuple[int, int]] = []
    run = run_history_distributed(names, settings, chunk_size=4, inline=True,
                                  progress=lambda done, n: seen.append((done, n)))
    assert _comparable(run.result) == _comparable(backtest(snapshot_sources(names), settings))
    assert seen[-1] == (11, 11) and len(seen) > 3  # reported along the way, not only at the end


def test_without_a_worker_the_backtest_says_so_at_once(scaleout_env, names):
    with pytest.raises(FanoutError, match="no worker is running"):
        run_history_distributed(names, _settings(seed=104, warm_start=False))


def test_a_chunk_that_fails_on_its_worker_is_published_as_an_error(scaleout_env, celery_worker, names):
    celery_worker(concurrency=1)
    keys = RunKeys("failing-run")
    bad = _settings(seed=105, warm_start=False).to_dict()
    bad["calibration"]["model"] = "no-such-model"
    payload = {"run": keys.run, "chunk": 0, "start": 0, "names": names[:2], "context": [], "settings": bad}
    task = get_celery().send_task(CHUNK_TASK, args=(payload,))
    with pytest.raises(Exception, match="unknown model 'no-such-model'"):
        task.get(timeout=RESULT_TIMEOUT_S)
    assert task.state == "FAILURE"
    task.forget()
    outcome = json.loads(client().get(keys.outcome(0)))
    assert "unknown model 'no-such-model'" in outcome["error"] and client().lrange(keys.events, 0, -1) == [b"0"]


def test_a_worker_killed_mid_chunk_fails_the_backtest_with_the_chunk_named(scaleout_env, celery_worker, names):
    worker = celery_worker(concurrency=1)
    killed = []

    def kill_after_the_first_snapshot(done: int, n: int) -> None:
        if done >= 1 and not killed:
            os.killpg(worker.pid, signal.SIGKILL)  # the worker and its pool, mid-chunk
            killed.append(done)

    with pytest.raises(FanoutError, match=r"chunk 0 \(snapshots 1-8\) cannot finish: the worker running it"):
        run_history_distributed(names[:8], _settings("svi", seed=106, warm_start=False), chunk_size=8,
                                progress=kill_after_the_first_snapshot)
    assert len(killed) == 1 and killed[0] < 7


def test_the_dashboard_backtest_job_fans_out_in_scaleout_mode(scaleout_env, celery_worker, names):
    from components.callbacks.backtest import backtest_job
    from components.history import load_outcome

    celery_worker(concurrency=2)
    for key in client().scan_iter(match="smilescope:fanout:*"):  # markers of the runs of earlier tests
        client().delete(key)
    settings = _settings(seed=303, warm_start=False)
    spec = {"history": "history", "names": names, "calibration": settings.calibration.to_dict(),
            "runs": [{"model": "ssvi", "model_options": {}, "warm_start": False, "regularisation": 0.0}]}
    texts: list[str] = []
    data, _note = backtest_job(spec, lambda value: texts.append(value[1]))
    outcome = load_outcome(data["key"])  # stored in the Redis "backtests" store
    assert outcome is not None and outcome.labels == ("ssvi cold",)
    reference = backtest(snapshot_sources(names), settings)
    assert _comparable(outcome.results[0]) == _comparable(reference)
    assert texts[-1].startswith(f"snapshot {len(names)} of {len(names)} · SSVI cold")
    # fanned out: every chunk of this run was claimed, each by a Celery task (its id), none run in this process
    claims = [key for key in client().scan_iter(match="smilescope:fanout:*:claim:*")]
    owners = {client().get(key).decode() for key in claims}
    assert len(claims) >= 2 and all(len(owner) == 36 and owner.count("-") == 4 for owner in owners)
