"""The canonical frame: its columns, and the checks that coerce any loader's output (or a user's frame) into it.

The columns, dtypes and units are those of the :mod:`calibration.quotes` docstring (DESIGN.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from calibration.loaders.locate import Where, first
from calibration.loaders.values import floats, mapped, optional_floats, strings, utc_times

__all__ = [
    "BARE_DATE_EXPIRY_HOUR_UTC",
    "CANONICAL_COLUMNS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "load_canonical",
    "require_columns",
    "validate",
    "validate_canonical",
]


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

#: Hour (UTC) of a canonical expiry given as a bare date: Deribit's 08:00 UTC.
BARE_DATE_EXPIRY_HOUR_UTC = 8


_TYPE_CODES = {"c": "C", "call": "C", "p": "P", "put": "P"}
_BOOL_CODES = {"true": True, "t": True, "yes": True, "y": True, "1": True, "1.0": True,
               "false": False, "f": False, "no": False, "n": False, "0": False, "0.0": False}  # fmt: skip


def require_columns(raw: pd.DataFrame, required: Sequence[str], where: Where, *, what: str) -> None:
    """SnapshotError naming every column of ``required`` that ``raw`` lacks (``what`` names the file kind), or
    saying that it has no rows."""
    missing = [c for c in required if c not in raw.columns]
    if missing:
        raise where.error(
            f"missing required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} for {what} "
            f"(the header has: {', '.join(map(str, raw.columns[:30]))})"
        )
    if len(raw) == 0:
        raise where.error("no data rows: the file has a header but no quotes")


def validate(frame: pd.DataFrame, where: Where) -> pd.DataFrame:
    """Coerce and check a frame holding the canonical columns (raw text or typed); see validate_canonical."""
    require_columns(frame, REQUIRED_COLUMNS, where, what="a canonical snapshot")
    snapshot = utc_times(frame["snapshot_time"], where, "snapshot_time")
    mixed = snapshot != snapshot[0]
    if mixed.any():
        pos = first(mixed)
        raise where.error(
            f"mixed snapshot times: {snapshot[pos].isoformat()} here but {snapshot[0].isoformat()} on row 1; "
            "a file holds one snapshot",
            pos=pos,
            column="snapshot_time",
        )
    bid = floats(frame["bid"], where, "bid", nonnegative=True)
    ask = floats(frame["ask"], where, "ask", nonnegative=True)
    if "inverse" in frame.columns:
        inverse = mapped(frame["inverse"], where, "inverse", _BOOL_CODES, default=False, expected="true or false")
    else:
        inverse = np.zeros(len(frame), dtype=bool)
    iv_bid = optional_floats(frame, "iv_bid", where)
    iv_ask = optional_floats(frame, "iv_ask", where)
    columns: dict[str, Any] = {
        "snapshot_time": snapshot,
        "underlying": pd.array(strings(frame["underlying"], where, "underlying"), dtype=str),
        "expiry": utc_times(frame["expiry"], where, "expiry", bare_date_hour=BARE_DATE_EXPIRY_HOUR_UTC),
        "strike": floats(frame["strike"], where, "strike", required=True, positive=True),
        "option_type": pd.array(
            mapped(frame["option_type"], where, "option_type", _TYPE_CODES, default=None, expected="C/P/call/put"),
            dtype=str,
        ),
        "bid": np.where(bid > 0, bid, np.nan),  # 0 = no quote on that side
        "ask": np.where(ask > 0, ask, np.nan),
        "underlying_price": floats(
            frame["underlying_price"], where, "underlying_price", required=True, positive=True
        ),
        "forward": optional_floats(frame, "forward", where, positive=True),
        "inverse": np.asarray(inverse, dtype=bool),
        "rate": optional_floats(frame, "rate", where),
        "volume": optional_floats(frame, "volume", where, nonnegative=True),
        "open_interest": optional_floats(frame, "open_interest", where, nonnegative=True),
        "last": optional_floats(frame, "last", where, nonnegative=True),
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
        The canonical frame (see :mod:`calibration.quotes`): columns :data:`CANONICAL_COLUMNS` in that order, a fresh
        RangeIndex, row order kept. ``bid``/``ask`` of 0 become NaN (no quote); venue IVs <= 0 become NaN.

    Raises
    ------
    SnapshotError
        Missing required columns (all named), no rows, unparsable or empty dates, mixed snapshot times,
        non-numeric or non-finite numbers, strikes/underlying prices/forwards <= 0, negative premiums, volumes
        or open interest, unknown option types or inverse flags. The message names the file, the 1-based row
        and the column.
    """
    return validate(frame, Where(source))


def load_canonical(raw: pd.DataFrame, where: Where) -> pd.DataFrame:
    """A table read from a canonical CSV or Parquet file -> the canonical frame."""
    raw.attrs["format"] = "canonical"
    return validate(raw, where)
