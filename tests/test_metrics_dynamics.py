"""Largest Lyapunov exponent (Rosenstein), correlation dimension (Grassberger-Procaccia) and the
automatic delay-embedding parameters: against theory, against nolds, the NaN policy, dtypes,
determinism and invariances."""

from __future__ import annotations

import math
import tracemalloc
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nw2.pipeline.metrics import systems
from nw2.pipeline.metrics._common import Undefined
from nw2.pipeline.metrics import reference
from nw2.pipeline.metrics.dynamics import (GRID_INTERVALS, HORIZON_PERIODS, correlation_dimension, default_rvals,
                                       default_trajectory_len, divergence_plan, largest_lyapunov,
                                       lyapunov_and_dimension, radius_grid)
from nw2.pipeline.metrics.embedding import (DEFAULT_EMB_DIM, MIN_VECTORS, Embedding, autocorrelation,
                                        autocorrelation_lag, mean_period, mutual_information,
                                        mutual_information_lag, resolve_embedding)

with warnings.catch_warnings():  # nolds 0.6.2 imports pkg_resources, which warns
    warnings.simplefilter("ignore")
    import nolds

#: Agreement with nolds at the same parameters (``fit="poly"``). Same algorithms, so the only
#: difference is floating-point summation order (numpy's pairwise sums against a running sum):
#: measured agreement is 1e-14 relative; 1e-9 leaves room without hiding a wrong neighbour, a
#: wrong Theiler boundary or a wrong radius count, each of which moves the value by far more.
REFERENCE_TOLERANCE = {
    "largest_lyapunov": {"rtol": 1e-9, "atol": 1e-9},
    "correlation_dimension": {"rtol": 1e-9, "atol": 1e-9},
}

#: Agreement with theory on a few thousand points, absolute, with the measured value in brackets.
THEORY_TOLERANCE = {
    # exact mean of log|f'| = ln 2 on the invariant measure; before saturation (about 12 steps
    # from 3000 points) Rosenstein's curve is a straight line [0.6942]
    "logistic_lyapunov": 0.01,
    # the fit from k=0 includes the first step, where the separation is still turning into the
    # unstable direction (local slope 0.36): biased low by a few percent [0.405]
    "henon_lyapunov": 0.03,
    # flows: the divergence curve has an initial transient whose weight in the fit depends on
    # trajectory_len and the embedding window; at an embedding window near the mean period the
    # fit over 0.3 time units lies within about 10% of 0.906 [0.94]
    "lorenz_lyapunov": 0.14,
    # 1.21 +- 0.01 is the long-series value; 3000 points and a 20-radius fit give +-0.03 [1.21]
    "henon_dimension": 0.05,
    # 2.05 +- 0.01 from long series; 4000 points, emb_dim=5 [2.04]
    "lorenz_dimension": 0.1,
    # a closed curve: the value is 1 up to the radius grid's resolution [1.00-1.05]
    "periodic_dimension": 0.07,
    # a periodic orbit neither diverges nor converges; 1/s at fs=100 [< 1e-3]
    "periodic_lyapunov": 0.01,
}

FS = 100.0


@pytest.fixture(scope="module")
def lorenz():
    return systems.lorenz(4000)


@pytest.fixture(scope="module")
def periodic():
    """A tone whose period (70.7 samples) is irrational in samples, so no two vectors coincide:
    with an integer period the vectors repeat exactly and rounding noise decides the neighbours."""
    return systems.sine(2000, fs=FS, freq=math.sqrt(2))


# --- theory -----------------------------------------------------------------------------------

def test_lyapunov_logistic_map_is_ln2():
    x = systems.logistic(3000)
    value = largest_lyapunov(x, 1.0, emb_dim=2, lag=1, min_tsep=10, trajectory_len=6)
    assert value == pytest.approx(math.log(2), abs=THEORY_TOLERANCE["logistic_lyapunov"])


def test_lyapunov_henon_map():
    x = systems.henon(3000)
    value = largest_lyapunov(x, 1.0, emb_dim=2, lag=1, min_tsep=10, trajectory_len=10)
    assert value == pytest.approx(0.4204, abs=THEORY_TOLERANCE["henon_lyapunov"])


def test_lyapunov_lorenz_per_time_unit(lorenz):
    # embedding window 9 * 16 = 144 samples, about the mean period (~150); fit over 0.3 time units
    params = dict(emb_dim=10, lag=16, min_tsep=150, trajectory_len=30)
    value = largest_lyapunov(lorenz, FS, **params)
    assert value == pytest.approx(0.9056, abs=THEORY_TOLERANCE["lorenz_lyapunov"])
    # the rate is per second: the same samples read at 1 Hz give the exponent per step
    assert largest_lyapunov(lorenz, 1.0, **params) * FS == pytest.approx(value, rel=1e-12)


