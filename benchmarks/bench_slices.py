"""SVI and SABR per-slice fits of a 10-expiry surface: Smilescope vs QuantLib, side by side.

Run standalone: ``.venv/bin/python benchmarks/bench_slices.py`` (about a minute on 2 cores, most of it in
QuantLib's restarts on noisy data).

The surfaces (10 expiries from 2 days to 2 years, 25 strikes each from -3 to +2.5 ATM standard deviations,
forward 100) are generated from known parameters:

- SVI: the raw-SVI slices of a BTC-like SSVI surface (ATM vol 46 % short, 58 % long, rho -0.25, eta 1,
  gamma 0.45), i.e. arbitrage-free SVI slices with realistic short-dated shapes;
- SABR: beta = 0.5 fixed, alpha (forward-normalised) 0.46 -> 0.58, rho -0.25 -> -0.1, nu 1.2 t^-0.4 (vol of
  vol decaying with expiry: 9.7 at 2 days, 1.2 at 1 year). QuantLib's ``sabrVolatility`` is Hagan (2002) and Smilescope's is Hagan with
  Obloj's (2008) leading term; for beta < 1 they agree at the money but not in the wings (here up to 4 vol
  points at 3 standard deviations on the 2-year expiry), so each library fits the vols of its own formula (same
  parameters, same strikes, and the same noise vector when there is noise).

"Noise" adds i.i.d. Gaussian noise of 0.1 or 0.5 vol point to every vol (seeded; 0.5 is typical of crypto mid
vols). Every method fits every quote with
equal weights in vol space (QuantLib: ``vegaWeighted=False``). RMSE is in vol points against the vols being
fitted. Timing is the best of several runs of the whole surface (10 slice fits), construction included.

Rows:

- ``smilescope batched``: the models' initial guesses for every expiry at once (SVI: quasi-explicit; SABR:
  ATM level, skew and curvature) polished by :func:`calibration.models.slices.fit_slices` (a
  Levenberg-Marquardt iteration on all slices at once with the analytic Jacobians);
- ``smilescope per slice``: the same guess, then ``scipy.optimize.least_squares`` (trf, the model's bounds for
  that expiry, analytic Jacobian) expiry by expiry;
- ``smilescope calibrate()``: the framework's ``calibration.calibrate`` (optimizer "lm", uniform weights: the
  batched path), which also computes initial guesses, standard errors and fit statistics (the arbitrage check is
  off here, as QuantLib has none);
- ``quantlib``: SviInterpolatedSmileSection / SABRInterpolation from a generic start (SVI: b = 0.1, sigma = 0.1,
  rho = m = 0, ``a`` matching the ATM variance; SABR: rho = 0, nu = 0.5, alpha from the ATM vol); QuantLib
  restarts from random points (up to 50) while its fit error is above 0.2 vol point;
- ``quantlib from smilescope guess``: the same QuantLib fits started from Smilescope's guess (guess time not
  included), to separate the optimizer from the starting point.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import QuantLib as ql

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.models.base import QuoteArrays, bounds_of  # noqa: E402
from calibration.models.slices import fit_slices  # noqa: E402
from calibration.models.sabr import SABR, sabr_vol  # noqa: E402
from calibration.models.ssvi import power_law_phi, ssvi_to_svi_raw  # noqa: E402
from calibration.models.svi import SVI, svi_total_variance  # noqa: E402

FORWARD = 100.0
DAYS = np.array([2, 7, 14, 30, 60, 91, 182, 273, 365, 730])
TTM = DAYS / 365.0
N_STRIKES = 25
NOISES = (0.0, 0.001, 0.005)
SEED = 20261121
REPEATS = 7
BETA = 0.5
TODAY = ql.Date(20, 11, 2026)


# ---------------------------------------------------------------------------------------------------------------
# surfaces


def _strikes(atm_var: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-moneyness, ttm and expiry index of every quote."""
    k = np.concatenate([np.linspace(-3.0, 2.5, N_STRIKES) * np.sqrt(w) for w in atm_var])
    return k, np.repeat(TTM, N_STRIKES), np.repeat(np.arange(TTM.size), N_STRIKES)


