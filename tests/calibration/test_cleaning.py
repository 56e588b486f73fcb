"""Quote cleaning: each reason on hand-built rows, precedence, out-of-the-money selection, duplicates, the
DropReport round trip, and the real Deribit samples."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tests.calibration.test_forwards import _btc_frame

from calibration.black import black_price
from calibration.cleaning import (
    OK,
    REASONS,
    CleaningSettings,
    DropReport,
    clean,
    duplicate_mask,
)
from calibration.errors import SnapshotError
from calibration.forwards import infer_forwards, to_quote_currency

EXPIRY = pd.Timestamp("2026-04-03 08:00", tz="UTC")
F, D, T = 100.0, 0.99, 0.25
TOL = CleaningSettings().price_tolerance * D * F


def _quote(strike: float = 110.0, option_type: str = "C", **changes) -> dict:
    """A clean out-of-the-money quote: Black price at 50 % vol, spread 6 % of the premium, vols 49/50/51 %."""
    price = float(black_price(F, strike, T, 0.5, is_call=option_type == "C", discount=D))
    row = {
        "expiry": EXPIRY, "strike": strike, "option_type": option_type, "ttm": T, "forward": F, "discount": D,
        "bid": 0.97 * price, "ask": 1.03 * price, "iv_bid": 0.49, "iv_mid": 0.50, "iv_ask": 0.51,
    }
    row.update(changes)
    return row


def _frame(*rows: dict) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def _status(*rows: dict, **settings) -> list[str]:
    return list(clean(_frame(*rows), settings=CleaningSettings(**settings)).status)


# ------------------------------------------------------------------------------------------------ each reason

CASES = {
    "expired": [_quote(ttm=0.0)],
    "near_expiry": [_quote(ttm=0.5 / 365.0)],
    "no_forward": [_quote(forward=np.nan)],
    "duplicate": [_quote(), _quote(bid=0.9 * _quote()["bid"])],  # the second, wider copy
    "itm": [_quote(strike=90.0, option_type="C"), _quote(strike=90.0, option_type="P")],
    "no_bid": [_quote(bid=np.nan)],
    "no_ask": [_quote(ask=np.nan)],
    "crossed": [_quote(bid=2.0, ask=1.9)],
    "locked": [_quote(bid=2.0, ask=2.0)],
    "above_max_price": [_quote(bid=D * F * 1.01, ask=D * F * 1.02)],
    "below_intrinsic": [_quote(strike=80.0, option_type="C", bid=D * 20.0 - 0.5, ask=D * 20.0 - 0.2)],
    "wide_spread": [_quote(bid=0.05, ask=0.6)],
    "wide_vol_spread": [_quote(iv_bid=0.40, iv_ask=0.60)],
    "iv_failed": [_quote(iv_mid=np.nan)],
}


def test_every_reason_has_a_case():
    assert set(CASES) == set(REASONS)


@pytest.mark.parametrize("reason", list(CASES))
def test_each_reason_is_triggered_and_counted(reason):
    good = _quote(strike=120.0)  # a clean quote alongside, at another strike
    frame = _frame(good, *CASES[reason])
    result = clean(frame)
    assert result.status.iloc[0] == OK
    assert list(result.status.iloc[1:]).count(reason) == 1
    assert result.report.counts == {reason: 1}
    assert result.report.n_input == len(frame)
    assert result.report.n_kept == len(frame) - 1
    assert result.report.n_dropped == 1


def test_zero_bid_or_ask_is_no_quote():
    assert _status(_quote(bid=0.0), _quote(strike=120.0, ask=0.0)) == ["no_bid", "no_ask"]


def test_put_bounds():
    put_max = _quote(strike=90.0, option_type="P", bid=D * 90.0 + 2 * TOL, ask=D * 90.0 + 3 * TOL)
    put_intrinsic = _quote(strike=130.0, option_type="P", bid=D * 30.0 - 1.0, ask=D * 30.0 - 2 * TOL)
    assert _status(put_max, put_intrinsic) == ["above_max_price", "below_intrinsic"]


def test_bounds_have_a_small_tolerance():
    # ITM calls without an OTM partner: an ask just under the discounted intrinsic value is tolerated.
    inside = _quote(strike=80.0, bid=D * 20.0 - 1.0, ask=D * 20.0 - 0.5 * TOL, iv_bid=np.nan)
    outside = _quote(strike=85.0, bid=D * 15.0 - 1.0, ask=D * 15.0 - 2.0 * TOL)
    at_max = _quote(strike=1e-3, bid=D * F + 0.5 * TOL, ask=D * F + TOL)
    assert _status(inside, outside, at_max) == ["wide_vol_spread", "below_intrinsic", OK]
    assert _status(inside, outside, at_max, price_tolerance=0.0) == [
        "below_intrinsic", "below_intrinsic", "above_max_price",
    ]


def test_spread_thresholds():
    # tick-quantised wings: 0.0001 / 0.0002 coin (0.67 of the mid) and 0.0001 / 0.0005 (1.33) are kept
    tick = 0.0001 * 2000.0
    wings = [
        _quote(strike=200.0, bid=tick, ask=2 * tick, iv_bid=1.00, iv_mid=1.04, iv_ask=1.08),
        _quote(strike=210.0, bid=tick, ask=5 * tick, iv_bid=1.00, iv_mid=1.07, iv_ask=1.14),
        _quote(strike=220.0, bid=tick, ask=8 * tick, iv_bid=1.00, iv_mid=1.07, iv_ask=1.14),
    ]
    assert _status(*wings) == [OK, OK, "wide_spread"]
    assert _status(*wings, max_rel_spread=0.5) == ["wide_spread"] * 3
    vol = [_quote(iv_bid=0.40, iv_ask=0.54), _quote(strike=120.0, iv_bid=0.40, iv_ask=0.56)]
    assert _status(*vol) == [OK, "wide_vol_spread"]
    assert _status(*vol, max_vol_spread=0.2) == [OK, OK]


def test_bid_without_vol_counts_as_zero_vol():
    # A bid at or under intrinsic value has no implied vol: the vol spread is at least the ask vol.
    assert _status(_quote(iv_bid=np.nan, iv_ask=0.51)) == ["wide_vol_spread"]
    assert _status(_quote(iv_bid=np.nan, iv_ask=0.12)) == [OK]
    # Without an ask vol the check is skipped (the mid vol decides).
    assert _status(_quote(iv_ask=np.nan)) == [OK]


def test_near_expiry_threshold_in_days():
    rows = [_quote(ttm=0.9 / 365.0), _quote(strike=120.0, ttm=1.1 / 365.0)]
    assert _status(*rows) == ["near_expiry", OK]
    assert _status(*rows, min_ttm_days=0.5) == [OK, OK]
    assert _status(*rows, min_ttm_days=2.0) == ["near_expiry", "near_expiry"]


# -------------------------------------------------------------------------------------------------- precedence


def test_reason_order_is_fixed():
    assert list(REASONS) == [
        "expired", "near_expiry", "no_forward", "duplicate", "itm", "no_bid", "no_ask", "crossed", "locked",
        "above_max_price", "below_intrinsic", "wide_spread", "wide_vol_spread", "iv_failed",
    ]


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (_quote(ttm=-0.01, bid=np.nan, iv_mid=np.nan), "expired"),
        (_quote(ttm=0.1 / 365.0, forward=np.nan), "near_expiry"),
        (_quote(forward=np.nan, bid=np.nan), "no_forward"),
        (_quote(bid=np.nan, ask=np.nan), "no_bid"),
        (_quote(ask=np.nan, iv_mid=np.nan), "no_ask"),
        (_quote(bid=5.0, ask=1.0, iv_bid=0.1, iv_ask=0.9), "crossed"),
        (_quote(bid=D * F * 1.1, ask=D * F * 1.1), "locked"),
        (_quote(bid=D * F * 1.1, ask=D * F * 1.2, iv_mid=np.nan), "above_max_price"),
        (_quote(strike=50.0, bid=10.0, ask=30.0, iv_bid=np.nan, iv_mid=np.nan), "below_intrinsic"),
        (_quote(bid=0.05, ask=0.6, iv_bid=0.1, iv_ask=0.9), "wide_spread"),
        (_quote(iv_bid=0.1, iv_ask=0.9, iv_mid=np.nan), "wide_vol_spread"),
    ],
)
def test_first_reason_wins(row, expected):
    assert _status(row) == [expected]


def test_duplicate_reported_before_its_own_faults():
    assert _status(_quote(), _quote(bid=np.nan)) == [OK, "duplicate"]


def test_itm_reported_before_its_own_faults_when_otm_partner_is_kept():
    itm_call = _quote(strike=90.0, option_type="C", bid=np.nan)
    otm_put = _quote(strike=90.0, option_type="P")
    assert _status(itm_call, otm_put) == ["itm", OK]
    # ... but expiry-level reasons still come first
    assert _status(_quote(strike=90.0, option_type="C", ttm=0.0), otm_put) == ["expired", OK]


# --------------------------------------------------------------------------------------------- OTM selection


def test_otm_side_is_kept_on_each_side_of_the_forward():
    rows = [
        _quote(strike=95.0, option_type="C"), _quote(strike=95.0, option_type="P"),
        _quote(strike=100.0, option_type="C"), _quote(strike=100.0, option_type="P"),  # K = F: the call
        _quote(strike=105.0, option_type="C"), _quote(strike=105.0, option_type="P"),
    ]
    assert _status(*rows) == ["itm", OK, OK, "itm", OK, "itm"]
    assert _status(*rows, otm_only=False) == [OK] * 6


def test_itm_quote_is_kept_when_the_otm_quote_is_dropped_or_missing():
    rows = [
        _quote(strike=95.0, option_type="C"), _quote(strike=95.0, option_type="P", bid=np.nan),
        _quote(strike=90.0, option_type="C"),  # no put at 90 at all
    ]
    assert _status(*rows) == [OK, "no_bid", OK]


def test_otm_selection_is_per_expiry():
    later = EXPIRY + pd.Timedelta(days=30)
    rows = [
        _quote(strike=95.0, option_type="C"),
        _quote(strike=95.0, option_type="P", expiry=later),  # OTM put of another expiry: not a partner
    ]
    assert _status(*rows) == [OK, OK]


# ------------------------------------------------------------------------------------------------- duplicates


def test_duplicates_keep_the_tightest_two_sided_quote():
    base = _quote()
    wide = dict(base, bid=base["bid"] * 0.9)
    one_sided = dict(base, bid=np.nan)
    crossed = dict(base, bid=base["ask"] * 1.1)
    frame = _frame(one_sided, wide, crossed, base, dict(base))
    # the tightest (base) wins over earlier wider/one-sided/crossed rows; its exact copy after it is a duplicate
    assert list(duplicate_mask(frame)) == [True, True, True, False, True]
    assert list(clean(frame).status) == ["duplicate", "duplicate", "duplicate", OK, "duplicate"]


def test_duplicate_tie_keeps_the_first_row_and_only_same_key_counts():
    base = _quote()
    frame = _frame(base, dict(base), dict(base, option_type="P"), dict(base, strike=111.0))
    assert list(duplicate_mask(frame)) == [False, True, False, False]


def test_duplicates_without_any_two_sided_quote_keep_the_first():
    frame = _frame(_quote(bid=np.nan), _quote(ask=np.nan))
    assert list(clean(frame).status) == ["no_bid", "duplicate"]


def test_duplicate_mask_matches_a_row_by_row_reference_on_random_chains():
    """Against a plain loop: per (expiry, strike, type) -- missing values equal to each other -- the kept row is
    the first two-sided uncrossed quote of smallest spread, else the first row."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        frame = pd.DataFrame({
            "expiry": pd.to_datetime(rng.choice(["2026-01-01", "2026-02-01", None], n), utc=True),
            "strike": rng.choice([100.0, 110.0, np.nan], n),
            "option_type": pd.array(rng.choice(["C", "P", None], n), dtype="str"),
            "bid": rng.choice([1.0, 2.0, 0.0, np.nan, 1.5], n),
            "ask": rng.choice([1.0, 2.0, 2.5, np.nan], n),
        })
        expected = np.zeros(n, dtype=bool)
        best: dict[tuple, tuple] = {}
        for i, row in enumerate(frame.itertuples(index=False)):
            key = tuple("<missing>" if pd.isna(v) else v for v in (row.expiry, row.strike, row.option_type))
            two_sided = np.isfinite(row.bid) and np.isfinite(row.ask) and row.bid > 0.0 and row.ask >= row.bid
            rank = (not two_sided, row.ask - row.bid if two_sided else np.inf, i)
            if key in best:
                expected[max(best[key], rank)[2]] = True
                best[key] = min(best[key], rank)
            else:
                best[key] = rank
        assert list(duplicate_mask(frame)) == list(expected)


