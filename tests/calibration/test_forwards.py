"""Forwards and discounts from put-call parity: synthetic chains priced with Black-76 from a known F and D,
fallbacks, diagnostics, and the real Deribit samples."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings as hyp_settings, strategies as st

from calibration.black import black_price
from calibration.errors import SnapshotError
from calibration.forwards import FORWARD_COLUMNS, ForwardSettings, infer_forwards, to_quote_currency

ASOF = pd.Timestamp("2026-01-05 08:00", tz="UTC")


def _chain(
    forward: float,
    discount: float,
    ttm: float,
    strikes: np.ndarray,
    *,
    inverse: bool = False,
    rel_half_spread: float = 0.01,
    min_half_spread: float = 0.0,
    noise: float = 0.0,
    seed: int = 0,
    spot: float | None = None,
    venue_forward: float | None = None,
    rate: float | None = None,
    expiry: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Calls and puts at every strike, priced with Black-76 on a skewed smile; bid/ask around the true price.

    ``noise`` moves each mid by up to that fraction of its half-spread (uniform, seeded), keeping the quotes
    two-sided. Inverse premiums are the quote-currency price divided by the forward.
    """
    rng = np.random.default_rng(seed)
    K = np.repeat(np.asarray(strikes, dtype=float), 2)
    is_call = np.tile([True, False], len(strikes))
    vol = 0.5 - 0.3 * np.log(K / forward) + 0.8 * np.log(K / forward) ** 2
    price = black_price(forward, K, ttm, vol, is_call=is_call, discount=discount)
    if inverse:
        price = price / forward
    half = np.maximum(rel_half_spread * price, min_half_spread)
    mid = price + noise * half * rng.uniform(-1.0, 1.0, size=price.size)
    expiry = expiry if expiry is not None else ASOF + pd.Timedelta(seconds=round(ttm * 365 * 86400))
    frame = pd.DataFrame(
        {
            "snapshot_time": ASOF,
            "underlying": "TEST",
            "expiry": expiry,
            "strike": K,
            "option_type": np.where(is_call, "C", "P"),
            "bid": mid - half,
            "ask": mid + half,
            "underlying_price": spot if spot is not None else forward * discount,
            "forward": venue_forward if venue_forward is not None else np.nan,
            "inverse": inverse,
            "ttm": ttm,
        }
    )
    if rate is not None:
        frame["rate"] = rate
    return frame


def _only(table: pd.DataFrame) -> pd.Series:
    assert len(table) == 1
    return table.iloc[0]


# ------------------------------------------------------------------------------------------ exact synthetic chains


def test_linear_chain_recovers_forward_and_discount():
    F, r, t = 5000.0, 0.045, 0.5
    D = np.exp(-r * t)
    row = _only(infer_forwards(_chain(F, D, t, np.arange(4500.0, 5501.0, 50.0))))
    assert row["method"] == "parity"
    assert row["discount_source"] == "parity"
    assert row["forward"] == pytest.approx(F, rel=1e-10)
    assert row["discount"] == pytest.approx(D, rel=1e-10)
    assert row["rate"] == pytest.approx(r, rel=1e-8)
    assert row["n_pairs"] == ForwardSettings().n_strikes
    assert row["n_outliers"] == 0
    assert row["parity_band_share"] == 1.0
    assert row["parity_rmse"] < 1e-8


def test_inverse_chain_recovers_forward_and_coin_discount():
    F, t = 62000.0, 0.75
    D = np.exp(-0.04 * t)  # a coin lending rate of 4 %
    row = _only(infer_forwards(_chain(F, D, t, np.arange(50000.0, 75001.0, 2500.0), inverse=True)))
    assert row["method"] == "parity"
    assert row["discount_source"] == "parity"
    assert row["forward"] == pytest.approx(F, rel=1e-10)
    assert row["discount"] == pytest.approx(D, rel=1e-10)
    assert bool(row["inverse"])


def test_inverse_chain_at_zero_coin_rate_keeps_unit_discount():
    F, t = 2150.0, 0.3
    row = _only(infer_forwards(_chain(F, 1.0, t, np.arange(1800.0, 2501.0, 50.0), inverse=True)))
    assert row["method"] == "parity"
    assert row["forward"] == pytest.approx(F, rel=1e-10)
    assert row["discount"] == pytest.approx(1.0, abs=1e-10)


