"""``nw2 pretrain``: a plain DDP training loop for the world model over a streamed Parquet corpus.

Flow: :func:`resolve` turns a preset or config file plus flags into a :class:`ModelConfig` and a
:class:`TrainConfig`; :func:`prepare` checks the corpus and the run directory before any process starts;
:func:`pretrain` then trains in this process, or starts ``--nproc`` processes through torch's launcher, each
running :func:`train` (which is also what every process runs under ``torchrun``). See ``docs/training.md``.
The loop's state is a :class:`LoopState`, a step's totals a :class:`StepTotals`; :mod:`.checkpoint` writes and
reads the checkpoints, :mod:`.config` holds :class:`TrainConfig`.

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
from typing import Any, Callable, NamedTuple

import torch

from nw2.artifacts import Corpus, Run, RunInfo, open_windows
from nw2.core.errors import EmptySplitError, Nw2Error, StorageError
from nw2.core.files import atomic_text

from .checkpoint import CHECKPOINT_VERSION, Checkpointer, latest_checkpoint
from .config import ModelConfig, TrainConfig, load_model_config, read_model_config
from .data import CorpusLoader, LoaderConfig
from .distributed import (Compute, LaunchFailed, all_gather, all_min, all_sum, barrier, compute_cleanup,
                          compute_init, launch, print0, record_errors, under_launcher, wrap_ddp)
from .network import Model

__all__ = ["TrainConfig", "TrainResult", "LoopState", "StepTotals", "resolve", "prepare", "pretrain", "train",
           "lr_at", "steps_per_epoch", "has_weights", "latest_checkpoint", "CHECKPOINT_VERSION"]


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


def resolve(corpus: str | os.PathLike, out: str | os.PathLike, config: str | None = None,
            overrides: dict[str, Any] | None = None, resume: bool = False) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs of a run: the preset or JSON file ``config`` (default ``tiny``, or with
    ``init_from`` that model's own config; giving both is an error) with ``overrides`` (flag names without
    dashes; model and training fields mixed). With ``resume`` and an existing ``run.json``, the saved configs
    are used and an override that contradicts them is an error."""
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - MODEL_FIELDS - TRAIN_FIELDS)
    if unknown:
        raise Nw2Error(f"unknown setting(s): {', '.join(unknown)}")
    model_over = {k: v for k, v in overrides.items() if k in MODEL_FIELDS}
    train_over = {k: v for k, v in overrides.items() if k in TRAIN_FIELDS}
    saved = Run(out).info() if resume else None
    if saved is not None:
        run_json = Run(out).info_path
        try:
            model_cfg = ModelConfig.from_dict(saved.model)
            # a run saved before random crops existed read every window from its start: it goes on doing so
            train_cfg = TrainConfig.from_dict({"random_crop": False, **saved.train, "corpus": str(corpus),
                                               "out": str(out)})
        except (ValueError, TypeError) as exc:
            raise Nw2Error(f"{run_json}: its saved settings are not this nw2's ({exc})") from None
        clash = [f"{k} {getattr(model_cfg, k)!r} -> {v!r}" for k, v in model_over.items() if getattr(model_cfg, k) != v]
        clash += [f"{k} {getattr(train_cfg, k)!r} -> {v!r}" for k, v in train_over.items() if getattr(train_cfg, k) != v]
        if clash:
            raise Nw2Error(f"{run_json}: --resume continues the saved run, whose settings differ from the "
                           f"flags given ({'; '.join(clash)}); drop those flags or start a new --out")
        return model_cfg, train_cfg
    init_from = train_over.get("init_from")
    if init_from is not None and config is not None:
        raise Nw2Error(f"--config {config} and --init-from {init_from} both give the model's shape: the run takes "
                       f"the --init-from model's config, so drop --config")
    try:
        base = _init_config(init_from) if init_from is not None else load_model_config(config or "tiny")
        named = model_over.pop("intervention_inputs", None)  # set with their count, below
        model_cfg = base.replace(**model_over) if model_over else base
        if isinstance(named, str):  # the command line's comma-separated names
            named = tuple(n.strip() for n in named.split(",") if n.strip())
    except ValueError as exc:
        raise Nw2Error(str(exc)) from None
    if named or model_cfg.intervention_inputs:  # names -> the corpus's inputs (a category each), their count
        from .data import intervention_inputs

        inputs = intervention_inputs(corpus, named or model_cfg.intervention_inputs)
        if init_from is not None and base.intervention_inputs and inputs != base.intervention_inputs:
            raise Nw2Error(f"--init-from {init_from} takes the inputs {', '.join(base.intervention_inputs)}, and "
                           f"the corpus gives {', '.join(inputs)}")
        try:
            model_cfg = model_cfg.replace(intervention_inputs=inputs, interventions=len(inputs))
        except ValueError as exc:
            raise Nw2Error(str(exc)) from None
    elif model_cfg.interventions:  # its inputs would never be fed (and DDP would refuse the unused map)
        raise Nw2Error(f"the model config has {model_cfg.interventions} intervention input(s) and names none: name "
                       f"the corpus's known interventions with --intervention-inputs (forcing, ...)")
    return model_cfg, TrainConfig(corpus=str(corpus), out=str(out), **train_over)


