"""Snapshot loaders: canonical CSV/Parquet, Deribit JSON, CBOE DataShop and OptionMetrics CSV.

Every loader returns the *canonical frame* of DESIGN.md, one row per option quote, in input order, with exactly
these columns and dtypes:

=================  ======================  ==========================================================
column             dtype                   meaning and unit
=================  ======================  ==========================================================
snapshot_time      datetime64[ns, UTC]     time of the snapshot, the same on every row
underlying         str                     e.g. ``BTC``, ``ETH``, ``SPX``
expiry             datetime64[ns, UTC]     expiry instant (a bare date means 08:00 UTC, Deribit's)
strike             float64                 strike in the quote currency, ``> 0``
option_type        str                     ``C`` or ``P``
bid, ask           float64                 premiums as quoted (coin when ``inverse``); NaN = no quote
underlying_price   float64                 spot or index at ``snapshot_time``, ``> 0``
forward            float64                 the venue's forward for that expiry, NaN when it has none
inverse            bool                    premiums in units of the underlying (Deribit coin options)
rate               float64                 continuously compounded rate (decimal), NaN if absent
volume             float64                 traded volume (contracts), NaN if absent
open_interest      float64                 open interest (contracts), NaN if absent
last               float64                 last traded premium, NaN if absent
iv_bid, iv_ask     float64                 the venue's implied vols as decimals (0.55), NaN if absent
=================  ======================  ==========================================================

``frame.attrs["source"]`` is the file name and ``frame.attrs["format"]`` the format it was read as.

Loaders never drop quotes for market reasons (crossed, no bid, expired...): that is :mod:`calibration.cleaning`'s
job. They reject input that is not valid data, with a :class:`~calibration.errors.SnapshotError` naming the file,
the 1-based data row (the header is not counted; for CSV the physical line is given too) and the column.

Time conventions (documented for the UI):

* canonical: times are ISO-8601; a time without offset is UTC; a bare date expiry is 08:00 UTC.
* Deribit: expiry at the instrument's ``expiration_timestamp`` when the file lists it, else 08:00 UTC of the
  date in the instrument name; snapshot time ``as_of``, else the latest ``creation_timestamp``, else ``usOut``.

Deribit specifics: only records named ``CUR-DDMMMYY-STRIKE-C|P`` are options (a ``d`` in the strike is a decimal
point, ``XRP_USDC-30MAY26-2d2-C``); futures and perpetuals give forwards and spot; combos and other records are
ignored; a record that looks like an option but does not parse is an error. Coin-margined options (``BTC``,
``ETH``) have ``inverse=True``; linear ones (``BTC_USDC-...``) ``inverse=False`` with underlying ``BTC``.
forward = the mid of the future of the same currency and expiry, else ``underlying_price`` when
``underlying_index`` names a future or a ``SYN.`` synthetic future, else NaN. underlying_price (spot) = the
perpetual's mid, else ``estimated_delivery_price`` (the index), else the nearest-dated future's mid, else the
nearest expiry's ``underlying_price`` (both forwards standing in for spot). rate = ``interest_rate``; IVs
(``bid_iv``/``ask_iv``, percent) are divided by 100; volume = ``volume``, or ``volume_usd`` / spot when only that
is recorded.
* CBOE DataShop: snapshot at ``quote_date`` 15:45 New York (the ``*_1545`` quotes); expiry at 16:00 New York
  on ``expiration`` (PM settlement), or 09:30 New York for the AM-settled roots of :data:`AM_SETTLED_ROOTS`
  (SPX but not SPXW, ...).
* OptionMetrics: snapshot at ``date`` 16:00 New York (closing best bid/offer); expiry at 16:00 New York on
  ``exdate``, 09:30 when ``am_settlement`` is 1; an ``exdate`` on a Saturday (standard options before 2015)
  means the Friday before.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calibration.errors import FileTooLargeError, SnapshotError, UnknownFormatError

FORMATS: tuple[str, ...] = ("canonical", "deribit", "cboe", "optionmetrics")
REQUIRED_COLUMNS: tuple[str, ...] = (
    "snapshot_time",
    "underlying",
    "expiry",
    "strike",
    "option_type",
    "bid",
    "ask",
    "underlying_price",
)
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "forward",
    "inverse",
    "rate",
    "volume",
    "open_interest",
    "last",
    "iv_bid",
    "iv_ask",
)
CANONICAL_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
DEFAULT_MAX_BYTES = 200 * 1024**2

#: Hour (UTC) of a canonical expiry given as a bare date: Deribit's 08:00 UTC.
BARE_DATE_EXPIRY_HOUR_UTC = 8
NEW_YORK = "America/New_York"
#: CBOE roots whose options settle on the opening print (09:30 New York); every other root settles PM (16:00).
AM_SETTLED_ROOTS = frozenset({"SPX", "NDX", "RUT", "DJX", "VIX", "MXEA", "MXEF"})
#: Cells read as "no value" (besides an empty cell), case-insensitive.
NA_TOKENS = ("nan", "na", "n/a", "null", "none")

_CSV_NA_VALUES = ["", *NA_TOKENS, *(t.upper() for t in NA_TOKENS), "NaN", "Null", "None", "N/A"]
_EARLIEST = pd.Timestamp("1970-01-01", tz="UTC")
_LATEST = pd.Timestamp("2200-01-01", tz="UTC")
_NAT = np.iinfo(np.int64).min
_NS_PER_MS = 1_000_000

_CBOE_REQUIRED = (
    "underlying_symbol",
    "quote_date",
    "root",
    "expiration",
    "strike",
    "option_type",
    "bid_1545",
    "ask_1545",
    "underlying_bid_1545",
    "underlying_ask_1545",
)
_CBOE_COLUMNS = frozenset(
    {
        *_CBOE_REQUIRED,
        *"open high low close trade_volume bid_size_1545 ask_size_1545 implied_underlying_price_1545".split(),
        *"active_underlying_price_1545 implied_volatility_1545 delta_1545 gamma_1545 theta_1545".split(),
        *"vega_1545 rho_1545 bid_size_eod bid_eod ask_size_eod ask_eod underlying_bid_eod".split(),
        *"underlying_ask_eod vwap open_interest delivery_code".split(),
    }
)
_OM_REQUIRED = ("secid", "date", "exdate", "cp_flag", "strike_price", "best_bid", "best_offer")
_OM_SPOT_COLUMNS = ("underlying_price", "spot", "close")
_OM_COLUMNS = frozenset(
    {*_OM_REQUIRED, "volume", "open_interest", "impl_volatility", "forward_price", "am_settlement", "ticker"}
)
# Columns that tell the tabular formats apart (shared names such as strike or volume are left out).
_SIGNATURES: dict[str, frozenset[str]] = {
    "canonical": frozenset(CANONICAL_COLUMNS) - _CBOE_COLUMNS - _OM_COLUMNS - {"underlying_price"},
    "cboe": _CBOE_COLUMNS - frozenset(CANONICAL_COLUMNS) - _OM_COLUMNS - {"close"},
    "optionmetrics": _OM_COLUMNS - frozenset(CANONICAL_COLUMNS) - _CBOE_COLUMNS,
}

_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_OPTION_NAME = re.compile(
    r"^(?P<cur>[A-Z0-9_]+)-(?P<date>\d{1,2}[A-Z]{3}\d{2})-(?P<strike>\d+(?:[d.]\d+)?)-(?P<cp>[CP])$"
)
_FUTURE_NAME = re.compile(r"^(?P<cur>[A-Z0-9_]+)-(?P<date>\d{1,2}[A-Z]{3}\d{2})$")
_PERPETUAL_NAME = re.compile(r"^(?P<cur>[A-Z0-9_]+)-PERPETUAL$")
_BARE_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2}|\d{8})$")
_TYPE_CODES = {"c": "C", "call": "C", "p": "P", "put": "P"}
_BOOL_CODES = {"true": True, "t": True, "yes": True, "y": True, "1": True, "1.0": True,
               "false": False, "f": False, "no": False, "n": False, "0": False, "0.0": False}  # fmt: skip


# --------------------------------------------------------------------------------------------------- locating


@dataclass(frozen=True)
class _Where:
    """Where values come from, to name file, row and column in errors.

    ``lines`` (CSV) holds the physical line of each row; ``records`` (JSON) a description of the record behind
    each row; ``names`` maps a canonical column to the column of the user's file it was read from.
    """

    source: str
    lines: np.ndarray | None = None
    records: Sequence[tuple[int, str]] | None = None
    names: Mapping[str, str] = field(default_factory=dict)

    def error(
        self,
        message: str,
        *,
        pos: int | None = None,
        column: str | None = None,
    ) -> SnapshotError:
        """Build the error for data row position ``pos`` (0-based) and canonical or file ``column``."""
        shown = self.names.get(column, column) if column else None
        if pos is None:
            return SnapshotError(message, source=self.source, column=shown)
        row = pos + 1
        if self.lines is not None:
            message = f"{message} (row {row} is line {int(self.lines[pos])} of the file, header included)"
        elif self.records is not None:
            row, description = self.records[pos]
            message = f"{message} ({description})"
        return SnapshotError(message, source=self.source, row=row, column=shown)

    def renamed(self, names: Mapping[str, str]) -> _Where:
        return replace(self, names=dict(names))


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------------------------------- value converters


def _uniques(raw: pd.Series, where: _Where, column: str) -> tuple[np.ndarray, list[Any]]:
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


def _floats(
    raw: pd.Series,
    where: _Where,
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
        pos = _first(bad)
        raise where.error(f"{_show(raw.iloc[pos])} is not a number", pos=pos, column=column)
    if required and np.isnan(values).any():
        pos = _first(np.isnan(values))
        raise where.error(f"{column} is empty; every quote needs one", pos=pos, column=column)
    if positive and (values <= 0).any():
        pos = _first(values <= 0)
        raise where.error(f"{column} {values[pos]:g} must be > 0", pos=pos, column=column)
    if nonnegative and (values < 0).any():
        pos = _first(values < 0)
        raise where.error(f"{column} {values[pos]:g} is negative; it must be >= 0", pos=pos, column=column)
    return values


def _texts(raw: pd.Series, where: _Where, column: str) -> np.ndarray:
    """Column as stripped non-empty strings (object array); SnapshotError at the first empty cell."""
    codes, uniques = _uniques(raw, where, column)
    text = np.array([str(u).strip() for u in uniques] + [""], dtype=object)
    values = text[codes]  # code -1 picks the trailing ""
    empty = values == ""
    if empty.any():
        pos = _first(empty)
        raise where.error(f"{column} is empty; every quote needs one", pos=pos, column=column)
    return values


def _mapped(
    raw: pd.Series, where: _Where, column: str, codes_map: Mapping[str, Any], *, default: Any, expected: str
) -> np.ndarray:
    """Map each cell (stripped, lower-cased) through ``codes_map``; empty cells give ``default`` (None = required)."""
    codes, uniques = _uniques(raw, where, column)
    keys = [str(bool(v)).lower() if isinstance(v, (bool, np.bool_)) else str(v).strip().lower() for v in uniques]
    mapped = [codes_map.get(k, default if k in ("", *NA_TOKENS) else None) for k in keys]
    values = np.array([*mapped, default], dtype=object)[codes]
    bad_unique = np.array([m is None for m in mapped] + [default is None], dtype=bool)
    bad = bad_unique[codes]
    if bad.any():
        pos = _first(bad)
        what = f"{column} is empty" if codes[pos] < 0 else f"{_show(raw.iloc[pos])} is not {expected}"
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


def _in_range(stamps: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray((stamps >= _EARLIEST) & (stamps < _LATEST), dtype=bool)


def _utc_index(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")


def _utc_times(
    raw: pd.Series, where: _Where, column: str, *, bare_date_hour: int | None = None
) -> pd.DatetimeIndex:
    """Column of ISO-8601 date-times as UTC nanoseconds; a time without offset is UTC.

    A bare date (``2026-05-22``) is that date at ``bare_date_hour`` UTC when given, else an error.
    Empty cells are an error.
    """
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        stamps = pd.DatetimeIndex(raw)
        stamps = stamps.tz_localize("UTC") if stamps.tz is None else stamps.tz_convert("UTC")
        bad = ~_in_range(stamps) & ~stamps.isna()
        if bad.any():
            pos = _first(bad)
            raise where.error(f"{stamps[pos]} is out of range (1970-2199)", pos=pos, column=column)
        ns = stamps.as_unit("ns").asi8.copy()
        ns[stamps.isna()] = _NAT
    else:
        codes, uniques = _uniques(raw, where, column)
        texts, bare = _text_dates(uniques)
        parsed = pd.DatetimeIndex(pd.to_datetime(pd.Index(texts, dtype=object), format="ISO8601", utc=True,
                                                 errors="coerce"))  # fmt: skip
        if bare_date_hour is not None:
            parsed = parsed + pd.to_timedelta(np.where(bare, bare_date_hour, 0), unit="h")
        good = _in_range(parsed) & ~parsed.isna() & (~bare | (bare_date_hour is not None))
        bad_cells = (codes >= 0) & ~np.append(good, True)[codes]
        if bad_cells.any():
            pos = _first(bad_cells)
            text = texts[codes[pos]]
            if bare[codes[pos]] and bare_date_hour is None:
                message = f"{_show(text)} is a date without a time; {column} needs both (2026-05-21T10:00:00Z)"
            else:
                message = f"{_show(text)} is not an ISO-8601 date-time (2026-05-22T08:00:00Z) within 1970-2199"
            raise where.error(message, pos=pos, column=column)
        ns = np.append(parsed.as_unit("ns").asi8, _NAT)[codes]
    if (ns == _NAT).any():
        pos = _first(ns == _NAT)
        raise where.error(f"{column} is empty; every quote needs one", pos=pos, column=column)
    return _utc_index(ns)


def _local_days(raw: pd.Series, where: _Where, column: str) -> np.ndarray:
    """Column of calendar dates (ISO ``2023-01-20``, ``20230120`` or ``20JAN2023``) as naive datetime64[ns]."""
    codes, uniques = _uniques(raw, where, column)
    texts, _ = _text_dates(uniques)
    index = pd.Index(texts, dtype=object)
    parsed = pd.DatetimeIndex(pd.to_datetime(index, format="ISO8601", utc=True, errors="coerce"))
    if parsed.isna().any():
        other = pd.DatetimeIndex(pd.to_datetime(index, format="%d%b%Y", utc=True, errors="coerce"))
        parsed = parsed.where(~parsed.isna(), other)
    good = _in_range(parsed) & ~parsed.isna()
    bad_cells = ~np.append(good, False)[codes]
    if bad_cells.any():
        pos = _first(bad_cells)
        shown = "empty" if codes[pos] < 0 else f"{_show(texts[codes[pos]])} is not a date (use 2023-01-20)"
        raise where.error(shown, pos=pos, column=column)
    days = parsed.tz_convert(None).normalize().as_unit("ns").asi8
    return days[codes].view("datetime64[ns]")


def _new_york_to_utc(days: np.ndarray, hour: int, minute: int) -> np.ndarray:
    """UTC nanoseconds of New York wall-clock ``hour:minute`` on each of ``days`` (naive midnight datetime64)."""
    local = pd.DatetimeIndex(days + np.timedelta64(hour * 60 + minute, "m"))
    return local.tz_localize(NEW_YORK).tz_convert("UTC").as_unit("ns").asi8


# ------------------------------------------------------------------------------------------------ validation


def _require(raw: pd.DataFrame, required: Sequence[str], where: _Where, *, what: str) -> None:
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise where.error(
            f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} for {what} "
            f"(the header has: {', '.join(map(str, raw.columns[:30]))})"
        )
    if len(raw) == 0:
        raise where.error("no data rows: the file has a header but no quotes")


def _optional_floats(
    frame: pd.DataFrame, column: str, where: _Where, *, positive: bool = False, nonnegative: bool = False
) -> np.ndarray:
    """An optional numeric column as float64, all NaN when the column is absent (checks as in ``_floats``)."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return _floats(frame[column], where, column, positive=positive, nonnegative=nonnegative)


