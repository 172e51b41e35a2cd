"""Forecasting baselines trained on the training split: a direct multi-horizon linear model and a small MLP.

Both see a context the way the model does (the protocol's ``context`` samples before the origin) and predict
the next ``Hmax`` samples at once (direct multi-horizon, no recursion), in the context's own normalisation:

.. math::

    \\tilde x = (x - x_{n-1}) / s, \\qquad s = \\operatorname{std}(x) \\text{ (1 when } s < 10^{-8}\\text{)},
    \\qquad \\hat y = x_{n-1} + s \\, f(\\tilde x)

(NLinear's subtraction of the last value, Zeng et al. 2023, with the context's spread as the unit, as RevIN
does, so one fit serves windows of any level and scale).

- :class:`LinearBaseline` (``linear``): :math:`f(\\tilde x) = \\tilde x W + b`, ridge least squares in
  closed form; the ridge strength is chosen among :data:`RIDGE_GRID` (times the mean diagonal of
  :math:`\\tilde X^\\top \\tilde X / N`) on a held-out tenth of the training rows. DLinear's trend and
  remainder branches are two linear maps of the same context, so their sum is one linear map: this is the
  linear family of both.
- :class:`MLPBaseline` (``mlp``): :math:`f` = the linear map fitted on the non-held-out rows (frozen) plus two
  hidden layers of :data:`MLP_HIDDEN` GELU units whose output layer starts at zero, trained with AdamW on the
  MSE for :data:`MLP_STEPS` steps of :data:`MLP_BATCH` pairs; the weights of the step with the lowest held-out
  MSE (checked every :data:`MLP_CHECK` steps, step 0 being that linear map) are kept.

Training pairs (:func:`training_pairs`): from each training row, contexts ending at origins spaced
:data:`PAIR_STRIDE` samples apart from the protocol's origin to the last that leaves ``Hmax`` samples of
truth. The held-out tenth is a seeded choice of the rows' groups (subjects, where the caller gives them: the
windows of one recording are not independent), else of rows; pairs of one row never straddle it.
Everything is seeded, so one fit gives the same forecasts every time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["TRAINED_BASELINES", "RIDGE_GRID", "MLP_HIDDEN", "MLP_STEPS", "MLP_BATCH", "PAIR_STRIDE",
           "MAX_TRAIN_PAIRS", "normalize_context", "training_pairs", "LinearBaseline", "MLPBaseline",
           "fit_trained_baselines"]

#: Names of the trained baselines, in report order.
TRAINED_BASELINES = ("linear", "mlp")
#: Ridge strengths tried, relative to the mean diagonal of the normalised contexts' Gram matrix.
RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
#: Hidden units per layer of the MLP.
MLP_HIDDEN = 256
#: Adam steps, batch, learning rate, and how often the held-out MSE is checked.
MLP_STEPS, MLP_BATCH, MLP_LR, MLP_CHECK = 3000, 256, 1e-3, 250
#: AdamW's decoupled weight decay of the MLP.
MLP_WEIGHT_DECAY = 0.05
#: Spacing in samples of the forecast origins taken from one training row.
PAIR_STRIDE = 32
#: Most training pairs (the stage takes a seeded uniform sample of rows that gives at most this many).
MAX_TRAIN_PAIRS = 50000
#: Share of the training rows held out to choose the ridge strength and the MLP's step.
HOLDOUT = 0.1
#: Spread below which a context counts as flat (its unit is then 1).
FLAT = 1e-8


def normalize_context(ctx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x_tilde, last, s)`` of contexts ``ctx`` (B, n): see the module's formula; float64."""
    x = np.asarray(ctx, dtype=np.float64)
    last = x[:, -1:]
    s = x.std(axis=1, keepdims=True)
    s = np.where(s < FLAT, 1.0, s)
    return (x - last) / s, last, s


