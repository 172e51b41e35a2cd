"""A streaming, sharded, exactly resumable loader of an nw2 corpus for pretraining.

``CorpusLoader`` reads the Parquet parts of a corpus (``docs/corpus_format.md``; a window store works too) one
row group at a time and yields batches ``(x, mask)``: ``x`` float32 ``(B, window_size, nvar)``, ``mask`` bool
``(B, nvar)`` (True where a channel holds data, False for padding, whose values are 0); with ``rates``,
``(x, mask, fs)``, ``fs`` float32 ``(B,)`` each sample's sampling rate.

**Units and sharding.** The work is cut into *units*, one per ``(part, row group)`` in part order (row groups
whose Parquet statistics show they cannot hold the split are left out). Every epoch the unit order is
permuted with ``np.random.default_rng((seed, epoch))`` (not with ``shuffle_buffer=0``: store order), and
shard ``s = rank * W + w`` of ``S = world_size * W`` (``W = max(1, num_workers)``, ``w`` the worker) reads
units ``order[s::S]``. A corpus with fewer units than shards (the demo corpus is one row group) is shared
sample by sample instead: every shard reads every unit and keeps the samples ``k`` of each with
``k % S == s``. Either way the shards are disjoint and together cover the split.

**Samples.** Within a unit, the rows of the split are grouped by ``group_id`` (in order of first appearance;
a part is written in store order, so a group's rows lie in one part, but a group that straddles a row group
boundary gives one partial sample per row group: groups are never assembled across units). A group's
channels keep their store order (the reader's channel order) and are cut into samples of at most ``nvar``
channels, so every row is used exactly once: a 64-channel EEG group with ``nvar=10`` gives 7 samples. Each
row is cropped to its first ``window_size`` values (with ``random_crop``, to a stretch starting where a
seeded draw per group says); a row with a non-finite value in the crop is skipped and
counted (``loader.skipped``, in rows). Intervention rows (``role`` other than ``signal``: store schema v4) are
never channels of a sample; with ``interventions``, a group's intervention rows of the same unit give its
samples' ``u`` (cropped where its signals are).

**Weighting** (``weighted=True``): a sample's weight ``w`` is the mean ``sample_weight`` of its rows, and it
is repeated ``floor(w)`` times plus once more with probability ``w - floor(w)`` (a per-unit RNG from
``(seed, epoch, unit)``), so ``w`` is its expected number of occurrences per epoch; the corpus's weights have
mean 1, so an epoch keeps its size on average. Samples of weight 0 never appear.

**Shuffle buffer.** Each shard passes its samples through a buffer of ``shuffle_buffer`` samples: a new
sample replaces a uniformly drawn one, which is emitted; at the end of the epoch the rest is drained in
random order. Its RNG is ``default_rng((seed, epoch, shard, S))``. Each shard cuts its own batches of
``batch_size`` samples (its last one may be smaller); with several workers the batches are taken round-robin
from the workers in order, skipping finished ones (as ``torch.utils.data.DataLoader`` does), so the batch
sequence depends only on the config, the rank and the world size.

**Workers.** ``num_workers`` are *threads* of this process (pyarrow's decoding and numpy release the GIL),
each with its own shard and a bounded prefetch queue; ``num_workers=0`` reads in the caller's thread
(``num_workers=1`` gives the same batches, read ahead in one thread). Threads, not processes, so that the
loader's state is always known in the main process: every batch carries its worker's state at the moment
it was cut, and ``state_dict`` is made of the states of the batches already handed out.

**Exact resume.** ``state_dict()`` holds the epoch, the next worker of the round-robin, and per worker: the
position in its unit list, the number of samples of the current unit already taken, the *addresses*
``(unit position, sample index)`` of the samples in the shuffle buffer, the buffer RNG's state, and the
counters. ``load_state_dict`` rebuilds the buffer by re-reading the (few) units its addresses name; unit
processing is a pure function of ``(config, epoch, unit)``, so the rebuilt buffer holds the same arrays,
and the resumed loader yields bit for bit the batches the uninterrupted one would have yielded. The state
is plain data (ints, lists, dicts: JSON- and ``torch.save``-able). It belongs to one rank: a trainer whose
rank 0 writes checkpoints gathers every rank's state (``torch.distributed.all_gather_object``) and gives
each rank its own back. Ranks can get different numbers of batches per epoch: a DDP trainer must stop an
epoch when the first rank runs out (an all-reduced flag, or ``torch.distributed.algorithms.Join``).
"""

