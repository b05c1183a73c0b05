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
    (``os.sched_getaffinity``). Results come back as a pickle (protocol 5) whose large arrays
    travel out of band, through files in shared memory that this process maps instead of reading
    them through the pool's pipe; workers die with this process and leave Ctrl-C to it, and an
    error or interrupt stops them at once (:mod:`counterfeed.core.pool_transport`). Tasks given to
    the constructor as ``inherit`` are not pickled at all: the workers fork with them, and
    ``submit_all(fn, inherit)`` sends only their indices (the worlds of a run: its items,
    population and pre-period state).
``dask``
    A ``distributed.LocalCluster`` (processes, one thread per worker) started and closed by the
    executor, or, with ``scheduler="tcp://host:port"``, an existing cluster reached through
    ``distributed.Client``. Workers of an existing cluster must be able to import counterfeed and
    the module that defines ``fn``.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import os
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from counterfeed.core.pool_transport import (forking_workers, hand_back, remove_dirs, result_dirs, take_back,
                                              worker_start)
from counterfeed.errors import CounterfeedError

__all__ = ["Executor", "SerialExecutor", "LocalExecutor", "DaskExecutor", "get_executor", "refuse_in_spawned_bootstrap",
           "available_cores", "pool_size", "EXECUTOR_KINDS", "WorkerLost"]

EXECUTOR_KINDS = ("serial", "local", "dask")


