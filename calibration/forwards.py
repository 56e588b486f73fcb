"""Forward and discount factor per expiry from put-call parity; inverse (coin) premiums to the quote currency.

Put-call parity at strike ``K`` for an expiry with forward ``F`` and discount factor ``D``:

* linear premiums (quote currency, e.g. SPX in USD): ``C - P = D F - D K``;
* inverse premiums (units of the underlying, e.g. Deribit in coin): ``c - p = D (1 - K / F)``, where ``D`` is
  then the discount factor of the coin (Deribit prices it at 1).

Both are straight lines in ``K``. A bid/ask pair bounds the line at each strike:
``C_bid - P_ask <= D (F - K) <= C_ask - P_bid`` (divided by ``F`` for inverse premiums). Only strikes where the
call and the put are both quoted two-sided and uncrossed count. Every fit is robust: a Theil-Sen (or median)
start, then Tukey-bisquare reweighted least squares on residuals measured in half-widths of the parity band, so a
few bad quotes get zero weight instead of moving the line, and tight pairs count more than wide ones.

Per expiry:

1. ``D``: a joint fit of ``F`` and ``D`` over the ``n_strikes_discount`` pairs nearest the money (D needs strike
   range). It is used when plausible (implied rate within ``max_abs_rate``) and significantly different from
   the rate's ``exp(-r t)`` (``rate`` column, else ``fallback_rate``); otherwise, and always for very short
   expiries or few pairs, ``D = exp(-r t)``.
2. ``F``: a fit of ``F`` alone with that ``D`` over the ``n_strikes`` pairs nearest the money, re-centred once on
   the fitted forward, checked to lie near the first guess (venue forward, else spot carried at the rate).
3. Fallbacks when parity is not usable: the venue's forward (``forward`` column), then spot carried at the rate.

The table returned says, per expiry, what was used, why, and how well parity held.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from calibration.cleaning import duplicate_mask
from calibration.errors import SnapshotError

#: Values of the ``method`` column of :func:`infer_forwards`, with what they mean.
FORWARD_METHODS: dict[str, str] = {
    "parity": "fitted to put-call parity",
    "venue_forward": "the venue's forward (parity not usable)",
    "spot_rate": "spot carried at the rate (no parity, no venue forward)",
    "none": "no forward: no usable parity, venue forward or spot",
}

#: Values of the ``discount_source`` column of :func:`infer_forwards`.
DISCOUNT_SOURCES: dict[str, str] = {
    "parity": "fitted to put-call parity",
    "rate_column": "exp(-r t) with the snapshot's rate",
    "fallback_rate": "exp(-r t) with the fallback rate",
}

#: Columns of the table returned by :func:`infer_forwards`, in order.
FORWARD_COLUMNS: tuple[str, ...] = (
    "expiry", "ttm", "forward", "discount", "discount_se", "rate", "method", "discount_source", "n_pairs",
    "n_outliers", "parity_rmse", "parity_band_share", "venue_forward", "forward_vs_venue_bp", "spot", "inverse",
    "note",
)

_TUKEY_C = 4.685  # bisquare tuning constant (95 % efficiency under normal errors)
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class ForwardSettings:
    """How forwards and discount factors are inferred from put-call parity.

    Attributes
    ----------
    n_strikes
        Number of call/put pairs nearest the money (by ``|ln(K / F0)|`` around the first guess ``F0``) used to
        fit the forward of an expiry.
    n_strikes_discount
        Number of pairs nearest the money used to fit ``D`` (jointly with ``F``). ``D`` is the slope (linear
        premiums) or the intercept at ``K = 0`` (inverse premiums) of the parity line, so it needs a wider
        strike range than ``F``, which is then fitted on the ``n_strikes`` nearest pairs with that ``D``.
    min_pairs
        Fewest usable pairs for any parity fit; with fewer the expiry falls back to the venue forward, then to
        spot carried at the rate.
    min_pairs_for_discount
        Fewest pairs (and at least 3 distinct strikes) for fitting ``D``; with fewer ``D = exp(-r t)``.
    min_ttm_for_rate
        Years. Below this time to expiry ``D`` is not inferred (``exp(-r t)`` with the ``rate`` column, else
        ``fallback_rate``) and only ``F`` is fitted: over a few days parity pins ``D`` far less well than the
        rate is known. Default one week.
    fallback_rate
        Continuously compounded rate per year (decimal) used when the snapshot has no ``rate`` column and ``D``
        is not inferred, and to carry spot when there is neither parity nor a venue forward.
    max_abs_rate
        Plausibility bound on the rate implied by a fitted ``D``: ``|-ln(D) / t| <= max_abs_rate`` (decimal per
        year). Outside it ``D = exp(-r t)``.
    max_forward_deviation
        Plausibility bound on the fitted forward: ``|ln(F / F0)| <= max_forward_deviation + max_abs_rate * t``
        around the first guess ``F0`` (venue forward, else spot carried at the rate). Dimensionless.
    discount_z
        ``D`` is taken from parity only when it differs from the rate's ``exp(-r t)`` by more than
        ``discount_z`` standard errors of the fitted ``D`` (from the weighted parity residuals); otherwise the
        rate's ``D`` is kept. Parity pins ``F`` well but ``D`` poorly (for coin-margined options ``D`` is an
        extrapolation to ``K = 0``), and an error in ``D`` scales every premium and so every implied vol.
    """

    n_strikes: int = 8
    n_strikes_discount: int = 20
    min_pairs: int = 2
    min_pairs_for_discount: int = 4
    min_ttm_for_rate: float = 7.0 / 365.0
    fallback_rate: float = 0.0
    max_abs_rate: float = 0.25
    max_forward_deviation: float = 0.05
    discount_z: float = 3.0

    def __post_init__(self) -> None:
        if self.n_strikes < 1 or self.n_strikes_discount < 1:
            raise ValueError(f"n_strikes and n_strikes_discount must be at least 1, got {self.n_strikes}, "
                             f"{self.n_strikes_discount}")
        if self.min_pairs < 1:
            raise ValueError(f"min_pairs must be at least 1, got {self.min_pairs}")
        if self.min_pairs_for_discount < 3:
            raise ValueError(f"min_pairs_for_discount must be at least 3, got {self.min_pairs_for_discount}")
        if min(self.max_abs_rate, self.max_forward_deviation, self.discount_z) <= 0.0:
            raise ValueError("max_abs_rate, max_forward_deviation and discount_z must be positive")


@dataclass(frozen=True)
class _Pairs:
    """Call/put pairs of one expiry at the same strike, both sides quoted and not crossed (native units)."""

    strike: np.ndarray
    lower: np.ndarray  # C_bid - P_ask
    upper: np.ndarray  # C_ask - P_bid
    mid: np.ndarray  # C_mid - P_mid

    def take(self, idx: np.ndarray) -> _Pairs:
        return _Pairs(self.strike[idx], self.lower[idx], self.upper[idx], self.mid[idx])

    def __len__(self) -> int:
        return int(self.strike.size)


@dataclass(frozen=True)
class _Columns:
    """The quote columns parity needs, as arrays (one row per quote; optional columns None when absent)."""

    ttm: np.ndarray
    strike: np.ndarray
    is_call: np.ndarray
    is_put: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    underlying_price: np.ndarray
    inverse: np.ndarray
    forward: np.ndarray | None
    rate: np.ndarray | None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> _Columns:
        def optional(name: str) -> np.ndarray | None:
            return frame[name].to_numpy(dtype=float) if name in frame.columns else None

        option_type = frame["option_type"]
        return cls(
            ttm=frame["ttm"].to_numpy(dtype=float),
            strike=frame["strike"].to_numpy(dtype=float),
            is_call=(option_type == "C").to_numpy(dtype=bool),
            is_put=(option_type == "P").to_numpy(dtype=bool),
            bid=frame["bid"].to_numpy(dtype=float),
            ask=frame["ask"].to_numpy(dtype=float),
            underlying_price=frame["underlying_price"].to_numpy(dtype=float),
            inverse=_inverse_flags(frame),
            forward=optional("forward"),
            rate=optional("rate"),
        )

    def take(self, idx: np.ndarray) -> _Columns:
        return _Columns(**{name: None if value is None else value[idx] for name, value in vars(self).items()})


@dataclass(frozen=True)
class _Discount:
    """The discount factor of an expiry, where it came from, and the parity fit of D when one was made."""

    value: float
    source: str
    parity_value: float = np.nan
    parity_se: float = np.nan
    note: str = ""


def infer_forwards(frame: pd.DataFrame, *, settings: ForwardSettings = ForwardSettings()) -> pd.DataFrame:
    """Forward and discount factor of every expiry, from put-call parity with fallbacks.

    Parameters
    ----------
    frame
        Canonical quote frame with ``ttm`` (years, ACT/365): columns ``expiry``, ``ttm``, ``strike``,
        ``option_type`` ("C"/"P"), ``bid``, ``ask`` (native premiums: quote currency, or units of the underlying
        where ``inverse``; NaN or ``<= 0`` is no quote), ``underlying_price``, and optionally ``forward``,
        ``inverse``, ``rate``.
    settings
        Fit and fallback settings.

    Returns
    -------
    pandas.DataFrame
        One row per expiry, ascending, columns :data:`FORWARD_COLUMNS`:
        ``forward`` (quote currency), ``discount`` (dimensionless), ``discount_se`` (standard error of the
        parity fit of ``D`` when one was made, else NaN; reported even when that fit was not used), ``rate``
        (``-ln(D) / t``, continuously compounded per year; NaN when ``t <= 0``), ``method``
        (:data:`FORWARD_METHODS`), ``discount_source`` (:data:`DISCOUNT_SOURCES`), ``n_pairs`` (pairs nearest
        the money in the forward fit, or in the diagnostics when parity was not used), ``n_outliers`` (of those,
        given zero weight by the robust fit), ``parity_rmse`` (root mean square of the mid parity residuals
        ``(C_mid - P_mid) - D (F - K)`` against the forward and discount used, quote currency; NaN without
        pairs), ``parity_band_share`` (share of those pairs whose ``D (F - K)`` lies inside
        ``[C_bid - P_ask, C_ask - P_bid]``), ``venue_forward`` (given forward, NaN if none),
        ``forward_vs_venue_bp`` (``1e4 (F / venue - 1)``), ``spot`` (median ``underlying_price``), ``inverse``
        and ``note`` (why ``D`` or ``F`` did not come from parity; empty when both did).

    Raises
    ------
    SnapshotError
        When a required column is missing, or an expiry mixes inverse and linear quotes.
    """
    missing = [c for c in ("expiry", "ttm", "strike", "option_type", "bid", "ask", "underlying_price")
               if c not in frame.columns]
    if missing:
        raise SnapshotError(f"cannot infer forwards without column(s) {', '.join(missing)}", column=missing[0])

    data = frame.loc[~duplicate_mask(frame)]
    codes, expiries = pd.factorize(data["expiry"], sort=True)  # NaT: code -1, no group (as groupby)
    columns = _Columns.from_frame(data)
    order = np.argsort(codes, kind="stable")  # rows of each expiry stay in file order
    starts = np.searchsorted(codes[order], np.arange(len(expiries) + 1))
    rows = [_infer_expiry(expiries[i], columns.take(order[starts[i]:starts[i + 1]]), settings)
            for i in range(len(expiries))]
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in FORWARD_COLUMNS})
    return pd.DataFrame(rows, columns=list(FORWARD_COLUMNS))


def to_quote_currency(frame: pd.DataFrame, forwards: pd.DataFrame) -> pd.DataFrame:
    """Attach each quote's forward and discount, and convert inverse premiums to the quote currency.

    Parameters
    ----------
    frame
        Canonical quote frame (``bid``, ``ask`` native; ``inverse`` optional, False when absent).
    forwards
        Table of :func:`infer_forwards` (``expiry``, ``forward``, ``discount``).

    Returns
    -------
    pandas.DataFrame
        A copy of ``frame`` with ``forward`` and ``discount`` taken from the table for the row's expiry (the
        venue's forward stays in the table as ``venue_forward``), the native premiums kept in ``bid_native``
        and ``ask_native`` (and ``last_native`` when there is a ``last`` column), and ``bid``, ``ask`` (and
        ``last``) in the quote currency: native premium times the forward for inverse rows, unchanged otherwise.
    """
    out = frame.copy()
    table = forwards.set_index("expiry")
    out["forward"] = out["expiry"].map(table["forward"]).to_numpy(dtype=float)
    out["discount"] = out["expiry"].map(table["discount"]).to_numpy(dtype=float)
    inverse = _inverse_flags(out)
    factor = np.where(inverse, out["forward"].to_numpy(dtype=float), 1.0)
    for column in ("bid", "ask", "last"):
        if column in out.columns:
            native = out[column].to_numpy(dtype=float)
            out[f"{column}_native"] = native
            out[column] = native * factor
    return out


# ----------------------------------------------------------------------------------------------------------------
# one expiry


def _infer_expiry(expiry: pd.Timestamp, group: _Columns, settings: ForwardSettings) -> dict:
    t = _median_or_nan(group.ttm)
    inverse_flags = group.inverse
    if inverse_flags.any() and not inverse_flags.all():
        raise SnapshotError(
            f"expiry {pd.Timestamp(expiry):%Y-%m-%d %H:%M} mixes inverse (coin) and linear premiums; "
            "split the file by settlement currency",
            column="inverse",
        )
    inverse = bool(inverse_flags.all())
    spot = _median_or_nan(group.underlying_price)
    venue = _median_or_nan(group.forward) if group.forward is not None else np.nan
    venue = venue if venue > 0.0 else np.nan
    given_rate = _median_or_nan(group.rate) if group.rate is not None else np.nan
    rate = given_rate if np.isfinite(given_rate) else settings.fallback_rate
    rate_source = "rate_column" if np.isfinite(given_rate) else "fallback_rate"
    carried = spot * np.exp(rate * t) if spot > 0.0 and t > 0.0 else spot

    pairs = _pairs(group)
    first_guess = venue if np.isfinite(venue) else carried
    if not np.isfinite(first_guess) and len(pairs):
        first_guess = float(pairs.strike[np.argmin(np.abs(pairs.mid))])  # C = P nearest the forward

    discount = _Discount(value=float(np.exp(-rate * t)) if t > 0.0 else 1.0, source=rate_source)
    forward, outliers, selected = np.nan, 0, pairs.take(np.arange(0))
    if not t > 0.0:
        note = "expired: no parity fit"
    elif len(pairs) < settings.min_pairs:
        note = f"{len(pairs)} usable call/put pair(s), fewer than {settings.min_pairs}"
    else:
        discount = _parity_discount(pairs, t, inverse, first_guess, discount, settings)
        forward, outliers, selected, note = _parity_forward(pairs, t, inverse, first_guess, discount.value, settings)
        note = "; ".join(n for n in (discount.note, note) if n)

    if np.isfinite(forward):
        method = "parity"
    else:
        if discount.source == "parity":  # parity gave no forward: its D is not trusted either
            discount = _Discount(value=float(np.exp(-rate * t)), source=rate_source,
                                 parity_value=discount.parity_value, parity_se=discount.parity_se)
        method, forward = (
            ("venue_forward", venue) if np.isfinite(venue)
            else ("spot_rate", carried) if np.isfinite(carried)
            else ("none", np.nan)
        )
        selected = selected if len(selected) else _nearest(pairs, first_guess, settings.n_strikes)

    rmse, band_share = _parity_quality(selected, forward, discount.value, inverse)
    return {
        "expiry": expiry,
        "ttm": t,
        "forward": forward,
        "discount": discount.value,
        "discount_se": discount.parity_se,
        "rate": 0.0 - np.log(discount.value) / t if t > 0.0 else np.nan,  # 0.0 - : no "-0.0"
        "method": method,
        "discount_source": discount.source,
        "n_pairs": len(selected),
        "n_outliers": outliers,
        "parity_rmse": rmse,
        "parity_band_share": band_share,
        "venue_forward": venue,
        "forward_vs_venue_bp": 1e4 * (forward / venue - 1.0) if np.isfinite(venue) else np.nan,
        "spot": spot,
        "inverse": inverse,
        "note": note,
    }


def _parity_discount(
    pairs: _Pairs, t: float, inverse: bool, first_guess: float, fixed: _Discount, settings: ForwardSettings
) -> _Discount:
    """D from a joint fit of F and D over the ``n_strikes_discount`` pairs nearest the money, when it is
    plausible and significantly different from the rate's D; otherwise the rate's D with a note why."""
    source = fixed.source.replace("_", " ")
    wide = _nearest(pairs, first_guess, settings.n_strikes_discount)
    if t < settings.min_ttm_for_rate:
        return replace(fixed, note=f"D from the {source}: under {settings.min_ttm_for_rate * 365:.3g} days")
    if len(wide) < settings.min_pairs_for_discount or np.unique(wide.strike).size < 3:
        return replace(fixed, note=f"D from the {source}: {len(wide)} pairs, "
                                   f"fewer than {settings.min_pairs_for_discount}")
    x = wide.strike / first_guess
    design = np.column_stack([np.ones_like(x), x])
    theta, _, cov = _robust_linear_fit(design, wide.mid, _half_widths(wide))
    a, b = theta[0], theta[1] / first_guess
    # linear: y = D F - D K  (D = -b) ; inverse: y = D - (D / F) K  (D = a) ; both: F = -a / b
    D, se = (a, np.sqrt(cov[0, 0])) if inverse else (-b, np.sqrt(cov[1, 1]) / first_guess)
    F = -a / b if b != 0.0 else np.nan
    if not (np.isfinite(D) and np.isfinite(F) and D > 0.0 and F > 0.0):
        return replace(fixed, note=f"D from the {source}: the parity fit of F and D failed")
    fitted = replace(fixed, parity_value=float(D), parity_se=float(se))
    rate = -np.log(D) / t
    if abs(rate) > settings.max_abs_rate or abs(np.log(F / first_guess)) > _max_log_deviation(t, settings):
        return replace(fitted, note=f"D from the {source}: parity gave an implausible D={D:.6g} "
                                    f"(rate {rate:+.2%}) with F={F:.6g}")
    if abs(D - fixed.value) <= settings.discount_z * se:
        return replace(fitted, note=f"D from the {source}: parity D={D:.5f} ± {se:.5f} is consistent "
                                    f"with {fixed.value:.5f}")
    return replace(fitted, value=float(D), source="parity")


def _parity_forward(
    pairs: _Pairs, t: float, inverse: bool, first_guess: float, discount: float, settings: ForwardSettings
) -> tuple[float, int, _Pairs, str]:
    """F from the ``n_strikes`` pairs nearest the money with D fixed, re-centred once on the fitted forward.

    Returns the forward (NaN when the fit fails or is implausible), the number of outliers, the pairs used and
    a note (empty on success).
    """
    centre, forward, outliers, used = first_guess, np.nan, 0, pairs.take(np.arange(0))
    for _ in range(2):
        near = _nearest(pairs, centre, settings.n_strikes)
        if len(used) and np.array_equal(near.strike, used.strike):
            break
        fitted, n_out = _fit_forward(near, inverse, discount)
        if not (np.isfinite(fitted) and abs(np.log(fitted / first_guess)) <= _max_log_deviation(t, settings)):
            if np.isfinite(forward):
                break  # keep the first fit
            return np.nan, 0, near, (f"parity forward {fitted:.6g} is implausible next to {first_guess:.6g}"
                                     if np.isfinite(fitted) else "the parity fit of F failed")
        forward, outliers, used, centre = fitted, n_out, near, fitted
    return float(forward), outliers, used, ""


def _fit_forward(pairs: _Pairs, inverse: bool, discount: float) -> tuple[float, int]:
    """Robust fit of F alone with D fixed; returns F (NaN on failure) and the number of outliers.

    Linear premiums: ``y + D K = D F`` is a location. Inverse premiums: ``y - D = -(D / F) K`` is a slope
    through the origin (fitted on ``x = K / K_mid`` for conditioning).
    """
    half = _half_widths(pairs)
    D = discount
    if inverse:
        scale = _median(pairs.strike)
        theta, weights, _ = _robust_linear_fit((pairs.strike / scale)[:, None], pairs.mid - D, half)
        forward = -D * scale / theta[0] if theta[0] < 0.0 else np.nan
    else:
        theta, weights, _ = _robust_linear_fit(np.ones((len(pairs), 1)), pairs.mid + D * pairs.strike, half)
        forward = theta[0] / D
    forward = forward if np.isfinite(forward) and forward > 0.0 else np.nan
    return float(forward), int(np.sum(weights == 0.0))


def _max_log_deviation(t: float, settings: ForwardSettings) -> float:
    return settings.max_forward_deviation + settings.max_abs_rate * max(t, 0.0)


def _robust_linear_fit(
    design: np.ndarray, y: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tukey-bisquare M-estimate of ``y ~ design @ theta`` with per-point residual scales.

    Starts from a Theil-Sen (two columns) or median (one column) estimate, then iterates weighted least squares.
    Residuals are divided by ``scale`` and by a robust spread of those ratios (at least 1, i.e. a point inside
    its band is never down-weighted by the spread estimate). Returns ``theta``, the final robustness weights
    (0 for rejected points) and the covariance of ``theta`` from the weighted residuals (infinite when there
    are too few points left to estimate it).
    """
    p = design.shape[1]
    theta = _theil_sen(design, y)
    weights = np.ones_like(y)
    for _ in range(50):
        u = (y - design @ theta) / scale
        spread = max(1.0, _MAD_TO_SIGMA * _median(np.abs(u)))
        r = u / (_TUKEY_C * spread)
        weights = np.where(np.abs(r) < 1.0, (1.0 - r * r) ** 2, 0.0)
        if np.count_nonzero(weights) < p:
            break
        w = np.sqrt(weights) / scale
        new, *_ = np.linalg.lstsq(design * w[:, None], y * w, rcond=None)
        converged = bool(np.all((np.abs(new - theta) <= 1e-15 + 1e-12 * np.abs(theta)) | (new == theta)))  # allclose
        theta = new
        if converged:
            break
    kept = np.count_nonzero(weights)
    cov = np.full((p, p), np.inf)
    if kept > p:
        w2 = weights / scale**2
        normal = design.T @ (design * w2[:, None])
        residual_var = float(np.sum(w2 * (y - design @ theta) ** 2)) / (kept - p)
        with np.errstate(divide="ignore", invalid="ignore"):
            cov = np.linalg.pinv(normal) * residual_var
    return theta, weights, cov


