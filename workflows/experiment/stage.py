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
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from nw2.artifacts import Corpus, Run, RunInfo, WindowStore
from nw2.artifacts.report import EvalReport
from nw2.core.errors import Nw2Error, SpecError
from nw2.pipeline.spec import (ArmSpec, ExperimentSpec, IngestSpec, balance_from_dict, experiment_arms,
                           experiment_baseline, load_spec)

from nw2.core.files import ATOMIC_TMP, atomic_text
from nw2.core.locks import exclusive, shared
from .stats import Comparison, compare

__all__ = ["ExperimentResult", "run_experiment", "finished_work"]

if TYPE_CHECKING:
    from nw2.model.evaluate.summary import ScoreKey



@dataclass
class ExperimentResult:
    out: Path
    arms: list[str]
    baseline: str
    comparisons: dict[str, dict[ScoreKey, Comparison]]
    """``{arm: {score: Comparison against the baseline}}``, in report order (:meth:`ScoreKey.sort_key`)."""
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


#: The experiment can answer when the 95% interval of a score's difference is at most this wide on either
#: side, relative to the baseline arm's mean (``relative_half_width`` in ``experiment.json``).
PRECISION_TARGET = 0.05

#: The evaluated windows each comparison is repeated on: recordings and synthetic systems apart.
SUBSETS: dict[str, Callable[["_WindowInfo"], bool]] = {
    "all": lambda w: True, "real": lambda w: w.real, "synthetic": lambda w: not w.real}


def _run_name(arm: ArmSpec, seed: int) -> str:
    return f"{arm.name}-seed{seed}"


def _store_for(spec: IngestSpec, out: Path, store: str | None, scheduler: str, progress: bool, log) -> Path:
    if store is not None:
        WindowStore.open(store, metrics=True)
        return Path(store)
    from nw2.pipeline.ingest import ingest

    path = out / "store"
    if WindowStore(path).metrics_info() is None:
        log(f"ingesting {spec.name} into {path}")
        started = time.perf_counter()
        result = ingest(spec, str(path), scheduler=scheduler, progress=progress, log=log, metrics=True)
        if result.metrics is None or result.metrics.failed:
            raise Nw2Error(f"{path}: the chaos metrics failed on some parts; rerun nw2 metrics {path}")
        _record_time(path, time.perf_counter() - started)
    return path


def _key_file(d: Path) -> Path:
    """Where the key of ``d`` is kept: beside it, not in it, so the corpus, run or evaluation in ``d``
    holds only what its own stage wrote (and that stage may check it holds nothing else)."""
    return d.parent / f".{d.name}.experiment-key.json"


def _key_matches(d: Path, key: dict) -> bool:
    """True when ``d`` was made from the same inputs (its key file, written before the work, says so)."""
    inside = d / ".experiment-key.json"  # where nw2 before 2026-12 kept it: moved beside the directory
    if inside.is_file() and not _key_file(d).exists():
        os.replace(inside, _key_file(d))
    try:
        return d.exists() and json.loads(_key_file(d).read_text()) == json.loads(json.dumps(key, sort_keys=True))
    except (OSError, ValueError):
        return False


def _time_file(d: Path) -> Path:
    return d.parent / f".{d.name}.experiment-seconds.json"


def _record_time(d: Path, seconds: float) -> None:
    """The wall time of the stage that made ``d``, kept beside it: a rerun that reuses ``d`` reports the time
    it took when it was made (so the report of an unchanged rerun is the same bytes)."""
    atomic_text(_time_file(d), json.dumps({"seconds": round(float(seconds), 1)}))


