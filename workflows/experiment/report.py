"""The experiment's report: ``report.md`` with the outcome per score, and two deterministic PNGs.

``differences.png``: per arm and score, the difference to the baseline relative to the baseline's mean, with
its bootstrap interval, coloured by outcome. ``scores.png``: each arm's mean per score with its interval.
Figures are drawn through ``pipeline.plots`` as every report's are, so the same experiment gives the same
bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.figure import Figure

from nw2.core.plots import png_bytes, report_style

from nw2.core.files import atomic_bytes, atomic_text
from .stats import Comparison

if TYPE_CHECKING:
    from nw2.model.evaluate.summary import ScoreKey

COLORS = {"beats": "#009E73", "matches": "#56B4E9", "worse": "#D55E00"}  # Okabe & Ito
ARM_COLORS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]



def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _scores_of(comparisons: dict[str, dict[ScoreKey, Comparison]]) -> list[ScoreKey]:
    """Every compared score, in report order."""
    return sorted({s for c in comparisons.values() for s in c}, key=lambda s: s.sort_key())


def _differences_figure(comparisons: dict[str, dict[ScoreKey, Comparison]], baseline: str) -> Figure:
    scores = _scores_of(comparisons)
    rows = [(arm, s) for s in scores for arm in comparisons if s in comparisons[arm]]
    fig = Figure(figsize=(7.5, 0.9 + 0.32 * max(1, len(rows))))
    ax = fig.add_subplot()
    for y, (arm, s) in enumerate(rows):
        c = comparisons[arm][s]
        scale = abs(c.b.mean) or 1.0
        mean, lo, hi = (100 * v / scale for v in (c.diff.mean, c.diff.lo, c.diff.hi))
        ax.plot([lo, hi], [y, y], color=COLORS[c.outcome], lw=2.5)
        ax.plot([mean], [y], "o", color=COLORS[c.outcome], ms=5)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_yticks(range(len(rows)), [f"{s.label} ({arm})" if len(comparisons) > 1 else s.label for arm, s in rows])
    ax.invert_yaxis()
    ax.set_xlabel(f"difference to {baseline}, % of {baseline}'s mean (interval: bootstrap)")
    for outcome, color in COLORS.items():
        ax.plot([], [], color=color, lw=2.5, label=outcome)
    ax.legend(loc="best", fontsize=8, frameon=False)
    ax.set_title("each arm against the baseline (which side is better: see the table)", fontsize=9)
    fig.tight_layout()
    return fig


def _scores_figure(doc: dict, comparisons: dict[str, dict[ScoreKey, Comparison]], baseline: str) -> Figure:
    scores = _scores_of(comparisons)
    arms = list(comparisons) + [baseline]
    n = max(1, len(scores))
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig = Figure(figsize=(3.0 * cols, 2.4 * rows))
    for k, score in enumerate(scores):
        ax = fig.add_subplot(rows, cols, k + 1)
        for i, arm in enumerate(arms):
            if arm == baseline:
                iv = next(c[score].b for c in comparisons.values() if score in c)
            elif score in comparisons[arm]:
                iv = comparisons[arm][score].a
            else:
                continue
            ax.bar(i, iv.mean, color=ARM_COLORS[i % len(ARM_COLORS)], width=0.6)
            # the interval from its ends, not as distances from the mean: a percentile bootstrap's interval need not
            # hold the point estimate (skewed replicates, or one seed's lo a rounding above it), which errorbar refuses
            ax.vlines(i, iv.lo, iv.hi, color="0.2", lw=1)
            ax.hlines([iv.lo, iv.hi], i - 0.12, i + 0.12, color="0.2", lw=1)
        ax.set_xticks(range(len(arms)), arms, rotation=20, fontsize=7)
        ax.set_title(score.label, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


#: The per-window scores the subset tables show (every one is in ``experiment.json``).
SUBSET_SCORES = ("mse", "mae", "mse_adapted", "mae_adapted")


def _minutes(seconds) -> str:
    return "not recorded" if seconds is None else f"{seconds / 60:.1f} min"


def _wall_time_lines(doc: dict) -> list[str]:
    t = doc.get("wall_seconds")
    if not t:
        return []
    store = (f"store {_minutes(t['store'])}, " if t.get("store_built_here")
             else "store built before, not counted; ")
    return [f"- Wall time: {_minutes(t['total'])} ({store}corpora {_minutes(t['corpora'])}, training "
            f"{_minutes(t['training'])}, evaluation {_minutes(t['evaluation'])}; each stage as long as it took "
            "when it ran)."]


def _subset_lines(doc: dict) -> list[str]:
    """Per arm: the forecast errors on recordings and on synthetic systems apart, averaged over windows and
    over groups, with the interval's half-width relative to the baseline (the precision target)."""
    lines = []
    target = doc.get("precision_target")
    for arm, entries in (doc.get("subsets") or {}).items():
        shown = [e for e in entries if e["label"] in SUBSET_SCORES]
        if not shown:
            continue
        lines += ["", f"## {arm} against {doc['baseline']}, by kind of window", "",
                  f"Averaged over `windows` (each window once) and over `groups` (each ground-truth system or "
                  f"dataset once). Half-width: half the interval of the difference over the baseline's mean "
                  f"(the experiment is precise enough where it is at most {100 * target:.0f}%).", "",
                  "| windows | average | score | n (units, groups) | difference | half-width | outcome |",
                  "|---|---|---|---|---|---:|---|"]
        order = {k: i for i, k in enumerate(SUBSET_SCORES)}
        for e in sorted(shown, key=lambda e: (list(("all", "real", "synthetic")).index(e["subset"]),
                                              e["average"] != "windows", order[e["label"]])):
            d, hw = e["diff"], e["relative_half_width"]
            width = "-" if hw is None else f"{100 * hw:.1f}%" + (" ✓" if hw <= target else "")
            lines.append(f"| {e['subset']} | {e['average']} | {e['label']} | {e['windows']} ({e['units']}, "
                         f"{e['groups']}) | {_fmt(d['mean'])} [{_fmt(d['lo'])}, {_fmt(d['hi'])}] | {width} | "
                         f"**{e['outcome']}** |")
    return lines


