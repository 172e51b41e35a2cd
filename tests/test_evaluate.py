"""``nw2 evaluate``: the report of a real tiny run on the demo store through the CLI (files, every section,
determinism, replacement, atomic writes), the Python API (summary, per-window frame), known answers end to end
on a synthetic store of sines, the baselines, spectra, AUROC and probes on cases with known answers, and
one-line errors for bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import SMALL as TRAIN_SMALL
from helpers import nw2, ok
from nw2.model.evaluate import (EvalConfig, EvalResult, SUMMARY_HIGHER_IS_BETTER, ScoreKey, ar_forecast, auroc,
                            auroc_ovr, balanced_accuracy, default_horizons, evaluate, fit_logistic, last_value,
                            log_spectral_distance, parse_horizons, per_window_column, score_keys, score_value,
                            seasonal_naive, seasonal_period, spectral_correlation, window_mean)
from nw2.model.evaluate.probe import run_classification, run_regression
from nw2.core.errors import Nw2Error


#: The tiny model of the fixture: window 256, patch 32 -> default horizons 32, 64, 128.
SMALL = [*TRAIN_SMALL, "--epochs", "1"]
PNGS = ("forecast_examples.png", "error_vs_horizon.png", "error_by_regime.png", "model_vs_baselines.png")


def one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def store(demo_store) -> Path:
    return demo_store


@pytest.fixture(scope="module")
def run(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("evaluate") / "run"
    ok("pretrain", store, "--out", out, *SMALL)
    return out


@pytest.fixture(scope="module")
def report(run, store) -> tuple[Path, str]:
    """The default report of the test split, through the CLI."""
    result = ok("evaluate", run, "--data", store, "--no-progress")
    return run / "eval-test", result.output


def write_store(root: Path, rows: list[dict], kind: str = "store") -> Path:
    """A minimal window store (or corpus) of the given rows: the columns evaluate reads, in one part."""
    (root / "data").mkdir(parents=True)
    (root / ("store.json" if kind == "store" else "corpus.json")).write_text(json.dumps({"format": "test"}))
    if kind == "store":  # a finished ingest: its manifest is there
        (root / "manifest.json").write_text(json.dumps({"schema_version": 4, "inputs": []}))
    n = len(rows)
    table = pa.table({
        "window_id": [r.get("window_id", f"w{i:04d}") for i, r in enumerate(rows)],
        "group_id": [f"g{i:04d}" for i in range(n)],
        "dataset": [r.get("dataset", "synth") for r in rows],
        "subject": [r.get("subject", "s0") for r in rows],
        "modality": [r.get("modality", "ecg") for r in rows],
        "unit": [r.get("unit", "mV") for r in rows],
        "split": [r["split"] for r in rows],
        "length": pa.array([len(r["samples"]) for r in rows], pa.int32()),
        "scale": [float(r.get("scale", 2.0)) for r in rows],
        "offset": [float(r.get("offset", 1.0)) for r in rows],
        "label": pa.array([r.get("label") for r in rows], pa.string()),
        "samples": pa.array([np.asarray(r["samples"], np.float32) for r in rows], pa.list_(pa.float32())),
    })
    for name, kind in (("system", pa.string()), ("true_lyapunov", pa.float64()), ("fs", pa.float64())):
        if any(name in r for r in rows):     # ground truth, where the rows give it
            table = table.append_column(name, pa.array([r.get(name) for r in rows], kind))
    pq.write_table(table, root / "data" / "part-00000.parquet")
    return root


def sines(n_rows: int, length: int, split: str, rng) -> list[dict]:
    """Pure sines of integer periods (8..24 samples) with random phases and amplitudes."""
    t = np.arange(length)
    out = []
    for i in range(n_rows):
        period = int(rng.integers(8, 25))
        x = rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
        out.append({"samples": x, "split": split, "modality": ("ecg", "ppg")[i % 2], "window_id": f"{split}{i:03d}"})
    return out


# -- the report through the CLI ---------------------------------------------------------------------
def test_report_files_and_every_section(report):
    out, output = report
    for name in ("metrics.json", "speed.json", "report.md") + PNGS:
        assert (out / name).is_file(), name
    for name in PNGS:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in (out / "report.md").read_text()
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) == {"format", "version", "nw2_version", "run", "data", "protocol", "forecast", "best_baseline",
                      "probe", "summary", "files", "trained_baselines"}
    assert m["format"] == "nw2-eval" and m["version"] == 3
    assert m["data"]["evaluated"] == 88 and m["data"]["splits"] == ["test"]
    assert m["protocol"]["horizons"] == [32, 64, 128] and m["protocol"]["context"] == 256
    fc = m["forecast"]
    methods = ["model", "adapted", "last_value", "seasonal_naive", "mean", "ar", "linear", "mlp"]
    assert fc["methods"] == methods
    # the trained baselines saw the train split's rows only, and say how they were fitted
    tb = m["trained_baselines"]
    assert tb["train_rows"] > 0 and tb["pairs"] == tb["train_rows"] * tb["pairs_per_row"]
    assert tb["linear"]["ridge"] in tb["linear"]["ridge_grid"] and 0 <= tb["mlp"]["steps_kept"] <= tb["mlp"]["steps"]
    # the test split is one subject: one unit, so no interval and no outcome (never one over windows)
    rel = fc["relative"]
    assert rel["units"] == 1 and rel["bootstrap"]["replicates"] == 0
    assert "no intervals (one unit)" in (out / "report.md").read_text()
    assert rel["methods"]["seasonal_naive"]["mean"]["relative_mse"]["mean"] == 1.0
    win = rel["against"]["model"]["ar"]["mean"]
    assert win["win_rate"]["windows"]["lo"] is None and win["mse_difference"]["windows"]["outcome"] is None
    for method in methods:
        assert set(fc["overall"][method]) == {"mse", "mae", "mae_physical", "lsd", "spectral_corr", "latent_distance"}
        assert all(v is not None for v in fc["overall"][method].values()), method
    assert [e["horizon"] for e in fc["by_horizon"]] == [32, 64, 128]
    assert set(fc["by_dataset"]) == {"pyphysio"} and set(fc["by_modality"]) == {"ecg", "eda", "ppg", "resp"}
    for metric in ("largest_lyapunov", "sample_entropy"):
        bins = fc["by_regime"][metric]["bins"]
        assert set(bins) == {"low", "mid", "high"} and sum(b["windows"] for b in bins.values()) == 88
    tasks = m["probe"]["tasks"]
    # the test split's windows are ECG and PPG: the probe on the embeddings tells them apart better than chance
    # (0.5 for both scores; this run: AUROC 0.77, balanced accuracy 0.68)
    assert tasks["modality"]["eval_classes"] == ["ecg", "ppg"]
    assert tasks["modality"]["auroc"] > 0.5 and tasks["modality"]["balanced_accuracy"] > 0.5
    # daphnet's windows all carry label "0": the probe names why it cannot run
    assert "one class" in tasks["label_daphnet"]["skipped"]
    assert "one class" in (out / "report.md").read_text()
    s = m["summary"]
    assert set(s) == {"forecast", "probe"} and set(s["forecast"]) == {"model", "adapted", "baselines"}
    metrics = ["mse", "mae", "mae_physical", "lsd", "spectral_corr", "latent_distance"]
    for method in ("model", "adapted"):
        assert list(s["forecast"][method]) == sorted(metrics)
        for metric, score in s["forecast"][method].items():
            # the same numbers as the forecast section: the mean over horizons, and each horizon's value
            assert score["mean"] == fc["overall"][method][metric], (method, metric)
            assert score["by_horizon"] == {str(e["horizon"]): e[method][metric] for e in fc["by_horizon"]}
    best = m["best_baseline"]
    assert list(s["forecast"]["baselines"]) == [best] and list(s["forecast"]["baselines"][best]) == ["mse"]
    assert s["forecast"]["baselines"][best]["mse"]["mean"] == min(fc["overall"][b]["mse"] for b in methods[2:])
    assert s["probe"]["modality"] == {"auroc": tasks["modality"]["auroc"],
                                      "balanced_accuracy": tasks["modality"]["balanced_accuracy"]}
    assert "label_daphnet" not in s["probe"]  # skipped: no score
    for task in ("largest_lyapunov", "sample_entropy"):
        assert s["probe"][task] == {"r2": tasks[task]["r2"]}
    keys = score_keys(s)
    assert ScoreKey("forecast", "adapted", "mse") in keys and ScoreKey("probe", "modality", "auroc") in keys
    assert score_value(s, ScoreKey("forecast", best, "mse")) == s["forecast"]["baselines"][best]["mse"]["mean"]
    assert score_value(s, ScoreKey("forecast", "model", "lsd", 64)) == fc["by_horizon"][1]["model"]["lsd"]
    assert score_value(s, ScoreKey("probe", "modality", "r2")) is None
    speed = json.loads((out / "speed.json").read_text())
    assert speed["model_windows_per_s"] > 0 and speed["baselines_windows_per_s"] > 0
    assert "windows/s: model" in output and "probe modality: AUROC" in output and "report:" in output


def test_same_inputs_give_the_same_bytes_and_a_rerun_replaces_only_the_report(report, run, store):
    out, _ = report
    first = {name: (out / name).read_bytes() for name in ("metrics.json", "report.md") + PNGS}
    # a file the earlier report did not list is not nw2's to delete: the rerun refuses, touching nothing
    (out / "mine.txt").write_text("the user's notes")
    refused = nw2("evaluate", run, "--data", store, "--no-progress")
    assert refused.exit_code == 1 and "mine.txt" in refused.output and "did not list" in refused.output
    assert (out / "mine.txt").read_text() == "the user's notes"
    (out / "mine.txt").unlink()
    (out / "report.md").write_text("edited")  # a listed file is the report's own: replaced
    ok("evaluate", run, "--data", store, "--no-progress")  # the same default --out: replaced atomically
    for name, data in first.items():
        assert (out / name).read_bytes() == data, name
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".eval-test.")]


def test_python_api_summary_and_per_window(run, store, tmp_path):
    config = EvalConfig(split="val,test", horizons=[64, 32], out=tmp_path / "r", max_windows=30, adapt=False,
                        probe=False, seed=3, trained_baselines=False)   # their fit is tested elsewhere (20 s)
    result = evaluate(run, store, config, progress=False)
    assert isinstance(result, EvalResult) and result.out == tmp_path / "r"
    assert result.metrics == json.loads((result.out / "metrics.json").read_text())
    assert result.metrics["data"]["evaluated"] == 30 and result.metrics["data"]["available"] == 108
    pw = result.per_window
    assert pw.height == 60 and pw.get_column("window_id").n_unique() == 30
    assert sorted(pw.get_column("horizon").unique().to_list()) == [32, 64]
    for col in ("window_id", "split", "dataset", "modality", "mse", "mae", "mae_physical", "lsd", "spectral_corr",
                "latent_distance", "mse_ar", "lsd_seasonal_naive"):
        assert col in pw.columns, col
    assert "mse_adapted" not in pw.columns and "adapted" not in result.summary["forecast"]
    assert result.summary["probe"] == {} and result.summary == result.metrics["summary"]
    assert result.metrics["probe"] == {"skipped": "turned off (--no-probe)"}
    # the summary is the mean over horizons of the mean over windows: a bootstrap over windows starts here
    model = result.summary["forecast"]["model"]
    for key in ("mse", "lsd", "latent_distance"):
        assert model[key]["mean"] == pytest.approx(pw.get_column(key).mean(), rel=1e-5)
        for h in (32, 64):
            assert model[key]["by_horizon"][str(h)] == pytest.approx(
                pw.filter(pl.col("horizon") == h).get_column(key).mean(), rel=1e-5)
    # mae_physical is mae times |scale| per window
    rows = pl.scan_parquet(str(store / "data" / "*.parquet")).select("window_id", "scale").collect()
    joined = pw.join(rows, on="window_id")
    assert np.allclose(joined["mae_physical"], joined["mae"] * joined["scale"].abs(), rtol=1e-9)
    best = result.metrics["best_baseline"]
    keys = score_keys(result.summary)
    assert {(k.name, k.metric) for k in keys} == {("model", m) for m in ("mse", "mae", "mae_physical", "lsd",
                                                                          "spectral_corr", "latent_distance")
                                                  } | {(best, "mse")}
    assert [k for k in keys if k.is_baseline] == [ScoreKey("forecast", best, "mse")]
    for key in keys:
        assert key.higher_is_better == (key.metric == "spectral_corr")
        # every forecast score has its per-window column, whose mean is the summary's value
        column = per_window_column(key.name, key.metric)
        assert score_value(result.summary, key) == pytest.approx(pw.get_column(column).mean(), rel=1e-5)
    assert ScoreKey("probe", "modality", "auroc").higher_is_better
    assert ScoreKey("probe", "label_x", "balanced_accuracy").higher_is_better
    assert not ScoreKey("forecast", "adapted", "mse").higher_is_better
    assert ScoreKey("forecast", "adapted", "spectral_corr").higher_is_better
    assert SUMMARY_HIGHER_IS_BETTER["lsd"] is False and SUMMARY_HIGHER_IS_BETTER["r2"] is True
    assert ScoreKey("forecast", "adapted", "mse").label == "mse_adapted"
    assert ScoreKey("probe", "modality", "auroc").label == "probe_modality_auroc"
    assert ScoreKey.from_dict(ScoreKey("forecast", "ar", "lsd", 32).to_dict()) == ScoreKey("forecast", "ar", "lsd", 32)
    with pytest.raises(ValueError, match="unknown summary metric"):
        ScoreKey("forecast", "model", "mse_adapted")
    with pytest.raises(ValueError, match="only a forecast score has a horizon"):
        ScoreKey("probe", "modality", "auroc", 32)


def test_known_answers_end_to_end_on_sines(run, tmp_path):
    rng = np.random.default_rng(0)
    test = sines(12, 512, "test", rng)
    for i, r in enumerate(test):   # a made-up ground truth: each window its own system, exponent 0.5 per second
        r.update(subject=f"s{i}", system=f"sys{i % 3}", true_lyapunov=0.5, fs=100.0)
    data = write_store(tmp_path / "sines", sines(40, 512, "train", rng) + test)
    result = evaluate(run, data, EvalConfig(out=tmp_path / "r", probe=False), progress=False)
    o = result.metrics["forecast"]["overall"]
    # exact forecasts stay valid over the whole horizon: 128 samples, 1.28 s, 0.64 Lyapunov times
    vpt = result.metrics["forecast"]["valid_prediction_time"]
    assert vpt["chaotic_windows"] == 12 and vpt["max_samples"] == 128
    sn = vpt["methods"]["seasonal_naive"]
    assert sn["samples"]["windows"]["mean"] == 128 and sn["censored_share"] == 1.0
    assert sn["lyapunov_times"]["groups"]["mean"] == pytest.approx(0.64)
    assert vpt["methods"]["last_value"]["samples"]["windows"]["mean"] < 16
    # 12 subjects in 3 systems: intervals over units, means over the 3 groups
    rel = result.metrics["forecast"]["relative"]
    assert rel["units"] == 12 and rel["groups"] == 3 and rel["bootstrap"]["replicates"] == 1000
    assert rel["against"]["model"]["seasonal_naive"]["mean"]["mse_difference"]["groups"]["outcome"] == "worse"
    # the linear baseline, fitted on 200 contexts of 40 train sines of 17 periods, learns them in part (0.30
    # against the window mean's 0.78 here; one shared linear map cannot be exact for every period)
    assert o["linear"]["mse"] < 0.6 * o["mean"]["mse"], (o["linear"]["mse"], o["mean"]["mse"])
    # the context and the truth are contiguous: repeating the last period is exact, and so is AR(16)
    assert o["seasonal_naive"]["mse"] < 1e-10 and result.metrics["forecast"]["seasonal_fallback_windows"] == 0
    assert o["seasonal_naive"]["lsd"] < 1e-6 and o["seasonal_naive"]["spectral_corr"] == pytest.approx(1.0)
    assert o["seasonal_naive"]["latent_distance"] < 1e-5
    assert o["ar"]["mse"] < 1e-6
    assert o["last_value"]["mse"] > 0.1 and o["mean"]["mse"] > 0.1
    assert result.metrics["forecast"]["by_regime"]["largest_lyapunov"]["skipped"].startswith("no largest_lyapunov")


def test_windows_of_one_kind(run, store, tmp_path):
    """``windows="real"`` keeps the recordings' rows (no ground-truth system), ``"synthetic"`` the others; a
    store of recordings only has no synthetic window, which is a one-line error naming the option."""
    rng = np.random.default_rng(1)
    test = sines(10, 512, "test", rng)
    for r in test[:4]:
        r.update(system="sine")
    data = write_store(tmp_path / "mixed", test)
    quick = dict(probe=False, adapt=False, trained_baselines=False, bootstrap=0)
    for kind, n in (("all", 10), ("synthetic", 4), ("real", 6)):
        result = evaluate(run, data, EvalConfig(out=tmp_path / kind, windows=kind, **quick), progress=False)
        assert result.metrics["data"]["evaluated"] == n and result.metrics["data"]["windows"] == kind
        systems = set(result.per_window.get_column("system").unique().to_list())
        assert systems == {"all": {"sine", None}, "synthetic": {"sine"}, "real": {None}}[kind]
    assert evaluate(run, store, EvalConfig(out=tmp_path / "demo", windows="real", max_windows=5, **quick),
                    progress=False).metrics["data"]["evaluated"] == 5
    one_line_error(nw2("evaluate", run, "--data", store, "--windows", "synthetic", "--no-progress",
                       "--out", tmp_path / "none"), "no synthetic windows in split 'test'", "--windows synthetic")


def test_a_failed_write_leaves_nothing(run, store, tmp_path, monkeypatch):
    import nw2.model.evaluate.report as report_module

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_module, "write_report", broken)
    with pytest.raises(Nw2Error, match="cannot write the report"):
        evaluate(run, store, EvalConfig(out=tmp_path / "r", max_windows=8, probe=False, adapt=False,
                                        trained_baselines=False), progress=False)
    assert list(tmp_path.iterdir()) == []


# -- bad input ----------------------------------------------------------------------------------------
def test_bad_input_gives_one_line_errors(run, store, tmp_path):
    not_run = tmp_path / "not_run"
    not_run.mkdir()
    (not_run / "run.json").write_text("{}")
    one_line_error(nw2("evaluate", not_run, "--data", store), "not a trained run: no model/",
                   "did nw2 pretrain finish?")
    one_line_error(nw2("evaluate", tmp_path / "nowhere", "--data", store), "no such run directory")
    one_line_error(nw2("evaluate", run, "--data", tmp_path), "not a corpus or window store")
    one_line_error(nw2("evaluate", run, "--data", tmp_path / "nowhere"), "no such directory")
    one_line_error(nw2("evaluate", run, "--data", store, "--split", "holdout"), "no rows of split 'holdout'")
    one_line_error(nw2("evaluate", run, "--data", store, "--horizons", "32,200"),
                   "horizon 200 is longer than half the model window (128 of 256")
    one_line_error(nw2("evaluate", run, "--data", store, "--horizons", "0"), "horizon 0 must be positive")
    one_line_error(nw2("evaluate", run, "--data", store, "--horizons", "-32"), "must be positive")
    one_line_error(nw2("evaluate", run, "--data", store, "--horizons", "abc"), "not an integer")
    one_line_error(nw2("evaluate", run, "--data", store, "--batch-size", "0"),
                   "--batch-size must be a positive integer, got 0")
    short = write_store(tmp_path / "short", [{"samples": np.zeros(128), "split": "test"}])
    one_line_error(nw2("evaluate", run, "--data", short), "windows of 128 samples are shorter than the model "
                                                           "window (256 samples)")
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    one_line_error(nw2("evaluate", run, "--data", store, "--out", taken), "not an nw2 evaluation report")
    assert (taken / "notes.txt").read_text() == "mine"
    no_model = tmp_path / "broken_run"
    shutil.copytree(run / "model", no_model / "model")
    (no_model / "model" / "model.safetensors").write_bytes(b"not weights")
    one_line_error(nw2("evaluate", no_model, "--data", store), "cannot load the model")


def test_eval_config_owns_its_defaults_checks_and_the_command_line_options():
    c = EvalConfig()
    assert (c.split, c.horizons, c.out, c.batch_size, c.max_windows, c.adapt, c.probe, c.seed, c.device,
            c.probe_train_windows) == (("test",), None, None, 64, None, True, True, 0, "cpu", 20000)
    # split and horizons take a comma-separated string or a sequence, kept normalised (and hashable)
    assert EvalConfig(split="val, test,val").split == EvalConfig(split=["val", "test"]).split == ("val", "test")
    assert EvalConfig(horizons="64, 32,64").horizons == EvalConfig(horizons=[64, 32]).horizons == (32, 64)
    assert hash(EvalConfig(horizons=[32])) == hash(EvalConfig(horizons="32"))
    assert EvalConfig(max_windows=np.int64(5)).max_windows == 5
    for kwargs, message in [({"batch_size": 0}, "--batch-size must be a positive integer, got 0"),
                            ({"batch_size": True}, "--batch-size must be a positive integer"),
                            ({"max_windows": 0}, "--max-windows must be a positive integer"),
                            ({"seed": -1}, "--seed must be an integer >= 0"),
                            ({"adapt": "yes"}, "--adapt must be true or false"),
                            ({"split": " , "}, "--split names no split"),
                            ({"horizons": ""}, "--horizons names no horizon"),
                            ({"horizons": "abc"}, "not an integer"),
                            ({"horizons": [2]}, "too short for its spectrum"),
                            ({"device": "tpu"}, "EvalConfig.device must be cpu or cuda"),
                            ({"probe_train_windows": 0}, "EvalConfig.probe_train_windows must be a positive")]:
        with pytest.raises(Nw2Error, match=re.escape(message)):
            EvalConfig(**kwargs)
    with pytest.raises(TypeError, match="must be an EvalConfig"):
        evaluate("run", "data", {"split": "test"})
    # nw2 evaluate's options are EvalConfig's fields, with its defaults
    import typer

    from nw2.cli import app

    command = typer.main.get_command(app).commands["evaluate"]
    options = {p.name: p for p in command.params}
    for name in ("split", "horizons", "out", "batch_size", "max_windows", "adapt", "probe", "seed"):
        default = getattr(EvalConfig, name)
        assert options[name].default == default, name
    assert options["out"].opts == ["--out", "-o"]


def test_the_config_and_the_command_line_start_without_torch():
    code = ("import sys, nw2.cli, nw2.model.evaluate; from nw2.model.evaluate import EvalConfig; EvalConfig(); "
            "assert 'torch' not in sys.modules, 'torch loaded'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_horizons_parse_and_defaults():
    assert default_horizons(512, 32) == (32, 64, 128, 256)
    assert default_horizons(256, 32) == (32, 64, 128)
    assert parse_horizons("64, 32,64", 512, 32) == (32, 64)
    assert parse_horizons([256], 512, 32) == (256,)
    with pytest.raises(Nw2Error, match="longer than half the model window"):
        parse_horizons("32,257", 512, 32)
    with pytest.raises(Nw2Error, match="too short for its spectrum"):
        parse_horizons("2", 512, 32)


# -- baselines ----------------------------------------------------------------------------------------
def test_last_value_and_mean_baselines():
    ctx = np.full((2, 64), 3.25)
    assert np.array_equal(last_value(ctx, 10), np.full((2, 10), 3.25))
    assert np.array_equal(window_mean(ctx, 10), np.full((2, 10), 3.25))
    ramp = np.arange(10.0)[None]
    assert np.array_equal(last_value(ramp, 3), [[9.0, 9.0, 9.0]])
    assert np.allclose(window_mean(ramp, 3), 4.5)


def test_seasonal_naive_is_exact_on_a_periodic_signal():
    rng = np.random.default_rng(1)
    for period in (5, 12, 25, 37):
        pattern = rng.normal(size=period)
        x = np.tile(pattern, 400 // period + 1)[: 256 + 100]
        ctx, future = x[:256], x[256:]
        assert seasonal_period(ctx[None])[0] == period
        pred, fell_back = seasonal_naive(ctx[None], 100)
        assert not fell_back[0] and np.allclose(pred[0], future, atol=1e-12)
    t = np.arange(300)
    sine = np.sin(2 * np.pi * t / 20)
    assert seasonal_period(sine[None, :200])[0] == 20
    # no zero crossing (a ramp) or a flat context: no period, the last value stands in
    pred, fell_back = seasonal_naive(np.stack([np.arange(100.0), np.ones(100)]), 7)
    assert fell_back.all() and np.array_equal(pred, [[99.0] * 7, [1.0] * 7])


def test_ar_baseline_is_exact_on_noiseless_ar2_and_sines():
    n, h = 256, 64
    x = np.zeros(n + h)
    x[0], x[1] = 1.0, 0.5
    for t in range(2, n + h):  # a damped oscillation: x_t = 1.6 x_{t-1} - 0.8 x_{t-2} + 0.1
        x[t] = 1.6 * x[t - 1] - 0.8 * x[t - 2] + 0.1
    assert np.allclose(ar_forecast(x[None, :n], h)[0], x[n:], atol=1e-6)
    t = np.arange(n + h)
    s = 2.0 * np.sin(2 * np.pi * t / 23.5 + 0.3) + 0.5 * np.sin(2 * np.pi * t / 7.0) + 4.0
    assert np.allclose(ar_forecast(s[None, :n], h)[0], s[n:], atol=1e-5)
    # an explosive fit is clipped to the context's range widened by its span, so it stays finite
    wild = np.exp(np.linspace(0, 5, 128))
    assert np.isfinite(ar_forecast(wild[None], 500)).all()


# -- spectra ------------------------------------------------------------------------------------------
def test_log_spectral_distance_and_spectral_correlation():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 128))
    assert np.array_equal(log_spectral_distance(x, x), np.zeros(3))
    assert np.allclose(spectral_correlation(x, x), 1.0)
    y = rng.normal(size=(3, 128))
    assert (log_spectral_distance(y, x) > 1.0).all()
    # scaling the amplitude by 10 is +20 dB in every bin: LSD 20, same spectral shape
    assert np.allclose(log_spectral_distance(10 * x, x, floor=0.0), 20.0, atol=1e-6)
    assert np.allclose(log_spectral_distance(10 * x, x), 20.0, atol=0.1)   # the floor flattens the weakest bins
    assert np.allclose(spectral_correlation(10 * x, x), 1.0)
    # adding a constant changes nothing: the spectra ignore the level (MSE/MAE score it)
    assert np.allclose(log_spectral_distance(x + 5.0, x), 0.0, atol=1e-9)
    # a flat forecast: correlation 0, and a large, finite distance (power 40 dB below the truth counts as absent)
    flat = np.zeros((3, 128))
    assert np.array_equal(spectral_correlation(flat, x), np.zeros(3))
    assert ((log_spectral_distance(flat, x) > 30) & np.isfinite(log_spectral_distance(flat, x))).all()
    assert np.array_equal(spectral_correlation(flat, flat), np.ones(3))
    t = np.arange(128)
    a, b = np.sin(2 * np.pi * t / 16), np.sin(2 * np.pi * t / 5)
    assert spectral_correlation(a, b) < 0.1 < spectral_correlation(a, a + 0.01 * b)


# -- probe scores and models --------------------------------------------------------------------------
def test_auroc_on_hand_computed_cases():
    y = np.array([0, 0, 1, 1], bool)
    assert auroc([0.1, 0.2, 0.8, 0.9], y) == 1.0
    assert auroc([0.9, 0.8, 0.2, 0.1], y) == 0.0
    assert auroc([0.5, 0.5, 0.5, 0.5], y) == 0.5
    assert auroc([0.1, 0.4, 0.35, 0.8], y) == 0.75        # 3 of the 4 (positive, negative) pairs ordered right
    assert auroc([0.1, 0.5, 0.5, 0.8], y) == 0.875        # one tied pair counts one half
    assert np.isnan(auroc([0.1, 0.2], [True, True]))
    proba = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    assert auroc_ovr(proba, np.array([0, 1, 2, 0])) == 1.0
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 1, 1]) == pytest.approx((2 / 3 + 1) / 2)


def test_logistic_probe_separates_gaussian_clusters():
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=6.0, size=(3, 8))
    y = np.repeat(np.arange(3), [200, 50, 100])                   # unbalanced classes
    X = centres[y] + rng.normal(size=(y.size, 8))
    yt = np.repeat(np.arange(3), 40)
    Xt = centres[yt] + rng.normal(size=(yt.size, 8))
    model = fit_logistic(X, y, 3)
    proba = model.proba(Xt)
    assert np.allclose(proba.sum(1), 1.0)
    assert balanced_accuracy(yt, model.predict(Xt)) > 0.97 and auroc_ovr(proba, yt) > 0.99
    names = np.array(["a", "b", "c"], dtype=object)
    info = run_classification(X, names[y], Xt, names[yt])
    assert info["auroc"] > 0.99 and info["balanced_accuracy"] > 0.97 and info["classes"] == ["a", "b", "c"]
    # the same fit twice: the same numbers (deterministic L-BFGS from zero)
    assert np.array_equal(fit_logistic(X, y, 3).weight, model.weight)


def test_probe_tasks_that_cannot_run_are_skipped_with_a_reason():
    X = np.random.default_rng(4).normal(size=(10, 4))
    one = np.array(["rest"] * 10, dtype=object)
    assert "one class" in run_classification(X, one, X, one)["skipped"]
    two = np.array(["a", "b"] * 5, dtype=object)
    other = np.array(["c"] * 10, dtype=object)
    assert "no evaluated class occurs in train" in run_classification(X, two, X, other)["skipped"]
    assert "no labelled windows in the train split" in run_classification(X[:0], two[:0], X, two)["skipped"]
    partly = run_classification(X, two, X, np.array(["a"] * 5 + ["c"] * 5, dtype=object))
    assert partly["eval_unseen"] == 5 and partly["auroc"] is None and partly["balanced_accuracy"] is not None
    target = X @ np.array([1.0, -2.0, 0.5, 0.0])
    fit = run_regression(X, target, X, target)
    assert fit["r2"] > 0.95 and fit["pearson"] > 0.97
    assert "constant" in run_regression(X, np.ones(10), X, target)["skipped"]
