"""pipeline.metrics.fractal against antropy (same parameters), against theory, and the contract
(NaN policy, dtypes, determinism, invariances)."""

from __future__ import annotations

import math

import antropy
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from helpers import check_against_reference
from nw2.pipeline.metrics import systems
from nw2.pipeline.metrics._common import Undefined
from nw2.pipeline.metrics.fractal import higuchi_fd, katz_fd, petrosian_fd

FS = 100.0

#: Largest |ours - antropy| on every real window and synthetic system (absolute: the values are O(1)
#: to O(10)).
REFERENCE_ATOL = {
    # antropy adds 1e-9 to the denominator kmax * sum(u^2) - (sum u)^2 of its regression slope, a
    # relative bias of 1e-9 / 50 at kmax = 10 (seen up to 4.3e-11) but 1e-9 / 0.48 at kmax = 2 (seen
    # 3.2e-9); we fit the slope exactly
    "higuchi_fd": 1e-8,
    "katz_fd": 1e-12,      # same sums, different summation order
    "petrosian_fd": 1e-12,  # same integer count of sign changes
}

REFERENCE_CASES = [
    ("higuchi_fd", lambda x: higuchi_fd(x, FS), lambda x: antropy.higuchi_fd(x)),
    ("higuchi_fd", lambda x: higuchi_fd(x, FS, kmax=25), lambda x: antropy.higuchi_fd(x, kmax=25)),
    ("higuchi_fd", lambda x: higuchi_fd(x, FS, kmax=2), lambda x: antropy.higuchi_fd(x, kmax=2)),
    ("katz_fd", lambda x: katz_fd(x, FS), lambda x: antropy.katz_fd(x)),
    ("petrosian_fd", lambda x: petrosian_fd(x, FS), lambda x: antropy.petrosian_fd(x)),
]

SYNTHETIC = {
    "logistic": systems.logistic(2000),
    "henon": systems.henon(2000),
    "lorenz": systems.lorenz(1500),
    "brown": systems.brown_noise(3000, seed=4),
    # zero steps, which Petrosian counts as rising; "+ 0.0" turns np.round's -0.0 into +0.0 (see
    # test_petrosian_ignores_the_sign_of_zero)
    "rounded_noise": np.round(2 * systems.white_noise(1500, seed=3)) + 0.0,
}

ALL = [
    pytest.param(higuchi_fd, id="higuchi_fd"),
    pytest.param(katz_fd, id="katz_fd"),
    pytest.param(petrosian_fd, id="petrosian_fd"),
]




# --------------------------------------------------------------------------- reference package

def test_matches_antropy_on_real_windows(real_windows):
    for _name, x, fs in real_windows:
        assert fs == FS
        check_against_reference(x, REFERENCE_CASES, REFERENCE_ATOL)


@pytest.mark.parametrize("name", sorted(SYNTHETIC))
def test_matches_antropy_on_synthetic_systems(name):
    check_against_reference(SYNTHETIC[name], REFERENCE_CASES, REFERENCE_ATOL)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
def test_undefined_where_antropy_is_infinite_or_nan():
    # Katz: extent d = 1 equals the mean step a = 1, log10(d/a) = 0
    assert np.isinf(antropy.katz_fd(np.array([0.0, 1.0, 0.0])))
    with pytest.raises(Undefined, match="extent"):
        katz_fd.strict([0.0, 1.0, 0.0], FS)
    # Higuchi: a period-2 signal has zero curve length at k = 2
    x = np.tile([0.0, 1.0], 50)
    assert np.isnan(antropy.higuchi_fd(x))
    assert np.isnan(higuchi_fd(x, FS))
    with pytest.raises(Undefined, match="zero curve length"):
        higuchi_fd.strict(x, FS)


def test_petrosian_ignores_the_sign_of_zero():
    # Known difference: antropy takes np.signbit of np.diff(x), so a step (-0.0) - (+0.0) = -0.0
    # counts as falling while +0.0 counts as rising. We treat every zero step as rising, so the
    # value does not depend on how a zero sample was signed (np.round(-0.3) is -0.0).
    x = np.array([1.0, -0.0, 0.0, -0.0, 2.0, 1.0])
    assert petrosian_fd(x, FS) == petrosian_fd(x + 0.0, FS)
    assert antropy.petrosian_fd(x) != antropy.petrosian_fd(x + 0.0)


# --------------------------------------------------------------------------- theory

def test_higuchi_of_white_and_brown_noise():
    # Higuchi (1988): FD = 2 - H for a graph with Hurst exponent H: 2 for white noise, 1.5 for
    # Brownian motion. At n = 4096, kmax = 10, over 20 seeds: 1.9997 +- 0.0035 and 1.4968 +- 0.0096;
    # tolerances about 4 sd.
    assert higuchi_fd(systems.white_noise(4096, seed=0), FS) == pytest.approx(2.0, abs=0.015)
    assert higuchi_fd(systems.brown_noise(4096, seed=0), FS) == pytest.approx(1.5, abs=0.04)


