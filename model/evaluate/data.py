"""Reading a window store or a corpus for evaluation, one row group at a time.

Evaluation keeps every row's metadata (dataset, modality, subject, scale, label, metric columns), so it reads
the Parquet parts itself instead of through ``model.data.CorpusLoader``: :func:`open_source` checks the
directory from its JSON marker and Parquet footers, :func:`read_meta` reads the small columns of the rows of
some splits (never ``samples``), and :func:`stream_samples` reads ``samples`` of chosen rows row group by row
group, cropped, in batches. One row (one channel of one window) is one evaluated sample (C = 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from nw2.artifacts.source import may_hold, open_windows
from nw2.core.errors import Nw2Error
from nw2.core.parquet import CheckedFile, read_checked

__all__ = ["Source", "open_source", "read_meta", "stream_samples", "intervention_values", "REQUIRED", "OPTIONAL"]

#: Columns an evaluated part must have.
REQUIRED = ("samples", "split", "window_id", "dataset", "modality", "scale")
#: Columns read when present.
OPTIONAL = ("subject", "record", "system", "true_lyapunov", "fs", "unit", "offset", "length", "label", "role", "group_id",
            "largest_lyapunov", "sample_entropy", "correlation_dimension", "permutation_entropy", "dfa")


@dataclass(frozen=True)
class Source:
    """A store or corpus directory: its kind (``store``/``corpus``), parts and column names."""

    root: Path
    kind: str
    parts: tuple[Path, ...]
    columns: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.root.name


def open_source(data) -> Source:
    """Check that ``data`` is a window store (``store.json``) or a corpus (``corpus.json``) with Parquet parts
    holding the evaluated columns; raise :class:`Nw2Error` with a one-line reason otherwise."""
    source = open_windows(data, "nw2 evaluate")
    root, kind = Path(data), source.kind
    parts = tuple(Path(source.path(rel)) for rel in source.parts())
    columns: list[str] | None = None
    for path in parts:
        try:
            names = pq.read_schema(path).names
        except (OSError, pa.ArrowException) as err:
            raise Nw2Error(f"{path}: unreadable Parquet part ({err})") from None
        missing = [c for c in REQUIRED if c not in names]
        if missing:
            raise Nw2Error(f"{path}: not an nw2 {kind} part: no column {', '.join(missing)}")
        columns = names if columns is None else [c for c in columns if c in names]
    return Source(root, kind, parts, tuple(columns or ()))


def read_meta(source: Source, splits) -> pl.DataFrame:
    """The rows of ``splits`` (in part, row group, row order) with the metadata columns the source has, plus
    ``_part``, ``_rg``, ``_row`` (where the row lies) and ``length`` (computed from ``samples`` when the
    column is missing). No ``samples`` are kept."""
    wanted = set(splits)
    cols = [c for c in REQUIRED if c != "samples"] + [c for c in OPTIONAL if c in source.columns]
    frames = []
    for p, path in enumerate(source.parts):
        f = CheckedFile(path)
        split_i = f.schema_arrow.names.index("split")
        for g in range(f.metadata.num_row_groups):
            rg = f.metadata.row_group(g)
            if rg.num_rows == 0 or not may_hold(rg.column(split_i).statistics, wanted):
                continue
            read = cols if "length" in cols else cols + ["samples"]
            t = f.read_row_group(g, columns=read)
            keep = pc.is_in(t.column("split"), value_set=pa.array(sorted(wanted), type=pa.string()))
            if "role" in cols:  # interventions are inputs, never evaluated windows
                keep = pc.and_(keep, pc.equal(t.column("role"), "signal"))
            idx = np.flatnonzero(keep.to_numpy(zero_copy_only=False))
            if idx.size == 0:
                continue
            t = t.take(pa.array(idx))
            if "length" not in cols:
                t = t.append_column("length", pc.list_value_length(t.column("samples")).cast(pa.int32()))
                t = t.drop_columns(["samples"])
            frame = pl.from_arrow(t)
            frame = frame.with_columns(pl.lit(p, dtype=pl.Int32).alias("_part"), pl.lit(g, dtype=pl.Int32).alias("_rg"),
                                       pl.Series("_row", idx.astype(np.int64)))
            frames.append(frame)
    if not frames:
        return pl.DataFrame()
    out = pl.concat(frames, how="vertical_relaxed")
    for c in ("subject", "record", "system", "unit", "label"):
        if c not in out.columns:
            out = out.with_columns(pl.lit(None, dtype=pl.String).alias(c))
    if "offset" not in out.columns:
        out = out.with_columns(pl.lit(0.0).alias("offset"))
    return out


def intervention_values(source: Source, splits, inputs: tuple[str, ...], need: int) -> dict:
    """Per group id, the ``(need, K)`` float32 values of the model inputs ``inputs`` (``NAME`` continuous,
    ``NAME=CATEGORY`` an indicator) from the intervention rows of ``splits`` (their first ``need`` samples;
    NaN where a group lacks one). ``{}`` for a source without interventions."""
    if not inputs or "role" not in source.columns:
        return {}
    slots: dict[str, list[tuple[int, str | None]]] = {}
    for k, entry in enumerate(inputs):
        name, eq, category = entry.partition("=")
        slots.setdefault(name, []).append((k, category if eq else None))
    wanted = pa.array(sorted(set(splits)), type=pa.string())
    out: dict = {}
    for path in source.parts:
        t = read_checked(path, columns=["role", "split", "group_id", "channel", "categories", "samples"])
        keep = pc.and_(pc.not_equal(t.column("role"), "signal"), pc.is_in(t.column("split"), value_set=wanted))
        t = t.filter(keep)
        if t.num_rows == 0:
            continue
        x, ok = _crop(t.column("samples").combine_chunks(), need)
        for r, (gid, channel, names) in enumerate(zip(*(t.column(c).to_pylist()
                                                        for c in ("group_id", "channel", "categories")))):
            if channel not in slots or x[r].size < need:
                continue
            u = out.get(gid)
            if u is None:
                u = out[gid] = np.full((need, len(inputs)), np.nan, np.float32)
            v = x[r] if ok[r] else np.full(need, np.nan, np.float32)
            for k, category in slots[channel]:
                if category is None:
                    u[:, k] = v if names is None else np.nan
                elif names is not None and category in names:
                    u[:, k] = np.where(np.isfinite(v), (v == names.index(category)).astype(np.float32), np.nan)
    return out


def stream_samples(source: Source, rows: pl.DataFrame, batch_size: int, need: int
                   ) -> Iterator[tuple[pl.DataFrame, np.ndarray, np.ndarray]]:
    """Yield ``(meta, x, finite)`` batches of at most ``batch_size`` of ``rows`` (a :func:`read_meta` frame,
    in its order, which must be part/row-group order): ``x`` (B, need) float32 holds each row's first ``need``
    samples (rows must be at least that long), ``finite`` (B,) marks rows whose crop is all finite (the others
    are zero-filled). Reads one row group's ``samples`` at a time."""
    buf_meta: list[pl.DataFrame] = []
    buf_x: list[np.ndarray] = []
    buf_ok: list[np.ndarray] = []
    held = 0
    files: dict[int, pq.ParquetFile] = {}
    parts = rows.get_column("_part").to_numpy()
    groups = rows.get_column("_rg").to_numpy()
    cuts = np.flatnonzero((np.diff(parts) != 0) | (np.diff(groups) != 0)) + 1
    bounds = np.concatenate([[0], cuts, [rows.height]]).astype(np.int64)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        if hi <= lo:
            continue
        sub = rows.slice(int(lo), int(hi - lo))
        p, g = int(parts[lo]), int(groups[lo])
        f = files.get(p)
        if f is None:
            files.clear()
            f = files[p] = CheckedFile(source.parts[p])
        arr = f.read_row_group(g, columns=["samples"]).column("samples").combine_chunks()
        arr = arr.take(pa.array(sub.get_column("_row").to_numpy()))
        x, ok = _crop(arr, need)
        start = 0
        while start < sub.height:
            take = min(batch_size - held, sub.height - start)
            buf_meta.append(sub.slice(start, take))
            buf_x.append(x[start:start + take])
            buf_ok.append(ok[start:start + take])
            held += take
            start += take
            if held == batch_size:
                yield pl.concat(buf_meta), np.concatenate(buf_x), np.concatenate(buf_ok)
                buf_meta, buf_x, buf_ok, held = [], [], [], 0
    if held:
        yield pl.concat(buf_meta), np.concatenate(buf_x), np.concatenate(buf_ok)


def _crop(arr, need: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, need) float32 of the first ``need`` values of each list, and which rows are complete and finite."""
    n = len(arr)
    out = np.zeros((n, need), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    if n == 0:
        return out, ok
    arr = arr.cast(pa.list_(pa.float32())) if not pa.types.is_list(arr.type) or arr.type.value_type != pa.float32() else arr
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    for i in range(n):
        if not valid[i]:
            continue
        a, b = int(offsets[i]), int(offsets[i + 1])
        if b - a < need:
            continue
        seg = values[a:a + need]
        if np.all(np.isfinite(seg)):
            out[i] = seg
            ok[i] = True
    return out, ok
