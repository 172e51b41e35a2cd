"""``nw2 balance``: a window store with metrics -> a corpus balanced over dynamical regimes.

``balance(store_url, out, spec)`` does everything in two phases:

1. **Check and select, writing nothing.** The balance section is validated; the output must be free
   (or a previous corpus, with ``overwrite``) and apart from the store; the store must hold metrics
   (``nw2 metrics``) and the chosen ones; its parts must share one set of columns. Then the metric
   columns alone are read (``space.load_rows``), the feature space and the grid are fitted, and the
   strategy selects its rows (plus a ``random`` draw of the same size, for the statistics).
2. **Write.** For a local ``out`` everything goes into a sibling temporary directory that is renamed to
   ``out`` at the end; for other fsspec URLs the corpus is written in place with ``corpus.json`` last,
   as the completion marker. On any error what was written is removed, so nothing is left at ``out``.

The feature space (quantile transform, PCA) is fitted on every store row, so rows of every split have
a place in it; the grid's cut points are fitted on the candidate rows (the balanced splits after the
NaN policy), so the candidates fill the grid's bins equally. Rows of the other splits are carried
through unchanged (all of them, ``sample_weight`` 1, ``bin_id`` their grid cell).
"""

from __future__ import annotations

import dataclasses
import posixpath
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import polars as pl

from nw2.pipeline import __version__
from nw2.pipeline.balance import corpus as C
from nw2.core.errors import Nw2Error, SpecError
from nw2.pipeline.spec import BalanceSpec, validate_balance
from nw2.artifacts.corpus import FORMAT, VERSION, Corpus, CorpusInfo, columns_of, store_name
from nw2.artifacts.store import WindowStore
from nw2.core.jsonable import jsonable


@dataclass
class BalanceResult:
    """What ``balance`` wrote: the corpus URL, its ``corpus.json`` and the report files."""

    out: str
    info: dict
    report: list[str]

    @property
    def rows(self) -> int:
        return self.info["corpus_rows"]


# -- checks ---------------------------------------------------------------------------------------
def _resolve(spec: BalanceSpec) -> BalanceSpec:
    try:
        validate_balance(spec, "balance")
    except SpecError as err:
        raise Nw2Error(str(err)) from None
    if spec.strategy is None:  # an older spec's "strategy: null" (then it came from --strategy): the default
        spec = dataclasses.replace(spec, strategy=BalanceSpec.strategy)
    if not spec.weights_only and spec.size is None and spec.fraction is None:
        raise Nw2Error("give --size N or --fraction F (or --weights-only to keep every row with its weight)")
    return spec


# -- the stage ------------------------------------------------------------------------------------
def balance(store_url: str, out: str, spec: BalanceSpec, overwrite: bool = False, report: bool = True,
            log=None) -> BalanceResult:
    """Select rows of a store with ``spec``'s strategy and write them as a corpus at ``out`` (another process
    writing ``out``, or writing the store, is refused: :class:`BusyError`; the store is read under a shared lock,
    so an ingest or metrics run into it is refused while this one reads it)."""
    from nw2.core.files import sweep_published
    from nw2.core.locks import exclusive, shared

    # the store's lock first: an --out that is the store itself is then refused as one being read ("choose another")
    with shared(store_url, "nw2 balance"), exclusive(out, "nw2 balance"):
        sweep_published(out)  # what a killed nw2 balance of this --out left beside it
        return _balance(store_url, out, spec, overwrite, report, log)


