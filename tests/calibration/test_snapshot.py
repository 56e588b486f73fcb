"""The snapshot pipeline end to end: ttm, forwards, inverse conversion, implied vols, status per row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from calibration.black import black_price
from calibration.errors import SnapshotError
from calibration.snapshot import load_snapshot, prepare_snapshot, time_to_expiry

ASOF = pd.Timestamp("2026-11-20T09:30:00Z")


def synthetic_chain(*, forward: float, discount: float, inverse: bool, spot: float) -> pd.DataFrame:
    """A clean two-expiry chain priced with Black-76 from a known smile, tight symmetric spreads."""
    rows = []
    for days, atm in ((30, 0.55), (120, 0.60)):
        expiry = ASOF + pd.Timedelta(days=days)
        t = days / 365.0
        for strike in np.linspace(0.7, 1.4, 15) * forward:
            vol = atm + 0.15 * np.log(strike / forward) ** 2
            for option_type in "CP":
                price = float(black_price(forward, strike, t, vol, is_call=option_type == "C", discount=discount))
                if inverse:
                    price /= forward
                half = max(price * 0.002, 1e-12)
                rows.append(
                    dict(
                        snapshot_time=ASOF, underlying="BTC", expiry=expiry, strike=strike, option_type=option_type,
                        bid=price - half, ask=price + half, underlying_price=spot, forward=np.nan, inverse=inverse,
                        rate=np.nan, volume=np.nan, open_interest=np.nan, last=np.nan, iv_bid=np.nan, iv_ask=np.nan,
                        true_vol=vol,
                    )
                )
    frame = pd.DataFrame(rows)
    frame.attrs["source"] = "synthetic"
    return frame


def test_time_to_expiry_is_act365_to_the_second():
    snap = pd.Series(pd.to_datetime(["2026-05-21T10:08:42Z"]))
    expiry = pd.Series(pd.to_datetime(["2026-05-22T08:00:00Z"]))
    # 21 h 51 min 18 s
    assert time_to_expiry(snap, expiry)[0] == pytest.approx((21 * 3600 + 51 * 60 + 18) / (365 * 86400), rel=1e-15)


@pytest.mark.parametrize("inverse", [False, True])
def test_pipeline_recovers_forward_and_vols(inverse):
    forward, discount = 101_250.0, 0.99
    frame = synthetic_chain(forward=forward, discount=discount if not inverse else 1.0, inverse=inverse, spot=100_000.0)
    true_vol = frame.pop("true_vol").to_numpy()
    snap = prepare_snapshot(frame)
    q = snap.quotes
    assert len(q) == len(frame)  # every input row is kept and reported
    assert np.allclose(q["forward"], forward, rtol=2e-4)
    # premiums in quote currency; the mid inverts to the generating vol up to the forward's own error
    ok = q["status"] == "ok"
    assert ok.sum() >= len(frame) // 2 - 2
    assert np.nanmax(np.abs(q.loc[ok, "iv_mid"] - true_vol[ok.to_numpy()])) < 2e-3
    # only OTM quotes are fitted by default
    otm = np.where(q["option_type"] == "C", q["strike"] >= q["forward"], q["strike"] <= q["forward"])
    assert (otm[ok.to_numpy()]).all()
    assert snap.drops.n_input == len(frame)
    assert snap.drops.n_kept == int(ok.sum())
    assert sum(snap.drops.counts.values()) == len(frame) - snap.drops.n_kept
    assert snap.underlying == "BTC" and snap.asof == ASOF


def test_inverse_premiums_are_converted_with_the_forward():
    frame = synthetic_chain(forward=50_000.0, discount=1.0, inverse=True, spot=49_900.0)
    frame.pop("true_vol")
    snap = prepare_snapshot(frame)
    q = snap.quotes
    np.testing.assert_allclose(q["bid"], q["bid_native"] * q["forward"], rtol=1e-12)


def test_content_hash_is_stable_and_sensitive():
    frame = synthetic_chain(forward=100.0, discount=1.0, inverse=False, spot=100.0)
    frame.pop("true_vol")
    a = prepare_snapshot(frame)
    b = prepare_snapshot(frame.copy())
    changed = frame.copy()
    changed.loc[3, "bid"] *= 1.01
    assert a.content_hash == b.content_hash
    assert prepare_snapshot(changed).content_hash != a.content_hash


def test_empty_frame_is_a_clear_error():
    frame = synthetic_chain(forward=100.0, discount=1.0, inverse=False, spot=100.0).iloc[0:0]
    with pytest.raises(SnapshotError, match="no quotes"):
        prepare_snapshot(frame, source="empty.csv")


def test_eth_sample_vols_agree_with_deribit(shared_data):
    """Deribit quotes its own bid/ask vols with Black-76 on the futures forward: ours must agree."""
    snap = load_snapshot(shared_data / "eth_deribit_2026-05-21.csv")
    q = snap.quotes
    long = q["ttm"] > 7 / 365
    diffs = []
    for side in ("bid", "ask"):
        both = long & q[f"iv_{side}"].notna() & q[f"venue_iv_{side}"].notna()
        diffs.append((q.loc[both, f"iv_{side}"] - q.loc[both, f"venue_iv_{side}"]).abs())
    diff_vol_points = pd.concat(diffs) * 100.0
    assert len(diff_vol_points) > 100
    assert diff_vol_points.median() < 0.1


def test_mixed_underlyings_are_refused_with_their_names():
    frame = synthetic_chain(forward=100.0, discount=1.0, inverse=False, spot=100.0)
    frame.pop("true_vol")
    frame.loc[5:, "underlying"] = "ETH"
    with pytest.raises(SnapshotError, match="BTC, ETH"):
        prepare_snapshot(frame, source="mixed.csv")
