"""Executors: run independent tasks (replications, sweep points, worlds) serially, on a local process
pool, or on Dask distributed, with the same results whichever ran them.

Every executor has one method that matters::

    with get_executor("local", workers=4) as ex:
        for index, result in ex.submit_all(fn, tasks):
            if isinstance(result, BaseException):
                failures[index] = result   # the task raised; the other tasks go on
            else:
                results[index] = result

``fn`` must be a module-level function and ``tasks`` plain picklable data (dicts, numbers, strings),
because the ``local`` and ``dask`` executors send them to other processes. Results are yielded as
tasks complete (``index`` is the position in ``tasks``), so a caller can persist each one at once.
A task that raises yields the exception object instead of raising it.

Kinds
-----
``serial``
    In-process, in task order. For tests, debugging and ``workers=1``.
``local``
    A :class:`concurrent.futures.ProcessPoolExecutor` (``fork`` start method on Linux, so workers
    start fast and inherit imported modules). Default workers: the cores this process may use
    (``os.sched_getaffinity``). Results come back as a pickle (protocol 5) whose arrays travel
    out of band, through a file in shared memory that this process maps instead of reading them
    through the pool's pipe (:func:`_hand_back`). Tasks given to the constructor as ``inherit``
    are not pickled at all: the workers fork with them, and ``submit_all(fn, inherit)`` sends
    only their indices (the worlds of a run: its items, population and pre-period state).
``dask``
    A ``distributed.LocalCluster`` (processes, one thread per worker) started and closed by the
    executor, or, with ``scheduler="tcp://host:port"``, an existing cluster reached through
    ``distributed.Client``. Workers of an existing cluster must be able to import counterfeed and
    the module that defines ``fn``.
"""

from __future__ import annotations

import logging
import mmap
import os
import pickle
import shutil
import sys
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from counterfeed.errors import CounterfeedError

__all__ = ["Executor", "SerialExecutor", "LocalExecutor", "DaskExecutor", "get_executor",
           "available_cores", "EXECUTOR_KINDS"]

EXECUTOR_KINDS = ("serial", "local", "dask")


def available_cores() -> int:
    """The number of cores this process may run on (CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class Executor(ABC):
    """Base class: runs ``fn(task)`` for every task and yields ``(index, result_or_exception)``."""

    kind = "base"

    def __init__(self, workers: int | None = None):
        if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
            raise CounterfeedError(f"workers must be a positive integer, got {workers!r}")
        self.workers = int(workers) if workers is not None else None
        self._closed = False

    @abstractmethod
    def submit_all(self, fn: Callable[[Any], Any], tasks: Sequence[Any]) -> Iterator[tuple[int, Any]]:
        """Run ``fn`` on every task; yield ``(index, result)`` as tasks finish (exceptions as values)."""

    def close(self) -> None:
        """Release workers (idempotent)."""
        self._closed = True

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers})"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")


class SerialExecutor(Executor):
    """Runs tasks one after the other in this process."""

    kind = "serial"

    def __init__(self, workers: int | None = None):
        super().__init__(workers)
        self.workers = 1

    def submit_all(self, fn, tasks):
        self._check_open()
        for i, task in enumerate(tasks):
            try:
                result = fn(task)
            except Exception as exc:  # noqa: BLE001 -- a task's failure is data for the caller
                result = exc
            yield i, result


def _noop() -> int:
    return os.getpid()


# -- results through shared memory, tasks through fork --------------------------------------------
_INHERITED: Sequence[Any] = ()  # the parent's ``inherit`` tasks, as its workers forked with them
_ALIGN = 64  # each out-of-band buffer starts at a multiple of this in the file (aligned arrays)


class _MappedResult:
    """A result as :func:`_hand_back` returns it: the protocol-5 pickle stream (small) and the file
    holding its out-of-band buffers, ``spans`` ``(offset, bytes)`` each."""

    __slots__ = ("data", "path", "spans")

    def __init__(self, data: bytes, path: str, spans: list[tuple[int, int]]):
        self.data, self.path, self.spans = data, path, spans


def _hand_back(result: Any, directories: tuple[str, ...]) -> Any:
    """In a worker: ``result`` pickled with protocol 5, its out-of-band buffers (contiguous NumPy
    and Arrow buffers: event logs, outcome columns) written once into a new file in the first of
    ``directories`` with room for it (twice their size: shared memory where the OS has it, else the
    temp dir; with room in none, through the pipe). A result without such buffers comes back as it is.
    Pickling the arrays into the pool's pipe instead copied them three times and cost the parent
    about 0.7 CPU s per quickstart run (PEP 574 describes the out-of-band protocol)."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(result, protocol=5, buffer_callback=buffers.append)
    if not buffers:
        return result
    raws = [buf.raw() for buf in buffers]
    need = sum(r.nbytes + _ALIGN for r in raws)
    for where in directories:
        try:
            st = os.statvfs(where)
            if st.f_bavail * st.f_frsize < 2 * need:
                continue
            return _MappedResult(data, _write_buffers(raws, where), _spans(raws))
        except OSError:
            continue
    return result  # no room anywhere: through the pipe, as pickle does by default


