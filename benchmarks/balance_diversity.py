#!/usr/bin/env python
"""A balance section against random on a store, by the independent measures of corpus.json, over 3 seeds.

Prints, per measure, the mean over the seeds of the selection's value and of its random draws' mean
(``workflows/balance_diversity.py``). The figures of issue 13 on ``corpus_specs/bench.yaml``::

    nw2 ingest corpus_specs/bench.yaml --out B
    .venv/bin/python benchmarks/balance_diversity.py B                           # the default strategy at 20%
    .venv/bin/python benchmarks/balance_diversity.py B --balance '{"caps": {"dataset": 0.5}}'
    .venv/bin/python benchmarks/balance_diversity.py B --balance '{"caps": {"subject": 0.01}}'
"""

from __future__ import annotations

import argparse
import json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store")
    parser.add_argument("--balance", default="{}", help="balance-section fields as JSON, over fraction 0.2")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()

    from nw2.pipeline.spec import balance_from_dict
    from nw2.workflows.balance_diversity import diversity_over_seeds

    spec = balance_from_dict({"fraction": 0.2, **json.loads(args.balance)})
    seeds = tuple(int(s) for s in args.seeds.split(","))
    got = diversity_over_seeds(args.store, spec, seeds)
    print(f"{spec.strategy}, {args.balance}, seeds {args.seeds}: selection / random (mean over seeds)")
    for name, (selection, random) in got.items():
        ratio = f"  x{selection / random:.2f}" if random else ""
        print(f"  {name:18s} {selection:.4f} / {random:.4f}  ({selection - random:+.4f}){ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
