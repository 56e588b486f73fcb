"""The outcome of a calibration: parameters with standard errors, fit statistics, per-quote residuals.

:class:`CalibrationResult` is frozen and round-trips through plain JSON (``to_dict``/``from_dict``: lists, floats,
strings; NaN becomes ``None``) for ``dcc.Store`` and the CLI's ``--json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from calibration.models.base import FloatArray
from calibration.surface import FittedSurface

#: Columns of the per-quote residual table (:attr:`CalibrationResult.residuals`).
RESIDUAL_COLUMNS: tuple[str, ...] = (
    "expiry", "ttm", "strike", "option_type", "k", "vol_bid", "vol_mid", "vol_ask", "model_vol",
    "residual_vol_points", "residual_price", "inside_spread", "weight",
)


def _default_arbitrage() -> dict[str, Any]:
    return {"butterfly_violations": None, "calendar_violations": None}


def to_json_value(value: Any) -> Any:
    """A plain-JSON version of ``value``: numpy scalars/arrays to floats/lists, NaN and infinities to ``None``."""
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        return _finite_or_none(value.tolist())
    if isinstance(value, (list, tuple)):
        if all(type(v) is float for v in value):  # the common case (per-quote columns): no recursion
            return _finite_or_none(value)
        return [to_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json_value(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def _finite_or_none(values: Any) -> list[Any]:
    """Python floats (nested lists of them, as ``ndarray.tolist`` gives) with NaN and infinities as ``None``."""
    return [_finite_or_none(v) if isinstance(v, list) else (v if math.isfinite(v) else None) for v in values]


def _from_json_floats(value: Any) -> Any:
    """Inverse of :func:`to_json_value` for numeric content: ``None`` back to NaN (recursively)."""
    if value is None:
        return float("nan")
    if isinstance(value, list):
        return [_from_json_floats(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _from_json_floats(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class CalibrationResult:
    """A calibrated (or evaluated) model with its statistics.

    Attributes
    ----------
    model
        Model registry key ("heston").
    kind
        "slice" (one parameter row per expiry) or "surface".
    optimizer
        Optimizer registry key ("lm"), or "none" for :func:`calibration.calibrate.evaluate`.
    settings
        ``CalibrationSettings.to_dict()`` of the run.
    param_names
        Parameter names, in the order of the model's ``params``.
    params
        Name -> value (surface models) or name -> list of values, one per row of :attr:`expiry_ttm` (slice models).
    std_errors
        Same layout as ``params``: Laplace-approximation standard errors, ``sqrt(diag(s^2 (J^T J)^-1))`` with
        ``J`` the Jacobian of the weighted residuals (and regularisation rows) at the optimum and ``s^2 =
        RSS/(n - p)`` (per slice for slice models); NaN when ``n <= p`` or not computed.
    correlation
        Parameter correlation matrix ``(p, p)`` as nested lists; slice models: one matrix per expiry.
    expiries
        ISO-8601 expiry per fitted expiry (slice models: per parameter row; surface models: the expiries of the
        fitted quotes); ``None`` where unknown (quotes given as arrays).
    expiry_ttm, expiry_forward
        Time to expiry (years, at the snapshot time) and forward (quote currency) of each of :attr:`expiries`.
    asof
        Snapshot time, ISO-8601 UTC, or ``None``.
    rmse_vol_points
        Root-mean-square of model vol minus market mid vol over the fitted quotes, vol points (unweighted).
    rmse_price
        Root-mean-square of model price minus market mid price, quote currency (unweighted).
    max_error_vol_points
        Largest absolute vol error against the mid, vol points.
    inside_spread_share
        Share of the fitted quotes whose model price lies within the market bid-ask (vols where no prices).
    residuals
        Per-quote table, column -> list (:data:`RESIDUAL_COLUMNS`; vols as decimals, residuals in vol points and
        quote currency against the mid).
    n_quotes
        Quotes fitted.
    n_dropped
        Quotes dropped by the snapshot's cleaning (``snapshot.drops``).
    n_excluded
        Quotes kept by cleaning but not fitted: no market data for the residual space, or an expiry with fewer
        quotes than parameters (slice models).
    nfev
        Residual evaluations (all expiries, starts, global search and polish).
    elapsed_s
        Wall-clock seconds of the whole calibration.
    success, message
        Convergence flag and the reason the optimizer stopped ("cancelled" when stopped by the user).
    feller_margin
        Heston/Bates: ``2 kappa theta - sigma^2`` (>= 0: the Feller condition holds); ``None`` otherwise.
    arbitrage
        Static-arbitrage report, filled in by the diagnostics (``None`` values until then).
    snapshot_hash
        Content hash of the snapshot (or of the quote arrays) fitted.
    notes
        Remarks a user should see (singular Jacobian, excluded expiries...).
    model_fields
        The constructor fields of the model fitted (its options, and SSVI's expiry grid), JSON: ``get_model(model,
        model_fields)`` rebuilds it.
    """

    model: str
    kind: str
    optimizer: str
    settings: dict[str, Any]
    param_names: tuple[str, ...]
    params: dict[str, Any]
    std_errors: dict[str, Any]
    correlation: list[Any]
    expiries: tuple[str | None, ...]
    expiry_ttm: tuple[float, ...]
    expiry_forward: tuple[float, ...]
    asof: str | None
    rmse_vol_points: float
    rmse_price: float
    max_error_vol_points: float
    inside_spread_share: float
    residuals: dict[str, list[Any]]
    n_quotes: int
    n_dropped: int
    n_excluded: int
    nfev: int
    elapsed_s: float
    success: bool
    message: str
    feller_margin: float | None = None
    arbitrage: dict[str, Any] = field(default_factory=_default_arbitrage)
    snapshot_hash: str = ""
    notes: tuple[str, ...] = ()
    model_fields: dict[str, Any] = field(default_factory=dict)

    # -- arrays ---------------------------------------------------------------------------------------------------

    @property
    def param_array(self) -> FloatArray:
        """Parameters as an array: ``(p,)`` for surface models, ``(m, p)`` for slice models."""
        return self._array(self.params)

    @property
    def std_error_array(self) -> FloatArray:
        """Standard errors, shaped like :attr:`param_array`."""
        return self._array(self.std_errors)

    def _array(self, values: Mapping[str, Any]) -> FloatArray:
        columns = [np.asarray(values[name], dtype=float) for name in self.param_names]
        if self.kind == "slice":
            return np.stack(columns, axis=-1).reshape(len(self.expiry_ttm), len(self.param_names))
        return np.array(columns, dtype=float)

    def fitted_surface(self) -> FittedSurface:
        """The fitted model as a :class:`calibration.surface.FittedSurface` (evaluation anywhere)."""
        from calibration.models import get_model

        model = get_model(self.model, self.model_options())
        slice_model = self.kind == "slice"
        return FittedSurface(
            model=model,
            params=self.param_array,
            expiry_ttm=np.asarray(self.expiry_ttm if slice_model else (), dtype=float),
            expiry_forward=np.asarray(self.expiry_forward if slice_model else (), dtype=float),
        )

    def model_options(self) -> dict[str, Any]:
        """Keyword fields that rebuild the fitted model with :func:`calibration.models.get_model` (lists as tuples)."""
        fields_ = self.model_fields or self.settings.get("model_options") or {}
        return {k: tuple(v) if isinstance(v, list) else v for k, v in fields_.items()}

    def residual_frame(self) -> pd.DataFrame:
        """The per-quote residual table as a frame (columns :data:`RESIDUAL_COLUMNS`)."""
        frame = pd.DataFrame({c: self.residuals.get(c, []) for c in RESIDUAL_COLUMNS})
        for column in RESIDUAL_COLUMNS:
            if column not in ("expiry", "option_type", "inside_spread"):
                frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        return frame

    # -- JSON -----------------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists, floats, strings, ``None`` for NaN)."""
        return {f.name: to_json_value(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CalibrationResult":
        """Inverse of :meth:`to_dict` (``None`` numbers back to NaN)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("params", "std_errors", "correlation", "expiry_ttm", "expiry_forward"):
            values[name] = _from_json_floats(values[name])
        for name in ("rmse_vol_points", "rmse_price", "max_error_vol_points", "inside_spread_share", "elapsed_s"):
            values[name] = float("nan") if values[name] is None else float(values[name])
        residuals = dict(values["residuals"])
        for column, items in residuals.items():
            if column not in ("expiry", "option_type", "inside_spread"):
                residuals[column] = _from_json_floats(list(items))
        values["residuals"] = residuals
        for name in ("param_names", "expiries", "expiry_ttm", "expiry_forward", "notes"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)

    def to_json(self, path: str | Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path``; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, allow_nan=False))
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> "CalibrationResult":
        """Read a result written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text()))
