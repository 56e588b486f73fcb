"""Backtests of the dashboard: a history of data-directory snapshots calibrated through the shared fit cache.

Every snapshot's fit goes through :func:`components.server_store.cached_fit`, keyed by the snapshot's content, the
settings, the warm start and regularisation target (the previous fit's parameters) and the code version: a re-run
is served from the cache and an interrupted run resumes where it stopped (the fits done are not made again).
The history's files are parsed once per process (:class:`HistoryFiles`).

The Backtest tab runs several models and starts over one history; :func:`save_outcome` stores their tables in the
shared "backtests" store under a digest of the job spec and the code version, :func:`load_outcome` reads them back
(callers must not modify what it returns: it is shared by the callbacks of the process).
"""

from __future__ import annotations

import functools
import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from calibration.backtest import BacktestProgress, BacktestResult, BacktestSettings, FitFunction, backtest
from calibration.calibrate import CalibrationSettings
from calibration.result import CalibrationResult
from calibration.snapshot import QuoteSnapshot, load_snapshot
from components import scaleout
from components.data_files import data_dir, resolve_snapshot
from components.server_store import cache_dir, cached_fit, code_version, fit_key, store


@dataclass(frozen=True)
class HistoryRun:
    """One backtest run of the dashboard.

    Attributes
    ----------
    result
        The backtest tables.
    fit_keys
        ``{row i: fit key}`` of every snapshot fitted (:func:`components.server_store.cached_result` reads the
        fit back, e.g. for the replay).
    """

    result: BacktestResult
    fit_keys: dict[int, str]


def cached_fit_function(settings: BacktestSettings, fit_keys: dict[int, str] | None = None) -> FitFunction:
    """A :data:`calibration.backtest.FitFunction` memoised by :func:`components.server_store.cached_fit`; records
    each completed fit's key in ``fit_keys`` under its call number (calls run in row order; a fit that raises
    records nothing, so the n-th key is that of the n-th "ok" row)."""

    def fit(snapshot: QuoteSnapshot, fit_settings: CalibrationSettings, initial: CalibrationResult | None,
            previous: CalibrationResult | None) -> CalibrationResult:
        options = {"initial": initial, "previous": previous, "check_arbitrage": settings.check_arbitrage}
        data = cached_fit(snapshot, fit_settings, **options)
        if fit_keys is not None:
            fit_keys[len(fit_keys)] = fit_key(snapshot, fit_settings, **options)
        return CalibrationResult.from_dict(data)

    return fit


def snapshot_sources(names: Sequence[str]) -> list[str]:
    """The files of the data-directory snapshots ``names``; a name not listed stays as it is (the backtest reports
    it as "unreadable" and never opens anything outside the data directory)."""
    root = data_dir()
    sources: list[str] = []
    for name in names:
        try:
            sources.append(str(resolve_snapshot(name, root)))
        except FileNotFoundError:
            sources.append(name)  # missing: reported as unreadable by the run
    return sources


#: Snapshot files kept parsed per process: a dashboard backtest runs several models over the same history.
PARSED_FILES = 64


@functools.lru_cache(maxsize=PARSED_FILES)
def _parsed_file(path: str, mtime_ns: int, size: int) -> QuoteSnapshot:
    """A snapshot file parsed, memoised in this process while the file is unchanged."""
    return load_snapshot(Path(path))


