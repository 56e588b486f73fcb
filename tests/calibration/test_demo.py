"""The synthetic demo data: reproducible bit for bit, realistic, and priced off the parameters it claims.

References are independent of the generator: QuantLib's ``blackFormulaImpliedStdDev`` inverts the quoted mids, the
SSVI formula is checked against a value worked out by hand, and the absence of static arbitrage is checked
numerically (Durrleman's density condition and calendar monotonicity), not only through the parameter bounds.
"""

from __future__ import annotations

import filecmp
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from calibration import demo
from calibration.models.ssvi import power_law_phi, ssvi_total_variance

ql = pytest.importorskip("QuantLib")

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "data"
REQUIRED = ["snapshot_time", "underlying", "expiry", "strike", "option_type", "bid", "ask", "underlying_price"]
YEAR = 365.0 * 86400.0


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    demo.write_demo_data(directory)
    return directory


def _relative_files(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def _params(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _history_files(directory: Path) -> list[Path]:
    return sorted((directory / "history").glob("btc_*.csv"))


# ---------------------------------------------------------------------------------------------------------------
# SSVI
# ---------------------------------------------------------------------------------------------------------------


def test_ssvi_total_variance_matches_a_hand_computed_value():
    # k = 0.1, theta = 0.04, rho = -0.5, phi = 2: phi k = 0.2, (0.2 - 0.5)^2 + 1 - 0.25 = 0.84,
    # w = 0.02 * (1 - 0.1 + sqrt(0.84)) = 0.02 * 1.8165151389911680 = 0.036330302779823360
    w = ssvi_total_variance(0.1, 0.04, rho=-0.5, phi=2.0)
    assert w == pytest.approx(0.03633030277982336, rel=1e-14)
    # at the money w = theta, whatever rho and phi
    assert ssvi_total_variance(0.0, 0.04, rho=0.3, phi=7.0) == pytest.approx(0.04, rel=1e-15)
    # phi(0.04; eta=1, gamma=1/2) = 1 / (0.2 sqrt(1.04)) = 4.902903378454601
    assert power_law_phi(0.04, eta=1.0, gamma=0.5) == pytest.approx(4.902903378454601, rel=1e-14)


def test_ssvi_wings_are_linear_with_roger_lee_slopes():
    theta, rho, phi = 0.09, -0.4, 3.0
    k = np.array([-200.0, 200.0])
    slopes = ssvi_total_variance(k, theta, rho=rho, phi=phi) / np.abs(k)
    expected = theta * phi / 2.0 * np.array([1.0 - rho, 1.0 + rho])
    np.testing.assert_allclose(slopes, expected, rtol=1e-2)
    assert np.all(slopes <= 2.0)  # Roger Lee's moment bound


def _durrleman_g(k: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Durrleman's g(k) >= 0 (no butterfly arbitrage), with derivatives by central differences."""
    dw = np.gradient(w, k)
    d2w = np.gradient(dw, k)
    return (1.0 - k * dw / (2.0 * w)) ** 2 - dw**2 / 4.0 * (1.0 / w + 0.25) + d2w / 2.0


def _history_surfaces(directory: Path) -> list[demo.DemoSurface]:
    snapshots = _params(directory / "history" / "btc_history.params.json")["snapshots"]
    return [demo.DemoSurface(**s["surface"]) for s in snapshots]


def test_durrleman_check_would_catch_butterfly_arbitrage():
    k = np.linspace(-1.5, 1.5, 6001)
    theta = 0.0004
    bad = ssvi_total_variance(k, theta, rho=-0.9, phi=power_law_phi(theta, eta=3.0, gamma=0.5))
    assert _durrleman_g(k, bad)[50:-50].min() < 0.0


def test_demo_surfaces_are_free_of_static_arbitrage(generated):
    k = np.linspace(-2.0, 2.0, 8001)
    t = np.concatenate([np.linspace(0.5 / 365, 0.1, 40), np.linspace(0.1, 2.2, 60)[1:]])
    for surface in [demo.BTC_SURFACE, demo.SPX_SURFACE, *_history_surfaces(generated)]:
        # Gatheral-Jacquier sufficient conditions for the power law
        assert 0.0 < surface.gamma <= 0.5
        assert surface.eta * (1.0 + abs(surface.rho)) <= 2.0
        theta = surface.theta(t)
        assert np.all(np.diff(theta) > 0.0), "ATM total variance must increase with maturity"
        phi = surface.phi(theta)
        assert np.all(theta * phi * (1.0 + abs(surface.rho)) < 4.0)
        assert np.all(theta * phi**2 * (1.0 + abs(surface.rho)) <= 4.0 + 1e-12)
        # numerically: butterflies on every maturity, calendar spreads at every strike
        previous = None
        for ti in t[::10]:
            w = surface.total_variance(k, ti)
            assert _durrleman_g(k, w)[2:-2].min() > -1e-9, (surface.underlying, ti)
            if previous is not None:
                assert np.all(w >= previous)
            previous = w


def test_vols_are_in_a_believable_range():
    btc, spx = demo.BTC_SURFACE, demo.SPX_SURFACE
    btc_t = np.array([(e - demo.BTC_ASOF).total_seconds() / YEAR for e in demo.deribit_expiries(demo.BTC_ASOF)])
    spx_t = np.array([(e - demo.SPX_ASOF).total_seconds() / YEAR for e in demo.spx_expiries(demo.SPX_ASOF)])
    assert np.all((btc.implied_vol(0.0, btc_t) > 0.45) & (btc.implied_vol(0.0, btc_t) < 0.60))
    assert np.all((spx.implied_vol(0.0, spx_t) > 0.12) & (spx.implied_vol(0.0, spx_t) < 0.20))
    # SPX: strong negative skew (90 % strike several points above the money, calls below)
    one_year = 1.0
    down, atm, up = spx.implied_vol(np.log([0.9, 1.0, 1.1]), one_year)
    assert down - atm > 0.03 and up < atm
    # the forward is below spot * exp(r t): dividends
    assert spx.forward(one_year) < spx.spot * np.exp(spx.rate * one_year)
    # BTC: contango, zero rate
    assert btc.forward(0.5) > btc.spot and btc.discount(0.5) == 1.0


# ---------------------------------------------------------------------------------------------------------------
# Reproducibility
# ---------------------------------------------------------------------------------------------------------------


def test_same_seed_gives_identical_bytes(generated, tmp_path):
    written = demo.write_demo_data(tmp_path)
    assert sorted(str(p.relative_to(tmp_path)) for p in written) == _relative_files(tmp_path)
    assert _relative_files(tmp_path) == _relative_files(generated)
    for name in _relative_files(generated):
        assert (tmp_path / name).read_bytes() == (generated / name).read_bytes(), name


def test_another_seed_gives_other_data(generated, tmp_path):
    demo.write_demo_data(tmp_path, seed=demo.DEFAULT_SEED + 1)
    assert _relative_files(tmp_path) == _relative_files(generated)
    for name in ("btc_demo.csv", "spx_demo.csv", "history/btc_2026-11-19_1200.csv"):
        assert (tmp_path / name).read_bytes() != (generated / name).read_bytes(), name


def test_committed_data_is_a_fresh_generation(generated):
    """The bit-for-bit promise: `smilescope demo` reproduces the files in data/ exactly."""
    assert COMMITTED.is_dir(), "data/ is missing: run `python -m calibration demo`"
    names = _relative_files(generated)
    committed = set(_relative_files(COMMITTED))
    assert set(names) <= committed, f"not committed: {sorted(set(names) - committed)}"
    stray = {n for n in committed if n.startswith("history/")} - set(names)
    assert not stray, f"history files not produced by the generator: {sorted(stray)}"
    _, mismatch, errors = filecmp.cmpfiles(generated, COMMITTED, names, shallow=False)
    assert not mismatch and not errors, f"differ from a fresh generation: {mismatch + errors}"


# ---------------------------------------------------------------------------------------------------------------
# Shape of the files
# ---------------------------------------------------------------------------------------------------------------


def _check_canonical(frame: pd.DataFrame) -> None:
    assert set(REQUIRED) <= set(frame.columns)
    text_times = frame["snapshot_time"].astype(str)
    assert text_times.str.endswith("Z").all() and frame["expiry"].astype(str).str.endswith("Z").all()
    snapshot = pd.to_datetime(frame["snapshot_time"], utc=True)
    expiry = pd.to_datetime(frame["expiry"], utc=True)
    assert snapshot.nunique() == 1 and (expiry > snapshot).all()
    assert frame["underlying"].nunique() == 1
    assert (frame["strike"] > 0).all()
    assert set(frame["option_type"]) == {"C", "P"}
    for column in ("bid", "ask", "underlying_price"):
        assert pd.api.types.is_float_dtype(frame[column]) or pd.api.types.is_integer_dtype(frame[column])
        assert (frame[column].dropna() >= 0).all()
    assert not frame.duplicated(["expiry", "strike", "option_type"]).any()


def test_btc_chain_is_deribit_like(generated):
    frame = _read(generated / "btc_demo.csv")
    _check_canonical(frame)
    assert 700 <= len(frame) <= 900
    assert frame["inverse"].dtype == bool and frame["inverse"].all()
    ttm = (pd.to_datetime(frame["expiry"], utc=True) - pd.to_datetime(frame["snapshot_time"], utc=True))
    ttm_days = ttm.dt.total_seconds() / 86400.0
    expiries = pd.to_datetime(frame["expiry"], utc=True).drop_duplicates()
    assert len(expiries) >= 10
    assert ttm_days.min() <= 1.0 and ttm_days.max() >= 0.8 * 365
    assert (expiries.dt.hour == 8).all() and (expiries.dt.minute == 0).all()
    # forward = futures mid on a 1.25 grid, in contango
    forwards = frame.groupby("expiry")["forward"].first().sort_index()
    assert np.all(np.mod(forwards.to_numpy(), 1.25) == 0.0)
    assert forwards.iloc[-1] > forwards.iloc[0] > 0.99 * frame["underlying_price"].iloc[0]
    # Deribit ticks: 0.0001 below 0.005, 0.0005 above
    prices = pd.concat([frame["bid"], frame["ask"]]).dropna()
    ticks = np.where(prices < 0.005, 0.0001, 0.0005)
    assert np.allclose(np.round(prices / ticks), prices / ticks, atol=1e-6)
    # strikes on round grids, wider for longer expiries
    assert np.all(np.mod(frame["strike"], 500.0) == 0.0)
    first, last = sorted(frame["expiry"].unique())[:: len(frame["expiry"].unique()) - 1]
    near = np.diff(np.sort(frame.loc[frame["expiry"] == first, "strike"].unique())).min()
    far = np.diff(np.sort(frame.loc[frame["expiry"] == last, "strike"].unique())).min()
    assert far > near


def test_spx_chain_is_cboe_like(generated):
    frame = _read(generated / "spx_demo.csv")
    _check_canonical(frame)
    assert 2700 <= len(frame) <= 3300
    assert "forward" not in frame.columns and "inverse" not in frame.columns
    ttm = (pd.to_datetime(frame["expiry"], utc=True) - pd.to_datetime(frame["snapshot_time"], utc=True))
    ttm_days = ttm.dt.total_seconds() / 86400.0
    assert ttm_days.min() <= 7.0 and ttm_days.max() >= 1.9 * 365
    assert frame["expiry"].nunique() >= 15
    prices = pd.concat([frame["bid"], frame["ask"]])
    prices = prices[prices > 0]
    ticks = np.where(prices < 3.0, 0.05, 0.10)
    assert np.allclose(np.round(prices / ticks), prices / ticks, atol=1e-6)
    assert np.all(np.mod(frame["strike"], 5.0) == 0.0)
    assert set(np.diff(np.sort(frame["strike"].unique()))) >= {5.0}
    # no bid is written as 0 (CBOE habit), only in the out-of-the-money wings
    no_bid = frame[frame["bid"] == 0]
    assert len(no_bid) > 10 and not frame["bid"].isna().any()


def test_history_is_consecutive_hours_with_a_rolling_calendar(generated):
    files = _history_files(generated)
    assert len(files) >= 48
    frames = [_read(p) for p in files]
    times = pd.to_datetime([f["snapshot_time"].iloc[0] for f in frames], utc=True)
    assert (times[1:] - times[:-1] == pd.Timedelta(hours=1)).all()
    assert times[-1] + pd.Timedelta(hours=1) == demo.BTC_ASOF
    passed = 0
    for before, after, t_after in zip(frames, frames[1:], times[1:], strict=False):
        _check_canonical(after)
        gone = set(before["expiry"]) - set(after["expiry"])
        passed += len(gone)
        assert all(pd.Timestamp(e) <= t_after for e in gone), "only expired expiries may disappear"
    assert passed >= 1, "the 48 hours should see at least one expiry pass"
    counts = [len(f) for f in frames]
    assert 600 <= min(counts) and max(counts) <= 950
    spots = np.array([f["underlying_price"].iloc[0] for f in frames])
    assert np.unique(spots).size == len(spots)  # spot moves every hour
    assert np.abs(np.diff(np.log(spots))).max() < 0.05
    # the params drift: not all equal, and one hour later the history meets the demo chain's parameters
    surfaces = _history_surfaces(generated)
    assert len({s.rho for s in surfaces}) > 10 and len({s.eta for s in surfaces}) > 10
    assert surfaces[-1].spot == pytest.approx(demo.BTC_SURFACE.spot, rel=0.03)
    assert surfaces[-1].rho == pytest.approx(demo.BTC_SURFACE.rho, abs=0.03)


def test_data_folder_is_labelled_synthetic_and_small(generated):
    readme = (generated / "README.md").read_text(encoding="utf-8")
    assert "SYNTHETIC" in readme.splitlines()[0]
    assert "smilescope demo" in readme and "python -m calibration demo" in readme
    for path in generated.rglob("*.params.json"):
        assert _params(path)["synthetic"] is True
    assert sum(p.stat().st_size for p in generated.rglob("*") if p.is_file()) < 10 * 2**20


# ---------------------------------------------------------------------------------------------------------------
# The quotes come from the known surface (independent implied vols)
# ---------------------------------------------------------------------------------------------------------------


def _venue_tick(price: np.ndarray, underlying: str) -> np.ndarray:
    if underlying == "BTC":
        return np.where(price < 0.005, 0.0001, 0.0005)
    return np.where(price < 3.0, 0.05, 0.10)


def _with_truth(frame: pd.DataFrame, params: dict) -> pd.DataFrame:
    """Join each quote with its expiry's true forward, discount, theta, phi and its dirt label, and add the model
    vol, the model price (Black-76 written out here with scipy, quote currency) and ``units`` (quote currency per
    premium unit: the forward for inverse BTC premiums)."""
    truth = pd.DataFrame(params["expiries"])[["expiry", "forward", "discount", "theta", "phi"]]
    frame = frame.merge(truth, on="expiry", suffixes=("_quoted", ""))
    frame["dirt"] = ""
    for kind, rows in params["dirt"].items():
        keys = {(e, float(k), o) for e, k, o in rows}
        mask = [(e, float(k), o) in keys for e, k, o in zip(frame["expiry"], frame["strike"], frame["option_type"])]
        frame.loc[mask, "dirt"] = kind
    snapshot = pd.to_datetime(frame["snapshot_time"], utc=True)
    t = (pd.to_datetime(frame["expiry"], utc=True) - snapshot).dt.total_seconds().to_numpy() / YEAR
    F, K, D = (frame[c].to_numpy() for c in ("forward", "strike", "discount"))
    k = np.log(K / F)
    w = ssvi_total_variance(k, frame["theta"].to_numpy(), rho=params["surface"]["rho"], phi=frame["phi"].to_numpy())
    s = np.sqrt(w)
    d1 = -k / s + 0.5 * s
    sign = np.where(frame["option_type"] == "C", 1.0, -1.0)
    return frame.assign(
        ttm=t,
        k=k,
        model_vol=np.sqrt(w / t),
        model_price=D * sign * (F * norm.cdf(sign * d1) - K * norm.cdf(sign * (d1 - s))),
        vega=D * F * norm.pdf(d1) * np.sqrt(t),
        units=F if frame["underlying"].iloc[0] == "BTC" else 1.0,
        otm=np.where(sign > 0, k >= 0.0, k <= 0.0),
    )


def _clean(frame: pd.DataFrame) -> pd.DataFrame:
    """Two-sided quotes the generator did not make dirty on purpose."""
    return frame[(frame["dirt"] == "") & (frame["bid"] > 0) & (frame["ask"] >= frame["bid"])]


def _mid_and_half_tick(clean: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Mid and half a tick (of the ask's price level, the larger one) in the quote currency."""
    units = clean["units"].to_numpy()
    mid = 0.5 * (clean["bid"] + clean["ask"]).to_numpy() * units
    return mid, 0.5 * _venue_tick(clean["ask"].to_numpy(), clean["underlying"].iloc[0]) * units


def _quantlib_vol(is_call: bool, strike: float, forward: float, price: float, discount: float, ttm: float) -> float:
    kind = ql.Option.Call if is_call else ql.Option.Put
    guess = float(0.5 * np.sqrt(ttm))
    try:
        std = ql.blackFormulaImpliedStdDev(
            kind, float(strike), float(forward), float(price), float(discount), 0.0, guess, 1e-13, 500
        )
    except RuntimeError:
        return float("nan")
    return std / np.sqrt(ttm)


def _history_params(directory: Path, file: str) -> dict:
    snapshots = _params(directory / "history" / "btc_history.params.json")["snapshots"]
    return next(s for s in snapshots if s["file"] == file)


@pytest.mark.parametrize("name", ["btc_demo", "spx_demo", "history/btc_2026-11-19_0700"])
def test_clean_mids_reproduce_the_known_ssvi_vols(generated, name):
    if name.startswith("history/"):
        params = _history_params(generated, Path(name).name + ".csv")
    else:
        params = _params(generated / f"{name}.params.json")
    frame = _with_truth(_read(generated / f"{name}.csv"), params)
    # out of the money: deep in the money a time value under half a tick can leave the mid below intrinsic
    clean = _clean(frame)
    clean = clean[clean["otm"]]
    mid, half_tick = _mid_and_half_tick(clean)
    bound = half_tick / clean["vega"].to_numpy()  # vol error of a price error of half a tick
    usable = bound < 0.02
    assert usable.mean() > 0.6
    rows = clean[usable]
    columns = [rows["option_type"] == "C", rows["strike"], rows["forward"], mid[usable], rows["discount"], rows["ttm"]]
    ql_vol = np.array([_quantlib_vol(*row) for row in zip(*columns, strict=True)])
    assert np.isfinite(ql_vol).all()
    assert np.all(np.abs(ql_vol - rows["model_vol"].to_numpy()) <= 1.5 * bound[usable] + 1e-6)


def test_every_snapshot_is_priced_off_its_parameters(generated):
    """Bid rounded down and ask rounded up: the model price is within half a tick of every clean mid."""
    targets = [(f"{name}.csv", _params(generated / f"{name}.params.json")) for name in ("btc_demo", "spx_demo")]
    targets += [(f"history/{p.name}", _history_params(generated, p.name)) for p in _history_files(generated)]
    for name, params in targets:
        clean = _clean(_with_truth(_read(generated / name), params))
        mid, half_tick = _mid_and_half_tick(clean)
        error = np.abs(mid - clean["model_price"].to_numpy())
        assert np.all(error <= half_tick * (1.0 + 1e-9)), name
        assert len(clean) > 0.8 * sum(e["n_quotes"] for e in params["expiries"]), name


def test_dirt_is_where_the_params_say(generated):
    for name in ("btc_demo", "spx_demo"):
        params = _params(generated / f"{name}.params.json")
        frame = _with_truth(_read(generated / f"{name}.csv"), params)
        crossed = frame["bid"] > frame["ask"]
        assert crossed.sum() >= 3 and (frame.loc[crossed, "dirt"] == "crossed").all()
        # removed rows are listed strikes missing from the file
        removed = {(e, float(k), o) for e, k, o in params["dirt"]["removed"]}
        present = set(zip(frame["expiry"], frame["strike"].astype(float), frame["option_type"], strict=True))
        assert removed and not removed & present
        assert len(frame) == sum(e["n_quotes"] for e in params["expiries"])
        # stale quotes are visibly off the surface: the model price is outside their bid-ask
        stale = frame[frame["dirt"] == "stale"]
        assert len(stale) >= 3
        outside = (stale["model_price"] < stale["bid"] * stale["units"]) | (
            stale["model_price"] > stale["ask"] * stale["units"]
        )
        assert outside.all()
        # no bid only out of the money
        no_bid = frame[frame["bid"].isna() | (frame["bid"] == 0)]
        assert len(no_bid) > 5 and no_bid["otm"].all()


def test_spreads_widen_away_from_the_money(generated):
    frame = _with_truth(_read(generated / "spx_demo.csv"), _params(generated / "spx_demo.params.json"))
    frame = _clean(frame)
    frame = frame[frame["otm"]]
    z = frame["k"] / np.sqrt(frame["theta"])
    spread_vol = (frame["ask"] - frame["bid"]) / frame["vega"]
    assert spread_vol[np.abs(z) > 2].median() > 1.5 * spread_vol[np.abs(z) < 0.5].median()


def test_btc_forward_column_is_the_futures_mid(generated):
    params = _params(generated / "btc_demo.params.json")
    frame = _with_truth(_read(generated / "btc_demo.csv"), params)
    assert np.all(np.abs(frame["forward_quoted"] - frame["forward"]) <= 1.25 + 1e-9)


def test_spx_forward_from_parity_is_below_spot_carry(generated):
    """Put-call parity on the mids recovers the known forward and discount (the file has no forward column)."""
    params = _params(generated / "spx_demo.params.json")
    frame = _clean(_with_truth(_read(generated / "spx_demo.csv"), params))
    frame = frame.assign(mid=0.5 * (frame["bid"] + frame["ask"]))
    wide = frame.pivot_table(index=["expiry", "strike"], columns="option_type", values="mid").dropna().reset_index()
    truth = pd.DataFrame(params["expiries"]).set_index("expiry")
    spot, rate = params["surface"]["spot"], params["surface"]["rate"]
    checked = 0
    for expiry, group in wide.groupby("expiry"):
        row = truth.loc[expiry]
        if row["ttm"] < 0.05:
            continue
        near = group[np.abs(np.log(group["strike"] / row["forward"])) < np.sqrt(row["theta"])]
        slope, intercept = np.polyfit(near["strike"], near["C"] - near["P"], 1)  # C - P = D F - D K
        discount, forward = -slope, -intercept / slope
        assert discount == pytest.approx(row["discount"], abs=2e-4)
        assert forward == pytest.approx(row["forward"], abs=0.5)
        assert forward < spot * np.exp(rate * row["ttm"])
        checked += 1
    assert checked >= 15
