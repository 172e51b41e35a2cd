"""The model's in-context "insight" (``model/insight.py``): the AR forecast and its backtest error against known
signals, the inverse-error weight, and the blend inside ``Model.predict`` (on, off, reading only the context)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nw2.model.config import ModelConfig
from nw2.model.evaluate.baselines import ar_forecast
from nw2.model.insight import ERROR_FLOOR, inverse_error_gate, local_forecast
from nw2.model.network import Model

SMALL = dict(window_size=256, patch_size=32, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=16,
             decoder_num_heads=2, nvar=2, rollout_steps=3)


def two_sines(n: int) -> np.ndarray:
    t = np.arange(n)
    return np.sin(2 * np.pi * t / 37.0) + 0.5 * np.sin(2 * np.pi * t / 11.0)


def test_a_sine_is_continued_exactly_and_its_backtest_error_is_nil():
    x = two_sines(512 + 96)
    ctx = torch.tensor(x[:512], dtype=torch.float32).view(1, 1, 512)
    fc, err = local_forecast(ctx, 96, 16, 32, 5)
    assert fc.shape == (1, 1, 96) and err.shape == (1, 1, 5)
    assert np.abs(fc[0, 0].numpy() - x[512:]).max() < 1e-3
    assert (err < 1e-6).all()


def test_white_noise_backtests_at_its_variance_and_the_forecast_is_the_baseline():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 256))
    fc, err = local_forecast(torch.tensor(x), 64, 16, 32, 6)
    assert np.allclose(fc.numpy().reshape(6, 64), ar_forecast(x.reshape(6, 256), 64, 16))  # one piece of maths
    assert ((err > 0.5) & (err < 2.0)).all()                    # about the variance: no skill
    # the backtest covers half the context (4 patches); longer leads repeat the last one's error
    assert torch.equal(err[..., 4], err[..., 3]) and torch.equal(err[..., 5], err[..., 3])


def test_the_weight_is_the_inverse_error_rule():
    ar, net = torch.tensor([0.1, 1.0, 0.0, 3.0]), torch.tensor([0.9, 1.0, 0.0, 1.0])
    assert torch.allclose(inverse_error_gate(ar, net), torch.tensor([0.9, 0.5, 0.5, 0.25]))
    assert inverse_error_gate(torch.tensor([0.0]), torch.tensor([1.0])) == pytest.approx(1.0, abs=ERROR_FLOOR * 2)


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