def _recorded_time(d: Path) -> float | None:
    try:
        return float(json.loads(_time_file(d).read_text())["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _mark(d: Path, key: dict) -> None:
    d.parent.mkdir(parents=True, exist_ok=True)
    atomic_text(_key_file(d), json.dumps(key, sort_keys=True))


def _corpus(store: Path, arm: ArmSpec, seed: int, spec: IngestSpec, dest: Path, log) -> Path:
    from nw2.pipeline.balance.stage import balance

    chosen = balance_from_dict({**arm.balance, "strategy": arm.strategy, "size": arm.size, "fraction": None,
                                "seed": seed, "weights_only": False}, where=f"experiment arm {arm.name}",
                               base=spec.balance)
    # the store's content address (settings, metric fingerprints, parts): another store never reuses a draw
    source = WindowStore(store)
    key = {"store": source.metrics_info().fingerprints, "store_fingerprint": source.fingerprint(),
           "balance": dataclasses.asdict(chosen)}
    if Corpus(dest).is_corpus() and _key_matches(dest, key):
        return dest
    log(f"{dest.name}: drawing {arm.size} train windows ({arm.strategy})")
    started = time.perf_counter()
    balance(str(store), str(dest), chosen, overwrite=True, report=False, log=log)
    _mark(dest, key)
    _record_time(dest, time.perf_counter() - started)
    return dest


def finished_work(out: str | os.PathLike) -> dict[str, int]:
    """What an experiment in ``out`` has finished so far, each whole (what a rerun skips): ``{"corpora": n,
    "runs": n, "evaluations": n}``."""
    out = Path(out)

    def count(sub: str, done: Callable[[Path], bool]) -> int:
        d = out / sub
        return sum(1 for p in sorted(d.iterdir()) if p.is_dir() and done(p)) if d.is_dir() else 0

    def finished(run: Path) -> bool:
        try:
            info = Run(run).info()
        except Nw2Error:
            return False
        return info is not None and info.finished

    return {"corpora": count("corpora", lambda p: Corpus(p).is_corpus()),
            "runs": count("runs", finished),
            "evaluations": count("evals", lambda p: EvalReport(p).metrics() is not None)}


def _check_run_settings(exp: ExperimentSpec, where: str) -> None:
    """The ``model:`` and ``train:`` settings of every run checked against ModelConfig and TrainConfig, field
    names and values, before any work: a typo fails at once, naming the spec file and the field, not after
    the ingest and the first corpus draw."""
    from nw2.model.config import ModelConfig, TrainConfig, load_model_config

    for section, cls, values, not_settings in (("model", ModelConfig, exp.model, set()),
                                               ("train", TrainConfig, exp.train, {"corpus", "out"})):
        known = sorted({f.name for f in dataclasses.fields(cls)} - not_settings)
        for name in values:
            if name not in known:
                raise SpecError(f"{where}.{section}.{name}: unknown field (known: {', '.join(known)})")
    for name, value in exp.train.items():
        try:
            TrainConfig(corpus="", out="", **{name: value})  # TrainConfig checks each field on its own
        except Nw2Error as exc:
            raise SpecError(f"{where}.train.{name}: {exc}") from None
    try:
        base = load_model_config(exp.config)
    except Nw2Error as exc:
        raise SpecError(f"{where}.config: {exc}") from None
    try:
        base.replace(**exp.model)  # ModelConfig's messages name the field (some checks relate two fields)
    except ValueError as exc:
        raise SpecError(f"{where}.model: {exc}") from None


def _train(corpus: Path, run: Path, exp: ExperimentSpec, seed: int, progress: bool, nproc: int, log) -> RunInfo:
    from nw2.model.train import prepare, pretrain, resolve, steps_per_epoch

    overrides = {**exp.model, **exp.train, "seed": seed, "val_split": None}
    model_cfg, cfg = resolve(corpus, run, exp.config, {**overrides, "epochs": 1})
    # the budget is a number of optimizer steps: a corpus half the size gets twice the epochs
    per_epoch = steps_per_epoch(model_cfg, cfg, nproc)
    epochs = max(1, round(exp.steps / per_epoch))
    key = {"corpus": Corpus.open(corpus).info().content_sha256, "config": exp.config,
           "overrides": {**overrides, "epochs": epochs}, "nproc": nproc}
    if _key_matches(run, key):
        done = Run(run).info()
        if done is not None and done.finished:
            return done
    elif run.exists():
        Run(run).clear()  # made from other inputs: start again (only what nw2 pretrain wrote is removed)
    _mark(run, key)
    model_cfg, cfg = resolve(corpus, run, exp.config, {**overrides, "epochs": epochs}, resume=True)
    log(f"{run.name}: pretraining {epochs} epochs of ~{per_epoch} steps")
    started = time.perf_counter()
    # as nw2 pretrain holds them: one writer of the run (a killed one's files swept), the corpus read under a shared lock
    with exclusive(run, "nw2 experiment"), shared(corpus, "nw2 experiment"):
        pretrain(prepare(model_cfg, cfg, resume=True), nproc=nproc, progress=progress, log=log)
    _record_time(run, time.perf_counter() - started)  # of the last start only, when a killed run was resumed
    return Run(run).require_info()


def _evaluate(run: Path, meta: RunInfo, store: Path, exp: ExperimentSpec, dest: Path, progress: bool, log):
    """``(summary, per-window frame)`` of a run on the experiment's windows, reused when already made."""
    import polars as pl

    from nw2.model.evaluate import EvalConfig, evaluate
    from nw2.model.evaluate.stage import FORMAT, VERSION

    key = {"params": meta.param_digests[0], "store": WindowStore(store).fingerprint(), "split": exp.eval_split,
           "horizons": list(exp.horizons) if exp.horizons else None, "max_windows": exp.max_windows}
    frame_path = dest / "per_window.parquet"
    metrics = EvalReport(dest).metrics() if _key_matches(dest, key) and frame_path.is_file() else None
    if metrics is not None:
        if (metrics.get("format"), metrics.get("version")) == (FORMAT, VERSION):  # an older summary: redo it
            return metrics["summary"], pl.read_parquet(frame_path)
    frame_path.unlink(missing_ok=True)  # written by this workflow beside the report, not by nw2 evaluate
    # The trained baselines are fitted on the store's train split, the same for every arm: fitting them once
    # per arm would add the same numbers again at a cost each time; the arms are compared with each other.
    config = EvalConfig(split=exp.eval_split, horizons=list(exp.horizons) if exp.horizons else None, out=dest,
                        max_windows=exp.max_windows, seed=0, trained_baselines=False)
    started = time.perf_counter()
    result = evaluate(run, store, config, progress=progress, log=log)
    result.per_window.write_parquet(frame_path)
    _mark(dest, key)
    _record_time(dest, time.perf_counter() - started)
    return result.summary, result.per_window


def _scores(summary: dict) -> dict[ScoreKey, float]:
    """The model's own scores, each the mean over horizons (a baseline's scores are the same for every arm: the
    windows are the same)."""
    from nw2.model.evaluate.summary import score_keys, score_value

    values = {k: score_value(summary, k) for k in score_keys(summary) if not k.is_baseline}
    return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class _WindowInfo:
    unit: str
    """The window's independent unit (:func:`model.evaluate.relative.unit_label`)."""
    group: str
    """Its kind, which counts once in a ``groups`` average (:func:`model.evaluate.relative.group_label`)."""
    real: bool
    """A recording's window (no ground-truth system), not a synthetic one."""


def _window_info(frame) -> dict[str, _WindowInfo]:
    import polars as pl

    from nw2.model.evaluate.relative import group_label, unit_label

    g = frame.group_by("window_id").agg(pl.col("subject", "record", "system", "dataset").first())
    return {row["window_id"]: _WindowInfo(unit_label(row["subject"], row["record"], row["window_id"]),
                                          group_label(row["system"], row["dataset"]), row["system"] is None)
            for row in g.iter_rows(named=True)}


def _per_window(frame) -> dict[str, tuple[list[str], np.ndarray]]:
    """Per-window scores averaged over horizons: ``{column: (window ids, values)}`` in window-id order (the
    columns of ``EvalResult.per_window``; :func:`per_window_column` names the one of a score)."""
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
    """Run (or finish) the experiment of the spec's ``experiment:`` section into ``out`` (another process running
    one into ``out`` is refused: :class:`~nw2.core.errors.BusyError`)."""
    log = log or (lambda m: None)
    spec = load_spec(spec_path)
    exp = spec.experiment
    _check_run_settings(exp, where=f"{spec_path}: experiment")
    arms = experiment_arms(exp, spec.balance, where=f"{spec_path}: experiment")
    baseline = experiment_baseline(exp, arms)
    if len(exp.seeds) < 3:
        log(f"note: {len(exp.seeds)} seed(s); the issue's protocol asks for at least 3")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # one experiment per --out: two would redo each other's steps (each step's own lock keeps them from writing
    # one at once, not from replacing each other's work); and under the lock a killed one's temporaries go
    with exclusive(out, "nw2 experiment"):
        _sweep_temporaries(out)
        return _run_experiment(spec_path, spec, exp, arms, baseline, out, store, scheduler, nproc, progress, log)


def _sweep_temporaries(out: Path) -> list[str]:
    """Remove what a killed experiment left of its small files (a step's key and time files beside it,
    ``experiment.json``): ``atomic_text``'s temporaries, ``..<step>.experiment-key.json.<8>.tmp``. Only under
    ``out``'s write lock, so none is a live writer's; returns what went."""
    pattern = re.compile(ATOMIC_TMP.format(name=r"(\.[^/]+\.experiment-(key|seconds)\.json|experiment\.json)"))
    gone = []
    for folder in (out, out / "corpora", out / "runs", out / "evals"):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if pattern.fullmatch(entry.name) and entry.is_file():
                entry.unlink()
                gone.append(str(entry.relative_to(out)))
    return gone


def _run_experiment(spec_path, spec, exp, arms, baseline, out: Path, store, scheduler, nproc, progress,
                    log) -> ExperimentResult:
    from nw2.model.evaluate.summary import ScoreKey, per_window_column

    from .report import write_report

    store_path = _store_for(spec, out, store, scheduler, progress, log)

    summaries: dict[str, list[dict]] = {a.name: [] for a in arms}  # each run's summary, as evaluate wrote it
    values: dict[str, list[dict[ScoreKey, float]]] = {a.name: [] for a in arms}
    windows: dict[str, list[dict]] = {a.name: [] for a in arms}
    info: dict[str, _WindowInfo] = {}  # window id -> its unit and group (the same windows for every arm)
    steps: dict[str, list[int]] = {a.name: [] for a in arms}
    made: dict[str, list[Path]] = {"corpora": [], "training": [], "evaluation": []}
    for arm in arms:
        for seed in exp.seeds:
            name = _run_name(arm, seed)
            corpus = _corpus(store_path, arm, seed, spec, out / "corpora" / name, log)
            meta = _train(corpus, out / "runs" / name, exp, seed, progress, nproc, log)
            steps[arm.name].append(int(meta.steps))
            summary, frame = _evaluate(out / "runs" / name, meta, store_path, exp, out / "evals" / name,
                                       progress, log)
            made["corpora"].append(corpus)
            made["training"].append(out / "runs" / name)
            made["evaluation"].append(out / "evals" / name)
            summaries[arm.name].append(summary)
            values[arm.name].append(_scores(summary))
            windows[arm.name].append(_per_window(frame))
            info.update(_window_info(frame))

    comparisons: dict[str, dict[ScoreKey, Comparison]] = {}
    subsets: dict[str, list[dict]] = {a.name: [] for a in arms if a.name != baseline}
    table: dict[str, dict] = {}
    for arm in arms:
        if arm.name == baseline:
            continue
        comparisons[arm.name] = {}
        shared = set.intersection(*(set(v) for v in values[arm.name] + values[baseline]))
        for score in sorted(shared, key=ScoreKey.sort_key):
            units = None
            a_w, b_w = windows[arm.name], windows[baseline]
            column = (per_window_column(score.name, score.metric)
                      if score.section == "forecast" and score.horizon is None else None)
            if column is not None and all(column in w for w in a_w + b_w):  # a score with a value per window
                ids = sorted(set.intersection(*(set(w[column][0]) for w in a_w + b_w)))
                if not ids:
                    continue
                A = np.stack([_align(w[column], ids) for w in a_w])
                B = np.stack([_align(w[column], ids) for w in b_w])
                units = [info[i].unit for i in ids]
                subsets[arm.name] += _subset_comparisons(score, A, B, ids, info, exp)
            else:
                A = np.array([v[score] for v in values[arm.name]], dtype=np.float64)
                B = np.array([v[score] for v in values[baseline]], dtype=np.float64)
                if not (np.isfinite(A).all() and np.isfinite(B).all()):
                    continue
            comparisons[arm.name][score] = compare(A, B, score.higher_is_better, n_boot=exp.bootstrap,
                                                   confidence=exp.confidence, seed=0, units=units)
    for arm in arms:
        table[arm.name] = {"strategy": arm.strategy, "size": arm.size, "steps": steps[arm.name],
                           "summaries": summaries[arm.name]}
    result = ExperimentResult(out=out, arms=[a.name for a in arms], baseline=baseline, comparisons=comparisons,
                              steps={k: v[0] for k, v in steps.items()})
    doc = {"spec": str(Path(spec_path)), "store": str(store_path), "baseline": baseline,
           "seeds": list(exp.seeds), "budget_steps": exp.steps, "eval_split": exp.eval_split,
           "bootstrap": exp.bootstrap, "confidence": exp.confidence,
           "bootstrap_over": "units: subject, else record, else the window",
           "eval_units": len({i.unit for i in info.values()}), "eval_windows": len(info), "arms": table,
           "eval_real_windows": sum(i.real for i in info.values()),
           "eval_synthetic_windows": sum(not i.real for i in info.values()),
           "subsets": subsets, "precision_target": PRECISION_TARGET,
           "wall_seconds": _wall_times(out, Path(store_path), made),
           "comparisons": {arm: [{"score": score.to_dict(), "label": score.label,
                                  "higher_is_better": score.higher_is_better, **dataclasses.asdict(c)}
                                 for score, c in scores.items()]
                           for arm, scores in comparisons.items()},
           "headline": result.headline()}
    atomic_text(out / "experiment.json", json.dumps(_rounded(doc), indent=2, sort_keys=True) + "\n")
    write_report(out, doc, comparisons)
    return result


def _subset_comparisons(score: ScoreKey, A: np.ndarray, B: np.ndarray, ids: list[str],
                        info: dict[str, _WindowInfo], exp: ExperimentSpec) -> list[dict]:
    """One per-window score compared on every subset of the windows (:data:`SUBSETS`), averaged both ways:
    over ``windows`` (every window once) and over ``groups`` (every system or dataset once)."""
    out = []
    for subset, keep in SUBSETS.items():
        cols = [k for k, w in enumerate(ids) if keep(info[w])]
        if not cols:
            continue
        units = [info[ids[k]].unit for k in cols]
        groups = [info[ids[k]].group for k in cols]
        for average in ("windows", "groups"):
            c = compare(A[:, cols], B[:, cols], score.higher_is_better, n_boot=exp.bootstrap,
                        confidence=exp.confidence, seed=0, units=units,
                        groups=groups if average == "groups" else None)
            half = (c.diff.hi - c.diff.lo) / 2
            out.append({"subset": subset, "average": average, "windows": len(cols), "units": len(set(units)),
                        "groups": len(set(groups)), "score": score.to_dict(), "label": score.label,
                        "higher_is_better": score.higher_is_better, **dataclasses.asdict(c),
                        "relative_half_width": half / abs(c.b.mean) if c.b.mean else None})
    return out


def _wall_times(out: Path, store_path: Path, dirs: dict[str, list[Path]]) -> dict:
    """Seconds each stage took when it ran (``None`` where not recorded), and their total."""
    times = {"store": _recorded_time(store_path) if store_path == out / "store" else None}
    for stage, paths in dirs.items():
        recorded = [_recorded_time(p) for p in paths]
        times[stage] = None if any(t is None for t in recorded) else round(sum(recorded), 1)
    parts = [times[k] for k in dirs]
    times["total"] = None if any(t is None for t in parts) else round(sum(parts) + (times["store"] or 0.0), 1)
    times["store_built_here"] = store_path == out / "store"
    return times


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
