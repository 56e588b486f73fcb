"""Split a backtest into chunks of snapshots that run independently, and merge them back into one run.

A history of ``n`` snapshots is cut into consecutive chunks of rows ``[start, stop)`` (:func:`plan_chunks`). Each
chunk is a :func:`calibration.backtest.backtest` of its own snapshots preceded by one *context* snapshot: the
nearest good snapshot before ``start`` (:func:`run_chunk`). The context is fitted, so that the first row of the
chunk still has its step statistics against the previous good snapshot (drift, out-of-sample error, hedge rows), and
its row is then dropped; the rows kept are renumbered to their place ``i`` in the whole history.
:func:`merge_chunks` puts the chunks back in order into one :class:`calibration.backtest.BacktestResult`.

What is kept exactly:

- Cold starts without regularisation (``warm_start=False, regularisation=0``): every fit depends on its snapshot
  only, so the merged run equals the backtest of the whole history, row by row and option by option (timings
  aside: ``elapsed_s`` is measured).
- Warm starts (or regularisation): a chunk's first fit, the context, starts cold; within a chunk the run is the
  backtest of ``[context] + chunk``. The first chunk (no context) equals the start of the whole run exactly; later
  chunks may differ from it by what a different starting point changes in the optimum found.

Bad snapshots (unreadable, empty, failed fit) before a chunk are skipped when looking for its context, as the whole
run skips them in its statistics: :func:`run_chunk` walks back over at most the ``context`` it is given (the
caller passes :data:`CONTEXT_LOOKBACK` snapshots). If none of them is good while earlier snapshots exist, the
chunk's first good row has no step statistics and its ``reason`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from calibration.backtest import (
    HEDGE_COLUMNS,
    PARAM_COLUMNS,
    TABLE_BASE_COLUMNS,
    BacktestProgress,
    BacktestResult,
    BacktestSettings,
    FitFunction,
    backtest,
    default_fit,
)
from calibration.calibrate import CalibrationSettings
from calibration.errors import SmilescopeError
from calibration.result import CalibrationResult
from calibration.snapshot import QuoteSnapshot

#: Snapshots before a chunk searched (nearest first) for a good context snapshot.
CONTEXT_LOOKBACK = 16

Source = str | Path | QuoteSnapshot


class ChunkError(SmilescopeError):
    """Chunks that do not form one history (gap, overlap, wrong order or mixed settings)."""


@dataclass(frozen=True)
class Chunk:
    """Rows ``[start, stop)`` of a history (0-based positions of the snapshots in the whole run).

    Attributes
    ----------
    index
        Position of the chunk in the plan (0-based).
    start, stop
        First row and one past the last row of the chunk.
    """

    index: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def own(self, sources: Sequence[Source]) -> list[Source]:
        """The chunk's own snapshots out of the whole history ``sources``."""
        return list(sources[self.start:self.stop])

    def context(self, sources: Sequence[Source], lookback: int = CONTEXT_LOOKBACK) -> list[Source]:
        """The up to ``lookback`` snapshots before the chunk, in history order (the nearest last)."""
        return list(sources[max(0, self.start - lookback):self.start])


