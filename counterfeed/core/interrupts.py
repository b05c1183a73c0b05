"""Ctrl-C that is never lost: an interrupt swallowed on its way up still stops the run.

Python delivers SIGINT as a ``KeyboardInterrupt`` raised at whatever bytecode runs next. When that
is a callback invoked from C (numba's LLVM object-cache notifier, a ctypes callback, a ``__del__``),
the exception is printed as "Exception ignored ..." and dropped, and the run would carry on and
publish a finished-looking directory. :func:`install` replaces the SIGINT handler with one that also
records the signal; :func:`check` raises ``KeyboardInterrupt`` if one was ever received. The run
calls :func:`check` after every serving window and immediately before anything is published, so an
interrupt that was swallowed still ends the run with nothing published (exit code 130 in the CLI).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

__all__ = ["install", "check", "received", "reset", "ignore_further", "exit_code", "held", "Interrupted",
           "sigint_blocked_for_spawned"]

_received = False
_signal = signal.SIGINT  # the last signal received (SIGTERM is handled as SIGINT is)


class Interrupted(KeyboardInterrupt):
    """An interrupt with what the CLI says after "Interrupted;" (e.g. that finished replications are
    kept and a rerun resumes) instead of "nothing was published."."""

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


def _record(signum: int) -> None:
    global _received, _signal
    _received, _signal = True, signum


def _handler(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    _record(signum)
    raise KeyboardInterrupt


def _unraisable(hook):
    def quiet(unraisable) -> None:
        # A KeyboardInterrupt dropped by a C callback is recorded by _handler and raised again by
        # check(); Python's "Exception ignored ..." traceback for it is noise, not news.
        if isinstance(unraisable.exc_value, KeyboardInterrupt) or unraisable.exc_type is KeyboardInterrupt:
            return
        hook(unraisable)

    quiet.counterfeed = True
    return quiet


def install() -> None:
    """Install the recording handler for SIGINT and SIGTERM (main thread only; a no-op elsewhere):
    a SIGTERM (``kill``, ``timeout``, a supervisor) unwinds the run as Ctrl-C does, so its worker
    processes stop and nothing is left behind. Keep Python from printing an "Exception ignored"
    traceback for an interrupt that a C callback dropped."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)
        signal.signal(signal.SIGTERM, _handler)
    if not getattr(sys.unraisablehook, "counterfeed", False):
        sys.unraisablehook = _unraisable(sys.unraisablehook)


def received() -> bool:
    """Whether a SIGINT arrived since :func:`install` (or the last :func:`reset`)."""
    return _received


def exit_code() -> int:
    """The exit code for the interrupt received: 128 plus the signal's number (130 for SIGINT, 143
    for SIGTERM), as a shell reports death by that signal."""
    return 128 + int(_signal)


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT was received, even one swallowed on its way up."""
    if _received:
        raise KeyboardInterrupt


def reset() -> None:
    """Forget a received interrupt (tests, and a REPL that carries on after one)."""
    global _received
    _received = False


def ignore_further() -> None:
    """Ignore SIGINT and SIGTERM from now on: the process has handled an interrupt and is exiting.

    A SIGINT that arrives during the shutdown (a second Ctrl-C, or one re-emitted by a library after
    it cancelled its own work) would otherwise kill the process once Python's finalization has
    restored the default disposition, and the caller would see death by signal (-2) instead of 130.
    A handler still pending for the interrupt already handled runs inside ``signal.signal`` and
    raises ``KeyboardInterrupt``; it is that same interrupt, so it is dropped and the call retried.
    Main thread only; a no-op elsewhere.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for _ in range(100):
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            return
        except KeyboardInterrupt:
            continue


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM while the block runs, then raise ``KeyboardInterrupt`` if one came.

    For a short step that an interrupt would leave half done, such as closing a local Dask
    cluster: interrupted there, the cluster was closed again by distributed's exit handler, which
    waited about 10 s after the command had said it was interrupted. The signal is recorded as
    :func:`check` sees it; a second one during the block raises at once (the way out of a step
    that hangs). Main thread only; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []

    def hold(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
        _record(signum)
        if got:
            raise KeyboardInterrupt
        got.append(signum)

    old = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    if got:
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigint_blocked_for_spawned() -> Iterator[None]:
    """Block SIGINT in this thread while the block runs, so that the threads started inside it keep
    it blocked, and so do the processes those threads spawn.

    A thread starts with its creator's signal mask, and a process keeps its mask across ``fork``
    and ``exec`` (POSIX). A local Dask cluster spawns its worker processes from its event-loop
    thread; started inside this block, those workers begin with SIGINT blocked. Then a terminal's
    Ctrl-C, which reaches the whole process group, cannot interrupt a worker that is still
    importing (it printed ``KeyboardInterrupt`` tracebacks there) before its set-up ignores SIGINT
    (:mod:`counterfeed.core._dask_worker_setup`). Python runs signal handlers in the main thread
    only, so the other threads lose nothing. A SIGINT that arrives during the block is delivered
    when it ends. Main thread on POSIX only; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    # multiprocessing's resource tracker, started by the first process spawned, unblocks SIGINT in
    # the thread that starts it: started here first, it leaves the spawning thread's mask alone
    from multiprocessing import resource_tracker

    resource_tracker.ensure_running()
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
