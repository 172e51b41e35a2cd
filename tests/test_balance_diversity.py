"""Independent diversity (:mod:`pipeline.balance.diversity`): known answers on small synthetic data for
coverage, clusters, held-out metric cells, ground truth and composition; NaN handling, weights, the
seeded random baseline and determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nw2.pipeline.balance.diversity import SCALE, independent_diversity, random_draws, robust_space


def entropy(p) -> float:
    p = np.asarray(p, dtype=float)
    p = p[p > 0] / p.sum()
    return float(-np.sum(p * np.log(p)))


def run(values, selected, names=None, balancing=(), **kw) -> dict:
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    names = names or [f"m{j}" for j in range(values.shape[1])]
    return independent_diversity(values, names, list(balancing), np.asarray(selected, dtype=np.int64), **kw)


@pytest.fixture(scope="module")
def blobs():
    """Eight well-separated blobs (corners of a cube of side 6, sd 0.3) in three metrics, density-skewed:
    40 % of the rows in one of them. ``pick``: the first row of every blob."""
    rng = np.random.default_rng(5)
    sizes = [1600] + [340] * 7
    n = sum(sizes)
    centres = rng.permutation(np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)) * 6
    blob = np.repeat(np.arange(8), sizes)
    x = centres[blob] + rng.normal(0, 0.3, (n, 3))
    pick = np.array([np.flatnonzero(blob == b)[0] for b in range(8)])
    return x, blob, pick


def test_blob_selection_beats_random(blobs):
    x, _, pick = blobs
    out = run(x, pick, names=["a", "b", "c"], balancing=["a", "b"], k=8, seed=1)
    cov, clu = out["coverage"], out["clusters"]
    assert cov["query_rows"] == x.shape[0]
    assert cov["selection"]["p90"] < 0.5 * cov["random"]["p90"]["mean"]
    assert cov["selection"]["max"] < cov["random"]["max"]["mean"]
    # One cluster per blob: the even selection fills all eight equally.
    assert clu["centres"] == 8 and clu["reference_clusters"] == 8
    assert clu["selection"]["occupied"] == 8
    assert clu["selection"]["normalized_entropy"] == pytest.approx(1.0, abs=1e-6)
    assert clu["selection"]["normalized_entropy"] > clu["random"]["normalized_entropy"]["mean"] + 0.1
    assert out["held_out_metrics"]["metrics"] == ["c"]
    for section in ("coverage", "clusters", "held_out_metrics"):
        assert set(out[section]) >= {"selection", "random"}


def test_coverage_known_answer():
    """z = (x - 2) / 2 on 0..4; selecting row 0 leaves distances 0, .5, 1, 1.5, 2. Two identical columns
    give the same numbers: the distance is divided by sqrt(d)."""
    x = np.arange(5.0)
    for values in (x, np.stack([x, x], axis=1)):
        out = run(values, [0], seed=0)
        sel = out["coverage"]["selection"]
        assert sel == {"mean": 1.0, "p90": pytest.approx(1.8), "max": 2.0, "rows": 1}
        assert out["space"]["median"][0] == 2.0 and out["space"]["iqr"][0] == 2.0
        assert out["space"]["scale"] == SCALE


def test_coverage_zero_when_everything_selected(blobs):
    x, _, _ = blobs
    out = run(x[:500], np.arange(500), seed=2)
    assert out["coverage"]["selection"] == {"mean": 0.0, "p90": 0.0, "max": 0.0, "rows": 500}
    # A random draw of every candidate (without replacement) is all of them too.
    for key in ("mean", "p90", "max"):
        assert out["coverage"]["random"][key] == {"mean": 0.0, "sd": 0.0}


def test_coverage_sample_is_seeded_and_bounded(blobs):
    x, _, pick = blobs
    out = run(x, pick, seed=3, coverage_sample=1000)
    assert out["coverage"]["query_rows"] == 1000
    assert out["coverage"]["sample_seed"] == [3, 1299709]
    assert out == run(x, pick, seed=3, coverage_sample=1000)


def test_robust_space_clips_and_drops():
    x = np.array([[0.0, np.nan, 5.0], [1.0, np.nan, 5.0], [2.0, np.nan, 5.0], [3.0, np.nan, 5.0],
                  [1000.0, np.nan, 6.0]])
    z, defined, info = robust_space(x, ["a", "b", "c"])
    assert info["metrics"] == ["a", "c"] and info["dropped"] == ["b"]
    assert z.shape == (5, 2) and defined.all()
    assert z[4, 0] == 5.0                                   # clipped at +5 IQRs
    assert info["iqr"][1] == 0.0 and z[4, 1] == 1.0         # IQR 0: scale 1


def test_nan_rows_counted_and_excluded(blobs):
    x, _, pick = blobs
    x = x[:400].copy()
    x[[3, 10, 11], 1] = np.nan
    out = run(x, [3, 10, 0, 1], seed=4, k=4)
    assert out["space"]["rows_used"] == 397 and out["space"]["rows_left_out"] == 3
    assert out["coverage"]["query_rows"] == 397
    assert out["coverage"]["selection"]["rows"] == 2          # rows 3 and 10 are undefined
    assert out["clusters"]["selection"]["rows"] == 2
    only_nan = run(x, [3, 10, 11], seed=4, k=4)
    assert only_nan["coverage"]["selection"] is None and "reason" in only_nan["coverage"]
    assert only_nan["clusters"]["selection"] is None
    assert only_nan["coverage"]["random"] is not None


def test_held_out_null_when_everything_balanced(blobs):
    x, _, pick = blobs
    out = run(x, pick, names=["a", "b", "c"], balancing=["a", "b", "c"], seed=0)
    held = out["held_out_metrics"]
    assert held["metrics"] == [] and held["selection"] is None and held["random"] is None
    assert held["reason"] == "every metric is a balancing feature"
    # A column undefined everywhere is dropped, not held out.
    x2 = np.concatenate([x, np.full((x.shape[0], 1), np.nan)], axis=1)
    out2 = run(x2, pick, names=["a", "b", "c", "d"], balancing=["a", "b", "c"], seed=0)
    assert out2["space"]["dropped"] == ["d"] and out2["held_out_metrics"]["selection"] is None


def test_held_out_cells_known_answer():
    """c = 0..7 in two quantile cells (0-3, 4-7): selecting 0, 1, 2, 4 gives shares 3/4, 1/4."""
    rng = np.random.default_rng(0)
    x = np.stack([rng.random(8), np.arange(8.0)], axis=1)
    out = run(x, [0, 1, 2, 4], names=["a", "c"], balancing=["a"], cells_per_dim=2)
    held = out["held_out_metrics"]
    assert held["metrics"] == ["c"] and held["reference_cells"] == 2
    h = entropy([3, 1])
    assert held["selection"]["entropy"] == pytest.approx(h, rel=1e-5)
    assert held["selection"]["normalized_entropy"] == pytest.approx(h / math.log(2), rel=1e-5)
    assert held["selection"]["occupied"] == 2
    # An undefined held-out value is a cell of its own (-1), as in the balancing grid.
    x[7, 1] = np.nan
    assert run(x, [0, 1, 2, 4], names=["a", "c"], balancing=["a"], cells_per_dim=2)[
        "held_out_metrics"]["reference_cells"] == 3


def test_held_out_choice_most_defined_then_name():
    rng = np.random.default_rng(1)
    x = rng.random((50, 6))
    x[:5, 1] = np.nan          # q: 45 defined
    x[:2, 2] = np.nan          # b: 48
    x[:2, 3] = np.nan          # a: 48
    x[:9, 4] = np.nan          # z: 41
    names = ["used", "q", "b", "a", "z", "y"]           # y: 50
    out = run(x, np.arange(10), names=names, balancing=["used"])
    assert out["held_out_metrics"]["metrics"] == ["y", "a", "b"]
    # Disjoint NaN patterns: every row undefined on some held-out metric, all in cell -1.
    x2 = rng.random((40, 3))
    x2[:20, 1] = np.nan
    x2[20:, 2] = np.nan
    held = run(x2, [0, 25], names=["used", "p", "q"], balancing=["used"])["held_out_metrics"]
    assert held["reference_cells"] == 1 and held["selection"]["normalized_entropy"] == 1.0


def truth_fixture():
    system = np.array(["dysts:Lorenz"] * 5 + ["dysts:Rossler"] * 3 + ["dysts:Henon", "neurokit2:ecg", None, None],
                      dtype=object)
    regime = np.array(["chaotic"] * 5 + ["periodic"] * 3 + ["chaotic", None, None, None], dtype=object)
    band = np.array(["lo"] * 8 + [None, float("nan"), None, None], dtype=object)
    return {"system": system, "regime": regime, "band": band}


def test_ground_truth_known_answer():
    truth = truth_fixture()
    x = np.random.default_rng(0).random((12, 2))
    out = run(x, [0, 5, 8, 9, 10, 0], truth=truth, seed=0)
    gt = out["ground_truth"]
    assert gt["labels"] == "system|regime|band"
    assert gt["rows_with_truth"] == 10 and gt["reference_labels"] == 4
    # Counts Lorenz 5, Rossler 3, Henon 1, ecg 1; ceil(4/10) = 1 rarest label, the tie broken by name.
    assert gt["rarest_decile"] == ["dysts:Henon|chaotic|"]
    sel = gt["selection"]
    h = entropy([2, 1, 1, 1])
    assert sel["entropy"] == pytest.approx(h, rel=1e-5)
    assert sel["normalized_entropy"] == pytest.approx(h / math.log(4), rel=1e-5)
    assert sel["represented"] == 4 and sel["rows"] == 5
    assert sel["rarest_decile_share"] == pytest.approx(0.2)
    assert set(gt["random"]) == {"entropy", "normalized_entropy", "represented", "rarest_decile_share", "rows"}


def test_ground_truth_rarest_decile_ties_and_ceil():
    labels = np.array([f"S{i:02d}" for i in range(11)] * 2, dtype=object)     # 11 labels, 2 rows each
    x = np.random.default_rng(0).random((22, 2))
    out = run(x, [0, 1, 11, 5], truth={"system": labels, "regime": None, "band": None})
    gt = out["ground_truth"]
    assert gt["labels"] == "system" and gt["rarest_decile"] == ["S00", "S01"]     # ceil(1.1) = 2
    assert gt["selection"]["rarest_decile_share"] == pytest.approx(0.75)          # S00, S01, S00 of 4


def test_ground_truth_absent():
    x = np.random.default_rng(0).random((20, 2))
    for truth in (None, {"system": None, "regime": None, "band": None},
                  {"system": np.array([None] * 20, dtype=object)}):
        gt = run(x, [0, 1], truth=truth)["ground_truth"]
        assert gt["selection"] is None and gt["random"] is None and gt["reason"]


def groups_fixture(n: int, rng) -> dict:
    return {"dataset": rng.choice(np.array(["big", "mid", "tiny"], dtype=object), n, p=[0.8, 0.15, 0.05]),
            "modality": rng.choice(np.array(["ecg", "eeg"], dtype=object), n),
            "subject": rng.integers(0, 30, n),
            "record": np.array([f"r{i}" for i in rng.integers(0, 100, n)], dtype=object)}


def test_composition_shares(blobs):
    x, _, pick = blobs
    rng = np.random.default_rng(7)
    groups = groups_fixture(x.shape[0], rng)
    out = run(x, pick, groups=groups, seed=0)
    comp = out["composition"]
    for key in ("dataset", "modality"):
        for part in ("selection", "random", "candidates"):
            assert sum(comp[key][part].values()) == pytest.approx(1.0, abs=1e-5)
        assert list(comp[key]["selection"]) == sorted(set(groups[key]))
    ds = groups["dataset"][pick]
    assert comp["dataset"]["selection"]["tiny"] == pytest.approx(np.mean(ds == "tiny"), rel=1e-5)
    sub = comp["subject"]
    values, counts = np.unique(groups["subject"][pick], return_counts=True)
    assert sub["selection"] == {"max_share": pytest.approx(counts.max() / pick.size, rel=1e-5),
                                "distinct": values.size}
    assert set(sub["random"]) == {"max_share", "distinct"} and sub["candidates"]["distinct"] == 30


def test_weights(blobs):
    x, _, _ = blobs
    x = x[:600]
    rng = np.random.default_rng(8)
    groups = groups_fixture(600, rng)
    everything = np.arange(600)
    w = np.zeros(600)
    w[:100] = rng.random(100) + 0.5
    out = run(x, everything, groups=groups, weights=w, seed=0)
    assert out["weighted"] is True
    # Coverage uses the rows with weight > 0 only.
    plain = run(x, np.arange(100), groups=groups, seed=0)
    assert out["coverage"]["selection"] == plain["coverage"]["selection"]
    # Shares are weight shares.
    big = groups["dataset"] == "big"
    assert out["composition"]["dataset"]["selection"]["big"] == pytest.approx(w[big].sum() / w.sum(), rel=1e-5)
    # Equal weights change nothing in the selection's measures.
    flat = run(x, np.arange(100), groups=groups, weights=np.full(100, 3.0), seed=0)
    for section in ("coverage", "clusters", "held_out_metrics"):
        assert flat[section]["selection"] == plain[section]["selection"]
    for key in groups:
        assert flat["composition"][key]["selection"] == plain["composition"][key]["selection"]
    # The random baseline is unweighted: weights_only corpora are compared with uniform draws of all rows.
    assert out["composition"]["dataset"]["random"] == out["composition"]["dataset"]["candidates"]


def test_weights_rejected():
    x = np.random.default_rng(0).random((10, 2))
    for bad in (np.zeros(3), np.array([1.0, -1.0, 1.0]), np.array([1.0, np.nan, 1.0]), np.ones(2)):
        with pytest.raises(ValueError):
            run(x, [0, 1, 2], weights=bad)


def test_bad_inputs():
    x = np.random.default_rng(0).random((10, 2))
    with pytest.raises(ValueError):
        run(x, [])
    with pytest.raises(ValueError):
        run(x, [10])
    with pytest.raises(ValueError):
        run(x, [0], seed=-1)
    with pytest.raises(ValueError):
        run(x, [0], draws=0)
    with pytest.raises(ValueError):
        independent_diversity(x, ["a"], [], np.array([0]))


def test_random_draws_fixed_scheme():
    a = random_draws(100, 30, seed=4, draws=3)
    assert [np.unique(r).size for r in a] == [30, 30, 30]                    # without replacement
    assert all(np.array_equal(r, q) for r, q in zip(a, random_draws(100, 30, seed=4, draws=3)))
    assert np.array_equal(a[0], np.random.default_rng([4, 7919, 0]).choice(100, 30, replace=False))
    big = random_draws(10, 25, seed=4, draws=2)
    assert all(r.size == 25 and r.max() < 10 for r in big)                  # with replacement


def test_deterministic_json_and_baseline_independent_of_selection(blobs):
    x, _, pick = blobs
    rng = np.random.default_rng(9)
    groups = groups_fixture(x.shape[0], rng)
    truth = {"system": rng.choice(np.array(["A", "B", "C", None], dtype=object), x.shape[0]),
             "regime": None, "band": None}
    kw = dict(groups=groups, truth=truth, seed=11, names=["a", "b", "c"], balancing=["a"])
    first = run(x, pick, **kw)
    assert first == run(x, pick, **kw)
    assert first == run(x, pick, workers=1, **kw)
    assert json.loads(json.dumps(first)) == first               # plain JSON types, no NaN
    # Another selection of the same size: same random baseline.
    other = run(x, np.arange(pick.size), **kw)
    for section in ("coverage", "clusters", "held_out_metrics", "ground_truth"):
        assert other[section]["random"] == first[section]["random"]
    assert other["composition"]["record"]["random"] == first["composition"]["record"]["random"]
    # Another seed: another baseline.
    assert run(x, pick, **{**kw, "seed": 12})["coverage"]["random"] != first["coverage"]["random"]
