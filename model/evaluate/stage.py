"""``nw2 evaluate``: the model against baselines on held-out windows, linear probes, and the report.

:func:`evaluate` takes its settings as an :class:`~.config.EvalConfig` (checked when it is made), checks the
run, the data, the split and the model's horizons before any work; reads the rows of the
evaluated split(s) and streams them through the model and the baselines in batches (:mod:`.forecast`); embeds
the train split for the probes (:mod:`.probe`); then writes ``metrics.json``, ``speed.json`` and the report
(:mod:`.report`) into a temporary directory renamed to ``out`` at the end, so a failed run leaves nothing
half-written. ``docs/evaluate.md`` describes every number.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from nw2.core.jsonable import jsonable
from nw2.pipeline import __version__
from nw2.artifacts.report import METRICS_JSON, SPEED_JSON, EvalReport
from nw2.artifacts.run import Run
from nw2.core.errors import EmptySplitError, Nw2Error
from nw2.core.files import json_text, sweep_published
from nw2.core.hashing import sha256_file

from . import baselines, spectra
from .config import PROBE_TRAIN_WINDOWS, EvalConfig, parse_splits
from nw2.core.locks import exclusive, shared

from .data import intervention_values, Source, open_source, read_meta, stream_samples
from .forecast import METRICS, Protocol, Scorer, parse_horizons, plan, windows_per_second
from .probe import LOGISTIC_L2, RIDGE_L2, run_classification, run_regression
from .relative import make_units, relative_section, unit_label
from .summary import MODEL_METHODS, build_summary, per_window_column
from .trained import MAX_TRAIN_PAIRS, PAIR_STRIDE, TRAINED_BASELINES, fit_trained_baselines

__all__ = ["EvalConfig", "EvalResult", "evaluate", "REGIME_METRICS", "FORMAT", "VERSION", "PROBE_TRAIN_WINDOWS",
           "load_run_model", "parse_splits"]

#: Version 2: ``summary`` is nested data (``docs/evaluate.md``; :mod:`.summary`), no longer a flat dict of keys.
#: Version 3: the trained baselines (``linear``, ``mlp``; ``trained_baselines``) and ``forecast.relative``.
FORMAT, VERSION = "nw2-eval", 3
#: Chaos metrics whose terciles define the dynamical-regime bins (and the ridge probes' targets).
REGIME_METRICS = ("largest_lyapunov", "sample_entropy")
REGIME_BINS = ("low", "mid", "high")
#: Forecast examples drawn in the report.
EXAMPLES = 4
#: Significant digits of the floats in metrics.json.
DIGITS = 6

@dataclass
class EvalResult:
    """What :func:`evaluate` wrote and found.

    ``out``: the report directory; ``metrics``: the dict written to ``metrics.json``; ``summary``: the model's
    headline numbers (``metrics["summary"]``, nested data: see :mod:`.summary`); ``per_window``: one row per
    evaluated window and horizon with ``window_id``, ``split``, ``dataset``, ``modality``, ``subject``,
    ``record``, ``system``, ``horizon``, the model's ``mse``, ``mae``, ``mae_physical``, ``lsd``,
    ``spectral_corr``, ``latent_distance``, and the same for the other forecasters as ``<metric>_<method>`` (``mse_adapted``, ``mse_ar``, ...;
    :func:`.summary.per_window_column`); ``speed``: windows per second (``speed.json``)."""

    out: Path
    metrics: dict
    summary: dict
    per_window: pl.DataFrame
    speed: dict = field(default_factory=dict)


# -- inputs -----------------------------------------------------------------------------------------
def load_run_model(run, device: str = "cpu"):
    """``(model, run_dir, run_info)`` of a run directory written by ``nw2 pretrain`` (``run_info`` is its
    :class:`~nw2.artifacts.RunInfo`, or ``None`` without ``run.json``); one-line :class:`Nw2Error` when it
    is not one."""
    from nw2.model.network import Model

    trained = Run.open_trained(run)
    model_dir = trained.model_dir
    try:
        model = Model.from_pretrained(model_dir).to(device).eval()
    except Exception as err:  # corrupt weights or config: a user error, shown as one line
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise Nw2Error(f"{model_dir}: cannot load the model ({first})") from None
    try:
        info = trained.info()
    except Nw2Error:
        info = None  # the model is what is evaluated; an unreadable run.json only leaves steps unknown
    return model, trained.root, info


# -- the evaluation ---------------------------------------------------------------------------------
def evaluate(run, data, config: EvalConfig = EvalConfig(), progress: bool = True,
             log: Callable[[str], None] | None = None) -> EvalResult:
    """Evaluate the model of ``run`` (``RUN/model``) on the ``config.split`` rows (``"val,test"`` for several)
    of the store or corpus ``data``: forecasts at ``config.horizons`` (default: one patch, two, four, ... up to
    half the model window) against the truth and the baselines, with and without test-time adaptation
    (``config.adapt``), and linear probes on frozen embeddings (``config.probe``). ``config.max_windows``
    evaluates a seeded uniform sample of that many rows. Writes the report into ``config.out`` (default
    ``RUN/eval-<split>``), replacing an earlier report there. ``progress`` shows progress bars; ``log`` gets
    the warnings, one line each. Raises :class:`Nw2Error` for unusable input."""
    if not isinstance(config, EvalConfig):
        raise TypeError(f"evaluate: config must be an EvalConfig, got {type(config).__name__}")
    c = config  # every field checked and normalised already (split: a tuple of names; horizons: ints or None)
    say = log or (lambda message: None)
    started = time.perf_counter()
    model, run_dir, run_meta = load_run_model(run, c.device)
    cfg = model.config
    splits = c.split
    hs = parse_horizons(c.horizons, cfg.window_size, cfg.patch_size)
    # the store or corpus is read under a shared lock: an ingest, metrics or balance run into it is refused meanwhile
    with shared(data, "nw2 evaluate"):
        source = open_source(data)
        meta = _of_kind(read_meta(source, splits), c.windows)
        counts = dict(meta.group_by("split").len().iter_rows()) if meta.height else {}
        for s in splits:
            if not counts.get(s):
                raise EmptySplitError(source.root, s, None if c.windows == "all"
                                      else f"no {c.windows} windows in split {s!r} (--windows {c.windows})")
        proto = plan(cfg.window_size, cfg.patch_size, hs, int(meta.get_column("length").min()), c.adapt,
                     where=str(source.root))
        # checked as given: Path() would fold a URL ("memory://r") into a local path ("memory:/r")
        target = c.out if c.out is not None else run_dir / f"eval-{'-'.join(splits)}"
        with exclusive(target, "nw2 evaluate"):  # one writer per report: two evaluations never replace each other
            sweep_published(target)  # what a killed nw2 evaluate of this report left beside it
            return _evaluate(model, run_dir, run_meta, cfg, c, splits, hs, source, meta, counts, proto, target, say,
                             started, progress)


def _evaluate(model, run_dir, run_meta, cfg, c, splits, hs, source, meta, counts, proto, target, say, started,
              progress) -> EvalResult:
    EvalReport.check_destination(target)
    out_dir = Path(target)

    available = meta.height
    if c.max_windows is not None and available > c.max_windows:
        idx = np.sort(np.random.default_rng(c.seed).choice(available, c.max_windows, replace=False))
        rows = meta[idx]
    else:
        rows = meta

    trained, trained_info = ({}, {"skipped": "turned off (--no-trained-baselines)"})
    fit_seconds = 0.0
    if c.trained_baselines:
        t0 = time.perf_counter()
        trained, trained_info = _fit_trained(source, proto, splits, c.seed, say)
        fit_seconds = time.perf_counter() - t0
    drives = {}
    if cfg.interventions:
        if cfg.intervention_inputs:
            drives = intervention_values(source, splits, cfg.intervention_inputs, proto.need)
        else:
            say("the model's intervention inputs are unnamed (intervention_inputs): evaluated without them")
    fc = _forecast_pass(model, proto, source, rows, c.batch_size, c.adapt, c.probe, c.device, progress, trained,
                        drives)
    if fc["n"] == 0:
        raise Nw2Error(f"{source.root}: no evaluated window of split {', '.join(splits)} has finite samples")
    if fc["skipped"]:
        say(f"{fc['skipped']} windows with non-finite samples left out")
    if fc["fallback"]:
        say(f"seasonal naive: no period in {fc['fallback']} of {fc['n']} contexts; last value used there")

    probe_section, probe_seconds, probe_windows = ({"skipped": "turned off (--no-probe)"}, 0.0, 0)
    if c.probe:
        probe_section, probe_seconds, probe_windows = _probe_pass(
            model, proto, source, fc, splits, c.batch_size, c.seed, c.probe_train_windows, progress)
        for task, info in probe_section.get("tasks", {}).items():
            if "skipped" in info:
                say(f"probe {task}: skipped ({info['skipped']})")
        if "skipped" in probe_section:
            say(f"probe: skipped ({probe_section['skipped']})")

    metrics, per_window = _assemble(run_dir, run_meta, model, source, splits, counts, available, c.max_windows,
                                    proto, c.adapt, c.seed, fc, probe_section, trained_info, c.bootstrap)
    metrics["data"]["windows"] = c.windows
    if cfg.interventions:
        metrics["forecast"]["interventions"] = _clean(_interventions_section(cfg, fc, proto))
    elapsed = time.perf_counter() - started
    speed = _speed(fc, probe_seconds, probe_windows, elapsed)
    speed["trained_baselines_fit_seconds"] = round(fit_seconds, 3)

    from .report import write_report

    def write(folder) -> None:
        tmp = Path(folder.root)
        files = write_report(tmp, metrics, fc["examples"], proto)
        metrics["files"] = sorted([METRICS_JSON, SPEED_JSON] + files)
        (tmp / METRICS_JSON).write_text(dumps(metrics))
        (tmp / SPEED_JSON).write_text(json_text(speed))

    EvalReport.publish(out_dir, write)
    return EvalResult(out_dir, metrics, json.loads(json.dumps(metrics["summary"])), per_window, speed)


def _fit_trained(source: Source, proto: Protocol, splits, seed: int, say) -> tuple[dict, dict]:
    """The trained baselines (:mod:`.trained`) fitted on the train split's rows long enough for the protocol
    (all of them cropped to the shortest, at most ``MAX_TRAIN_PAIRS`` pairs: a seeded sample of rows), and
    their ``metrics.json`` section; ``({}, {"skipped": reason})`` when the train split cannot give one."""
    train = read_meta(source, ["train"])
    if train.height == 0:
        return {}, {"skipped": f"no train split in {source.name} to fit them on"}
    train = train.filter(pl.col("length") >= proto.need)
    if train.height == 0:
        return {}, {"skipped": f"no train row of {source.name} holds {proto.need} samples"}
    length = int(train.get_column("length").min())
    per_row = len(range(proto.origin, length - proto.max_horizon + 1, PAIR_STRIDE))
    cap = max(1, MAX_TRAIN_PAIRS // per_row)
    if train.height > cap:
        idx = np.sort(np.random.default_rng([seed, 4]).choice(train.height, cap, replace=False))
        train = train[idx]
    xs, units = [], []
    for meta, x, ok in stream_samples(source, train, 1024, length):
        xs.append(x[ok])
        kept = meta.filter(pl.Series(ok)).select("subject", "record", "window_id")
        units += [unit_label(*r) for r in kept.iter_rows()]
    x = np.concatenate(xs) if xs else np.zeros((0, length), np.float32)
    if x.shape[0] == 0:
        return {}, {"skipped": "every train row has non-finite samples"}
    # held out by unit (subject, else record): windows of one recording on both sides would flatter the fit
    fits, info = fit_trained_baselines(x, proto.origin, proto.context, proto.max_horizon, seed, groups=units)
    info["train_row_length"] = length
    if "train" in splits:
        say("trained baselines: the train split is also evaluated, so their scores there are in-sample")
    return fits, info


def _forecast_pass(model, proto: Protocol, source: Source, rows: pl.DataFrame, batch_size: int, adapt: bool,
                   probe: bool, device: str, progress: bool, trained: dict | None = None,
                   drives: dict | None = None) -> dict:
    from tqdm.auto import tqdm

    scorer = Scorer(model, proto, adapt=adapt, device=device, embed_windows=probe, trained=dict(trained or {}))
    methods = scorer.methods
    n_rows = rows.height
    k = min(EXAMPLES, n_rows)
    wanted = set(np.unique(np.round(np.linspace(0, n_rows - 1, k)).astype(np.int64)).tolist()) if k else set()
    scores = {m: {key: [] for key in METRICS} for m in methods}
    metas, fell, embs, examples, q, kinds = [], [], [], [], [], []
    valid: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    position = skipped = processed = 0
    bar = tqdm(total=math.ceil(n_rows / batch_size), desc="evaluate", unit="batch", disable=not progress,
               leave=False)
    try:
        for meta, x, ok in stream_samples(source, rows, batch_size, proto.need):
            scale = meta.get_column("scale").cast(pl.Float64).fill_null(float("nan")).to_numpy()
            u = None
            if model.config.interventions:
                none = np.full((proto.need, model.config.interventions), np.nan, np.float32)
                gids = meta.get_column("group_id").to_list() if "group_id" in meta.columns else [None] * meta.height
                u = np.stack([(drives or {}).get(g, none) for g in gids])
            res = scorer(x, scale, _rates_of(model, meta, source), u)
            processed += x.shape[0]
            for i in range(x.shape[0]):
                if position + i in wanted and ok[i]:
                    examples.append(_example(meta, i, x[i], res, proto, methods))
            position += x.shape[0]
            skipped += int((~ok).sum())
            sel = np.flatnonzero(ok)
            if u is not None:
                given = np.isfinite(u).all((1, 2))
                span = u[:, proto.origin - 1:proto.origin + proto.max_horizon]
                changes = given & (np.diff(span, axis=1) != 0).any((1, 2))
                kinds.append(np.where(changes, 2, np.where(given, 1, 0))[sel])
            metas.append(meta[sel])
            fell.append(res.fell_back[sel])
            q.append(res.mase_scale[sel])
            for m in methods:
                valid[m].append(res.valid_samples[m][sel])
            for m in methods:
                for key in METRICS:
                    scores[m][key].append(res.scores[m][key][sel])
            if res.embedding is not None:
                embs.append(res.embedding[sel])
            bar.update(1)
    finally:
        bar.close()
    meta_all = pl.concat(metas) if metas else rows.clear()
    nh = len(proto.horizons)
    stacked = {m: {key: (np.concatenate(v) if v else np.zeros((0, nh))) for key, v in d.items()}
               for m, d in scores.items()}
    return {"n": meta_all.height, "meta": meta_all, "scores": stacked, "methods": methods,
            "fallback": int(np.concatenate(fell).sum()) if fell else 0, "skipped": skipped,
            "processed": processed, "seconds": dict(scorer.seconds), "examples": examples,
            "embedding": np.concatenate(embs) if embs else None,
            "mase_scale": np.concatenate(q) if q else np.zeros(0),
            "valid_samples": {m: np.concatenate(v) if v else np.zeros(0) for m, v in valid.items()},
            # per window: 0 no interventions, 1 given and unchanged over the horizon, 2 changing inside it
            "intervention_kind": np.concatenate(kinds) if kinds else None}


def _example(meta: pl.DataFrame, i: int, x: np.ndarray, res, proto: Protocol, methods) -> dict:
    show = min(proto.context, 2 * proto.max_horizon)
    return {"window_id": meta.get_column("window_id")[i], "dataset": meta.get_column("dataset")[i],
            "modality": meta.get_column("modality")[i],
            "context": x[proto.origin - show:proto.origin].astype(np.float64),
            "truth": x[proto.origin:proto.origin + proto.max_horizon].astype(np.float64),
            "forecasts": {m: res.forecasts[m][i] for m in methods}}


def _probe_pass(model, proto: Protocol, source: Source, fc: dict, splits, batch_size: int, seed: int,
                cap: int, progress: bool) -> tuple[dict, float, int]:
    """Embed the train split and run every probe task; returns (section, seconds embedding train, windows)."""
    import torch
    from tqdm.auto import tqdm

    ev_mask = fc["meta"].get_column("split").to_numpy() != "train"
    if not ev_mask.any():
        return {"skipped": "only the train split is evaluated, and it is the probes' training split; evaluate "
                           "another split"}, 0.0, 0
    train = read_meta(source, ["train"])
    if train.height == 0:
        return {"skipped": f"no train split in {source.name} to fit the probes on"}, 0.0, 0
    available = train.height
    if cap is not None and available > cap:
        idx = np.sort(np.random.default_rng([seed, 1]).choice(available, int(cap), replace=False))
        train = train[idx]
    t0 = time.perf_counter()
    metas, embs = [], []
    W = proto.window_size
    bar = tqdm(total=math.ceil(train.height / batch_size), desc="probe: embed train", unit="batch",
               disable=not progress, leave=False)
    short = int((train.get_column("length") < W).sum())
    train = train.filter(pl.col("length") >= W)
    try:
        for meta, x, ok in stream_samples(source, train, batch_size, W):
            sel = np.flatnonzero(ok)
            if sel.size:
                with torch.no_grad():
                    device = next(model.parameters()).device
                    rates = _rates_of(model, meta[sel], source)
                    e = model.embed(torch.from_numpy(np.ascontiguousarray(x[sel]))[:, :, None].to(device),
                                    fs=None if rates is None else torch.from_numpy(rates).to(device)
                                    ).double().cpu().numpy()
                metas.append(meta[sel])
                embs.append(e)
            bar.update(1)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    tr_meta = pl.concat(metas) if metas else train.clear()
    tr_emb = np.concatenate(embs) if embs else np.zeros((0, model.config.embed_dim))
    ev_meta = fc["meta"].filter(pl.Series(ev_mask))
    ev_emb = fc["embedding"][ev_mask]

    tasks: dict[str, dict] = {}
    tasks["modality"] = {"target": "modality", **run_classification(
        tr_emb, tr_meta.get_column("modality").to_numpy(), ev_emb, ev_meta.get_column("modality").to_numpy())}
    labelled = sorted(set(tr_meta.filter(pl.col("label").is_not_null()).get_column("dataset").to_list())
                      | set(ev_meta.filter(pl.col("label").is_not_null()).get_column("dataset").to_list()))
    for ds in labelled:
        tm = (tr_meta.get_column("dataset") == ds) & tr_meta.get_column("label").is_not_null()
        em = (ev_meta.get_column("dataset") == ds) & ev_meta.get_column("label").is_not_null()
        tasks[f"label_{_slug(ds)}"] = {"target": f"label of {ds}", **run_classification(
            tr_emb[tm.to_numpy()], tr_meta.filter(tm).get_column("label").to_numpy(),
            ev_emb[em.to_numpy()], ev_meta.filter(em).get_column("label").to_numpy())}
    for m in REGIME_METRICS:
        if m in tr_meta.columns and m in ev_meta.columns:
            tasks[m] = {"target": m, **run_regression(
                tr_emb, tr_meta.get_column(m).cast(pl.Float64).fill_null(float("nan")).to_numpy(),
                ev_emb, ev_meta.get_column(m).cast(pl.Float64).fill_null(float("nan")).to_numpy())}
    section = {"train_windows": int(tr_meta.height), "train_available": int(available),
               "train_skipped": int(train.height - tr_meta.height + short),
               "eval_windows": int(ev_meta.height), "embedding": "model.embed of each row's first window_size samples",
               "logistic_l2": LOGISTIC_L2, "ridge_l2": RIDGE_L2, "tasks": tasks}
    return section, seconds, int(tr_meta.height)


def _interventions_section(cfg, fc: dict, proto: Protocol) -> dict:
    """``forecast.interventions``: the model with its known-ahead interventions against the same model without
    them (``without_interventions``), per horizon, on the windows whose interventions change inside the horizon,
    on those whose interventions hold still, and on those that have none (where the two forecasts are one)."""
    kind = fc["intervention_kind"]
    scores = fc["scores"]
    out = {"inputs": list(cfg.intervention_inputs), "by_window": {}}
    for name, k in (("changing_in_horizon", 2), ("unchanged_in_horizon", 1), ("none", 0)):
        mask = np.zeros(0, bool) if kind is None else kind == k
        entry = {"windows": int(mask.sum()), "by_horizon": []}
        for j, h in enumerate(proto.horizons):
            row = {"horizon": int(h)}
            for m in ("model", "without_interventions"):
                row[m] = _mean_over_horizons(scores[m]["mse"][mask][:, j:j + 1]) if mask.any() else None
            a, b = row["model"], row["without_interventions"]
            row["mse_change"] = None if a is None or not b else a / b - 1.0
            entry["by_horizon"].append(row)
        out["by_window"][name] = entry
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", str(text)).strip("_").lower() or "unnamed"


# -- aggregation ------------------------------------------------------------------------------------
def _means(scores: dict, mask: np.ndarray | None, methods) -> dict:
    """{method: {metric: mean over horizons of the mean over the masked windows}}."""
    out = {}
    for m in methods:
        out[m] = {}
        for key in METRICS:
            a = scores[m][key] if mask is None else scores[m][key][mask]
            out[m][key] = _mean_over_horizons(a)
    return out


def _mean_over_horizons(a: np.ndarray) -> float | None:
    """Mean over windows (undefined values left out) per horizon column, then over horizons; None if empty."""
    if a.shape[0] == 0:
        return None
    finite = np.isfinite(a)
    counts = finite.sum(0)
    if (counts == 0).any():
        return None
    v = float(np.mean(np.where(finite, a, 0.0).sum(0) / counts))
    return v if math.isfinite(v) else None


def _rates_of(model, meta: pl.DataFrame, source: Source) -> np.ndarray | None:
    """The rows' sampling rates for a rate-conditioned model (``None`` for any other); Nw2Error naming the
    source when a row has none."""
    if not model.config.rate_conditioning:
        return None
    fs = (meta.get_column("fs").cast(pl.Float64).fill_null(float("nan")).to_numpy()
          if "fs" in meta.columns else np.full(meta.height, np.nan))
    if not (np.isfinite(fs) & (fs > 0)).all():
        raise Nw2Error(f"{source.root}: rows without a sampling rate (fs): a rate-conditioned model needs each "
                       f"window's")
    return fs.astype(np.float32)


def _by_rate(meta: pl.DataFrame, scores: dict, methods) -> dict:
    """Scores by sampling rate (``fs``), as ``"100 Hz"``; one ``(none)`` group when the source has no rates."""
    if "fs" not in meta.columns:
        return _by(meta.with_columns(pl.lit(None, dtype=pl.String).alias("_rate")), "_rate", scores, methods)
    fs = meta.get_column("fs").cast(pl.Float64)
    names = {v: f"{v:g} Hz" for v in fs.drop_nulls().unique().to_list()}  # one label per distinct rate
    return _by(meta.with_columns(fs.replace_strict(names, default=None, return_dtype=pl.String).alias("_rate")),
               "_rate", scores, methods)


def _by(meta: pl.DataFrame, col: str, scores: dict, methods) -> dict:
    values = meta.get_column(col).cast(pl.String).fill_null("(none)").to_numpy()
    units = meta.get_column("unit").cast(pl.String).fill_null("").to_numpy()
    out = {}
    for v in sorted(set(values.tolist())):
        mask = values == v
        out[v] = {"windows": int(mask.sum()), "units": sorted(set(units[mask].tolist())),
                  "scores": _means(scores, mask, methods)}
    return out


def _regimes(meta: pl.DataFrame, source: Source, scores: dict, methods) -> dict:
    out = {}
    for m in REGIME_METRICS:
        if m not in meta.columns:
            out[m] = {"skipped": f"no {m} column in {source.name} (compute it with nw2 metrics)"}
            continue
        v = meta.get_column(m).cast(pl.Float64).fill_null(float("nan")).to_numpy()
        defined = np.isfinite(v)
        if defined.sum() < 3:
            out[m] = {"skipped": f"{m} is defined on fewer than 3 evaluated windows ({int(defined.sum())})"}
            continue
        e1, e2 = (float(q) for q in np.quantile(v[defined], [1 / 3, 2 / 3]))
        labels = np.full(v.shape, "undefined", dtype=object)
        labels[defined & (v <= e1)] = "low"
        labels[defined & (v > e1) & (v <= e2)] = "mid"
        labels[defined & (v > e2)] = "high"
        bins = {}
        for name in REGIME_BINS + ("undefined",):
            mask = labels == name
            if not mask.any():
                continue
            entry = {"windows": int(mask.sum()), "scores": _means(scores, mask, methods)}
            if name != "undefined":
                entry["range"] = [float(v[mask].min()), float(v[mask].max())]
            bins[name] = entry
        out[m] = {"edges": [e1, e2], "bins": bins}
    return out


def _valid_time(meta: pl.DataFrame, valid: dict, proto: Protocol, units, methods) -> dict:
    """``forecast.valid_prediction_time``: per forecaster, the valid prediction time in samples (every
    window) and in Lyapunov times (windows of a system with a known positive largest exponent), with intervals
    over units (:mod:`.relative`)."""
    from .forecast import VALID_THRESHOLD

    n = meta.height
    lam = (meta.get_column("true_lyapunov").cast(pl.Float64).fill_null(float("nan")).to_numpy()
           if "true_lyapunov" in meta.columns else np.full(n, np.nan))
    fs = (meta.get_column("fs").cast(pl.Float64).fill_null(float("nan")).to_numpy()
          if "fs" in meta.columns else np.full(n, np.nan))
    chaotic = np.isfinite(lam) & (lam > 0) & np.isfinite(fs) & (fs > 0) & np.isfinite(valid[methods[0]])
    out = {"threshold": VALID_THRESHOLD, "max_samples": proto.max_horizon,
           "error": "|forecast - truth| / std(context)", "windows": n, "chaotic_windows": int(chaotic.sum()),
           "methods": {}}
    for m in methods:
        v = valid[m]
        entry = {"samples": {how: units.interval(v, how) for how in ("windows", "groups")},
                 "censored_share": float(np.mean(v[np.isfinite(v)] >= proto.max_horizon)) if np.isfinite(v).any()
                 else None}
        if chaotic.any():
            lt = np.where(chaotic, v / np.where(chaotic, fs, 1.0) * np.where(chaotic, lam, 0.0), np.nan)
            entry["lyapunov_times"] = {how: units.interval(lt, how) for how in ("windows", "groups")}
            entry["censored_share_chaotic"] = float(np.mean(v[chaotic] >= proto.max_horizon))
        out["methods"][m] = entry
    return out


def _of_kind(meta: pl.DataFrame, kind: str) -> pl.DataFrame:
    """The rows of one kind: ``real`` (no ground-truth system), ``synthetic`` (one) or ``all``."""
    if kind == "all":
        return meta
    if "system" not in meta.columns:  # a store of recordings only
        return meta if kind == "real" else meta.clear()
    synthetic = pl.col("system").is_not_null()
    return meta.filter(synthetic if kind == "synthetic" else ~synthetic)


def _assemble(run_dir: Path, run_meta, model, source: Source, splits, counts: dict, available: int,
              max_windows, proto: Protocol, adapt: bool, seed: int, fc: dict, probe_section: dict,
              trained_info: dict | None = None, replicates: int = 1000) -> tuple[dict, pl.DataFrame]:
    methods = fc["methods"]
    scores, meta = fc["scores"], fc["meta"]
    by_h = []
    for j, h in enumerate(proto.horizons):
        entry = {"horizon": int(h)}
        for m in methods:
            entry[m] = {key: _mean_over_horizons(scores[m][key][:, j:j + 1]) for key in METRICS}
        by_h.append(entry)
    overall = _means(scores, None, methods)
    forecast = {
        "methods": list(methods), "metrics": list(METRICS), "overall": overall, "by_horizon": by_h,
        "by_dataset": _by(meta, "dataset", scores, methods), "by_modality": _by(meta, "modality", scores, methods),
        "by_rate": _by_rate(meta, scores, methods),
        "by_regime": _regimes(meta, source, scores, methods),
        "seasonal_fallback_windows": fc["fallback"],
    }
    units, unit_info = make_units(*(meta.get_column(c).to_list() for c in ("window_id", "subject", "record",
                                                                         "system", "dataset")),
                                  replicates=replicates, seed=seed)
    forecast["relative"] = relative_section(scores, fc["mase_scale"], proto.horizons, methods, MODEL_METHODS,
                                            units, unit_info)
    forecast["valid_prediction_time"] = _valid_time(meta, fc["valid_samples"], proto, units, methods)
    candidates = [b for b in baselines.BASELINES + TRAINED_BASELINES if b in methods]
    best = min(((overall[b]["mse"], b) for b in candidates if overall[b]["mse"] is not None),
               default=(None, None))[1]
    summary = build_summary(overall, by_h, adapt, best, probe_section)
    evaluated_by_split = dict(sorted(meta.group_by("split").len().iter_rows())) if meta.height else {}
    metrics = {
        "format": FORMAT, "version": VERSION, "nw2_version": __version__,
        "run": {"name": run_dir.resolve().name, "model_sha256": sha256_file(run_dir / "model" / "model.safetensors")[0][:16],
                "config": model.config.to_dict(), "steps": run_meta.get("steps") if run_meta else None,
                "epochs_done": run_meta.get("epochs_done") if run_meta else None},
        "data": {"name": source.root.resolve().name, "kind": source.kind, "splits": list(splits),
                 "rows": {s: int(counts.get(s, 0)) for s in splits}, "available": int(available),
                 "max_windows": max_windows, "evaluated": int(fc["n"]), "evaluated_by_split": evaluated_by_split,
                 "skipped_nonfinite": int(fc["skipped"])},
        "protocol": {**proto.to_dict(), "seed": int(seed), "adapt": bool(adapt), "channels_per_sample": 1,
                     "ar_order": baselines.AR_ORDER, "lsd_floor": spectra.FLOOR,
                     "regime_metrics": list(REGIME_METRICS)},
        "forecast": forecast,
        "best_baseline": best,
        "trained_baselines": trained_info if trained_info is not None else {"skipped": "not fitted"},
        "probe": probe_section,
        "summary": summary,
    }
    metrics = _clean(metrics)
    return metrics, _per_window(meta, scores, methods, proto, fc.get("intervention_kind"))


def _per_window(meta: pl.DataFrame, scores: dict, methods, proto: Protocol, kind=None) -> pl.DataFrame:
    n, nh = meta.height, len(proto.horizons)
    rep = np.repeat(np.arange(n), nh)
    base = meta.select("window_id", "split", "dataset", "modality", "subject", "record", "system")[rep]
    cols = {"horizon": np.tile(np.asarray(proto.horizons, dtype=np.int64), n)}
    if kind is not None:  # 0: no interventions, 1: given and unchanged over the horizon, 2: changing inside it
        cols["intervention"] = np.repeat(np.asarray(kind, np.int8), nh)
    for m in methods:
        for key in METRICS:
            cols[per_window_column(m, key)] = scores[m][key].reshape(-1)
    return base.with_columns(**{k: pl.Series(k, v) for k, v in cols.items()})


def _speed(fc: dict, probe_seconds: float, probe_windows: int, elapsed: float) -> dict:
    sec, n = fc["seconds"], fc["processed"]
    out = {"windows": n, "seconds_total": round(elapsed, 3)}
    for name in ("model", "adapted", "embed") + baselines.BASELINES + TRAINED_BASELINES:
        if name in sec:
            out[f"{name}_windows_per_s"] = windows_per_second(n, sec[name])
    out["baselines_windows_per_s"] = windows_per_second(n, sum(sec.get(b, 0.0) for b in baselines.BASELINES))
    out["trained_baselines_windows_per_s"] = windows_per_second(n, sum(sec.get(b, 0.0) for b in TRAINED_BASELINES))
    out["probe_train_windows_per_s"] = windows_per_second(probe_windows, probe_seconds)
    return {k: (round(v, 1) if isinstance(v, float) and k != "seconds_total" else v) for k, v in out.items()}


# -- output -----------------------------------------------------------------------------------------
def _clean(obj):
    """Floats to DIGITS significant digits, non-finite to None, numpy scalars to Python; tuples to lists."""
    return jsonable(obj, DIGITS)


def dumps(metrics: dict) -> str:
    """metrics.json's text: sorted keys, indent 2, a final newline."""
    return json.dumps(_clean(metrics), indent=2, sort_keys=True, allow_nan=False) + "\n"
