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
from nw2.workflows.metric_accuracy import CHAOTIC, auroc, figures, synthetic_windows

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
    return synthetic_windows(str(folder / "store"))


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
