"""numba kernels of the keyed hash of :mod:`counterfeed.core.randomness`, in one pass per draw.

The uniform, Gumbel and exponential draws are one compiled loop (:func:`draws`) over keys
broadcast in two dimensions, called through ufunc-like functions (:func:`uniform`, ...), not
``numba.vectorize`` ufuncs: a cached ufunc rebuilds its NumPy loop wrapper with LLVM in every
process (about 0.1 s each, 0.3 s of every run's start for the three), a cached ``njit`` function
loads in milliseconds. The values are the same bits.

Imported only when a draw needs them (the import loads numba). They are compiled once per
installation and cached in :func:`counterfeed.core.randomness.kernel_cache_dir`, never inside the
package: the functions are module-level (no closures, whose cell contents numba hashes into the
cache key and which made every process recompile) and a cache locator scoped to this file points
numba at the user's cache directory (no process-wide ``NUMBA_CACHE_DIR``: numba's
``CACHE_LOCATOR_CLASSES`` setting names it only while this module defines its functions).
"""

from __future__ import annotations

import contextlib
import math
import os

import numba
import numpy as np
from numba.core.caching import UserProvidedCacheLocator

from counterfeed.core.randomness import kernel_cache_dir

__all__ = ["uniform", "gumbel", "exponential", "draws", "gumbel_max", "kernel_cache"]

_THIS_FILE = os.path.abspath(__file__)
_CACHED_FILES = {_THIS_FILE}  # files whose numba functions are cached in kernel_cache_dir()


