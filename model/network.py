"""A NormWear-2-style world model: instance-normalised patch tokens, a causal transformer encoder with
cross-channel fusion, a latent transition rolled forward in time, and a light decoder back to patches.

Tensor layout inside: ``(B, C, N, D)`` = batch, channel, patch (time), feature. See ``docs/model.md``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .adapt import adapted_step
from .config import ModelConfig
from .insight import local_forecasts, segment_index, stacking_weight
from nw2.core.files import atomic_bytes, atomic_text

#: Floor of the per-channel standard deviation, so a flat (or padded) channel normalises to zeros.
EPS = 1e-5
WEIGHTS, CONFIG = "model.safetensors", "config.json"


#: Checkpoints that ship inside the package, by name: ``model/pretrained/<name>/`` (each with its model card,
#: ``README.md``, saying how it was trained).
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
SHIPPED = ("nw2-small",)


def model_directory(name_or_path: str | os.PathLike) -> Path:
    """The directory of a saved model: the shipped checkpoint for a shipped name (ValueError when a folder of
    that name exists here too: ambiguous), else ``name_or_path`` itself. A bare name that is neither raises
    FileNotFoundError naming both readings; a missing path is returned for the caller to report."""
    d, name = Path(name_or_path), str(name_or_path)
    if name in SHIPPED:
        if d.exists():
            raise ValueError(f"{name} names both the shipped checkpoint and ./{name} here: pass ./{name}/ for the "
                             f"folder, or run from another directory for the shipped one")
        return PRETRAINED_DIR / name
    if not d.exists() and os.sep not in name:
        raise FileNotFoundError(f"{d}: no such model directory, and not a shipped checkpoint ({', '.join(SHIPPED)})")
    return d


class Attention(nn.Module):
    """Multi-head self-attention over the second-to-last axis through ``scaled_dot_product_attention``."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, causal: bool = False, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        S, L, D = x.shape
        q, k, v = self.qkv(x).view(S, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (S, 1, 1, L): True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(S, L, D))


#: Frequencies (cycles per octave / 8) of the sampling-rate features: the rate's log2 ratio to the reference and
#: a sine and a cosine (less one) of it at each, so every feature is 0 at the reference rate.
RATE_FREQUENCIES = (1.0, 2.0, 4.0)
RATE_FEATURES = 1 + 2 * len(RATE_FREQUENCIES)


def rate_features(fs: torch.Tensor, reference: float) -> torch.Tensor:
    """``(B,)`` sampling rates (Hz) -> ``(B, RATE_FEATURES)``: ``u / 4`` and ``sin(pi f u / 8)``,
    ``cos(pi f u / 8) - 1`` for ``u = log2(fs / reference)`` (one octave is ``u = 1``)."""
    u = torch.log2(fs / reference)
    feats = [u / 4]
    for f in RATE_FREQUENCIES:
        feats += [torch.sin(math.pi * f * u / 8), torch.cos(math.pi * f * u / 8) - 1]
    return torch.stack(feats, -1)


def mlp(dim: int, ratio: float, dropout: float, out: int | None = None) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out or dim))


class Block(nn.Module):
    """Pre-norm transformer block; ``forward`` takes sequences already laid out as (S, L, D)."""

    def __init__(self, dim: int, heads: int, ratio: float, dropout: float):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.mlp = mlp(dim, ratio, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, causal=False, key_mask=None):
        x = x + self.drop(self.attn(self.norm1(x), causal=causal, key_mask=key_mask))
        return x + self.drop(self.mlp(self.norm2(x)))


def across_channels(z: torch.Tensor) -> torch.Tensor:
    """(B, C, N, D) -> (B*N, C, D): one sequence of channels per time step."""
    B, C, N, D = z.shape
    return z.permute(0, 2, 1, 3).reshape(B * N, C, D)


def from_channels(s: torch.Tensor, B: int, N: int) -> torch.Tensor:
    BN, C, D = s.shape
    return s.view(B, N, C, D).permute(0, 2, 1, 3)