from __future__ import annotations

import copy
import queue
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from nw2.artifacts.source import may_hold, open_windows
from nw2.core.errors import EmptySplitError, Nw2Error
from nw2.core.parquet import CheckedFile, read_checked

__all__ = ["LoaderConfig", "CorpusLoader", "STATE_VERSION", "intervention_channels", "intervention_inputs"]

STATE_VERSION = 1
_COLUMNS = ("samples", "group_id", "split")
_PREFETCH = 2  # batches a worker thread may read ahead


@dataclass(frozen=True)
class LoaderConfig:
    """What ``CorpusLoader`` reads and how (everything that decides the batch sequence)."""

    corpus: str | Path
    """The corpus directory (``CORPUS`` with ``data/part-*.parquet`` and ``corpus.json``; a window store with
    ``store.json`` also works, with every weight 1)."""
    split: str = "train"
    """The value of the ``split`` column to read."""
    batch_size: int = 32
    """Samples per batch (per rank); the last batch of a worker's epoch may be smaller."""
    window_size: int = 1024
    """Samples per channel: longer corpus windows are cropped from the start (or at random, ``random_crop``);
    a corpus window shorter than this is an error raised by the constructor."""
    random_crop: bool = False
    """Crop longer rows at a random start instead of their first sample: one start per group (its channels
    stay aligned), drawn from ``default_rng((seed, epoch, unit, 2))`` uniformly over the possible starts of the
    group's shortest row, so a new epoch sees other stretches and a resumed loader the same ones."""
    nvar: int = 10
    """Most channels per sample: a group with more channels gives several samples; fewer are zero-padded
    and masked."""
    shuffle_buffer: int = 1024
    """Samples in each worker's shuffle buffer; ``0`` turns shuffling off entirely (store order, units not
    permuted), as for evaluation."""
    weighted: bool = False
    """Sample by ``sample_weight``: each sample appears ``w`` times per epoch in expectation (see the module
    docstring)."""
    seed: int = 0
    """Seeds the unit order, the shuffle buffers and the weighted repeats (with the epoch)."""
    num_workers: int = 0
    """Reader threads, each with its own shard of the units; ``0`` reads in the caller's thread."""
    rates: bool = False
    """Also give each sample's sampling rate (the ``fs`` column, Hz): batches ``(x, mask, fs)`` with ``fs``
    float32 ``(B,)``, for a model with ``rate_conditioning``."""
    interventions: tuple[str, ...] = ()
    """The intervention inputs of each sample, in order: ``NAME`` (a continuous intervention: its values) or
    ``NAME=CATEGORY`` (a categorical one: 1 where it is that category, else 0). Batches gain ``u`` float32
    ``(B, window_size, K)`` last (after ``fs``), NaN where a sample's group has no such intervention row (the
    model reads a NaN as "no intervention"). ``()``: none (intervention rows are left out either way)."""

    def fingerprint(self) -> dict:
        """The fields a saved state must agree on (everything but the corpus path; ``rates`` only when on, so
        states saved before it existed still load)."""
        d = asdict(self)
        d.pop("corpus")
        if not self.rates:
            d.pop("rates")
        if not self.interventions:
            d.pop("interventions")
        else:
            d["interventions"] = list(self.interventions)
        d["workers"] = max(1, self.num_workers)
        d.pop("num_workers")
        return d


def _fail(corpus: Path, reason: str) -> Nw2Error:
    return Nw2Error(f"{corpus}: {reason}")


