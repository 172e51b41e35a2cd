"""The reference engine: the same metrics, with the same parameters, computed by nolds and antropy.

``nw2 metrics --engine reference`` fills the store's metric columns from here, so any store can be
cross-checked against the packages the field uses. Parameters that nw2 resolves from the data (the
embedding, the radii of the correlation sum, the box sizes) are resolved by nw2 once and handed to
both engines, so the two differ only by the estimator's code. Where a reference package lacks a
metric (the 0-1 test) or a parameter (nolds' ``corr_dim`` has no Theiler window), this module says
so next to the function.

A reference package that raises gives ``nan`` with the reason kind ``reference_error`` (its error as
the detail), a non-finite number gives ``non_finite_result``; nw2's own checks are not applied first,
so the engines may disagree on degenerate windows. Only what nw2 resolves for both engines (the
embedding, the default radii) can fail with nw2's own kinds (``too_short``, ``no_scaling_region``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import numpy as np

from nw2.pipeline.metrics._common import Reason, Undefined, as_signal, check_fs
from nw2.pipeline.metrics.suite import Measurement, check_selection, resolved_params


def _nolds():
    with warnings.catch_warnings():  # nolds 0.6.2 imports pkg_resources, which warns on import
        warnings.simplefilter("ignore")
        import nolds
    return nolds


def _antropy():
    import antropy

    return antropy


def _embedding(x, fs, emb_dim, lag, min_tsep):
    from nw2.pipeline.metrics.embedding import resolve_embedding

    return resolve_embedding(x, fs, emb_dim, lag, min_tsep)


def largest_lyapunov(x, fs, emb_dim=None, lag=None, min_tsep=None, trajectory_len=None):
    """nolds ``lyap_r`` (Rosenstein) with nw2's embedding; per step times ``fs``.

    An explicit ``trajectory_len``: nolds' own least-squares fit over all its steps. The default:
    nolds' divergence curve (``debug_data=True``) followed as far as nw2's
    :func:`~pipeline.metrics.dynamics.divergence_plan`, on the same steps, fitted by nw2's
    :func:`~pipeline.metrics.dynamics.divergence_fit` (the fit-region rule), so the engines differ
    only by the curve's code."""
    from nw2.pipeline.metrics.dynamics import divergence_fit, divergence_plan

    emb = _embedding(x, fs, emb_dim, lag, min_tsep)
    params = dict(emb_dim=emb.emb_dim, lag=emb.lag, min_tsep=emb.min_tsep, fit="poly")
    if trajectory_len is not None:
        return _nolds().lyap_r(x, trajectory_len=trajectory_len, **params) * fs
    plan = divergence_plan(x, fs, emb, min_tsep)
    _, (ks, curve, _) = _nolds().lyap_r(x, trajectory_len=plan.reserve + 1, debug_data=True, **params)
    on_grid = np.asarray(ks) % plan.step == 0
    return divergence_fit(np.asarray(ks)[on_grid], np.asarray(curve)[on_grid], plan)[0] * fs


def correlation_dimension(x, fs, emb_dim=None, lag=None, min_tsep=None, rvals=None):
    """nolds ``corr_dim`` with nw2's embedding and radii, least-squares fit. nolds 0.6.2 has no
    Theiler window (it counts temporally close pairs too) and counts each vector as its own
    neighbour (its correlation sum is nw2's plus ``1/(M-1)``), so its slope is flatter than nw2's;
    ``tests/test_metrics_dynamics.py`` shows the two agree to 1e-9 once both are undone."""
    from nw2.pipeline.metrics.dynamics import default_rvals

    emb = _embedding(x, fs, emb_dim, lag, min_tsep)
    radii = np.asarray(rvals, float) if rvals is not None else default_rvals(x, fs, emb)
    return _nolds().corr_dim(x, emb_dim=emb.emb_dim, lag=emb.lag, rvals=radii, fit="poly")


def sample_entropy(x, fs, order=2, r=0.2):
    """antropy ``sample_entropy`` with the tolerance ``r`` times the population sd."""
    return _antropy().sample_entropy(x, order=order, tolerance=r * np.std(x))


def permutation_entropy(x, fs, order=3, delay=1, normalize=True):
    return _antropy().perm_entropy(x, order=order, delay=delay, normalize=normalize)


def spectral_entropy(x, fs, method="fft", nperseg=None, normalize=True):
    return _antropy().spectral_entropy(x, sf=fs, method=method, nperseg=nperseg, normalize=normalize)


def svd_entropy(x, fs, order=3, delay=1, normalize=True):
    return _antropy().svd_entropy(x, order=order, delay=delay, normalize=normalize)


def lempel_ziv(x, fs, normalize=True):
    """antropy ``lziv_complexity`` of the sequence binarized at its median."""
    return _antropy().lziv_complexity((x > np.median(x)).astype(np.int64), normalize=normalize)


def hurst_rs(x, fs, nvals=None, fit="poly", corrected=True, unbiased=True):
    return _nolds().hurst_rs(x, nvals=nvals, fit=fit, corrected=corrected, unbiased=unbiased)


def dfa(x, fs, nvals=None, overlap=True, order=1, fit_exp="poly"):
    return _nolds().dfa(x, nvals=nvals, overlap=overlap, order=order, fit_exp=fit_exp)


def higuchi_fd(x, fs, kmax=10):
    return _antropy().higuchi_fd(x, kmax=kmax)


def katz_fd(x, fs):
    return _antropy().katz_fd(x)


def petrosian_fd(x, fs):
    return _antropy().petrosian_fd(x)


def chaos_01(x, fs, **params):
    """No reference package implements the 0-1 test: a plain-NumPy implementation of the same
    formula (:func:`pipeline.metrics.chaos01.chaos_01_numpy`) stands in."""
    from nw2.pipeline.metrics.chaos01 import chaos_01_numpy

    return chaos_01_numpy(x, fs, **params)


REFERENCE: dict[str, Callable[..., float]] = {f.__name__: f for f in (
    largest_lyapunov, correlation_dimension, sample_entropy, permutation_entropy, spectral_entropy,
    svd_entropy, lempel_ziv, hurst_rs, dfa, higuchi_fd, katz_fd, petrosian_fd, chaos_01)}


def measure(x, fs: float, metrics: Iterable[str] | None = None, params: dict | None = None) -> Measurement:
    """Like :func:`pipeline.metrics.suite.measure`, with the reference packages."""
    names = check_selection(metrics, params, "reference")
    x, fs = as_signal(x), check_fs(fs)
    out = Measurement()
    for name, p in resolved_params(names, params).items():
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                out.set(name, float(REFERENCE[name](x, fs, **p)))
        except Undefined as why:  # what nw2 resolves for both engines (embedding, radii) failed
            out.set(name, None, why.reason)
        except Exception as err:  # the reference package's own failure on this window
            out.set(name, None, Reason("reference_error", f"reference {type(err).__name__}: {str(err).strip()[:80]}"))
    return out
