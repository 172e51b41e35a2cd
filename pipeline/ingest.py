"""``nw2 ingest``: recordings -> window store, every input accounted for in the manifest."""

from __future__ import annotations

import dataclasses
import glob
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nw2.pipeline import __version__, samples
from nw2.core.errors import Nw2Error, SpecError
from nw2.pipeline.executor import WorkerLost, executor
from nw2.pipeline.pieces import FilePlan, InputFile, Piece, plan_file, process_piece, spec_fingerprint
from nw2.pipeline.readers.base import ReadOptions, file_stem
from nw2.pipeline.spec import IngestSpec, SourceSpec, SyntheticSourceSpec
from nw2.pipeline.synthetic.source import SyntheticInput, dataset_of, expand
from nw2.core.locks import exclusive
from nw2.artifacts.store import FORMAT, SCHEMA_VERSION, Manifest, StoreInfo, WindowStore, check_reachable
from nw2.pipeline.windows import DROP_REASONS

if TYPE_CHECKING:
    from nw2.pipeline.metrics.stage import MetricsResult

_GLOB = re.compile(r"[*?\[]")
#: What local-cluster workers import while the cluster starts: the steps (SciPy signal/ndimage,
#: pyarrow, the readers' package) and pandas, which pyarrow imports on a worker's first ``pa.array``.
WORKER_IMPORTS = ("nw2.pipeline.pieces", "pandas")
#: Files that a WFDB header brings along: taken through the header, never read on their own.
_WFDB_COMPANIONS = (".dat", ".atr", ".qrs", ".ecg", ".xws", ".ann")


@dataclass
class IngestResult:
    store: str
    manifest: list[dict]
    metrics: "MetricsResult | None" = None
    """The metrics stage's outcome, when it ran."""

    def count(self, status: str) -> int:
        return sum(1 for e in self.manifest if e["status"] == status)

    @property
    def windows(self) -> int:
        return sum(e["windows"] for e in self.manifest)


def _read_options(src: SourceSpec, path: Path, base: Path) -> ReadOptions:
    registry = {}
    if src.sample:
        registry = dict(samples.lookup(src.sample).options)
    given = {f.name: getattr(src, f.name) for f in dataclasses.fields(ReadOptions)
             if hasattr(src, f.name) and getattr(src, f.name) not in (None, {})}
    merged = {**registry, **given}
    merged["dataset"] = src.dataset
    if "columns" in merged and merged["columns"] is not None:
        merged["columns"] = tuple(merged["columns"])
    rel = path.relative_to(base).as_posix() if path.is_relative_to(base) else path.as_posix()
    for key, pattern in (("subject", src.subject_pattern), ("record", src.record_pattern)):
        match = re.search(pattern, rel) if pattern and key not in given else None
        if match:
            merged[key] = match.group(1) if match.groups() else match.group(0)
    return ReadOptions(**merged)


def resolve_inputs(spec: IngestSpec) -> tuple[list[InputFile], list[dict]]:
    """Expand each source into files; sources that name nothing become manifest entries."""
    base = Path(spec.base_dir)
    inputs, problems = [], []
    for src in spec.sources:
        if isinstance(src, SyntheticSourceSpec):
            tasks, failed = expand(src, spec.preprocess.target_fs)
            inputs += tasks
            problems += [_entry(display, dataset_of(src), "failed", reason, format="synthetic")
                         for display, reason in failed]
            continue
        if src.sample:
            path = samples.fetch([src.sample])[src.sample]
            fmt = src.format if src.format != "auto" else samples.lookup(src.sample).format
            inputs.append(InputFile(str(path), f"sample:{src.sample}", fmt, _read_options(src, path, base),
                                    _channels(src), src.derive or (), src.interventions))
            continue
        for pattern in src.paths:
            found = _expand(base, pattern)
            if not found:
                what = "matches no file" if _GLOB.search(pattern) else (
                    "is an empty folder" if (base / pattern).is_dir() else "does not exist")
                problems.append(_entry(pattern, src.dataset, "failed", what))
            for path in found:
                display = path.relative_to(base).as_posix() if path.is_relative_to(base) else str(path)
                inputs.append(InputFile(str(path), display, src.format, _read_options(src, path, base),
                                        _channels(src), src.derive or (), src.interventions))
    _refuse_shared_records(inputs)
    return inputs, problems


