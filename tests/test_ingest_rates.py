"""Target rates per modality (``preprocess.rates``): each modality stored at its own rate, one store."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from helpers import nw2
from nw2.core.errors import SpecError
from nw2.core.hashing import content_id
from nw2.pipeline.pieces import spec_fingerprint
from nw2.pipeline.spec import spec_from_dict


def _ingest(tmp_path, text: str, name: str = "rates"):
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(text)
    result = nw2("ingest", spec, "--out", tmp_path / name, "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 0, result.output
    return pl.from_arrow(pq.read_table(tmp_path / name / "data"))


def test_each_modality_is_stored_at_its_own_rate(tmp_path):
    t = _ingest(tmp_path, "name: rates\nsources: [{dataset: medical, sample: pyphysio_medical}]\n"
                          "preprocess: {target_fs: 100, rates: {ecg: 256, ppg: 64, eda: 4}}\n"
                          "windows: {length: 256, stride: 256}\nmetrics: {enabled: false}\n")
    got = {r["modality"]: (r["fs"], r["len"]) for r in t.group_by("modality", "fs").len().iter_rows(named=True)}
    # 120 s: ECG 256 Hz -> 120 windows of 1 s, PPG 64 Hz -> 30 of 4 s, EDA 4 Hz -> 1 of 64 s, resp at target_fs 100
    assert got == {"ecg": (256.0, 120), "ppg": (64.0, 30), "eda": (4.0, 1), "resp": (100.0, 46)}
    assert t["window_id"].n_unique() == t.height
    # one window's samples are the channel at its rate: a 1-s ECG window holds about one beat (69 bpm)
    ecg = t.filter(pl.col("modality") == "ecg").sort("start_s")
    assert np.allclose(np.diff(ecg["start_s"].to_numpy()), 1.0)


def test_a_waveform_and_its_heart_rate_share_one_store_at_two_rates(tmp_path):
    pytest.importorskip("neurokit2")
    t = _ingest(tmp_path, "name: both\nsources:\n"
                          "  - {dataset: medical, sample: pyphysio_medical, channels: [ecg]}\n"
                          "  - {dataset: medical, sample: pyphysio_medical, channels: [ecg], derive: [heart_rate]}\n"
                          "preprocess: {target_fs: 100, rates: {ecg: 256, hr: 1}, detrend: false}\n"
                          "windows: {length: 32, stride: 32}\nmetrics: {enabled: false}\n", name="both")
    got = {r["channel"]: (r["modality"], r["fs"], r["len"])
           for r in t.group_by("channel", "modality", "fs").len().iter_rows(named=True)}
    assert got == {"ecg": ("ecg", 256.0, 960), "ecg:heart_rate": ("hr", 1.0, 3)}


@pytest.mark.parametrize("preprocess, message", [
    ({"rates": {"heart": 1}}, "'heart' is not a modality"),
    ({"rates": {"eda": 0}}, r"rates\.eda: must be a positive number"),
    ({"rates": {"eda": 4}, "bandpass": [0.5, 40]}, r"high edge 40 Hz must lie below half of rates\.eda = 4 Hz"),
    ({"rates": {"eeg": 80}, "notch": 50}, r"notch: 50 Hz must lie below half of rates\.eeg = 80 Hz"),
])
def test_rates_that_cannot_work_are_spec_errors(preprocess, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict({"name": "x", "sources": [{"dataset": "m", "sample": "mitbih_208"}], "preprocess": preprocess})


def test_a_spec_without_rates_or_lengths_keeps_the_fingerprint_stores_were_built_with():
    spec = spec_from_dict({"name": "x", "sources": [{"dataset": "m", "sample": "mitbih_208"}]})
    pre, win = dataclasses.asdict(spec.preprocess), dataclasses.asdict(spec.windows)
    del pre["rates"], win["lengths"], win["strides"]
    before = content_id(pre, win, dataclasses.asdict(spec.split))
    assert spec_fingerprint(spec) == before
    rated = dataclasses.replace(spec, preprocess=dataclasses.replace(spec.preprocess, rates={"ecg": 250}))
    assert spec_fingerprint(rated) != before
    longer = dataclasses.replace(spec, windows=dataclasses.replace(spec.windows, lengths={"ecg": 2048}))
    assert spec_fingerprint(longer) != before


def test_window_lengths_per_modality_give_each_its_own_span(tmp_path):
    t = _ingest(tmp_path, "name: lengths\nsources: [{dataset: medical, sample: pyphysio_medical}]\n"
                          "preprocess: {target_fs: 100, rates: {ecg: 256, eda: 4}}\n"
                          "windows: {length: 256, stride: 128, lengths: {ecg: 2048, eda: 64}, strides: {eda: 16}}\n"
                          "metrics: {enabled: false}\n", name="lengths")
    got = {r["modality"]: (r["fs"], r["length"], r["len"])
           for r in t.group_by("modality", "fs", "length").len().iter_rows(named=True)}
    # ECG 8-s windows every 4 s (stride keeps length / 2), EDA 16-s windows every 4 s, the rest 2.56 s every 1.28 s
    assert got["ecg"] == (256.0, 2048, 29) and got["eda"] == (4.0, 64, 27) and got["ppg"][:2] == (100.0, 256)
    ecg = t.filter(pl.col("modality") == "ecg").sort("start_s")
    assert np.allclose(np.diff(ecg["start_s"].to_numpy()), 4.0)


@pytest.mark.parametrize("windows, message", [
    ({"lengths": {"ecgg": 512}}, r"windows\.lengths: 'ecgg' is not a modality"),
    ({"lengths": {"ecg": 4}}, r"windows\.lengths\.ecg: must be an integer >= 8"),
    ({"strides": {"ecg": 0}}, r"windows\.strides\.ecg: must be an integer >= 1"),
])
def test_window_shapes_that_cannot_work_are_spec_errors(windows, message):
    with pytest.raises(SpecError, match=message):
        spec_from_dict({"name": "x", "sources": [{"dataset": "m", "sample": "mitbih_208"}], "windows": windows})


def test_rates_for_a_modality_that_synthetic_sources_generate_are_refused():
    with pytest.raises(SpecError, match=r"preprocess\.rates: 'ecg' is also a modality of this spec's synthetic"):
        spec_from_dict({"name": "x", "sources": [{"dataset": "m", "sample": "mitbih_208"},
                                                 {"kind": "synthetic", "generator": "physio", "systems": ["ecg"]}],
                        "preprocess": {"rates": {"ecg": 256}}})
    with pytest.raises(SpecError, match=r"windows\.lengths: 'synthetic'"):
        spec_from_dict({"name": "x", "sources": [{"kind": "synthetic", "generator": "dysts", "systems": ["Lorenz"]}],
                        "windows": {"lengths": {"synthetic": 512}}})