def intervention_channels(corpus: str | Path) -> dict[str, dict]:
    """The interventions a corpus (or store) holds: per stored channel name its ``role`` (``known`` /
    ``observed``), ``categories`` (``None``: continuous) and ``rows``. Reads the small role, channel and
    categories columns only; ``{}`` for a corpus from before store schema v4."""
    import pyarrow.compute as pc

    source = open_windows(corpus, "the trainer")
    found: dict[str, dict] = {}
    for rel in source.parts():
        path = source.path(rel)
        if "role" not in pq.read_schema(path).names:
            return {}
        t = read_checked(path, columns=["role", "channel", "categories"])
        t = t.filter(pc.not_equal(t.column("role"), "signal"))
        for role, name, cats in zip(*(t.column(c).to_pylist() for c in ("role", "channel", "categories"))):
            entry = found.setdefault(name, {"role": role, "categories": cats, "rows": 0})
            entry["rows"] += 1
            if (entry["role"], entry["categories"]) != (role, cats):
                raise _fail(Path(str(corpus)), f"intervention {name!r} is stored with two roles or category lists")
    return dict(sorted(found.items()))


def intervention_inputs(corpus: str | Path, names: tuple[str, ...]) -> tuple[str, ...]:
    """The model inputs ``names`` stand for in ``corpus``: a continuous intervention's name as it is, a categorical
    one's as one ``NAME=CATEGORY`` per category (``NAME=CATEGORY`` given already stays). Nw2Error naming the corpus's
    interventions for a name it lacks, and refusing an ``observed`` one: its future is not known at forecast time,
    so it cannot be a known-ahead input."""
    held = intervention_channels(corpus)
    listed = ", ".join(f"{n} ({e['role']}{', categorical' if e['categories'] else ''})" for n, e in held.items())
    out: list[str] = []
    for name in names:
        base, _, category = name.partition("=")
        entry = held.get(base)
        if entry is None:
            raise _fail(Path(str(corpus)), f"no intervention {base!r} (it holds: {listed or 'none'})")
        if entry["role"] != "known":
            raise _fail(Path(str(corpus)), f"intervention {base!r} is observed only: its future is not known at "
                                           f"forecast time, so it cannot drive the forecast (known ones: "
                                           f"{', '.join(n for n, e in held.items() if e['role'] == 'known') or 'none'})")
        cats = entry["categories"]
        if "=" in name:
            if not cats or category not in cats:
                raise _fail(Path(str(corpus)), f"intervention {base!r} has no category {category!r} "
                                               f"(categories: {', '.join(cats or []) or 'none: it is continuous'})")
            out.append(name)
        else:
            out += [f"{base}={c}" for c in cats] if cats else [base]
    return tuple(dict.fromkeys(out))


class _Corpus:
    """The corpus's parts and units, checked from the Parquet footers only (no data is read)."""

    def __init__(self, cfg: LoaderConfig) -> None:
        source = open_windows(cfg.corpus, "the trainer")
        root = Path(cfg.corpus)
        self.parts = [Path(source.path(rel)) for rel in source.parts()]
        if cfg.batch_size < 1 or cfg.window_size < 1 or cfg.nvar < 1:
            raise _fail(root, f"batch_size, window_size and nvar must be positive "
                              f"(got {cfg.batch_size}, {cfg.window_size}, {cfg.nvar})")
        if cfg.shuffle_buffer < 0 or cfg.num_workers < 0:
            raise _fail(root, "shuffle_buffer and num_workers must not be negative")
        self.units: list[tuple[int, int]] = []
        self.has_role = False
        min_length: int | None = None
        for p, path in enumerate(self.parts):
            meta = pq.read_metadata(path)
            names = meta.schema.to_arrow_schema().names
            missing = [c for c in _COLUMNS if c not in names]
            if missing:
                raise _fail(path, f"not an nw2 corpus part: no column {', '.join(missing)}")
            if cfg.rates and "fs" not in names:
                raise _fail(path, "no fs column: the sampling rates a rate-conditioned model needs")
            if cfg.interventions and not {"role", "channel", "categories"} <= set(names):
                raise _fail(path, "no role column: the corpus holds no interventions (built before store schema "
                                  "version 4, or from a store without them)")
            self.has_role = "role" in names
            self.has_weight = "sample_weight" in names
            split_i = names.index("split")
            length_i = names.index("length") if "length" in names else None
            for g in range(meta.num_row_groups):
                rg = meta.row_group(g)
                if rg.num_rows == 0 or not may_hold(rg.column(split_i).statistics, [cfg.split]):
                    continue
                self.units.append((p, g))
                if length_i is not None:
                    st = rg.column(length_i).statistics
                    if st is not None and st.has_min_max:
                        min_length = st.min if min_length is None else min(min_length, st.min)
        if not self.units:
            raise EmptySplitError(root, cfg.split)  # "<corpus>: no rows of split '<split>'"
        if cfg.weighted and not self.has_weight:
            raise _fail(root, "weighted sampling needs a sample_weight column (a corpus, not a store)")
        if min_length is None:  # no statistics: read the small length column, else one samples row group
            min_length = self._min_length_slow()
        if cfg.window_size > min_length:
            raise _fail(root, f"window_size {cfg.window_size} is longer than the corpus windows "
                              f"({min_length} samples)")
        self.min_length = min_length

    def _min_length_slow(self) -> int:
        lengths = []
        for p, g in self.units:
            t = CheckedFile(self.parts[p]).read_row_group(g, columns=["samples"])
            lengths.append(int(pc.min(pc.list_value_length(t.column("samples"))).as_py() or 0))
        return min(lengths)


