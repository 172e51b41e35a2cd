"""One folder with a real recording in every format, ingested with format detection."""

from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from helpers import nw2
from make_pamap2 import build_pamap2_dat
from make_wesad import build_wesad_pickle
from make_wfdb import build_wfdb_record


def test_every_format_in_one_folder(sample, tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    build_wfdb_record(sample("mitbih_208"), folder)
    shutil.copy(sample("supine_ecg"), folder / "supine.edf")
    shutil.copy(sample("bvp_opensignals"), folder / "bvp.txt")
    shutil.copy(sample("daphnet_s06r02"), folder / "daphnet.csv")
    ecg = np.load(sample("mitbih_208"))["ecg"]
    np.savez(folder / "mitbih.npz", ecg=ecg, fs=360.0)
    build_pamap2_dat(sample("daphnet_s06r02"), folder / "subject199.dat", sample("mitbih_208"))
    build_wesad_pickle(sample("pyphysio_medical"), sample("sync_acc"), folder / "S99.pkl")
    pq.write_table(pa.table({"time": np.arange(7200) / 360.0, "ecg": ecg[:7200]}), folder / "ecg.parquet")
    spec = tmp_path / "all.yaml"
    spec.write_text(f"""
name: all
sources:
  - {{dataset: mixed, paths: [{folder}]}}
windows: {{length: 512, stride: 512}}
""")
    out = tmp_path / "store"
    result = nw2("ingest", spec, "--out", out, "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0, result.output
    entries = json.loads((out / "manifest.json").read_text())["inputs"]
    assert {e["path"]: e["status"] for e in entries} == {
        "recordings/208.hea": "ingested", "recordings/supine.edf": "ingested", "recordings/bvp.txt": "ingested",
        "recordings/daphnet.csv": "ingested", "recordings/mitbih.npz": "ingested",
        "recordings/subject199.dat": "ingested", "recordings/S99.pkl": "ingested",
        "recordings/ecg.parquet": "ingested"}
    assert {e["format"] for e in entries} == {"wfdb", "edf", "opensignals", "csv", "numpy", "pamap2", "wesad", "parquet"}
    df = pl.read_parquet(out / "data" / "*.parquet")
    # WESAD chest (700 Hz) and wrist (4-64 Hz) channels of one moment share a group id.
    wesad = df.filter(pl.col("source") == "recordings/S99.pkl")
    per_group = wesad.group_by("group_id").agg(pl.col("source_fs").n_unique())
    assert per_group["source_fs"].max() >= 3
    assert set(wesad["label"].drop_nulls().unique()) <= {"1", "2"}
    # The same MIT-BIH samples through WFDB and NumPy give the same windows.
    a = df.filter(pl.col("source") == "recordings/208.hea").sort("start_s")["samples"].to_list()
    b = df.filter(pl.col("source") == "recordings/mitbih.npz").sort("start_s")["samples"].to_list()
    np.testing.assert_allclose(np.array(a[:5]), np.array(b[:5]), atol=1e-5)
