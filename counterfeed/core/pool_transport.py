"""How the local process pool (:class:`counterfeed.core.executors.LocalExecutor`) hands results
back, and how its workers live and die with the process that forked them.

Results: a worker pickles its result with protocol 5 (PEP 574). Buffers of at least
:data:`OUT_OF_BAND_BYTES` (the event logs' columns) travel out of band, each written once into its
own file in a private directory in shared memory (``/dev/shm``; the temp dir when that has no room;
the pool's pipe when nothing has), which the parent maps copy-on-write and unlinks at once: an
array's memory is freed with the array. Smaller buffers (outcome columns) stay in the pickle, so a
kept result pins no shared memory. Pickling the arrays into the pipe instead copied them three times
and cost the parent about 0.7 CPU s per quickstart run.

Lifetime: every worker asks Linux to kill it when its parent dies (``PR_SET_PDEATHSIG``), so a
killed run leaves no worker behind, and ignores SIGINT (a Ctrl-C reaches the whole process group;
the parent handles it and stops the workers). A result directory is named after the parent's pid;
directories whose process is gone (a run killed with SIGKILL) are removed by the next pool.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["OUT_OF_BAND_BYTES", "MappedResult", "hand_back", "take_back", "result_dirs", "remove_dirs",
           "worker_start"]

OUT_OF_BAND_BYTES = 1 << 20  # buffers from this size travel through their own file
_PREFIX = "counterfeed-results-"


class MappedResult:
    """A result as :func:`hand_back` returns it: the protocol-5 pickle stream and the files holding
    its out-of-band buffers, one per buffer, in order."""

    __slots__ = ("data", "paths")

    def __init__(self, data: bytes, paths: list[str]):
        self.data, self.paths = data, paths


def hand_back(result: Any, directories: tuple[str, ...]) -> Any:
    """In a worker: ``result`` as a :class:`MappedResult` whose large buffers are files in the first
    of ``directories`` with room for them (twice their size); ``result`` itself when it has no
    large buffer or no directory has room (the pipe then carries it, pickled as usual)."""
    raws: list[memoryview] = []

    def out_of_band(buf: pickle.PickleBuffer) -> bool:  # a true value keeps the buffer in the pickle
        raw = buf.raw()
        if raw.nbytes < OUT_OF_BAND_BYTES:
            return True
        raws.append(raw)
        return False

    data = pickle.dumps(result, protocol=5, buffer_callback=out_of_band)
    if not raws:
        return result
    need = sum(r.nbytes for r in raws)
    for where in directories:
        paths: list[str] = []
        try:
            st = os.statvfs(where)
            if st.f_bavail * st.f_frsize < 2 * need:
                continue
            for raw in raws:
                fd, path = tempfile.mkstemp(dir=where, suffix=".buffer")
                paths.append(path)
                with os.fdopen(fd, "wb") as f:
                    f.write(raw)
            return MappedResult(data, paths)
        except OSError:  # no room after all (ENOSPC): the next directory, or the pipe
            for path in paths:
                Path(path).unlink(missing_ok=True)
    return result


def take_back(result: Any) -> Any:
    """In the parent: the object :func:`hand_back` sent, its large arrays copy-on-write views of the
    mapped files (writable), which are unlinked here."""
    if not isinstance(result, MappedResult):
        return result
    views = []
    try:
        for path in result.paths:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                views.append(memoryview(mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY)))
    finally:
        for path in result.paths:
            Path(path).unlink(missing_ok=True)
    return pickle.loads(result.data, buffers=views)


def result_dirs() -> tuple[str, ...]:
    """New private directories for one pool's results (``/dev/shm`` where Linux has it, and the temp
    dir), after removing those left by runs that no longer exist."""
    shm = "/dev/shm"
    roots = list(dict.fromkeys(([shm] if os.path.isdir(shm) and os.access(shm, os.W_OK) else [])
                               + [tempfile.gettempdir()]))
    for root in roots:
        _remove_stale(Path(root))
    return tuple(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=d) for d in roots)


def remove_dirs(directories: tuple[str, ...]) -> None:
    """Remove a pool's result directories (and results never taken back)."""
    for d in directories:
        shutil.rmtree(d, ignore_errors=True)


def _remove_stale(root: Path) -> None:
    try:
        entries = list(root.glob(f"{_PREFIX}*"))
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive, and not ours to clean
        return True
    return True


def worker_start(parent: int) -> None:
    """A pool worker's initializer: die with the parent (Linux), leave Ctrl-C to the parent, and
    end at once when the parent terminates it."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: killed when the parent dies
        except (OSError, AttributeError):  # no prctl: the worker ends with the pool's shutdown
            pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # terminate() ends it at once (not the CLI's unwinding)
    if hasattr(signal, "pthread_sigmask"):  # held since the fork (forking_workers): now they may come
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


@contextlib.contextmanager
def forking_workers() -> Iterator[None]:
    """Block SIGINT and SIGTERM in this thread while it forks workers that run :func:`worker_start`.

    A forked child inherits this process's signal handlers (the CLI's raise ``KeyboardInterrupt``)
    and this thread's signal mask. A ``terminate()`` or Ctrl-C that reached a child before
    :func:`worker_start` had set its own dispositions ran the inherited handler in the child, which
    then unwound the parent's copied stack there (a test runner's worker reported itself
    interrupted; a CLI would have run its interrupt handling twice). With the signals blocked
    across the fork, such a signal waits in the child until :func:`worker_start` unblocks it, and
    then takes the child's own disposition. A signal to this process meanwhile waits here the same
    way, until the block ends. No-op where the mask cannot be set."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
