"""Where work runs: the only module that imports Dask.

Steps are plain functions of one item; the executor maps them over many items and returns the
results in input order, whatever order they finish in.

- ``sync``: in this process, one item after another (debugging, tests, tiny inputs);
- ``local`` (default): a ``distributed.LocalCluster`` with one single-threaded worker process per
  core (``workers`` to choose), started for the run and closed after it;
- any other value: the address of a running Dask scheduler (``tcp://host:8786``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm


class Executor:
    """Maps step functions over items on one scheduler for the lifetime of a ``with`` block."""

    def __init__(self, scheduler: str = "local", workers: int | None = None, progress: bool = True) -> None:
        self.scheduler = scheduler or "local"
        self.workers = workers
        self.progress = progress
        self._client = None
        self._cluster = None

    def __enter__(self) -> "Executor":
        if self.scheduler == "sync":
            return self
        from distributed import Client, LocalCluster

        if self.scheduler == "local":
            n = self.workers or os.cpu_count() or 1
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                         dashboard_address=None, host="127.0.0.1")
            self._client = Client(self._cluster)
        else:
            self._client = Client(self.scheduler, timeout="20s")
        return self

    def __exit__(self, *exc) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None

    @property
    def n_workers(self) -> int:
        if self._client is None:
            return 1
        return len(self._client.scheduler_info().get("workers", {})) or 1

    def map(self, fn: Callable[..., Any], items: Sequence[Any], desc: str, **kwargs) -> list[Any]:
        """``[fn(item, **kwargs) for item in items]``, in parallel, with a progress bar."""
        bar = tqdm(total=len(items), desc=desc, unit="task", disable=not self.progress or not items,
                   dynamic_ncols=True, leave=False)
        try:
            if self._client is None:
                out = []
                for item in items:
                    out.append(fn(item, **kwargs))
                    bar.update()
                return out
            from distributed import as_completed

            # The shared arguments are small (a spec, a URL): they travel with each task.
            futures = self._client.map(fn, items, pure=False, **kwargs)
            for _ in as_completed(futures):
                bar.update()
            return self._client.gather(futures)
        finally:
            bar.close()


@contextmanager
def executor(scheduler: str = "local", workers: int | None = None, progress: bool = True):
    with Executor(scheduler, workers, progress) as ex:
        yield ex
