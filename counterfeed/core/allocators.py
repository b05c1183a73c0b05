"""How a run's memory is allocated: without transparent huge pages, and Arrow's buffers from the
system allocator.

A run allocates and frees many short-lived buffers of a few MiB (score matrices, slates, event
columns, and Arrow's buffers while the event logs are written as Parquet). Two defaults made the
kernel zero far more memory than the run used, in page faults, on the development machine (a
Firecracker VM whose ``/sys/kernel/mm/transparent_hugepage/enabled`` is ``madvise``):

- **NumPy** asks for transparent huge pages (``madvise(MADV_HUGEPAGE)``) on every array of 4 MiB
  or more (its ``NUMPY_MADVISE_HUGEPAGE``, on by default on Linux 4.6+), so the first touch of
  such an array faults in and zeroes whole 2 MiB pages, used or not.
- **Arrow's default pool, mimalloc**, took fresh pages for the Parquet writer's buffers: ``perf``
  put about 1 CPU s of a quickstart run in the kernel's ``clear_page`` under mimalloc's
  ``mi_page_free_list_extend``, on the thread writing the event logs.

The quickstart spent 2.4-4.3 s of system time in page faults with both defaults, and ran about 30%
faster in wall time with neither (``benchmarks/end_to_end.py``, variants ``after``,
``after-hugepages`` and ``after-mimalloc``; docs/performance.md). The arrays, the files and every
number computed from them are the same either way: only how the memory is obtained changes.

:func:`process_defaults` sets both in the environment of a process that has not imported NumPy or
pyarrow yet (the ``counterfeed`` command does, first thing, as it pins the BLAS threads): there,
all of Arrow's allocations, its C++ internals' included, use the system allocator. In a process
that imported them already (``counterfeed.run`` from Python), :func:`run_allocators` sets NumPy's
hint and the pool of pyarrow's Python calls for the duration of a run and restores both after
(nested and concurrent runs count as one); Arrow's C++ internals keep their default pool there. A
setting in the environment is the user's choice and is left alone: ``NUMPY_MADVISE_HUGEPAGE`` for
NumPy, ``ARROW_DEFAULT_MEMORY_POOL`` for Arrow.

Processes the run does not fork keep their own settings: the Dask workers of a sharded run started
from Python (the ``counterfeed`` command's inherit its environment), and an existing cluster's
workers (``--scheduler``). Only their speed differs.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["run_allocators", "process_defaults", "ENVIRONMENT"]

#: what :func:`process_defaults` sets, unless the environment has it already
ENVIRONMENT = {"NUMPY_MADVISE_HUGEPAGE": "0", "ARROW_DEFAULT_MEMORY_POOL": "system"}
_LIBRARY = {"NUMPY_MADVISE_HUGEPAGE": "numpy", "ARROW_DEFAULT_MEMORY_POOL": "pyarrow"}

_lock = threading.Lock()
_depth = 0
_restore: list[tuple[Any, Any, Any]] = []  # (setter, previous, "still ours?") for when the last run ends


def _fresh_lock() -> None:
    """In a forked child: a lock of its own (another thread of the parent may have held it at the
    fork, and would never release it here); the depth and what to restore are inherited."""
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock)


def process_defaults() -> None:
    """Set :data:`ENVIRONMENT`'s variables that are not set, in this process's environment (its
    children inherit them). NumPy reads its variable when it is imported, Arrow when it is: a
    variable whose library this process imported already is left unset, so that
    :func:`run_allocators` still applies it for each run (``counterfeed.cli.main`` called from a
    Python process that uses NumPy)."""
    for name, value in ENVIRONMENT.items():
        if _LIBRARY[name] not in sys.modules:
            os.environ.setdefault(name, value)


def _numpy_switch():
    """NumPy's (get, set) of the huge page hint (private API, in NumPy since 1.20), or None."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return None
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]
    get, set_ = (getattr(multiarray, f"_{verb}_madvise_hugepage", None) for verb in ("get", "set"))
    return None if get is None or set_ is None else (get, set_)


def _arrow():
    """pyarrow, when this process has imported it (pandas does, where it is installed) and the
    environment does not choose its pool; else None (importing it here would cost a run that
    writes nothing)."""
    if "ARROW_DEFAULT_MEMORY_POOL" in os.environ:
        return None
    return sys.modules.get("pyarrow")


@contextmanager
def run_allocators() -> Iterator[None]:
    """Within the block NumPy allocates without asking for transparent huge pages and Arrow
    allocates from the system allocator (:func:`pyarrow.system_memory_pool`). When the outermost
    block exits, each is put back as it was when the first one entered, unless it was changed
    meanwhile (then the newer choice stays). Each is skipped when the environment sets it (see the
    module's docstring), when NumPy lacks the switch, or when pyarrow is not imported. Also a
    decorator (``@run_allocators()``: each call of the function is one block)."""
    global _depth
    with _lock:
        if _depth == 0:
            numpy_switch = _numpy_switch()
            if numpy_switch is not None:
                get, set_ = numpy_switch
                _restore.append((set_, bool(set_(False)), lambda: not get()))
            pa = _arrow()
            if pa is not None:
                _restore.append((pa.set_memory_pool, pa.default_memory_pool(),
                                 lambda: pa.default_memory_pool().backend_name == "system"))
                pa.set_memory_pool(pa.system_memory_pool())
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                while _restore:
                    setter, previous, ours = _restore.pop()
                    if ours():
                        setter(previous)
