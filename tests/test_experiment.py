"""``nw2 experiment`` end to end on the demo store: three arms side by side, three seeds each, the same step
budget, the same evaluated windows; the report states an outcome per score with intervals; a rerun skips
everything and writes the same bytes; bad input fails with one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from helpers import DEMO, nw2, ok
from nw2.core.errors import SpecError
from nw2.model.evaluate import ScoreKey
from nw2.pipeline.spec import BalanceSpec, ExperimentSpec, experiment_arms, experiment_baseline, spec_from_dict

MODEL = {"window_size": 256, "patch_size": 32, "embed_dim": 32, "depth": 1, "num_heads": 2,
         "decoder_embed_dim": 16, "decoder_num_heads": 2, "nvar": 4, "rollout_steps": 2}


def write_spec(tmp: Path, experiment: dict) -> Path:
    data = yaml.safe_load(DEMO.read_text())
    data["experiment"] = experiment
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def done(demo_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("experiment")
    spec = write_spec(tmp, {"arms": [{"name": "grid", "strategy": "grid", "size": 100},
                                     {"name": "temp", "strategy": "temperature", "size": 100, "balance": {"tau": 0.3}},
                                     {"name": "random", "strategy": "random", "size": 200}],
                            "seeds": [0, 1, 2], "steps": 6, "model": MODEL, "train": {"batch_size": 16, "blr": 0.01},
                            "eval_split": "val,test", "horizons": [32, 64], "max_windows": 40, "bootstrap": 300})
    store = demo_store
    out = tmp / "out"
    result = ok("experiment", spec, "--store", store, "--out", out, "--no-progress")
    return spec, store, out, result


def test_every_arm_is_trained_with_the_same_budget_and_compared(done):
    _, _, out, result = done
    doc = json.loads((out / "experiment.json").read_text())
    assert doc["baseline"] == "random" and set(doc["comparisons"]) == {"grid", "temp"}
    for name, arm in doc["arms"].items():
        assert len(arm["steps"]) == 3 and all(abs(s - 6) <= 3 for s in arm["steps"]), (name, arm["steps"])
        for seed in (0, 1, 2):
            assert (out / "runs" / f"{name}-seed{seed}" / "model" / "model.safetensors").is_file()
            corpus = json.loads((out / "corpora" / f"{name}-seed{seed}" / "corpus.json").read_text())
            assert (corpus["strategy"], corpus["size"], corpus["seed"]) == (arm["strategy"], arm["size"], seed)
            run = json.loads((out / "runs" / f"{name}-seed{seed}" / "run.json").read_text())
            assert run["corpus"]["content_sha256"] == corpus["content_sha256"]
    for arm, scores in doc["comparisons"].items():
        keys = [ScoreKey.from_dict(c["score"]) for c in scores]
        assert keys == sorted(keys, key=ScoreKey.sort_key) and len(set(keys)) == len(keys)
        assert {ScoreKey("forecast", "model", m) for m in ("mse", "lsd", "spectral_corr", "latent_distance")} \
            | {ScoreKey("forecast", "adapted", "mse"), ScoreKey("probe", "modality", "auroc")} <= set(keys)
        assert not [k for k in keys if k.is_baseline or k.horizon is not None]
        for key, c in zip(keys, scores):
            assert c["label"] == key.label and c["higher_is_better"] == key.higher_is_better
            # the improvement over the baseline (a - b, sign flipped where lower is better): beats when its
            # whole interval is above 0, worse when below, else matches
            gain = (c["diff"]["lo"], c["diff"]["hi"]) if c["higher_is_better"] else (-c["diff"]["hi"], -c["diff"]["lo"])
            assert c["outcome"] == ("beats" if gain[0] > 0 else "worse" if gain[1] < 0 else "matches"), (arm, c)
            assert c["diff"]["lo"] <= c["diff"]["mean"] <= c["diff"]["hi"]
    # every run's summary as its evaluation wrote it, and the compared means are the runs' summary values
    for name, arm in doc["arms"].items():
        evals = [json.loads((out / "evals" / f"{name}-seed{seed}" / "metrics.json").read_text())["summary"]
                 for seed in (0, 1, 2)]
        assert arm["summaries"] == evals
    for arm, scores in doc["comparisons"].items():
        mse = next(c for c in scores if c["label"] == "mse")
        runs = [s["forecast"]["model"]["mse"]["mean"] for s in doc["arms"][arm]["summaries"]]
        assert mse["a"]["mean"] == pytest.approx(sum(runs) / 3, rel=1e-4)
    assert "| mse | lower |" in (out / "report.md").read_text()
    assert "| probe_modality_auroc | higher |" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert "## grid against random" in report and "## temp against random" in report
    assert "matches or beats on" in result.output and (out / "differences.png").stat().st_size > 1000


def test_per_window_scores_are_compared_by_kind_of_window_and_both_averages(done):
    """Recordings and synthetic systems apart (the demo store has recordings only), each averaged over windows
    and over groups, with the interval's half-width against the precision target; stage times recorded."""
    _, _, out, _ = done
    doc = json.loads((out / "experiment.json").read_text())
    assert doc["eval_real_windows"] == 40 and doc["eval_synthetic_windows"] == 0
    for arm, entries in doc["subsets"].items():
        mse = {(e["subset"], e["average"]): e for e in entries if e["label"] == "mse"}
        assert set(mse) == {("all", "windows"), ("all", "groups"), ("real", "windows"), ("real", "groups")}
        main = next(c for c in doc["comparisons"][arm] if c["label"] == "mse")
        assert mse["all", "windows"]["diff"] == main["diff"] and mse["real", "windows"]["windows"] == 40
        for e in mse.values():
            half = (e["diff"]["hi"] - e["diff"]["lo"]) / 2
            assert e["relative_half_width"] == pytest.approx(half / abs(e["b"]["mean"]), rel=1e-4)
        # over groups every dataset counts once: its point is the mean of the datasets' means
        frames = {}
        import polars as pl
        for seed in (0, 1, 2):
            f = pl.read_parquet(out / "evals" / f"{arm}-seed{seed}" / "per_window.parquet")
            frames[seed] = f.group_by("window_id").agg(pl.col("mse").mean(), pl.col("dataset").first())
        both = pl.concat(frames.values())
        per_dataset = both.group_by("dataset").agg(pl.col("mse").mean())["mse"].mean()
        assert mse["all", "groups"]["a"]["mean"] == pytest.approx(per_dataset, rel=1e-4)
    t = doc["wall_seconds"]
    assert t["store_built_here"] is False and t["store"] is None
    assert all(t[k] is not None and t[k] > 0 for k in ("corpora", "training", "evaluation"))
    assert t["total"] == pytest.approx(t["corpora"] + t["training"] + t["evaluation"], abs=0.2)
    report = (out / "report.md").read_text()
    assert "by kind of window" in report and "| real | groups | mse |" in report and "Wall time:" in report


