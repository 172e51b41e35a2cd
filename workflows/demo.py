"""``nw2 demo``: the whole pipeline on the sample recordings, one stage after another, each one skipping what
an earlier run already finished: samples -> ingest (with the chaos metrics) -> balance -> pretrain (tiny)
-> evaluate. Every stage is the library function its own command calls.

    OUT/store/              nw2 ingest corpus_specs/demo.yaml --out OUT/store
    OUT/corpus/             nw2 balance OUT/store --spec corpus_specs/demo.yaml --out OUT/corpus --overwrite
    OUT/run/                nw2 pretrain OUT/corpus --out OUT/run --epochs E --blr B --resume
    OUT/run/eval-val-test/  nw2 evaluate OUT/run --data OUT/store --split val,test
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nw2.core.errors import Nw2Error

__all__ = ["DemoResult", "run_demo", "DEMO_SPEC", "DEMO_EPOCHS", "DEMO_BLR", "DEMO_SPLIT"]

DEMO_SPEC = Path(__file__).resolve().parents[1] / "corpus_specs" / "demo.yaml"
#: Pretraining of the demo: tiny, 20 epochs of the 400-row corpus (about 120 optimizer steps).
DEMO_EPOCHS, DEMO_BLR = 20, 1e-2
#: The demo store's held-out windows: val (biosignalsplux subjects) and test (pyphysio).
DEMO_SPLIT = "val,test"


@dataclass
class DemoResult:
    store: Path
    corpus: Path
    run: Path
    report: Path
    lines: list[str]
    """The short summary printed at the end."""


def run_demo(out: str | Path = "runs/demo", spec: str | Path = DEMO_SPEC, scheduler: str = "local",
             workers: int | None = None, epochs: int = DEMO_EPOCHS, blr: float = DEMO_BLR, nproc: int = 1,
             progress: bool = True, log: Callable[[str], None] | None = None) -> DemoResult:
    """Run (or finish) the demo pipeline into ``out``."""
    from nw2.artifacts import Run
    from nw2.model.evaluate import EvalConfig, evaluate
    from nw2.model.train import prepare, pretrain, resolve
    from nw2.pipeline.balance.stage import balance
    from nw2.pipeline.ingest import ingest
    from nw2.pipeline.spec import load_spec

    say = log or (lambda m: None)
    out = Path(out)
    loaded = load_spec(spec)
    store, corpus, run = out / "store", out / "corpus", out / "run"

    say(f"[1/4] ingest {spec} -> {store} (samples are fetched on first use; finished inputs are skipped)")
    ingested = ingest(loaded, str(store), scheduler=scheduler, workers=workers, progress=progress, log=say,
                      metrics=True)
    if ingested.windows == 0 or (ingested.metrics is not None and ingested.metrics.failed):
        raise Nw2Error(f"{store}: ingest produced no windows or the metrics failed; see {store}/manifest.json")

    say(f"[2/4] balance -> {corpus} ({loaded.balance.strategy}, {loaded.balance.size} train windows)")
    balanced = balance(str(store), str(corpus), loaded.balance, overwrite=True, report=True, log=say)

    say(f"[3/4] pretrain tiny -> {run} ({epochs} epochs; a finished run is kept, a killed one resumed)")
    model_cfg, train_cfg = resolve(corpus, run, "tiny", {"epochs": epochs, "blr": blr}, resume=True)
    pretrain(prepare(model_cfg, train_cfg, resume=True), nproc=nproc, progress=progress, log=say)

    say(f"[4/4] evaluate on the {DEMO_SPLIT} windows of {store}")
    result = evaluate(run, store, EvalConfig(split=DEMO_SPLIT), progress=progress, log=say)

    meta = Run(run).require_info()
    s = result.summary
    loss = meta.get("train_loss")
    lines = [f"store:   {ingested.windows} windows in {store}",
             f"corpus:  {balanced.rows} windows in {corpus} (report: {corpus / 'report' / 'report.md'})",
             f"model:   {meta.parameters:,} parameters, {meta.get('steps')} steps, last train loss "
             f"{'n/a' if loss is None else f'{loss:.4f}'} -> {run / 'model'}"]
    forecast = s["forecast"]
    line = f"forecast: MSE {forecast['model']['mse']['mean']:.4f}"
    if "mse" in forecast.get("adapted", {}):
        line += f" ({forecast['adapted']['mse']['mean']:.4f} adapted)"
    for best, scores in forecast.get("baselines", {}).items():
        if "mse" in scores:
            line += f", best baseline {best} {scores['mse']['mean']:.4f}"
    lines.append(line + " (normalized scale, mean over horizons)")
    probes = sorted((task, scores["auroc"]) for task, scores in s["probe"].items() if "auroc" in scores)
    if probes:
        lines.append("probes:  " + ", ".join(f"{task} AUROC {value:.3f}" for task, value in probes))
    lines.append(f"report:  {result.out / 'report.md'}")
    return DemoResult(store=store, corpus=corpus, run=run, report=result.out / "report.md", lines=lines)
