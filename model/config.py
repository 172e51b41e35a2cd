"""The world model's configuration: one frozen dataclass, named presets, JSON round-trip.

The field names follow the NormWear-2 command line (``--embed-dim``, ``--fuse-freq``, ...) so that users of
that code recognise them; see ``docs/model.md`` for what each part of the network does.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields


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

    def __post_init__(self) -> None:
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
        if not (isinstance(self.jepa_weight, (int, float)) and self.jepa_weight >= 0):
            raise ValueError(f"ModelConfig.jepa_weight must be >= 0, got {self.jepa_weight!r}")

    def replace(self, **changes) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

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
    "base": ModelConfig(embed_dim=768, depth=12, num_heads=12, fuse_freq=2, token_level_fuse=True,
                        decoder_embed_dim=512, decoder_depth=2, decoder_num_heads=8,
                        window_size=4096, patch_size=64, nvar=10, rollout_steps=4, dropout=0.0),
}


def from_preset(name: str, **overrides) -> ModelConfig:
    """The preset ``name`` (``tiny`` or ``base``), with optional field overrides."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]
