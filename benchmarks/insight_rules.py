#!/usr/bin/env python
"""How the model's insight weighs its two forecasts: the rule in ``model/insight.py`` against the ones it replaced.

On the same weights and the same held-out windows (the protocol of ``nw2 evaluate``: the model window's context
before the common origin, the longest horizon after it, on the stored samples), it scores the decoded forecast
blended with the in-context AR(16) forecast under each rule:

- ``network``: the decoded forecast alone (``insight_order=0``);
- ``ar``: the AR(16) forecast alone (the ``ar`` baseline);
- ``inverse_error``: ``g_j = e_net_j / (e_net_j + e_ar_j)`` per lead ``j``, ``e_ar_j`` the backtest error of one
  AR refit on the context without its last half, ``e_net_j`` the decoded forecasts' error at lead ``j`` over
  the context (the rule up to commit ``3fd361f``);
- ``stacking/1``, ``stacking/2``, ``stacking/4``: the least-squares convex weight over the backtests from every
  patch boundary (:func:`nw2.model.insight.stacking_weight`), per whole patch, half patch (the rule ``predict``
  uses) and quarter patch;
- ``free/2``: the same backtests, two non-negative weights that need not sum to one (they can also shrink
  towards the context's mean).

It prints MSE and MAE at every horizon for each rule. Usage::

    .venv/bin/python benchmarks/insight_rules.py --model nw2-small --data B --windows real
    .venv/bin/python benchmarks/insight_rules.py --model runs/demo/run/model --data runs/demo/store
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import polars as pl
import torch

from nw2.model import Model
from nw2.model.evaluate.baselines import ar_forecast
from nw2.model.evaluate.data import open_source, read_meta, stream_samples
from nw2.model.evaluate.forecast import default_horizons, plan
from nw2.model.insight import local_forecasts, segment_index, stacking_weight


def windows(data: str, splits: tuple[str, ...], kind: str, max_windows: int | None, seed: int, model: Model):
    """(contexts, truths, protocol) of the rows of ``splits`` of one kind (real: no ground-truth system)."""
    source = open_source(data)
    meta = read_meta(source, splits)
    if kind != "all" and "system" in meta.columns:
        synthetic = pl.col("system").is_not_null()
        meta = meta.filter(~synthetic if kind == "real" else synthetic)
    if max_windows and meta.height > max_windows:
        meta = meta[np.sort(np.random.default_rng(seed).choice(meta.height, max_windows, replace=False))]
    cfg = model.config
    proto = plan(cfg.window_size, cfg.patch_size, default_horizons(cfg.window_size, cfg.patch_size),
                 int(meta.get_column("length").min()), False)
    xs = [x[ok] for _, x, ok in stream_samples(source, meta, 256, proto.need)]
    x = np.concatenate(xs)
    return x[:, proto.origin - proto.context:proto.origin], x[:, proto.origin:proto.origin + proto.max_horizon], proto


def inverse_error_weights(model: Model, z, p, mask, steps: int) -> torch.Tensor:
    """The rule up to commit 3fd361f: (B, C, steps) weights of the AR forecast."""
    B, C, N, P = p.shape
    x = p.reshape(B * C, N * P).double().numpy()
    n = N * P
    covered = max(1, (n // 2) // P)
    m = covered * P
    back = ar_forecast(x[:, :n - m], m, model.config.insight_order)
    var = np.maximum(x.var(1), 1e-8)[:, None]
    per_patch = (((back - x[:, n - m:]) ** 2) / var).reshape(B * C, covered, P).mean(-1)
    e_ar = torch.from_numpy(per_patch[:, np.minimum(np.arange(steps), covered - 1)]).view(B, C, steps)
    h, errors = z, []
    for j in range(1, min(steps, N - 1) + 1):
        h = model.transition(h[:, :, :-1])
        errors.append((model.decoder(h, mask) - p[:, :, j:]).pow(2).mean((-1, -2)).double())
    e_net = torch.stack(errors, -1)
    if e_net.shape[-1] < steps:
        e_net = torch.cat([e_net, e_net[..., -1:].expand(B, C, steps - e_net.shape[-1])], -1)
    ea, en = e_ar.clamp_min(1e-6), e_net.clamp_min(1e-6)
    return en / (en + ea)


def backtest_pairs(model: Model, z, p, mask, steps: int):
    """Per lead: (decoded, AR, truth, valid) over the context's origins, as ``Model._insight`` forms them."""
    B, C, N, P = p.shape
    leads = min(steps, N - 1)
    ar, back, valid = local_forecasts(p.reshape(B, C, N * P).double(), steps * P, model.config.insight_order, P, leads)
    h, pairs = z, []
    for j in range(1, leads + 1):
        h = model.transition(h[:, :, :-1])
        pairs.append((model.decoder(h, mask).double(), back[:, :, :N - j, (j - 1) * P:j * P],
                      p[:, :, j:].double(), valid[:N - j]))
    return ar, pairs