def _atm_vol(t: np.ndarray) -> np.ndarray:
    return 0.58 + (0.46 - 0.58) * np.exp(-t / 0.25)


def svi_truth() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Raw SVI parameters per expiry and the quotes' k, t, clean vols."""
    theta = _atm_vol(TTM) ** 2 * TTM
    raw = ssvi_to_svi_raw(theta, rho=-0.25, phi=power_law_phi(theta, eta=1.0, gamma=0.45))
    k, t, j = _strikes(theta)
    return raw, k, t, np.sqrt(svi_total_variance(k, *raw[j].T) / t)


def sabr_truth() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SABR parameters (alpha normalised, rho, nu) per expiry; k, t, clean vols of Smilescope's and QuantLib's
    formula."""
    params = np.stack((_atm_vol(TTM), -0.25 + 0.075 * TTM, 1.2 * TTM**-0.4), axis=1)
    k, t, j = _strikes(_atm_vol(TTM) ** 2 * TTM)
    alpha, rho, nu = params[j].T
    ours = sabr_vol(k, t, alpha, BETA, rho, nu)
    abs_alpha = alpha * FORWARD ** (1.0 - BETA)
    theirs = np.array([
        ql.sabrVolatility(FORWARD * np.exp(x), FORWARD, tt, a, BETA, n, r)
        for x, tt, a, n, r in zip(k, t, abs_alpha, nu, rho)
    ])
    return params, k, t, ours, theirs


def quotes_of(k: np.ndarray, t: np.ndarray, vol: np.ndarray) -> QuoteArrays:
    return QuoteArrays.from_arrays(forward=FORWARD, strike=FORWARD * np.exp(k), ttm=t, is_call=k >= 0.0, vol_mid=vol)


# ---------------------------------------------------------------------------------------------------------------
# fitters: each returns the fitted vols at the quotes


def smilescope_batched(model, quotes: QuoteArrays) -> np.ndarray:
    plan = model.prepare(quotes)
    fit = fit_slices(model, plan, quotes.vol_mid, model.initial_guesses(quotes))
    return model.values(fit.theta, plan)


def smilescope_per_slice(model, quotes: QuoteArrays) -> np.ndarray:
    from scipy.optimize import least_squares

    out = np.empty(quotes.n)
    guesses = model.initial_guesses(quotes)
    for j in range(quotes.expiry_ttm.size):
        rows = quotes.expiry_index == j
        one = quotes.take(rows)
        sized = model.for_quotes(one) if hasattr(model, "for_quotes") else model  # SVI: bounds from the slice
        lower, upper = bounds_of(sized.params)
        plan = model.prepare(one)
        fit = least_squares(
            lambda x: model.values(x, plan) - one.vol_mid, np.clip(guesses[j], lower, upper),
            jac=lambda x: model.jacobian(x, plan), bounds=(lower, upper), method="trf",
        )
        out[rows] = model.values(fit.x, plan)
    return out


def smilescope_calibrate(name: str, options: dict, quotes: QuoteArrays) -> np.ndarray:
    from calibration.calibrate import CalibrationSettings, calibrate

    settings = CalibrationSettings(model=name, optimizer="lm", weights="uniform", model_options=options)
    result = calibrate(quotes, settings, check_arbitrage=False)  # QuantLib checks nothing either
    from calibration.models import get_model

    model = get_model(name, options)
    return model.values(np.asarray(result.param_array, dtype=float), model.prepare(quotes))


def _ql_svi_sections(quotes: QuoteArrays, starts: np.ndarray | None) -> Iterator[tuple[np.ndarray, Any]]:
    """QuantLib's SVI calibrated on each expiry: ``(rows of its quotes, the calibrated smile section)``."""
    for j, days in enumerate(DAYS):
        rows = quotes.expiry_index == j
        t = quotes.expiry_ttm[j]
        atm = float(np.interp(0.0, quotes.k[rows], quotes.vol_mid[rows]))
        if starts is None:
            b, sigma, rho, m = 0.1, 0.1, 0.0, 0.0
            a = atm * atm * t - b * sigma
        else:
            a, b, rho, m, sigma = starts[j]
        section = ql.SviInterpolatedSmileSection(
            TODAY + int(days), FORWARD, list(quotes.strike[rows]), False, atm, list(quotes.vol_mid[rows]),
            a, b, sigma, rho, m, False, False, False, False, False, False,
        )
        section.a()  # triggers the calibration
        yield rows, section


