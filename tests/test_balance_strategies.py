"""The seven selection strategies: determinism, sizes, quotas, replacement, weights, errors, and that
the balancing strategies spread a corpus over more dynamical regimes than a random draw does, on a
skewed synthetic candidate set and on the real demo store's train split."""

from __future__ import annotations

import numpy as np
import pytest

from nw2.pipeline.balance.bins import balance_stats, fit_grid
from nw2.pipeline.balance.space import DEFAULT_METRICS, FeatureSpec, build_features, load_rows
from nw2.pipeline.balance.strategies import (DEFAULT_PARAMS, STRATEGIES, Candidates, kmeans_labels, resolve_params,
                                         select)

ALL = list(STRATEGIES)
BALANCING = [("grid", {}), ("inverse", {}), ("temperature", {"tau": 0.0}), ("kmeans", {}), ("coverage", {})]
SEEDS = range(6)


def make_candidates(values: np.ndarray, dataset, modality, spec: FeatureSpec = FeatureSpec(metrics=tuple("abc"),
                                                                                            pca=None, bins=4)):
    """Through the real pipeline: quantile features, a quantile grid, cells (-1 undefined)."""
    f = build_features(values, spec)
    cells = fit_grid(f.z, f.defined, spec.bins).cells(f.z, f.defined)
    return Candidates(f.z, cells, np.asarray(dataset, dtype=object), np.asarray(modality, dtype=object))


@pytest.fixture(scope="module")
def skewed() -> Candidates:
    """3000 windows in three metrics: most of them in one tight correlated regime, a few spread out,
    a few undefined; three datasets of very different sizes."""
    rng = np.random.default_rng(42)
    n = 3000
    common = rng.normal(0, 0.05, (n, 1)) + rng.normal(0, 0.01, (n, 3))
    rare = rng.random((n, 3)) * 4 - 2
    values = np.where((rng.random(n) < 0.85)[:, None], common, rare)
    values[rng.random(n) < 0.02, 1] = np.nan
    dataset = rng.choice(["big", "mid", "tiny"], n, p=[0.8, 0.19, 0.01])
    modality = rng.choice(["ecg", "eeg"], n, p=[0.7, 0.3])
    return make_candidates(values, dataset, modality)


@pytest.fixture(scope="module")
def demo(demo_store) -> Candidates:
    """The train split of the real demo store, as the stage builds it (default features, 5 bins)."""
    df = load_rows(str(demo_store), DEFAULT_METRICS)
    spec = FeatureSpec()
    f = build_features(df.select(DEFAULT_METRICS).to_numpy(), spec)
    cells = fit_grid(f.z, f.defined, spec.bins).cells(f.z, f.defined)
    train = (df["split"] == "train").to_numpy()
    return Candidates(f.z[train], cells[train], df["dataset"].to_numpy()[train], df["modality"].to_numpy()[train])