# ---------------------------------------------------------------------------------------------- report / API


def test_drop_report_round_trip_and_frame():
    frame = _frame(
        _quote(bid=np.nan), _quote(strike=111.0, ask=np.nan), _quote(strike=112.0, bid=np.nan),
        _quote(strike=113.0, ttm=0.0), _quote(strike=114.0),
    )
    report = clean(frame).report
    assert report.counts == {"expired": 1, "no_bid": 2, "no_ask": 1}
    assert list(report.counts) == ["expired", "no_bid", "no_ask"]  # precedence order
    assert (report.n_input, report.n_kept) == (5, 1)

    again = DropReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert again == report
    assert list(again.counts) == list(report.counts)

    table = report.to_frame()
    assert list(table.columns) == ["reason", "description", "count"]
    assert list(table["reason"]) == ["expired", "no_bid", "no_ask"]
    assert list(table["count"]) == [1, 2, 1]
    assert table["description"].iloc[1] == "no bid quote"


def test_drop_report_from_dict_orders_and_validates():
    report = DropReport.from_dict({"counts": {"no_ask": 1, "expired": 2}, "n_input": 10, "n_kept": 7})
    assert list(report.counts) == ["expired", "no_ask"]
    with pytest.raises(ValueError, match="unknown"):
        DropReport.from_dict({"counts": {"bogus": 1}, "n_input": 2, "n_kept": 1})
    with pytest.raises(ValueError, match="add up"):
        DropReport.from_dict({"counts": {"no_bid": 1}, "n_input": 5, "n_kept": 1})


