"""calibrate(), evaluate(), CalibrationSettings, CalibrationResult and the `fit` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from calibration import CalibrationResult, CalibrationSettings, calibrate, evaluate, load_snapshot
from calibration.black import black_greeks, black_price
from calibration.errors import CalibrationError
from calibration.models.base import QuoteArrays
from calibration.optimizers import OPTIMIZERS, CalibrationCancelled

ROOT = Path(__file__).resolve().parents[2]
HISTORY = ROOT / "data" / "history"


def make_quotes(
    vol_of_ttm,
    ttms=(0.05, 0.25, 1.0),
    *,
    forward=100.0,
    rate=0.02,
    n_strikes=11,
    half_spread_vol=0.01,
    vol_noise=0.0,
    price_noise=0.0,
    seed=0,
) -> QuoteArrays:
    """Out-of-the-money quotes of a surface given by ``vol_of_ttm(k, t)``; prices, band and vega from Black."""
    rng = np.random.default_rng(seed)
    F, K, T = [], [], []
    for t in ttms:
        sd = 0.5 * np.sqrt(t)
        strikes = forward * np.exp(np.linspace(-2.0 * sd, 2.0 * sd, n_strikes))
        F += [forward * np.exp(0.01 * t)] * n_strikes
        K += list(strikes)
        T += [t] * n_strikes
    F, K, T = np.array(F), np.array(K), np.array(T)
    D = np.exp(-rate * T)
    is_call = K >= F
    vol = vol_of_ttm(np.log(K / F), T) + vol_noise * rng.standard_normal(T.shape)
    px = lambda v: black_price(F, K, T, v, is_call=is_call, discount=D)  # noqa: E731
    mid = px(vol) + price_noise * rng.standard_normal(T.shape)
    return QuoteArrays.from_arrays(
        forward=F, strike=K, ttm=T, discount=D, is_call=is_call,
        vol_bid=vol - half_spread_vol, vol_mid=vol, vol_ask=vol + half_spread_vol,
        price_bid=px(vol - half_spread_vol), price_mid=mid, price_ask=px(vol + half_spread_vol),
        vega=black_greeks(F, K, T, vol, is_call=is_call, discount=D).vega,
        open_interest=np.arange(T.size, dtype=float),
    )


FLAT = {0.05: 0.62, 0.25: 0.55, 1.0: 0.48}


def flat_vols(k, t):
    return np.vectorize(FLAT.get)(t).astype(float)


# -- flat Black: exact recovery with every optimizer ------------------------------------------------------------


@pytest.mark.parametrize("space", ["vol", "price"])
@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_flat_black_recovers_the_vols_of_clean_data(optimizer, space):
    q = make_quotes(flat_vols)
    result = calibrate(q, CalibrationSettings(model="black", optimizer=optimizer, space=space))
    assert result.success, result.message
    assert result.kind == "slice" and result.param_names == ("sigma",)
    np.testing.assert_allclose(result.params["sigma"], [0.62, 0.55, 0.48], atol=1e-9 if optimizer != "nelder" else 1e-7)
    np.testing.assert_allclose(result.expiry_ttm, [0.05, 0.25, 1.0])
    assert result.rmse_vol_points < 1e-5
    assert result.inside_spread_share == 1.0
    assert result.n_quotes == q.n and result.n_excluded == 0 and result.nfev > 0
    assert np.allclose(result.std_errors["sigma"], 0.0, atol=1e-8)  # zero residuals, zero standard errors


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy"])
def test_robust_losses_resist_an_outlier(loss):
    q = make_quotes(flat_vols, ttms=(0.25,))
    vol = q.vol_mid.copy()
    vol[3] += 0.2  # one wild quote
    q = q.with_values(vol_mid=vol, vol_bid=vol - 0.01, vol_ask=vol + 0.01)
    plain = calibrate(q, CalibrationSettings(model="black", weights="uniform"))
    robust = calibrate(q, CalibrationSettings(model="black", weights="uniform", loss=loss))
    assert plain.params["sigma"][0] == pytest.approx(0.55 + 0.2 / 11)  # least squares: the mean
    assert abs(robust.params["sigma"][0] - 0.55) < 0.2 * abs(plain.params["sigma"][0] - 0.55)


def test_band_fit_is_flat_inside_the_spread():
    # mids scattered by +-0.5 vol point inside 1-point half spreads: a band fit leaves every quote inside
    q = make_quotes(flat_vols, ttms=(0.25,), vol_noise=0.005, seed=4)
    q = q.with_values(vol_bid=np.full(q.n, 0.54), vol_ask=np.full(q.n, 0.56))
    result = calibrate(q, CalibrationSettings(model="black", fit_to="band", optimizer="trf"))
    assert 0.54 <= result.params["sigma"][0] <= 0.56
    assert result.inside_spread_share == 1.0
    # every residual is zero inside the band: standard errors come from the residuals to the mid
    # (weighted regression on a constant: se^2 = sum w (v - s)^2 / (n - 1) / sum w, w the vega weights)
    v, w = q.vol_mid, q.vega / q.vega.mean()
    s2 = np.sum(w * (v - result.params["sigma"][0]) ** 2) / (v.size - 1)
    assert result.std_errors["sigma"][0] == pytest.approx(np.sqrt(s2 / np.sum(w)), rel=1e-6)
    assert "band fit: standard errors from the residuals to the mid" in result.notes


# -- standard errors ------------------------------------------------------------------------------------------


def test_standard_errors_in_the_linear_regression_case_are_exact():
    # flat Black in vol space with uniform weights is a regression on a constant: sigma = mean, se = sd / sqrt(n)
    q = make_quotes(flat_vols, vol_noise=0.01, seed=1, n_strikes=15)
    result = calibrate(q, CalibrationSettings(model="black", weights="uniform"))
    for j, t in enumerate((0.05, 0.25, 1.0)):
        v = q.vol_mid[q.ttm == t]
        assert result.params["sigma"][j] == pytest.approx(v.mean(), abs=1e-9)
        assert result.std_errors["sigma"][j] == pytest.approx(v.std(ddof=1) / np.sqrt(v.size), rel=1e-6)
        assert result.correlation[j][0][0] == pytest.approx(1.0)


def test_standard_errors_match_a_monte_carlo_estimate_in_price_space():
    # nonlinear case: Black prices with Gaussian price noise, fitted in price space
    estimates, reported = [], []
    for seed in range(300):
        q = make_quotes(flat_vols, ttms=(0.25,), price_noise=0.05, seed=seed, n_strikes=9)
        result = calibrate(q, CalibrationSettings(model="black", space="price", weights="uniform"))
        estimates.append(result.params["sigma"][0])
        reported.append(result.std_errors["sigma"][0])
    empirical = np.std(estimates, ddof=1)
    assert np.mean(reported) == pytest.approx(empirical, rel=0.3)
    assert np.mean(estimates) == pytest.approx(0.55, abs=3 * empirical / np.sqrt(300) + 1e-4)


# -- result ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def noisy_fit() -> tuple[QuoteArrays, CalibrationResult]:
    q = make_quotes(flat_vols, vol_noise=0.01, seed=2)
    vol_mid = q.vol_mid.copy()
    vol_mid[5] = np.nan  # one quote without a mid vol: not fitted in vol space
    q = q.with_values(vol_mid=vol_mid)
    return q, calibrate(q, CalibrationSettings(model="black"))


def test_quotes_without_market_data_are_excluded_and_counted(noisy_fit):
    q, result = noisy_fit
    assert result.n_excluded == 1 and result.n_quotes == q.n - 1
    assert any("without a mid vol" in note for note in result.notes)


def test_result_json_round_trip(noisy_fit, tmp_path):
    _, result = noisy_fit
    path = result.to_json(tmp_path / "fit.json")
    data = json.loads(path.read_text())
    again = CalibrationResult.from_dict(data)
    assert again.to_dict() == result.to_dict()
    np.testing.assert_array_equal(again.param_array, result.param_array)
    assert CalibrationResult.from_json(path).to_dict() == data
    # plain JSON, no NaN
    json.dumps(data, allow_nan=False)


def test_result_residual_table_and_fitted_surface_agree(noisy_fit):
    q, result = noisy_fit
    table = result.residual_frame()
    assert len(table) == result.n_quotes
    np.testing.assert_allclose(table["residual_vol_points"], 100 * (table["model_vol"] - table["vol_mid"]))
    np.testing.assert_allclose(table["model_vol"], np.repeat(result.params["sigma"], [10, 11, 11]))
    assert result.rmse_vol_points == pytest.approx(np.sqrt(np.mean(table["residual_vol_points"] ** 2)))
    assert result.max_error_vol_points == pytest.approx(np.abs(table["residual_vol_points"]).max())
    inside = (table["model_vol"] >= table["vol_bid"]) & (table["model_vol"] <= table["vol_ask"])
    assert result.inside_spread_share == pytest.approx(inside.mean())
    surface = result.fitted_surface()
    keep = np.isfinite(q.vol_mid)
    np.testing.assert_allclose(surface.vols(q.take(keep)), table["model_vol"], rtol=1e-14)
    assert table["weight"].mean() == pytest.approx(1.0)


def test_evaluate_on_the_fitted_quotes_reproduces_the_fit_statistics(noisy_fit):
    q, result = noisy_fit
    again = evaluate("black", result, q)
    for key in ("rmse_vol_points", "rmse_price", "max_error_vol_points", "inside_spread_share", "n_quotes"):
        assert getattr(again, key) == pytest.approx(getattr(result, key), rel=1e-13), key
    assert again.optimizer == "none" and again.nfev == 0 and again.success
    assert again.residuals["model_vol"] == result.residuals["model_vol"]
    # the same with a bare parameter array
    bare = evaluate("black", result.param_array, q, expiry_ttm=result.expiry_ttm)
    assert bare.rmse_vol_points == pytest.approx(result.rmse_vol_points, rel=1e-13)


def test_evaluate_interpolates_an_expiry_missing_from_the_parameters():
    q = make_quotes(flat_vols)
    # parameters for the first and last expiry only: the middle one is interpolated in total variance
    params = np.array([[0.62], [0.48]])
    result = evaluate("black", params, q, expiry_ttm=[0.05, 1.0], expiry_forward=[100.0, 100.0])
    table = result.residual_frame()
    middle = table[np.isclose(table["ttm"], 0.25)]
    w = 0.62**2 * 0.05 + (0.48**2 * 1.0 - 0.62**2 * 0.05) * (0.25 - 0.05) / (1.0 - 0.05)
    np.testing.assert_allclose(middle["model_vol"], np.sqrt(w / 0.25), rtol=1e-12)
    assert result.params["sigma"] == [0.62, 0.48]


def test_evaluate_matches_slices_by_expiry_date_across_snapshots():
    files = sorted(HISTORY.glob("btc_*.csv"))
    if len(files) < 2:
        pytest.skip("bundled history snapshots not found")
    first, later = load_snapshot(files[0]), load_snapshot(files[5])
    fit = calibrate(first, CalibrationSettings(model="black"))
    scored = evaluate("black", fit, later)
    table = scored.residual_frame()
    sigma = dict(zip(fit.expiries, fit.params["sigma"]))
    matched = table["expiry"].isin(list(sigma))
    assert matched.mean() > 0.8
    # flat Black: the vol of a matched expiry is its fitted sigma, whatever the time that has passed
    np.testing.assert_allclose(table.loc[matched, "model_vol"], table.loc[matched, "expiry"].map(sigma), rtol=1e-12)
    assert scored.asof != fit.asof and np.isfinite(scored.rmse_vol_points)


# -- warm start, regularisation, progress ---------------------------------------------------------------------


def test_warm_start_and_regularisation_toward_a_previous_result():
    q = make_quotes(flat_vols, vol_noise=0.01, seed=3)
    base = calibrate(q, CalibrationSettings(model="black"))
    warm = calibrate(q, CalibrationSettings(model="black"), initial=base)
    np.testing.assert_allclose(warm.param_array, base.param_array, atol=1e-10)
    assert warm.nfev < base.nfev
    # a strong pull toward other parameters keeps the fit there; none at all gives the free fit
    other = base.param_array + 0.05
    pulled = calibrate(q, CalibrationSettings(model="black", regularisation=1e6), previous=other)
    np.testing.assert_allclose(pulled.param_array, other, atol=1e-4)
    free = calibrate(q, CalibrationSettings(model="black", regularisation=0.0), previous=other)
    np.testing.assert_allclose(free.param_array, base.param_array, atol=1e-8)


def test_regularisation_is_penalised_least_squares():
    # flat Black, vol space, uniform weights: minimise sum (s - v_i)^2 + lam ((s - p) / width)^2 in closed form
    q = make_quotes(flat_vols, ttms=(0.25,), vol_noise=0.02, seed=5)
    lam, prev, width = 0.5, 0.4, 10.0 - 1e-4
    fit = calibrate(q, CalibrationSettings(model="black", weights="uniform", regularisation=lam), previous=[prev])
    c = lam / width**2
    expected = (q.vol_mid.sum() + c * prev) / (q.n + c)
    assert fit.params["sigma"][0] == pytest.approx(expected, abs=1e-12)


def test_progress_reports_and_cancels():
    q = make_quotes(flat_vols)
    seen = []
    result = calibrate(q, CalibrationSettings(model="black", optimizer="nelder"), progress=seen.append)
    assert result.success and seen and seen[0].nfev == 1 and seen[0].stage == "expiry 1/3"
    assert all(np.isfinite(info.rmse_vol_points) for info in seen)

    result = calibrate(q, CalibrationSettings(model="black", optimizer="nelder"), progress=lambda info: True)
    assert not result.success and result.message == "cancelled" and result.nfev == 1
    assert len(result.params["sigma"]) == 3  # the expiries not reached keep their starting point

    def stop(info):
        raise CalibrationCancelled

    result = calibrate(q, CalibrationSettings(model="black", optimizer="de"), progress=stop)
    assert not result.success and result.message == "cancelled"


def test_a_fit_out_of_evaluations_is_a_result_not_an_exception():
    q = make_quotes(flat_vols)
    result = calibrate(q, CalibrationSettings(model="black", optimizer="nelder", max_evals=3))
    assert not result.success
    assert "did not converge" in result.message and "maximum number of evaluations" in result.message


# -- settings and bad input -----------------------------------------------------------------------------------


def test_settings_round_trip_and_cache_key():
    s = CalibrationSettings(model="sabr", optimizer="trf", weights="spread", model_options={"beta": 0.5})
    assert CalibrationSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert s.cache_key() == CalibrationSettings.from_dict(s.to_dict()).cache_key()
    assert s.cache_key() != CalibrationSettings(model="sabr", optimizer="trf", weights="spread").cache_key()
    assert len({CalibrationSettings(seed=i).cache_key() for i in range(5)}) == 5
    assert hash(s) == hash(CalibrationSettings.from_dict(s.to_dict())) and len({s, CalibrationSettings()}) == 2
    defaults = CalibrationSettings()
    assert (defaults.model, defaults.optimizer, defaults.space, defaults.weights, defaults.loss, defaults.fit_to) == (
        "svi", "lm", "vol", "vega", "linear", "mid"
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"model": "garch"}, "unknown model"),
        ({"optimizer": "adam"}, "unknown optimizer"),
        ({"space": "variance"}, "unknown residual space"),
        ({"weights": "volume"}, "unknown weights"),
        ({"loss": "tukey"}, "unknown loss"),
        ({"fit_to": "last"}, "unknown fit_to"),
        ({"max_evals": 0}, "max_evals"),
        ({"max_evals": 2.5}, "whole number"),
        ({"ftol": -1.0}, "ftol"),
        ({"multistart": -2}, "starts"),
        ({"optimizer": "de", "multistart": 3}, "already global"),
        ({"regularisation": -1.0}, "regularisation"),
        ({"f_scale": 0.0}, "f_scale"),
        ({"model_options": {"beta": object()}}, "JSON"),
    ],
)
def test_bad_settings_are_calibration_errors(kwargs, match):
    with pytest.raises(CalibrationError, match=match):
        CalibrationSettings(**kwargs)


def test_bad_input_is_a_calibration_error():
    q = make_quotes(flat_vols)
    with pytest.raises(CalibrationError, match="no quotes"):
        calibrate(q.take(np.zeros(q.n, dtype=bool)), CalibrationSettings(model="black"))
    with pytest.raises(CalibrationError, match="no quote has the market data"):
        calibrate(q.with_values(vol_mid=np.full(q.n, np.nan)), CalibrationSettings(model="black"))
    with pytest.raises(CalibrationError, match="has no option"):
        calibrate(q, CalibrationSettings(model="black", model_options={"beta": 0.5}))
    with pytest.raises(CalibrationError, match="QuoteSnapshot or QuoteArrays"):
        calibrate([1, 2, 3], CalibrationSettings(model="black"))  # type: ignore[arg-type]
    with pytest.raises(CalibrationError, match="shape"):
        calibrate(q, CalibrationSettings(model="black"), initial=np.ones((2, 1)))
    with pytest.raises(CalibrationError, match="unknown calibration settings"):
        CalibrationSettings.from_dict({"model": "black", "colour": "red"})


def test_thin_expiries_are_not_fitted_by_slice_models():
    @np.vectorize
    def vol(k, t):
        return 0.5 + 0.1 * k * k

    q = make_quotes(vol, ttms=(0.25, 1.0))
    q = q.take(~((q.ttm == 1.0) & (np.arange(q.n) % 11 > 2)))  # the last expiry keeps 3 quotes
    black = calibrate(q, CalibrationSettings(model="black"))
    assert len(black.expiry_ttm) == 2 and black.n_excluded == 0  # one parameter: 3 quotes are plenty
    svi = calibrate(q, CalibrationSettings(model="svi"))
    assert svi.expiry_ttm == (0.25,) and svi.n_excluded == 3 and svi.n_quotes == 11
    assert any("fewer than 5 quotes" in note for note in svi.notes)
    # evaluating needs no minimum: the thin expiry is scored with the parameters of the fitted one
    scored = evaluate("svi", svi, q)
    assert scored.n_quotes == q.n and scored.n_excluded == 0


# -- the command line -----------------------------------------------------------------------------------------

JSON_KEYS = {
    "model", "optimizer", "params", "std_errors", "rmse_vol_points", "rmse_price", "inside_spread_share", "n_quotes",
    "n_dropped", "nfev", "elapsed_s", "success", "message", "arbitrage",
}


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "calibration", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_cli_fit_writes_the_result_json(tmp_path):
    snapshot = ROOT / "data" / "btc_demo.csv"
    out = tmp_path / "fit.json"
    done = run_cli("fit", str(snapshot), "--model", "black", "--optimizer", "trf", "--weights", "uniform",
                   "--json", str(out))
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert JSON_KEYS <= set(data)
    assert set(data["arbitrage"]) >= {"butterfly_violations", "calendar_violations"}
    assert data["model"] == "black" and data["optimizer"] == "trf" and data["success"] is True
    assert "rmse" in done.stdout and "sigma" in done.stdout and "evaluations" in done.stdout
    assert data["n_quotes"] == len(data["residuals"]["strike"])


def test_cli_fit_exits_2_on_bad_input(tmp_path, capsys):
    from calibration.__main__ import main

    bad = tmp_path / "bad.csv"
    bad.write_text("this,is\nnot,a snapshot\n")
    assert main(["fit", str(bad), "--model", "black"]) == 2
    assert "error" in capsys.readouterr().err.lower()
    assert main(["fit", str(tmp_path / "missing.csv"), "--model", "black"]) == 2
    assert "error" in capsys.readouterr().err.lower()
    demo = str(ROOT / "data" / "btc_demo.csv")
    assert main(["fit", demo, "--model", "black", "--optimizer", "de", "--multistart", "3"]) == 2
    assert "already global" in capsys.readouterr().err
    assert main(["fit", demo, "--model", "black", "--option", "beta=0.5"]) == 2
    assert "has no option 'beta'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse: unknown model
        main(["fit", demo, "--model", "garch"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


# -- every model x every optimizer recovers the parameters of a surface it generated ---------------------------

from calibration.models import MODEL_NAMES, get_model  # noqa: E402
from calibration.surface import FittedSurface  # noqa: E402

TTMS = (0.1, 0.5, 1.0)
#: Known parameters per model, on the expiries TTMS (slice models: one row per expiry).
TRUE_PARAMS = {
    "black": [[0.62], [0.55], [0.48]],
    "svi": [[0.01, 0.1, -0.3, 0.05, 0.2], [0.04, 0.15, -0.4, 0.0, 0.3], [0.08, 0.2, -0.35, 0.02, 0.4]],
    "sabr": [[0.6, -0.3, 1.5], [0.55, -0.35, 1.0], [0.5, -0.25, 0.7]],
    "ssvi": [0.036, 0.11525, 0.09875, -0.3, 0.5, 0.4],
    "heston": [1.5, 0.05, 0.6, -0.6, 0.04],
    "merton": [0.45, 2.0, -0.1, 0.2],
    "bates": [1.5, 0.05, 0.6, -0.6, 0.04, 1.0, -0.1, 0.15],
}
FOURIER = {"heston", "merton", "bates"}


def available_model(name: str):
    try:
        return get_model(name)
    except CalibrationError as exc:
        pytest.skip(f"model {name!r} not available yet: {exc}")


def generated_surface(name: str) -> tuple[QuoteArrays, np.ndarray]:
    """Clean quotes generated by the model itself (Black prices of its vols, or its prices and their vols)."""
    model = available_model(name)
    t = np.repeat(TTMS, 9)
    F = 100.0 * np.exp(0.02 * t)
    K = F * np.exp(np.tile(np.linspace(-2.0, 2.0, 9), len(TTMS)) * 0.5 * np.sqrt(t))
    grid = QuoteArrays.from_arrays(forward=F, strike=K, ttm=t, is_call=K >= F, discount=np.exp(-0.01 * t))
    build = getattr(model, "for_quotes", None)
    model = build(grid) if callable(build) else model
    true = TRUE_PARAMS[name]
    theta = np.array([s.default for s in model.params]) if true is None else np.array(true, dtype=float)
    if model.kind == "slice":
        surface = FittedSurface(model, theta, grid.expiry_ttm, grid.expiry_forward)
    else:
        surface = FittedSurface(model, theta, np.empty(0), np.empty(0))
    vol, price = surface.vols(grid), surface.prices(grid)
    assert np.all(np.isfinite(vol)) and np.all(vol > 0.01)
    vega = black_greeks(grid.forward, grid.strike, grid.ttm, vol, is_call=grid.is_call, discount=grid.discount).vega
    quotes = grid.with_values(
        vol_mid=vol, vol_bid=vol - 0.005, vol_ask=vol + 0.005, price_mid=price, price_bid=price - 0.005 * vega,
        price_ask=price + 0.005 * vega, vega=vega,
    )
    return quotes, theta


def recovery_case(name: str, optimizer: str, space: str = "vol") -> None:
    quotes, theta = generated_surface(name)
    budget = {"nelder": 4000, "de": 600 if name in FOURIER else 3000}.get(optimizer, 2000)
    result = calibrate(quotes, CalibrationSettings(model=name, optimizer=optimizer, space=space, max_evals=budget))
    model = result.fitted_surface().model
    width = np.array([min(s.search_bounds[1], s.upper) - max(s.search_bounds[0], s.lower) for s in model.params])
    tol = 1e-5 if optimizer in ("lm", "trf", "lbfgsb") else 1e-3
    err = np.abs(result.param_array - theta) / width
    assert err.max() < tol, (result.param_names, result.param_array, theta, result.message)
    assert result.rmse_vol_points < (1e-3 if tol < 1e-4 else 1e-1), result.message
    if optimizer in ("lm", "trf", "lbfgsb"):
        assert result.success, result.message


SLOW = {("heston", "nelder"), ("heston", "de"), ("merton", "nelder"), ("merton", "de"), ("bates", "nelder"),
        ("bates", "de")}


@pytest.mark.parametrize(
    "name, optimizer",
    [pytest.param(m, o, marks=[pytest.mark.slow] if (m, o) in SLOW else [], id=f"{m}-{o}")
     for m in MODEL_NAMES for o in OPTIMIZERS],
)
def test_every_model_and_optimizer_recovers_known_parameters(name, optimizer):
    recovery_case(name, optimizer)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_recovers_known_parameters_in_price_space(name):
    recovery_case(name, "lm", space="price")


# -- real market samples ---------------------------------------------------------------------------------------

REAL_SAMPLES = ("eth_deribit_2026-05-21.csv", "btc_deribit_book_summary_2026-08-01.json.gz")
#: A fit worse than this (rmse, vol points) on the real samples is not a sensible fit of the model.
MAX_RMSE = {"black": 12.0, "svi": 1.0, "ssvi": 4.0, "sabr": 2.5, "heston": 5.0, "merton": 6.0, "bates": 4.0}


@pytest.fixture(scope="module")
def real_snapshots(shared_data):
    snapshots = {}
    for name in REAL_SAMPLES:
        if not (shared_data / name).is_file():
            pytest.skip(f"real sample {name} not found in {shared_data}")
        snapshots[name] = load_snapshot(shared_data / name)
    return snapshots


@pytest.mark.parametrize("sample", REAL_SAMPLES)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fits_on_real_samples_converge_with_sensible_errors(real_snapshots, sample, name):
    available_model(name)
    snapshot = real_snapshots[sample]
    result = calibrate(snapshot, CalibrationSettings(model=name))
    assert result.success, result.message
    assert result.n_quotes + result.n_excluded == len(snapshot.fit_quotes)
    assert result.n_dropped == snapshot.drops.n_dropped
    assert 0.0 < result.rmse_vol_points < MAX_RMSE[name]
    assert result.rmse_vol_points <= result.max_error_vol_points < 100.0
    assert 0.0 <= result.inside_spread_share <= 1.0
    se = result.std_error_array
    assert np.all(np.isfinite(se)) and np.all(se >= 0.0)
    assert np.all(np.isfinite(result.param_array))
    assert (result.feller_margin is not None) == (name in ("heston", "bates"))
    # the fitted surface reproduces the reported model vols
    table = result.residual_frame()
    assert np.isfinite(table["model_vol"]).all()
    assert np.sqrt(np.mean(table["residual_vol_points"] ** 2)) == pytest.approx(result.rmse_vol_points)


@pytest.mark.parametrize("name", ["ssvi", "heston"])
def test_surface_model_results_round_trip_and_evaluate_to_the_same_statistics(name):
    quotes, _ = generated_surface(name)
    rng = np.random.default_rng(9)
    vol = quotes.vol_mid + 0.003 * rng.standard_normal(quotes.n)
    price = black_price(quotes.forward, quotes.strike, quotes.ttm, vol, is_call=quotes.is_call,
                        discount=quotes.discount)
    quotes = quotes.with_values(vol_mid=vol, price_mid=price)
    fit = calibrate(quotes, CalibrationSettings(model=name))
    assert fit.success and np.all(np.isfinite(fit.std_error_array)) and np.all(fit.std_error_array > 0)
    corr = np.array(fit.correlation)
    np.testing.assert_allclose(np.diag(corr), 1.0)
    np.testing.assert_allclose(corr, corr.T)
    # the Fourier pricer widens its truncation window as the parameters move, so a fresh plan may price to a
    # few 1e-8 (relative) differently from the plan the fit ended with
    rtol = 1e-12 if name == "ssvi" else 1e-6
    again = CalibrationResult.from_dict(json.loads(json.dumps(fit.to_dict())))
    np.testing.assert_allclose(again.fitted_surface().vols(quotes), fit.residual_frame()["model_vol"], rtol=rtol)
    scored = evaluate(name, again, quotes)
    for key in ("rmse_vol_points", "rmse_price", "max_error_vol_points", "inside_spread_share", "n_quotes"):
        assert getattr(scored, key) == pytest.approx(getattr(fit, key), rel=rtol), key


# -- batched slice fits and cache keys ----------------------------------------------------------------------------


def test_batched_slice_fit_reports_progress_and_counts_evaluations():
    q = make_quotes(flat_vols)
    seen = []
    result = calibrate(q, CalibrationSettings(model="svi"), progress=lambda info: seen.append(info) and False)
    assert result.success
    assert seen and seen[-1].nfev == result.nfev >= 1
    assert np.isfinite(seen[-1].rmse_vol_points)


def test_batched_and_per_expiry_paths_reach_the_same_fit():
    """LM on the mids in vol space runs every expiry at once; trf runs them one by one: same problem."""
    q = make_quotes(lambda k, t: 0.5 + 0.2 * k * k - 0.05 * k)
    batched = calibrate(q, CalibrationSettings(model="svi", optimizer="lm"))
    looped = calibrate(q, CalibrationSettings(model="svi", optimizer="trf"))
    assert batched.rmse_vol_points == pytest.approx(looped.rmse_vol_points, rel=0.01)  # a flat valley: 1e-4 apart


def test_equal_settings_have_equal_cache_keys_whatever_the_number_types():
    a = CalibrationSettings(model="sabr", regularisation=0, ftol=1e-10, model_options={"beta": 1})
    b = CalibrationSettings(model="sabr", regularisation=0.0, ftol=1e-10, model_options={"beta": 1.0})
    assert a.cache_key() == b.cache_key()
    assert a.cache_key() != CalibrationSettings(model="sabr", model_options={"beta": 0.5}).cache_key()
