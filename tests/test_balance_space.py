"""The balancing space: reading metric columns from a real store, the quantile transform, PCA, the
quantile grid and the balance statistics."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import fsspec
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nw2.pipeline.balance.bins import Grid, balance_stats, fit_grid
from nw2.pipeline.balance.space import (DEFAULT_METRICS, ROW_COLUMNS, FeatureSpec, build_features, load_rows,
                                    quantile_transform, scan_rows)
from helpers import nw2, vouch
from nw2.core.errors import Nw2Error


@pytest.fixture(scope="module")
def bare_store(tmp_path_factory) -> Path:
    """A small store made with --no-metrics."""
    tmp = tmp_path_factory.mktemp("bare")
    spec = tmp / "spec.yaml"
    spec.write_text(yaml.safe_dump({"name": "bare", "sources": [{"dataset": "heartpy", "sample": "heartpy_ppg"}]}))
    result = nw2("ingest", spec, "--out", tmp / "store", "--scheduler", "sync", "--no-progress", "--no-metrics")
    assert result.exit_code == 0, result.output
    return tmp / "store"


# -- load_rows -------------------------------------------------------------------------------------
def test_load_rows_gives_every_row_in_store_order_with_its_metrics(demo_store):
    metrics = list(DEFAULT_METRICS)
    df = load_rows(str(demo_store), metrics)
    assert df.columns == ["part", "row", *ROW_COLUMNS, *metrics]
    assert df.schema["part"] == pl.String and df.schema["row"] == pl.Int64
    assert all(df.schema[c] == pl.String for c in ROW_COLUMNS)
    assert all(df.schema[m] == pl.Float32 for m in metrics)

    parts = sorted(p.name for p in (demo_store / "data").glob("part-*.parquet"))
    expected = [pq.read_table(demo_store / "data" / p, columns=["window_id", "split", *metrics]) for p in parts]
    assert df.height == sum(t.num_rows for t in expected) == 1167
    offset = 0
    for name, table in zip(parts, expected):
        block = df.slice(offset, table.num_rows)
        assert set(block["part"]) == {f"data/{name}"}
        assert block["row"].to_list() == list(range(table.num_rows))
        assert block["window_id"].to_list() == table["window_id"].to_pylist()
        assert block["split"].to_list() == table["split"].to_pylist()
        for m in metrics:  # float32 widened exactly, nulls kept
            assert block[m].to_list() == [None if v is None else float(np.float32(v)) for v in table[m].to_pylist()]
        offset += table.num_rows
    # correlation_dimension is undefined (null) on a few real windows of the demo.
    assert 0 < df["correlation_dimension"].null_count() < 0.1 * df.height


def test_load_rows_reads_only_the_row_and_metric_columns(demo_store):
    frame = scan_rows(str(demo_store), ["dfa", "sample_entropy"])
    plan = frame.explain()
    read, total = map(int, re.search(r"PROJECT (\d+)/(\d+) COLUMNS", plan).groups())
    assert read == len(ROW_COLUMNS) + 2 and total > read
    stored = pq.read_schema(next((demo_store / "data").glob("*.parquet"))).names
    assert "samples" in stored and total == len(stored)
    df = frame.collect()
    assert "samples" not in df.columns and df.columns[-2:] == ["dfa", "sample_entropy"]


def test_load_rows_from_an_fsspec_url_matches_the_local_store(demo_store):
    fs = fsspec.filesystem("memory")
    for name in ("store.json", "manifest.json"):
        fs.put(str(demo_store / name), f"/balance-demo/{name}")
    for p in sorted((demo_store / "data").glob("*.parquet")):
        fs.put(str(p), f"/balance-demo/data/{p.name}")
    try:
        remote = load_rows("memory://balance-demo", ["dfa", "higuchi_fd"])
    finally:
        fs.rm("/balance-demo", recursive=True)
    local = load_rows(str(demo_store), ["dfa", "higuchi_fd"])
    assert remote.equals(local)


def one_line(err: pytest.ExceptionInfo, store) -> str:
    message = str(err.value)
    assert "\n" not in message and str(store) in message
    return message


def test_a_store_without_metrics_says_to_run_nw2_metrics(bare_store):
    with pytest.raises(Nw2Error) as err:
        load_rows(str(bare_store), DEFAULT_METRICS)
    assert f"run nw2 metrics {bare_store} first" in one_line(err, bare_store)


def test_a_missing_metric_lists_those_the_store_holds(demo_store, tmp_path):
    with pytest.raises(Nw2Error) as err:
        load_rows(str(demo_store), ["dfa", "lyapunov"])
    message = one_line(err, demo_store)
    assert "metric lyapunov not in the store; it holds: largest_lyapunov, correlation_dimension" in message
    # A metric some parts lack (a metrics run that failed on them) is named with the parts.
    copy = tmp_path / "store"
    shutil.copytree(demo_store, copy)
    first = sorted((copy / "data").glob("*.parquet"))[0]
    table = pq.read_table(first)
    pq.write_table(table.drop_columns(["dfa"]), first)
    vouch(first)  # a part nw2 wrote without dfa
    with pytest.raises(Nw2Error) as err:
        load_rows(str(copy), ["dfa"])
    assert f"metric dfa missing from 1 of 13 parts (data/{first.name}, ...)" in one_line(err, copy)
    # A non-metric column is not a metric.
    with pytest.raises(Nw2Error, match="metric fs not in the store"):
        load_rows(str(demo_store), ["fs"])


def test_an_empty_store_and_a_directory_that_is_no_store(demo_store, tmp_path):
    empty = tmp_path / "empty"
    (empty / "data").mkdir(parents=True)
    shutil.copy(demo_store / "store.json", empty / "store.json")
    shutil.copy(demo_store / "manifest.json", empty / "manifest.json")  # finished, with no parts left
    with pytest.raises(Nw2Error) as err:
        load_rows(str(empty), DEFAULT_METRICS)
    assert "empty store" in one_line(err, empty)
    with pytest.raises(Nw2Error) as err:
        load_rows(str(tmp_path / "nothing"), DEFAULT_METRICS)
    assert "no such store" in one_line(err, tmp_path / "nothing")
    (tmp_path / "nothing").mkdir()
    with pytest.raises(Nw2Error) as err:
        load_rows(str(tmp_path / "nothing"), DEFAULT_METRICS)
    assert "not a window store" in one_line(err, tmp_path / "nothing")
    with pytest.raises(Nw2Error, match="no metrics chosen"):
        load_rows(str(demo_store), [])


# -- quantile transform ----------------------------------------------------------------------------
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
columns = st.lists(st.one_of(finite, st.just(float("nan")), st.sampled_from([0.0, 1.0, 2.5])), min_size=1,
                   max_size=60)
INCREASING = [lambda x: 3.0 * x - 7.0, np.arctan, np.cbrt, lambda x: np.sign(x) * np.log1p(np.abs(x)),
              lambda x: x + 1e-3 * x ** 3]


@settings(max_examples=80, deadline=None)
@given(columns, st.sampled_from(range(len(INCREASING))))
def test_quantiles_ignore_any_strictly_increasing_transform(values, which):
    x = np.array(values)
    y = INCREASING[which](x)
    # Floating point may merge distinct values: compare only when the transform kept them apart.
    ok = np.isfinite(x)
    assume(np.unique(x[ok]).size == np.unique(y[ok]).size)
    np.testing.assert_array_equal(quantile_transform(x), quantile_transform(y))


@settings(max_examples=80, deadline=None)
@given(columns)
def test_quantiles_lie_in_0_1_with_ties_equal_and_nan_kept(values):
    x = np.array(values)
    q = quantile_transform(x)
    ok = np.isfinite(x)
    assert np.all(np.isnan(q[~ok]))
    assert np.all((q[ok] > 0) & (q[ok] < 1))
    for v in np.unique(x[ok]):
        assert np.unique(q[x == v]).size == 1
    # Order kept; mid-ranks average to exactly 1/2; reversing the data mirrors the quantiles.
    order = np.argsort(x[ok], kind="stable")
    assert np.all(np.diff(q[ok][order]) >= 0)
    if ok.any():
        assert q[ok].mean() == pytest.approx(0.5)
        np.testing.assert_allclose(quantile_transform(-x)[ok], 1 - q[ok], atol=1e-12)


def test_quantiles_are_mid_ranks():
    q = quantile_transform(np.array([10.0, np.nan, 30.0, 20.0, 20.0]))
    np.testing.assert_allclose(q, [0.5 / 4, np.nan, 3.5 / 4, 2.0 / 4, 2.0 / 4])


# -- features and PCA ------------------------------------------------------------------------------
def correlated(n: int, seed: int = 0) -> np.ndarray:
    """Six skewed, correlated metric columns in very different units, a few undefined."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n, 2))
    cols = [np.exp(base[:, 0]), 1000 * base[:, 0] + base[:, 1], base[:, 1] ** 3, -base[:, 0] + 0.3 * rng.random(n),
            rng.standard_normal(n), np.tanh(base[:, 1])]
    values = np.stack(cols, axis=1)
    values[rng.random((n, 6)) < 0.01] = np.nan
    return values