def _refuse_shared_records(inputs: list) -> None:
    """Two files of one run that would be the same dataset, subject and record get the same window ids (they
    are derived from those, the start and the channel): refused before anything is read or written, naming both
    and the fix, as ``_check_identity`` would refuse them at the end (with the parts written). A file may say
    its own subject (an EDF patient code), which is unknown before it is read: the stem it falls back on stands
    in for it, so files of one stem are refused unless the spec tells their subjects or records apart."""
    seen: dict[tuple, InputFile] = {}
    for item in inputs:
        if isinstance(item, SyntheticInput):  # a generated task's ids come from its own settings
            continue
        stem = file_stem(item.path)
        key = (item.opts.dataset, item.opts.subject or stem, item.opts.record or stem)
        other = seen.setdefault(key, item)
        if other is item or other.path == item.path:  # the same file twice: _check_identity says so
            continue
        record = f"record {key[2]!r}" + (" (the file stem)" if item.opts.record is None else "")
        raise SpecError(f"{other.display} and {item.display} would both be dataset {key[0]!r}, subject {key[1]!r}, "
                        f"{record}, so their windows would get the same ids; give each file a record of its own "
                        f"with its source's record_pattern (a regular expression on the path whose first group is "
                        f"the record, e.g. '([^/]+)/[^/]+$' for the folder's name) or a subject with "
                        f"subject_pattern, or ingest them into separate stores")


def _channels(src) -> tuple[str, ...] | None:
    """The channels a source keeps: its ``channels`` and its intervention channels (``None``: all of them)."""
    if src.channels is None:
        return None
    extra = [iv.channel for iv in src.interventions if iv.channel is not None and iv.channel not in src.channels]
    return tuple(src.channels) + tuple(extra)


def _expand(base: Path, pattern: str) -> list[Path]:
    target = base / pattern
    if _GLOB.search(pattern):
        files = [Path(p) for p in glob.glob(str(target), recursive=True)]
    elif target.is_dir():
        files = [p for p in target.rglob("*") if not any(part.startswith(".") for part in p.relative_to(target).parts)]
    elif target.exists():
        return [target.resolve()]
    else:
        return []
    files = sorted(p.resolve() for p in files if p.is_file())
    headers = {p.with_suffix("") for p in files if p.suffix == ".hea"}
    return [p for p in files if not (p.suffix.lower() in _WFDB_COMPANIONS and p.with_suffix("") in headers)]


def _entry(path: str, dataset: str, status: str, reason: str, **extra) -> dict:
    entry = {"path": path, "dataset": dataset, "status": status, "reason": reason, "sha256": "", "bytes": 0,
             "format": "", "channels": [], "input_samples": 0, "windows": 0, "pieces": 0,
             "dropped": {r: 0 for r in DROP_REASONS}}
    entry.update(extra)
    return entry


def _merge(plan: FilePlan, results: list[dict]) -> dict:
    """One manifest entry from a file's plan and the stats of its pieces."""
    dropped = Counter({r: 0 for r in DROP_REASONS})
    for stats in results:
        dropped.update(stats["dropped"])
    windows = sum(s["windows"] for s in results)
    errors = [s["error"] for s in results if s["error"]]
    status, reason = plan.status, plan.reason
    extra = {}
    quarantine = plan.quarantine or next((s["quarantine"] for s in results
                                                          if s.get("quarantine")), None)
    if quarantine is not None:  # one that killed its workers: later runs skip it while it is unchanged
        extra["quarantine"] = quarantine
        if status == "planned":
            first = next(s["error"] for s in results if s.get("quarantine"))
            status, reason = "failed", f"{len(errors)} of {len(results)} pieces failed: {first}"
    if isinstance(plan.input, SyntheticInput):  # every setting is named, and each that failed says why
        extra["settings"] = [s.label() for s in plan.input.settings]
    if status == "planned":
        if errors and isinstance(plan.input, SyntheticInput):
            status, reason = "failed", f"{len(errors)} of {len(results)} settings failed: " + "; ".join(errors)
        elif errors:
            status, reason = "failed", f"{len(errors)} of {len(results)} pieces failed: {errors[0]}"
        elif windows == 0:
            status = "skipped"
            reason = "all windows dropped by quality checks (" + ", ".join(
                f"{r}: {n}" for r, n in dropped.items() if n) + ")"
        else:
            status = "ingested"
    return _entry(plan.input.display, plan.input.opts.dataset, status, reason, sha256=plan.sha256,
                  bytes=plan.size, format=plan.format, channels=plan.channels,
                  input_samples=plan.input_samples, windows=windows, pieces=len(results), dropped=dict(dropped),
                  **extra)


