"""The evaluation report: ``report.md`` with PNG plots, drawn from ``metrics.json``'s dict, and the CLI summary.

``write_report(out_dir, metrics, examples, protocol)`` writes into ``out_dir``:

- ``forecast_examples.png``  a few evaluated windows: the end of the context, the truth, the model, the adapted
                             model and the best baseline over the longest horizon;
- ``error_vs_horizon.png``   MSE and log-spectral distance against the horizon, one line per forecaster;
- ``error_by_regime.png``    the MSE per tercile bin of each regime metric (when the data has the metrics);
- ``model_vs_baselines.png`` every score, averaged over horizons, one bar per forecaster;
- ``report.md``              the settings, the tables and the plots with a sentence each on how to read them.

Deterministic: figures are drawn and saved through ``pipeline.plots`` (explicit Agg canvas, fixed style, size
and dpi, no ``Software`` metadata); the Markdown holds no timestamps and no timings (those are in ``speed.json``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from nw2.core.plots import DPI, png_bytes, report_style

from .summary import SUMMARY_HIGHER_IS_BETTER

__all__ = ["write_report", "describe", "best_baseline"]

#: Okabe & Ito's colour-blind-safe palette, one colour per forecaster.
COLORS = {"truth": "#000000", "model": "#0072B2", "adapted": "#D55E00", "last_value": "#999999",
          "seasonal_naive": "#009E73", "mean": "#CC79A7", "ar": "#E69F00", "linear": "#56B4E9", "mlp": "#F0E442",
          "without_interventions": "#7F3C8D"}
LABELS = {"model": "model", "adapted": "model + adaptation", "last_value": "last value",
          "seasonal_naive": "seasonal naive", "mean": "window mean", "ar": "AR(p)", "linear": "linear (trained)",
          "mlp": "MLP (trained)", "without_interventions": "model, interventions withheld"}
METRIC_LABELS = {"mse": "MSE (normalised)", "mae": "MAE (normalised)", "mae_physical": "MAE (physical units)",
                 "lsd": "log-spectral distance (dB)", "spectral_corr": "spectral correlation",
                 "latent_distance": "latent distance (1 - cos)"}
BASELINE_NAMES = ("last_value", "seasonal_naive", "mean", "ar", "linear", "mlp")


def best_baseline(metrics: dict, metric: str = "mse") -> str | None:
    """The baseline with the lowest overall ``metric`` (averaged over horizons; ``metrics["best_baseline"]``
    for MSE)."""
    overall = metrics["forecast"]["overall"]
    vals = [(overall[b][metric], b) for b in BASELINE_NAMES if b in overall and overall[b][metric] is not None]
    return min(vals)[1] if vals else None


# -- entry point ----------------------------------------------------------------------------------
def write_report(out_dir, metrics: dict, examples: list[dict], protocol) -> list[str]:
    """Write the PNGs and ``report.md`` into ``out_dir``; returns their names."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    fc = metrics["forecast"]
    regimes = {k: v for k, v in fc["by_regime"].items() if "bins" in v}
    with report_style():
        if examples:
            files["forecast_examples.png"] = png_bytes(_examples_figure(examples, metrics, protocol))
        files["error_vs_horizon.png"] = png_bytes(_horizon_figure(metrics))
        if regimes:
            files["error_by_regime.png"] = png_bytes(_regime_figure(metrics, regimes))
        files["model_vs_baselines.png"] = png_bytes(_bars_figure(metrics))
    files["report.md"] = _markdown(metrics, files, examples).encode()
    for name, data in files.items():
        (out / name).write_bytes(data)
    return sorted(files)



# -- figures --------------------------------------------------------------------------------------
def _examples_figure(examples: list[dict], metrics: dict, protocol) -> Figure:
    base = best_baseline(metrics)
    n = len(examples)
    fig = Figure(figsize=(10.0, 2.4 * n + 0.4), dpi=DPI, layout="constrained")
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, ex in zip(axes, examples):
        ctx, truth = ex["context"], ex["truth"]
        tc = np.arange(-len(ctx), 0)
        th = np.arange(len(truth))
        ax.plot(tc, ctx, color=COLORS["truth"], lw=0.8, label="context")
        ax.plot(th, truth, color=COLORS["truth"], lw=0.8, ls="--", label="truth")
        for m in ("model", "adapted", base):
            if m and m in ex["forecasts"]:
                ax.plot(th, ex["forecasts"][m], color=COLORS[m], lw=1.0, label=LABELS[m])
        ax.axvline(0, color="#666666", lw=0.6)
        for h in protocol.horizons[:-1]:
            ax.axvline(h, color="#BBBBBB", lw=0.5, ls=":")
        ax.set_title(f"{ex['dataset']} / {ex['modality']} (window {str(ex['window_id'])[:8]})", loc="left")
        ax.set_ylabel("normalised")
    axes[-1].set_xlabel("samples from the forecast origin")
    axes[0].legend(loc="upper left", ncols=5, frameon=False)
    return fig


