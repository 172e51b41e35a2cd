"""The two steps of ingest, each a plain function the executor maps over many inputs.

``plan_file``: checksum, detect the format, probe channels and cut the file into work pieces.
``process_piece``: read one piece, clean/resample/filter, cut windows, write one part file.
Neither raises for bad input: each returns its outcome with a one-line reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import traceback
from datetime import timedelta, timezone
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline import preprocess as pp
from pipeline import windows as win
from pipeline.errors import InputError, Nw2Error
from pipeline.readers import detect_format, reader_for
from pipeline.readers.base import ReadOptions
from pipeline.spec import IngestSpec
from pipeline.store import SCHEMA, Store

#: Seconds read beyond a piece's windows on each side, so filters and resamplers settle before the
#: first window and the windows of a split file match those of an unsplit one.
PAD_S = 2.0


@dataclass(frozen=True)
class InputFile:
    """One file to ingest and how to read it."""

    path: str
    display: str
    """How the manifest and the ``source`` column name it (relative path or ``sample:NAME``)."""
    format: str
    opts: ReadOptions
    channels: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Piece:
    """A unit of work: some channels of one file, windows ``k0 <= k < k1``."""

    piece_id: str
    input: InputFile
    format: str
    channels: tuple[int, ...]
    k0: int
    k1: int


@dataclass
class FilePlan:
    input: InputFile
    status: str = "planned"  # planned | skipped | failed
    reason: str = ""
    sha256: str = ""
    size: int = 0
    format: str = ""
    channels: list[str] = field(default_factory=list)
    input_samples: int = 0
    pieces: list[Piece] = field(default_factory=list)


def spec_fingerprint(spec: IngestSpec) -> str:
    """What makes windows differ: preprocessing, windowing and split, not the list of sources."""
    return win.content_id(dataclasses.asdict(spec.preprocess), dataclasses.asdict(spec.windows),
                          dataclasses.asdict(spec.split))


def _sha256(path: str) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def n_windows(n_samples: int, fs: float, spec: IngestSpec) -> int:
    """Windows that fit in a channel once resampled to the target rate."""
    n_target = math.floor(n_samples * spec.preprocess.target_fs / fs + 1e-9)
    length, stride = spec.windows.length, spec.windows.stride
    return 0 if n_target < length else (n_target - length) // stride + 1


def plan_file(item: InputFile, spec: IngestSpec) -> FilePlan:
    """Checksum, format, channels and pieces of one input file."""
    plan = FilePlan(item)
    try:
        plan.sha256, plan.size = _sha256(item.path)
        plan.format = detect_format(item.path) if item.format == "auto" else item.format
        infos = reader_for(plan.format).probe(item.path, item.opts)
        index = list(range(len(infos)))
        if item.channels is not None:
            names = [c.name for c in infos]
            missing = [c for c in item.channels if c not in names]
            if missing:
                raise InputError(item.path, f"channel {missing[0]!r} not found (channels: {', '.join(names)})")
            index = [names.index(c) for c in item.channels]
        if not index:
            raise InputError(item.path, "no channels")
        plan.channels = [infos[i].name for i in index]
        plan.input_samples = sum(infos[i].n_samples for i in index)
        counts = {i: n_windows(infos[i].n_samples, infos[i].fs, spec) for i in index}
        usable = [i for i in index if counts[i] > 0]
        if not usable:
            longest = max(infos[i].n_samples / infos[i].fs for i in index)
            need = spec.windows.length / spec.preprocess.target_fs
            plan.status, plan.reason = "skipped", f"shorter than one window ({longest:.2f} s < {need:.2f} s)"
            return plan
        plan.pieces = _cut(item, plan, infos, usable, counts, spec)
    except Nw2Error as err:
        plan.status, plan.reason = "failed", _one_line(err, item.path)
    except Exception as err:  # a reader library choking on a malformed file
        plan.status, plan.reason = "failed", _one_line(err, item.path)
    return plan


def _cut(item, plan, infos, usable, counts, spec) -> list[Piece]:
    """Group channels so a piece holds at most ``max_piece_samples`` source samples, and split
    channels longer than that in time, along window boundaries."""
    budget = spec.max_piece_samples
    per_window = {i: spec.windows.stride / spec.preprocess.target_fs * infos[i].fs for i in usable}
    groups, current, size = [], [], 0
    for i in usable:
        if current and size + infos[i].n_samples > budget:
            groups.append(current)
            current, size = [], 0
        current.append(i)
        size += infos[i].n_samples
    groups.append(current)
    fingerprint = spec_fingerprint(spec)
    pieces = []
    for group in groups:
        total = max(counts[i] for i in group)
        chunk = max(1, int(budget // max(1.0, sum(per_window[i] for i in group))))
        for k0 in range(0, total, chunk):
            k1 = min(total, k0 + chunk)
            pid = win.content_id("piece", plan.sha256, plan.format, repr(item.opts), fingerprint, group, k0, k1)
            pieces.append(Piece(pid, item, plan.format, tuple(group), k0, k1))
    return pieces


def _one_line(err: BaseException, path: str) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text or type(err).__name__
    if isinstance(err, InputError):
        return err.reason
    if not isinstance(err, Nw2Error):
        text = f"{type(err).__name__}: {text}"
    return text.replace(f"{path}: ", "")


# ---------------------------------------------------------------------------------------------------
def process_piece(piece: Piece, spec: IngestSpec, store_url: str) -> dict:
    """Ingest one piece into the store; a piece already finished returns its recorded stats."""
    store = Store(store_url)
    done = store.finished(piece.piece_id)
    if done is not None:
        return {**done, "resumed": True}
    stats = {"piece_id": piece.piece_id, "path": piece.input.path, "windows": 0,
             "dropped": {r: 0 for r in win.DROP_REASONS}, "error": None, "part": None}
    try:
        rows = _windows_of_piece(piece, spec, stats)
        if rows["window_id"]:
            table = pa.Table.from_pydict(rows, schema=SCHEMA)
            stats["part"] = store.write_part(piece.piece_id, table)
            stats["windows"] = table.num_rows
    except Exception as err:
        stats["error"] = _one_line(err, piece.input.path)
        if not isinstance(err, Nw2Error):
            stats["traceback"] = traceback.format_exc(limit=3)
        return stats  # no marker: a rerun tries this piece again
    store.finish(piece.piece_id, stats)
    return stats


def _windows_of_piece(piece: Piece, spec: IngestSpec, stats: dict) -> dict[str, list]:
    tfs, length, stride = spec.preprocess.target_fs, spec.windows.length, spec.windows.stride
    t_first = piece.k0 * stride / tfs
    t_last = (piece.k1 - 1) * stride / tfs + length / tfs
    records = reader_for(piece.format).read(piece.input.path, piece.input.opts, list(piece.channels),
                                            max(0.0, t_first - PAD_S), t_last + PAD_S)
    rows: dict[str, list] = {f.name: [] for f in SCHEMA}
    for rec in records:
        _cut_windows(rec, piece, spec, stats, rows)
    return rows


def _prepare(rec, spec: IngestSpec) -> tuple[np.ndarray, np.ndarray]:
    """Cleaned, resampled, filtered signal at the target rate and its missing-sample mask."""
    pre = spec.preprocess
    x = np.asarray(rec.samples, dtype=np.float64)
    missing = pp.missing_mask(x)
    if pre.clean:
        missing |= pp.outlier_jumps(x, rec.fs, pre.outlier_range)
    y = pp.resample(pp.fill_missing(x, missing), rec.fs, pre.target_fs)
    mask = pp.resample_mask(missing, y.size)
    if pre.bandpass is not None:
        y = pp.bandpass(y, pre.target_fs, *pre.bandpass)
    if pre.notch is not None:
        y = pp.notch(y, pre.target_fs, pre.notch)
    return y, mask


def _cut_windows(rec, piece: Piece, spec: IngestSpec, stats: dict, rows: dict[str, list]) -> None:
    pre, wspec = spec.preprocess, spec.windows
    tfs, length = pre.target_fs, wspec.length
    y, mask = _prepare(rec, spec)
    split = win.assign_split(rec.dataset, rec.subject, spec.split)
    src_len = int(round(length / tfs * rec.fs))
    for k in range(piece.k0, piece.k1):
        t0 = k * wspec.stride / tfs
        j = int(round((t0 - rec.offset_s) * tfs))
        if j < 0 or j + length > y.size:
            continue  # this channel does not cover the window (channels of unequal length)
        s0 = int(round((t0 - rec.offset_s) * rec.fs))
        source = rec.samples[max(0, s0): s0 + src_len]
        missing = float(mask[j:j + length].mean())
        problem = win.quality_problem(source, missing, wspec, rec.fs)
        if problem is not None:
            stats["dropped"][problem] += 1
            continue
        values = y[j:j + length]
        if pre.detrend:
            values = pp.detrend(values)
        values, scale, offset = pp.normalize(values, pre.normalize)
        start_index = int(round(t0 * tfs))
        gid = win.group_id(rec.dataset, rec.subject, rec.record, start_index, length, tfs)
        rows["window_id"].append(win.window_id(gid, rec.channel))
        rows["group_id"].append(gid)
        rows["dataset"].append(rec.dataset)
        rows["subject"].append(rec.subject)
        rows["record"].append(rec.record)
        rows["channel"].append(rec.channel)
        rows["modality"].append(rec.modality)
        rows["unit"].append(rec.unit)
        rows["split"].append(split)
        rows["fs"].append(float(tfs))
        rows["source_fs"].append(float(rec.fs))
        rows["start_s"].append(float(t0))
        rows["start_time"].append(_absolute(rec.start_time, t0))
        rows["length"].append(length)
        rows["scale"].append(scale)
        rows["offset"].append(offset)
        rows["missing_fraction"].append(missing)
        rows["label"].append(win.window_label(None if rec.labels is None else rec.labels[max(0, s0): s0 + src_len]))
        rows["annotations"].append([text for onset, dur, text in rec.annotations
                                    if onset < t0 + length / tfs and onset + max(dur, 0.0) >= t0])
        rows["source"].append(piece.input.display)
        rows["samples"].append(values.astype(np.float32))


def _absolute(start_time, t0: float):
    """Wall-clock start of a window; naive times in files are taken as UTC."""
    if start_time is None:
        return None
    if start_time.tzinfo is None:
        start_time = start_time.replace(tzinfo=timezone.utc)
    return start_time + timedelta(seconds=t0)
