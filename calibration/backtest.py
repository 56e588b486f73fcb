"""Backtest a calibration over a history of snapshots: parameter stability, out-of-sample error, hedge test.

:func:`backtest` fits one model (one :class:`calibration.calibrate.CalibrationSettings`) to every snapshot of a
history, in the order given, and returns a :class:`BacktestResult` with three tidy tables.

``table`` -- one row per snapshot (x model: a run is one model; concatenate runs to compare models)
    ``i, file, asof, model, status, reason`` where status is "ok", "unreadable" (the file could not be read),
    "empty" (no quote left after cleaning) or "failed" (the calibration raised; the reason is its message). A fit
    that ran but did not converge is status "ok" with ``success=False`` and its ``message`` (an "ok" row's
    ``reason`` is empty, or says why its out-of-sample evaluation failed). Bad rows are kept and
    the run goes on; they are skipped by the statistics (the next good snapshot is compared to the last good one).

    Fit columns: ``success, message, nfev, elapsed_s, n_quotes, rmse_vol_points`` (in-sample, vol points),
    ``rmse_price`` (quote currency), ``inside_spread_share``.

    Parameters, flattened: ``param_<name>`` and ``se_<name>`` (standard error). Surface models: the parameter
    itself. Slice models (one parameter row per expiry): the row of the fitted expiry nearest to
    :data:`REFERENCE_TENOR_DAYS` (30 days, a constant-maturity pick); every row of every snapshot is in ``params``.

    Drift per step (against the previous good snapshot): ``drift_<name>``, the absolute change of the parameter
    in its units (slice models: mean over the expiries fitted in both snapshots, matched by expiry date), and
    ``drift``, the root-mean-square over parameters (and matched expiries) of the change divided by the
    parameter's scale (its bound width when both bounds are finite, else its previous absolute value; see
    :func:`calibration.objective.prior_scale`), dimensionless. SSVI's ATM-variance parameters ``theta_1,
    dtheta_j`` are indexed by expiry, so they are compared by name and jump when the front expiry rolls off.

    Out-of-sample (row ``t+1``, parameters of the previous good snapshot ``t`` evaluated without refitting on the
    quotes of ``t+1`` with :func:`calibration.calibrate.evaluate`): over the quotes present in both the evaluation
    and the fit at ``t+1`` (same expiry, strike and type), ``oos_rmse_vol_points`` and ``is_rmse_vol_points``
    (the fit at ``t+1`` on the same quotes), and per expiry bucket of :data:`BUCKETS` (time to expiry at
    ``t+1``) ``oos_rmse_<bucket>`` / ``is_rmse_<bucket>``; all in vol points (unweighted).

    Hedge summary of the step ``t -> t+1`` (see ``hedge``): ``hedge_n`` matched options, root-mean-square hedge
    errors (quote currency) ``hedge_rmse_first``, ``hedge_rmse_second``, ``hedge_rmse_baseline``.

``hedge`` -- one row per option quoted (and fitted) in two consecutive good snapshots
    Matched by expiry date, strike and option type. With ``F, t, D`` the forward, time to expiry and discount of
    the option at ``t``, ``dF = F(t+1) - F(t)``, ``dt`` the elapsed time (years) and Black-76 greeks
    (:func:`calibration.black.black_greeks`: delta, gamma per unit of forward, vega/vanna/volga per 1.00 vol,
    theta per year) evaluated at the **model vol at t** ``s0``:

    - the model vol change at that strike (sticky strike, parameters frozen): ``ds = s1 - s0`` with ``s1`` the vol
      of the parameters fitted at ``t`` evaluated at ``t+1`` (new forward and time to expiry, same strike) -- the
      smile dynamics the model implies, known at ``t`` given the forward move;
    - ``predicted_first = theta dt + delta dF + vega ds``;
    - ``predicted_second = predicted_first + gamma dF^2 / 2 + vanna dF ds + volga ds^2 / 2``;
    - the sticky-strike Black-Scholes baseline holds the market's own implied vol at ``t`` fixed:
      ``baseline = theta_m dt + delta_m dF`` with the greeks at the market mid vol;
    - ``realised = mid(t+1) - mid(t)`` (discounted premiums, quote currency), and the errors ``error_first =
      realised - predicted_first``, ``error_second``, ``error_baseline`` (quote currency), with ``vega_market``
      to express them in vol points (``100 error / vega``).

``params`` -- long format: ``i, asof, model, expiry, ttm, name, value, std_error`` (surface models: expiry None).

:meth:`BacktestResult.summary` condenses a run (converged share, mean in/out-of-sample rmse, mean drift, hedge
error statistics); :func:`format_summary` prints runs side by side (warm vs cold start, models).
"""

