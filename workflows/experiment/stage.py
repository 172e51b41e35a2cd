"""``nw2 experiment``: NormWear-2's headline comparison as one reproducible command.

From one store: for every arm (by default balanced(N) with the spec's strategy, and random(2N)) and every
seed, draw the arm's corpus (``nw2 balance`` with that seed), pretrain on it with the same budget of optimizer
steps, and evaluate the run on the same held-out windows of the store. Then compare every arm with the
baseline arm on each headline score, with bootstrap intervals over windows and seeds (``stats.py``).

Layout of ``OUT`` (every step is skipped when its output is complete, so a killed experiment reruns from
where it stopped)::

    OUT/store/                      the spec ingested, unless --store names an existing store
    OUT/corpora/<arm>-seed<k>/      each arm's corpus (corpus.json marks it complete)
    OUT/runs/<arm>-seed<k>/         each training run (run.json status "finished" marks it complete)
    OUT/evals/<arm>-seed<k>/        each evaluation (metrics.json, per_window.parquet)
    OUT/experiment.json             every score, interval and outcome
    OUT/report.md, OUT/*.png        the outcome in words, tables and plots
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from nw2.core.errors import Nw2Error
from nw2.pipeline.spec import (ArmSpec, ExperimentSpec, IngestSpec, balance_from_dict, experiment_arms,
                           experiment_baseline, load_spec)

from nw2.core.files import atomic_text
from .stats import Comparison, compare

__all__ = ["ExperimentResult", "run_experiment"]



@dataclass
class ExperimentResult:
    out: Path
    arms: list[str]
    baseline: str
    comparisons: dict[str, dict[str, Comparison]]
    """``{arm: {score: Comparison against the baseline}}``."""
    steps: dict[str, int]
    """Optimizer steps each run took (the first seed's), per arm."""

    def headline(self) -> str:
        lines = []
        for arm, scores in self.comparisons.items():
            n = len(scores)
            ok = sum(c.outcome in ("beats", "matches") for c in scores.values())
            beats = sum(c.outcome == "beats" for c in scores.values())
            lines.append(f"{arm} vs {self.baseline}: matches or beats on {ok} of {n} scores "
                         f"(beats on {beats}, worse on {n - ok})")
        return "\n".join(lines)


def _run_name(arm: ArmSpec, seed: int) -> str:
    return f"{arm.name}-seed{seed}"


def _store_for(spec: IngestSpec, out: Path, store: str | None, scheduler: str, progress: bool, log) -> Path:
    if store is not None:
        path = Path(store)
        if not (path / "store.json").is_file():
            raise Nw2Error(f"{path}: not a window store (no store.json); build it with nw2 ingest")
        if not (path / "metrics.json").is_file():
            raise Nw2Error(f"{path}: the store has no chaos metrics; run nw2 metrics on it first")
        return path
    from nw2.pipeline.ingest import ingest

    path = out / "store"
    if not (path / "metrics.json").is_file():
        log(f"ingesting {spec.name} into {path}")
        result = ingest(spec, str(path), scheduler=scheduler, progress=progress, log=log, metrics=True)
        if result.metrics is None or result.metrics.failed:
            raise Nw2Error(f"{path}: the chaos metrics failed on some parts; see {path}/metrics.json")
    return path


KEY = ".experiment-key.json"


def _key_matches(d: Path, key: dict) -> bool:
    """True when ``d`` was made from the same inputs (its key file, written before the work, says so)."""
    try:
        return json.loads((d / KEY).read_text()) == json.loads(json.dumps(key, sort_keys=True))
    except (OSError, ValueError):
        return False


def _mark(d: Path, key: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    atomic_text(d / KEY, json.dumps(key, sort_keys=True))


def _corpus(store: Path, arm: ArmSpec, seed: int, spec: IngestSpec, dest: Path, log) -> Path:
    from nw2.pipeline.balance.stage import balance

    chosen = balance_from_dict({**arm.balance, "strategy": arm.strategy, "size": arm.size, "fraction": None,
                                "seed": seed, "weights_only": False}, where=f"experiment arm {arm.name}",
                               base=spec.balance)
    key = {"store": json.loads((store / "metrics.json").read_text()).get("fingerprints"),
           "balance": dataclasses.asdict(chosen)}
    if (dest / "corpus.json").is_file() and _key_matches(dest, key):
        return dest
    log(f"{dest.name}: drawing {arm.size} train windows ({arm.strategy})")
    balance(str(store), str(dest), chosen, overwrite=True, report=False, log=log)
    _mark(dest, key)
    return dest


def _train(corpus: Path, run: Path, exp: ExperimentSpec, seed: int, progress: bool, nproc: int, log) -> dict:
    from nw2.model.data import CorpusLoader
    from nw2.model.train import _has_weights, _loader_config, prepare, pretrain, resolve

    overrides = {**exp.model, **exp.train, "seed": seed, "val_split": None}
    model_cfg, cfg = resolve(corpus, run, exp.config, {**overrides, "epochs": 1})
    weighted = _has_weights(str(corpus)) if cfg.weighted is None else cfg.weighted
    samples = CorpusLoader(_loader_config(model_cfg, cfg, cfg.split, True, weighted), 0, 1).expected_samples()
    # the budget is a number of optimizer steps: a corpus half the size gets twice the epochs
    per_epoch = max(1, math.ceil(samples / nproc / (cfg.batch_size * cfg.accum_iter)))
    epochs = max(1, round(exp.steps / per_epoch))
    key = {"corpus": json.loads((corpus / "corpus.json").read_text())["content_sha256"], "config": exp.config,
           "overrides": {**overrides, "epochs": epochs}, "nproc": nproc}
    meta_path = run / "run.json"
    if _key_matches(run, key):
        if meta_path.is_file() and json.loads(meta_path.read_text()).get("status") == "finished":
            return json.loads(meta_path.read_text())
    elif run.exists():
        shutil.rmtree(run)  # made from other inputs: start again
    _mark(run, key)
    model_cfg, cfg = resolve(corpus, run, exp.config, {**overrides, "epochs": epochs}, resume=True)
    log(f"{run.name}: pretraining {epochs} epochs of ~{per_epoch} steps")
    pretrain(prepare(model_cfg, cfg, resume=True), nproc=nproc, progress=progress, log=log)
    return json.loads(meta_path.read_text())


def _evaluate(run: Path, meta: dict, store: Path, exp: ExperimentSpec, dest: Path, progress: bool, log):
    """``(summary, per-window frame)`` of a run on the experiment's windows, reused when already made."""
    import polars as pl

    from nw2.model.evaluate import evaluate

    key = {"params": meta["param_digests"][0], "split": exp.eval_split,
           "horizons": list(exp.horizons) if exp.horizons else None, "max_windows": exp.max_windows}
    frame_path, metrics_path = dest / "per_window.parquet", dest / "metrics.json"
    if _key_matches(dest, key) and frame_path.is_file() and metrics_path.is_file():
        return json.loads(metrics_path.read_text())["summary"], pl.read_parquet(frame_path)
    result = evaluate(run, store, split=exp.eval_split, horizons=list(exp.horizons) if exp.horizons else None,
                      out=dest, max_windows=exp.max_windows, seed=0, progress=progress, log=log)
    result.per_window.write_parquet(frame_path)
    _mark(dest, key)
    return dict(result.summary), result.per_window


def _scores(summary: dict) -> dict:
    """The model's own scores (baseline scores are the same for every arm: the windows are the same)."""
    return {k: v for k, v in summary.items() if not k.startswith("baseline_") and v is not None}


def _per_window(frame) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per-window scores averaged over horizons: ``{score: (window ids, values)}`` in window-id order."""
    import polars as pl

    out = {}
    for score in frame.columns:
        if score in ("window_id", "horizon") or not frame.schema[score].is_numeric():
            continue
        g = (frame.group_by("window_id").agg(pl.col(score).mean()).sort("window_id")
             .filter(pl.col(score).is_finite()))
        out[score] = (g["window_id"].to_list(), g[score].to_numpy().astype(np.float64))
    return out


def run_experiment(spec_path: str | os.PathLike, out: str | os.PathLike, store: str | None = None,
                   scheduler: str = "local", nproc: int = 1, progress: bool = True,
                   log: Callable[[str], None] | None = None) -> ExperimentResult:
    """Run (or finish) the experiment of the spec's ``experiment:`` section into ``out``."""
    from nw2.model.evaluate import higher_is_better

    from .report import write_report

    log = log or (lambda m: None)
    spec = load_spec(spec_path)
    exp = spec.experiment
    arms = experiment_arms(exp, spec.balance, where=f"{spec_path}: experiment")
    baseline = experiment_baseline(exp, arms)
    if len(exp.seeds) < 3:
        log(f"note: {len(exp.seeds)} seed(s); the issue's protocol asks for at least 3")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = _store_for(spec, out, store, scheduler, progress, log)

    summaries: dict[str, list[dict]] = {a.name: [] for a in arms}
    windows: dict[str, list[dict]] = {a.name: [] for a in arms}
    steps: dict[str, list[int]] = {a.name: [] for a in arms}
    for arm in arms:
        for seed in exp.seeds:
            name = _run_name(arm, seed)
            corpus = _corpus(store_path, arm, seed, spec, out / "corpora" / name, log)
            meta = _train(corpus, out / "runs" / name, exp, seed, progress, nproc, log)
            steps[arm.name].append(int(meta["steps"]))
            summary, frame = _evaluate(out / "runs" / name, meta, store_path, exp, out / "evals" / name,
                                       progress, log)
            summaries[arm.name].append(_scores(summary))
            windows[arm.name].append(_per_window(frame))

    comparisons: dict[str, dict[str, Comparison]] = {}
    table: dict[str, dict] = {}
    for arm in arms:
        if arm.name == baseline:
            continue
        comparisons[arm.name] = {}
        for score in sorted(set.intersection(*(set(s) for s in summaries[arm.name] + summaries[baseline]))):
            a_w, b_w = windows[arm.name], windows[baseline]
            if all(score in w for w in a_w + b_w):  # a score with a value per window
                ids = sorted(set.intersection(*(set(w[score][0]) for w in a_w + b_w)))
                if not ids:
                    continue
                A = np.stack([_align(w[score], ids) for w in a_w])
                B = np.stack([_align(w[score], ids) for w in b_w])
            else:
                A = np.array([s[score] for s in summaries[arm.name]], dtype=np.float64)
                B = np.array([s[score] for s in summaries[baseline]], dtype=np.float64)
                if not (np.isfinite(A).all() and np.isfinite(B).all()):
                    continue
            comparisons[arm.name][score] = compare(A, B, higher_is_better(score), n_boot=exp.bootstrap,
                                                   confidence=exp.confidence, seed=0)
    for arm in arms:
        table[arm.name] = {"strategy": arm.strategy, "size": arm.size, "steps": steps[arm.name],
                           "summaries": summaries[arm.name]}
    result = ExperimentResult(out=out, arms=[a.name for a in arms], baseline=baseline, comparisons=comparisons,
                              steps={k: v[0] for k, v in steps.items()})
    doc = {"spec": str(Path(spec_path)), "store": str(store_path), "baseline": baseline,
           "seeds": list(exp.seeds), "budget_steps": exp.steps, "eval_split": exp.eval_split,
           "bootstrap": exp.bootstrap, "confidence": exp.confidence, "arms": table,
           "comparisons": {arm: {score: dataclasses.asdict(c) for score, c in scores.items()}
                           for arm, scores in comparisons.items()},
           "headline": result.headline()}
    atomic_text(out / "experiment.json", json.dumps(_rounded(doc), indent=2, sort_keys=True) + "\n")
    write_report(out, doc, comparisons)
    return result


def _align(pair: tuple[list[str], np.ndarray], ids: list[str]) -> np.ndarray:
    index = {w: i for i, w in enumerate(pair[0])}
    return pair[1][[index[w] for w in ids]]


def _rounded(obj):
    if isinstance(obj, float):
        return float(f"{obj:.6g}") if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    return obj
