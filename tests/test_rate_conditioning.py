"""A model conditioned on the sampling rate (``ModelConfig.rate_conditioning``): neutral at the reference rate and
before training, fed each sample's ``fs`` by the loader (resumable bit for bit), trained and evaluated on a store
of several rates, with scores reported per rate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import SMALL, nw2, ok
from nw2.model import Model
from nw2.model.config import ModelConfig
from nw2.model.data import CorpusLoader, LoaderConfig

RATES = {"ecg": 256.0, "ppg": 64.0, "resp": 100.0, "eda": 100.0}


@pytest.fixture(scope="module")
def rated_store(tmp_path_factory) -> Path:
    """pyphysio's 120 s at three rates: ECG 256 Hz, PPG 64 Hz, respiration and EDA at target_fs 100 Hz."""
    tmp = tmp_path_factory.mktemp("rated")
    spec = tmp / "rated.yaml"
    spec.write_text("name: rated\nsources: [{dataset: medical, sample: pyphysio_medical}]\n"
                    "preprocess: {target_fs: 100, rates: {ecg: 256, ppg: 64}}\n"
                    "windows: {length: 256, stride: 128}\nsplit: {train: 1.0, val: 0.0, test: 0.0}\n"
                    "metrics: {enabled: false}\n")
    ok("ingest", spec, "--out", tmp / "store", "--scheduler", "sync", "--no-progress")
    return tmp / "store"


def test_the_conditioned_model_starts_as_the_unconditioned_one_and_is_neutral_at_the_reference_rate():
    torch.manual_seed(0)
    plain = Model(ModelConfig()).eval()
    rated = Model(ModelConfig(rate_conditioning=True)).eval()
    missing, unexpected = rated.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["rate_embed.weight"] and unexpected == []
    x = torch.randn(3, 256, 2)
    assert torch.equal(rated.predict(x, 64, fs=[4.0, 100.0, 250.0]), plain.predict(x, 64))  # zero-initialised map
    with torch.no_grad():
        rated.rate_embed.weight.normal_()
    y = rated.predict(x, 64, fs=[4.0, 100.0, 250.0])
    assert torch.equal(y[1], plain.predict(x, 64)[1])          # the features vanish at reference_fs
    assert not torch.allclose(y[0], plain.predict(x, 64)[0])   # and nowhere else
    assert torch.equal(rated.predict(x, 64), rated.predict(x, 64, fs=100.0))  # no fs: the reference rate
    with pytest.raises(ValueError, match="positive number of Hz"):
        rated.predict(x, 64, fs=[4.0, 0.0, 250.0])
    with pytest.raises(ValueError, match="one rate per sample"):
        rated.predict(x, 64, fs=[4.0, 100.0])
    # a config without the conditioning is written as it was before the field existed
    assert "rate_conditioning" not in ModelConfig().to_dict() and ModelConfig(rate_conditioning=True).to_dict()["rate_conditioning"]


def test_the_loader_gives_each_sample_its_rate_and_resumes_bit_for_bit(rated_store):
    cfg = LoaderConfig(corpus=rated_store, batch_size=8, window_size=256, nvar=1, rates=True, shuffle_buffer=16)
    batches = list(CorpusLoader(cfg))
    rates = torch.cat([fs for _, _, fs in batches])
    assert sorted(set(rates.tolist())) == [64.0, 100.0, 256.0]
    import pyarrow.parquet as pq

    stored = pq.read_table(rated_store / "data", columns=["fs"])["fs"].to_numpy()
    counts = {r: int((rates == r).sum()) for r in (64.0, 100.0, 256.0)}
    assert counts == {r: int((stored == r).sum()) for r in (64.0, 100.0, 256.0)}  # each row once, with its rate
    assert counts[256.0] == 239 and counts[64.0] == 59          # 256-sample windows, stride 128, over 120 s
    first = CorpusLoader(cfg)
    it = iter(first)
    for _ in range(5):
        next(it)
    state = first.state_dict()
    resumed = CorpusLoader(cfg)
    resumed.load_state_dict(state)
    rest = list(resumed)
    for a, b in zip(rest, batches[5:]):
        assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert len(rest) == len(batches) - 5
    plain = list(CorpusLoader(LoaderConfig(corpus=rated_store, batch_size=8, window_size=256, nvar=1, shuffle_buffer=16)))
    assert all(len(b) == 2 for b in plain)                      # without rates: (x, mask), as before


def test_a_rate_conditioned_run_trains_resumes_and_is_evaluated_per_rate(rated_store, tmp_path):
    run = tmp_path / "run"
    args = ["pretrain", rated_store, "--out", run, *SMALL, "--nvar", "1", "--epochs", "2", "--blr", "1e-2",
            "--rate-conditioning"]
    ok(*args)
    model = Model.from_pretrained(run / "model")
    assert model.config.rate_conditioning and float(model.rate_embed.weight.detach().abs().sum()) > 0  # it learned a map
    assert json.loads((run / "model" / "config.json").read_text())["rate_conditioning"] is True
    ok(*args, "--resume")                                       # finished: kept as it is
    out = tmp_path / "eval"
    ok("evaluate", run, "--data", rated_store, "--split", "train", "--out", out, "--no-probe",
       "--no-trained-baselines", "--max-windows", "120", "--no-progress")
    metrics = json.loads((out / "metrics.json").read_text())
    by_rate = metrics["forecast"]["by_rate"]
    assert set(by_rate) <= {"64 Hz", "100 Hz", "256 Hz"} and len(by_rate) >= 2
    assert sum(g["windows"] for g in by_rate.values()) == metrics["data"]["evaluated"] == 120
    assert "### By sampling rate" in (out / "report.md").read_text()


def test_a_rate_conditioned_model_needs_the_rates(rated_store, tmp_path):
    """A store without an fs column cannot feed a conditioned model: said, not guessed."""
    import pyarrow.parquet as pq

    from nw2.core.errors import Nw2Error

    store = tmp_path / "nofs"
    (store / "data").mkdir(parents=True)
    for name in ("store.json", "manifest.json"):
        (store / name).write_text((rated_store / name).read_text())
    for part in (rated_store / "data").glob("*.parquet"):
        pq.write_table(pq.read_table(part).drop(["fs"]), store / "data" / part.name)
    with pytest.raises(Nw2Error, match="no fs column"):
        CorpusLoader(LoaderConfig(corpus=store, window_size=256, nvar=1, rates=True))


def test_the_shipped_checkpoint_continues_with_rate_conditioning():
    """``--init-from nw2-small --rate-conditioning``: its weights, and a rate map at zero (the model it was)."""
    from nw2.model.train import _init_config, _init_weights

    cfg = _init_config("nw2-small").replace(rate_conditioning=True)
    model = Model(cfg).eval()
    _init_weights(model, "nw2-small")
    shipped = Model.from_pretrained("nw2-small")
    x = torch.randn(2, 512, 2)
    assert torch.equal(model.predict(x, 64, fs=[4.0, 250.0]), shipped.predict(x, 64))
