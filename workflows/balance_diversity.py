"""A balancing strategy against random by the independent measures of ``corpus.json``, over several seeds.

Builds one corpus per seed with ``nw2 balance``'s stage and averages, per measure, the selection's value and
the mean of its random draws (``independent_diversity``, ``docs/corpus_format.md``). The targets of issue 13
are judged on these means (``tests/test_balance_targets.py``; ``benchmarks/balance_diversity.py`` prints them
for any store and balance section).
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

#: The measures averaged: ``name: (section, key)`` of ``independent_diversity``.
MEASURES = {"p90": ("coverage", "p90"), "clusters": ("clusters", "normalized_entropy"),
            "regimes": ("ground_truth", "normalized_entropy"),
            "rarest": ("ground_truth", "rarest_decile_share")}


def diversity_over_seeds(store: str | Path, spec, seeds=(0, 1, 2), workdir: str | Path | None = None) -> dict:
    """``{measure: (selection, random)}``, each the mean over ``seeds`` of corpora built with ``spec`` (a
    ``BalanceSpec``; its seed is replaced), plus ``max_dataset_share`` and ``short_by`` where they apply.
    Measures a store cannot give (no ground truth) are left out."""
    from nw2.pipeline.balance.stage import balance

    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="nw2-diversity-"))
    got: dict[str, list[tuple[float, float]]] = {}
    for seed in seeds:
        result = balance(str(store), str(root / f"corpus-{seed}"), dataclasses.replace(spec, seed=seed), report=False)
        div = result.info["independent_diversity"]
        for name, (section, key) in MEASURES.items():
            part = div[section]
            if part.get("selection") is not None:
                got.setdefault(name, []).append((part["selection"][key], part["random"][key]["mean"]))
        shares = div["composition"]["dataset"]
        got.setdefault("max_dataset_share", []).append((max(shares["selection"].values()),
                                                        max(shares["random"].values())))
        constraints = result.info.get("constraints")
        if constraints:
            got.setdefault("short_by", []).append((constraints["short_by"], 0))
    return {k: tuple(float(x) for x in np.mean(v, axis=0)) for k, v in got.items()}
