"""The two steps of ingest, each a plain function the executor maps over many inputs.

``plan_file``: checksum, detect the format, probe channels and cut the file into work pieces.
``process_piece``: read one piece, clean/resample/filter, cut windows, write one part file.
Neither raises for bad input: each returns its outcome with a one-line reason.
"""

from __future__ import annotations

import dataclasses
import math
import traceback
from datetime import timedelta, timezone
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from nw2.pipeline import preprocess as pp
from nw2.pipeline import windows as win
from nw2.pipeline.derive import SERIES as DERIVED_SERIES, can_derive, derived_channel, derived_records
from nw2.core.errors import InputError, Nw2Error, StorageError
from nw2.pipeline.readers import detect_format, reader_for
from nw2.pipeline.readers.base import ReadOptions, scrubbed
from nw2.pipeline.spec import IngestSpec, InterventionSpec
from nw2.artifacts.store import GROUND_TRUTH_COLUMNS, SCHEMA, WindowStore
from nw2.pipeline.synthetic import source as synthetic
from nw2.pipeline.synthetic.source import SyntheticInput
from nw2.core.hashing import content_id, sha256_file

#: Seconds read beyond a piece's windows on each side, so filters and resamplers settle before the
#: first window and the windows of a split file match those of an unsplit one.
PAD_S = 2.0
#: The same for a source with ``derive``: a beat or breath detector needs a few events before the first window
#: (the longest plausible breath interval is 20 s) to give a rate from its start.
DERIVE_PAD_S = 30.0


@dataclass(frozen=True)
class InputFile:
    """One file to ingest and how to read it."""

    path: str
    display: str
    """How the manifest and the ``source`` column name it (relative path or ``sample:NAME``)."""
    format: str
    opts: ReadOptions
    channels: tuple[str, ...] | None = None
    derive: tuple[str, ...] = ()
    """Derived series stored instead of the waveforms (the source's ``derive``; ``pipeline/derive.py``)."""
    interventions: tuple[InterventionSpec, ...] = ()
    """Channels or the label stored as interventions (the source's ``interventions``)."""


@dataclass(frozen=True)
class Piece:
    """A unit of work: some channels of one file, windows ``k0 <= k < k1``."""

    piece_id: str
    input: InputFile
    format: str
    channels: tuple[int, ...]
    k0: int
    k1: int
    samples: int = 0
    """Source samples of its windows, all channels (the executor starts larger pieces first)."""
    setting: int | None = None
    """Synthetic inputs: the index of the setting (system and parameters) this piece generates."""
    target_fs: float | None = None
    """The rate its channels are stored at (``preprocess.rates``); ``None``: the spec's ``target_fs``."""
    shape: tuple[int, int] | None = None
    """``(length, stride)`` of its windows (``windows.lengths``); ``None``: the spec's."""
    labels: bool = False
    """Whether this piece stores the file's label interventions (``label: true``): one piece per time span does,
    the one holding the file's first channel, so each window group gets them once."""


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
    quarantine: dict | None = None
    """Set when planning killed its workers: the file's size and mtime, under which later runs skip it."""


def spec_fingerprint(spec: IngestSpec) -> str:
    """What makes windows differ: preprocessing, windowing and split, not the list of sources."""
    pre, win = dataclasses.asdict(spec.preprocess), dataclasses.asdict(spec.windows)
    for d, key in ((pre, "rates"), (win, "lengths"), (win, "strides")):
        if not d[key]:  # absent as before they existed: stores built then keep their fingerprint
            del d[key]
    return content_id(pre, win, dataclasses.asdict(spec.split))


def n_windows(n_samples: int, fs: float, spec: IngestSpec, rate: float | None = None,
              shape: tuple[int, int] | None = None) -> int:
    """Windows that fit in a channel once resampled to its target ``rate`` (default: ``target_fs``), of
    ``shape`` ``(length, stride)`` (default: the spec's)."""
    n_target = math.floor(n_samples * (spec.preprocess.target_fs if rate is None else rate) / fs + 1e-9)
    length, stride = shape or (spec.windows.length, spec.windows.stride)
    return 0 if n_target < length else (n_target - length) // stride + 1


