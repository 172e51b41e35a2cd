"""``nw2 demo``: the whole pipeline, stage after stage, ending with a summary and the report's path (the store
is the session's demo store, copied in, so ingest finds every input finished)."""

from __future__ import annotations

import json
import shutil

from tests.test_balance_corpus import demo_store
from tests.test_train import ok


def test_demo_runs_every_stage_and_prints_the_report_path(tmp_path_factory, tmp_path):
    shutil.copytree(demo_store(tmp_path_factory), tmp_path / "store")
    result = ok("demo", "--out", tmp_path, "--scheduler", "sync", "--epochs", "2", "--no-progress")
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"report:  {tmp_path / 'run' / 'eval-val-test' / 'report.md'}"
    assert any(line.startswith("forecast: MSE") for line in lines)
    assert any(line.startswith("probes:  modality AUROC") for line in lines)
    assert (tmp_path / "corpus" / "corpus.json").is_file()
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["status"] == "finished" and meta["epochs_done"] == 2
    metrics = json.loads((tmp_path / "run" / "eval-val-test" / "metrics.json").read_text())
    assert metrics["data"]["splits"] == ["val", "test"]
    again = ok("demo", "--out", tmp_path, "--scheduler", "sync", "--epochs", "2", "--no-progress")
    assert again.output.strip().splitlines()[-1] == lines[-1]