@hyp_settings(max_examples=25, deadline=None)
@given(
    forward=st.floats(50.0, 1e5),
    rate=st.floats(-0.02, 0.12),
    ttm=st.floats(0.05, 3.0),
    inverse=st.booleans(),
)
def test_exact_chains_recover_forward(forward, rate, ttm, inverse):
    D = np.exp(-rate * ttm)
    strikes = forward * np.exp(np.linspace(-0.3, 0.3, 13))
    row = _only(infer_forwards(_chain(forward, D, ttm, strikes, inverse=inverse)))
    assert row["method"] == "parity"
    assert row["forward"] == pytest.approx(forward, rel=1e-8)
    assert row["discount"] == pytest.approx(D, rel=1e-7)


# ----------------------------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("inverse", [False, True])
def test_bad_quotes_do_not_move_the_forward(inverse):
    F, t = 4000.0, 0.4
    D = np.exp(-0.03 * t) if not inverse else 1.0
    strikes = np.arange(3600.0, 4401.0, 50.0)
    clean = _chain(F, D, t, strikes, inverse=inverse, rel_half_spread=0.003, noise=0.5, seed=3)
    dirty = clean.copy()
    # Two bad quotes among the eight pairs nearest the money: a call marked 30 % rich, a stale put at half price.
    rich = (dirty["strike"] == 4050.0) & (dirty["option_type"] == "C")
    stale = (dirty["strike"] == 3950.0) & (dirty["option_type"] == "P")
    dirty.loc[rich, ["bid", "ask"]] *= 1.3
    dirty.loc[stale, ["bid", "ask"]] *= 0.5

    good = _only(infer_forwards(clean))
    bad = _only(infer_forwards(dirty))
    assert good["method"] == bad["method"] == "parity"
    # Mids scattered by up to half their spread (0.3 % of the premium) leave F within 2 bp of the truth (about
    # three standard errors), with or without the two bad quotes.
    assert abs(good["forward"] / F - 1.0) < 2e-4
    assert abs(bad["forward"] / F - 1.0) < 2e-4
    assert bad["n_outliers"] == 2
    assert bad["parity_band_share"] == pytest.approx(6 / 8)
    # Plain least squares on the same quotes is off by about 1 %: the test has teeth.
    assert abs(_ols_forward(dirty, inverse=inverse, scale=F) / F - 1.0) > 50e-4


def _ols_forward(frame: pd.DataFrame, *, inverse: bool, scale: float) -> float:
    """Plain least-squares parity line through the eight pairs nearest ``scale`` (reference for the test above)."""
    calls = frame[frame["option_type"] == "C"].set_index("strike")
    puts = frame[frame["option_type"] == "P"].set_index("strike")
    y = (0.5 * (calls["bid"] + calls["ask"]) - 0.5 * (puts["bid"] + puts["ask"])).sort_index()
    K = y.index.to_numpy()
    near = np.argsort(np.abs(np.log(K / scale)))[:8]
    slope, intercept = np.polyfit(K[near], y.to_numpy()[near], 1)
    return -intercept / slope


def test_recentres_when_first_guess_is_far():
    F, t = 100.0, 1.0
    D = np.exp(-0.05 * t)
    frame = _chain(F, D, t, np.arange(60.0, 141.0, 2.5), spot=88.0)  # spot far from the forward, no venue F
    row = _only(infer_forwards(frame))
    assert row["method"] == "parity"
    assert row["forward"] == pytest.approx(F, rel=1e-9)
    assert row["discount"] == pytest.approx(D, rel=1e-9)


def test_duplicate_rows_are_tolerated():
    frame = _chain(100.0, 0.99, 0.5, np.arange(80.0, 121.0, 5.0))
    doubled = pd.concat([frame, frame.iloc[:4]], ignore_index=True)
    row = _only(infer_forwards(doubled))
    assert row["forward"] == pytest.approx(100.0, rel=1e-10)


# --------------------------------------------------------------------------------------- fixed D and fallbacks


def test_short_expiry_fits_forward_with_discount_from_rate_column():
    F, r, t = 3000.0, 0.05, 2.0 / 365.0
    D = np.exp(-r * t)
    frame = _chain(F, D, t, np.arange(2800.0, 3201.0, 25.0), rate=r)
    row = _only(infer_forwards(frame))
    assert row["method"] == "parity"
    assert row["discount_source"] == "rate_column"
    assert row["discount"] == pytest.approx(D, rel=1e-14)
    assert row["forward"] == pytest.approx(F, rel=1e-10)
    assert "under 7 days" in row["note"]


