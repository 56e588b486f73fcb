"""Bytes in: the size cap, gzip, telling Parquet/JSON/CSV apart, and reading each into a raw table or payload.

Sizes are in bytes. Nothing here knows the snapshot formats; :mod:`calibration.loaders.formats` picks one.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calibration.errors import FileTooLargeError, SnapshotError, UnknownFormatError
from calibration.loaders.locate import Where
from calibration.loaders.values import NA_TOKENS

__all__ = [
    "DEFAULT_MAX_BYTES",
    "container_of",
    "first_line",
    "gunzip",
    "parquet_file",
    "read_csv_table",
    "read_json_payload",
    "read_parquet_table",
    "read_source",
]


DEFAULT_MAX_BYTES = 200 * 1024**2

_CSV_NA_VALUES = ["", *NA_TOKENS, *(t.upper() for t in NA_TOKENS), "NaN", "Null", "None", "N/A"]


def read_source(
    source: str | os.PathLike[str] | bytes, *, name: str | None, max_bytes: int
) -> tuple[bytes, str]:
    """Bytes of the snapshot (gunzipped) and the label used in messages, honouring the size cap."""
    limit = f"the {max_bytes / 1024**2:g} MB limit"
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name or "upload"
        data = bytes(source)
        if len(data) > max_bytes:
            raise FileTooLargeError(f"the upload is {len(data) / 1024**2:.1f} MB, above {limit}", source=label)
    else:
        path = Path(os.fspath(source))
        label = name or path.name
        try:
            size = path.stat().st_size
            if size > max_bytes:
                raise FileTooLargeError(f"the file is {size / 1024**2:.1f} MB, above {limit}", source=label)
            with path.open("rb") as handle:
                data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise SnapshotError(f"cannot read the file: {exc.strerror or exc}", source=label) from None
        if len(data) > max_bytes:
            raise FileTooLargeError(f"the file grew above {limit} while being read", source=label)
    if data[:2] == b"\x1f\x8b":
        data = gunzip(data, label, max_bytes)
    return data, label


def gunzip(data: bytes, label: str, max_bytes: int) -> bytes:
    """Decompress gzip data in chunks, stopping as soon as the output passes ``max_bytes``."""
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            while chunk := stream.read(1 << 20):
                out += chunk
                if len(out) > max_bytes:
                    raise FileTooLargeError(
                        f"the file decompresses to more than the {max_bytes / 1024**2:g} MB limit", source=label
                    )
    except (OSError, EOFError, zlib.error) as exc:
        raise SnapshotError(f"corrupt gzip data: {exc}", source=label) from None
    return bytes(out)


def _extension(label: str) -> str:
    suffixes = [s.lower() for s in Path(label).suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    return suffixes[-1] if suffixes else ""


def container_of(data: bytes, label: str) -> str:
    """'parquet', 'json' or 'csv', from magic bytes and the first character, then the file extension."""
    if not data.strip():
        raise SnapshotError("the file is empty", source=label)
    if data[:4] == b"PAR1":
        return "parquet"
    extension = _extension(label)
    if extension in (".parquet", ".pq"):
        return "parquet"
    if data[:4] == b"PK\x03\x04":
        raise UnknownFormatError(
            "this is a zip archive (or an Excel workbook); unzip it or export the sheet as CSV", source=label
        )
    start = re.match(rb"(?:\xef\xbb\xbf)?\s*", data)
    first = data[start.end() : start.end() + 1] if start else b""
    if first in (b"{", b"[") or extension == ".json":
        return "json"
    return "csv"


def _decode(data: bytes, label: str) -> str:
    """Strict UTF-8 text (BOM dropped); SnapshotError saying where the first invalid byte is."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SnapshotError(
            f"byte 0x{data[exc.start]:02x} at line {line}, character {column} is not UTF-8 text; "
            "save the file as UTF-8",
            source=label,
            row=line - 1 if line > 1 else None,
        ) from None


def _header(names: Sequence[Any], label: str) -> list[str]:
    """Column names stripped and lower-cased; a name given twice is an error."""
    header = [str(c).strip().lower() for c in names]
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise SnapshotError(f"the header has column {name!r} twice; keep one", source=label, column=name)
        seen.add(name)
    return header


def first_line(data: bytes, label: str) -> list[str]:
    """The CSV header cells."""
    try:
        return next(csv.reader([_decode(data.split(b"\n", 1)[0], label)]), [])
    except csv.Error as exc:
        raise SnapshotError(f"not a readable CSV header: {exc}", source=label) from None


def read_csv_table(data: bytes, label: str) -> tuple[pd.DataFrame, Where]:
    """All cells as text (NaN when empty), blank lines dropped, with each row's physical line for messages."""
    _decode(data, label)
    _header(first_line(data, label), label)
    try:
        raw = pd.read_csv(
            io.BytesIO(data),
            dtype=str,
            keep_default_na=False,
            na_values=_CSV_NA_VALUES,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise SnapshotError("the file is empty", source=label) from None
    except pd.errors.ParserError as exc:
        found = re.search(r"line (\d+)", str(exc))
        line = int(found.group(1)) if found else None
        detail = str(exc).split("C error: ")[-1].strip()
        raise SnapshotError(
            f"not a well-formed CSV: {detail}",
            source=label,
            row=line - 1 if line and line > 1 else None,
        ) from None
    except (ValueError, UnicodeError, OverflowError) as exc:
        raise SnapshotError(f"not a readable CSV: {exc}", source=label) from None
    blank = raw.isna().all(axis=1).to_numpy(dtype=bool)
    lines = np.flatnonzero(~blank) + 2
    if blank.any():
        raw = raw.loc[~blank].reset_index(drop=True)
    raw.columns = _header(raw.columns, label)
    return raw, Where(label, lines=lines)


def parquet_file(data: bytes, label: str, max_bytes: int) -> Any:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
        meta = parquet.metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    except Exception as exc:  # any failure of pyarrow's decoder means an unreadable file
        raise SnapshotError(f"corrupt or unreadable Parquet file: {exc}", source=label) from None
    if size > max_bytes:
        raise FileTooLargeError(
            f"the Parquet data expands to {size / 1024**2:.1f} MB, above the {max_bytes / 1024**2:g} MB limit",
            source=label,
        )
    return parquet


def read_parquet_table(data: bytes, label: str, max_bytes: int) -> tuple[pd.DataFrame, Where]:
    parquet = parquet_file(data, label, max_bytes)
    try:
        table = parquet.read()
        table.validate(full=True)  # also checks that text columns are valid UTF-8
        raw = table.to_pandas()
    except Exception as exc:  # any failure of pyarrow's decoder means an unreadable file
        raise SnapshotError(f"corrupt or unreadable Parquet file: {exc}", source=label) from None
    raw = raw.reset_index(drop=True)
    for column in raw.columns:
        if isinstance(raw[column].dtype, pd.CategoricalDtype):
            raw[column] = raw[column].astype(object)
    raw.columns = _header(raw.columns, label)
    return raw, Where(label)


def read_json_payload(data: bytes, label: str) -> Any:
    text = _decode(data, label)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, character {exc.colno}", source=label
        ) from None
    except (ValueError, RecursionError) as exc:
        raise SnapshotError(f"not readable JSON: {exc}", source=label) from None
