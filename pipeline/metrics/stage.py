"""``nw2 metrics``: chaos metric columns for every window of a store, one part file per task.

A part gains one nullable float32 column per metric (null where the metric is undefined) and a
``metrics_undefined`` column saying why: a list of ``{metric, kind, detail}`` structs in column order
(``kind`` one of :data:`~pipeline.metrics._common.UNDEFINED_KINDS`), null when all are defined. A part
written before schema version 2 (``metrics_undefined`` as ``"name: reason; ..."`` text) is recomputed
whole. The part is rewritten atomically with the metrics' fingerprints (name, parameters,
engine) in its Parquet metadata, so a rerun reads only footers to find what is already done, and
an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from nw2.core.errors import Nw2Error, StorageError
from nw2.pipeline.executor import Executor, executor
from nw2.artifacts.store import METRICS_SCHEMA_VERSION, MetricsInfo, WindowStore, check_reachable
from nw2.core.hashing import content_id

if TYPE_CHECKING:  # the spec module (YAML, readers) is not a worker's import
    from nw2.pipeline.spec import MetricsSpec

#: Parquet metadata key of a part holding ``{metric: fingerprint}`` and the engine.
METADATA_KEY = b"nw2.metrics"
#: The column holding the reasons of undefined metrics.
REASON_COLUMN = "metrics_undefined"
#: Its type: per row, one struct per undefined metric (in column order); null when all are defined.
REASON_TYPE = pa.list_(pa.struct([("metric", pa.string()), ("kind", pa.string()), ("detail", pa.string())]))
#: Bumped when every kernel changes its numbers, so stores computed before are refreshed.
METRICS_VERSION = 1
#: Per metric, bumped when that metric's numbers change (absent: 1), so that only its column is recomputed.
#: largest_lyapunov 2: the default fit region is chosen from the divergence curve (was k = 0..19).
METRIC_VERSIONS = {"largest_lyapunov": 2}


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

    @classmethod
    def from_spec(cls, spec: "MetricsSpec") -> "MetricsPlan":
        """The plan of a spec's ``metrics:`` section (its names, parameters and engine)."""
        return cls.build(spec.names, spec.params, spec.engine)

    def fingerprint(self, name: str) -> str:
        """Same metric, parameters, engine and kernel version -> same fingerprint."""
        params = json.dumps(self.params[name], sort_keys=True, default=repr)
        version = METRIC_VERSIONS.get(name, 1)
        # a metric at version 1 keeps the fingerprint it always had: its stored columns stay current
        return content_id("metric", name, params, self.engine, METRICS_VERSION,
                          *((version,) if version != 1 else ()))


def _recorded(schema: pa.Schema) -> dict[str, str]:
    meta = schema.metadata or {}
    return json.loads(meta[METADATA_KEY]).get("fingerprints", {}) if METADATA_KEY in meta else {}


def _engines(schema: pa.Schema) -> dict[str, str]:
    """Per metric, the engine its column was computed with (parts written before per-metric engines give the
    part's one engine to all its metrics)."""
    meta = schema.metadata or {}
    if METADATA_KEY not in meta:
        return {}
    info = json.loads(meta[METADATA_KEY])
    return info.get("engines") or {n: info.get("engine", "numba") for n in info.get("fingerprints", {})}


def _legacy(schema: pa.Schema) -> bool:
    """The part holds ``metrics_undefined`` in its schema-1 form (``"name: reason; ..."`` text)."""
    return REASON_COLUMN in schema.names and not pa.types.is_list(schema.field(REASON_COLUMN).type)


def _part_version(table: pa.Table) -> int:
    """The ``nw2.schema_version`` a part was written with (1 when it has none)."""
    value = (table.schema.metadata or {}).get(b"nw2.schema_version", b"1")
    return int(value) if value.isdigit() else 1


def _row_reasons(entries: list[dict] | None, order: list[str]) -> list[dict] | None:
    """One row of the column: its ``{metric, kind, detail}`` entries of the metrics in ``order``, in that
    order; null if none."""
    rank = {n: i for i, n in enumerate(order)}
    kept = sorted((e for e in entries or () if e["metric"] in rank), key=lambda e: rank[e["metric"]])
    return kept or None


def _signal_rows(table: pa.Table) -> np.ndarray:
    """Which rows are signals (``role`` ``signal``; every row of a store from before schema version 4)."""
    if "role" not in table.column_names:
        return np.ones(table.num_rows, bool)
    return np.asarray(table.column("role").to_numpy(zero_copy_only=False) == "signal", bool)