def group_counts(labels: np.ndarray, selected: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per group: candidates (capacity) and selected rows."""
    groups, codes = np.unique(labels, return_inverse=True)
    return np.bincount(codes, minlength=groups.size), np.bincount(codes[selected], minlength=groups.size)


def assert_water_filled(capacity: np.ndarray, taken: np.ndarray):
    """Equal quotas where capacity allows: groups not exhausted differ by at most one and hold at least
    as many as any exhausted group; exhausted groups gave everything."""
    assert np.all(taken <= capacity)
    open_ = taken < capacity
    if open_.any():
        assert taken[open_].max() - taken[open_].min() <= 1
        assert np.all(taken[~open_] <= taken[open_].min() + 1)


# -- shared contract -------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ALL)
def test_deterministic_per_seed_and_another_seed_differs(skewed, strategy):
    a = select(strategy, skewed, 300, seed=7)
    b = select(strategy, skewed, 300, seed=7)
    c = select(strategy, skewed, 300, seed=8)
    for field in ("index", "bin_id", "sample_weight"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.index, c.index)


@pytest.mark.parametrize("strategy", ALL)
def test_size_is_honoured_with_distinct_sorted_rows(skewed, strategy):
    for size in (1, 257, len(skewed)):
        sel = select(strategy, skewed, size, seed=0)
        assert len(sel) == size and sel.index.dtype == np.int64
        assert np.all(np.diff(sel.index) > 0) and sel.index[0] >= 0 and sel.index[-1] < len(skewed)
        assert np.array_equal(sel.sample_weight, np.ones(size))
        if strategy != "kmeans":
            assert np.array_equal(sel.bin_id, skewed.cells[sel.index])
    assert len(select("grid", skewed, None, seed=0)) == len(skewed)


@pytest.mark.parametrize("strategy", [s for s in ALL if s != "coverage"])
def test_with_replacement_rows_repeat_and_size_may_exceed_the_candidates(skewed, strategy):
    size = 2 * len(skewed)
    sel = select(strategy, skewed, size, seed=3, replace=True)
    assert len(sel) == size and np.all(np.diff(sel.index) >= 0)
    assert np.unique(sel.index).size < size
    again = select(strategy, skewed, size, seed=3, replace=True)
    assert np.array_equal(sel.index, again.index)
    assert np.array_equal(sel.sample_weight, np.ones(size))


def test_coverage_refuses_replacement_and_goes_two_level_above_its_pool(skewed):
    with pytest.raises(ValueError, match="coverage selects distinct windows"):
        select("coverage", skewed, 10, seed=0, replace=True)
    small = select("coverage", skewed, 100, seed=0, pool=500)         # exact: grid cells as bins
    assert len(small) == 100 and np.array_equal(small.bin_id, skewed.cells[small.index])
    big = select("coverage", skewed, 600, seed=0, pool=500, centres=64)  # size > pool: two-level
    assert len(big) == 600 and np.all(np.diff(big.index) > 0)
    assert set(np.unique(big.bin_id)) == set(range(-1, 64))           # 64 Voronoi cells + the undefined one


# -- quotas ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [40, 300, 1500])
def test_grid_gives_equal_quotas_per_cell_with_water_filling(skewed, size):
    sel = select("grid", skewed, size, seed=1)
    capacity, taken = group_counts(skewed.cells, sel.index)
    assert taken.sum() == size
    assert_water_filled(capacity, taken)
    if size >= 300:  # small cells (including the undefined one, -1) give everything
        small = capacity < taken.max()
        assert small.any() and np.array_equal(taken[small], capacity[small])
        assert np.sum(sel.bin_id == -1) == min(np.sum(skewed.cells == -1), taken.max())


def test_grid_with_replacement_gives_every_cell_the_same_quota(skewed):
    sel = select("grid", skewed, 1000, seed=2, replace=True)
    _, taken = group_counts(skewed.cells, sel.index)
    assert taken.max() - taken.min() <= 1 and taken.sum() == 1000


@pytest.mark.parametrize("by", ["dataset", "modality"])
def test_stratified_gives_equal_shares_per_group(skewed, by):
    labels = skewed.dataset if by == "dataset" else skewed.modality
    for size in (3, 200, 1200):
        sel = select("stratified", skewed, size, seed=4, by=by)
        capacity, taken = group_counts(labels, sel.index)
        assert taken.sum() == size
        assert_water_filled(capacity, taken)
    # Integer codes instead of names select the same rows.
    codes = np.unique(labels, return_inverse=True)[1]
    as_codes = Candidates(skewed.z, skewed.cells, codes if by == "dataset" else skewed.dataset,
                          codes if by == "modality" else skewed.modality)
    assert np.array_equal(select("stratified", as_codes, 500, seed=4, by=by).index,
                          select("stratified", skewed, 500, seed=4, by=by).index)
    # The tiny dataset gives all its windows; the leftover goes to the two others, evenly.
    sel = select("stratified", skewed, 1200, seed=4)
    capacity, taken = group_counts(skewed.dataset, sel.index)
    assert taken[2] == capacity[2] and abs(int(taken[0]) - int(taken[1])) <= 1


def test_kmeans_gives_equal_shares_per_cluster_and_labels_them(skewed):
    sel = select("kmeans", skewed, 640, seed=5, k=16)
    labels = kmeans_labels(skewed, np.random.default_rng(5), k=16)
    assert np.array_equal(sel.bin_id, labels[sel.index])
    assert set(np.unique(labels)) <= set(range(-1, 16)) and np.array_equal(labels == -1, ~skewed.defined)
    capacity, taken = group_counts(labels, sel.index)
    assert_water_filled(capacity, taken)
    assert np.unique(labels[labels >= 0]).size == 16
    # Fitted on a sample: still every defined row gets a cluster, and the same seed the same clusters.
    a = kmeans_labels(skewed, np.random.default_rng(9), k=8, fit_sample=200)
    assert np.array_equal(a, kmeans_labels(skewed, np.random.default_rng(9), k=8, fit_sample=200))
    assert np.all(a[skewed.defined] >= 0)


def test_kmeans_with_fewer_distinct_points_than_k():
    z = np.repeat([[0.1, 0.1], [0.9, 0.9]], 20, axis=0)
    cand = Candidates(z, np.repeat([0, 3], 20), ["d"] * 40, ["ecg"] * 40)
    sel = select("kmeans", cand, 10, seed=0, k=5)
    assert sorted(np.unique(sel.bin_id)) == [0, 1] and np.bincount(sel.bin_id).tolist() == [5, 5]


def test_inverse_and_temperature_draw_cells_with_the_stated_probabilities():
    """Two cells of 900 and 100 rows, many independent draws: P(small cell) = 100^tau / (900^tau + 100^tau)."""
    cand = Candidates(np.zeros((1000, 1)), np.repeat([0, 1], [900, 100]), ["d"] * 1000, ["ecg"] * 1000)
    for strategy, params, expected in [("inverse", {}, 0.5), ("temperature", {"tau": 0.5}, 0.25),
                                       ("temperature", {"tau": 1.0}, 0.1), ("temperature", {"tau": 2.0}, 1 / 82)]:
        small = [np.mean(select(strategy, cand, 20, seed=s, replace=True, **params).bin_id == 1) for s in range(300)]
        assert np.mean(small) == pytest.approx(expected, abs=0.02), strategy
    # Without replacement (Efraimidis-Spirakis) a small sample follows the same probabilities.
    small = [np.mean(select("inverse", cand, 10, seed=s).bin_id == 1) for s in range(300)]
    assert np.mean(small) == pytest.approx(0.5, abs=0.04)
    # tau = 0 is inverse, draw for draw.
    assert np.array_equal(select("inverse", cand, 50, seed=1).index,
                          select("temperature", cand, 50, seed=1, tau=0.0).index)


def test_coverage_spreads_out_and_keeps_one_undefined_window(skewed):
    size = 60
    sel = select("coverage", skewed, size, seed=0)
    rand = select("random", skewed, size, seed=0)
    defined = skewed.defined

    def radius(index):
        chosen = skewed.z[index][defined[index]]
        d = np.sqrt(((skewed.z[defined][:, None, :] - chosen[None, :, :]) ** 2).sum(-1))
        return d.min(axis=1).max()

    assert radius(sel.index) < 0.6 * radius(rand.index)
    assert np.sum(sel.bin_id == -1) == 1


# -- weights ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ALL)
def test_weights_only_returns_every_candidate_with_its_sampling_weight(skewed, strategy):
    params = {"tau": 0.3} if strategy == "temperature" else {}
    sel = select(strategy, skewed, None, seed=0, weights_only=True, **params)
    n = len(skewed)
    assert np.array_equal(sel.index, np.arange(n)) and sel.sample_weight.mean() == pytest.approx(1.0)
    assert np.array_equal(sel.index, select(strategy, skewed, 10 * n, seed=1, weights_only=True, **params).index)
    _, cell_codes, cell_counts = np.unique(skewed.cells, return_inverse=True, return_counts=True)
    w = sel.sample_weight
    if strategy in ("random", "coverage"):
        assert np.all(w == 1.0)
    elif strategy in ("grid", "inverse"):
        np.testing.assert_allclose(w * cell_counts[cell_codes], (w * cell_counts[cell_codes])[0])
    elif strategy == "temperature":
        np.testing.assert_allclose(w / cell_counts[cell_codes] ** (0.3 - 1), (w / cell_counts[cell_codes] ** -0.7)[0])
    elif strategy == "stratified":
        _, codes, counts = np.unique(skewed.dataset, return_inverse=True, return_counts=True)
        np.testing.assert_allclose(w * counts[codes], (w * counts[codes])[0])
        # Each dataset carries the same total weight.
        np.testing.assert_allclose(np.bincount(codes, weights=w), n / counts.size)
    elif strategy == "kmeans":
        assert np.array_equal(sel.bin_id, kmeans_labels(skewed, np.random.default_rng(0)))
        _, codes, counts = np.unique(sel.bin_id, return_inverse=True, return_counts=True)
        np.testing.assert_allclose(w * counts[codes], (w * counts[codes])[0])
    if strategy != "kmeans":
        assert np.array_equal(sel.bin_id, skewed.cells)
    if strategy in ("grid", "inverse"):  # every cell carries the same weight: an even spread
        assert balance_stats(sel.bin_id, skewed.cells, w)["normalized_entropy"] == pytest.approx(1.0)


# -- balance ---------------------------------------------------------------------------------------
def mean_stats(cand: Candidates, strategy: str, size: int, params: dict) -> tuple[float, float]:
    stats = [balance_stats(cand.cells[select(strategy, cand, size, seed=s, **params).index], cand.cells)
             for s in SEEDS]
    return (float(np.mean([s["normalized_entropy"] for s in stats])),
            float(np.mean([s["effective_regimes"] for s in stats])))


@pytest.mark.parametrize("strategy,params", BALANCING, ids=[s for s, _ in BALANCING])
def test_balancing_strategies_spread_a_skewed_set_over_more_regimes_than_random(skewed, strategy, params):
    size = 300
    base_h, base_e = mean_stats(skewed, "random", size, {})
    h, e = mean_stats(skewed, strategy, size, params)
    before = balance_stats(skewed.cells, skewed.cells)
    assert base_h < 0.85 * before["normalized_entropy"] + 0.15  # random keeps the skew
    # kmeans puts more centres where windows are dense, so it evens out less than grid or inverse.
    assert h > base_h + 0.03 and e > 1.1 * base_e
    if strategy in ("grid", "inverse", "temperature"):
        assert h > 0.9 and e > 1.8 * base_e


@pytest.mark.parametrize("strategy,params", BALANCING, ids=[s for s, _ in BALANCING])
def test_balancing_strategies_beat_random_on_the_demo_train_split(demo, strategy, params):
    assert len(demo) > 1000 and np.any(demo.cells == -1)
    size = 200
    base_h, base_e = mean_stats(demo, "random", size, {})
    h, e = mean_stats(demo, strategy, size, params)
    assert h > base_h + 0.01 and e > base_e + 3


def test_stratified_balances_datasets_on_the_demo(demo):
    sel = select("stratified", demo, 200, seed=0)
    capacity, taken = group_counts(demo.dataset, sel.index)
    assert_water_filled(capacity, taken)
    assert taken.min() == min(capacity.min(), taken.max())  # pyhrv's 3 windows are all kept


# -- bad requests ----------------------------------------------------------------------------------
def test_bad_requests_are_refused_with_the_reason(skewed):
    n = len(skewed)
    with pytest.raises(ValueError, match="unknown strategy 'uniform'; valid strategies: random, stratified, grid, "
                                         "inverse, temperature, kmeans, coverage"):
        select("uniform", skewed, 10, seed=0)
    with pytest.raises(ValueError, match=f"size {n + 1} is larger than the {n} candidate windows"):
        select("grid", skewed, n + 1, seed=0)
    cases = [({"strategy": "temperature", "tau": -0.5}, "tau must be a finite number >= 0"),
             ({"strategy": "temperature", "tau": float("nan")}, "tau must be"),
             ({"strategy": "kmeans", "k": 0}, "k must be a positive integer"),
             ({"strategy": "kmeans", "fit_sample": 0}, "fit_sample must be a positive integer"),
             ({"strategy": "coverage", "pool": 0}, "pool must be a positive integer"),
             ({"strategy": "stratified", "by": "subject"}, "by must be 'dataset' or 'modality'"),
             ({"strategy": "grid", "tau": 0.5}, "strategy grid does not take 'tau'; it takes: no parameters"),
             ({"strategy": "kmeans", "kk": 3}, "it takes: k, fit_sample, batch, iterations")]
    for kwargs, message in cases:
        strategy = kwargs.pop("strategy")
        with pytest.raises(ValueError, match=message):
            select(strategy, skewed, 10, seed=0, **kwargs)
    for size in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="size"):
            select("random", skewed, size, seed=0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        select("random", skewed, 10, seed=-1)
    empty = Candidates(np.zeros((0, 3)), np.zeros(0, np.int64), [], [])
    with pytest.raises(ValueError, match="no candidate windows"):
        select("random", empty, 1, seed=0)
    with pytest.raises(ValueError, match="dataset has 2 rows"):
        Candidates(np.zeros((3, 2)), [0, 1, 2], ["a", "b"], ["x", "y", "z"])


def test_resolved_parameters_fill_in_defaults():
    assert resolve_params("temperature", {"tau": None}) == {"tau": 0.5}
    assert resolve_params("kmeans", {"k": 8}) == {**DEFAULT_PARAMS["kmeans"], "k": 8}
    assert resolve_params("random") == {}


def test_the_registry_is_the_one_list_of_strategies_and_parameters():
    """spec.py's names and balance fields, the stage's parameters and the CLI help all come from STRATEGIES."""
    import dataclasses
    import subprocess
    import sys

    from typer.testing import CliRunner

    from nw2.cli import app
    from nw2.pipeline.balance.strategies import ParamError, Strategy, spec_params
    from nw2.pipeline.spec import BALANCE_STRATEGIES, BalanceSpec

    assert BALANCE_STRATEGIES == tuple(STRATEGIES) and len(STRATEGIES) == 7
    assert all(isinstance(s, Strategy) and s.description and "\n" not in s.description for s in STRATEGIES.values())
    assert {name: s.defaults() for name, s in STRATEGIES.items()} == DEFAULT_PARAMS
    fields = [f.name for f in dataclasses.fields(BalanceSpec)]
    assert fields[-len(spec_params()):] == list(spec_params()) == ["by", "tau", "k", "fit_sample", "pool"]
    spec = BalanceSpec()
    for name, (strategy, f, _) in spec_params().items():
        assert getattr(spec, name) == DEFAULT_PARAMS[strategy][name] == f.default
    assert STRATEGIES["kmeans"].spec_params == ("k", "fit_sample")        # batch, iterations: select() only
    with pytest.raises(ParamError) as err:
        STRATEGIES["kmeans"].params(k=0)
    assert (err.value.field, err.value.problem) == ("k", "must be a positive integer, got 0")
    help_text = " ".join(CliRunner().invoke(app, ["balance", "--help"], env={"COLUMNS": "200"}).output.split())
    assert f"{', '.join(BALANCE_STRATEGIES[:-1])} or {BALANCE_STRATEGIES[-1]}." in help_text
    assert "kmeans: number of clusters (default 32)." in help_text
    # the registry loads without Numba (the kernels are imported on first use)
    code = "import sys, nw2.pipeline.spec, nw2.cli; assert 'numba' not in sys.modules, 'numba loaded'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# -- coverage: exact and two-level -----------------------------------------------------------------
def gonzalez_reference(z: np.ndarray, size: int, seed: int, pool: int) -> np.ndarray:
    """Greedy k-center in plain NumPy, drawing the pool and the start as coverage's exact mode does."""
    rng = np.random.default_rng(seed)
    n = z.shape[0]
    members = np.sort(rng.choice(n, pool, replace=False, shuffle=False)) if n > pool else np.arange(n)
    x = z[members]
    chosen = [int(rng.integers(0, members.size))]
    best = np.full(members.size, np.inf)
    for _ in range(1, size):
        best = np.minimum(best, ((x - x[chosen[-1]]) ** 2).sum(axis=1))
        best[chosen] = -1.0
        chosen.append(int(np.argmax(best)))                          # ties: the first
    return np.sort(members[chosen])


def nearest_selected(query: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Brute force: each query row's distance to its nearest chosen row."""
    return np.sqrt(((query[:, None, :] - chosen[None, :, :]) ** 2).sum(-1)).min(axis=1)


@pytest.fixture(scope="module")
def blobs() -> Candidates:
    """4000 rows in 5 dims: a dense blob (80 %), a thin line, scattered rows, and 3 % undefined."""
    rng = np.random.default_rng(11)
    n = 4000
    kind = rng.choice(3, n, p=[0.8, 0.12, 0.08])
    z = np.where((kind == 0)[:, None], rng.normal(0.3, 0.02, (n, 5)), rng.random((n, 5)))
    z[kind == 1, 1:] = 0.8
    z[rng.random(n) < 0.03, 2] = np.nan
    return Candidates(z, np.zeros(n, np.int64), rng.choice(["a", "b"], n), np.zeros(n, np.int64))


@pytest.mark.parametrize("size,pool", [(1, 200_000), (50, 200_000), (120, 700)])
def test_coverage_exact_mode_is_the_plain_greedy(skewed, size, pool):
    defined = Candidates(skewed.z[skewed.defined], skewed.cells[skewed.defined],
                         skewed.dataset[skewed.defined], skewed.modality[skewed.defined])
    for seed in (0, 5):
        sel = select("coverage", defined, size, seed=seed, pool=pool)
        assert np.array_equal(sel.index, gonzalez_reference(defined.z, size, seed, pool))
        assert np.array_equal(np.sort(sel.order), np.arange(size))     # the pick order, a permutation


def test_parallel_nearest_centre_is_the_serial_one():
    from nw2.pipeline.balance.kernels import nearest_centre, nearest_centre_parallel

    rng = np.random.default_rng(3)
    x = np.round(rng.random((5000, 4)) * 4) / 4                        # many exact ties
    x[::97, 1] = np.nan
    for k in (1, 3, 4, 37):
        centres = np.round(rng.random((k, 4)) * 4) / 4
        assert np.array_equal(nearest_centre_parallel(x, centres), nearest_centre(x, centres))
    assert np.all(nearest_centre_parallel(x, centres)[::97] == -1)
    sub = np.ascontiguousarray(centres[:, :3])                         # a strided x is taken as it is
    assert np.array_equal(nearest_centre_parallel(x[:, :3], sub), nearest_centre(x[:, :3], sub))


def two_level(cand, size, seed, **params):
    return select("coverage", cand, size, seed=seed, exact_budget=1.0, **params)


def test_coverage_two_level_is_deterministic_sized_and_represents_every_cell(blobs):
    import numba

    size, centres = 400, 48
    a = two_level(blobs, size, 4, centres=centres)
    b = two_level(blobs, size, 4, centres=centres)
    for field in ("index", "bin_id", "order"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.index, two_level(blobs, size, 5, centres=centres).index)
    assert len(a) == size and np.all(np.diff(a.index) > 0) and np.array_equal(a.sample_weight, np.ones(size))
    # every Voronoi cell (and the undefined cell) holds a selected row; undefined rows only in -1
    assert set(np.unique(a.bin_id)) == set(range(-1, centres))
    assert np.array_equal(a.bin_id == -1, ~blobs.defined[a.index])
    # quotas: equal under the cell sizes (water-filling); the bins are the nearest centre
    from nw2.pipeline.balance.kernels import nearest_centre

    centre_rows = a.index[a.order < centres]                            # the centres are picked first
    assert centre_rows.size == centres and set(a.bin_id[a.order < centres]) == set(range(centres))
    by_cell = centre_rows[np.argsort(a.bin_id[a.order < centres])]
    labels = nearest_centre(blobs.z, blobs.z[by_cell])
    labels[by_cell] = np.arange(centres)
    assert np.array_equal(labels[a.index], a.bin_id)
    capacity, taken = group_counts(labels, a.index)
    assert_water_filled(capacity, taken)
    # the same selection whatever the number of threads
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = two_level(blobs, size, 4, centres=centres)
    finally:
        numba.set_num_threads(before)
    assert np.array_equal(one.index, a.index) and np.array_equal(one.bin_id, a.bin_id)
    # a size below the number of cells, and all rows
    assert len(two_level(blobs, 5, 0, centres=centres)) == 5
    assert np.array_equal(two_level(blobs, len(blobs), 0).index, np.arange(len(blobs)))


@pytest.mark.parametrize("size", [100, 400])
def test_coverage_two_level_covers_better_than_random(blobs, size):
    """Max and 90th percentile of the distance from a row to its nearest selected row, over the rows
    outside the dense blob (a random draw spends most of its rows in the blob)."""
    defined = blobs.defined
    rare = blobs.z[defined & np.any(np.abs(np.nan_to_num(blobs.z) - 0.3) > 0.1, axis=1)]
    assert 500 < rare.shape[0] < 1000

    def radius(index):
        d = nearest_selected(rare, blobs.z[index[defined[index]]])
        return np.array([d.max(), np.quantile(d, 0.9)])

    rnd = np.mean([radius(select("random", blobs, size, seed=s).index) for s in range(4)], axis=0)
    for seed in range(3):
        # a tiny budget: centres, then a uniform sample of every cell
        uniform = two_level(blobs, size, seed, centres=32)
        assert uniform.bin_id.max() == 31
        uni = radius(uniform.index)
        assert np.all(uni < [0.75, 0.7] * rnd)
        # a budget below the exact search (400 x 4000 x 5 = 8e6) but enough for in-cell farthest-point
        greedy = select("coverage", blobs, size, seed=seed, exact_budget=1e6, centres=32)
        assert greedy.bin_id.max() == 31
        gre = radius(greedy.index)
        assert np.all(gre <= uni) and np.all(gre < [0.55, 0.6] * rnd)
        if size == 400:
            assert np.all(gre < 0.1 * rnd)


# -- caps and mixture ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grouped(skewed) -> Candidates:
    """The skewed set with records (a few very large ones) and subjects (10 records each)."""
    rng = np.random.default_rng(8)
    record = (rng.zipf(1.6, len(skewed)) - 1) % 300
    return Candidates(skewed.z, skewed.cells, skewed.dataset, skewed.modality, record=record, subject=record // 10)


def test_caps_are_never_exceeded(grouped):
    from nw2.pipeline.balance.strategies import select_constrained

    size = 400
    for strategy in ALL:
        for seed in range(4):
            caps = {"record": 0.02, "subject": 30 + 10 * seed, "dataset": 0.6}
            sel, rep = select_constrained(strategy, grouped, size, seed, caps=caps)
            assert np.all(np.diff(sel.index) > 0)
            for key, cap in (("record", 8), ("subject", 30 + 10 * seed), ("dataset", 240)):
                _, taken = group_counts(getattr(grouped, key), sel.index)
                assert taken.max() <= cap and rep["caps"][key]["cap"] == cap
                assert rep["caps"][key]["max_selected"] == taken.max()
            assert rep["selected"] == len(sel) == size - rep["short_by"]
            assert rep["caps"]["record"]["groups_trimmed"] > 0 and rep["rounds"] >= 2
            again, rep2 = select_constrained(strategy, grouped, size, seed, caps=caps)
            assert np.array_equal(again.index, sel.index) and rep2 == rep
    # coverage trims by its pick order
    assert select_constrained("coverage", grouped, 200, 0, caps={"record": 3})[1]["trim"] == "pick order"
    assert select_constrained("grid", grouped, 200, 0, caps={"record": 3})[1]["trim"] == "seeded random"


def test_caps_that_make_the_size_impossible_report_short_by(grouped):
    from nw2.pipeline.balance.strategies import select_constrained

    n_records = np.unique(grouped.record).size
    sel, rep = select_constrained("grid", grouped, 1000, 0, caps={"record": 2})
    _, taken = group_counts(grouped.record, sel.index)
    assert taken.max() <= 2
    # every record gave min(2, its rows): nothing more could be taken
    capacity, _ = group_counts(grouped.record, np.arange(len(grouped)))
    assert len(sel) == np.minimum(capacity, 2).sum() < 1000 and rep["short_by"] == 1000 - len(sel)
    assert rep["caps"]["record"]["groups"] == n_records
    import json

    assert json.loads(json.dumps(rep)) == rep


def test_no_constraint_is_select_and_mixture_quotas_are_exact(grouped):
    from nw2.pipeline.balance.strategies import select_constrained

    for strategy in ("random", "grid", "coverage"):
        sel, rep = select_constrained(strategy, grouped, 300, 2)
        assert np.array_equal(sel.index, select(strategy, grouped, 300, seed=2).index) and rep["rounds"] == 1
    capacity = dict(zip(*np.unique(grouped.dataset, return_counts=True)))
    assert capacity["tiny"] < 100
    for strategy in ALL:
        # 1000 x (5, 3, 2) / 10 = 500, 300, 200; tiny has fewer than 200: all of it, the rest 5:3
        sel, rep = select_constrained(strategy, grouped, 1000, 1, mixture={"big": 5, "mid": 3, "tiny": 2})
        left = 1000 - capacity["tiny"]
        big = round(left * 5 / 8 - 0.5) + (1 if (left * 5 / 8) % 1 >= (left * 3 / 8) % 1 else 0)
        expected = {"tiny": capacity["tiny"], "big": big, "mid": left - big}
        _, taken = group_counts(grouped.dataset, sel.index)
        assert dict(zip(["big", "mid", "tiny"], taken.tolist())) == expected == rep["mixture"]["quotas"]
        assert len(sel) == 1000 and rep["short_by"] == 0
        again, _ = select_constrained(strategy, grouped, 1000, 1, mixture={"big": 5, "mid": 3, "tiny": 2})
        assert np.array_equal(again.index, sel.index)
    # a dataset left out gets nothing; integer codes work as keys
    sel, rep = select_constrained("grid", grouped, 90, 0, mixture={"big": 1, "mid": 2})
    _, taken = group_counts(grouped.dataset, sel.index)
    assert taken.tolist() == [30, 60, 0] and rep["mixture"]["excluded"] == ["tiny"]
    codes = np.unique(grouped.dataset, return_inverse=True)[1]
    as_codes = Candidates(grouped.z, grouped.cells, codes, grouped.modality)
    sel, rep = select_constrained("random", as_codes, 90, 0, mixture={0: 1, 1: 2})
    assert np.bincount(codes[sel.index], minlength=3).tolist() == [30, 60, 0]


def test_mixture_and_caps_together(grouped):
    from nw2.pipeline.balance.strategies import select_constrained

    sel, rep = select_constrained("kmeans", grouped, 600, 3, caps={"record": 10}, mixture={"big": 1, "mid": 1})
    _, taken = group_counts(grouped.record, sel.index)
    assert taken.max() <= 10 and np.sum(grouped.dataset[sel.index] == "tiny") == 0
    assert rep["selected"] + rep["short_by"] == 600
    assert sum(rep["mixture"]["selected"].values()) == len(sel)


def test_constrained_requests_are_checked(grouped, skewed):
    from nw2.pipeline.balance.strategies import select_constrained

    cases = [({"caps": {"record": 0.1}, "weights_only": True}, "weights_only keeps every candidate"),
             ({"mixture": {"big": 1}, "weights_only": True}, "weights_only"),
             ({"caps": {"patient": 3}}, "unknown group 'patient'"),
             ({"caps": {"record": 0.0}}, "caps.record must be a fraction"),
             ({"caps": {"record": 1.5}}, "caps.record must be a fraction"),
             ({"caps": {"record": 0}}, "caps.record must be a row count"),
             ({"caps": {"record": True}}, "caps.record must be"),
             ({"mixture": {"huge": 1}}, "mixture names dataset 'huge', which has no candidate windows"),
             ({"mixture": {"big": -1}}, "weight of 'big' must be a finite number >= 0"),
             ({"mixture": {"big": 0}}, "at least one weight must be > 0"),
             ({"mixture": {}}, "mixture must be a non-empty mapping")]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            select_constrained("grid", grouped, 10, 0, **kwargs)
    with pytest.raises(ValueError, match=r"caps.subject needs the candidates' subject"):
        select_constrained("grid", skewed, 10, 0, caps={"subject": 3})
    with pytest.raises(ValueError, match="larger than the"):
        select_constrained("grid", grouped, len(grouped) + 1, 0, caps={"record": 3})
    sel, rep = select_constrained("grid", grouped, None, 0, weights_only=True)
    assert len(sel) == len(grouped) and rep["weights_only"]
    # with replacement a row drawn twice counts twice
    sel, rep = select_constrained("random", grouped, 500, 0, replace=True, caps={"record": 5})
    _, taken = group_counts(grouped.record, sel.index)
    assert taken.max() <= 5 and np.unique(sel.index).size < len(sel)
