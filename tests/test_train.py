"""``nw2 pretrain`` through the CLI: training on the demo corpus with 1 and 2 processes (DDP on gloo, identical
parameters on every rank), exact resume (mid-epoch, at an epoch boundary, with 2 processes, and after a real
SIGKILL), the loss falling on a learnable system, non-finite input, the schedule, and one-line errors."""

from __future__ import annotations

import json
import math
import shutil
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from helpers import SMALL, artifact_digests, nw2, ok, read_all, rewrite
from nw2.model import Model
from nw2.model.config import ModelConfig
from nw2.model.data import CorpusLoader, LoaderConfig
from nw2.model.train import TrainConfig, latest_checkpoint, lr_at


def steps(run: Path) -> list[dict]:
    return [r for r in map(json.loads, (run / "log.jsonl").read_text().splitlines()) if r["event"] == "step"]


def meta(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


@pytest.fixture(scope="module")
def corpus(demo_corpus) -> Path:
    return demo_corpus


@pytest.fixture(scope="module")
def single(corpus, tmp_path_factory) -> Path:
    """An uninterrupted 1-process run of 3 epochs with a checkpoint every 2 steps, all kept."""
    run = tmp_path_factory.mktemp("single") / "run"
    ok("pretrain", corpus, "--out", run, *SMALL, "--epochs", "3", "--save-every-steps", "2",
       "--keep-checkpoints", "0", "--blr", "3e-3")
    return run


def test_one_process_run_saves_a_usable_model(single, corpus):
    m = meta(single)
    assert m["status"] == "finished" and m["world_size"] == 1 and m["epochs_done"] == 3
    assert m["total_batch"] == 16 and m["peak_lr"] == pytest.approx(3e-3 * 16 / 256)
    log = steps(single)
    assert [r["step"] for r in log] == list(range(1, m["steps"] + 1))
    assert all(math.isfinite(r["loss"]) for r in log)
    epochs = [r for r in map(json.loads, (single / "log.jsonl").read_text().splitlines()) if r["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2] and all(e["val_loss"] is not None for e in epochs)
    assert any((single / "tensorboard").iterdir())
    model = Model.from_pretrained(single / "model")
    assert model.config.window_size == 256 and model.config.embed_dim == 32
    x = torch.from_numpy(np.stack([next(iter(CorpusLoader(LoaderConfig(corpus, split="test", batch_size=4,
                                                                       window_size=256, nvar=1,
                                                                       shuffle_buffer=0))))[0][:, :, 0]], -1))
    y = model.predict(x, 64)
    assert y.shape == (4, 64, 1) and torch.isfinite(y).all()
    assert model.embed(x).shape == (4, 32)


def test_two_processes_end_with_identical_parameters(corpus, tmp_path):
    run = tmp_path / "ddp"
    result = ok("pretrain", corpus, "--out", run, *SMALL, "--epochs", "2", "--nproc", "2", "--num-workers", "1")
    m = meta(run)
    assert m["world_size"] == 2 and m["total_batch"] == 32 and m["status"] == "finished"
    assert len(m["param_digests"]) == 2 and m["param_digests"][0] == m["param_digests"][1]
    assert "2 process(es)" in result.output
    model = Model.from_pretrained(run / "model")
    assert model.predict(torch.randn(2, 256, 3), 40).shape == (2, 40, 3)


def _resume_copy(run: Path, dest: Path, keep_step: int) -> Path:
    """A copy of ``run`` as a run killed right after its checkpoint of step ``keep_step``: later checkpoints
    gone, the log holding lines the killed run would have written after it (the resume must drop them)."""
    shutil.copytree(run, dest)
    for ckpt in (dest / "checkpoints").glob("ckpt-*.pt"):
        if int(ckpt.stem.split("-")[1]) > keep_step:
            ckpt.unlink()
    shutil.rmtree(dest / "model")
    return dest


@pytest.mark.parametrize("at", ["mid-epoch", "epoch-end"])  # step 4, and the first epoch's last step
def test_resumed_run_matches_the_uninterrupted_one(single, corpus, tmp_path, at):
    epoch_ends = [r["step"] for r in map(json.loads, (single / "log.jsonl").read_text().splitlines())
                  if r["event"] == "epoch"]
    assert epoch_ends[0] > 4
    keep_step = 4 if at == "mid-epoch" else epoch_ends[0]
    run = _resume_copy(single, tmp_path / "resumed", keep_step)
    assert latest_checkpoint(run).name == f"ckpt-{keep_step:09d}.pt"
    result = ok("pretrain", corpus, "--out", run, "--resume", "--no-progress")
    assert [(r["step"], r["loss"], r["lr"]) for r in steps(run)] == [(r["step"], r["loss"], r["lr"]) for r in steps(single)]
    assert meta(run)["param_digests"] == meta(single)["param_digests"]
    assert "trained" in result.output


def test_two_process_resume_matches(corpus, tmp_path):
    full = tmp_path / "full"
    ok("pretrain", corpus, "--out", full, *SMALL, "--epochs", "2", "--nproc", "2", "--save-every-steps", "1",
       "--keep-checkpoints", "0", "--num-workers", "2")
    run = _resume_copy(full, tmp_path / "resumed", 2)
    ok("pretrain", corpus, "--out", run, "--resume", "--nproc", "2", "--no-progress")
    assert [r["loss"] for r in steps(run)] == [r["loss"] for r in steps(full)]
    assert meta(run)["param_digests"] == meta(full)["param_digests"]
    bad = nw2("pretrain", corpus, "--out", _resume_copy(full, tmp_path / "other", 2), "--resume", "--no-progress")
    assert bad.exit_code == 1 and "saved by 2 processes" in bad.output


#: ``nw2 pretrain`` that, right after its checkpoint ``ckpt-<PAUSE_AT>.pt`` is in place (renamed there, as every
#: checkpoint is written), touches ``PAUSED`` and sleeps before any later step, so the test kills it at that point
#: whatever the machine's speed (a whole run takes well under a second past its first checkpoint, so killing "soon
#: after a checkpoint appears" races the child). ``before:PAUSE_AT`` pauses just before that rename instead: the
#: checkpoint is written whole under its temporary name. It hooks the rename only, not nw2's modules, and changes
#: nothing the run computes. ``python -c PAUSING PAUSE_AT PAUSED ARGS...``.
PAUSING = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    before, pause_at, paused = sys.argv[1].startswith("before:"), int(sys.argv[1].split(":")[-1]), Path(sys.argv[2])

    def then_pause(rename):
        def renamed(src, dst, *args, **kwargs):
            if not before:
                rename(src, dst, *args, **kwargs)
            if Path(dst).name == f"ckpt-{pause_at:09d}.pt":
                paused.write_text(str(pause_at))
                time.sleep(600)
            if before:
                rename(src, dst, *args, **kwargs)
        return renamed

    os.replace, os.rename = then_pause(os.replace), then_pause(os.rename)
    from nw2.cli import main
    sys.argv = ["nw2", *sys.argv[3:]]
    main()
""")


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(corpus, tmp_path):
    """A real SIGKILL of ``nw2 pretrain`` mid-run, after its checkpoint of step 4 (of 3 epochs) and in the middle of
    writing the one of step 6 (whole under its temporary name, not yet renamed); ``--resume`` removes that temporary
    file, continues from step 4 and finishes with the files of an uninterrupted run (weights, checkpoints, log,
    run.json; all but wall times and TensorBoard's files), both in fresh processes (the same thread settings)."""
    args = ["pretrain", str(corpus), *SMALL, "--epochs", "3", "--save-every-steps", "2", "--keep-checkpoints", "0",
            "--blr", "3e-3"]
    kill_at = 4

    def nw2_process(*argv: str, pause: Path | None = None):
        prefix = ["-c", PAUSING, f"before:{kill_at + 2}", str(pause)] if pause else ["-m", "nw2.cli"]
        return [sys.executable, *prefix, *argv]

    full = tmp_path / "full"
    done = subprocess.run(nw2_process(*args, "--out", str(full)), cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert meta(full)["status"] == "finished" and kill_at < meta(full)["steps"]

    run, paused, err = tmp_path / "killed", tmp_path / "paused", tmp_path / "killed.err"
    with err.open("w") as stderr:
        proc = subprocess.Popen(nw2_process(*args, "--out", str(run), pause=paused), cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 300
        while not paused.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # the kill interrupts the run: the child is alive, waiting right after its checkpoint of step 4
        assert paused.exists() and proc.poll() is None, (proc.returncode, err.read_text()[-3000:])
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert meta(run)["status"] == "running" and "param_digests" not in meta(run)
    assert latest_checkpoint(run).name == f"ckpt-{kill_at:09d}.pt"
    left = [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert [n.split(".")[1] for n in left] == [f"ckpt-{kill_at + 2:09d}"], left  # kill -9 cannot clean up
    refused = nw2("pretrain", corpus, "--out", run, *SMALL)
    assert refused.exit_code == 1 and "--resume" in refused.output
    resumed = subprocess.run(nw2_process("pretrain", str(corpus), "--out", str(run), "--resume", "--no-progress"),
                             cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"from ckpt-{kill_at:09d}.pt" in resumed.stdout + resumed.stderr
    assert meta(run)["status"] == "finished" and meta(run)["steps"] == meta(full)["steps"]
    assert meta(run)["param_digests"] == meta(full)["param_digests"]
    assert [r["loss"] for r in steps(run)] == [r["loss"] for r in steps(full)]
    timed = ("tensorboard/*", "checkpoints/*.sha256")  # TensorBoard's files, and digests of checkpoints with wall times
    assert artifact_digests(run, skip=timed) == artifact_digests(full, skip=timed)  # the temporary file went too


def test_loss_falls_on_a_learnable_system(tmp_path):
    """Noisy sines of random period and phase (40 recordings, ingested through the pipeline): 4 epochs bring
    the forecast loss below half its start, and on sines it never saw the trained model forecasts 64 samples
    with under half the error of predicting the mean (0.5 for a unit sine) and better than its untrained self."""
    rng = np.random.default_rng(0)
    rec = tmp_path / "rec"
    rec.mkdir()
    t = np.arange(2000) / 100.0
    for i in range(40):
        period = rng.uniform(0.3, 0.8)
        x = np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi)) + 0.05 * rng.standard_normal(t.size)
        np.save(rec / f"s{i:02d}.npy", x.astype(np.float32))
    store = tmp_path / "store"
    ok("ingest", rec, "--format", "numpy", "--fs", "100", "--modality", "resp", "--out", store, "--window", "256",
       "--stride", "128", "--scheduler", "sync", "--no-metrics", "--no-progress")
    run = tmp_path / "run"
    # --insight-order 0: on the clean test sines the insight's in-context AR fit is exact for any network,
    # trained or not; what is tested here is what training taught the network
    ok("pretrain", store, "--out", run, *SMALL, "--epochs", "4", "--blr", "5e-2", "--warmup-epochs", "0.5",
       "--insight-order", "0")
    log = steps(run)
    first, last = np.mean([r["forecast"] for r in log[:5]]), np.mean([r["forecast"] for r in log[-5:]])
    assert last < 0.5 * first, (first, last)
    periods = (0.35, 0.45, 0.6, 0.75)
    x = torch.from_numpy(np.stack([np.sin(2 * np.pi * np.arange(256) / 100.0 / p + 1.0) for p in periods])
                         [:, :, None].astype(np.float32))
    trained = Model.from_pretrained(run / "model")
    torch.manual_seed(0)
    fresh = Model(trained.config).eval()

    def err(m: Model) -> float:
        return float((m.predict(x[:, :192], 64) - x[:, 192:]).pow(2).mean())

    assert err(trained) < 0.25 and err(trained) < err(fresh), (err(trained), err(fresh))


def test_non_finite_rows_and_losses_are_skipped(corpus, tmp_path):
    """Rows with NaN are skipped by the loader; rows that are finite but overflow float32 statistics give a
    non-finite loss, and that step is skipped on every rank: the weights stay finite and the run finishes."""
    table = read_all(corpus)
    samples = table.column("samples").to_pylist()
    train_rows = np.flatnonzero(table.column("split").to_numpy(zero_copy_only=False) == "train")
    for r in train_rows[:3]:
        for k in range(10, len(samples[r]), 200):  # every 256-sample crop, random or not, holds one
            samples[r][k] = float("nan")
    for r in train_rows[3:5]:
        samples[r] = [3e38] * len(samples[r])  # the float32 mean overflows to inf
    i = table.schema.get_field_index("samples")
    table = table.set_column(i, table.schema.field(i), pa.array(samples, type=table.schema.field(i).type))
    bad = rewrite(corpus, tmp_path / "bad", table)
    run = tmp_path / "run"
    result = ok("pretrain", bad, "--out", run, *SMALL, "--epochs", "2", "--shuffle-buffer", "0")
    m = meta(run)
    assert m["skipped_rows"] == 3 * 2  # three rows, two epochs
    assert m["skipped_steps"] >= 2  # the overflowing rows spoil one step per epoch at least
    assert "skipped (non-finite)" in result.output
    model = Model.from_pretrained(run / "model")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert sum(r["loss"] is None for r in steps(run)) == m["skipped_steps"]


def test_schedule_warms_up_then_decays_to_min_lr():
    cfg = TrainConfig(corpus="c", out="o", epochs=10, warmup_epochs=2, min_lr=1e-5)
    assert lr_at(0, 1e-3, cfg) == 0 and lr_at(1, 1e-3, cfg) == pytest.approx(5e-4)
    assert lr_at(2, 1e-3, cfg) == pytest.approx(1e-3) and lr_at(10, 1e-3, cfg) == pytest.approx(1e-5)
    assert lr_at(6, 1e-3, cfg) == pytest.approx(1e-5 + (1e-3 - 1e-5) / 2)
    lrs = [lr_at(e / 10, 1e-3, cfg) for e in range(20, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_expected_samples_is_the_epoch_size(corpus):
    loader = CorpusLoader(LoaderConfig(corpus, batch_size=7, window_size=256, nvar=3, shuffle_buffer=0))
    assert loader.expected_samples() == sum(x.shape[0] for x, _ in loader)
    weighted = CorpusLoader(LoaderConfig(corpus, batch_size=7, window_size=256, nvar=3, weighted=True))
    assert weighted.expected_samples() == pytest.approx(loader.expected_samples())  # the balanced weights are 1


def _one_line_error(result, *needles):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error:"), result.output
    for needle in needles:
        assert needle in line, line


def test_bad_input_fails_before_any_process_starts(corpus, tmp_path, single):
    out = tmp_path / "run"
    _one_line_error(nw2("pretrain", tmp_path / "nowhere", "--out", out, "--nproc", "2"), "no such directory")
    empty = tmp_path / "empty"
    (empty / "data").mkdir(parents=True)
    (empty / "corpus.json").write_text("{}")
    _one_line_error(nw2("pretrain", empty, "--out", out), "corpus.json is not an nw2-corpus file")
    (empty / "corpus.json").unlink()
    (empty / "store.json").write_text("{}")
    _one_line_error(nw2("pretrain", empty, "--out", out), "its nw2 ingest did not finish (no manifest.json")
    (empty / "manifest.json").write_text('{"schema_version": 4, "inputs": []}')  # a finished ingest of nothing
    _one_line_error(nw2("pretrain", empty, "--out", out), "no Parquet parts")
    table = read_all(corpus).drop_columns(["group_id"])
    _one_line_error(nw2("pretrain", rewrite(corpus, tmp_path / "nogroup", table), "--out", out), "no column group_id")
    _one_line_error(nw2("pretrain", corpus, "--out", out, "--window-size", "2048", "--patch-size", "64", "--nproc", "2"),
                    "window_size 2048 is longer than the corpus windows (1024 samples)")
    _one_line_error(nw2("pretrain", corpus, "--out", out, "--num-heads", "5"), "divisible by num_heads")
    _one_line_error(nw2("pretrain", corpus, "--out", out, "--no-causal"), "causal=False is not supported")
    _one_line_error(nw2("pretrain", corpus, "--out", out, "--batch-size", "0"), "--batch-size")
    _one_line_error(nw2("pretrain", corpus, "--out", out, "--config", tmp_path / "missing.json"), "not a preset")
    _one_line_error(nw2("pretrain", corpus, "--out", single), "already holds a run", "--resume")
    _one_line_error(nw2("pretrain", corpus, "--out", single, "--resume", "--epochs", "9"),
                    "settings differ", "epochs 3 -> 9")
    assert not out.exists()
    assert meta(single)["status"] == "finished"  # nothing of the existing run was touched


def test_config_file_and_presets(tmp_path, corpus):
    path = tmp_path / "model.json"
    path.write_text(ModelConfig(window_size=256, patch_size=32, embed_dim=32, depth=1, num_heads=2,
                                decoder_embed_dim=16, decoder_num_heads=2, nvar=2, rollout_steps=2).to_json())
    run = tmp_path / "run"
    ok("pretrain", corpus, "--out", run, "--config", path, "--epochs", "1", "--batch-size", "32", "--no-progress",
       "--remark", "from a file")
    m = meta(run)
    assert m["model"]["nvar"] == 2 and m["remark"] == "from a file"
    _one_line_error(nw2("pretrain", corpus, "--out", tmp_path / "r2", "--config", "huge"), "not a preset")


def test_init_from_starts_from_the_saved_weights_and_takes_their_config(single, corpus, tmp_path):
    run = tmp_path / "run"
    ok("pretrain", corpus, "--out", run, "--init-from", single / "model", "--epochs", "1", "--lr", "1e-12",
       "--batch-size", "16", "--no-progress")
    saved, started = Model.from_pretrained(single / "model"), Model.from_pretrained(run / "model")
    assert started.config == saved.config                       # the SMALL shape, though no model flag was given
    for (name, a), b in zip(saved.state_dict().items(), started.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name             # lr 1e-12: the weights it started from
    assert meta(run)["train"]["init_from"] == str(single / "model")
    # a resumed run takes its weights from its checkpoint, even when the model it started from is gone
    start = Path(shutil.copytree(single / "model", tmp_path / "start"))
    ok("pretrain", corpus, "--out", tmp_path / "r6", "--init-from", start, "--epochs", "2", "--save-every-steps",
       "2", "--keep-checkpoints", "0", "--batch-size", "16", "--no-progress")
    killed = _resume_copy(tmp_path / "r6", tmp_path / "r7", 2)
    shutil.rmtree(start)
    ok("pretrain", corpus, "--out", killed, "--resume", "--no-progress")
    assert meta(killed)["param_digests"] == meta(tmp_path / "r6")["param_digests"]
    _one_line_error(nw2("pretrain", corpus, "--out", tmp_path / "r2", "--init-from", single / "model",
                        "--config", "tiny"), "drop --config")
    _one_line_error(nw2("pretrain", corpus, "--out", tmp_path / "r3", "--init-from", tmp_path / "nothing"),
                    "not a saved nw2 model directory")
    _one_line_error(nw2("pretrain", corpus, "--out", tmp_path / "r4", "--init-from", "nw2-large"),
                    "not a shipped checkpoint")
    _one_line_error(nw2("pretrain", corpus, "--out", tmp_path / "r5", "--init-from", single / "model",
                        "--embed-dim", "48"), "do not fit")


def test_an_interrupted_run_says_what_it_kept_and_how_to_resume(corpus, tmp_path):
    """Ctrl-C (SIGINT) mid-run: one nw2 line naming the last checkpoint and the --resume command, exit 130,
    run.json ``interrupted``; --resume then finishes the run."""
    args = ["pretrain", str(corpus), *SMALL, "--epochs", "2", "--save-every-steps", "2", "--keep-checkpoints", "0"]
    run, paused, err = tmp_path / "run", tmp_path / "paused", tmp_path / "err"
    with err.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", PAUSING, "2", str(paused), *args, "--out", str(run)],
                                cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 300
        while not paused.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert paused.exists() and proc.poll() is None, err.read_text()[-3000:]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [line for line in err.read_text().splitlines() if line.strip()]
    assert lines[-1] == (f"interrupted: {run} keeps its checkpoints up to ckpt-000000002.pt; continue with: "
                         f"nw2 pretrain {corpus} --out {run} --resume")
    assert "Traceback" not in err.read_text()
    assert meta(run)["status"] == "interrupted"
    resumed = subprocess.run([sys.executable, "-m", "nw2.cli", "pretrain", str(corpus), "--out", str(run), "--resume",
                              "--no-progress"], cwd=tmp_path, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "from ckpt-000000002.pt" in resumed.stdout + resumed.stderr and meta(run)["status"] == "finished"


def test_sigterm_interrupts_nw2_pretrain_as_ctrl_c_does():
    """A scheduler's SIGTERM takes the Ctrl-C path above (its message, run.json, exit 130)."""
    from nw2.cli import _terminate_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    try:
        _terminate_as_interrupt()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)                                      # the handler raises before this ends
    finally:
        signal.signal(signal.SIGTERM, before)
