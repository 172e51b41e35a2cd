"""pipeline.metrics.entropy against antropy/nolds (same parameters), against theory, and the contract
(NaN policy, dtypes, determinism, invariances, bounds)."""

from __future__ import annotations

import math
import warnings

import antropy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from helpers import check_against_reference
from nw2.pipeline.metrics import systems
from nw2.pipeline.metrics._common import Undefined
from nw2.pipeline.metrics.entropy import (lempel_ziv, permutation_entropy, sample_entropy, spectral_entropy,
                                      svd_entropy)

with warnings.catch_warnings():  # nolds 0.6.2 imports pkg_resources, which warns
    warnings.simplefilter("ignore")
    import nolds

FS = 100.0

#: Largest |ours - reference| on every real window and synthetic system (absolute: the values are O(1)).
#: Both sides compute the same quantity; what is left is floating-point summation order.
REFERENCE_ATOL = {
    "sample_entropy": 1e-12,       # identical integer pair counts; only the final log may differ by an ulp
    "permutation_entropy": 1e-12,  # identical pattern counts, ties broken alike
    "spectral_entropy": 1e-12,     # same spectrum up to FFT rounding (numpy vs scipy pocketfft)
    "svd_entropy": 1e-10,          # Householder QR + SVD of the factor vs LAPACK SVD; seen <= 2e-14
    "lempel_ziv": 1e-15,           # same integer phrase count; log2(n) vs log(n, 2) may differ by an ulp
}

#: (name, our call, antropy's call with the same parameters)
REFERENCE_CASES = [
    ("sample_entropy", lambda x: sample_entropy(x, FS), lambda x: antropy.sample_entropy(x, order=2)),
    ("sample_entropy", lambda x: sample_entropy(x, FS, order=3, r=0.25),
     lambda x: antropy.sample_entropy(x, order=3, tolerance=0.25 * x.std())),
    ("permutation_entropy", lambda x: permutation_entropy(x, FS),
     lambda x: antropy.perm_entropy(x, normalize=True)),
    ("permutation_entropy", lambda x: permutation_entropy(x, FS, order=5, delay=2, normalize=False),
     lambda x: antropy.perm_entropy(x, order=5, delay=2)),
    ("permutation_entropy", lambda x: permutation_entropy(x, FS, order=9),  # the sorting path (> 8)
     lambda x: antropy.perm_entropy(x, order=9, normalize=True)),
    ("spectral_entropy", lambda x: spectral_entropy(x, FS),
     lambda x: antropy.spectral_entropy(x, FS, normalize=True)),
    ("spectral_entropy", lambda x: spectral_entropy(x, FS, method="welch"),
     lambda x: antropy.spectral_entropy(x, FS, method="welch", normalize=True)),
    ("spectral_entropy", lambda x: spectral_entropy(x, FS, method="welch", nperseg=101, normalize=False),
     lambda x: antropy.spectral_entropy(x, FS, method="welch", nperseg=101)),
    ("svd_entropy", lambda x: svd_entropy(x, FS), lambda x: antropy.svd_entropy(x, normalize=True)),
    ("svd_entropy", lambda x: svd_entropy(x, FS, order=6, delay=3, normalize=False),
     lambda x: antropy.svd_entropy(x, order=6, delay=3)),
    ("lempel_ziv", lambda x: lempel_ziv(x, FS),
     lambda x: antropy.lziv_complexity((x > np.median(x)).astype(int), normalize=True)),
    ("lempel_ziv", lambda x: lempel_ziv(x, FS, normalize=False),
     lambda x: float(antropy.lziv_complexity((x > np.median(x)).astype(int)))),
]

SYNTHETIC = {
    "logistic": systems.logistic(2000),
    "henon": systems.henon(2000),
    "lorenz": systems.lorenz(1500),
    "sine": systems.sine(1500),
    # integer-valued: many exact ties, which exercises the tie convention of permutation entropy
    "rounded_noise": np.round(2 * systems.white_noise(1500, seed=3)),
}

#: Every public function with its defaults, for the contract tests.
ALL = [
    pytest.param(sample_entropy, {}, id="sample_entropy"),
    pytest.param(permutation_entropy, {}, id="permutation_entropy"),
    pytest.param(spectral_entropy, {}, id="spectral_entropy_fft"),
    pytest.param(spectral_entropy, {"method": "welch"}, id="spectral_entropy_welch"),
    pytest.param(svd_entropy, {}, id="svd_entropy"),
    pytest.param(lempel_ziv, {}, id="lempel_ziv"),
]




