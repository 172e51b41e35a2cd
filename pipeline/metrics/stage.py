"""``nw2 metrics``: chaos metric columns for every window of a store, one part file per task.

A part gains one nullable float32 column per metric (null where the metric is undefined) and a
``metrics_undefined`` column saying why (``"sample_entropy: constant signal; ..."``, null when all
are defined). The part is rewritten atomically with the metrics' fingerprints (name, parameters,
engine) in its Parquet metadata, so a rerun reads only footers to find what is already done, and
an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from nw2.core.errors import Nw2Error
from nw2.pipeline.executor import Executor, executor
from nw2.pipeline.store import Store
from nw2.pipeline.windows import content_id

#: Parquet metadata key of a part holding ``{metric: fingerprint}`` and the engine.
METADATA_KEY = b"nw2.metrics"
#: The column holding the reasons of undefined metrics.
REASON_COLUMN = "metrics_undefined"
#: Bumped when a kernel changes its numbers, so stores computed before are refreshed.
METRICS_VERSION = 1


@dataclass(frozen=True)
class MetricsPlan:
    """What to compute: metrics in column order, their full parameters, the engine."""

    names: tuple[str, ...]
    params: dict
    engine: str = "numba"

    @classmethod
    def build(cls, names=None, params=None, engine: str = "numba") -> "MetricsPlan":
        from nw2.pipeline.metrics.suite import check_selection, resolved_params

        try:
            chosen = check_selection(names, params, engine)
        except ValueError as err:
            raise Nw2Error(f"metrics: {err}") from None
        return cls(tuple(chosen), resolved_params(chosen, params), engine)

    def fingerprint(self, name: str) -> str:
        """Same metric, parameters, engine and kernel version -> same fingerprint."""
        params = json.dumps(self.params[name], sort_keys=True, default=repr)
        return content_id("metric", name, params, self.engine, METRICS_VERSION)


def _recorded(schema: pa.Schema) -> dict[str, str]:
    meta = schema.metadata or {}
    return json.loads(meta[METADATA_KEY]).get("fingerprints", {}) if METADATA_KEY in meta else {}


def _parse_reasons(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    return dict(item.split(": ", 1) for item in text.split("; "))


def _format_reasons(reasons: dict[str, str], order: list[str]) -> str | None:
    # ";" separates entries, so a reason may not hold one.
    items = [f"{n}: {reasons[n].replace(';', ',')}" for n in order if n in reasons]
    return "; ".join(items) or None


def _measure_fn(engine: str):
    if engine == "reference":
        from nw2.pipeline.metrics.reference import measure
    else:
        from nw2.pipeline.metrics.suite import measure
    return measure


def _kind(reason: str) -> str:
    """A reason without its window-specific numbers, for counting: ``"too short (9 < 16 samples)"``
    -> ``"too short"``, ``"oversampled: thinning by 36 ..."`` -> ``"oversampled"``."""
    return reason.split(" (")[0].split(":")[0].strip()


def _tally(table: pa.Table, names: list[str]) -> dict:
    """Per metric, how many rows hold a value and why the others do not (from the stored columns)."""
    reasons = Counter()
    if REASON_COLUMN in table.column_names:
        for text in table.column(REASON_COLUMN).to_pylist():
            reasons.update(f"{n}: {_kind(r)}" for n, r in _parse_reasons(text).items())
    return {"defined": {n: table.num_rows - table.column(n).null_count for n in names if n in table.column_names},
            "undefined": dict(reasons)}


def process_part(rel: str, store_url: str, plan: MetricsPlan) -> dict:
    """Compute the plan's metrics that a part lacks (or holds with other parameters) and rewrite it.
    Returns what the part holds afterwards (``defined``/``undefined`` counts) and what this call did."""
    from nw2.pipeline.metrics.suite import METRICS

    store = Store(store_url)
    stats = {"part": rel, "rows": 0, "computed": [], "seconds": 0.0, "error": None,
             "defined": {}, "undefined": {}, "undefined_now": {}}
    try:
        recorded = _recorded(store.schema_of(rel))
        todo = [n for n in plan.names if recorded.get(n) != plan.fingerprint(n)]
        if not todo:
            table = store.read_table(rel, columns=[*plan.names, REASON_COLUMN])
            stats.update(rows=table.num_rows, **_tally(table, list(plan.names)))
            return stats
        t0 = time.perf_counter()
        table = store.read_table(rel)
        measure = _measure_fn(plan.engine)
        samples = table.column("samples").combine_chunks()
        values, offsets = samples.values.to_numpy(), samples.offsets.to_numpy()
        fs = table.column("fs").to_numpy()
        columns = {n: np.full(table.num_rows, np.nan, np.float32) for n in todo}
        old_reasons = (table.column(REASON_COLUMN).to_pylist() if REASON_COLUMN in table.column_names
                       else [None] * table.num_rows)
        reasons_out, now = [], Counter()
        params = {n: plan.params[n] for n in todo}
        for i in range(table.num_rows):
            m = measure(values[offsets[i]:offsets[i + 1]], float(fs[i]), todo, params)
            for n in todo:
                columns[n][i] = m.values[n]
            reasons = {k: v for k, v in _parse_reasons(old_reasons[i]).items() if k not in todo}
            reasons.update(m.reasons)
            now.update(m.reasons.keys())
            reasons_out.append(reasons)
        present = [n for n in METRICS if n in todo or n in recorded]
        keep = [c for c in table.column_names if c not in METRICS and c != REASON_COLUMN]
        out = table.select(keep)
        for n in present:
            if n in todo:
                col = pa.array(columns[n], pa.float32(), mask=np.isnan(columns[n]))
            else:
                col = table.column(n)
            out = out.append_column(pa.field(n, pa.float32()), col)
        out = out.append_column(pa.field(REASON_COLUMN, pa.string()),
                                pa.array([_format_reasons(r, present) for r in reasons_out], pa.string()))
        fingerprints = {n: (plan.fingerprint(n) if n in todo else recorded[n]) for n in present}
        meta = dict(table.schema.metadata or {})
        meta[METADATA_KEY] = json.dumps({"fingerprints": fingerprints, "engine": plan.engine},
                                        sort_keys=True).encode()
        store.write_table(rel, out.replace_schema_metadata(meta))
        stats.update(rows=table.num_rows, computed=todo, seconds=time.perf_counter() - t0,
                     undefined_now={n: now[n] for n in todo}, **_tally(out, list(plan.names)))
    except Exception as err:  # a part that cannot be read or written: reported, the rest goes on
        stats["error"] = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
    return stats


@dataclass
class MetricsResult:
    store: str
    plan: MetricsPlan
    parts: list[dict]

    @property
    def rows(self) -> int:
        return sum(p["rows"] for p in self.parts)

    @property
    def computed_parts(self) -> int:
        return sum(1 for p in self.parts if p["computed"])

    @property
    def failed(self) -> list[dict]:
        return [p for p in self.parts if p["error"]]


def run_metrics(store_url: str, plan: MetricsPlan, ex: Executor) -> MetricsResult:
    """Run the stage on an executor that is already running (``nw2 ingest`` shares its cluster)."""
    store = Store(store_url)
    if not store.exists("store.json"):
        raise Nw2Error(f"{store_url}: not a window store (no store.json); build one with nw2 ingest")
    parts = store.parts()
    results = ex.map(process_part, parts, desc="metrics", store_url=store.url, plan=plan)
    _write_summary(store, plan, results)
    return MetricsResult(store.url, plan, results)


def _write_summary(store: Store, plan: MetricsPlan, results: list[dict]) -> None:
    """``metrics.json``: what the store's metric columns hold. It describes the store, not the run,
    so a rerun that changes nothing writes the same bytes."""
    defined, undefined = Counter(), Counter()
    for r in results:
        defined.update(r["defined"])
        undefined.update(r["undefined"])
    store.write_json("metrics.json", {
        "metrics_version": METRICS_VERSION, "engine": plan.engine, "names": list(plan.names),
        "params": plan.params, "fingerprints": {n: plan.fingerprint(n) for n in plan.names},
        "parts": len(results), "rows": sum(r["rows"] for r in results),
        "failed_parts": [{"part": r["part"], "error": r["error"]} for r in results if r["error"]],
        "defined": {n: defined[n] for n in plan.names}, "undefined": dict(sorted(undefined.items())),
    })


def compute_metrics(store_url: str, names=None, params=None, engine: str = "numba", scheduler: str = "local",
                    workers: int | None = None, progress: bool = True) -> MetricsResult:
    """``nw2 metrics``: add or refresh metric columns in every part of a store."""
    from nw2.pipeline.store import check_reachable

    check_reachable(store_url, scheduler)
    plan = MetricsPlan.build(names, params, engine)
    with executor(scheduler, workers, progress) as ex:
        return run_metrics(store_url, plan, ex)