def _file_key(item) -> dict:
    """What identifies an input between runs for its quarantine: its size and modification time (a file that is
    replaced or edited is tried again); a synthetic task has neither."""
    try:
        st = os.stat(item.path)
    except (OSError, TypeError, ValueError):
        return {"bytes": None, "mtime_ns": None}
    return {"bytes": st.st_size, "mtime_ns": st.st_mtime_ns}


def _quarantine_reason(lost: WorkerLost) -> str:
    return (f"quarantined: {lost}; later runs skip it (nw2 ingest --retry-quarantined tries it again, e.g. with "
            f"more --worker-memory)")


def _plan_lost(item, lost: WorkerLost) -> FilePlan:
    """The plan of an input whose planning killed its workers: failed, and quarantined."""
    return FilePlan(item, status="failed", reason=_quarantine_reason(lost), quarantine=_file_key(item))


def _piece_lost(piece: Piece, lost: WorkerLost) -> dict:
    """The stats of a piece that killed its workers: no part, no marker, and its file quarantined."""
    return {"piece_id": piece.piece_id, "path": piece.input.path, "windows": 0,
            "dropped": {r: 0 for r in DROP_REASONS}, "error": _quarantine_reason(lost), "part": None,
            "quarantine": _file_key(piece.input)}


def _quarantined(inputs: list, earlier: Manifest | None, retry: bool) -> tuple[list, list[dict]]:
    """Inputs to run, and the earlier manifest's entries of those an earlier run quarantined and that have not
    changed since (skipped: each would kill its workers again), unless ``retry``."""
    if earlier is None or retry:
        return inputs, []
    held = {(e["path"], e["dataset"]): e for e in earlier.inputs if e.get("quarantine")}
    run, kept = [], []
    for item in inputs:
        entry = held.get((item.display, item.opts.dataset))
        if entry is not None and entry["quarantine"] == _file_key(item):
            kept.append(entry)
        else:
            run.append(item)
    return run, kept


def _pieces_of(plan: FilePlan) -> list[Piece]:
    return plan.pieces


def _piece_size(piece: Piece) -> int:
    return piece.samples


def _check_copies(store: WindowStore, plans: list[FilePlan], results: list[list[dict]]) -> None:
    """No part is claimed by two files. A part's name comes from its file's bytes and the settings, not from the
    file's path or record, so a second file with the same bytes (a copy in another folder, now or in an earlier
    ingest) gets the first one's parts: it would be listed as ingested with windows that are the other file's.
    Refused naming both, before the manifest is written; the parts this run wrote that either claims are removed
    (no manifest vouches for them, and two files writing one part at once leave either's bytes), those an earlier
    ingest finished stay."""
    display = {plan.input.path: plan.input.display for plan in plans}
    claims: dict[str, list[tuple[str, dict]]] = {}  # part -> (the file of this run claiming it, its stats)
    for plan, stats in zip(plans, results):
        for s in stats:
            if s.get("part"):
                claims.setdefault(s["part"], []).append((plan.input.path, s))
    for part, claimed in sorted(claims.items()):
        writers = {s["path"] for _, s in claimed}  # a resumed piece's stats are its marker's: who wrote it
        files = sorted({path for path, _ in claimed} | writers)
        if len(files) < 2:
            continue
        wrote = [s for _, s in claimed if not s.get("resumed")]
        store.remove([rel for s in wrote for rel in (s["part"], store.marker(s["piece_id"]))])
        # the file whose part was there already first (a resumed piece's writer), then one that met it
        had = sorted({s["path"] for _, s in claimed if s.get("resumed")})
        first = had[0] if had else files[0]
        second = next(f for f in sorted({path for path, _ in claimed}) if f != first)
        first, second = display.get(first, first), display.get(second, second)
        raise Nw2Error(f"{store.url}: {second} has the same bytes as {first} (read with the same settings, they give "
                       f"the same parts: {part}), so it would be listed with that file's windows; the store is "
                       f"unfinished until an nw2 ingest into it finishes: rerun without one of them (or, if it is "
                       f"the other moved, rebuild the store from it with --overwrite)")


