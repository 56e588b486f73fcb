"""The Backtest tab: a fast gate checks the request, a background job runs it through the fit cache (progress,
cancel, resume), the chosen sub-view is drawn from the stored outcome; the replay and the exports.

The gate (``request_backtest``, web process) turns the tab's choices and the left panel's settings into the job
spec ``{"history", "names", "calibration", "runs"}`` in ``BACKTEST_REQUEST``, the job's only input; every failure
that depends on the inputs is a notification there and nothing starts. The job (``run_backtest``) runs
:func:`components.history.run_history` once per run: every fit goes through the shared fit cache, so a re-run is
served from it and a cancelled run resumes where it stopped. It stores the outcome server-side
(:func:`components.history.save_outcome`) and returns only ``{"key", "labels", "n", "asof", "names"}`` into
``BACKTEST_STORE``. A clientside gate draws only the chosen sub-view, and only when the Backtest tab is open and
what it would show has changed (the same scheme as ``views.py``).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, callback, clientside_callback, ctx, dcc, no_update
from dash.exceptions import PreventUpdate

from calibration.backtest import BacktestSettings, combine, run_label
from calibration.calibrate import CalibrationSettings
from calibration.errors import SmilescopeError
from calibration.models import MODEL_NAMES
from calibration.result import CalibrationResult
from components import ids
from components.backtest_view import MAX_MODELS, STARTS, SUBVIEWS
from components.callbacks.common import error, notify, result_id
from components.callbacks.render import THEMES, draw_safely, records_safely
from components.controls import CONTROL_IDS, CONTROL_PROPS, settings_from_controls
from components.data_files import history_folders
from components.figures.backtest import (
    RANKING_COLUMNS,
    hedge_figure,
    out_of_sample_figure,
    ranking_records,
    stability_figure,
)
from components.figures.common import empty_figure
from components.figures.smiles import smiles_figure
from components.figures.surface import surface_figure
from components.history import (
    BacktestOutcome,
    HistoryRun,
    load_outcome,
    outcome_key,
    outcome_stored,
    run_history,
    save_outcome,
)
from components.scaleout import health
from components.server_store import cached_result, data_snapshot
from components.tables import column_defs

log = logging.getLogger(__name__)

#: Poll interval of a running backtest, ms.
POLL_MS = 200
BAR_SHOWN = {"visibility": "visible"}
BAR_HIDDEN = {"visibility": "hidden"}
NO_BACKTEST = "No backtest yet: pick a history, models and starts, then Run backtest"
GONE = "This backtest is no longer on the server (its cache was cleared): run it again"
#: Replay slider marks at most.
MAX_MARKS = 7

#: ``set_progress((percent, text))``; returning True stops the run (the app cancels by stopping the job).
Progress = Callable[[tuple[float, str]], Any]


# ---------------------------------------------------------------------------------------------------------------
# the gate
# ---------------------------------------------------------------------------------------------------------------


def _positive(value: Any) -> float:
    try:
        lam = float(value)
    except (TypeError, ValueError):
        raise SmilescopeError(f"λ of the regularised start: {value!r} is not a number") from None
    if not (math.isfinite(lam) and lam > 0.0):
        raise SmilescopeError(f"λ of the regularised start must be a number > 0, got {value!r}")
    return lam


def backtest_spec(history: str | None, models: Sequence[str] | None, starts: Sequence[str] | None, lam: Any,
                  *controls: Any) -> dict[str, Any]:
    """The job spec of the tab's choices and the left panel's values (in :data:`CONTROL_IDS` order): one run per
    model and start, models first (at most 3 x 3 = 9 runs).

    Raises
    ------
    SmilescopeError
        A choice the backtest refuses, with a message naming it.
    """
    folders = history_folders()
    if not history:
        raise SmilescopeError("pick a history (a folder of the data directory with at least two snapshots)")
    if history not in folders:
        raise SmilescopeError(f"unknown history {history!r}: not a folder of the data directory with at least two "
                              "snapshots")
    models = list(models or [])
    if not models:
        raise SmilescopeError("pick at least one model")
    unknown = [m for m in models if m not in MODEL_NAMES]
    if unknown:
        raise SmilescopeError(f"unknown model {unknown[0]!r}: choose among {', '.join(MODEL_NAMES)}")
    if len(models) > MAX_MODELS:
        raise SmilescopeError(f"pick at most {MAX_MODELS} models, not {len(models)}")
    known = [value for value, _ in STARTS]
    odd = [s for s in starts or [] if s not in known]
    if odd:
        raise SmilescopeError(f"unknown start {odd[0]!r}: choose among {', '.join(known)}")
    starts = [s for s in known if s in (starts or [])]  # in the order of the checkboxes
    if not starts:
        raise SmilescopeError("tick at least one start: warm, cold or regularised")
    lam = _positive(lam) if "regularised" in starts else 0.0
    # the left panel's settings with each model in turn (its options: SABR beta, Feller), checked
    settings = [settings_from_controls(model, *controls[1:]) for model in models]
    runs = [{"model": s.model, "model_options": dict(s.model_options), "warm_start": start != "cold",
             "regularisation": lam if start == "regularised" else 0.0} for s in settings for start in starts]
    return {"history": history, "names": folders[history], "calibration": settings[0].to_dict(), "runs": runs}


@callback(
    Output(ids.BACKTEST_REQUEST, "data"),
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.BACKTEST_RUN, "n_clicks"),
    State(ids.BACKTEST_HISTORY, "value"),
    State(ids.BACKTEST_MODELS, "value"),
    State(ids.BACKTEST_STARTS, "value"),
    State(ids.BACKTEST_LAMBDA, "value"),
    *[State(cid, CONTROL_PROPS[cid]) for cid in CONTROL_IDS],
    prevent_initial_call=True,
)
def request_backtest(_clicks: int | None, history: str | None, models: list[str] | None, starts: list[str] | None,
                     lam: Any, *controls: Any):
    """Validate a backtest request and hand it to the background job.

    When the outcome of this spec is no longer stored (evicted, cache cleared) the spec gets a one-off ``attempt``
    tag, so that the job manager's memo of an earlier run (which names the lost outcome) is not answered again;
    the tag is not part of the outcome's key and the fits still come from the fit cache."""
    try:
        spec = backtest_spec(history, models, starts, lam, *controls)
        problem = health.unavailable()
        if problem is not None:
            return no_update, error("Backtest not started", problem)
        if not outcome_stored(outcome_key(spec)):
            spec["attempt"] = uuid.uuid4().hex[:12]
    except (SmilescopeError, OSError) as exc:
        return no_update, error("Backtest not started", exc)
    except health.REDIS_ERRORS as exc:
        return no_update, error("Backtest not started", health.redis_down_message(exc))
    return spec, no_update


