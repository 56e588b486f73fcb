"""Deribit book summaries (JSON): options with their futures, perpetuals and index, to the canonical frame.

The rules (which records are options, expiry and snapshot times, forward, spot, units) are documented in the
:mod:`calibration.quotes` docstring.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from calibration.errors import SnapshotError, UnknownFormatError
from calibration.loaders.canonical import BARE_DATE_EXPIRY_HOUR_UTC, validate
from calibration.loaders.locate import Where, first, show
from calibration.loaders.values import NAT, epoch_ms, floats, in_range, optional_floats, utc_index

__all__ = ["load_deribit", "record_lists"]


_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_OPTION_NAME = re.compile(
    r"^(?P<cur>[A-Z0-9_]+)-(?P<date>\d{1,2}[A-Z]{3}\d{2})-(?P<strike>\d+(?:[d.]\d+)?)-(?P<cp>[CP])$"
)
_FUTURE_NAME = re.compile(r"^(?P<cur>[A-Z0-9_]+)-(?P<date>\d{1,2}[A-Z]{3}\d{2})$")
_PERPETUAL_NAME = re.compile(r"^(?P<cur>[A-Z0-9_]+)-PERPETUAL$")


def record_lists(payload: Any, label: str) -> list[tuple[str, list[Any]]]:
    """The record lists of a Deribit book summary (API response, bare list, or the recorded form)."""
    if isinstance(payload, list):
        if not payload or (isinstance(payload[0], dict) and "instrument_name" in payload[0]):
            return [("records", payload)]
    elif isinstance(payload, dict):
        if "error" in payload and "result" not in payload:
            error = payload["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise SnapshotError(f"the file is a Deribit error response: {show(message)}", source=label)
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


def _expiry_day(code: str) -> dt.date | None:
    """The date of a Deribit expiry code (``28AUG26``), None when it is not a calendar date."""
    try:
        return dt.date(2000 + int(code[-2:]), _MONTHS[code[-5:-2]], int(code[:-5]))
    except (KeyError, ValueError):
        return None


def _records(payload: Any, label: str) -> tuple[pd.DataFrame, list[tuple[int, str]]]:
    """All records of every list as one frame, and (1-based record number, description) for each."""
    records: list[dict[str, Any]] = []
    origin: list[tuple[int, str]] = []
    for key, items in record_lists(payload, label):
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


def _snapshot_time(payload: Any, records: pd.DataFrame, where: Where) -> pd.Timestamp:
    """``as_of`` (ISO-8601 or epoch ms), else the latest ``creation_timestamp`` (ms), else the API's ``usOut`` (µs)."""
    top = payload if isinstance(payload, dict) else {}
    if top.get("as_of") is not None:
        as_of = top["as_of"]
        ns = np.array([NAT])
        if isinstance(as_of, (int, float)) and not isinstance(as_of, bool):
            ns = epoch_ms(pd.Series([as_of]))
        elif isinstance(as_of, str):
            parsed = pd.to_datetime(pd.Index([as_of.strip()]), format="ISO8601", utc=True, errors="coerce")
            ns = np.where(in_range(parsed) & ~parsed.isna(), parsed.as_unit("ns").asi8, NAT)
        if ns[0] == NAT:
            raise where.error(f"{show(as_of)} is not an ISO-8601 time or epoch milliseconds", column="as_of")
        return utc_index(ns)[0]
    ns = epoch_ms(records["creation_timestamp"]) if "creation_timestamp" in records.columns else np.array([NAT])
    if (ns == NAT).all() and isinstance(top.get("usOut"), (int, float)):
        ns = epoch_ms(pd.Series([top["usOut"] / 1000.0]))
    if (ns == NAT).all():
        raise where.error("no snapshot time: the file has neither 'as_of' nor creation_timestamp", column="as_of")
    return utc_index(np.array([ns[ns != NAT].max()]))[0]


def _expiries(payload: Any, options: pd.DataFrame, codes: pd.Series, where: Where) -> np.ndarray:
    """Expiry (UTC ns) of each option: its ``expiration_timestamp`` (in the record or the file's ``instruments``
    list) when valid, else 08:00 UTC of the date in its name."""
    days = {code: _expiry_day(code) for code in pd.unique(codes)}
    bad = codes.map(days).isna().to_numpy(dtype=bool)
    if bad.any():
        pos = first(bad)
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
        stamps = epoch_ms(listed)
        ns = np.where(stamps != NAT, stamps, ns)
    return ns


def _mids(futures: pd.DataFrame) -> dict[str, float]:
    """Mid (else mark) price of each future/perpetual record with a usable quote, by instrument name."""
    bid, ask = _lenient_floats(futures, "bid_price"), _lenient_floats(futures, "ask_price")
    mark = _lenient_floats(futures, "mark_price")
    with np.errstate(invalid="ignore", over="ignore"):
        mid = np.where((bid > 0) & (ask >= bid), 0.5 * (bid + ask), np.where(mark > 0, mark, np.nan))
    return {name: float(m) for name, m in zip(futures["instrument_name"], mid, strict=True) if np.isfinite(m)}


