"""Keyed random streams: every draw is a pure function of (seed, stream, user, session, slot).

There is no sequential generator state anywhere in a simulation. A draw is a counter-based hash
(SplitMix64's finalizer, vectorized in NumPy) of its key, so

- the same user at the same session index sees the same noise in every world (common random
  numbers), which makes an A/A comparison exactly zero per user;
- results do not depend on event order, batch size or the number of processes;
- a run is reproducible bit for bit.

Streams are named (``"choice"``, ``"visit"``, ``"policy:treatment"`` ...); a stream's key is the
hash of its name mixed with the seed, so distinct streams are independent.

Speed of a fresh process: until a draw is large enough to need them, draws do not load the
compiled kernels.
Uniform draws of at most ``NUMPY_MAX`` values use the NumPy reference hash (integer arithmetic and
one exact conversion: the same bits as the kernel); Gumbel and exponential draws of at most
``EXACT_LOG_MAX`` values take its logarithms with the C library's ``log``, which the kernels call
too (NumPy's SIMD ``log`` differs in the last bit for about 0.4% of values, so it is not used).
Larger draws, and every draw once ``SUSTAINED`` values have been drawn without them, use compiled
kernels (:mod:`counterfeed.core._kernels`), compiled by numba once per installation and CPU and
cached in :func:`kernel_cache_dir`, never inside the package; a later process maps the cached
machine code without importing numba (:mod:`counterfeed.core.native`). Once loaded they serve
every draw.
Which path served a draw never changes its value (``tests/core/test_randomness.py``).

Example
-------
>>> keys = Keys(seed=7)
>>> u = keys.stream("visit").uniform(np.arange(3), 0)   # users 0..2, session 0
>>> bool(np.all((u > 0) & (u < 1)))
True
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from pathlib import Path

import numpy as np

__all__ = ["Keys", "Stream", "mix64", "stream_key", "kernel_cache_dir", "NUMPY_MAX", "position_choices"]

#: uniform draws of at most this many values use NumPy unless the kernels are already loaded
NUMPY_MAX = 1 << 16
#: Gumbel/exponential draws of at most this many values use the C library's log element by element
EXACT_LOG_MAX = 1 << 12
#: after this many values drawn without the kernels, every draw loads and uses them
SUSTAINED = 1 << 17

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
# Odd multipliers that spread the separate key components before mixing.
_C_USER = _U64(0xD6E8FEB86659FD93)
_C_SESSION = _U64(0xA0761D6478BD642F)
_C_SLOT = _U64(0xE7037ED1A0B428DB)
_INV_2_53 = 1.0 / 9007199254740992.0


def mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer on a uint64 array (wrapping arithmetic, no allocation of Python ints)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> _U64(30))
        x = x * _M1
        x = x ^ (x >> _U64(27))
        x = x * _M2
        return x ^ (x >> _U64(31))


def stream_key(seed: int, name: str) -> np.uint64:
    """The 64-bit key of a named stream under a seed (stable across processes and platforms)."""
    digest = hashlib.blake2b(f"{int(seed)}\x00{name}".encode(), digest_size=8).digest()
    return _U64(int.from_bytes(digest, "little"))


def integer_keys(a) -> np.ndarray:
    """``a`` (an array or scalar of keys) as a NumPy array, unconverted, when its dtype is signed,
    unsigned or bool; raises ``TypeError`` for anything else (floats, strings, objects, Python ints
    beyond 64 bits, None). The one check of every draw, on the NumPy path and the kernels' alike."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iub":
        raise TypeError(f"random keys must be integers, got {arr.dtype}")
    return arr


def _as_u64(a) -> np.ndarray:
    return integer_keys(a).astype(np.uint64, copy=False)


def _numpy_uniform(key: np.uint64, user, session, slot) -> np.ndarray:
    """Reference implementation in plain NumPy (used for small draws, and when the kernels are unavailable)."""
    with np.errstate(over="ignore"):
        h = mix64(key ^ (_as_u64(user) * _C_USER))
        h = mix64(h + _as_u64(session) * _C_SESSION + _GOLDEN)
        b = mix64(h + _as_u64(slot) * _C_SLOT)
    return ((b >> _U64(11)).astype(np.float64) + 0.5) * _INV_2_53


