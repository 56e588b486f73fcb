"""The Smilescope command line: ``smilescope`` and ``python -m calibration`` are the same program.

Sub-commands
------------
iv SNAPSHOT [--format F] [--out FILE.csv|.parquet]
    One row per input quote with forward, time to expiry, log-moneyness, bid/mid/ask implied vols and a status
    ("ok" or the reason the quote was dropped). CSV to standard output when ``--out`` is omitted; a summary of
    the drops on standard error.
demo [--seed S] [--out-dir DIR]
    Regenerate the bundled synthetic demo snapshots (bit-for-bit for a given seed).
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
