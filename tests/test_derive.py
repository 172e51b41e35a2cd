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
    # a stretch of the same signal starting later lies on the same grid and gives the same values there
    late = derive(x[int(30.4 * fs):], fs, modality, "heart_rate", start_s=30.4)
    assert late.start_s == 31.0 and late.values.size == 59
    same = np.abs(late.values[10:-10] - hr.values[41:-10])   # the detector may place a beat or two apart
    assert np.median(same) < 0.5 and np.mean(same < 1.0) > 0.8


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
    hr = interval_series(beats_s, np.arange(6.0), "beat", as_rate=True)
    # each kept interval is credited to the beat that closes it; none before the first closed one
    assert np.allclose(hr, [np.nan, 60.0, 60.0, 60.0 / 0.95, 60.0, 60.0], equal_nan=True)
    assert np.isnan(interval_series(np.array([0.0, 0.1, 0.2]), np.arange(5.0), "beat", True)).all()


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


# ---- derived sources in a spec: the series as channels of a store ------------------------------------------------

def _ingest_derived(tmp_path, derive: str, extra: str = "", name: str = "slow"):
    from helpers import nw2

    spec = tmp_path / f"{name}.yaml"
    spec.write_text(f"name: {name}\nsources: [{{dataset: medical, sample: pyphysio_medical, derive: {derive}{extra}}}]\n"
                    "preprocess: {target_fs: 1, detrend: false, normalize: zscore}\n"
                    "windows: {length: 32, stride: 16}\nmetrics: {enabled: false}\n")
    out = tmp_path / name
    result = nw2("ingest", spec, "--out", out, "--scheduler", "sync", "--no-progress")
    return result, out


def _physical_means(table, channel: str) -> np.ndarray:
    import polars as pl

    rows = pl.from_arrow(table).filter(pl.col("channel") == channel).sort("start_s")
    return np.array([np.mean(np.asarray(s) * sc + of) for s, sc, of in zip(rows["samples"], rows["scale"], rows["offset"])])


def test_a_derived_source_stores_slow_series_as_channels_with_their_units(tmp_path, medical):
    import pyarrow.parquet as pq

    result, out = _ingest_derived(tmp_path, "[heart_rate, ibi, respiration_rate, eda_tonic]")
    assert result.exit_code == 0, result.output
    t = pq.read_table(out / "data")
    kinds = {(c, m, u) for c, m, u in zip(t["channel"].to_pylist(), t["modality"].to_pylist(), t["unit"].to_pylist())}
    assert {(c, m) for c, m, _ in kinds} == {("ecg:heart_rate", "hr"), ("ecg:ibi", "hr"), ("bvp:heart_rate", "hr"),
                                            ("bvp:ibi", "hr"), ("resp:respiration_rate", "resp"), ("eda:eda_tonic", "eda")}
    assert {u for c, _, u in kinds if c.endswith("heart_rate")} == {"bpm"}
    assert set(t["fs"].to_pylist()) == {1.0} and set(t["source_fs"].to_pylist()) == {1.0}
    assert set(t["length"].to_pylist()) == {32} and len(set(t["window_id"].to_pylist())) == t.num_rows
    # the level survives (detrend off): 32-s heart rate from the chest ECG and from the finger PPG agree
    ecg, ppg = _physical_means(t, "ecg:heart_rate"), _physical_means(t, "bvp:heart_rate")
    assert ecg.size == ppg.size >= 5 and np.abs(ecg - ppg).max() < 3.0 and 50 < ecg.mean() < 90
    ibi = _physical_means(t, "ecg:ibi")
    assert np.allclose(60.0 / ibi, ecg, rtol=0.05)
    assert 6 < _physical_means(t, "resp:respiration_rate").mean() < 30
    eda = _physical_means(t, "eda:eda_tonic")
    assert abs(eda.mean() - medical["eda"].mean()) / medical["eda"].mean() < 0.05
    manifest = (out / "manifest.json").read_text()
    assert "ecg:heart_rate" in manifest                        # the manifest lists the stored channels