def plan_file(item: InputFile | SyntheticInput, spec: IngestSpec) -> FilePlan:
    """Checksum, format, channels and pieces of one input file (or of one task of a synthetic source)."""
    if isinstance(item, SyntheticInput):
        return _plan_synthetic(item, spec)
    plan = FilePlan(item)
    try:
        plan.sha256, plan.size = sha256_file(item.path)
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
        rates = {i: channel_rate(spec, item, infos[i]) for i in index}
        shapes = {i: spec.windows.shape(stored_modality(item, infos[i])) for i in index}
        if item.interventions:
            _intervention_channels(item, infos, index, rates, shapes)
        if item.derive:
            index = _derivable(item, infos, index, rates)
        plan.channels = ([derived_channel(infos[i].name, d) for i in index for d in item.derive
                          if can_derive(d, infos[i].modality)] if item.derive else
                         [_stored_channel(item, infos[i].name) for i in index]
                         + [iv.stored_name for iv in item.interventions if iv.label])
        plan.input_samples = sum(infos[i].n_samples for i in index)
        counts = {i: n_windows(infos[i].n_samples, infos[i].fs, spec, rates[i], shapes[i]) for i in index}
        usable = [i for i in index if counts[i] > 0]
        if not usable:
            longest = max(infos[i].n_samples / infos[i].fs for i in index)
            need = min(shapes[i][0] / rates[i] for i in index)
            plan.status, plan.reason = "skipped", f"shorter than one window ({longest:.2f} s < {need:.2f} s)"
            return plan
        plan.pieces = _cut(item, plan, infos, usable, counts, spec, rates, shapes)
    except Nw2Error as err:
        plan.status, plan.reason = "failed", _one_line(err, item.path)
    except Exception as err:  # a reader library choking on a malformed file
        plan.status, plan.reason = "failed", _one_line(err, item.path)
    return plan


def stored_modality(item: InputFile, info) -> str:
    """The modality a channel's windows are stored under: its own, or for a ``derive`` source the derived
    series' (``hr`` for a heart rate made from an ECG)."""
    if item.derive:
        made = [DERIVED_SERIES[d]["modality"] for d in item.derive if can_derive(d, info.modality)]
        if made:
            return made[0]
    return info.modality


def channel_rate(spec: IngestSpec, item: InputFile, info) -> float:
    """The rate a channel is stored at: its stored modality's in ``preprocess.rates``, else ``target_fs``."""
    return spec.preprocess.rate(stored_modality(item, info))


def _derivable(item: InputFile, infos, index: list[int], rates: dict[int, float]) -> list[int]:
    """The channels a derived series of ``item.derive`` is made from; InputError naming what is missing."""
    for name in item.derive:
        if not any(can_derive(name, infos[i].modality) for i in index):
            have = ", ".join(f"{infos[i].name} ({infos[i].modality})" for i in index)
            raise InputError(item.path, f"derive {name}: needs a channel of modality "
                                        f"{' or '.join(DERIVED_SERIES[name]['from'])}; channels: {have} "
                                        f"(set the source's modality or channels)")
    used = [i for i in index if any(can_derive(d, infos[i].modality) for d in item.derive)]
    slow = [i for i in used if infos[i].fs <= rates[i]]
    if slow:
        raise InputError(item.path, f"derive: channel {infos[slow[0]].name} is sampled at {infos[slow[0]].fs:g} Hz, "
                                    f"not above the derived series' rate {rates[slow[0]]:g} Hz: derived series "
                                    f"need a lower target_fs or preprocess.rates entry (1 Hz, say)")
    return used


def _intervention_channels(item: InputFile, infos, index: list[int], rates: dict, shapes: dict) -> None:
    """Check a source's interventions against the file's channels and give its intervention channels the rate and
    window shape of its signals (they must share their windows' group ids). InputError naming the problem."""
    names = [infos[i].name for i in index]
    wanted = {iv.channel for iv in item.interventions if iv.channel is not None}
    for name in wanted:
        if name not in names:
            raise InputError(item.path, f"intervention channel {name!r} not found (channels: {', '.join(names)})")
    signals = [i for i in index if infos[i].name not in wanted]
    if not signals:
        raise InputError(item.path, "every channel is an intervention: nothing to forecast")
    kinds = {(rates[i], shapes[i]) for i in signals}
    if len(kinds) > 1:
        raise InputError(item.path, "interventions need one rate and window shape for the file's signals, and "
                                    "preprocess.rates / windows.lengths give them several; give the file's modalities "
                                    "one rate and length, or split the channels into sources of their own")
    kind = next(iter(kinds))
    for i in index:
        if infos[i].name in wanted:
            rates[i], shapes[i] = kind


