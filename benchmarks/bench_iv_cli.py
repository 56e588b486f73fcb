"""End-to-end timing of `smilescope iv` on an SPX-sized chain of 20,000 quotes (target: under 2 s).

Builds a 20,000-quote canonical CSV (40 expiries x 250 strikes x call/put) from the synthetic SPX surface of
calibration.demo, then times the real command line as a user runs it (a fresh process each time: interpreter
start-up, imports, load, forwards, implied vols, cleaning, write), best and median of several runs.

    .venv/bin/python benchmarks/bench_iv_cli.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from calibration.black import black_price
from calibration.demo import SPX_ASOF, SPX_SURFACE

N_EXPIRIES, N_STRIKES, RUNS = 40, 250, 5


def spx_like_chain() -> pd.DataFrame:
    """A clean 20,000-quote SPX-like chain, bid/ask one tick around the surface price."""
    surface = SPX_SURFACE
    ttm = np.linspace(3 / 365, 2.0, N_EXPIRIES)
    rows = []
    for t in ttm:
        forward = float(surface.forward(t))
        sd = float(surface.atm_vol(t)) * np.sqrt(t)
        strikes = np.round(forward * np.exp(np.linspace(-4 * sd, 2.5 * sd, N_STRIKES)), 1)
        k = np.log(strikes / forward)
        vol = surface.implied_vol(k, t)
        for option_type in "CP":
            price = black_price(forward, strikes, t, vol, is_call=option_type == "C", discount=surface.discount(t))
            tick = np.where(price < 3.0, 0.05, 0.10)
            rows.append(
                pd.DataFrame(
                    {
                        "snapshot_time": SPX_ASOF,
                        "underlying": "SPX",
                        "expiry": SPX_ASOF + pd.Timedelta(days=float(t * 365)),
                        "strike": strikes,
                        "option_type": option_type,
                        "bid": np.maximum(np.floor(price / tick) * tick, 0.0),
                        "ask": np.ceil(price / tick) * tick + tick,
                        "underlying_price": surface.spot,
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def main() -> None:
    chain = spx_like_chain()
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "spx20k.csv"
        out = Path(tmp) / "out.csv"
        chain.to_csv(src, index=False, date_format="%Y-%m-%dT%H:%M:%SZ")
        cmd = [str(Path(sys.executable).parent / "smilescope"), "iv", str(src), "--out", str(out)]
        times = []
        for _ in range(RUNS):
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
        n_rows = len(pd.read_csv(out))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import pandas, scipy.special, numpy"], check=True)
        imports = time.perf_counter() - start
    print(f"smilescope iv, {len(chain):,} quotes -> {n_rows:,} rows")
    print(f"  best {min(times):.3f} s   median {statistics.median(times):.3f} s   (target < 2 s)")
    print(f"  of which interpreter + numpy/pandas/scipy import: {imports:.3f} s")


if __name__ == "__main__":
    main()
