"""The pieces that score the chaos metrics against the ground truth of a synthetic store.

The store: dysts flows and maps at their default parameters and three systems swept across their bifurcations
(``SPEC``), built once per module. The figures are ``workflows/metric_accuracy.py``'s; the full tables come from
``benchmarks/metric_accuracy.py`` on ``corpus_specs/synthetic.yaml``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import yaml

from helpers import ok
from nw2.workflows.metric_accuracy import (CHAOTIC, NOLDS_COLUMNS, TARGETS, annotated_dimensions, auroc, figures,
                                           synthetic_windows, with_nolds)

FLOWS = ["Lorenz", "Rossler", "Chen", "Aizawa", "Halvorsen", "SprottB", "Thomas", "RabinovichFabrikant",
         "Chua", "Dadras", "GenesioTesi", "NoseHoover", "Sakarya", "Finance"]
MAPS = ["Logistic", "Henon", "Tent", "Ikeda", "Tinkerbell"]
SPEC = {
    "name": "accuracy",
    "sources": [{"kind": "synthetic", "generator": "dysts", "systems": FLOWS + MAPS, "windows": 2,
                 "sweeps": {"Logistic": {"r": [3.0, 4.0], "steps": 11}, "Henon": {"a": [1.0, 1.4], "b": 0.3, "steps": 9},
                            "Lorenz": {"rho": [20.0, 220.0], "steps": 11}}}],
    "preprocess": {"target_fs": 100},
    "windows": {"length": 1024, "stride": 1024},
    "metrics": {"names": ["largest_lyapunov", "correlation_dimension", "chaos_01"]},
}


@pytest.fixture(scope="module")
def windows(tmp_path_factory):
    """The store's dysts windows with their metric columns."""
    folder = tmp_path_factory.mktemp("accuracy")
    (folder / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    ok("ingest", folder / "spec.yaml", "--out", folder / "store", "--workers", "2", "--no-progress")
    return with_nolds(synthetic_windows(str(folder / "store"), samples=True), workers=1)


NW2 = {"lyapunov": "largest_lyapunov", "dimension": "correlation_dimension", "chaos_01": "chaos_01"}


@pytest.fixture(scope="module")
def scored(windows):
    """Figures of nw2 and of nolds on the same windows (bootstrap over systems)."""
    annotated = annotated_dimensions(windows)
    return {"nw2": figures(windows, NW2, annotated, resamples=200),
            "nolds": figures(windows, NOLDS_COLUMNS, annotated, resamples=200)}


def _meets(name: str, value: float) -> bool:
    sign, bound = TARGETS[name]
    return value >= bound if sign == ">=" else value <= bound


# Measured on this store (19 systems, 96 windows; nw2 / nolds): Spearman 0.95 / 0.94, median error 0.17 / 0.30,
# AUROC of the exponent 1.00 / 1.00, AUROC of chaos_01 0.95 / -, dimension Spearman -0.12 / 0.27. The full
# tables on corpus_specs/synthetic.yaml are in docs/metrics.md ("Against the ground truth").
@pytest.mark.parametrize("name", ["lyapunov_spearman", "lyapunov_median_error", "auroc_lyapunov", "auroc_chaos_01"])
def test_nw2_meets_the_issue_targets_on_textbook_systems(scored, name):
    figure = scored["nw2"][name]
    assert figure.systems >= 17, figure
    assert _meets(name, figure.value), (name, figure)


def test_nw2_is_closer_to_the_truth_than_nolds_on_the_same_windows(scored):
    nw2, nolds = scored["nw2"], scored["nolds"]
    assert nw2["lyapunov_median_error"].value < nolds["lyapunov_median_error"].value - 0.05
    assert nw2["lyapunov_within_25"].value > nolds["lyapunov_within_25"].value + 0.1
    assert nw2["lyapunov_spearman"].value >= nolds["lyapunov_spearman"].value - 0.02
    assert nolds["auroc_lyapunov"].value >= 0.9  # nolds is a real second estimator here, not a broken one


@pytest.mark.xfail(strict=True, reason="correlation_dimension does not rank flows as dysts' annotation does: "
                   "-0.12 here (nolds 0.27), 0.60 on corpus_specs/synthetic.yaml (target 0.75)")
def test_correlation_dimension_ranks_flows_as_dysts_annotates_them(scored):
    assert _meets("dimension_spearman", scored["nw2"]["dimension_spearman"].value)


def test_the_store_holds_every_regime_it_is_scored_on(windows):
    regimes = set(windows.get_column("regime").to_list())
    assert {"chaotic", "periodic"} <= regimes, regimes
    assert windows.filter(pl.col("regime").is_in(CHAOTIC)).height >= 40
    assert windows.filter(pl.col("regime") == "periodic").height >= 20


def test_auroc_and_the_bootstrap_over_systems():
    assert auroc([0.1, 0.2, 0.8, 0.9], [False, False, True, True]) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], [False, False, True, True]) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], [False, True, False, True]) == 0.5
    assert np.isnan(auroc([0.1, 0.2], [True, True]))
    rng = np.random.default_rng(0)
    truth = np.repeat(rng.uniform(0.1, 2.0, 12), 5)
    frame = pl.DataFrame({"system": np.repeat([f"s{i}" for i in range(12)], 5), "true_lyapunov": truth,
                          "regime": ["chaotic"] * 60, "est": truth * 1.1 + rng.normal(0, 0.01, 60)})
    result = figures(frame, {"lyapunov": "est"}, resamples=200)
    error = result["lyapunov_median_error"]
    assert error.value == pytest.approx(0.1, abs=0.02) and error.low <= error.value <= error.high
    assert error.systems == 12 and error.windows == 60
    assert result["lyapunov_spearman"].value > 0.95