# ---------------------------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------------------------


def run_settings(spec: dict[str, Any], run: dict[str, Any]) -> BacktestSettings:
    """The settings of one run of a spec: the spec's calibration with the run's model, start and penalty."""
    calibration = replace(CalibrationSettings.from_dict(spec["calibration"]), model=run["model"],
                          model_options=run["model_options"])
    return BacktestSettings(calibration=calibration, warm_start=bool(run["warm_start"]),
                            regularisation=float(run["regularisation"]))


def start_name(settings: BacktestSettings) -> str:
    """"warm", "cold" or "regularised λ=<lambda>"."""
    if settings.regularisation > 0.0:
        return f"regularised λ={settings.regularisation:g}"
    return "warm" if settings.warm_start else "cold"


def progress_values(done: int, n: int, run: int, n_runs: int, settings: BacktestSettings,
                    elapsed_s: float) -> tuple[float, str]:
    """Progress bar value (percent of all snapshot fits) and its text."""
    share = 100.0 * (run * n + done) / max(n_runs * n, 1)
    name = f"{settings.calibration.model.upper()} {start_name(settings)}"
    return share, f"snapshot {done} of {n} · {name} (run {run + 1} of {n_runs}) · {elapsed_s:.1f} s"


def run_spec(spec: dict[str, Any], set_progress: Progress) -> tuple[list[str], list[HistoryRun], bool]:
    """Every run of a spec, in order: ``(labels, runs, stopped)``; ``stopped`` when ``set_progress`` returned True
    (the runs done so far are returned, the last one cut short)."""
    started = time.monotonic()
    names = list(spec["names"])
    n, n_runs = len(names), len(spec["runs"])
    labels: list[str] = []
    runs: list[HistoryRun] = []
    for r, run in enumerate(spec["runs"]):
        settings = run_settings(spec, run)

        def progress(done: int, total: int, r: int = r, settings: BacktestSettings = settings) -> bool:
            return bool(set_progress(progress_values(done, total, r, n_runs, settings, time.monotonic() - started)))

        if progress(0, n):
            return labels, runs, True
        history_run = run_history(names, settings, progress=progress)
        labels.append(run_label(history_run.result))
        runs.append(history_run)
        if history_run.result.cancelled:
            return labels, runs, True
    return labels, runs, False


