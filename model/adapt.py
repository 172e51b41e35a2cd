"""Test-time adaptation: a latent transition fitted in closed form on the context window itself.

The pretrained transition ``f`` is the model's "intuition"; a system whose dynamics differ from training
(another frequency, a damped oscillation) gets it wrong in a consistent way that the context already shows.
For each sample and channel we fit a linear map on the context's own latent trajectory ``z_1..z_T``,

    z_{t+1} ~ A z_t + b,

by ridge regression, and blend it with ``f`` by the two predictors' estimated errors on that same trajectory.
See ``docs/model.md`` for the formulas. Everything here is a few small batched solves: no gradient steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

#: Ridge strength relative to the mean squared norm of the centred latents: lambda = RIDGE * tr(K) / n.
#: Being relative makes it independent of the latents' scale. Read as Bayesian linear regression with a
#: zero-mean Gaussian prior on A (variance s2_A) and noise variance s2, the posterior mean is this ridge
#: solution with lambda = s2 / s2_A: RIDGE = 0.1 says the prior trusts the data about ten times more than
#: "no linear structure" at the scale of one latent.
RIDGE = 0.1


@dataclass
class LinearTransition:
    """``z -> y_mean + (z - x_mean) @ W`` for each of M trajectories (W is A transposed)."""

    x_mean: torch.Tensor  # (M, D)
    y_mean: torch.Tensor  # (M, D)
    W: torch.Tensor       # (M, D, D)
    loo_error: torch.Tensor  # (M,) leave-one-out mean squared error per step, in latent space
    loo_pred: torch.Tensor   # (M, T-1, D) leave-one-out predictions of z_2..z_T

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` (M, D), or (M, ..., D) to map several latents of each trajectory at once."""
        shape = (z.shape[0],) + (1,) * (z.ndim - 2) + (z.shape[-1],)
        return self.y_mean.view(shape) + torch.einsum("m...d,mde->m...e", z - self.x_mean.view(shape), self.W)


def fit_linear_transition(z: torch.Tensor, ridge: float = RIDGE) -> LinearTransition:
    """Ridge fit of ``z[:, t+1] ~ A z[:, t] + b`` for each of the M trajectories ``z`` (M, T, D), T >= 3.

    With n = T-1 pairs and n usually below D, the dual form is the small system: with centred inputs Xc
    (n, D), targets Yc and K = Xc Xc^T, W = Xc^T (K + lambda I)^{-1} Yc. The intercept b is not penalised
    (that is what centring does). The leave-one-out error comes from the hat matrix H = K (K + lambda I)^{-1}
    (plus 1/n for the intercept): the i-th held-out residual is r_i / (1 - H_ii), so no refits are needed.
    """
    if z.ndim != 3 or z.shape[1] < 3:
        raise ValueError(f"need latent trajectories of shape (M, T>=3, D), got {tuple(z.shape)}")
    z = z.double()  # small matrices; double precision keeps the solve well conditioned
    X, Y = z[:, :-1], z[:, 1:]
    n = X.shape[1]
    x_mean, y_mean = X.mean(1), Y.mean(1)
    Xc, Yc = X - x_mean[:, None], Y - y_mean[:, None]
    K = Xc @ Xc.transpose(1, 2)
    lam = ridge * K.diagonal(dim1=1, dim2=2).mean(1).clamp_min(1e-12)
    eye = torch.eye(n, dtype=z.dtype, device=z.device)
    Kreg = K + lam[:, None, None] * eye
    coef = torch.linalg.solve(Kreg, Yc)  # dual coefficients, (M, n, D)
    W = Xc.transpose(1, 2) @ coef
    H = K @ torch.linalg.inv(Kreg)
    resid = Yc - Xc @ W
    leverage = (H.diagonal(dim1=1, dim2=2) + 1.0 / n).clamp(max=0.99)
    loo_resid = resid / (1.0 - leverage)[..., None]
    loo = loo_resid.pow(2).sum(-1).mean(1)
    dt = torch.get_default_dtype()
    return LinearTransition(x_mean.to(dt), y_mean.to(dt), W.to(dt), loo.to(dt), (Y - loo_resid).to(dt))


Score = Callable[[torch.Tensor], torch.Tensor]


def adapted_step(learned: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, score: Score | None = None,
                 ridge: float = RIDGE) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """The blended one-step transition for trajectories ``z`` (M, T, D), and the blend weights (M,).

    ``step(h) = f(h) + alpha * (A h + b - f(h))`` with ``alpha = e_f / (e_f + e_lin)``: the inverse-error
    weighting of two predictors, where ``e_f`` is the learned transition's one-step error on the context
    (an honest out-of-sample figure: ``f`` never saw this window) and ``e_lin`` the linear fit's
    leave-one-out error. ``score(pred)`` maps predictions of z_2..z_T (M, T-1, D) to an error per
    trajectory (M,); the model passes the forecast error of the decoded predictions against the true
    next patches, because the decoder ignores latent directions that a latent-space error would count.
    Without ``score`` the error is the squared latent distance. Where the pretrained dynamics fit the
    context, alpha stays near 0.
    """
    lin = fit_linear_transition(z, ridge)
    if score is None:
        score = lambda pred: (pred - z[:, 1:]).pow(2).sum(-1).mean(1)  # noqa: E731
    with torch.no_grad():
        e_f, e_lin = score(learned(z[:, :-1])), score(lin.loo_pred)
    alpha = e_f / (e_f + e_lin).clamp_min(1e-12)

    def step(h: torch.Tensor) -> torch.Tensor:  # h (M, D) or (M, ..., D)
        f_h = learned(h)
        return f_h + alpha.view((-1,) + (1,) * (h.ndim - 1)) * (lin(h) - f_h)

    return step, alpha
