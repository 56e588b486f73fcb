"""From a canonical quote frame to a :class:`QuoteSnapshot`: time to expiry, forwards, implied vols, cleaning.

The pipeline, in order:

1. ``ttm``: ACT/365 years from ``snapshot_time`` to ``expiry``, to the second;
2. forwards and discounts per expiry from put-call parity (:mod:`calibration.forwards`);
3. inverse (coin) premiums converted to the quote currency with the forward of their expiry;
4. implied vols of bid, mid and ask (:mod:`calibration.implied_vol`), NaN plus a reason where they fail;
5. cleaning (:mod:`calibration.cleaning`): every input row gets ``status`` "ok" or the reason it is not fitted.

Every input row is kept in ``QuoteSnapshot.quotes`` (the CLI and the UI report dropped quotes with their reason);
``QuoteSnapshot.fit_quotes`` is the subset a calibration uses.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from calibration.black import black_greeks
from calibration.cleaning import CleaningSettings, DropReport, clean
from calibration.errors import SnapshotError
from calibration.forwards import ForwardSettings, infer_forwards, to_quote_currency
from calibration.implied_vol import implied_vol
from calibration.quotes import DEFAULT_MAX_BYTES, read_snapshot

SECONDS_PER_YEAR = 365.0 * 86400.0

#: Columns of the per-quote report written by ``smilescope iv`` (one row per input quote).
IV_REPORT_COLUMNS = (
    "expiry", "strike", "option_type", "ttm", "forward", "discount", "k",
    "bid", "ask", "iv_bid", "iv_mid", "iv_ask", "status",
)


@dataclass(frozen=True)
class SnapshotSettings:
    """How a raw frame becomes a snapshot: forward inference and cleaning thresholds."""

    forwards: ForwardSettings = field(default_factory=ForwardSettings)
    cleaning: CleaningSettings = field(default_factory=CleaningSettings)


@dataclass(frozen=True)
class QuoteSnapshot:
    """One snapshot of an option chain, ready to fit.

    Attributes
    ----------
    asof
        Snapshot time (UTC).
    underlying
        Underlying name (BTC, ETH, SPX...).
    spot
        Spot or index price at ``asof``, quote currency.
    quotes
        Every input row: the canonical columns (venue IVs renamed ``venue_iv_bid``/``venue_iv_ask``), premiums
        ``bid``/``ask``/``mid`` in the quote currency (coin premiums kept in ``bid_native``/``ask_native``),
        ``ttm`` (years, ACT/365), ``forward``, ``discount``, ``k = ln(K/F)``, ``iv_bid``/``iv_mid``/``iv_ask``
        (decimal vols, NaN where not computable), ``iv_code`` (reason code of the mid vol, see
        :data:`calibration.implied_vol.IV_REASONS`), ``vega`` (quote currency per 1.00 vol, at the mid vol) and
        ``status`` ("ok" or the reason the quote is not fitted).
    forwards
        One row per expiry: forward, discount, rate, how it was obtained and how well parity held.
    drops
        Counts of the quotes not fitted, by reason.
    source
        File or upload name.
    content_hash
        Hex digest of the canonical quotes: equal snapshots share it (cache key).
    """

    asof: pd.Timestamp
    underlying: str
    spot: float
    quotes: pd.DataFrame
    forwards: pd.DataFrame
    drops: DropReport
    source: str
    content_hash: str

    @property
    def fit_quotes(self) -> pd.DataFrame:
        """The quotes a calibration uses (status ``ok``).

        The selection is made once per snapshot (a calibration, its evaluation and a backtest step each ask for
        it); every call returns a new frame (a shallow copy: pandas copy-on-write keeps the cached one intact).
        """
        cached = self.__dict__.get("_fit_quotes")
        if cached is None:
            cached = self.quotes.loc[self.quotes["status"] == "ok"]
            object.__setattr__(self, "_fit_quotes", cached)  # frozen dataclass: not a field, only a cache
        return cached.copy(deep=False)

    @property
    def expiries(self) -> pd.DatetimeIndex:
        """Expiries that have at least one quote to fit, ascending."""
        return pd.DatetimeIndex(np.sort(self.fit_quotes["expiry"].unique()))

    def iv_report(self) -> pd.DataFrame:
        """One row per input quote with forward, ttm, log-moneyness, implied vols and status."""
        return self.quotes.loc[:, list(IV_REPORT_COLUMNS)]


def time_to_expiry(snapshot_time: pd.Series, expiry: pd.Series) -> np.ndarray:
    """ACT/365 time from ``snapshot_time`` to ``expiry`` in years, to the second (negative when expired)."""
    seconds = (expiry - snapshot_time).dt.total_seconds().to_numpy(dtype=float)
    return seconds / SECONDS_PER_YEAR


def frame_hash(frame: pd.DataFrame) -> str:
    """Content hash of a canonical frame (row order and values), stable across processes."""
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest = hashlib.sha256(row_hashes.tobytes())
    digest.update(",".join(frame.columns).encode())
    return digest.hexdigest()[:32]


def prepare_snapshot(
    frame: pd.DataFrame,
    *,
    settings: SnapshotSettings | None = None,
    source: str | None = None,
) -> QuoteSnapshot:
    """Turn a canonical quote frame (see :func:`calibration.quotes.read_snapshot`) into a snapshot.

    Parameters
    ----------
    frame
        Canonical frame, one row per quote.
    settings
        Forward inference and cleaning settings; defaults when omitted.
    source
        Name shown in messages; defaults to ``frame.attrs["source"]``.

    Raises
    ------
    SnapshotError
        When the frame has no rows.
    """
    settings = settings or SnapshotSettings()
    source = source or str(frame.attrs.get("source", "snapshot"))
    if frame.empty:
        raise SnapshotError("the snapshot has no quotes", source=source)
    underlyings = frame["underlying"].unique()
    if len(underlyings) > 1:
        raise SnapshotError(
            f"the file holds several underlyings ({', '.join(map(str, sorted(underlyings)))}); "
            "a snapshot is one underlying: split the file",
            source=source,
            column="underlying",
        )
    content_hash = frame_hash(frame)

    quotes = frame.rename(columns={"iv_bid": "venue_iv_bid", "iv_ask": "venue_iv_ask"}).reset_index(drop=True)
    quotes["ttm"] = time_to_expiry(quotes["snapshot_time"], quotes["expiry"])
    forwards = infer_forwards(quotes, settings=settings.forwards)
    quotes = to_quote_currency(quotes, forwards)
    quotes = _add_implied_vols(quotes)
    result = clean(quotes, settings=settings.cleaning)
    quotes["status"] = result.status.to_numpy()

    return QuoteSnapshot(
        asof=pd.Timestamp(quotes["snapshot_time"].iloc[0]),
        underlying=str(quotes["underlying"].iloc[0]),
        spot=float(quotes["underlying_price"].median()),
        quotes=quotes,
        forwards=forwards,
        drops=result.report,
        source=source,
        content_hash=content_hash,
    )


def _add_implied_vols(quotes: pd.DataFrame) -> pd.DataFrame:
    """Add mid, log-moneyness, bid/mid/ask implied vols, the mid's reason code and the mid vega."""
    F = quotes["forward"].to_numpy(dtype=float)
    K = quotes["strike"].to_numpy(dtype=float)
    t = quotes["ttm"].to_numpy(dtype=float)
    D = quotes["discount"].to_numpy(dtype=float)
    is_call = (quotes["option_type"] == "C").to_numpy()
    bid = quotes["bid"].to_numpy(dtype=float)
    ask = quotes["ask"].to_numpy(dtype=float)
    mid = 0.5 * (bid + ask)

    # One vectorised call for the three sides.
    prices = np.concatenate([bid, mid, ask])
    iv = implied_vol(
        prices, np.tile(F, 3), np.tile(K, 3), np.tile(t, 3), is_call=np.tile(is_call, 3), discount=np.tile(D, 3)
    )
    n = len(quotes)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.log(K / F)
    out = quotes.assign(
        mid=mid,
        k=k,
        iv_bid=iv.vol[:n],
        iv_mid=iv.vol[n : 2 * n],
        iv_ask=iv.vol[2 * n :],
        iv_code=iv.code[n : 2 * n],
    )
    vol_for_vega = np.where(np.isfinite(out["iv_mid"]), out["iv_mid"], np.nan)
    out["vega"] = black_greeks(F, K, np.maximum(t, 0.0), vol_for_vega, is_call=is_call, discount=D).vega
    return out


