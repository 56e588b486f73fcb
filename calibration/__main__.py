"""The Smilescope command line: ``smilescope`` and ``python -m calibration`` are the same program.

Sub-commands
------------
iv SNAPSHOT [--format F] [--out FILE.csv|.parquet]
    One row per input quote with forward, time to expiry, log-moneyness, bid/mid/ask implied vols and a status
    ("ok" or the reason the quote was dropped). CSV to standard output when ``--out`` is omitted; a summary of
    the drops on standard error.
demo [--seed S] [--out-dir DIR]
    Regenerate the bundled synthetic demo snapshots (bit-for-bit for a given seed).
fit SNAPSHOT --model M --optimizer O [--space vol|price] [--weights W] [--loss L] [--fit-to mid|band]
    [--multistart N] [--seed S] [--max-evals N] [--option KEY=VALUE ...] [--format F] [--json FILE]
    Calibrate a model; a compact summary (parameters with standard errors, rmse, share inside bid-ask, evaluations,
    time, convergence) on standard output and the full result as JSON with ``--json``. A fit that does not
    converge is reported (``success: false`` and the reason) with exit code 0; bad input exits with 2.
backtest [PATH ...] --model M --optimizer O [--warm-start|--cold-start] [--regularise LAMBDA] [--compare-starts]
    [--json FILE] [--out FILE.csv]
    Calibrate a history of snapshots (files, folders or globs, in name order; default the bundled
    data/history/*.csv) and print a compact summary: converged share, mean in/out-of-sample rmse, parameter drift,
    hedge errors against the sticky-strike baseline, and every bad snapshot with its reason. ``--compare-starts``
    also runs the other start and prints both side by side. Bad snapshots do not change the exit code (0); bad
    arguments or a pattern that matches nothing exit with 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from calibration.errors import SmilescopeError
from calibration.quotes import FORMATS

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def _write_table(frame, out: str | None) -> None:
    """Write a frame to CSV or Parquet by the file's extension, or as CSV to standard output."""
    if out is None:
        frame.to_csv(sys.stdout, index=False, float_format="%.10g", date_format="%Y-%m-%dT%H:%M:%SZ")
        return
    path = Path(out)
    if path.suffix.lower() == ".parquet":
        frame.to_parquet(path, index=False)
    elif path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False, float_format="%.17g", date_format="%Y-%m-%dT%H:%M:%SZ")
    else:
        raise SmilescopeError(f"--out {out}: use a .csv or .parquet file name")


def _cmd_iv(args: argparse.Namespace) -> int:
    from calibration.snapshot import load_snapshot

    snapshot = load_snapshot(args.snapshot, format=args.format)
    _write_table(snapshot.iv_report(), args.out)
    report = snapshot.drops
    print(
        f"{snapshot.source}: {snapshot.underlying} at {snapshot.asof:%Y-%m-%d %H:%M:%S} UTC, "
        f"{report.n_input} quotes, {report.n_kept} kept for fitting",
        file=sys.stderr,
    )
    for reason, count in report.counts.items():
        print(f"  dropped {count:6d}  {reason}", file=sys.stderr)
    if args.out:
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from calibration.demo import write_demo_data

    paths = write_demo_data(Path(args.out_dir), seed=args.seed)
    print(f"wrote {len(paths)} files under {args.out_dir}", file=sys.stderr)
    return 0


def _format_fit(result) -> str:
    """The human summary of a calibration result."""
    lines = [
        f"{result.model} fitted with {result.optimizer}: {'converged' if result.success else 'NOT converged'} "
        f"({result.message})",
    ]
    names = result.param_names
    if result.kind == "slice":
        values, errors = result.param_array, result.std_error_array
        lines.append("  " + f"{'expiry':<22}" + "".join(f"{n:>24}" for n in names))
        for j, expiry in enumerate(result.expiries):
            label = expiry or f"t={result.expiry_ttm[j]:.4f}y"
            cells = "".join(f"{f'{values[j, i]:.6g} ± {errors[j, i]:.2g}':>24}" for i in range(len(names)))
            lines.append(f"  {label:<22}{cells}")
    else:
        for name in names:
            lines.append(f"  {name:<10} {result.params[name]:>14.6g} ± {result.std_errors[name]:.2g}")
    if result.feller_margin is not None:
        lines.append(f"  Feller margin 2*kappa*theta - sigma^2 = {result.feller_margin:.4g}")
    lines.append(
        f"rmse {result.rmse_vol_points:.3f} vol points, {result.rmse_price:.6g} in price; "
        f"max error {result.max_error_vol_points:.3f} vol points; "
        f"inside bid-ask {100 * result.inside_spread_share:.1f} %"
    )
    lines.append(
        f"{result.n_quotes} quotes fitted ({result.n_dropped} dropped by cleaning, {result.n_excluded} excluded); "
        f"{result.nfev} evaluations in {result.elapsed_s:.3f} s"
    )
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines)


def _model_options(pairs: Sequence[str]) -> dict:
    """``KEY=VALUE`` pairs to model options; values are read as JSON (numbers, true/false) or kept as text."""
    import json

    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SmilescopeError(f"--option {pair!r}: use KEY=VALUE, e.g. --option beta=0.5")
        try:
            options[key] = json.loads(value)
        except ValueError:
            options[key] = value
    return options


