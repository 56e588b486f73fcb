"""Snapshot loaders: every format on small files written here with hand-computed expectations, the real samples
of ../shared/data, and every bad-input case with the file, row and column it must name."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from calibration.errors import FileTooLargeError, SnapshotError, UnknownFormatError
from calibration.quotes import (
    FORMATS,
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    detect_format,
    read_snapshot,
    validate_canonical,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
ETH_CSV = DATA / "eth_deribit_2026-05-21.csv"
BTC_JSON = DATA / "btc_deribit_book_summary_2026-08-01.json.gz"

EXPECTED_DTYPES = {
    "snapshot_time": "datetime64[ns, UTC]",
    "underlying": "str",
    "expiry": "datetime64[ns, UTC]",
    "strike": "float64",
    "option_type": "str",
    "bid": "float64",
    "ask": "float64",
    "underlying_price": "float64",
    "forward": "float64",
    "inverse": "bool",
    "rate": "float64",
    "volume": "float64",
    "open_interest": "float64",
    "last": "float64",
    "iv_bid": "float64",
    "iv_ask": "float64",
}


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text).tz_convert("UTC")


def assert_canonical_dtypes(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    for column, dtype in EXPECTED_DTYPES.items():
        if dtype == "str":
            assert pd.api.types.is_string_dtype(frame[column].dtype), column
        else:
            assert str(frame[column].dtype) == dtype, column
    assert isinstance(frame.index, pd.RangeIndex)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


CANONICAL_CSV = """\
snapshot_time,underlying,expiry,strike,option_type,bid,ask,underlying_price,forward,inverse,rate,volume,\
open_interest,last,iv_bid,iv_ask,comment
2026-05-21T10:08:42.5Z,ETH,2026-06-26,2000,call,0.0650,0.0670,2125.5,2127.25,true,0.01,12,340,0.066,0.55,0.57,x
2026-05-21T10:08:42.5Z,ETH,2026-06-26T08:00:00+02:00,2200,P,0,0.081,2125.5,,false,,,,,,,y
2026-05-21T10:08:42.5Z,ETH,2026-06-26 09:30:00,1800.5,c,0.16,,2125.5,2127.25,,,,,,0,,
"""


# --------------------------------------------------------------------------------------------- canonical


def test_canonical_csv_values_dtypes_and_conventions(tmp_path: Path) -> None:
    frame = read_snapshot(write(tmp_path, "eth.csv", CANONICAL_CSV))
    assert_canonical_dtypes(frame)
    assert frame.attrs == {"source": "eth.csv", "format": "canonical"}
    assert (frame["snapshot_time"] == utc("2026-05-21T10:08:42.500Z")).all()
    # bare date = 08:00 UTC; an offset is converted; a time without offset is UTC
    assert list(frame["expiry"]) == [
        utc("2026-06-26T08:00Z"),
        utc("2026-06-26T06:00Z"),
        utc("2026-06-26T09:30Z"),
    ]
    assert list(frame["underlying"]) == ["ETH"] * 3
    np.testing.assert_array_equal(frame["strike"], [2000.0, 2200.0, 1800.5])
    assert list(frame["option_type"]) == ["C", "P", "C"]
    # 0 or empty = no quote on that side
    np.testing.assert_array_equal(frame["bid"], [0.065, np.nan, 0.16])
    np.testing.assert_array_equal(frame["ask"], [0.067, 0.081, np.nan])
    np.testing.assert_array_equal(frame["forward"], [2127.25, np.nan, 2127.25])
    assert list(frame["inverse"]) == [True, False, False]
    np.testing.assert_array_equal(frame["rate"], [0.01, np.nan, np.nan])
    np.testing.assert_array_equal(frame["volume"], [12.0, np.nan, np.nan])
    np.testing.assert_array_equal(frame["open_interest"], [340.0, np.nan, np.nan])
    np.testing.assert_array_equal(frame["last"], [0.066, np.nan, np.nan])
    np.testing.assert_array_equal(frame["iv_bid"], [0.55, np.nan, np.nan])  # a venue IV of 0 is none
    np.testing.assert_array_equal(frame["iv_ask"], [0.57, np.nan, np.nan])


def test_canonical_minimal_columns_get_defaults(tmp_path: Path) -> None:
    text = ",".join(REQUIRED_COLUMNS) + "\n2026-01-02T00:00:00Z,SPX,2026-03-20T21:00:00Z,4000,PUT,1.5,1.7,4010\n"
    frame = read_snapshot(write(tmp_path, "min.csv", text))
    assert_canonical_dtypes(frame)
    row = frame.iloc[0]
    assert row["option_type"] == "P" and not row["inverse"]
    assert all(np.isnan(row[c]) for c in ("forward", "rate", "volume", "open_interest", "last", "iv_bid", "iv_ask"))


def test_canonical_parquet_with_typed_columns(tmp_path: Path) -> None:
    typed = pd.DataFrame(
        {
            "snapshot_time": pd.to_datetime(["2026-05-21T10:08:42Z"] * 2, utc=True),
            "underlying": ["ETH", "ETH"],
            "expiry": pd.to_datetime(["2026-06-26 08:00", "2026-09-25 08:00"]),  # naive = UTC
            "strike": [2000, 2500],  # integers
            "option_type": pd.Categorical(["C", "P"]),
            "bid": [0.065, 0.0],
            "ask": [0.067, 0.3],
            "underlying_price": [2125.5, 2125.5],
            "inverse": [True, True],
        }
    )
    path = tmp_path / "eth.parquet"
    typed.to_parquet(path)
    frame = read_snapshot(path)
    assert_canonical_dtypes(frame)
    assert frame.attrs["format"] == "canonical"
    assert list(frame["expiry"]) == [utc("2026-06-26T08:00Z"), utc("2026-09-25T08:00Z")]
    np.testing.assert_array_equal(frame["strike"], [2000.0, 2500.0])
    np.testing.assert_array_equal(frame["bid"], [0.065, np.nan])
    assert list(frame["option_type"]) == ["C", "P"] and frame["inverse"].all()


def test_parquet_round_trip_equals_csv(tmp_path: Path) -> None:
    from_csv = read_snapshot(write(tmp_path, "eth.csv", CANONICAL_CSV))
    path = tmp_path / "eth.parquet"
    from_csv.to_parquet(path)
    from_parquet = read_snapshot(path)
    pd.testing.assert_frame_equal(from_parquet, from_csv, check_dtype=True)


def test_upload_bytes_and_gzip_read_like_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "eth.csv", CANONICAL_CSV)
    expected = read_snapshot(path)
    raw = CANONICAL_CSV.encode()
    from_bytes = read_snapshot(raw, name="my upload.csv")
    assert from_bytes.attrs["source"] == "my upload.csv"
    pd.testing.assert_frame_equal(from_bytes, expected)
    gz_path = tmp_path / "eth.csv.gz"
    gz_path.write_bytes(gzip.compress(raw))
    pd.testing.assert_frame_equal(read_snapshot(gz_path), expected)
    pd.testing.assert_frame_equal(read_snapshot(gzip.compress(raw), name="eth.csv.gz"), expected)
    assert read_snapshot(raw).attrs["source"] == "upload"
    # a UTF-8 byte order mark (Excel) and Windows line ends are fine
    pd.testing.assert_frame_equal(read_snapshot(b"\xef\xbb\xbf" + raw.replace(b"\n", b"\r\n")), expected)


def test_validate_canonical_on_a_typed_frame() -> None:
    frame = pd.DataFrame(
        {
            "snapshot_time": ["2026-05-21T10:00:00Z"],
            "underlying": [" BTC "],
            "expiry": ["2026-06-26"],
            "strike": [60000.0],
            "option_type": ["Put"],
            "bid": [0.01],
            "ask": [0.012],
            "underlying_price": [62000.0],
            "extra": ["dropped"],
        }
    )
    out = validate_canonical(frame, source="mine")
    assert_canonical_dtypes(out)
    assert out.attrs["source"] == "mine"
    assert out.loc[0, "underlying"] == "BTC" and out.loc[0, "option_type"] == "P"
    assert out.loc[0, "expiry"] == utc("2026-06-26T08:00Z")
    with pytest.raises(SnapshotError, match="mine") as info:
        validate_canonical(frame.assign(strike=[0.0]), source="mine")
    assert info.value.row == 1 and info.value.column == "strike"


# ------------------------------------------------------------------------------------------------ Deribit

API_RECORDS = [
    {
        "instrument_name": "BTC-28AUG26-60000-C",
        "bid_price": 0.05,
        "ask_price": 0.055,
        "mark_price": 0.052,
        "underlying_price": 62870.0,
        "underlying_index": "BTC-28AUG26",
        "interest_rate": 0.0,
        "open_interest": 12.5,
        "volume": 3.2,
        "last": 0.051,
        "bid_iv": 45.0,
        "ask_iv": 47.5,
        "creation_timestamp": 1785607084000,
    },
    {
        "instrument_name": "BTC-28AUG26-60000-P",
        "bid_price": None,
        "ask_price": 0.02,
        "underlying_price": 62870.0,
        "underlying_index": "BTC-28AUG26",
        "creation_timestamp": 1785607085000,  # the latest: 2026-08-01T17:58:05Z
    },
    {"instrument_name": "BTC-CS-28AUG26-60000_70000", "bid_price": 0.01, "creation_timestamp": 1785607000000},
    {"instrument_name": "BTC-28AUG26", "bid_price": 62862.5, "ask_price": 62865.0, "creation_timestamp": 1785607000000},
    {"instrument_name": "BTC-PERPETUAL", "bid_price": 62687.5, "ask_price": 62688.0},
    {
        "instrument_name": "BTC-4SEP26-70000-C",
        "bid_price": 0.0,
        "ask_price": 0.01,
        "underlying_price": 62950.0,
        "underlying_index": "SYN.BTC-4SEP26",  # no listed future: the synthetic future's price
    },
    {
        "instrument_name": "BTC-2AUG26-63000-C",
        "bid_price": 0.001,
        "ask_price": 0.002,
        "underlying_price": 62690.0,
        "underlying_index": "index_price",  # no forward
    },
    {"instrument_name": "XRP_USDC-25SEP26-2d2-C", "bid_price": 0.1, "ask_price": 0.12},
    {"instrument_name": "XRP_USDC-PERPETUAL", "bid_price": 2.1, "ask_price": 2.102},
]


def test_deribit_api_response() -> None:
    body = json.dumps({"jsonrpc": "2.0", "result": API_RECORDS, "usIn": 1, "usOut": 2}).encode()
    frame = read_snapshot(body, name="summary.json")
    assert_canonical_dtypes(frame)
    assert frame.attrs == {"source": "summary.json", "format": "deribit"}
    assert len(frame) == 5  # combo, future and perpetuals are not options
    assert (frame["snapshot_time"] == utc("2026-08-01T17:58:05Z")).all()
    assert list(frame["underlying"]) == ["BTC", "BTC", "BTC", "BTC", "XRP"]
    assert list(frame["expiry"]) == [
        utc("2026-08-28T08:00Z"),
        utc("2026-08-28T08:00Z"),
        utc("2026-09-04T08:00Z"),
        utc("2026-08-02T08:00Z"),
        utc("2026-09-25T08:00Z"),
    ]
    np.testing.assert_array_equal(frame["strike"], [60000.0, 60000.0, 70000.0, 63000.0, 2.2])
    assert list(frame["option_type"]) == ["C", "P", "C", "C", "C"]
    np.testing.assert_array_equal(frame["bid"], [0.05, np.nan, np.nan, 0.001, 0.1])
    np.testing.assert_array_equal(frame["ask"], [0.055, 0.02, 0.01, 0.002, 0.12])
    # spot = perpetual mid; forward = future mid, else the synthetic future, else none
    np.testing.assert_allclose(frame["underlying_price"], [62687.75] * 4 + [2.101])
    np.testing.assert_array_equal(frame["forward"], [62863.75, 62863.75, 62950.0, np.nan, np.nan])
    assert list(frame["inverse"]) == [True, True, True, True, False]  # USDC options are linear
    np.testing.assert_array_equal(frame["rate"], [0.0, np.nan, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(frame["volume"][:1], [3.2])
    np.testing.assert_array_equal(frame["last"][:1], [0.051])
    np.testing.assert_allclose(frame["iv_bid"][:1], [0.45])
    np.testing.assert_allclose(frame["iv_ask"][:1], [0.475])


def test_deribit_bare_list_and_index_fallback_for_spot() -> None:
    records = [
        {
            "instrument_name": "ETH-26JUN26-2000-P",
            "bid_price": 0.01,
            "ask_price": 0.011,
            "estimated_delivery_price": 2125.0,  # Deribit's index, used as spot without a perpetual
            "creation_timestamp": 1785607084000,
        }
    ]
    frame = read_snapshot(json.dumps(records).encode(), name="eth.json")
    assert frame.loc[0, "underlying_price"] == 2125.0
    assert frame.loc[0, "expiry"] == utc("2026-06-26T08:00Z")
    assert frame.loc[0, "snapshot_time"] == utc("2026-08-01T17:58:04Z")


def test_deribit_recorded_form_uses_instrument_expiries_and_nearest_future_fallback() -> None:
    recorded = {
        "as_of": "2026-08-01T17:58:04.320127+00:00",
        "futures": [
            {"instrument_name": "BTC-28AUG26", "bid_price": 62862.5, "ask_price": 62865.0},
            {"instrument_name": "BTC-3AUG26", "bid_price": 62667.5, "ask_price": 62697.5},
        ],
        "options": [
            {"instrument_name": "BTC-28AUG26-60000-C", "bid_price": 0.05, "ask_price": 0.055, "volume_usd": 627.0},
            {"instrument_name": "BTC-25SEP26-60000-C", "bid_price": None, "ask_price": 0.07, "open_interest": 3},
        ],
        "instruments": [
            # a hypothetical 09:00 expiry, to see that the listed timestamp wins over the 08:00 default
            {"instrument_name": "BTC-28AUG26-60000-C", "expiration_timestamp": 1787907600000},
            {"instrument_name": "BTC-PERPETUAL", "expiration_timestamp": 32503708800000},
        ],
    }
    frame = read_snapshot(gzip.compress(json.dumps(recorded).encode()), name="rec.json.gz")
    assert (frame["snapshot_time"] == utc("2026-08-01T17:58:04.320127Z")).all()
    assert list(frame["expiry"]) == [utc("2026-08-28T09:00Z"), utc("2026-09-25T08:00Z")]
    # no perpetual, no index: spot falls back to the nearest-dated future's mid (BTC-3AUG26)
    np.testing.assert_array_equal(frame["underlying_price"], [62682.5, 62682.5])
    np.testing.assert_array_equal(frame["forward"], [62863.75, np.nan])
    np.testing.assert_array_equal(frame["bid"], [0.05, np.nan])
    np.testing.assert_allclose(frame["volume"], [627.0 / 62682.5, np.nan])  # USD volume in coin at spot
    assert frame["inverse"].all()


def _real(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"real market sample {path.name} not found in {DATA.resolve()} (shared/data is not checked out)")
    return path


def test_real_eth_canonical_csv() -> None:
    frame = read_snapshot(_real(ETH_CSV))
    raw = pd.read_csv(ETH_CSV)
    assert_canonical_dtypes(frame)
    assert frame.attrs["format"] == "canonical" and len(frame) == len(raw) == 292
    assert frame["snapshot_time"].nunique() == 1
    assert frame["snapshot_time"].iloc[0] == utc("2026-05-21T10:08:42.397057Z")
    assert frame["expiry"].nunique() == 12
    assert ((frame["expiry"].dt.hour == 8) & (frame["expiry"].dt.minute == 0)).all()
    assert frame["inverse"].all() and (frame["underlying"] == "ETH").all()
    np.testing.assert_array_equal(frame["strike"], raw["strike"].astype(float))
    np.testing.assert_array_equal(frame["forward"], raw["forward"])
    np.testing.assert_array_equal(frame["bid"], raw["bid"].where(raw["bid"] > 0))


def test_real_btc_recorded_deribit_json() -> None:
    with gzip.open(_real(BTC_JSON)) as handle:
        raw = json.load(handle)
    frame = read_snapshot(BTC_JSON)
    assert_canonical_dtypes(frame)
    assert frame.attrs["format"] == "deribit" and len(frame) == len(raw["options"]) == 868
    assert (frame["snapshot_time"] == utc(raw["as_of"])).all()
    assert frame["expiry"].nunique() == 13
    assert ((frame["expiry"].dt.hour == 8) & (frame["expiry"].dt.minute == 0)).all()
    assert frame["inverse"].all() and (frame["underlying"] == "BTC").all()
    # strikes and types against the instruments list; forwards against the futures' mids (independent parse)
    instruments = {i["instrument_name"]: i for i in raw["instruments"]}
    names = [o["instrument_name"] for o in raw["options"]]
    np.testing.assert_array_equal(frame["strike"], [instruments[n]["strike"] for n in names])
    assert list(frame["option_type"]) == [instruments[n]["option_type"][0].upper() for n in names]
    mids = {f["instrument_name"]: (f["bid_price"] + f["ask_price"]) / 2 for f in raw["futures"]}
    np.testing.assert_array_equal(frame["forward"], [mids[n.rsplit("-", 2)[0]] for n in names])
    assert (frame["underlying_price"] == mids["BTC-PERPETUAL"]).all()
    null_or_zero_bids = sum(1 for o in raw["options"] if not o["bid_price"])
    assert null_or_zero_bids >= 66 and frame["bid"].isna().sum() == null_or_zero_bids


# ------------------------------------------------------------------------------------------------ CBOE

CBOE_COLUMNS = (
    "underlying_symbol,quote_date,root,expiration,strike,option_type,open,high,low,close,trade_volume,"
    "bid_size_1545,bid_1545,ask_size_1545,ask_1545,underlying_bid_1545,underlying_ask_1545,"
    "implied_underlying_price_1545,active_underlying_price_1545,implied_volatility_1545,delta_1545,gamma_1545,"
    "theta_1545,vega_1545,rho_1545,bid_size_eod,bid_eod,ask_size_eod,ask_eod,underlying_bid_eod,"
    "underlying_ask_eod,vwap,open_interest,delivery_code"
).split(",")


def cboe_csv(rows: list[dict[str, object]]) -> str:
    defaults = {c: 0 for c in CBOE_COLUMNS}
    lines = [",".join(CBOE_COLUMNS)]
    for row in rows:
        lines.append(",".join(str({**defaults, **row}[c]) for c in CBOE_COLUMNS))
    return "\n".join(lines) + "\n"


CBOE_WINTER = [
    dict(underlying_symbol="^SPX", quote_date="2023-01-20", root="SPX", expiration="2023-02-17", strike=4000,
         option_type="C", close=61.0, trade_volume=120, bid_1545=60.1, ask_1545=60.9, underlying_bid_1545=3970.5,
         underlying_ask_1545=3971.5, implied_underlying_price_1545=3975.25, open_interest=5000),
    dict(underlying_symbol="^SPX", quote_date="2023-01-20", root="SPXW", expiration="2023-01-27", strike=3900,
         option_type="P", close=0, trade_volume=0, bid_1545=0, ask_1545=0.05, underlying_bid_1545=3970.5,
         underlying_ask_1545=3971.5, implied_underlying_price_1545=0, open_interest=10),
]  # fmt: skip


def test_cboe_datashop(tmp_path: Path) -> None:
    frame = read_snapshot(write(tmp_path, "UnderlyingOptionsEODQuotes_2023-01-20.csv", cboe_csv(CBOE_WINTER)))
    assert_canonical_dtypes(frame)
    assert frame.attrs["format"] == "cboe"
    # 15:45 New York in winter (EST, UTC-5) = 20:45 UTC
    assert (frame["snapshot_time"] == utc("2023-01-20T20:45Z")).all()
    # SPX is AM-settled (09:30 New York), SPXW PM-settled (16:00 New York)
    assert list(frame["expiry"]) == [utc("2023-02-17T14:30Z"), utc("2023-01-27T21:00Z")]
    assert list(frame["underlying"]) == ["SPX", "SPX"]
    np.testing.assert_array_equal(frame["strike"], [4000.0, 3900.0])
    assert list(frame["option_type"]) == ["C", "P"]
    np.testing.assert_array_equal(frame["bid"], [60.1, np.nan])
    np.testing.assert_array_equal(frame["ask"], [60.9, 0.05])
    np.testing.assert_array_equal(frame["underlying_price"], [3971.0, 3971.0])
    np.testing.assert_array_equal(frame["forward"], [3975.25, np.nan])
    np.testing.assert_array_equal(frame["volume"], [120.0, 0.0])
    np.testing.assert_array_equal(frame["open_interest"], [5000.0, 10.0])
    np.testing.assert_array_equal(frame["last"], [61.0, np.nan])  # close 0 = no trade
    assert not frame["inverse"].any()


def test_cboe_daylight_saving_time(tmp_path: Path) -> None:
    summer = [{**CBOE_WINTER[1], "quote_date": "2023-07-14", "expiration": "2023-07-21"}]
    frame = read_snapshot(write(tmp_path, "summer.csv", cboe_csv(summer)))
    assert frame.loc[0, "snapshot_time"] == utc("2023-07-14T19:45Z")  # EDT, UTC-4
    assert frame.loc[0, "expiry"] == utc("2023-07-21T20:00Z")
    # quoted in EST, expiring after the switch to EDT on 12 March 2023
    across = [{**CBOE_WINTER[1], "quote_date": "2023-03-10", "expiration": "2023-03-17", "root": "RUTW"}]
    frame = read_snapshot(write(tmp_path, "march.csv", cboe_csv(across)))
    assert frame.loc[0, "snapshot_time"] == utc("2023-03-10T20:45Z")
    assert frame.loc[0, "expiry"] == utc("2023-03-17T20:00Z")


def test_cboe_active_underlying_fallback(tmp_path: Path) -> None:
    row = {**CBOE_WINTER[0], "underlying_bid_1545": 0, "underlying_ask_1545": 0, "active_underlying_price_1545": 3972}
    frame = read_snapshot(write(tmp_path, "c.csv", cboe_csv([row])))
    assert frame.loc[0, "underlying_price"] == 3972.0
    with pytest.raises(SnapshotError, match="no underlying price") as info:
        read_snapshot(write(tmp_path, "d.csv", cboe_csv([CBOE_WINTER[0], {**row, "active_underlying_price_1545": 0}])))
    assert info.value.row == 2 and "d.csv" in str(info.value)


# --------------------------------------------------------------------------------------------- OptionMetrics

OM_CSV = """\
secid,date,symbol,exdate,cp_flag,strike_price,best_bid,best_offer,volume,open_interest,impl_volatility,\
forward_price,am_settlement,close
108105,2023-01-20,SPX 230217C4000000,2023-02-17,C,4000000,60.1,60.9,10,100,0.2,3975.25,1,3972.0
108105,2023-01-20,SPXW 230217P3950000,20230217,P,3950500,0,1.5,,,-99.99,3975.25,0,3972.0
"""


def test_optionmetrics(tmp_path: Path) -> None:
    frame = read_snapshot(write(tmp_path, "opprcd2023.csv", OM_CSV))
    assert_canonical_dtypes(frame)
    assert frame.attrs["format"] == "optionmetrics"
    assert (frame["snapshot_time"] == utc("2023-01-20T21:00Z")).all()  # 16:00 EST
    assert list(frame["expiry"]) == [utc("2023-02-17T14:30Z"), utc("2023-02-17T21:00Z")]  # AM, PM
    np.testing.assert_array_equal(frame["strike"], [4000.0, 3950.5])  # strike_price in thousandths
    assert list(frame["option_type"]) == ["C", "P"]
    np.testing.assert_array_equal(frame["bid"], [60.1, np.nan])
    np.testing.assert_array_equal(frame["ask"], [60.9, 1.5])
    np.testing.assert_array_equal(frame["underlying_price"], [3972.0, 3972.0])
    np.testing.assert_array_equal(frame["forward"], [3975.25, 3975.25])
    np.testing.assert_array_equal(frame["volume"], [10.0, np.nan])
    assert list(frame["underlying"]) == ["108105", "108105"]


def test_optionmetrics_saturday_exdate_and_forward_as_spot(tmp_path: Path) -> None:
    text = """\
