"""Backtests fanned out over the Celery workers, one task per chunk of snapshots, gathered back in order.

:func:`run_history_distributed` has the meaning of :func:`components.history.run_history` (same tables, same fit
keys) but cuts the history into chunks (:mod:`calibration.history_chunks`: each chunk is fitted after one context
snapshot, so the statistics at its first row are kept; warm starts run within a chunk) and sends them as a Celery
group of ``smilescope.backtest_chunk`` tasks (:mod:`components.scaleout.tasks`), whose outcomes come back through
the run's Redis keys (not Celery's result backend).

While it waits, the caller reports progress (snapshots done over all chunks) and watches the workers:

- no worker alive when it starts, or none left while chunks are queued: a :class:`FanoutError` saying so, within
  seconds (unless the caller runs chunks itself, below);
- a chunk that fails, or whose worker died while running it: a :class:`FanoutError` naming the chunk's rows;
- ``progress`` returning True: the run stops (running chunks stop after their current snapshot) and the rows done
  in order are returned, ``cancelled=True``.

When the caller is itself a Celery task (the dashboard's background job runs on a worker in this mode), waiting
for the chunks could deadlock a worker whose every process is such a caller. So a caller inside a worker runs
queued chunks itself, taking them from the end of the queue (the workers take them from the front); the first to
claim a chunk runs it, the other skips it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from celery import current_task

from calibration.backtest import BacktestProgress, BacktestResult, BacktestSettings, backtest
from calibration.history_chunks import Chunk, default_chunk_size, merge_chunks, plan_chunks
from components.history import HistoryRun
from components.scaleout import health
from components.scaleout.celery_app import get_celery
from components.scaleout.redis_store import client
from components.scaleout.tasks import CHUNK_TASK, RUN_TTL_S, RunKeys, execute_chunk

#: Seconds the caller blocks waiting for a chunk to finish before it reports progress again.
POLL_S = 0.25
#: Seconds between two checks that the workers running or due to run the chunks are alive.
WATCHDOG_S = 2.0


class FanoutError(RuntimeError):
    """A distributed backtest cannot finish: no worker, a chunk failed, or its worker died."""


def _inside_worker() -> bool:
    """Whether this code runs inside a Celery task (on a worker)."""
    return bool(current_task) and not current_task.request.called_directly  # the proxy is false outside a task


def _rows(chunk: Chunk) -> str:
    return f"chunk {chunk.index} (snapshots {chunk.start + 1}-{chunk.stop})"


def run_history_distributed(
    names: Sequence[str],
    settings: BacktestSettings,
    *,
    progress: BacktestProgress | None = None,
    chunk_size: int | None = None,
    inline: bool | None = None,
) -> HistoryRun:
    """Backtest the data-directory snapshots ``names`` (in that order) on the Celery workers.

    Parameters
    ----------
    names
        Snapshot names as :func:`components.data_files.list_snapshots` lists them (the workers' data directory
        must hold the same files); a name not listed becomes an "unreadable" row.
    settings
        The run's settings.
    progress
        ``progress(done, n)`` as snapshots complete, over all chunks (``done`` counts the rows of every chunk);
        returning True stops the run.
    chunk_size
        Snapshots per task; default :func:`calibration.history_chunks.default_chunk_size` for the live workers.
    inline
        Run queued chunks in this process while waiting; default: when this process is a Celery worker running a
        task (see the module docstring).

    Returns
    -------
    HistoryRun
        The merged tables (row ``i`` as in the whole history) and ``{row i: fit key}``.

    Raises
    ------
    FanoutError
        No worker alive (and no inline run), a chunk failed, or a worker died with a chunk.
    """
    inline = _inside_worker() if inline is None else inline
    try:
        return _run(list(names), settings, progress, chunk_size, inline)
    except health.REDIS_ERRORS as exc:
        raise FanoutError(f"the backtest cannot go on: {health.redis_down_message(exc)}") from exc


def _run(names: list[str], settings: BacktestSettings, progress: BacktestProgress | None, chunk_size: int | None,
         inline: bool) -> HistoryRun:
    workers = health.live_workers()
    if not workers and not inline:
        raise FanoutError(f"the backtest cannot run: {health.NO_WORKER}")
    n = len(names)
    cores = sum(int(w.get("concurrency") or 1) for w in workers.values())
    size = default_chunk_size(n, cores) if chunk_size is None else chunk_size
    plan = plan_chunks(n, size)
    keys = RunKeys(uuid.uuid4().hex)
    payloads = [
        {"run": keys.run, "chunk": c.index, "start": c.start, "names": list(c.own(names)),
         "context": list(c.context(names)), "settings": settings.to_dict()}
        for c in plan
    ]
    app = get_celery()
    with app.producer_or_acquire() as producer:  # one connection for the whole group; results come by keys
        for p in payloads:
            app.send_task(CHUNK_TASK, args=(p,), ignore_result=True, producer=producer)
    gather = _Gather(keys, plan, payloads, n, progress, inline)
    try:
        parts, fit_keys, cancelled = gather.run()
    finally:
        gather.clean()
    merged = merge_chunks(parts, n_sources=n, cancelled=cancelled) if parts else _empty(settings, n, cancelled)
    return HistoryRun(result=replace(merged, settings=settings), fit_keys=fit_keys)


def _empty(settings: BacktestSettings, n: int, cancelled: bool) -> BacktestResult:
    """The result of a run with no row (an empty history, or stopped before its first chunk ended)."""
    return replace(backtest([], settings), n_sources=n, cancelled=cancelled or n > 0)


class _Gather:
    """The caller's side of one run: waits for the chunks' outcomes, runs chunks inline, watches the workers."""

    def __init__(self, keys: RunKeys, plan: list[Chunk], payloads: list[dict[str, Any]], n: int,
                 progress: BacktestProgress | None, inline: bool) -> None:
        self.keys, self.plan, self.payloads = keys, plan, payloads
        self.n, self.progress, self.inline = n, progress, inline
        self.owner = f"caller:{keys.run}"
        self.outcomes: dict[int, dict[str, Any]] = {}
        self.unclaimed = list(range(len(plan)))  # chunks the caller may still run itself (inline)
        self.done = -1
        self.stopped = False
        self.next_watch = time.monotonic() + WATCHDOG_S

    def run(self) -> tuple[list[BacktestResult], dict[int, str], bool]:
        while len(self.outcomes) < len(self.plan) and not self._stop():
            if self.inline and self.unclaimed:
                k = self.unclaimed.pop()
                # skipped when a worker has it; reports progress (and takes a stop) after each of its snapshots
                try:
                    execute_chunk(self.payloads[k], owner=self.owner, on_progress=self._stop)
                except health.REDIS_ERRORS:
                    raise
                except Exception:  # noqa: BLE001, S110 -- published as the chunk's outcome: _drain reports it
                    pass
                self._drain(timeout=None)
                continue
            self._drain(timeout=POLL_S)
            if time.monotonic() >= self.next_watch:
                self._watch()
                self.next_watch = time.monotonic() + WATCHDOG_S
        cancelled = self.stopped or self._stop()
        parts: list[BacktestResult] = []
        fit_keys: dict[int, str] = {}
        for k in range(len(self.plan)):
            if k not in self.outcomes:
                break
            part = BacktestResult.from_dict(self.outcomes[k]["result"])
            parts.append(part)
            fit_keys.update({int(i): key for i, key in self.outcomes[k]["fit_keys"].items()})
            if part.cancelled:
                cancelled = True
                break
        return parts, fit_keys, cancelled or len(parts) < len(self.plan)

    def _stop(self) -> bool:
        """Call ``progress`` when the snapshots done changed; whether the run is to stop (then the chunks still
        running are told to stop too)."""
        if self.progress is None or self.stopped:
            return self.stopped
        redis_client = client()
        done = min(self.n, sum(int(v) for v in redis_client.hvals(self.keys.progress)))
        if done != self.done:
            self.done = done
            if self.progress(done, self.n):
                self.stopped = True
                redis_client.set(self.keys.cancel, "1", ex=RUN_TTL_S)
        return self.stopped

    def _drain(self, timeout: float | None) -> None:
        """Read the outcomes published (waiting up to ``timeout`` seconds for the first when given)."""
        redis_client = client()
        while True:
            if timeout is not None:
                item = redis_client.blpop([self.keys.events], timeout=timeout)
                event = item[1] if item else None
                timeout = None
            else:
                event = redis_client.lpop(self.keys.events)
            if event is None:
                return
            k = int(event)
            with redis_client.pipeline() as pipe:  # read once, then free the memory it takes in Redis
                pipe.get(self.keys.outcome(k))
                pipe.delete(self.keys.outcome(k))
                raw = pipe.execute()[0]
            if raw is None:
                raise FanoutError(f"{_rows(self.plan[k])}: its outcome expired before it was read")
            outcome = json.loads(raw)
            if "error" in outcome:
                raise FanoutError(f"{_rows(self.plan[k])} failed: {outcome['error']}")
            self.outcomes[k] = outcome
            if k in self.unclaimed:
                self.unclaimed.remove(k)

    def _watch(self) -> None:
        """Fail the run when a chunk can never finish: its worker is gone, or no worker is left to take it
        (a caller running chunks inline takes the queued ones itself)."""
        outstanding = [k for k in range(len(self.plan))
                       if k not in self.outcomes and not (self.inline and k in self.unclaimed)]
        if not outstanding:
            return
        redis_client = client()
        workers = health.live_workers(redis_client)
        holders = redis_client.mget([self.keys.claim(k) for k in outstanding])
        hosts = {int(k): v.decode() for k, v in redis_client.hgetall(self.keys.hosts).items()}
        for k, holder in zip(outstanding, holders, strict=True):
            if holder is None:
                if not workers:
                    raise FanoutError(f"{_rows(self.plan[k])} cannot finish: no worker is running to take it: "
                                      "start one with `make worker`, then run the backtest again")
            elif holder.decode() != self.owner and k in hosts and hosts[k] not in workers:
                raise FanoutError(f"{_rows(self.plan[k])} cannot finish: the worker running it ({hosts[k]}) "
                                  "stopped before it finished; run the backtest again")

    def clean(self) -> None:
        """Mark the run over (a chunk task not started yet then skips its chunk, e.g. one the caller ran inline)
        and remove its outcomes and progress; the small claim and stop markers expire by themselves."""
        redis_client = client()
        try:
            redis_client.set(self.keys.cancel, "1", ex=RUN_TTL_S)
            redis_client.delete(self.keys.progress, self.keys.events, self.keys.hosts,
                                *(self.keys.outcome(k) for k in range(len(self.plan))))
        except health.REDIS_ERRORS:
            pass  # they expire


__all__ = ["CHUNK_TASK", "FanoutError", "run_history_distributed"]
