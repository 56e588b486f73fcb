"""Tables of a snapshot for the browser: rows as plain records, column definitions for dash-ag-grid."""

from __future__ import annotations

import numpy as np
import pandas as pd

from calibration.cleaning import REASONS
from calibration.snapshot import QuoteSnapshot
from components.theme import PALETTE, Theme


def grid_theme(theme: Theme = "dark") -> dict[str, str]:
    """AG Grid Theming API theme of the app theme (``dashGridOptions={"theme": grid_theme(theme)}``)."""
    c = PALETTE[theme]
    header = "#1c2028" if theme == "dark" else "#f1f3f5"
    odd = "#181b22" if theme == "dark" else "#f8f9fa"
    return {
        "function": (
            f"themeQuartz.withParams({{backgroundColor: '{c['paper']}', foregroundColor: '{c['text']}', "
            f"headerBackgroundColor: '{header}', oddRowBackgroundColor: '{odd}', borderColor: '{c['grid']}', "
            f"fontSize: 12, spacing: 5, accentColor: '{c['model']}'}})"
        )
    }

#: Quotes grid columns: (field, header, number format). Vols are shown in percent, premiums in quote currency.
QUOTE_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("expiry", "Expiry (UTC)", None),
    ("ttm_days", "Days", ",.2f"),
    ("strike", "Strike", ",.6~g"),
    ("option_type", "C/P", None),
    ("k", "ln(K/F)", ",.4f"),
    ("bid", "Bid", ",.6~g"),
    ("ask", "Ask", ",.6~g"),
    ("iv_bid_pct", "Bid vol %", ",.2f"),
    ("iv_mid_pct", "Mid vol %", ",.2f"),
    ("iv_ask_pct", "Ask vol %", ",.2f"),
    ("forward", "Forward", ",.2f"),
    ("status", "Status", None),
)


def quote_records(snapshot: QuoteSnapshot) -> list[dict]:
    """Rows of the quotes grid (JSON-safe: NaN becomes None)."""
    q = snapshot.quotes
    frame = pd.DataFrame(
        {
            "expiry": q["expiry"].dt.strftime("%Y-%m-%d %H:%M"),
            "ttm_days": q["ttm"] * 365.0,
            "strike": q["strike"],
            "option_type": q["option_type"],
            "k": q["k"],
            "bid": q["bid"],
            "ask": q["ask"],
            "iv_bid_pct": q["iv_bid"] * 100.0,
            "iv_mid_pct": q["iv_mid"] * 100.0,
            "iv_ask_pct": q["iv_ask"] * 100.0,
            "forward": q["forward"],
            "status": q["status"],
        }
    )
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict("records")


#: Per-expiry forward table columns.
FORWARD_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("expiry", "Expiry (UTC)", None),
    ("forward", "Forward", ",.2f"),
    ("discount", "Discount", ".6f"),
    ("rate", "Rate", ".3%"),
    ("method", "Method", None),
    ("n_pairs", "Pairs", "d"),
    ("parity_rmse", "Parity RMSE", ",.4~g"),
    ("parity_band_share", "In bid/ask band", ".0%"),
    ("forward_vs_venue_bp", "vs venue (bp)", ",.1f"),
)

#: Drop report columns.
DROP_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("reason", "Reason", None),
    ("description", "What it means", None),
    ("count", "Quotes", "d"),
)


def column_defs(columns: tuple[tuple[str, str, str | None], ...]) -> list[dict]:
    """dash-ag-grid column definitions: numbers right-aligned and formatted with d3-format."""
    defs = []
    for field, header, fmt in columns:
        col: dict = {"field": field, "headerName": header, "filter": True, "sortable": True}
        if fmt:
            col["type"] = "rightAligned"
            col["filter"] = "agNumberColumnFilter"
            col["valueFormatter"] = {"function": f"params.value == null ? '' : d3.format('{fmt}')(params.value)"}
        defs.append(col)
    return defs


def drop_records(snapshot: QuoteSnapshot) -> list[dict]:
    """The DropReport as rows: reason, what it means, count."""
    return [
        {"reason": reason, "description": REASONS.get(reason, reason), "count": int(count)}
        for reason, count in snapshot.drops.counts.items()
    ]


def forward_records(snapshot: QuoteSnapshot) -> list[dict]:
    """Per-expiry forwards, discounts and parity quality as rows."""
    f = snapshot.forwards.loc[:, [name for name, _, _ in FORWARD_COLUMNS]].copy()
    f["expiry"] = pd.to_datetime(f["expiry"]).dt.strftime("%Y-%m-%d %H:%M")
    f = f.replace([np.inf, -np.inf], np.nan)
    f = f.astype(object).where(f.notna(), None)
    return f.to_dict("records")


def record_columns(records: list[dict]) -> list[dict]:
    """Column definitions for rows whose keys are not known in advance (figure-module records): the keys as
    headers, numbers right-aligned with 6 significant digits."""
    if not records:
        return []
    columns = []
    for key in records[0]:
        numeric = any(isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool) for r in records)
        header = key.replace("_", " ").capitalize() if key.islower() else key
        columns.append((key, header, ",.6~g" if numeric else None))
    return column_defs(tuple(columns))
