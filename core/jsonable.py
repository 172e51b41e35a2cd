"""Plain JSON values from numpy-laden results: one rule for every JSON file nw2 writes with figures."""

from __future__ import annotations

import math

import numpy as np


def jsonable(obj, digits: int = 6):
    """``obj`` with numpy scalars made Python ones, floats rounded to ``digits`` significant digits and
    non-finite floats made ``None`` (JSON has no NaN), tuples made lists, keys made strings; recursively."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, digits) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return float(f"{v:.{digits}g}") if math.isfinite(v) else None
    return obj
