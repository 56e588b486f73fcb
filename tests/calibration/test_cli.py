"""The command line as a user runs it: a real process, files in and out, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from calibration.snapshot import IV_REPORT_COLUMNS

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, module: bool = True) -> subprocess.CompletedProcess:
    if module:
        cmd = [sys.executable, "-m", "calibration", *args]
    else:
        cmd = [str(Path(sys.executable).parent / "smilescope"), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def eth_csv(shared_data) -> Path:
    return shared_data / "eth_deribit_2026-05-21.csv"


def test_iv_writes_one_row_per_input_quote(eth_csv, tmp_path):
    out = tmp_path / "eth.csv"
    result = run_cli("iv", str(eth_csv), "--out", str(out))
    assert result.returncode == 0, result.stderr
    report = pd.read_csv(out)
    assert tuple(report.columns) == IV_REPORT_COLUMNS
    assert len(report) == len(pd.read_csv(eth_csv))
    assert set(report["status"]) >= {"ok"}
    # every row not fitted says why, and the summary on stderr counts them
    assert report["status"].notna().all()
    assert "kept for fitting" in result.stderr


def test_console_script_and_module_are_the_same_program(eth_csv, tmp_path):
    a = run_cli("iv", str(eth_csv))
    b = run_cli("iv", str(eth_csv), module=False)
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout and len(a.stdout.splitlines()) > 100


def test_iv_parquet_output_round_trips(eth_csv, tmp_path):
    out = tmp_path / "eth.parquet"
    assert run_cli("iv", str(eth_csv), "--out", str(out)).returncode == 0
    report = pd.read_parquet(out)
    assert tuple(report.columns) == IV_REPORT_COLUMNS
    ok = report[report["status"] == "ok"]
    assert ok["iv_mid"].between(0.05, 3.0).all()


def test_bad_input_exits_non_zero_with_a_message(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("snapshot_time,underlying,expiry,strike\n2026-01-01T00:00:00Z,BTC,2026-02-01,abc\n")
    result = run_cli("iv", str(bad))
    assert result.returncode == 2
    assert "bad.csv" in result.stderr and result.stdout == ""
    assert "Traceback" not in result.stderr


def test_missing_file_exits_non_zero(tmp_path):
    result = run_cli("iv", str(tmp_path / "nope.csv"))
    assert result.returncode == 2
    assert "nope.csv" in result.stderr and "Traceback" not in result.stderr
