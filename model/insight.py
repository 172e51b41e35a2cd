"""The model's in-context "insight": a linear forecast fitted on the context itself, blended by a backtest.

A window's own past often says more about its next second than everything seen in pretraining: a smooth
respiration or EDA trace is continued almost exactly by an AR(16) fitted on the context, which the learned
latent transition (the pretrained "intuition") only approximates, while on chaotic or spiky signals and at long
leads the AR recursion drifts and the decoded forecast is better. So every stretch of the decoded forecast
``d`` is blended with the same stretch of the in-context linear forecast ``a``::

    y = g * a + (1 - g) * d,     g = clip( sum (d' - y')(d' - a') / sum (d' - a')^2 , 0, 1 )

where the sums run over a backtest on the context itself, at the same lead and the same part of a patch: from
every patch boundary ``t`` inside the context, ``d'`` is the decoded forecast of the latent of patch ``t``
rolled ``j`` steps, ``a'`` the AR fit run ``j`` patches from sample ``(t + 1) P`` on the true samples before it,
and ``y'`` the context's own samples there. ``g`` is the least-squares weight of the two forecasts over those
pairs (stacking, Wolpert 1992; the optimal convex combination of two predictors, which unlike the inverse-error
rule ``e_d / (e_d + e_a)`` also uses how much their errors agree). A weight per half patch (``GATE_SPLITS``) lets
the AR fit carry the first samples after the context, where its continuity is hard to beat, and the decoded
forecast the rest. Leads longer than the context allows are given the longest measured lead's weights.

The AR fit is made once on the whole context, so its backtests are in-sample (16 coefficients from about 500
equations); the decoded forecasts are out of sample, since the encoder is causal and nothing of the window was
trained on. Nothing here is trained. The linear forecast is :func:`nw2.model.evaluate.baselines.ar_rollouts`,
the AR(p) baseline ``nw2 evaluate`` scores: one piece of maths for both. (Tried before and replaced: the
inverse-error rule above with the AR error from one refit on half the context, and a learned gate; both did
worse on the bench's held-out windows, ``docs/model.md``.)
"""

from __future__ import annotations

import numpy as np
import torch

from .evaluate.baselines import ar_rollouts

#: Weights per patch and lead: the patch's samples are split into this many consecutive stretches.
GATE_SPLITS = 2
#: Below this sum of squared differences between the two backtests (per stretch), they are the same forecast
#: and share the weight evenly.
SAME_FORECAST = 1e-12


def segment_index(patch: int, splits: int = GATE_SPLITS) -> torch.Tensor:
    """Which of ``splits`` consecutive stretches each of a patch's ``patch`` samples belongs to."""
    splits = max(1, min(int(splits), patch))
    return torch.arange(patch) * splits // patch


def stacking_weight(decoded: torch.Tensor, linear: torch.Tensor, truth: torch.Tensor, valid: torch.Tensor,
                    splits: int = GATE_SPLITS) -> torch.Tensor:
    """The least-squares convex weight of ``linear`` against ``decoded`` over backtest pairs.

    ``decoded``, ``linear``, ``truth``: (B, C, T, P) forecasts and truth from T origins at one lead; ``valid``
    (T,) which origins count. Returns ``g`` (B, C, splits) in [0, 1] minimising
    ``sum (g a + (1 - g) d - y)^2`` per stretch of the patch, 0.5 where the two backtests coincide.
    """
    seg = segment_index(decoded.shape[-1], splits).to(decoded.device)
    k = int(seg.max()) + 1
    w = valid.to(decoded.dtype)[:, None]
    gap = (decoded - linear) * w
    num = torch.zeros(decoded.shape[:2] + (k,), dtype=decoded.dtype, device=decoded.device)
    den = torch.zeros_like(num)
    num.index_add_(2, seg, (gap * (decoded - truth)).sum(2))
    den.index_add_(2, seg, (gap * gap).sum(2))
    same = den <= SAME_FORECAST
    g = torch.where(same, torch.full_like(num, 0.5), num / den.clamp_min(SAME_FORECAST))
    return g.clamp(0.0, 1.0)


def local_forecasts(ctx: torch.Tensor, horizon: int, order: int, patch: int, leads: int
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The in-context AR(``order``) forecast of each channel and its backtests from every patch boundary.

    ``ctx`` (B, C, n) contexts of ``N = n / patch`` patches -> ``(forecast (B, C, horizon), backtest (B, C,
    N - 1, leads * patch), valid (N - 1,))`` on ``ctx``'s device and dtype, computed in float64 without
    gradient: ``backtest[..., t, :]`` is the fit run from sample ``(t + 1) * patch``; ``valid[t]`` whether that
    origin has the ``p`` samples the recursion starts from (always, unless the patch is shorter than ``p``).
    """
    B, C, n = ctx.shape
    N = n // patch
    x = ctx.detach().reshape(B * C, n).to("cpu", torch.float64).numpy()
    p = max(1, min(int(order), n // 4))
    starts = [(t + 1) * patch for t in range(N - 1)]
    valid = np.array([s >= p for s in starts], dtype=bool)
    origins = [max(s, p) for s in starts] + [n]  # an invalid origin is computed from p and never counted
    runs = ar_rollouts(x, origins, max(horizon, leads * patch), order)
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(ctx.device, ctx.dtype)  # noqa: E731
    forecast = as_tensor(runs[:, -1, :horizon]).view(B, C, horizon)
    backtest = as_tensor(runs[:, :-1, :leads * patch]).view(B, C, N - 1, leads * patch)
    return forecast, backtest, torch.from_numpy(valid).to(ctx.device)
