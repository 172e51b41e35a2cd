"""CSV/TSV and OpenSignals readers on the real sample recordings."""

import bz2
import io

import numpy as np
import pytest

from nw2.pipeline import samples
from nw2.core.errors import InputError
from nw2.pipeline.readers import csv, detect_format, opensignals
from nw2.pipeline.readers.base import ReadOptions


def opts_of(name: str, **more) -> ReadOptions:
    return ReadOptions(**{**samples.lookup(name).options, **more})


def test_bz2_tsv_without_header_matches_numpy(sample):
    path = sample("pyphysio_medical")
    expected = np.loadtxt(io.BytesIO(bz2.decompress(path.read_bytes())))
    records = csv.read(path, opts_of("pyphysio_medical"))
    assert [r.channel for r in records] == ["ecg", "eda", "bvp", "resp"]
    assert [r.modality for r in records] == ["ecg", "eda", "ppg", "resp"]
    for i, rec in enumerate(records):
        assert rec.fs == 2048.0
        np.testing.assert_array_equal(rec.samples, expected[:, i])


def test_time_span_and_channel_selection(sample):
    path = sample("pyphysio_medical")
    full = csv.read(path, opts_of("pyphysio_medical"), channels=[3])[0]
    part = csv.read(path, opts_of("pyphysio_medical"), channels=[3], start_s=10.0, stop_s=12.5)[0]
    assert part.channel == "resp" and part.offset_s == 10.0
    np.testing.assert_array_equal(part.samples, full.samples[20480:25600])


def test_rate_from_a_jittery_datetime_column(sample):
    # data3 stamps ~100 Hz samples with a 15.6 ms clock: the median step would say 66.7 Hz.
    info = csv.probe(sample("heartpy_ppg_long"), opts_of("heartpy_ppg_long"))
    assert info[0].fs == pytest.approx(100.4, abs=0.1)
    rec = csv.read(sample("heartpy_ppg_long"), opts_of("heartpy_ppg_long"))[0]
    assert rec.start_time.year == 2016 and rec.modality == "ppg"


def test_rate_from_millisecond_timer_and_labels(sample):
    assert csv.probe(sample("heartpy_ppg_timer"), opts_of("heartpy_ppg_timer"))[0].fs == pytest.approx(117.0, abs=0.1)
    recs = csv.read(sample("daphnet_s06r02"), opts_of("daphnet_s06r02"))
    assert len(recs) == 9 and recs[0].fs == pytest.approx(64.0, abs=0.01)
    # the recording's is_anomaly column is 0 throughout (no freezing episode in it): one label per sample, all 0
    assert recs[0].labels is not None and recs[0].labels.shape == recs[0].samples.shape
    assert np.unique(recs[0].labels).tolist() == [0]


def test_headerless_csv_needs_a_rate(sample, tmp_path):
    with pytest.raises(InputError, match="no sampling rate"):
        csv.probe(sample("heartpy_ppg"), ReadOptions())
    assert csv.probe(sample("heartpy_ppg"), ReadOptions(fs=100.0))[0].n_samples == 2483


def test_non_numeric_column_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,x\n2,y\n")
    with pytest.raises(InputError, match=r"bad.csv: column 'b' is not numeric \(String, e.g. 'x'\): drop it"):
        csv.probe(bad, ReadOptions(fs=10.0))


def test_one_bad_cell_is_named_with_its_row_and_can_be_read_as_missing(tmp_path):
    rows = [f"{i},{np.sin(i / 5):.4f}" for i in range(200)]
    rows[57] = "57,ERR"
    rows[120] = "120, --"
    bad = tmp_path / "ppg.csv"
    bad.write_text("n,ppg\n" + "\n".join(rows) + "\n")
    with pytest.raises(InputError, match=r"column 'ppg' is not numeric: data row 58 holds 'ERR' \(2 such cells\); "
                                         r"fix them, or set extra.non_numeric: missing"):
        csv.probe(bad, ReadOptions(fs=10.0))
    (rec,) = csv.read(bad, ReadOptions(fs=10.0, extra={"non_numeric": "missing"}), [1])
    assert rec.samples.size == 200 and np.isnan(rec.samples[[57, 120]]).all()
    assert np.isfinite(np.delete(rec.samples, [57, 120])).all()