def test_dimension_henon():
    x = systems.henon(3000)
    value = correlation_dimension(x, 1.0, emb_dim=2, lag=1, min_tsep=10,
                                  rvals=np.geomspace(0.02, 0.2, 20) * x.std())
    assert value == pytest.approx(1.21, abs=THEORY_TOLERANCE["henon_dimension"])


def test_dimension_lorenz(lorenz):
    value = correlation_dimension(lorenz, FS, emb_dim=5, lag=10, min_tsep=100,
                                  rvals=np.geomspace(0.05, 0.4, 20) * lorenz.std())
    assert value == pytest.approx(2.05, abs=THEORY_TOLERANCE["lorenz_dimension"])


def test_defaults_on_lorenz(lorenz):
    """What the defaults (emb_dim 10, autocorrelation lag ~30, C-range radii, the fit region chosen
    from the divergence curve) give: the dimension close to 2.05 [2.18]; the exponent within 20%
    of 0.906 [1.03] (the former fixed fit over 20 steps gave 1.73: those lie inside the initial
    transient). tests/test_lyapunov_accuracy.py checks the defaults on more systems."""
    lyap, dim = lyapunov_and_dimension(lorenz, FS)
    assert 1.9 < dim < 2.4
    assert lyap == pytest.approx(0.9056, rel=0.2)


def test_periodic_signal(periodic):
    for params in ({}, dict(emb_dim=3, lag=10, min_tsep=80)):
        lyap, dim = lyapunov_and_dimension(periodic, FS, **params)
        assert abs(lyap) < THEORY_TOLERANCE["periodic_lyapunov"], params
        assert dim == pytest.approx(1.0, abs=THEORY_TOLERANCE["periodic_dimension"]), params


def test_white_noise_dimension_grows_without_saturation(lorenz):
    noise = systems.white_noise(2000)
    dims = [correlation_dimension(noise, FS, emb_dim=m) for m in (2, 4, 6, 8)]
    assert dims[0] == pytest.approx(2.0, abs=0.15)  # noise fills the plane
    assert np.all(np.diff(dims) > 1.0), dims  # ... and every dimension offered [1.9, 1.6, 1.3]
    # a low-dimensional attractor saturates instead
    chaos = [correlation_dimension(lorenz, FS, emb_dim=m) for m in (6, 8)]
    assert abs(chaos[1] - chaos[0]) < 0.2, chaos


# --- against nolds ----------------------------------------------------------------------------

def _nolds_lyapunov(x, fs, emb, trajectory_len):
    return nolds.lyap_r(x, emb_dim=emb.emb_dim, lag=emb.lag, min_tsep=emb.min_tsep,
                        trajectory_len=trajectory_len, fit="poly") * fs


def _nolds_dimension(x, emb_dim, lag, rvals):
    """nolds ``corr_dim`` with its self-pair count removed. nolds 0.6.2 leaves the diagonal of its
    distance matrix at 0 and counts it (``dists <= r``), so its C(r) is ours (all pairs i != j,
    no Theiler window) plus 1/(M-1): a bias that flattens the slope (e.g. 1.78 instead of 2.27 on
    the ECG window). We undo it from its debug data and compare what is comparable."""
    _, (log_r, log_c, _) = nolds.corr_dim(x, emb_dim, lag=lag, rvals=rvals, fit="poly", debug_data=True)
    n_vectors = x.size - (emb_dim - 1) * lag
    return np.polyfit(log_r, np.log(np.exp(log_c) - 1.0 / (n_vectors - 1)), 1)[0]


def _check_against_nolds(x, fs, emb, trajectory_len, rvals):
    ours = largest_lyapunov(x, fs, emb.emb_dim, emb.lag, emb.min_tsep, trajectory_len)
    np.testing.assert_allclose(ours, _nolds_lyapunov(x, fs, emb, trajectory_len),
                               **REFERENCE_TOLERANCE["largest_lyapunov"])
    # nolds' corr_dim has no Theiler window: compare at min_tsep=0
    ours = correlation_dimension(x, fs, emb.emb_dim, emb.lag, 0, rvals)
    np.testing.assert_allclose(ours, _nolds_dimension(x, emb.emb_dim, emb.lag, rvals),
                               **REFERENCE_TOLERANCE["correlation_dimension"])


