"""Plain helpers shared by the test modules (``from helpers import ...``: pytest puts ``tests/`` on
``sys.path`` for ``conftest.py``, which has no ``__init__.py`` beside it). The fixtures that build the
shared demo store and corpus are in ``conftest.py``; no test module imports another."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from nw2.cli import app

ROOT = Path(__file__).resolve().parents[1]
#: The demo spec: four formats of real recordings, its ``balance:`` section, windows of 1024 samples.
DEMO = ROOT / "corpus_specs" / "demo.yaml"

#: A small model for ``nw2 pretrain``, so each run takes seconds on 2 cores.
SMALL = ["--window-size", "256", "--patch-size", "32", "--embed-dim", "32", "--depth", "1", "--num-heads", "2",
         "--decoder-embed-dim", "16", "--decoder-num-heads", "2", "--nvar", "4", "--rollout-steps", "2",
         "--batch-size", "16", "--log-every", "1", "--no-progress"]

runner = CliRunner()


def nw2(*args):
    """``nw2 ARGS...`` in this process (arguments may be paths or numbers). An exit with a status (a one-line
    error, exit code 1) is in the result; any other exception propagates with its traceback."""
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def ok(*args):
    """``nw2 ARGS...`` that must succeed; its result."""
    result = nw2(*args)
    assert result.exit_code == 0, result.output
    return result


def tree_bytes(store: Path) -> dict[str, str]:
    """Every file of a directory tree and its hash, for byte-identity checks."""
    return {p.relative_to(store).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(store).rglob("*")) if p.is_file()}


#: Keys of nw2's JSON files that hold wall times (``seconds``, ``step_seconds``, ``windows_per_s``, ...): the
#: only thing two runs of the same command may differ in.
WALL_TIMES = re.compile(r"(^|_)seconds(_|$)|_per_s$|^wall_")


def artifact_digests(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """Like :func:`tree_bytes`, for artifacts that record wall times: every file's sha256, but JSON (and JSON
    Lines) files are hashed without their :data:`WALL_TIMES` keys, and checkpoints (``*.pt``) by their loaded
    contents without them; files matching a glob of ``skip`` (TensorBoard's event files, named by host and
    time) are left out."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or any(fnmatch.fnmatch(rel, g) for g in skip):
            continue
        if p.suffix == ".json":
            data = json.dumps(_timeless(json.loads(p.read_text())), sort_keys=True).encode()
        elif p.suffix == ".jsonl":
            lines = [_timeless(json.loads(ln)) for ln in p.read_text().splitlines() if ln.strip()]
            data = json.dumps(lines, sort_keys=True).encode()
        elif p.suffix == ".pt":
            import torch

            data = _pt_bytes(_timeless(torch.load(p, map_location="cpu", weights_only=False)))
        else:
            data = p.read_bytes()
        out[rel] = hashlib.sha256(data).hexdigest()
    return out


def _timeless(obj):
    if isinstance(obj, dict):
        return {k: _timeless(v) for k, v in obj.items() if not (isinstance(k, str) and WALL_TIMES.search(k))}
    if isinstance(obj, (list, tuple)):
        return [_timeless(v) for v in obj]
    return obj


def _pt_bytes(obj) -> bytes:
    import torch

    if isinstance(obj, torch.Tensor):
        flat = obj.detach().cpu().contiguous().reshape(-1)
        return repr((obj.dtype, tuple(obj.shape))).encode() + flat.view(torch.uint8).numpy().tobytes()
    if isinstance(obj, dict):
        return b"{" + b",".join(repr(k).encode() + b":" + _pt_bytes(v) for k, v in sorted(obj.items(), key=repr)) + b"}"
    if isinstance(obj, list):
        return b"[" + b",".join(_pt_bytes(v) for v in obj) + b"]"
    return repr(obj).encode()


def vouch(part: Path) -> None:
    """A store part a test wrote or rewrote by hand, recorded in a completion marker as if nw2 had written it (every
    stage that reads a store compares its parts with their markers). A store without markers needs none."""
    from nw2.artifacts.store import digest_of

    progress = part.parent.parent / "_progress"
    if not progress.is_dir():
        return
    piece = part.stem[len("part-"):]
    marker = progress / f"{piece}.json"
    stats = json.loads(marker.read_text()) if marker.exists() else {
        "piece_id": piece, "part": f"data/{part.name}", "error": None}
    stats.pop("pending", None)
    stats["windows"] = pq.read_metadata(part).num_rows
    marker.write_text(json.dumps({**stats, **digest_of(part.read_bytes())}))


def read_all(corpus: Path) -> pa.Table:
    """Every row of a store's or corpus's parts, in part order."""
    return pa.concat_tables(pq.read_table(f) for f in sorted((Path(corpus) / "data").glob("part-*.parquet")))


def read_corpus(corpus: Path) -> tuple[pa.Table, dict]:
    """A corpus's rows and its ``corpus.json``."""
    return read_all(corpus), json.loads((Path(corpus) / "corpus.json").read_text())


def rewrite(corpus: Path, dest: Path, table: pa.Table | None = None, cuts=(), row_group_size: int = 1024) -> Path:
    """A copy of ``corpus`` at ``dest`` with ``table`` (default: its rows) written as parts cut at ``cuts``."""
    dest.mkdir(parents=True)
    shutil.copy(corpus / "corpus.json", dest / "corpus.json")
    (dest / "data").mkdir()
    table = table if table is not None else read_all(corpus)
    edges = [0, *cuts, table.num_rows]
    listed = []
    for k, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        rel = f"data/part-{k:05d}.parquet"
        pq.write_table(table.slice(a, b - a), dest / rel, row_group_size=row_group_size)
        data = (dest / rel).read_bytes()
        listed.append({"path": rel, "rows": b - a, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    # corpus.json lists the parts a corpus has: the rewritten ones
    info = json.loads((dest / "corpus.json").read_text())
    (dest / "corpus.json").write_text(json.dumps(dict(info, parts=listed), indent=2, sort_keys=True) + "\n")
    return dest


def check_against_reference(x, cases, atol) -> None:
    """Each ``(name, ours, theirs)`` of ``cases`` on ``x``: nw2's value is finite and within
    ``atol[name]`` of the reference package's."""
    for name, ours, theirs in cases:
        got, want = ours(x), float(theirs(x))
        assert math.isfinite(got), name
        assert abs(got - want) <= atol[name], (name, got, want)