def test_features_are_quantiles_in_0_1_and_undefined_rows_are_nan():
    values = correlated(2000)
    f = build_features(values, FeatureSpec(pca=None))
    assert f.components is None and f.explained is None and f.dims == 6
    assert np.array_equal(f.defined, np.isfinite(values).all(axis=1))
    assert np.all(np.isnan(f.z[~f.defined])) and np.all((f.z[f.defined] > 0) & (f.z[f.defined] < 1))
    # Fitted on the defined rows only: each column holds exactly their mid-ranks.
    m = int(f.defined.sum())
    np.testing.assert_allclose(np.sort(f.z[f.defined, 0]), (np.arange(1, m + 1) - 0.5) / m)


def test_pca_is_deterministic_with_a_fixed_sign():
    values = correlated(3000)
    f = build_features(values, FeatureSpec(pca=3))
    assert f.z.shape == (3000, 3) and f.components.shape == (3, 6)
    np.testing.assert_allclose(f.components @ f.components.T, np.eye(3), atol=1e-12)
    pivot = np.argmax(np.abs(f.components), axis=1)
    assert np.all(f.components[np.arange(3), pivot] > 0)
    assert np.all(np.diff(f.explained) <= 0) and 0.5 < f.explained.sum() <= 1
    # The first two "metrics" carry one shared factor: the first component spans them.
    assert f.explained[0] > 0.4
    # Scores are re-quantiled: each dimension uniform on the defined rows.
    m = int(f.defined.sum())
    for j in range(3):
        np.testing.assert_allclose(np.sort(f.z[f.defined, j]), (np.arange(1, m + 1) - 0.5) / m)
    # Same numbers again; the same loadings whatever the row order; negating every metric (which
    # mirrors each quantile) flips the scores but not the loadings' sign.
    again = build_features(values.copy(), FeatureSpec(pca=3))
    assert np.array_equal(again.z, f.z, equal_nan=True) and np.array_equal(again.components, f.components)
    perm = np.random.default_rng(1).permutation(3000)
    shuffled = build_features(values[perm], FeatureSpec(pca=3))
    np.testing.assert_allclose(shuffled.components, f.components, atol=1e-10)
    np.testing.assert_allclose(shuffled.z, f.z[perm], atol=1e-12)
    negated = build_features(-values, FeatureSpec(pca=3))
    np.testing.assert_allclose(negated.components, f.components, atol=1e-10)
    np.testing.assert_allclose(negated.z[f.defined], 1 - f.z[f.defined], atol=1e-12)