def max_snapshot_bytes() -> int:
    """Size cap for a snapshot file: ``SMILESCOPE_MAX_SNAPSHOT_MB`` (megabytes) or the loader's default."""
    value = os.environ.get("SMILESCOPE_MAX_SNAPSHOT_MB")
    if not value:
        return DEFAULT_MAX_BYTES
    try:
        return int(float(value) * 1024**2)
    except ValueError as exc:
        raise SnapshotError(f"SMILESCOPE_MAX_SNAPSHOT_MB={value!r} is not a number of megabytes") from exc


def load_snapshot(
    source: str | os.PathLike[str] | bytes,
    *,
    format: str | None = None,
    name: str | None = None,
    settings: SnapshotSettings | None = None,
) -> QuoteSnapshot:
    """Read a snapshot file (or uploaded bytes) in any supported format and prepare it.

    Parameters
    ----------
    source
        Path to the file, or its raw bytes (then ``name`` is the user's file name).
    format
        Force a format (see :data:`calibration.quotes.FORMATS`); detected from the content when omitted.
    name
        File name for messages and format detection when ``source`` is bytes.
    settings
        Forward inference and cleaning settings.
    """
    frame = read_snapshot(source, format=format, name=name, max_bytes=max_snapshot_bytes())
    label = name or (Path(source).name if not isinstance(source, bytes) else "upload")
    return prepare_snapshot(frame, settings=settings, source=label)
