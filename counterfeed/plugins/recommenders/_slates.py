"""Turning per-item scores into slates with exact propensities.

Every stochastic policy here logs the exact marginal probability that the item it showed at a
position is shown there, so the logs are ready for position-wise off-policy evaluation.

Exploration schemes (``exploration`` option of the built-in recommenders):

``none``
    Top-k by score (ties by lower item id). Propensity 1.
``epsilon``
    Start from the top-k slate; each position independently (probability ``epsilon``) gets an item
    drawn uniformly from the available items outside the top-k instead, without repeats. The item at
    its greedy position has propensity ``1 - epsilon``; an explored item ``epsilon / m`` where ``m`` is
    the number of available items outside the top-k. (By symmetry the without-replacement draws
    leave each outside item's marginal at every explored position at exactly ``1/m``.)
``softmax``
    Stratified softmax: rank the candidate items by score; position ``j`` draws one item from its own
    stratum (ranks ``j, j+k, j+2k, ...``) with probabilities proportional to ``exp(score / temperature)``
    within the stratum. Strata are disjoint, so a slate never repeats an item, the greedy slate is the
    most likely one, and each item's probability at its position is exactly its softmax weight inside
    its stratum. ``temperature -> 0`` recovers the greedy slate.

All draws come from the batch's keyed policy stream, so a policy is deterministic given
``(seed, arm, user, session)`` and independent of batch composition.
"""

from __future__ import annotations

import numpy as np

from counterfeed.core.contracts import Batch, Slates

#: descriptions of the exploration options the recommenders share (``counterfeed plugins show``)
EXPLORATION_DOC = ("none: the top-k by score; epsilon: each position shows an item from outside the top-k "
                   "with probability epsilon; softmax: each position samples its stratum of the ranking with "
                   "probabilities exp(score / temperature) (exact propensities either way)")
EPSILON_DOC = "epsilon exploration: probability that a position shows a uniformly drawn non-top-k item"
TEMPERATURE_DOC = "softmax exploration: temperature on the scores (lower: closer to the top-k)"

__all__ = ["topk", "uniform_slates", "uniform_probabilities", "epsilon_slates", "softmax_slates", "make_slates"]

_SLOT_EXPLORE = 0          # slots 0..k-1: explore-or-not coin per position
_SLOT_DRAW = 1_000         # slots 1000 + attempt*k + j: explored item draws
_SLOT_SOFTMAX = 2_000      # slots 2000 + j: stratum draws


def _mask_scores(scores: np.ndarray, available: np.ndarray | None) -> np.ndarray:
    if available is None:
        return scores
    return np.where(available, scores, -np.inf)


#: score matrices of at least this many entries are ranked by the compiled kernel (same result)
_KERNEL_MIN = 1 << 15
_NO_MASK = np.zeros(0, dtype=bool)