def write_report(out: Path, doc: dict, comparisons: dict[str, dict[ScoreKey, Comparison]]) -> None:
    baseline = doc["baseline"]
    with report_style():
        atomic_bytes(out / "differences.png", png_bytes(_differences_figure(comparisons, baseline)))
        atomic_bytes(out / "scores.png", png_bytes(_scores_figure(doc, comparisons, baseline)))
    arms = doc["arms"]
    lines = ["# Experiment report", "",
             f"Spec `{doc['spec']}`, store `{doc['store']}`; every run trained for about {doc['budget_steps']} "
             f"optimizer steps; seeds {', '.join(map(str, doc['seeds']))}; evaluated on the `{doc['eval_split']}` "
             f"split; {int(doc['confidence'] * 100)}% bootstrap intervals from {doc['bootstrap']} resamples "
             f"(over the {doc['eval_units']} independent units of the {doc['eval_windows']} "
             "evaluated windows, subjects or records, and seeds for per-window scores; over seeds for the "
             "others).", "",
             "## Outcome", ""]
    lines += [f"- {line}" for line in doc["headline"].splitlines()]
    lines += _wall_time_lines(doc)
    lines += ["", "| arm | strategy | train rows | steps per run |", "|---|---|---:|---|"]
    for name, arm in arms.items():
        lines.append(f"| {name} | {arm['strategy']} | {arm['size']} | {', '.join(map(str, arm['steps']))} |")
    for arm, scores in comparisons.items():
        lines += ["", f"## {arm} against {baseline}", "",
                  f"| score | better | {arm} | {baseline} | difference | outcome |", "|---|---|---|---|---|---|"]
        for score, c in scores.items():
            better = "higher" if score.higher_is_better else "lower"
            lines.append(f"| {score.label} | {better} | {_fmt(c.a.mean)} [{_fmt(c.a.lo)}, {_fmt(c.a.hi)}] | "
                         f"{_fmt(c.b.mean)} [{_fmt(c.b.lo)}, {_fmt(c.b.hi)}] | "
                         f"{_fmt(c.diff.mean)} [{_fmt(c.diff.lo)}, {_fmt(c.diff.hi)}] | **{c.outcome}** |")
    lines += _subset_lines(doc)
    lines += ["", "`beats`: the whole interval of the difference lies on the better side of 0; `worse`: on the "
              "other side; `matches`: it holds 0.", "", "![differences](differences.png)", "",
              "![scores](scores.png)", ""]
    atomic_text(out / "report.md", "\n".join(lines))