def _horizon_figure(metrics: dict) -> Figure:
    fc = metrics["forecast"]
    fig = Figure(figsize=(10.0, 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    hs = [e["horizon"] for e in fc["by_horizon"]]
    for ax, key in zip(axes, ("mse", "lsd")):
        for m in fc["methods"]:
            ys = [e[m][key] if e[m][key] is not None else np.nan for e in fc["by_horizon"]]
            ax.plot(hs, ys, marker="o", ms=3, color=COLORS[m], label=LABELS[m],
                    lw=1.6 if m in ("model", "adapted") else 1.0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(hs, [str(h) for h in hs])
        ax.minorticks_off()
        ax.set_xlabel("horizon (samples)")
        ax.set_ylabel(METRIC_LABELS[key])
        ax.set_title(f"{METRIC_LABELS[key]} against horizon")
    axes[0].legend(frameon=False)
    return fig


def _regime_figure(metrics: dict, regimes: dict) -> Figure:
    methods = metrics["forecast"]["methods"]
    fig = Figure(figsize=(5.0 * len(regimes), 3.6), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, len(regimes), squeeze=False)[0]
    width = 0.8 / len(methods)
    for ax, (name, info) in zip(axes, regimes.items()):
        bins = list(info["bins"])
        x = np.arange(len(bins))
        for i, m in enumerate(methods):
            ys = [info["bins"][b]["scores"][m]["mse"] for b in bins]
            ys = [np.nan if y is None else y for y in ys]
            ax.bar(x + (i - (len(methods) - 1) / 2) * width, ys, width, color=COLORS[m], label=LABELS[m])
        ax.set_xticks(x, [f"{b}\n(n={info['bins'][b]['windows']})" for b in bins])
        ax.set_ylabel(METRIC_LABELS["mse"])
        ax.set_title(f"MSE by {name} tercile")
    axes[0].legend(frameon=False, fontsize=7)
    return fig


def _bars_figure(metrics: dict) -> Figure:
    fc = metrics["forecast"]
    methods = fc["methods"]
    keys = fc["metrics"]
    ncols = 3
    nrows = math.ceil(len(keys) / ncols)
    fig = Figure(figsize=(11.0, 3.0 * nrows + 0.3), dpi=DPI, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, key in zip(axes, keys):
        ys = [fc["overall"][m][key] for m in methods]
        ys = [np.nan if y is None else y for y in ys]
        ax.bar(np.arange(len(methods)), ys, color=[COLORS[m] for m in methods])
        ax.set_xticks(np.arange(len(methods)), [LABELS[m] for m in methods], rotation=30, ha="right")
        better = "higher" if SUMMARY_HIGHER_IS_BETTER[key] else "lower"
        ax.set_title(f"{METRIC_LABELS[key]} ({better} is better)")
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    return fig


# -- markdown -------------------------------------------------------------------------------------
def _num(x, digits: int = 4) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, int):
        return f"{x:,}"
    x = float(x)
    if not math.isfinite(x):
        return "n/a"
    return f"{x:.{digits}g}"


def _table(header: Sequence[str], rows: list[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _markdown(metrics: dict, files: dict, examples: list[dict]) -> str:
    run, data, proto, fc = metrics["run"], metrics["data"], metrics["protocol"], metrics["forecast"]
    methods = fc["methods"]
    cfg = run["config"]
    base = best_baseline(metrics)
    lines = [f"# Evaluation of `{run['name']}` on `{data['name']}` ({', '.join(data['splits'])})", ""]
    sampled = (f" (a seeded uniform sample of {data['available']:,}, `--max-windows {data['max_windows']}`)"
               if data["evaluated"] + data["skipped_nonfinite"] < data["available"] else "")
    lines += ["## What was evaluated", "",
              f"- Model: window {cfg['window_size']}, patch {cfg['patch_size']}, embed_dim {cfg['embed_dim']}, "
              f"depth {cfg['depth']}, nvar {cfg['nvar']}; weights sha256 `{run['model_sha256']}`"
              + (f", {run['steps']} steps" if run.get("steps") is not None else "") + ".",
              f"- Data: the {data['kind']} `{data['name']}`, split(s) {', '.join(data['splits'])}: "
              f"{data['evaluated']:,} windows evaluated{sampled}"
              + (f", {data['skipped_nonfinite']:,} left out for non-finite samples" if data["skipped_nonfinite"]
                 else "")
              + ". Each row (one channel of one window) is one single-channel sample.",
              f"- Protocol: the forecast starts at sample {proto['origin']} of each window; the context is the "
              f"{proto['context']} samples before it ({proto['context'] // proto['patch_size']} whole patches); "
              f"horizons {', '.join(str(h) for h in proto['horizons'])} samples score the first H samples of one "
              f"forecast of {max(proto['horizons'])}.",
              f"- Forecasters: {', '.join(LABELS[m] for m in methods)} (AR order {proto['ar_order']}); "
              f"seasonal naive found no period in {fc['seasonal_fallback_windows']:,} contexts and used the last "
              "value there.",
              "- Scores on the stored (normalised) scale unless named physical; every score is averaged over the "
              "windows, then over the horizons with equal weight. The physical MAE is in each window's own unit "
              "(raw counts for `adc`, unknown for an empty unit), so it compares forecasters, not datasets. "
              "Definitions: `docs/evaluate.md`.", ""]

    keys = fc["metrics"]
    rows = []
    for m in methods:
        rows.append([f"**{LABELS[m]}**" if m == "model" else LABELS[m]] + [_num(fc["overall"][m][k]) for k in keys])
    lines += ["## Forecasting: every forecaster", "",
              "Averaged over horizons (lower is better but for the spectral correlation).", ""]
    lines += _table(["forecaster"] + [METRIC_LABELS[k] for k in keys], rows) + [""]

    rows = []
    for e in fc["by_horizon"]:
        rows.append([str(e["horizon"])] + [_num(e[m]["mse"]) for m in methods])
    lines += ["### MSE by horizon", ""]
    lines += _table(["horizon"] + [LABELS[m] for m in methods], rows) + [""]
    rows = []
    for e in fc["by_horizon"]:
        rows.append([str(e["horizon"])] + [_num(e[m]["lsd"]) for m in methods])
    lines += ["### Log-spectral distance (dB) by horizon", ""]
    lines += _table(["horizon"] + [LABELS[m] for m in methods], rows) + [""]

    def group_table(title: str, groups: dict) -> None:
        nonlocal lines
        head = ["group", "windows", "model MSE"] + (["adapted MSE"] if "adapted" in methods else [])
        head += [f"best baseline ({LABELS[base]}) MSE" if base else "best baseline MSE", "model LSD",
                 "model latent distance", "model MAE (physical)", "units"]
        rows = []
        for name, g in groups.items():
            s = g["scores"]
            r = [name, _num(g["windows"]), _num(s["model"]["mse"])]
            if "adapted" in methods:
                r.append(_num(s["adapted"]["mse"]))
            r += [_num(s[base]["mse"]) if base else "n/a", _num(s["model"]["lsd"]), _num(s["model"]["latent_distance"]),
                  _num(s["model"]["mae_physical"]), ", ".join(u or "(none)" for u in g.get("units", [])) or "n/a"]
            rows.append(r)
        lines += [title, ""] + _table(head, rows) + [""]

    group_table("### By dataset", fc["by_dataset"])
    group_table("### By modality", fc["by_modality"])
    if "by_rate" in fc:
        group_table("### By sampling rate", fc["by_rate"])

    lines += ["### By dynamical regime", "",
              "Windows binned by the terciles of a chaos metric over the evaluated windows (low: at most the "
              "first tercile; mid; high: above the second; undefined: the metric is null on the window).", ""]
    for name, info in fc["by_regime"].items():
        if "skipped" in info:
            lines += [f"- `{name}`: skipped: {info['skipped']}.", ""]
            continue
        e1, e2 = info["edges"]
        lines += [f"`{name}` (tercile edges {_num(e1)}, {_num(e2)}):", ""]
        rows = []
        for b, g in info["bins"].items():
            rng = g.get("range")
            r = [b, _num(g["windows"]), f"{_num(rng[0])} .. {_num(rng[1])}" if rng else "n/a"]
            r += [_num(g["scores"][m]["mse"]) for m in methods]
            rows.append(r)
        lines += _table(["bin", "windows", "range"] + [f"{LABELS[m]} MSE" for m in methods], rows) + [""]

    lines += _relative_lines(metrics)

    probe = metrics["probe"]
    lines += ["## Linear probes on frozen embeddings", ""]
    if "skipped" in probe:
        lines += [f"Skipped: {probe['skipped']}.", ""]
    else:
        lines += [f"Embeddings: {probe['embedding']}. Fitted on {probe['train_windows']:,} windows of the train "
                  f"split, scored on the {probe['eval_windows']:,} evaluated windows of the other split(s) "
                  "(subject-disjoint). Classification: L2 logistic regression (class-balanced); continuous "
                  "targets: ridge regression.", ""]
        rows = []
        for task, info in probe["tasks"].items():
            if "skipped" in info:
                rows.append([task, info["kind"], _num(info.get("train_windows")), _num(info.get("eval_windows")),
                             "n/a", "n/a", f"skipped: {info['skipped']}"])
            elif info["kind"] == "classification":
                note = f"{len(info['classes'])} train classes"
                if info.get("eval_unseen"):
                    note += (f"; {info['eval_unseen']:,} of {info['eval_windows']:,} evaluated windows left out "
                             "(classes unseen in train)")
                if info.get("auroc_note"):
                    note += f"; AUROC {info['auroc_note']}"
                rows.append([task, "classification", _num(info["train_windows"]), _num(info["eval_scored"]),
                             f"AUROC {_num(info['auroc'])}", f"balanced accuracy {_num(info['balanced_accuracy'])}",
                             note])
            else:
                rows.append([task, "regression", _num(info["train_windows"]), _num(info["eval_windows"]),
                             f"R² {_num(info['r2'])}", f"Pearson r {_num(info['pearson'])}", ""])
        lines += _table(["task", "kind", "train windows", "evaluated windows", "score", "score", "notes"], rows)
        lines += [""]

    lines += ["## Plots", ""]
    if "forecast_examples.png" in files:
        lines += ["![Forecast examples](forecast_examples.png)", "",
                  f"{len(examples)} evaluated windows spread evenly over the evaluation order: the end of the "
                  "context (black) and the truth (black, dashed) with the model (blue), the adapted model "
                  f"(vermilion) and the best baseline by MSE ({LABELS[base] if base else 'n/a'}); dotted lines "
                  "mark the shorter horizons.", ""]
    lines += ["![Error against horizon](error_vs_horizon.png)", "",
              "MSE and log-spectral distance of every forecaster at each horizon (log scale in the horizon): a "
              "model line below the baselines' means a better forecast at that horizon.", ""]
    if "error_by_regime.png" in files:
        lines += ["![Error by regime](error_by_regime.png)", "",
                  "MSE per tercile bin of each regime metric: where the bars of the model drop below the baselines' "
                  "tells in which dynamical regimes the model beats them.", ""]
    lines += ["![Model against baselines](model_vs_baselines.png)", "",
              "Every score averaged over windows and horizons, one bar per forecaster.", "",
              "Speed (windows per second) is in `speed.json`, outside this report, so that the report and "
              "`metrics.json` are reproducible byte for byte.", ""]
    return "\n".join(lines)


def _ci(entry: dict | None, digits: int = 3) -> str:
    """``mean [lo, hi]`` of an interval entry (``mean`` alone without an interval)."""
    if not entry or entry.get("mean") is None:
        return "n/a"
    if entry.get("lo") is None:
        return _num(entry["mean"], digits)
    return f"{_num(entry['mean'], digits)} [{_num(entry['lo'], digits)}, {_num(entry['hi'], digits)}]"


def _relative_lines(metrics: dict) -> list[str]:
    rel = metrics["forecast"].get("relative")
    if not rel:
        return []
    tb = metrics.get("trained_baselines", {})
    boot = rel["bootstrap"]
    lines = ["## Against the baselines, with intervals over independent units", ""]
    if "skipped" in tb:
        lines += [f"Trained baselines: skipped ({tb['skipped']}).", ""]
    else:
        lines += [f"Trained baselines: fitted on {tb['pairs']:,} contexts from {tb['train_rows']:,} train rows "
                  f"(`linear`: ridge {_num(tb['linear']['ridge'])}; `mlp`: {tb['mlp']['parameters']:,} parameters, "
                  f"step {tb['mlp']['steps_kept']} of {tb['mlp']['steps']} kept).", ""]
    if boot["replicates"]:
        interval = (f"95% intervals from {boot['replicates']} bootstrap replicates over the {rel['units']:,} "
                    f"units ({rel['unit']})")
    else:
        interval = "no intervals (" + ("one unit" if rel["units"] <= 1 else "--bootstrap 0") + ")"
    lines += [f"{interval}. *windows*: every window counts once; *groups*: each of the {rel['groups']} groups "
              f"({rel['group']}) counts once. Relative scores are geometric means over groups of the error over "
              "seasonal naive's (below 1: better than seasonal naive); MASE scales each window's MAE by seasonal "
              "naive's in-sample MAE on its context. Averaged over horizons.", ""]
    rows = []
    for m, per in rel["methods"].items():
        e = per["mean"]
        rows.append([LABELS.get(m, m), _ci(e["mse"]["windows"]), _ci(e["mse"]["groups"]),
                     _ci(e["mase"]["windows"]), _ci(e.get("relative_mse")), _ci(e.get("relative_mae"))])
    lines += _table(["forecaster", "MSE (windows)", "MSE (groups)", "MASE (windows)", "relative MSE",
                     "relative MAE"], rows) + [""]
    vpt = metrics["forecast"].get("valid_prediction_time")
    if vpt:
        lines += ["### Valid prediction time", "",
                  f"Samples of the forecast before {vpt['error']} first exceeds {vpt['threshold']} (at most "
                  f"{vpt['max_samples']}: a forecast valid over the whole horizon is censored there); in Lyapunov "
                  f"times on the {vpt['chaotic_windows']:,} windows of a system with a known positive largest "
                  "exponent (samples / fs x exponent). Higher is better.", ""]
        rows = []
        for m, e in vpt["methods"].items():
            rows.append([LABELS.get(m, m), _ci(e["samples"]["windows"]), _num(e["censored_share"], 3),
                         _ci(e.get("lyapunov_times", {}).get("windows")), _ci(e.get("lyapunov_times", {}).get("groups"))])
        lines += _table(["forecaster", "samples (windows)", "censored share", "Lyapunov times (windows)",
                         "Lyapunov times (groups)"], rows) + [""]
    for m, against in rel["against"].items():
        rows = []
        for b, per in against.items():
            if b in rel["against"]:
                continue
            cells = [LABELS.get(b, b)]
            for h in rel["horizons"]:
                d = per[h]["mse_difference"]["groups"]
                cells.append(f"{_ci(per[h]['win_rate']['groups'], 2)}; {d['outcome'] or 'n/a'}")
            rows.append(cells)
        lines += [f"### {LABELS.get(m, m)}: win rate on MSE (groups) and outcome of the MSE difference, by horizon",
                  ""]
        lines += _table(["against"] + [f"H={h}" if h != "mean" else "mean" for h in rel["horizons"]], rows) + [""]
    return lines


# -- the CLI's summary ----------------------------------------------------------------------------
def describe(result) -> str:
    """A few lines for the terminal: what was evaluated, the headline scores, the probes, the speed."""
    m = result.metrics
    data, proto, fc = m["data"], m["protocol"], m["forecast"]

    def scores(method: str) -> str:
        o = fc["overall"][method]
        return (f"mse {_num(o['mse'])}, mae {_num(o['mae'])}, lsd {_num(o['lsd'])} dB, spectral corr "
                f"{_num(o['spectral_corr'])}, latent distance {_num(o['latent_distance'])}")

    lines = [f"evaluated {data['evaluated']:,} windows of {', '.join(data['splits'])} in {data['name']} at horizons "
             f"{', '.join(str(h) for h in proto['horizons'])} (context {proto['context']} samples)",
             f"  model:    {scores('model')}"]
    if "adapted" in fc["methods"]:
        lines.append(f"  adapted:  {scores('adapted')}")
    base = best_baseline(m)
    if base:
        lines.append(f"  best baseline ({LABELS[base]}): {scores(base)}")
    probe = m["probe"]
    if "skipped" in probe:
        lines.append(f"  probe: skipped ({probe['skipped']})")
    else:
        for task, info in probe["tasks"].items():
            if "skipped" in info:
                lines.append(f"  probe {task}: skipped ({info['skipped']})")
            elif info["kind"] == "classification":
                lines.append(f"  probe {task}: AUROC {_num(info['auroc'])}, balanced accuracy "
                             f"{_num(info['balanced_accuracy'])}")
            else:
                lines.append(f"  probe {task}: R2 {_num(info['r2'])}, Pearson r {_num(info['pearson'])}")
    sp = result.speed
    parts = [f"{name} {_num(sp.get(f'{key}_windows_per_s'), 4)}" for name, key in
             (("model", "model"), ("adapted", "adapted"), ("baselines", "baselines")) if sp.get(f"{key}_windows_per_s")]
    if parts:
        lines.append("  windows/s: " + ", ".join(parts))
    lines.append(f"report: {Path(result.out) / 'report.md'} (numbers in metrics.json)")
    return "\n".join(lines)
