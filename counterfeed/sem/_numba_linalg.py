"""Small numba linear algebra for the SEM density, and the cache locator of the SEM's numba code.

Every function here and in :mod:`counterfeed.sem._numba_logp` is module-level, free of closures and
dynamic globals, and cached (``cache=True``) in the user's kernel cache directory
(:func:`counterfeed.core.randomness.kernel_cache_dir`), never inside the package: numba consults
``config.CACHE_LOCATOR_CLASSES`` when a cached function is defined, so the SEM modules name
:class:`_CacheLocator` there while they define their functions and restore the setting after
(the scheme of :mod:`counterfeed.core._kernels`).
"""

from __future__ import annotations

import math
import os

import numba
import numpy as np
from numba.core.caching import UserProvidedCacheLocator

from counterfeed.core.randomness import kernel_cache_dir

__all__ = ["softplus", "sigmoid", "inverse", "chol_inverse", "begin_cached_definitions",
           "end_cached_definitions"]

_HERE = os.path.dirname(os.path.abspath(__file__))


class _CacheLocator(UserProvidedCacheLocator):
    """Caches the SEM's ``_numba_*.py`` files in the kernel cache directory; declines others."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(kernel_cache_dir() / self.get_suitable_cache_subpath(py_file))

    def get_source_stamp(self):
        """Stamp of every ``_numba_*.py`` file here: numba keys a cache entry on its own file
        only, and a change in a helper file must recompile the callbacks that inline it."""
        files = sorted(f for f in os.listdir(_HERE)
                       if f.startswith("_numba_") and f.endswith(".py"))
        return tuple((f, os.stat(os.path.join(_HERE, f)).st_mtime,
                      os.stat(os.path.join(_HERE, f)).st_size) for f in files)

    @classmethod
    def from_function(cls, py_func, py_file):
        path = os.path.abspath(py_file)
        if os.path.dirname(path) != _HERE or not os.path.basename(path).startswith("_numba_"):
            return None
        return super(UserProvidedCacheLocator, cls).from_function(py_func, py_file)


def begin_cached_definitions() -> str:
    """Point numba's cache locator at :class:`_CacheLocator`; returns the setting to restore."""
    saved = numba.config.CACHE_LOCATOR_CLASSES
    numba.config.CACHE_LOCATOR_CLASSES = f"{__name__}._CacheLocator"
    return saved


def end_cached_definitions(saved) -> None:
    numba.config.CACHE_LOCATOR_CLASSES = saved


_SAVED = begin_cached_definitions()


@numba.njit(cache=True)
def softplus(y):
    if y > 0:
        return y + math.log1p(math.exp(-y))
    return math.log1p(math.exp(y))


@numba.njit(cache=True)
def sigmoid(y):
    if y >= 0:
        return 1.0 / (1.0 + math.exp(-y))
    e = math.exp(y)
    return e / (1.0 + e)


@numba.njit(cache=True)
def inverse(M, out):
    """Gauss-Jordan inverse with partial pivoting; False when M is singular."""
    n = M.shape[0]
    a = M.copy()
    out[:, :] = 0.0
    for i in range(n):
        out[i, i] = 1.0
    for c in range(n):
        piv, best = c, abs(a[c, c])
        for r in range(c + 1, n):
            if abs(a[r, c]) > best:
                piv, best = r, abs(a[r, c])
        if not best > 1e-300:
            return False
        if piv != c:
            for k in range(n):
                a[c, k], a[piv, k] = a[piv, k], a[c, k]
                out[c, k], out[piv, k] = out[piv, k], out[c, k]
        inv = 1.0 / a[c, c]
        for k in range(n):
            a[c, k] *= inv
            out[c, k] *= inv
        for r in range(n):
            if r != c and a[r, c] != 0.0:
                f = a[r, c]
                for k in range(n):
                    a[r, k] -= f * a[c, k]
                    out[r, k] -= f * out[c, k]
    return True


@numba.njit(cache=True)
def chol_inverse(S, Si):
    """Sigma^-1 via the Cholesky factor; returns log|Sigma| (NaN when not positive definite)."""
    n = S.shape[0]
    L = np.zeros((n, n))
    logdet = 0.0
    for j in range(n):
        s = S[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if not s > 0.0:
            return math.nan
        L[j, j] = math.sqrt(s)
        logdet += 2.0 * math.log(L[j, j])
        for i in range(j + 1, n):
            s = S[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / L[j, j]
    Li = np.zeros((n, n))  # inverse of the lower factor
    for j in range(n):
        Li[j, j] = 1.0 / L[j, j]
        for i in range(j + 1, n):
            s = 0.0
            for k in range(j, i):
                s -= L[i, k] * Li[k, j]
            Li[i, j] = s / L[i, i]
    Si[:, :] = Li.T @ Li
    return logdet



end_cached_definitions(_SAVED)