def free_weights(d, a, y, valid, splits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two non-negative least-squares weights (of the AR and the decoded backtests) per stretch."""
    seg = segment_index(d.shape[-1], splits)
    k = int(seg.max()) + 1
    w = valid.double()[:, None]

    def total(v):
        out = torch.zeros(d.shape[:2] + (k,), dtype=torch.float64)
        return out.index_add_(2, seg, (v * w).sum(2))

    saa, sdd, sad, say, sdy = total(a * a), total(d * d), total(a * d), total(a * y), total(d * y)
    det = (saa * sdd - sad ** 2).clamp_min(1e-12)
    wa, wd = (say * sdd - sdy * sad) / det, (sdy * saa - say * sad) / det
    bad = (wa < 0) | (wd < 0)
    wa1, wd1 = (say / saa.clamp_min(1e-12)).clamp_min(0), (sdy / sdd.clamp_min(1e-12)).clamp_min(0)
    ar_better = saa * wa1 ** 2 - 2 * wa1 * say < sdd * wd1 ** 2 - 2 * wd1 * sdy
    wa = torch.where(bad, torch.where(ar_better, wa1, 0.0), wa)
    wd = torch.where(bad, torch.where(ar_better, 0.0, wd1), wd)
    return wa, wd


def expand(weights: list[torch.Tensor], steps: int, P: int, splits: int) -> torch.Tensor:
    """Per-lead (B, C, k) weights -> (B, C, steps * P) per sample, longer leads taking the last one's."""
    g = torch.stack(weights, 2)
    if g.shape[2] < steps:
        g = torch.cat([g, g[:, :, -1:].expand(-1, -1, steps - g.shape[2], -1)], 2)
    return g[..., segment_index(P, splits)].reshape(g.shape[0], g.shape[1], steps * P)


def network_only(model: Model) -> Model:
    """The same weights with ``insight_order=0``: the decoded forecast alone."""
    net = Model(dataclasses.replace(model.config, insight_order=0)).eval()
    net.load_state_dict(model.state_dict())
    return net


@torch.no_grad()
def forecasts(model: Model, net_model: Model, ctx: np.ndarray, horizon: int) -> dict[str, np.ndarray]:
    """Every rule's forecast (B, horizon) of a batch of single-channel contexts, in the stored scale
    (``net_model``: :func:`network_only` of ``model``)."""
    P = model.config.patch_size
    steps = -(-horizon // P)
    x = torch.from_numpy(ctx.astype(np.float32))[:, :, None]
    z, p, mean, std, mask = model.encode(x)
    mean, std = mean[:, 0].double().numpy(), std[:, 0].double().numpy()
    d = (net_model.predict(x, steps * P)[:, :, 0].double().numpy() - mean) / std  # normalised, as blended
    ar, pairs = backtest_pairs(model, z, p, mask, steps)
    a = ar[:, 0].numpy()
    rules = {"network": d, "ar": a}
    g = inverse_error_weights(model, z, p, mask, steps)[:, 0].numpy().repeat(P, 1)
    rules["inverse_error"] = g * a + (1 - g) * d
    for k in (1, 2, 4):
        g = expand([stacking_weight(*pair, splits=k) for pair in pairs], steps, P, k)[:, 0].numpy()
        rules[f"stacking/{k}"] = g * a + (1 - g) * d
    both = [free_weights(*pair, splits=2) for pair in pairs]
    wa = expand([w[0] for w in both], steps, P, 2)[:, 0].numpy()
    wd = expand([w[1] for w in both], steps, P, 2)[:, 0].numpy()
    rules["free/2"] = wa * a + wd * d
    return {name: (f * std + mean)[:, :horizon] for name, f in rules.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="nw2-small", help="a saved model directory or a shipped name")
    ap.add_argument("--data", required=True, help="a window store or corpus")
    ap.add_argument("--split", default="val,test")
    ap.add_argument("--windows", default="all", choices=("all", "real", "synthetic"))
    ap.add_argument("--max-windows", type=int, default=None, help="a seeded sample of this many rows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = Model.from_pretrained(args.model)
    ctx, truth, proto = windows(args.data, tuple(args.split.split(",")), args.windows, args.max_windows,
                                args.seed, model)
    H = proto.max_horizon
    out: dict[str, list[np.ndarray]] = {}
    net_model = network_only(model)
    for i in range(0, len(ctx), 256):
        for name, f in forecasts(model, net_model, ctx[i:i + 256], H).items():
            out.setdefault(name, []).append(f)
    print(f"{len(ctx)} windows of {args.data} ({args.split}, {args.windows}), model {args.model}, "
          f"context {proto.context}, horizons {', '.join(map(str, proto.horizons))}")
    print(f"{'rule':15s} " + " ".join(f"{'MSE@' + str(h):>8s}" for h in proto.horizons) + "   "
          + " ".join(f"{'MAE@' + str(h):>8s}" for h in proto.horizons))
    for name, parts in out.items():
        f = np.concatenate(parts)
        err = f - truth
        mse = [float((err[:, :h] ** 2).mean()) for h in proto.horizons]
        mae = [float(np.abs(err[:, :h]).mean()) for h in proto.horizons]
        print(f"{name:15s} " + " ".join(f"{v:8.4f}" for v in mse) + "   " + " ".join(f"{v:8.4f}" for v in mae))


if __name__ == "__main__":
    main()
