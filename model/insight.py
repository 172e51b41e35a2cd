"""The model's in-context "insight": a linear forecast fitted on the context itself, gated per patch.

A window's own past often says more about its next second than everything seen in pretraining: a smooth
respiration or EDA trace is continued almost exactly by an AR(16) fitted on the context, which the learned
latent transition (the pretrained "intuition") only approximates. So every decoded patch ``d_j`` (``j`` patches
ahead) is blended with the same stretch of the in-context linear forecast ``a_j``::

    y_j = g_j * a_j + (1 - g_j) * d_j,     g_j = sigmoid(MLP([LayerNorm(h_j), s, log j]))  in (0, 1)^P

where ``h_j`` is the rolled-out latent that ``d_j`` decodes and ``s`` the linear forecast's skill on the context:
``log(mse + 1e-3)`` of the same fit made on the context's first three quarters and run over its last quarter
(normalised by the context's variance). The gate is trained with the rest of the model (``forward``'s
``insight`` term): from one origin per sample, the gated forecast against the window's true next patches.

The linear forecast is :func:`nw2.model.evaluate.baselines.ar_forecast`, the AR(p) baseline ``nw2 evaluate``
scores: one piece of maths for both. It has no parameters and no gradient; only the gate learns.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .evaluate.baselines import ar_forecast

#: Fewest context patches an origin of the training term may have (the skill needs a quarter of it).
MIN_PATCHES = 4
#: Added to the skill's mean squared error before the log, so a perfect fit stays finite.
SKILL_FLOOR = 1e-3


class InsightGate(nn.Module):
    """``(h_j, a_j, e_j, j) -> g_j`` in (0, 1)^P, one weight per sample of the patch (see the module)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D, P = cfg.embed_dim, cfg.patch_size
        self.norm = nn.LayerNorm(D)
        self.net = nn.Sequential(nn.Linear(D + 3, D), nn.GELU(), nn.Linear(D, P))

    def forward(self, h: torch.Tensor, ar_skill: torch.Tensor, net_skill: torch.Tensor, j: int) -> torch.Tensor:
        """``h`` (..., D) rolled latents, the two skills (..., 1), ``j`` patches ahead -> gates (..., P)."""
        lead = torch.full_like(ar_skill, math.log(j))
        f = torch.cat([self.norm(h), ar_skill.to(h.dtype), net_skill.to(h.dtype), lead.to(h.dtype)], -1)
        return torch.sigmoid(self.net(f))


def _log_skill(mse: np.ndarray | torch.Tensor):
    return np.log(mse + SKILL_FLOOR) if isinstance(mse, np.ndarray) else torch.log(mse + SKILL_FLOOR)


def local_forecast(ctx: torch.Tensor, horizon: int, order: int, patch: int,
                   leads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The in-context AR(``order``) forecast of each channel and its skill per lead.

    ``ctx`` (B, C, n) contexts -> ``(forecast (B, C, horizon), skill (B, C, leads))`` on ``ctx``'s device and
    dtype, computed in float64 without gradient. The skill at lead ``j`` is ``log(mse_j / var(x) +
    SKILL_FLOOR)``, ``mse_j`` the mean squared error over patch ``j`` of a backtest: the same fit made on the
    context without its last ``m`` samples (``m`` = the whole patches in half the context) and run over them.
    Leads past ``m`` take the last one's.
    """
    B, C, n = ctx.shape
    x = ctx.detach().reshape(B * C, n).to("cpu", torch.float64).numpy()
    forecast = ar_forecast(x, horizon, order)
    covered = max(1, (n // 2) // patch)
    m = covered * patch
    back = ar_forecast(x[:, :n - m], m, order)
    var = np.maximum(x.var(1), 1e-8)[:, None]
    per_patch = (((back - x[:, n - m:]) ** 2) / var).reshape(B * C, covered, patch).mean(-1)
    skill = _log_skill(per_patch[:, np.minimum(np.arange(leads), covered - 1)])
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(ctx.device, ctx.dtype)  # noqa: E731
    return as_tensor(forecast).view(B, C, horizon), as_tensor(skill).view(B, C, leads)


def network_skill(errors: list[torch.Tensor], context: torch.Tensor) -> torch.Tensor:
    """The decoded forecasts' own track record on the context, per lead.

    ``errors[j-1]`` (B, C, N - j) is the squared error of the lead-``j`` prediction made at each patch
    position (the rolled latent of patch ``t`` decoded, against patch ``t + j``); ``context`` (B,) the number of
    context patches of each sample. Lead ``j`` averages the positions whose target lies in the context
    (``t + j < context``); a lead without any takes the previous lead's. Returns ``log(mean + SKILL_FLOOR)``
    (B, C, leads), detached.
    """
    out, last = [], None
    for j, err in enumerate(errors, start=1):
        e = err.detach()
        n_pos = (context - j).clamp(0, e.shape[-1])  # (B,) positions 0..n_pos-1 have their target in the context
        csum = torch.cat([e.new_zeros(e.shape[:2] + (1,)), e.cumsum(-1)], -1)  # (B, C, N - j + 1)
        total = csum.gather(-1, n_pos.view(-1, 1, 1).expand(-1, e.shape[1], 1))[..., 0]
        mean = total / n_pos.clamp_min(1).to(e.dtype)[:, None]
        if last is not None:
            mean = torch.where((n_pos > 0)[:, None], mean, last)
        out.append(mean)
        last = mean
    return _log_skill(torch.stack(out, -1))


def origins(batch: int, patches: int) -> torch.Tensor:
    """Per sample, the number of context patches of its training origin: ``MIN_PATCHES + b mod (N -
    MIN_PATCHES)``, so a batch covers every origin from ``MIN_PATCHES`` to ``N - 1`` (the loader shuffles, so
    which sample gets which is arbitrary; no RNG keeps resumed runs exact). Needs ``N > MIN_PATCHES``."""
    return MIN_PATCHES + torch.arange(batch) % (patches - MIN_PATCHES)
