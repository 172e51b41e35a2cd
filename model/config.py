"""The configurations: the world model's (:class:`ModelConfig`, named presets, JSON round-trip) and its
training's (:class:`TrainConfig`), frozen dataclasses that own their defaults and choices.

The field names follow the NormWear-2 command line (``--embed-dim``, ``--fuse-freq``, ...) so that users of
that code recognise them; see ``docs/model.md`` for what each part of the network does. A field with a fixed
set of values is annotated ``Literal[...]`` and checked against it (:func:`choices`). This module imports
no torch: the command line reads these fields to make its options (``model/cli_options.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from nw2.core.errors import Nw2Error


@dataclass(frozen=True)
class ModelConfig:
    """Shape and objective of :class:`model.network.Model`. Defaults are the ``tiny`` preset."""

    embed_dim: int = 64
    """Width of the encoder's tokens and of the latent state."""
    depth: int = 2
    """Number of encoder layers (causal self-attention over time within each channel)."""
    num_heads: int = 4
    """Attention heads in each encoder layer; must divide ``embed_dim``."""
    fuse_freq: int = 1
    """A cross-channel fusion layer follows every ``fuse_freq``-th encoder layer; 0 turns fusion off."""
    token_level_fuse: bool = True
    """True: each token attends to the other channels' tokens at the same time step. False: the cheaper
    variant that adds a pooled (mean over valid channels) summary of each time step back into every token."""
    decoder_embed_dim: int = 32
    """Width of the light decoder that turns latents back into signal patches."""
    decoder_depth: int = 1
    """Number of decoder layers (attention across channels at one time step)."""
    decoder_num_heads: int = 2
    """Attention heads in each decoder layer; must divide ``decoder_embed_dim``."""
    window_size: int = 512
    """Longest input in samples per channel; the learned time position embedding has
    ``window_size // patch_size`` slots."""
    patch_size: int = 32
    """Samples per patch token; must divide ``window_size``. Forecasts advance one patch per latent step."""
    nvar: int = 4
    """Most channels per sample (slots of the channel embedding); fewer are passed with a channel mask."""
    causal: bool = True
    """Causal attention over time. Must stay True: the objective forecasts patch t+1 from the latent of
    patch t, which bidirectional attention would let see its own target."""
    jepa: bool = True
    """Add the JEPA-style latent-prediction term: rolled-out latents vs the encoder's latents of the true
    future (stop-gradient on the target)."""
    rollout_steps: int = 4
    """k of the k-step latent rollout: the transition is applied up to k times and every horizon is scored."""
    mlp_ratio: float = 4.0
    """Hidden width of every MLP as a multiple of its input width."""
    dropout: float = 0.0
    """Dropout in attention outputs and MLPs during training."""
    jepa_weight: float = 0.1
    """Weight of the JEPA term in the total loss (ignored when ``jepa`` is False)."""
    insight_order: int = 16
    """Order p of the in-context linear forecast (an AR(p) least-squares fit on the context itself, the
    model's test-time "insight") blended with the decoded forecast by the weight that best combines the
    two predictors' backtests on the context (``model/insight.py``); 0 turns it off. Nothing of it is
    trained."""

    rate_conditioning: bool = False
    """Condition on the sampling rate, so one corpus can hold windows of several rates: features of
    ``log2(fs / reference_fs)`` pass through a learned linear map (initialised at zero, so a model starts as the
    unconditioned one) added to every token. Batches then carry each sample's ``fs``."""
    reference_fs: float = 100.0
    """The rate a sample without one is taken at, and where the rate features vanish."""
    interventions: int = 0
    """Known-ahead intervention inputs per sample (continuous: the forcing of a forced system, a dose or
    activity schedule), encoded into the shared latent: each patch of them drives the latent transition that
    steps into it, so ``predict(..., interventions=...)`` conditions on their known future. 0: none."""
    intervention_dropout: float = 0.25
    """Share of training samples whose interventions are withheld (as if absent), so the model also forecasts
    windows that have none."""
    intervention_inputs: tuple[str, ...] | str = ()
    """What the ``interventions`` inputs are, in order: a continuous known-ahead intervention's stored channel name
    (``forcing``) or one category of a categorical one (``activity=3``: 1 in that category, else 0; not
    normalised). ``nw2 pretrain --intervention-inputs forcing,activity`` names them (a categorical name becomes one
    input per category of the corpus) and sets ``interventions`` to their count; ``()``: unnamed (the Python API)."""

    def __post_init__(self) -> None:
        names = self.intervention_inputs
        if isinstance(names, str):  # the command line's comma-separated form
            names = tuple(n.strip() for n in names.split(",") if n.strip())
        elif isinstance(names, list):  # as read from config.json
            names = tuple(names)
        object.__setattr__(self, "intervention_inputs", names)
        self.validate()

    @property
    def num_patches(self) -> int:
        """Patch tokens per channel in a full window."""
        return self.window_size // self.patch_size

    def validate(self) -> None:
        """Raise ValueError naming the field when the configuration cannot build a working model."""
        for name in ("embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth",
                     "decoder_num_heads", "window_size", "patch_size", "nvar", "rollout_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"ModelConfig.{name} must be a positive integer, got {value!r}")
        if isinstance(self.fuse_freq, bool) or not isinstance(self.fuse_freq, int) or self.fuse_freq < 0:
            raise ValueError(f"ModelConfig.fuse_freq must be an integer >= 0 (0 = no fusion), got {self.fuse_freq!r}")
        for name in ("token_level_fuse", "causal", "jepa"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"ModelConfig.embed_dim ({self.embed_dim}) must be divisible by num_heads ({self.num_heads})")
        if self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError(f"ModelConfig.decoder_embed_dim ({self.decoder_embed_dim}) must be divisible by "
                             f"decoder_num_heads ({self.decoder_num_heads})")
        if self.window_size % self.patch_size:
            raise ValueError(f"ModelConfig.window_size ({self.window_size}) must be a multiple of patch_size ({self.patch_size})")
        if self.rollout_steps >= self.num_patches:
            raise ValueError(f"ModelConfig.rollout_steps ({self.rollout_steps}) must be below the number of patches "
                             f"per window ({self.num_patches})")
        if not self.causal:
            raise ValueError("ModelConfig.causal=False is not supported: the forecasting objective predicts patch t+1 "
                             "from the latent of patch t, and bidirectional attention would let it see that target")
        if not (isinstance(self.mlp_ratio, (int, float)) and self.mlp_ratio > 0):
            raise ValueError(f"ModelConfig.mlp_ratio must be > 0, got {self.mlp_ratio!r}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.rate_conditioning, bool):
            raise ValueError(f"ModelConfig.rate_conditioning must be a bool, got {self.rate_conditioning!r}")
        if isinstance(self.reference_fs, bool) or not isinstance(self.reference_fs, (int, float)) or not self.reference_fs > 0:
            raise ValueError(f"ModelConfig.reference_fs must be a positive number of Hz, got {self.reference_fs!r}")
        if isinstance(self.interventions, bool) or not isinstance(self.interventions, int) or self.interventions < 0:
            raise ValueError(f"ModelConfig.interventions must be an integer >= 0 (0 = none), got {self.interventions!r}")
        names = self.intervention_inputs
        if not isinstance(names, tuple) or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"ModelConfig.intervention_inputs must be names (strings), got {names!r}")
        if names and len(names) != self.interventions:
            raise ValueError(f"ModelConfig.intervention_inputs names {len(names)} input(s) and interventions is "
                             f"{self.interventions}: they must agree")
        if len(set(names)) != len(names):
            raise ValueError(f"ModelConfig.intervention_inputs: each input once, got {names!r}")
        if not (isinstance(self.intervention_dropout, (int, float)) and 0.0 <= self.intervention_dropout < 1.0):
            raise ValueError(f"ModelConfig.intervention_dropout must be in [0, 1), got {self.intervention_dropout!r}")
        if isinstance(self.insight_order, bool) or not isinstance(self.insight_order, int) or self.insight_order < 0:
            raise ValueError(f"ModelConfig.insight_order must be an integer >= 0 (0 = off), got {self.insight_order!r}")
        if not (isinstance(self.jepa_weight, (int, float)) and self.jepa_weight >= 0):
            raise ValueError(f"ModelConfig.jepa_weight must be >= 0, got {self.jepa_weight!r}")

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Every field, except the rate conditioning's and the interventions' while they are off: configs and
        run fingerprints written before they existed stay what they were."""
        d = dataclasses.asdict(self)
        if not self.rate_conditioning:
            d.pop("rate_conditioning")
            if self.reference_fs == 100.0:
                d.pop("reference_fs")
        if not self.interventions:
            d.pop("interventions")
            if self.intervention_dropout == 0.25:
                d.pop("intervention_dropout")
        if not self.intervention_inputs:
            d.pop("intervention_inputs")
        else:
            d["intervention_inputs"] = list(self.intervention_inputs)
        return d

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        """Build from a dict (as read from ``config.json``); unknown keys are an error, missing ones take
        the ``tiny`` defaults."""
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig field(s): {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"model config is not valid JSON: {exc}") from None
        return cls.from_dict(data)


#: Named presets. ``base`` is the published NormWear-2 scale; its patch of 64 samples gives 64 tokens per
#: channel over a 4096-sample window (640 tokens for 10 channels), about half a second of signal per token at
#: the 100-250 Hz rates of most wearable channels. ``tiny`` trains in minutes on 2 CPU cores.
PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(),
    "small": ModelConfig(nvar=2, rollout_steps=8),
    "base": ModelConfig(embed_dim=768, depth=12, num_heads=12, fuse_freq=2, token_level_fuse=True,
                        decoder_embed_dim=512, decoder_depth=2, decoder_num_heads=8,
                        window_size=4096, patch_size=64, nvar=10, rollout_steps=4, dropout=0.0),
}


def from_preset(name: str, **overrides) -> ModelConfig:
    """The preset ``name`` (``tiny`` or ``base``), with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


def load_model_config(config: str) -> ModelConfig:
    """The preset ``config`` (``tiny``, ``small``, ``base``), or the JSON file of ModelConfig fields at that path; a
    one-line :class:`Nw2Error` otherwise."""
    if config in PRESETS:
        return PRESETS[config]
    path = Path(config)
    if not path.is_file():
        raise Nw2Error(f"--config {config}: not a preset ({', '.join(PRESETS)}) and no such file")
    return read_model_config(path)


def read_model_config(path: Path) -> ModelConfig:
    """The ModelConfig in the JSON file ``path``; a one-line :class:`Nw2Error` naming it otherwise."""
    try:
        return ModelConfig.from_json(path.read_text())
    except ValueError as exc:
        raise Nw2Error(f"{path}: {exc}") from None


# ---- fields' types and choices, read from the annotations --------------------------------------------------
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def choices(cls: type, name: str) -> tuple:
    """The values a field annotated ``Literal[...]`` allows (empty for any other field)."""
    hint = _hints(cls)[name]
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else ()


def _one_of(values: tuple) -> str:
    """``a, b or c``."""
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has a field's annotated type (a bool is no int; an int does for a float)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return any(value == v and type(value) is type(v) for v in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _kind(hint: Any) -> str:
    """What a type hint asks for, in words (for an error message)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_kind(arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return _one_of(typing.get_args(hint))
    return {type(None): "null", bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


@dataclass(frozen=True)
class TrainConfig:
    """How ``nw2 pretrain`` trains (names follow NormWear-2's flags where they apply)."""

    corpus: str
    """The corpus directory (``nw2 balance`` output; a window store also works, unweighted)."""
    out: str
    """The run directory: configs, logs, checkpoints and the saved model."""
    batch_size: int = 64
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
    blr: float = 4e-3
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
    random_crop: bool = True
    """Train on a random stretch of each corpus window longer than the model's window (a new one every
    epoch, seeded) rather than always its start; validation always reads the start."""
    weighted: bool | None = None
    """Sample by the corpus's ``sample_weight`` (None: when the column exists)."""
    split: str = "train"
    """The split trained on."""
    val_split: str | None = "val"
    """Split whose loss is measured after every epoch (skipped when the corpus has none; None: never)."""
    init_from: str | None = None
    """Start from the weights of a saved model (a run's ``model/`` directory, or a checkpoint shipped with
    nw2 by name, ``nw2-small``) instead of a random initialisation; the run takes that model's config."""
    seed: int = 0
    """Seeds the model's initialisation and the loader."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` (CUDA when available), ``cpu`` or ``cuda``."""
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    """``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` or ``fp32``."""
    log_dir: str | None = None
    """TensorBoard directory (default ``RUN/tensorboard``)."""
    log_every: int = 10
    """Write a step line to ``log.jsonl`` and TensorBoard every this many optimizer steps."""
    remark: str = ""
    """A note kept in ``run.json`` and the logs (NormWear-2's ``--remark``)."""

    def __post_init__(self) -> None:
        def flag(name: str) -> str:
            return f"--{name.replace('_', '-')}"

        def positive(name: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise Nw2Error(f"{flag(name)} must be a positive integer, got {v!r}")

        for name in ("batch_size", "accum_iter", "epochs", "save_every_epoch", "log_every"):
            positive(name)
        for name in ("save_every_steps", "keep_checkpoints", "num_workers", "shuffle_buffer"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise Nw2Error(f"{flag(name)} must be an integer >= 0, got {v!r}")
        for name in ("blr", "min_lr", "weight_decay", "warmup_epochs"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise Nw2Error(f"{flag(name)} must be a finite number >= 0, got {v!r}")
        for name in ("lr", "clip_grad"):
            v = getattr(self, name)
            if v is not None and not (_fits(v, float) and math.isfinite(v) and v > 0):
                raise Nw2Error(f"{flag(name)} must be > 0, got {v!r}")
        hints = _hints(TrainConfig)
        for f in fields(self):
            v = getattr(self, f.name)
            allowed = choices(TrainConfig, f.name)
            if allowed and v not in allowed:
                raise Nw2Error(f"{flag(f.name)} must be {_one_of(allowed)}, got {v!r}")
            # the fields without a check of their own above (strings, flags, optional paths): their type
            if not _fits(v, hints[f.name]):
                raise Nw2Error(f"{flag(f.name)} must be {_kind(hints[f.name])}, got {v!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls(**data)
