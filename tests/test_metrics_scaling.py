"""Hurst exponent (R/S) and DFA: theory, nolds and antropy with the same parameters, NaN policy, dtypes,
determinism and invariances."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nw2.pipeline.metrics import systems
from nw2.pipeline.metrics._common import Undefined
from nw2.pipeline.metrics.scaling import (_linear_residual, _orthonormal_polynomials, _polynomial_residual,
                                      default_dfa_nvals, dfa, hurst_rs, logarithmic_n, logmid_n)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # nolds imports pkg_resources
    import antropy
    import nolds
    from nolds.measures import logarithmic_n as nolds_logarithmic_n
    from nolds.measures import logmid_n as nolds_logmid_n

FS = 100.0

#: Agreement with the reference packages under the same parameters (absolute, on the exponent).
#: nolds: the same arithmetic up to summation order and polyfit's QR against our closed-form
#: least squares, so only rounding separates the two (observed below 1e-13).
#: antropy: adds 1e-9 to the denominators of its least-squares slopes (observed differences ~1e-11).
TOLERANCE = {
    "hurst_rs": {"nolds": 1e-10},
    "dfa": {"nolds": 1e-10, "antropy": 1e-8},
}

#: Against theory, 4096 samples, 8 seeds: the mean within MEAN_TOL of the known value and each seed
#: within SEED_TOL. Observed over 50 seeds: Hurst of white noise 0.500 (sd 0.017); DFA alpha of
#: white/pink/brown noise 0.516/0.999/1.499 (sd 0.014/0.020/0.027; DFA-1 of white noise is biased
#: slightly upwards at the smallest scales). SEED_TOL is about 4 sd of the noisiest case, MEAN_TOL
#: about 4 sd of an 8-seed mean; an uncorrected R/S (0.567) or a DFA without detrending fails them.
THEORY = {"hurst_white": 0.5, "dfa_white": 0.5, "dfa_pink": 1.0, "dfa_brown": 1.5}
MEAN_TOL, SEED_TOL = 0.04, 0.11
SEEDS = range(8)


def _nolds_hurst(x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nolds.hurst_rs(x, **kw)


def _nolds_dfa(x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nolds.dfa(x, **kw)


def _nolds_dfa_comparable(x, **kw):
    """nolds' alpha without the scales whose every window is a polynomial of the fitted degree up to
    rounding (a staircase EDA trace at window lengths that put its steps on window edges): exact
    arithmetic gives ``F(n) = 0`` there, which both packages drop, but nolds gets rounding noise
    ``F(n) ~ 1e-13`` and keeps its logarithm (-30), which drags the slope anywhere; :func:`dfa` sets
    residuals below the rounding floor to 0. Returns ``(alpha, scales nolds got wrong)``."""
    kw = dict(fit_trend="poly", fit_exp="poly") | kw
    alpha, (log_n, log_f, _) = _nolds_dfa(x, debug_data=True, **kw)
    noise = np.round(np.exp(log_n[log_f < np.log(1e-9)])).astype(int)
    if noise.size:
        kw["nvals"] = [int(round(v)) for v in np.exp(log_n) if int(round(v)) not in noise]
        alpha = _nolds_dfa(x, **kw)
    return alpha, noise


# --- against theory ---------------------------------------------------------------------------

def test_hurst_white_noise_is_one_half():
    values = np.array([hurst_rs(systems.white_noise(4096, seed=s), FS) for s in SEEDS])
    assert abs(values.mean() - THEORY["hurst_white"]) < MEAN_TOL
    assert np.all(np.abs(values - THEORY["hurst_white"]) < SEED_TOL)


@pytest.mark.parametrize("colour", ["white", "pink", "brown"])
def test_dfa_noise_colours(colour):
    generate = getattr(systems, f"{colour}_noise")
    values = np.array([dfa(generate(4096, seed=s), FS) for s in SEEDS])
    expected = THEORY[f"dfa_{colour}"]
    assert abs(values.mean() - expected) < MEAN_TOL, values
    assert np.all(np.abs(values - expected) < SEED_TOL), values


def test_persistence_orders_the_exponents():
    """White < pink < brown for both exponents on the same seed (R/S saturates below 1 for brown)."""
    for s in range(3):
        w, p, b = (systems.white_noise(4096, s), systems.pink_noise(4096, s), systems.brown_noise(4096, s))
        assert hurst_rs(w, FS) < hurst_rs(p, FS) < hurst_rs(b, FS)
        assert dfa(w, FS) < dfa(p, FS) < dfa(b, FS)


# --- against nolds and antropy ------------------------------------------------------------------

def test_default_scales_are_nolds():
    for n in (16, 100, 1000, 1024, 4096, 10000):
        assert np.array_equal(logmid_n(n), nolds_logmid_n(n, ratio=1 / 4.0, nsteps=15))
    for n in (71, 100, 1024, 4096, 10000):
        assert np.array_equal(logarithmic_n(4, 0.1 * n, 1.2), nolds_logarithmic_n(4, 0.1 * n, 1.2))
        assert np.array_equal(default_dfa_nvals(n), nolds_logarithmic_n(4, 0.1 * n, 1.2))
    assert np.array_equal(default_dfa_nvals(50), [4, 5, 6, 7, 8, 9])  # nolds for 10 < N <= 70


HURST_PARAMS = [
    dict(),  # the defaults; nolds is given them explicitly below
    dict(corrected=False),
    dict(unbiased=False),
    dict(nvals=[4, 8, 16, 32, 64, 128]),
    dict(nvals=[10, 20, 50, 100, 300, 400], corrected=True),  # n > 340: the asymptotic expectation
]


def _rs_without_constant_subseries(data, n, unbiased=True):
    """nolds' ``rs`` with its one numerical flaw fixed: nolds drops subseries with ``R == 0``, but a
    constant subseries whose mean rounds off its value (a quantized EDA trace has many) gets
    ``R ~ 1e-15`` and ``S ~ 1e-16`` and an arbitrary ``R/S`` of order 1-10 that enters the mean.
    Here the constant subseries are dropped, as :func:`hurst_rs` does."""
    data = np.asarray(data)
    m = len(data) // n
    seqs = data[: m * n].reshape((m, n))
    seqs = seqs[np.ptp(seqs, axis=1) != 0]
    if len(seqs) == 0:
        return np.nan
    y = np.cumsum(seqs - seqs.mean(axis=1, keepdims=True), axis=1)
    r = y.max(axis=1) - y.min(axis=1)
    return np.mean(r / np.std(seqs, axis=1, ddof=1 if unbiased else 0))


def _has_constant_subseries(x, nvals):
    return any(np.any(np.ptp(x[: len(x) // n * n].reshape(-1, n), axis=1) == 0) for n in nvals)


@pytest.mark.parametrize("params", HURST_PARAMS, ids=str)
def test_hurst_matches_nolds_on_real_windows(real_windows, params, monkeypatch):
    full = dict(nvals=None, corrected=True, unbiased=True) | params
    unpatched = {}
    for name, x, fs in real_windows:
        unpatched[name] = _nolds_hurst(x, fit="poly", **full)
    monkeypatch.setattr(nolds.measures, "rs", _rs_without_constant_subseries)
    for name, x, fs in real_windows:
        ours = hurst_rs(x, fs, fit="poly", **full)
        ref = _nolds_hurst(x, fit="poly", **full)
        assert ours == pytest.approx(ref, abs=TOLERANCE["hurst_rs"]["nolds"]), name
        if not _has_constant_subseries(x, full["nvals"] if full["nvals"] is not None else logmid_n(len(x))):
            assert ours == pytest.approx(unpatched[name], abs=TOLERANCE["hurst_rs"]["nolds"]), name
    # the quantized EDA window is where nolds' flaw shows (and the patch above matters)
    eda = next(x for name, x, _ in real_windows if name == "eda_slow")
    if full["nvals"] is None:
        assert _has_constant_subseries(eda, logmid_n(len(eda)))
        assert abs(hurst_rs(eda, FS, **full) - unpatched["eda_slow"]) > 0.01


@pytest.mark.parametrize("signal", ["pink", "logistic", "henon"])
def test_hurst_matches_nolds_on_synthetic(signal):
    x = {"pink": systems.pink_noise(3000, seed=7), "logistic": systems.logistic(2000),
         "henon": systems.henon(2500)}[signal]
    for params in HURST_PARAMS:
        full = dict(nvals=None, corrected=True, unbiased=True) | params
        assert hurst_rs(x, FS, **full) == pytest.approx(_nolds_hurst(x, fit="poly", **full),
                                                         abs=TOLERANCE["hurst_rs"]["nolds"])


DFA_PARAMS = [
    dict(),
    dict(overlap=False),
    dict(order=0),
    dict(order=2),
    # nolds keeps n = 4 for order 3, where the cubic goes through every point (F = rounding noise);
    # our default drops lengths <= order + 1, so the same scales are given to both explicitly
    dict(order=3, overlap=False, nvals=[5, 6, 8, 9, 11, 14, 17, 20, 24, 29, 35, 42, 51, 61, 73, 88]),
    dict(nvals=[5, 7, 11, 16, 23, 50, 100]),
    dict(nvals=[2, 3, 4, 6, 9], order=0),  # odd lengths: the half-overlap step is n // 2
]


@pytest.mark.parametrize("params", DFA_PARAMS, ids=str)
def test_dfa_matches_nolds_on_real_windows(real_windows, params):
    full = dict(nvals=None, overlap=True, order=1) | params
    for name, x, fs in real_windows:
        ref, noise = _nolds_dfa_comparable(x, **full)
        assert dfa(x, fs, fit_exp="poly", **full) == pytest.approx(ref, abs=TOLERANCE["dfa"]["nolds"]), name
        assert noise.size == 0 or name == "eda_slow", (name, noise)


def test_nolds_rounding_noise_on_the_staircase_window(real_windows):
    """The quantized EDA window has two steps, at samples 256 and 769: with consecutive windows of
    4 or 8 samples every window of the profile is exactly linear. nolds keeps F(4), F(8) ~ 1e-13
    (alpha 5.9); dropping them gives our value."""
    eda = next(x for name, x, _ in real_windows if name == "eda_slow")
    ref, noise = _nolds_dfa_comparable(eda, overlap=False)
    assert list(noise) == [4, 8]
    assert dfa(eda, FS, overlap=False) == pytest.approx(ref, abs=TOLERANCE["dfa"]["nolds"])
    assert abs(_nolds_dfa(eda, overlap=False, fit_exp="poly") - ref) > 1.0


def test_default_scales_for_high_orders_skip_exact_fits():
    x = systems.pink_noise(1024, seed=2)
    scales = [int(n) for n in default_dfa_nvals(1024) if n >= 5]
    assert dfa(x, FS, order=3) == dfa(x, FS, order=3, nvals=scales)
    assert dfa(x, FS, order=3) == pytest.approx(_nolds_dfa(x, order=3, nvals=scales, fit_exp="poly"), abs=1e-10)


def test_dfa_matches_nolds_on_synthetic():
    for x in (systems.brown_noise(1200, seed=3), systems.logistic(900), systems.sine(800, freq=3.0)):
        for params in DFA_PARAMS[:4]:
            full = dict(nvals=None, overlap=True, order=1) | params
            ref, noise = _nolds_dfa_comparable(x, **full)
            assert noise.size == 0
            assert dfa(x, FS, **full) == pytest.approx(ref, abs=TOLERANCE["dfa"]["nolds"])


def test_dfa_matches_antropy_without_overlap(real_windows):
    """antropy.detrended_fluctuation takes no parameters: nolds' default scales, DFA-1,
    consecutive (non-overlapping) windows, least-squares slope -- our ``overlap=False``. Our
    default (nolds') overlaps the windows by half, which changes alpha by up to a few hundredths.
    The EDA staircase is left out: antropy keeps the same rounding-noise scales as nolds (above)."""
    signals = [(name, x) for name, x, _ in real_windows if name != "eda_slow"] + [
        ("brown", systems.brown_noise(4096, seed=1)), ("white", systems.white_noise(1000, seed=2))]
    for name, x in signals:
        ref = antropy.detrended_fluctuation(x)
        assert dfa(x, FS, overlap=False) == pytest.approx(ref, abs=TOLERANCE["dfa"]["antropy"]), name


def test_linear_fast_path_equals_general_projection():
    """The one-pass DFA-1 residual and the orthonormal-projection residual agree, on a profile far
    from zero (where a naive sum of squares would cancel catastrophically)."""
    walk = np.cumsum(np.cumsum(systems.white_noise(600, seed=4))) + 1e6
    coef = np.empty(2)
    for n in (3, 4, 17, 64, 200):
        basis = _orthonormal_polynomials(n, 1)
        for start in (0, 33, 600 - n):
            fast = _linear_residual(walk, start, n)
            general = _polynomial_residual(walk, start, n, basis, coef)
            assert fast == pytest.approx(general, rel=1e-7, abs=1e-9)
            t = np.arange(n)
            ref = np.sum((walk[start:start + n] - np.polyval(np.polyfit(t, walk[start:start + n], 1), t)) ** 2)
            assert fast == pytest.approx(ref, rel=1e-6, abs=1e-8)


# --- NaN policy and parameters --------------------------------------------------------------------

@pytest.mark.parametrize("metric", [hurst_rs, dfa])
def test_nan_policy(metric):
    x = systems.white_noise(500, seed=0)
    assert np.isnan(metric(np.full(500, 3.0), FS))
    assert np.isnan(metric(x[:8], FS))
    y = x.copy()
    y[100] = np.nan
    assert np.isnan(metric(y, FS))
    y[100] = np.inf
    assert np.isnan(metric(y, FS))
    with pytest.raises(Undefined, match="constant"):
        metric.strict(np.zeros(500), FS)


def test_scales_beyond_the_window():
    x = systems.white_noise(100, seed=0)
    # nolds drops R/S scales longer than the window; two remain here
    assert hurst_rs(x, FS, nvals=[5, 10, 200]) == pytest.approx(
        _nolds_hurst(x, nvals=[5, 10], fit="poly"), abs=1e-10)
    assert np.isnan(hurst_rs(x, FS, nvals=[10, 200, 300]))
    with pytest.raises(Undefined, match="too short"):
        dfa.strict(x, FS, nvals=[4, 100])
    assert np.isfinite(dfa(x, FS, nvals=[4, 99]))


def test_hurst_skips_constant_subseries():
    """A window whose subseries are all constant at one scale: that scale is dropped, as in nolds."""
    x = np.repeat(systems.white_noise(64, seed=1), 4)  # constant runs of 4 samples
    assert hurst_rs(x, FS, nvals=[2, 4, 8, 16, 32]) == pytest.approx(
        _nolds_hurst(x, nvals=[2, 4, 8, 16, 32], fit="poly"), abs=1e-10)


@pytest.mark.parametrize("call", [
    lambda x: hurst_rs(x, 0.0),
    lambda x: hurst_rs(x, FS, fit="RANSAC"),
    lambda x: hurst_rs(x, FS, nvals=[8]),
    lambda x: hurst_rs(x, FS, nvals=[1, 8, 16]),
    lambda x: hurst_rs(x, FS, nvals=[4.5, 8]),
    lambda x: hurst_rs(np.zeros((4, 100)), FS),
    lambda x: dfa(x, -1.0),
    lambda x: dfa(x, FS, fit_exp="RANSAC"),
    lambda x: dfa(x, FS, order=-1),
    lambda x: dfa(x, FS, nvals=[2, 8, 16]),  # a line through 2 points leaves no residual
    lambda x: dfa(x, FS, order=2, nvals=[3, 8, 16]),
    lambda x: dfa(x, FS, nvals=[16]),
])
def test_bad_parameters_raise(call):
    with pytest.raises(ValueError):
        call(systems.white_noise(500, seed=0))


# --- dtypes, determinism, invariances -------------------------------------------------------------

@pytest.mark.parametrize("metric", [hurst_rs, dfa])
def test_dtypes_and_read_only(metric):
    ints = np.round(systems.pink_noise(1024, seed=5) * 1000).astype(np.int64)
    reference = metric(ints.astype(np.float64), FS)
    assert np.isfinite(reference)
    assert metric(ints, FS) == reference
    assert metric(list(ints), FS) == reference
    ro = ints.astype(np.float64)
    ro.setflags(write=False)
    assert metric(ro, FS) == reference
    f32 = systems.pink_noise(1024, seed=5).astype(np.float32)
    assert metric(f32, FS) == metric(f32.astype(np.float64), FS)


@pytest.mark.parametrize("metric", [hurst_rs, dfa])
def test_deterministic(metric):
    x = systems.logistic(2000)
    assert metric(x, FS) == metric(x.copy(), FS)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), scale=st.floats(1e-3, 1e3), negative=st.booleans(),
       offset=st.floats(-1e3, 1e3), mix=st.floats(0.0, 1.0), n=st.integers(100, 1500))
def test_affine_invariance(seed, scale, negative, offset, mix, n):
    """Both exponents depend only on the shape of the signal: ``a x + b`` (a != 0) gives the same value."""
    white = systems.white_noise(n, seed=seed)
    x = (1 - mix) * white + mix * np.cumsum(white) / np.sqrt(n)
    y = (-scale if negative else scale) * x + offset
    for metric in (hurst_rs, dfa):
        assert metric(y, FS) == pytest.approx(metric(x, FS), abs=1e-8)
    assert -0.5 < dfa(x, FS) < 2.5