def _validate(frame: pd.DataFrame, where: _Where) -> pd.DataFrame:
    """Coerce and check a frame holding the canonical columns (raw text or typed); see validate_canonical."""
    _require(frame, REQUIRED_COLUMNS, where, what="a canonical snapshot")
    snapshot = _utc_times(frame["snapshot_time"], where, "snapshot_time")
    mixed = snapshot != snapshot[0]
    if mixed.any():
        pos = _first(mixed)
        raise where.error(
            f"mixed snapshot times: {snapshot[pos].isoformat()} here but {snapshot[0].isoformat()} on row 1; "
            "a file holds one snapshot",
            pos=pos,
            column="snapshot_time",
        )
    bid = _floats(frame["bid"], where, "bid", nonnegative=True)
    ask = _floats(frame["ask"], where, "ask", nonnegative=True)
    if "inverse" in frame.columns:
        inverse = _mapped(frame["inverse"], where, "inverse", _BOOL_CODES, default=False, expected="true or false")
    else:
        inverse = np.zeros(len(frame), dtype=bool)
    iv_bid = _optional_floats(frame, "iv_bid", where)
    iv_ask = _optional_floats(frame, "iv_ask", where)
    columns: dict[str, Any] = {
        "snapshot_time": snapshot,
        "underlying": pd.array(_texts(frame["underlying"], where, "underlying"), dtype=str),
        "expiry": _utc_times(frame["expiry"], where, "expiry", bare_date_hour=BARE_DATE_EXPIRY_HOUR_UTC),
        "strike": _floats(frame["strike"], where, "strike", required=True, positive=True),
        "option_type": pd.array(
            _mapped(frame["option_type"], where, "option_type", _TYPE_CODES, default=None, expected="C/P/call/put"),
            dtype=str,
        ),
        "bid": np.where(bid > 0, bid, np.nan),  # 0 = no quote on that side
        "ask": np.where(ask > 0, ask, np.nan),
        "underlying_price": _floats(
            frame["underlying_price"], where, "underlying_price", required=True, positive=True
        ),
        "forward": _optional_floats(frame, "forward", where, positive=True),
        "inverse": np.asarray(inverse, dtype=bool),
        "rate": _optional_floats(frame, "rate", where),
        "volume": _optional_floats(frame, "volume", where, nonnegative=True),
        "open_interest": _optional_floats(frame, "open_interest", where, nonnegative=True),
        "last": _optional_floats(frame, "last", where, nonnegative=True),
        "iv_bid": np.where(iv_bid > 0, iv_bid, np.nan),  # a venue IV of 0 means none
        "iv_ask": np.where(iv_ask > 0, iv_ask, np.nan),
    }
    out = pd.DataFrame(columns, columns=list(CANONICAL_COLUMNS))
    out.attrs["source"] = where.source
    out.attrs["format"] = frame.attrs.get("format", "canonical")
    return out


