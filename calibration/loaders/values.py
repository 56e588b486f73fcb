"""Cell converters: a raw column (text as read from CSV, or typed) to float64, strings, codes or UTC times.

Each converter is vectorized (per-value work is done once per distinct value) and raises a
:class:`~calibration.errors.SnapshotError` at the first bad cell, located by a :class:`Where`.
Times are int64 nanoseconds since the epoch, UTC, with :data:`NAT` for "no time", within 1970-2199.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from calibration.loaders.locate import Where, first, show

__all__ = [
    "NAT",
    "NA_TOKENS",
    "NEW_YORK",
    "epoch_ms",
    "floats",
    "in_range",
    "local_days",
    "mapped",
    "new_york_to_utc",
    "optional_floats",
    "strings",
    "utc_index",
    "utc_times",
]


#: Time zone of the CBOE and OptionMetrics wall-clock times.
NEW_YORK = "America/New_York"
#: Cells read as "no value" (besides an empty cell), case-insensitive.
NA_TOKENS = ("nan", "na", "n/a", "null", "none")


_EARLIEST = pd.Timestamp("1970-01-01", tz="UTC")
_LATEST = pd.Timestamp("2200-01-01", tz="UTC")
NAT = np.iinfo(np.int64).min
_NS_PER_MS = 1_000_000
_BARE_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}|\d{8})$")


def _uniques(raw: pd.Series, where: Where, column: str) -> tuple[np.ndarray, list[Any]]:
    """Codes (-1 = missing) and unique values of a column, so per-value work is done once per distinct value."""
    try:
        codes, uniques = pd.factorize(raw, use_na_sentinel=True)
    except TypeError:
        raise where.error("holds lists or objects, not plain values", column=column) from None
    return np.asarray(codes), list(uniques)


def _missing_text(values: pd.Series) -> np.ndarray:
    """True where a non-null cell is blank or an NA token ("nan", "null", ...)."""
    text = values.astype(str).str.strip().str.lower()
    return (text.eq("") | text.isin(NA_TOKENS)).to_numpy(dtype=bool)


def floats(
    raw: pd.Series,
    where: Where,
    column: str,
    *,
    required: bool = False,
    positive: bool = False,
    nonnegative: bool = False,
) -> np.ndarray:
    """Column as float64 (NaN where empty); SnapshotError at the first non-numeric, non-finite or out-of-range cell.

    ``required`` forbids empty cells, ``positive`` requires ``> 0``, ``nonnegative`` requires ``>= 0``.
    """
    if pd.api.types.is_bool_dtype(raw.dtype) or raw.dtype.kind in "mM":
        raise where.error(f"holds {raw.dtype} values, expected numbers", pos=0, column=column)
    if pd.api.types.is_numeric_dtype(raw.dtype):
        values = raw.to_numpy(dtype="float64", na_value=np.nan)
        bad = np.isinf(values)
    else:
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        unparsed = np.isnan(values) & ~raw.isna().to_numpy(dtype=bool)
        if unparsed.any():
            unparsed[unparsed] = ~_missing_text(raw[unparsed])
        bad = unparsed | np.isinf(values)
    if bad.any():
        pos = first(bad)
        raise where.error(f"{show(raw.iloc[pos])} is not a number", pos=pos, column=column)
    if required and np.isnan(values).any():
        pos = first(np.isnan(values))
        raise where.error(f"{column} is empty; every quote needs one", pos=pos, column=column)
    if positive and (values <= 0).any():
        pos = first(values <= 0)
        raise where.error(f"{column} {values[pos]:g} must be > 0", pos=pos, column=column)
    if nonnegative and (values < 0).any():
        pos = first(values < 0)
        raise where.error(f"{column} {values[pos]:g} is negative; it must be >= 0", pos=pos, column=column)
    return values


def optional_floats(
    frame: pd.DataFrame, column: str, where: Where, *, positive: bool = False, nonnegative: bool = False
) -> np.ndarray:
    """An optional numeric column as float64, all NaN when the column is absent (checks as in ``floats``)."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return floats(frame[column], where, column, positive=positive, nonnegative=nonnegative)


def strings(raw: pd.Series, where: Where, column: str) -> np.ndarray:
    """Column as stripped non-empty strings (object array); SnapshotError at the first empty cell."""
    codes, uniques = _uniques(raw, where, column)
    text = np.array([str(u).strip() for u in uniques] + [""], dtype=object)
    values = text[codes]  # code -1 picks the trailing ""
    empty = values == ""
    if empty.any():
        pos = first(empty)
        raise where.error(f"{column} is empty; every quote needs one", pos=pos, column=column)
    return values


def mapped(
    raw: pd.Series, where: Where, column: str, codes_map: Mapping[str, Any], *, default: Any, expected: str
) -> np.ndarray:
    """Map each cell (stripped, lower-cased) through ``codes_map``; empty cells give ``default`` (None = required)."""
    codes, uniques = _uniques(raw, where, column)
    keys = [str(bool(v)).lower() if isinstance(v, (bool, np.bool_)) else str(v).strip().lower() for v in uniques]
    looked_up = [codes_map.get(k, default if k in ("", *NA_TOKENS) else None) for k in keys]
    values = np.array([*looked_up, default], dtype=object)[codes]
    bad_unique = np.array([m is None for m in looked_up] + [default is None], dtype=bool)
    bad = bad_unique[codes]
    if bad.any():
        pos = first(bad)
        what = f"{column} is empty" if codes[pos] < 0 else f"{show(raw.iloc[pos])} is not {expected}"
        raise where.error(what, pos=pos, column=column)
    return values


