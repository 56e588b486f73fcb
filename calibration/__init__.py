"""Smilescope's numerical core: snapshots, implied vols, models, calibration (never imports dash or plotly).

The calibration API is imported eagerly: ``calibration.calibrate`` is both a module and the function exported
here, and only an import in this file makes the package attribute the function.
"""

import os

# The pricing engines multiply many small matrices: threaded BLAS only adds overhead there (30-50x slower under
# load, measured). Takes effect when numpy is not imported yet (the CLI, the app and worker processes).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from calibration.calibrate import CalibrationSettings, calibrate, evaluate  # noqa: E402
from calibration.optimizers import CalibrationCancelled, ProgressInfo  # noqa: E402
from calibration.result import CalibrationResult  # noqa: E402
from calibration.snapshot import load_snapshot  # noqa: E402

__all__ = [
    "CalibrationCancelled",
    "CalibrationResult",
    "CalibrationSettings",
    "ProgressInfo",
    "calibrate",
    "evaluate",
    "load_snapshot",
]