def test_derived_series_split_into_pieces_match_the_whole_recording(tmp_path):
    import pyarrow.parquet as pq

    _, whole = _ingest_derived(tmp_path, "[heart_rate]", name="whole")
    from helpers import nw2

    spec = tmp_path / "split.yaml"
    spec.write_text((tmp_path / "whole.yaml").read_text().replace("name: whole", "name: split\nmax_piece_samples: 60000"))
    assert nw2("ingest", spec, "--out", tmp_path / "split", "--scheduler", "sync", "--no-progress").exit_code == 0
    assert '"pieces": 1,' not in (tmp_path / "split" / "manifest.json").read_text()
    a = pq.read_table(whole / "data").sort_by("window_id")
    b = pq.read_table(tmp_path / "split" / "data").sort_by("window_id")
    assert a["window_id"].to_pylist() == b["window_id"].to_pylist()  # one grid for all pieces
    for xa, xb, sa, sb in zip(a["samples"].to_pylist(), b["samples"].to_pylist(), a["scale"].to_pylist(),
                              b["scale"].to_pylist()):
        assert np.abs(np.asarray(xa) * sa - np.asarray(xb) * sb).max() < 3.0  # bpm, a beat placed apart at most


def test_a_derived_series_without_its_source_modality_fails_the_file_with_the_reason(tmp_path):
    import json

    result, out = _ingest_derived(tmp_path, "[heart_rate]", extra=", channels: [eda]")
    entry = json.loads((out / "manifest.json").read_text())["inputs"][0]
    assert entry["status"] == "failed"
    assert "derive heart_rate: needs a channel of modality ecg or ppg; channels: eda (eda)" in entry["reason"]


def test_derived_series_need_a_target_rate_below_the_signal(tmp_path):
    import json

    from helpers import nw2

    spec = tmp_path / "fast.yaml"
    spec.write_text("name: fast\nsources: [{dataset: medical, sample: pyphysio_medical, derive: [heart_rate]}]\n"
                    "preprocess: {target_fs: 4096}\nmetrics: {enabled: false}\n")
    nw2("ingest", spec, "--out", tmp_path / "fast", "--scheduler", "sync", "--no-progress")
    entry = json.loads((tmp_path / "fast" / "manifest.json").read_text())["inputs"][0]
    assert entry["status"] == "failed" and "not above the derived series' rate 4096 Hz" in entry["reason"]


def test_an_unknown_derived_series_is_a_spec_error(tmp_path):
    from nw2.core.errors import SpecError
    from nw2.pipeline.spec import spec_from_dict

    with pytest.raises(SpecError, match=r"sources\[0\]\.derive: .*'pulse' is none of them"):
        spec_from_dict({"name": "x", "sources": [{"dataset": "m", "sample": "pyphysio_medical", "derive": ["pulse"]}]})


# ---- inter-beat interval files: events read as slow series ---------------------------------------------------------

def _interval_opts(**extra):
    from nw2.pipeline.readers.base import ReadOptions

    return ReadOptions(dataset="nni", extra=extra)


def test_constant_intervals_read_as_a_constant_heart_rate_in_either_unit(tmp_path):
    from nw2.pipeline.readers import intervals

    ms = tmp_path / "rr_ms.txt"
    ms.write_text("# RR intervals\n" + "\n".join(["800"] * 100))
    s = tmp_path / "rr_s.npy"
    np.save(s, np.full(100, 0.8))
    for path, unit in ((ms, "ms"), (s, "s")):
        info = intervals.probe(path, _interval_opts(interval_unit=unit))
        assert [(c.name, c.modality, c.unit, c.fs) for c in info] == [("ibi", "hr", "s", 4.0), ("heart_rate", "hr", "bpm", 4.0)]
        assert info[0].n_samples == 320                       # 80 s of beats at 4 Hz
        ibi, hr = intervals.read(path, _interval_opts(interval_unit=unit))
        assert np.isnan(hr.samples[:4]).all()                  # before the first interval closes (0.8 s)
        assert np.allclose(hr.samples[4:], 75.0) and np.allclose(ibi.samples[4:], 0.8)
    late = intervals.read(ms, _interval_opts(interval_unit="ms"), [1], start_s=10.1, stop_s=20.0)[0]
    assert late.offset_s == 10.25 and late.samples.size == 39


