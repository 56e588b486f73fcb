"""Smilescope's numerical core: snapshots, implied vols, models, calibration (never imports dash or plotly).

The calibration API is imported eagerly: ``calibration.calibrate`` is both a module and the function exported
here, and only an import in this file makes the package attribute the function.
"""

from calibration.calibrate import CalibrationSettings, calibrate, evaluate
from calibration.optimizers import CalibrationCancelled, ProgressInfo
from calibration.result import CalibrationResult
from calibration.snapshot import load_snapshot

__all__ = [
    "CalibrationCancelled",
    "CalibrationResult",
    "CalibrationSettings",
    "ProgressInfo",
    "calibrate",
    "evaluate",
    "load_snapshot",
]