def _measure_fn(engine: str):
    if engine == "reference":
        from nw2.pipeline.metrics.reference import measure
    else:
        from nw2.pipeline.metrics.suite import measure
    return measure


def _tally(table: pa.Table, names: list[str]) -> dict:
    """Per metric, how many rows hold a value, and per metric and kind how many do not (from the
    stored columns): ``{"defined": {metric: n}, "undefined": {metric: {kind: n}}}``."""
    pairs = Counter()
    if REASON_COLUMN in table.column_names:
        entries = table.column(REASON_COLUMN).combine_chunks().flatten()
        pairs.update(zip(entries.field("metric").to_pylist(), entries.field("kind").to_pylist()))
    undefined = {n: {} for n in names}
    for (n, kind), count in sorted(pairs.items()):
        if n in undefined:
            undefined[n][kind] = count
    return {"defined": {n: table.num_rows - table.column(n).null_count for n in names if n in table.column_names},
            "undefined": undefined}


def process_part(rel: str, store_url: str, plan: MetricsPlan) -> dict:
    """Compute the plan's metrics that a part lacks (or holds with other parameters) and rewrite it.
    Returns what the part holds afterwards (``defined``/``undefined`` counts) and what this call did."""
    from nw2.pipeline.metrics.suite import METRICS

    store = WindowStore(store_url)
    stats = {"part": rel, "rows": 0, "computed": [], "seconds": 0.0, "error": None,
             "defined": {}, "undefined": {}, "undefined_now": {}, "fingerprints": {}, "engines": {}}
    try:
        store.settle(rel)  # a part a killed run was replacing: its marker keeps the digest its bytes have
        schema = store.schema_of(rel)
        recorded = _recorded(schema)
        todo = [n for n in plan.names if recorded.get(n) != plan.fingerprint(n)]
        if _legacy(schema):  # schema 1: its reasons are text, so every metric of the part is recomputed
            others = [n for n in METRICS if n in recorded and n not in plan.names]
            if others:
                raise Nw2Error(f"{REASON_COLUMN} is in the schema-1 text form and the part holds metrics this run "
                               f"does not compute ({', '.join(others)}); rerun nw2 metrics with them too")
            todo = list(plan.names)
        if not todo:
            held = [n for n in METRICS if n in recorded]
            table = store.read_table(rel, columns=[*held, REASON_COLUMN])
            stats.update(rows=table.num_rows, fingerprints={n: recorded[n] for n in held},
                         engines={n: _engines(schema).get(n, plan.engine) for n in held}, **_tally(table, held))
            return stats
        t0 = time.perf_counter()
        table = store.read_whole_part(rel)  # every byte checked against its marker's sha256, as it is read whole
        measure = _measure_fn(plan.engine)
        samples = table.column("samples").combine_chunks()
        values, offsets = samples.values.to_numpy(), samples.offsets.to_numpy()
        fs = table.column("fs").to_numpy()
        columns = {n: np.full(table.num_rows, np.nan, np.float32) for n in todo}
        old_reasons = (table.column(REASON_COLUMN).to_pylist() if REASON_COLUMN in table.column_names
                       and not _legacy(table.schema) else [None] * table.num_rows)
        present = [n for n in METRICS if n in todo or n in recorded]
        reasons_out, now = [], {n: Counter() for n in todo}
        params = {n: plan.params[n] for n in todo}
        signal = _signal_rows(table)
        for i in range(table.num_rows):
            entries = [e for e in old_reasons[i] or () if e["metric"] not in todo]
            if not signal[i]:  # an intervention's values are inputs: nothing of them is measured
                for n in todo:
                    entries.append({"metric": n, "kind": "intervention", "detail": "an intervention row"})
                    now[n]["intervention"] += 1
                reasons_out.append(_row_reasons(entries, present))
                continue
            m = measure(values[offsets[i]:offsets[i + 1]], float(fs[i]), todo, params)
            for n in todo:
                columns[n][i] = m.values[n]
            for n, why in m.reasons.items():
                entries.append({"metric": n, "kind": why.kind, "detail": why.detail})
                now[n][why.kind] += 1
            reasons_out.append(_row_reasons(entries, present))
        keep = [c for c in table.column_names if c not in METRICS and c != REASON_COLUMN]
        out = table.select(keep)
        for n in present:
            if n in todo:
                col = pa.array(columns[n], pa.float32(), mask=np.isnan(columns[n]))
            else:
                col = table.column(n)
            out = out.append_column(pa.field(n, pa.float32()), col)
        out = out.append_column(pa.field(REASON_COLUMN, REASON_TYPE), pa.array(reasons_out, REASON_TYPE))
        fingerprints = {n: (plan.fingerprint(n) if n in todo else recorded[n]) for n in present}
        before = _engines(table.schema)
        engines = {n: (plan.engine if n in todo else before.get(n, plan.engine)) for n in present}
        meta = dict(table.schema.metadata or {})
        # the part's metric columns now have version 2's types (an ingested version-3 part keeps its 3)
        meta[b"nw2.schema_version"] = str(max(_part_version(table), METRICS_SCHEMA_VERSION)).encode()
        meta[METADATA_KEY] = json.dumps({"fingerprints": fingerprints, "engine": _one_or_mixed(engines.values()),
                                         "engines": engines}, sort_keys=True).encode()
        store.replace_part(rel, out.replace_schema_metadata(meta))  # its marker records the new bytes
        stats.update(rows=table.num_rows, computed=todo, seconds=time.perf_counter() - t0,
                     undefined_now={n: dict(sorted(now[n].items())) for n in todo}, fingerprints=fingerprints,
                     engines=engines, **_tally(out, present))
    except StorageError:
        raise  # a full disk is no fault of this part: the run stops with one line
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
    store = WindowStore.open(store_url, parts=False)
    store.sweep_temporaries()  # a killed run's half-written parts (under this run's lock only)
    parts = store.parts()
    # what the last finished run recorded, even when a run since was interrupted (it set metrics.json aside)
    previous = store.earlier_metrics_info()
    # until this run's summary is written, the parts may hold columns of two runs: no metrics.json vouches for them
    store.begin_metrics()
    results = ex.map(process_part, parts, desc="metrics", store_url=store.url, plan=plan)
    _write_summary(store, plan, results, previous)
    return MetricsResult(store.url, plan, results)