def _balance(store_url: str, out: str, spec: BalanceSpec, overwrite: bool, report: bool, log) -> BalanceResult:
    from nw2.pipeline.balance.bins import balance_stats, fit_grid
    from nw2.pipeline.balance.space import FeatureSpec, build_features, scan_rows, store_columns
    from nw2.pipeline.balance.strategies import STRATEGIES, Candidates, resolve_params, select, select_constrained

    spec = _resolve(spec)
    store = WindowStore.open(store_url, metrics=True)
    parts = store.parts()
    # the output is checked (free, or an nw2 corpus with overwrite) before anything is read
    Corpus.check_destination(out, overwrite=overwrite, around=store)
    every_metric, everywhere = store_columns(store.url)
    metrics = tuple(spec.metrics or every_metric)
    if not metrics:
        raise Nw2Error(f"{store_url}: the store has no metric columns; run nw2 metrics {store_url} first")
    schema = C.part_schema(store, parts)
    _check_fingerprints(store, parts, metrics)
    truth_columns = tuple(c for c in TRUTH_COLUMNS if c in everywhere)  # absent before store schema v3
    loaded = tuple(dict.fromkeys((*metrics, *every_metric)))  # the diversity section reads them all
    # The string columns as categoricals: a few distinct values each, and at ten million rows their
    # 16-byte views were most of the table (1.8 of 2.3 GB).
    has_role = "role" in everywhere  # absent before store schema v4: every row a signal
    text = ("part", *SELECTION_COLUMNS, *GROUP_COLUMNS, *truth_columns, *(("role",) if has_role else ()))
    rows = scan_rows(store.url, loaded, text[1:]).with_columns(
        pl.col(c).cast(pl.Categorical) for c in text).collect()
    if rows.height == 0:
        raise Nw2Error(f"{store_url}: empty store (its parts hold no rows)")
    known = {p: i for i, p in enumerate(parts)}
    unknown = set(rows.get_column("part").unique().to_list()) - set(known)
    if unknown:
        raise Nw2Error(f"{store_url}: rows from {sorted(unknown)[0]}, which is no part of the store")

    if spec.metrics is None:  # the default space: the metrics defined on some row (chaos_01 needs 100 samples)
        metrics = tuple(m for m in metrics if rows.get_column(m).is_not_null().any())
        if not metrics:
            raise Nw2Error(f"{store_url}: no metric is defined on any row; nothing to balance on")
    # Every loaded metric once, float32 and column-major (read a column at a time), the balancing metrics
    # (after the default's filter) first, so their matrix is a view; the table keeps its short columns.
    measured = tuple(dict.fromkeys((*metrics, *loaded)))
    all_values = rows.select([pl.col(m).cast(pl.Float32).fill_null(np.nan) for m in measured]).to_numpy(order="fortran")
    rows = rows.drop(measured)
    values = all_values[:, :len(metrics)]
    # Features and grid.
    fspec = FeatureSpec(metrics=metrics, pca=spec.pca, bins=spec.bins, nan_policy=spec.nan_policy, scale=spec.scale)
    try:
        feats = build_features(values, fspec)
    except Nw2Error as err:
        raise Nw2Error(f"{store_url}: {err}") from None
    if spec.bins ** feats.dims >= 2 ** 62:  # cell ids are int64
        raise Nw2Error(f"balance.bins: {spec.bins} bins over {feats.dims} dimensions make {spec.bins}**{feats.dims} "
                       "grid cells, more than a cell id holds; lower bins or project with pca")
    split, split_names = name_codes(rows.get_column("split"))
    # interventions are never candidates: they go with the windows of their group (below)
    signal = (rows.get_column("role").cast(pl.String) == "signal").to_numpy() if has_role else np.ones(rows.height, bool)
    balanced = np.isin(split, [i for i, name in enumerate(split_names) if name in spec.splits]) & signal
    defined = np.asarray(feats.defined, bool)
    cand_mask = balanced & (defined | (spec.nan_policy == "own_bin"))
    cand_idx = np.flatnonzero(cand_mask)
    duplicates = None
    dropped = np.zeros(rows.height, bool)  # near-duplicates left out (not "before" rows of the report either)
    if spec.dedup and cand_idx.size:
        dropped[cand_idx] = True
        cand_idx, duplicates = _drop_duplicates(store.url, cand_idx, rows.height)
        dropped[cand_idx] = False
    n_cand = int(cand_idx.size)
    if n_cand == 0:
        why = " with every chosen metric defined (nan_policy exclude)" if balanced.any() else ""
        raise Nw2Error(f"{store_url}: no rows to balance in split(s) {', '.join(spec.splits)}{why}; "
                       f"the store holds {_split_counts(split, split_names)}")
    # The candidates' coordinates; with every row a candidate, the matrix itself rather than a copy.
    cand_z = feats.z if n_cand == rows.height else feats.z[cand_idx]
    grid = fit_grid(cand_z, defined[cand_idx], spec.bins)
    cells = np.asarray(grid.cells(feats.z, defined), np.int64)
    dims, components, explained = feats.dims, feats.components, feats.explained
    del feats  # only the candidates' coordinates are needed from here on

    # Integer codes of the names (in name order) rather than ten million Python strings: a strategy
    # only tells the groups apart.
    dataset, dataset_names = name_codes(rows.get_column("dataset"))
    modality, modality_names = name_codes(rows.get_column("modality"))
    groups = {name: name_codes(rows.get_column(name))[0] for name in GROUP_COLUMNS}  # caps and the diversity
    cand = Candidates(z=cand_z, cells=cells[cand_idx], dataset=dataset[cand_idx],
                      modality=modality[cand_idx], record=groups["record"][cand_idx],
                      subject=groups["subject"][cand_idx])

    # Size and selection.
    size = None
    if not spec.weights_only:
        size = spec.size if spec.size is not None else max(1, int(np.floor(spec.fraction * n_cand + 0.5)))
        if size > n_cand and not spec.replace:
            raise Nw2Error(f"size {size} is larger than the {n_cand} candidate rows of split(s) "
                           f"{', '.join(spec.splits)}; lower --size or pass --replace")
    params = {name: getattr(spec, name) for name in STRATEGIES[spec.strategy].spec_params}
    try:
        params = resolve_params(spec.strategy, params)   # with the defaults the spec does not set
        constraints = None
        if spec.caps or spec.mixture:
            sel, constraints = select_constrained(
                spec.strategy, cand, size, spec.seed, caps=spec.caps, replace=spec.replace,
                mixture=_checked_mixture(spec.mixture, dataset_names, np.unique(dataset[cand_idx]), store_url),
                dataset_names=dataset_names, **params)
        else:
            sel = select(spec.strategy, cand, size, spec.seed, replace=spec.replace,
                         weights_only=spec.weights_only, **params)
        rnd = None if spec.weights_only else select("random", cand, int(sel.index.size), spec.seed,
                                                    replace=spec.replace)
    except ValueError as err:
        raise Nw2Error(f"balance ({spec.strategy}): {err}") from None
    del cand, cand_z  # the diversity section builds its own space
    sel_index = np.asarray(sel.index, np.int64)
    sel_global = cand_idx[sel_index]
    sel_cells = cells[sel_global]
    sel_weight = np.asarray(sel.sample_weight, np.float64)

    # Everything that goes into the corpus, in store order: the selection plus the carried splits.
    carried = np.flatnonzero(~balanced & signal)
    carried = np.concatenate([carried, _interventions_of(store.url, signal, np.concatenate([sel_global, carried]))])
    all_global = np.concatenate([sel_global, carried])
    # bin_id is the grid cell, except for kmeans (its cluster): coverage's Voronoi cells are not grid cells.
    sel_bin = np.asarray(sel.bin_id, np.int64) if spec.strategy == "kmeans" else sel_cells
    all_bin = np.concatenate([sel_bin, cells[carried]])
    all_weight = np.concatenate([sel_weight, np.ones(carried.size)])
    order = np.argsort(all_global, kind="stable")
    all_global, all_bin, all_weight = all_global[order], all_bin[order], all_weight[order]
    part_idx = rows.get_column("part").cast(pl.String).replace_strict(known, return_dtype=pl.Int64).to_numpy()
    row_idx = rows.get_column("row").cast(pl.Int64).to_numpy()
    selected = C.Selected(part=part_idx[all_global], row=row_idx[all_global], bin_id=all_bin,
                          sample_weight=all_weight)

    # corpus.json, less what writing adds (parts, content hash, report files).
    cand_cells = cells[cand_idx]
    if spec.weights_only:
        stats_sel = balance_stats(sel_cells, cand_cells, weights=sel_weight)
        stats_rnd = balance_stats(cand_cells, cand_cells)
    else:
        stats_sel = balance_stats(sel_cells, cand_cells)
        stats_rnd = balance_stats(cells[cand_idx[np.asarray(rnd.index, np.int64)]], cand_cells)
    out_schema = C.corpus_schema(store, parts, schema)
    info = {
        "format": FORMAT, "version": VERSION, "nw2_version": __version__,
        "store": {"name": store_name(store_url), "fingerprint": store.fingerprint(parts),
                  "parts": len(parts), "rows": int(rows.height)},
        # the balance spec
        "strategy": spec.strategy, "params": params, "size": size, "fraction": spec.fraction, "seed": spec.seed,
        "replace": spec.replace, "weights_only": spec.weights_only, "balanced_splits": list(spec.splits),
        "bin_id": "kmeans cluster" if spec.strategy == "kmeans" else "grid cell",
        # the feature spec and the bin definition
        "metrics": list(metrics), "scale": spec.scale, "pca": spec.pca, "bins_per_dim": spec.bins, "nan_policy": spec.nan_policy,
        "dims": int(dims), "cells": int(spec.bins ** dims),
        "components": _floats(components), "explained_variance": _floats(explained),
        "grid_edges": [_floats(e) for e in grid.edges],
        # what changed
        "cell_counts": _cell_counts(cand_cells, sel_cells, sel_weight if spec.weights_only else None),
        "mix": {by: _mix(col[cand_idx], col[sel_global], names, sel_weight if spec.weights_only else None)
                for by, col, names in (("dataset", dataset, dataset_names), ("modality", modality, modality_names))},
        "balance_stats": {"selection": _jsonable(stats_sel), "random": _jsonable(stats_rnd),
                          "candidates": _jsonable(balance_stats(cand_cells, cand_cells))},
        "rows": _rows(split, split_names, defined, spec, all_global),
        "candidates": n_cand, "selected": int(sel_global.size),
        "distinct_selected": int(np.unique(sel_global).size), "corpus_rows": int(all_global.size),
        "columns": columns_of(out_schema),
    }
    info["dedup"] = duplicates
    info["interventions"] = _interventions_info(store.url, signal, all_global)
    info["constraints"] = None if constraints is None else jsonable(constraints)
    info["independent_diversity"] = _diversity(
        rows, all_values, cand_idx, sel_index, measured, metrics, truth_columns,
        {"dataset": (dataset, dataset_names), "modality": (modality, modality_names), **groups},
        spec, sel_weight if spec.weights_only else None)
    if spec.strategy == "kmeans":
        ids, n = np.unique(np.asarray(sel.bin_id, np.int64), return_counts=True)
        info["cluster_counts_after"] = [{"cluster": int(c), "after": int(k)} for c, k in zip(ids, n)]

    # what the report reads: the metrics back as columns, null where undefined
    rows = rows.select("part", "row", *SELECTION_COLUMNS).with_columns(
        pl.Series(m, all_values[:, j]).fill_nan(None) for j, m in enumerate(metrics))
    del all_values, values
    before = rows.with_columns(pl.Series("bin_id", cells, pl.Int64)).filter(pl.Series(~dropped))
    after = rows.select(pl.all().gather(all_global)).with_columns(
        pl.Series("bin_id", all_bin, pl.Int64), pl.Series("sample_weight", all_weight, pl.Float64))
    written, files = Corpus.publish(
        out, lambda dest: _write_all(store, parts, selected, dest, out_schema, info, before, after, report, log),
        overwrite=overwrite, around=store)
    return BalanceResult(out, written.to_dict(), files)