def _text_dates(uniques: list[Any]) -> tuple[list[str], np.ndarray]:
    """ISO text of each unique date-time cell and whether it is a bare date."""
    texts: list[str] = []
    bare: list[bool] = []
    for value in uniques:
        if isinstance(value, (dt.datetime, np.datetime64)):
            text = pd.Timestamp(value).isoformat()
        elif isinstance(value, dt.date):
            text = value.isoformat()
        else:
            text = str(value).strip()
        texts.append(text)
        bare.append(bool(_BARE_DATE.match(text)))
    return texts, np.array(bare, dtype=bool)


def in_range(stamps: pd.DatetimeIndex) -> np.ndarray:
    """True where a UTC time is within 1970-01-01 (included) and 2200-01-01 (excluded); False for NaT."""
    return np.asarray((stamps >= _EARLIEST) & (stamps < _LATEST), dtype=bool)


def utc_index(ns: np.ndarray) -> pd.DatetimeIndex:
    """UTC nanoseconds since the epoch (int64, :data:`NAT` = missing) as a UTC DatetimeIndex."""
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")


def utc_times(
    raw: pd.Series, where: Where, column: str, *, bare_date_hour: int | None = None
) -> pd.DatetimeIndex:
    """Column of ISO-8601 date-times as UTC nanoseconds; a time without offset is UTC.

    A bare date (``2026-05-22``) is that date at ``bare_date_hour`` UTC when given, else an error.
    Empty cells are an error.
    """
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        stamps = pd.DatetimeIndex(raw)
        stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
        bad = ~in_range(stamps) & ~stamps.isna()
        if bad.any():
            pos = first(bad)
            raise where.error(f"{stamps[pos]} is out of range (1970-2199)", pos=pos, column=column)
        ns = stamps.as_unit("ns").asi8.copy()
        ns[stamps.isna()] = NAT
    else:
        codes, uniques = _uniques(raw, where, column)
        texts, bare = _text_dates(uniques)
        parsed = pd.DatetimeIndex(pd.to_datetime(pd.Index(texts, dtype=object), format="ISO8601", utc=True,
                                                 errors="coerce"))  # fmt: skip
        if bare_date_hour is not None:
            parsed = parsed + pd.to_timedelta(np.where(bare, bare_date_hour, 0), unit="h")
        good = in_range(parsed) & ~parsed.isna() & (~bare | (bare_date_hour is not None))
        bad_cells = (codes >= 0) & ~np.append(good, True)[codes]
        if bad_cells.any():
            pos = first(bad_cells)
            text = texts[codes[pos]]
            if bare[codes[pos]] and bare_date_hour is None:
                message = f"{show(text)} is a date without a time; {column} needs both (2026-05-21T10:00:00Z)"
            else:
                message = f"{show(text)} is not an ISO-8601 date-time (2026-05-22T08:00:00Z) within 1970-2199"
            raise where.error(message, pos=pos, column=column)
        ns = np.append(parsed.as_unit("ns").asi8, NAT)[codes]
    if (ns == NAT).any():
        pos = first(ns == NAT)
        raise where.error(f"{column} is empty; every quote needs one", pos=pos, column=column)
    return utc_index(ns)


def local_days(raw: pd.Series, where: Where, column: str) -> np.ndarray:
    """Column of calendar dates (ISO ``2023-01-20``, ``20230120`` or ``20JAN2023``) as naive datetime64[ns]."""
    codes, uniques = _uniques(raw, where, column)
    texts, _ = _text_dates(uniques)
    index = pd.Index(texts, dtype=object)
    parsed = pd.DatetimeIndex(pd.to_datetime(index, format="ISO8601", utc=True, errors="coerce"))
    if parsed.isna().any():
        other = pd.DatetimeIndex(pd.to_datetime(index, format="%d%b%Y", utc=True, errors="coerce"))
        parsed = parsed.where(~parsed.isna(), other)
    good = in_range(parsed) & ~parsed.isna()
    bad_cells = ~np.append(good, False)[codes]
    if bad_cells.any():
        pos = first(bad_cells)
        shown = "empty" if codes[pos] < 0 else f"{show(texts[codes[pos]])} is not a date (use 2023-01-20)"
        raise where.error(shown, pos=pos, column=column)
    days = parsed.tz_convert(None).normalize().as_unit("ns").asi8
    return days[codes].view("datetime64[ns]")


def new_york_to_utc(days: np.ndarray, hour: int, minute: int) -> np.ndarray:
    """UTC nanoseconds of New York wall-clock ``hour:minute`` on each of ``days`` (naive midnight datetime64)."""
    local = pd.DatetimeIndex(days + np.timedelta64(hour * 60 + minute, "m"))
    return local.tz_localize(NEW_YORK).tz_convert("UTC").as_unit("ns").asi8


def epoch_ms(values: pd.Series) -> np.ndarray:
    """Epoch milliseconds to UTC nanoseconds; NaT (``NAT``) where missing, invalid or outside 1970-2199."""
    ms = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(ms) & (ms >= _EARLIEST.value / _NS_PER_MS) & (ms < _LATEST.value / _NS_PER_MS)
    ns = np.full(len(ms), NAT, dtype=np.int64)
    ns[ok] = np.round(ms[ok] * _NS_PER_MS).astype(np.int64)
    return ns