def _one_or_mixed(values) -> str:
    """The one value of ``values``, or ``mixed``."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else "mixed"


def _write_summary(store: WindowStore, plan: MetricsPlan, results: list[dict],
                   previous: MetricsInfo | None = None) -> None:
    """``metrics.json``: what the store's metric columns hold, read from the parts (every metric they hold,
    not only those this run computed; per metric its engine, ``mixed`` where parts differ), so it never
    says less or other than the parts. It describes the store, not the run, so a rerun that changes
    nothing writes the same bytes."""
    from nw2.pipeline.metrics.suite import METRICS

    ok = [r for r in results if not r["error"]]
    held = [n for n in METRICS if any(n in r["fingerprints"] for r in ok)]
    defined, undefined = Counter(), {n: Counter() for n in held}
    for r in ok:
        defined.update(r["defined"])
        for n, kinds in r["undefined"].items():
            if n in undefined:
                undefined[n].update(kinds)
    fingerprints = {n: _one_or_mixed(r["fingerprints"].get(n, "absent") for r in ok) for n in held}
    engines = {n: _one_or_mixed(r["engines"].get(n, "absent") for r in ok) for n in held}

    def params_of(n: str):
        if n in plan.names and fingerprints[n] == plan.fingerprint(n):
            return plan.params[n]
        if previous is not None and previous.fingerprints.get(n) == fingerprints[n]:
            return previous.params.get(n)
        return None  # mixed, or computed by a run whose metrics.json is gone (deleted by hand)

    store.write_metrics_info(MetricsInfo(
        metrics_version=METRICS_VERSION, engine=_one_or_mixed(engines.values()) if engines else plan.engine,
        names=held, params={n: params_of(n) for n in held}, fingerprints=fingerprints,
        parts=len(results), rows=sum(r["rows"] for r in results),
        failed_parts=[{"part": r["part"], "error": r["error"]} for r in results if r["error"]],
        defined={n: defined[n] for n in held},
        undefined={n: dict(sorted(undefined[n].items())) for n in held},
        engines=engines,
    ))


def compute_metrics(store_url: str, spec: MetricsSpec, scheduler: str = "local", workers: int | None = None,
                    progress: bool = True) -> MetricsResult:
    """``nw2 metrics``: add or refresh the metric columns of ``spec`` (its names, parameters and engine; its
    ``enabled``, which is about ``nw2 ingest``, is not read) in every part of a store."""
    from nw2.pipeline.spec import MetricsSpec

    if not isinstance(spec, MetricsSpec):
        raise TypeError(f"compute_metrics: spec must be a MetricsSpec, got {type(spec).__name__}")
    from nw2.core.locks import exclusive

    check_reachable(store_url, scheduler)
    plan = MetricsPlan.from_spec(spec)
    with exclusive(store_url, "nw2 metrics"), executor(scheduler, workers, progress) as ex:
        return run_metrics(store_url, plan, ex)
