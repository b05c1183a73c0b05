"""The compiled keyed draws as ufunc-like functions: :func:`uniform`, :func:`gumbel`,
:func:`exponential` of integer key arrays that broadcast together, :func:`gumbel_max` and
:func:`position_choices`.

They call the kernels of :mod:`counterfeed.core._kernels` through :mod:`counterfeed.core.native`
(loaded without numba when cached). :mod:`counterfeed.core.randomness` uses them for large draws
and gives the same bits on its NumPy path (``tests/core/test_randomness.py``).
"""

from __future__ import annotations

import math

import numpy as np

from counterfeed.core.native import kernel
from counterfeed.core.randomness import integer_keys

__all__ = ["uniform", "gumbel", "exponential", "gumbel_max", "position_choices"]

UNIFORM, GUMBEL, EXPONENTIAL = 0, 1, 2  # the ``kind`` of the draws kernel (as in core._kernels)

_DRAWS = kernel("draws")
_GUMBEL_MAX = kernel("gumbel_max")
_POSITION_CHOICES = kernel("position_choices")


def _two_d(a: np.ndarray, shape: tuple[int, ...], rows: int) -> np.ndarray:
    """``a`` as a C-contiguous 2-D int64 array that broadcasts to ``(rows, shape[-1])``, the 2-D
    form of ``shape``."""
    if len(shape) > 2:  # collapse the leading axes (a copy of the broadcast keys)
        a = np.broadcast_to(a, shape).reshape(rows, shape[-1])
    elif a.ndim < 2:
        a = a.reshape(1, -1) if a.ndim == 1 else a.reshape(1, 1)
    return np.ascontiguousarray(a, dtype=np.int64)


def _broadcast_draw(kind: int, key, user, session, slot):
    """The ``kind`` draw of integer key arrays that broadcast together, in their broadcast shape (a
    float64 scalar for scalar keys), as a NumPy ufunc of the hash would return it: the stream key
    as uint64, the others as int64. Raises TypeError for non-integer keys, ValueError for shapes
    that do not broadcast."""
    key = np.uint64(key)
    user, session, slot = integer_keys(user), integer_keys(session), integer_keys(slot)
    shape = np.broadcast_shapes(user.shape, session.shape, slot.shape)
    rows = math.prod(shape[:-1])  # 1 for 0-D and 1-D shapes
    out = np.empty((rows, shape[-1] if shape else 1))
    _DRAWS(kind, key, _two_d(user, shape, rows), _two_d(session, shape, rows), _two_d(slot, shape, rows), out)
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


def gumbel_max(key, base, eligible, user, session, slot):
    """Row ``r`` of ``base`` (n, k) float64: the first ``j`` maximising ``base[r, j] +
    gumbel(user[r], session[r], slot[r, j])`` over the ``eligible`` (n, k) entries and that sum,
    as ``(best, value)`` (n,) arrays (0 and -inf for a row with nothing eligible); only the
    eligible entries are hashed. ``user``, ``session`` (n,) and ``slot`` (n, k) int64."""
    base = np.ascontiguousarray(base, dtype=np.float64)
    best, value = np.empty(base.shape[0], np.int64), np.empty(base.shape[0])
    _GUMBEL_MAX(np.uint64(key), base, np.ascontiguousarray(eligible, dtype=bool),
                np.ascontiguousarray(user, dtype=np.int64), np.ascontiguousarray(session, dtype=np.int64),
                np.ascontiguousarray(slot, dtype=np.int64), best, value)
    return best, value


def position_choices(key_examine, key_choice, util, exam_prob, user, session, items, stride, max_clicks, no_click):
    """(n, k) bool clicks of :func:`counterfeed.core.randomness.position_choices` by its kernel:
    ``util`` (n, k) float64, ``exam_prob`` (k,), ``user``, ``session`` (n,) and ``items`` (n, k)
    int64, ``stride`` and ``max_clicks`` integers, ``no_click`` a float."""
    util = np.ascontiguousarray(util, dtype=np.float64)
    clicked = np.empty(util.shape, bool)
    _POSITION_CHOICES(np.uint64(key_examine), np.uint64(key_choice), util,
                      np.ascontiguousarray(exam_prob, dtype=np.float64), np.ascontiguousarray(user, dtype=np.int64),
                      np.ascontiguousarray(session, dtype=np.int64), np.ascontiguousarray(items, dtype=np.int64),
                      int(stride), int(max_clicks), float(no_click), clicked, np.empty(util.shape[1], bool))
    return clicked