def kernel_cache_dir() -> Path:
    """Where the compiled kernels live: ``$COUNTERFEED_CACHE_DIR/numba`` when the variable is set,
    else ``$XDG_CACHE_HOME/counterfeed/numba`` (default ``~/.cache/counterfeed/numba``)."""
    root = os.environ.get("COUNTERFEED_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "numba"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "counterfeed" / "numba"


_KERNELS = None
_KERNELS_LOCK = threading.Lock()


def _kernels():
    global _KERNELS
    if _KERNELS is None:
        with _KERNELS_LOCK:
            if _KERNELS is None:
                try:
                    from counterfeed.core import _draws as kernels

                    _KERNELS = (kernels.uniform, kernels.gumbel, kernels.exponential, kernels.gumbel_max,
                                kernels.position_choices)
                except Exception:  # not cached and numba missing or unusable: NumPy reference path
                    _KERNELS = False
    return _KERNELS


def _size(user, session, slot) -> int:
    return int(np.prod(np.broadcast_shapes(np.shape(user), np.shape(session), np.shape(slot))))


_WITHOUT_KERNELS = 0  # values drawn so far without the kernels (this process)


def _loaded_kernels(user, session, slot, small: int):
    """The kernels when they are loaded, when the draw is larger than ``small`` or when the draws
    without them add up to ``SUSTAINED`` values (then loading them); else ``None``/``False`` (the
    NumPy path). So a short job never loads the kernels and a long one pays the NumPy path only briefly."""
    global _WITHOUT_KERNELS
    if _KERNELS is not None:
        return _KERNELS
    n = _size(user, session, slot)
    if n > small or _WITHOUT_KERNELS + n > SUSTAINED:
        return _kernels()
    _WITHOUT_KERNELS += n
    return None


def _clib_log(x: np.ndarray) -> np.ndarray:
    """Natural log by the C library's ``log`` (``math.log``), the function the kernels call."""
    arr = np.asarray(x, dtype=np.float64)
    out = np.fromiter(map(math.log, arr.ravel().tolist()), np.float64, arr.size).reshape(arr.shape)
    return out[()] if out.ndim == 0 else out


def _i64(a) -> np.ndarray:
    arr = integer_keys(a)
    return arr if arr.dtype == np.int64 else arr.astype(np.int64)


class Stream:
    """One named stream; draws are vectorized over broadcastable integer key arrays.

    Parameters of every draw method: ``user``, ``session`` and ``slot`` are integer arrays (or
    scalars) that broadcast together; ``slot`` defaults to 0. The result has the broadcast shape.
    """

    __slots__ = ("key", "name")

    def __init__(self, key: np.uint64, name: str = ""):
        self.key = _U64(key)
        self.name = name

    def bits(self, user, session=0, slot=0) -> np.ndarray:
        """Raw 64-bit hashes of the keys."""
        with np.errstate(over="ignore"):
            h = mix64(self.key ^ (_as_u64(user) * _C_USER))
            h = mix64(h + _as_u64(session) * _C_SESSION + _GOLDEN)
            return mix64(h + _as_u64(slot) * _C_SLOT)

    def uniform(self, user, session=0, slot=0) -> np.ndarray:
        """Uniform(0, 1), open at both ends (53-bit resolution)."""
        k = _loaded_kernels(user, session, slot, NUMPY_MAX)
        if k:
            return k[0](self.key, user, session, slot)  # it checks and converts the keys
        return _numpy_uniform(self.key, user, session, slot)

    def normal(self, user, session=0, slot=0) -> np.ndarray:
        """Standard normal by inversion of a keyed uniform (``scipy.special.ndtri``)."""
        from scipy.special import ndtri  # scipy only where normals are drawn: keeps start-up light

        return ndtri(self.uniform(user, session, slot))

    def gumbel(self, user, session=0, slot=0) -> np.ndarray:
        """Standard Gumbel, -log(-log U)."""
        k = _loaded_kernels(user, session, slot, EXACT_LOG_MAX)
        if k:
            return k[1](self.key, user, session, slot)  # it checks and converts the keys
        u = _numpy_uniform(self.key, user, session, slot)
        return -_clib_log(-_clib_log(u))

    def gumbel_max(self, base: np.ndarray, eligible: np.ndarray, user: np.ndarray, session: np.ndarray,
                   slot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gumbel-max choice per row: with ``g[r, j]`` = :meth:`gumbel` ``(user[r], session[r],
        slot[r, j])``, ``best[r]`` = the first ``j`` maximising ``base[r, j] + g[r, j]`` among the
        ``eligible`` (n, k) entries (0 when none) and ``value[r]`` that sum (-inf when none):
        exactly ``np.argmax`` of ``np.where(eligible, base + g, -inf)`` and its value. The kernel
        hashes only the eligible entries. ``base`` (n, k) float, ``user``/``session`` (n,)."""
        base = np.asarray(base, dtype=np.float64)
        eligible = np.asarray(eligible, dtype=bool)
        user, session, slot = _i64(user), _i64(session), _i64(slot)
        k = _loaded_kernels(user[:, None], session[:, None], slot, EXACT_LOG_MAX)
        if k:
            return k[3](self.key, base, eligible, user, session, slot)
        u = _numpy_uniform(self.key, user[:, None], session[:, None], slot)
        v = np.where(eligible, base + -_clib_log(-_clib_log(u)), -np.inf)
        best = np.argmax(v, axis=1) if v.size else np.zeros(v.shape[0], np.int64)
        return best, v[np.arange(v.shape[0]), best] if v.size else np.full(v.shape[0], -np.inf)

    def exponential(self, user, session=0, slot=0) -> np.ndarray:
        """Exponential with rate 1."""
        k = _loaded_kernels(user, session, slot, EXACT_LOG_MAX)
        if k:
            return k[2](self.key, user, session, slot)  # it checks and converts the keys
        u = _numpy_uniform(self.key, user, session, slot)
        return -_clib_log(u)

    def integers(self, high, user, session=0, slot=0) -> np.ndarray:
        """Integers uniform on [0, high) (``high`` may be an array)."""
        u = self.uniform(user, session, slot)
        return np.minimum((u * np.asarray(high)).astype(np.int64), np.asarray(high) - 1)

    def child(self, name: str) -> "Stream":
        """A derived, independent stream (e.g. one per arm)."""
        return Stream(stream_key(int(self.key), name), f"{self.name}/{name}")

    def __repr__(self) -> str:
        return f"Stream({self.name!r})"


class Keys:
    """The factory of named streams for one seed (carried by the simulation environment)."""

    __slots__ = ("seed", "_cache")

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._cache: dict[str, Stream] = {}

    def stream(self, name: str) -> Stream:
        """The stream with that name (cached)."""
        s = self._cache.get(name)
        if s is None:
            s = self._cache[name] = Stream(stream_key(self.seed, name), name)
        return s

    def derive_seed(self, *parts: object) -> int:
        """A deterministic 63-bit seed derived from this seed and ``parts`` (for replications)."""
        text = "\x00".join(str(p) for p in (self.seed, *parts))
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1

    def numpy_generator(self, *parts: object) -> np.random.Generator:
        """A NumPy Philox generator for work that is not per-user keyed (e.g. model training)."""
        return np.random.Generator(np.random.Philox(self.derive_seed(*parts)))


def position_choices(examine: Stream, choice: Stream, util: np.ndarray, exam_prob: np.ndarray, user: np.ndarray,
                     session: np.ndarray, items: np.ndarray, stride: int, max_clicks: int,
                     no_click: float) -> np.ndarray:
    """Clicks (n, k) bool of a multinomial logit choice under position examination, by Gumbel-max
    rounds of keyed draws (the ``choice`` user model's ``examination: position``).

    Position ``j`` of row ``r`` is examined when ``examine.uniform(user[r], session[r], j) <
    exam_prob[j]``. In round ``t`` (``0 <= t < max_clicks``) the row picks, among its examined and
    not yet clicked positions, the ``j`` maximising ``util[r, j] + choice.gumbel(user[r],
    session[r], items[r, j] + 1 + t * stride)`` (:meth:`Stream.gumbel_max`: first on ties); it is
    clicked when that sum exceeds ``no_click + choice.gumbel(user[r], session[r], t * stride)``
    (the outside option), and the row's first round without a click ends its choosing. Adding
    Gumbel noise and taking the maximum samples the multinomial logit (McFadden 1974); ``stride``
    (at least the number of items plus one) keeps every round's item draws distinct.

    ``util`` (n, k) float, ``exam_prob`` (k,) (or one value for every position), ``user``,
    ``session`` (n,) and ``items`` (n, k) integers. The compiled kernel (one pass per row, once the
    kernels are loaded) and the NumPy rounds give the same clicks (``tests/core/test_randomness.py``)
    for utilities that are not NaN (a NaN item is never chosen by the kernel; NumPy's ``argmax``
    picks it, and the row stops, as :meth:`Stream.gumbel_max` does on each path). Raises
    ``TypeError`` for non-integer keys and ``ValueError`` for shapes that do not fit.
    """
    util = np.asarray(util, dtype=np.float64)
    n, width = util.shape
    exam_prob = np.broadcast_to(np.asarray(exam_prob, dtype=np.float64), (width,))  # a scalar: every position
    user, session, items = _i64(user), _i64(session), _i64(items)
    k = _loaded_kernels(user[:, None], session[:, None], items, EXACT_LOG_MAX)
    if k:
        return k[4](examine.key, choice.key, util, exam_prob, user, session, items, stride, max_clicks, no_click)
    examined = examine.uniform(user[:, None], session[:, None], np.arange(width)[None, :]) < exam_prob[None, :]
    clicked = np.zeros((n, width), dtype=bool)
    rows = np.arange(n)  # requests still choosing
    ur, sr, base, eligible, slot = user, session, util, examined, items + 1  # round 0: all, none clicked
    for t in range(max_clicks):
        if t:
            ur, sr = user[rows], session[rows]
            base, eligible, slot = util[rows], examined[rows] & ~clicked[rows], items[rows] + 1 + t * stride
        best, value = choice.gumbel_max(base, eligible, ur, sr, slot)
        click = value > no_click + choice.gumbel(ur, sr, t * stride)
        rows, best = rows[click], best[click]
        clicked[rows, best] = True
        if not rows.size:
            break
    return clicked