def test_short_inverse_expiry_fits_forward_with_fallback_rate():
    F, t = 62000.0, 1.5 / 365.0
    frame = _chain(F, 1.0, t, np.arange(58000.0, 66001.0, 1000.0), inverse=True)
    row = _only(infer_forwards(frame))
    assert row["method"] == "parity"
    assert row["discount_source"] == "fallback_rate"
    assert row["discount"] == 1.0
    assert row["forward"] == pytest.approx(F, rel=1e-10)


def test_discount_consistent_with_rate_column_is_kept():
    """Noisy quotes whose parity D is not distinguishable from the given rate keep the rate's D."""
    F, r, t = 5000.0, 0.04, 0.25
    D = np.exp(-r * t)
    frame = _chain(F, D, t, np.arange(4800.0, 5201.0, 50.0), rate=r, noise=0.8, seed=11, rel_half_spread=0.05)
    row = _only(infer_forwards(frame))
    assert row["method"] == "parity"
    if row["discount_source"] == "rate_column":
        assert row["discount"] == pytest.approx(D, rel=1e-14)
        assert "consistent with" in row["note"]
    else:  # parity pinned D well enough: then it is close to the truth
        assert row["discount"] == pytest.approx(D, abs=2e-3)
    assert row["forward"] == pytest.approx(F, rel=5e-4)


def test_implausible_discount_falls_back_to_rate():
    F, t = 1000.0, 1.0
    D = np.exp(-0.6 * t)  # a 60 % rate: outside max_abs_rate
    row = _only(infer_forwards(_chain(F, D, t, np.arange(800.0, 1201.0, 50.0))))
    assert row["discount_source"] == "fallback_rate"
    assert row["discount"] == 1.0
    assert "implausible" in row["note"]


def test_single_strike_falls_back_to_venue_forward():
    frame = _chain(100.0, 0.99, 0.5, np.array([100.0]), venue_forward=100.3, rate=0.02)
    row = _only(infer_forwards(frame))
    assert row["method"] == "venue_forward"
    assert row["forward"] == 100.3
    assert row["discount"] == pytest.approx(np.exp(-0.02 * 0.5), rel=1e-14)
    assert row["discount_source"] == "rate_column"
    assert row["n_pairs"] == 1  # the single pair is still shown against the venue forward
    assert "fewer than 2" in row["note"]


def test_no_pairs_and_no_venue_forward_carries_spot_at_the_rate():
    frame = _chain(100.0, 0.99, 0.5, np.arange(90.0, 111.0, 5.0), spot=98.0, rate=0.03)
    calls_only = frame[frame["option_type"] == "C"]
    row = _only(infer_forwards(calls_only))
    assert row["method"] == "spot_rate"
    assert row["forward"] == pytest.approx(98.0 * np.exp(0.03 * 0.5), rel=1e-14)
    assert row["discount"] == pytest.approx(np.exp(-0.03 * 0.5), rel=1e-14)

    no_rate = calls_only.drop(columns="rate")
    row = _only(infer_forwards(no_rate, settings=ForwardSettings(fallback_rate=0.05)))
    assert row["method"] == "spot_rate"
    assert row["discount_source"] == "fallback_rate"
    assert row["forward"] == pytest.approx(98.0 * np.exp(0.05 * 0.5), rel=1e-14)


def test_one_sided_quotes_are_not_pairs():
    frame = _chain(100.0, 0.99, 0.5, np.arange(90.0, 111.0, 5.0), venue_forward=100.1)
    frame.loc[frame["option_type"] == "P", "bid"] = np.nan
    row = _only(infer_forwards(frame))
    assert row["method"] == "venue_forward"
    assert row["n_pairs"] == 0


def test_expired_expiry_is_not_fitted():
    frame = _chain(100.0, 1.0, 0.5, np.arange(90.0, 111.0, 5.0), venue_forward=100.0)
    frame["ttm"] = -0.001
    row = _only(infer_forwards(frame))
    assert row["method"] == "venue_forward"
    assert row["discount"] == 1.0
    assert np.isnan(row["rate"])


# ------------------------------------------------------------------------------------------------ diagnostics


