"""Typed exceptions of the numerical core, with messages a trader can act on."""

from __future__ import annotations


class SmilescopeError(Exception):
    """Base class of every error the project raises on purpose."""


class SnapshotError(SmilescopeError):
    """A snapshot file or frame that cannot be read as option quotes.

    Parameters
    ----------
    message
        What is wrong, in words a trader can act on ("ask 0.05 < bid 0.06").
    source
        File name (or upload name) the problem is in, when known.
    row
        1-based data row (the header is not counted), when the problem is in one row.
    column
        Column name, when the problem is in one column.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
    ) -> None:
        self.reason = message
        self.source = source
        self.row = row
        self.column = column
        where = [
            part
            for part in (
                source,
                f"row {row}" if row is not None else None,
                f"column '{column}'" if column is not None else None,
            )
            if part
        ]
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class UnknownFormatError(SnapshotError):
    """The content matches none of the supported snapshot formats."""


class FileTooLargeError(SnapshotError):
    """The file is above the configured size cap; it was not read."""


class CalibrationError(SmilescopeError):
    """Bad calibration input (an empty snapshot, an unknown model or optimizer, bad settings)."""