def test_the_arms_are_evaluated_on_the_same_windows(done):
    import polars as pl

    _, _, out, _ = done
    ids = {p.parent.name: sorted(pl.read_parquet(p)["window_id"].unique().to_list())
           for p in (out / "evals").glob("*/per_window.parquet")}
    assert len(ids) == 9 and len({tuple(v) for v in ids.values()}) == 1 and len(next(iter(ids.values()))) == 40


def test_rerun_skips_finished_work_and_writes_the_same_bytes(done):
    spec, store, out, _ = done
    before = {p: p.read_bytes() for p in (out / "experiment.json", out / "report.md", out / "differences.png",
                                          out / "scores.png")}
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/model/model.safetensors")}
    result = ok("experiment", spec, "--store", store, "--out", out, "--no-progress")
    assert "pretraining" not in result.output and "drawing" not in result.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert {p: p.read_bytes() for p in before} == before


def test_default_arms_are_balanced_n_against_random_2n():
    arms = experiment_arms(ExperimentSpec(size=150), BalanceSpec(strategy="inverse"))
    assert [(a.name, a.strategy, a.size) for a in arms] == [("balanced", "inverse", 150), ("random_2x", "random", 300)]
    assert experiment_baseline(ExperimentSpec(size=150), arms) == "random_2x"
    with pytest.raises(SpecError, match="give size"):
        experiment_arms(ExperimentSpec(), BalanceSpec(strategy="grid"))


