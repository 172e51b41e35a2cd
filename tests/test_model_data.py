"""``model.data.CorpusLoader`` on a real corpus (the demo spec, ingested and balanced through the CLI): shapes and
masks, every window once per epoch, disjoint rank shares, determinism, exact resume (also across an epoch
boundary and with worker threads), weighted sampling, non-finite rows, and one-line errors on bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from helpers import read_all, rewrite
from nw2.model.data import CorpusLoader, LoaderConfig
from nw2.core.errors import Nw2Error


@pytest.fixture(scope="module")
def corpus(demo_corpus) -> Path:
    """The demo corpus: 400 balanced train rows (one row group) plus the carried val and test rows."""
    return demo_corpus


@pytest.fixture(scope="module")
def chunked(corpus, tmp_path_factory) -> Path:
    """The same rows in 3 parts of 40-row row groups: 15 row groups, groups cut across row groups and parts."""
    return rewrite(corpus, tmp_path_factory.mktemp("chunked") / "corpus", cuts=(170, 340), row_group_size=40)


def digest(a: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(a, dtype=np.float32).tobytes()).hexdigest()


def row_digests(corpus: Path, split: str, window: int) -> Counter:
    t = read_all(corpus).filter(pc.equal(pc.field("split"), split))
    return Counter(digest(np.asarray(s, dtype=np.float32)[:window]) for s in t.column("samples").to_pylist())


def batch_digests(batches) -> Counter:
    out = Counter()
    for x, mask in batches:
        for b, c in zip(*np.nonzero(mask.numpy())):
            out[digest(x[b, :, c].numpy())] += 1
    return out


def take(loader: CorpusLoader, n: int) -> list:
    """The next ``n`` batches, across epochs; stops the iterator it leaves mid-epoch."""
    out = []
    while len(out) < n:
        it = iter(loader)
        for batch in it:
            out.append(batch)
            if len(out) == n:
                it.close()
                break
    return out


def epoch(loader: CorpusLoader) -> list:
    return list(loader)


def same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(torch.equal(x1, x2) and torch.equal(m1, m2) for (x1, m1), (x2, m2) in zip(a, b))


def cfg(corpus: Path, **kw) -> LoaderConfig:
    base = dict(batch_size=16, window_size=1024, nvar=4, shuffle_buffer=64, seed=0)
    base.update(kw)
    return LoaderConfig(corpus=corpus, **base)


def test_shapes_dtypes_masks_and_crop(corpus):
    batches = epoch(CorpusLoader(cfg(corpus, window_size=512, nvar=3)))
    assert len(batches) > 2
    for k, (x, mask) in enumerate(batches):
        assert x.dtype == torch.float32 and mask.dtype == torch.bool
        assert x.shape[1:] == (512, 3) and mask.shape == (x.shape[0], 3)
        assert x.shape[0] == 16 or k == len(batches) - 1
        m = mask.numpy()
        assert m[:, 0].all()                                   # every sample has a channel
        assert (np.diff(m.astype(int), axis=1) <= 0).all()     # real channels first, padding after
        assert (x.numpy().transpose(0, 2, 1)[~m] == 0).all()   # padding is zeros
    # cropped from the start: each channel is a row's first 512 values
    assert batch_digests(batches) == row_digests(corpus, "train", 512)


def test_random_crop_is_seeded_aligned_across_channels_and_new_each_epoch(corpus):
    W = 512
    where = {}  # digest of every W-stretch of every train row -> its start
    for s in read_all(corpus).filter(pc.equal(pc.field("split"), "train")).column("samples").to_pylist():
        row = np.asarray(s, dtype=np.float32)
        for start in range(len(row) - W + 1):
            where.setdefault(digest(row[start:start + W]), start)
    make = lambda: CorpusLoader(cfg(corpus, window_size=W, nvar=3, random_crop=True))  # noqa: E731
    first = epoch(make())
    n = len(first)
    assert same(first, epoch(make()))                             # seeded
    starts = []
    for x, mask in first:
        for b in range(x.shape[0]):
            got = {where[digest(x[b, :, c].numpy())] for c in np.flatnonzero(mask[b].numpy())}
            assert len(got) == 1                                  # a sample's channels share one start
            starts.append(got.pop())
    assert len(set(starts)) > 50 and max(starts) > 256            # not the start of the row
    later = take(make(), 2 * n)[n:]                               # the next epoch crops elsewhere
    assert batch_digests(later) != batch_digests(first)


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_window_once_per_epoch(corpus, split):
    loader = CorpusLoader(cfg(corpus, split=split))
    want = row_digests(corpus, split, 1024)
    assert sum(want.values()) > 0
    assert batch_digests(epoch(loader)) == want
    assert loader.epoch == 1
    assert batch_digests(epoch(loader)) == want                # and again the next epoch, in another order
    assert loader.skipped == 0


def test_every_window_once_with_worker_threads(chunked):
    loader = CorpusLoader(cfg(chunked, num_workers=3))
    assert loader.num_units >= 10               # row groups without train rows are pruned from statistics
    assert batch_digests(epoch(loader)) == row_digests(chunked, "train", 1024)


def test_groups_become_multichannel_samples(corpus):
    """With nvar large enough, a sample holds a whole group's channels (demo: groups of up to 31 EEG rows)."""
    t = read_all(corpus).filter(pc.equal(pc.field("split"), "train"))
    sizes = Counter(Counter(t.column("group_id").to_pylist()).values())
    batches = epoch(CorpusLoader(cfg(corpus, nvar=32, shuffle_buffer=0)))
    got = Counter(int(m.sum()) for _, mask in batches for m in mask)
    assert got == sizes