@pytest.mark.parametrize("content, extra, message", [
    ("800\n810\n790\n", {}, "set extra.interval_unit to ms or s"),
    ("800\n810\n790\n", {"interval_unit": "msec"}, "got 'msec'"),
    ("800\nabc\n790\n", {"interval_unit": "ms"}, "not a list of numbers"),
    ("800\n-5\n790\n", {"interval_unit": "ms"}, "finite positive"),
])
def test_an_interval_file_that_does_not_say_its_unit_or_holds_garbage_is_refused(tmp_path, content, extra, message):
    from nw2.core.errors import InputError
    from nw2.pipeline.readers import detect_format, intervals

    path = tmp_path / "rr.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        intervals.read(path, _interval_opts(**extra))
    assert detect_format(path) == "csv"                        # a list of numbers is never taken for intervals
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([800, "x"], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="refusing to unpickle|not a list"):
        intervals.read(objects, _interval_opts(interval_unit="ms"))


def test_pyhrv_hour_of_nn_intervals_ingests_as_minute_level_heart_rate(tmp_path):
    import polars as pl
    import pyarrow.parquet as pq

    from helpers import nw2
    from nw2.pipeline import samples

    spec = tmp_path / "nni.yaml"
    spec.write_text("name: nni\nsources: [{dataset: pyhrv, sample: pyhrv_nni_long}]\n"
                    "preprocess: {target_fs: 1, detrend: false}\nwindows: {length: 512, stride: 256}\n"
                    "metrics: {enabled: false}\n")
    result = nw2("ingest", spec, "--out", tmp_path / "N", "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0, result.output
    t = pl.from_arrow(pq.read_table(tmp_path / "N" / "data"))
    assert sorted(t["channel"].unique()) == ["heart_rate", "ibi"] and set(t["modality"]) == {"hr"}
    assert t.filter(pl.col("channel") == "heart_rate").height == 13  # 60 min at 1 Hz: (3599 - 512) // 256 + 1
    nn = np.load(samples.fetch(["pyhrv_nni_long"])["pyhrv_nni_long"]) / 1000.0
    mean_rate = 60.0 * nn.size / nn.sum()                      # beats per minute over the hour: 78.1
    hr = t.filter(pl.col("channel") == "heart_rate")
    level = np.mean([np.mean(np.asarray(s) * sc + of) for s, sc, of in zip(hr["samples"], hr["scale"], hr["offset"])])
    assert abs(level - mean_rate) < 1.5


def test_a_gap_in_the_waveform_costs_its_own_seconds_not_the_recording():
    from nw2.pipeline.derive import derived_records
    from nw2.pipeline.records import Record

    ecg = nk.ecg_simulate(duration=120, sampling_rate=250, heart_rate=70, random_state=0)
    ecg[1000] = np.nan                                         # one lost sample at 4 s
    ecg[250 * 60:250 * 63] = np.nan                            # and a 3-s dropout at 60-63 s
    rec = Record("d", "s", "r", "ecg", "ecg", "mV", 250.0, ecg)
    (hr,) = derived_records([rec], ("heart_rate",), 1.0)
    assert hr.channel == "ecg:heart_rate" and hr.samples.size == 120
    assert np.isnan(hr.samples[[4, 60, 61, 62]]).all()         # the grid steps that held a missing sample
    kept = np.isfinite(hr.samples)
    assert kept.sum() >= 110 and abs(np.median(hr.samples[kept]) - 70) < 2.0