def test_pca_dimensions_are_capped_at_the_metrics_and_specs_are_validated():
    values = correlated(500)[:, :2]
    f = build_features(values, FeatureSpec(metrics=("a", "b"), pca=3))
    assert f.z.shape == (500, 2) and f.components.shape == (2, 2)
    assert FeatureSpec(metrics=["dfa"]).metrics == ("dfa",)
    for bad in ({"metrics": ()}, {"metrics": ("dfa", "dfa")}, {"pca": 0}, {"bins": 0}, {"nan_policy": "drop"}):
        with pytest.raises(ValueError):
            FeatureSpec(**bad)
    with pytest.raises(ValueError, match="2 columns but the spec names 6"):
        build_features(values, FeatureSpec())
    with pytest.raises(Nw2Error, match="no window has all of the metrics"):
        build_features(np.full((5, 6), np.nan), FeatureSpec())


def test_features_of_the_demo_store(demo_store):
    df = load_rows(str(demo_store), DEFAULT_METRICS)
    spec = FeatureSpec()
    f = build_features(df.select(DEFAULT_METRICS).to_numpy(), spec)
    undefined = df.select(pl.any_horizontal(pl.col(DEFAULT_METRICS).is_null())).to_series().to_numpy()
    assert np.array_equal(~f.defined, undefined) and undefined.sum() == df["correlation_dimension"].null_count()
    grid = fit_grid(f.z, f.defined, spec.bins)
    cells = grid.cells(f.z, f.defined)
    assert np.all(cells[undefined] == -1) and np.all((cells[~undefined] >= 0) & (cells[~undefined] < 125))
    # Real metrics occupy most of the 5^3 cells, unevenly.
    stats = balance_stats(cells, cells)
    assert stats["reference_cells"] > 60 and 0.7 < stats["normalized_entropy"] < 1