def _stored_channel(item: InputFile, name: str) -> str:
    """A channel's stored name: an intervention's ``name`` when it is one, else its own."""
    for iv in item.interventions:
        if iv.channel == name:
            return iv.stored_name
    return name


def _synthetic_length(spec: IngestSpec, item: SyntheticInput) -> int:
    """Samples at the target rate that a setting's ``windows`` windows span."""
    return spec.windows.length + (item.source.windows - 1) * spec.windows.stride


def _plan_synthetic(item: SyntheticInput, spec: IngestSpec) -> FilePlan:
    """One piece per setting; nothing is generated yet (that is the pieces' work)."""
    task_id = item.task_id  # a hash of the whole source section: once, not once per piece
    plan = FilePlan(item, sha256=task_id, format="synthetic")
    n = _synthetic_length(spec, item)
    per_setting = len(item.source.coordinates) * len(item.source.noise)
    plan.channels = ([f"x{c}" for c in item.source.coordinates] if item.source.generator == "dysts"
                     else ["x0", "forcing"] if item.source.generator == "driven"
                     else sorted({s.system for s in item.settings}))
    plan.input_samples = n * per_setting * len(item.settings)
    fingerprint = spec_fingerprint(spec)
    plan.pieces = [Piece(content_id("piece", task_id, fingerprint, index), item, "synthetic",
                         tuple(range(per_setting)), 0, item.source.windows, n * per_setting, index)
                   for index in range(len(item.settings))]
    return plan


