"""Server-side state, shared by every user and worker process: snapshots by content hash, and the default fit.

Everything lives in diskcache directories under ``SMILESCOPE_CACHE_DIR`` (default ``.cache/`` in the project):

- ``jobs/``: the background-callback manager's results (memoised calibrations, progress);
- ``snapshots/``: the raw bytes of every snapshot opened (data files and uploads), keyed by the content hash of
  the parsed quotes, so the browser only holds a key ``{"source", "name", "hash"}``. Uploads are stored as the
  bytes the user sent and parsed again with :func:`calibration.snapshot.load_snapshot` (never unpickled);
- ``results/``: every calibration result, as JSON, by content hash, settings and code version.

Parsed snapshots are also memoised in each process (a small LRU keyed by hash): a cache, never the only copy.

In scale-out mode (``SMILESCOPE_REDIS_URL`` set) the named stores of :func:`store` live in Redis instead
(:mod:`components.scaleout.redis_store`), so web processes and Celery workers on any machine share snapshots,
uploads and fits; ``jobs/`` is then unused (Celery's result backend holds the jobs).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, TypedDict

import diskcache

from calibration.calibrate import CalibrationSettings, calibrate
from calibration.errors import FileTooLargeError, SnapshotError
from calibration.optimizers import ProgressCallback
from calibration.result import CalibrationResult, to_json_value
from calibration.snapshot import QuoteSnapshot, load_snapshot, max_snapshot_bytes
from components import scaleout
from components.data_files import data_dir, resolve_snapshot

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR_ENV = "SMILESCOPE_CACHE_DIR"
#: Parsed snapshots kept per process.
PARSED_SNAPSHOTS = 8
#: Size limit of the snapshot store, bytes (uploads are capped one by one by ``SMILESCOPE_MAX_SNAPSHOT_MB``).
SNAPSHOT_STORE_BYTES = 4 * 1024**3


class SnapshotKey(TypedDict):
    """What the browser holds of a snapshot."""

    source: str  # "data" | "upload"
    name: str
    hash: str


def cache_dir() -> Path:
    """Root of the server-side caches: ``SMILESCOPE_CACHE_DIR`` or ``.cache/`` in the project."""
    return Path(os.environ.get(CACHE_DIR_ENV) or ROOT / ".cache")


#: The named key-value stores and their size limits (bytes).
STORES: dict[str, int] = {
    "snapshots": SNAPSHOT_STORE_BYTES,  # snapshot bytes and names by content hash
    "results": 256 * 1024**2,  # calibration results (JSON text) by snapshot, settings, starts and code version
    "backtests": 256 * 1024**2,  # backtest results (JSON text) by history, settings and code version
}


@functools.lru_cache(maxsize=None)
def _cache(path: str, size_limit: int) -> diskcache.Cache:
    """One diskcache handle per directory and process (diskcache reconnects after a fork)."""
    return diskcache.Cache(path, size_limit=size_limit)


def jobs_cache() -> diskcache.Cache:
    """The background-callback manager's cache (memoised calibration results and progress)."""
    return _cache(str(cache_dir() / "jobs"), 2 * 1024**3)


def store(name: str) -> Any:
    """The shared key-value store ``name`` (one of :data:`STORES`): ``get(key)``, ``set(key, value)`` and
    ``key in store`` with ``str``/``bytes`` values, seen by every web process and job: a diskcache directory, or
    in scale-out mode (``SMILESCOPE_REDIS_URL`` set) a namespace in Redis shared by every machine."""
    limit = STORES[name]
    if scaleout.enabled():
        from components.scaleout.redis_store import redis_store

        return redis_store(name)
    return _cache(str(cache_dir() / name), limit)


def _snapshots() -> Any:
    return store("snapshots")


def _results() -> Any:
    return store("results")


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Digest of the numerical core's sources: part of every memoised calibration's key (new code, new fits)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "calibration").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------------------
# snapshots
# ---------------------------------------------------------------------------------------------------------------