class _KernelCacheLocator(UserProvidedCacheLocator):
    """Caches the functions of this file in :func:`kernel_cache_dir`; declines every other file."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(kernel_cache_dir() / self.get_suitable_cache_subpath(py_file))

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.abspath(py_file) not in _CACHED_FILES:
            return None
        return super(UserProvidedCacheLocator, cls).from_function(py_func, py_file)


@contextlib.contextmanager
def kernel_cache(module_file: str):
    """numba functions defined with ``cache=True`` in ``module_file`` inside this block are cached
    in :func:`kernel_cache_dir` like this module's (another package module's kernels)."""
    _CACHED_FILES.add(os.path.abspath(module_file))
    saved = numba.config.CACHE_LOCATOR_CLASSES
    numba.config.CACHE_LOCATOR_CLASSES = f"{__name__}._KernelCacheLocator"
    try:
        yield
    finally:
        numba.config.CACHE_LOCATOR_CLASSES = saved


# numba finds a cache locator from ``config.CACHE_LOCATOR_CLASSES`` when set: point it at ours
# while this module's functions are defined (their caches are created then), and restore it.
_SAVED_LOCATORS = numba.config.CACHE_LOCATOR_CLASSES
numba.config.CACHE_LOCATOR_CLASSES = f"{__name__}._KernelCacheLocator"

@numba.njit(inline="always", cache=True)
def _mix(x):
    x = x ^ (x >> numba.uint64(30))
    x = x * numba.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> numba.uint64(27))
    x = x * numba.uint64(0x94D049BB133111EB)
    return x ^ (x >> numba.uint64(31))


@numba.njit(inline="always", cache=True)
def _u(key, user, session, slot):
    h = _mix(key ^ (numba.uint64(user) * numba.uint64(0xD6E8FEB86659FD93)))
    h = _mix(h + numba.uint64(session) * numba.uint64(0xA0761D6478BD642F) + numba.uint64(0x9E3779B97F4A7C15))
    b = _mix(h + numba.uint64(slot) * numba.uint64(0xE7037ED1A0B428DB))
    return (float(b >> numba.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


UNIFORM, GUMBEL, EXPONENTIAL = 0, 1, 2  # the ``kind`` of :func:`draws`


@numba.njit(cache=True, error_model="numpy")
def draws(kind, key, user, session, slot, out):  # pragma: no cover - compiled
    """``out[r, c]`` = the draw of ``(user, session, slot)`` at ``(r, c)``: uniform (``kind`` 0),
    standard Gumbel ``-log(-log U)`` (1) or standard exponential ``-log U`` (2). ``out`` (R, C)
    float64; ``user``, ``session``, ``slot`` C-contiguous 2-D int64 arrays with 1 or R rows and 1
    or C columns (broadcast as NumPy does)."""
    n_rows, n_cols = out.shape
    ur, uc = int(user.shape[0] > 1), int(user.shape[1] > 1)
    sr, scol = int(session.shape[0] > 1), int(session.shape[1] > 1)
    lr, lc = int(slot.shape[0] > 1), int(slot.shape[1] > 1)
    for r in range(n_rows):
        for c in range(n_cols):
            u = _u(key, user[r * ur, c * uc], session[r * sr, c * scol], slot[r * lr, c * lc])
            if kind == 1:
                u = -np.log(-np.log(u))
            elif kind == 2:
                u = -np.log(u)
            out[r, c] = u


def _two_d(a: np.ndarray, shape: tuple[int, ...], rows: int) -> np.ndarray:
    """``a`` as a C-contiguous 2-D int64 array that broadcasts to ``(rows, shape[-1])``, the 2-D
    form of ``shape``."""
    if len(shape) > 2:  # collapse the leading axes (a copy of the broadcast keys)
        a = np.broadcast_to(a, shape).reshape(rows, shape[-1])
    elif a.ndim < 2:
        a = a.reshape(1, -1) if a.ndim == 1 else a.reshape(1, 1)
    return np.ascontiguousarray(a, dtype=np.int64)


def _keys(a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "iub":  # as the ufuncs' casting rule refused floats
        raise TypeError(f"random keys must be integers, got {arr.dtype}")
    return arr


def _broadcast_draw(kind: int, key, user, session, slot):
    """The ``kind`` draw of integer key arrays that broadcast together, in their broadcast shape (a
    float64 scalar for scalar keys), as a NumPy ufunc of the hash would return it: the stream key
    as uint64, the others as int64. Raises TypeError for non-integer keys, ValueError for shapes
    that do not broadcast."""
    key = np.uint64(key)
    user, session, slot = _keys(user), _keys(session), _keys(slot)
    shape = np.broadcast_shapes(user.shape, session.shape, slot.shape)
    rows = math.prod(shape[:-1])  # 1 for 0-D and 1-D shapes
    out = np.empty((rows, shape[-1] if shape else 1))
    draws(kind, key, _two_d(user, shape, rows), _two_d(session, shape, rows), _two_d(slot, shape, rows), out)
    out = out.reshape(shape)
    return out[()] if out.ndim == 0 else out


def uniform(key, user, session, slot):
    """Uniform(0, 1) of the keyed hash, broadcast over the int64 ``user``, ``session``, ``slot``."""
    return _broadcast_draw(UNIFORM, key, user, session, slot)


def gumbel(key, user, session, slot):
    """Standard Gumbel ``-log(-log U)``, broadcast as :func:`uniform`."""
    return _broadcast_draw(GUMBEL, key, user, session, slot)


def exponential(key, user, session, slot):
    """Standard exponential ``-log U``, broadcast as :func:`uniform`."""
    return _broadcast_draw(EXPONENTIAL, key, user, session, slot)


@numba.njit(cache=True, error_model="numpy")
def gumbel_max(key, base, eligible, user, session, slot, best, value):  # pragma: no cover - compiled
    """Row ``r``: the first ``j`` maximising ``base[r, j] + gumbel(user[r], session[r], slot[r, j])``
    over the ``eligible`` entries (``best[r]``, 0 when none) and that sum (``value[r]``, -inf when
    none), as ``np.argmax`` of ``np.where(eligible, base + gumbel(...), -inf)`` gives them; only
    the eligible entries are hashed."""
    n, k = base.shape
    for r in range(n):
        b = 0
        bv = -np.inf
        for j in range(k):
            if eligible[r, j]:
                v = base[r, j] + -np.log(-np.log(_u(key, user[r], session[r], slot[r, j])))
                if v > bv:
                    b = j
                    bv = v
        best[r] = b
        value[r] = bv


numba.config.CACHE_LOCATOR_CLASSES = _SAVED_LOCATORS
