"""Plain Python values from NumPy and pandas ones, for files that must read back as they were written.

`plain` is for YAML and comparisons (run keys): NumPy scalars by `.item()`, arrays and
tuples as lists, DataFrames as {column: list}. `jsonable` also turns NaN and infinity into
None and keys into strings, as JSON needs.
"""

from __future__ import annotations

import math

import numpy as np


def plain(x):
    """Python values for NumPy and pandas ones, recursively."""
    if hasattr(x, "to_dict") and hasattr(x, "columns"):   # a DataFrame, its index as a column
        return plain(x.reset_index().to_dict(orient="list"))
    if isinstance(x, dict):
        return {plain(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return plain(x.tolist())
    if isinstance(x, np.generic):
        return x.item()
    return x


def jsonable(x):
    """`plain`, with NaN and infinity as None and keys as strings."""
    x = plain(x)
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x
