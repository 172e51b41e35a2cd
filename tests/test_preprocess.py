"""Signal preparation and window checks on known signals and on real recordings."""

import numpy as np
import pytest
from scipy import signal

from pipeline import preprocess as pp
from pipeline import windows as win
from pipeline.spec import SplitSpec, WindowSpec


def dominant_hz(x, fs):
    f, p = signal.periodogram(x, fs)
    return f[np.argmax(p)]


@pytest.mark.parametrize("fs_in,fs_out", [(360.0, 100.0), (1000.0, 100.0), (64.0, 100.0), (117.0, 100.0)])
def test_resample_keeps_frequency_and_length(fs_in, fs_out):
    t = np.arange(int(20 * fs_in)) / fs_in
    y = pp.resample(np.sin(2 * np.pi * 7.0 * t), fs_in, fs_out)
    assert abs(y.size - 20 * fs_out) <= 1
    assert dominant_hz(y, fs_out) == pytest.approx(7.0, abs=0.1)


def test_resample_is_anti_aliased():
    fs_in = 1000.0
    t = np.arange(20000) / fs_in
    tone = np.sin(2 * np.pi * 80.0 * t)  # above the 50 Hz Nyquist of the target
    y = pp.resample(tone, fs_in, 100.0)
    assert np.std(y) < 0.02  # folded back to 20 Hz it would keep an amplitude near 0.7


def test_outlier_jumps_remove_pops_but_keep_r_waves(sample):
    ecg = np.load(sample("mitbih_208"))["ecg"][:36000].copy()
    assert not pp.outlier_jumps(ecg, 360.0, 1.0).any()  # R waves are sparse, but inside the range
    pops = [5000, 17000, 29000]
    ecg[pops] += 40.0  # electrode pops far outside the ECG's range
    assert np.flatnonzero(pp.outlier_jumps(ecg, 360.0, 1.0)).tolist() == pops


def test_fill_missing_and_resampled_mask():
    x = np.array([0.0, np.nan, np.nan, 3.0, 4.0, np.inf])
    mask = pp.missing_mask(x)
    np.testing.assert_allclose(pp.fill_missing(x, mask), [0, 1, 2, 3, 4, 4])
    out = pp.resample_mask(np.r_[np.zeros(50, bool), np.ones(10, bool), np.zeros(40, bool)], 10)
    assert out.tolist() == [False] * 5 + [True] + [False] * 4


@pytest.mark.parametrize("method", ["zscore", "robust", "none"])
def test_normalize_round_trips(sample, method):
    ecg = np.load(sample("mitbih_208"))["ecg"][:1024]
    z, scale, offset = pp.normalize(ecg, method)
    np.testing.assert_allclose(z * scale + offset, ecg, atol=1e-12)
    if method == "zscore":
        assert abs(z.mean()) < 1e-12 and z.std() == pytest.approx(1.0)


def test_bandpass_and_notch_remove_what_they_should():
    fs = 100.0
    t = np.arange(6000) / fs
    x = np.sin(2 * np.pi * 5 * t) + np.sin(2 * np.pi * 0.05 * t) + np.sin(2 * np.pi * 30 * t)
    y = pp.bandpass(x, fs, 1.0, 10.0)
    f, p = signal.periodogram(y[500:-500], fs)
    assert f[np.argmax(p)] == pytest.approx(5.0, abs=0.05) and p[np.abs(f - 30) < 0.2].max() < 1e-3 * p.max()
    z = pp.notch(np.sin(2 * np.pi * 50 * np.arange(2000) / 200.0), 200.0, 50.0)
    assert np.std(z[300:-300]) < 0.05


def test_flat_and_clipped_detection(sample):
    ppg = np.loadtxt(sample("heartpy_ppg"))[:1000]
    spec = WindowSpec(length=256)
    assert win.quality_problem(ppg, 0.0, spec, 100.0) is None
    flat = ppg.copy()
    flat[100:900] = flat[100]
    assert win.quality_problem(flat, 0.0, spec, 100.0) == "flat"
    clipped = np.clip(ppg, None, np.percentile(ppg, 70))
    assert win.quality_problem(clipped, 0.0, spec, 100.0) == "clipped"
    assert win.quality_problem(ppg, 0.5, spec, 100.0) == "missing"


def test_split_is_a_deterministic_function_of_the_subject():
    split = SplitSpec(train=0.6, val=0.2, test=0.2, seed=3)
    subjects = [f"s{i}" for i in range(2000)]
    first = [win.assign_split("d", s, split) for s in subjects]
    assert first == [win.assign_split("d", s, split) for s in subjects]
    share = {k: first.count(k) / len(first) for k in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.6, abs=0.05) and share["test"] == pytest.approx(0.2, abs=0.05)
    other = [win.assign_split("d", s, SplitSpec(train=0.6, val=0.2, test=0.2, seed=4)) for s in subjects]
    assert other != first
    fixed = SplitSpec(fixed={"d/s1": "test"})
    assert win.assign_split("d", "s1", fixed) == "test"


def test_window_label_is_the_majority():
    assert win.window_label(np.array([1, 1, 2, 2, 2])) == "2"
    assert win.window_label(np.array([3, 3, 1, 1])) == "1"  # ties: smallest as text
    assert win.window_label(None) is None