class _Reader:
    """Turns a unit into its samples: a pure function of (config, epoch, unit), cached for one unit."""

    def __init__(self, corpus: _Corpus, cfg: LoaderConfig, shard: int, nshards: int) -> None:
        self.corpus, self.cfg = corpus, cfg
        self.sample_stride = len(corpus.units) < nshards
        self.shard, self.nshards = shard, nshards
        self.files: dict[int, pq.ParquetFile] = {}
        self._interventions: tuple[int, object] | None = None

    def _part_interventions(self, p: int):
        """The intervention rows of the split in part ``p`` (a group's may lie in another row group than its
        signals: a part holds a piece's channels one after another), cached for the part being read."""
        if self._interventions is not None and self._interventions[0] == p:
            return self._interventions[1]
        f = self.files.get(p) or self.files.setdefault(p, CheckedFile(self.corpus.parts[p]))
        cols = ["role", "split", "group_id", "channel", "categories", "samples"]
        tables = [f.read_row_group(g, columns=cols) for g in range(f.num_row_groups)]
        t = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        t = t.filter(pc.and_(pc.not_equal(t.column("role"), "signal"), pc.equal(t.column("split"), self.cfg.split)))
        self._interventions = (p, t)
        return t

    def unit_samples(self, epoch: int, unit: int) -> tuple[list[np.ndarray], int]:
        """The samples of ``unit`` (each ``(channels, window_size)`` float32) and the rows skipped."""
        cfg = self.cfg
        p, g = self.corpus.units[unit]
        f = self.files.get(p)
        if f is None:
            f = self.files[p] = CheckedFile(self.corpus.parts[p])
        cols = (["samples", "group_id", "split"] + (["sample_weight"] if cfg.weighted else [])
                + (["fs"] if cfg.rates else []) + (["role"] if self.corpus.has_role else [])
                + (["channel", "categories"] if cfg.interventions else []))
        t = f.read_row_group(g, columns=cols)
        split = t.column("split").to_numpy(zero_copy_only=False)
        in_split = split == cfg.split
        signal = _signal(t)
        rows = np.flatnonzero(in_split & signal)
        if rows.size == 0:
            return [], 0
        samples = t.column("samples").combine_chunks()
        offsets = samples.offsets.to_numpy()
        values = samples.values.to_numpy(zero_copy_only=False)
        if values.dtype != np.float32:
            values = values.astype(np.float32)
        starts = offsets[rows]
        if np.any(offsets[rows + 1] - starts < cfg.window_size):
            raise _fail(self.corpus.parts[p], f"row group {g} holds a window shorter than window_size "
                                              f"{cfg.window_size}")
        shift_of: dict | None = None
        if cfg.random_crop:  # one start per group (its channels stay aligned), from the unit's own RNG
            gid_all = t.column("group_id").to_numpy(zero_copy_only=False)[rows]
            names_of, group_of = np.unique(gid_all, return_inverse=True)
            room = np.full(group_of.max() + 1, np.iinfo(np.int64).max)
            np.minimum.at(room, group_of, offsets[rows + 1] - starts - cfg.window_size + 1)  # the group's shortest
            shift = np.random.default_rng((cfg.seed, epoch, unit, 2)).integers(0, room)
            starts = starts + shift[group_of]
            shift_of = dict(zip(names_of.tolist(), shift.tolist()))
        x = values[starts[:, None] + np.arange(cfg.window_size)]  # (rows, window) float32, a copy
        finite = np.isfinite(x).all(axis=1)
        skipped = int(rows.size - finite.sum())
        rows, x = rows[finite], x[finite]
        if rows.size == 0:
            return [], skipped
        gids = t.column("group_id").to_numpy(zero_copy_only=False)[rows]
        _, first, inverse = np.unique(gids, return_index=True, return_inverse=True)
        rank_of_group = np.argsort(np.argsort(first))  # groups in order of first appearance
        order = np.argsort(rank_of_group[inverse], kind="stable")
        keys = rank_of_group[inverse][order]
        bounds = np.flatnonzero(np.diff(keys)) + 1
        weights = t.column("sample_weight").to_numpy()[rows] if cfg.weighted else None
        rates = t.column("fs").to_numpy()[rows].astype(np.float32) if cfg.rates else None
        drives = _drives(self._part_interventions(p), cfg, shift_of) if cfg.interventions else None
        # (channels, window) arrays; with rates or interventions, (array, rate, u) triples (a group has one of each)
        out: list = []
        wout: list[float] = []
        for members in np.split(order, bounds):
            u = None if drives is None else drives.get(gids[members[0]])
            if drives is not None and u is None:
                u = np.full((cfg.window_size, len(cfg.interventions)), np.nan, np.float32)
            for c in range(0, members.size, cfg.nvar):
                chunk = members[c:c + cfg.nvar]
                out.append(x[chunk] if rates is None and drives is None else
                           (x[chunk], None if rates is None else float(rates[chunk[0]]), u))
                if weights is not None:
                    wout.append(float(weights[chunk].mean()))
        if self.sample_stride:
            keep = range(self.shard, len(out), self.nshards)
            out = [out[k] for k in keep]
            wout = [wout[k] for k in keep] if weights is not None else wout
        if weights is not None:
            rng = np.random.default_rng((cfg.seed, epoch, unit, 1))
            w = np.maximum(np.asarray(wout, dtype=np.float64), 0.0)
            reps = np.floor(w).astype(np.int64) + (rng.random(w.size) < (w - np.floor(w)))
            out = [s for s, r in zip(out, reps) for _ in range(int(r))]
        return out, skipped


