"""Chaos and complexity metrics of one window: public NumPy functions over private Numba kernels.

Every function is ``f(x, fs, **params) -> float``; an undefined value is ``nan`` (see
:mod:`pipeline.metrics._common` for the contract and :func:`measure` for the reasons: a
:class:`Reason` per undefined metric, its ``kind`` one of :data:`UNDEFINED_KINDS`).
``docs/metrics.md`` says what each metric tells about a signal's dynamics.
"""

from nw2.pipeline.metrics._common import UNDEFINED_KINDS, Reason, Undefined, UndefinedKind
from nw2.pipeline.metrics.chaos01 import chaos_01
from nw2.pipeline.metrics.dynamics import correlation_dimension, largest_lyapunov, lyapunov_and_dimension
from nw2.pipeline.metrics.entropy import (lempel_ziv, permutation_entropy, sample_entropy, spectral_entropy,
                                      svd_entropy)
from nw2.pipeline.metrics.fractal import higuchi_fd, katz_fd, petrosian_fd
from nw2.pipeline.metrics.scaling import dfa, hurst_rs
from nw2.pipeline.metrics.suite import METRICS, Measurement, compute_all, measure

__all__ = ["METRICS", "UNDEFINED_KINDS", "Measurement", "Reason", "Undefined", "UndefinedKind", "chaos_01",
           "compute_all", "correlation_dimension", "dfa", "higuchi_fd", "hurst_rs", "katz_fd", "largest_lyapunov",
           "lempel_ziv", "lyapunov_and_dimension", "measure", "permutation_entropy", "petrosian_fd", "sample_entropy",
           "spectral_entropy", "svd_entropy"]
