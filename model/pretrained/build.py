"""Rebuild the checkpoint shipped as ``nw2-small`` (``model/pretrained/nw2-small/``) and its model card.

    nw2 ingest corpus_specs/bench.yaml --out B        # the bench store (about 7 minutes on 2 cores)
    nw2 ingest corpus_specs/demo.yaml --out D         # the demo's recordings (its val and test are held out in B)
    python -m nw2.model.pretrained.build --store B --real D --run runs/nw2-small

trains the run with :data:`RECIPE` (``nw2 pretrain B --out RUN --config small ...``; a finished run is kept,
a killed one resumed), evaluates it on the held-out real windows (``D``'s val and test splits, and every real
window of ``B``'s) and on a seeded sample of the bench's synthetic held-out windows (val and test: parameter
bands and systems no training window saw), copies ``RUN/model`` here and writes ``README.md``, the model card, with the store's fingerprint, the
commit, the commands and the held-out scores next to every baseline's. ``--out`` writes elsewhere: an empty or
new folder, or one holding an earlier build of this checkpoint and nothing else (anything else is refused, so a
user's files are never overwritten).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAME = "nw2-small"
#: What ``nw2 pretrain`` is given: the preset and the training flags (the rest are pretrain's defaults).
RECIPE = {"config": "small", "epochs": 50, "batch_size": 64, "blr": 4e-3, "warmup_epochs": 1.0}
#: The bench windows scored for the card: a seeded uniform sample of its val and test rows.
SYNTHETIC_WINDOWS = 1000


def _command(store: str, run: str) -> str:
    flags = " ".join(f"--{k.replace('_', '-')} {v:g}" if isinstance(v, float) else f"--{k.replace('_', '-')} {v}"
                     for k, v in RECIPE.items())
    return f"nw2 pretrain {store} --out {run} {flags}"


def _commit() -> str:
    root = HERE.parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "model"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes under model/" if dirty else "")


def _store_digest(store: Path) -> str:
    """sha256 over the store's Parquet parts, in path order (ingest writes the same bytes for the same spec)."""
    h = hashlib.sha256()
    for part in sorted((store / "data").rglob("*.parquet")):
        h.update(str(part.relative_to(store)).encode())
        h.update(hashlib.sha256(part.read_bytes()).digest())
    return h.hexdigest()


def _table(result, title: str) -> list[str]:
    rows = result.metrics["forecast"]["by_horizon"]
    methods = result.metrics["forecast"]["methods"]
    hs = [r["horizon"] for r in rows]
    out = [f"**{title}** ({result.metrics['data']['evaluated']:,} windows; MSE / MAE on the z-scored samples)", "",
           "| forecaster | " + " | ".join(f"H={h}" for h in hs) + " |", "|---|" + "---:|" * len(hs)]
    for m in methods:
        cells = [f"{r[m]['mse']:.3f} / {r[m]['mae']:.3f}" for r in rows]
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    return out + [""]


def _vpt(result, title: str) -> list[str]:
    """Valid prediction time per forecaster (``nw2 evaluate``'s ``forecast.valid_prediction_time``)."""
    v = result.metrics["forecast"]["valid_prediction_time"]
    units = [u for u in ("samples", "lyapunov_times") if any(u in m for m in v["methods"].values())]
    out = [f"**{title}**: valid prediction time, the lead until `{v['error']}` first exceeds {v['threshold']} "
           f"({v['windows']:,} windows, {v['chaotic_windows']:,} of them with a known positive Lyapunov exponent; "
           "mean over windows / over groups)", "",
           "| forecaster | " + " | ".join(u.replace("_", " ") for u in units) + " |", "|---|" + "---:|" * len(units)]

    def cell(d):
        return "-" if d is None else " / ".join("-" if d[k]["mean"] is None else f"{d[k]['mean']:.2f}"
                                               for k in ("windows", "groups"))
    for name, m in v["methods"].items():
        out.append(f"| {name} | " + " | ".join(cell(m.get(u)) for u in units) + " |")
    return out + [""]


def _real_training_windows(store: Path) -> tuple[int, int]:
    """Windows and subjects of recordings (no ground-truth system) in the store's train split."""
    import polars as pl

    rows = (pl.scan_parquet(str(store / "data" / "*.parquet")).filter(pl.col("split") == "train")
            .filter(pl.col("system").is_null()).select("subject").collect())
    return rows.height, rows.get_column("subject").n_unique()


#: What a build writes into its output folder.
FILES = ("model.safetensors", "config.json", "README.md")


def _check_out(out: Path) -> None:
    """Refuse an output folder that holds anything but an earlier build of this checkpoint."""
    from nw2.core.errors import Nw2Error

    if not out.exists():
        return
    others = sorted(p.name for p in out.iterdir() if p.name not in FILES)
    card = out / "README.md"
    earlier = card.is_file() and card.read_text().startswith(f"# {NAME}\n")
    if others or (any(out.iterdir()) and not earlier):
        raise Nw2Error(f"{out}: holds files that are not an earlier build of {NAME} "
                       f"({', '.join(others) or 'no model card of it'}); pass another --out")