def _write_all(store, parts, selected, dest: Corpus, schema, info, before, after, report: bool,
               log) -> tuple[CorpusInfo, list[str]]:
    written = C.copy_rows(store, parts, selected, dest, schema, distinct=not info["replace"])
    info["parts"] = written
    info["content_sha256"] = dest.hash_parts(written)
    files = [f"report/{f}" for f in _write_report(dest, before, after, info, log)] if report else []
    final = CorpusInfo.from_dict(dict(info, report=files))
    dest.write_info(final)
    return final, files


def _write_report(dest: Corpus, before, after, info, log) -> list[str]:
    try:
        from nw2.pipeline.balance.report import write_report
    except ImportError:  # pragma: no cover - the report module ships with the stage
        if log:
            log("report: pipeline.balance.report is missing; no report written")
        return []
    return list(write_report(dest.url.rstrip("/") + "/report", before, after, dict(info)))


# -- corpus.json pieces -----------------------------------------------------------------------------
def _floats(a) -> list | None:
    if a is None:
        return None
    return np.asarray(a, np.float64).tolist()


def _jsonable(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, (np.floating, float)):
            v = float(v)
        out[k] = v
    return out


#: The row columns selection and the report use: window ids and group ids are not read.
SELECTION_COLUMNS = ("dataset", "modality", "split")
#: Groups whose shares the diversity section reports (a corpus made of one record is visible).
GROUP_COLUMNS = ("subject", "record")
#: The synthetic source's ground truth that the diversity section reads where the store has it.
TRUTH_COLUMNS = ("system", "regime")


