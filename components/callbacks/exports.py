"""Exports: parameters (JSON), the fitted vol grid (CSV), the quotes with their implied vols (CSV).

Figures export themselves as PNG from their mode bar (see ``layout.graph_config``).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd
from dash import Input, Output, State, callback, ctx, dcc, no_update
from dash.exceptions import PreventUpdate

from calibration.result import CalibrationResult
from calibration.snapshot import QuoteSnapshot
from components import ids
from components.callbacks.common import error
from components.figures.common import fitted_expiries, model_vols
from components.server_store import snapshot_by_hash, snapshot_for

#: Points of the log-moneyness grid of the fitted-grid export.
GRID_POINTS = 41


def params_document(result: dict[str, Any]) -> dict[str, Any]:
    """The parameters export: the stored result without its per-quote residual table."""
    return {name: value for name, value in result.items() if name != "residuals"}


def fitted_grid(snapshot: QuoteSnapshot, result: CalibrationResult, *, n_k: int = GRID_POINTS) -> pd.DataFrame:
    """Model vols on a rectangular grid: every fitted expiry x ``n_k`` log-moneyness points spanning the fitted
    quotes' range. Columns: expiry (UTC), days, ttm (years), forward, k = ln(K/F), strike, model_vol (decimal),
    model_vol_pct; NaN where the model gives no vol."""
    expiries = fitted_expiries(snapshot, result)
    k_fit = snapshot.fit_quotes["k"].to_numpy(dtype=float)
    k_fit = k_fit[np.isfinite(k_fit)]
    lo, hi = (float(k_fit.min()), float(k_fit.max())) if k_fit.size else (-0.5, 0.5)
    k = np.linspace(lo, hi, n_k)
    t = expiries.ttm[:, None]
    forward = expiries.forward[:, None]
    strike = forward * np.exp(k[None, :])
    vols = model_vols(result, forward, strike, t, expiries.discount[:, None])
    m = expiries.m
    return pd.DataFrame(
        {
            "expiry": np.repeat([e.strftime("%Y-%m-%dT%H:%M:%SZ") if not pd.isna(e) else "" for e in expiries.expiry],
                                n_k),
            "days": np.repeat(expiries.days, n_k),
            "ttm": np.repeat(expiries.ttm, n_k),
            "forward": np.repeat(expiries.forward, n_k),
            "k": np.tile(k, m),
            "strike": strike.ravel(),
            "model_vol": vols.ravel(),
            "model_vol_pct": 100.0 * vols.ravel(),
        }
    )


def _stem(snapshot: QuoteSnapshot, result: dict[str, Any] | None = None) -> str:
    model = f"_{result['model']}" if result else ""
    return f"smilescope_{snapshot.underlying}_{snapshot.asof:%Y%m%dT%H%M}{model}"


def export_file(which: str, result: dict[str, Any] | None, key: dict[str, Any] | None) -> dict[str, Any]:
    """The ``dcc.Download`` payload of an export (``which``: one of the export ids)."""
    if which == ids.EXPORT_QUOTES:
        snapshot = snapshot_for(key or {})
        return dcc.send_string(snapshot.iv_report().to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%SZ"),
                               f"{_stem(snapshot)}_quotes_iv.csv", type="text/csv")
    if not result:
        raise ValueError("there is no fit on screen yet")
    snapshot = snapshot_by_hash(result["snapshot_hash"])
    if which == ids.EXPORT_PARAMS:
        text = json.dumps(params_document(result), indent=2, allow_nan=False)
        return dcc.send_string(text, f"{_stem(snapshot, result)}_params.json", type="application/json")
    grid = fitted_grid(snapshot, CalibrationResult.from_dict(result))
    return dcc.send_string(grid.to_csv(index=False), f"{_stem(snapshot, result)}_vol_grid.csv", type="text/csv")


@callback(
    Output(ids.DOWNLOAD, "data"),
    Output(ids.NOTIFICATIONS, "sendNotifications", allow_duplicate=True),
    Input(ids.EXPORT_PARAMS, "n_clicks"),
    Input(ids.EXPORT_GRID, "n_clicks"),
    Input(ids.EXPORT_QUOTES, "n_clicks"),
    State(ids.RESULT_STORE, "data"),
    State(ids.SNAPSHOT_KEY, "data"),
    prevent_initial_call=True,
)
def export(_params: int | None, _grid: int | None, _quotes: int | None, result: dict[str, Any] | None,
           key: dict[str, Any] | None):
    """Send the chosen export to the browser; a failure is a notification."""
    if not ctx.triggered_id:
        raise PreventUpdate
    try:
        return export_file(ctx.triggered_id, result, key), no_update
    except Exception as exc:  # noqa: BLE001 - an export that fails is reported, the page stays
        return no_update, error("Export failed", exc)
