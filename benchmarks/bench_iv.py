"""Implied-vol speed and accuracy: Smilescope vs py_vollib_vectorized vs a QuantLib per-option loop.

Run standalone: ``.venv/bin/python benchmarks/bench_iv.py`` (well under a minute on 2 cores).

The same random, realistic out-of-the-money options go to every solver: ``F = 100``, ``t`` log-uniform
over 1 day .. 5 years, ``sigma`` log-uniform over 5 % .. 300 %, strikes uniform over +/- 4 standard deviations
(``K = F exp(n sigma sqrt t)``), a call above the forward and a put below it. Reference prices are computed
with mpmath at 30 digits and rounded to float64, so "max error" is the distance to the true sigma. Options
whose price underflows (below 1e-300) are skipped. Timing is the best of several runs.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import types
import warnings
from pathlib import Path

import mpmath as mp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from calibration.implied_vol import implied_vol  # noqa: E402

N_OPTIONS = 100_000
N_QUANTLIB = 5_000
REPEATS = 7
SEED = 20240611
FORWARD = 100.0


def make_options(n: int, seed: int) -> dict[str, np.ndarray]:
    """Random OTM options with mpmath reference prices (float64-rounded)."""
    rng = np.random.default_rng(seed)
    ttm = np.exp(rng.uniform(np.log(1.0 / 365.0), np.log(5.0), n))
    vol = np.exp(rng.uniform(np.log(0.05), np.log(3.0), n))
    n_sd = rng.uniform(-4.0, 4.0, n)
    strike = FORWARD * np.exp(n_sd * vol * np.sqrt(ttm))
    is_call = strike >= FORWARD
    mp.mp.dps = 30
    price = np.empty(n)
    f = mp.mpf(FORWARD)
    for j in range(n):
        k = mp.mpf(float(strike[j]))
        s = mp.mpf(float(vol[j])) * mp.sqrt(mp.mpf(float(ttm[j])))
        d1 = mp.log(f / k) / s + s / 2
        d2 = d1 - s
        if is_call[j]:
            price[j] = float(f * mp.ncdf(d1) - k * mp.ncdf(d2))
        else:
            price[j] = float(k * mp.ncdf(-d2) - f * mp.ncdf(-d1))
    keep = price > 1e-300
    return {
        "price": price[keep],
        "strike": strike[keep],
        "ttm": ttm[keep],
        "vol": vol[keep],
        "is_call": is_call[keep],
    }


def load_py_vollib_vectorized():
    """``vectorized_implied_volatility_black`` with its numba kernels working, or None when not installed.

    The pinned py_lets_be_rational 1.0.1 jit-compiles only when ``PY_LETS_BE_RATIONAL_ENABLE_NUMBA`` is set, and
    its helpers from ``cody_special`` / ``piecewise_rational`` are plain Python, which py_vollib_vectorized's
    ``nopython`` kernels cannot call. Compile those helpers with numba and rebind every reference to them
    before py_vollib_vectorized is imported (this process only; nothing installed is modified).
    """
    os.environ.setdefault("PY_LETS_BE_RATIONAL_ENABLE_NUMBA", "1")
    try:
        import numba

        helper_pkgs = ("cody_special", "piecewise_rational")
        modules = [
            importlib.import_module(name)
            for name in (
                "cody_special",
                "cody_special.erf_cody",
                "cody_special.normaldistribution",
                "piecewise_rational",
                "piecewise_rational.rationalcubic",
            )
        ]
    except ImportError:
        modules = []
    jitted: dict[types.FunctionType, object] = {}
    for mod in modules:
        for obj in vars(mod).values():
            if isinstance(obj, types.FunctionType) and obj.__module__.split(".")[0] in helper_pkgs:
                jitted.setdefault(obj, numba.njit(obj))
    for mod in modules:
        for name, obj in list(vars(mod).items()):
            if isinstance(obj, types.FunctionType) and obj in jitted:
                setattr(mod, name, jitted[obj])
    try:
        from py_vollib_vectorized import vectorized_implied_volatility_black
    except ImportError:  # pragma: no cover - benchmark oracle missing
        return None
    return vectorized_implied_volatility_black


def best_of(fn, repeats: int) -> tuple[float, np.ndarray]:
    """Best wall time of ``repeats`` calls, and the last result."""
    best = np.inf
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    t_start = time.perf_counter()
    opts = make_options(N_OPTIONS, SEED)
    n = opts["price"].size
    print(f"{n} OTM options (reference prices by mpmath in {time.perf_counter() - t_start:.1f} s)")
    truth = opts["vol"]
    rows = []

    def ours():
        return implied_vol(opts["price"], FORWARD, opts["strike"], opts["ttm"], is_call=opts["is_call"]).vol

    ours()
    t_ours, v_ours = best_of(ours, REPEATS)
    rows.append(("smilescope (numpy)", n / t_ours, np.nanmax(np.abs(v_ours - truth)), np.isnan(v_ours).sum()))

    vectorized_implied_volatility_black = load_py_vollib_vectorized()
    t_pvv = None
    if vectorized_implied_volatility_black is not None:
        flag = np.where(opts["is_call"], "c", "p")

        def pvv():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return np.asarray(
                    vectorized_implied_volatility_black(
                        opts["price"], FORWARD, opts["strike"], 0.0, opts["ttm"], flag, return_as="numpy"
                    ),
                    dtype=float,
                ).ravel()

        pvv()  # numba JIT warm-up, excluded
        t_pvv, v_pvv = best_of(pvv, REPEATS)
        rows.append(("py_vollib_vectorized", n / t_pvv, np.nanmax(np.abs(v_pvv - truth)), np.isnan(v_pvv).sum()))

    try:
        import QuantLib as ql
    except ImportError:  # pragma: no cover
        ql = None
    if ql is not None:
        m = min(N_QUANTLIB, n)
        sub = {k: v[:m] for k, v in opts.items()}
        kinds = [ql.Option.Call if c else ql.Option.Put for c in sub["is_call"]]
        sqrt_t = np.sqrt(sub["ttm"])

        def qlloop():
            out = np.empty(m)
            for j in range(m):
                try:
                    sd = ql.blackFormulaImpliedStdDev(
                        kinds[j], float(sub["strike"][j]), FORWARD, float(sub["price"][j]),
                        1.0, 0.0, ql.nullDouble(), 1e-12, 100,
                    )
                    out[j] = sd / sqrt_t[j]
                except RuntimeError:
                    out[j] = np.nan
            return out

        t_ql, v_ql = best_of(qlloop, 2)
        rows.append(
            (f"QuantLib loop ({m} opts)", m / t_ql, np.nanmax(np.abs(v_ql - sub["vol"])), np.isnan(v_ql).sum())
        )

    print("(QuantLib: blackFormulaImpliedStdDev per option, accuracy 1e-12, rate extrapolated from the subset)")
    print(f"{'solver':28s} {'options/s':>14s} {'max |err| vs sigma':>20s} {'NaN':>6s}")
    for name, rate, err, nans in rows:
        print(f"{name:28s} {rate:14,.0f} {err:20.3e} {nans:6d}")
    if t_pvv is not None:
        print(f"ratio smilescope / py_vollib_vectorized (speed): {t_pvv / t_ours:.2f}x")
    print(f"total benchmark time {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