def _spot(
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
        if found and found["cur"] == currency and (day := _expiry_day(found["date"])) is not None:
            dated.append((day, mid))
    if dated:
        return min(dated)[1]
    underlying = _lenient_floats(options, "underlying_price")
    nearest = mine & (expiry == expiry[mine].min()) & np.isfinite(underlying) & (underlying > 0)
    return float(np.median(underlying[nearest])) if nearest.any() else np.nan


def load_deribit(payload: Any, label: str) -> pd.DataFrame:
    """Deribit book summary -> canonical frame; the rules are in the :mod:`calibration.quotes` docstring."""
    records, origin = _records(payload, label)
    names = records["instrument_name"]
    parts = names.str.extract(_OPTION_NAME)
    is_option = parts["cur"].notna().to_numpy(dtype=bool)
    kind = records["kind"].astype(str).to_numpy() if "kind" in records.columns else np.full(len(records), "")
    option_like = (names.str.count("-").to_numpy() == 3) & names.str.match(r".*-[CPcp]$").to_numpy(dtype=bool)
    unreadable = (option_like | (kind == "option")) & ~is_option
    if unreadable.any():
        i = first(unreadable)
        raise SnapshotError(
            f"cannot read the option name {show(names.iloc[i])}: expected CURRENCY-DDMMMYY-STRIKE-C|P "
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
    where = Where(
        label,
        records=[origin[i] for i in np.flatnonzero(is_option)],
        names={"snapshot_time": "as_of", "bid": "bid_price", "ask": "ask_price", "rate": "interest_rate",
               "iv_bid": "bid_iv", "iv_ask": "ask_iv", "underlying": "instrument_name", "strike": "instrument_name",
               "option_type": "instrument_name", "expiry": "instrument_name"},  # fmt: skip
    )
    expiry = _expiries(payload, options, parts["date"], where)

    # Forward: the matching future's mid, else underlying_price when underlying_index names a (synthetic) future.
    mids = _mids(futures)
    forward = (parts["cur"] + "-" + parts["date"]).map(mids).to_numpy(dtype="float64", na_value=np.nan)
    if "underlying_index" in options.columns:
        underlying_price = optional_floats(options, "underlying_price", where)
        index_name = options["underlying_index"].astype(str)
        on_future = (index_name.str.startswith("SYN.") | index_name.str.match(_FUTURE_NAME)).to_numpy(dtype=bool)
        forward = np.where(np.isnan(forward) & on_future & (underlying_price > 0), underlying_price, forward)

    currencies = parts["cur"].to_numpy(dtype=object)
    spot = np.full(len(options), np.nan)
    for currency in pd.unique(currencies):
        mine = currencies == currency
        spot[mine] = _spot(currency, options, mine, expiry, mids)
    if np.isnan(spot).any():
        pos = first(np.isnan(spot))
        raise where.error(
            f"no spot price for {currencies[pos]}: the file has no {currencies[pos]}-PERPETUAL, "
            "no estimated_delivery_price, no dated future and no underlying_price",
            pos=pos,
        )
    if "volume" in options.columns:
        volume = floats(options["volume"], where, "volume", nonnegative=True)
    else:  # only the USD volume is recorded: in contracts of one coin at today's spot (approximate)
        volume = optional_floats(options, "volume_usd", where, nonnegative=True) / spot
    frame = pd.DataFrame(
        {
            "snapshot_time": _snapshot_time(payload, records, where),
            "underlying": parts["cur"].str.split("_").str[0],
            "expiry": utc_index(expiry),
            "strike": parts["strike"].str.replace("d", ".", regex=False),
            "option_type": parts["cp"],
            "bid": optional_floats(options, "bid_price", where),
            "ask": optional_floats(options, "ask_price", where),
            "underlying_price": spot,
            "forward": forward,
            # coin-margined options (BTC, ETH) are quoted in coin; linear ones (BTC_USDC-...) in USDC
            "inverse": ~parts["cur"].str.contains("_", regex=False).to_numpy(dtype=bool),
            "rate": optional_floats(options, "interest_rate", where),
            "volume": volume,
            "open_interest": optional_floats(options, "open_interest", where, nonnegative=True),
            "last": optional_floats(options, "last", where),
            "iv_bid": optional_floats(options, "bid_iv", where) / 100.0,  # Deribit quotes IVs in percent
            "iv_ask": optional_floats(options, "ask_iv", where) / 100.0,
        }
    )
    frame.attrs["format"] = "deribit"
    return validate(frame, where)
