"""Chunked backtests against the backtest of the whole history (the bundled BTC history, first files, SSVI)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from calibration.backtest import BacktestResult, BacktestSettings, backtest, load_history
from calibration.calibrate import CalibrationSettings, calibrate
from calibration.errors import CalibrationError
from calibration.history_chunks import (
    Chunk,
    ChunkError,
    default_chunk_size,
    merge_chunks,
    plan_chunks,
    run_chunk,
)
from calibration.result import to_json_value

ROOT = Path(__file__).resolve().parents[2]
HISTORY = ROOT / "data" / "history"
N = 9


@pytest.fixture(scope="module")
def files() -> list[Path]:
    found = sorted(HISTORY.glob("*.csv"))[:N]
    if len(found) < N:
        pytest.skip(f"bundled history not found under {HISTORY}")
    return found


@pytest.fixture(scope="module")
def history(files) -> list:
    return load_history(files)


def _settings(**kw) -> BacktestSettings:
    return BacktestSettings(calibration=CalibrationSettings(model="ssvi"), **kw)


COLD = _settings(warm_start=False)
WARM = _settings(warm_start=True)


class MemoFit:
    """A fit memoised by what it depends on (snapshot content, warm start and regularisation target values), as
    the dashboard's fit cache is; counts the fits really made."""

    def __init__(self) -> None:
        self.memo: dict[str, object] = {}
        self.made = 0

    def __call__(self, snapshot, settings, initial, previous):
        digest = lambda r: None if r is None else json.dumps(to_json_value(r.params), sort_keys=True)  # noqa: E731
        key = json.dumps([snapshot.content_hash, settings.cache_key(), digest(initial), digest(previous)])
        if key not in self.memo:
            self.made += 1
            self.memo[key] = calibrate(snapshot, settings, initial=initial, previous=previous, check_arbitrage=False)
        return self.memo[key]


def _chunked(sources, settings, size, fit, *, lookback=16, progress=None) -> BacktestResult:
    parts = [
        run_chunk(c.own(sources), settings, start=c.start, context=c.context(sources, lookback), fit=fit,
                  progress=progress).result
        for c in plan_chunks(len(sources), size)
    ]
    return merge_chunks(parts, n_sources=len(sources))


def _assert_same_run(a: BacktestResult, b: BacktestResult, *, drop: tuple[str, ...] = ()) -> None:
    pd.testing.assert_frame_equal(a.table.drop(columns=list(drop)), b.table.drop(columns=list(drop)))
    pd.testing.assert_frame_equal(a.hedge, b.hedge)
    pd.testing.assert_frame_equal(a.params, b.params)
    assert (a.cancelled, a.n_sources, a.settings) == (b.cancelled, b.n_sources, b.settings)


# ---------------------------------------------------------------------------------------------------------------
# plan
# ---------------------------------------------------------------------------------------------------------------


def test_plan_covers_the_history_in_order_without_overlap():
    for n in (0, 1, 7, 48):
        for size in (1, 3, 48, 100):
            plan = plan_chunks(n, size)
            assert [r for c in plan for r in range(c.start, c.stop)] == list(range(n))
            assert [c.index for c in plan] == list(range(len(plan)))
            assert all(1 <= len(c) <= size for c in plan)
    assert plan_chunks(10, 4) == [Chunk(0, 0, 4), Chunk(1, 4, 8), Chunk(2, 8, 10)]
    sources = list("abcdefghij")
    assert Chunk(2, 8, 10).own(sources) == ["i", "j"] and Chunk(2, 8, 10).context(sources, 3) == ["f", "g", "h"]
    assert Chunk(0, 0, 4).context(sources) == []
    for bad in ((5, 0), (5, -1), (-1, 3), (5, 2.5), (5, True)):
        with pytest.raises(ChunkError):
            plan_chunks(*bad)


def test_default_chunk_size_gives_each_worker_several_chunks_within_bounds():
    assert default_chunk_size(192, 2) == 24 and len(plan_chunks(192, 24)) == 8
    assert default_chunk_size(10, 4) == 4  # minimum
    assert default_chunk_size(525_000, 40) == 64  # maximum
    assert default_chunk_size(0, 2) == 4


# ---------------------------------------------------------------------------------------------------------------
# cold starts: exactly the whole run
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 2, 4, N, 20])
def test_cold_chunks_merge_to_the_whole_run(history, size):
    fit = MemoFit()
    whole = backtest(history, COLD, fit=fit)
    made = fit.made
    merged = _chunked(history, COLD, size, fit)
    assert fit.made == made == N  # cold fits depend on the snapshot only: the chunks asked for the same fits
    _assert_same_run(merged, whole)
    # the step statistics at every chunk boundary were computed against the context snapshot
    assert merged.table["oos_rmse_vol_points"].iloc[1:].notna().all()
    assert sorted(set(merged.hedge["i"])) == list(range(1, N))
    # through JSON, as chunks travel from workers
    again = merge_chunks([BacktestResult.from_dict(json.loads(json.dumps(p.to_dict())))
                          for p in [run_chunk(c.own(history), COLD, start=c.start, context=c.context(history),
                                              fit=fit).result for c in plan_chunks(N, size)]])
    assert again.to_dict() == whole.to_dict()


def test_cold_chunks_with_fresh_fits_equal_the_whole_run_but_for_timings(files):
    whole = backtest(files, COLD)
    calls = []

    def counting(snapshot, settings, initial, previous):
        calls.append(snapshot.source)
        return calibrate(snapshot, settings, initial=initial, previous=previous, check_arbitrage=False)

    merged = _chunked(files, COLD, 4, counting)
    _assert_same_run(merged, whole, drop=("elapsed_s",))
    # the context of each later chunk is fitted once (not once to find it and again to run the chunk)
    assert len(calls) == N + 2
    assert calls[4] == files[3].name and calls[9] == files[7].name