def bad_snapshots(outcome: BacktestOutcome, *, reasons: bool = True) -> list[str]:
    """The snapshots a backtest could not use, once each: "file: status: reason" (``reasons=False``: "file
    (status)"), with the runs where they failed when not all did."""
    seen: dict[tuple[str, str, str], list[str]] = {}
    for label, result in zip(outcome.labels, outcome.results):
        table = result.table
        if not len(table):
            continue
        for _, row in table[table["status"] != "ok"].iterrows():
            seen.setdefault((str(row["file"]), str(row["status"]), str(row["reason"])), []).append(label)
    lines = []
    for (file, status, reason), labels in seen.items():
        where = "" if len(labels) == len(outcome.labels) else f" ({', '.join(labels)})"
        base = file.rsplit("/", 1)[-1]
        reason = reason.removeprefix(f"{base}: ")  # a loader's message names the file already
        lines.append(f"{base}: {status}: {reason}{where}" if reasons else f"{base} ({status}){where}")
    return lines


def store_data(key: str, outcome: BacktestOutcome) -> dict[str, Any]:
    """What ``BACKTEST_STORE`` holds: the outcome's key, run labels, snapshot count, times and names."""
    table = outcome.results[0].table
    asof = [None if pd.isna(t) else pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ") for t in table["asof"]]
    names = list(outcome.spec["names"])
    return {"key": key, "labels": list(outcome.labels), "n": len(names), "asof": asof, "names": names}


def backtest_job(spec: dict[str, Any], set_progress: Progress) -> tuple[Any, Any]:
    """Run a spec and store its outcome; returns ``(BACKTEST_STORE data, notification)``. A failure is a
    notification and the backtest on screen stays; bad snapshots are named in a warning."""
    stored = load_outcome(outcome_key(spec)) if outcome_stored(outcome_key(spec)) else None
    if stored is not None:  # the same backtest was run before: show it
        return store_data(outcome_key(spec), stored), no_update
    try:
        labels, runs, stopped = run_spec(spec, set_progress)
    except SmilescopeError as exc:
        return no_update, error("Backtest failed", exc)
    except Exception as exc:  # noqa: BLE001 - a bug in a model must not take the page down; it is logged
        log.exception("backtest failed: %s", spec.get("history"))
        return no_update, error("Backtest failed", f"{type(exc).__name__}: {exc}")
    if stopped:
        return no_update, notify("Backtest stopped", "The fits done are kept: Run backtest resumes.", color="gray")
    key = save_outcome(spec, labels, runs)
    outcome = BacktestOutcome(spec=spec, labels=tuple(labels), runs=tuple(runs))
    bad = bad_snapshots(outcome)
    note = notify(f"{len(bad)} snapshot(s) not used", "; ".join(bad), color="orange") if bad else no_update
    return store_data(key, outcome), note


@callback(
    Output(ids.BACKTEST_STORE, "data"),
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.BACKTEST_REQUEST, "data"),
    background=True,
    interval=POLL_MS,
    progress=[Output(ids.BACKTEST_PROGRESS_BAR, "value"), Output(ids.BACKTEST_PROGRESS_TEXT, "children")],
    progress_default=[0, ""],
    running=[
        (Output(ids.BACKTEST_RUN, "disabled"), True, False),
        (Output(ids.BACKTEST_RUN, "loading"), True, False),
        (Output(ids.BACKTEST_CANCEL, "disabled"), False, True),
        (Output(ids.BACKTEST_PROGRESS_BAR, "style"), BAR_SHOWN, BAR_HIDDEN),
    ],
    cancel=[Input(ids.BACKTEST_CANCEL, "n_clicks")],
    prevent_initial_call=True,
)
def run_backtest(set_progress, spec: dict[str, Any] | None):
    """The background job: every run of the spec, progress after each snapshot."""
    if not spec:
        return no_update, no_update
    return backtest_job(spec, set_progress)