def _ql_sabr_fits(quotes: QuoteArrays, starts: np.ndarray | None) -> Iterator[tuple[np.ndarray, Any]]:
    """QuantLib's SABR calibrated on each expiry: ``(rows of its quotes, the calibrated interpolation)``."""
    scale = FORWARD ** (1.0 - BETA)
    for j in range(DAYS.size):
        rows = quotes.expiry_index == j
        if starts is None:
            atm = float(np.interp(0.0, quotes.k[rows], quotes.vol_mid[rows]))
            alpha, rho, nu = atm * scale, 0.0, 0.5
        else:
            alpha, rho, nu = starts[j, 0] * scale, starts[j, 1], starts[j, 2]
        fit = ql.SABRInterpolation(
            ql.Array(list(quotes.strike[rows])), ql.Array(list(quotes.vol_mid[rows])), quotes.expiry_ttm[j],
            FORWARD, alpha, BETA, nu, rho, False, True, False, False, False,
        )
        fit.alpha()  # triggers the calibration
        yield rows, fit


def quantlib_svi(quotes: QuoteArrays, starts: np.ndarray | None) -> np.ndarray:
    out = np.empty(quotes.n)
    for rows, section in _ql_svi_sections(quotes, starts):
        out[rows] = [section.volatility(x) for x in quotes.strike[rows].tolist()]
    return out


def quantlib_sabr(quotes: QuoteArrays, starts: np.ndarray | None) -> np.ndarray:
    out = np.empty(quotes.n)
    for j, (rows, fit) in enumerate(_ql_sabr_fits(quotes, starts)):
        t = quotes.expiry_ttm[j]
        params = (fit.alpha(), fit.beta(), fit.nu(), fit.rho())
        out[rows] = [ql.sabrVolatility(x, FORWARD, t, *params) for x in quotes.strike[rows]]
    return out


def _calibrations_only(fits: Callable[[QuoteArrays, np.ndarray | None], Iterator[Any]], quotes: QuoteArrays,
                       starts: np.ndarray | None) -> Callable[[], object]:
    """QuantLib's per-expiry calibrations without the evaluation loop."""

    def run() -> None:
        for _ in fits(quotes, starts):
            pass

    return run


# ---------------------------------------------------------------------------------------------------------------
# reporting


def best_time(run: Callable[[], object], repeats: int = REPEATS) -> tuple[float, float]:
    """Best and median wall time of ``run`` in milliseconds."""
    run()  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1e3 * min(times), 1e3 * float(np.median(times))


def rmse_points(fitted: np.ndarray, target: np.ndarray) -> float:
    return float(np.sqrt(np.mean((fitted - target) ** 2)) * 100.0)


def report(title: str, rows: list[tuple[str, float, float, float]], reference: str) -> None:
    ref_time = next(best for name, best, _, _ in rows if name == reference)
    ref_rmse = next(rmse for name, _, _, rmse in rows if name == reference)
    print(f"\n{title}")
    print(f"  {'method':<38}{'best ms':>9}{'median ms':>11}{'RMSE vol pts':>14}{'time vs QL':>12}{'RMSE vs QL':>12}")
    for name, best, median, rmse in rows:
        print(f"  {name:<38}{best:>9.3f}{median:>11.3f}{rmse:>14.6f}{best / ref_time:>11.2f}x"
              f"{rmse - ref_rmse:>+12.6f}")