# ---------------------------------------------------------------------------------------------------------------
# warm starts: exact within a chunk
# ---------------------------------------------------------------------------------------------------------------


def test_warm_chunks_are_the_runs_of_context_plus_chunk(history):
    fit = MemoFit()
    size = 4
    merged = _chunked(history, WARM, size, fit)
    whole = backtest(history, WARM, fit=fit)
    rows = merged.table.set_index("i")
    for chunk in plan_chunks(N, size):
        lead = history[chunk.start - 1:chunk.start] if chunk.start else []
        direct = backtest(lead + chunk.own(history), WARM, fit=fit).table.iloc[len(lead):]
        direct = direct.assign(i=direct["i"] + chunk.start - len(lead)).set_index("i")
        pd.testing.assert_frame_equal(rows.loc[chunk.start:chunk.stop - 1, direct.columns], direct)
    # the first chunk is the start of the whole run exactly; later chunks start cold from their context
    pd.testing.assert_frame_equal(merged.table.iloc[:size], whole.table.iloc[:size])
    assert merged.table["oos_rmse_vol_points"].iloc[1:].notna().all()
    # both runs fit the same surfaces: the restarted chunks land close to the whole run's fits
    diff = (merged.table["rmse_vol_points"] - whole.table["rmse_vol_points"]).abs()
    assert diff.max() < 0.05 * whole.table["rmse_vol_points"].max()


# ---------------------------------------------------------------------------------------------------------------
# bad snapshots, cancel, merge errors
# ---------------------------------------------------------------------------------------------------------------


def test_bad_snapshots_before_a_chunk_are_skipped_to_find_its_context(files, tmp_path):
    corrupt = tmp_path / "corrupt.csv"
    corrupt.write_text("this,is\nnot,a snapshot\n")
    sources = [*files[:3], corrupt, files[3], tmp_path / "missing.csv", files[4], files[5]]
    failing = files[4].name
    memo = MemoFit()

    def fit(snapshot, settings, initial, previous):
        if snapshot.source == failing:
            raise CalibrationError("no quote has the market data the fit needs")
        return memo(snapshot, settings, initial, previous)

    whole = backtest(sources, COLD, fit=fit)
    assert list(whole.table["status"]) == ["ok", "ok", "ok", "unreadable", "ok", "unreadable", "failed", "ok"]
    for size in (1, 2, 3, 4):
        _assert_same_run(_chunked(sources, COLD, size, fit), whole)
    # the last row is compared with row 4, three rows back
    assert whole.table["oos_rmse_vol_points"].iloc[7] > 0 and set(whole.hedge["i"]) == {1, 2, 4, 7}

    # a lookback too short to reach a good snapshot: the row says its statistics start there
    merged = _chunked(sources, COLD, 7, fit, lookback=2)
    last = merged.table.iloc[7]
    assert "no good snapshot among the 2 before row 7" in last["reason"]
    assert pd.isna(last["oos_rmse_vol_points"]) and 7 not in set(merged.hedge["i"])
    pd.testing.assert_frame_equal(merged.table.iloc[:7], whole.table.iloc[:7])


def test_progress_counts_the_chunk_rows_and_a_stop_ends_the_merged_run(history):
    fit = MemoFit()
    seen = []

    def progress(done, n):
        seen.append((done, n))
        return len(seen) == 6  # stop in the second chunk, at its second row

    plan = plan_chunks(N, 4)
    parts = []
    for c in plan:
        part = run_chunk(c.own(history), COLD, start=c.start, context=c.context(history), fit=fit,
                         progress=progress).result
        parts.append(part)
        if part.cancelled:
            break
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4), (1, 4), (2, 4)]
    merged = merge_chunks(parts, n_sources=N)
    whole = backtest(history, COLD, fit=fit)
    assert merged.cancelled and len(merged.table) == 6 and merged.n_sources == N
    pd.testing.assert_frame_equal(merged.table, whole.table.iloc[:6])
    # a run stopped between chunks: fewer rows, said so
    stopped = merge_chunks(parts[:1], n_sources=N, cancelled=True)
    assert stopped.cancelled and len(stopped.table) == 4


def test_merge_refuses_chunks_that_do_not_form_one_history(history):
    fit = MemoFit()
    plan = plan_chunks(6, 2)
    parts = [run_chunk(c.own(history), COLD, start=c.start, context=c.context(history), fit=fit).result
             for c in plan]
    assert len(merge_chunks(parts).table) == 6
    with pytest.raises(ChunkError, match="expected rows from 2"):
        merge_chunks([parts[0], parts[2], parts[1]])
    with pytest.raises(ChunkError, match="expected rows from 2"):
        merge_chunks([parts[0], parts[2]])
    with pytest.raises(ChunkError, match="history of 9"):
        merge_chunks(parts, n_sources=9)
    with pytest.raises(ChunkError, match="history of 4"):
        merge_chunks(parts, n_sources=4)
    with pytest.raises(ChunkError, match="other settings"):
        other = run_chunk(plan[1].own(history), WARM, start=2, context=plan[1].context(history), fit=fit).result
        merge_chunks([parts[0], other, parts[2]])
    with pytest.raises(ChunkError, match="no chunk"):
        merge_chunks([])
    with pytest.raises(ChunkError, match="start"):
        run_chunk(history[:2], COLD, start=-1)