@callback(
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.BACKTEST_CANCEL, "n_clicks"),
    prevent_initial_call=True,
)
def backtest_cancelled(_clicks: int | None):
    """Say what a cancel keeps."""
    return notify("Backtest cancelled", "The fits done are kept: Run backtest resumes where it stopped.",
                  color="gray")


clientside_callback(
    "function (starts) { return !(starts || []).includes('regularised'); }",
    Output(ids.BACKTEST_LAMBDA, "disabled"),
    Input(ids.BACKTEST_STARTS, "value"),
)


# ---------------------------------------------------------------------------------------------------------------
# drawing the chosen sub-view
# ---------------------------------------------------------------------------------------------------------------

#: The outputs of the sub-views, in the order :func:`render_backtest` returns them.
VIEW_OUTPUTS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("ranking", ((ids.BACKTEST_RANKING, "rowData"), (ids.BACKTEST_RANKING, "columnDefs"))),
    ("stability", ((ids.BACKTEST_STABILITY_GRAPH, "figure"),)),
    ("oos", ((ids.BACKTEST_OOS_GRAPH, "figure"),)),
    ("hedge", ((ids.BACKTEST_HEDGE_GRAPH, "figure"),)),
    ("replay", ((ids.REPLAY_SURFACE_GRAPH, "figure"), (ids.REPLAY_SMILES_GRAPH, "figure"))),
)
VIEW_NAMES = tuple(view for view, _ in SUBVIEWS)


def _outputs(view: str, values: Sequence[Any]) -> tuple:
    """All outputs: ``values`` for ``view``'s, no_update for the others."""
    out: list[Any] = []
    for name, outputs in VIEW_OUTPUTS:
        out += list(values) if name == view else [no_update] * len(outputs)
    return tuple(out)


def _blank(view: str, why: str, theme: str) -> tuple:
    if view == "ranking":
        return [], ranking_columns()
    n = dict(VIEW_OUTPUTS)[view]
    return tuple(empty_figure(why, theme=theme) for _ in n)


#: Ranking columns kept wide enough to read, or narrower than the rest (px).
RANKING_WIDTHS = {"rank": 52, "run": 120, "best": 165}
#: Ranking columns whose text wraps (the row grows) rather than being cut.
RANKING_WRAPPED = ("best",)
#: Ranking columns hidden: the model's name is the run label's first word.
RANKING_HIDDEN = ("model",)