def training_pairs(x: np.ndarray, origin: int, context: int, horizon: int, stride: int = PAIR_STRIDE
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Contexts (P, context) and futures (P, horizon) from rows ``x`` (R, L): origins ``origin``,
    ``origin + stride``, ... while ``origin + horizon <= L``; row-major (every origin of row 0 first)."""
    R, L = x.shape
    origins = np.arange(origin, L - horizon + 1, stride)
    if origins.size == 0 or origin < context:
        return np.zeros((0, context)), np.zeros((0, horizon))
    ctx = np.stack([x[:, t - context:t] for t in origins], axis=1).reshape(-1, context)
    fut = np.stack([x[:, t:t + horizon] for t in origins], axis=1).reshape(-1, horizon)
    return ctx, fut


def _targets(ctx: np.ndarray, fut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xt, last, s = normalize_context(ctx)
    return xt, (np.asarray(fut, np.float64) - last) / s


def _ridge(X: np.ndarray, Y: np.ndarray, rel: float) -> tuple[np.ndarray, np.ndarray]:
    """Ridge least squares with intercept: ``(W, b)``, strength ``rel`` times the mean diagonal of the
    centred Gram matrix over N."""
    mx, my = X.mean(0), Y.mean(0)
    Xc = X - mx
    gram = Xc.T @ Xc / max(1, X.shape[0])
    lam = rel * float(np.mean(np.diag(gram)) or 1.0)
    w = np.linalg.solve(gram + lam * np.eye(gram.shape[0]), Xc.T @ (Y - my) / max(1, X.shape[0]))
    return w, my - mx @ w


@dataclass
class LinearBaseline:
    """``linear``: direct multi-horizon ridge regression on the normalised context (see the module)."""

    weight: np.ndarray      # (context, horizon)
    bias: np.ndarray        # (horizon,)
    ridge: float            # the chosen strength, relative (an entry of RIDGE_GRID)
    holdout_mse: float      # in normalised units, on the held-out rows

    name = "linear"

    @classmethod
    def fit(cls, ctx: np.ndarray, fut: np.ndarray, holdout: np.ndarray) -> "LinearBaseline":
        """Fit on the pairs not in ``holdout`` (a boolean mask over pairs), choose the ridge strength on
        those in it, then refit on all pairs with that strength."""
        X, Y = _targets(ctx, fut)

        def solve(mask: np.ndarray, rel: float) -> tuple[np.ndarray, np.ndarray]:
            return _ridge(X[mask], Y[mask], rel)

        fit_rows = ~holdout
        if holdout.any() and fit_rows.any():
            errors = []
            for rel in RIDGE_GRID:
                w, b = solve(fit_rows, rel)
                errors.append(float(np.mean((X[holdout] @ w + b - Y[holdout]) ** 2)))
            best = int(np.argmin(errors))
            rel, err = RIDGE_GRID[best], errors[best]
        else:
            rel, err = RIDGE_GRID[len(RIDGE_GRID) // 2], float("nan")
        w, b = solve(np.ones(X.shape[0], bool), rel)
        return cls(w, b, float(rel), err)

    @classmethod
    def fit_rows(cls, ctx: np.ndarray, fut: np.ndarray, rows: np.ndarray, ridge: float) -> "LinearBaseline":
        """The same family fitted on the pairs ``rows`` (a boolean mask) only, with a given strength."""
        X, Y = _targets(ctx[rows], fut[rows])
        return cls(*_ridge(X, Y, ridge), float(ridge), float("nan"))

    def __call__(self, ctx: np.ndarray, h: int) -> np.ndarray:
        xt, last, s = normalize_context(ctx)
        return last + s * (xt @ self.weight[:, :h] + self.bias[:h])

    def describe(self) -> dict:
        return {"kind": "direct multi-horizon ridge on the context less its last value, over its std",
                "parameters": int(self.weight.size + self.bias.size), "ridge": self.ridge,
                "ridge_grid": list(RIDGE_GRID), "holdout_mse": self.holdout_mse}


def _residual_mlp(n_in: int, n_out: int):
    """A linear map plus a two-hidden-layer GELU network whose last layer starts at zero, so training
    starts from a linear model and the nonlinear part adds what the data support."""
    import torch

    class ResidualMLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(n_in, n_out)
            self.hidden = torch.nn.Sequential(torch.nn.Linear(n_in, MLP_HIDDEN), torch.nn.GELU(),
                                              torch.nn.Linear(MLP_HIDDEN, MLP_HIDDEN), torch.nn.GELU())
            self.out = torch.nn.Linear(MLP_HIDDEN, n_out)
            torch.nn.init.zeros_(self.out.weight)
            torch.nn.init.zeros_(self.out.bias)

        def forward(self, x):
            return self.linear(x) + self.out(self.hidden(x))

        def load_linear(self, weight: np.ndarray, bias: np.ndarray) -> None:
            with torch.no_grad():
                self.linear.weight.copy_(torch.from_numpy(weight.T.astype(np.float32)))
                self.linear.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
            self.linear.requires_grad_(False)

    return ResidualMLP()


class MLPBaseline:
    """``mlp``: a two-hidden-layer GELU network on the normalised context (see the module)."""

    name = "mlp"

    def __init__(self, net, steps_kept: int, holdout_mse: float):
        self.net = net
        self.steps_kept = steps_kept
        self.holdout_mse = holdout_mse

    @classmethod
    def fit(cls, ctx: np.ndarray, fut: np.ndarray, holdout: np.ndarray, seed: int, linear: LinearBaseline
            ) -> "MLPBaseline":
        """``linear``: the start, fitted without the held-out pairs (so step 0's held-out MSE is held out)."""
        import copy

        import torch

        X, Y = _targets(ctx, fut)
        fit_rows = np.flatnonzero(~holdout) if (~holdout).any() else np.arange(X.shape[0])
        held = np.flatnonzero(holdout)
        Xf = torch.from_numpy(X.astype(np.float32))
        Yf = torch.from_numpy(Y.astype(np.float32))
        gen = torch.Generator().manual_seed(int(seed))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = _residual_mlp(X.shape[1], Y.shape[1])
        net.load_linear(linear.weight, linear.bias)
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=MLP_LR,
                                weight_decay=MLP_WEIGHT_DECAY)
        rows = torch.from_numpy(fit_rows)

        def held_mse() -> float:
            if held.size == 0:
                return float("nan")
            with torch.no_grad():
                return float(torch.mean((net(Xf[held]) - Yf[held]) ** 2))

        best, best_step, best_state = held_mse(), 0, copy.deepcopy(net.state_dict())

        for step in range(1, MLP_STEPS + 1):
            pick = rows[torch.randint(0, rows.numel(), (min(MLP_BATCH, rows.numel()),), generator=gen)]
            loss = torch.mean((net(Xf[pick]) - Yf[pick]) ** 2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % MLP_CHECK == 0 or step == MLP_STEPS:
                err = held_mse()
                if held.size == 0 or err < best:
                    best, best_step, best_state = err, step, copy.deepcopy(net.state_dict())
        net.load_state_dict(best_state)
        net.eval()
        return cls(net, best_step, float(best))

    def __call__(self, ctx: np.ndarray, h: int) -> np.ndarray:
        import torch

        xt, last, s = normalize_context(ctx)
        with torch.no_grad():
            f = self.net(torch.from_numpy(xt.astype(np.float32))).double().numpy()
        return last + s * f[:, :h]

    def describe(self) -> dict:
        return {"kind": f"MLP {MLP_HIDDEN}-{MLP_HIDDEN} GELU on the context less its last value, over its std",
                "parameters": int(sum(p.numel() for p in self.net.parameters())), "steps": MLP_STEPS,
                "steps_kept": self.steps_kept, "batch": MLP_BATCH, "lr": MLP_LR, "weight_decay": MLP_WEIGHT_DECAY,
                "holdout_mse": self.holdout_mse}


def fit_trained_baselines(x: np.ndarray, origin: int, context: int, horizon: int, seed: int, groups=None
                          ) -> tuple[dict, dict]:
    """Fit both baselines on training rows ``x`` (R, L): ``({name: forecaster}, info)`` where a forecaster
    maps ``(ctx, h)`` to a forecast like the baselines of :mod:`.baselines`, and ``info`` describes the fit
    for ``metrics.json``. ``groups`` (R,) labels rows that are not independent (a subject's windows): the
    held-out tenth is then a tenth of the groups when there are at least two. Raises ``ValueError`` when the
    rows give no pair."""
    R = x.shape[0]
    ctx, fut = training_pairs(x, origin, context, horizon)
    if ctx.shape[0] == 0:
        raise ValueError(f"training rows of {x.shape[1]} samples give no context of {context} and horizon "
                         f"of {horizon} at origin {origin}")
    per_row = ctx.shape[0] // R
    rng = np.random.default_rng([seed, 2])
    held_rows = np.zeros(R, bool)
    names, code = np.unique(np.asarray(groups, dtype=str), return_inverse=True) if groups is not None else ([], None)
    by = "group" if len(names) >= 2 else "row"
    if by == "group":
        held = rng.choice(len(names), max(1, int(round(HOLDOUT * len(names)))), replace=False)
        held_rows[np.isin(code.reshape(-1), held)] = True
    elif R >= 10:
        held_rows[rng.choice(R, max(1, int(round(HOLDOUT * R))), replace=False)] = True
    holdout = np.repeat(held_rows, per_row)
    linear = LinearBaseline.fit(ctx, fut, holdout)
    start = LinearBaseline.fit_rows(ctx, fut, ~holdout, linear.ridge) if holdout.any() else linear
    mlp = MLPBaseline.fit(ctx, fut, holdout, seed, start)
    info = {"train_rows": int(R), "pairs": int(ctx.shape[0]), "pairs_per_row": int(per_row),
            "pair_stride": PAIR_STRIDE, "holdout_by": by, "holdout_rows": int(held_rows.sum()),
            "holdout_groups": int(len(held)) if by == "group" else None, "seed": int(seed),
            "normalization": "context less its last value, over the context's std",
            "linear": linear.describe(), "mlp": mlp.describe()}
    return {"linear": linear, "mlp": mlp}, info