# --------------------------------------------------------------------------- reference packages

def test_matches_antropy_on_real_windows(real_windows):
    for _name, x, fs in real_windows:
        assert fs == FS
        check_against_reference(x, REFERENCE_CASES, REFERENCE_ATOL)


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_matches_antropy_on_synthetic_systems(name):
    check_against_reference(SYNTHETIC[name], REFERENCE_CASES, REFERENCE_ATOL)


def test_sample_entropy_matches_nolds(real_windows):
    # nolds 0.6.2 uses the same N - m templates for both lengths and the same strict "< r" as
    # antropy, so with the tolerance passed explicitly (its default is 0.2 * std(ddof=1) with a
    # dimension correction) the pair counts are identical.
    windows = [x for _name, x, _fs in real_windows] + [SYNTHETIC["logistic"][:1000]]
    for x in windows:
        want = nolds.sampen(x, emb_dim=2, tolerance=0.2 * x.std())
        assert abs(sample_entropy(x, FS) - want) <= REFERENCE_ATOL["sample_entropy"]


def test_sample_entropy_undefined_where_antropy_is_infinite_or_nan():
    # templates (0,0) at 0 and 3 match for m = 2, their continuations 5 and 9 do not: A = 0
    x = np.array([0.0, 0.0, 5.0, 0.0, 0.0, 9.0])
    assert np.isinf(antropy.sample_entropy(x))
    assert np.isnan(sample_entropy(x, FS))
    with pytest.raises(Undefined, match="length 3"):
        sample_entropy.strict(x, FS)
    # widely spaced samples: no two templates within r = 0.2 sd, B = 0
    x = np.arange(6.0)
    assert np.isnan(antropy.sample_entropy(x))
    with pytest.raises(Undefined, match="length 2"):
        sample_entropy.strict(x, FS)


# --------------------------------------------------------------------------- theory

def test_sample_entropy_of_uniform_noise():
    # For i.i.d. uniform samples the probability that two samples lie within rho = 0.2 sd = 0.2/sqrt(12)
    # is 2 rho - rho^2, independently at each position, so SampEn = -ln(2 rho - rho^2) = 2.188.
    # At n = 1000 one estimate scatters with sd 0.043 (20 seeds); the mean of 8 seeds with sd 0.015
    # must lie within 0.05 (3 sd). Richman & Moorman and antropy's docs report about 2.2.
    rho = 0.2 / math.sqrt(12)
    expected = -math.log(2 * rho - rho * rho)
    estimates = [sample_entropy(np.random.default_rng(seed).random(1000), FS) for seed in range(8)]
    assert abs(np.mean(estimates) - expected) < 0.05


def test_sample_entropy_of_periodic_signals_is_zero():
    # An exactly periodic sequence whose samples within a period differ by more than r: every m-match
    # is at a multiple of the period and continues to an (m+1)-match, so A = B and SampEn = 0.
    assert sample_entropy(systems.logistic(2000, r=3.5), FS) == pytest.approx(0.0, abs=1e-12)  # period 4
    assert sample_entropy(systems.sine(2000, fs=100.0, freq=10.0), FS) == pytest.approx(0.0, abs=1e-12)
    # chaos is not: the logistic map at r = 4 is far from 0
    assert sample_entropy(systems.logistic(2000), FS) > 0.5


def test_white_noise_normalized_entropies_near_one():
    x = systems.white_noise(4096, seed=0)
    # all 6 order-3 patterns equiprobable: the plug-in estimate is biased low by about
    # (6 - 1) / (2 N ln 6) = 3.4e-4 (measured 0.9998 +- 0.00013 over 20 seeds)
    assert permutation_entropy(x, FS) > 0.999
    # the three embedding columns are nearly orthogonal with equal norms (0.99995 +- 5e-5)
    assert svd_entropy(x, FS) > 0.999
    # Welch averages 31 periodograms: bins scatter little about the flat level (0.9956 +- 0.0005)
    assert spectral_entropy(x, FS, method="welch") > 0.99


