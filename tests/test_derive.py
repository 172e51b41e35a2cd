"""Derived slow series (``pipeline/derive.py``): known answers on simulated signals, agreement between independent
sensors and methods on real recordings, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as sps

from make_wesad import read_medical
from nw2.pipeline.derive import DeriveError, derive, interval_series

nk = pytest.importorskip("neurokit2")
MEDICAL_FS = 2048


@pytest.fixture(scope="module")
def medical(request):
    from nw2.pipeline import samples

    return read_medical(samples.fetch(["pyphysio_medical"])["pyphysio_medical"], seconds=120)


@pytest.mark.parametrize("modality, simulate, rate", [
    ("ecg", lambda: nk.ecg_simulate(duration=90, sampling_rate=250, heart_rate=72, random_state=0), 72),
    ("ppg", lambda: nk.ppg_simulate(duration=90, sampling_rate=100, heart_rate=95, random_state=0), 95),
])
def test_heart_rate_of_a_simulated_heart_is_its_set_rate(modality, simulate, rate):
    x = simulate()
    fs = 250 if modality == "ecg" else 100
    hr = derive(x, fs, modality, "heart_rate")
    assert hr.fs == 1.0 and hr.values.size == 90 and hr.unit == "bpm"
    assert abs(np.nanmedian(hr.values) - rate) < 2.0
    ibi = derive(x, fs, modality, "ibi")
    assert abs(np.nanmedian(ibi.values) - 60.0 / rate) < 0.03
    # nothing is extrapolated: the grid before the second beat is NaN, the rest is defined
    assert np.isnan(hr.values[0]) and np.isfinite(hr.values[5:-5]).all()


def test_respiration_rate_of_a_simulated_breath_is_its_set_rate():
    x = nk.rsp_simulate(duration=180, sampling_rate=50, respiratory_rate=12, random_state=0)
    rr = derive(x, 50, "resp", "respiration_rate")
    assert rr.unit == "breaths/min" and abs(np.nanmedian(rr.values) - 12) < 1.0


def test_tonic_level_follows_the_slow_drift_under_skin_conductance_responses():
    fs, n = 100, 100 * 300
    t = np.arange(n) / fs
    drift = 2.0 + 0.004 * t                                   # uS, a slow rise over 5 minutes
    scr = np.zeros(n)
    for onset in range(20, 300, 40):                          # phasic responses: fast rise, slow decay
        s = np.clip(t - onset, 0, None)
        scr += 0.3 * (1 - np.exp(-s / 0.7)) * np.exp(-s / 4.0) * (t >= onset)
    tonic = derive(drift + scr, fs, "eda", "eda_tonic", unit="uS")
    assert tonic.values.size == 300 and tonic.unit == "uS"
    truth = drift.reshape(300, fs).mean(1)
    inner = slice(30, 270)                                    # the filter's edges settle within the first seconds
    error = np.abs(tonic.values[inner] - truth[inner]).max()
    raw_error = np.abs((drift + scr).reshape(300, fs).mean(1)[inner] - truth[inner]).max()
    assert error < 0.1 and error < 0.6 * raw_error           # the responses are mostly taken out


def test_real_heart_rate_from_ecg_and_from_the_wrist_ppg_agree(medical):
    """Two sensors, two detectors, one heart: pyphysio's synchronised chest ECG and finger BVP (120 s)."""
    hr_ecg = derive(medical["ecg"], MEDICAL_FS, "ecg", "heart_rate")
    hr_ppg = derive(medical["bvp"], MEDICAL_FS, "ppg", "heart_rate")
    both = np.isfinite(hr_ecg.values) & np.isfinite(hr_ppg.values)
    assert both.sum() >= 110
    diff = np.abs(hr_ecg.values - hr_ppg.values)[both]
    assert np.median(diff) < 1.5 and np.percentile(diff, 90) < 4.0
    assert 50 < np.median(hr_ecg.values[both]) < 90
    assert abs(len(hr_ecg.events) - len(hr_ppg.events)) <= 3


def test_real_respiration_rate_matches_an_independent_breath_count(medical):
    """NeuroKit's breath onsets against the upward zero crossings of the 0.05-1 Hz band of the same belt."""
    rr = derive(medical["resp"], MEDICAL_FS, "resp", "respiration_rate")
    band = sps.sosfiltfilt(sps.butter(2, [0.05, 1.0], btype="band", fs=MEDICAL_FS, output="sos"), medical["resp"])
    crossings = np.flatnonzero((band[:-1] < 0) & (band[1:] >= 0))
    reference = 60.0 * (len(crossings) - 1) / ((crossings[-1] - crossings[0]) / MEDICAL_FS)
    assert abs(np.nanmean(rr.values) - reference) / reference < 0.15


def test_real_tonic_level_keeps_the_level_and_is_smooth(medical):
    tonic = derive(medical["eda"], MEDICAL_FS, "eda", "eda_tonic")
    raw = medical["eda"].reshape(120, MEDICAL_FS).mean(1)
    assert abs(tonic.values.mean() - raw.mean()) / raw.mean() < 0.02
    assert np.abs(np.diff(tonic.values)).max() < np.abs(np.diff(raw)).max()


def test_intervals_outside_the_physiological_range_are_dropped_not_interpolated():
    beats_s = np.array([0.0, 1.0, 2.0, 2.05, 3.0, 4.0, 5.0])  # 2.05: a double detection (a 50 ms interval)
    hr = interval_series(beats_s, 6.0, 1.0, "beat", as_rate=True)
    # each kept interval is credited to the beat that closes it; none before the first closed one
    assert np.allclose(hr, [np.nan, 60.0, 60.0, 60.0 / 0.95, 60.0, 60.0], equal_nan=True)
    assert np.isnan(interval_series(np.array([0.0, 0.1, 0.2]), 5.0, 1.0, "beat", True)).all()


@pytest.mark.parametrize("args, message", [
    ((np.zeros(1000), 100, "eeg", "heart_rate"), "derived from ecg or ppg, not 'eeg'"),
    ((np.zeros(1000), 100, "ecg", "blood_pressure"), "unknown derived series 'blood_pressure'"),
    ((np.zeros(1000), 0, "ecg", "heart_rate"), "sampling rate must be a positive number"),
    ((np.r_[np.zeros(10), np.nan], 100, "ecg", "heart_rate"), "1 of 11 samples are NaN"),
    ((np.arange(1000.0), 1, "eda", "eda_tonic"), "must be below the signal's"),
])
def test_what_cannot_be_derived_is_refused_with_the_reason(args, message):
    with pytest.raises(DeriveError, match=message):
        derive(*args)


@pytest.mark.parametrize("modality, name", [("ecg", "heart_rate"), ("ppg", "heart_rate"),
                                            ("resp", "respiration_rate"), ("eda", "eda_tonic")])
def test_a_flat_signal_is_refused_not_filled(modality, name):
    with pytest.raises(DeriveError, match="flat"):
        derive(np.full(3000, 0.5), 100, modality, name)


def test_a_trace_without_beats_gives_no_rate():
    quiet = np.r_[np.zeros(1999), 1e-9]  # not flat, but nothing a detector can call a beat
    with pytest.raises(DeriveError, match="beat"):
        derive(quiet, 100, "ppg", "heart_rate")