def test_status_keeps_the_input_index():
    frame = _frame(_quote(), _quote(strike=120.0, bid=np.nan))
    frame.index = [17, 4]
    result = clean(frame)
    assert list(result.status.index) == [17, 4]
    assert list(result.keep) == [True, False]


def test_empty_frame():
    frame = _frame(_quote()).iloc[:0]
    result = clean(frame)
    assert result.report == DropReport(counts={}, n_input=0, n_kept=0)


def test_missing_column_is_an_error():
    with pytest.raises(SnapshotError, match="iv_mid"):
        clean(_frame(_quote()).drop(columns="iv_mid"))


def test_settings_are_validated_and_describable():
    with pytest.raises(ValueError):
        CleaningSettings(max_rel_spread=-1.0)
    rows = CleaningSettings().describe()
    assert [r["name"] for r in rows] == ["min_ttm_days", "max_rel_spread", "max_vol_spread", "price_tolerance",
                                         "otm_only"]


# -------------------------------------------------------------------------------------------------- real data


def _implied_vol(price, forward, strike, ttm, discount, is_call) -> np.ndarray:
    """Reference implied vol by bisection on Black-76 in log-vol (NaN outside the no-arbitrage bounds)."""
    lo = np.full(price.shape, np.log(1e-4))
    hi = np.full(price.shape, np.log(20.0))
    for _ in range(70):
        mid = 0.5 * (lo + hi)
        up = black_price(forward, strike, ttm, np.exp(mid), is_call=is_call, discount=discount) < price
        lo, hi = np.where(up, mid, lo), np.where(up, hi, mid)
    intrinsic = discount * np.maximum(np.where(is_call, forward - strike, strike - forward), 0.0)
    upper = discount * np.where(is_call, forward, strike)
    with np.errstate(invalid="ignore"):
        ok = (price > intrinsic) & (price < upper) & (ttm > 0.0)
    vol = np.exp(0.5 * (lo + hi))
    return np.where(ok & (vol > 2e-4) & (vol < 19.0), vol, np.nan)