def _init_config(init_from: str) -> ModelConfig:
    """The config of the saved model ``--init-from`` names (a one-line Nw2Error when there is none)."""
    from .network import CONFIG, WEIGHTS, model_directory

    try:
        path = model_directory(init_from) / CONFIG
    except (FileNotFoundError, ValueError) as exc:
        raise Nw2Error(f"--init-from {exc}") from None
    for needed in (path, path.with_name(WEIGHTS)):  # checked here, before any process starts
        if not needed.is_file():
            raise Nw2Error(f"--init-from {init_from}: {needed} not found, not a saved nw2 model directory")
    return read_model_config(path)


def _init_weights(model: Model, init_from: str) -> None:
    """Load the ``--init-from`` model's weights into ``model`` (strict: the shapes must match its config)."""
    from safetensors.torch import load_file

    from .network import WEIGHTS, model_directory

    try:
        path = model_directory(init_from) / WEIGHTS
    except (FileNotFoundError, ValueError) as exc:
        raise Nw2Error(f"--init-from {exc}") from None
    if not path.is_file():
        raise Nw2Error(f"--init-from {init_from}: {path} not found, not a saved nw2 model directory")
    try:
        # a model continued with rate conditioning starts its rate map at zero: the saved model, unchanged
        missing, unexpected = model.load_state_dict(load_file(str(path), device="cpu"), strict=False)
        if unexpected or set(missing) - {"rate_embed.weight"}:
            model.load_state_dict(load_file(str(path), device="cpu"))  # strict: raises, naming the mismatch
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise Nw2Error(f"--init-from {path}: the weights do not fit the run's model config ({first}); "
                       f"drop the model flags that change its shape") from None


def _loader_config(model_cfg: ModelConfig, cfg: TrainConfig, split: str, train: bool,
                   weighted: bool) -> LoaderConfig:
    return LoaderConfig(corpus=cfg.corpus, split=split, batch_size=cfg.batch_size, window_size=model_cfg.window_size,
                        nvar=model_cfg.nvar, shuffle_buffer=cfg.shuffle_buffer if train else 0,
                        random_crop=cfg.random_crop and train,
                        weighted=weighted and train, seed=cfg.seed, num_workers=cfg.num_workers if train else 0,
                        rates=model_cfg.rate_conditioning, interventions=model_cfg.intervention_inputs)


def has_weights(corpus: str) -> bool:
    """Whether ``corpus`` has a ``sample_weight`` column (a corpus has; a window store has not)."""
    import pyarrow.parquet as pq

    source = open_windows(corpus, "the trainer")
    with source.open_file(source.parts()[0]) as fh:
        return "sample_weight" in pq.read_schema(fh).names


def _weighted(cfg: TrainConfig) -> bool:
    """Whether the run samples by weight: ``--weighted``/``--unweighted``, else when the corpus has weights."""
    return has_weights(cfg.corpus) if cfg.weighted is None else cfg.weighted


def _epoch_steps(samples: float, cfg: TrainConfig, world_size: int) -> int:
    """Optimizer steps in an epoch of ``samples`` samples (the loader's expectation) on ``world_size``
    processes: what places a step within its epoch for the learning-rate schedule."""
    per_rank = max(1.0, samples / world_size)
    return max(1, math.ceil(per_rank / (cfg.batch_size * cfg.accum_iter)))


