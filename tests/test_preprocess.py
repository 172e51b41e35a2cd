"""Signal preparation and window checks on known signals and on real recordings."""

import numpy as np
import pytest
from scipy import signal

from nw2.pipeline import preprocess as pp
from nw2.pipeline import windows as win
from nw2.pipeline.spec import SplitSpec, WindowSpec


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


# ---- batch (row-wise) versions agree with the single-window functions -----------------------------

#: ``(sample, channel index)``: real channels at their source rates (360, 160, 1000, 100, 64 Hz;
#: the EDA sample is a real flat line, the accelerometers are integer ADC counts with long runs).
SOURCE_CHANNELS = [("mitbih_208", 0), ("eda_slow", 0), ("sync_acc", 0), ("heartpy_ppg", 0),
                   ("daphnet_s06r02", 0), ("bvp_opensignals", 0)]


def read_channel(sample, name, channel, seconds=120.0):
    from nw2.pipeline import samples
    from nw2.pipeline.readers import reader_for
    from nw2.pipeline.readers.base import ReadOptions

    entry = samples.lookup(name)
    opts = dict(entry.options)
    if opts.get("columns") is not None:
        opts["columns"] = tuple(opts["columns"])
    rec = next(iter(reader_for(entry.format).read(str(sample(name)), ReadOptions(**opts), [channel], 0.0, seconds)))
    return np.asarray(rec.samples, np.float64), rec.fs


@pytest.fixture(scope="module")
def source_channels(sample):
    return [(name, *read_channel(sample, name, channel)) for name, channel in SOURCE_CHANNELS]


def test_detrend_and_normalize_rows_equal_the_single_window_versions(source_channels):
    rng = np.random.default_rng(1)
    for name, x, fs in source_channels:
        y = pp.resample(x, fs, 100.0)
        rows = np.lib.stride_tricks.sliding_window_view(y, 1024)[::300]
        assert rows.shape[0] >= 2, name
        rows = rows + np.linspace(0, 50, 1024) * rng.normal(size=(rows.shape[0], 1))  # add trends
        detrended = pp.detrend_rows(rows)
        tol = 1e-9 * max(1.0, np.abs(rows).max())
        for row, got in zip(rows, detrended):
            np.testing.assert_allclose(got, pp.detrend(row), rtol=0, atol=tol)
        for method in ("zscore", "robust", "none"):
            z, scale, offset = pp.normalize_rows(detrended, method)
            for i, row in enumerate(detrended):
                want, s, o = pp.normalize(row, method)
                np.testing.assert_allclose(z[i], want, rtol=0, atol=1e-9)
                assert scale[i] == pytest.approx(s, rel=1e-9) and offset[i] == pytest.approx(o, rel=1e-9, abs=1e-9)
    # Short rows, a constant row (zero scale becomes 1) and a single row.
    for n in (1, 2, 3, 7):
        rows = rng.normal(size=(3, n))
        np.testing.assert_allclose(pp.detrend_rows(rows), [pp.detrend(r) for r in rows], atol=1e-12)
    flat = np.full((1, 16), 3.0)
    z, scale, offset = pp.normalize_rows(flat, "zscore")
    assert scale.tolist() == [1.0] and offset.tolist() == [3.0] and not z.any()