def test_real_windows_against_nolds(real_windows):
    for name, x, fs in real_windows:
        emb = resolve_embedding(x, fs)
        rvals = default_rvals(x, fs, Embedding(emb.emb_dim, emb.lag, 0))
        _check_against_nolds(x, fs, emb, default_trajectory_len(x.size, emb), rvals)


def test_default_fit_region_against_nolds(real_windows, lorenz):
    """At the default ``trajectory_len`` both engines fit their own curve (nw2's on the grid of
    :func:`divergence_plan`, nolds' ``debug_data`` curve on the same steps) by the same rule."""
    cases = [(name, x, fs) for name, x, fs in real_windows]
    cases += [("lorenz", lorenz, FS), ("logistic", systems.logistic(1024), 1.0), ("henon", systems.henon(4096), 1.0),
              ("white", systems.white_noise(1024), FS)]
    for name, x, fs in cases:
        for params in ({}, dict(emb_dim=4, min_tsep=0)):
            ours = largest_lyapunov(x, fs, **params)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = reference.largest_lyapunov(x, fs, **params)
            np.testing.assert_allclose(ours, theirs, err_msg=f"{name} {params}",
                                       **REFERENCE_TOLERANCE["largest_lyapunov"])


def test_default_plan_bounds(lorenz):
    """The default horizon: 8 mean periods, at most a quarter of the vectors, at most 65 steps."""
    for x, fs in ((lorenz, FS), (lorenz[:1024], FS), (systems.logistic(1024), 1.0), (systems.brown_noise(300), FS)):
        emb = resolve_embedding(x, fs)
        plan = divergence_plan(x, fs, emb)
        assert plan.period == math.ceil(mean_period(x, fs))
        assert 2 <= plan.n_points <= GRID_INTERVALS + 1
        assert plan.reserve <= max(1, min(HORIZON_PERIODS * plan.period, emb.n_vectors(x.size) // 4) - 1)
        assert plan.reserve >= min(HORIZON_PERIODS * plan.period, emb.n_vectors(x.size) // 4) - plan.step
        # the explicit min_tsep path computes the same period
        assert divergence_plan(x, fs, emb, min_tsep=emb.min_tsep).period == plan.period


@pytest.mark.parametrize("system, fs, emb, trajectory_len, radii", [
    ("lorenz", FS, Embedding(5, 11, 50), 20, (0.05, 0.5)),
    ("henon", 1.0, Embedding(3, 1, 10), 8, (0.02, 0.3)),
])
def test_synthetic_against_nolds(lorenz, system, fs, emb, trajectory_len, radii):
    x = lorenz[:2000] if system == "lorenz" else systems.henon(2000)
    _check_against_nolds(x, fs, emb, trajectory_len, np.geomspace(*radii, 25) * x.std())


def test_ties_and_radius_boundaries_against_nolds():
    """Integer samples make many exactly equal distances (the nearest neighbour among ties is the
    earliest, as argmin) and distances exactly on a radius (counted: C uses <= r)."""
    x = np.random.default_rng(3).integers(0, 4, 400).astype(np.float64)
    emb = Embedding(3, 2, 5)
    _check_against_nolds(x, 1.0, emb, 6, np.array([1.0, 2.0, 3.0]))


# --- the shared pass --------------------------------------------------------------------------

def test_shared_pass_equals_single_functions(lorenz):
    x = lorenz[:1500]
    assert tuple(lyapunov_and_dimension(x, FS)) == (largest_lyapunov(x, FS), correlation_dimension(x, FS))


@settings(max_examples=25, deadline=None)
@given(emb_dim=st.integers(1, 6), lag=st.integers(1, 12), min_tsep=st.integers(0, 60),
       trajectory_len=st.integers(2, 30), explicit_radii=st.booleans())
def test_shared_pass_equals_single_functions_any_parameters(lorenz, emb_dim, lag, min_tsep,
                                                            trajectory_len, explicit_radii):
    x = lorenz[:800]
    rvals = np.geomspace(0.1, 1.0, 12) * x.std() if explicit_radii else None
    pair = lyapunov_and_dimension(x, FS, emb_dim, lag, min_tsep, trajectory_len, rvals)
    single = (largest_lyapunov(x, FS, emb_dim, lag, min_tsep, trajectory_len),
              correlation_dimension(x, FS, emb_dim, lag, min_tsep, rvals))
    np.testing.assert_array_equal(pair, single)


def test_no_quadratic_memory():
    """The pairs are streamed: at n=8192 an n-by-n float64 matrix would be 512 MB."""
    x = systems.white_noise(8192)
    tracemalloc.start()
    try:
        lyapunov_and_dimension(x, FS)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 5e6, peak


# --- NaN policy, parameters, dtypes, determinism, invariance ----------------------------------

@pytest.mark.parametrize("x", [
    np.full(500, 3.0),                                          # constant
    systems.white_noise(30),                                    # too short for emb_dim=10
    np.where(np.arange(500) == 250, np.nan, systems.white_noise(500)),
    np.where(np.arange(500) == 7, np.inf, systems.white_noise(500)),
], ids=["constant", "short", "nan", "inf"])
def test_undefined_windows_give_nan(x):
    assert math.isnan(largest_lyapunov(x, FS))
    assert math.isnan(correlation_dimension(x, FS))
    with pytest.raises(Undefined):
        lyapunov_and_dimension(x, FS)


def test_one_failed_fit_keeps_the_other(lorenz):
    tiny = np.array([1e-9, 2e-9])  # no pair that close: no correlation sum to fit
    result = lyapunov_and_dimension(lorenz[:1000], FS, rvals=tiny)
    assert math.isfinite(result[0]) and math.isnan(result[1])
    assert "dimension" in result.reasons and "lyapunov" not in result.reasons
    assert result.reasons["dimension"].kind == "no_scaling_region"
    assert "fewer than 2 radii" in result.reasons["dimension"].detail
    assert math.isnan(correlation_dimension(lorenz[:1000], FS, rvals=tiny))


def test_too_short_for_explicit_parameters():
    x = systems.white_noise(200)
    with pytest.raises(Undefined, match="too short"):
        largest_lyapunov.strict(x, FS, emb_dim=10, lag=20)
    with pytest.raises(Undefined, match="too short"):
        correlation_dimension.strict(x, FS, emb_dim=2, lag=1, min_tsep=150)


@pytest.mark.parametrize("kwargs", [
    dict(fs=0.0), dict(fs=-1.0), dict(emb_dim=0), dict(lag=0), dict(lag=1.5), dict(min_tsep=-1),
    dict(trajectory_len=1), dict(rvals=[0.5, 0.1]), dict(rvals=[0.1]), dict(rvals=[0.0, 1.0]),
])
def test_bad_parameters_raise(kwargs):
    x = systems.white_noise(500)
    fs = kwargs.pop("fs", FS)
    with pytest.raises(ValueError):
        lyapunov_and_dimension(x, fs, **kwargs)
    with pytest.raises(ValueError):
        lyapunov_and_dimension(np.stack([x, x]), FS)


def test_dtypes_and_read_only(lorenz):
    x32 = lorenz[:1000].astype(np.float32)
    ints = np.round(lorenz[:1000] * 100).astype(np.int64)
    read_only = x32.astype(np.float64)
    read_only.setflags(write=False)
    for f in (largest_lyapunov, correlation_dimension):
        expected = f(x32.astype(np.float64), FS)
        assert f(x32, FS) == expected
        assert f(read_only, FS) == expected
        assert f(list(read_only), FS) == expected
        assert f(ints, FS) == f(ints.astype(np.float64), FS)


def test_deterministic(lorenz):
    x = lorenz[:1200]
    assert tuple(lyapunov_and_dimension(x, FS)) == tuple(lyapunov_and_dimension(x.copy(), FS))


@settings(max_examples=25, deadline=None)
@given(scale=st.floats(1e-3, 1e3), sign=st.sampled_from([-1.0, 1.0]), offset=st.floats(-1e3, 1e3))
def test_affine_invariance(lorenz, scale, sign, offset):
    """Distances scale by |a| (a constant shift of log d and log r); the automatic lag, Theiler
    window and radii (relative to the sd) do not change."""
    x = lorenz[:1200]
    base = lyapunov_and_dimension(x, FS)
    moved = lyapunov_and_dimension(sign * scale * x + offset, FS)
    np.testing.assert_allclose(moved, base, rtol=1e-6)


# --- embedding parameters ---------------------------------------------------------------------

def test_autocorrelation_matches_direct_sum():
    x = systems.pink_noise(300)
    c = x - x.mean()
    direct = np.array([np.dot(c[: c.size - k], c[k:]) for k in range(21)]) / np.dot(c, c)
    np.testing.assert_allclose(autocorrelation(x, 20), direct, atol=1e-12)


def test_autocorrelation_lag():
    # AR(1) with phi: r(k) = phi^k < 1/e first at k = ceil(-1 / ln phi) = 10 for phi = 0.9
    rng = np.random.default_rng(1)
    noise, ar = rng.standard_normal(20000), np.zeros(20000)
    for i in range(1, ar.size):
        ar[i] = 0.9 * ar[i - 1] + noise[i]
    assert autocorrelation_lag(ar) == 10
    # a tone: cos(2 pi f k / fs) < 1/e from k = fs acos(1/e) / (2 pi f) = 19.004, so first at k = 20
    # (the estimate over 40 whole periods: r(19) = 0.370 > 1/e = 0.368 > r(20) = 0.311)
    assert autocorrelation_lag(systems.sine(4000, fs=FS, freq=1.0)) == 20
    assert autocorrelation_lag(systems.white_noise(2000)) == 1
    # fallback: still correlated at max_lag
    assert autocorrelation_lag(systems.sine(2000, fs=FS, freq=0.05), max_lag=10) == 10
    with pytest.raises(Undefined):
        autocorrelation_lag(np.ones(100))


def test_mutual_information_matches_histogram2d():
    x = systems.henon(2000)
    edges = np.linspace(x.min(), x.max(), 17)
    for lag in (1, 3, 10):
        p, _, _ = np.histogram2d(x[:-lag], x[lag:], bins=[edges, edges])
        p /= p.sum()
        outer = np.outer(p.sum(1), p.sum(0))
        nz = p > 0
        assert mutual_information(x, lag, 16) == pytest.approx(np.sum(p[nz] * np.log(p[nz] / outer[nz])), rel=1e-12)


def test_mutual_information_lag(lorenz):
    # Lorenz x at dt = 0.01: a smooth MI curve with its first minimum near 0.17 time units
    assert 14 <= mutual_information_lag(lorenz) <= 20
    # the first local minimum, not the global one
    x = systems.lorenz(1500)
    mi = [mutual_information(x, k, 16) for k in range(1, 40)]
    k = mutual_information_lag(x)
    assert mi[k - 1] < mi[k - 2] and mi[k - 1] <= mi[k]
    assert all(not (mi[j] < mi[j - 1] and mi[j] <= mi[j + 1]) for j in range(1, k - 1))


def test_mean_period():
    assert mean_period(systems.sine(4000, fs=FS, freq=2.0), FS) == pytest.approx(50.0, rel=0.01)
    # white noise: mean frequency 1/4 cycle per sample
    assert mean_period(systems.white_noise(4000), FS) == pytest.approx(4.0, rel=0.05)
    # offset-free: a constant added changes nothing
    x = systems.pink_noise(1000)
    assert mean_period(x + 100.0, FS) == pytest.approx(mean_period(x, FS), rel=1e-9)


def test_resolve_embedding_defaults_and_explicit(lorenz):
    emb = resolve_embedding(lorenz, FS)
    assert emb == Embedding(DEFAULT_EMB_DIM, autocorrelation_lag(lorenz), math.ceil(mean_period(lorenz, FS)))
    assert resolve_embedding(lorenz, FS, lag_method="mutual_information").lag == mutual_information_lag(lorenz)
    assert resolve_embedding(lorenz, FS, emb_dim=3, lag=7, min_tsep=0) == Embedding(3, 7, 0)
    with pytest.raises(AttributeError):
        emb.lag = 3  # frozen


def test_resolve_embedding_caps_short_windows():
    x = systems.brown_noise(300)  # slow: autocorrelation and mean period far beyond the window
    assert autocorrelation_lag(x) * (DEFAULT_EMB_DIM - 1) > x.size // 2
    emb = resolve_embedding(x, FS)
    assert (emb.emb_dim - 1) * emb.lag <= x.size // 2
    assert emb.min_tsep == emb.n_vectors(x.size) // 4
    assert emb.n_vectors(x.size) - 2 * emb.min_tsep - 2 >= 0
    with pytest.raises(Undefined, match="too short"):
        resolve_embedding(x[:40], FS)  # even lag 2 leaves 40 - 9 * 2 = 22 vectors
    assert 40 - 9 * 2 < MIN_VECTORS
    with pytest.raises(ValueError):
        resolve_embedding(x, FS, lag_method="fnn")


def test_default_radii_scale_with_embedding(lorenz):
    x = lorenz[:1000]
    grid = radius_grid(x, 4)
    assert grid[0] == pytest.approx(0.01 * 2 * x.std()) and grid[-1] <= 2 * x.std()
    assert np.allclose(grid[1:] / grid[:-1], 1.03)
    emb = resolve_embedding(x, FS)
    rvals = default_rvals(x, FS, emb)
    assert correlation_dimension(x, FS, emb.emb_dim, emb.lag, emb.min_tsep, rvals) == correlation_dimension(x, FS)
