"""The snapshot files the app may open: only files inside the data directory, never arbitrary paths."""

from __future__ import annotations

import os
from pathlib import Path

SNAPSHOT_SUFFIXES = (".csv", ".parquet", ".json", ".csv.gz", ".json.gz", ".parquet.gz")
#: Files beside the snapshots that are not snapshots (the demo generator's parameter sidecars).
SIDECAR_SUFFIX = ".params.json"
DEFAULT_SNAPSHOT = "btc_demo.csv"


def data_dir() -> Path:
    """The data directory: ``SMILESCOPE_DATA_DIR`` or the bundled ``data/``."""
    return Path(os.environ.get("SMILESCOPE_DATA_DIR", Path(__file__).resolve().parent.parent / "data"))


def list_snapshots(directory: Path | None = None) -> list[str]:
    """Snapshot files in the data directory (relative POSIX names), sorted, history sub-folders included."""
    root = directory or data_dir()
    names = [
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and path.name.lower().endswith(SNAPSHOT_SUFFIXES)
        and not path.name.lower().endswith(SIDECAR_SUFFIX)
    ]
    return sorted(names, key=lambda name: (name.count("/"), name))


def history_folders(directory: Path | None = None) -> dict[str, list[str]]:
    """Histories: the sub-folders of the data directory holding at least two snapshots, folder (relative POSIX
    name) -> its snapshot names in name order (the time order of time-stamped file names such as
    ``btc_2026-11-18_1400.csv``)."""
    folders: dict[str, list[str]] = {}
    for name in list_snapshots(directory):
        folder, _, _ = name.rpartition("/")
        if folder:
            folders.setdefault(folder, []).append(name)
    return {folder: sorted(names) for folder, names in sorted(folders.items()) if len(names) >= 2}


def resolve_snapshot(name: str, directory: Path | None = None) -> Path:
    """Path of a listed snapshot; refuses anything not listed (no path traversal)."""
    root = directory or data_dir()
    if name not in list_snapshots(root):
        raise FileNotFoundError(f"{name!r} is not a snapshot in the data directory")
    return root / name
