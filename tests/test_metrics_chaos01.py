"""0-1 test for chaos: theory (maps, flows, periodic signals), a plain-NumPy reimplementation of the
formula (no reference package has the test), NaN policy, dtypes, determinism and invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nw2.pipeline.metrics import systems
from nw2.pipeline.metrics._common import Undefined
from nw2.pipeline.metrics.chaos01 import (C_HIGH, C_LOW, DIRECT_MAX_NCUT, MIN_SAMPLES, _k_per_c, _k_per_c_direct,
                                      _k_per_c_fft, auto_downsample, chaos_01, chaos_01_numpy, mean_period)

FS = 100.0

#: Against theory (K is binary in the limit; Gottwald & Melbourne 2009 report K within a few
#: hundredths of 0 or 1 from a few thousand samples). Observed here: logistic r=4, Henon, white noise
#: 0.998-0.999 at 2048 samples; Lorenz x thinned automatically 0.998 (4096 samples); sine and
#: logistic r=3.5 give median K_c within 0.03 of 0 (clipped K = 0).
CHAOTIC_MIN = 0.95
LORENZ_MIN = 0.9
REGULAR_MAX_ABS = 0.1

#: Kernel against the NumPy transcription of the formula, same samples and frequencies (absolute on
#: K_c and K): the kernel rotates cos/sin(jc) instead of calling them, and sums in another order
#: (beyond DIRECT_MAX_NCUT through FFT autocorrelations; measured within 2e-11 of the direct sum on
#: K_c, 5e-13 on K, over maps, flows, noise, tones with offsets and the real windows).
NUMPY_ATOL = 1e-9


def numpy_k_per_c(phi, cs, ncut):
    """The correlation method written out as in Gottwald & Melbourne (2009) / Matthews' z1test."""
    phi = np.asarray(phi, dtype=np.float64)
    n = phi.size
    j = np.arange(1, n + 1)
    lags = np.arange(1, ncut + 1)
    out = []
    for c in cs:
        p = np.cumsum(phi * np.cos(j * c))
        q = np.cumsum(phi * np.sin(j * c))
        msd = np.array([np.mean((p[m:] - p[:-m]) ** 2 + (q[m:] - q[:-m]) ** 2) for m in lags])
        d = msd - phi.mean() ** 2 * (1 - np.cos(lags * c)) / (1 - np.cos(c))
        out.append(np.corrcoef(lags, d)[0, 1])
    return np.array(out)