@pytest.mark.parametrize("which", ["corpus", "chunked"])   # sample-strided (1 unit) and unit-strided (13 units)
@pytest.mark.parametrize("workers", [0, 2])                 # every rank has the same num_workers (one config)
def test_ranks_are_disjoint_and_cover_the_split(which, workers, request):
    path = request.getfixturevalue(which)
    shares = [batch_digests(epoch(CorpusLoader(cfg(path, num_workers=workers), rank=r, world_size=2)))
              for r in (0, 1)]
    assert all(sum(s.values()) > 0 for s in shares)
    assert not set(shares[0]) & set(shares[1])
    assert shares[0] + shares[1] == row_digests(path, "train", 1024)


def test_deterministic_per_seed(corpus):
    a = take(CorpusLoader(cfg(corpus, seed=3)), 30)
    b = take(CorpusLoader(cfg(corpus, seed=3)), 30)
    c = take(CorpusLoader(cfg(corpus, seed=4)), 30)
    assert same(a, b)
    assert not same(a, c)
    n = len(epoch(CorpusLoader(cfg(corpus, seed=3))))
    assert not same(a[:n - 1], a[n:2 * n - 1])                 # epochs are shuffled differently


@pytest.mark.parametrize("n,m,kw,which", [
    (3, 5, {}, "corpus"),                                       # mid-epoch
    (8, 10, {}, "corpus"),                                      # across the epoch boundary
    (5, 30, {"shuffle_buffer": 0}, "corpus"),
    (7, 25, {"num_workers": 2, "rank": 1, "world_size": 2}, "chunked"),
    (4, 20, {"num_workers": 3, "batch_size": 5, "shuffle_buffer": 300}, "chunked"),
    (6, 15, {"weighted": True}, "chunked"),
    (5, 12, {"random_crop": True, "window_size": 512}, "chunked"),
])
def test_exact_resume(n, m, kw, which, request):
    path = request.getfixturevalue(which)
    rank, world = kw.pop("rank", 0), kw.pop("world_size", 1)
    loader = CorpusLoader(cfg(path, **kw), rank=rank, world_size=world)
    take(loader, n)
    state = json.loads(json.dumps(loader.state_dict()))         # plain data
    rest = take(loader, m)
    fresh = CorpusLoader(cfg(path, **kw), rank=rank, world_size=world)
    fresh.load_state_dict(state)
    assert same(take(fresh, m), rest)
    # and the uninterrupted loader agrees with the interrupted one
    whole = take(CorpusLoader(cfg(path, **kw), rank=rank, world_size=world), n + m)
    assert same(whole[n:], rest)


