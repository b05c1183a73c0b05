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

import signal
import threading

__all__ = ["install", "check", "received", "reset"]

_received = False


def _handler(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    global _received
    _received = True
    raise KeyboardInterrupt


def install() -> None:
    """Install the recording SIGINT handler (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _handler)


def received() -> bool:
    """Whether a SIGINT arrived since :func:`install` (or the last :func:`reset`)."""
    return _received


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT was received, even one swallowed on its way up."""
    if _received:
        raise KeyboardInterrupt


def reset() -> None:
    """Forget a received interrupt (tests, and a REPL that carries on after one)."""
    global _received
    _received = False
