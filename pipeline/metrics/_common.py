"""What every metric shares: input coercion, the NaN policy, the standard-deviation convention and
the Numba signatures that accept arrays as they come zero-copy from Arrow.

The contract of a public metric function ``f(x, fs, **params) -> float``:

- ``x`` is anything ``np.asarray`` takes (list, float32, float64, read-only buffer); it is coerced
  once by :func:`as_signal` to a C-contiguous float64 array (no copy when it already is one, so a
  read-only Arrow buffer stays read-only and the kernels are compiled for that type too).
- Parameter mistakes (``fs <= 0``, ``emb_dim=0``, a 2-D array) are the caller's bug and raise
  ``ValueError`` at once.
- A window on which the metric is *undefined* (too short, constant, non-finite samples, no
  neighbours found, a degenerate fit) raises :class:`Undefined` inside; the public function turns
  it into ``nan``. :func:`pipeline.metrics.compute_all` keeps the reason. Never ``inf``.

Standard deviation: everywhere the population standard deviation (``ddof=0``), the convention of
the window store's z-score, nolds and antropy; a tolerance "r = 0.2 sd" is ``0.2 * x.std()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numba import float64, int64, njit, types

#: Numba array types for 1-D float64 input, writeable and read-only (Arrow buffers are read-only).
F8 = float64[::1]
F8_RO = types.Array(float64, 1, "C", readonly=True)


def signatures(template: Callable[[types.Type], object]) -> list:
    """The signature ``template(array_type)`` for both writeable and read-only float64 arrays, for
    ``@njit(signatures(lambda a: float64(a, int64)), cache=True)``."""
    return [template(F8), template(F8_RO)]


class Undefined(Exception):
    """The metric has no value on this window; the message is the short reason stored per row."""


def as_signal(x, name: str = "x") -> np.ndarray:
    """``x`` as a 1-D C-contiguous float64 array; a copy only when the dtype or layout requires it."""
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def check_fs(fs) -> float:
    fs = float(fs)
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"fs must be a positive sampling rate in Hz, got {fs}")
    return fs


@njit(signatures(lambda a: int64(a)), cache=True, nogil=True)
def _screen(x):
    """0 for a usable window, 1 for a non-finite sample, 2 for a constant one: one pass, where
    ``np.isfinite(x).all()`` and ``np.ptp(x)`` take two and cost more than the cheaper metrics."""
    lo = hi = x[0]
    for v in x:
        if not np.isfinite(v):
            return 1
        if v < lo:
            lo = v
        elif v > hi:
            hi = v
    return 2 if lo == hi else 0


def require(x: np.ndarray, min_length: int, allow_constant: bool = False) -> None:
    """Raise :class:`Undefined` when ``x`` is too short, has non-finite samples, or is constant."""
    if x.size < max(1, min_length):
        raise Undefined(f"too short ({x.size} < {max(1, min_length)} samples)")
    problem = _screen(x)
    if problem == 1:
        raise Undefined("non-finite samples")
    if problem == 2 and not allow_constant:
        raise Undefined("constant signal")


def positive_int(value, name: str, minimum: int = 1) -> int:
    if value is None or int(value) != value or int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def nan_if_undefined(fn: Callable[..., float]) -> Callable[..., float]:
    """Public wrapper: :class:`Undefined` becomes ``nan``, anything non-finite becomes ``nan``.
    The raising version stays reachable as ``fn.strict`` for callers that want the reason."""

    @functools.wraps(fn)
    def public(*args, **kwargs) -> float:
        try:
            value = fn(*args, **kwargs)
        except Undefined:
            return float("nan")
        return float(value) if np.isfinite(value) else float("nan")

    public.strict = fn  # type: ignore[attr-defined]
    return public