def has_calibrate() -> bool:
    return (Path(__file__).resolve().parents[1] / "calibration" / "calibrate.py").exists()


def bench_svi(noise: float) -> None:
    raw, k, t, clean = svi_truth()
    rng = np.random.default_rng(SEED)
    vol = clean + rng.normal(0.0, noise, clean.size) if noise else clean
    quotes = quotes_of(k, t, vol)
    model = SVI()
    guesses = model.initial_guesses(quotes)
    rows = []
    for name, fit in [
        ("smilescope batched", lambda: smilescope_batched(model, quotes)),
        ("smilescope per slice (scipy trf)", lambda: smilescope_per_slice(model, quotes)),
        *([("smilescope calibrate()", lambda: smilescope_calibrate("svi", {}, quotes))] if has_calibrate() else []),
    ]:
        rows.append((name, *best_time(fit), rmse_points(fit(), vol)))
    reps = 3 if noise > 0.002 else REPEATS
    rows.append(("quantlib", *best_time(_calibrations_only(_ql_svi_sections, quotes, None), reps),
                 rmse_points(quantlib_svi(quotes, None), vol)))
    rows.append(("quantlib from smilescope guess", *best_time(_calibrations_only(_ql_svi_sections, quotes, guesses), reps),
                 rmse_points(quantlib_svi(quotes, guesses), vol)))
    report(f"SVI, 10 expiries x {N_STRIKES} strikes, {'noise %.1f vol pt' % (100 * noise) if noise else 'clean'}",
           rows, "quantlib")


def bench_sabr(noise: float) -> None:
    _, k, t, ours, theirs = sabr_truth()
    rng = np.random.default_rng(SEED + 1)
    shock = rng.normal(0.0, noise, ours.size) if noise else np.zeros(ours.size)
    q_ours, q_theirs = quotes_of(k, t, ours + shock), quotes_of(k, t, theirs + shock)
    model = SABR(beta=BETA)
    guesses = model.initial_guesses(q_theirs)
    rows = []
    for name, fit in [
        ("smilescope batched", lambda: smilescope_batched(model, q_ours)),
        ("smilescope per slice (scipy trf)", lambda: smilescope_per_slice(model, q_ours)),
        *([("smilescope calibrate()", lambda: smilescope_calibrate("sabr", {"beta": BETA}, q_ours))]
          if has_calibrate() else []),
    ]:
        rows.append((name, *best_time(fit), rmse_points(fit(), q_ours.vol_mid)))
    reps = 3 if noise > 0.002 else REPEATS
    rows.append(("quantlib", *best_time(_calibrations_only(_ql_sabr_fits, q_theirs, None), reps),
                 rmse_points(quantlib_sabr(q_theirs, None), q_theirs.vol_mid)))
    rows.append(("quantlib from smilescope guess",
                 *best_time(_calibrations_only(_ql_sabr_fits, q_theirs, guesses), reps),
                 rmse_points(quantlib_sabr(q_theirs, guesses), q_theirs.vol_mid)))
    report(f"SABR (beta {BETA} fixed), 10 expiries x {N_STRIKES} strikes, "
           f"{'noise %.1f vol pt' % (100 * noise) if noise else 'clean'}", rows, "quantlib")


def main() -> None:
    ql.Settings.instance().evaluationDate = TODAY
    warnings.simplefilter("ignore", RuntimeWarning)
    print(f"QuantLib {ql.__version__}, numpy {np.__version__}; best of {REPEATS} runs "
          "(QuantLib at 0.5 vol point of noise: 3, it restarts)")
    for noise in NOISES:
        bench_svi(noise)
    for noise in NOISES:
        bench_sabr(noise)


if __name__ == "__main__":
    main()
