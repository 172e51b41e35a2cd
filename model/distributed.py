"""Distributed helpers in the nanochat style: ``compute_init`` / ``compute_cleanup``, ``print0``, and the few
collectives the trainer needs, each a no-op in a single process.

A process is part of a distributed run when the launcher set ``WORLD_SIZE`` (and ``RANK``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``): ``torchrun`` does, and so does ``nw2 pretrain --nproc N``, which goes through
the same launcher (:func:`launch`). Gloo on CPU, NCCL on GPU.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist

__all__ = ["Compute", "compute_init", "compute_cleanup", "print0", "under_launcher", "all_min", "all_sum",
           "all_gather", "broadcast", "barrier", "launch", "LaunchFailed", "record_errors", "wrap_ddp", "rank_and_world"]


@dataclass(frozen=True)
class Compute:
    """Where this process runs and who it is in the run."""

    ddp: bool
    """True when several processes train together (a process group is initialised)."""
    rank: int
    """This process's global rank (0 logs and writes checkpoints)."""
    local_rank: int
    """Rank on this machine; picks the GPU."""
    world_size: int
    """Number of processes in the run."""
    device: torch.device
    """``cuda:<local_rank>`` when a GPU is used, else ``cpu``."""

    @property
    def master(self) -> bool:
        return self.rank == 0


def under_launcher() -> bool:
    """True in a process started by ``torchrun`` (or ``nw2 pretrain --nproc``): ``WORLD_SIZE`` is set."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def compute_init(device: str = "auto") -> Compute:
    """Initialise this process: pick the device (``auto`` = CUDA when available) and, under a launcher,
    join the process group (NCCL for CUDA, gloo otherwise)."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no GPU")
    if under_launcher():
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    else:
        rank, world, local = 0, 1, 0
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    ddp = world > 1
    if ddp and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                device_id=dev if use_cuda else None)
    return Compute(ddp=ddp, rank=rank, local_rank=local, world_size=world, device=dev)


def compute_cleanup() -> None:
    """Leave the process group (after every rank is done with it)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _ready() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """This process's ``(rank, world size)``: from the process group when one is running, else ``(0, 1)``."""
    if _ready():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def print0(*args: Any, **kwargs: Any) -> None:
    """``print`` on rank 0 only."""
    if int(os.environ.get("RANK", 0)) == 0:
        print(*args, **kwargs, flush=True)


def barrier() -> None:
    if _ready():
        dist.barrier()


def all_min(value: int) -> int:
    """The smallest ``value`` over all ranks (how ranks agree to end an epoch together)."""
    if not _ready():
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum over ranks of a short list of numbers (float64; on the current GPU under NCCL,
    which reduces only CUDA tensors, on the CPU under gloo)."""
    if not _ready():
        return [float(v) for v in values]
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return [float(v) for v in t.cpu()]


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable plain data), in rank order, on every rank."""
    if not _ready():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not _ready():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def launch(nproc: int, module: str, args: list[str]) -> None:
    """Run ``python -m module *args`` in ``nproc`` processes on this machine through torch's own launcher
    (``torch.distributed.run``, what ``torchrun --standalone`` does: a c10d rendezvous on a free local port).
    Raises :class:`LaunchFailed` (how many processes failed, the last line of the first one's error) when a
    process fails."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if nproc < 1:
        raise ValueError(f"nproc must be >= 1, got {nproc}")
    parser = torchrun.get_args_parser()
    ns = parser.parse_args(["--standalone", "--nnodes=1", f"--nproc-per-node={nproc}", "--max-restarts=0",
                            "--monitor-interval=0.2", "-m", module, *args])
    set_here = "OMP_NUM_THREADS" not in os.environ
    if set_here:
        # share the cores instead of letting every process take them all (torchrun would pick 1 and warn);
        # the children inherit it, this process gets its environment back afterwards
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    try:
        torchrun.run(ns)
    except ChildFailedError as exc:
        raise LaunchFailed(len(exc.failures), _first_error_line(exc)) from None
    finally:
        if set_here:
            os.environ.pop("OMP_NUM_THREADS", None)


class LaunchFailed(Exception):
    """Some processes of a :func:`launch` failed: ``failed`` of them; ``detail`` is the last line of the
    first one's error (empty when it left none)."""

    def __init__(self, failed: int, detail: str) -> None:
        self.failed, self.detail = failed, detail
        super().__init__(f"{failed} processes failed" + (f": {detail}" if detail else ""))


def _first_error_line(exc: Any) -> str:
    first = next(iter(exc.failures.values()), None)
    if first is None or not first.error_file or not os.path.isfile(first.error_file):
        return ""
    try:
        with open(first.error_file) as fh:
            return json.load(fh)["message"]["message"].splitlines()[-1]
    except (ValueError, KeyError, TypeError, IndexError, OSError):
        return ""


def record_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` wrapped so that a launched process's exception reaches the launcher (torch elastic's
    ``record``), which :func:`launch` turns into :class:`LaunchFailed`'s detail."""
    from torch.distributed.elastic.multiprocessing.errors import record

    return record(fn)


def wrap_ddp(model: torch.nn.Module, compute: "Compute") -> torch.nn.Module:
    """The model as the loop runs it: under DDP when several processes train, else itself."""
    if not compute.ddp:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    device = compute.device
    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
