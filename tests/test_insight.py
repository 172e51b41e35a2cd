"""The model's in-context "insight" (``model/insight.py``): the AR forecast and its backtest skill against known
signals, the decoded forecasts' skill against a plain loop, the training origins, and the gate wired into
``Model`` (on, off, causal)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from nw2.model.config import ModelConfig
from nw2.model.evaluate.baselines import ar_forecast
from nw2.model.insight import MIN_PATCHES, SKILL_FLOOR, local_forecast, network_skill, origins
from nw2.model.network import Model

SMALL = dict(window_size=256, patch_size=32, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=16,
             decoder_num_heads=2, nvar=2, rollout_steps=3)


def test_a_sine_is_continued_exactly_and_its_skill_is_the_floor():
    t = np.arange(512 + 96)
    x = np.sin(2 * np.pi * t / 37.0) + 0.5 * np.sin(2 * np.pi * t / 11.0)
    ctx = torch.tensor(x[:512], dtype=torch.float32).view(1, 1, 512)
    fc, skill = local_forecast(ctx, 96, 16, 32, 5)
    assert fc.shape == (1, 1, 96) and skill.shape == (1, 1, 5)
    assert np.abs(fc[0, 0].numpy() - x[512:]).max() < 1e-3
    assert torch.allclose(skill, torch.full_like(skill, math.log(SKILL_FLOOR)), atol=1e-3)


def test_white_noise_has_no_skill_and_the_forecast_is_the_baseline():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 256))
    fc, skill = local_forecast(torch.tensor(x), 64, 16, 32, 6)
    assert np.allclose(fc.numpy().reshape(6, 64), ar_forecast(x.reshape(6, 256), 64, 16))  # one piece of maths
    # the backtest's error is about the variance: log(1) = 0; leads past the backtest's 4 patches repeat the last
    assert (skill.abs() < 0.7).all()
    assert torch.equal(skill[..., 4], skill[..., 3]) and torch.equal(skill[..., 5], skill[..., 3])


def test_network_skill_matches_a_loop():
    g = torch.Generator().manual_seed(0)
    B, C, N, k = 5, 2, 9, 4
    errors = [torch.rand(B, C, N - j, generator=g) for j in range(1, k + 1)]
    context = torch.tensor([2, 3, 4, 6, 9])
    got = network_skill(errors, context)
    want = torch.empty(B, C, k)
    for b in range(B):
        prev = None
        for j in range(1, k + 1):
            n = min(max(int(context[b]) - j, 0), N - j)
            val = errors[j - 1][b, :, :n].mean(-1) if n else prev
            want[b, :, j - 1] = val
            prev = val
    assert torch.allclose(got, torch.log(want + SKILL_FLOOR))


def test_origins_cover_every_context_length():
    t0 = origins(40, 16)
    assert set(t0.tolist()) == set(range(MIN_PATCHES, 16))


def test_the_gate_is_part_of_the_model_and_can_be_turned_off():
    x = torch.randn(3, 256, 2)
    on, off = Model(ModelConfig(**SMALL)), Model(ModelConfig(**SMALL, insight_order=0))
    assert on.insight is not None and off.insight is None
    assert on(x)["insight"] > 0 and off(x)["insight"] == 0
    for m in (on, off):
        m.eval()
        y = m.predict(x, 100)
        assert y.shape == (3, 100, 2) and torch.isfinite(y).all()
        assert torch.isfinite(m.predict(x, 100, adapt=True)).all()
    with pytest.raises(ValueError, match="insight_order"):
        ModelConfig(insight_order=-1)


def test_the_forecast_reads_only_the_context():
    torch.manual_seed(0)
    m = Model(ModelConfig(**SMALL)).eval()
    x = torch.randn(2, 256, 2)
    y = m.predict(x[:, :192], 64)
    x2 = x.clone()
    x2[:, 192:] = 100.0  # what follows the context cannot change the forecast made from it
    assert torch.equal(m.predict(x2[:, :192], 64), y)
    # a gate that trusts the linear forecast fully returns the AR forecast of the context
    with torch.no_grad():
        m.insight.net[-1].weight.zero_()
        m.insight.net[-1].bias.fill_(50.0)
    got = m.predict(x[:, :192], 64)
    ctx = x[:, :192].permute(0, 2, 1).reshape(4, 192).double().numpy()
    want = torch.tensor(ar_forecast(ctx, 64, 16)).view(2, 2, 64).permute(0, 2, 1)
    assert torch.allclose(got.double(), want, atol=1e-4)