def test_white_noise_periodogram_entropy_matches_exponential_theory():
    # One periodogram of white noise has i.i.d. exponential bins; the entropy of K exponential weights
    # normalized to sum 1 is log2 K - (1 - gamma)/ln 2 bits, so the normalized value is
    # 1 - 0.6099 / log2 K = 0.9446 for K = 2049 (measured 0.9450 +- 0.0013 over 20 seeds; tol 4 sd).
    x = systems.white_noise(4096, seed=0)
    n_bins = 4096 // 2 + 1
    expected = 1 - (1 - np.euler_gamma) / math.log(2) / math.log2(n_bins)
    assert spectral_entropy(x, FS) == pytest.approx(expected, abs=0.005)


def test_pure_tone_has_no_spectral_entropy():
    # an integer number of periods: all power in one bin
    assert spectral_entropy(systems.sine(1000, fs=FS, freq=5.0), FS) == pytest.approx(0.0, abs=1e-12)


def test_lempel_ziv_of_noise_and_of_a_sine():
    # random bits: c(n) log2(n) / n -> 1 from above (1.035 +- 0.009 at n = 4096 over 20 seeds)
    noise = lempel_ziv(systems.white_noise(4096, seed=0), FS)
    assert 0.98 < noise < 1.08
    # a sine repeats the same run of ones and zeros: a handful of phrases
    assert lempel_ziv(systems.sine(4096, fs=FS, freq=1.0), FS) < 0.1


def test_monotone_signal_has_minimal_permutation_entropy():
    assert permutation_entropy(np.arange(100.0) ** 2, FS) == 0.0


def test_permutation_entropy_breaks_ties_by_position():
    # (0, 0, 1) has ranks (0, 1, 2), the same pattern as (0, 1, 2): one pattern only
    assert permutation_entropy([0.0, 0.0, 1.0, 2.0, 3.0], FS, normalize=False) == 0.0
    # (1, 0, 0): the two equal zeros rank in order of appearance, the pattern of (2, 0, 1)
    assert (permutation_entropy([1.0, 0.0, 0.0, 1.0], FS, normalize=False)
            == permutation_entropy([2.0, 0.0, 1.0, 3.0], FS, normalize=False))


# --------------------------------------------------------------------------- contract

@pytest.mark.parametrize(("fn", "kwargs"), ALL)
def test_nan_policy(fn, kwargs):
    x = systems.white_noise(512, seed=1)
    assert np.isnan(fn(np.full(512, 3.0), FS, **kwargs))  # constant
    assert np.isnan(fn(x[:1], FS, **kwargs))  # too short
    assert np.isnan(fn(np.array([]), FS, **kwargs))
    for bad in (np.nan, np.inf):
        y = x.copy()
        y[100] = bad
        assert np.isnan(fn(y, FS, **kwargs))
    with pytest.raises(Undefined):
        fn.strict(np.full(512, 3.0), FS, **kwargs)


@pytest.mark.parametrize(("fn", "kwargs"), ALL)
def test_bad_parameters_raise(fn, kwargs):
    x = systems.white_noise(256, seed=1)
    for fs in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError):
            fn(x, fs, **kwargs)
    with pytest.raises(ValueError):
        fn(x.reshape(16, 16), FS, **kwargs)


@pytest.mark.parametrize(("fn", "kwargs"), [
    (sample_entropy, {"order": 0}), (sample_entropy, {"r": 0.0}), (sample_entropy, {"r": -0.2}),
    (sample_entropy, {"r": np.nan}), (sample_entropy, {"order": 1.5}),
    (permutation_entropy, {"order": 1}), (permutation_entropy, {"order": 21}),
    (permutation_entropy, {"delay": 0}),
    (spectral_entropy, {"method": "multitaper"}), (spectral_entropy, {"nperseg": 64}),
    (spectral_entropy, {"method": "welch", "nperseg": 1}),
    (svd_entropy, {"order": 1}), (svd_entropy, {"delay": 0}),
])
def test_bad_metric_parameters_raise(fn, kwargs):
    with pytest.raises(ValueError):
        fn(systems.white_noise(256, seed=1), FS, **kwargs)


@pytest.mark.parametrize(("fn", "kwargs"), ALL)
def test_dtypes_and_read_only_input_agree(fn, kwargs):
    x = np.round(100 * systems.white_noise(600, seed=2))  # integer-valued, exact in every dtype
    want = fn(x, FS, **kwargs)
    frozen = x.copy()
    frozen.setflags(write=False)
    for variant in (x.astype(np.float32), x.astype(np.int64), x.astype(np.int32), frozen, list(x)):
        assert fn(variant, FS, **kwargs) == want
    # float32 input is coerced once: same as converting it first
    y = systems.white_noise(600, seed=2).astype(np.float32)
    assert fn(y, FS, **kwargs) == fn(y.astype(np.float64), FS, **kwargs)