def steps_per_epoch(model_cfg: ModelConfig, cfg: TrainConfig, world_size: int) -> int:
    """The optimizer steps of one epoch of ``cfg.split`` on ``world_size`` processes, exactly as the trainer
    counts them (``nw2 experiment`` turns its budget of steps into epochs with it)."""
    loader = CorpusLoader(_loader_config(model_cfg, cfg, cfg.split, True, _weighted(cfg)), rank=0, world_size=1)
    return _epoch_steps(loader.expected_samples(), cfg, world_size)


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

    The corpus (exists, has parts whose bytes are those corpus.json records, the columns, rows of the split,
    windows at least ``window_size`` long),
    the run directory (an existing run needs ``--resume``; a resumed one must match its saved configs)."""
    weighted = _weighted(cfg)
    source = open_windows(cfg.corpus, "the trainer")
    if isinstance(source, Corpus) and int(os.environ.get("RANK", "0")) == 0:
        source.verify()  # every part's bytes as corpus.json records them, before anything is written or trained
    CorpusLoader(_loader_config(model_cfg, cfg, cfg.split, True, weighted), rank=0, world_size=1)
    has_val = False
    if cfg.val_split:
        try:
            CorpusLoader(_loader_config(model_cfg, cfg, cfg.val_split, False, False), rank=0, world_size=1)
            has_val = True
        except EmptySplitError:
            pass  # no validation split: the run measures no validation loss
    # Under torchrun every rank runs this; only rank 0 judges the run directory, because rank 0 may
    # already have written run.json by the time a slow rank gets here (no rank writes before all have
    # joined the process group, so rank 0's check always sees the directory as the user left it).
    if int(os.environ.get("RANK", "0")) == 0:
        run = Run(cfg.out)
        run.check_new_out()  # new, empty or a run: nothing else is ever written into
        run.sweep_temporaries()  # a killed run's half-written files (under its lock only: no live writer's)
        if run.holds_run() and not resume:
            raise Nw2Error(f"{run.root}: already holds a run; pass --resume to continue it, or choose another --out")
    return Prepared(model_cfg, cfg, resume, weighted, has_val)


def lr_at(epoch: float, peak: float, cfg: TrainConfig) -> float:
    """Linear warm-up to ``peak`` over ``warmup_epochs``, then half a cosine down to ``min_lr`` at ``epochs``
    (``epoch`` fractional, as in MAE and NormWear)."""
    if epoch < cfg.warmup_epochs:
        return peak * epoch / cfg.warmup_epochs
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-12)
    progress = min(1.0, (epoch - cfg.warmup_epochs) / span)
    return cfg.min_lr + (peak - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ---- digests (checkpoints: model/checkpoint.py) ---------------------------------------------------------
def _param_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _corpus_fingerprint(corpus: str) -> dict:
    """Where the data came from: a corpus's ``content_sha256`` (docs/corpus_format.md); a store has none, so
    the hash of its ``store.json`` (its settings) stands in."""
    source = open_windows(corpus, "the trainer")
    path = str(Path(corpus).resolve())
    if isinstance(source, Corpus):
        return {"path": path, "kind": "corpus", "content_sha256": source.info().content_sha256}
    return {"path": path, "kind": "store", "store_json_sha256": source.settings_sha256()}


# ---- the loop's state -----------------------------------------------------------------------------------
@dataclass
class LoopState:
    """Where the loop is and what it has counted, all ranks together (every rank holds the same).

    Saved in every checkpoint as ``ckpt["state"]`` (:meth:`to_dict`): the field names are the checkpoint's
    keys, so renaming or removing one needs a new ``CHECKPOINT_VERSION``."""

    epoch: int = 0
    """Epochs finished (the one under way is ``epoch``, counted from 0)."""
    step: int = 0
    """Optimizer steps taken, skipped ones included."""
    samples: int = 0
    """Samples trained on (batches with a non-finite value not counted)."""
    epoch_step: int = 0
    """Steps of the epoch under way: places a step within its epoch for the learning rate."""
    epoch_loss: float = 0.0
    """Sum of the finite step losses of the epoch under way."""
    epoch_steps: int = 0
    """Steps of the epoch under way with a finite loss."""
    skipped_steps: int = 0
    """Steps not taken: a non-finite loss or gradient norm."""
    skipped_batches: int = 0
    """Micro-batches with a non-finite value (run zeroed, with their loss weighted by 0)."""
    windows: int = 0
    """Channel windows trained on (the valid channels of the samples)."""
    step_seconds: float = 0.0
    """Time spent in steps, waiting for their batches included."""
    last_loss: float | None = None
    """The latest finite step loss."""
    val_loss: float | None = None
    """The latest validation loss (None: not measured)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LoopState":
        """The state saved in a checkpoint; a key it lacks keeps its default."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def epoch_train_loss(self) -> float | None:
        """Mean finite step loss of the epoch under way."""
        return self.epoch_loss / self.epoch_steps if self.epoch_steps else None

    def count_step(self, totals: StepTotals, loss: float | None, taken: bool, seconds: float) -> None:
        """Count a step: its totals, its loss (None: none or not finite), whether the optimizer stepped."""
        if not taken:
            self.skipped_steps += 1
        self.skipped_batches += int(totals.bad_batches)
        self.step += 1
        self.samples += int(totals.samples)
        self.epoch_step += 1
        self.windows += int(totals.windows)
        self.step_seconds += seconds
        if loss is not None:
            self.epoch_loss += loss
            self.epoch_steps += 1
            self.last_loss = loss

    def next_epoch(self) -> None:
        self.epoch += 1
        self.epoch_step, self.epoch_loss, self.epoch_steps = 0, 0.0, 0


class StepTotals(NamedTuple):
    """A step's totals over its micro-batches and all ranks. The loss terms are sums weighted by batch size
    (divide by ``samples``); batches with a non-finite value add only to ``bad_batches``."""

    loss: float
    forecast: float
    rollout: float
    jepa: float
    samples: float
    windows: float
    bad_batches: float
    """Micro-batches with a non-finite input value."""
    bad_losses: float
    """Micro-batches whose loss was not finite (any skips the step)."""


_TERMS = ("loss", "forecast", "rollout", "jepa")  # the model's loss terms, the first slots of StepTotals
_SAMPLES, _WINDOWS, _BAD_BATCHES, _BAD_LOSSES = (StepTotals._fields.index(name) for name in
                                                 ("samples", "windows", "bad_batches", "bad_losses"))


class _DeviceTotals:
    """A step's :class:`StepTotals`, one float64 slot each, summed on the device: a micro-step never waits
    for the GPU, and the step reads them back once (:meth:`read`)."""

    def __init__(self, device: torch.device) -> None:
        self.acc = torch.zeros(len(StepTotals._fields), dtype=torch.float64, device=device)

    def add(self, out: dict, x: torch.Tensor, mask: torch.Tensor, finite: torch.Tensor, weight: torch.Tensor,
            loss: torch.Tensor) -> None:
        terms = torch.stack([out[k].detach().double() for k in _TERMS])
        self.acc[:len(_TERMS)] += torch.where(finite, terms * x.shape[0], torch.zeros_like(terms))
        self.acc[_SAMPLES] += weight * x.shape[0]
        self.acc[_WINDOWS] += weight * mask.sum()
        self.acc[_BAD_BATCHES] += 1.0 - weight
        self.acc[_BAD_LOSSES] += (~torch.isfinite(loss)).double()

    def read(self) -> StepTotals:
        """The totals summed over ranks (the step's one read-back from the device)."""
        return StepTotals(*all_sum(self.acc.tolist()))


class _Step(NamedTuple):
    """What one optimizer step did."""

    frac: float
    """Its place in the epoch, in [0, 1)."""
    lr: float
    grad_norm: float
    totals: StepTotals
    loss: float | None
    """The mean loss of its samples (None: skipped, or no finite sample)."""
    taken: bool
    """False when the step was skipped (a non-finite loss or gradient norm)."""


# ---- the loop -------------------------------------------------------------------------------------------
def _logged_up_to(line: str, step: int) -> bool:
    """Whether a log line is whole and from at most ``step`` (a run killed mid-append leaves a partial last
    line: it is dropped with the rest after the checkpoint)."""
    try:
        return json.loads(line).get("step", 0) <= step
    except ValueError:
        return False


class _Logger:
    """Rank 0's JSONL and TensorBoard output; a no-op elsewhere."""

    def __init__(self, run: Run, cfg: TrainConfig, active: bool, truncate_after: int | None) -> None:
        self.active = active
        self.path = run.log_path
        self.tb = None
        if not active:
            return
        if truncate_after is not None and self.path.exists():
            # a resumed run drops the lines its killed predecessor wrote after the checkpoint
            keep = [ln for ln in self.path.read_text().splitlines() if _logged_up_to(ln, truncate_after)]
            atomic_text(self.path, "".join(ln + "\n" for ln in keep))
        elif truncate_after is None:
            self.path.unlink(missing_ok=True)
        from torch.utils.tensorboard import SummaryWriter

        self.tb_dir = cfg.log_dir or str(run.tensorboard_dir)
        _quiet_tensorboard_thread()
        with self._tensorboard():
            self.tb = SummaryWriter(log_dir=self.tb_dir,
                                    purge_step=None if truncate_after is None else truncate_after + 1)

    @contextlib.contextmanager
    def _tensorboard(self):
        """TensorBoard writes from a thread of its own; an ``OSError`` there (a full disk) comes back on the next
        call from this one, raised as it was: here it becomes the one-line :class:`StorageError` naming its
        folder, as a full disk under any other file of the run does."""
        try:
            yield
        except OSError as err:
            raise StorageError.of(self.tb_dir, err, "TensorBoard's event file") from None

    def write(self, record: dict, scalars: dict[str, float] | None = None, step: int = 0) -> None:
        if not self.active:
            return
        try:
            with self.path.open("a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
        except OSError as err:  # a full disk: one line (a resume cuts the log back to its checkpoint)
            raise StorageError.of(self.path, err) from None
        if self.tb is not None and scalars:
            with self._tensorboard():
                for k, v in scalars.items():
                    if v is not None and math.isfinite(v):
                        self.tb.add_scalar(k, v, step)

    def flush(self) -> None:
        """Write what TensorBoard holds (its thread writes every two minutes): called with each checkpoint, so a
        disk that filled under it is noticed there, not only at the end."""
        if self.tb is not None:
            with self._tensorboard():
                self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            with self._tensorboard():
                self.tb.flush()
                self.tb.close()


def _quiet_tensorboard_thread() -> None:
    """Keep the traceback of TensorBoard's writer thread off stderr when its error is an ``OSError``: the thread
    keeps the error, and the next call from the training loop raises it, reported in one line
    (:meth:`_Logger._tensorboard`). Every other thread's exceptions print as before."""
    import threading

    previous = threading.excepthook
    if getattr(previous, "nw2_quiet_tensorboard", False):
        return

    def hook(args) -> None:
        if isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread":
            return
        previous(args)

    hook.nw2_quiet_tensorboard = True
    threading.excepthook = hook


def batch_inputs(rest: list, config: ModelConfig, device=None) -> tuple:
    """``(fs, u)`` from what a loader batch holds after ``(x, mask)``: the rates (with ``rate_conditioning``)
    then the interventions (with intervention inputs); ``None`` for what the model does not take."""
    fs = rest[0] if config.rate_conditioning else None
    u = rest[-1] if config.interventions else None
    if device is not None:
        fs = None if fs is None else fs.to(device)
        u = None if u is None else u.to(device)
    return fs, u


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
        for x, mask, *rest in loader.epoch_batches():
            x, mask = x.to(device), mask.to(device)
            fs, u = batch_inputs(rest, model.config, device)
            with amp():
                loss = model(x, mask, fs=fs, interventions=u)["loss"].float()
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
    model_cfg, cfg = prepared.model, prepared.train
    run_dir = Run(cfg.out)
    run = run_dir.root
    device, world, rank = compute.device, compute.world_size, compute.rank
    _share_cpu_threads(compute)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and device.type == "cuda")
    amp = (lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext

    checkpoints = Checkpointer(run, rank, world, cfg.keep_checkpoints)
    # a resumed run takes its weights from the checkpoint: --init-from only starts a fresh one
    fresh = not (prepared.resume and checkpoints.latest() is not None)
    model, optimizer, total_batch, peak_lr = _build(model_cfg, cfg, device, world, init=fresh)
    loader = CorpusLoader(_loader_config(model_cfg, cfg, cfg.split, True, prepared.weighted), rank, world)
    val_loader = (CorpusLoader(_loader_config(model_cfg, cfg, cfg.val_split, False, False), rank, world)
                  if prepared.has_val and cfg.val_split else None)
    per_epoch = _epoch_steps(loader.expected_samples(), cfg, world)
    state, resumed_from = _resume(checkpoints, prepared, model, optimizer, loader, say)

    if compute.master:
        run.mkdir(parents=True, exist_ok=True)
        checkpoints.dir.mkdir(exist_ok=True)
        run_dir.write_info(RunInfo(
            model=model_cfg.to_dict(), train={k: v for k, v in cfg.to_dict().items() if k not in ("corpus", "out")},
            world_size=world, total_batch=total_batch, peak_lr=peak_lr, weighted=prepared.weighted,
            corpus=_corpus_fingerprint(cfg.corpus), remark=cfg.remark, status="running",
            parameters=sum(p.numel() for p in model.parameters()), device=str(device),
            precision="bf16" if bf16 else "fp32", torch=torch.__version__))
    barrier()
    logger = _Logger(run_dir, cfg, compute.master, resumed_from if prepared.resume else None)
    net = wrap_ddp(model, compute)
    model.train()
    if compute.master:
        say(f"training {sum(p.numel() for p in model.parameters()):,} parameters on {world} x {device.type} "
            f"({'bf16' if bf16 else 'fp32'}), total batch {total_batch}, peak lr {peak_lr:.3g}, "
            f"~{per_epoch} steps per epoch")

    loop = _Loop(cfg=cfg, model_cfg=model_cfg, compute=compute, model=model, net=net, optimizer=optimizer,
                 loader=loader, val_loader=val_loader, amp=amp, peak_lr=peak_lr, per_epoch=per_epoch, state=state,
                 logger=logger, checkpoints=checkpoints, say=say, progress=progress)
    loop.run()

    digests = all_gather(_param_digest(model))
    skipped_rows = int(all_sum([loader.skipped])[0])
    seconds = time.perf_counter() - loop.t_start
    if compute.master:
        model.save_pretrained(run_dir.model_dir)
        run_dir.write_info(dataclasses.replace(
            run_dir.require_info(), status="finished", steps=state.step, epochs_done=state.epoch,
            param_digests=digests, windows=state.windows, step_seconds=round(state.step_seconds, 3),
            skipped_steps=state.skipped_steps, skipped_batches=state.skipped_batches, skipped_rows=skipped_rows,
            val_loss=state.val_loss, train_loss=state.last_loss))
        logger.write({"event": "end", "step": state.step, "param_digests": digests,
                      "seconds": round(seconds, 3)})
    logger.close()
    barrier()
    return TrainResult(run=run, model_dir=run_dir.model_dir, world_size=world, epochs=state.epoch,
                       steps=state.step, samples=state.samples, train_loss=state.last_loss,
                       val_loss=state.val_loss,
                       skipped_steps=state.skipped_steps, skipped_batches=state.skipped_batches,
                       skipped_rows=skipped_rows, seconds=seconds, resumed_from=resumed_from)


def _share_cpu_threads(compute: Compute) -> None:
    """Several CPU processes on one machine share its cores (unless OMP_NUM_THREADS says otherwise)."""
    world = compute.world_size
    if compute.device.type == "cpu" and world > 1 and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))


