"""Volatility models (stateless: parameters are arrays passed in), and the registry that builds them by name.

Every model class lives in its own module and is imported lazily, so that using one model does not import the
others (the Fourier models pull in more code). Options such as SABR's fixed ``beta`` or Heston's Feller
enforcement are dataclass fields of the model class; :func:`get_model` passes them as keywords.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

from calibration.errors import CalibrationError
from calibration.models.base import Model

#: Registry keys, in the order the UI lists them.
MODEL_NAMES: tuple[str, ...] = ("black", "svi", "ssvi", "sabr", "heston", "merton", "bates")

#: Registry key -> (module, class name).
_CLASSES: dict[str, tuple[str, str]] = {
    "black": ("calibration.models.black_flat", "FlatBlack"),
    "svi": ("calibration.models.svi", "SVI"),
    "ssvi": ("calibration.models.ssvi", "SSVI"),
    "sabr": ("calibration.models.sabr", "SABR"),
    "heston": ("calibration.models.heston", "Heston"),
    "merton": ("calibration.models.merton", "Merton"),
    "bates": ("calibration.models.bates", "Bates"),
}


def model_class(name: str) -> type:
    """The class registered under ``name``.

    Raises
    ------
    CalibrationError
        When ``name`` is not a registered model, or its module is not available.
    """
    if name not in _CLASSES:
        raise CalibrationError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
    module_name, class_name = _CLASSES[name]
    try:
        module = importlib.import_module(module_name)
        return getattr(module, class_name)
    except (ImportError, AttributeError) as exc:
        raise CalibrationError(f"model {name!r} is not available in this installation ({exc})") from exc


def get_model(name: str, options: Mapping[str, Any] | None = None) -> Model:
    """Build the model registered under ``name`` with the given options.

    Parameters
    ----------
    name
        A key of :data:`MODEL_NAMES`.
    options
        Keyword fields of the model class (JSON-able values), e.g. ``{"beta": 0.5}`` for SABR; defaults when
        omitted.

    Raises
    ------
    CalibrationError
        Unknown model, unknown option name, or an option value the model rejects.
    """
    cls = model_class(name)
    options = dict(options or {})
    known = {f.name for f in dataclasses.fields(cls) if f.init} if dataclasses.is_dataclass(cls) else set()
    unknown = sorted(set(options) - known)
    if unknown:
        allowed = ", ".join(sorted(known)) or "none"
        raise CalibrationError(f"model {name!r} has no option {', '.join(map(repr, unknown))} (options: {allowed})")
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"model {name!r}: bad options {options}: {exc}") from exc