def _spans(raws: list[memoryview]) -> list[tuple[int, int]]:
    spans, offset = [], 0
    for raw in raws:
        offset += -offset % _ALIGN
        spans.append((offset, raw.nbytes))
        offset += raw.nbytes
    return spans


def _write_buffers(raws: list[memoryview], directory: str) -> str:
    """The buffers in one new file in ``directory``, at the offsets of :func:`_spans`; its path.
    A failed write leaves no file."""
    fd, path = tempfile.mkstemp(dir=directory, suffix=".buffers")
    try:
        with os.fdopen(fd, "wb") as f:
            offset = 0
            for raw in raws:
                pad = -offset % _ALIGN
                f.write(b"\0" * pad)
                f.write(raw)
                offset += pad + raw.nbytes
    except BaseException:
        os.unlink(path)
        raise
    return path


def _take_back(result: Any) -> Any:
    """In the parent: the object :func:`_hand_back` sent. Its arrays are private copy-on-write
    views of the mapped file (writable; the file is unlinked at once and its memory freed with
    the last array)."""
    if not isinstance(result, _MappedResult):
        return result
    with open(result.path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        memory = mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) if size else bytearray()
    os.unlink(result.path)
    view = memoryview(memory)
    return pickle.loads(result.data, buffers=[view[o:o + n] for o, n in result.spans])


def _call(fn: Callable[[Any], Any], task: Any, directories: tuple[str, ...]) -> Any:
    return _hand_back(fn(task), directories)


def _call_inherited(fn: Callable[[Any], Any], index: int, directories: tuple[str, ...]) -> Any:
    return _hand_back(fn(_INHERITED[index]), directories)


def _result_dirs() -> tuple[str, ...]:
    """New private directories for results: in ``/dev/shm`` (Linux shared memory; it may be small,
    e.g. 64 MB in a container) and in the temp dir."""
    roots = [d for d in ("/dev/shm",) if os.path.isdir(d) and os.access(d, os.W_OK)] + [tempfile.gettempdir()]
    return tuple(tempfile.mkdtemp(prefix="counterfeed-results-", dir=d) for d in dict.fromkeys(roots))