def _prepared(frame: pd.DataFrame) -> pd.DataFrame:
    """forwards -> quote currency -> bid/mid/ask vols, as the snapshot pipeline does."""
    quotes = to_quote_currency(frame.drop(columns=["iv_bid", "iv_ask"], errors="ignore"), infer_forwards(frame))
    quotes["mid"] = 0.5 * (quotes["bid"] + quotes["ask"])
    args = (
        quotes["forward"].to_numpy(), quotes["strike"].to_numpy(dtype=float), quotes["ttm"].to_numpy(),
        quotes["discount"].to_numpy(), (quotes["option_type"] == "C").to_numpy(),
    )
    for side in ("bid", "mid", "ask"):
        quotes[f"iv_{side}"] = _implied_vol(quotes[side].to_numpy(dtype=float), *args)
    return quotes


def test_eth_sample_keeps_the_chain(shared_data):
    path = shared_data / "eth_deribit_2026-05-21.csv"
    if not path.exists():
        pytest.skip(f"{path.name} not found in {shared_data}")
    frame = pd.read_csv(path, parse_dates=["snapshot_time", "expiry"])
    frame["ttm"] = (frame["expiry"] - frame["snapshot_time"]).dt.total_seconds() / (365.0 * 86400.0)
    quotes = _prepared(frame)
    result = clean(quotes)
    report = result.report
    assert report.n_input == 292
    assert report.n_kept / report.n_input > 0.9
    # The only expiry under a day (22 hours) goes; nothing else is junk in this out-of-the-money sample.
    assert report.counts == {"near_expiry": int((frame["ttm"] * 365.0 < 1.0).sum())}
    # Tick-quantised wings (bid of one or two ticks) of the other expiries are all kept.
    wings = (quotes["bid_native"] <= 0.0002) & (quotes["ttm"] * 365.0 >= 1.0)
    assert wings.sum() >= 10
    assert (result.status[wings] == OK).all()