class Fusion(nn.Module):
    """Cross-channel fusion at each time step; masked channels are never attended to or pooled.

    Token level: a transformer block over the channels of one time step. Pooled: the mean over valid
    channels of each time step, passed through an MLP and added to every token (one step cost per time,
    not C^2). Both mix only within a time step, so causality over time is untouched.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.token_level = cfg.token_level_fuse
        if self.token_level:
            self.block = Block(cfg.embed_dim, cfg.num_heads, cfg.mlp_ratio, cfg.dropout)
        else:
            self.norm = nn.LayerNorm(cfg.embed_dim)
            self.mix = mlp(cfg.embed_dim, cfg.mlp_ratio, cfg.dropout)

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, C, N, D = z.shape
        if self.token_level:
            key_mask = mask[:, None, :].expand(B, N, C).reshape(B * N, C)
            return from_channels(self.block(across_channels(z), key_mask=key_mask), B, N)
        w = mask[:, :, None, None].to(z.dtype)
        pooled = (self.norm(z) * w).sum(1) / w.sum(1).clamp_min(1.0)  # (B, N, D)
        return z + self.mix(pooled)[:, None]


class Transition(nn.Module):
    """The latent dynamics: a residual MLP block mapping the latent of patch t to that of patch t+1.

    Residual so that "nothing changes" is the easy default; the final LayerNorm keeps repeated application
    on the encoder's latent scale (the encoder ends with a LayerNorm too).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm = nn.LayerNorm(cfg.embed_dim)
        self.mlp = mlp(cfg.embed_dim, cfg.mlp_ratio, cfg.dropout)
        self.out = nn.LayerNorm(cfg.embed_dim)

    def forward(self, z: torch.Tensor, drive: torch.Tensor | None = None) -> torch.Tensor:
        """``drive``: the embedded interventions of the step's target patch, added to the update's input
        (broadcast against ``z``); ``None`` is no intervention."""
        return self.out(z + self.mlp(self.norm(z if drive is None else z + drive)))