class LocalExecutor(Executor):
    """A process pool on this machine (``fork`` on Linux; the platform default elsewhere).

    ``inherit``: tasks the workers receive by fork rather than by pickle, for
    ``submit_all(fn, inherit)`` (the very same sequence object); elsewhere they are pickled.
    """

    kind = "local"

    def __init__(self, workers: int | None = None, inherit: Sequence[Any] | None = None):
        super().__init__(workers)
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        global _INHERITED
        self.workers = self.workers or available_cores()
        fork = sys.platform.startswith("linux")
        ctx = multiprocessing.get_context("fork") if fork else None
        self._inherit = inherit if fork else None
        self._results = _result_dirs()
        self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx)
        if self._inherit is not None:
            _INHERITED = self._inherit
        # With fork every worker starts at the first submit: do it now, before the caller starts
        # threads of its own (progress bars), so no child inherits a lock held by another thread;
        # and so that the workers fork with the inherited tasks.
        try:
            self._pool.submit(_noop).result()
        finally:
            _INHERITED = ()

    def submit_all(self, fn, tasks):
        self._check_open()
        from concurrent.futures import as_completed

        if tasks is self._inherit:
            futures = {self._pool.submit(_call_inherited, fn, i, self._results): i for i in range(len(tasks))}
        else:
            futures = {self._pool.submit(_call, fn, task, self._results): i for i, task in enumerate(tasks)}
        try:
            for fut in as_completed(futures):
                exc = fut.exception()
                yield futures[fut], (exc if exc is not None else _take_back(fut.result()))
        finally:
            for fut in futures:
                fut.cancel()

    def close(self) -> None:
        if not self._closed:
            try:
                self._pool.shutdown(wait=True, cancel_futures=True)
            finally:
                for d in self._results:  # results never taken back
                    shutil.rmtree(d, ignore_errors=True)
        super().close()


class DaskExecutor(Executor):
    """Dask distributed: a LocalCluster it owns, or an existing scheduler (``tcp://host:port``)."""

    kind = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None,
                 connect_timeout: float = 30.0):
        super().__init__(workers)
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - distributed is a dependency
            raise CounterfeedError("the dask executor needs 'distributed' (pip install 'dask[distributed]')") from exc
        self.scheduler = scheduler
        self._cluster = None
        if scheduler:
            if not isinstance(scheduler, str) or "://" not in scheduler:
                raise CounterfeedError(f"scheduler must be an address such as tcp://127.0.0.1:8786, got {scheduler!r}")
            try:
                self._client = Client(scheduler, timeout=connect_timeout)
            except (OSError, TimeoutError) as exc:
                raise CounterfeedError(f"cannot connect to the Dask scheduler at {scheduler}: {exc}") from None
            self.workers = len(self._client.scheduler_info().get("workers", {})) or self.workers
        else:
            self.workers = self.workers or available_cores()
            self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                         dashboard_address=None, silence_logs=logging.ERROR)
            self._client = Client(self._cluster)

    @property
    def client(self):
        """The ``distributed.Client`` in use."""
        return self._client

    def submit_all(self, fn, tasks):
        self._check_open()
        from distributed import as_completed

        futures = self._client.map(fn, list(tasks), pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                if fut.status == "error":
                    result: Any = fut.exception()
                elif fut.status == "cancelled":
                    result = RuntimeError("task was cancelled (a worker may have died)")
                else:
                    try:
                        result = fut.result()
                    except Exception as exc:  # noqa: BLE001
                        result = exc
                yield index[fut.key], result
                fut.release()
        finally:
            self._client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        if not self._closed:
            try:
                self._client.close()
            finally:
                if self._cluster is not None:
                    self._cluster.close()
        super().close()

    def __repr__(self) -> str:
        where = self.scheduler or "LocalCluster"
        return f"DaskExecutor({where}, workers={self.workers})"


def get_executor(kind: str = "local", workers: int | None = None, scheduler: str | None = None,
                 inherit: Sequence[Any] | None = None) -> Executor:
    """An executor by kind: ``serial``, ``local`` or ``dask`` (``scheduler`` implies ``dask``).

    ``workers=1`` with ``kind="local"`` gives the serial executor (no pool for one worker).
    ``inherit``: tasks a ``local`` pool's workers get by fork (see :class:`LocalExecutor`).
    """
    if scheduler:
        if kind not in ("dask", "local"):
            raise CounterfeedError(f"--scheduler needs the dask executor, not '{kind}'")
        return DaskExecutor(workers=workers, scheduler=scheduler)
    if kind == "serial":
        return SerialExecutor(workers)
    if kind == "local":
        if workers == 1:
            return SerialExecutor(1)
        return LocalExecutor(workers, inherit=inherit)
    if kind == "dask":
        return DaskExecutor(workers=workers)
    raise CounterfeedError(f"unknown executor '{kind}'; expected one of: {', '.join(EXECUTOR_KINDS)}")