def windows_to_judge(x, fs, rng):
    """Window starts over ``x`` (including windows hanging off either end) and their missing fractions."""
    length = int(round(10.24 * fs))
    starts = np.r_[np.arange(-length // 3, x.size, max(1, length // 2)), rng.integers(0, x.size, 20)]
    return starts, length, rng.choice([0.0, 0.05, 0.3], size=starts.size, p=[0.8, 0.1, 0.1])


def test_batch_quality_checks_equal_the_single_window_ones(source_channels):
    rng = np.random.default_rng(2)
    spec = WindowSpec(length=1024, stride=512, max_missing=0.2, max_flat=0.5, max_clipped=0.2)
    seen = set()
    for name, x, fs in source_channels:
        variants = [x]
        damaged = x.copy()  # flat stretches, clipping, missing samples and an infinity
        n = x.size
        damaged[n // 10: n // 10 + int(3 * fs)] = damaged[n // 10]
        damaged[n // 3: n // 2] = np.clip(damaged[n // 3: n // 2], None, np.percentile(x, 60))
        damaged[rng.integers(0, n, 15)] = np.nan
        damaged[2 * n // 3] = np.inf
        variants.append(damaged)
        for v in variants:
            starts, length, missing = windows_to_judge(v, fs, rng)
            got = win.quality_problems(v, starts, length, missing, spec, fs)
            want = [win.quality_problem(v[max(0, s):s + length], m, spec, fs) for s, m in zip(starts, missing)]
            assert got == want, name
            seen.update(want)
            inside = starts[(starts >= 0) & (starts + length <= v.size)]
            min_run = int(round(spec.flat_run_s * fs))
            flat = win.flat_fractions(v, inside, length, min_run)
            assert flat.tolist() == [win.flat_fraction(v[s:s + length], min_run) for s in inside], name
            clipped = win.clipped_fractions(v, inside, length)
            assert clipped.tolist() == [win.clipped_fraction(v[s:s + length]) for s in inside], name
    assert seen == {None, "missing", "flat", "clipped"}


def test_flat_fractions_on_runs_cut_by_window_edges():
    x = np.r_[np.zeros(10), np.arange(5.0), np.ones(7), [2.0, 2.0], np.full(12, 5.0)]
    for length in (2, 3, 5, 9, 16, x.size):
        starts = np.arange(0, x.size - length + 1)
        for min_run in (0, 2, 3, 4, 6, 10):
            want = [win.flat_fraction(x[s:s + length], min_run) for s in starts]
            assert win.flat_fractions(x, starts, length, min_run).tolist() == want, (length, min_run)
    with pytest.raises(ValueError):
        win.flat_fractions(x, np.array([x.size - 2]), 5, 2)


def reference_outlier_jumps(x, fs, range_factor):
    """The definition: a full 50 ms running median (what ``outlier_jumps`` computed before)."""
    from scipy import ndimage

    ok = np.isfinite(x)
    if ok.sum() < 3:
        return np.zeros(x.shape, bool)
    lo, hi = np.percentile(x[ok], [0.5, 99.5])
    if hi - lo <= 0:
        return np.zeros(x.shape, bool)
    width = max(3, int(round(0.05 * fs)) | 1)
    filled = pp.fill_missing(x, ~ok)
    return ok & (np.abs(filled - ndimage.median_filter(filled, size=width, mode="nearest")) > range_factor * (hi - lo))


def test_outlier_jumps_equal_a_full_running_median(source_channels, sample):
    rng = np.random.default_rng(3)
    ecg = np.loadtxt(sample("pyphysio_medical"), max_rows=60000)[:, 0]  # 2048 Hz
    for name, x, fs in [*source_channels, ("pyphysio_medical", ecg, 2048.0)]:
        popped = x.copy()
        where = rng.integers(0, x.size, 12)
        popped[where] += rng.choice([-1, 1], 12) * 3 * np.ptp(x)
        popped[where[:3] + 1] = np.nan
        popped[:2] += 5 * np.ptp(x)  # a pop at the very start (nearest-value edge)
        for signal_ in (x, popped):
            for factor in (1.0, 0.5, 0.2, 0.05):
                got = pp.outlier_jumps(signal_, fs, factor)
                assert np.array_equal(got, reference_outlier_jumps(signal_, fs, factor)), (name, factor)


@pytest.mark.parametrize("factor", [1e300, 1e-310, 1e-30, 1.0])
def test_normalization_survives_extreme_magnitudes(factor):
    """A recording in odd units (1e300, 1e-310 per count) normalises to the same window as in sane ones: before,
    the squares overflowed or underflowed, leaving a scale of 1 and a window of inf or of zeros."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((3, 512)) + 5.0
    ref, ref_scale, ref_offset = pp.normalize_rows(rows, "zscore")
    out, scale, offset = pp.normalize_rows(rows * factor, "zscore")
    assert np.allclose(out.astype(np.float32), ref.astype(np.float32), atol=1e-5)
    assert np.allclose(scale / factor, ref_scale) and np.allclose(offset / factor, ref_offset)