def build(store: str, real: str, run: str, out: Path = HERE / NAME, progress: bool = True) -> Path:
    """Train (or keep) the run, evaluate it, and write the checkpoint and its card into ``out``."""
    from nw2.artifacts import Run
    from nw2.model.evaluate import EvalConfig, evaluate
    from nw2.model.train import prepare, pretrain, resolve

    from nw2.core.files import atomic_text, atomic_write

    _check_out(out)
    flags = {k: v for k, v in RECIPE.items() if k != "config"}
    model_cfg, train_cfg = resolve(store, run, RECIPE["config"], flags, resume=True)
    pretrain(prepare(model_cfg, train_cfg, resume=True), progress=progress, log=print)
    meta = Run(run).require_info()
    on_real = evaluate(run, real, EvalConfig(split="val,test", out=Path(run) / "eval-real"), progress=progress,
                       log=print)
    on_bench_real = evaluate(run, store, EvalConfig(split="val,test", windows="real", probe=False,
                                                    out=Path(run) / "eval-bench-real"), progress=progress, log=print)
    on_bench = evaluate(run, store, EvalConfig(split="val,test", windows="synthetic", max_windows=SYNTHETIC_WINDOWS,
                                               probe=False, out=Path(run) / "eval-bench"), progress=progress, log=print)
    real_train, real_subjects = _real_training_windows(Path(store))
    out.mkdir(parents=True, exist_ok=True)
    for name in FILES[:2]:
        atomic_write(out / name, lambda tmp, src=Path(run) / "model" / name: shutil.copyfile(src, tmp))
    proto = on_real.metrics["protocol"]
    weights = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    card = [
        f"# {NAME}", "",
        f"A {meta.parameters:,}-parameter nw2 world model (the `small` preset: `docs/model.md`), pretrained on the",
        "`corpus_specs/bench.yaml` store. Load it offline with `Model.from_pretrained(\"nw2-small\")`; continue",
        "from it with `nw2 pretrain CORPUS --out RUN --init-from nw2-small`.", "",
        "## How it was made", "",
        "```",
        "nw2 ingest corpus_specs/bench.yaml --out B",
        "nw2 ingest corpus_specs/demo.yaml --out D",
        f"{_command('B', 'RUN')}",
        "python -m nw2.model.pretrained.build --store B --real D --run RUN   # all of the above but ingest, and this card",
        "```", "",
        f"- code: commit {_commit()}",
        f"- corpus: the store's train split ({store}); sha256 of its Parquet parts {_store_digest(Path(store))}, "
        f"of its store.json {meta.corpus.get('store_json_sha256', 'n/a')}",
        f"- training: {meta.get('epochs_done')} epochs, {meta.get('steps'):,} steps of {meta.total_batch} windows, "
        f"peak lr {meta.peak_lr:g}, {meta.device} {meta.precision}, torch {meta.torch}; "
        f"{(meta.get('step_seconds') or 0) / 60:.0f} minutes of steps on {meta.world_size} process(es); last train loss "
        f"{meta.get('train_loss'):.4f}, val loss {meta.get('val_loss'):.4f}",
        f"- weights: sha256 {weights}", "",
        "## Held-out scores", "",
        f"Context: the first {proto['context']} samples of each held-out window (100 Hz); every horizon scores the "
        f"first H samples of one {max(proto['horizons'])}-sample forecast. `model` is the forecast as `predict` makes it; `adapted` adds test-time",
        "adaptation; `linear` and `mlp` are trained on the store's train split by `nw2 evaluate`. Reproduce with",
        "`nw2 evaluate RUN --data D --split val,test`, `nw2 evaluate RUN --data B --split val,test --windows real "
        "--no-probe` and `nw2 evaluate RUN --data B --split val,test --windows synthetic "
        f"--max-windows {SYNTHETIC_WINDOWS} --no-probe`.", "",
        *_table(on_real, "Real recordings (D val and test: biosignalsplux and pyphysio subjects no training window saw)"),
        *_table(on_bench_real, "The bench's real recordings in val and test (EEG, ECG, PPG, EDA, respiration and "
                               "accelerometry of subjects no training window saw; they include D's)"),
        *_table(on_bench, f"The bench's synthetic val and test windows (a seeded sample of {SYNTHETIC_WINDOWS}: "
                          "held-out parameter bands and systems)"),
        *_vpt(on_bench, "The bench's synthetic val and test windows"),
        "## Limits", "",
        "- Trained on 100 Hz windows of 1,024 samples, z-scored per window; one model window is 512 samples.",
        "- Two channel slots: wider recordings are cut into pairs of channels.",
        f"- The real recordings of the bench's train split are few ({real_train:,} windows of {real_subjects} "
        "subjects); most of the",
        "  corpus is synthetic. Scores on other real data are unmeasured.", "",
    ]
    atomic_text(out / "README.md", "\n".join(card))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, help="the bench store (nw2 ingest corpus_specs/bench.yaml)")
    ap.add_argument("--real", required=True, help="the demo store (its val and test recordings are held out in B)")
    ap.add_argument("--run", required=True, help="the pretraining run directory")
    ap.add_argument("--out", default=str(HERE / NAME), help="where the checkpoint and card go")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from nw2.core.errors import Nw2Error

    try:
        print(build(args.store, args.real, args.run, Path(args.out), progress=not args.no_progress))
    except Nw2Error as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
