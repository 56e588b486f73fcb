"""``to_json_value``: every numeric container to plain JSON, non-finite numbers as ``None``, nothing else changed."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from calibration.result import to_json_value

FLOATS = st.floats(allow_nan=True, allow_infinity=True)


def _expected(value):
    """A slow, obviously right reference: element by element."""
    if isinstance(value, dict):
        return {str(k): _expected(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_expected(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


@given(st.lists(FLOATS, max_size=30))
def test_lists_of_floats_map_non_finite_to_none(values):
    out = to_json_value(values)
    assert out == _expected(values)
    assert json.loads(json.dumps(out, allow_nan=False)) == out


@given(st.lists(st.lists(FLOATS, min_size=3, max_size=3), min_size=1, max_size=5))
def test_float_arrays_of_any_shape(rows):
    array = np.array(rows, dtype=float)
    assert to_json_value(array) == _expected(array)
    with np.errstate(over="ignore"):  # large doubles become float32 infinities: None as well
        single = array.astype(np.float32)
    assert to_json_value(single) == _expected(single)


def test_mixed_containers_keep_types():
    value = {"a": [1.0, float("inf"), np.float64("nan"), 2], "b": (np.int64(3), True, None, "x"),
             "c": np.array([1, 2]), "d": np.array([True, False]), "e": [[1.0, float("nan")], [2.0]], 4: np.float32(1.5)}
    out = to_json_value(value)
    assert out == {"a": [1.0, None, None, 2], "b": [3, True, None, "x"], "c": [1, 2], "d": [True, False],
                   "e": [[1.0, None], [2.0]], "4": 1.5}
    assert type(out["b"][0]) is int and type(out["d"][0]) is bool