@pytest.mark.parametrize("inverse", [False, True])
def test_parity_band_share_and_rmse_against_the_forward_used(inverse):
    """With the venue forward forced (and D from the rate column, equal to the true D), every pair's band is
    centred on the true line: pair i contains the venue's line iff its half-width is at least the offset between
    the two lines at its strike."""
    F, D, t, venue = 100.0, 0.98, 0.5, 100.4
    strikes = np.arange(86.0, 115.0, 2.0)
    frame = _chain(F, D, t, strikes, inverse=inverse, rel_half_spread=0.0, venue_forward=venue, rate=-np.log(D) / t)
    # Half-width of each pair's parity band = call half-spread + put half-spread: set per strike.
    half_pair = np.linspace(0.05, 0.6, strikes.size) * (1.0 / venue if inverse else 1.0)
    per_row = np.repeat(half_pair / 2.0, 2)
    frame["bid"] -= per_row
    frame["ask"] += per_row
    table = infer_forwards(frame, settings=ForwardSettings(min_pairs=100, n_strikes=strikes.size))
    row = _only(table)
    assert row["method"] == "venue_forward"
    assert row["discount"] == pytest.approx(D, rel=1e-14)
    assert row["n_pairs"] == strikes.size
    if inverse:
        offset = np.abs(D * (1.0 - strikes / venue) - D * (1.0 - strikes / F))
        expected_rmse = np.sqrt(np.mean(offset**2)) * venue
    else:
        offset = np.full(strikes.size, D * abs(venue - F))
        expected_rmse = D * abs(venue - F)
    assert row["parity_band_share"] == pytest.approx(np.mean(half_pair >= offset))
    assert 0.0 < row["parity_band_share"] < 1.0
    assert row["parity_rmse"] == pytest.approx(expected_rmse, rel=1e-9)
    assert row["forward_vs_venue_bp"] == 0.0


def test_table_columns_and_order():
    near = _chain(100.0, 0.999, 0.05, np.arange(90.0, 111.0, 2.5), expiry=ASOF + pd.Timedelta(days=18))
    far = _chain(101.0, 0.99, 0.5, np.arange(80.0, 121.0, 5.0), expiry=ASOF + pd.Timedelta(days=182))
    table = infer_forwards(pd.concat([far, near], ignore_index=True))
    assert tuple(table.columns) == FORWARD_COLUMNS
    assert list(table["expiry"]) == sorted(table["expiry"])
    assert table["forward"].to_numpy() == pytest.approx([100.0, 101.0], rel=1e-9)


# --------------------------------------------------------------------------------------------------- errors


def test_mixed_inverse_and_linear_in_one_expiry_is_an_error():
    frame = _chain(100.0, 1.0, 0.5, np.arange(90.0, 111.0, 5.0))
    frame.loc[frame.index[:3], "inverse"] = True
    with pytest.raises(SnapshotError, match="mixes inverse"):
        infer_forwards(frame)


def test_missing_column_is_an_error():
    frame = _chain(100.0, 1.0, 0.5, np.arange(90.0, 111.0, 5.0)).drop(columns="ttm")
    with pytest.raises(SnapshotError, match="ttm"):
        infer_forwards(frame)


def test_settings_are_validated():
    with pytest.raises(ValueError):
        ForwardSettings(n_strikes=0)
    with pytest.raises(ValueError):
        ForwardSettings(min_pairs_for_discount=2)


# ------------------------------------------------------------------------------------------ quote currency


def test_to_quote_currency_converts_inverse_rows_only():
    inv = _chain(2000.0, 1.0, 0.5, np.array([1900.0, 2100.0]), inverse=True, expiry=ASOF + pd.Timedelta(days=30))
    lin = _chain(2000.0, 1.0, 0.5, np.array([1900.0, 2100.0]), expiry=ASOF + pd.Timedelta(days=60))
    frame = pd.concat([inv, lin], ignore_index=True)
    frame["last"] = frame["bid"]
    table = pd.DataFrame(
        {"expiry": [ASOF + pd.Timedelta(days=30), ASOF + pd.Timedelta(days=60)], "forward": [2010.0, 2020.0],
         "discount": [1.0, 0.99]}
    )
    out = to_quote_currency(frame, table)
    is_inv = out["inverse"].to_numpy()
    assert out["forward"].to_numpy() == pytest.approx(np.where(is_inv, 2010.0, 2020.0))
    assert out["discount"].to_numpy() == pytest.approx(np.where(is_inv, 1.0, 0.99))
    assert out["bid_native"].to_numpy() == pytest.approx(frame["bid"].to_numpy())
    assert out["ask_native"].to_numpy() == pytest.approx(frame["ask"].to_numpy())
    factor = np.where(is_inv, 2010.0, 1.0)
    assert out["bid"].to_numpy() == pytest.approx(frame["bid"].to_numpy() * factor)
    assert out["ask"].to_numpy() == pytest.approx(frame["ask"].to_numpy() * factor)
    assert out["last"].to_numpy() == pytest.approx(frame["last"].to_numpy() * factor)
    assert frame["forward"].isna().all()  # the input is not modified


