"""What every metric shares: input coercion, the NaN policy, the standard-deviation convention and
the Numba signatures that accept arrays as they come zero-copy from Arrow.

The contract of a public metric function ``f(x, fs, **params) -> float``:

- ``x`` is anything ``np.asarray`` takes (list, float32, float64, read-only buffer); it is coerced
  once by :func:`as_signal` to a C-contiguous float64 array (no copy when it already is one, so a
  read-only Arrow buffer stays read-only and the kernels are compiled for that type too).
- Parameter mistakes (``fs <= 0``, ``emb_dim=0``, a 2-D array) are the caller's bug and raise
  ``ValueError`` at once.
- A window on which the metric is *undefined* (too short, constant, non-finite samples, no
  neighbours found, a degenerate fit) raises ``Undefined(kind, detail)`` inside, ``kind`` one of
  :data:`UNDEFINED_KINDS`; the public function turns it into ``nan``.
  :func:`pipeline.metrics.measure` keeps the :class:`Reason`. Never ``inf``.

Standard deviation: everywhere the population standard deviation (``ddof=0``), the convention of
the window store's z-score, nolds and antropy; a tolerance "r = 0.2 sd" is ``0.2 * x.std()``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np
from numba import float64, int64, njit, types

#: Numba array types for 1-D float64 input, writeable and read-only (Arrow buffers are read-only).
F8 = float64[::1]
F8_RO = types.Array(float64, 1, "C", readonly=True)


def signatures(template: Callable[[types.Type], object]) -> list:
    """The signature ``template(array_type)`` for both writeable and read-only float64 arrays, for
    ``@njit(signatures(lambda a: float64(a, int64)), cache=True)``."""
    return [template(F8), template(F8_RO)]


#: Why a metric can be undefined on a window: the ``kind`` of every :class:`Undefined` and
#: :class:`Reason` (``docs/metrics.md`` lists them with the metrics that raise each).
UndefinedKind = Literal[
    "too_short",            # fewer samples than the metric (with its parameters) needs, also after downsampling
    "non_finite",           # a NaN or infinite sample
    "constant",             # a constant window (or one that thinning makes constant)
    "oversampled",          # the 0-1 test: thinning to ~10 samples per period leaves too few samples
    "no_power",             # no spectral power outside DC
    "no_template_matches",  # sample entropy: no pair of templates within the tolerance
    "no_scaling_region",    # the correlation sum has fewer than 2 radii in its fit range
    "degenerate_fit",       # a fit (log-log slope, correlation) has fewer than 2 usable points or a flat axis
    "zero_denominator",     # the estimator's formula divides by zero (Katz, SVD entropy)
    "non_finite_result",    # the estimator returned nan or inf without naming a reason
    "reference_error",      # the reference engine: nolds or antropy raised on the window
    "intervention",         # an intervention row (a dose, a forcing, a condition): an input, not dynamics
]
#: The values of :data:`UndefinedKind`, in that order.
UNDEFINED_KINDS: tuple[str, ...] = get_args(UndefinedKind)


@dataclass(frozen=True)
class Reason:
    """Why one metric is undefined on one window: a ``kind`` from :data:`UNDEFINED_KINDS` and the
    human ``detail`` (``"too short (9 < 16 samples)"``). A row of ``metrics_undefined`` holds one
    ``{metric, kind, detail}`` per undefined metric."""

    kind: UndefinedKind
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in UNDEFINED_KINDS:
            raise ValueError(f"unknown undefined kind {self.kind!r} (valid: {', '.join(UNDEFINED_KINDS)})")


class Undefined(Exception):
    """The metric has no value on this window: ``Undefined(kind, detail)`` with ``kind`` from
    :data:`UNDEFINED_KINDS`; ``str(exc)`` is the detail, :attr:`reason` both as a :class:`Reason`."""

    def __init__(self, kind: UndefinedKind, detail: str):
        self.reason = Reason(kind, detail)
        super().__init__(detail)

    @property
    def kind(self) -> str:
        return self.reason.kind

    @property
    def detail(self) -> str:
        return self.reason.detail

    def __reduce__(self):  # pickled with both arguments (the default passes only ``args``)
        return type(self), (self.reason.kind, self.reason.detail)


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
        raise Undefined("too_short", f"too short ({x.size} < {max(1, min_length)} samples)")
    problem = _screen(x)
    if problem == 1:
        raise Undefined("non_finite", "non-finite samples")
    if problem == 2 and not allow_constant:
        raise Undefined("constant", "constant signal")


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


@njit(cache=True, nogil=True)
def lstsq_slope(u, v, count):
    r"""Least-squares slope of ``v`` on ``u`` over their first ``count`` entries (``nan`` if fewer than 2
    or ``u`` is constant):

    .. math:: \hat\beta = \frac{\sum_i (u_i - \bar u)(v_i - \bar v)}{\sum_i (u_i - \bar u)^2}

    The one line fit of every log-log metric (Higuchi, Hurst R/S, DFA, Lyapunov divergence, correlation
    sum), summed in index order so every caller gets the same bits."""
    if count < 2:
        return np.nan
    u_mean, v_mean = 0.0, 0.0
    for i in range(count):
        u_mean += u[i]
        v_mean += v[i]
    u_mean /= count
    v_mean /= count
    suv, suu = 0.0, 0.0
    for i in range(count):
        suv += (u[i] - u_mean) * (v[i] - v_mean)
        suu += (u[i] - u_mean) ** 2
    return suv / suu if suu > 0.0 else np.nan
