"""Where work runs: the only module that imports Dask.

Steps are plain functions of one item; the executor maps them over many items and returns the
results in input order, whatever order they finish in.

- ``sync``: in this process, one item after another (debugging, tests, tiny inputs);
- ``local`` (default): a ``distributed.LocalCluster`` with one single-threaded worker process per
  core (``workers`` to choose), started for the run and closed after it. Its workers run with
  ``POLARS_MAX_THREADS=1`` (one worker, one core) and can import the step's modules while they
  start (``imports``; :func:`dask_setup`, a worker preload);
- any other value: the address of a running Dask scheduler (``tcp://host:8786``).

A task whose worker dies under it (out of memory, a crash inside a reader library) is retried on another
worker; one that keeps killing workers (Dask's ``distributed.scheduler.allowed-failures``, 3 by default) is a
:class:`WorkerLost` result for the caller to record (``map_then``'s ``lost``), not the end of the run.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from typing import Any

from tqdm.auto import tqdm


class WorkerLost(Exception):
    """A task that killed every worker it ran on (Dask's ``KilledWorker``), as the steps' callers see it."""

    def __init__(self, attempts: int | None) -> None:
        self.attempts = attempts
        super().__init__(f"its worker process died {'' if attempts is None else f'{attempts} times '}while it "
                         f"ran (out of memory, or a crash inside a library)")


def _worker_lost(err: BaseException) -> WorkerLost | None:
    from distributed import KilledWorker

    if not isinstance(err, KilledWorker):
        return None
    import dask

    return WorkerLost(int(dask.config.get("distributed.scheduler.allowed-failures", 3)) + 1)


class Executor:
    """Maps step functions over items on one scheduler for the lifetime of a ``with`` block."""

    def __init__(self, scheduler: str = "local", workers: int | None = None, progress: bool = True,
                 imports: Sequence[str] = (), memory_limit: str | None = None) -> None:
        self.scheduler = scheduler or "local"
        self.workers = workers
        self.progress = progress
        self.imports = tuple(imports)
        """Modules that local-cluster workers import in the background as they start."""
        self.memory_limit = memory_limit
        """Memory of each local-cluster worker (``"2GB"``; Dask's nanny restarts a worker past 95% of it);
        default: Dask's, the machine's memory shared among the workers."""
        self._client = None
        self._cluster = None

    def __enter__(self) -> "Executor":
        if self.scheduler == "sync":
            return self
        from distributed import Client, LocalCluster

        if self.scheduler == "local":
            import dask

            n = self.workers or os.cpu_count() or 1
            # Environment set before each worker process starts, on top of Dask's own (which limits
            # OpenMP/BLAS threads); polars' thread pool is not limited by it otherwise. A value
            # configured by the user wins.
            environ = {**WORKER_ENVIRON, **dask.config.get("distributed.nanny.pre-spawn-environ", {})}
            preload = list(dask.config.get("distributed.worker.preload", []))
            if self.imports:
                environ[_IMPORTS_VARIABLE] = ",".join(self.imports)
            preload.append(__name__)  # dask_setup: the imports, and Ctrl-C left to the driver
            saved = {k: os.environ.get(k) for k in (*WORKER_ENVIRON, _IMPORTS_VARIABLE)}
            try:
                # nw2's tasks keep no results on the workers, so there is nothing to spill, and a worker paused
                # for its memory would wait for ever with nothing to free: only the nanny's restart past 95% of
                # the limit is left, which ends a task that outgrows its worker (then retried, then lost).
                memory = {f"distributed.worker.memory.{k}": False for k in ("target", "spill", "pause")}
                with dask.config.set({"distributed.nanny.pre-spawn-environ": environ, **memory}):
                    self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                 dashboard_address=None, host="127.0.0.1", preload=preload,
                                                 memory_limit=self.memory_limit or "auto")
            finally:
                # The nanny copies that environment into this process too; keep the driver as it was.
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
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

    def _alone(self, fn: Callable[..., Any], item: Any, kwargs: dict,
               lost: Callable[[Any, WorkerLost], Any] | None) -> Any:
        """``fn(item)`` with nothing else running: its result, or, when it kills its worker again, ``lost``'s."""
        try:
            return self._client.submit(fn, item, pure=False, **kwargs).result()
        except Exception as err:
            gone = _worker_lost(err)
            if gone is None:
                raise
            gone = WorkerLost(2 * gone.attempts)  # among the others, then alone
            if lost is None:
                raise gone from None
            return lost(item, gone)

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

    def map_then(self, fn: Callable[..., Any], items: Sequence[Any], then: Callable[..., Any],
                 expand: Callable[[Any], Iterable[Any]], desc: str, then_desc: str,
                 size: Callable[[Any], int] | None = None, fn_kwargs: dict | None = None,
                 then_kwargs: dict | None = None,
                 lost: Callable[[Any, WorkerLost], Any] | None = None,
                 then_lost: Callable[[Any, WorkerLost], Any] | None = None) -> tuple[list[Any], list[list[Any]]]:
        """Two steps without a barrier between them: ``fn`` over ``items``, and ``then`` over the
        sub-items ``expand(result)`` of each result, submitted as soon as that result is in.

        Returns ``(results, then_results)`` in input order, whatever order tasks finish in:
        ``results[i] = fn(items[i], **fn_kwargs)`` and ``then_results[i] = [then(sub, **then_kwargs)
        for sub in expand(results[i])]``. ``expand`` runs here, in the calling process. On a cluster,
        tasks of ``fn`` go before any waiting ``then`` task (they make the work known) and ``then``
        tasks with a larger ``size(sub)`` go first (fewer idle workers at the end).

        A task that killed its workers gives ``lost(item, WorkerLost)`` (``then_lost(sub, WorkerLost)``) as its
        result instead of ending the run; without a ``lost`` callback the ``WorkerLost`` is raised. Dask blames
        a worker's death on every task it held, queued ones too, so such a task is first tried again alone, once
        the others are done: only one that kills its worker there too is lost.
        """
        fn_kwargs, then_kwargs = fn_kwargs or {}, then_kwargs or {}
        results: list[Any] = [None] * len(items)
        then_results: list[list[Any]] = [[] for _ in items]
        bars = [tqdm(total=total, desc=d, unit="task", disable=not self.progress or not items,
                     dynamic_ncols=True, leave=False) for total, d in ((len(items), desc), (0, then_desc))]

        def more(n: int) -> None:
            bars[1].total += n
            bars[1].refresh()

        try:
            if self._client is None:
                for i, item in enumerate(items):
                    results[i] = fn(item, **fn_kwargs)
                    bars[0].update()
                    subs = list(expand(results[i]))
                    more(len(subs))
                    for sub in subs:
                        then_results[i].append(then(sub, **then_kwargs))
                        bars[1].update()
                return results, then_results
            from distributed import as_completed

            first = 2**62  # above any size: the first step's tasks run before waiting second-step ones
            futures = self._client.map(fn, items, pure=False, priority=first, **fn_kwargs)
            pending = {f.key: (f, i, None) for i, f in enumerate(futures)}
            subs_of: dict[int, list[Any]] = {}
            suspects: list[tuple[int, int | None]] = []
            done = as_completed(futures)
            try:
                for future in done:
                    _, i, j = pending.pop(future.key)
                    try:
                        result = future.result()
                    except Exception as err:
                        if _worker_lost(err) is None:
                            raise
                        suspects.append((i, j))
                        continue
                    if j is not None:
                        then_results[i][j] = result
                        bars[1].update()
                        continue
                    results[i] = result
                    bars[0].update()
                    subs = list(expand(result))
                    subs_of[i] = subs
                    then_results[i] = [None] * len(subs)
                    more(len(subs))
                    order = range(len(subs))
                    if size is not None:
                        order = sorted(order, key=lambda k: -size(subs[k]))
                    for j in order:
                        priority = 0 if size is None else max(0, min(int(size(subs[j])), first - 1))
                        f = self._client.submit(then, subs[j], pure=False, priority=priority, **then_kwargs)
                        pending[f.key] = (f, i, j)
                        done.add(f)
            except BaseException:
                self._client.cancel([f for f, _, _ in pending.values()])
                raise
            for i, j in suspects:
                if j is not None:
                    then_results[i][j] = self._alone(then, subs_of[i][j], then_kwargs, then_lost)
                    bars[1].update()
                    continue
                results[i] = self._alone(fn, items[i], fn_kwargs, lost)
                bars[0].update()
                subs = list(expand(results[i]))
                more(len(subs))
                then_results[i] = []
                for sub in subs:
                    then_results[i].append(self._alone(then, sub, then_kwargs, then_lost))
                    bars[1].update()
            return results, then_results
        finally:
            for bar in bars:
                bar.close()


#: Environment of local-cluster worker processes, added to Dask's ``pre-spawn-environ``.
WORKER_ENVIRON = {"POLARS_MAX_THREADS": "1"}
#: How ``Executor.imports`` reaches the workers' :func:`dask_setup`.
_IMPORTS_VARIABLE = "NW2_WORKER_IMPORTS"


def _import_quietly(names: Sequence[str]) -> None:
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:  # the task that needs it will import it again and report the error
            pass


def _not_an_nw2_error(record: logging.LogRecord) -> bool:
    """False for a worker's "Compute Failed" log of a task that raised one of nw2's errors (its arguments hold the
    exception's text, ``StorageError('...')``)."""
    from nw2.core import errors

    if not str(record.msg).startswith("Compute Failed") or not isinstance(record.args, tuple) or len(record.args) < 4:
        return True
    name = str(record.args[3]).split("(", 1)[0]
    kind = getattr(errors, name, None)
    return not (isinstance(kind, type) and issubclass(kind, errors.Nw2Error))


def dask_setup(worker) -> None:
    """Dask worker preload hook: a local cluster with ``imports`` names this module as a preload.

    Starts importing the executor's ``imports`` (for ingest ``pipeline.pieces``, which brings SciPy's
    signal and ndimage, pyarrow and the readers' package, then pandas) in a background thread and
    returns at once, so the imports overlap the rest of the cluster's start instead of delaying the
    worker's first task by about a second. That task unpickles a function of the module being
    imported first, so it waits for that import to finish (Python's per-module import lock) while
    holding no other import lock.
    """
    # Ctrl-C in a terminal reaches the whole process group: the driver handles it (one line, what is kept), and
    # a worker that died of it mid-task would only add a traceback each; the driver's cluster close stops them.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tasks cancelled when the driver stops (an interrupt) are expected there, not a worker's warning to print
    logging.getLogger("distributed.worker.state_machine").setLevel(logging.ERROR)
    # an nw2 error (a full disk) travels back to the driver, which says it in one line: no worker traceback too
    logging.getLogger("distributed.worker").addFilter(_not_an_nw2_error)
    names = [n for n in os.environ.get(_IMPORTS_VARIABLE, "").split(",") if n]
    if names:
        threading.Thread(target=_import_quietly, args=(names,), name="nw2-worker-imports",
                         daemon=True).start()


@contextmanager
def executor(scheduler: str = "local", workers: int | None = None, progress: bool = True,
             imports: Sequence[str] = (), memory_limit: str | None = None):
    with Executor(scheduler, workers, progress, imports, memory_limit) as ex:
        yield ex