def _calibration_settings(args: argparse.Namespace):
    """The CalibrationSettings of the flags added by :func:`_add_calibration_arguments`."""
    from calibration.calibrate import CalibrationSettings

    return CalibrationSettings(
        model=args.model, optimizer=args.optimizer, space=args.space, weights=args.weights, loss=args.loss,
        fit_to=args.fit_to, multistart=getattr(args, "multistart", 0), seed=args.seed,
        model_options=_model_options(args.option),
        max_evals=args.max_evals if args.max_evals is not None else CalibrationSettings.max_evals,
    )


def _add_calibration_arguments(parser: argparse.ArgumentParser, *, multistart: bool) -> None:
    """The model, optimizer and objective flags shared by ``fit`` and ``backtest``."""
    from calibration.models import MODEL_NAMES
    from calibration.objective import FIT_TO, SPACES, WEIGHTS
    from calibration.optimizers import LOSSES, OPTIMIZERS
    parser.add_argument("--model", choices=MODEL_NAMES, default="svi", help="model (default %(default)s)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="lm", help="optimizer (default %(default)s)")
    parser.add_argument("--space", choices=SPACES, default="vol", help="residual space (default %(default)s)")
    parser.add_argument("--weights", choices=WEIGHTS, default="vega", help="quote weights (default %(default)s)")
    parser.add_argument("--loss", choices=LOSSES, default="linear", help="robust loss (default %(default)s)")
    parser.add_argument("--fit-to", choices=FIT_TO, default="mid", help="fit the mid or the bid-ask band")
    if multistart:
        parser.add_argument("--multistart", type=int, default=0,
                            help="starting points of a local optimizer (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of DE and multistart (default %(default)s)")
    parser.add_argument("--max-evals", type=int, help="evaluations per problem (default 2000)")
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="model option, repeatable (e.g. --option beta=0.5 for SABR)",
    )


def _cmd_fit(args: argparse.Namespace) -> int:
    from calibration.calibrate import calibrate
    from calibration.snapshot import load_snapshot

    settings = _calibration_settings(args)
    snapshot = load_snapshot(args.snapshot, format=args.format)
    result = calibrate(snapshot, settings)
    print(_format_fit(result))
    if args.json:
        result.to_json(args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _cmd_backtest(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from calibration.backtest import BacktestSettings, backtest, expand_sources, format_summary, load_history

    settings = BacktestSettings(calibration=_calibration_settings(args), warm_start=args.warm_start, regularisation=args.regularise)
    paths = expand_sources(args.paths or [str(DEFAULT_DATA_DIR / "history" / "*.csv")])
    snapshots = load_history(paths)
    results = [backtest(snapshots, settings)]
    if args.compare_starts:
        results.append(backtest(snapshots, replace(settings, warm_start=not settings.warm_start)))
    print(f"{len(paths)} snapshots, model {args.model}, optimizer {args.optimizer}")
    print(format_summary(results))
    if args.json:
        results[0].to_json(args.json)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.out:
        if Path(args.out).suffix.lower() != ".csv":
            raise SmilescopeError(f"--out {args.out}: use a .csv file name")
        results[0].to_csv(args.out)
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from calibration.demo import DEFAULT_SEED

    parser = argparse.ArgumentParser(prog="smilescope", description="Volatility surfaces from option snapshots.")
    sub = parser.add_subparsers(dest="command", required=True)

    iv = sub.add_parser("iv", help="implied vols of every quote of a snapshot, with drop reasons")
    iv.add_argument("snapshot", help="snapshot file (canonical CSV/Parquet, Deribit JSON, CBOE or OptionMetrics CSV)")
    iv.add_argument("--format", choices=FORMATS, help="force the input format (detected from content otherwise)")
    iv.add_argument("--out", help="write to FILE.csv or FILE.parquet instead of standard output")
    iv.set_defaults(func=_cmd_iv)

    demo = sub.add_parser("demo", help="regenerate the bundled synthetic demo snapshots")
    demo.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    demo.add_argument("--out-dir", default=str(DEFAULT_DATA_DIR), help="output folder (default: the bundled data/)")
    demo.set_defaults(func=_cmd_demo)


    fit = sub.add_parser("fit", help="calibrate a model to a snapshot")
    fit.add_argument("snapshot", help="snapshot file (any format `iv` reads)")
    fit.add_argument("--format", choices=FORMATS, help="force the input format (detected from content otherwise)")
    _add_calibration_arguments(fit, multistart=True)
    fit.add_argument("--json", help="write the full result as JSON to this file")
    fit.set_defaults(func=_cmd_fit)

    bt = sub.add_parser("backtest", help="calibrate a history of snapshots: stability, out-of-sample, hedge test")
    bt.add_argument("paths", nargs="*", help="snapshot files, folders or globs (default: the bundled data/history)")
    _add_calibration_arguments(bt, multistart=False)
    start = bt.add_mutually_exclusive_group()
    start.add_argument("--warm-start", dest="warm_start", action="store_true", default=True,
                       help="start each fit from the previous one (default)")
    start.add_argument("--cold-start", dest="warm_start", action="store_false",
                       help="start each fit from the model's initial guess")
    bt.add_argument("--regularise", type=float, default=0.0, metavar="LAMBDA",
                    help="penalty toward the previous fit, squared residual units (default 0: off)")
    bt.add_argument("--compare-starts", action="store_true", help="also run the other start, side by side")
    bt.add_argument("--json", help="write the full result (tables and summary) as JSON to this file")
    bt.add_argument("--out", help="write the per-snapshot table to FILE.csv")
    bt.set_defaults(func=_cmd_backtest)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 ok, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SmilescopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `smilescope iv x.csv | head`
        return 0
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