# -- the grid --------------------------------------------------------------------------------------
@pytest.mark.parametrize("n,bins", [(10_007, 7), (1000, 5), (12, 5), (3, 5)])
def test_grid_bins_hold_equal_counts_per_dimension_on_continuous_data(n, bins):
    rng = np.random.default_rng(n)
    z = np.column_stack([rng.random(n), rng.standard_normal(n) ** 3, rng.exponential(size=n)])
    defined = np.ones(n, bool)
    grid = fit_grid(z, defined, bins)
    assert len(grid.edges) == 3 and all(e.size == bins - 1 and np.all(np.diff(e) >= 0) for e in grid.edges)
    per_dim = grid.bin_index(z)
    for j in range(3):
        counts = np.bincount(per_dim[:, j], minlength=bins)
        assert counts.sum() == n and counts.max() - counts.min() <= 1
    cells = grid.cells(z, defined)
    np.testing.assert_array_equal(cells, np.ravel_multi_index(per_dim.T, (bins,) * 3))


def test_grid_cells_mark_undefined_rows_and_round_trip_through_json():
    rng = np.random.default_rng(0)
    z = rng.random((200, 2))
    defined = rng.random(200) > 0.1
    z[~defined] = np.nan
    grid = fit_grid(z, defined, 4)
    cells = grid.cells(z, defined)
    assert np.all(cells[~defined] == -1) and set(cells[defined]) <= set(range(16)) and grid.n_cells == 16
    again = Grid.from_dict(json.loads(json.dumps(grid.to_dict())))
    np.testing.assert_array_equal(again.cells(z, defined), cells)
    # Rows outside the fitted range land in the outer bins; a value on a cut point goes up.
    outside = grid.cells(np.array([[-5.0, 5.0], [grid.edges[0][0], 0.0]]), np.array([True, True]))
    assert outside.tolist() == [0 * 4 + 3, 1 * 4 + 0]
    # Ties never straddle a cut: a dimension with three values gives at most three bins.
    tied = np.repeat([[0.1], [0.5], [0.9]], [50, 30, 20], axis=0)
    # (cuts 0.1, 0.1, 0.5, 0.7: each value on or above a cut goes up, so 0.1 -> 2, 0.5 -> 3, 0.9 -> 4)
    cells = fit_grid(tied, np.ones(100, bool), 5).cells(tied, np.ones(100, bool))
    assert cells.tolist() == [2] * 50 + [3] * 30 + [4] * 20
    assert np.unique(fit_grid(tied, np.ones(100, bool), 5).cells(tied, np.ones(100, bool))).size == 3
    assert fit_grid(z, defined, 1).cells(z, defined).tolist() == np.where(defined, 0, -1).tolist()
    with pytest.raises(ValueError):
        fit_grid(z, defined, 0)


# -- balance statistics ----------------------------------------------------------------------------
def test_balance_stats_of_an_even_spread():
    ref = np.repeat([-1, 0, 3, 7], [10, 50, 5, 1])
    stats = balance_stats(np.array([-1, 0, 3, 7] * 3), ref)
    assert stats["occupied_cells"] == stats["reference_cells"] == 4
    assert stats["normalized_entropy"] == pytest.approx(1.0) and stats["kl_to_uniform"] == pytest.approx(0, abs=1e-12)
    assert stats["effective_regimes"] == pytest.approx(4.0) and stats["fraction_of_cells_kept"] == 1.0


def test_balance_stats_of_a_skewed_and_a_collapsed_selection():
    ref = np.arange(8)
    one = balance_stats(np.full(5, 3), ref)
    assert one["occupied_cells"] == 1 and one["fraction_of_cells_kept"] == 1 / 8
    assert one["normalized_entropy"] == 0 and one["effective_regimes"] == 1 and one["kl_to_uniform"] == pytest.approx(
        math.log(8))
    skewed = balance_stats(np.array([0, 0, 0, 1]), ref)
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert skewed["entropy"] == pytest.approx(h) and skewed["normalized_entropy"] == pytest.approx(h / math.log(8))
    assert skewed["kl_to_uniform"] == pytest.approx(math.log(8) - h)
    assert skewed["effective_regimes"] == pytest.approx(math.exp(h))
    assert balance_stats(np.array([5, 5]), np.array([5]))["normalized_entropy"] == 1.0


def test_balance_stats_with_weights_and_bad_input():
    ref = np.repeat([0, 1], [90, 10])
    # Inverse-count weights make a skewed set even.
    weights = np.where(ref == 0, 1 / 90, 1 / 10)
    even = balance_stats(ref, ref, weights)
    assert even["normalized_entropy"] == pytest.approx(1.0) and even["effective_regimes"] == pytest.approx(2.0)
    assert balance_stats(ref, ref)["normalized_entropy"] < 0.5
    with pytest.raises(ValueError, match="not occupied in the reference"):
        balance_stats(np.array([0, 2]), ref)
    with pytest.raises(ValueError, match="empty"):
        balance_stats(np.array([], np.int64), ref)
    with pytest.raises(ValueError):
        balance_stats(ref, ref, -weights)
