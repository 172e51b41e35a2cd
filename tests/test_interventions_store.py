"""Interventions from the spec through the store, the corpus, the loader, ``nw2 pretrain`` and ``nw2 evaluate``
(store schema v4: the ``role`` and ``categories`` columns; ``docs/window_store.md``, "Interventions").

Sources with known answers: the driven oscillator (``generator: driven``), whose forcing is a known-ahead
intervention, and a CSV whose dose column and activity label are declared as interventions in its spec."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from helpers import SMALL, nw2, ok, read_all, read_corpus
from nw2.model.data import CorpusLoader, LoaderConfig

BASE = {"preprocess": {"target_fs": 100}, "windows": {"length": 512, "stride": 512}}
DRIVEN = {"kind": "synthetic", "generator": "driven", "systems": ["oscillator"], "windows": 6,
          "sweeps": {"oscillator": {"zeta": [0.1, 0.4], "steps": 8}}, "bands": 4}


@pytest.fixture(scope="module")
def driven_store(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("iv")
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "iv", "sources": [DRIVEN], **BASE}))
    ok("ingest", spec, "--out", root / "S", "--scheduler", "sync", "--no-progress")
    ok("metrics", root / "S", "--metrics", "dfa,sample_entropy,permutation_entropy", "--no-progress")
    return root / "S"


@pytest.fixture(scope="module")
def driven_corpus(driven_store: Path) -> Path:
    out = driven_store.parent / "C"
    ok("balance", driven_store, "--out", out, "--strategy", "grid", "--fraction", "0.5", "--no-report")
    return out


def test_the_forcing_is_a_known_intervention_in_its_own_units_tied_to_its_window(driven_store: Path):
    rows = read_all(driven_store).to_pylist()
    forcing = [r for r in rows if r["channel"] == "forcing"]
    signals = [r for r in rows if r["channel"] == "x0"]
    assert forcing and len(forcing) == len(signals)
    assert {r["role"] for r in forcing} == {"known"} and {r["role"] for r in signals} == {"signal"}
    assert all(r["categories"] is None for r in rows)
    # never normalized, detrended or filtered: a step signal of a few held levels, scale 1 and offset 0
    for r in forcing:
        assert (r["scale"], r["offset"]) == (1.0, 0.0)
        u = np.asarray(r["samples"])
        assert np.unique(u).size <= 512 // 40 + 2
    # the signals are normalized as ever
    assert all(abs(np.mean(r["samples"])) < 1e-3 for r in signals)
    assert {r["group_id"] for r in forcing} == {r["group_id"] for r in signals}
    assert pq.read_schema(next((driven_store / "data").glob("part-*.parquet"))).metadata[b"nw2.schema_version"] == b"4"


def test_metrics_are_not_measured_on_interventions_and_say_why(driven_store: Path):
    rows = read_all(driven_store).to_pylist()
    for r in rows:
        if r["role"] == "known":
            assert r["dfa"] is None and r["sample_entropy"] is None
            assert {e["kind"] for e in r["metrics_undefined"]} == {"intervention"}
        else:
            assert r["dfa"] is not None
    undefined = json.loads((driven_store / "metrics.json").read_text())["undefined"]
    assert undefined["dfa"]["intervention"] == sum(r["role"] == "known" for r in rows)


def test_the_corpus_carries_each_selected_windows_interventions_once_and_no_others(driven_store, driven_corpus):
    table, info = read_corpus(driven_corpus)
    rows = table.to_pylist()
    signal_groups = {r["group_id"] for r in rows if r["role"] == "signal"}
    carried = [r for r in rows if r["role"] == "known"]
    assert carried, "no intervention row carried"
    assert {r["group_id"] for r in carried} == signal_groups  # every window of the oscillator is forced
    assert len(carried) == len({r["group_id"] for r in carried})  # once each
    # a half of the train windows was drawn: the others' forcing stays behind
    store_train = {r["group_id"] for r in read_all(driven_store).to_pylist() if r["split"] == "train"}
    assert {r["group_id"] for r in carried if r["split"] == "train"} < store_train
    assert info["selected"] == sum(r["role"] == "signal" and r["split"] == "train" for r in rows)
    assert info["interventions"] == {"rows": len(carried),
                                     "channels": {"forcing": {"role": "known", "rows": len(carried),
                                                              "categories": None}}}


def test_the_loader_gives_each_sample_its_groups_forcing_cropped_with_it(driven_corpus: Path):
    rows = read_all(driven_corpus).to_pylist()
    forcing = {r["group_id"]: np.asarray(r["samples"], np.float32) for r in rows if r["role"] == "known"}
    signal = {r["group_id"]: np.asarray(r["samples"], np.float32) for r in rows
              if r["role"] == "signal" and r["split"] == "test"}
    cfg = LoaderConfig(driven_corpus, split="test", batch_size=8, window_size=256, nvar=2, random_crop=True,
                       interventions=("forcing",), seed=3)
    seen = 0
    for x, mask, u in CorpusLoader(cfg, 0, 1):
        assert u.shape == (x.shape[0], 256, 1)
        for b in range(x.shape[0]):
            assert mask[b].tolist() == [True, False]  # the forcing is no channel of the sample
            xb = x[b, :, 0].numpy()
            gid = next(g for g, s in signal.items() if any(np.array_equal(s[k:k + 256], xb) for k in range(257)))
            k = next(k for k in range(257) if np.array_equal(signal[gid][k:k + 256], xb))
            np.testing.assert_array_equal(u[b, :, 0].numpy(), forcing[gid][k:k + 256])
            seen += 1
    assert seen == len(signal)
    plain = CorpusLoader(LoaderConfig(driven_corpus, split="test", batch_size=64, window_size=256, nvar=2), 0, 1)
    assert [len(b) for b in plain] == [2] and plain.expected_samples() == len(signal)


def test_pretrain_and_evaluate_with_the_forcing_as_input(driven_corpus: Path, tmp_path: Path):
    run = tmp_path / "run"
    ok("pretrain", driven_corpus, "--out", run, *SMALL, "--epochs", "2", "--intervention-inputs", "forcing")
    config = json.loads((run / "model" / "config.json").read_text())
    assert (config["interventions"], config["intervention_inputs"]) == (1, ["forcing"])
    ok("evaluate", run, "--data", driven_corpus, "--split", "val,test", "--no-probe")
    metrics = json.loads((run / "eval-val-test" / "metrics.json").read_text())
    section = metrics["forecast"]["interventions"]
    assert section["inputs"] == ["forcing"]
    counts = {k: v["windows"] for k, v in section["by_window"].items()}
    assert counts["none"] == 0 and counts["changing_in_horizon"] > 0
    assert sum(counts.values()) == metrics["data"]["evaluated"]  # intervention rows are never evaluated windows
    assert "without_interventions" in metrics["forecast"]["methods"]


def test_pretrain_refuses_an_intervention_the_corpus_lacks_and_an_observed_one(driven_corpus, tmp_path: Path):
    result = nw2("pretrain", driven_corpus, "--out", tmp_path / "r", *SMALL, "--intervention-inputs", "dose")
    assert result.exit_code == 1
    assert "no intervention 'dose' (it holds: forcing (known))" in result.output


# -- a recording's channel and label as interventions ------------------------------------------------------------
def _csv(path: Path, n: int = 6000, fs: float = 100.0) -> Path:
    t = np.arange(n) / fs
    rng = np.random.default_rng(0)
    ppg = np.sin(2 * np.pi * 1.2 * t) + 0.05 * rng.standard_normal(n)
    dose = np.repeat([0.0, 2.5, 5.0], -(-n // 3))[:n]
    activity = np.repeat(["sit", "walk", "sit", "run", "jump"], -(-n // 5))[:n]  # "jump" is no listed category
    lines = ["ppg,dose,activity"] + [f"{a:.6f},{b},{c}" for a, b, c in zip(ppg, dose, activity)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _recording_spec(tmp_path: Path, **interventions) -> Path:
    source = {"dataset": "rec", "paths": ["rec.csv"], "fs": 100, "modality": "ppg", "label_column": "activity",
              "subject": "s1", "interventions": interventions.get("items", [
                  {"channel": "dose", "availability": "known"},
                  {"label": True, "name": "activity", "availability": "observed", "kind": "categorical",
                   "categories": ["sit", "walk", "run"]}])}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "rec", "sources": [source], "preprocess": {"target_fs": 50},
                                    "windows": {"length": 500, "stride": 500}}))
    return spec


def test_a_channel_and_the_label_of_a_recording_become_interventions(tmp_path: Path):
    _csv(tmp_path / "rec.csv")
    ok("ingest", _recording_spec(tmp_path), "--out", tmp_path / "S", "--scheduler", "sync", "--no-progress")
    rows = read_all(tmp_path / "S").to_pylist()
    by = {}
    for r in rows:
        by.setdefault(r["channel"], []).append(r)
    assert sorted(by) == ["activity", "dose", "ppg"]
    assert {r["role"] for r in by["ppg"]} == {"signal"}
    assert {r["role"] for r in by["dose"]} == {"known"} and {r["role"] for r in by["activity"]} == {"observed"}
    # the dose in its own units at 50 Hz, held from sample to sample
    dose = np.concatenate([r["samples"] for r in sorted(by["dose"], key=lambda r: r["start_s"])])
    assert set(np.unique(dose).tolist()) == {0.0, 2.5, 5.0} and dose.size == 6000 // 2
    # the activity as codes of its listed categories; "jump" is none of them: missing, and so is that window
    assert {tuple(r["categories"]) for r in by["activity"]} == {("sit", "walk", "run")}
    codes = {r["start_s"]: (sorted(set(np.asarray(r["samples"])[np.isfinite(r["samples"])].tolist())),
                            round(r["missing_fraction"], 3)) for r in by["activity"]}
    # sit 0-12 s, walk 12-24 s, sit 24-36 s, run 36-48 s, jump 48-60 s; windows of 10 s, max_missing 0.2
    assert codes == {0.0: ([0.0], 0.0), 10.0: ([0.0, 1.0], 0.0), 20.0: ([0.0, 1.0], 0.0), 30.0: ([0.0, 2.0], 0.0),
                     40.0: ([2.0], 0.2)}
    assert len(by["activity"]) == 5 < len(by["ppg"]) == 6  # the last window is all "jump": missing
    groups = {r["group_id"] for r in by["ppg"]}
    assert {r["group_id"] for r in by["dose"] + by["activity"]} <= groups
    manifest = json.loads((tmp_path / "S" / "manifest.json").read_text())
    assert manifest["inputs"][0]["status"] == "ingested"


@pytest.mark.parametrize("items, message", [
    ([{"channel": "dose"}], "missing required field 'availability'"),
    ([{"channel": "dose", "label": True, "availability": "known"}], "give exactly one of 'channel'"),
    ([{"label": True, "availability": "known", "kind": "categorical"}], "never guessed from the data"),
    ([{"channel": "dose", "availability": "known", "categories": [1, 2]}], "only a categorical intervention"),
    ([{"channel": "dose", "availability": "later"}], "'later' is not one of known, observed"),
])
def test_an_unclear_intervention_is_refused_naming_the_field(tmp_path: Path, items, message):
    _csv(tmp_path / "rec.csv", n=1000)
    result = nw2("ingest", _recording_spec(tmp_path, items=items), "--out", tmp_path / "S", "--no-progress")
    assert result.exit_code == 1 and message in result.output, result.output
    assert "sources[0].interventions[0]" in result.output


def test_an_intervention_channel_the_file_lacks_fails_that_file_with_the_reason(tmp_path: Path):
    _csv(tmp_path / "rec.csv", n=1000)
    spec = _recording_spec(tmp_path, items=[{"channel": "insulin", "availability": "known"}])
    result = nw2("ingest", spec, "--out", tmp_path / "S", "--scheduler", "sync", "--no-progress")
    entry = json.loads((tmp_path / "S" / "manifest.json").read_text())["inputs"][0]
    assert entry["status"] == "failed", result.output
    assert entry["reason"] == "intervention channel 'insulin' not found (channels: ppg, dose)"


# -- the label of real datasets' layouts as categorical interventions ------------------------------------------------
def test_wesad_conditions_and_daphnet_freezes_are_categorical_interventions(sample, tmp_path: Path):
    from make_wesad import build_wesad_pickle

    build_wesad_pickle(sample("pyphysio_medical"), sample("sync_acc"), tmp_path / "S99.pkl")
    condition = {"label": True, "name": "condition", "availability": "known", "kind": "categorical",
                 "categories": [0, 1, 2, 3, 4]}  # WESAD: transient, baseline, stress, amusement, meditation
    freeze = {"label": True, "name": "freeze", "availability": "observed", "kind": "categorical", "categories": [0, 1]}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "labels", "sources": [
        {"dataset": "wesad", "paths": ["S99.pkl"], "format": "wesad", "channels": ["chest_ECG", "wrist_BVP"],
         "interventions": [condition]},
        {"dataset": "daphnet", "sample": "daphnet_s06r02", "channels": ["ankle_vert"], "interventions": [freeze]}],
        "preprocess": {"target_fs": 32}, "windows": {"length": 256, "stride": 256}, "metrics": {"enabled": False}}))
    ok("ingest", spec, "--out", tmp_path / "S", "--scheduler", "sync", "--no-progress")
    rows = read_all(tmp_path / "S").to_pylist()
    wesad = [r for r in rows if r["dataset"] == "wesad"]
    cond = sorted((r for r in wesad if r["channel"] == "condition"), key=lambda r: r["start_s"])
    signal_groups = {r["group_id"] for r in wesad if r["role"] == "signal"}
    assert {r["channel"] for r in wesad if r["role"] == "signal"} == {"chest_ECG", "wrist_BVP"}
    assert {r["group_id"] for r in cond} == signal_groups  # one condition row per window, in every window
    assert len(cond) == len(signal_groups)
    assert {(r["role"], tuple(r["categories"]), r["modality"]) for r in cond} == {("known", ("0", "1", "2", "3", "4"),
                                                                                   "other")}
    # the builder's schedule: baseline (code 1) for the first half, stress (code 2) after
    codes = np.concatenate([r["samples"] for r in cond])
    assert set(np.unique(codes).tolist()) == {1.0, 2.0}
    assert np.all(np.diff(codes) >= 0)  # one switch, from baseline to stress
    daphnet = [r for r in rows if r["dataset"] == "daphnet"]
    frz = [r for r in daphnet if r["channel"] == "freeze"]
    assert frz and len(frz) == sum(r["role"] == "signal" for r in daphnet)
    assert {r["role"] for r in frz} == {"observed"}
    assert {v for r in frz for v in r["samples"]} == {0.0}  # S06R02's excerpt has no freeze of gait


def test_every_window_of_a_long_recording_gets_its_dose_across_row_groups(tmp_path: Path):
    # a part holds a piece's channels one after another: with 468 windows of 3 rows each, most windows' dose rows
    # lie in another row group (of 1024 rows) than their signals, and were lost to the loader (NaN: "none")
    n = 30000
    rng = np.random.default_rng(1)
    t = np.arange(n) / 100
    dose = np.repeat(rng.choice([0.0, 1.0, 2.0], n // 600 + 1), 600)[:n]
    lines = ["ppg,resp,dose"] + [f"{np.sin(7 * a) + 0.1 * rng.standard_normal():.5f},{np.sin(a):.5f},{d}"
                                 for a, d in zip(t, dose)]
    (tmp_path / "rec.csv").write_text("\n".join(lines) + "\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "long", "sources": [
        {"dataset": "rec", "paths": ["rec.csv"], "fs": 100, "modality": "ppg", "subject": "s1",
         "interventions": [{"channel": "dose", "availability": "known"}]}],
        "windows": {"length": 64, "stride": 64}, "split": {"train": 1.0, "val": 0.0, "test": 0.0},
        "metrics": {"enabled": False}}))
    ok("ingest", spec, "--out", tmp_path / "S", "--scheduler", "sync", "--no-progress")
    assert pq.ParquetFile(next((tmp_path / "S" / "data").glob("part-*.parquet"))).num_row_groups > 1
    loader = CorpusLoader(LoaderConfig(tmp_path / "S", split="train", batch_size=64, window_size=64, nvar=2,
                                       interventions=("dose",)), 0, 1)
    seen = 0
    for x, mask, u in loader:
        assert np.isfinite(u.numpy()).all()
        seen += x.shape[0]
    assert seen == n // 64


def test_pamap2_activity_ids_are_a_known_categorical_intervention(sample, tmp_path: Path):
    """PAMAP2's activityID column (the protocol's planned activity, so known ahead) stored as the index of its id in
    the listed categories, one row per window group, switching where the builder's file does: transient (0) for
    its first 5 s, walking (4) after."""
    from make_pamap2 import TRANSIENT_S, build_pamap2_dat

    dat = build_pamap2_dat(sample("daphnet_s06r02"), tmp_path / "subject199.dat", sample("mitbih_208"))
    ids = [0, 1, 2, 3, 4, 5, 6, 7, 12, 13, 16, 17, 24]  # PAMAP2's protocol activities, 0 = transient
    activity = {"label": True, "name": "activity", "availability": "known", "kind": "categorical", "categories": ids}
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "pamap2", "sources": [
        {"dataset": "pamap2", "paths": ["subject199.dat"], "format": "pamap2", "channels": ["chest_acc16_x"],
         "interventions": [activity]}],
        "preprocess": {"target_fs": 32}, "windows": {"length": 64, "stride": 64}, "metrics": {"enabled": False}}))
    ok("ingest", spec, "--out", tmp_path / "S", "--scheduler", "sync", "--no-progress")
    rows = read_all(tmp_path / "S").to_pylist()
    acts = sorted((r for r in rows if r["channel"] == "activity"), key=lambda r: r["start_s"])
    signals = [r for r in rows if r["role"] == "signal"]
    assert {r["group_id"] for r in acts} == {r["group_id"] for r in signals} and len(acts) == len(signals)
    assert {(r["role"], tuple(r["categories"])) for r in acts} == {("known", tuple(str(i) for i in ids))}
    codes = np.concatenate([r["samples"] for r in acts])
    times = np.concatenate([r["start_s"] + np.arange(len(r["samples"])) / 32 for r in acts])
    assert set(np.unique(codes).tolist()) == {float(ids.index(0)), float(ids.index(4))}
    assert np.all(codes[times < TRANSIENT_S - 0.1] == ids.index(0))
    assert np.all(codes[times >= TRANSIENT_S + 0.1] == ids.index(4))