def _checked_mixture(mixture: dict | None, names: list[str], present: np.ndarray, store_url: str) -> dict | None:
    """The mixture keyed by dataset names; a name without candidate rows is refused, naming the store."""
    if not mixture:
        return None
    mixture = {str(k): v for k, v in mixture.items()}
    held = [names[int(c)] for c in present]
    unknown = sorted(set(mixture) - set(held))
    if unknown:
        where = "the store does not hold" if unknown[0] not in names else "has no candidate rows in the balanced splits"
        raise Nw2Error(f"{store_url}: balance.mixture names dataset {unknown[0]!r}, which {where} "
                       f"(candidates come from: {', '.join(held)})")
    return mixture


def _check_fingerprints(store: WindowStore, parts: list[str], metrics) -> None:
    """Every part holds each balancing metric as ``metrics.json`` says (same name, parameters, engine, version:
    the fingerprint in its footer): a part left by an interrupted or failed run, or a store whose metrics.json
    says ``mixed``, is refused naming the part, never balanced as one space."""
    import json

    info = store.metrics_info()
    for m in metrics:
        if info.fingerprints.get(m) == "mixed":
            raise Nw2Error(f"{store.url}: metric {m} was computed with other parameters or engines in different "
                           f"parts (metrics.json: mixed); rerun nw2 metrics {store.url} with one setting")
    for rel in parts:
        schema = store.schema_of(rel)
        raw = (schema.metadata or {}).get(b"nw2.metrics")
        held = json.loads(raw).get("fingerprints", {}) if raw else {}
        for m in metrics:
            if m in held and m in schema.names and held[m] != info.fingerprints.get(m):
                raise Nw2Error(f"{store.url}: {rel} holds {m} computed with other settings than metrics.json "
                               f"records (an interrupted nw2 metrics?); rerun nw2 metrics {store.url}")


