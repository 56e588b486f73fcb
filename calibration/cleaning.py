"""Quote cleaning: every quote is kept for the fit ("ok") or gets the first reason, in a fixed order, it is not.

Reasons are checked in the order of :data:`REASONS`; a quote is reported under the first one that applies, so
the counts of a :class:`DropReport` add up to the number of quotes dropped. Defaults are tuned on real chains
(Deribit ETH/BTC, SPX): tick-quantised wings such as bid 0.0001 / ask 0.0002 coin (relative spread 0.67 of the
mid) are kept, while one-sided, crossed, arbitrageable and very wide quotes are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from calibration.errors import SnapshotError

#: Reason code -> description, in precedence order (a quote is reported under the first that applies).
REASONS: dict[str, str] = {
    "expired": "expired (time to expiry zero or negative)",
    "near_expiry": "too close to expiry (under the minimum days to expiry)",
    "no_forward": "no forward or discount factor for this expiry",
    "duplicate": "duplicate of another quote with the same expiry, strike and type (the tightest two-sided "
    "quote is kept, the first in file order on a tie)",
    "itm": "in the money; the out-of-the-money quote at this strike is used",
    "no_bid": "no bid quote",
    "no_ask": "no ask quote",
    "crossed": "bid above ask",
    "locked": "bid equals ask",
    "above_max_price": "premium above discounted forward (call) or strike (put)",
    "below_intrinsic": "ask below discounted intrinsic value",
    "wide_spread": "bid-ask spread too wide relative to the mid premium",
    "wide_vol_spread": "bid-ask spread too wide in implied vol",
    "iv_failed": "no implied vol for the mid premium",
}

#: Status of a quote that is fitted.
OK = "ok"

_REQUIRED = ("expiry", "strike", "option_type", "bid", "ask", "ttm", "forward", "discount",
             "iv_bid", "iv_mid", "iv_ask")


@dataclass(frozen=True)
class CleaningSettings:
    """Thresholds of :func:`clean` (shown in the UI).

    Attributes
    ----------
    min_ttm_days
        Calendar days (ACT/365). Expiries closer than this are dropped as ``near_expiry``: the last day of an
        option is dominated by intraday effects. Default 1 day (drops a daily option on its last day).
    max_rel_spread
        Largest ``(ask - bid) / mid``, dimensionless. Default 1.5, i.e. an ask up to seven times the bid: keeps
        tick-quantised wings (0.0001 / 0.0002 coin is 0.67, 0.0001 / 0.0005 is 1.33), drops one-tick bids under
        wide asks such as 0.0048 / 0.0745 (1.76). Wide quotes on larger premiums are caught by the vol spread.
    max_vol_spread
        Largest ``iv_ask - iv_bid``, vol decimals (0.15 = 15 vol points); where the bid has no implied vol (at
        or under intrinsic value) its vol counts as 0; not checked without an ask vol. Out-of-the-money quotes
        of normal chains stay within about 10 points even on the wings of the shortest expiries.
    price_tolerance
        Tolerance of the no-arbitrage bounds as a fraction of ``D F`` (2e-4 = 2 bp of the discounted forward),
        so that a forward known to a few bp does not condemn a quote sitting on its bound.
    otm_only
        Fit out-of-the-money quotes only (calls with ``K >= F``, puts with ``K < F``); an in-the-money quote is
        kept only where the out-of-the-money quote at its strike is dropped or missing.
    """

    min_ttm_days: float = 1.0
    max_rel_spread: float = 1.5
    max_vol_spread: float = 0.15
    price_tolerance: float = 2e-4
    otm_only: bool = True

    def __post_init__(self) -> None:
        for name in ("min_ttm_days", "max_rel_spread", "max_vol_spread", "price_tolerance"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")

    def describe(self) -> list[dict[str, object]]:
        """Settings as rows (name, value, unit) for display."""
        units = {
            "min_ttm_days": "days",
            "max_rel_spread": "(ask - bid) / mid",
            "max_vol_spread": "vol decimals",
            "price_tolerance": "fraction of D F",
            "otm_only": "",
        }
        return [{"name": f.name, "value": getattr(self, f.name), "unit": units[f.name]} for f in fields(self)]


@dataclass(frozen=True)
class DropReport:
    """How many quotes were dropped, by reason.

    Attributes
    ----------
    counts
        Reason code -> number of quotes (non-zero only), in the precedence order of :data:`REASONS`.
    n_input
        Quotes in.
    n_kept
        Quotes with status "ok".
    """

    counts: dict[str, int]
    n_input: int
    n_kept: int

    @property
    def n_dropped(self) -> int:
        """Quotes not fitted."""
        return self.n_input - self.n_kept

    def to_frame(self) -> pd.DataFrame:
        """One row per reason: ``reason``, ``description``, ``count``."""
        return pd.DataFrame(
            {
                "reason": list(self.counts),
                "description": [REASONS.get(r, r) for r in self.counts],
                "count": np.array(list(self.counts.values()), dtype=int),
            }
        )

    def to_dict(self) -> dict:
        """JSON-safe form (for ``dcc.Store`` and exports)."""
        return {"counts": {k: int(v) for k, v in self.counts.items()}, "n_input": int(self.n_input),
                "n_kept": int(self.n_kept)}

    @classmethod
    def from_dict(cls, data: dict) -> DropReport:
        """Inverse of :meth:`to_dict`.

        Raises
        ------
        ValueError
            When a reason is unknown or the counts do not add up.
        """
        counts = {str(k): int(v) for k, v in dict(data["counts"]).items()}
        unknown = [k for k in counts if k not in REASONS]
        if unknown:
            raise ValueError(f"unknown drop reason(s): {', '.join(unknown)}")
        n_input, n_kept = int(data["n_input"]), int(data["n_kept"])
        if sum(counts.values()) != n_input - n_kept:
            raise ValueError(f"drop counts add up to {sum(counts.values())}, expected {n_input - n_kept}")
        ordered = {r: counts[r] for r in REASONS if counts.get(r, 0)}
        return cls(counts=ordered, n_input=n_input, n_kept=n_kept)


@dataclass(frozen=True)
class CleaningResult:
    """Per-quote status and the summary.

    Attributes
    ----------
    status
        Indexed like the input frame: "ok" or the first reason code of :data:`REASONS` that applies.
    report
        Counts by reason.
    """

    status: pd.Series
    report: DropReport

    @property
    def keep(self) -> pd.Series:
        """Boolean mask of the quotes to fit."""
        return self.status == OK


def duplicate_mask(frame: pd.DataFrame) -> np.ndarray:
    """True for quotes that repeat an (expiry, strike, option_type) already represented by another row.

    Of a group of duplicates the kept row is the tightest two-sided, uncrossed quote (smallest ``ask - bid``);
    rows without such a quote come after; ties go to the first row in file order.

    Parameters
    ----------
    frame
        Quote frame with ``expiry``, ``strike``, ``option_type``, ``bid``, ``ask``.

    Returns
    -------
    numpy.ndarray
        Boolean, one per row of ``frame``.
    """
    bid = frame["bid"].to_numpy(dtype=float)
    ask = frame["ask"].to_numpy(dtype=float)
    two_sided = np.isfinite(bid) & np.isfinite(ask) & (bid > 0.0) & (ask >= bid)
    n = len(frame)
    expiry = pd.factorize(frame["expiry"])[0]  # missing values share the code -1, i.e. are equal
    option_type = pd.factorize(frame["option_type"])[0]
    strike = frame["strike"].to_numpy(dtype=float)
    position = np.arange(n)
    # rows of one (expiry, strike, type) end up adjacent, the one to keep first (np.lexsort: last key first)
    order = np.lexsort((position, np.where(two_sided, ask - bid, np.inf), ~two_sided, option_type, strike, expiry))
    e, s, o = expiry[order], strike[order], option_type[order]
    same_strike = (s[1:] == s[:-1]) | (np.isnan(s[1:]) & np.isnan(s[:-1]))
    mask = np.zeros(n, dtype=bool)
    mask[order[1:]] = (e[1:] == e[:-1]) & same_strike & (o[1:] == o[:-1])
    return mask


def clean(frame: pd.DataFrame, *, settings: CleaningSettings = CleaningSettings()) -> CleaningResult:
    """Give every quote a status: "ok" (fitted) or the first reason of :data:`REASONS` that applies.

    Parameters
    ----------
    frame
        Quotes with ``expiry``, ``strike``, ``option_type`` ("C"/"P"), ``ttm`` (years, ACT/365), ``forward``
        (quote currency), ``discount``, ``bid``/``ask`` in the quote currency (NaN or ``<= 0`` = no quote) and
        the implied vols ``iv_bid``, ``iv_mid``, ``iv_ask`` (decimals, NaN where not computable).
    settings
        Thresholds.

    Returns
    -------
    CleaningResult
        Status per input row (same index) and the counts by reason.

    Raises
    ------
    SnapshotError
        When a required column is missing.

    Notes
    -----
    Rules, in precedence order: ``expired`` (``ttm <= 0``); ``near_expiry`` (``ttm * 365 < min_ttm_days``);
    ``no_forward``; ``duplicate`` (see :func:`duplicate_mask`); ``itm`` (with ``otm_only``: an in-the-money
    quote whose out-of-the-money partner at the same strike is kept, i.e. passes every rule; it is reported as
    ``itm`` whatever else is wrong with it, since that is why it is not fitted); ``no_bid``; ``no_ask``;
    ``crossed`` (``bid > ask``); ``locked`` (``bid == ask``); ``above_max_price`` (``bid > D F`` for a call,
    ``bid > D K`` for a put, beyond the tolerance); ``below_intrinsic`` (``ask < D max(F - K, 0)`` for a call,
    ``ask < D max(K - F, 0)`` for a put, beyond the tolerance); ``wide_spread``; ``wide_vol_spread``;
    ``iv_failed`` (no mid vol although every check above passed). Out of the money: calls with ``K >= F``,
    puts with ``K < F``.
    """
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise SnapshotError(f"cannot clean quotes without column(s) {', '.join(missing)}", column=missing[0])

    t = frame["ttm"].to_numpy(dtype=float)
    K = frame["strike"].to_numpy(dtype=float)
    F = frame["forward"].to_numpy(dtype=float)
    D = frame["discount"].to_numpy(dtype=float)
    bid = frame["bid"].to_numpy(dtype=float)
    ask = frame["ask"].to_numpy(dtype=float)
    is_call = (frame["option_type"] == "C").to_numpy()
    iv_bid = frame["iv_bid"].to_numpy(dtype=float)
    iv_mid = frame["iv_mid"].to_numpy(dtype=float)
    iv_ask = frame["iv_ask"].to_numpy(dtype=float)

    has_bid = np.isfinite(bid) & (bid > 0.0)
    has_ask = np.isfinite(ask) & (ask > 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        tol = settings.price_tolerance * D * F
        max_price = D * np.where(is_call, F, K)
        intrinsic = D * np.maximum(np.where(is_call, F - K, K - F), 0.0)
        mid = 0.5 * (bid + ask)
        rel_spread = (ask - bid) / mid
        # A bid without an implied vol (at or under the intrinsic value) says "vol 0 or less": the spread in
        # vol is then at least the ask vol.
        vol_spread = iv_ask - np.where(np.isfinite(iv_bid), iv_bid, 0.0)

    before_itm = {
        "expired": ~(t > 0.0),
        "near_expiry": t * 365.0 < settings.min_ttm_days,
        "no_forward": ~(np.isfinite(F) & (F > 0.0) & np.isfinite(D) & (D > 0.0)),
        "duplicate": duplicate_mask(frame),
    }
    quote_rules = {
        "no_bid": ~has_bid,
        "no_ask": ~has_ask,
        "crossed": bid > ask,
        "locked": bid == ask,
        "above_max_price": bid > max_price + tol,
        "below_intrinsic": ask < intrinsic - tol,
        "wide_spread": rel_spread > settings.max_rel_spread,
        "wide_vol_spread": vol_spread > settings.max_vol_spread,  # no ask vol: NaN, not checked
        "iv_failed": ~np.isfinite(iv_mid),
    }
    rules = before_itm | quote_rules
    status = np.select(list(rules.values()), list(rules), default=OK).astype(object)

    if settings.otm_only:
        otm = np.where(is_call, K >= F, K < F)
        otm_kept_at_strike = pd.DataFrame(
            {"expiry": frame["expiry"].array, "strike": K, "flag": (status == OK) & otm}
        ).groupby(["expiry", "strike"], sort=False)["flag"].transform("any").to_numpy()
        passed_before_itm = ~np.logical_or.reduce(list(before_itm.values()))
        status[passed_before_itm & ~otm & otm_kept_at_strike] = "itm"

    status_series = pd.Series(status, index=frame.index, name="status", dtype=object)
    counts = status_series.value_counts()
    report = DropReport(
        counts={r: int(counts[r]) for r in REASONS if counts.get(r, 0)},
        n_input=len(frame),
        n_kept=int(counts.get(OK, 0)),
    )
    return CleaningResult(status=status_series, report=report)