@pytest.mark.parametrize(("fn", "kwargs"), ALL)
def test_deterministic(fn, kwargs):
    x = SYNTHETIC["lorenz"][:800]
    first = fn(x, FS, **kwargs)
    assert math.isfinite(first)
    assert [fn(x.copy(), FS, **kwargs) for _ in range(3)] == [first] * 3


@pytest.mark.parametrize(("fn", "kwargs"), ALL)
def test_fs_does_not_change_the_value(fn, kwargs):
    x = systems.henon(700)
    assert fn(x, 1.0, **kwargs) == pytest.approx(fn(x, 1000.0, **kwargs), abs=1e-12)


# --------------------------------------------------------------------------- invariances and bounds

@pytest.mark.parametrize(("fn", "kwargs"), [p for p in ALL if p.id != "svd_entropy"])
def test_gain_and_offset_invariance(fn, kwargs):
    # Sample entropy (tolerance in sd), permutation entropy and LZ (ranks and median), spectral
    # entropy (normalized spectrum, mean removed) do not depend on gain or offset.
    x = systems.henon(1000)
    want = fn(x, FS, **kwargs)
    for gain, offset in ((3.7, 0.0), (0.01, -5.0), (250.0, 1e3)):
        assert fn(gain * x + offset, FS, **kwargs) == pytest.approx(want, abs=1e-10)


def test_svd_entropy_is_gain_invariant_but_not_offset_invariant():
    # as antropy, the embedding matrix is not centred: an offset adds a dominant singular direction
    x = systems.henon(1000)
    want = svd_entropy(x, FS)
    assert svd_entropy(-4.0 * x, FS) == pytest.approx(want, abs=1e-12)
    assert svd_entropy(x + 10.0, FS) < want - 0.3


integer_windows = hnp.arrays(np.float64, st.integers(8, 300), elements=st.integers(-50, 50).map(float))


@settings(max_examples=25, deadline=None)
@given(x=integer_windows, gain_exponent=st.integers(-3, 3), offset=st.integers(-1000, 1000))
def test_rank_based_metrics_are_exactly_invariant(x, gain_exponent, offset):
    # integer data, a power-of-two gain and an integer offset: the transform is exact in float64,
    # so the ranks, the median split and hence the values must not change by a single bit
    y = x * 2.0 ** gain_exponent + offset
    for fn in (permutation_entropy, lempel_ziv):
        a, b = fn(x, FS), fn(y, FS)
        assert (np.isnan(a) and np.isnan(b)) or a == b


@settings(max_examples=25, deadline=None)
@given(x=hnp.arrays(np.float64, st.integers(2, 300), elements=st.floats(-1e6, 1e6)))
def test_normalized_entropies_lie_in_unit_interval(x):
    values = [permutation_entropy(x, FS), permutation_entropy(x, FS, order=5),
              spectral_entropy(x, FS), spectral_entropy(x, FS, method="welch"),
              svd_entropy(x, FS), svd_entropy(x, FS, order=2)]
    for value in values:
        assert np.isnan(value) or 0.0 <= value <= 1.0
    # SampEn and LZ are not normalized to [0, 1] but are non-negative
    for value in (sample_entropy(x, FS), lempel_ziv(x, FS)):
        assert np.isnan(value) or value >= 0.0


@settings(max_examples=40, deadline=None)
@given(n=st.integers(5, 300), order=st.integers(1, 3), seed=st.integers(0, 2**16), spread=st.sampled_from([1, 3, 20]))
def test_sample_entropy_lag_blocks_count_like_antropy_at_every_length(n, order, seed, spread):
    """The kernel takes lags 64 at a time; lengths around and across block edges, with ties, still
    count exactly the matches antropy counts one pair at a time."""
    x = np.round(np.random.default_rng(seed).standard_normal(n) * spread)
    if np.ptp(x) == 0 or n < order + 2:
        return
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        want = float(antropy.sample_entropy(x, order=order, tolerance=0.2 * x.std()))
    got = sample_entropy(x, 100.0, order=order)
    if math.isfinite(want):
        assert got == pytest.approx(want, abs=1e-12)
    else:
        assert math.isnan(got)