def test_smooth_curves_have_dimension_one():
    line = 0.3 * np.arange(1000.0) - 7.0
    t = np.linspace(0.0, 1.0, 2000)
    # a line: L(k) = (N - 1) slope / k exactly, every estimator gives 1
    assert higuchi_fd(line, FS) == pytest.approx(1.0, abs=1e-12)
    assert katz_fd(line, FS) == pytest.approx(1.0, abs=1e-12)
    assert petrosian_fd(line, FS) == 1.0
    # any monotone curve: L = d for Katz, no turning point for Petrosian, exactly 1
    for curve in (t ** 2, np.exp(-3.0 * t), np.sin(0.5 * np.pi * t)):
        assert katz_fd(curve, FS) == pytest.approx(1.0, abs=1e-12)
        assert petrosian_fd(curve, FS) == 1.0
        # Higuchi: only the ends of the sub-series are lost, an O(k/N) effect (seen up to 1.3e-3)
        assert higuchi_fd(curve, FS) == pytest.approx(1.0, abs=2e-3)
    # a smooth oscillation (30 periods of 100 samples): the extrema cost Higuchi 0.0074
    assert higuchi_fd(systems.sine(3000, fs=FS, freq=1.0), FS) == pytest.approx(1.0, abs=0.01)


def test_petrosian_counts_turning_points():
    # alternating steps: N - 2 sign changes of the difference
    n = 101
    x = np.tile([0.0, 1.0], 60)[:n] + 0.001 * np.arange(n)
    expected = math.log10(n) / (math.log10(n) + math.log10(n / (n + 0.4 * (n - 2))))
    assert petrosian_fd(x, FS) == pytest.approx(expected, rel=1e-14)


def test_katz_of_noise_exceeds_a_smooth_oscillation():
    # Katz is not bounded by 2 (about 6.5 for 4096 white-noise samples) but orders roughness
    noise, tone = katz_fd(systems.white_noise(4096, seed=0), FS), katz_fd(systems.sine(4096), FS)
    assert noise > 5.0 > 3.0 > tone > 1.0


# --------------------------------------------------------------------------- contract

@pytest.mark.parametrize("fn", ALL)
def test_nan_policy(fn):
    x = systems.white_noise(512, seed=1)
    assert np.isnan(fn(np.full(512, 3.0), FS))
    assert np.isnan(fn(x[:2], FS))
    assert np.isnan(fn(np.array([]), FS))
    for bad in (np.nan, np.inf, -np.inf):
        y = x.copy()
        y[100] = bad
        assert np.isnan(fn(y, FS))
    with pytest.raises(Undefined):
        fn.strict(np.full(512, 3.0), FS)


def test_higuchi_needs_two_kmax_samples():
    x = systems.white_noise(40, seed=1)
    assert math.isfinite(higuchi_fd(x[:20], FS, kmax=10))
    assert np.isnan(higuchi_fd(x[:19], FS, kmax=10))


@pytest.mark.parametrize("fn", ALL)
def test_bad_parameters_raise(fn):
    x = systems.white_noise(256, seed=1)
    for fs in (0.0, -1.0, np.inf):
        with pytest.raises(ValueError):
            fn(x, fs)
    with pytest.raises(ValueError):
        fn(x.reshape(16, 16), FS)


@pytest.mark.parametrize("kmax", [0, 1, 2.5, None])
def test_bad_kmax_raises(kmax):
    with pytest.raises(ValueError):
        higuchi_fd(systems.white_noise(256, seed=1), FS, kmax=kmax)


@pytest.mark.parametrize("fn", ALL)
def test_dtypes_and_read_only_input_agree(fn):
    x = np.round(100 * systems.white_noise(600, seed=2))  # integer-valued, exact in every dtype
    want = fn(x, FS)
    frozen = x.copy()
    frozen.setflags(write=False)
    for variant in (x.astype(np.float32), x.astype(np.int64), x.astype(np.int32), frozen, list(x)):
        assert fn(variant, FS) == want
    y = systems.white_noise(600, seed=2).astype(np.float32)
    assert fn(y, FS) == fn(y.astype(np.float64), FS)


@pytest.mark.parametrize("fn", ALL)
def test_deterministic(fn):
    x = SYNTHETIC["lorenz"][:800]
    first = fn(x, FS)
    assert math.isfinite(first)
    assert [fn(x.copy(), FS) for _ in range(3)] == [first] * 3
    assert fn(x, 1.0) == first  # fs is validated, not used


# --------------------------------------------------------------------------- invariances

@pytest.mark.parametrize("fn", ALL)
def test_gain_and_offset_invariance(fn):
    # all three depend on the waveform's shape only: Higuchi's log-log slope ignores a constant
    # factor on L(k), Katz is a ratio of lengths, Petrosian counts sign changes
    x = systems.henon(1000)
    want = fn(x, FS)
    for gain, offset in ((3.7, 0.0), (0.01, -5.0), (250.0, 1e3)):
        assert fn(gain * x + offset, FS) == pytest.approx(want, abs=1e-10)
    # a negative gain mirrors the graph: same lengths, same turning points (no zero steps here)
    assert fn(-2.0 * x, FS) == pytest.approx(want, abs=1e-10)


@settings(max_examples=25, deadline=None)
@given(x=hnp.arrays(np.float64, st.integers(20, 300), elements=st.integers(-50, 50).map(float)),
       gain_exponent=st.integers(-3, 3), offset=st.integers(-1000, 1000))
def test_exact_invariance_and_range(x, gain_exponent, offset):
    # integer data, a power-of-two gain and an integer offset are exact in float64: Petrosian's count
    # must not change at all, Higuchi and Katz only by rounding of their logs
    y = x * 2.0 ** gain_exponent + offset
    a, b = petrosian_fd(x, FS), petrosian_fd(y, FS)
    assert (np.isnan(a) and np.isnan(b)) or a == b
    for fn in (higuchi_fd, katz_fd):
        a, b = fn(x, FS), fn(y, FS)
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, abs=1e-9)
    # Petrosian lies in [1, 2): the count of sign changes is at most N - 2
    assert np.isnan(a := petrosian_fd(x, FS)) or 1.0 <= a < 2.0