from __future__ import annotations

import glob
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calibration.black import black_greeks
from calibration.calibrate import CalibrationSettings, calibrate, evaluate
from calibration.errors import CalibrationError, SmilescopeError
from calibration.models import get_model
from calibration.objective import prior_scale
from calibration.result import CalibrationResult, to_json_value
from calibration.snapshot import QuoteSnapshot, load_snapshot

#: Statuses of a table row.
STATUSES: tuple[str, ...] = ("ok", "unreadable", "empty", "failed")
#: Expiry buckets of the out-of-sample error: label -> [low, high) time to expiry in days.
BUCKETS: dict[str, tuple[float, float]] = {
    "lt7d": (0.0, 7.0),
    "7_30d": (7.0, 30.0),
    "30_90d": (30.0, 90.0),
    "gt90d": (90.0, math.inf),
}
#: Slice models: the flattened parameters in ``table`` are those of the expiry nearest this tenor (days).
REFERENCE_TENOR_DAYS = 30.0
#: File suffixes a folder given as a source contributes (``*.params.json`` sidecars are not snapshots).
SNAPSHOT_SUFFIXES: tuple[str, ...] = (".csv", ".parquet", ".json")

_DAYS_PER_YEAR = 365.0

#: ``fit(snapshot, settings, initial, previous) -> CalibrationResult``: one snapshot's calibration.
FitFunction = Callable[
    [QuoteSnapshot, CalibrationSettings, "CalibrationResult | None", "CalibrationResult | None"], CalibrationResult
]
#: ``progress(done, n)`` after each snapshot; returning True stops the run.
BacktestProgress = Callable[[int, int], "bool | None"]