class Decoder(nn.Module):
    """Light decoder: latents of one time step (all channels) -> that step's signal patches.

    Its attention runs across the channels of a time step, so decoding needs no temporal context and
    a rolled-out latent decodes exactly as a teacher-forced one does.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.inp = nn.Linear(cfg.embed_dim, cfg.decoder_embed_dim)
        self.blocks = nn.ModuleList(Block(cfg.decoder_embed_dim, cfg.decoder_num_heads, cfg.mlp_ratio, cfg.dropout)
                                    for _ in range(cfg.decoder_depth))
        self.norm = nn.LayerNorm(cfg.decoder_embed_dim)
        self.head = nn.Linear(cfg.decoder_embed_dim, cfg.patch_size)

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, C, N, _ = z.shape
        key_mask = mask[:, None, :].expand(B, N, C).reshape(B * N, C)
        s = self.inp(across_channels(z))
        for blk in self.blocks:
            s = blk(s, key_mask=key_mask)
        return from_channels(self.head(self.norm(s)), B, N)  # (B, C, N, P)


class Model(nn.Module):
    """The world model. ``forward`` returns the training losses; ``predict`` forecasts; ``embed`` encodes."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        cfg = self.config = config or ModelConfig()
        D = cfg.embed_dim
        self.patch_embed = nn.Linear(cfg.patch_size, D)  # shared by all channels
        self.time_embed = nn.Parameter(torch.randn(cfg.num_patches, D) * 0.02)
        self.channel_embed = nn.Parameter(torch.randn(cfg.nvar, D) * 0.02)
        self.blocks = nn.ModuleList(Block(D, cfg.num_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth))
        fuse_after = [i for i in range(cfg.depth) if cfg.fuse_freq and (i + 1) % cfg.fuse_freq == 0]
        self.fuse_after = fuse_after
        self.fusions = nn.ModuleDict({str(i): Fusion(cfg) for i in fuse_after})
        self.norm = nn.LayerNorm(D)
        self.transition = Transition(cfg)
        self.decoder = Decoder(cfg)
        if cfg.rate_conditioning:  # zero at first: the model starts as the unconditioned one
            self.rate_embed = nn.Linear(RATE_FEATURES, D, bias=False)
            nn.init.zeros_(self.rate_embed.weight)
        if cfg.interventions:  # per patch: K * P normalised values, K scale ratios, a presence flag
            self.intervention_embed = nn.Linear(cfg.interventions * (cfg.patch_size + 1) + 1, D, bias=False)
            nn.init.zeros_(self.intervention_embed.weight)

    # ---- input handling -------------------------------------------------------------------------
    def _check(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if x.ndim != 3:
            raise ValueError(f"expected input of shape (batch, length, channels), got {tuple(x.shape)}")
        B, L, C = x.shape
        if C > self.config.nvar:
            raise ValueError(f"{C} channels exceed the model's nvar={self.config.nvar}")
        if mask is None:
            mask = torch.ones(B, C, dtype=torch.bool, device=x.device)
        if mask.shape != (B, C):
            raise ValueError(f"channel mask must have shape {(B, C)}, got {tuple(mask.shape)}")
        mask = mask.to(device=x.device, dtype=torch.bool)
        if not bool(mask.any(1).all()):
            raise ValueError("every sample needs at least one valid channel in the mask")
        return mask

    def normalize(self, x: torch.Tensor, mask: torch.Tensor):
        """Per-sample, per-channel instance normalisation over time -> (xn, mean, std), stats (B, 1, C).

        Padded channels are zeroed first, so whatever fills them (even NaN) never reaches the network.
        """
        x = torch.where(mask[:, None, :], x, torch.zeros((), dtype=x.dtype, device=x.device))
        mean = x.mean(1, keepdim=True)
        std = x.std(1, keepdim=True, unbiased=False).clamp_min(EPS)
        return (x - mean) / std, mean, std

    def patches(self, xn: torch.Tensor) -> torch.Tensor:
        """(B, L, C) with L a multiple of the patch size -> (B, C, N, P)."""
        B, L, C = xn.shape
        P = self.config.patch_size
        return xn.permute(0, 2, 1).reshape(B, C, L // P, P)

    def rates(self, fs, batch: int, device) -> torch.Tensor:
        """``fs`` as a ``(batch,)`` float tensor: ``None`` -> ``reference_fs``, a number -> that rate for every
        sample, a sequence or tensor -> one rate per sample. ValueError for a rate that is not positive."""
        if fs is None:
            fs = self.config.reference_fs
        t = torch.as_tensor(fs, dtype=torch.float32, device=device)
        t = t.expand(batch) if t.ndim == 0 else t.reshape(-1)
        if t.shape[0] != batch:
            raise ValueError(f"fs must give one rate per sample ({batch}), got {t.shape[0]}")
        if not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
            raise ValueError("every sampling rate in fs must be a positive number of Hz")
        return t

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None, stats=None, fs=None):
        """Latents ``z`` (B, C, N, D) of a window; ``stats=(mean, std)`` overrides the window's own
        normalisation statistics (the causality test fixes them to isolate the attention); ``fs`` the samples'
        rates (with ``rate_conditioning``; ignored otherwise). Returns ``(z, patches, mean, std, mask)``."""
        mask = self._check(x, mask)
        B, L, C = x.shape
        P, N_max = self.config.patch_size, self.config.num_patches
        if L % P or L // P > N_max or L // P < 1:
            raise ValueError(f"length {L} must be a positive multiple of patch_size={P} and at most "
                             f"window_size={self.config.window_size}")
        if stats is None:
            xn, mean, std = self.normalize(x, mask)
        else:
            mean, std = stats
            xn = (torch.where(mask[:, None, :], x, torch.zeros((), dtype=x.dtype, device=x.device)) - mean) / std
        p = self.patches(xn)
        N = p.shape[2]
        z = self.patch_embed(p) + self.time_embed[:N] + self.channel_embed[:C, None, :]
        if self.config.rate_conditioning:
            z = z + self.rate_embed(rate_features(self.rates(fs, B, x.device), self.config.reference_fs))[:, None, None]
        for i, blk in enumerate(self.blocks):
            z = blk(z.reshape(B * C, N, -1), causal=True).view(B, C, N, -1)
            if i in self.fuse_after:
                z = self.fusions[str(i)](z, mask)
        return self.norm(z), p, mean, std, mask

    # ---- interventions ----------------------------------------------------------------------------
    def _categorical_inputs(self, u: torch.Tensor) -> torch.Tensor | None:
        """``(1, 1, K)`` True for the inputs that are one category of a categorical intervention (``NAME=CAT`` in
        ``intervention_inputs``), or ``None`` when none is."""
        names = self.config.intervention_inputs
        if not any("=" in n for n in names):
            return None
        return torch.tensor([["=" in n for n in names]], device=u.device)[None]

    def drive(self, u: torch.Tensor | None, std: torch.Tensor, mask: torch.Tensor,
              present: torch.Tensor | None = None, known: int | None = None) -> torch.Tensor | None:
        """The embedded interventions ``(B, T / P, D)`` of ``u`` ``(B, T, K)`` (T a multiple of the patch), or
        ``None`` without any. Each intervention channel is normalised over the span it is given on (it is known
        there, future included): ``(u - mean) / std``, its std floored at 1e-3; the log ratio of that std to the
        signal's (``std`` (B, 1, C), the mean over valid channels) keeps their relative scale; ``known``: the
        samples the statistics are taken over (the rest pads the last patch). A sample whose
        ``u`` holds a NaN has no interventions, nor has one whose ``present`` (B,) is False: its features are
        zero, so its drive is zero and the transition is the unconditioned one."""
        K = self.config.interventions
        if not K or u is None:
            return None
        B, T, k = u.shape
        P = self.config.patch_size
        if k != K or T % P:
            raise ValueError(f"interventions must have shape (batch, a multiple of {P}, {K}), got {tuple(u.shape)}")
        u = u.to(std.dtype)
        given = torch.isfinite(u).all(2).all(1)  # a sample whose interventions are NaN has none
        present = given if present is None else present & given
        u = torch.where(given[:, None, None], u, torch.zeros((), dtype=u.dtype, device=u.device))
        span = u if known is None else u[:, :known]
        mu, sd = span.mean(1, keepdim=True), span.std(1, keepdim=True, unbiased=False).clamp_min(1e-3)
        categorical = self._categorical_inputs(u)
        if categorical is not None:  # a category indicator is 0 or 1 already: its level says which category it is
            mu = torch.where(categorical, torch.zeros((), dtype=u.dtype, device=u.device), mu)
            sd = torch.where(categorical, torch.ones((), dtype=u.dtype, device=u.device), sd)
        w = mask.to(std.dtype)
        log_x = (torch.log(std[:, 0]) * w).sum(1) / w.sum(1).clamp_min(1.0)  # (B,)
        ratio = (torch.log(sd[:, 0]) - log_x[:, None]).clamp(-10, 10)       # (B, K)
        n = T // P
        patches = ((u - mu) / sd).permute(0, 2, 1).reshape(B, K, n, P).permute(0, 2, 1, 3).reshape(B, n, K * P)
        feats = torch.cat([patches, ratio[:, None].expand(B, n, K), torch.ones(B, n, 1, dtype=std.dtype,
                                                                                 device=std.device)], -1)
        return self.intervention_embed(feats * present.to(std.dtype)[:, None, None])

    # ---- training objective ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, fs=None,
                interventions: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Loss terms for a batch ``x`` (B, L, C) with optional channel mask (B, C) (True = real channel).

        forecast: MSE of decode(f(z_t)) vs patch t+1; rollout: the same for f applied j = 2..k times vs
        patch t+j (mean over j); jepa: MSE of f^j(z_t) vs stop-grad z_{t+j}, j = 1..k. All in the normalised
        signal space, all over valid channels only. ``loss`` = forecast + rollout + jepa_weight * jepa.
        """
        cfg = self.config
        z, p, _, std, mask = self.encode(x, mask, fs=fs)
        N = p.shape[2]
        present = None
        if interventions is not None and self.training and cfg.intervention_dropout > 0:
            present = torch.rand(x.shape[0], device=x.device) >= cfg.intervention_dropout
        e = self.drive(interventions, std, mask, present)  # (B, N, D) or None
        k = min(cfg.rollout_steps, N - 1)
        if k < 1:
            raise ValueError("need at least two patches per window to forecast")
        w = mask[:, :, None].to(z.dtype)  # (B, C, 1)

        def masked_mse(pred, target):  # mean over valid channels, time and features
            err = (pred - target).pow(2).mean(-1)  # (B, C, n)
            return (err * w).sum() / (w.sum() * err.shape[-1])

        target = z.detach()
        h, horizons, jepa = z, [], []
        for j in range(1, k + 1):
            # h[:, :, t] now predicts latent t + j, stepping into patch t + j under its interventions
            h = self.transition(h[:, :, :-1], None if e is None else e[:, None, j:])
            horizons.append(masked_mse(self.decoder(h, mask), p[:, :, j:]))
            if cfg.jepa:
                jepa.append(masked_mse(h, target[:, :, j:]))
        zero = z.new_zeros(())
        out = {"forecast": horizons[0],
               "rollout": torch.stack(horizons[1:]).mean() if k > 1 else zero,
               "jepa": torch.stack(jepa).mean() if jepa else zero}
        out["loss"] = out["forecast"] + out["rollout"] + cfg.jepa_weight * out["jepa"]
        return out

    def _insight(self, z: torch.Tensor, p: torch.Tensor, mask: torch.Tensor, steps: int, step, drive=None):
        """The in-context linear forecast of ``steps`` patches (B, C, steps * P) and its weight (B, C, steps, P)
        per lead and sample: the stacking weight of ``model/insight.py``, from the decoded forecasts of the
        context's own latents rolled by ``step`` (the transition the forecast uses) and the AR fit's backtests."""
        B, C, N, P = p.shape
        leads = min(steps, N - 1)  # lead j: every origin t < N - j has its target in the context
        ar, backtest, valid = local_forecasts(p.reshape(B, C, N * P), steps * P, self.config.insight_order, P, leads)
        h, weights = z, []
        for j in range(1, leads + 1):
            h = step(h[:, :, :-1], None if drive is None else drive[:, None, j:N])  # h[:, :, t] predicts t + j
            weights.append(stacking_weight(self.decoder(h, mask), backtest[:, :, :N - j, (j - 1) * P:j * P],
                                           p[:, :, j:], valid[:N - j]))
        gate = torch.stack(weights, 2)  # (B, C, leads, splits)
        if leads < steps:  # leads longer than the context: the longest measured one's weights
            gate = torch.cat([gate, gate[:, :, -1:].expand(B, C, steps - leads, gate.shape[-1])], 2)
        return ar, gate[..., segment_index(P).to(gate.device)]

    # ---- inference ------------------------------------------------------------------------------
    def _context(self, x: torch.Tensor) -> torch.Tensor:
        """The last whole patches of ``x`` that fit in one window (older samples are dropped)."""
        P = self.config.patch_size
        n = min(x.shape[1] // P * P, self.config.window_size)
        if n < 2 * P:
            raise ValueError(f"context of {x.shape[1]} samples is shorter than two patches ({2 * P})")
        return x[:, x.shape[1] - n:]

    @torch.no_grad()
    def predict(self, x: torch.Tensor, pred_length: int, adapt: bool = False,
                mask: torch.Tensor | None = None, fs=None, interventions: torch.Tensor | None = None) -> torch.Tensor:
        """Forecast the next ``pred_length`` samples of each channel from the context ``x`` (B, L, C),
        in the input's physical scale. The last latent is rolled forward one patch per step (by the
        learned transition, or with ``adapt`` the blend of ``model.adapt``), each step is decoded and,
        with ``insight_order`` > 0, blended with the context's own AR forecast by the weight that best
        combines the two predictors' backtests on the context (``model/insight.py``). Padded channels come
        back as zeros. ``fs``: the samples' sampling rates (a number or one per sample; default
        ``reference_fs``), used by a model with ``rate_conditioning``. ``interventions`` (B, L + at least
        ``pred_length``, K): a model with ``interventions`` inputs' known-ahead values over the context ``x``
        (L samples) and the forecast, which drive each step; ``None``: forecast without them."""
        if int(pred_length) < 1:
            raise ValueError(f"pred_length must be >= 1, got {pred_length}")
        P = self.config.patch_size
        steps = math.ceil(pred_length / P)
        L = x.shape[1]
        x = self._context(x)
        z, p, mean, std, mask = self.encode(x, mask, fs=fs)
        B, C, N, D = z.shape
        e = None
        if interventions is not None:
            K = self.config.interventions
            u = torch.as_tensor(interventions, device=x.device)
            if not K:
                raise ValueError("this model has no intervention inputs (ModelConfig.interventions = 0): "
                                 "forecast without interventions")
            if u.ndim != 3 or u.shape[0] != B or u.shape[2] != K or u.shape[1] < L + pred_length:
                raise ValueError(f"interventions must cover the context and the forecast: shape ({B}, at least "
                                 f"{L + pred_length}, {K}), got {tuple(u.shape)}")
            # the context and the forecast only: values past pred_length must not change it
            u = u[:, L - N * P:L + pred_length]
            known = u.shape[1]
            if known < (N + steps) * P:  # the rest of the last patch: the last known value
                u = torch.cat([u, u[:, -1:].expand(B, (N + steps) * P - known, K)], 1)
            e = self.drive(u, std, mask, known=known)  # (B, N + steps, D)
        holder = [None]  # the drive of the step being taken, for the adapted transition
        step = lambda h, d=None: self.transition(h, d)  # noqa: E731
        if adapt:
            if N < 4:
                raise ValueError("adaptation needs a context of at least four patches")
            def score(pred):  # forecast error of decoded one-step predictions, per (sample, channel)
                decoded = self.decoder(pred.view(B, C, N - 1, D), mask)
                return (decoded - p[:, :, 1:]).pow(2).mean((-1, -2)).reshape(B * C)

            def learned(hh):  # the learned transition under the drive in ``holder`` (per sample, for B * C rows)
                d = holder[0]
                return self.transition(hh, None if d is None else d.reshape((B * C,) + d.shape[2:]))

            if e is not None:  # the context's own steps, into patches 1..N-1
                holder[0] = e[:, None, 1:N].expand(B, C, N - 1, D)
            blended, _ = adapted_step(learned, z.reshape(B * C, N, D), score)

            def step(h, d=None):
                holder[0] = None if d is None else d.expand(h.shape[:2] + d.shape[2:])
                return blended(h.reshape((B * C,) + h.shape[2:])).view(h.shape)
        if self.config.insight_order:
            ar, gate = self._insight(z, p, mask, steps, self.transition, e)
        h, out = z[:, :, -1], []
        for j in range(1, steps + 1):
            h = step(h, None if e is None else e[:, None, N + j - 1])
            d = self.decoder(h[:, :, None], mask)[:, :, 0]  # (B, C, P)
            if self.config.insight_order:
                g = gate[:, :, j - 1]
                d = g * ar[:, :, (j - 1) * P:j * P] + (1 - g) * d
            out.append(d)
        y = torch.cat(out, -1)[:, :, :pred_length].transpose(1, 2)  # (B, H, C) normalised
        y = y * std + mean
        return torch.where(mask[:, None, :], y, torch.zeros((), dtype=y.dtype, device=y.device))

    @torch.no_grad()
    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None, fs=None) -> torch.Tensor:
        """(B, embed_dim): mean of the final latents over valid channels and all patches."""
        z, _, _, _, mask = self.encode(self._context(x), mask, fs=fs)
        w = mask[:, :, None, None].to(z.dtype)
        return (z * w).sum((1, 2)) / (w.sum((1, 2)) * z.shape[2])

    # ---- persistence ----------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory``, each atomically
        (temporary file + rename), weights first so a config never points at missing weights."""
        from safetensors.torch import save

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        # serialized here and written by Python, so a full disk is an OSError (one line), not safetensors' own error
        atomic_bytes(d / WEIGHTS, save(tensors, metadata={"format": "pt"}))
        atomic_text(d / CONFIG, self.config.to_json())
        return d

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str = "cpu") -> "Model":
        """Load a model written by :meth:`save_pretrained` (no pickle involved): from a directory, or by
        the name of a checkpoint shipped inside nw2 (``"nw2-small"``; :data:`SHIPPED`), offline."""
        from safetensors.torch import load_file

        d = model_directory(directory)
        for name in (WEIGHTS, CONFIG):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d / name} not found: not a saved nw2 model directory")
        model = cls(ModelConfig.from_json((d / CONFIG).read_text()))
        model.load_state_dict(load_file(str(d / WEIGHTS), device=map_location))
        return model.eval()