def plan_chunks(n_sources: int, chunk_size: int) -> list[Chunk]:
    """Consecutive chunks of ``chunk_size`` rows covering ``n_sources`` snapshots (the last one may be shorter).

    Raises
    ------
    ChunkError
        ``n_sources < 0`` or ``chunk_size < 1``.
    """
    if isinstance(n_sources, bool) or not isinstance(n_sources, int) or n_sources < 0:
        raise ChunkError(f"the number of snapshots must be a non-negative integer, got {n_sources!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ChunkError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    starts = range(0, n_sources, chunk_size)
    return [Chunk(index=k, start=a, stop=min(a + chunk_size, n_sources)) for k, a in enumerate(starts)]


def _replaying(fit: FitFunction, first: tuple[QuoteSnapshot, CalibrationResult] | None) -> FitFunction:
    """``fit``, except that a cold fit of the snapshot ``first`` (same content) returns its known result once."""
    pending = [first] if first is not None else []

    def replay(snapshot: QuoteSnapshot, settings: CalibrationSettings, initial: CalibrationResult | None,
               previous: CalibrationResult | None) -> CalibrationResult:
        if pending and initial is None and previous is None and snapshot.content_hash == pending[0][0].content_hash:
            return pending.pop()[1]
        return fit(snapshot, settings, initial, previous)

    return replay


def _find_context(
    context: Sequence[Source], settings: BacktestSettings, fit: FitFunction
) -> tuple[Source, tuple[QuoteSnapshot, CalibrationResult]] | None:
    """The nearest good snapshot of ``context`` (searched from the end) with its fit, or None."""
    for source in reversed(context):
        fitted: list[tuple[QuoteSnapshot, CalibrationResult]] = []

        def probe(snapshot, fit_settings, initial, previous):  # records the fit it makes
            result = fit(snapshot, fit_settings, initial, previous)
            fitted.append((snapshot, result))
            return result

        row = backtest([source], settings, fit=probe).table.iloc[0]
        if row["status"] == "ok" and fitted:
            return source, fitted[0]
    return None


@dataclass(frozen=True)
class ChunkRun:
    """One chunk's outcome.

    Attributes
    ----------
    result
        Its rows only (context dropped), ``i`` numbered in the whole history; ``n_sources`` is ``len(chunk)``.
    context
        The label (file name) of the context snapshot fitted before the chunk, None when there was none.
    """

    result: BacktestResult
    context: str | None


def run_chunk(
    own: Sequence[Source],
    settings: BacktestSettings,
    *,
    start: int,
    context: Sequence[Source] = (),
    fit: FitFunction | None = None,
    progress: BacktestProgress | None = None,
) -> ChunkRun:
    """Backtest the snapshots ``own`` (rows ``start ...`` of a history) after their context snapshot.

    Parameters
    ----------
    own
        The chunk's snapshots, in history order (files or loaded snapshots, as :func:`calibration.backtest.backtest`
        takes them).
    settings
        The run's settings (the same for every chunk of a history).
    start
        Row of ``own[0]`` in the whole history.
    context
        Snapshots just before the chunk, in history order (:meth:`Chunk.context`); the nearest good one is fitted
        first and its row dropped. Empty for the first chunk.
    fit
        The fit function (default :func:`calibration.backtest.default_fit`); the context's fit is made once.
        Calls come in this order: the fits of the context candidates tried (nearest first, until one succeeds),
        then the chunk's own fits in row order.
    progress
        ``progress(done, len(own))`` after each of the chunk's own snapshots; returning True stops the chunk.

    Returns
    -------
    ChunkRun
        The chunk's rows (``cancelled`` when ``progress`` stopped it).
    """
    if start < 0:
        raise ChunkError(f"start must be >= 0, got {start}")
    fit = fit or default_fit(check_arbitrage=settings.check_arbitrage)
    found = _find_context(context, settings, fit)
    lead = [found[0]] if found is not None else []
    n = len(own)

    def own_progress(done: int, _total: int) -> bool | None:
        return progress(done - len(lead), n) if progress is not None and done > len(lead) else None

    run = backtest(lead + list(own), settings, progress=own_progress,
                   fit=_replaying(fit, found[1] if found is not None else None))
    table = run.table.iloc[len(lead):].copy()
    table["i"] = table["i"].astype(int) - len(lead) + start
    hedge = run.hedge[run.hedge["i"].astype(int) >= len(lead)].copy()
    hedge["i"] = hedge["i"].astype(int) - len(lead) + start
    params = run.params[run.params["i"].astype(int) >= len(lead)].copy()
    params["i"] = params["i"].astype(int) - len(lead) + start
    if found is None and start > len(context):
        first_ok = table.index[table["status"] == "ok"]
        if len(first_ok) and not table.at[first_ok[0], "reason"]:
            table.at[first_ok[0], "reason"] = (
                f"no good snapshot among the {len(context)} before row {start}: step statistics start here"
            )
    result = BacktestResult(settings=settings, table=table.reset_index(drop=True),
                            hedge=hedge.reset_index(drop=True), params=params.reset_index(drop=True),
                            cancelled=run.cancelled, n_sources=n)
    label = None if found is None else str(run.table["file"].iloc[0])
    return ChunkRun(result=result, context=label)


def merge_chunks(
    parts: Sequence[BacktestResult], *, n_sources: int | None = None, cancelled: bool = False
) -> BacktestResult:
    """The chunks of one history back into one run, in row order.

    Parameters
    ----------
    parts
        The chunks' results (:attr:`ChunkRun.result`, or the same through ``to_dict``/``from_dict``), in history
        order, with the same settings.
    n_sources
        Snapshots of the whole history (default: the sum of the chunks' ``n_sources``).
    cancelled
        The run was stopped: ``parts`` may then be the chunks done, fewer than the history.

    Returns
    -------
    BacktestResult
        The rows of every chunk in order. A chunk stopped by its progress callback ends the merged run there:
        ``cancelled=True`` and the rows up to that chunk's last done row.

    Raises
    ------
    ChunkError
        No chunk, mixed settings, rows that do not follow each other from 0 without gap or overlap, or fewer
        rows than ``n_sources`` in a run that was not cancelled.
    """
    if not parts:
        raise ChunkError("no chunk to merge")
    settings = parts[0].settings
    total = sum(p.n_sources for p in parts) if n_sources is None else n_sources
    tables, hedges, params = [], [], []
    expected, stopped = 0, cancelled
    for k, part in enumerate(parts):
        if part.settings != settings:
            raise ChunkError(f"chunk {k} was run with other settings than chunk 0")
        rows = part.table["i"].astype(int).tolist() if len(part.table) else []
        if rows != list(range(expected, expected + len(rows))):
            raise ChunkError(f"chunk {k} holds rows {rows[:1]}...{rows[-1:]}, expected rows from {expected} on")
        if len(rows) != part.n_sources and not part.cancelled:
            raise ChunkError(f"chunk {k} holds {len(rows)} rows of its {part.n_sources} snapshots")
        expected += len(rows)
        tables.append(part.table)
        hedges.append(part.hedge)
        params.append(part.params)
        if part.cancelled:
            stopped = True
            break
    if expected > total or (expected < total and not stopped):
        raise ChunkError(f"the chunks hold {expected} rows for a history of {total} snapshots")
    table = _concat(tables, TABLE_BASE_COLUMNS)
    extra = [c for c in table.columns if c not in TABLE_BASE_COLUMNS]
    table = table[list(TABLE_BASE_COLUMNS) + extra]
    return BacktestResult(settings=settings, table=table, hedge=_concat(hedges, HEDGE_COLUMNS),
                          params=_concat(params, PARAM_COLUMNS), cancelled=expected < total, n_sources=total)


def _concat(frames: Sequence[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    """Frames stacked (empty ones skipped, as they carry no rows and may lack the optional columns)."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(columns))
    return pd.concat(frames, ignore_index=True, sort=False)


def default_chunk_size(n_sources: int, workers: int, *, minimum: int = 4, maximum: int = 64) -> int:
    """A chunk size giving each of ``workers`` about four chunks (load balance), kept within ``[minimum,
    maximum]`` snapshots (a longer chunk wastes less on its context fit and keeps warm starts longer)."""
    if n_sources <= 0:
        return minimum
    size = math.ceil(n_sources / (4 * max(1, workers)))
    return int(min(maximum, max(minimum, size)))


__all__ = ["CONTEXT_LOOKBACK", "Chunk", "ChunkError", "ChunkRun", "default_chunk_size", "merge_chunks",
           "plan_chunks", "run_chunk"]