@pytest.mark.parametrize("name,channel,fs,n", [
    ("sync_acc", "XYZ_CH1", 1000.0, 40950),
    ("resp_opensignals", "RESPIRATION_PORT1_CHN1", 1000.0, 60000),
    ("bvp_opensignals", "BVP_CH1", 1000.0, 27300),
    ("pyhrv_ecg", "ECG_A2", 1000.0, 22350),
])
def test_opensignals_header_gives_rate_and_channels(sample, name, channel, fs, n):
    path = sample(name)
    assert detect_format(path) == "opensignals"
    rec = opensignals.read(path, ReadOptions())[0]
    assert (rec.channel, rec.fs, rec.samples.size, rec.unit) == (channel, fs, n, "adc")
    assert rec.modality == samples.lookup(name).modality
    # The values are the last column of the tab-separated rows, as written.
    rows = [ln.split("\t") for ln in path.read_text().splitlines() if not ln.startswith("#")]
    col = len(rows[0]) - 2 if rows[0][-1] == "" else len(rows[0]) - 1
    assert rec.samples[:100].tolist() == [float(r[col]) for r in rows[:100]] or name == "sync_acc"


def test_opensignals_span_and_broken_header(sample, tmp_path):
    path = sample("sync_acc")
    full = opensignals.read(path, ReadOptions(), channels=[2])[0]
    part = opensignals.read(path, ReadOptions(), channels=[2], start_s=1.5, stop_s=2.0)[0]
    np.testing.assert_array_equal(part.samples, full.samples[1500:2000])
    broken = tmp_path / "broken.txt"
    lines = path.read_text().splitlines()
    broken.write_text("\n".join([lines[0], "# {not json", *lines[2:50]]))
    with pytest.raises(InputError, match="broken.txt: OpenSignals JSON header is not valid JSON"):
        opensignals.probe(broken, ReadOptions())


def test_a_table_read_in_blocks_is_the_table_read_whole(tmp_path, monkeypatch):
    """Blocks of whole lines, parsed one by one, give the rows ``polars.read_csv`` gives for the whole file: every
    span, at any block size (a block here is about 40 rows), and a bad cell is named by its row in the file."""
    import polars as pl

    rng = np.random.default_rng(3)
    n = 5000
    t = np.arange(n) / 250.0
    x = np.round(rng.standard_normal((n, 2)), 4)
    path = tmp_path / "ppg.csv"
    lines = ["time,ppg,ecg"] + [f"{t[i]:.3f},{x[i, 0]},{x[i, 1]}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    whole = pl.read_csv(path)
    monkeypatch.setattr(csv, "BLOCK_BYTES", 1000)
    csv._CACHE.clear()
    (info, _) = csv.probe(path, ReadOptions())
    assert info.fs == 250.0 and info.n_samples == n
    for start, stop in [(0.0, None), (3.3, 7.9), (19.9, None)]:
        recs = csv.read(path, ReadOptions(), [0, 1], start, stop)
        lo = int(round(start * 250))
        hi = n if stop is None else int(np.ceil(stop * 250))
        np.testing.assert_array_equal(recs[0].samples, whole["ppg"].to_numpy()[lo:hi])
        np.testing.assert_array_equal(recs[1].samples, whole["ecg"].to_numpy()[lo:hi])
        assert recs[0].offset_s == lo / 250
    lines[4001] = lines[4001].split(",")[0] + ",ERR,0.5"
    path.write_text("\n".join(lines) + "\n")
    csv._CACHE.clear()
    with pytest.raises(InputError, match=r"column 'ppg' is not numeric: data row 4001 holds 'ERR' \(1 such cell\)"):
        csv.probe(path, ReadOptions())


def test_a_compression_bomb_is_refused_naming_the_option_after_reading_no_more_than_the_cap(tmp_path):
    """A small .csv.bz2 that inflates to 25 MB is refused at a 2 MB cap, streamed (never inflated whole), and read
    when the cap allows it."""
    import resource

    bomb = tmp_path / "bomb.csv.bz2"
    bomb.write_bytes(bz2.compress(b"ppg\n" + b"0.25\n" * 5_000_000, 9))
    assert bomb.stat().st_size < 20_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match=r"bomb.csv.bz2: decompresses to more than 2 MB \(a compression bomb\?\); "
                                         r"set extra.max_decompressed_mb to read it"):
        csv.probe(bomb, ReadOptions(fs=100.0, extra={"max_decompressed_mb": 2}))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 20_000  # KB: below the 25 MB inflated
    csv._CACHE.clear()
    assert csv.probe(bomb, ReadOptions(fs=100.0, extra={"max_decompressed_mb": 100}))[0].n_samples == 5_000_000