def _columns(store_url: str, columns: list[str]) -> pa.Table:
    """``columns`` of every row of the store, in store order (the order of the balance's row indices)."""
    store = WindowStore.open(store_url)
    return pa.concat_tables([store.read_table(rel, columns=columns).replace_schema_metadata(None)
                             for rel in store.parts()])


def _interventions_of(store_url: str, signal: np.ndarray, taken: np.ndarray) -> np.ndarray:
    """The intervention rows (``~signal``) whose ``group_id`` is that of a row in ``taken``, each once (a window
    drawn twice does not double its group's dose), in store order. Reads the group ids only when the store has
    interventions."""
    if signal.all():
        return np.zeros(0, np.int64)
    gid = pl.from_arrow(_columns(store_url, ["group_id"]).column("group_id")).cast(pl.String)
    wanted = gid.gather(np.unique(taken)).unique()
    ivs = np.flatnonzero(~signal)
    return ivs[gid.gather(ivs).is_in(wanted.implode()).to_numpy()]


def _interventions_info(store_url: str, signal: np.ndarray, all_global: np.ndarray) -> dict | None:
    """corpus.json's ``interventions``: the intervention rows it carries, per channel its role, rows and
    categories (null: continuous); null when the store has no intervention rows."""
    if signal.all():
        return None
    rows = np.unique(all_global[~signal[all_global]])
    table = _columns(store_url, ["channel", "role", "categories"]).take(pa.array(rows, pa.int64()))
    channels: dict[str, dict] = {}
    for name, role, categories in zip(*(table.column(c).to_pylist() for c in ("channel", "role", "categories"))):
        entry = channels.setdefault(name, {"role": role, "rows": 0, "categories": categories})
        entry["rows"] += 1
        if entry["role"] != role or entry["categories"] != categories:
            raise Nw2Error(f"{store_url}: intervention {name!r} is stored with two roles or category lists "
                           f"({entry['role']} {entry['categories']}, {role} {categories}); give them other names")
    return {"rows": int(rows.size), "channels": dict(sorted(channels.items()))}


