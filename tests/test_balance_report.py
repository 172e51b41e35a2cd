"""The balance report (``pipeline.balance.report``) on the demo store: three PNGs and report.md, their
contents against the numbers they claim to show, byte-identical reruns, and the stage writing it."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import matplotlib
import numpy as np
import polars as pl
import pytest

from nw2.pipeline.balance import report as R
from nw2.pipeline.balance.bins import balance_stats, fit_grid
from nw2.pipeline.balance.space import DEFAULT_METRICS, FeatureSpec, build_features, load_rows
from nw2.pipeline.balance.strategies import Candidates, select

PNGS = ("metrics.png", "occupancy.png", "mix.png")
SIZE = 240
BINS = 4


@pytest.fixture(scope="module")
def store(demo_store) -> Path:
    return demo_store


@pytest.fixture(scope="module")
def rows(store) -> pl.DataFrame:
    return load_rows(str(store), DEFAULT_METRICS)


def balance_inputs(rows: pl.DataFrame, strategy: str, seed: int = 0, weights_only: bool = False,
                   pca: int | None = 3, **params):
    """``(before, after, info, extra)`` as the stage hands them to the report: the train split balanced,
    val/test carried through; ``extra`` holds the grid cells and the selection for checks."""
    metrics = list(DEFAULT_METRICS)
    values = rows.select([pl.col(m).fill_null(np.nan) for m in metrics]).to_numpy()
    feats = build_features(np.ascontiguousarray(values), FeatureSpec(metrics=tuple(metrics), pca=pca, bins=BINS))
    split = rows.get_column("split").to_numpy().astype(str)
    cand_idx = np.flatnonzero(split == "train")
    grid = fit_grid(feats.z[cand_idx], feats.defined[cand_idx], BINS)
    cells = grid.cells(feats.z, feats.defined)
    dataset = rows.get_column("dataset").to_numpy().astype(object)
    modality = rows.get_column("modality").to_numpy().astype(object)
    cand = Candidates(z=feats.z[cand_idx], cells=cells[cand_idx], dataset=dataset[cand_idx],
                      modality=modality[cand_idx])
    sel = select(strategy, cand, None if weights_only else SIZE, seed, weights_only=weights_only, **params)
    sel_global = cand_idx[sel.index]
    cand_cells = cells[cand_idx]
    if weights_only:
        stats_sel = balance_stats(cells[sel_global], cand_cells, weights=sel.sample_weight)
        stats_rnd = balance_stats(cand_cells, cand_cells)
    else:
        rnd = select("random", cand, len(sel.index), seed)
        stats_sel = balance_stats(cells[sel_global], cand_cells)
        stats_rnd = balance_stats(cand_cells[rnd.index], cand_cells)
    carried = np.flatnonzero(split != "train")
    all_global = np.concatenate([sel_global, carried])
    all_bin = np.concatenate([sel.bin_id, cells[carried]])
    all_w = np.concatenate([sel.sample_weight, np.ones(carried.size)])
    order = np.argsort(all_global, kind="stable")
    before = rows.with_columns(pl.Series("bin_id", cells, pl.Int64))
    after = rows[all_global[order]].with_columns(pl.Series("bin_id", all_bin[order], pl.Int64),
                                                 pl.Series("sample_weight", all_w[order], pl.Float64))
    info = {
        "strategy": strategy, "seed": seed, "size": None if weights_only else SIZE, "fraction": None,
        "replace": False, "weights_only": weights_only, "params": params, "metrics": metrics, "pca": pca,
        "bins_per_dim": BINS, "dims": int(feats.z.shape[1]), "nan_policy": "own_bin", "balanced_splits": ["train"],
        "bin_id": "kmeans cluster" if strategy == "kmeans" else "grid cell",
        "explained_variance": None if feats.explained is None else feats.explained.tolist(),
        "balance_stats": {"selection": stats_sel, "random": stats_rnd,
                          "candidates": balance_stats(cand_cells, cand_cells)},
    }
    return before, after, info, {"cells": cells, "sel_global": sel_global, "cand_idx": cand_idx,
                                 "weights": sel.sample_weight, "dims": feats.z.shape[1]}


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def grid_report(rows, tmp_path_factory):
    before, after, info, extra = balance_inputs(rows, "grid")
    out = tmp_path_factory.mktemp("report-grid")
    names = R.write_report(str(out), before, after, info)
    return out, names, before, after, info, extra


def test_writes_three_pngs_and_a_report(grid_report):
    out, names, *_ = grid_report
    assert names == ["metrics.png", "occupancy.png", "mix.png", "report.md"]
    assert sorted(p.name for p in out.iterdir()) == sorted(names)
    for name in PNGS:
        data = (out / name).read_bytes()
        width, height = png_size(data)
        assert 600 <= width <= 2000 and 300 <= height <= 2000, (name, width, height)
        assert 10_000 < len(data) < 2_000_000, (name, len(data))
        assert b"Software" not in data and b"matplotlib" not in data.lower()
    md = (out / "report.md").read_text()
    for name in PNGS:
        assert f"]({name})" in md, name


def test_report_states_the_statistics_it_was_given(grid_report):
    out, _, before, after, info, _ = grid_report
    md = (out / "report.md").read_text()
    assert "strategy `grid`" in md and "seed 0" in md and f"target size {SIZE}" in md
    sel, rnd, cand = (info["balance_stats"][k] for k in ("selection", "random", "candidates"))
    for key, label, better in R.STATS:
        line = next(line for line in md.splitlines() if line.startswith(f"| {label} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[1:4] == [R._num(cand[key]), R._num(sel[key]), R._num(rnd[key])], line
        d = float(sel[key]) - float(rnd[key])
        assert float(cells[4]) == pytest.approx(d, abs=1e-4)
        assert cells[5] == better
        assert cells[6] == ("tie" if d == 0 else "yes" if (d > 0) == (better == "higher") else "no")
    # grid balancing beats random on the demo store, and the report says so
    ent = next(line for line in md.splitlines() if line.startswith("| normalized entropy"))
    assert ent.rstrip(" |").endswith("yes")


def test_report_tables_match_the_frames(grid_report):
    out, _, before, after, info, _ = grid_report
    md = (out / "report.md").read_text()
    # rows per split: before = the store rows, after = the corpus rows
    for split in ("train", "val", "test"):
        nb = before.filter(pl.col("split") == split).height
        na = after.filter(pl.col("split") == split).height
        role = "balanced" if split == "train" else "carried through"
        assert re.search(rf"\| {split} \| {role} \| {nb:,} \| \d+ \| {na:,} \|", md), split
    assert after.filter(pl.col("split") == "train").height == SIZE
    # dataset mix of the train split, before and after
    train_b = before.filter(pl.col("split") == "train")
    train_a = after.filter(pl.col("split") == "train")
    for ds, nb in train_b.group_by("dataset").len().iter_rows():
        na = train_a.filter(pl.col("dataset") == ds).height
        share_b = f"{100 * nb / train_b.height:.1f} %"
        share_a = f"{100 * na / train_a.height:.1f} %"
        assert f"| {ds} | {nb:,} | {share_b} | {na:,} | {share_a} |" in md, ds
    # undefined counts per metric (correlation_dimension is undefined on some demo windows)
    und_b = train_b.get_column("correlation_dimension").null_count()
    und_a = train_a.get_column("correlation_dimension").null_count()
    assert und_b > 0
    assert f"`correlation_dimension` {und_b:,} -> {und_a:,}" in md


def test_occupancy_counts_are_the_grid_cells(grid_report):
    """The heatmap's numbers are the grid cells of bin_id, marginalized to the first two dims."""
    _, _, before, after, info, extra = grid_report
    b = R._prepare(before, ["train"], weighted=False)
    a = R._prepare(after, ["train"], weighted=True)
    occ = R._occupancy(b, a, info, list(DEFAULT_METRICS))
    assert occ["source"] == "grid" and occ["k"] == extra["dims"] == 3 and not occ["via_join"]
    cells = extra["cells"]
    for key, idx in (("before", extra["cand_idx"]), ("after", extra["sel_global"])):
        c = cells[idx]
        c = c[c >= 0]
        expected = np.zeros((BINS, BINS))
        np.add.at(expected, (c // BINS ** 2, (c // BINS) % BINS), 1)
        np.testing.assert_array_equal(occ[key]["counts"], expected)
        assert occ[key]["undefined"] == (cells[idx] < 0).sum()
        assert occ[key]["total"] == idx.size


def test_byte_identical_reruns_whatever_the_users_rc(rows, grid_report, tmp_path):
    out, names, before, after, info, _ = grid_report
    rc_before = dict(matplotlib.rcParams)
    again = tmp_path / "again"
    assert R.write_report(str(again), before, after, info) == names
    styled = tmp_path / "styled"
    with matplotlib.rc_context({"font.size": 17, "figure.facecolor": "red", "savefig.dpi": 300,
                                "axes.prop_cycle": matplotlib.cycler(color=["k"]), "lines.linewidth": 5}):
        R.write_report(str(styled), before, after, info)
    for name in names:
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
        assert (styled / name).read_bytes() == (out / name).read_bytes(), name
    assert dict(matplotlib.rcParams) == rc_before   # no global state leaks


def test_kmeans_report_uses_each_rows_grid_cell(rows, tmp_path):
    before, after, info, extra = balance_inputs(rows, "kmeans", k=8, fit_sample=1000)
    names = R.write_report(str(tmp_path), before, after, info)
    md = (tmp_path / "report.md").read_text()
    assert "strategy `kmeans`" in md and "k=8" in md
    assert "cluster id" in md
    b = R._prepare(before, ["train"], weighted=False)
    a = R._prepare(after, ["train"], weighted=True)
    occ = R._occupancy(b, a, info, list(DEFAULT_METRICS))
    assert occ["source"] == "grid" and occ["via_join"]
    c = extra["cells"][extra["sel_global"]]
    expected = np.zeros((BINS, BINS))
    np.add.at(expected, (c[c >= 0] // BINS ** 2, (c[c >= 0] // BINS) % BINS), 1)
    np.testing.assert_array_equal(occ["after"]["counts"], expected)
    for name in PNGS:
        png_size((tmp_path / name).read_bytes())
    assert names[-1] == "report.md"


def test_weights_only_report_is_weighted(rows, tmp_path):
    before, after, info, extra = balance_inputs(rows, "inverse", weights_only=True)
    R.write_report(str(tmp_path), before, after, info)
    md = (tmp_path / "report.md").read_text()
    assert "--weights-only" in md and "uniform weights" in md
    train_a = after.filter(pl.col("split") == "train")
    assert train_a.height == extra["cand_idx"].size   # every candidate once
    w = train_a.group_by("modality").agg(pl.col("sample_weight").sum()).sort("modality")
    total = train_a.get_column("sample_weight").sum()
    for mod, ws in w.iter_rows():
        assert re.search(rf"\| {mod} \| [\d,]+ \| [\d.]+ % \| [\d,]+ \| {100 * ws / total:.1f} % \|", md), mod


def test_without_a_grid_the_occupancy_says_it_uses_metric_bins(rows, tmp_path):
    before, after, info, _ = balance_inputs(rows, "random", pca=None)
    info = {k: v for k, v in info.items() if k not in ("bins_per_dim", "dims")}
    R.write_report(str(tmp_path), before, after, info)
    md = (tmp_path / "report.md").read_text()
    assert "quantile bins each of `largest_lyapunov` and `correlation_dimension`" in md
    assert "could not be decoded" in md


def test_the_stage_writes_the_report(store, tmp_path):
    from nw2.pipeline.balance.stage import balance
    from nw2.pipeline.spec import BalanceSpec

    result = balance(str(store), str(tmp_path / "corpus"), BalanceSpec(strategy="temperature", size=SIZE, seed=1))
    report = tmp_path / "corpus" / "report"
    assert sorted(p.name for p in report.iterdir()) == sorted([*PNGS, "report.md"])
    md = (report / "report.md").read_text()
    sel = result.info["balance_stats"]["selection"]
    assert f"| {R._num(sel['normalized_entropy'])} |" in md
    assert "strategy `temperature`" in md and "seed 1" in md
