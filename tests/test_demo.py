"""``nw2 demo``: the whole pipeline, stage after stage, ending with a summary and the report's path (the store
is the session's demo store, copied in, so ingest finds every input finished)."""

from __future__ import annotations

import json

from helpers import ok
from nw2.workflows.demo import DEMO_EPOCHS


def test_demo_runs_every_stage_and_prints_the_report_path(demo_store_copy, tmp_path):
    assert demo_store_copy == tmp_path / "store"   # the store nw2 demo --out tmp_path ingests into
    result = ok("demo", "--out", tmp_path, "--scheduler", "sync", "--no-progress")   # the README's settings
    lines = result.output.strip().splitlines()
    assert lines[-1] == f"report:  {tmp_path / 'run' / 'eval-val-test' / 'report.md'}"
    assert any(line.startswith("forecast: MSE") for line in lines)
    assert any(line.startswith("probes:  modality AUROC") for line in lines)
    assert (tmp_path / "corpus" / "corpus.json").is_file()
    meta = json.loads((tmp_path / "run" / "run.json").read_text())
    assert meta["status"] == "finished" and meta["epochs_done"] == DEMO_EPOCHS
    assert meta["train"]["init_from"] == "nw2-small" and meta["model"]["nvar"] == 2
    metrics = json.loads((tmp_path / "run" / "eval-val-test" / "metrics.json").read_text())
    assert metrics["data"]["splits"] == ["val", "test"]
    forecast, best = metrics["summary"]["forecast"], metrics["best_baseline"]
    assert (f"forecast: MSE {forecast['model']['mse']['mean']:.4f} ({forecast['adapted']['mse']['mean']:.4f} "
            f"adapted), best baseline {best} {forecast['baselines'][best]['mse']['mean']:.4f} (normalized scale, "
            "mean over horizons)") in lines
    auroc = metrics["summary"]["probe"]["modality"]["auroc"]
    assert any(line.startswith(f"probes:  modality AUROC {auroc:.3f}") for line in lines)
    # what the main command leaves, on held-out subjects: with adaptation it beats every baseline on MSE at
    # the longer horizons, and all but AR(16) everywhere (docs/model.md gives the whole table)
    by_h = {r["horizon"]: r for r in metrics["forecast"]["by_horizon"]}
    baselines = [m for m in metrics["forecast"]["methods"] if m not in ("model", "adapted")]
    assert set(baselines) == {"last_value", "seasonal_naive", "mean", "ar", "linear", "mlp"}
    for h, row in by_h.items():
        for b in baselines:
            if b != "ar" or h >= 128:
                assert row["adapted"]["mse"] < row[b]["mse"], (h, b)
    again = ok("demo", "--out", tmp_path, "--scheduler", "sync", "--no-progress")
    assert again.output.strip().splitlines()[-1] == lines[-1]
