"""Near-duplicate windows (``pipeline.balance.dedup``): signatures read from a store's ``samples`` column,
and the exact and near-copy groups found among candidate rows.

The planted store is the demo store (real recordings) plus two parts of made windows: copies of demo windows
(exact, affine 2x+3, white noise at 40 dB SNR), a sine with noise and the same sine a quarter period later,
and sines of other frequencies. One part sorts before the demo's parts and one after, so a copy can come
first in store order."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from helpers import read_all, vouch
from nw2.artifacts.store import WindowStore
from nw2.pipeline.balance import dedup as D

FIRST, LAST = "data/part-" + "0" * 32 + ".parquet", "data/part-" + "f" * 32 + ".parquet"
L = 1024


def with_samples(rows: pa.Table, windows: list[np.ndarray]) -> pa.Table:
    """``rows`` (one per window) with their ``samples`` replaced by ``windows`` (any lengths)."""
    col = rows.schema.get_field_index("samples")
    values = pa.array([np.asarray(w, np.float32) for w in windows], type=pa.list_(pa.float32()))
    return rows.set_column(col, rows.schema.field("samples"), values)


def write_store(dest: Path, demo_store: Path, parts: dict[str, pa.Table], keep_demo: bool = True) -> Path:
    if keep_demo:
        shutil.copytree(demo_store, dest)
    else:
        dest.mkdir(parents=True)
        shutil.copy(demo_store / "store.json", dest / "store.json")
        shutil.copy(demo_store / "manifest.json", dest / "manifest.json")
    store = WindowStore(str(dest))
    for rel, table in parts.items():
        store.write_table(rel, table)
        vouch(dest / rel)
    return dest


def sine(freq_per_sample: float, phase: float, noise: float, seed: int, length: int = L) -> np.ndarray:
    t = np.arange(length)
    return np.sin(2 * np.pi * freq_per_sample * t + phase) + noise * np.random.default_rng(seed).standard_normal(length)


def zscore(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return (x - x.mean()) / x.std()


@pytest.fixture(scope="module")
def planted(demo_store, tmp_path_factory):
    """The planted store, its rows, and which row holds what (store rows)."""
    demo = read_all(demo_store)
    datasets = np.asarray(demo.column("dataset").to_pylist())
    x = np.asarray(demo.column("samples").combine_chunks().values, np.float64).reshape(demo.num_rows, -1)
    ecg = int(np.flatnonzero(datasets == "mitbih")[3])
    ppg = int(np.flatnonzero(datasets == "heartpy")[5])
    resp = int(np.flatnonzero(datasets == "biosignalsplux")[2])
    rng = np.random.default_rng(7)
    noisy = x[ppg] + rng.standard_normal(L) * x[ppg].std() * 1e-2       # noise power 1e-4: 40 dB SNR
    period = 64                             # samples (1.6 Hz at 100 Hz): 16 whole periods, so no leakage
    base = np.sin(2 * np.pi * np.arange(L + period) / period) + 0.05 * rng.standard_normal(L + period)
    others = [sine(f, p, 0.3, s) for s, (f, p) in enumerate([(0.011, 0.3), (0.023, 1.0), (0.037, 2.0),
                                                             (0.05, 0.1), (0.071, 0.7), (0.09, 1.9)])]
    first = with_samples(demo.take([ppg]), [noisy])                      # the noisy copy comes first
    last_windows = [x[ecg], 2 * x[resp].astype(np.float32) + 3, base[:L], base[period // 4:period // 4 + L], *others]
    last = with_samples(demo.take(np.full(len(last_windows), ecg)), last_windows)  # rows like an ECG's
    store = write_store(tmp_path_factory.mktemp("dedup") / "store", demo_store, {FIRST: first, LAST: last})
    n = demo.num_rows + len(last_windows) + 1
    # store order: FIRST (1 row), the demo's parts, LAST
    where = {"noisy": 0, "ppg": 1 + ppg, "ecg": 1 + ecg, "resp": 1 + resp, "ecg_copy": n - len(last_windows),
             "affine": n - len(last_windows) + 1, "sine": n - len(last_windows) + 2,
             "shifted": n - len(last_windows) + 3}
    rows = read_all(store)
    assert rows.num_rows == n
    eeg = np.asarray(rows.column("dataset").to_pylist()) == "eegmmi"
    return {"store": store, "rows": rows, "where": where, "eeg": eeg, "others": np.arange(n - 6, n), "n": n}


@pytest.fixture(scope="module")
def sig(planted):
    return D.window_signatures(str(planted["store"]))


def test_xxh64_is_the_reference_hash():
    xxhash = pytest.importorskip("xxhash")
    for data in [b"", b"a", b"abc", bytes(range(256)) * 3, b"x" * 31, b"y" * 32, b"z" * 35, b"w" * 39]:
        for seed in (0, 1, 2, 2 ** 63 + 5):
            assert D.xxh64(np.frombuffer(data, np.uint8).copy(), np.uint64(seed)) == xxhash.xxh64_intdigest(data, seed)


def test_copies_are_found_and_the_first_in_store_order_is_kept(planted, sig):
    w, n = planted["where"], planted["n"]
    assert sig.n == n and sig.computed.all()
    assert sig.exact[w["ecg_copy"]] == sig.exact[w["ecg"]]
    assert sig.exact[w["affine"]] == sig.exact[w["resp"]]               # 2x+3 hashes as x
    assert sig.exact[w["noisy"]] != sig.exact[w["ppg"]]
    # the demo's own near copies are simultaneous EEG channels (below): leave them out to count exactly
    candidates = ~planted["eeg"]
    dup = D.find_duplicates(sig, candidates)
    assert (dup.exact_dropped, dup.near_dropped, dup.groups) == (2, 1, 3)
    dropped = set(dup.rows[~dup.keep].tolist())
    assert dropped == {w["ecg_copy"], w["affine"], w["ppg"]}             # the noisy copy came first: kept
    rep = dict(zip(dup.rows.tolist(), dup.representative.tolist()))
    assert rep[w["ecg_copy"]] == w["ecg"] and rep[w["affine"]] == w["resp"] and rep[w["ppg"]] == w["noisy"]
    assert rep[w["noisy"]] == w["noisy"] and dup.keep.sum() == candidates.sum() - 3
    assert dup.summary() == {"candidates": int(candidates.sum()), "kept": int(candidates.sum()) - 3,
                             "exact_dropped": 2, "near_dropped": 1, "groups": 3}
    # an index in any order gives the same groups, reported in that order
    index = np.flatnonzero(candidates)[::-1].copy()
    again = D.find_duplicates(sig, index)
    assert np.array_equal(again.rows, index) and np.array_equal(again.keep, dup.keep[::-1])
    assert np.array_equal(again.representative, dup.representative[::-1])


def test_a_quarter_period_shift_is_not_a_near_copy(planted, sig):
    """Band powers ignore phase, so the spectral signatures agree; the time-domain check rejects it."""
    a, b = planted["where"]["sine"], planted["where"]["shifted"]
    assert float(sig.spectral[a] @ sig.spectral[b]) >= D.NEAR_THRESHOLD
    sk = sig.sketch.astype(np.float64)
    assert abs(sk[a] @ sk[b]) / np.linalg.norm(sk[a]) / np.linalg.norm(sk[b]) < 0.3
    dup = D.find_duplicates(sig, np.array([a, b]))
    assert dup.keep.all() and dup.groups == 0


def test_distinct_real_and_synthetic_windows_are_not_flagged(planted, sig):
    rows, w = planted["rows"], planted["where"]
    dup = D.find_duplicates(sig, np.ones(planted["n"], bool))
    planted_pairs = {w["ecg_copy"], w["affine"], w["ppg"]}
    x = np.stack([zscore(s) for s in rows.column("samples").to_numpy(zero_copy_only=False)])
    record = np.asarray(rows.column("record").to_pylist())
    start = np.asarray(rows.column("start_s").to_pylist())
    assert not (set(dup.rows[~dup.keep].tolist()) & set(planted["others"].tolist()))
    assert dup.keep[planted["others"]].all() and dup.keep[[w["sine"], w["shifted"]]].all()
    for r in dup.rows[~dup.keep]:
        if r in planted_pairs:
            continue
        group = np.flatnonzero(dup.representative == dup.representative[r])
        # every other near copy in the demo: a channel of the same multichannel EEG window as its group
        assert planted["eeg"][r] and (record[group] == record[r]).all() and (start[group] == start[r]).all()
        best = max(float(x[r] @ x[g]) / L for g in group if g != r)
        assert best >= 0.95                                            # truly that correlated with one of them
    # one channel per window: nothing left to flag among real recordings
    _, one = np.unique(np.char.add(record.astype(str), start.astype(str)), return_index=True)
    one = np.setdiff1d(one, list(planted_pairs | {w["noisy"]}))
    assert D.find_duplicates(sig, one).keep.all()


def test_signatures_are_deterministic_and_rows_are_respected(planted, sig):
    url = str(planted["store"])
    assert D.window_signatures(url).digest() == sig.digest()
    mask = np.zeros(planted["n"], bool)
    mask[::7] = True
    part = D.window_signatures(url, rows=mask)
    assert np.array_equal(part.computed, mask)
    for name in ("exact", "spectral", "simhash", "sketch", "sketch_code", "length", "status"):
        got, full = getattr(part, name), getattr(sig, name)
        assert np.array_equal(got[mask], full[mask]), name
        assert not np.any(got[~mask]), name
    assert D.window_signatures(url, rows=np.flatnonzero(mask)).digest() == part.digest()
    with pytest.raises(ValueError, match="no signature"):
        D.find_duplicates(part, np.ones(planted["n"], bool))
    assert D.find_duplicates(part, mask).keep.sum() <= mask.sum()
    with pytest.raises(ValueError, match="rows mask"):
        D.window_signatures(url, rows=mask[:-1])


def test_an_fsspec_store_gives_the_same_signatures(planted, sig):
    import fsspec

    fs = fsspec.filesystem("memory")
    root = Path(planted["store"])
    try:
        for p in [root / "store.json", root / "manifest.json", *sorted((root / "data").glob("part-*.parquet"))]:
            fs.put(str(p), f"/dedup-planted/{p.relative_to(root).as_posix()}")
        assert D.window_signatures("memory://dedup-planted").digest() == sig.digest()
    finally:
        fs.rm("/dedup-planted", recursive=True)


def test_ragged_constant_and_non_finite_windows(planted, demo_store, tmp_path):
    demo = read_all(demo_store)
    rng = np.random.default_rng(3)
    w500 = sine(0.02, 0.4, 0.2, 1, 500)
    w30 = sine(0.1, 0.0, 0.2, 2, 30)
    nan = np.full(64, np.nan)
    windows = [w500, w30, np.full(100, 2.5), np.full(100, 2.5), np.full(100, -1.0), np.full(50, 2.5), nan,
               nan.copy(), 3 * w500 - 1, rng.standard_normal(1), np.zeros(0)]
    store = write_store(tmp_path / "ragged", demo_store, {
        FIRST: with_samples(demo.take(np.zeros(len(windows), np.int64)), windows),
        LAST: with_samples(demo.take([0]), [w500])}, keep_demo=False)
    s = D.window_signatures(str(store))
    assert s.length.tolist() == [len(w) for w in windows] + [500]
    assert s.status.tolist() == [1, 1, 2, 2, 2, 2, 3, 3, 1, 2, 2, 1]
    # a window's signature does not depend on the lengths of its neighbours
    for name in ("exact", "spectral", "simhash", "sketch", "sketch_code"):
        assert np.array_equal(getattr(s, name)[0], getattr(s, name)[11]), name
    dup = D.find_duplicates(s, np.ones(s.n, bool))
    assert dup.rows[~dup.keep].tolist() == [3, 7, 8, 11]  # constant copy, NaN copy, affine and exact copies
    assert dup.representative[[3, 7, 8, 11]].tolist() == [2, 6, 0, 0]
    assert (dup.exact_dropped, dup.near_dropped, dup.groups) == (4, 0, 3)


def test_bad_requests(sig):
    with pytest.raises(ValueError, match="twice"):
        D.find_duplicates(sig, np.array([1, 1]))
    with pytest.raises(ValueError, match="thresholds"):
        D.find_duplicates(sig, np.array([1, 2]), near_threshold=1.5)
    with pytest.raises(ValueError, match="out of range"):
        D.find_duplicates(sig, np.array([sig.n]))
    empty = D.find_duplicates(sig, np.zeros(sig.n, bool))
    assert empty.rows.size == 0 and empty.groups == 0
    assert D.max_hamming(0.98) == 25


def test_balance_drops_the_near_copies_before_selecting(demo_store, tmp_path):
    import json

    from helpers import ok

    ok("balance", demo_store, "--size", 100, "--out", tmp_path / "c", "--no-report")
    info = json.loads((tmp_path / "c" / "corpus.json").read_text())
    # the demo store's only near copies: simultaneous neighbouring channels of the 64-channel EEG record
    assert info["dedup"] == {"candidates": 1059, "kept": 1059 - info["dedup"]["near_dropped"],
                             "exact_dropped": 0, "near_dropped": info["dedup"]["near_dropped"],
                             "groups": info["dedup"]["groups"]}
    assert 0 < info["dedup"]["near_dropped"] < 100 and info["candidates"] == info["dedup"]["kept"]
    ok("balance", demo_store, "--size", 100, "--out", tmp_path / "again", "--no-report")
    assert (tmp_path / "again" / "corpus.json").read_bytes() == (tmp_path / "c" / "corpus.json").read_bytes()
    ok("balance", demo_store, "--size", 100, "--out", tmp_path / "reported")
    kept = f"{info['dedup']['kept']:,}"
    assert f"| train | balanced | {kept} |" in (tmp_path / "reported" / "report" / "report.md").read_text()
    ok("balance", demo_store, "--size", 100, "--no-dedup", "--out", tmp_path / "all", "--no-report")
    assert json.loads((tmp_path / "all" / "corpus.json").read_text())["dedup"] is None
