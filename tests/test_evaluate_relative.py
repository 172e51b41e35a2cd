"""The trained baselines (model/evaluate/trained.py) and the relative scores with intervals over units
(model/evaluate/relative.py), on synthetic data with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from nw2.model.evaluate.relative import in_sample_scale, make_units, relative_section
from nw2.model.evaluate.trained import (LinearBaseline, fit_trained_baselines, normalize_context,
                                        training_pairs)


def _units(subject, system=None, dataset=None, replicates=1000, seed=0):
    n = len(subject)
    return make_units([f"w{i}" for i in range(n)], subject, [None] * n, system or [None] * n,
                      dataset or ["d"] * n, replicates=replicates, seed=seed)


def test_the_interval_is_over_units_not_windows():
    # 20 subjects of 50 windows: the subject's level dominates, the windows of one subject barely differ
    rng = np.random.default_rng(0)
    effect = rng.normal(0, 1, 20)
    subject = np.repeat(np.arange(20), 50)
    values = effect[subject] + rng.normal(0, 0.01, subject.size)
    units, info = _units([f"s{s}" for s in subject])
    assert info["units"] == 20 and info["units_by_kind"]["subject"] == 20
    got = units.interval(values, "windows")
    assert got["mean"] == pytest.approx(values.mean())
    half = (got["hi"] - got["lo"]) / 2
    # about 1.96 sd(effect) / sqrt(20) = 0.4; an interval over the 1,000 windows would be sqrt(50) times narrower
    naive = 1.96 * values.std() / np.sqrt(values.size)
    assert half > 4 * naive and 0.2 < half < 0.7, (half, naive)
    assert got["lo"] < effect.mean() < got["hi"]


def test_windows_and_groups_weigh_differently():
    # 900 windows of system A at 1.0, 100 of system B at 3.0, each window its own subject
    system = ["A"] * 900 + ["B"] * 100
    values = np.array([1.0] * 900 + [3.0] * 100)
    units, info = _units([f"s{i}" for i in range(1000)], system=system)
    assert info["groups"] == 2
    assert units.interval(values, "windows")["mean"] == pytest.approx(1.2)
    assert units.interval(values, "groups")["mean"] == pytest.approx(2.0)
    # non-finite values are left out, not counted as zero
    values[:10] = np.nan
    assert units.interval(values, "windows")["mean"] == pytest.approx((890 + 300) / 990)


def test_relative_scores_are_geometric_means_over_groups():
    # system A: the method's error is half seasonal naive's, system B: twice; geometric mean 1
    system = ["A"] * 30 + ["B"] * 30
    sn = np.ones((60, 1))
    m = np.concatenate([0.5 * np.ones((30, 1)), 2.0 * np.ones((30, 1))])
    scores = {"model": {"mse": m, "mae": m}, "seasonal_naive": {"mse": sn, "mae": sn}}
    units, info = _units([f"s{i}" for i in range(60)], system=system, replicates=200)
    rel = relative_section(scores, np.ones(60), [32], ("model", "seasonal_naive"), ("model",), units, info)
    assert rel["methods"]["model"]["mean"]["relative_mse"]["mean"] == pytest.approx(1.0)
    assert rel["methods"]["seasonal_naive"]["32"]["relative_mae"]["mean"] == pytest.approx(1.0)
    # on windows the model is worse (mean 1.25 against 1), and the interval says so
    diff = rel["against"]["model"]["seasonal_naive"]["mean"]["mse_difference"]["windows"]
    assert diff["mean"] == pytest.approx(0.25) and diff["outcome"] == "worse"
    # it wins on system A's windows only
    assert rel["against"]["model"]["seasonal_naive"]["32"]["win_rate"]["windows"]["mean"] == pytest.approx(0.5)


def test_a_better_forecaster_beats_and_one_unit_gives_no_interval():
    rng = np.random.default_rng(1)
    subject = np.repeat(np.arange(10), 20)
    base = rng.uniform(1, 2, (200, 2))
    scores = {"model": {"mse": 0.5 * base, "mae": 0.5 * base}, "ar": {"mse": base, "mae": base}}
    units, info = _units([f"s{s}" for s in subject], replicates=300)
    rel = relative_section(scores, np.ones(200), [32, 64], ("model", "ar"), ("model",), units, info)
    e = rel["against"]["model"]["ar"]
    assert e["mean"]["win_rate"]["groups"]["mean"] == 1.0
    assert e["32"]["mse_difference"]["groups"]["outcome"] == "beats" and e["64"]["mae_difference"]["windows"]["hi"] < 0
    assert "relative_mse" not in rel["methods"]["model"]["mean"]   # no seasonal naive to be relative to
    one, info = _units(["s"] * 200, replicates=300)
    rel = relative_section(scores, np.ones(200), [32, 64], ("model", "ar"), ("model",), one, info)
    diff = rel["against"]["model"]["ar"]["mean"]["mse_difference"]["windows"]
    assert info["bootstrap"]["replicates"] == 0 and diff["lo"] is None and diff["outcome"] is None


def test_the_bootstrap_is_seeded():
    subject = [f"s{i % 7}" for i in range(70)]
    values = np.random.default_rng(0).normal(size=70) + np.arange(70) % 7
    a = _units(subject, seed=3)[0].interval(values, "windows")
    assert a == _units(subject, seed=3)[0].interval(values, "windows")
    assert a != _units(subject, seed=4)[0].interval(values, "windows")


def test_in_sample_scale_is_the_seasonal_naive_error_on_the_context():
    t = np.arange(256, dtype=float)
    ramp = 0.5 * t
    sine = np.sin(2 * np.pi * t / 32)
    q = in_sample_scale(np.stack([ramp, sine, ramp]), np.array([0, 32, 8]))
    assert q[0] == pytest.approx(0.5)          # no period: lag 1
    assert np.isnan(q[1])                       # an exact period: seasonal naive is perfect, so no scale
    assert q[2] == pytest.approx(4.0)


def test_training_pairs_take_every_origin_of_every_row():
    x = np.arange(2 * 40, dtype=float).reshape(2, 40)
    ctx, fut = training_pairs(x, origin=16, context=16, horizon=8, stride=8)
    assert ctx.shape == (6, 16) and fut.shape == (6, 8)          # origins 16, 24, 32 in each row
    assert ctx[0, -1] == 15 and fut[0, 0] == 16 and ctx[2, -1] == 31 and ctx[3, 0] == 40


def _sines(n_rows: int, length: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(length)
    return rng.uniform(0.5, 3, (n_rows, 1)) * np.sin(2 * np.pi * t / 20 + rng.uniform(0, 6.3, (n_rows, 1))) \
        + rng.normal(0, 2, (n_rows, 1))


def test_the_linear_baseline_forecasts_a_sine_of_any_phase_level_and_scale(monkeypatch):
    # a sine obeys x_t = 2cos(w) x_{t-1} - x_{t-2}: a linear map of the context forecasts it exactly
    import nw2.model.evaluate.trained as trained

    monkeypatch.setattr(trained, "MLP_STEPS", 500)  # the MLP starts at the exact linear map: a short run suffices
    train, test = _sines(300, 384, 0), _sines(50, 384, 1)
    fits, info = fit_trained_baselines(train, origin=256, context=256, horizon=64, seed=0)
    assert info["pairs"] == 300 * 3 and info["holdout_rows"] == 30
    truth = test[:, 256:320]
    for name in ("linear", "mlp"):
        pred = fits[name](test[:, :256], 64)
        assert pred.shape == (50, 64)
        rel = np.mean((pred - truth) ** 2) / np.mean((truth - truth.mean(1, keepdims=True)) ** 2)
        assert rel < 0.01, (name, rel)
    # the MLP starts from the fitted linear model and keeps its best held-out step: never worse there
    assert info["mlp"]["holdout_mse"] <= info["linear"]["holdout_mse"] * (1 + 1e-6)
    # seeded: the same fit gives the same forecasts
    again, _ = fit_trained_baselines(train, origin=256, context=256, horizon=64, seed=0)
    assert np.array_equal(again["mlp"](test[:, :256], 64), fits["mlp"](test[:, :256], 64))
    assert np.array_equal(again["linear"](test[:, :256], 32), fits["linear"](test[:, :256], 32))


def test_normalisation_handles_flat_contexts():
    xt, last, s = normalize_context(np.full((2, 8), 5.0))
    assert np.all(xt == 0) and np.all(last == 5) and np.all(s == 1)
    lin = LinearBaseline(np.zeros((8, 4)), np.ones(4), 1.0, 0.0)
    assert np.allclose(lin(np.full((1, 8), 5.0), 4), 6.0)


def test_no_pair_is_refused():
    with pytest.raises(ValueError, match="no context"):
        fit_trained_baselines(np.zeros((4, 20)), origin=16, context=16, horizon=8, seed=0)


def test_valid_prediction_time_counts_the_samples_before_the_error_leaves_the_band():
    from nw2.model.evaluate.forecast import valid_samples

    truth = np.zeros((3, 10))
    f = np.zeros((3, 10))
    f[0, 4:] = 1.0          # the error jumps past 0.4 sigma at sample 4
    f[1, :] = 0.3           # never past it: the whole horizon, censored
    got = valid_samples(f, truth, np.array([1.0, 1.0, 0.0]))
    assert got[0] == 4 and got[1] == 10 and np.isnan(got[2])   # a flat context has no scale


def test_the_held_out_tenth_is_whole_subjects_when_they_are_given(monkeypatch):
    import nw2.model.evaluate.trained as trained

    monkeypatch.setattr(trained, "MLP_STEPS", 10)  # what is held out is decided before any training step
    train = _sines(60, 384, 2)
    groups = [f"s{i // 6}" for i in range(60)]           # 10 subjects of 6 windows
    _, info = fit_trained_baselines(train, origin=256, context=256, horizon=64, seed=0, groups=groups)
    assert info["holdout_by"] == "group" and info["holdout_groups"] == 1 and info["holdout_rows"] == 6
    _, info = fit_trained_baselines(train, origin=256, context=256, horizon=64, seed=0, groups=["one"] * 60)
    assert info["holdout_by"] == "row" and info["holdout_rows"] == 6