def _build(model_cfg: ModelConfig, cfg: TrainConfig, device: torch.device,
           world: int, init: bool = True) -> tuple[Model, torch.optim.Optimizer, int, float]:
    """The initial model (with ``init``, from ``--init-from``'s weights when given) and its optimizer, the
    total batch and the peak learning rate."""
    # every rank builds the same initial model from the seed (DDP also broadcasts rank 0's)
    torch.manual_seed(cfg.seed)
    model = Model(model_cfg)
    if init and cfg.init_from is not None:
        _init_weights(model, cfg.init_from)
    model = model.to(device)
    total_batch = cfg.batch_size * cfg.accum_iter * world
    peak_lr = cfg.lr if cfg.lr is not None else cfg.blr * total_batch / 256
    optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=peak_lr, betas=(0.9, 0.95),
                                  fused=device.type == "cuda")
    return model, optimizer, total_batch, peak_lr


def _resume(checkpoints: Checkpointer, prepared: Prepared, model: Model, optimizer: torch.optim.Optimizer,
            loader: CorpusLoader, say) -> tuple[LoopState, int | None]:
    """The loop's state to start from, and the step resumed from: the latest checkpoint's when resuming
    (the model, optimizer, loader and RNG restored from it), else a fresh state."""
    run, cfg = checkpoints.run, prepared.train
    good = checkpoints.latest_good(say) if prepared.resume else None
    if good is None:
        if prepared.resume:
            say(f"{run}: no checkpoint yet, starting from the beginning")
        return LoopState(), None
    path, ckpt = good
    state = LoopState.from_dict(checkpoints.load(path, model, optimizer, loader, ckpt))
    say(f"resuming {run} from {path.name} ({state.epoch} of {cfg.epochs} epochs done, step {state.step})")
    return state, state.step


