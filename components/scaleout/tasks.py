"""The Celery tasks of the scale-out mode: one chunk of a backtest, and a whole backtest fanned out from a worker.

``smilescope.backtest_chunk`` runs one chunk of a distributed backtest (:mod:`components.scaleout.fanout`) with
:func:`calibration.history_chunks.run_chunk`, every fit through the shared fit cache (in Redis in this mode, so a
re-run, or a chunk run again after its worker died, makes no fit twice). It talks to the caller through a few Redis
keys of the run (:class:`RunKeys`), all expiring after :data:`RUN_TTL_S`:

- ``claim:<k>``: who runs chunk ``k`` (the task's id, or the caller itself when it runs the chunk inline: the
  first to claim it runs it, the other skips it, so a chunk never runs twice at once);
- ``hosts`` (hash ``k -> worker host name``): the worker running each chunk, which the caller watches;
- ``progress`` (hash ``k -> snapshots done``), read by the caller for its progress bar;
- ``cancel``: set by the caller to stop the run, and when the run is over: a chunk stops after its current
  snapshot, one not started yet is skipped;
- ``outcome:<k>`` (JSON: the chunk's :class:`calibration.backtest.BacktestResult` as ``to_dict``, its fit keys,
  the context snapshot used; or ``{"error": ...}``), then ``k`` pushed on the list ``events``.

``smilescope.backtest_history`` runs :func:`components.scaleout.fanout.run_history_distributed` inside a worker
(the caller of the fan-out is then itself a task: it runs chunks inline while it waits, see the fan-out).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import shared_task

from calibration.backtest import BacktestSettings
from calibration.history_chunks import run_chunk
from components.history import cached_fit_function, snapshot_sources
from components.scaleout.redis_store import PREFIX, client

#: Seconds the keys of a run live after their last write (a day).
RUN_TTL_S = 24 * 3600
CHUNK_TASK = "smilescope.backtest_chunk"
HISTORY_TASK = "smilescope.backtest_history"


@dataclass(frozen=True)
class RunKeys:
    """The Redis keys of one distributed backtest ``run`` (a random id)."""

    run: str

    def _key(self, name: str) -> str:
        return f"{PREFIX}:fanout:{self.run}:{name}"

    def claim(self, chunk: int) -> str:
        return self._key(f"claim:{chunk}")

    def outcome(self, chunk: int) -> str:
        return self._key(f"outcome:{chunk}")

    @property
    def progress(self) -> str:
        return self._key("progress")

    @property
    def hosts(self) -> str:
        return self._key("hosts")

    @property
    def cancel(self) -> str:
        return self._key("cancel")

    @property
    def events(self) -> str:
        return self._key("events")


def claim(keys: RunKeys, chunk: int, owner: str) -> bool:
    """Claim chunk ``chunk`` for ``owner``; True when it is ``owner``'s to run (first claim, or ``owner``'s own
    claim: a task handed to another worker after its first one died runs again)."""
    redis_client = client()
    if redis_client.set(keys.claim(chunk), owner, nx=True, ex=RUN_TTL_S):
        return True
    holder = redis_client.get(keys.claim(chunk))
    return holder is not None and holder.decode() == owner


def execute_chunk(payload: dict[str, Any], *, owner: str, host: str | None = None,
                  on_progress: Callable[[], bool] | None = None) -> bool:
    """Run the chunk ``payload`` describes if ``owner`` can claim it; its outcome goes to the run's keys.

    Parameters
    ----------
    payload
        ``{"run", "chunk" (index), "start" (first row), "names" (the chunk's data-directory snapshot names),
        "context" (the names before it, nearest last), "settings" (:meth:`BacktestSettings.to_dict`)}``.
    owner
        Who runs it (a task id, or the fan-out's caller).
    host
        The worker running it (recorded in the run's ``hosts``: the caller fails the run if that worker's
        heartbeat stops).
    on_progress
        Called after each snapshot (the fan-out's caller running a chunk inline reports its progress); returning
        True stops the chunk, as the run's ``cancel`` key does.

    Returns
    -------
    bool
        Whether it ran (False: another owner has it, or the run was cancelled before it started).

    Raises
    ------
    Exception
        Whatever made the chunk fail, after its outcome ``{"error": ...}`` was published.
    """
    keys, k = RunKeys(str(payload["run"])), int(payload["chunk"])
    redis_client = client()
    if redis_client.exists(keys.cancel) or not claim(keys, k, owner):
        return False
    if host is not None:
        with redis_client.pipeline() as pipe:
            pipe.hset(keys.hosts, str(k), host)
            pipe.expire(keys.hosts, RUN_TTL_S)
            pipe.execute()

    def progress(done: int, _n: int) -> bool:
        with redis_client.pipeline() as pipe:
            pipe.hset(keys.progress, str(k), done)
            pipe.expire(keys.progress, RUN_TTL_S)
            pipe.exists(keys.cancel)
            stop = bool(pipe.execute()[-1])
        if on_progress is not None and on_progress():
            return True
        return stop

    try:
        settings = BacktestSettings.from_dict(payload["settings"])
        calls: dict[int, str] = {}
        chunk = run_chunk(snapshot_sources(payload["names"]), settings, start=int(payload["start"]),
                          context=snapshot_sources(payload["context"]), fit=cached_fit_function(settings, calls),
                          progress=progress)
        table = chunk.result.table
        ok_rows = table.loc[table["status"] == "ok", "i"].astype(int).tolist() if len(table) else []
        fit_keys = list(calls.values())[1 if chunk.context is not None else 0:]  # the context's fit comes first
        if len(fit_keys) != len(ok_rows):
            raise RuntimeError(f"chunk {k}: {len(fit_keys)} fit keys for {len(ok_rows)} fitted rows")
        outcome: dict[str, Any] = {"result": chunk.result.to_dict(), "context": chunk.context,
                                   "fit_keys": {str(i): key for i, key in zip(ok_rows, fit_keys)}}
    except Exception as exc:
        _publish(keys, k, {"error": f"{type(exc).__name__}: {exc}", "owner": owner})
        raise
    _publish(keys, k, outcome)
    return True


def _publish(keys: RunKeys, chunk: int, outcome: dict[str, Any]) -> None:
    """Store a chunk's outcome and tell the caller."""
    with client().pipeline() as pipe:
        pipe.set(keys.outcome(chunk), json.dumps(outcome, separators=(",", ":"), allow_nan=False), ex=RUN_TTL_S)
        pipe.rpush(keys.events, chunk)
        pipe.expire(keys.events, RUN_TTL_S)
        pipe.execute()


@shared_task(name=CHUNK_TASK, bind=True)
def backtest_chunk(self: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """One chunk of a distributed backtest (see :func:`execute_chunk`); returns ``{"run", "chunk", "ran"}`` (the
    chunk's tables are in its outcome key: the fan-out sends it with ``ignore_result``)."""
    ran = execute_chunk(payload, owner=str(self.request.id), host=self.request.hostname)
    return {"run": payload["run"], "chunk": payload["chunk"], "ran": ran}


@shared_task(name=HISTORY_TASK)
def backtest_history(names: list[str], settings: dict[str, Any], chunk_size: int | None = None) -> dict[str, Any]:
    """A whole backtest of data-directory snapshots fanned out from a worker; returns ``{"result":
    BacktestResult.to_dict(), "fit_keys": {row: key}}``."""
    from components.scaleout.fanout import run_history_distributed  # the fan-out dispatches this module's tasks

    run = run_history_distributed(names, BacktestSettings.from_dict(settings), chunk_size=chunk_size)
    return {"result": run.result.to_dict(), "fit_keys": {str(i): key for i, key in run.fit_keys.items()}}