def _check_identity(store: WindowStore, ran: dict[tuple[str, str], list[dict]], earlier: Manifest | None) -> None:
    """Each ``window_id`` once in the store. A window of this run that another part also holds is refused, naming
    that part and what it can tell: the same file read another way (another modality, reader option or piece
    size) or another file of the same dataset, subject and record. ``ran`` holds this run's piece stats per input
    (``source``, ``dataset``): those of an input whose windows are refused have their parts removed (nw2 wrote
    them in this run, or in an unfinished one that no manifest vouches for), so the rerun that finishes the store
    meets no stale duplicate; the store stays unfinished (no manifest) until an ingest into it finishes."""
    import polars as pl

    parts = store.parts()
    if not parts:
        return
    # part by part: parts of one store may differ in their metric columns (a rerun's new parts have none yet)
    ids = pl.concat([pl.from_arrow(store.read_table(rel, columns=["window_id"])).with_columns(_file=pl.lit(rel))
                     for rel in parts])
    dup = ids.filter(pl.col("window_id").is_duplicated())
    if dup.height == 0:
        return
    mine = {s["part"] for stats in ran.values() for s in stats if s.get("part")}
    # who holds them: only the parts involved are read again, for their source, dataset, subject and record
    rows = pl.concat([pl.from_arrow(store.read_table(rel, columns=["window_id", "source", "dataset", "subject",
                                                                   "record"])).with_columns(_file=pl.lit(rel))
                      for rel in sorted(set(dup.get_column("_file")))])
    listed = {(e["path"], e["dataset"]) for e in (earlier.inputs if earlier is not None else ())}
    rows = rows.join(dup.select("window_id").unique(), on="window_id").with_columns(
        _mine=pl.col("_file").is_in(sorted(mine)),
        _listed=pl.struct("source", "dataset").map_elements(lambda r: (r["source"], r["dataset"]) in listed,
                                                            return_dtype=pl.Boolean))
    n = rows.get_column("window_id").n_unique()
    # named first: an input of this run that no earlier ingest finished (the newcomer), then what else holds
    # its window: an earlier part before another of this run's
    new = rows.sort("_mine", "_listed", "window_id", "_file",
                    descending=[True, False, False, False]).row(0, named=True)
    if not new["_mine"]:  # duplicates among earlier parts only: a store of an nw2 from before this check
        raise Nw2Error(f"{store.url}: {new['_file']} and another part hold {n} window id(s) twice (written by an "
                       f"nw2 that did not check them); rebuild the store with --overwrite")
    held = rows.filter((pl.col("window_id") == new["window_id"]) & (pl.col("_file") != new["_file"]))
    old = held.sort("_mine", "_listed", "_file", descending=[False, True, False]).row(0, named=True) \
        if held.height else new
    refused = {(r["source"], r["dataset"]) for r in rows.filter(pl.col("_mine")).iter_rows(named=True)}
    gone = [s for key in sorted(refused) for s in ran.get(key, ())
            if s.get("part") and (not s.get("resumed") or key not in listed)]
    store.remove([rel for s in gone for rel in (s["part"], store.marker(s["piece_id"]))])
    unfinished = (f"this run's parts of {new['source']} were removed, and the store is unfinished until an nw2 "
                  f"ingest into it finishes")
    if old["source"] == new["source"]:
        raise Nw2Error(f"{store.url}: {new['source']} is in it already, read with other settings (another modality, "
                       f"reader option or piece size), which give the same window ids ({n} window(s), "
                       f"held by {old['_file']}); {unfinished}: rerun the earlier ingest to finish it as it was, "
                       f"ingest the file read this way into another --out, or rebuild this store with --overwrite "
                       f"(which drops every earlier ingest too)")
    raise Nw2Error(f"{store.url}: {new['source']} and {old['source']} ({old['_file']}) are both dataset "
                   f"{new['dataset']!r}, subject {new['subject']!r}, record {new['record']!r} (the file stem unless "
                   f"the spec says otherwise), so {n} window(s) got the same ids; {unfinished}: give it a record of "
                   f"its own with its source's record_pattern (or a subject with subject_pattern) and rerun, or "
                   f"rerun without it and ingest it into another --out")