class HistoryFiles(Sequence):
    """The files of a history, parsed one at a time as the backtest reaches them and kept for the next run (see
    :data:`PARSED_FILES`); a file that cannot be read is given as its path, so that the backtest reports why."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._paths = list(paths)

    def __len__(self) -> int:
        return len(self._paths)

    @overload
    def __getitem__(self, i: int) -> QuoteSnapshot | str: ...

    @overload
    def __getitem__(self, i: slice) -> list[QuoteSnapshot | str]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        path = self._paths[i]
        try:
            stat = Path(path).stat()
            return _parsed_file(path, stat.st_mtime_ns, stat.st_size)
        except Exception:  # noqa: BLE001 - the backtest reads it again and reports the reason on its row
            return path


def run_history(
    names: Sequence[str], settings: BacktestSettings, *, progress: BacktestProgress | None = None
) -> HistoryRun:
    """Backtest the data-directory snapshots ``names`` (in that order) with ``settings``.

    Parameters
    ----------
    names
        Snapshot names as :func:`components.data_files.list_snapshots` lists them; a name not listed becomes an
        "unreadable" row (it is never opened outside the data directory).
    settings
        The run's settings.
    progress
        ``progress(done, n)`` after each snapshot (see :func:`calibration.backtest.backtest`).

    In the scale-out mode (``SMILESCOPE_REDIS_URL`` set) the history is cut into chunks that run as Celery tasks
    (:func:`components.scaleout.fanout.run_history_distributed`: the same tables, warm starts kept within a chunk).
    """
    if scaleout.enabled():  # Celery + Redis: chunks of the history fan out to the workers
        from components.scaleout.fanout import run_history_distributed

        return run_history_distributed(names, settings, progress=progress)
    sources = snapshot_sources(names)
    calls: dict[int, str] = {}
    result = backtest(HistoryFiles(sources), settings, progress=progress, fit=cached_fit_function(settings, calls))
    ok_rows = result.table.loc[result.table["status"] == "ok", "i"].astype(int) if len(result.table) else []
    return HistoryRun(result=result, fit_keys=dict(zip(ok_rows, calls.values())))


# ---------------------------------------------------------------------------------------------------------------
# the outcome of a dashboard backtest (several runs over one history), stored server-side
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestOutcome:
    """The runs of one dashboard backtest, as stored by :func:`save_outcome`.

    Attributes
    ----------
    spec
        The job spec it answers (history, snapshot names, calibration settings, runs).
    labels
        One label per run (:func:`calibration.backtest.run_label`).
    runs
        The runs, in the spec's order.
    """

    spec: dict[str, Any]
    labels: tuple[str, ...]
    runs: tuple[HistoryRun, ...]

    @property
    def results(self) -> list[BacktestResult]:
        """The backtest tables of every run."""
        return [run.result for run in self.runs]


#: zlib level of a stored outcome (fast; JSON of numbers shrinks about fivefold).
OUTCOME_COMPRESSION = 1


def outcome_key(spec: Mapping[str, Any]) -> str:
    """Key of a backtest outcome: a digest of its spec (canonical JSON, without a one-off ``attempt`` tag) and the
    code version."""
    canonical = {k: v for k, v in spec.items() if k != "attempt"}
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":")) + code_version()
    return hashlib.sha256(text.encode()).hexdigest()


def save_outcome(spec: Mapping[str, Any], labels: Sequence[str], runs: Sequence[HistoryRun]) -> str:
    """Store the runs of ``spec`` in the shared "backtests" store (JSON, zlib-compressed: the hedge tables are
    about 14,000 rows per run of the bundled history); returns its :func:`outcome_key`."""
    key = outcome_key(spec)
    document = {
        "spec": dict(spec),
        "runs": [
            {"label": label, "result": run.result.to_dict(), "fit_keys": {str(i): k for i, k in run.fit_keys.items()}}
            for label, run in zip(labels, runs, strict=True)
        ],
    }
    text = json.dumps(document, separators=(",", ":"), allow_nan=False)
    store("backtests").set(key, zlib.compress(text.encode(), OUTCOME_COMPRESSION))
    return key


def outcome_stored(key: str) -> bool:
    """Whether the outcome ``key`` is in the shared store now (not just parsed in this process earlier)."""
    return key in store("backtests")


def load_outcome(key: str) -> BacktestOutcome | None:
    """The outcome stored under ``key``, ``None`` when it is not stored (parsed once per process: an outcome is
    content-addressed and never changes)."""
    try:
        return _parsed_outcome(str(cache_dir()), key)
    except KeyError:
        return None


@functools.lru_cache(maxsize=4)
def _parsed_outcome(_cache: str, key: str) -> BacktestOutcome:
    data = store("backtests").get(key)
    if not isinstance(data, bytes):
        raise KeyError(key)  # not memoised: a later save is seen
    document = json.loads(zlib.decompress(data))
    runs = tuple(
        HistoryRun(result=BacktestResult.from_dict(run["result"]),
                   fit_keys={int(i): k for i, k in run["fit_keys"].items()})
        for run in document["runs"]
    )
    return BacktestOutcome(spec=document["spec"], labels=tuple(run["label"] for run in document["runs"]), runs=runs)