def available_cores() -> int:
    """The number of cores this process may run on (CPU affinity where the OS reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _checked_workers(workers: int | None) -> int | None:
    """``workers`` as an int (None stays None); raises :class:`CounterfeedError` unless positive."""
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise CounterfeedError(f"workers must be a positive integer, got {workers!r}")
    return int(workers) if workers is not None else None


def pool_size(workers: int | None, tasks: int) -> int:
    """Worker processes for ``tasks`` tasks on this machine: ``workers`` (None: one per core), at most
    ``tasks``. A pool or local cluster starts all its processes at once, so processes beyond the
    tasks would never get one (``--workers 100000`` forked until the machine ran out of
    processes). Raises :class:`CounterfeedError` unless ``workers`` is positive."""
    workers = _checked_workers(workers)
    return min(workers if workers is not None else available_cores(), max(1, int(tasks)))


class Executor(ABC):
    """Base class: runs ``fn(task)`` for every task and yields ``(index, result_or_exception)``."""

    kind = "base"

    def __init__(self, workers: int | None = None):
        self.workers = _checked_workers(workers)
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


class WorkerLost(CounterfeedError):
    """A worker process of the local pool died while it ran a task (killed, or out of memory)."""

    exit_code = 1  # not the user's input


def _noop() -> int:
    return os.getpid()


# -- tasks through fork ---------------------------------------------------------------------------
_INHERITED: Sequence[Any] = ()  # the parent's ``inherit`` tasks, as its workers forked with them
_FORK_LOCK = threading.Lock()  # one pool at a time sets _INHERITED and forks (run() in threads)


def _call(fn: Callable[[Any], Any], task: Any, directories: tuple[str, ...]) -> Any:
    return hand_back(fn(task), directories)


def _call_inherited(fn: Callable[[Any], Any], index: int, directories: tuple[str, ...]) -> Any:
    return hand_back(fn(_INHERITED[index]), directories)


class LocalExecutor(Executor):
    """A process pool on this machine (``fork`` on Linux; the platform default elsewhere).

    ``inherit``: tasks the workers receive by fork rather than by pickle, for
    ``submit_all(fn, inherit)`` (the very same sequence object); elsewhere they are pickled.
    """

    kind = "local"

    def __init__(self, workers: int | None = None, inherit: Sequence[Any] | None = None):
        super().__init__(workers)
        from concurrent.futures import ProcessPoolExecutor

        global _INHERITED
        self.workers = self.workers or available_cores()
        fork = sys.platform.startswith("linux")
        ctx = multiprocessing.get_context("fork") if fork else None
        self._inherit = inherit if fork else None
        self._results = result_dirs()
        # With fork every worker starts at the first submit: do it now, before the caller starts
        # threads of its own (progress bars), so no child inherits a lock held by another thread;
        # and so that the workers fork with the inherited tasks.
        with _FORK_LOCK:
            before = set(multiprocessing.active_children())
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx,
                                             initializer=worker_start, initargs=(os.getpid(),))
            if self._inherit is not None:
                _INHERITED = self._inherit
            try:
                with forking_workers():  # the workers fork here, in this thread
                    future = self._pool.submit(_noop)
                future.result()
            finally:
                _INHERITED = ()
            self._workers = [p for p in multiprocessing.active_children() if p not in before]

    def submit_all(self, fn, tasks):
        self._check_open()
        from concurrent.futures import as_completed
        from concurrent.futures.process import BrokenProcessPool

        if tasks is self._inherit:
            futures = {self._pool.submit(_call_inherited, fn, i, self._results): i for i in range(len(tasks))}
        else:
            futures = {self._pool.submit(_call, fn, task, self._results): i for i, task in enumerate(tasks)}
        try:
            for fut in as_completed(futures):
                exc = fut.exception()
                if isinstance(exc, BrokenProcessPool):
                    exc = WorkerLost(f"a worker process died while it ran task {futures[fut]} (killed, or out of "
                                     f"memory?): {exc}")
                yield futures[fut], (exc if exc is not None else take_back(fut.result()))
        finally:
            for fut in futures:
                fut.cancel()

    def __exit__(self, exc_type, *exc: object) -> None:
        if exc_type is not None and not self._closed:  # an error or an interrupt: stop the workers now
            for proc in self._workers:
                if proc.is_alive():
                    proc.terminate()
            self._unblock_results()
        self.close()

    def _unblock_results(self) -> None:
        """Once the terminated workers have exited, close this process's write end of the pool's
        result pipe. A worker stopped while it was writing its result leaves part of a message
        there, and the pool's manager thread, which :meth:`close` joins, would wait for the rest
        forever: this process held the pipe's last write end. Closed, the wait ends in end-of-file,
        which the pool takes for a broken pool (CPython's ``ProcessPoolExecutor``; private names,
        looked up defensively)."""
        for proc in self._workers:
            proc.join(10)
        if any(proc.is_alive() for proc in self._workers):
            return  # a worker still writing could still finish its message
        writer = getattr(getattr(self._pool, "_result_queue", None), "_writer", None)
        if writer is not None:
            writer.close()

    def close(self) -> None:
        if not self._closed:
            try:
                self._pool.shutdown(wait=True, cancel_futures=True)
            finally:
                remove_dirs(self._results)
        super().close()


def _check_listening(scheduler: str, timeout: float) -> None:
    """Raise one CounterfeedError at once when nothing can answer at ``scheduler`` (``tcp://HOST:PORT``,
    already checked): a host that does not resolve, a refused connection, an unreachable network,
    no TCP connection within ``timeout`` seconds, or a peer whose first bytes are no Dask scheduler's
    (:func:`_check_first_bytes`). ``distributed.Client`` retries all of these until
    its own timeout (30 s) and then reports a timeout, whatever the cause."""
    import socket

    hostport = scheduler.split("://", 1)[1]
    host, _, port = hostport.rpartition(":")
    host = host[1:-1] if host.startswith("[") else host  # a bracketed IPv6 address
    where = f"cannot connect to the Dask scheduler at {scheduler}"
    try:
        addresses = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CounterfeedError(f"{where}: cannot resolve host {host!r} ({reason}); expected the name or "
                               "address of the machine that runs the scheduler") from None
    problem: OSError | None = None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(timeout)
            try:
                sock.connect(address)
            except OSError as exc:
                problem = problem if isinstance(problem, ConnectionRefusedError) else exc
                continue
            _check_first_bytes(sock, scheduler)
            return  # something listens and sent nothing wrong (yet): the Client finds out the rest
    if isinstance(problem, ConnectionRefusedError):
        raise CounterfeedError(f"{where}: connection refused: nothing listens at {hostport}; is the scheduler "
                               "running, and is this its own port (usually 8786)?")
    if isinstance(problem, TimeoutError):
        raise CounterfeedError(f"{where}: no TCP connection to {hostport} within {timeout:g} s (the host is down, "
                               "or a firewall drops the connection?)")
    reason = getattr(problem, "strerror", None) or str(problem)
    raise CounterfeedError(f"{where}: {hostport} cannot be reached ({reason})")


#: seconds :func:`_check_first_bytes` waits for a scheduler's greeting; silence is left to the Client
_GREETING_WAIT = 1.0
#: the first message a Dask scheduler sends (its handshake, a few hundred bytes) is shorter than this
_GREETING_MAX = 2**32


def _not_a_scheduler(scheduler: str, what: str) -> CounterfeedError:
    return CounterfeedError(f"cannot connect to the Dask scheduler at {scheduler}: something accepts connections "
                            f"there but did not answer as a Dask scheduler ({what}; expected the scheduler's own "
                            "port, usually 8786, not its dashboard's or another server's)")


def _check_first_bytes(sock: Any, scheduler: str) -> None:
    """Raise one CounterfeedError when the peer on ``sock`` (connected) is not a Dask scheduler by
    what it sends first. A scheduler writes its handshake as soon as it accepts a connection,
    prefixed by the message's length (8 bytes, ``struct`` format ``Q``: distributed's TCP comm); a
    peer that closes the connection before 8 bytes, or whose 8 bytes are no plausible length (an
    HTTP server's ``HTTP/1.1 400``, which distributed took for a 3 EiB message and reported as a
    MemoryError), is something else. A peer silent for :data:`_GREETING_WAIT` seconds passes: a
    busy scheduler may answer late, and the Client's own bounded wait (:func:`_connect`) decides."""
    import socket
    import struct
    import time

    got, deadline = b"", time.monotonic() + _GREETING_WAIT
    try:
        while len(got) < 8:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            chunk = sock.recv(8 - len(got))
            if not chunk:
                raise _not_a_scheduler(scheduler, f"it closed the connection after {len(got)} bytes"
                                       if got else "it closed the connection without a word")
            got += chunk
    except (socket.timeout, TimeoutError):
        return
    except OSError as exc:  # reset by the peer: not a scheduler's greeting either
        raise _not_a_scheduler(scheduler, f"the connection failed: {exc.strerror or exc}") from None
    (length,) = struct.unpack("Q", got)  # distributed's own format (native byte order)
    if not 8 <= length < _GREETING_MAX:
        raise _not_a_scheduler(scheduler, f"it sent {got!r}")


