"""Backtest speed and numbers on the bundled 48 hourly BTC snapshots (data/history).

All snapshots are loaded first (load time reported separately); each run's time is the whole in-process
``backtest()`` over the loaded snapshots -- fits, out-of-sample evaluations, drift and the hedge test -- excluding
loading. Targets (issue 5): Heston with warm starts < 5 s, SVI and SSVI < 2 s.

Run: ``.venv/bin/python benchmarks/bench_backtest.py [MODEL ...]`` (default: svi ssvi heston; any registry key).
Each model runs warm and cold; ``--all`` adds a regularised run (lambda 1e-3) and the remaining models.
The verdict is on wall time; CPU time of the process is shown too (steadier when other jobs share the machine).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from calibration.backtest import BacktestSettings, backtest, format_summary, load_history  # noqa: E402
from calibration.calibrate import CalibrationSettings  # noqa: E402

TARGETS_S = {"heston": 5.0, "svi": 2.0, "ssvi": 2.0}


def main(argv: list[str]) -> int:
    everything = "--all" in argv
    models = [a for a in argv if not a.startswith("--")] or (
        ["svi", "ssvi", "sabr", "black", "heston", "merton", "bates"] if everything else ["svi", "ssvi", "heston"]
    )
    files = sorted((ROOT / "data" / "history").glob("*.csv"))
    started = time.perf_counter()
    snapshots = load_history(files)
    loading = time.perf_counter() - started
    print(f"loaded {len(files)} snapshots in {loading:.3f} s ({1e3 * loading / max(len(files), 1):.1f} ms per file; "
          "not included below)")
    for model in models:
        runs, labels = [], []
        variants = [(True, 0.0), (False, 0.0)] + ([(True, 1e-3)] if everything else [])
        for warm, lam in variants:
            settings = BacktestSettings(CalibrationSettings(model=model), warm_start=warm, regularisation=lam)
            started, cpu = time.perf_counter(), time.process_time()
            result = backtest(snapshots, settings)
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
            runs.append(result)
            target = TARGETS_S.get(model)
            verdict = "" if target is None or not warm or lam else f" (target < {target:g} s: " + (
                "met)" if elapsed < target else "MISSED)")
            labels.append(f"{model} {'warm' if warm else 'cold'}" + (f" reg={lam:g}" if lam else ""))
            print(f"{labels[-1]:<24} backtest {elapsed:7.3f} s in process ({cpu:.3f} s CPU){verdict}")
        print(format_summary(runs, labels))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