def _drop_duplicates(store_url: str, cand_idx: np.ndarray, n_rows: int) -> tuple[np.ndarray, dict]:
    """The candidates without their near-duplicates (:mod:`pipeline.balance.dedup`: the first window of each
    group in store order stays), and the counts for corpus.json. Reads the candidates' samples, part by part."""
    from nw2.pipeline.balance.dedup import find_duplicates, window_signatures

    mask = np.zeros(n_rows, bool)
    mask[cand_idx] = True
    found = find_duplicates(window_signatures(store_url, rows=mask), cand_idx)
    return cand_idx[found.keep], found.summary()


def _diversity(rows: pl.DataFrame, values: np.ndarray, cand_idx, sel_index, measured, balancing, truth_columns,
               group_codes: dict, spec: BalanceSpec, weights) -> dict:
    """The ``independent_diversity`` section (:mod:`pipeline.balance.diversity`) of the candidates, from the
    ``measured`` metric columns ``values`` and the integer codes of the groups."""
    from nw2.pipeline.balance.diversity import independent_diversity

    # ``(codes, names)`` pairs for the shares, bare codes for the concentration groups
    groups = {name: (g[0][cand_idx], g[1]) if isinstance(g, tuple) else g[cand_idx] for name, g in group_codes.items()}
    truth = None
    if truth_columns:
        cand = rows.select("subject", *truth_columns)[cand_idx]
        # A synthetic row's subject is its (system, parameter band): the band of the truth label.
        truth = {"system": cand.get_column("system").to_numpy(), "regime": cand.get_column("regime").to_numpy(),
                 "band": np.where(cand.get_column("system").is_null().to_numpy(), None,
                                  cand.get_column("subject").to_numpy())}
    return independent_diversity(values[cand_idx], list(measured), list(balancing), np.asarray(sel_index, np.int64),
                                 groups=groups, truth=truth, seed=spec.seed, weights=weights)


def name_codes(series: pl.Series) -> tuple[np.ndarray, list[str]]:
    """``(codes, names)``: int64 codes of a string column, names sorted so ``names[codes]`` is the column."""
    names = sorted(series.drop_nulls().unique().to_list())
    codes = series.cast(pl.Enum(names)).to_physical().cast(pl.Int64).to_numpy()
    return codes, names


def _named(codes: np.ndarray, names: list[str], weights: np.ndarray | None = None) -> dict:
    """``{name: rows}`` (or summed weights) of the names that occur."""
    n = np.bincount(codes, weights=weights, minlength=len(names))
    if weights is None:
        return {names[i]: int(v) for i, v in enumerate(n) if v}
    used = np.bincount(codes, minlength=len(names))
    return {names[i]: round(float(v), 9) for i, v in enumerate(n) if used[i]}


def _split_counts(split: np.ndarray, names: list[str]) -> str:
    return ", ".join(f"{a} {b}" for a, b in _named(split, names).items()) or "no rows"


#: Cells listed in ``cell_counts`` at most: a grid over all 13 metrics has about one cell per candidate,
#: and a million-entry list would make ``corpus.json`` hundreds of megabytes (``bin_id`` has every row's cell).
MAX_LISTED_CELLS = 10_000