def _theil_sen(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Median-based start: ratio median for one column, Theil-Sen for ``[1, x]``."""
    if design.shape[1] == 1:
        x = design[:, 0]
        ok = x != 0.0
        return np.array([_median(y[ok] / x[ok])]) if ok.any() else np.array([0.0])
    x = design[:, 1]
    i, j = np.triu_indices(x.size, k=1)
    dx = x[j] - x[i]
    ok = dx != 0.0
    slope = _median((y[j] - y[i])[ok] / dx[ok])
    intercept = _median(y - slope * x)
    return np.array([intercept, slope])


def _half_widths(pairs: _Pairs) -> np.ndarray:
    """Half-width of each pair's parity band, floored so that locked quotes do not get infinite weight."""
    half = 0.5 * (pairs.upper - pairs.lower)
    positive = half[half > 0.0]
    floor = 0.1 * _median(positive) if positive.size else 0.0
    if floor <= 0.0:
        floor = 1e-9 * max(float(np.max(np.abs(pairs.mid))), 1e-12)
    return np.maximum(half, floor)


def _parity_quality(pairs: _Pairs, forward: float, discount: float, inverse: bool) -> tuple[float, float]:
    """RMS of mid parity residuals (quote currency) and share of pairs inside the parity band."""
    if not len(pairs) or not np.isfinite(forward):
        return np.nan, np.nan
    model = discount * (1.0 - pairs.strike / forward) if inverse else discount * (forward - pairs.strike)
    to_quote = forward if inverse else 1.0
    rmse = float(np.sqrt(np.mean((pairs.mid - model) ** 2))) * to_quote
    tol = 1e-12 * max(1.0, float(np.max(np.abs(model))))
    inside = (model >= pairs.lower - tol) & (model <= pairs.upper + tol)
    return rmse, float(np.mean(inside))


def _pairs(group: _Columns) -> _Pairs:
    """Strikes quoted two-sided and uncrossed on both the call and the put, with their parity bounds (in the
    order of the calls; strikes are unique per type once duplicates are removed)."""
    good = np.isfinite(group.bid) & np.isfinite(group.ask) & (group.bid > 0.0) & (group.ask >= group.bid)
    calls, puts = np.flatnonzero(good & group.is_call), np.flatnonzero(good & group.is_put)
    put_order = np.argsort(group.strike[puts], kind="stable")
    put_strikes = group.strike[puts][put_order]
    slot = np.minimum(np.searchsorted(put_strikes, group.strike[calls]), max(puts.size - 1, 0))
    matched = put_strikes[slot] == group.strike[calls] if puts.size else np.zeros(calls.size, dtype=bool)
    calls, puts = calls[matched], puts[put_order[slot[matched]]]
    c_bid, c_ask = group.bid[calls], group.ask[calls]
    p_bid, p_ask = group.bid[puts], group.ask[puts]
    return _Pairs(
        strike=group.strike[calls],
        lower=c_bid - p_ask,
        upper=c_ask - p_bid,
        mid=0.5 * (c_bid + c_ask) - 0.5 * (p_bid + p_ask),
    )


def _nearest(pairs: _Pairs, centre: float, n: int) -> _Pairs:
    """The ``n`` pairs with strikes nearest ``centre`` in log-moneyness."""
    distance = np.abs(np.log(pairs.strike / centre))
    return pairs.take(np.sort(np.argsort(distance, kind="stable")[:n]))


def _inverse_flags(frame: pd.DataFrame) -> np.ndarray:
    if "inverse" not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return frame["inverse"].fillna(False).astype(bool).to_numpy()


def _median_or_nan(values: np.ndarray) -> float:
    return _median(values[np.isfinite(values)])


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-D float array, bit for bit (NaN when empty or when any value is NaN), without its
    overhead on the few-element arrays of a parity fit."""
    n = values.size
    if n == 0:
        return np.nan
    ordered = np.sort(values)  # NaN sorts last
    if np.isnan(ordered[-1]):
        return np.nan
    half = n // 2
    return float(ordered[half]) if n % 2 else float((ordered[half - 1] + ordered[half]) / 2.0)
