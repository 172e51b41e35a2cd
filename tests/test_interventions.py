"""Known-ahead interventions in the latent (``ModelConfig.interventions``): a forcing whose future is given drives the
transition, on a fixture whose answer is known: a damped oscillator driven by a force that switches at random times
(``x'' + 2 zeta w x' + w^2 x = w^2 u(t)``), whose response to a switch inside the horizon no context can foretell."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import signal as sps

from nw2.model import Model
from nw2.model.config import ModelConfig

W, H = 256, 64
SHAPE = dict(window_size=W, patch_size=16, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=16,
             decoder_num_heads=2, nvar=1, rollout_steps=6)


def driven(count: int, length: int, seed: int, period: float = 20.0, zeta: float = 0.15):
    """``count`` windows (x, u) of the driven oscillator, u piecewise constant with switches every 40-120 samples."""
    w = 2 * np.pi / period
    b, a, _ = sps.cont2discrete(([w * w], [1, 2 * zeta * w, w * w]), 1.0, method="zoh")
    rng = np.random.default_rng(seed)
    xs, us = [], []
    for _ in range(count):
        n = length + 200
        u, t = np.empty(n), 0
        while t < n:
            d = int(rng.integers(40, 120))
            u[t:t + d] = rng.standard_normal()
            t += d
        x = sps.lfilter(np.squeeze(b), a, u) + 0.02 * rng.standard_normal(n)
        xs.append(x[200:])  # past the start-up transient
        us.append(u[200:])
    return np.stack(xs).astype(np.float32), np.stack(us).astype(np.float32)


def free(count: int, length: int, seed: int) -> np.ndarray:
    """Windows with no intervention at all: noisy sines of random period, phase and amplitude."""
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return np.stack([rng.uniform(0.5, 2) * np.sin(2 * np.pi * t / rng.uniform(12, 40) + rng.uniform(0, 2 * np.pi))
                     + 0.05 * rng.standard_normal(length) for _ in range(count)]).astype(np.float32)


def trained(interventions: int, steps: int = 120) -> Model:
    """A model trained on half driven windows (with their forcing when it has an input for it) and half free ones
    (forcing NaN: none). ``insight_order=0``: the in-context AR fit would hide what the network learned."""
    torch.manual_seed(0)
    model = Model(ModelConfig(**SHAPE, interventions=interventions, insight_order=0))
    x_driven, u_driven = driven(384, W, 0)
    x_free = free(384, W, 2)
    X = torch.from_numpy(np.concatenate([x_driven, x_free]))[:, :, None]
    U = torch.from_numpy(np.concatenate([u_driven, np.full_like(x_free, np.nan)]))[:, :, None]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        i = torch.randint(0, len(X), (32,), generator=g)
        loss = model(X[i], interventions=U[i] if interventions else None)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def models():
    return trained(1), trained(0)


def mse(pred: torch.Tensor, truth: np.ndarray) -> float:
    return float(((pred[:, :, 0].numpy() - truth) ** 2).mean())


def test_the_known_future_forcing_lowers_the_error_by_at_least_30_percent_where_it_switches(models):
    model, _ = models
    x, u = driven(200, W + H, 1)
    switches = np.array([np.any(np.diff(row[W - 1:]) != 0) for row in u])  # a switch inside the horizon
    assert switches.sum() > 100
    ctx, truth = torch.from_numpy(x[switches, :W])[:, :, None], x[switches, W:]
    without = mse(model.predict(ctx, H), truth)
    known = mse(model.predict(ctx, H, interventions=torch.from_numpy(u[switches])[:, :, None]), truth)
    print(f"switch inside the horizon: MSE {known:.3f} with the known force, {without:.3f} without")  # -s shows it
    assert known <= 0.7 * without, (known, without)            # measured: 0.26 against 0.99
    adapted = mse(model.predict(ctx, H, adapt=True, interventions=torch.from_numpy(u[switches])[:, :, None]), truth)
    assert adapted <= 0.7 * without


def test_an_intervention_model_loses_nothing_on_windows_that_have_none(models):
    model, plain = models
    x = free(100, W + H, 3)
    ctx, truth = torch.from_numpy(x[:, :W])[:, :, None], x[:, W:]
    mine, theirs = mse(model.predict(ctx, H), truth), mse(plain.predict(ctx, H), truth)
    print(f"free windows: MSE {mine:.3f} with intervention inputs, {theirs:.3f} without")
    assert mine <= 1.15 * theirs, (mine, theirs)               # measured: 0.52 against 0.63
    nan = torch.full((100, W + H, 1), float("nan"))            # NaN interventions are none, exactly
    assert torch.equal(model.predict(ctx, H, interventions=nan), model.predict(ctx, H))


def test_absent_interventions_leave_the_model_as_it_was_and_bad_ones_are_refused():
    torch.manual_seed(0)
    model = Model(ModelConfig(**SHAPE, interventions=2)).eval()
    plain = Model(ModelConfig(**SHAPE)).eval()
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["intervention_embed.weight"] and unexpected == []
    x, u = torch.randn(3, W, 1), torch.randn(3, W + H, 2)
    assert torch.equal(model.predict(x, H, interventions=u), plain.predict(x, H))  # the map starts at zero
    with torch.no_grad():
        model.intervention_embed.weight.normal_()
    assert not torch.allclose(model.predict(x, H, interventions=u), plain.predict(x, H))
    assert torch.equal(model.predict(x, H), plain.predict(x, H))                   # none given: unconditioned
    with pytest.raises(ValueError, match="cover the context and the forecast"):
        model.predict(x, H, interventions=u[:, :W + H - 1])
    with pytest.raises(ValueError, match="interventions must have shape"):
        model(x, interventions=torch.randn(3, W, 1))
    assert "interventions" not in ModelConfig().to_dict() and ModelConfig(interventions=1).to_dict()["interventions"] == 1
    with pytest.raises(ValueError, match="intervention_dropout"):
        ModelConfig(interventions=1, intervention_dropout=1.0)


def test_interventions_past_the_horizon_do_not_change_the_forecast_and_misuse_is_named():
    torch.manual_seed(0)
    model = Model(ModelConfig(**SHAPE, interventions=1)).eval()
    with torch.no_grad():
        model.intervention_embed.weight.normal_()
    x, u = torch.randn(2, 150, 1), torch.randn(2, 150 + 32, 1)
    short = model.predict(x, 10, interventions=u[:, :160])
    assert torch.equal(short, model.predict(x, 10, interventions=u))                 # samples past 160 unused
    assert torch.equal(model.predict(x, 10, adapt=True, interventions=u[:, :160]),
                       model.predict(x, 10, adapt=True, interventions=u))
    with pytest.raises(ValueError, match=r"shape \(2, at least 160, 1\), got \(2, 160, 3\)"):
        model.predict(x, 10, interventions=torch.randn(2, 160, 3))
    plain = Model(ModelConfig(**SHAPE)).eval()
    with pytest.raises(ValueError, match="no intervention inputs"):
        plain.predict(x, 10, interventions=u)


def test_nw2_pretrain_refuses_a_model_whose_interventions_it_cannot_feed(tmp_path):
    from nw2.core.errors import Nw2Error
    from nw2.model.train import resolve

    config = tmp_path / "iv.json"
    config.write_text(ModelConfig(**SHAPE, interventions=1).to_json())
    with pytest.raises(Nw2Error, match="names none: name the corpus's known interventions with --intervention-inputs"):
        resolve(tmp_path / "corpus", tmp_path / "run", str(config), {})
