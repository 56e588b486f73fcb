"""OptionMetrics IvyDB-style option prices (CSV or Parquet) to the canonical frame, at the 16:00 close."""

from __future__ import annotations

import numpy as np
import pandas as pd

from calibration.loaders.canonical import require_columns, validate
from calibration.loaders.locate import Where
from calibration.loaders.values import floats, local_days, new_york_to_utc, optional_floats, utc_index

__all__ = ["OPTIONMETRICS_COLUMNS", "load_optionmetrics"]


_OM_REQUIRED = ("secid", "date", "exdate", "cp_flag", "strike_price", "best_bid", "best_offer")
_OM_SPOT_COLUMNS = ("underlying_price", "spot", "close")
OPTIONMETRICS_COLUMNS = frozenset(
    {*_OM_REQUIRED, "volume", "open_interest", "impl_volatility", "forward_price", "am_settlement", "ticker"}
)


def load_optionmetrics(raw: pd.DataFrame, where: Where) -> pd.DataFrame:
    """OptionMetrics-style option prices (IvyDB ``opprcd`` columns).

    strike = ``strike_price`` / 1000; underlying = ``ticker`` if present, else the secid; underlying_price from
    the first of ``underlying_price``, ``spot``, ``close``; without any of them, the ``forward_price`` of the
    nearest expiry stands in for spot (a forward, not spot: fine in forward space, shown as such). The mid IV
    ``impl_volatility`` is not a bid/ask IV and is not kept.
    """
    require_columns(raw, _OM_REQUIRED, where, what="an OptionMetrics file")
    snapshot_day = local_days(raw["date"], where, "date")
    expiry_day = local_days(raw["exdate"], where, "exdate")
    saturday = pd.DatetimeIndex(expiry_day).day_of_week.to_numpy() == 5
    expiry_day = np.where(saturday, expiry_day - np.timedelta64(1, "D"), expiry_day)
    am = optional_floats(raw, "am_settlement", where) == 1
    expiry = np.where(am, new_york_to_utc(expiry_day, 9, 30), new_york_to_utc(expiry_day, 16, 0))
    strike = floats(raw["strike_price"], where, "strike_price", required=True, positive=True) / 1000.0
    forward = optional_floats(raw, "forward_price", where)
    forward = np.where(forward > 0, forward, np.nan)
    spot_column = next((c for c in _OM_SPOT_COLUMNS if c in raw.columns), None)
    if spot_column is not None:
        spot = floats(raw[spot_column], where, spot_column, required=True, positive=True)
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
            "snapshot_time": utc_index(new_york_to_utc(snapshot_day, 16, 0)),
            "underlying": underlying,
            "expiry": utc_index(expiry),
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
    return validate(frame, where.renamed(names))