@pytest.mark.parametrize("section,message", [
    ({"size": 10, "seeds": [1, 1]}, "distinct seeds"),
    ({"arms": [{"name": "a b", "strategy": "grid", "size": 5}, {"name": "r", "strategy": "random", "size": 5}]},
     "must be letters"),
    ({"arms": [{"name": "a", "strategy": "nope", "size": 5}, {"name": "r", "strategy": "random", "size": 5}]},
     "is not one of"),
    ({"size": 10, "train": {"epochs": 3}}, "budget is set by steps"),
    ({"size": 10, "baseline": "zzz", "arms": [{"name": "a", "strategy": "grid", "size": 5},
                                              {"name": "r", "strategy": "random", "size": 5}]}, "not the name of an arm"),
])
def test_bad_sections_are_refused(section, message):
    data = yaml.safe_load(DEMO.read_text())
    data["experiment"] = section
    with pytest.raises(SpecError, match=message):
        spec_from_dict(data, where="spec")


def test_bad_input_is_one_line(tmp_path, done):
    spec, store, _, _ = done
    plain = tmp_path / "plain.yaml"
    data = yaml.safe_load(DEMO.read_text())
    data.pop("experiment", None)
    plain.write_text(yaml.safe_dump(data))
    for args, needle in [((plain, "--store", store), "give size"),
                         ((spec, "--store", tmp_path / "nowhere"), "no such store"),
                         ((tmp_path / "missing.yaml", "--store", store), "cannot read")]:
        result = nw2("experiment", *args, "--out", tmp_path / "x", "--no-progress")
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert result.output.strip().splitlines()[-1].startswith("error:") and needle in result.output


@pytest.mark.parametrize("model,train,needle", [
    (MODEL, {"batch_size": 16, "blrr": 0.01}, "experiment.train.blrr: unknown field (known: accum_iter, batch_size, "),
    ({**MODEL, "embed_dimm": 32}, {}, "experiment.model.embed_dimm: unknown field (known: causal, decoder_depth, "),
    (MODEL, {"device": "gpu"}, "experiment.train.device: --device must be auto, cpu or cuda, got 'gpu'"),
    (MODEL, {"batch_size": 0}, "experiment.train.batch_size: --batch-size must be a positive integer, got 0"),
    (MODEL, {"weighted": "yes"}, "experiment.train.weighted: --weighted must be"),
    ({**MODEL, "num_heads": 3}, {}, "experiment.model: ModelConfig.embed_dim (32) must be divisible by num_heads (3)"),
])
def test_run_settings_are_checked_before_any_work(tmp_path, model, train, needle):
    """A typo or a bad value in the model: or train: section fails at once, naming the spec file and the
    field: before the store is ingested (no --store here) and before any corpus is drawn."""
    spec = write_spec(tmp_path, {"size": 10, "steps": 6, "model": model, "train": train})
    out = tmp_path / "out"
    result = nw2("experiment", spec, "--out", out, "--scheduler", "sync", "--no-progress")
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert result.output.strip().splitlines()[-1].startswith(f"error: {spec}: {needle}"), result.output
    assert not (out / "store").exists() and not (out / "corpora").exists()


def test_a_second_experiment_into_one_out_is_refused_and_a_killed_ones_temporaries_are_swept(done):
    """Before, two experiments into one --out both ran (each step locked, but one redoing the other's), and the key
    file temporary a kill -9 left beside a step stayed there for good."""
    from nw2.core.locks import exclusive

    spec, store, out, _ = done
    left = [out / "corpora" / "..grid-seed0.experiment-key.json.k7x2_9ab.tmp",
            out / "runs" / "..temp-seed1.experiment-seconds.json.00000000.tmp", out / ".experiment.json.abcdefgh.tmp"]
    mine = [out / "corpora" / "notes.tmp", out / ".experiment.json.tmp"]  # not nw2's pattern: they stay
    for path in left + mine:
        path.write_text("{")
    with exclusive(out, "nw2 experiment"):
        result = nw2("experiment", spec, "--store", store, "--out", out, "--no-progress")
        assert result.exit_code == 1
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(
            f"error: {out}: is being written by another nw2 process (nw2 experiment, pid {os.getpid()} on "), lines
    assert all(p.exists() for p in left)  # the refused one touched nothing
    before = (out / "experiment.json").read_bytes()
    ok("experiment", spec, "--store", store, "--out", out, "--no-progress")
    assert not any(p.exists() for p in left) and all(p.exists() for p in mine)
    assert (out / "experiment.json").read_bytes() == before
    for path in mine:
        path.unlink()