def topk(scores: np.ndarray, k: int, available: np.ndarray | None = None) -> np.ndarray:
    """(n, k) item ids of the k highest scores per row, best first; ties by lower item id.

    ``scores`` is (n, n_items) or (n_items,) (the same ranking for every row).
    """
    raw = np.asarray(scores, dtype=np.float64)
    if (raw.ndim == 2 and 0 < k < raw.shape[1] and raw.size >= _KERNEL_MIN
            and (available is None or np.shape(available) == raw.shape[1:])):
        from counterfeed.plugins.recommenders._compiled import topk_rows  # the same selection, compiled

        out = np.empty((raw.shape[0], k), dtype=np.int64)
        mask = _NO_MASK if available is None else np.ascontiguousarray(available, dtype=bool)
        topk_rows(np.ascontiguousarray(raw), mask, k, out)
        return out
    s = _mask_scores(raw, available)
    row = s.ndim == 1
    if row:
        s = s[None, :]
    n_items = s.shape[1]
    k = min(k, n_items)
    # stable tie-break by item id: subtract a tiny id-proportional epsilon from a stable sort key
    if k < n_items:
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(s, part, axis=1)
        kth = vals.min(axis=1, keepdims=True)
        # items tied with the k-th value may have been cut arbitrarily: recompute those rows exactly
        ties = (s == kth).sum(axis=1) > (vals == kth).sum(axis=1)
        if ties.any():
            idx = np.nonzero(ties)[0]
            full = np.lexsort((np.broadcast_to(np.arange(n_items), s[idx].shape), -s[idx]), axis=1)[:, :k]
            part[idx] = full
            vals[idx] = np.take_along_axis(s[idx], full, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        out = np.take_along_axis(part, order, axis=1)
    else:
        out = np.lexsort((np.broadcast_to(np.arange(n_items), s.shape), -s), axis=1)
    return out if not row else out[0]


def _nth_outside(avail_ids: np.ndarray, excluded_pos: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The r-th (0-based) element of ``avail_ids`` skipping the sorted positions ``excluded_pos``.

    ``excluded_pos`` is (n, k) sorted positions into ``avail_ids``; ``r`` is (n, c) indexes.
    """
    idx = r.copy()
    for j in range(excluded_pos.shape[1]):
        idx += (excluded_pos[:, j:j + 1] <= idx)
    return avail_ids[idx]


def _draw_outside(batch: Batch, greedy: np.ndarray, explore: np.ndarray, avail_ids: np.ndarray) -> np.ndarray:
    """Fill explored positions with distinct uniform draws from items outside the greedy slate."""
    n, k = greedy.shape
    pos_in_avail = np.searchsorted(avail_ids, greedy)
    excluded = np.sort(pos_in_avail, axis=1)
    m = avail_ids.size - k
    items = greedy.copy()
    users, sessions = batch.users[:, None], batch.sessions[:, None]
    todo = explore.copy()
    attempt = 0
    while todo.any():
        slots = _SLOT_DRAW + attempt * k + np.arange(k)[None, :]
        r = batch.stream.integers(m, users, sessions, slots)
        cand = _nth_outside(avail_ids, excluded, r)
        items = np.where(todo, cand, items)
        # a later explored position that repeats an earlier explored item is drawn again
        dup = np.zeros_like(todo)
        for j in range(1, k):
            dup[:, j] = explore[:, j] & (explore[:, :j] & (items[:, :j] == items[:, j:j + 1])).any(axis=1)
        todo = dup
        attempt += 1
        if attempt > 10_000:  # pragma: no cover - impossible unless m < number of explored slots
            raise RuntimeError("could not draw distinct exploration items")
    return items


def _available_ids(batch: Batch, n_items: int) -> np.ndarray:
    if batch.available is None:
        return np.arange(n_items, dtype=np.int64)
    return np.flatnonzero(batch.available).astype(np.int64)


def uniform_slates(batch: Batch, n_items: int) -> Slates:
    """Uniformly random slates without repeats: every available item has propensity 1/m at every position."""
    avail = _available_ids(batch, n_items)
    k = min(batch.slate_size, avail.size)
    n = len(batch)
    explore = np.ones((n, k), dtype=bool)
    items = np.zeros((n, k), dtype=np.int64)
    users, sessions = batch.users[:, None], batch.sessions[:, None]
    todo = explore
    attempt = 0
    while todo.any():
        slots = _SLOT_DRAW + attempt * k + np.arange(k)[None, :]
        cand = avail[batch.stream.integers(avail.size, users, sessions, slots)]
        items = np.where(todo, cand, items)
        dup = np.zeros_like(todo)
        for j in range(1, k):
            dup[:, j] = (items[:, :j] == items[:, j:j + 1]).any(axis=1)
        todo = dup
        attempt += 1
    prop = np.full((n, k), 1.0 / avail.size)
    return Slates(items=items, propensities=prop, scores=np.zeros((n, k)))


def uniform_probabilities(batch: Batch, n_items: int, items: np.ndarray) -> np.ndarray:
    """(n, k') probability that :func:`uniform_slates` shows ``items[r, j]`` at position ``j``: ``1/m``
    for an available item at a position of the slate, else 0."""
    items = np.asarray(items, dtype=np.int64)
    avail = _available_ids(batch, n_items)
    k = min(batch.slate_size, avail.size)
    ok = (items >= 0) & (items < n_items)
    is_avail = np.zeros(n_items, bool)
    is_avail[avail] = True
    ok &= is_avail[np.where(ok, items, 0)]
    ok &= np.arange(items.shape[1])[None, :] < k
    return np.where(ok, 1.0 / max(avail.size, 1), 0.0)


def epsilon_slates(batch: Batch, scores: np.ndarray, epsilon: float) -> Slates:
    """Epsilon-greedy slates with exact per-position propensities (see module docstring)."""
    n_items = scores.shape[-1]
    avail = _available_ids(batch, n_items)
    k = min(batch.slate_size, avail.size)
    n = len(batch)
    greedy = topk(scores, k, batch.available)
    if greedy.ndim == 1:
        greedy = np.broadcast_to(greedy, (n, k)).copy()
    m = avail.size - k
    if m <= 0 or epsilon <= 0:
        return Slates(greedy, np.ones((n, k)), _gather(scores, greedy))
    coin = batch.stream.uniform(batch.users[:, None], batch.sessions[:, None],
                                _SLOT_EXPLORE + np.arange(k)[None, :])
    explore = coin < epsilon
    items = _draw_outside(batch, greedy, explore, avail) if explore.any() else greedy
    prop = np.where(explore, epsilon / m, 1.0 - epsilon)
    return Slates(items, prop, _gather(scores, items))


def softmax_slates(batch: Batch, scores: np.ndarray, temperature: float,
                   candidates: int | None = None) -> Slates:
    """Stratified-softmax slates with exact per-position propensities (see module docstring)."""
    n_items = scores.shape[-1]
    n = len(batch)
    avail = _available_ids(batch, n_items)
    k = min(batch.slate_size, avail.size)
    c = avail.size if candidates is None else max(k, min(int(candidates), avail.size))
    ranked = topk(scores, c, batch.available)  # (c,) or (n, c)
    if ranked.ndim == 1:
        ranked = np.broadcast_to(ranked, (n, c))
    s = _gather(scores, ranked)
    strata_len = -(-c // k)
    pad = strata_len * k - c
    if pad:
        ranked = np.concatenate([ranked, np.zeros((n, pad), np.int64)], axis=1)
        s = np.concatenate([s, np.full((n, pad), -np.inf)], axis=1)
    # stratum j holds ranks j, j+k, ...: reshape rank order (n, strata_len, k)
    s3 = s.reshape(n, strata_len, k) / max(temperature, 1e-12)
    s3 = s3 - s3.max(axis=1, keepdims=True)
    w = np.exp(s3)
    p = w / w.sum(axis=1, keepdims=True)
    cdf = np.cumsum(p, axis=1)
    u = batch.stream.uniform(batch.users[:, None], batch.sessions[:, None],
                             _SLOT_SOFTMAX + np.arange(k)[None, :])
    choice = np.minimum((cdf < u[:, None, :] * cdf[:, -1:, :]).sum(axis=1), strata_len - 1)  # (n, k)
    # guard: never pick a padded (-inf) entry
    valid = np.isfinite(s.reshape(n, strata_len, k))
    last_valid = valid.sum(axis=1) - 1
    choice = np.minimum(choice, last_valid)
    r3 = ranked.reshape(n, strata_len, k)
    items = np.take_along_axis(r3, choice[:, None, :], axis=1)[:, 0, :]
    prop = np.take_along_axis(p, choice[:, None, :], axis=1)[:, 0, :]
    return Slates(items, prop, np.take_along_axis(s3, choice[:, None, :], axis=1)[:, 0, :] * temperature)


def _gather(scores: np.ndarray, items: np.ndarray) -> np.ndarray:
    if scores.ndim == 1:
        return scores[items]
    return np.take_along_axis(scores, items, axis=1)


def make_slates(batch: Batch, scores: np.ndarray, exploration: str = "none", *, epsilon: float = 0.1,
                temperature: float = 1.0, candidates: int | None = None) -> Slates:
    """Dispatch on the exploration scheme. ``scores`` is (n, n_items) or (n_items,) shared by all rows."""
    if exploration == "none":
        k = min(batch.slate_size, _available_ids(batch, scores.shape[-1]).size)
        items = topk(scores, k, batch.available)
        if items.ndim == 1:
            items = np.broadcast_to(items, (len(batch), items.size))
        return Slates(items, np.ones(items.shape), _gather(scores, items))
    if exploration == "epsilon":
        return epsilon_slates(batch, scores, epsilon)
    if exploration == "softmax":
        return softmax_slates(batch, scores, temperature, candidates)
    raise ValueError(f"unknown exploration {exploration!r}")


def slate_propensities(batch: Batch, scores: np.ndarray, exploration: str, items: np.ndarray, *,
                       epsilon: float = 0.1, temperature: float = 1.0,
                       candidates: int | None = None) -> np.ndarray:
    """(n, k) exact probability that :func:`make_slates` shows ``items[r, j]`` at position ``j``.

    The probability is 0 where that is impossible (an unavailable item, a position past the slate,
    an item that cannot reach that position under the scheme). It needs no draw, so it gives the
    target probabilities of any given slates, e.g. logged ones, for off-policy evaluation.
    """
    items = np.asarray(items, dtype=np.int64)
    n, kq = items.shape
    n_items = scores.shape[-1]
    avail = _available_ids(batch, n_items)
    k = min(batch.slate_size, avail.size)
    out = np.zeros((n, kq))
    kk = min(k, kq)
    if kk == 0:
        return out
    valid = (items >= 0) & (items < n_items)
    it = np.where(valid, items, 0)
    is_avail = np.zeros(n_items, bool)
    is_avail[avail] = True
    valid &= is_avail[it]
    if exploration == "none" or (exploration == "epsilon" and (avail.size - k <= 0 or epsilon <= 0)):
        greedy = topk(scores, k, batch.available)
        greedy = np.broadcast_to(greedy, (n, k)) if greedy.ndim == 1 else greedy
        out[:, :kk] = (greedy[:, :kk] == it[:, :kk]) & valid[:, :kk]
        return out
    if exploration == "epsilon":
        greedy = topk(scores, k, batch.available)
        greedy = np.broadcast_to(greedy, (n, k)) if greedy.ndim == 1 else greedy
        m = avail.size - k
        q = it[:, :kk]
        at_greedy = greedy[:, :kk] == q
        in_greedy = (greedy[:, None, :] == q[:, :, None]).any(axis=2)
        p = np.where(at_greedy, 1.0 - epsilon, np.where(in_greedy, 0.0, epsilon / m))
        out[:, :kk] = np.where(valid[:, :kk], p, 0.0)
        return out
    if exploration == "softmax":
        c = avail.size if candidates is None else max(k, min(int(candidates), avail.size))
        ranked = topk(scores, c, batch.available)
        ranked = np.broadcast_to(ranked, (n, c)) if ranked.ndim == 1 else ranked
        s = _gather(scores, ranked)
        strata_len = -(-c // k)
        pad = strata_len * k - c
        if pad:
            s = np.concatenate([s, np.full((n, pad), -np.inf)], axis=1)
        s3 = s.reshape(n, strata_len, k) / max(temperature, 1e-12)
        s3 = s3 - s3.max(axis=1, keepdims=True)
        w = np.exp(s3)
        p = (w / w.sum(axis=1, keepdims=True)).reshape(n, strata_len * k)
        rank = np.full((n, n_items), -1, np.int64)
        np.put_along_axis(rank, ranked, np.broadcast_to(np.arange(c), (n, c)), axis=1)
        rq = np.take_along_axis(rank, it[:, :kk], axis=1)
        ok = valid[:, :kk] & (rq >= 0) & (rq % k == np.arange(kk)[None, :])
        out[:, :kk] = np.where(ok, np.take_along_axis(p, np.maximum(rq, 0), axis=1), 0.0)
        return out
    raise ValueError(f"unknown exploration {exploration!r}")


__all__.append("slate_propensities")