def validate_canonical(frame: pd.DataFrame, *, source: str) -> pd.DataFrame:
    """Check and coerce a frame with the canonical columns into the exact canonical frame.

    Parameters
    ----------
    frame
        One row per quote with at least :data:`REQUIRED_COLUMNS`; cells may be text (as read from CSV) or typed.
        Other columns are dropped; absent optional columns get NaN (``inverse``: False).
    source
        File name used in error messages and stored in ``attrs["source"]``.

    Returns
    -------
    pandas.DataFrame
        The canonical frame (module docstring): columns :data:`CANONICAL_COLUMNS` in that order, a fresh
        RangeIndex, row order kept. ``bid``/``ask`` of 0 become NaN (no quote); venue IVs <= 0 become NaN.

    Raises
    ------
    SnapshotError
        Missing required columns (all named), no rows, unparsable or empty dates, mixed snapshot times,
        non-numeric or non-finite numbers, strikes/underlying prices/forwards <= 0, negative premiums, volumes
        or open interest, unknown option types or inverse flags. The message names the file, the 1-based row
        and the column.
    """
    return _validate(frame, _Where(source))


# -------------------------------------------------------------------------------------------------- reading


def _read_source(
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
        data = _gunzip(data, label, max_bytes)
    return data, label


def _gunzip(data: bytes, label: str, max_bytes: int) -> bytes:
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


def _container(data: bytes, label: str) -> str:
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


def _first_line(data: bytes, label: str) -> list[str]:
    """The CSV header cells."""
    try:
        return next(csv.reader([_decode(data.split(b"\n", 1)[0], label)]), [])
    except csv.Error as exc:
        raise SnapshotError(f"not a readable CSV header: {exc}", source=label) from None


def _read_csv(data: bytes, label: str) -> tuple[pd.DataFrame, _Where]:
    """All cells as text (NaN when empty), blank lines dropped, with each row's physical line for messages."""
    _decode(data, label)
    _header(_first_line(data, label), label)
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
    return raw, _Where(label, lines=lines)


def _parquet_file(data: bytes, label: str, max_bytes: int) -> Any:
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


def _read_parquet(data: bytes, label: str, max_bytes: int) -> tuple[pd.DataFrame, _Where]:
    parquet = _parquet_file(data, label, max_bytes)
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
    return raw, _Where(label)


def _read_json(data: bytes, label: str) -> Any:
    text = _decode(data, label)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(
            f"not valid JSON: {exc.msg} at line {exc.lineno}, character {exc.colno}", source=label
        ) from None
    except (ValueError, RecursionError) as exc:
        raise SnapshotError(f"not readable JSON: {exc}", source=label) from None


def _format_from_columns(columns: Sequence[str], label: str) -> str:
    """The tabular format whose distinctive columns the header has most of."""
    header = {str(c).strip().lower() for c in columns}
    scores = {fmt: len(header & names) for fmt, names in _SIGNATURES.items()}
    best = max(scores.values())
    winners = [fmt for fmt, score in scores.items() if score == best]
    if best == 0 or len(winners) > 1:
        shown = ", ".join(sorted(header)[:20]) or "(none)"
        raise UnknownFormatError(
            f"unknown snapshot format: the columns ({shown}) match none of canonical "
            f"({', '.join(REQUIRED_COLUMNS)}), CBOE DataShop (quote_date, root, expiration, bid_1545, ...) "
            "or OptionMetrics (secid, date, exdate, cp_flag, strike_price, best_bid, best_offer)",
            source=label,
        )
    return winners[0]


# ---------------------------------------------------------------------------------------------------- Deribit


def _deribit_lists(payload: Any, label: str) -> list[tuple[str, list[Any]]]:
    """The record lists of a Deribit book summary (API response, bare list, or the recorded form)."""
    if isinstance(payload, list):
        if not payload or (isinstance(payload[0], dict) and "instrument_name" in payload[0]):
            return [("records", payload)]
    elif isinstance(payload, dict):
        if "error" in payload and "result" not in payload:
            error = payload["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise SnapshotError(f"the file is a Deribit error response: {_show(message)}", source=label)
        lists = [(key, payload[key]) for key in ("result", "options", "futures") if isinstance(payload.get(key), list)]
        if any(key in ("result", "options") for key, _ in lists):
            return lists
    raise UnknownFormatError(
        'JSON but not a Deribit book summary: expected {"result": [...]} (public/get_book_summary_by_currency), '
        'a list of records with instrument_name, or {"as_of", "options", "futures", "instruments"}',
        source=label,
    )


def _lenient_floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    """float64 values of an optional column, NaN where absent or not a number (for non-option records)."""
    if column not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)


def _epoch_ms(values: pd.Series) -> np.ndarray:
    """Epoch milliseconds to UTC nanoseconds; NaT (``_NAT``) where missing, invalid or outside 1970-2199."""
    ms = pd.to_numeric(values, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(ms) & (ms >= _EARLIEST.value / _NS_PER_MS) & (ms < _LATEST.value / _NS_PER_MS)
    ns = np.full(len(ms), _NAT, dtype=np.int64)
    ns[ok] = np.round(ms[ok] * _NS_PER_MS).astype(np.int64)
    return ns


def _deribit_day(code: str) -> dt.date | None:
    """The date of a Deribit expiry code (``28AUG26``), None when it is not a calendar date."""
    try:
        return dt.date(2000 + int(code[-2:]), _MONTHS[code[-5:-2]], int(code[:-5]))
    except (KeyError, ValueError):
        return None


def _deribit_records(payload: Any, label: str) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """All records of every list as one frame, and (1-based record number, description) for each."""
    records: list[dict[str, Any]] = []
    origin: list[tuple[int, str]] = []
    for key, items in _deribit_lists(payload, label):
        for i, record in enumerate(items):
            if not isinstance(record, dict) or not isinstance(record.get("instrument_name"), str):
                raise SnapshotError(
                    f"record {i + 1} of '{key}' is not an object with an instrument_name", source=label, row=i + 1
                )
            records.append(record)
            origin.append((i + 1, f"instrument {record['instrument_name']}, record {i + 1} of '{key}'"))
    if not records:
        raise SnapshotError("no records: the Deribit book summary is empty", source=label)
    frame = pd.DataFrame.from_records(records)
    frame["instrument_name"] = frame["instrument_name"].astype(str).str.strip()
    return frame, origin


def _deribit_snapshot_time(payload: Any, records: pd.DataFrame, where: _Where) -> pd.Timestamp:
    """``as_of`` (ISO-8601 or epoch ms), else the latest ``creation_timestamp`` (ms), else the API's ``usOut`` (µs)."""
    top = payload if isinstance(payload, dict) else {}
    if top.get("as_of") is not None:
        as_of = top["as_of"]
        ns = np.array([_NAT])
        if isinstance(as_of, (int, float)) and not isinstance(as_of, bool):
            ns = _epoch_ms(pd.Series([as_of]))
        elif isinstance(as_of, str):
            parsed = pd.to_datetime(pd.Index([as_of.strip()]), format="ISO8601", utc=True, errors="coerce")
            ns = np.where(_in_range(parsed) & ~parsed.isna(), parsed.as_unit("ns").asi8, _NAT)
        if ns[0] == _NAT:
            raise where.error(f"{_show(as_of)} is not an ISO-8601 time or epoch milliseconds", column="as_of")
        return _utc_index(ns)[0]
    ns = _epoch_ms(records["creation_timestamp"]) if "creation_timestamp" in records.columns else np.array([_NAT])
    if (ns == _NAT).all() and isinstance(top.get("usOut"), (int, float)):
        ns = _epoch_ms(pd.Series([top["usOut"] / 1000.0]))
    if (ns == _NAT).all():
        raise where.error("no snapshot time: the file has neither 'as_of' nor creation_timestamp", column="as_of")
    return _utc_index(np.array([ns[ns != _NAT].max()]))[0]


def _deribit_expiries(payload: Any, options: pd.DataFrame, codes: pd.Series, where: _Where) -> np.ndarray:
    """Expiry (UTC ns) of each option: its ``expiration_timestamp`` (in the record or the file's ``instruments``
    list) when valid, else 08:00 UTC of the date in its name."""
    days = {code: _deribit_day(code) for code in pd.unique(codes)}
    bad = codes.map(days).isna().to_numpy(dtype=bool)
    if bad.any():
        pos = _first(bad)
        raise where.error(f"{codes.iloc[pos]!r} in the name is not a date (DDMMMYY)", pos=pos, column="expiry")
    by_code = {code: pd.Timestamp(day, tz="UTC").value for code, day in days.items()}
    ns = codes.map(by_code).to_numpy(dtype=np.int64) + BARE_DATE_EXPIRY_HOUR_UTC * 3_600 * 10**9
    listed = options["expiration_timestamp"] if "expiration_timestamp" in options.columns else None
    instruments = payload.get("instruments") if isinstance(payload, dict) else None
    if isinstance(instruments, list):
        table = pd.DataFrame.from_records(
            [r for r in instruments if isinstance(r, dict) and isinstance(r.get("instrument_name"), str)]
        )
        if {"instrument_name", "expiration_timestamp"} <= set(table.columns):
            table = table.drop_duplicates("instrument_name")
            listed = options["instrument_name"].map(table.set_index("instrument_name")["expiration_timestamp"])
    if listed is not None:
        stamps = _epoch_ms(listed)
        ns = np.where(stamps != _NAT, stamps, ns)
    return ns


def _deribit_mids(futures: pd.DataFrame) -> dict[str, float]:
    """Mid (else mark) price of each future/perpetual record with a usable quote, by instrument name."""
    bid, ask = _lenient_floats(futures, "bid_price"), _lenient_floats(futures, "ask_price")
    mark = _lenient_floats(futures, "mark_price")
    with np.errstate(invalid="ignore", over="ignore"):
        mid = np.where((bid > 0) & (ask >= bid), 0.5 * (bid + ask), np.where(mark > 0, mark, np.nan))
    return {name: float(m) for name, m in zip(futures["instrument_name"], mid, strict=True) if np.isfinite(m)}


def _deribit_spot(
    currency: str, options: pd.DataFrame, mine: np.ndarray, expiry: np.ndarray, mids: Mapping[str, float]
) -> float:
    """Spot of one currency prefix (``BTC``, ``ETH_USDC``), the first available of:

    1. the perpetual's mid (``BTC-PERPETUAL``);
    2. Deribit's index, ``estimated_delivery_price`` (median over the currency's options);
    3. fallback: the mid of the nearest-dated future of that currency (a forward, days away);
    4. fallback: the median ``underlying_price`` of the currency's nearest-expiry options (a forward too).

    NaN when none is available.
    """
    if f"{currency}-PERPETUAL" in mids:
        return mids[f"{currency}-PERPETUAL"]
    index = _lenient_floats(options, "estimated_delivery_price")[mine]
    index = index[np.isfinite(index) & (index > 0)]
    if index.size:
        return float(np.median(index))
    dated = []
    for name, mid in mids.items():
        found = _FUTURE_NAME.match(name)
        if found and found["cur"] == currency and (day := _deribit_day(found["date"])) is not None:
            dated.append((day, mid))
    if dated:
        return min(dated)[1]
    underlying = _lenient_floats(options, "underlying_price")
    nearest = mine & (expiry == expiry[mine].min()) & np.isfinite(underlying) & (underlying > 0)
    return float(np.median(underlying[nearest])) if nearest.any() else np.nan


def _load_deribit(payload: Any, label: str) -> pd.DataFrame:
    """Deribit book summary -> canonical frame; see the module docstring for the rules."""
    records, origin = _deribit_records(payload, label)
    names = records["instrument_name"]
    parts = names.str.extract(_OPTION_NAME)
    is_option = parts["cur"].notna().to_numpy(dtype=bool)
    kind = records["kind"].astype(str).to_numpy() if "kind" in records.columns else np.full(len(records), "")
    option_like = (names.str.count("-").to_numpy() == 3) & names.str.match(r".*-[CPcp]$").to_numpy(dtype=bool)
    unreadable = (option_like | (kind == "option")) & ~is_option
    if unreadable.any():
        i = _first(unreadable)
        raise SnapshotError(
            f"cannot read the option name {_show(names.iloc[i])}: expected CURRENCY-DDMMMYY-STRIKE-C|P "
            "(e.g. BTC-28AUG26-110000-P)",
            source=label,
            row=origin[i][0],
            column="instrument_name",
        )
    if not is_option.any():
        raise SnapshotError("no option records in the Deribit book summary (only futures or others)", source=label)
    futures = records.loc[names.str.match(_FUTURE_NAME) | names.str.match(_PERPETUAL_NAME)]
    options = records.loc[is_option].reset_index(drop=True)
    parts = parts.loc[is_option].reset_index(drop=True)
    where = _Where(
        label,
        records=[origin[i] for i in np.flatnonzero(is_option)],
        names={"snapshot_time": "as_of", "bid": "bid_price", "ask": "ask_price", "rate": "interest_rate",
               "iv_bid": "bid_iv", "iv_ask": "ask_iv", "underlying": "instrument_name", "strike": "instrument_name",
               "option_type": "instrument_name", "expiry": "instrument_name"},  # fmt: skip
    )
    expiry = _deribit_expiries(payload, options, parts["date"], where)

    # Forward: the matching future's mid, else underlying_price when underlying_index names a (synthetic) future.
    mids = _deribit_mids(futures)
    forward = (parts["cur"] + "-" + parts["date"]).map(mids).to_numpy(dtype="float64", na_value=np.nan)
    if "underlying_index" in options.columns:
        underlying_price = _optional_floats(options, "underlying_price", where)
        index_name = options["underlying_index"].astype(str)
        on_future = (index_name.str.startswith("SYN.") | index_name.str.match(_FUTURE_NAME)).to_numpy(dtype=bool)
        forward = np.where(np.isnan(forward) & on_future & (underlying_price > 0), underlying_price, forward)

    currencies = parts["cur"].to_numpy(dtype=object)
    spot = np.full(len(options), np.nan)
    for currency in pd.unique(currencies):
        mine = currencies == currency
        spot[mine] = _deribit_spot(currency, options, mine, expiry, mids)
    if np.isnan(spot).any():
        pos = _first(np.isnan(spot))
        raise where.error(
            f"no spot price for {currencies[pos]}: the file has no {currencies[pos]}-PERPETUAL, "
            "no estimated_delivery_price, no dated future and no underlying_price",
            pos=pos,
        )
    if "volume" in options.columns:
        volume = _floats(options["volume"], where, "volume", nonnegative=True)
    else:  # only the USD volume is recorded: in contracts of one coin at today's spot (approximate)
        volume = _optional_floats(options, "volume_usd", where, nonnegative=True) / spot
    frame = pd.DataFrame(
        {
            "snapshot_time": _deribit_snapshot_time(payload, records, where),
            "underlying": parts["cur"].str.split("_").str[0],
            "expiry": _utc_index(expiry),
            "strike": parts["strike"].str.replace("d", ".", regex=False),
            "option_type": parts["cp"],
            "bid": _optional_floats(options, "bid_price", where),
            "ask": _optional_floats(options, "ask_price", where),
            "underlying_price": spot,
            "forward": forward,
            # coin-margined options (BTC, ETH) are quoted in coin; linear ones (BTC_USDC-...) in USDC
            "inverse": ~parts["cur"].str.contains("_", regex=False).to_numpy(dtype=bool),
            "rate": _optional_floats(options, "interest_rate", where),
            "volume": volume,
            "open_interest": _optional_floats(options, "open_interest", where, nonnegative=True),
            "last": _optional_floats(options, "last", where),
            "iv_bid": _optional_floats(options, "bid_iv", where) / 100.0,  # Deribit quotes IVs in percent
            "iv_ask": _optional_floats(options, "ask_iv", where) / 100.0,
        }
    )
    frame.attrs["format"] = "deribit"
    return _validate(frame, where)


# ------------------------------------------------------------------------------------------ CBOE, OptionMetrics


def _load_cboe(raw: pd.DataFrame, where: _Where) -> pd.DataFrame:
    """CBOE DataShop end-of-day option quotes, the 15:45 New York snapshot of each row.

    underlying_price = mid of ``underlying_bid_1545``/``underlying_ask_1545`` (both > 0), else
    ``active_underlying_price_1545``; forward = ``implied_underlying_price_1545`` when > 0; last = ``close`` when
    > 0 (0 means no trade). The single mid IV ``implied_volatility_1545`` is not a bid/ask IV and is not kept.
    """
    _require(raw, _CBOE_REQUIRED, where, what="a CBOE DataShop file")
    quote_day = _local_days(raw["quote_date"], where, "quote_date")
    expiry_day = _local_days(raw["expiration"], where, "expiration")
    roots = _texts(raw["root"], where, "root")
    am = np.isin(np.char.upper(roots.astype(str)), list(AM_SETTLED_ROOTS))
    expiry = np.where(am, _new_york_to_utc(expiry_day, 9, 30), _new_york_to_utc(expiry_day, 16, 0))
    under_bid = _floats(raw["underlying_bid_1545"], where, "underlying_bid_1545", nonnegative=True)
    under_ask = _floats(raw["underlying_ask_1545"], where, "underlying_ask_1545", nonnegative=True)
    spot = np.where((under_bid > 0) & (under_ask > 0), 0.5 * (under_bid + under_ask), np.nan)
    active = _optional_floats(raw, "active_underlying_price_1545", where)
    spot = np.where(np.isnan(spot) & (active > 0), active, spot)
    if np.isnan(spot).any():
        pos = _first(np.isnan(spot))
        raise where.error(
            "no underlying price: underlying_bid_1545/underlying_ask_1545 are not both > 0 and "
            "active_underlying_price_1545 is missing",
            pos=pos,
            column="underlying_bid_1545",
        )
    implied = _optional_floats(raw, "implied_underlying_price_1545", where)
    close = _optional_floats(raw, "close", where, nonnegative=True)
    symbols = _texts(raw["underlying_symbol"], where, "underlying_symbol")
    frame = pd.DataFrame(
        {
            "snapshot_time": _utc_index(_new_york_to_utc(quote_day, 15, 45)),
            "underlying": [s.lstrip("^") or s for s in symbols],
            "expiry": _utc_index(expiry),
            "strike": raw["strike"],
            "option_type": raw["option_type"],
            "bid": raw["bid_1545"],
            "ask": raw["ask_1545"],
            "underlying_price": spot,
            "forward": np.where(implied > 0, implied, np.nan),
            "volume": _optional_floats(raw, "trade_volume", where, nonnegative=True),
            "open_interest": _optional_floats(raw, "open_interest", where, nonnegative=True),
            "last": np.where(close > 0, close, np.nan),
        }
    )
    frame.attrs["format"] = "cboe"
    names = {"snapshot_time": "quote_date", "expiry": "expiration", "bid": "bid_1545", "ask": "ask_1545",
             "underlying": "underlying_symbol", "underlying_price": "underlying_bid_1545"}  # fmt: skip
    return _validate(frame, where.renamed(names))


def _load_optionmetrics(raw: pd.DataFrame, where: _Where) -> pd.DataFrame:
    """OptionMetrics-style option prices (IvyDB ``opprcd`` columns).

    strike = ``strike_price`` / 1000; underlying = ``ticker`` if present, else the secid; underlying_price from
    the first of ``underlying_price``, ``spot``, ``close``; without any of them, the ``forward_price`` of the
    nearest expiry stands in for spot (a forward, not spot: fine in forward space, shown as such). The mid IV
    ``impl_volatility`` is not a bid/ask IV and is not kept.
    """
    _require(raw, _OM_REQUIRED, where, what="an OptionMetrics file")
    snapshot_day = _local_days(raw["date"], where, "date")
    expiry_day = _local_days(raw["exdate"], where, "exdate")
    saturday = pd.DatetimeIndex(expiry_day).day_of_week.to_numpy() == 5
    expiry_day = np.where(saturday, expiry_day - np.timedelta64(1, "D"), expiry_day)
    am = _optional_floats(raw, "am_settlement", where) == 1
    expiry = np.where(am, _new_york_to_utc(expiry_day, 9, 30), _new_york_to_utc(expiry_day, 16, 0))
    strike = _floats(raw["strike_price"], where, "strike_price", required=True, positive=True) / 1000.0
    forward = _optional_floats(raw, "forward_price", where)
    forward = np.where(forward > 0, forward, np.nan)
    spot_column = next((c for c in _OM_SPOT_COLUMNS if c in raw.columns), None)
    if spot_column is not None:
        spot = _floats(raw[spot_column], where, spot_column, required=True, positive=True)
    else:
        usable = np.isfinite(forward)
        if not usable.any():
            raise where.error(
                "no underlying price: add a column underlying_price (or spot, close) or forward_price",
                column="underlying_price",
            )
        nearest = usable & (expiry == expiry[usable].min())
        spot = np.full(len(raw), float(np.median(forward[nearest])))
    underlying = raw["ticker"] if "ticker" in raw.columns else raw["secid"]
    frame = pd.DataFrame(
        {
            "snapshot_time": _utc_index(_new_york_to_utc(snapshot_day, 16, 0)),
            "underlying": underlying,
            "expiry": _utc_index(expiry),
            "strike": strike,
            "option_type": raw["cp_flag"],
            "bid": raw["best_bid"],
            "ask": raw["best_offer"],
            "underlying_price": spot,
            "forward": forward,
            "volume": raw["volume"] if "volume" in raw.columns else np.nan,
            "open_interest": raw["open_interest"] if "open_interest" in raw.columns else np.nan,
        }
    )
    frame.attrs["format"] = "optionmetrics"
    names = {"snapshot_time": "date", "expiry": "exdate", "option_type": "cp_flag", "bid": "best_bid",
             "ask": "best_offer", "underlying": "ticker" if "ticker" in raw.columns else "secid",
             "underlying_price": spot_column or "forward_price"}  # fmt: skip
    return _validate(frame, where.renamed(names))


def _load_canonical(raw: pd.DataFrame, where: _Where) -> pd.DataFrame:
    raw.attrs["format"] = "canonical"
    return _validate(raw, where)


_TABLE_LOADERS: dict[str, Callable[[pd.DataFrame, _Where], pd.DataFrame]] = {
    "canonical": _load_canonical,
    "cboe": _load_cboe,
    "optionmetrics": _load_optionmetrics,
}


# ------------------------------------------------------------------------------------------------- public API


def detect_format(data: bytes, *, name: str | None = None) -> str:
    """Which of :data:`FORMATS` the content is, without loading it all.

    Parameters
    ----------
    data
        File content (gzip accepted, recognised by its magic bytes).
    name
        File name, used in messages and, for ambiguous content, for its extension (``.parquet``, ``.json``).

    Returns
    -------
    str
        ``"deribit"`` for Deribit-shaped JSON; for CSV or Parquet, the format whose distinctive columns the
        header holds most of.

    Raises
    ------
    UnknownFormatError
        The content matches no format (JSON not Deribit-shaped, a header of unknown columns, a zip archive).
    SnapshotError
        Empty, corrupt or non-UTF-8 content.
    """
    label = name or "upload"
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, label, DEFAULT_MAX_BYTES)
    container = _container(data, label)
    if container == "json":
        _deribit_lists(_read_json(data, label), label)
        return "deribit"
    if container == "parquet":
        return _format_from_columns(_parquet_file(data, label, DEFAULT_MAX_BYTES).schema_arrow.names, label)
    return _format_from_columns(_first_line(data, label), label)


def read_snapshot(
    source: str | os.PathLike[str] | bytes,
    *,
    format: str | None = None,  # noqa: A002 - the public name of the option
    name: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> pd.DataFrame:
    """Load an option quote snapshot file into the canonical frame.

    Parameters
    ----------
    source
        A path, or the raw bytes of an upload. Gzip (by magic bytes) is accepted for every format.
    format
        One of :data:`FORMATS` to skip detection; None detects it from the content (Parquet magic, JSON ->
        Deribit, CSV/Parquet header columns -> canonical, CBOE DataShop or OptionMetrics).
    name
        The user's file name for uploads (messages, extension); defaults to the path's name or ``"upload"``.
    max_bytes
        Size cap in bytes, checked before reading (``os.stat`` for paths, ``len`` for bytes) and again on the
        decompressed size of gzip and Parquet data.

    Returns
    -------
    pandas.DataFrame
        The canonical frame (see the module docstring), ``attrs["source"]`` the file name and
        ``attrs["format"]`` the format read.

    Raises
    ------
    FileTooLargeError
        Above ``max_bytes``; the file is not read.
    UnknownFormatError
        The content matches no supported format, or ``format`` is not one of :data:`FORMATS`.
    SnapshotError
        Invalid content; the message names the file, the 1-based data row (and line) and the column.
    """
    if format is not None and format not in FORMATS:
        raise UnknownFormatError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}", source=name)
    data, label = _read_source(source, name=name, max_bytes=max_bytes)
    container = _container(data, label)
    if container == "json":
        if format not in (None, "deribit"):
            raise SnapshotError(f"the file is JSON, which only the deribit format reads, not {format}", source=label)
        frame = _load_deribit(_read_json(data, label), label)
    else:
        if format == "deribit":
            raise SnapshotError(f"the deribit format reads JSON, but this file is {container.upper()}", source=label)
        raw, where = _read_csv(data, label) if container == "csv" else _read_parquet(data, label, max_bytes)
        chosen = format or _format_from_columns(list(raw.columns), label)
        frame = _TABLE_LOADERS[chosen](raw, where)
    frame.attrs["source"] = label
    return frame
