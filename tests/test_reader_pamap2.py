"""PAMAP2 reader, on a PAMAP2-layout file built from real Daphnet accelerometry and MIT-BIH heart rate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import signal as sps

from make_pamap2 import DROPOUTS, HR_GAP_S, TRANSIENT_S, build_pamap2_dat
from nw2.core.errors import InputError
from nw2.pipeline.readers import pamap2
from nw2.pipeline.readers.base import ReadOptions

IMUS = ("hand", "chest", "ankle")
SOURCE = {"hand": "leg", "chest": "trunk", "ankle": "ankle"}
AXES = {"x": "horiz_fwd", "y": "vert", "z": "horiz_lateral"}


@pytest.fixture(scope="module")
def dat(sample, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pamap2") / "subject199.dat"
    return build_pamap2_dat(sample("daphnet_s06r02"), out, sample("mitbih_208"))


@pytest.fixture(scope="module")
def records(dat):
    return {r.channel: r for r in pamap2.read(dat)}


@pytest.fixture(scope="module")
def daphnet(sample):
    return pl.read_csv(sample("daphnet_s06r02"))


def dropout_mask(imu: str, n: int) -> np.ndarray:
    mask = np.zeros(n, bool)
    for start, stop in DROPOUTS[imu]:
        mask[start:stop] = True
    return mask


def test_probe_lists_31_channels_at_100_hz(dat):
    info = pamap2.probe(dat)
    names = [c.name for c in info]
    assert names[0] == "heart_rate" and len(names) == 31
    for imu in IMUS:
        assert [n for n in names if n.startswith(imu + "_")] == [
            f"{imu}_temperature", f"{imu}_acc16_x", f"{imu}_acc16_y", f"{imu}_acc16_z",
            f"{imu}_gyro_x", f"{imu}_gyro_y", f"{imu}_gyro_z", f"{imu}_mag_x", f"{imu}_mag_y", f"{imu}_mag_z"]
    assert not [n for n in names if "acc6" in n or "orient" in n]
    assert {c.fs for c in info} == {100.0}
    assert {c.n_samples for c in info} == {11000}  # 7040 Daphnet samples at 64 Hz -> 110 s at 100 Hz
    by_name = {c.name: c for c in info}
    assert (by_name["heart_rate"].modality, by_name["heart_rate"].unit) == ("hr", "bpm")
    assert (by_name["chest_temperature"].modality, by_name["chest_temperature"].unit) == ("temp", "°C")
    assert (by_name["ankle_acc16_z"].modality, by_name["ankle_acc16_z"].unit) == ("acc", "m/s^2")
    assert (by_name["hand_gyro_x"].modality, by_name["hand_gyro_x"].unit) == ("other", "rad/s")
    assert (by_name["hand_mag_y"].modality, by_name["hand_mag_y"].unit) == ("other", "uT")


def test_read_matches_probe(dat, records):
    info = pamap2.probe(dat)
    assert list(records) == [c.name for c in info]
    for c in info:
        r = records[c.name]
        assert (r.fs, len(r.samples), r.modality, r.unit) == (c.fs, c.n_samples, c.modality, c.unit)
        assert r.samples.dtype == np.float64 and r.offset_s == 0.0
        assert (r.subject, r.record, r.dataset) == ("subject199", "subject199", "default")


def test_acc16_is_the_daphnet_signal_resampled_and_in_m_s2(records, daphnet):
    for imu in IMUS:
        dropped = dropout_mask(imu, 11000)
        for axis, source in AXES.items():
            mg = daphnet[f"{SOURCE[imu]}_{source}"].to_numpy().astype(float)
            expected = sps.resample_poly(mg, 25, 16) * 9.80665e-3
            got = records[f"{imu}_acc16_{axis}"].samples
            assert np.isnan(got[dropped]).all()
            np.testing.assert_allclose(got[~dropped], expected[~dropped], rtol=0, atol=6e-7)
    # Physical sanity: the ankle's vertical axis carries gravity.
    assert np.nanmedian(records["ankle_acc16_y"].samples) == pytest.approx(9.81, abs=0.6)


def test_dropouts_stay_nan_per_imu(records):
    for imu in IMUS:
        dropped = dropout_mask(imu, 11000)
        for axis in "xyz":
            assert np.array_equal(np.isnan(records[f"{imu}_acc16_{axis}"].samples), dropped)
        # No real source for these: NaN throughout, as written.
        for name in ("temperature", "gyro_x", "gyro_y", "gyro_z", "mag_x", "mag_y", "mag_z"):
            assert np.isnan(records[f"{imu}_{name}"].samples).all()


def test_labels_are_activity_ids(records):
    labels = records["chest_acc16_x"].labels
    assert labels.dtype == np.int64 and len(labels) == 11000
    n_transient = int(TRANSIENT_S * 100)
    assert (labels[:n_transient] == 0).all() and (labels[n_transient:] == 4).all()
    for r in records.values():
        assert np.array_equal(r.labels, labels)


def test_heart_rate_short_gaps_interpolated_long_gap_kept(dat, records):
    raw = np.loadtxt(dat, usecols=2)
    hr = records["heart_rate"].samples
    readings = np.flatnonzero(np.isfinite(raw))
    assert np.all(np.diff(readings)[np.diff(readings) < 200] == 11)  # ~9 Hz inside the 100 Hz rows
    np.testing.assert_array_equal(hr[readings], raw[readings])
    # Linear between two readings 11 rows apart.
    a = readings[100]
    assert readings[101] == a + 11
    np.testing.assert_allclose(hr[a:a + 12], np.linspace(raw[a], raw[a + 11], 12))
    # Before the first reading, and over the 3 s contact loss: still NaN.
    assert np.isnan(hr[:readings[0]]).all()
    gap_rows = np.arange(int(HR_GAP_S[0] * 100), int(HR_GAP_S[1] * 100))
    assert np.isnan(hr[gap_rows]).all()
    # Between the first and the last reading, only the long gap is left NaN.
    assert 300 <= np.count_nonzero(np.isnan(hr[readings[0]:readings[-1]])) < 300 + 2 * 11
    # MIT-BIH 208 runs near 100 bpm.
    assert 40 < np.nanmin(hr) and np.nanmax(hr) < 200 and 90 < np.nanmedian(hr) < 115


def test_time_span(dat, records):
    part = {r.channel: r for r in pamap2.read(dat, start_s=20.0, stop_s=30.5)}
    for name, r in part.items():
        assert r.offset_s == 20.0 and len(r.samples) == 1050
        np.testing.assert_array_equal(r.samples, records[name].samples[2000:3050])
        np.testing.assert_array_equal(r.labels, records[name].labels[2000:3050])
    # A span over the hand dropout keeps its NaN rows at the same times.
    hand = part["hand_acc16_x"].samples
    assert np.isnan(hand[:50]).all() and np.isfinite(hand[50:]).all()
    tail = pamap2.read(dat, channels=[0], start_s=105.0)[0]
    assert (len(tail.samples), tail.offset_s) == (500, 105.0)
    assert len(pamap2.read(dat, channels=[0], start_s=200.0)[0].samples) == 0


def test_channel_selection_and_options(dat):
    picked = pamap2.read(dat, ReadOptions(subject="p199", dataset="pamap2", record="r1"), channels=[0, 3])
    assert [r.channel for r in picked] == ["heart_rate", "hand_acc16_y"]
    assert {(r.subject, r.dataset, r.record) for r in picked} == {("p199", "pamap2", "r1")}
    with pytest.raises(InputError, match="channel index 31 out of range"):
        pamap2.read(dat, channels=[31])
    # fs within 5 % of the timestamp step is accepted and used; a rate that disagrees is refused.
    assert pamap2.read(dat, ReadOptions(fs=102.0), channels=[1])[0].fs == 102.0
    with pytest.raises(InputError, match="disagrees with fs=50 Hz"):
        pamap2.read(dat, ReadOptions(fs=50.0))


def test_wrong_column_count_names_the_file(dat, tmp_path):
    bad = tmp_path / "subject042.dat"
    lines = dat.read_text().splitlines()[:20]
    bad.write_text("".join(" ".join(line.split()[:53]) + "\n" for line in lines))
    for call in (pamap2.probe, pamap2.read):
        with pytest.raises(InputError) as err:
            call(bad)
        assert err.value.reason == "expected 54 whitespace-separated columns (PAMAP2 layout), found 53"
        assert "subject042.dat" in str(err.value)


def test_ragged_or_garbled_rows_are_input_errors(dat, tmp_path):
    lines = dat.read_text().splitlines(keepends=True)[:50]
    ragged = tmp_path / "ragged.dat"
    ragged.write_text("".join(lines[:10]) + " ".join(lines[10].split()[:40]) + "\n" + "".join(lines[11:]))
    with pytest.raises(InputError, match="ragged.dat"):
        pamap2.read(ragged)
    garbled = tmp_path / "garbled.dat"
    garbled.write_text("".join(lines[:10]) + lines[10].replace("NaN", "n/a", 1) + "".join(lines[11:]))
    with pytest.raises(InputError, match="not a PAMAP2 table"):
        pamap2.read(garbled)
    empty = tmp_path / "empty.dat"
    empty.write_text("")
    with pytest.raises(InputError, match="empty file"):
        pamap2.read(empty)


def test_other_whitespace_reads_the_same(dat, tmp_path):
    lines = dat.read_text().splitlines()[:300]
    spaced = tmp_path / "spaced.dat"
    spaced.write_text("".join("  ".join(line.split()) + " \r\n" for line in lines))
    plain = tmp_path / "plain.dat"
    plain.write_text("".join(line + "\n" for line in lines))
    for a, b in zip(pamap2.read(spaced), pamap2.read(plain)):
        np.testing.assert_array_equal(a.samples, b.samples)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_interpolate_short_gaps():
    nan = np.nan
    values = np.array([nan, 1.0, nan, 3.0, nan, nan, nan, nan, 8.0, nan])
    out = pamap2.interpolate_short_gaps(values, max_gap=4)
    np.testing.assert_array_equal(out, [nan, 1.0, 2.0, 3.0, nan, nan, nan, nan, 8.0, nan])
    out = pamap2.interpolate_short_gaps(values, max_gap=5)
    np.testing.assert_array_equal(out, [nan, 1, 2, 3, 4, 5, 6, 7, 8, nan])


def test_sniff(dat, sample, tmp_path):
    head = dat.read_bytes()[:4096]
    assert pamap2.sniff(dat, head)
    assert not pamap2.sniff(tmp_path / "subject199.txt", head)
    daphnet = sample("daphnet_s06r02")
    assert not pamap2.sniff(tmp_path / "daphnet.dat", daphnet.read_bytes()[:4096])
    assert not pamap2.sniff(dat, b"\x80\x02}q\x00.")


def test_detect_format(dat):
    try:
        from nw2.pipeline.readers import detect_format

        fmt = detect_format(dat)
    except ImportError as err:  # other readers not written yet
        pytest.skip(f"detect_format needs every reader module: {err}")
    assert fmt == "pamap2"


def test_single_spaced_file_takes_the_polars_path(dat, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("np.loadtxt fallback used on a single-spaced file")

    monkeypatch.setattr(pamap2.np, "loadtxt", refuse)
    assert len(pamap2.read(dat, channels=[2])[0].samples) == 11000