class SnapshotGone(SnapshotError):
    """The snapshot a key names is not on the server any more (cache cleared)."""


def _put_bytes(snapshot: QuoteSnapshot, data: bytes, name: str) -> None:
    store = _snapshots()
    if f"bytes:{snapshot.content_hash}" not in store:
        store.set(f"name:{snapshot.content_hash}", name)
        store.set(f"bytes:{snapshot.content_hash}", data)


@functools.lru_cache(maxsize=PARSED_SNAPSHOTS)
def _parse_data_file(path: str, mtime_ns: int, size: int) -> QuoteSnapshot:
    """A data file parsed (memoised while the file is unchanged), its bytes stored by hash."""
    snapshot = load_snapshot(Path(path))
    _put_bytes(snapshot, Path(path).read_bytes(), Path(path).name)
    return snapshot


def data_snapshot(name: str) -> QuoteSnapshot:
    """A snapshot of the data directory by its listed name (anything not listed is refused)."""
    path = resolve_snapshot(name, data_dir())
    stat = path.stat()
    return _parse_data_file(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=PARSED_SNAPSHOTS)
def snapshot_by_hash(content_hash: str) -> QuoteSnapshot:
    """The snapshot stored under ``content_hash`` (parsed again from its bytes, memoised per process).

    Raises
    ------
    SnapshotGone
        Nothing is stored under that hash (the cache directory was cleared, or the hash is wrong).
    """
    store = _snapshots()
    data = store.get(f"bytes:{content_hash}")
    if not isinstance(data, bytes):
        raise SnapshotGone("this snapshot is no longer on the server (its cache was cleared): open or upload it again")
    return load_snapshot(data, name=str(store.get(f"name:{content_hash}") or "upload"))


def snapshot_for(key: SnapshotKey | dict[str, Any]) -> QuoteSnapshot:
    """The snapshot a browser-held key names."""
    if not key or "hash" not in key:
        raise SnapshotError("no snapshot is loaded")
    if key.get("source") == "data":
        snapshot = data_snapshot(str(key["name"]))
        if snapshot.content_hash == key["hash"]:
            return snapshot
    return snapshot_by_hash(str(key["hash"]))


def data_key(name: str) -> tuple[QuoteSnapshot, SnapshotKey]:
    """Open a data-directory snapshot; returns it with its key."""
    snapshot = data_snapshot(name)
    return snapshot, SnapshotKey(source="data", name=name, hash=snapshot.content_hash)


def upload_key(content_hash: str, name: str | None = None) -> tuple[QuoteSnapshot, SnapshotKey]:
    """An uploaded snapshot already on the server, by hash (a link's ``upload=<hash>``), with its key; ``name``
    is the user's file name (default: the name it was first stored under)."""
    snapshot = snapshot_by_hash(content_hash)
    return snapshot, SnapshotKey(source="upload", name=name or snapshot.source, hash=content_hash)