def ranking_columns() -> list[dict[str, Any]]:
    """The ranking grid's columns (:data:`RANKING_COLUMNS`): sortable, no filters (a row per run), the text ones
    wide enough to read."""
    return [col | {"filter": False, "hide": col["field"] in RANKING_HIDDEN}
            | ({"minWidth": RANKING_WIDTHS[col["field"]]} if col["field"] in RANKING_WIDTHS else {})
            | ({"wrapText": True, "autoHeight": True, "cellClass": "cell-wrapped"}
               if col["field"] in RANKING_WRAPPED else {})
            for col in column_defs(RANKING_COLUMNS)]


def backtest_note(data: dict[str, Any], outcome: BacktestOutcome) -> str:
    """One line about the backtest on screen: history, runs, snapshots, those not used."""
    bad = bad_snapshots(outcome, reasons=False)
    text = f"{outcome.spec['history']} · {len(outcome.labels)} runs × {data['n']} snapshots · times UTC"
    return text + (f" · not used: {'; '.join(bad)}" if bad else "")


def replay_figures(outcome: BacktestOutcome, run: int, step: int, theme: str) -> tuple[go.Figure, go.Figure]:
    """The fitted surface and the smiles of snapshot ``step`` of run ``run`` (read back from the fit cache)."""
    result = outcome.runs[run].result
    table = result.table
    name = outcome.spec["names"][step]
    key = outcome.runs[run].fit_keys.get(step)
    if key is None:
        row = table[table["i"] == step]
        why = f"{row['status'].iloc[0]}: {row['reason'].iloc[0]}" if len(row) else "not fitted"
        return tuple(empty_figure(f"{name}: {why}", theme=theme) for _ in range(2))  # type: ignore[return-value]
    fit = cached_result(key)
    snapshot = data_snapshot(name)
    if fit is None or fit["snapshot_hash"] != snapshot.content_hash:
        why = "its fit is no longer cached" if fit is None else "the file changed since the backtest"
        return tuple(empty_figure(f"{name}: {why}: run the backtest again", theme=theme)  # type: ignore[return-value]
                     for _ in range(2))
    fitted = CalibrationResult.from_dict(fit)
    tag = result_id(fit)
    return (draw_safely(surface_figure, snapshot, fitted, theme=theme, tag=tag),
            draw_safely(smiles_figure, snapshot, fitted, theme=theme, tag=tag))


def draw_view(view: str, data: dict[str, Any], outcome: BacktestOutcome, theme: str, run: Any, step: Any) -> tuple:
    """The outputs of one sub-view."""
    runs, labels = outcome.results, list(outcome.labels)
    if view == "ranking":
        return records_safely(ranking_records, runs, labels), ranking_columns()
    figures = {"stability": stability_figure, "oos": out_of_sample_figure, "hedge": hedge_figure}
    if view in figures:
        return (draw_safely(figures[view], runs, labels, theme=theme, tag=data["key"]),)
    r = int(run) if str(run or "").isdigit() and int(run) < len(runs) else 0
    i = min(max(int(step or 0), 0), data["n"] - 1)
    return replay_figures(outcome, r, i, theme)


def render_backtest(data: dict[str, Any] | None, theme: str, view: str | None, run: Any, step: Any) -> tuple:
    """The chosen sub-view drawn from the stored outcome (the others untouched), and the note line."""
    view = view if view in VIEW_NAMES else VIEW_NAMES[0]
    if not data:
        return NO_BACKTEST, *_outputs(view, _blank(view, NO_BACKTEST, theme))
    try:
        outcome = load_outcome(data["key"])
        if outcome is None:
            return GONE, *_outputs(view, _blank(view, GONE, theme))
        return backtest_note(data, outcome), *_outputs(view, draw_view(view, data, outcome, theme, run, step))
    except Exception as exc:  # noqa: BLE001 - a bad stored outcome or a lost snapshot: say so, keep the page up
        log.exception("backtest view %s failed", view)
        why = f"Cannot show this backtest: {exc}"
        return why, *_outputs(view, _blank(view, why, theme))


