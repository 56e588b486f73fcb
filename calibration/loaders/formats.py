"""The snapshot formats, and telling which one a file is from its container and its header columns."""

from __future__ import annotations

from collections.abc import Sequence

from calibration.errors import UnknownFormatError
from calibration.loaders.canonical import CANONICAL_COLUMNS, REQUIRED_COLUMNS
from calibration.loaders.cboe import CBOE_COLUMNS
from calibration.loaders.deribit import record_lists
from calibration.loaders.optionmetrics import OPTIONMETRICS_COLUMNS
from calibration.loaders.reading import (
    DEFAULT_MAX_BYTES,
    container_of,
    first_line,
    gunzip,
    parquet_file,
    read_json_payload,
)

__all__ = ["FORMATS", "detect_format", "format_from_columns"]


FORMATS: tuple[str, ...] = ("canonical", "deribit", "cboe", "optionmetrics")


# Columns that tell the tabular formats apart (shared names such as strike or volume are left out).
_SIGNATURES: dict[str, frozenset[str]] = {
    "canonical": frozenset(CANONICAL_COLUMNS) - CBOE_COLUMNS - OPTIONMETRICS_COLUMNS - {"underlying_price"},
    "cboe": CBOE_COLUMNS - frozenset(CANONICAL_COLUMNS) - OPTIONMETRICS_COLUMNS - {"close"},
    "optionmetrics": OPTIONMETRICS_COLUMNS - frozenset(CANONICAL_COLUMNS) - CBOE_COLUMNS,
}


def format_from_columns(columns: Sequence[str], label: str) -> str:
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
        data = gunzip(data, label, DEFAULT_MAX_BYTES)
    container = container_of(data, label)
    if container == "json":
        record_lists(read_json_payload(data, label), label)
        return "deribit"
    if container == "parquet":
        return format_from_columns(parquet_file(data, label, DEFAULT_MAX_BYTES).schema_arrow.names, label)
    return format_from_columns(first_line(data, label), label)
