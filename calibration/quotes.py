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

The implementation is the package :mod:`calibration.loaders` (reading, format detection, one module per format,
validation); import from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pandas as pd

from calibration.errors import SnapshotError, UnknownFormatError
from calibration.loaders.canonical import (
    BARE_DATE_EXPIRY_HOUR_UTC,
    CANONICAL_COLUMNS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    load_canonical,
    validate_canonical,
)
from calibration.loaders.cboe import AM_SETTLED_ROOTS, load_cboe
from calibration.loaders.deribit import load_deribit
from calibration.loaders.formats import FORMATS, detect_format, format_from_columns
from calibration.loaders.locate import Where
from calibration.loaders.optionmetrics import load_optionmetrics
from calibration.loaders.reading import (
    DEFAULT_MAX_BYTES,
    container_of,
    read_csv_table,
    read_json_payload,
    read_parquet_table,
    read_source,
)
from calibration.loaders.values import NA_TOKENS, NEW_YORK

__all__ = [
    "AM_SETTLED_ROOTS",
    "BARE_DATE_EXPIRY_HOUR_UTC",
    "CANONICAL_COLUMNS",
    "DEFAULT_MAX_BYTES",
    "FORMATS",
    "NA_TOKENS",
    "NEW_YORK",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "detect_format",
    "read_snapshot",
    "validate_canonical",
]


_TABLE_LOADERS: dict[str, Callable[[pd.DataFrame, Where], pd.DataFrame]] = {
    "canonical": load_canonical,
    "cboe": load_cboe,
    "optionmetrics": load_optionmetrics,
}


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
    data, label = read_source(source, name=name, max_bytes=max_bytes)
    container = container_of(data, label)
    if container == "json":
        if format not in (None, "deribit"):
            raise SnapshotError(f"the file is JSON, which only the deribit format reads, not {format}", source=label)
        frame = load_deribit(read_json_payload(data, label), label)
    else:
        if format == "deribit":
            raise SnapshotError(f"the deribit format reads JSON, but this file is {container.upper()}", source=label)
        raw, where = read_csv_table(data, label) if container == "csv" else read_parquet_table(data, label, max_bytes)
        chosen = format or format_from_columns(list(raw.columns), label)
        frame = _TABLE_LOADERS[chosen](raw, where)
    frame.attrs["source"] = label
    return frame
