"""numba kernels of the keyed hash of :mod:`counterfeed.core.randomness`, in one pass per draw.

The uniform, Gumbel and exponential draws are one compiled loop (:func:`draws`) over keys
broadcast in two dimensions, called through ufunc-like functions (:mod:`counterfeed.core._draws`),
not ``numba.vectorize`` ufuncs (a cached ufunc rebuilds its NumPy loop wrapper with LLVM in every
process: about 0.1 s each). The values are the same bits.

These definitions are imported only to compile the kernels, once per installation and CPU:
:mod:`counterfeed.core.native` compiles each through a C-ABI shim, caches the machine code and
loads it in later processes without numba. numba's own cache of these functions (which makes a
rebuild of the shims fast) is in :func:`counterfeed.core.randomness.kernel_cache_dir`, never inside
the package: the functions are module-level (no closures, whose cell contents numba hashes into the
cache key and which made every process recompile) and a cache locator scoped to this file points
numba at the user's cache directory (no process-wide ``NUMBA_CACHE_DIR``: numba's
``CACHE_LOCATOR_CLASSES`` setting names it only while this module defines its functions).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import numba
import numpy as np
from numba.core.caching import UserProvidedCacheLocator

from counterfeed.core.randomness import kernel_cache_dir

__all__ = ["draws", "gumbel_max", "kernel_cache"]

_THIS_FILE = os.path.abspath(__file__)
_CACHED_FILES = {_THIS_FILE}  # files whose numba functions are cached in kernel_cache_dir()


class _KernelCacheLocator(UserProvidedCacheLocator):
    """Caches the functions of this file in :func:`kernel_cache_dir`; declines every other file.
    Where that directory cannot be written, a temporary directory of this process (removed at
    exit) serves instead: numba would otherwise refuse to compile the functions at all."""

    def __init__(self, py_func, py_file, root=None):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str((root or kernel_cache_dir()) / self.get_suitable_cache_subpath(py_file))

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.abspath(py_file) not in _CACHED_FILES:
            return None
        found = super(UserProvidedCacheLocator, cls).from_function(py_func, py_file)
        if found is None:  # the user's cache directory cannot be written
            found = cls(py_func, py_file, root=_private_dir())
            try:
                found.ensure_cache_path()
            except OSError:
                return None
        return found


_PRIVATE: list[Path] = []


def _private_dir() -> Path:
    if not _PRIVATE:
        path = Path(tempfile.mkdtemp(prefix="counterfeed-numba-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        _PRIVATE.append(path)
    return _PRIVATE[0]


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


@numba.njit(cache=True, error_model="numpy")
def draws(kind, key, user, session, slot, out):  # pragma: no cover - compiled
    """``out[r, c]`` = the draw of ``(user, session, slot)`` at ``(r, c)``: uniform (``kind`` 0),
    standard Gumbel ``-log(-log U)`` (1) or standard exponential ``-log U`` (2), the kinds of
    :mod:`counterfeed.core._draws`. ``out`` (R, C)
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


@numba.njit(cache=True, error_model="numpy")
def position_choices(key_examine, key_choice, util, exam_prob, user, session, items, stride, max_clicks,
                     no_click, clicked, examined):  # pragma: no cover - compiled
    """Row ``r``'s clicks (``clicked[r]``, (n, k) bool) of the multinomial choice under position
    examination, with the draws and arithmetic of the NumPy rounds in
    :func:`counterfeed.core.randomness.position_choices`: position ``j`` is examined when
    ``uniform(key_examine; user[r], session[r], j) < exam_prob[j]``; in round ``t`` (at most
    ``max_clicks``) the examined, not yet clicked item maximising ``util[r, j] +
    gumbel(key_choice; user[r], session[r], items[r, j] + 1 + t * stride)`` (first on ties) is
    clicked when that sum beats ``no_click + gumbel(key_choice; user[r], session[r], t * stride)``,
    and the row stops choosing at its first round without a click. ``examined`` (k,) bool is work
    space. Rows are independent: every draw is keyed, none is sequential."""
    n, k = util.shape
    for r in range(n):
        u = user[r]
        s = session[r]
        for j in range(k):
            examined[j] = _u(key_examine, u, s, j) < exam_prob[j]
            clicked[r, j] = False
        for t in range(max_clicks):
            b = 0
            bv = -np.inf
            for j in range(k):
                if examined[j] and not clicked[r, j]:
                    v = util[r, j] + -np.log(-np.log(_u(key_choice, u, s, items[r, j] + 1 + t * stride)))
                    if v > bv:
                        b = j
                        bv = v
            if bv > no_click + -np.log(-np.log(_u(key_choice, u, s, t * stride))):
                clicked[r, b] = True
            else:
                break


numba.config.CACHE_LOCATOR_CLASSES = _SAVED_LOCATORS
