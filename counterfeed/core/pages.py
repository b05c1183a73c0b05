"""Memory pages for a run's arrays: NumPy's transparent huge pages off while a run simulates.

NumPy asks Linux for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every array of 4 MiB
or more (NumPy's ``NUMPY_MADVISE_HUGEPAGE``, on by default on Linux 4.6+). Where the kernel's
``/sys/kernel/mm/transparent_hugepage/enabled`` is ``madvise`` (or ``always``), each first touch of
such an array then faults in, and zeroes, a whole 2 MiB page. A run allocates and frees many
short-lived arrays of that size (score matrices, slates, event columns), often writing only part
of them, so it paid for zeroing pages it never used: on the development machine (a Firecracker VM,
THP ``madvise``) the quickstart spent 2.4-4.3 s of system time in its page faults with huge pages
and 0.9-1.7 s without, and ran about 20% faster in wall time without them
(``benchmarks/end_to_end.py --variants after,after-hugepages``; docs/performance.md). The arrays
and every number computed from them are the same either way: only how the kernel backs them
changes.

:func:`small_pages` turns NumPy's hint off for the duration of a run and restores it after
(nested and concurrent runs count as one). ``NUMPY_MADVISE_HUGEPAGE`` set in the environment is the
user's choice and is left alone: ``NUMPY_MADVISE_HUGEPAGE=1`` keeps huge pages for runs too.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["small_pages"]

_lock = threading.Lock()
_depth = 0
_previous: bool | None = None


def _setter():
    """NumPy's switch for the huge page hint (private API, in NumPy since 1.20), or None."""
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    return getattr(multiarray, "_set_madvise_hugepage", None)


@contextmanager
def small_pages() -> Iterator[None]:
    """Within the block, NumPy allocates without asking for transparent huge pages (see the module's
    docstring for why); the previous setting is restored when the outermost block exits. Does
    nothing when ``NUMPY_MADVISE_HUGEPAGE`` is set in the environment or NumPy lacks the switch."""
    global _depth, _previous
    setter = None if "NUMPY_MADVISE_HUGEPAGE" in os.environ else _setter()
    if setter is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _previous = bool(setter(False))
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                setter(_previous)