def test_btc_sample_drops_junk_and_keeps_otm_quotes(shared_data):
    path = shared_data / "btc_deribit_book_summary_2026-08-01.json.gz"
    if not path.exists():
        pytest.skip(f"{path.name} not found in {shared_data}")
    quotes = _prepared(_btc_frame(path))
    result = clean(quotes)
    counts = result.report.counts
    status = result.status
    otm = np.where(quotes["option_type"] == "C", quotes["strike"] >= quotes["forward"],
                   quotes["strike"] < quotes["forward"])
    quoted_otm = otm & quotes["bid"].notna() & (quotes["ttm"] * 365.0 >= 1.0)
    assert (status[quoted_otm] == OK).mean() > 0.95
    no_bid = quotes["bid"].isna() & (quotes["ttm"] * 365.0 >= 1.0)
    assert counts["no_bid"] > 0
    assert status[no_bid].isin(["no_bid", "itm"]).all()
    assert counts["itm"] > 0.3 * len(quotes)  # calls and puts at the same strikes: the ITM side goes
    # at most one quote (call or put) per strike is fitted
    assert quotes[status == OK].groupby(["expiry", "strike"]).size().max() == 1
    # the kept quotes are sane: two-sided, within the spread limits
    kept = quotes[status == OK]
    assert ((kept["ask"] - kept["bid"]) / kept["mid"] <= CleaningSettings().max_rel_spread).all()
    assert (kept["iv_ask"] - kept["iv_bid"] <= CleaningSettings().max_vol_spread).all()
