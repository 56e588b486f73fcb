"""Calibrations: a fast gate checks the request, a background job fits it (memoised, with progress and cancel).

The gate (``request_fit``) runs in the web process on Calibrate, on a new snapshot and on a link: it turns the
controls into :class:`CalibrationSettings` and checks the snapshot is on the server (and in scale-out mode that
Redis answers and a worker is alive), so every failure that
depends on the moment (not on the inputs) is reported there and never memoised. It writes the job spec
``{"snapshot": key, "settings": settings.to_dict()}`` into ``FIT_REQUEST``, the job's only input: the
background-callback manager memoises the job by that spec (content hash + settings) and the code version
(``cache_by``), across sessions and restarts. The job fits through :func:`server_store.cached_fit`, so the job
the manager starts even for a memoised fit returns the identical stored result, never a second run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from dash import Input, Output, State, callback, no_update

from calibration.calibrate import CalibrationSettings
from calibration.errors import SmilescopeError
from calibration.models import get_model
from calibration.optimizers import ProgressInfo
from components import ids
from components.callbacks.common import error, notify
from components.controls import CONTROL_IDS, CONTROL_PROPS, FELLER_MODELS, SABR_MODELS, settings_from_controls
from components.layout import result_summary
from components.scaleout import health
from components.server_store import cached_fit, snapshot_for

log = logging.getLogger(__name__)

#: Poll interval of a running job, ms (a memoised fit answers on the first poll).
POLL_MS = 60
BAR_SHOWN = {"visibility": "visible"}
BAR_HIDDEN = {"visibility": "hidden"}


def job_spec(key: dict[str, Any], settings: CalibrationSettings) -> dict[str, Any]:
    """The job's input: what is fitted and how (an upload is named by its hash alone, so the same content
    under another file name shares the memoised fits)."""
    snapshot = {"source": key["source"], "hash": key["hash"]}
    if key["source"] == "data":
        snapshot["name"] = key["name"]
    return {"snapshot": snapshot, "settings": settings.to_dict()}


@callback(
    Output(ids.FIT_REQUEST, "data"),
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.CALIBRATE_BUTTON, "n_clicks"),
    Input(ids.SNAPSHOT_KEY, "data"),
    Input(ids.URL_APPLIED, "data"),
    *[State(cid, CONTROL_PROPS[cid]) for cid in CONTROL_IDS],
    prevent_initial_call=True,
)
def request_fit(_clicks: int | None, key: dict[str, Any] | None, _applied: Any, *controls: Any):
    """Validate a fit request (settings and snapshot) and hand it to the background job."""
    if not key:
        return no_update, error("Nothing to calibrate", "no snapshot is loaded: pick or upload one")
    try:
        settings = settings_from_controls(*controls)
        problem = health.unavailable()
        if problem is not None:
            return no_update, error("Calibration not started", problem)
        snapshot_for(key)
    except (SmilescopeError, OSError) as exc:
        return no_update, error("Calibration not started", exc)
    except health.REDIS_ERRORS as exc:
        return no_update, error("Calibration not started", health.redis_down_message(exc))
    return job_spec(key, settings), no_update


def budget(settings: CalibrationSettings, n_expiries: int, kind: str) -> int:
    """Residual evaluations a fit may use: per expiry for slice models, per start of a multistart."""
    return settings.max_evals * max(settings.multistart, 1) * (max(n_expiries, 1) if kind == "slice" else 1)


def progress_values(info: ProgressInfo, limit: int) -> tuple[float, str]:
    """Progress bar value (percent of the evaluation budget, below 100 until done) and its text."""
    share = min(99.0, 100.0 * info.nfev / max(limit, 1))
    error_text = f"{info.rmse_vol_points:.2f} vol pts" if info.rmse_vol_points == info.rmse_vol_points else "–"
    stage = f" · {info.stage}" if info.stage else ""
    return share, f"{info.nfev:,} evaluations · error {error_text}{stage} · {info.elapsed_s:.1f} s"


def fit_job(spec: dict[str, Any], set_progress: Callable[[tuple[float, str]], None]):
    """Run one calibration; returns ``(RESULT_STORE data, header summary, notification)``.

    Deterministic in its input (memoised): a calibration error is a notification and the previous fit stays;
    a fit that did not converge is shown, with a warning.
    """
    try:
        settings = CalibrationSettings.from_dict(spec["settings"])
        snapshot = snapshot_for(spec["snapshot"])
        kind = get_model(settings.model, settings.model_options).kind
        limit = budget(settings, len(snapshot.expiries), kind)
        result = cached_fit(snapshot, settings, progress=lambda info: set_progress(progress_values(info, limit)))
    except SmilescopeError as exc:
        return no_update, no_update, error("Calibration failed", exc)
    except Exception as exc:  # noqa: BLE001 - a bug in a model must not take the page down; it is logged
        log.exception("calibration failed: %s", spec)
        return no_update, no_update, error("Calibration failed", f"{type(exc).__name__}: {exc}")
    if result["success"]:
        return result, result_summary(result), no_update
    return result, result_summary(result), notify(
        "Fit did not converge", f"{result['model'].upper()} / {result['optimizer']}: {result['message']}",
        color="orange")


@callback(
    Output(ids.RESULT_STORE, "data"),
    Output(ids.RESULT_SUMMARY, "children"),
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.FIT_REQUEST, "data"),
    background=True,
    interval=POLL_MS,
    progress=[Output(ids.PROGRESS_BAR, "value"), Output(ids.PROGRESS_TEXT, "children")],
    progress_default=[0, ""],
    running=[
        (Output(ids.CALIBRATE_BUTTON, "disabled"), True, False),
        (Output(ids.CALIBRATE_BUTTON, "loading"), True, False),
        (Output(ids.CANCEL_BUTTON, "disabled"), False, True),
        (Output(ids.PROGRESS_BAR, "style"), BAR_SHOWN, BAR_HIDDEN),
    ],
    cancel=[Input(ids.CANCEL_BUTTON, "n_clicks")],
    prevent_initial_call=True,
)
def run_fit(set_progress, spec: dict[str, Any] | None):
    """The background job: one calibration, progress reported every 50 ms at most."""
    if not spec:
        return no_update, no_update, no_update
    return fit_job(spec, set_progress)


@callback(
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.CANCEL_BUTTON, "n_clicks"),
    prevent_initial_call=True,
)
def cancelled(_clicks: int | None):
    """Say that a cancelled fit left the previous one on screen."""
    return notify("Calibration cancelled", "The previous fit stays on screen.", color="gray")


@callback(
    Output(ids.SABR_BETA_INPUT, "disabled"),
    Output(ids.FELLER_SWITCH, "disabled"),
    Input(ids.MODEL_SELECT, "value"),
)
def model_options_enabled(model: str | None):
    """Only the picked model's options are editable."""
    return model not in SABR_MODELS, model not in FELLER_MODELS
