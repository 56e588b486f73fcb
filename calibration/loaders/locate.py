"""Where a value came from (file, 1-based row, physical line or JSON record, column), to word errors."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from calibration.errors import SnapshotError

__all__ = ["Where", "first", "show"]


@dataclass(frozen=True)
class Where:
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

    def renamed(self, names: Mapping[str, str]) -> Where:
        return replace(self, names=dict(names))


def first(mask: np.ndarray) -> int:
    """Position of the first True of a boolean array that has one."""
    return int(np.flatnonzero(mask)[0])


def show(value: Any) -> str:
    """A cell as quoted in a message: strings in quotes, cut to 40 characters."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."