# ------------------------------------------------------------------------------------------------ real data


def _btc_frame(path) -> pd.DataFrame:
    """The Deribit BTC book summary as a canonical frame (coin premiums, forward = future mid where listed)."""
    with gzip.open(path, "rt") as fh:
        data = json.load(fh)
    asof = pd.Timestamp(data["as_of"])
    expiries = {i["instrument_name"]: pd.Timestamp(i["expiration_timestamp"], unit="ms", tz="UTC")
                for i in data["instruments"]}
    futures = {f["instrument_name"].split("-")[1]: 0.5 * (f["bid_price"] + f["ask_price"])
               for f in data["futures"] if f["bid_price"] and f["ask_price"]}
    rows = []
    for o in data["options"]:
        _, code, strike, kind = o["instrument_name"].split("-")
        rows.append({
            "snapshot_time": asof, "underlying": "BTC", "expiry": expiries[o["instrument_name"]],
            "strike": float(strike), "option_type": kind,
            "bid": float(o["bid_price"] or np.nan), "ask": float(o["ask_price"] or np.nan),
            "underlying_price": futures["PERPETUAL"], "forward": futures.get(code, np.nan), "inverse": True,
        })
    frame = pd.DataFrame(rows)
    frame["ttm"] = (frame["expiry"] - frame["snapshot_time"]).dt.total_seconds() / (365.0 * 86400.0)
    return frame


def test_btc_parity_forwards_match_deribit_futures(shared_data):
    path = shared_data / "btc_deribit_book_summary_2026-08-01.json.gz"
    if not path.exists():
        pytest.skip(f"{path.name} not found in {shared_data}")
    table = infer_forwards(_btc_frame(path))
    assert len(table) == 13
    assert (table["method"] == "parity").all()
    longer = table[table["ttm"] > 7.0 / 365.0]
    assert len(longer) >= 7
    # Deribit prices its coin options on the future of the expiry: parity agrees to a few bp.
    assert np.abs(longer["forward_vs_venue_bp"]).max() < 5.0
    assert (longer["parity_band_share"] >= 0.75).all()
    # The coin discount factor stays at 1 (Deribit's zero rate) unless parity pins it within a few tenths of %.
    assert np.abs(table["discount"] - 1.0).max() < 5e-3


def test_eth_sample_is_otm_only_and_uses_the_venue_forward(shared_data):
    path = shared_data / "eth_deribit_2026-05-21.csv"
    if not path.exists():
        pytest.skip(f"{path.name} not found in {shared_data}")
    frame = pd.read_csv(path, parse_dates=["snapshot_time", "expiry"])
    frame["ttm"] = (frame["expiry"] - frame["snapshot_time"]).dt.total_seconds() / (365.0 * 86400.0)
    table = infer_forwards(frame)
    venue = frame.groupby("expiry")["forward"].first()
    # The sample holds out-of-the-money quotes only (no strike has both a call and a put): no parity possible.
    assert (table["n_pairs"] == 0).all()
    assert (table["method"] == "venue_forward").all()
    assert table.set_index("expiry")["forward"].to_numpy() == pytest.approx(venue.to_numpy(), rel=0.0)
    assert (table["discount"] == 1.0).all()


@hyp_settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=True, width=64), st.just(float("nan"))),
                min_size=1, max_size=25))
def test_median_helper_is_numpys_median_bit_for_bit(values):
    from calibration.forwards import _median

    x = np.array(values, dtype=float)
    with np.errstate(invalid="ignore", over="ignore"):  # huge or infinite middle values overflow in both alike
        expected = float(np.median(x))
        got = _median(x)
    assert (np.isnan(got) and np.isnan(expected)) or got == expected
