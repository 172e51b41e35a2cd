"""The model's in-context "insight" (``model/insight.py``): the AR forecast and its backtests against known
signals, the stacking weight, and the blend inside ``Model.predict`` (on, off, reading only the context)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nw2.model.config import ModelConfig
from nw2.model.evaluate.baselines import ar_forecast, ar_rollouts
from nw2.model.insight import local_forecasts, segment_index, stacking_weight
from nw2.model.network import Model

SMALL = dict(window_size=256, patch_size=32, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=16,
             decoder_num_heads=2, nvar=2, rollout_steps=3)


def two_sines(n: int) -> np.ndarray:
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 37.0) + 0.5 * np.sin(2 * np.pi * t / 11.0)


def test_a_sine_is_continued_exactly_from_the_end_and_from_every_patch_boundary():
    x = two_sines(512 + 160)
    ctx = torch.tensor(x[:512], dtype=torch.float64).view(1, 1, 512)
    fc, back, valid = local_forecasts(ctx, 96, 16, 32, 5)
    assert fc.shape == (1, 1, 96) and back.shape == (1, 1, 15, 160) and valid.all()
    assert np.abs(fc[0, 0].numpy() - x[512:608]).max() < 1e-3
    for t in range(15):  # the backtest from sample (t + 1) * 32 continues the same two sines
        o = (t + 1) * 32
        assert np.abs(back[0, 0, t].numpy() - x[o:o + 160]).max() < 1e-3


def test_white_noise_forecast_is_the_baseline_and_origins_too_early_for_the_recursion_are_left_out():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 256))
    fc, back, valid = local_forecasts(torch.tensor(x), 64, 16, 32, 6)
    assert np.allclose(fc.numpy().reshape(6, 64), ar_forecast(x.reshape(6, 256), 64, 16))  # one piece of maths
    assert np.array_equal(back.numpy().reshape(6, 7, 192)[:, 2], ar_rollouts(x.reshape(6, 256), [96], 192, 16)[:, 0])
    _, _, valid = local_forecasts(torch.tensor(x), 64, 16, 8, 2)  # patches of 8: the first origin has 8 < 16 lags
    assert valid.tolist() == [False] + [True] * 30
    with pytest.raises(ValueError, match="origins"):
        ar_rollouts(x[0], [8], 4, 16)


def test_the_weight_is_the_least_squares_convex_combination():
    rng = np.random.default_rng(1)
    y = torch.tensor(rng.standard_normal((1, 1, 6, 32)))
    e = torch.tensor(rng.standard_normal((1, 1, 6, 32)))
    every = torch.ones(6, dtype=torch.bool)
    assert torch.allclose(stacking_weight(y + e, y, y, every), torch.ones(1, 1, 2, dtype=torch.float64))  # exact AR: all AR
    assert torch.allclose(stacking_weight(y, y + e, y, every), torch.zeros(1, 1, 2, dtype=torch.float64))  # exact network
    assert torch.allclose(stacking_weight(y + e, y - e, y, every), torch.full((1, 1, 2), 0.5, dtype=torch.float64))  # opposite errors
    assert torch.equal(stacking_weight(y + e, y + e, y, every), torch.full((1, 1, 2), 0.5, dtype=torch.float64))  # the same forecast
    # noisy predictors: the weight is the grid's best, per half patch, over the counted origins only
    d, a = y + 0.5 * e, y + torch.tensor(rng.standard_normal((1, 1, 6, 32)))
    counted = torch.tensor([True, True, False, True, True, True])
    g = stacking_weight(d, a, y, counted)
    grid = torch.linspace(0, 1, 1001, dtype=torch.float64)
    for k, half in enumerate((slice(0, 16), slice(16, 32))):
        err = [((c * a + (1 - c) * d - y)[..., counted, half] ** 2).sum() for c in grid]
        assert float(g[0, 0, k]) == pytest.approx(float(grid[int(np.argmin(err))]), abs=2e-3)
    assert segment_index(32).tolist() == [0] * 16 + [1] * 16 and segment_index(3).tolist() == [0, 0, 1]


def test_an_untrained_model_continues_a_sine_through_its_insight_alone():
    torch.manual_seed(0)
    x = torch.tensor(two_sines(256 + 64), dtype=torch.float32)
    ctx, truth = x[:256].view(1, 256, 1), x[256:]
    on = Model(ModelConfig(**SMALL)).eval()
    off = Model(ModelConfig(**SMALL, insight_order=0)).eval()
    off.load_state_dict(on.state_dict())                        # no parameter belongs to the insight
    err_on = (on.predict(ctx, 64)[0, :, 0] - truth).pow(2).mean()
    err_off = (off.predict(ctx, 64)[0, :, 0] - truth).pow(2).mean()
    assert err_on < 1e-4 < 0.1 < err_off                        # the AR fit is exact here, the network is random
    assert torch.isfinite(on.predict(ctx, 64, adapt=True)).all()
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
    assert torch.equal(m.predict(x2[:, :192], 64, adapt=True), m.predict(x[:, :192], 64, adapt=True))