@dataclass(eq=False)
class _Loop:
    """One rank's passes over the epochs left: the steps, their log lines, the checkpoints, each epoch's end."""

    cfg: TrainConfig
    model_cfg: ModelConfig
    compute: Compute
    model: Model
    net: torch.nn.Module
    """The model, wrapped by DDP under several processes."""
    optimizer: torch.optim.Optimizer
    loader: CorpusLoader
    val_loader: CorpusLoader | None
    amp: Callable[[], Any]
    """A fresh autocast context (or a null one) per forward pass."""
    peak_lr: float
    per_epoch: int
    """Optimizer steps per epoch, in expectation (places a step within its epoch)."""
    state: LoopState
    logger: _Logger
    checkpoints: Checkpointer
    say: Callable[[str], None]
    progress: bool

    def __post_init__(self) -> None:
        from tqdm.auto import tqdm

        total = self.per_epoch * self.cfg.epochs
        self.bar = tqdm(total=total, initial=min(self.state.step, total), desc="pretrain", unit="step",
                        disable=not (self.progress and self.compute.master), dynamic_ncols=True)
        self.t_start = time.perf_counter()
        self.t_log, self.windows_since = time.perf_counter(), 0  # windows per second since the last log line

    def run(self) -> None:
        while self.state.epoch < self.cfg.epochs:
            self._epoch(self.state.epoch)
        self.bar.close()

    def _epoch(self, epoch: int) -> None:
        cfg, state = self.cfg, self.state
        batches_iter = self.loader.epoch_batches()
        ended = False
        while not ended:
            t_step = time.perf_counter()  # a step's time includes waiting for its batches
            batches = list(itertools.islice(batches_iter, cfg.accum_iter))
            n = all_min(len(batches))
            if n == 0:
                break
            ended = n < cfg.accum_iter
            step = self._step(epoch, batches[:n])
            state.count_step(step.totals, step.loss, step.taken, time.perf_counter() - t_step)
            self.windows_since += int(step.totals.windows)
            self.bar.update(1)
            if state.step % cfg.log_every == 0 or ended:
                self._log_step(epoch, step)
            if cfg.save_every_steps and state.step % cfg.save_every_steps == 0 and not ended:
                self._save("step")
        batches_iter.close()
        # the epoch ends for every rank when the first runs out (its extra batches are left for no one)
        self._end_epoch(epoch)

    def _step(self, epoch: int, batches: list) -> _Step:
        """One optimizer step over its micro-batches; skipped when a loss or the gradient norm is not finite."""
        cfg, optimizer = self.cfg, self.optimizer
        # place in the epoch from the global step count, so every rank sets the same learning rate
        frac = min(self.state.epoch_step / self.per_epoch, 0.999999)
        lr = lr_at(epoch + frac, self.peak_lr, cfg)
        for g in optimizer.param_groups:
            g["lr"] = lr
        acc = _DeviceTotals(self.compute.device)
        for i, (x, mask, *rest) in enumerate(batches):
            self._micro_step(x, mask, len(batches), i == len(batches) - 1, acc, *batch_inputs(rest, self.model.config))
        # gradients are now identical on every rank, so is their norm; a non-finite one skips the step
        clip = cfg.clip_grad if cfg.clip_grad is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip))
        totals = acc.read()
        samples = int(totals.samples)
        if totals.bad_losses > 0 or not math.isfinite(grad_norm):
            optimizer.zero_grad(set_to_none=True)
            return _Step(frac, lr, grad_norm, totals, None, taken=False)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return _Step(frac, lr, grad_norm, totals, totals.loss / samples if samples else None, taken=True)

    def _micro_step(self, x: torch.Tensor, mask: torch.Tensor, n: int, last: bool, acc: _DeviceTotals,
                    fs: torch.Tensor | None = None, u: torch.Tensor | None = None) -> None:
        """Forward and backward of one of a step's ``n`` micro-batches (DDP all-reduces on the ``last``); ``fs``
        the samples' rates for a rate-conditioned model, ``u`` their interventions for a model with inputs."""
        device = self.compute.device
        x, mask = x.to(device, non_blocking=True), mask.to(device, non_blocking=True)
        fs = None if fs is None else fs.to(device, non_blocking=True)
        u = None if u is None else u.to(device, non_blocking=True)
        # a batch with a non-finite value still runs forward and backward (DDP needs every rank's
        # gradients), zeroed and with its loss weighted by 0
        finite = torch.isfinite(x).all()
        x = torch.where(finite, x, torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))
        weight = finite.to(torch.float64)
        sync = contextlib.nullcontext() if (not self.compute.ddp or last) else self.net.no_sync()
        with sync:
            with self.amp():
                out = self.net(x, mask, fs=fs, interventions=u)
            loss = out["loss"].float()
            (loss * (weight.float() / n)).backward()
        acc.add(out, x, mask, finite, weight, loss)

    def _log_step(self, epoch: int, step: _Step) -> None:
        state = self.state
        now = time.perf_counter()
        wps = self.windows_since / max(now - self.t_log, 1e-9)
        self.t_log, self.windows_since = now, 0
        rec = {"event": "step", "step": state.step, "epoch": epoch,
               "epoch_progress": round(step.frac, 6), "lr": step.lr, "grad_norm": step.grad_norm,
               "loss": step.loss, "samples": state.samples, "windows_per_s": round(wps, 2),
               "skipped_steps": state.skipped_steps, "skipped_batches": state.skipped_batches}
        samples = int(step.totals.samples)
        if samples:
            rec.update({k: getattr(step.totals, k) / samples for k in _TERMS[1:]})
        self.logger.write(rec, {"train/loss": step.loss, "train/lr": step.lr, "train/grad_norm": step.grad_norm,
                                "train/windows_per_s": wps}, state.step)
        if step.loss is not None:
            self.bar.set_postfix(loss=f"{step.loss:.4f}", win_s=f"{wps:.0f}")

    def _end_epoch(self, epoch: int) -> None:
        """Validate, log the epoch, move on to the next, and checkpoint when due."""
        cfg, state = self.cfg, self.state
        train_loss = state.epoch_train_loss
        val_loss = state.val_loss = _val_loss(self.model, self.val_loader, self.compute.device, self.amp)
        skipped_rows = int(all_sum([self.loader.skipped])[0])
        self.logger.write({"event": "epoch", "epoch": epoch, "step": state.step, "train_loss": train_loss,
                           "val_loss": val_loss, "steps": state.epoch_steps, "skipped_rows": skipped_rows,
                           "seconds": round(time.perf_counter() - self.t_start, 3)},
                          {"epoch/train_loss": train_loss, "epoch/val_loss": val_loss}, state.step)
        self.say(f"epoch {epoch + 1}/{cfg.epochs}: train loss "
                 f"{train_loss if train_loss is None else f'{train_loss:.4f}'}"
                 + (f", val loss {val_loss:.4f}" if val_loss is not None else ""))
        state.next_epoch()
        self.loader.set_epoch(epoch + 1)
        if (epoch + 1) % cfg.save_every_epoch == 0 or epoch + 1 == cfg.epochs:
            self._save("epoch")

    def _save(self, tag: str) -> None:
        self.logger.flush()  # what TensorBoard holds is on disk (or its full disk reported) with each checkpoint
        self.checkpoints.save(step=self.state.step, tag=tag, model=self.model, optimizer=self.optimizer,
                              loader=self.loader, state=self.state.to_dict(), model_config=self.model_cfg.to_dict())


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
    try:
        launch(nproc, "nw2.model.train", [str(settings)])
    except LaunchFailed as exc:
        raise Nw2Error(f"{run}: {exc.failed} of {nproc} training processes failed"
                       + (f" ({exc.detail})" if exc.detail else "; see the output above")) from None
    finally:
        settings.unlink(missing_ok=True)
    return None


def _main(argv: list[str]) -> int:
    """``python -m nw2.model.train SETTINGS.json``: one rank of a run started by :func:`pretrain`."""
    data = json.loads(Path(argv[0]).read_text())
    prepared = Prepared.from_dict(data["prepared"])
    record_errors(train)(prepared, progress=bool(data.get("progress", True)))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