@dataclass(frozen=True)
class BacktestSettings:
    """How a history is calibrated.

    Attributes
    ----------
    calibration
        The settings of every fit (model, optimizer, space...). Its ``regularisation`` is replaced by
        :attr:`regularisation`.
    warm_start
        Start each fit from the previous good fit's parameters (default True); cold: the model's initial guess.
    regularisation
        ``lambda >= 0`` of the penalised least squares toward the previous good fit (squared residual units, see
        :mod:`calibration.objective`); 0 (default) is off.
    check_arbitrage
        Run the static-arbitrage check of every fit (default False: it does not enter the backtest statistics).
    """

    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    warm_start: bool = True
    regularisation: float = 0.0
    check_arbitrage: bool = False

    def __post_init__(self) -> None:
        lam = self.regularisation
        if isinstance(lam, bool) or not isinstance(lam, (int, float, np.integer, np.floating)) or not (
            np.isfinite(lam) and lam >= 0.0
        ):
            raise CalibrationError(f"regularisation must be a non-negative number, got {lam!r}")
        object.__setattr__(self, "regularisation", float(lam))

    def fit_settings(self) -> CalibrationSettings:
        """The calibration settings of each fit (with this run's regularisation)."""
        return replace(self.calibration, regularisation=self.regularisation)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {
            "calibration": self.calibration.to_dict(), "warm_start": bool(self.warm_start),
            "regularisation": self.regularisation, "check_arbitrage": bool(self.check_arbitrage),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BacktestSettings":
        """Inverse of :meth:`to_dict`."""
        return cls(
            calibration=CalibrationSettings.from_dict(data["calibration"]), warm_start=bool(data["warm_start"]),
            regularisation=float(data["regularisation"]), check_arbitrage=bool(data.get("check_arbitrage", False)),
        )


@dataclass(frozen=True)
class BacktestResult:
    """The tables of a backtest (see the module docstring for every column and unit).

    Attributes
    ----------
    settings
        The run's settings.
    table
        One row per snapshot.
    hedge
        One row per option matched between consecutive good snapshots.
    params
        Every fitted parameter, long format.
    cancelled
        True when ``progress`` stopped the run (the tables hold the snapshots done).
    n_sources
        Snapshots asked for (``len(table) < n_sources`` when cancelled).
    """

    settings: BacktestSettings
    table: pd.DataFrame
    hedge: pd.DataFrame
    params: pd.DataFrame
    cancelled: bool = False
    n_sources: int = 0

    def summary(self) -> dict[str, float]:
        """Run statistics: rows by status, converged share of the fits (over the "ok" rows), mean in-sample / out-of-sample rmse (vol
        points, over the steps that have both), mean ``drift``, total evaluations and fit time, and hedge errors:
        root-mean-square and mean absolute error (quote currency), the ratio of the rmse to the baseline's, and
        the median absolute error in vol points (``100 |error| / vega_market``: robust to the wings, where a
        tick is many vol points)."""
        t = self.table
        ok = t[t["status"] == "ok"] if len(t) else t
        both = ok.dropna(subset=["oos_rmse_vol_points", "is_rmse_vol_points"]) if len(ok) else ok
        out: dict[str, float] = {f"n_{s}": float((t["status"] == s).sum()) if len(t) else 0.0 for s in STATUSES}

        def mean(frame: pd.DataFrame, column: str) -> float:
            values = frame[column].to_numpy(dtype=float) if len(frame) else np.empty(0)
            return float(np.nanmean(values)) if np.isfinite(values).any() else math.nan

        out["converged_share"] = float(ok["success"].astype(bool).mean()) if len(ok) else math.nan
        out["is_rmse_vol_points"] = mean(both, "is_rmse_vol_points")
        out["oos_rmse_vol_points"] = mean(both, "oos_rmse_vol_points")
        out["fit_rmse_vol_points"] = mean(ok, "rmse_vol_points")
        out["drift"] = mean(ok, "drift")
        out["nfev"] = float(ok["nfev"].sum()) if len(ok) else 0.0
        out["fit_elapsed_s"] = float(ok["elapsed_s"].sum()) if len(ok) else 0.0
        h = self.hedge
        out["hedge_n"] = float(len(h))
        for kind in ("first", "second", "baseline"):
            e = h[f"error_{kind}"].to_numpy(dtype=float) if len(h) else np.empty(0)
            e = e[np.isfinite(e)]
            out[f"hedge_rmse_{kind}"] = float(np.sqrt(np.mean(e * e))) if e.size else math.nan
            out[f"hedge_mae_{kind}"] = float(np.mean(np.abs(e))) if e.size else math.nan
            with np.errstate(all="ignore"):
                v = 100.0 * h[f"error_{kind}"].to_numpy(dtype=float) / h["vega_market"].to_numpy(dtype=float) \
                    if len(h) else np.empty(0)
            v = np.abs(v[np.isfinite(v)])
            out[f"hedge_median_vol_points_{kind}"] = float(np.median(v)) if v.size else math.nan
        base = out["hedge_rmse_baseline"]
        for kind in ("first", "second"):
            out[f"hedge_ratio_{kind}"] = out[f"hedge_rmse_{kind}"] / base if base > 0 else math.nan
        return out

    # -- export ---------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tables as lists of records; NaN as ``None``, times as ISO-8601 strings)."""
        return {
            "settings": self.settings.to_dict(),
            "cancelled": self.cancelled,
            "n_sources": self.n_sources,
            "summary": to_json_value(self.summary()),
            "table": _records(self.table),
            "hedge": _records(self.hedge),
            "params": _records(self.params),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "BacktestResult":
        """Inverse of :meth:`to_dict` (``summary`` is recomputed)."""
        return cls(
            settings=BacktestSettings.from_dict(data["settings"]),
            table=_frame(data["table"], TABLE_BASE_COLUMNS),
            hedge=_frame(data["hedge"], HEDGE_COLUMNS),
            params=_frame(data["params"], PARAM_COLUMNS),
            cancelled=bool(data.get("cancelled", False)),
            n_sources=int(data.get("n_sources", 0)),
        )

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False))
        return path

    def to_csv(self, path: str | Path) -> Path:
        """Write :attr:`table` as CSV (times ISO-8601 UTC); returns the path."""
        path = Path(path)
        self.table.to_csv(path, index=False, float_format="%.10g", date_format="%Y-%m-%dT%H:%M:%SZ")
        return path


