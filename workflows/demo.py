"""``nw2 demo``: the whole pipeline on the sample recordings, one stage after another, each one skipping what
an earlier run already finished: samples -> ingest (with the chaos metrics) -> balance -> pretrain (continues
the shipped ``nw2-small`` checkpoint on the demo corpus) -> evaluate. Every stage is the library function its
own command calls.

    OUT/store/              nw2 ingest corpus_specs/demo.yaml --out OUT/store
    OUT/corpus/             nw2 balance OUT/store --spec corpus_specs/demo.yaml --out OUT/corpus --overwrite
    OUT/run/                nw2 pretrain OUT/corpus --out OUT/run --init-from nw2-small --epochs E --blr B --resume
    OUT/run/eval-val-test/  nw2 evaluate OUT/run --data OUT/store --split val,test
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from nw2.core.errors import Nw2Error

__all__ = ["DemoResult", "run_demo", "DEMO_SPEC", "DEMO_INIT", "DEMO_EPOCHS", "DEMO_BLR", "DEMO_SPLIT"]

DEMO_SPEC = Path(__file__).resolve().parents[1] / "corpus_specs" / "demo.yaml"
#: The demo's pretraining continues the checkpoint shipped with nw2 (pretrained on bench.yaml; its card:
#: model/pretrained/nw2-small/README.md) on the demo corpus: E epochs of its 400 rows at base lr B.
DEMO_INIT = "nw2-small"
DEMO_EPOCHS, DEMO_BLR = 10, 1e-3
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
             workers: int | None = None, epochs: int = DEMO_EPOCHS, blr: float = DEMO_BLR,
             init_from: str | None = DEMO_INIT, nproc: int = 1,
             progress: bool = True, log: Callable[[str], None] | None = None) -> DemoResult:
    """Run (or finish) the demo pipeline into ``out``; ``init_from=None`` pretrains a ``tiny`` model from
    scratch instead of continuing ``nw2-small``."""
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

    start = f"continue {init_from}" if init_from else "tiny from scratch"
    say(f"[3/4] pretrain ({start}) -> {run} ({epochs} epochs; a finished run is kept, a killed one resumed)")
    flags = {"epochs": epochs, "blr": blr, **({"init_from": init_from} if init_from else {})}
    model_cfg, train_cfg = resolve(corpus, run, None, flags, resume=True)
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