def _signal(t) -> np.ndarray:
    """Which rows of a table are signals (all of them without a ``role`` column: before store schema v4)."""
    if "role" not in t.column_names:
        return np.ones(t.num_rows, bool)
    return np.asarray(t.column("role").to_numpy(zero_copy_only=False) == "signal", bool)


def _drives(t, cfg: LoaderConfig, shift_of: dict | None) -> dict:
    """Per group id, the ``(window_size, K)`` float32 intervention inputs of ``cfg.interventions`` from the
    intervention rows ``t`` of the part (cropped as their group's signals are; NaN where the group lacks one)."""
    if t.num_rows == 0:
        return {}
    samples = t.column("samples").combine_chunks()
    offsets = samples.offsets.to_numpy()
    values = samples.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    rows = np.arange(t.num_rows)
    slots: dict[str, list[tuple[int, str | None]]] = {}
    for k, entry in enumerate(cfg.interventions):
        name, _, category = entry.partition("=")
        slots.setdefault(name, []).append((k, category if "=" in entry else None))
    channel = t.column("channel").to_numpy(zero_copy_only=False)
    gid = t.column("group_id").to_numpy(zero_copy_only=False)
    categories = t.column("categories")
    K = len(cfg.interventions)
    out: dict = {}
    for r in rows.tolist():
        wanted = slots.get(channel[r])
        if not wanted:
            continue
        start = int(offsets[r]) + (0 if shift_of is None else int(shift_of.get(gid[r], 0)))
        if start + cfg.window_size > offsets[r + 1]:
            continue  # shorter than the crop: this group goes without it
        v = values[start:start + cfg.window_size]
        u = out.get(gid[r])
        if u is None:
            u = out[gid[r]] = np.full((cfg.window_size, K), np.nan, np.float32)
        names = categories[r].as_py()
        for k, category in wanted:
            if category is None:
                u[:, k] = v if names is None else np.nan  # a categorical row has no continuous value
            elif names is not None and category in names:
                u[:, k] = np.where(np.isfinite(v), (v == names.index(category)).astype(np.float32), np.nan)
    return out