def _connect(client_class: Any, scheduler: str, timeout: float) -> Any:
    """A ``distributed.Client`` of the scheduler at ``scheduler``, or one CounterfeedError within
    about ``timeout`` + 5 seconds. The Client's own ``timeout`` bounds opening the connection, not
    the handshake after it: a port that accepts and never answers as a scheduler (an HTTP server, a
    scheduler's dashboard) held it for good. So it connects on a thread this one waits for."""
    box: dict[str, Any] = {}

    def connect() -> None:
        try:
            box["client"] = client_class(scheduler, timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"] = exc

    thread = threading.Thread(target=connect, name="counterfeed-dask-connect", daemon=True)
    thread.start()
    thread.join(timeout + 5.0)
    if thread.is_alive():
        raise CounterfeedError(f"cannot connect to the Dask scheduler at {scheduler}: something accepts connections "
                               f"there but did not answer as a Dask scheduler within {timeout + 5.0:g} s (the "
                               "scheduler's own port, usually 8786, not its dashboard's)")
    exc = box.get("error")
    if exc is not None:
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: not a connection failure
            raise exc
        if isinstance(exc, MemoryError):  # distributed took a non-Dask answer's first bytes for a length
            raise _not_a_scheduler(scheduler, f"{type(exc).__name__}: {exc}") from None
        raise CounterfeedError(f"cannot connect to the Dask scheduler at {scheduler}: "
                               f"{type(exc).__name__}: {exc}") from None
    return box["client"]


def refuse_in_spawned_bootstrap(what: str) -> None:
    """Exit at once, with one line, when this process is a spawned child still importing the parent's
    main script: a script that calls counterfeed at its top level, without ``if __name__ ==
    "__main__":``, run again by every worker process a local Dask cluster spawns (Python's ``spawn``
    start method imports the main module anew). Each worker would otherwise simulate the script's runs
    again, then fail to start a cluster of its own, in about 300 lines of tracebacks (break test 12).
    ``what``: the call, for the message."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise SystemExit(f"counterfeed: {what} was called while a worker process imported the main script: "
                         "call counterfeed under 'if __name__ == \"__main__\":' in a script that starts Dask workers")


def _script_hint() -> str:
    """The advice for a local cluster whose worker processes failed to start, when the main module is a
    script they import again (empty for ``python -m counterfeed``, a notebook, or a guarded script)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not path or getattr(getattr(main, "__spec__", None), "name", "").startswith("counterfeed"):
        return ""
    return (f". Its worker processes import the main script ({path}) again: if it calls counterfeed at its top "
            "level, put the calls under 'if __name__ == \"__main__\":'")


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
            from counterfeed.core.shard_spec import check_scheduler_address

            try:
                check_scheduler_address(str(scheduler))
            except ValueError as exc:
                raise CounterfeedError(f"scheduler: {exc}") from None
            _check_listening(scheduler, min(connect_timeout, 5.0))  # a refused port fails now, not in 30 s
            self._client = _connect(Client, scheduler, connect_timeout)
            self.workers = len(self._client.scheduler_info().get("workers", {})) or self.workers
        else:
            self.workers = self.workers or available_cores()
            # its HTTP server (always started) on a free port: ":8787", the default, warned on stderr
            # whenever another scheduler held it; and only critical logs: the run reports a failed
            # worker or shard itself, in one message, and a heartbeat a loaded worker missed is not news
            # and its worker processes ignore SIGINT (core._dask_worker_setup): a terminal's Ctrl-C
            # reaches them too, and this process stops the run and closes them
            # (started with SIGINT blocked: the workers it spawns, and its event-loop thread, keep it
            # blocked until their set-up ignores it; a Ctrl-C meanwhile reaches this process when the
            # cluster is up, and the cluster is closed on the way out)
            from counterfeed.core.interrupts import sigint_blocked_for_spawned

            refuse_in_spawned_bootstrap("a local Dask cluster")
            cluster = None
            try:
                with sigint_blocked_for_spawned():
                    cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                           dashboard_address=":0", silence_logs=logging.CRITICAL,
                                           preload=["counterfeed.core._dask_worker_setup"])
                self._cluster = cluster
                self._client = Client(cluster)
            except BaseException as exc:
                if cluster is not None:
                    from counterfeed.core.interrupts import held

                    with held():
                        cluster.close()
                hint = _script_hint() if isinstance(exc, Exception) else ""
                if hint:
                    raise CounterfeedError(f"the local Dask cluster could not start its worker processes "
                                           f"({type(exc).__name__}: {exc}){hint}") from exc
                raise

    @property
    def client(self):
        """The ``distributed.Client`` in use."""
        return self._client

    def submit_all(self, fn, tasks):
        self._check_open()
        from distributed import as_completed

        if self.scheduler:  # workers the user started: each task first checks that its worker runs this code
            from counterfeed.core.code_identity import code_fingerprint, run_checked

            fn = functools.partial(run_checked, code_fingerprint(), fn)
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
                 inherit: Sequence[Any] | None = None, tasks: int | None = None) -> Executor:
    """An executor by kind: ``serial``, ``local`` or ``dask`` (``scheduler`` implies ``dask``).

    ``workers=1`` with ``kind="local"`` gives the serial executor (no pool for one worker).
    ``inherit``: tasks a ``local`` pool's workers get by fork (see :class:`LocalExecutor`).
    ``tasks``: how many tasks will be submitted, when known: a pool or local cluster of this
    machine then has :func:`pool_size` worker processes. An existing cluster (``scheduler``) is used
    as it is.
    """
    if tasks is not None and not scheduler and kind in ("local", "dask"):
        workers = pool_size(workers, tasks)
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