#: The gate: the stamp of what the chosen sub-view would show (outcome key, theme, view, and for the replay the
#: run and snapshot); written only when the Backtest tab is open and the stamp differs from the last one drawn.
BACKTEST_GATE = """
function (active, data, theme, view, run, step, last) {
    const skip = window.dash_clientside.no_update;
    if (active !== 'backtest') { return skip; }
    const stamp = JSON.stringify([data ? data.key : null, theme === 'light' ? 'light' : 'dark', view,
                                  view === 'replay' ? [run, step] : null]);
    return stamp === last ? skip : stamp;
}
"""
RENDERED = {"type": ids.RENDERED, "tab": "backtest"}
clientside_callback(
    BACKTEST_GATE,
    Output(RENDERED, "data"),
    Input(ids.TABS, "value"),
    Input(ids.BACKTEST_STORE, "data"),
    Input(ids.THEME_STORE, "data"),
    Input(ids.BACKTEST_VIEW, "value"),
    Input(ids.REPLAY_RUN, "value"),
    Input(ids.REPLAY_STEP, "value"),
    State(RENDERED, "data"),
    prevent_initial_call=True,
)


@callback(
    Output(ids.BACKTEST_NOTE, "children"),
    *[Output(cid, prop) for _, outputs in VIEW_OUTPUTS for cid, prop in outputs],
    Input(RENDERED, "data"),
    State(ids.BACKTEST_STORE, "data"),
    State(ids.THEME_STORE, "data"),
    State(ids.BACKTEST_VIEW, "value"),
    State(ids.REPLAY_RUN, "value"),
    State(ids.REPLAY_STEP, "value"),
    prevent_initial_call=True,
)
def view_backtest(_stamp: str, data: dict[str, Any] | None, theme: str | None, view: str | None, run: Any,
                  step: Any):
    """Draw the chosen sub-view (see the gate)."""
    return render_backtest(data, theme if theme in THEMES else "dark", view, run, step)


clientside_callback(
    """function (view) {
        const off = view !== 'replay';
        const skip = window.dash_clientside.no_update;
        return [...%s.map(v => ({display: v === view ? 'block' : 'none'})), off ? true : skip, off ? 'Play' : skip];
    }""" % list(VIEW_NAMES),
    *[Output({"type": ids.BACKTEST_PANES, "view": view}, "style") for view in VIEW_NAMES],
    Output(ids.REPLAY_TIMER, "disabled", allow_duplicate=True),
    Output(ids.REPLAY_PLAY, "children", allow_duplicate=True),
    Input(ids.BACKTEST_VIEW, "value"),
    prevent_initial_call=True,
)


# ---------------------------------------------------------------------------------------------------------------
# replay
# ---------------------------------------------------------------------------------------------------------------


def slider_marks(asof: Sequence[str | None], names: Sequence[str]) -> list[dict[str, Any]]:
    """At most :data:`MAX_MARKS` evenly spaced marks of the replay slider: the snapshot's UTC time ("11-18 14:00"),
    "not read" for a file that could not be read."""
    n = len(names)
    if n == 0:
        return []
    count = min(MAX_MARKS, n)
    picks = sorted({round(j * (n - 1) / max(count - 1, 1)) for j in range(count)})
    marks = []
    for i in picks:
        t = asof[i] if i < len(asof) else None
        label = pd.Timestamp(t).strftime("%m-%d %H:%M") if t else "not read"
        marks.append({"value": i, "label": label})
    return marks


@callback(
    Output(ids.REPLAY_RUN, "data"),
    Output(ids.REPLAY_RUN, "value"),
    Output(ids.REPLAY_STEP, "max"),
    Output(ids.REPLAY_STEP, "marks"),
    Output(ids.REPLAY_STEP, "value"),
    Input(ids.BACKTEST_STORE, "data"),
    prevent_initial_call=True,
)
def replay_choices(data: dict[str, Any] | None):
    """A new backtest: its runs to replay and a slider over its snapshots, at the first one."""
    if not data:
        raise PreventUpdate
    runs = [{"value": str(i), "label": label} for i, label in enumerate(data["labels"])]
    return runs, "0", max(data["n"] - 1, 0), slider_marks(data["asof"], data["names"]), 0