class _Shard:
    """One worker's stream of samples in one epoch, with an explicit, restorable state."""

    def __init__(self, corpus: _Corpus, cfg: LoaderConfig, epoch: int, shard: int, nshards: int,
                 state: dict | None = None) -> None:
        self.cfg, self.epoch = cfg, epoch
        self.reader = _Reader(corpus, cfg, shard, nshards)
        n = len(corpus.units)
        order = (np.arange(n) if cfg.shuffle_buffer == 0
                 else np.random.default_rng((cfg.seed, epoch)).permutation(n))
        self.units = [int(u) for u in (order if self.reader.sample_stride else order[shard::nshards])]
        self.size = max(1, cfg.shuffle_buffer)
        self.rng = np.random.default_rng((cfg.seed, epoch, shard, nshards))
        self.p = self.i = self.skipped = self.emitted = 0
        self.cur: list[np.ndarray] | None = None
        self.buf: list[np.ndarray] = []
        self.addr: list[tuple[int, int]] = []
        self._cache: tuple[int, list[np.ndarray]] | None = None
        if state is not None:
            self._restore(state)

    def _samples(self, pos: int) -> tuple[list[np.ndarray], int]:
        if self._cache is not None and self._cache[0] == pos:
            return self._cache[1], 0
        out, skipped = self.reader.unit_samples(self.epoch, self.units[pos])
        self._cache = (pos, out)
        return out, skipped

    def next(self) -> np.ndarray | None:
        while True:
            if self.p < len(self.units):
                if self.cur is None:
                    self.cur, skipped = self._samples(self.p)
                    if self.i == 0:
                        self.skipped += skipped
                if self.i >= len(self.cur):
                    self.p, self.i, self.cur = self.p + 1, 0, None
                    continue
                s, a = self.cur[self.i], (self.p, self.i)
                self.i += 1
                if len(self.buf) < self.size:
                    self.buf.append(s)
                    self.addr.append(a)
                    continue
                j = int(self.rng.integers(self.size))
                out, self.buf[j], self.addr[j] = self.buf[j], s, a
            elif self.buf:
                j = int(self.rng.integers(len(self.buf)))
                out = self.buf[j]
                self.buf[j], self.addr[j] = self.buf[-1], self.addr[-1]
                self.buf.pop()
                self.addr.pop()
            else:
                return None
            self.emitted += 1
            return out

    def state(self) -> dict:
        return {"p": self.p, "i": self.i, "addr": [v for a in self.addr for v in a],
                "rng": copy.deepcopy(self.rng.bit_generator.state), "skipped": self.skipped,
                "emitted": self.emitted}

    def _restore(self, st: dict) -> None:
        self.p, self.i = int(st["p"]), int(st["i"])
        self.skipped, self.emitted = int(st["skipped"]), int(st["emitted"])
        flat = [int(v) for v in st["addr"]]
        self.addr = list(zip(flat[0::2], flat[1::2]))
        by_unit: dict[int, list[np.ndarray]] = {}
        for pos, _ in self.addr:
            if pos not in by_unit:
                by_unit[pos] = self.reader.unit_samples(self.epoch, self.units[pos])[0]
        self.buf = [by_unit[pos][k] for pos, k in self.addr]
        if self.i > 0:
            self.cur = by_unit.get(self.p) or self.reader.unit_samples(self.epoch, self.units[self.p])[0]
            self._cache = (self.p, self.cur)
        self.rng.bit_generator.state = st["rng"]

    def done(self) -> bool:
        return self.p >= len(self.units) and not self.buf


def _is_done(st: dict | None, n_units: int) -> bool:
    return st is not None and st["p"] >= n_units and not st["addr"]