def test_resume_at_the_end_of_an_epoch(corpus):
    """A state taken after an epoch's last batch, before the iterator noticed the end, resumes at the next epoch."""
    n = len(epoch(CorpusLoader(cfg(corpus))))
    loader = CorpusLoader(cfg(corpus))
    it = iter(loader)
    for _ in range(n):
        next(it)
    state = loader.state_dict()
    assert state["epoch"] == 0
    assert next(it, None) is None and loader.epoch == 1
    probe = CorpusLoader(cfg(corpus))
    probe.load_state_dict(state)
    assert same(epoch(probe), epoch(loader))
    assert probe.epoch == loader.epoch == 2


def test_resume_refuses_other_settings(corpus):
    loader = CorpusLoader(cfg(corpus))
    take(loader, 2)
    with pytest.raises(Nw2Error, match="batch_size 16 -> 8"):
        CorpusLoader(cfg(corpus, batch_size=8)).load_state_dict(loader.state_dict())
    with pytest.raises(Nw2Error, match="rank/world"):
        CorpusLoader(cfg(corpus), rank=1, world_size=2).load_state_dict(loader.state_dict())


def test_weighted_sampling_favours_heavy_windows(corpus, tmp_path):
    t = read_all(corpus)
    heavy = np.array([int(g, 16) % 2 == 0 for g in t.column("group_id").to_pylist()])
    weights = np.where(heavy, 3.0, 0.25)
    t = t.set_column(t.schema.get_field_index("sample_weight"), "sample_weight", pa.array(weights))
    path = rewrite(corpus, tmp_path / "weighted", t)
    loader = CorpusLoader(cfg(path, weighted=True, nvar=1))
    seen = Counter()
    epochs = 6
    for _ in range(epochs):
        seen += batch_digests(epoch(loader))
    train = np.array(t.column("split").to_pylist()) == "train"
    rows = [digest(np.asarray(s, np.float32)) for s in t.column("samples").to_pylist()]
    per_row = np.array([seen[d] for d in rows]) / epochs
    assert per_row[train & heavy].mean() == pytest.approx(3.0, abs=0.25)
    assert per_row[train & ~heavy].mean() == pytest.approx(0.25, abs=0.1)
    # weights of 1 (the balanced demo corpus) give exactly the unweighted batches
    assert same(take(CorpusLoader(cfg(corpus, weighted=True)), 40), take(CorpusLoader(cfg(corpus)), 40))


def test_non_finite_rows_are_skipped_and_counted(corpus, tmp_path):
    t = read_all(corpus)
    samples = t.column("samples").to_pylist()
    train = [k for k, s in enumerate(t.column("split").to_pylist()) if s == "train"]
    bad = train[::50]
    for k in bad:
        samples[k][7] = float("nan") if k % 2 else float("inf")
    t = t.set_column(t.schema.get_field_index("samples"), "samples", pa.array(samples, pa.list_(pa.float32())))
    path = rewrite(corpus, tmp_path / "nan", t)
    loader = CorpusLoader(cfg(path))
    got = batch_digests(epoch(loader))
    assert loader.skipped == len(bad)
    want = Counter(digest(np.asarray(samples[k], np.float32)) for k in train if k not in bad)
    assert got == want
    assert all(torch.isfinite(x).all() for x, _ in take(loader, 5))
    assert loader.skipped >= len(bad)


def refused(config: LoaderConfig, *needles: str) -> str:
    with pytest.raises(Nw2Error) as info:
        CorpusLoader(config)
    msg = str(info.value)
    assert "\n" not in msg
    for needle in needles:
        assert needle in msg, msg
    return msg


def test_bad_input(corpus, tmp_path):
    refused(cfg(tmp_path / "nowhere"), "no such directory")
    (tmp_path / "bare").mkdir()
    refused(cfg(tmp_path / "bare"), "no corpus.json")
    empty = tmp_path / "empty"
    (empty / "data").mkdir(parents=True)
    shutil.copy(corpus / "corpus.json", empty / "corpus.json")
    refused(cfg(empty), "data/part-00000.parquet is listed in corpus.json but missing")
    for col in ("samples", "group_id"):
        path = rewrite(corpus, tmp_path / f"no-{col}", read_all(corpus).drop_columns([col]))
        refused(cfg(path), f"no column {col}", "part-00000.parquet")
    refused(cfg(corpus, window_size=2048), "window_size 2048 is longer than the corpus windows (1024 samples)")
    refused(cfg(corpus, split="holdout"), "no rows of split 'holdout'")
    refused(cfg(corpus, nvar=0), "must be positive")
