"""The model's in-context "insight": a linear forecast fitted on the context itself, blended per lead.

A window's own past often says more about its next second than everything seen in pretraining: a smooth
respiration or EDA trace is continued almost exactly by an AR(16) fitted on the context, which the learned
latent transition (the pretrained "intuition") only approximates, while on chaotic or spiky signals and at long
leads the AR recursion drifts and the decoded forecast is better. So every decoded patch ``d_j`` (``j``
patches past the context) is blended with the same stretch of the in-context linear forecast ``a_j``::

    y_j = g_j * a_j + (1 - g_j) * d_j,     g_j = e_net_j / (e_net_j + e_ar_j)

the inverse-error weighting of two predictors (as ``model/adapt.py`` blends two transitions), each error
measured on the context itself, at the same lead:

- ``e_ar_j``: the mean squared error over patch ``j`` of a backtest, the same AR fit made on the context without
  its last half and run over it (normalised by the context's variance);
- ``e_net_j``: the decoded forecasts' own error at lead ``j`` over the context, the rolled latent of patch ``t``
  decoded against patch ``t + j`` wherever ``t + j`` lies in the context.

Nothing here is trained. The linear forecast is :func:`nw2.model.evaluate.baselines.ar_forecast`, the AR(p)
baseline ``nw2 evaluate`` scores: one piece of maths for both. (A learned gate, an MLP of the rolled latent and
both errors trained by its own loss term, was tried first and did worse on the bench's validation windows,
having learned mostly to distrust the AR fit at long leads on the synthetic systems that make up most of the
corpus; ``docs/model.md``.)
"""

from __future__ import annotations

import numpy as np
import torch

from .evaluate.baselines import ar_forecast

#: Smallest error either predictor is credited with, so two perfect fits share the weight evenly.
ERROR_FLOOR = 1e-6


def inverse_error_gate(ar_error: torch.Tensor, net_error: torch.Tensor) -> torch.Tensor:
    """``g = e_net / (e_net + e_ar)``: the weight of the linear forecast, from the two errors (same shape)."""
    ea, en = ar_error.clamp_min(ERROR_FLOOR), net_error.clamp_min(ERROR_FLOOR)
    return en / (en + ea)


def local_forecast(ctx: torch.Tensor, horizon: int, order: int, patch: int,
                   leads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The in-context AR(``order``) forecast of each channel and its backtest error per lead.

    ``ctx`` (B, C, n) contexts -> ``(forecast (B, C, horizon), error (B, C, leads))`` on ``ctx``'s device and
    dtype, computed in float64 without gradient. The error at lead ``j`` is ``mse_j / var(x)``, ``mse_j`` the
    mean squared error over patch ``j`` of a backtest: the same fit made on the context without its last ``m``
    samples (``m`` = the whole patches in half the context) and run over them. Leads past ``m`` take the last
    one's.
    """
    B, C, n = ctx.shape
    x = ctx.detach().reshape(B * C, n).to("cpu", torch.float64).numpy()
    forecast = ar_forecast(x, horizon, order)
    covered = max(1, (n // 2) // patch)
    m = covered * patch
    back = ar_forecast(x[:, :n - m], m, order)
    var = np.maximum(x.var(1), 1e-8)[:, None]
    per_patch = (((back - x[:, n - m:]) ** 2) / var).reshape(B * C, covered, patch).mean(-1)
    error = per_patch[:, np.minimum(np.arange(leads), covered - 1)]
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(ctx.device, ctx.dtype)  # noqa: E731
    return as_tensor(forecast).view(B, C, horizon), as_tensor(error).view(B, C, leads)