class CorpusLoader:
    """Batches ``(x, mask)`` of one rank's share of a corpus split; iterating gives the rest of the current
    epoch, then the epoch advances (``loader.epoch``). See the module docstring for sharding, weighting,
    the shuffle buffer and the resume state."""

    def __init__(self, config: LoaderConfig, rank: int | None = None, world_size: int | None = None) -> None:
        if rank is None or world_size is None:
            from .distributed import rank_and_world

            group_rank, group_world = rank_and_world()
            rank = group_rank if rank is None else rank
            world_size = group_world if world_size is None else world_size
        if not 0 <= rank < world_size:
            raise Nw2Error(f"rank {rank} is not in a world of size {world_size}")
        self.config, self.rank, self.world_size = config, rank, world_size
        self.corpus = _Corpus(config)
        self.workers = max(1, config.num_workers)
        self.nshards = world_size * self.workers
        self.epoch = 0
        self._next_worker = 0
        self._states: list[dict | None] = [None] * self.workers

    # -- state ---------------------------------------------------------------------------------------------
    @property
    def skipped(self) -> int:
        """Rows with a non-finite value skipped so far (by this rank, over all epochs of batches handed out)."""
        return self._skipped_before + sum(st["skipped"] for st in self._states if st is not None)

    _skipped_before = 0

    @property
    def num_units(self) -> int:
        """Units (row groups that may hold the split) of the whole corpus."""
        return len(self.corpus.units)

    def expected_samples(self) -> float:
        """Samples per epoch of the whole split (all ranks together), in expectation when weighted: what a
        trainer divides by to place a step within its epoch (the learning-rate schedule). Reads only the
        small ``group_id``, ``split`` and ``sample_weight`` columns; rows with non-finite values, which the
        loader skips, are still counted."""
        cfg = self.config
        total = 0.0
        cols = (["group_id", "split"] + (["sample_weight"] if cfg.weighted else [])
                + (["role"] if self.corpus.has_role else []))
        files: dict[int, pq.ParquetFile] = {}
        for p, g in self.corpus.units:
            f = files.get(p) or files.setdefault(p, CheckedFile(self.corpus.parts[p]))
            t = f.read_row_group(g, columns=cols)
            rows = np.flatnonzero((t.column("split").to_numpy(zero_copy_only=False) == cfg.split) & _signal(t))
            if rows.size == 0:
                continue
            gids = t.column("group_id").to_numpy(zero_copy_only=False)[rows]
            _, inverse, counts = np.unique(gids, return_inverse=True, return_counts=True)
            if not cfg.weighted:
                total += float(np.ceil(counts / cfg.nvar).sum())
                continue
            # each group's rows in store order, cut into samples of nvar rows; a sample counts its mean weight
            w = np.maximum(t.column("sample_weight").to_numpy()[rows].astype(np.float64), 0.0)
            order = np.argsort(inverse, kind="stable")
            pos = np.empty(rows.size, dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            pos[order] = np.arange(rows.size) - np.repeat(starts, counts)
            sample_id = inverse * (int(counts.max()) // cfg.nvar + 1) + pos // cfg.nvar
            _, sid, size = np.unique(sample_id, return_inverse=True, return_counts=True)
            total += float((np.bincount(sid, weights=w) / size).sum())
        return total

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning (like ``DistributedSampler.set_epoch``)."""
        self.epoch, self._next_worker, self._states = int(epoch), 0, [None] * self.workers

    def state_dict(self) -> dict:
        """The loader's position after the batches handed out so far: plain data (see the module docstring)."""
        return {"version": STATE_VERSION, "config": self.config.fingerprint(), "rank": self.rank,
                "world_size": self.world_size, "epoch": self.epoch, "next_worker": self._next_worker,
                "skipped_before": self._skipped_before,
                "workers": copy.deepcopy(self._states)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state`` (from ``state_dict`` of a loader with the same config, rank and world size)."""
        if state.get("version") != STATE_VERSION:
            raise Nw2Error(f"loader state version {state.get('version')} is not {STATE_VERSION}")
        mine = self.config.fingerprint()
        theirs = state["config"]
        diff = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if diff or state["rank"] != self.rank or state["world_size"] != self.world_size:
            what = ", ".join(f"{k} {theirs.get(k)!r} -> {mine.get(k)!r}" for k in diff) or (
                f"rank/world {state['rank']}/{state['world_size']} -> {self.rank}/{self.world_size}")
            raise Nw2Error(f"the loader state was saved with other settings ({what})")
        self.epoch = int(state["epoch"])
        self._next_worker = int(state["next_worker"])
        self._skipped_before = int(state.get("skipped_before", 0))
        self._states = copy.deepcopy(list(state["workers"]))

    # -- iteration -----------------------------------------------------------------------------------------
    def _units_of(self, w: int) -> int:
        shard = self.rank * self.workers + w
        n = self.num_units
        return n if n < self.nshards else len(range(shard, n, self.nshards))

    def _produce(self, w: int, state: dict | None, stop: threading.Event | None = None
                 ) -> Iterator[tuple[tuple[torch.Tensor, ...], dict]]:
        cfg = self.config
        shard = _Shard(self.corpus, cfg, self.epoch, self.rank * self.workers + w, self.nshards, state)
        while stop is None or not stop.is_set():
            batch = []
            while len(batch) < cfg.batch_size:
                s = shard.next()
                if s is None:
                    break
                batch.append(s)
            if not batch:
                return
            x = np.zeros((len(batch), cfg.window_size, cfg.nvar), dtype=np.float32)
            mask = np.zeros((len(batch), cfg.nvar), dtype=bool)
            fs = np.zeros(len(batch), dtype=np.float32)
            u = np.full((len(batch), cfg.window_size, len(cfg.interventions)), np.nan, np.float32)
            for b, s in enumerate(batch):
                if isinstance(s, tuple):
                    s, rate, drive = s
                    if rate is not None:
                        fs[b] = rate
                    if drive is not None:
                        u[b] = drive
                x[b, :, :s.shape[0]] = s.T
                mask[b, :s.shape[0]] = True
            tensors = ((torch.from_numpy(x), torch.from_numpy(mask)) + ((torch.from_numpy(fs),) if cfg.rates else ())
                       + ((torch.from_numpy(u),) if cfg.interventions else ()))
            yield tensors, shard.state()
            if shard.done():
                return

    def epoch_done(self) -> bool:
        """True when every batch of the current epoch has been handed out (the epoch has not advanced yet)."""
        return all(_is_done(st, self._units_of(w)) for w, st in enumerate(self._states))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.epoch_done():
            self._advance()  # a state saved after an epoch's last batch
        yield from self.epoch_batches()

    def epoch_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The rest of the current epoch only (nothing when it is done), then the epoch advances. A trainer
        that keeps its own epoch counter uses this, so a state saved after an epoch's last batch resumes
        into an empty rest of that epoch rather than into the next one."""
        if self.config.num_workers == 0:
            gens = [self._produce(w, self._states[w]) for w in range(self.workers)]
            yield from self._merge([lambda g=g: next(g, None) for g in gens])
        else:
            stop = threading.Event()
            queues = [queue.Queue(maxsize=_PREFETCH) for _ in range(self.workers)]
            threads = [threading.Thread(target=self._work, args=(w, self._states[w], queues[w], stop),
                                        daemon=True, name=f"nw2-loader-{self.rank}-{w}")
                       for w in range(self.workers)]
            for t in threads:
                t.start()
            try:
                yield from self._merge([lambda q=q: self._take(q) for q in queues])
            finally:
                stop.set()
                for q in queues:  # unblock producers waiting on a full queue
                    while not q.empty():
                        q.get_nowait()
                for t in threads:
                    t.join(timeout=10)

    @staticmethod
    def _take(q: queue.Queue) -> Any:
        item = q.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def _work(self, w: int, state: dict | None, q: queue.Queue, stop: threading.Event) -> None:
        def put(item: Any) -> None:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue
        try:
            for item in self._produce(w, state, stop):
                put(item)
            put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)

    def _merge(self, nexts: list) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        active = [not _is_done(st, self._units_of(w)) for w, st in enumerate(self._states)]
        w = self._next_worker
        while any(active):
            if not active[w]:
                w = (w + 1) % self.workers
                continue
            item = nexts[w]()
            if item is None:
                active[w] = False
                w = (w + 1) % self.workers
                continue
            tensors, st = item
            self._states[w] = st
            w = self._next_worker = (w + 1) % self.workers
            yield tensors
        self._advance()

    def _advance(self) -> None:
        self._skipped_before = self.skipped
        self.set_epoch(self.epoch + 1)