TABLE_BASE_COLUMNS: tuple[str, ...] = (
    "i", "file", "asof", "model", "status", "reason", "success", "message", "nfev", "elapsed_s", "n_quotes",
    "rmse_vol_points", "rmse_price", "inside_spread_share", "drift", "oos_rmse_vol_points", "is_rmse_vol_points",
    *(f"{p}_rmse_{b}" for b in BUCKETS for p in ("oos", "is")),
    "hedge_n", "hedge_rmse_first", "hedge_rmse_second", "hedge_rmse_baseline",
)
HEDGE_COLUMNS: tuple[str, ...] = (
    "i", "asof", "model", "expiry", "strike", "option_type", "ttm", "dt", "forward", "dF", "model_vol",
    "model_vol_next", "market_vol", "mid", "mid_next", "realised", "predicted_first", "predicted_second",
    "baseline", "error_first", "error_second", "error_baseline", "vega_market",
)
PARAM_COLUMNS: tuple[str, ...] = ("i", "asof", "model", "expiry", "ttm", "name", "value", "std_error")


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``frame`` as plain-JSON dicts (see :func:`calibration.result.to_json_value`), built column by
    column: times as ISO-8601 UTC strings, NaN and infinities as ``None``."""
    columns: list[list[Any]] = []
    for c in frame.columns:
        col = frame[c]
        if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(col):
            utc = col.dt.tz_convert("UTC") if isinstance(col.dtype, pd.DatetimeTZDtype) else col
            values = utc.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object).where(col.notna(), None).tolist()
        elif pd.api.types.is_float_dtype(col.dtype):
            x = col.to_numpy(dtype=float)
            values = np.where(np.isfinite(x), x.astype(object), None).tolist()
            values = [None if v is None else float(v) for v in values]
        else:
            values = [to_json_value(None if _missing(v) else v) for v in col.tolist()]
        columns.append(values)
    names = [str(c) for c in frame.columns]
    return [dict(zip(names, row)) for row in zip(*columns)] if columns else [{} for _ in range(len(frame))]


def _missing(value: Any) -> bool:
    """Whether a cell is missing (``None``, NaN, NaT); containers never are."""
    return value is None or (not isinstance(value, (list, tuple, dict, np.ndarray)) and bool(pd.isna(value)))


def _frame(records: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(list(records))
    if frame.empty:
        return pd.DataFrame(columns=list(columns))
    if "asof" in frame:
        frame["asof"] = pd.to_datetime(frame["asof"], utc=True)
    for c in frame.columns:
        if c not in ("file", "model", "status", "reason", "message", "expiry", "option_type", "name", "asof",
                     "success"):
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    return frame


# ---------------------------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------------------------


def expand_sources(patterns: Sequence[str | Path]) -> list[Path]:
    """Files of ``patterns``: a file as given (even missing: it becomes an "unreadable" row), a folder's snapshot
    files (:data:`SNAPSHOT_SUFFIXES`, not ``*.params.json``) sorted by name, a glob's matches sorted by name.

    Raises
    ------
    SmilescopeError
        A glob or folder that matches no snapshot file.
    """
    out: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files = sorted(
                p for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in SNAPSHOT_SUFFIXES and not p.name.endswith(".params.json")
            )
            if not files:
                raise SmilescopeError(f"{path}: no snapshot files (.csv, .parquet, .json) in this folder")
            out += files
        elif glob.has_magic(str(pattern)):
            files = sorted(Path(p) for p in glob.glob(str(pattern)) if Path(p).is_file())
            if not files:
                raise SmilescopeError(f"{pattern}: no file matches this pattern")
            out += files
        else:
            out.append(path)
    return out


def _load(source: str | Path | QuoteSnapshot) -> tuple[QuoteSnapshot | None, str, str, str]:
    """The snapshot, its label, status and reason."""
    if isinstance(source, QuoteSnapshot):
        snapshot, label = source, source.source
    else:
        label = Path(source).name
        try:
            snapshot = load_snapshot(source)
        except (SmilescopeError, OSError, ValueError) as exc:
            return None, label, "unreadable", _reason(exc)
    if snapshot.drops.n_kept == 0:
        return snapshot, label, "empty", "no quote left to fit after cleaning"
    return snapshot, label, "ok", ""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename or ''}".strip()
    return str(exc) or type(exc).__name__


def default_fit(*, check_arbitrage: bool = False) -> FitFunction:
    """The default fit of :func:`backtest`: :func:`calibration.calibrate.calibrate` with the given initial and
    previous results."""

    def fit(snapshot, settings, initial, previous):
        return calibrate(snapshot, settings, initial=initial, previous=previous, check_arbitrage=check_arbitrage)

    return fit


# ---------------------------------------------------------------------------------------------------------------
# per-snapshot quantities
# ---------------------------------------------------------------------------------------------------------------


#: Columns of a quote table (a mapping of column -> array): the key, then values.
Columns = Mapping[str, Any]


def _keys(table: Columns) -> np.ndarray:
    """One string per quote: expiry (ISO-8601), strike and option type -- the identity of an option across
    snapshots (the table's ``key`` column when it has one)."""
    if "key" in table:
        return np.asarray(table["key"])
    return np.array([
        f"{e}|{float(k)!r}|{o}" for e, k, o in zip(table["expiry"], table["strike"], table["option_type"])
    ])


def _join(*tables: Columns) -> list[np.ndarray]:
    """Row indices into each table of the options present in all of them (first occurrence of a duplicate)."""
    firsts = []
    for table in tables:
        first: dict[str, int] = {}
        for i, key in enumerate(_keys(table).tolist()):
            first.setdefault(key, i)
        firsts.append(first)
    common = sorted(set(firsts[0]).intersection(*firsts[1:]))  # ascending, as the keys' code points
    return [np.array([first[key] for key in common], dtype=np.intp) for first in firsts]


def _market(snapshot: QuoteSnapshot) -> dict[str, np.ndarray]:
    """The fit quotes of a snapshot: expiry (ISO-8601), strike, option type, forward, ttm (years), discount,
    mid (discounted premium, quote currency) and mid vol (decimal)."""
    q = snapshot.fit_quotes
    col = lambda name: q[name].to_numpy(dtype=float)  # noqa: E731
    utc = pd.DatetimeIndex(q["expiry"]).tz_convert("UTC").tz_localize(None).to_numpy().astype("datetime64[s]")
    out = {
        "expiry": np.char.add(np.datetime_as_string(utc, unit="s"), "Z").astype(object),
        "strike": col("strike"),
        "option_type": q["option_type"].astype(str).to_numpy(),
        "forward": col("forward"), "ttm": col("ttm"), "discount": col("discount"), "mid": col("mid"),
        "market_vol": col("iv_mid"),
    }
    out["key"] = _keys(out)
    return out


def _residuals(result: CalibrationResult) -> dict[str, np.ndarray]:
    """Per-quote model vols and residuals of a result (see :attr:`CalibrationResult.residuals`)."""
    r = result.residuals
    out: dict[str, np.ndarray] = {"expiry": np.asarray(r["expiry"], dtype=object),
                                  "option_type": np.asarray(r["option_type"], dtype=object)}
    for name in ("ttm", "strike", "model_vol", "residual_vol_points"):
        out[name] = np.array([np.nan if v is None else v for v in r[name]], dtype=float)
    out["key"] = _keys(out)
    return out


def _rms(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(np.sqrt(np.mean(x * x))) if x.size else math.nan


def _out_of_sample(previous: CalibrationResult, snapshot: QuoteSnapshot, fitted: dict[str, np.ndarray],
                   settings: CalibrationSettings) -> tuple[dict[str, float], dict[str, np.ndarray] | None, str]:
    """Out-of-sample columns of the row of ``snapshot`` (``fitted``: residuals of its fit) and the evaluation's
    residuals (None when the evaluation fails)."""
    cols: dict[str, float] = {}
    try:
        oos = _residuals(evaluate(previous.model, previous, snapshot, settings=settings))
    except Exception as exc:  # noqa: BLE001 -- reported on the row, the run goes on
        return cols, None, f"out-of-sample evaluation failed: {exc}"
    a, b = _join(oos, fitted)
    e_oos, e_is = oos["residual_vol_points"][a], fitted["residual_vol_points"][b]
    cols["oos_rmse_vol_points"] = _rms(e_oos)
    cols["is_rmse_vol_points"] = _rms(e_is)
    days = fitted["ttm"][b] * _DAYS_PER_YEAR
    for label, (lo, hi) in BUCKETS.items():
        rows = (days >= lo) & (days < hi)
        cols[f"oos_rmse_{label}"] = _rms(e_oos[rows])
        cols[f"is_rmse_{label}"] = _rms(e_is[rows])
    return cols, oos, ""


def hedge_step(market0: Columns, model0: Columns, market1: Columns, model1_frozen: Columns) -> pd.DataFrame:
    """Hedge rows of one step (see the module docstring for the formulas).

    Parameters
    ----------
    market0, market1
        Quotes at ``t`` and ``t+1``: columns expiry, strike, option_type (the key), forward, ttm (years),
        discount, mid (quote currency), market_vol (decimal). Frames or mappings of arrays.
    model0
        Model vols of the fit at ``t``: the key and ``model_vol``.
    model1_frozen
        Model vols of the parameters of ``t`` evaluated on the quotes of ``t+1``: the key and ``model_vol``.

    Returns
    -------
    pandas.DataFrame
        One row per option present in all four, :data:`HEDGE_COLUMNS` without ``i, asof, model``; rows with a
        non-finite prediction or realised change are left out.
    """
    i0, j0, i1, j1 = _join(market0, model0, market1, model1_frozen)
    get = lambda table, name, rows: np.asarray(table[name])[rows]  # noqa: E731
    F, K, t, D = (get(market0, c, i0).astype(float) for c in ("forward", "strike", "ttm", "discount"))
    is_call = get(market0, "option_type", i0) == "C"
    s0 = get(model0, "model_vol", j0).astype(float)
    s1 = get(model1_frozen, "model_vol", j1).astype(float)
    sm = get(market0, "market_vol", i0).astype(float)
    mid0, mid1 = get(market0, "mid", i0).astype(float), get(market1, "mid", i1).astype(float)
    dF = get(market1, "forward", i1).astype(float) - F
    dt = t - get(market1, "ttm", i1).astype(float)
    ds = s1 - s0
    with np.errstate(all="ignore"):
        g = black_greeks(F, K, t, s0, is_call=is_call, discount=D)
        b = black_greeks(F, K, t, sm, is_call=is_call, discount=D)
        first = g.theta * dt + g.delta * dF + g.vega * ds
        second = first + 0.5 * g.gamma * dF * dF + g.vanna * dF * ds + 0.5 * g.volga * ds * ds
        baseline = b.theta * dt + b.delta * dF
    realised = mid1 - mid0
    columns = {
        "expiry": get(market0, "expiry", i0), "strike": K, "option_type": get(market0, "option_type", i0),
        "ttm": t, "dt": dt, "forward": F, "dF": dF, "model_vol": s0, "model_vol_next": s1, "market_vol": sm,
        "mid": mid0, "mid_next": mid1, "realised": realised, "predicted_first": first, "predicted_second": second,
        "baseline": baseline, "error_first": realised - first, "error_second": realised - second,
        "error_baseline": realised - baseline, "vega_market": b.vega,
    }
    keep = np.isfinite(realised) & np.isfinite(first) & np.isfinite(second) & np.isfinite(baseline)
    return pd.DataFrame({name: np.asarray(values)[keep] for name, values in columns.items()})


def _reference_row(result: CalibrationResult) -> int:
    ttm = np.asarray(result.expiry_ttm, dtype=float)
    return int(np.argmin(np.abs(ttm * _DAYS_PER_YEAR - REFERENCE_TENOR_DAYS))) if ttm.size else 0


def _flat_params(result: CalibrationResult) -> dict[str, float]:
    theta, se = result.param_array, result.std_error_array
    if result.kind == "slice":
        j = _reference_row(result)
        theta, se = theta[j], se[j]
    out = {}
    for i, name in enumerate(result.param_names):
        out[f"param_{name}"] = float(theta[i])
        out[f"se_{name}"] = float(se[i])
    return out


def _long_params(i: int, asof: pd.Timestamp | None, result: CalibrationResult) -> list[dict[str, Any]]:
    theta, se = result.param_array, result.std_error_array
    rows = []
    if result.kind == "slice":
        for j, expiry in enumerate(result.expiries):
            for p, name in enumerate(result.param_names):
                rows.append({"i": i, "asof": asof, "model": result.model, "expiry": expiry,
                             "ttm": result.expiry_ttm[j], "name": name, "value": theta[j, p],
                             "std_error": se[j, p]})
    else:
        for p, name in enumerate(result.param_names):
            rows.append({"i": i, "asof": asof, "model": result.model, "expiry": None, "ttm": math.nan,
                         "name": name, "value": theta[p], "std_error": se[p]})
    return rows


def _drift(previous: CalibrationResult, current: CalibrationResult) -> dict[str, float]:
    """``drift_<name>`` (parameter units) and the scaled ``drift`` (dimensionless) of one step."""
    model = get_model(current.model, current.model_options())
    names = current.param_names
    if current.kind == "slice":
        common = [e for e in current.expiries if e is not None and e in previous.expiries]
        if not common:
            return {"drift": math.nan}
        a = previous.param_array[[previous.expiries.index(e) for e in common]]
        b = current.param_array[[current.expiries.index(e) for e in common]]
        scale = prior_scale(model, np.where(np.isfinite(a), a, 1.0))
        delta = b - a
        out = {f"drift_{n}": float(np.nanmean(np.abs(delta[:, k]))) for k, n in enumerate(names)}
        out["drift"] = _rms(delta / scale)
        return out
    prev = np.array([float(previous.params.get(n, np.nan)) for n in names])
    cur = current.param_array
    scale = prior_scale(model, np.where(np.isfinite(prev), prev, 1.0))
    delta = cur - prev
    out = {f"drift_{n}": float(abs(d)) for n, d in zip(names, delta)}
    out["drift"] = _rms(delta / scale)
    return out


# ---------------------------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------------------------


def backtest(
    sources: Sequence[str | Path | QuoteSnapshot],
    settings: BacktestSettings | None = None,
    *,
    progress: BacktestProgress | None = None,
    fit: FitFunction | None = None,
) -> BacktestResult:
    """Calibrate every snapshot of a history, in the order given, and score the fits.

    Parameters
    ----------
    sources
        Snapshot files (any format :func:`calibration.snapshot.load_snapshot` reads) or loaded snapshots, in time
        order (see :func:`expand_sources` for folders and globs). Files are read one at a time.
    settings
        Model and optimizer settings, warm start, regularisation (defaults when omitted).
    progress
        Called as ``progress(done, n)`` after each snapshot; returning True stops the run (the result then has
        ``cancelled=True`` and the rows done so far).
    fit
        ``fit(snapshot, calibration_settings, initial, previous) -> CalibrationResult``; default
        :func:`default_fit` (:func:`calibration.calibrate.calibrate`). ``initial`` is the previous good fit when
        warm-starting (else None), ``previous`` the previous good fit when regularising (else None). The dashboard
        passes a cached version.

    Returns
    -------
    BacktestResult
        Bad snapshots are rows with their status and reason; they never stop the run.
    """
    settings = settings or BacktestSettings()
    fit = fit or default_fit(check_arbitrage=settings.check_arbitrage)
    fit_settings = settings.fit_settings()
    n = len(sources)
    rows: list[dict[str, Any]] = []
    hedges: list[pd.DataFrame] = []
    params: list[dict[str, Any]] = []
    # previous good fit, its quotes and its per-quote model vols
    last: tuple[CalibrationResult, dict[str, np.ndarray], dict[str, np.ndarray]] | None = None
    cancelled = False
    for i, source in enumerate(sources):
        snapshot, label, status, reason = _load(source)
        row: dict[str, Any] = {
            "i": i, "file": label, "asof": None if snapshot is None else pd.Timestamp(snapshot.asof),
            "model": fit_settings.model, "status": status, "reason": reason,
        }
        if status == "ok":
            assert snapshot is not None
            previous = last[0] if last is not None else None
            try:
                result = fit(snapshot, fit_settings, previous if settings.warm_start else None,
                             previous if settings.regularisation > 0.0 else None)
            except Exception as exc:  # noqa: BLE001 -- any failure of one fit is that row's reason; the run goes on
                row.update(status="failed", reason=_reason(exc) if isinstance(exc, SmilescopeError)
                           else f"{type(exc).__name__}: {exc}")
                result = None
            if result is not None:
                row.update(
                    success=bool(result.success), message=result.message, nfev=int(result.nfev),
                    elapsed_s=float(result.elapsed_s), n_quotes=int(result.n_quotes),
                    rmse_vol_points=result.rmse_vol_points, rmse_price=result.rmse_price,
                    inside_spread_share=result.inside_spread_share, **_flat_params(result),
                )
                params += _long_params(i, row["asof"], result)
                market, fitted = _market(snapshot), _residuals(result)
                if previous is not None:
                    row.update(_drift(previous, result))
                    cols, frozen, note = _out_of_sample(previous, snapshot, fitted, fit_settings)
                    row.update(cols)
                    if note:
                        row["reason"] = note
                    if frozen is not None:
                        h = hedge_step(last[1], last[2], market, frozen)  # type: ignore[index]
                        h.insert(0, "i", i)
                        h.insert(1, "asof", row["asof"])
                        h.insert(2, "model", fit_settings.model)
                        hedges.append(h)
                        row["hedge_n"] = len(h)
                        for kind in ("first", "second", "baseline"):
                            row[f"hedge_rmse_{kind}"] = _rms(h[f"error_{kind}"].to_numpy())
                last = (result, market, fitted)
        rows.append(row)
        if progress is not None and progress(i + 1, n):
            cancelled = i + 1 < n
            break
    table = pd.DataFrame(rows)
    for c in TABLE_BASE_COLUMNS:
        if c not in table:
            table[c] = np.nan if c not in ("file", "model", "status", "reason", "message") else None
    extra = [c for c in table.columns if c not in TABLE_BASE_COLUMNS]
    table = table[list(TABLE_BASE_COLUMNS) + extra]
    if len(table):
        table["asof"] = pd.to_datetime(table["asof"], utc=True)
        table["success"] = table["success"].astype(object)
    hedge = pd.concat(hedges, ignore_index=True) if hedges else pd.DataFrame(columns=list(HEDGE_COLUMNS))
    param_frame = pd.DataFrame(params, columns=list(PARAM_COLUMNS))
    return BacktestResult(settings=settings, table=table, hedge=hedge, params=param_frame, cancelled=cancelled,
                          n_sources=n)


def load_history(sources: Sequence[str | Path]) -> list[QuoteSnapshot | str | Path]:
    """Load the readable files of ``sources`` ahead of a run (to time loading separately); unreadable ones are
    kept as paths so that :func:`backtest` reports them."""
    out: list[QuoteSnapshot | str | Path] = []
    for source in sources:
        try:
            out.append(load_snapshot(source))
        except (SmilescopeError, OSError, ValueError):
            out.append(source)
    return out


def combine(results: Sequence[BacktestResult], labels: Sequence[str] | None = None) -> pd.DataFrame:
    """The tables of several runs (models, warm/cold, regularisations) stacked, with a ``run`` column (default
    :func:`run_label`): one row per snapshot x run, for model comparison over time."""
    labels = list(labels) if labels is not None else [run_label(r) for r in results]
    frames = [r.table.assign(run=label) for r, label in zip(results, labels)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", *TABLE_BASE_COLUMNS])


SUMMARY_LINES: tuple[tuple[str, str, str], ...] = (
    ("snapshots ok / unreadable / empty / failed", "status", ""),
    ("converged share", "converged_share", "{:.0%}"),
    ("mean rmse in-sample at fit, vol pts", "fit_rmse_vol_points", "{:.3f}"),
    ("mean rmse in-sample t+1, vol pts", "is_rmse_vol_points", "{:.3f}"),
    ("mean rmse out-of-sample t+1, vol pts", "oos_rmse_vol_points", "{:.3f}"),
    ("mean parameter drift per step (scaled)", "drift", "{:.4g}"),
    ("evaluations (sum)", "nfev", "{:.0f}"),
    ("fit time (sum), s", "fit_elapsed_s", "{:.3f}"),
    ("hedged options (sum over steps)", "hedge_n", "{:.0f}"),
    ("hedge rmse 1st order (delta+vega)", "hedge_rmse_first", "{:.4g}"),
    ("hedge rmse 2nd order (+gamma,vanna,volga)", "hedge_rmse_second", "{:.4g}"),
    ("hedge rmse sticky-strike BS baseline", "hedge_rmse_baseline", "{:.4g}"),
    ("hedge rmse ratio 1st / baseline", "hedge_ratio_first", "{:.3f}"),
    ("hedge rmse ratio 2nd / baseline", "hedge_ratio_second", "{:.3f}"),
    ("hedge median |error| 1st order, vol pts", "hedge_median_vol_points_first", "{:.3f}"),
    ("hedge median |error| 2nd order, vol pts", "hedge_median_vol_points_second", "{:.3f}"),
    ("hedge median |error| baseline, vol pts", "hedge_median_vol_points_baseline", "{:.3f}"),
)


def run_label(result: BacktestResult) -> str:
    """Short name of a run: model, start, regularisation."""
    s = result.settings
    label = f"{s.calibration.model} {'warm' if s.warm_start else 'cold'}"
    return label + (f" reg={s.regularisation:g}" if s.regularisation > 0 else "")


def format_summary(results: Sequence[BacktestResult], labels: Sequence[str] | None = None) -> str:
    """The summaries of one or several runs side by side, one column per run."""
    labels = list(labels) if labels is not None else [run_label(r) for r in results]
    summaries = [r.summary() for r in results]
    width = max(16, *(len(x) + 2 for x in labels))
    lines = [f"{'':<44}" + "".join(f"{x:>{width}}" for x in labels)]
    for text, key, fmt in SUMMARY_LINES:
        if key == "status":
            cells = ["{:.0f}/{:.0f}/{:.0f}/{:.0f}".format(*(s[f"n_{k}"] for k in STATUSES)) for s in summaries]
        else:
            cells = ["n/a" if not np.isfinite(s[key]) else fmt.format(s[key]) for s in summaries]
        lines.append(f"{text:<44}" + "".join(f"{c:>{width}}" for c in cells))
    for r, label in zip(results, labels):
        bad = r.table[r.table["status"] != "ok"] if len(r.table) else r.table
        for _, row in bad.iterrows():
            lines.append(f"{label}: {row['file']}: {row['status']}: {row['reason']}")
        if r.cancelled:
            lines.append(f"{label}: cancelled after {len(r.table)} of {r.n_sources} snapshots")
    return "\n".join(lines)


__all__ = [
    "BUCKETS", "BacktestResult", "BacktestSettings", "STATUSES", "backtest", "combine", "default_fit",
    "expand_sources",
    "format_summary", "hedge_step", "load_history", "run_label",
]