def _cell_counts(before: np.ndarray, after: np.ndarray, weights: np.ndarray | None) -> list[dict]:
    """Per grid cell occupied before: rows before and after (and summed weights with ``--weights-only``);
    beyond :data:`MAX_LISTED_CELLS` occupied cells, the ones with the most candidates (ties by cell id)."""
    keys, nb = np.unique(before, return_counts=True)
    na = np.bincount(np.searchsorted(keys, after), minlength=keys.size) if after.size else np.zeros(keys.size, int)
    w = None if weights is None else np.bincount(np.searchsorted(keys, after), weights=weights, minlength=keys.size)
    listed = np.arange(keys.size)
    if keys.size > MAX_LISTED_CELLS:
        listed = np.sort(np.lexsort((keys, -nb))[:MAX_LISTED_CELLS])
    out = [{"cell": int(keys[i]), "before": int(nb[i]), "after": int(na[i])} for i in listed]
    if w is not None:
        for entry, i in zip(out, listed):
            entry["after_weighted"] = round(float(w[i]), 9)
    return out


def _mix(before: np.ndarray, after: np.ndarray, names: list[str], weights: np.ndarray | None) -> dict:
    mix = {"before": _named(before, names), "after": _named(after, names)}
    if weights is not None:
        mix["after_weighted"] = _named(after, names, weights)
    return mix


def _rows(split, names: list[str], defined, spec: BalanceSpec, corpus_rows) -> dict:
    """Per split: rows in the store, in the corpus, whether balanced, undefined and excluded rows."""
    before = np.bincount(split, minlength=len(names))
    after = np.bincount(split[corpus_rows], minlength=len(names))
    undefined = np.bincount(split[~defined], minlength=len(names))
    out = {}
    for name in sorted(set(names) | set(spec.splits)):
        i = names.index(name) if name in names else None
        is_bal = name in spec.splits
        und = int(undefined[i]) if i is not None else 0
        out[name] = {"before": int(before[i]) if i is not None else 0,
                     "after": int(after[i]) if i is not None else 0, "balanced": is_bal,
                     "undefined": und, "excluded": und if is_bal and spec.nan_policy == "exclude" else 0}
    return out


def describe(result: BalanceResult) -> str:
    """One-paragraph summary for the CLI."""
    info = result.info
    stats = info["balance_stats"]
    s, r = stats["selection"], stats["random"]
    bal = ", ".join(info["balanced_splits"])
    if info["weights_only"]:
        head = (f"weights for {info['candidates']} {bal} rows ({info['strategy']}, seed {info['seed']})")
    else:
        head = (f"{info['selected']} of {info['candidates']} {bal} rows ({info['strategy']}, seed {info['seed']}"
                + (", with replacement" if info["replace"] else "") + ")")
    carried = info["corpus_rows"] - info["selected"]
    lines = [f"{head} + {carried} rows of other splits carried -> {result.out} "
             f"({info['corpus_rows']} rows in {len(info['parts'])} part{'s' if len(info['parts']) != 1 else ''})",
             f"normalized entropy {s['normalized_entropy']:.3f} (random {r['normalized_entropy']:.3f}), "
             f"cells kept {100 * s['fraction_of_cells_kept']:.0f}% (random {100 * r['fraction_of_cells_kept']:.0f}%), "
             f"effective regimes {s['effective_regimes']:.1f} (random {r['effective_regimes']:.1f})"]
    div = info.get("independent_diversity") or {}
    measures = []
    for label, section, key in (("p90 coverage distance", "coverage", "p90"),
                                ("cluster entropy", "clusters", "normalized_entropy"),
                                ("true-regime entropy", "ground_truth", "normalized_entropy")):
        part = div.get(section) or {}
        if part.get("selection") and part.get("random"):
            measures.append(f"{label} {part['selection'][key]:.3f} (random {part['random'][key]['mean']:.3f})")
    if measures:
        lines.append("independent: " + ", ".join(measures))
    if result.report:
        lines.append(f"report: {posixpath.join(result.out.rstrip('/'), result.report[-1])}")
    return "\n".join(lines)