def decode_upload(contents: str, *, max_bytes: int | None = None) -> bytes:
    """The bytes of a ``dcc.Upload`` data URL, the size cap checked *before* decoding.

    Raises
    ------
    FileTooLargeError
        Above ``max_bytes`` (default ``SMILESCOPE_MAX_SNAPSHOT_MB``).
    SnapshotError
        Not a base64 data URL.
    """
    limit = max_snapshot_bytes() if max_bytes is None else max_bytes
    header, sep, payload = (contents or "").partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        raise SnapshotError("the upload is not a file (expected a base64 data URL)")
    size = len(payload) * 3 // 4 - payload[-2:].count("=")
    if size > limit:
        raise FileTooLargeError(
            f"the file is {size / 1024**2:.1f} MB, above the {limit / 1024**2:.0f} MB cap "
            "(SMILESCOPE_MAX_SNAPSHOT_MB)"
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SnapshotError(f"the upload is not valid base64 ({exc})") from exc


def upload_snapshot(contents: str, filename: str) -> tuple[QuoteSnapshot, SnapshotKey]:
    """Parse an upload (canonical CSV/Parquet, Deribit JSON, CBOE, OptionMetrics; gzip accepted) and keep it.

    Raises
    ------
    SnapshotError
        Too large, unknown format or invalid content; the message names the problem.
    """
    data = decode_upload(contents)
    snapshot = load_snapshot(data, name=filename)
    _put_bytes(snapshot, data, filename)
    return snapshot, SnapshotKey(source="upload", name=filename, hash=snapshot.content_hash)


def is_synthetic(key: SnapshotKey | dict[str, Any]) -> bool:
    """Whether a data-directory snapshot is labelled synthetic: a ``*.params.json`` beside it that is its own or
    lists it says ``"synthetic": true``, or the README of its folder or of the data directory says SYNTHETIC."""
    if not key or key.get("source") != "data":
        return False
    path = data_dir() / str(key["name"])
    for params in sorted(path.parent.glob("*.params.json")):
        try:
            meta = json.loads(params.read_text())
        except (OSError, ValueError):
            continue
        own = params.name == f"{path.name.split('.')[0]}.params.json"
        listed = any(isinstance(s, dict) and s.get("file") == path.name for s in meta.get("snapshots", []))
        if (own or listed) and meta.get("synthetic") is True:
            return True
    for readme in (path.parent / "README.md", data_dir() / "README.md"):
        if readme.is_file() and "SYNTHETIC" in readme.read_text(errors="replace"):
            return True
    return False


# ---------------------------------------------------------------------------------------------------------------
# the default fit (page load)
# ---------------------------------------------------------------------------------------------------------------


def start_digest(result: CalibrationResult | None) -> str:
    """A digest of the parameters (and expiries) of a warm start or regularisation target; "-" for none."""
    if result is None:
        return "-"
    text = json.dumps([result.model, list(result.expiries), to_json_value(result.params)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fit_key(snapshot: QuoteSnapshot, settings: CalibrationSettings, *, initial: CalibrationResult | None = None,
            previous: CalibrationResult | None = None, check_arbitrage: bool = True) -> str:
    """The key of a memoised fit: content hash, settings, warm start, regularisation target, whether the
    arbitrage report was made, and code version."""
    starts = "" if initial is None and previous is None else f":{start_digest(initial)}:{start_digest(previous)}"
    checks = "" if check_arbitrage else ":noarb"
    return f"{snapshot.content_hash}:{settings.cache_key()}{starts}{checks}:{code_version()}"


def cached_result(key: str) -> dict[str, Any] | None:
    """A memoised fit by its :func:`fit_key` (``None`` when it is not stored)."""
    text = _results().get(key)
    return json.loads(text) if isinstance(text, str) else None


def cached_fit(
    snapshot: QuoteSnapshot,
    settings: CalibrationSettings,
    *,
    initial: CalibrationResult | None = None,
    previous: CalibrationResult | None = None,
    check_arbitrage: bool = True,
    progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """``calibrate(snapshot, settings, initial=, previous=, check_arbitrage=).to_dict()``, memoised by
    :func:`fit_key`.

    Every fit goes through here: the page-load fit (synchronously, pre-warmed at start-up) and the background
    jobs (which the callback manager memoises on top). A job started again for a fit already made (the manager
    starts one even on a hit) thus returns the very same result, never a second run with other timings.
    A cancelled job is killed before it stores anything.
    """
    key = fit_key(snapshot, settings, initial=initial, previous=previous, check_arbitrage=check_arbitrage)
    data = cached_result(key)
    if data is not None:
        return data
    data = calibrate(snapshot, settings, initial=initial, previous=previous, check_arbitrage=check_arbitrage,
                     progress=progress).to_dict()
    _results().set(key, json.dumps(data, allow_nan=False))
    return data


def result_of(data: dict[str, Any] | None) -> CalibrationResult | None:
    """A stored result dict back to a :class:`CalibrationResult` (``None`` stays ``None``)."""
    return CalibrationResult.from_dict(data) if data else None
