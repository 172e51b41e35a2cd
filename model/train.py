"""``nw2 pretrain``: a plain DDP training loop for the world model over a streamed Parquet corpus.

Flow: :func:`resolve` turns a preset or config file plus flags into a :class:`ModelConfig` and a
:class:`TrainConfig`; :func:`prepare` checks the corpus and the run directory before any process starts;
:func:`pretrain` then trains in this process, or starts ``--nproc`` processes through torch's launcher, each
running :func:`train` (which is also what every process runs under ``torchrun``). See ``docs/training.md``.

The run directory::

    RUN/run.json               model and training configs, world size, corpus fingerprint, status
    RUN/log.jsonl              one line per logged step and per epoch (rank 0)
    RUN/tensorboard/           the same scalars for TensorBoard (or --log-dir)
    RUN/checkpoints/ckpt-<step>.pt   model, optimizer, every rank's loader and RNG state (atomic writes)
    RUN/model/                 model.safetensors + config.json: Model.from_pretrained(RUN/model)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import torch

from nw2.core.errors import Nw2Error

from .config import PRESETS, ModelConfig
from .data import CorpusLoader, LoaderConfig
from nw2.core.files import atomic_text, atomic_torch_save
from .distributed import (Compute, all_gather, all_min, all_sum, barrier, compute_cleanup, compute_init,
                          launch, print0, under_launcher)
from .network import Model

__all__ = ["TrainConfig", "TrainResult", "resolve", "prepare", "pretrain", "train", "lr_at",
           "latest_checkpoint", "CHECKPOINT_VERSION"]

CHECKPOINT_VERSION = 1
RUN_JSON, LOG_JSONL = "run.json", "log.jsonl"


@dataclass(frozen=True)
class TrainConfig:
    """How ``nw2 pretrain`` trains (names follow NormWear-2's flags where they apply)."""

    corpus: str
    """The corpus directory (``nw2 balance`` output; a window store also works, unweighted)."""
    out: str
    """The run directory: configs, logs, checkpoints and the saved model."""
    batch_size: int = 32
    """Samples per process per micro-step."""
    accum_iter: int = 1
    """Micro-steps per optimizer step (gradients are all-reduced only on the last)."""
    epochs: int = 10
    """Passes over the training split."""
    warmup_epochs: float = 1.0
    """Linear learning-rate warm-up, in (fractional) epochs, before the cosine decay."""
    save_every_epoch: int = 1
    """Write a checkpoint every this many epochs (and always after the last)."""
    save_every_steps: int = 0
    """Also write a checkpoint every this many optimizer steps, mid-epoch (0: off)."""
    keep_checkpoints: int = 2
    """Checkpoints kept in ``RUN/checkpoints`` (the newest; 0 keeps all)."""
    blr: float = 1e-3
    """Base learning rate: the absolute one is ``blr * total batch / 256``, total batch =
    ``batch_size * accum_iter * world size``."""
    lr: float | None = None
    """Absolute learning rate; overrides ``blr`` when given."""
    min_lr: float = 1e-6
    """Floor of the cosine decay."""
    weight_decay: float = 0.05
    """AdamW weight decay (not applied to biases, norms and embeddings' 1-D parameters)."""
    clip_grad: float | None = 1.0
    """Clip the global gradient norm to this value (None: no clipping; the norm is still checked)."""
    num_workers: int = 0
    """Loader threads per process, each reading its own share of row groups."""
    shuffle_buffer: int = 1024
    """Samples in each loader worker's shuffle buffer."""
    weighted: bool | None = None
    """Sample by the corpus's ``sample_weight`` (None: when the column exists)."""
    split: str = "train"
    """The split trained on."""
    val_split: str | None = "val"
    """Split whose loss is measured after every epoch (skipped when the corpus has none; None: never)."""
    seed: int = 0
    """Seeds the model's initialisation and the loader."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    precision: str = "auto"
    """``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` or ``fp32``."""
    log_dir: str | None = None
    """TensorBoard directory (default ``RUN/tensorboard``)."""
    log_every: int = 10
    """Write a step line to ``log.jsonl`` and TensorBoard every this many optimizer steps."""
    remark: str = ""
    """A note kept in ``run.json`` and the logs (NormWear-2's ``--remark``)."""

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise Nw2Error(f"--{name.replace('_', '-')} must be a positive integer, got {v!r}")

        for name in ("batch_size", "accum_iter", "epochs", "save_every_epoch", "log_every"):
            positive(name)
        for name in ("save_every_steps", "keep_checkpoints", "num_workers", "shuffle_buffer"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise Nw2Error(f"--{name.replace('_', '-')} must be an integer >= 0, got {v!r}")
        for name in ("blr", "min_lr", "weight_decay", "warmup_epochs"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise Nw2Error(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v!r}")
        if self.lr is not None and not (math.isfinite(self.lr) and self.lr > 0):
            raise Nw2Error(f"--lr must be > 0, got {self.lr!r}")
        if self.clip_grad is not None and not (math.isfinite(self.clip_grad) and self.clip_grad > 0):
            raise Nw2Error(f"--clip-grad must be > 0, got {self.clip_grad!r}")
        if self.device not in ("auto", "cpu", "cuda"):
            raise Nw2Error(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise Nw2Error(f"--precision must be auto, bf16 or fp32, got {self.precision!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**data)


@dataclass
class TrainResult:
    """What a finished (or resumed and finished) run reports."""

    run: Path
    model_dir: Path
    world_size: int
    epochs: int
    steps: int
    samples: int
    train_loss: float | None
    val_loss: float | None
    skipped_steps: int
    skipped_batches: int
    skipped_rows: int
    seconds: float
    resumed_from: int | None


# ---- configuration --------------------------------------------------------------------------------------
MODEL_FIELDS = {f.name for f in fields(ModelConfig)}
TRAIN_FIELDS = {f.name for f in fields(TrainConfig)} - {"corpus", "out"}


def _load_model_config(config: str) -> ModelConfig:
    if config in PRESETS:
        return PRESETS[config]
    path = Path(config)
    if not path.is_file():
        raise Nw2Error(f"--config {config}: not a preset ({', '.join(PRESETS)}) and no such file")
    try:
        return ModelConfig.from_json(path.read_text())
    except ValueError as exc:
        raise Nw2Error(f"{path}: {exc}") from None


def resolve(corpus: str | os.PathLike, out: str | os.PathLike, config: str = "tiny",
            overrides: dict[str, Any] | None = None, resume: bool = False) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs of a run: the preset or JSON file ``config`` with ``overrides`` (flag
    names without dashes; model and training fields mixed). With ``resume`` and an existing ``run.json``, the
    saved configs are used and an override that contradicts them is an error."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - MODEL_FIELDS - TRAIN_FIELDS)
    if unknown:
        raise Nw2Error(f"unknown setting(s): {', '.join(unknown)}")
    model_over = {k: v for k, v in overrides.items() if k in MODEL_FIELDS}
    train_over = {k: v for k, v in overrides.items() if k in TRAIN_FIELDS}
    run_json = Path(out) / RUN_JSON
    if resume and run_json.is_file():
        saved = _read_run_json(run_json)
        model_cfg = ModelConfig.from_dict(saved["model"])
        train_cfg = TrainConfig.from_dict({**saved["train"], "corpus": str(corpus), "out": str(out)})
        clash = [f"{k} {getattr(model_cfg, k)!r} -> {v!r}" for k, v in model_over.items() if getattr(model_cfg, k) != v]
        clash += [f"{k} {getattr(train_cfg, k)!r} -> {v!r}" for k, v in train_over.items() if getattr(train_cfg, k) != v]
        if clash:
            raise Nw2Error(f"{run_json}: --resume continues the saved run, whose settings differ from the "
                           f"flags given ({'; '.join(clash)}); drop those flags or start a new --out")
        return model_cfg, train_cfg
    try:
        model_cfg = _load_model_config(config).replace(**model_over) if model_over else _load_model_config(config)
    except ValueError as exc:
        raise Nw2Error(str(exc)) from None
    return model_cfg, TrainConfig(corpus=str(corpus), out=str(out), **train_over)


def _read_run_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        data["model"], data["train"]
    except (ValueError, KeyError, TypeError):
        raise Nw2Error(f"{path}: not an nw2 run description (unreadable JSON or no model/train section)") from None
    return data


def _loader_config(model_cfg: ModelConfig, cfg: TrainConfig, split: str, train: bool,
                   weighted: bool) -> LoaderConfig:
    return LoaderConfig(corpus=cfg.corpus, split=split, batch_size=cfg.batch_size, window_size=model_cfg.window_size,
                        nvar=model_cfg.nvar, shuffle_buffer=cfg.shuffle_buffer if train else 0,
                        weighted=weighted and train, seed=cfg.seed, num_workers=cfg.num_workers if train else 0)


def _has_weights(corpus: str) -> bool:
    import pyarrow.parquet as pq

    parts = sorted((Path(corpus) / "data").glob("part-*.parquet"))
    return bool(parts) and "sample_weight" in pq.read_schema(parts[0]).names


@dataclass(frozen=True)
class Prepared:
    """A checked run: configs, whether it resumes, and whether a validation split exists."""

    model: ModelConfig
    train: TrainConfig
    resume: bool
    weighted: bool
    has_val: bool

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "train": self.train.to_dict(), "resume": self.resume,
                "weighted": self.weighted, "has_val": self.has_val}

    @classmethod
    def from_dict(cls, d: dict) -> "Prepared":
        return cls(ModelConfig.from_dict(d["model"]), TrainConfig.from_dict(d["train"]), bool(d["resume"]),
                   bool(d["weighted"]), bool(d["has_val"]))


def prepare(model_cfg: ModelConfig, cfg: TrainConfig, resume: bool = False) -> Prepared:
    """Check everything that can be checked before a process starts; raise a one-line :class:`Nw2Error`.

    The corpus (exists, has parts, the columns, rows of the split, windows at least ``window_size`` long),
    the run directory (an existing run needs ``--resume``; a resumed one must match its saved configs)."""
    weighted = _has_weights(cfg.corpus) if cfg.weighted is None else cfg.weighted
    CorpusLoader(_loader_config(model_cfg, cfg, cfg.split, True, weighted), rank=0, world_size=1)
    has_val = False
    if cfg.val_split:
        try:
            CorpusLoader(_loader_config(model_cfg, cfg, cfg.val_split, False, False), rank=0, world_size=1)
            has_val = True
        except Nw2Error as exc:
            if "no rows of split" not in str(exc):
                raise
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise Nw2Error(f"{out}: --out exists and is not a directory")
    has_run = (out / RUN_JSON).is_file() or latest_checkpoint(out) is not None
    # Under torchrun every rank runs this; only rank 0 judges the run directory, because rank 0 may
    # already have written run.json by the time a slow rank gets here (no rank writes before all have
    # joined the process group, so rank 0's check always sees the directory as the user left it).
    if has_run and not resume and int(os.environ.get("RANK", "0")) == 0:
        raise Nw2Error(f"{out}: already holds a run; pass --resume to continue it, or choose another --out")
    return Prepared(model_cfg, cfg, resume, weighted, has_val)


def lr_at(epoch: float, peak: float, cfg: TrainConfig) -> float:
    """Linear warm-up to ``peak`` over ``warmup_epochs``, then half a cosine down to ``min_lr`` at ``epochs``
    (``epoch`` fractional, as in MAE and NormWear)."""
    if epoch < cfg.warmup_epochs:
        return peak * epoch / cfg.warmup_epochs
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-12)
    progress = min(1.0, (epoch - cfg.warmup_epochs) / span)
    return cfg.min_lr + (peak - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---- checkpoints ----------------------------------------------------------------------------------------
def _checkpoint_dir(run: Path) -> Path:
    return run / "checkpoints"


def latest_checkpoint(run: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint of a run directory (temporary files of an interrupted write are ignored)."""
    d = _checkpoint_dir(Path(run))
    found = sorted(d.glob("ckpt-*.pt")) if d.is_dir() else []
    return found[-1] if found else None


def _param_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _corpus_fingerprint(corpus: str) -> dict:
    """Where the data came from: a corpus's ``content_sha256`` (docs/corpus_format.md); a store has none, so
    the hash of its ``store.json`` (its settings) stands in."""
    root = Path(corpus)
    if (root / "corpus.json").is_file():
        try:
            content = json.loads((root / "corpus.json").read_text()).get("content_sha256")
        except ValueError:
            content = None
        return {"path": str(root.resolve()), "kind": "corpus", "content_sha256": content}
    return {"path": str(root.resolve()), "kind": "store",
            "store_json_sha256": hashlib.sha256((root / "store.json").read_bytes()).hexdigest()}


# ---- the loop -------------------------------------------------------------------------------------------
class _Logger:
    """Rank 0's JSONL and TensorBoard output; a no-op elsewhere."""

    def __init__(self, run: Path, cfg: TrainConfig, active: bool, truncate_after: int | None) -> None:
        self.active = active
        self.path = run / LOG_JSONL
        self.tb = None
        if not active:
            return
        if truncate_after is not None and self.path.exists():
            # a resumed run drops the lines its killed predecessor wrote after the checkpoint
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= truncate_after]
            atomic_text(self.path, "".join(ln + "\n" for ln in keep))
        elif truncate_after is None:
            self.path.unlink(missing_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(log_dir=cfg.log_dir or str(run / "tensorboard"),
                                purge_step=None if truncate_after is None else truncate_after + 1)

    def write(self, record: dict, scalars: dict[str, float] | None = None, step: int = 0) -> None:
        if not self.active:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tb is not None and scalars:
            for k, v in scalars.items():
                if v is not None and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.flush()
            self.tb.close()


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _val_loss(model: Model, loader: CorpusLoader | None, device: torch.device, amp) -> float | None:
    if loader is None:
        return None
    model.eval()
    loader.set_epoch(0)
    total = count = 0.0
    with torch.no_grad():
        for x, mask in loader.epoch_batches():
            x, mask = x.to(device), mask.to(device)
            with amp():
                loss = model(x, mask)["loss"].float()
            if torch.isfinite(loss):
                total += float(loss) * x.shape[0]
                count += x.shape[0]
    model.train()
    total, count = all_sum([total, count])
    return total / count if count else None


def train(prepared: Prepared, progress: bool = True, log: Callable[[str], None] | None = None) -> TrainResult:
    """Train in this process: alone, or as one rank of a launched run (``torchrun``, ``--nproc``)."""
    compute = compute_init(prepared.train.device)
    say = (log or (lambda m: print0(m, file=sys.stderr))) if compute.master else (lambda m: None)
    try:
        return _train(prepared, compute, progress, say)
    finally:
        compute_cleanup()


def _train(prepared: Prepared, compute: Compute, progress: bool, say) -> TrainResult:
    from torch.nn.parallel import DistributedDataParallel as DDP
    from tqdm.auto import tqdm

    model_cfg, cfg = prepared.model, prepared.train
    run = Path(cfg.out)
    device, world, rank = compute.device, compute.world_size, compute.rank
    if compute.device.type == "cpu" and world > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    amp = (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    # every rank builds the same initial model from the seed (DDP also broadcasts rank 0's)
    torch.manual_seed(cfg.seed)
    model = Model(model_cfg).to(device)
    total_batch = cfg.batch_size * cfg.accum_iter * world
    peak_lr = cfg.lr if cfg.lr is not None else cfg.blr * total_batch / 256
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=peak_lr, betas=(0.9, 0.95),
                                  fused=device.type == "cuda")
    loader = CorpusLoader(_loader_config(model_cfg, cfg, cfg.split, True, prepared.weighted), rank, world)
    val_loader = (CorpusLoader(_loader_config(model_cfg, cfg, cfg.val_split, False, False), rank, world)
                  if prepared.has_val and cfg.val_split else None)
    per_rank = max(1.0, loader.expected_samples() / world)
    steps_per_epoch = max(1, math.ceil(per_rank / (cfg.batch_size * cfg.accum_iter)))

    state = {"epoch": 0, "step": 0, "samples": 0, "epoch_step": 0, "epoch_loss": 0.0, "epoch_steps": 0,
             "skipped_steps": 0, "skipped_batches": 0, "windows": 0, "step_seconds": 0.0,
             "last_loss": None, "val_loss": None}
    resumed_from = None
    ckpt_path = latest_checkpoint(run) if prepared.resume else None
    if ckpt_path is not None:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise Nw2Error(f"{ckpt_path}: checkpoint version {ckpt.get('version')} is not {CHECKPOINT_VERSION}")
        if ckpt["world_size"] != world:
            raise Nw2Error(f"{ckpt_path}: saved by {ckpt['world_size']} processes, resumed with {world}; the "
                           f"loader position is per process, so resume with --nproc {ckpt['world_size']}")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        loader.load_state_dict(ckpt["loader"][rank])
        torch.set_rng_state(ckpt["rng"][rank])
        state.update(ckpt["state"])
        resumed_from = state["step"]
        if loader.epoch != state["epoch"]:
            raise Nw2Error(f"{ckpt_path}: the loader state is at epoch {loader.epoch}, the trainer at {state['epoch']}")
        say(f"resuming {run} from {ckpt_path.name} ({state['epoch']} of {cfg.epochs} epochs done, step {state['step']})")
    elif prepared.resume:
        say(f"{run}: no checkpoint yet, starting from the beginning")

    if compute.master:
        run.mkdir(parents=True, exist_ok=True)
        _checkpoint_dir(run).mkdir(exist_ok=True)
        meta = {"model": model_cfg.to_dict(), "train": {k: v for k, v in cfg.to_dict().items()
                                                          if k not in ("corpus", "out")},
                "world_size": world, "total_batch": total_batch, "peak_lr": peak_lr, "weighted": prepared.weighted,
                "corpus": _corpus_fingerprint(cfg.corpus), "remark": cfg.remark, "status": "running",
                "parameters": sum(p.numel() for p in model.parameters()), "device": str(device),
                "precision": "bf16" if bf16 else "fp32", "torch": torch.__version__}
        atomic_text(run / RUN_JSON, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    barrier()
    logger = _Logger(run, cfg, compute.master, resumed_from if prepared.resume else None)
    net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if compute.ddp else model
    model.train()
    if compute.master:
        say(f"training {sum(p.numel() for p in model.parameters()):,} parameters on {world} x {device.type} "
            f"({'bf16' if bf16 else 'fp32'}), total batch {total_batch}, peak lr {peak_lr:.3g}, "
            f"~{steps_per_epoch} steps per epoch")

    bar = tqdm(total=steps_per_epoch * cfg.epochs, initial=min(state["step"], steps_per_epoch * cfg.epochs),
               desc="pretrain", unit="step", disable=not (progress and compute.master), dynamic_ncols=True)
    t_start = time.perf_counter()
    t_log, windows_since = time.perf_counter(), 0

    def save(tag: str) -> None:
        loaders = all_gather(loader.state_dict())
        rngs = all_gather(torch.get_rng_state())
        if compute.master:
            ckpt = {"version": CHECKPOINT_VERSION, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "loader": loaders, "rng": rngs, "state": dict(state), "world_size": world,
                    "model_config": model_cfg.to_dict(), "tag": tag}
            path = _checkpoint_dir(run) / f"ckpt-{state['step']:09d}.pt"
            atomic_torch_save(ckpt, path)
            model.save_pretrained(run / "model")
            if cfg.keep_checkpoints:
                for old in sorted(_checkpoint_dir(run).glob("ckpt-*.pt"))[:-cfg.keep_checkpoints]:
                    old.unlink(missing_ok=True)
        barrier()

    while state["epoch"] < cfg.epochs:
        epoch = state["epoch"]
        batches_iter = loader.epoch_batches()
        ended = False
        while not ended:
            t_step = time.perf_counter()  # a step's time includes waiting for its batches
            batches = list(itertools.islice(batches_iter, cfg.accum_iter))
            n = all_min(len(batches))
            if n == 0:
                break
            ended = n < cfg.accum_iter
            batches = batches[:n]
            # place in the epoch from the global step count, so every rank sets the same learning rate
            frac = min(state["epoch_step"] / steps_per_epoch, 0.999999)
            lr = lr_at(epoch + frac, peak_lr, cfg)
            for g in optimizer.param_groups:
                g["lr"] = lr
            # the step's totals stay on the device and are read back once: loss, forecast, rollout, jepa
            # (sample-weighted), samples, windows, non-finite batches, non-finite losses
            acc = torch.zeros(8, dtype=torch.float64, device=device)
            for i, (x, mask) in enumerate(batches):
                x, mask = x.to(device, non_blocking=True), mask.to(device, non_blocking=True)
                # a batch with a non-finite value still runs forward and backward (DDP needs every rank's
                # gradients), zeroed and with its loss weighted by 0
                finite = torch.isfinite(x).all()
                x = torch.where(finite, x, torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))
                weight = finite.to(torch.float64)
                sync = contextlib.nullcontext() if (not compute.ddp or i == n - 1) else net.no_sync()
                with sync:
                    with amp():
                        out = net(x, mask)
                    loss = out["loss"].float()
                    (loss * (weight.float() / n)).backward()
                terms = torch.stack([out[k].detach().double() for k in ("loss", "forecast", "rollout", "jepa")])
                acc[:4] += torch.where(finite, terms * x.shape[0], torch.zeros_like(terms))
                acc[4] += weight * x.shape[0]
                acc[5] += weight * mask.sum()
                acc[6] += 1.0 - weight
                acc[7] += (~torch.isfinite(loss)).double()
            # gradients are now identical on every rank, so is their norm; a non-finite one skips the step
            clip = cfg.clip_grad if cfg.clip_grad is not None else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
            tot = all_sum(acc.tolist())
            g_samples, g_windows = int(tot[4]), int(tot[5])
            if tot[7] > 0 or not math.isfinite(grad_norm):
                optimizer.zero_grad(set_to_none=True)
                state["skipped_steps"] += 1
                step_loss = None
            else:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                step_loss = tot[0] / g_samples if g_samples else None
            state["skipped_batches"] += int(tot[6])
            state["step"] += 1
            state["samples"] += g_samples
            state["epoch_step"] += 1
            state["windows"] += g_windows
            state["step_seconds"] += time.perf_counter() - t_step
            if step_loss is not None:
                state["epoch_loss"] += step_loss
                state["epoch_steps"] += 1
                state["last_loss"] = step_loss
            windows_since += g_windows
            bar.update(1)
            if state["step"] % cfg.log_every == 0 or ended:
                now = time.perf_counter()
                wps = windows_since / max(now - t_log, 1e-9)
                t_log, windows_since = now, 0
                rec = {"event": "step", "step": state["step"], "epoch": epoch,
                       "epoch_progress": round(frac, 6), "lr": lr, "grad_norm": grad_norm,
                       "loss": step_loss, "samples": state["samples"], "windows_per_s": round(wps, 2),
                       "skipped_steps": state["skipped_steps"], "skipped_batches": state["skipped_batches"]}
                if g_samples:
                    rec.update({k: tot[j] / g_samples for j, k in enumerate(("loss", "forecast", "rollout", "jepa"))
                                if j > 0})
                logger.write(rec, {"train/loss": step_loss, "train/lr": lr, "train/grad_norm": grad_norm,
                                   "train/windows_per_s": wps}, state["step"])
                if step_loss is not None:
                    bar.set_postfix(loss=f"{step_loss:.4f}", win_s=f"{wps:.0f}")
            if cfg.save_every_steps and state["step"] % cfg.save_every_steps == 0 and not ended:
                save("step")
        batches_iter.close()
        # the epoch ends for every rank when the first runs out (its extra batches are left for no one)
        train_loss = state["epoch_loss"] / state["epoch_steps"] if state["epoch_steps"] else None
        val_loss = state["val_loss"] = _val_loss(model, val_loader, device, amp)
        skipped_rows = int(all_sum([loader.skipped])[0])
        logger.write({"event": "epoch", "epoch": epoch, "step": state["step"], "train_loss": train_loss,
                      "val_loss": val_loss, "steps": state["epoch_steps"], "skipped_rows": skipped_rows,
                      "seconds": round(time.perf_counter() - t_start, 3)},
                     {"epoch/train_loss": train_loss, "epoch/val_loss": val_loss}, state["step"])
        say(f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss if train_loss is None else f'{train_loss:.4f}'}"
            + (f", val loss {val_loss:.4f}" if val_loss is not None else ""))
        state.update(epoch=epoch + 1, epoch_step=0, epoch_loss=0.0, epoch_steps=0)
        loader.set_epoch(epoch + 1)
        if (epoch + 1) % cfg.save_every_epoch == 0 or epoch + 1 == cfg.epochs:
            save("epoch")
    bar.close()

    digests = all_gather(_param_digest(model))
    skipped_rows = int(all_sum([loader.skipped])[0])
    seconds = time.perf_counter() - t_start
    if compute.master:
        model.save_pretrained(run / "model")
        meta = json.loads((run / RUN_JSON).read_text())
        meta.update(status="finished", steps=state["step"], epochs_done=state["epoch"], param_digests=digests,
                    windows=state["windows"], step_seconds=round(state["step_seconds"], 3),
                    skipped_steps=state["skipped_steps"], skipped_batches=state["skipped_batches"],
                    skipped_rows=skipped_rows, val_loss=state["val_loss"], train_loss=state["last_loss"])
        atomic_text(run / RUN_JSON, json.dumps(meta, indent=2, sort_keys=True) + "\n")
        logger.write({"event": "end", "step": state["step"], "param_digests": digests,
                      "seconds": round(seconds, 3)})
    logger.close()
    barrier()
    return TrainResult(run=run, model_dir=run / "model", world_size=world, epochs=state["epoch"],
                       steps=state["step"], samples=state["samples"], train_loss=state["last_loss"],
                       val_loss=state["val_loss"],
                       skipped_steps=state["skipped_steps"], skipped_batches=state["skipped_batches"],
                       skipped_rows=skipped_rows, seconds=seconds, resumed_from=resumed_from)


# ---- entry points ---------------------------------------------------------------------------------------
def pretrain(prepared: Prepared, nproc: int = 1, progress: bool = True,
             log: Callable[[str], None] | None = None) -> TrainResult | None:
    """Train a prepared run: in this process (``nproc == 1``, or already under ``torchrun``), or in ``nproc``
    processes started through torch's launcher. Returns the result (``None`` from a launched run, whose
    outcome is in ``RUN/run.json``)."""
    if nproc < 1:
        raise Nw2Error(f"--nproc must be >= 1, got {nproc}")
    if nproc == 1 or under_launcher():
        return train(prepared, progress=progress, log=log)
    run = Path(prepared.train.out)
    run.mkdir(parents=True, exist_ok=True)
    settings = run / ".launch.json"
    atomic_text(settings, json.dumps({"prepared": prepared.to_dict(), "progress": progress}))
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        launch(nproc, "nw2.model.train", [str(settings)])
    except ChildFailedError as exc:
        first = next(iter(exc.failures.values()), None)
        detail = ""
        if first is not None and first.error_file and Path(first.error_file).is_file():
            try:
                detail = json.loads(Path(first.error_file).read_text())["message"]["message"].splitlines()[-1]
            except (ValueError, KeyError, TypeError, IndexError):
                detail = ""
        raise Nw2Error(f"{run}: {len(exc.failures)} of {nproc} training processes failed"
                       + (f" ({detail})" if detail else "; see the output above")) from None
    finally:
        settings.unlink(missing_ok=True)
    return None


def _main(argv: list[str]) -> int:
    """``python -m nw2.model.train SETTINGS.json``: one rank of a run started by :func:`pretrain`."""
    from torch.distributed.elastic.multiprocessing.errors import record

    data = json.loads(Path(argv[0]).read_text())
    prepared = Prepared.from_dict(data["prepared"])
    record(train)(prepared, progress=bool(data.get("progress", True)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