def _cut(item, plan, infos, usable, counts, spec, rates, shapes) -> list[Piece]:
    """Group channels of one target rate and window shape so a piece holds at most ``max_piece_samples``
    source samples, and split channels longer than that in time, along window boundaries (a piece has one
    rate and shape, so its windows ``k0 <= k < k1`` span one stretch of time)."""
    budget = spec.max_piece_samples
    per_window = {i: shapes[i][1] / rates[i] * infos[i].fs for i in usable}
    groups = []
    for kind in dict.fromkeys((rates[i], shapes[i]) for i in usable):
        current, size = [], 0
        for i in (i for i in usable if (rates[i], shapes[i]) == kind):
            if current and size + infos[i].n_samples > budget:
                groups.append((kind, current))
                current, size = [], 0
            current.append(i)
            size += infos[i].n_samples
        groups.append((kind, current))
    fingerprint = spec_fingerprint(spec)
    default = (spec.preprocess.target_fs, (spec.windows.length, spec.windows.stride))
    pieces = []
    for (rate, shape), group in groups:
        total = max(counts[i] for i in group)
        chunk = max(1, int(budget // max(1.0, sum(per_window[i] for i in group))))
        for k0 in range(0, total, chunk):
            k1 = min(total, k0 + chunk)
            # rate and shape join the id only when not the spec's own, so stores built before keep their ids
            kind = () if (rate, shape) == default else ("rate", repr(rate), "shape", *shape)
            labels = any(iv.label for iv in item.interventions) and group is groups[0][1]
            pid = content_id("piece", plan.sha256, plan.format, repr(item.opts), fingerprint, group, k0, k1,
                             *(("derive",) + item.derive if item.derive else ()), *kind,
                             *(("interventions", repr(item.interventions), labels) if item.interventions else ()))
            samples = int(sum(min(infos[i].n_samples, per_window[i] * (k1 - k0 + 1)) for i in group))
            pieces.append(Piece(pid, item, plan.format, tuple(group), k0, k1, samples, target_fs=rate,
                                shape=None if shape == default[1] else shape, labels=labels))
    return pieces


def _one_line(err: BaseException, path: str) -> str:
    """The manifest's reason for a failed file: one line, and never the file's contents (``scrubbed``)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    text = text or type(err).__name__
    if isinstance(err, InputError):
        return scrubbed(err.reason)
    if not isinstance(err, Nw2Error):
        text = f"{type(err).__name__}: {text}"
    return scrubbed(text.replace(f"{path}: ", ""))


# ---------------------------------------------------------------------------------------------------
def process_piece(piece: Piece, spec: IngestSpec, store_url: str) -> dict:
    """Ingest one piece into the store; a piece already finished returns its recorded stats."""
    store = WindowStore(store_url)
    done = store.finished(piece.piece_id)
    if done is not None:
        return {**done, "resumed": True}
    stats = {"piece_id": piece.piece_id, "path": piece.input.path, "windows": 0,
             "dropped": {r: 0 for r in win.DROP_REASONS}, "error": None, "part": None}
    try:
        table = _windows_of_piece(piece, spec, stats)
        if table is not None:
            stats["part"], digest = store.write_part(piece.piece_id, table)
            stats["windows"] = table.num_rows
            stats.update(digest)  # the marker's record of the part: every stage that reads the store checks it
    except StorageError:
        raise  # a full disk is no fault of this file: the ingest stops with one line, and a rerun finishes it
    except Exception as err:
        stats["error"] = _one_line(err, piece.input.path)
        if not isinstance(err, Nw2Error):
            stats["traceback"] = traceback.format_exc(limit=3)
        return stats  # no marker: a rerun tries this piece again
    store.finish(piece.piece_id, stats)
    return stats


#: Columns built as Python lists, one value per window; ``samples`` is built from NumPy blocks.
_LIST_COLUMNS = tuple(f.name for f in SCHEMA if f.name != "samples")
#: Windows detrended and normalized at a time (2 MiB of float64 at 1024 samples per window).
_ROWS_PER_BLOCK = 256


def _windows_of_piece(piece: Piece, spec: IngestSpec, stats: dict) -> pa.Table | None:
    """The windows of a piece as a table in the store's schema, or ``None`` when none was kept."""
    tfs = spec.preprocess.target_fs if piece.target_fs is None else piece.target_fs
    length, stride = piece.shape or (spec.windows.length, spec.windows.stride)
    t_first = piece.k0 * stride / tfs
    t_last = (piece.k1 - 1) * stride / tfs + length / tfs
    if isinstance(piece.input, SyntheticInput):
        records = synthetic.generate(piece.input, piece.setting, _synthetic_length(spec, piece.input), tfs)
    else:
        pad = DERIVE_PAD_S if piece.input.derive else PAD_S
        records = reader_for(piece.format).read(piece.input.path, piece.input.opts, list(piece.channels),
                                                max(0.0, t_first - pad), t_last + pad)
        if piece.input.derive:
            records = derived_records(records, piece.input.derive, tfs)
        if piece.input.interventions:
            records = intervention_records(records, piece.input, piece.labels)
    columns: dict[str, list] = {name: [] for name in _LIST_COLUMNS}
    blocks, group_ids = [], {}
    for rec in records:
        block = _cut_windows(rec, piece, spec, tfs, stats, columns, group_ids)
        if block is not None:
            blocks.append(block)
    if not blocks:
        return None
    samples = _samples_column(np.concatenate(blocks) if len(blocks) > 1 else blocks[0])
    return pa.Table.from_pydict({**columns, "samples": samples}, schema=SCHEMA)


def _samples_column(values: np.ndarray) -> pa.Array | pa.ChunkedArray:
    """A ``(windows, length)`` float32 array as the ``samples`` column (list<float32>), straight from
    its buffer: no Python object per window or sample."""
    n, length = values.shape
    per_chunk = max(1, (2**31 - 1) // max(1, length))  # a list array's offsets are int32
    chunks = []
    for a in range(0, n, per_chunk):
        block = values[a:a + per_chunk]
        offsets = np.arange(block.shape[0] + 1, dtype=np.int64) * length
        chunks.append(pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(block.reshape(-1))))
    return chunks[0] if len(chunks) == 1 else pa.chunked_array(chunks)


def intervention_records(records: list, item: InputFile, labels: bool) -> list:
    """The records of a piece with its source's interventions marked: an intervention channel's record gets its
    role, name and (categorical) codes; with ``labels``, the file's label becomes a record of its own per label
    intervention. InputError when a label intervention finds no label."""
    by_channel = {iv.channel: iv for iv in item.interventions if iv.channel is not None}
    out = []
    for rec in records:
        iv = by_channel.get(rec.channel)
        out.append(rec if iv is None else _as_intervention(rec, iv, rec.samples, item.path))
    if labels:
        labelled = next((r for r in records if r.labels is not None and r.role == "signal"), None)
        for iv in (iv for iv in item.interventions if iv.label):
            if labelled is None:
                raise InputError(item.path, f"intervention {iv.stored_name!r} is the file's label, and the file has "
                                            f"none (set the source's label_column)")
            out.append(_as_intervention(dataclasses.replace(labelled, modality="other", unit=""), iv,
                                        labelled.labels, item.path))
    return out


def _as_intervention(rec, iv: InterventionSpec, values, path: str) -> object:
    """``rec`` as intervention ``iv`` with ``values`` as its samples: a categorical one's values become the codes
    of its categories (NaN for a value outside them), a continuous one's floats."""
    values = np.asarray(values)
    categories = None
    if iv.kind == "categorical":
        categories = tuple(str(c) for c in iv.categories)
        codes = {c: float(k) for k, c in enumerate(categories)}
        keys = np.array([_category_key(v) for v in values.tolist()], dtype=object) if values.size else values
        uniq = {k: codes.get(k, np.nan) for k in set(keys.tolist())}
        samples = np.array([uniq[k] for k in keys.tolist()], np.float64)
    else:
        try:
            samples = values.astype(np.float64)
        except (TypeError, ValueError):
            raise InputError(path, f"intervention {iv.stored_name!r} is continuous and its values are not numbers; "
                                 f"make it categorical with its categories") from None
    # modality "other": a dose column of a PPG file is no PPG (and the source's modality named its signals)
    return dataclasses.replace(rec, channel=iv.stored_name, samples=samples, labels=None, role=iv.availability,
                               categories=categories, modality="other")


def _category_key(value) -> str:
    """A label value as the categories spell it: ``3`` for 3 and 3.0, the text of a string."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _prepare_intervention(rec, tfs: float) -> tuple[np.ndarray, np.ndarray]:
    """An intervention at the target rate: the value in force at each output instant (a zero-order hold, so a
    step stays a step and a category a category), never cleaned, filtered or interpolated over gaps (NaN stays
    NaN: no value known then)."""
    x = np.asarray(rec.samples, dtype=np.float64)
    up, down = pp.resample_ratio(rec.fs, tfs)
    if up != down:
        n_out = -(-x.size * up // down)
        x = x[np.minimum(np.arange(n_out) * down // up, x.size - 1)]
    return x, ~np.isfinite(x)


def _prepare(rec, spec: IngestSpec, tfs: float) -> tuple[np.ndarray, np.ndarray]:
    """Cleaned, resampled, filtered signal at the target rate ``tfs`` and its missing-sample mask."""
    if rec.role != "signal":
        return _prepare_intervention(rec, tfs)
    pre = spec.preprocess
    x = np.asarray(rec.samples, dtype=np.float64)
    missing = pp.missing_mask(x)
    if pre.clean and rec.truth is None:  # jumps are electrode pops in a recording, dynamics in a generated signal
        missing |= pp.outlier_jumps(x, rec.fs, pre.outlier_range)
    y = pp.resample(pp.fill_missing(x, missing), rec.fs, tfs)
    mask = pp.resample_mask(missing, y.size)
    if pre.bandpass is not None:
        y = pp.bandpass(y, tfs, *pre.bandpass)
    if pre.notch is not None:
        y = pp.notch(y, tfs, pre.notch)
    return y, mask


def _cut_windows(rec, piece: Piece, spec: IngestSpec, tfs: float, stats: dict, columns: dict[str, list],
                 group_ids: dict) -> np.ndarray | None:
    """Cut one channel's windows ``piece.k0 <= k < piece.k1``: drop those failing the quality checks
    (counted in ``stats``), append one value per kept window to each of ``columns`` and return the
    kept windows' samples as a float32 ``(windows, length)`` array (``None`` when none was kept).

    All windows of the channel are handled at once: the checks on the source-rate samples by
    :func:`windows.quality_problems`, detrend and normalization row-wise on a 2-D array of windows.
    ``group_ids`` caches group ids across the channels of the piece (they share them)."""
    pre, wspec = spec.preprocess, spec.windows
    length, stride = piece.shape or (wspec.length, wspec.stride)
    y, mask = _prepare(rec, spec, tfs)
    t0 = np.arange(piece.k0, piece.k1) * stride / tfs
    j = np.rint((t0 - rec.offset_s) * tfs).astype(np.int64)
    covered = (j >= 0) & (j + length <= y.size)  # channels of unequal length
    t0, j = t0[covered], j[covered]
    s0 = np.rint((t0 - rec.offset_s) * rec.fs).astype(np.int64)
    src_len = int(round(length / tfs * rec.fs))
    n_missing = np.concatenate([[0], np.cumsum(mask, dtype=np.int64)])
    missing = (n_missing[j + length] - n_missing[j]) / length
    # The flat and clipping checks look for sensor faults, which a generated signal has none of: a fixed point
    # is flat and a period-2 orbit sits at its two extremes, and both are regimes the store must keep.
    # An intervention is flat by nature (a dose held, a condition kept) and a category sits at its extremes.
    checks = (wspec if rec.truth is None and rec.role == "signal"
              else dataclasses.replace(wspec, max_flat=1.0, max_clipped=1.0))
    problems = win.quality_problems(rec.samples, s0, src_len, missing, checks, rec.fs)
    keep = np.fromiter((p is None for p in problems), bool, len(problems))
    for problem in problems:
        if problem is not None:
            stats["dropped"][problem] += 1
    if not keep.any():
        return None
    t0, j, s0, missing = t0[keep], j[keep], s0[keep], missing[keep]
    n = j.size

    windows = np.lib.stride_tricks.sliding_window_view(y, length)
    values = np.empty((n, length), np.float32)
    scale, offset = np.empty(n), np.empty(n)
    for b in range(0, n, _ROWS_PER_BLOCK):
        rows = slice(b, b + _ROWS_PER_BLOCK)
        block = windows[j[rows]]
        if rec.role != "signal":  # in its own units: a dose of 10 is not the z-score of a dose
            values[rows], scale[rows], offset[rows] = block, 1.0, 0.0
            continue
        if pre.detrend:
            block = pp.detrend_rows(block)
        values[rows], scale[rows], offset[rows] = pp.normalize_rows(block, pre.normalize)

    starts = t0.tolist()
    group = []
    for start_index in np.rint(t0 * tfs).astype(np.int64).tolist():
        key = (rec.dataset, rec.subject, rec.record, start_index)
        gid = group_ids.get(key)
        if gid is None:
            gid = group_ids[key] = win.group_id(rec.dataset, rec.subject, rec.record, start_index, length, tfs)
        group.append(gid)
    columns["window_id"] += [win.window_id(gid, rec.channel) for gid in group]
    columns["group_id"] += group
    for name, value in (("dataset", rec.dataset), ("subject", rec.subject), ("record", rec.record),
                        ("channel", rec.channel), ("modality", rec.modality), ("unit", rec.unit),
                        ("split", win.assign_split(rec.dataset, rec.subject, spec.split)),
                        ("fs", float(tfs)), ("source_fs", float(rec.fs)), ("length", length),
                        ("source", piece.input.display), ("role", rec.role),
                        ("categories", None if rec.categories is None else list(rec.categories))):
        columns[name] += [value] * n
    columns["start_s"] += starts
    columns["start_time"] += ([None] * n if rec.start_time is None
                              else [_absolute(rec.start_time, t) for t in starts])
    columns["scale"] += scale.tolist()
    columns["offset"] += offset.tolist()
    columns["missing_fraction"] += missing.tolist()
    columns["label"] += ([None] * n if rec.labels is None
                         else [win.window_label(rec.labels[max(0, s): s + src_len]) for s in s0.tolist()])
    columns["annotations"] += _annotations(rec.annotations, t0, t0 + length / tfs)
    truth = rec.truth
    for name in GROUND_TRUTH_COLUMNS:
        columns[name] += [None if truth is None else getattr(truth, name)] * n
    return values


def _annotations(annotations, starts: np.ndarray, ends: np.ndarray) -> list[list[str]]:
    """For each window ``[start, end)``, the texts of the events that overlap it."""
    if not annotations:
        return [[] for _ in range(starts.size)]
    onset = np.array([a[0] for a in annotations], np.float64)
    until = onset + np.maximum(np.array([a[1] for a in annotations], np.float64), 0.0)
    texts = [a[2] for a in annotations]
    hits = (onset[None, :] < ends[:, None]) & (until[None, :] >= starts[:, None])
    return [[texts[i] for i in np.flatnonzero(row)] for row in hits]


def _absolute(start_time, t0: float):
    """Wall-clock start of a window; naive times in files are taken as UTC."""
    if start_time is None:
        return None
    if start_time.tzinfo is None:
        start_time = start_time.replace(tzinfo=timezone.utc)
    return start_time + timedelta(seconds=t0)
