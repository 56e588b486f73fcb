"""CBOE DataShop end-of-day option quotes (CSV or Parquet) to the canonical frame, from the 15:45 snapshot."""

from __future__ import annotations

import numpy as np
import pandas as pd

from calibration.loaders.canonical import require_columns, validate
from calibration.loaders.locate import Where, first
from calibration.loaders.values import floats, local_days, new_york_to_utc, optional_floats, strings, utc_index

__all__ = ["AM_SETTLED_ROOTS", "CBOE_COLUMNS", "load_cboe"]


#: CBOE roots whose options settle on the opening print (09:30 New York); every other root settles PM (16:00).
AM_SETTLED_ROOTS = frozenset({"SPX", "NDX", "RUT", "DJX", "VIX", "MXEA", "MXEF"})


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
CBOE_COLUMNS = frozenset(
    {
        *_CBOE_REQUIRED,
        *"open high low close trade_volume bid_size_1545 ask_size_1545 implied_underlying_price_1545".split(),
        *"active_underlying_price_1545 implied_volatility_1545 delta_1545 gamma_1545 theta_1545".split(),
        *"vega_1545 rho_1545 bid_size_eod bid_eod ask_size_eod ask_eod underlying_bid_eod".split(),
        *"underlying_ask_eod vwap open_interest delivery_code".split(),
    }
)


def load_cboe(raw: pd.DataFrame, where: Where) -> pd.DataFrame:
    """CBOE DataShop end-of-day option quotes, the 15:45 New York snapshot of each row.

    underlying_price = mid of ``underlying_bid_1545``/``underlying_ask_1545`` (both > 0), else
    ``active_underlying_price_1545``; forward = ``implied_underlying_price_1545`` when > 0; last = ``close`` when
    > 0 (0 means no trade). The single mid IV ``implied_volatility_1545`` is not a bid/ask IV and is not kept.
    """
    require_columns(raw, _CBOE_REQUIRED, where, what="a CBOE DataShop file")
    quote_day = local_days(raw["quote_date"], where, "quote_date")
    expiry_day = local_days(raw["expiration"], where, "expiration")
    roots = strings(raw["root"], where, "root")
    am = np.isin(np.char.upper(roots.astype(str)), list(AM_SETTLED_ROOTS))
    expiry = np.where(am, new_york_to_utc(expiry_day, 9, 30), new_york_to_utc(expiry_day, 16, 0))
    under_bid = floats(raw["underlying_bid_1545"], where, "underlying_bid_1545", nonnegative=True)
    under_ask = floats(raw["underlying_ask_1545"], where, "underlying_ask_1545", nonnegative=True)
    spot = np.where((under_bid > 0) & (under_ask > 0), 0.5 * (under_bid + under_ask), np.nan)
    active = optional_floats(raw, "active_underlying_price_1545", where)
    spot = np.where(np.isnan(spot) & (active > 0), active, spot)
    if np.isnan(spot).any():
        pos = first(np.isnan(spot))
        raise where.error(
            "no underlying price: underlying_bid_1545/underlying_ask_1545 are not both > 0 and "
            "active_underlying_price_1545 is missing",
            pos=pos,
            column="underlying_bid_1545",
        )
    implied = optional_floats(raw, "implied_underlying_price_1545", where)
    close = optional_floats(raw, "close", where, nonnegative=True)
    symbols = strings(raw["underlying_symbol"], where, "underlying_symbol")
    frame = pd.DataFrame(
        {
            "snapshot_time": utc_index(new_york_to_utc(quote_day, 15, 45)),
            "underlying": [s.lstrip("^") or s for s in symbols],
            "expiry": utc_index(expiry),
            "strike": raw["strike"],
            "option_type": raw["option_type"],
            "bid": raw["bid_1545"],
            "ask": raw["ask_1545"],
            "underlying_price": spot,
            "forward": np.where(implied > 0, implied, np.nan),
            "volume": optional_floats(raw, "trade_volume", where, nonnegative=True),
            "open_interest": optional_floats(raw, "open_interest", where, nonnegative=True),
            "last": np.where(close > 0, close, np.nan),
        }
    )
    frame.attrs["format"] = "cboe"
    names = {"snapshot_time": "quote_date", "expiry": "expiration", "bid": "bid_1545", "ask": "ask_1545",
             "underlying": "underlying_symbol", "underlying_price": "underlying_bid_1545"}  # fmt: skip
    return validate(frame, where.renamed(names))