clientside_callback(
    """function (_clicks, stopped, step, last) {
        const skip = window.dash_clientside.no_update;
        if (!stopped) { return [true, 'Play', skip]; }
        return [false, 'Pause', (step || 0) >= last ? 0 : skip];
    }""",
    Output(ids.REPLAY_TIMER, "disabled", allow_duplicate=True),
    Output(ids.REPLAY_PLAY, "children", allow_duplicate=True),
    Output(ids.REPLAY_STEP, "value", allow_duplicate=True),
    Input(ids.REPLAY_PLAY, "n_clicks"),
    State(ids.REPLAY_TIMER, "disabled"),
    State(ids.REPLAY_STEP, "value"),
    State(ids.REPLAY_STEP, "max"),
    prevent_initial_call=True,
)

clientside_callback(
    """function (_n, step, last) {
        const skip = window.dash_clientside.no_update;
        const next = Math.min((step || 0) + 1, last);
        return next >= last ? [next, true, 'Play'] : [next, skip, skip];
    }""",
    Output(ids.REPLAY_STEP, "value", allow_duplicate=True),
    Output(ids.REPLAY_TIMER, "disabled", allow_duplicate=True),
    Output(ids.REPLAY_PLAY, "children", allow_duplicate=True),
    Input(ids.REPLAY_TIMER, "n_intervals"),
    State(ids.REPLAY_STEP, "value"),
    State(ids.REPLAY_STEP, "max"),
    prevent_initial_call=True,
)


# ---------------------------------------------------------------------------------------------------------------
# exports
# ---------------------------------------------------------------------------------------------------------------


def export_backtest(which: str, data: dict[str, Any] | None) -> dict[str, Any]:
    """The ``dcc.Download`` payload of a backtest export: the tidy table of every run (CSV, one row per snapshot x
    run, :func:`calibration.backtest.combine`) or every run's tables (JSON: ``{"spec", "runs": [{"label",
    "result": BacktestResult.to_dict()}]}``)."""
    if not data:
        raise ValueError("there is no backtest on screen yet")
    outcome = load_outcome(data["key"])
    if outcome is None:
        raise ValueError(GONE)
    stem = f"smilescope_backtest_{outcome.spec['history'].replace('/', '_')}_{data['key'][:8]}"
    if which == ids.BACKTEST_EXPORT_CSV:
        table = combine(outcome.results, list(outcome.labels))
        text = table.to_csv(index=False, float_format="%.10g", date_format="%Y-%m-%dT%H:%M:%SZ")
        return dcc.send_string(text, f"{stem}.csv", type="text/csv")
    document = {"spec": outcome.spec,
                "runs": [{"label": label, "result": result.to_dict()}
                         for label, result in zip(outcome.labels, outcome.results)]}
    return dcc.send_string(json.dumps(document, allow_nan=False), f"{stem}.json", type="application/json")


@callback(
    Output(ids.BACKTEST_DOWNLOAD, "data"),
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.BACKTEST_EXPORT_CSV, "n_clicks"),
    Input(ids.BACKTEST_EXPORT_JSON, "n_clicks"),
    State(ids.BACKTEST_STORE, "data"),
    prevent_initial_call=True,
)
def export(_csv: int | None, _json: int | None, data: dict[str, Any] | None):
    """Send the chosen export to the browser; a failure is a notification."""
    if not ctx.triggered_id:
        raise PreventUpdate
    try:
        return export_backtest(ctx.triggered_id, data), no_update
    except Exception as exc:  # noqa: BLE001 - an export that fails is reported, the page stays
        return no_update, error("Export failed", exc)