def ingest(spec: IngestSpec, out: str, scheduler: str = "local", workers: int | None = None,
           overwrite: bool = False, progress: bool = True, log=None, metrics: bool = True,
           worker_memory: str | None = None, retry_quarantined: bool = False) -> IngestResult:
    """Run the ingest stage and return the manifest. Files already ingested are skipped. Then, unless
    ``metrics`` is false or the spec's ``metrics.enabled`` is, the metrics stage runs on the same
    executor (parts that already hold the spec's metrics are skipped). Another process writing the store is
    refused (:class:`BusyError`): two ingests never interleave.

    An input whose reading killed its worker process every time it was tried (out of ``worker_memory``, a crash
    in a reader library) is recorded as failed and quarantined: later runs skip it while the file is unchanged,
    unless ``retry_quarantined``."""
    check_reachable(out, scheduler)
    with exclusive(out, "nw2 ingest"):
        return _ingest(spec, out, scheduler, workers, overwrite, progress, log, metrics, worker_memory,
                       retry_quarantined)


def _ingest(spec: IngestSpec, out: str, scheduler: str, workers: int | None, overwrite: bool, progress: bool,
            log, metrics: bool, worker_memory: str | None, retry_quarantined: bool) -> IngestResult:
    # first: a spec whose files would share window ids is refused before the store is touched (or, with
    # --overwrite, emptied)
    inputs, manifest = resolve_inputs(spec)
    store = WindowStore(out)
    store.prepare(spec_fingerprint(spec), overwrite)
    plan = None
    if metrics and spec.metrics.enabled:  # checked before any work, so a bad section costs nothing
        # Imported here: the metrics package loads Numba (about 110 MB), which ingest alone never needs.
        from nw2.pipeline.metrics.stage import MetricsPlan, run_metrics

        plan = MetricsPlan.from_spec(spec.metrics)
    if not store.is_store():  # an existing store keeps the store.json it was built with
        store.write_info(StoreInfo(
            format=FORMAT, schema_version=SCHEMA_VERSION, nw2_version=__version__,
            spec_fingerprint=spec_fingerprint(spec), preprocess=dataclasses.asdict(spec.preprocess),
            windows=dataclasses.asdict(spec.windows), split=dataclasses.asdict(spec.split)))
    # what earlier ingests into this store put there (their parts stay), also when an ingest since was
    # interrupted: it set their manifest aside
    earlier = store.earlier_manifest()
    inputs, held = _quarantined(inputs, earlier, retry_quarantined)
    manifest += held
    store.begin_ingest()  # unfinished (no manifest) until the end: an interrupted run is never taken for whole
    # A file's pieces start as soon as its plan is in (no barrier between the steps), largest first;
    # workers import the steps while the cluster starts.
    with executor(scheduler, workers, progress, imports=WORKER_IMPORTS, memory_limit=worker_memory) as ex:
        plans, results = ex.map_then(plan_file, inputs, process_piece, _pieces_of, desc="planning",
                                     then_desc="ingesting", size=_piece_size, fn_kwargs={"spec": spec},
                                     then_kwargs={"spec": spec, "store_url": store.url},
                                     lost=_plan_lost, then_lost=_piece_lost)
        by_file: dict[str, list[dict]] = {}
        ran: dict[tuple[str, str], list[dict]] = {}  # by (display, dataset): the source and dataset columns
        for file_plan, stats in zip(plans, results):
            by_file.setdefault(file_plan.input.path, []).extend(stats)
            ran.setdefault((file_plan.input.display, file_plan.input.opts.dataset), []).extend(stats)
        manifest += [_merge(file_plan, by_file.get(file_plan.input.path, [])) for file_plan in plans]
        here = {(e["path"], e["dataset"]) for e in manifest}
        manifest += [e for e in (earlier.inputs if earlier is not None else ()) if (e["path"], e["dataset"]) not in here]
        manifest.sort(key=lambda e: (e["path"], e["dataset"]))
        for entry in manifest:
            if log and entry["status"] != "ingested":
                log(f"{entry['path']}: {entry['status']}: {entry['reason']}")
        store.remove_unmarked_parts()  # an interrupted run's, of pieces this run did not have
        _check_copies(store, plans, results)
        _check_identity(store, ran, earlier)
        # The manifest is written before the metrics run, so an error there loses nothing ingested.
        store.write_manifest(Manifest(schema_version=SCHEMA_VERSION, inputs=manifest))
        computed = run_metrics(store.url, plan, ex) if plan is not None else None
    return IngestResult(store.url, manifest, computed)