def median_k_c(x, step):
    """Unclipped median K_c of the default frequencies (the clipping hides negative medians)."""
    phi = np.ascontiguousarray(x[::step])
    cs = np.random.default_rng(0).uniform(C_LOW, C_HIGH, 100)
    return float(np.median(_k_per_c(phi, cs, phi.size // 10)))


# --- against theory ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, x", [
    ("logistic r=4", systems.logistic(2048)),
    ("henon", systems.henon(2048)),
    ("white noise", systems.white_noise(2048, seed=1)),  # the test assumes determinism: noise reads as chaos
])
def test_chaotic_maps_give_one(name, x):
    assert auto_downsample(x) == 1  # maps are not thinned
    assert chaos_01(x, FS) > CHAOTIC_MIN


@pytest.mark.parametrize("name, x", [
    ("sine 1 Hz at 100 Hz", systems.sine(2048)),
    ("sine 7.3 Hz", systems.sine(2048, freq=7.3)),
    ("logistic r=3.5 (period 4)", systems.logistic(2048, r=3.5)),
])
def test_regular_signals_give_zero(name, x):
    k = chaos_01(x, FS)
    assert 0.0 <= k < REGULAR_MAX_ABS
    assert abs(median_k_c(x, auto_downsample(x))) < REGULAR_MAX_ABS


@pytest.fixture(scope="module")
def lorenz():
    return systems.lorenz(4096)


def test_lorenz_needs_thinning(lorenz):
    """The paper's point: sampled at dt = 0.01 (150 samples per mean period) the flow looks regular;
    thinned to about 10 samples per mean period it is chaotic."""
    step = auto_downsample(lorenz)
    assert 13 <= step <= 18
    assert chaos_01(lorenz, FS) > LORENZ_MIN
    assert chaos_01(lorenz, FS, downsample=1) < 0.2
    assert chaos_01(lorenz, FS, downsample=step) == chaos_01(lorenz, FS)


def test_oversampled_short_window_is_undefined(lorenz):
    """1024 samples of the same flow cannot be thinned by 15 and keep 100 samples: nan, not 'regular'."""
    assert np.isnan(chaos_01(lorenz[:1024], FS))
    with pytest.raises(Undefined, match="oversampled"):
        chaos_01.strict(lorenz[:1024], FS)


def test_oscillatory_term_removes_the_mean():
    """Without subtracting mean^2 (1 - cos nc) / (1 - cos c), an offset makes M_c oscillate and
    pulls K well below 1; with it, K of the logistic map hardly moves."""
    x = systems.logistic(1500)
    assert chaos_01(x + 5.0, FS) > CHAOTIC_MIN
    assert chaos_01(x + 5.0, FS) == pytest.approx(chaos_01(x, FS), abs=0.02)


def test_automatic_step_rule():
    """ceil(mean period / 10): a tone of period 100 samples is thinned by 10, noise by 1."""
    tone = systems.sine(2000, fs=100.0, freq=1.0)  # 20 whole periods
    assert mean_period(tone) == pytest.approx(100.0, rel=1e-6)
    assert auto_downsample(tone) == 10
    assert mean_period(systems.white_noise(4096, seed=0)) == pytest.approx(4.0, rel=0.05)
    assert auto_downsample(systems.white_noise(4096, seed=0)) == 1
    for x in (systems.sine(3000, freq=2.7), systems.pink_noise(2000, seed=1)):
        assert auto_downsample(x) == max(1, math.ceil(mean_period(x) / 10))


# --- against a plain-NumPy transcription --------------------------------------------------------------

CS = np.concatenate([[C_LOW, 1.0, 2.0, C_HIGH, math.pi], np.random.default_rng(1).uniform(C_LOW, C_HIGH, 6)])


@pytest.mark.parametrize("signal, step", [("logistic", 1), ("sine", 1), ("brown", 1), ("eegmmi_s001r02", 2),
                                          ("mitbih_208", 3), ("bvp_opensignals", 7)])
def test_kernel_matches_numpy(real_windows, signal, step):
    real = {name: x for name, x, _ in real_windows}
    x = {"logistic": systems.logistic(700), "sine": systems.sine(900, freq=3.3),
         "brown": systems.brown_noise(800, seed=2)}.get(signal, real.get(signal))
    phi = np.ascontiguousarray(x[::step])
    for ncut in (phi.size // 10, 3, phi.size // 3):
        ref = numpy_k_per_c(phi, CS, ncut)
        assert np.allclose(_k_per_c(phi, CS, ncut), ref, rtol=0, atol=NUMPY_ATOL)
        k = chaos_01(x, FS, c=CS, downsample=step, cutoff=ncut)
        assert k == pytest.approx(np.clip(np.median(ref), 0, 1), abs=NUMPY_ATOL)


@pytest.mark.parametrize("x", [systems.logistic(3000), systems.sine(2000, freq=3.3) + 5.0, systems.white_noise(1500, seed=4),
                               systems.logistic(2500, r=3.5)], ids=["logistic", "sine+offset", "white", "period 4"])
def test_fft_path_equals_direct_sum(x):
    """Both ways of summing the mean square displacement, on either side of the switch between them."""
    phi = np.ascontiguousarray(x)
    for ncut in (DIRECT_MAX_NCUT, DIRECT_MAX_NCUT + 1, phi.size // 10, phi.size // 2):
        direct, fft = _k_per_c_direct(phi, CS, ncut), _k_per_c_fft(phi, CS, ncut)
        assert np.allclose(fft, direct, rtol=0, atol=NUMPY_ATOL)
        assert np.array_equal(_k_per_c(phi, CS, ncut), direct if ncut <= DIRECT_MAX_NCUT else fft)


def test_numpy_stand_in_of_the_reference_engine(real_windows):
    """chaos_01_numpy (what ``--engine reference`` runs) agrees with the kernel, defaults included."""
    for name, x, fs in real_windows:
        ours, ref = chaos_01(x, fs), chaos_01_numpy(x, fs)
        assert (np.isnan(ours) and np.isnan(ref)) or ours == pytest.approx(ref, abs=NUMPY_ATOL), name
    x = systems.logistic(600)
    assert chaos_01_numpy(x, FS) == pytest.approx(chaos_01(x, FS), abs=NUMPY_ATOL)
    assert np.isnan(chaos_01_numpy(np.ones(500), FS))


def test_default_frequencies_are_seeded_uniform_draws():
    x = systems.henon(1000)
    cs = np.random.default_rng(0).uniform(C_LOW, C_HIGH, 100)
    assert chaos_01(x, FS) == chaos_01(x, FS, c=cs)
    cs7 = np.random.default_rng(7).uniform(C_LOW, C_HIGH, 40)
    assert chaos_01(x, FS, n_c=40, seed=7) == chaos_01(x, FS, c=cs7)
    assert chaos_01(x, FS, cutoff=100) == chaos_01(x, FS)  # N // 10


# --- NaN policy and parameters --------------------------------------------------------------------

def test_nan_policy():
    x = systems.logistic(500)
    assert np.isnan(chaos_01(np.full(500, 0.3), FS))
    assert np.isnan(chaos_01(x[:MIN_SAMPLES - 1], FS))
    assert np.isfinite(chaos_01(x[:MIN_SAMPLES], FS))
    y = x.copy()
    y[10] = np.nan
    assert np.isnan(chaos_01(y, FS))
    y[10] = -np.inf
    assert np.isnan(chaos_01(y, FS))
    assert np.isnan(chaos_01(x[:150], FS, downsample=2))  # 75 samples left
    assert np.isnan(chaos_01(x[:300], FS, cutoff=300))
    with pytest.raises(Undefined, match="constant after downsampling"):
        chaos_01.strict(systems.sine(4000, fs=20.0, freq=1.0, phase=0.3), 20.0, downsample=20)


@pytest.mark.parametrize("kwargs", [
    dict(fs=0.0), dict(fs=float("nan")), dict(c=0.0), dict(c=4.0), dict(c=[]), dict(c=[1.0, -1.0]),
    dict(n_c=0), dict(n_c=2.5), dict(seed=-1), dict(seed=1.5), dict(cutoff=1), dict(downsample=0),
])
def test_bad_parameters_raise(kwargs):
    args = dict(fs=FS) | kwargs
    with pytest.raises(ValueError):
        chaos_01(systems.logistic(500), **args)


def test_two_dimensional_input_raises():
    with pytest.raises(ValueError):
        chaos_01(np.zeros((2, 500)), FS)


# --- dtypes, determinism, invariances -------------------------------------------------------------

def test_dtypes_and_read_only():
    ints = np.round(systems.henon(800) * 1000).astype(np.int64)
    reference = chaos_01(ints.astype(np.float64), FS)
    assert reference > CHAOTIC_MIN
    assert chaos_01(ints, FS) == reference
    assert chaos_01(list(ints), FS) == reference
    ro = ints.astype(np.float64)
    ro.setflags(write=False)
    assert chaos_01(ro, FS) == reference
    f32 = systems.henon(800).astype(np.float32)
    assert chaos_01(f32, FS) == chaos_01(f32.astype(np.float64), FS)


def test_deterministic():
    x = systems.logistic(1000, r=3.9)
    assert chaos_01(x, FS) == chaos_01(x.copy(), FS)
    assert chaos_01(x, FS, seed=3) != chaos_01(x, FS)  # another draw of c: another (close) value
    assert chaos_01(x, FS, seed=3) == pytest.approx(chaos_01(x, FS), abs=0.02)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), r=st.floats(3.4, 4.0), mix=st.floats(0.0, 1.0),
       freq=st.floats(0.5, 20.0), n=st.integers(100, 600), scale=st.floats(1e-3, 1e3), negative=st.booleans())
def test_bounds_and_scale_invariance(seed, r, mix, freq, n, scale, negative):
    """K lies in [0, 1] (or is nan), and depends on the shape of the signal only: a x (a != 0) gives
    the same K (p, q scale by a, M_c and the oscillatory term by a^2)."""
    x0 = float(np.random.default_rng(seed).uniform(0.05, 0.95))
    x = mix * systems.logistic(n, r=r, x0=x0) + (1 - mix) * systems.sine(n, fs=FS, freq=freq)
    k = chaos_01(x, FS)
    assert np.isnan(k) or 0.0 <= k <= 1.0
    scaled = chaos_01((-scale if negative else scale) * x, FS)
    assert (np.isnan(k) and np.isnan(scaled)) or scaled == pytest.approx(k, abs=1e-9)