secid,ticker,date,exdate,cp_flag,strike_price,best_bid,best_offer,forward_price,am_settlement
1,SPX,2014-01-10,2014-01-18,C,1800000,30,31,1841.5,1
1,SPX,2014-01-10,2014-01-18,P,1800000,5,5.5,1841.5,0
1,SPX,2014-01-10,2014-02-22,P,1800000,15,16,1843.0,0
"""
    frame = read_snapshot(write(tmp_path, "om.csv", text))
    # a Saturday exdate is the Friday before: 09:30 / 16:00 EST on 2014-01-17
    assert list(frame["expiry"]) == [utc("2014-01-17T14:30Z"), utc("2014-01-17T21:00Z"), utc("2014-02-21T21:00Z")]
    # no spot column: the nearest expiry's forward stands in
    np.testing.assert_array_equal(frame["underlying_price"], [1841.5] * 3)
    assert list(frame["underlying"]) == ["SPX"] * 3


def test_optionmetrics_without_spot_or_forward_says_what_is_missing(tmp_path: Path) -> None:
    text = "secid,date,exdate,cp_flag,strike_price,best_bid,best_offer\n1,2023-01-20,2023-02-17,C,4000000,1,2\n"
    with pytest.raises(SnapshotError, match="underlying_price.*forward_price") as info:
        read_snapshot(write(tmp_path, "om.csv", text))
    assert "om.csv" in str(info.value)


# --------------------------------------------------------------------------------------- detection, forcing


def test_detect_format(tmp_path: Path) -> None:
    assert detect_format(CANONICAL_CSV.encode()) == "canonical"
    assert detect_format(cboe_csv(CBOE_WINTER).encode()) == "cboe"
    assert detect_format(OM_CSV.encode()) == "optionmetrics"
    assert detect_format(json.dumps({"result": API_RECORDS}).encode()) == "deribit"
    assert detect_format(gzip.compress(json.dumps(API_RECORDS).encode())) == "deribit"
    buffer = io.BytesIO()
    read_snapshot(CANONICAL_CSV.encode()).to_parquet(buffer)
    assert detect_format(buffer.getvalue(), name="x.parquet") == "canonical"
    with pytest.raises(UnknownFormatError, match="x.csv"):
        detect_format(b"foo,bar\n1,2\n", name="x.csv")
    with pytest.raises(UnknownFormatError, match="not a Deribit"):
        detect_format(b'{"data": [1, 2]}', name="x.json")
    assert set(FORMATS) == {"canonical", "deribit", "cboe", "optionmetrics"}


def test_forced_format() -> None:
    assert read_snapshot(CANONICAL_CSV.encode(), format="canonical").attrs["format"] == "canonical"
    with pytest.raises(SnapshotError, match="missing required columns underlying_symbol, quote_date, root"):
        read_snapshot(CANONICAL_CSV.encode(), format="cboe", name="eth.csv")
    with pytest.raises(SnapshotError, match="reads JSON"):
        read_snapshot(CANONICAL_CSV.encode(), format="deribit", name="eth.csv")
    with pytest.raises(SnapshotError, match="JSON"):
        read_snapshot(json.dumps(API_RECORDS).encode(), format="canonical", name="b.json")
    with pytest.raises(UnknownFormatError, match="bloomberg"):
        read_snapshot(CANONICAL_CSV.encode(), format="bloomberg")


# ------------------------------------------------------------------------------------------------ bad input

HEADER = "snapshot_time,underlying,expiry,strike,option_type,bid,ask,underlying_price\n"
ROW = "2026-05-21T10:00:00Z,ETH,2026-06-26,2000,C,0.1,0.2,2100\n"


def rows(*bad: str, good: int = 3) -> bytes:
    return (HEADER + ROW * good + "".join(bad)).encode()


BAD_ROWS = {
    # name: (content, row, column, words in the message)
    "unparsable expiry": (rows(ROW.replace("2026-06-26", "26/06/2026")), 4, "expiry", "'26/06/2026' is not"),
    "impossible date": (rows(ROW.replace("2026-06-26", "2026-02-30")), 4, "expiry", "'2026-02-30'"),
    "unparsable snapshot": (rows(ROW.replace("10:00:00Z", "25:00:00Z")), 4, "snapshot_time", "not an ISO-8601"),
    "snapshot without time": (rows(ROW.replace("T10:00:00Z", "")), 4, "snapshot_time", "a date without a time"),
    "negative strike": (rows(ROW.replace(",2000,", ",-2000,")), 4, "strike", "must be > 0"),
    "zero strike": (rows(ROW.replace(",2000,", ",0,")), 4, "strike", "must be > 0"),
    "text strike": (rows(ROW.replace(",2000,", ",2k,")), 4, "strike", "'2k' is not a number"),
    "empty strike": (rows(ROW.replace(",2000,", ",,")), 4, "strike", "empty"),
    "non-numeric bid": (rows(ROW.replace(",0.1,", ",0.1O,")), 4, "bid", "'0.1O' is not a number"),
    "infinite ask": (rows(ROW.replace(",0.2,", ",inf,")), 4, "ask", "is not a number"),
    "negative ask": (rows(ROW.replace(",0.2,", ",-0.2,")), 4, "ask", "negative"),
    "zero spot": (rows(ROW.replace(",2100\n", ",0\n")), 4, "underlying_price", "must be > 0"),
    "option type": (rows(ROW.replace(",C,", ",X,")), 4, "option_type", "'X' is not C/P/call/put"),
    "empty underlying": (rows(ROW.replace(",ETH,", ",,")), 4, "underlying", "empty"),
    "mixed snapshot times": (rows(ROW.replace("10:00:00Z", "10:05:00Z")), 4, "snapshot_time", "mixed snapshot"),
    "bad inverse": (
        (HEADER.strip() + ",inverse\n" + ROW.strip() + ",true\n" + ROW.strip() + ",maybe\n").encode(),
        2,
        "inverse",
        "'maybe' is not true or false",
    ),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_bad_value_names_file_row_line_and_column(case: str) -> None:
    content, row, column, words = BAD_ROWS[case]
    with pytest.raises(SnapshotError) as info:
        read_snapshot(content, name="quotes.csv")
    error, message = info.value, str(info.value)
    assert (error.source, error.row, error.column) == ("quotes.csv", row, column)
    assert message.startswith(f"quotes.csv, row {row}, column '{column}':")
    assert f"line {row + 1} of the file" in message and words in message


def test_blank_lines_do_not_shift_the_reported_line() -> None:
    content = (HEADER + ROW + "\n\n" + ROW.replace(",C,", ",Q,")).encode()
    with pytest.raises(SnapshotError) as info:
        read_snapshot(content, name="q.csv")
    assert info.value.row == 2 and "row 2 is line 5 of the file" in str(info.value)


def test_missing_required_columns_are_all_named() -> None:
    content = b"snapshot_time,underlying,strike,bid,forward\n2026-05-21T10:00:00Z,ETH,2000,0.1,2100\n"
    with pytest.raises(SnapshotError) as info:
        read_snapshot(content, name="q.csv")
    message = str(info.value)
    assert message.startswith("q.csv:")
    assert "missing required columns expiry, option_type, ask, underlying_price" in message


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"", "empty"), (b"  \n\n", "empty"), (HEADER.encode(), "no data rows"), ((HEADER + "\n\n").encode(), "no data")],
)
def test_empty_file_or_header_only(content: bytes, words: str) -> None:
    with pytest.raises(SnapshotError, match=f"^q.csv: .*{words}"):
        read_snapshot(content, name="q.csv")


def test_too_large_is_refused_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    content = rows(good=200)
    with pytest.raises(FileTooLargeError, match=r"^q.csv: the upload is .* MB, above the"):
        read_snapshot(content, name="q.csv", max_bytes=1000)
    path = tmp_path / "big.csv"
    path.write_bytes(content)

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened")

    monkeypatch.setattr(Path, "open", no_reading)
    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(FileTooLargeError, match="big.csv"):
        read_snapshot(path, max_bytes=1000)


def test_gzip_bomb_is_capped_on_the_decompressed_size() -> None:
    bomb = gzip.compress(HEADER.encode() + b"0" * 5_000_000)
    assert len(bomb) < 100_000
    with pytest.raises(FileTooLargeError, match="decompresses to more than"):
        read_snapshot(bomb, name="q.csv.gz", max_bytes=1_000_000)


def test_corrupt_gzip() -> None:
    with pytest.raises(SnapshotError, match="^q.csv.gz: corrupt gzip"):
        read_snapshot(gzip.compress(rows())[:-12], name="q.csv.gz")


def test_non_utf8_says_where() -> None:
    content = rows(ROW.replace("ETH", "\u00c9TH")).decode().encode("latin-1")
    with pytest.raises(SnapshotError) as info:
        read_snapshot(content, name="latin.csv")
    assert info.value.row == 4
    assert "byte 0xc9 at line 5, character 22 is not UTF-8" in str(info.value)
    assert str(info.value).startswith("latin.csv, row 4")


def test_ragged_csv_row() -> None:
    with pytest.raises(SnapshotError, match="line 4") as info:
        read_snapshot(rows(ROW.strip() + ",1,2\n", good=2), name="q.csv")
    assert info.value.row == 3 and "q.csv" in str(info.value)


def test_duplicate_column() -> None:
    with pytest.raises(SnapshotError, match="column 'strike' twice"):
        read_snapshot((HEADER.strip() + ",Strike\n" + ROW.strip() + ",1\n").encode(), name="q.csv")


@pytest.mark.parametrize(
    ("content", "kind", "words"),
    [
        (b"hello,world\n1,2\n", UnknownFormatError, "unknown snapshot format"),
        (b"PK\x03\x04rest of a zip", UnknownFormatError, "zip archive"),
        (b'{"data": []}', UnknownFormatError, "not a Deribit book summary"),
        (b"[1, 2, 3]", UnknownFormatError, "not a Deribit book summary"),
        (b'{"result": [1, 2]}', SnapshotError, "record 1 of 'result' is not an object"),
        (b'{"result": [{"instrument_name": "BTC-PERPETUAL"}]}', SnapshotError, "no option records"),
        (b'{"result": []}', SnapshotError, "empty"),
        (b'{"jsonrpc": "2.0", "error": {"message": "bad currency"}}', SnapshotError, "bad currency"),
        (b'{"result": [{"instrument_name": "BTC-28AUG26', SnapshotError, "not valid JSON"),
    ],
)
def test_unknown_and_not_deribit_shaped(content: bytes, kind: type[SnapshotError], words: str) -> None:
    with pytest.raises(kind, match=words) as info:
        read_snapshot(content, name="in.dat")
    assert str(info.value).startswith("in.dat")


@pytest.mark.parametrize(
    ("name", "row", "words"),
    [
        ("BTC-28AUX26-60000-C", 2, "is not a date"),
        ("BTC-28AUG26-60k-C", 2, "cannot read the option name"),
        ("BTC-28AUG26-0-C", 2, "must be > 0"),
    ],
)
def test_deribit_bad_instrument_names(name: str, row: int, words: str) -> None:
    records = [dict(API_RECORDS[0]), {**API_RECORDS[0], "instrument_name": name}, API_RECORDS[4]]
    with pytest.raises(SnapshotError, match=words) as info:
        read_snapshot(json.dumps({"result": records}).encode(), name="d.json")
    assert info.value.row == row and info.value.column == "instrument_name"
    assert str(info.value).startswith(f"d.json, row {row}")


def test_deribit_non_numeric_price_names_record_and_field() -> None:
    records = [API_RECORDS[0], {**API_RECORDS[1], "ask_price": "n/a?"}, API_RECORDS[4]]
    with pytest.raises(SnapshotError, match="'n/a\\?' is not a number") as info:
        read_snapshot(json.dumps({"result": records}).encode(), name="d.json")
    assert (info.value.row, info.value.column) == (2, "ask_price")
    assert "instrument BTC-28AUG26-60000-P, record 2 of 'result'" in str(info.value)


def test_deribit_without_snapshot_time() -> None:
    records = [{key: value for key, value in API_RECORDS[0].items() if key != "creation_timestamp"}, API_RECORDS[4]]
    with pytest.raises(SnapshotError, match="no snapshot time"):
        read_snapshot(json.dumps(records).encode(), name="d.json")


def test_corrupt_parquet(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    read_snapshot(CANONICAL_CSV.encode()).to_parquet(buffer)
    data = buffer.getvalue()
    with pytest.raises(SnapshotError, match="^x.parquet: corrupt or unreadable Parquet"):
        read_snapshot(data[: len(data) // 2] + data[-8:], name="x.parquet")
    with pytest.raises(SnapshotError, match="^y.parquet: corrupt or unreadable Parquet"):
        read_snapshot(b"not parquet at all", name="y.parquet")


def test_missing_path() -> None:
    with pytest.raises(SnapshotError, match="cannot read the file"):
        read_snapshot("/nonexistent/dir/quotes.csv")
