"""Monte Carlo propensities of the Thompson samplers (see the ``bandits`` module docstring).

``M`` posterior draws are ranked like the served draw; ``hits[i, j]`` counts the draws that put
candidate ``i`` at position ``j``, so ``hits / M`` is an unbiased estimate of the probability ``p``
with standard error ``sqrt(p (1 - p) / M)`` (:func:`lookup_probabilities`, the samplers'
``action_probabilities``). The engine requires a shown item's propensity to be positive, so a shown
(item, position) that no draw reproduced (probability ``(1 - p)^M``) logs ``1 / M``, the estimate's
resolution: the logged value is ``max(hits, 1) / M`` (:func:`mc_propensities`), consistent, unbiased
except for ``(1 - p)^M / M <= 1 / M`` (below 1e-5 for every ``p >= 0.03`` at ``M = 200``), and never
gives an IPS weight above ``M``. The draws of one batch are shared by its requests, so in off-policy
evaluation their error is common to the rounds of a batch: raise ``propensity_samples`` there.
"""

from __future__ import annotations

import numpy as np

from counterfeed.core.contracts import Batch

__all__ = ["time_key", "ranked_positions", "hit_table", "mc_propensities", "group_sum", "available_ids",
           "lookup_probabilities"]


def time_key(t: float) -> np.uint64:
    """A batch's time as an integer key (its IEEE-754 bits)."""
    return np.float64(t).view(np.uint64)


def ranked_positions(draws: np.ndarray, k: int) -> np.ndarray:
    """Indexes (along the last axis) of the k largest values, best first."""
    part = np.argpartition(-draws, k - 1, axis=-1)[..., :k]
    order = np.argsort(-np.take_along_axis(draws, part, axis=-1), axis=-1, kind="stable")
    return np.take_along_axis(part, order, axis=-1)


def hit_table(mc_top: np.ndarray, c: int) -> np.ndarray:
    """(g, c, k) counts of Monte Carlo rankings ``mc_top`` (g, M, k) that put candidate ``i`` at position ``j``."""
    g, _, k = mc_top.shape
    cell = (np.arange(g)[:, None, None] * c + mc_top) * k + np.arange(k)
    return np.bincount(cell.ravel(), minlength=g * c * k).reshape(g, c, k)


def mc_propensities(hits: np.ndarray, pos: np.ndarray, m: int) -> np.ndarray:
    """``max(hits, 1) / M`` of the shown candidates ``pos`` (n, k), from a (n, c, k) or (c, k) hit table."""
    j = np.arange(pos.shape[1])[None, :]
    h = hits[pos, j] if hits.ndim == 2 else hits[np.arange(pos.shape[0])[:, None], pos, j]
    return np.maximum(h, 1) / m


def lookup_probabilities(hits: np.ndarray, cand: np.ndarray, items: np.ndarray, m: int) -> np.ndarray:
    """(n, k') ``hits / M`` of ``items`` (n, k') at their positions; 0 outside the candidates or the slate.

    ``hits`` is (n, c, k) per request with ``cand`` (n, c), or (c, k) shared with ``cand`` (c,).
    """
    items = np.asarray(items, np.int64)
    n, kq = items.shape
    k = hits.shape[-1]
    kk = min(k, kq)
    out = np.zeros((n, kq))
    if kk == 0 or cand.size == 0:
        return out
    q = items[:, :kk]
    cand2 = np.broadcast_to(cand, (n, cand.shape[-1]))
    match = cand2[:, None, :] == q[:, :, None]            # (n, kk, c)
    found = match.any(axis=2)
    col = match.argmax(axis=2)
    j = np.broadcast_to(np.arange(kk), (n, kk))
    h = hits[col, j] if hits.ndim == 2 else hits[np.arange(n)[:, None], col, j]
    out[:, :kk] = np.where(found, h / m, 0.0)
    return out


def group_sum(index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """(n, d) sums of the rows of ``values`` (m, d) by ``index`` (m,) (np.add.at, but fast)."""
    return np.stack([np.bincount(index, weights=values[:, j], minlength=n) for j in range(values.shape[1])],
                    axis=1) if values.shape[1] else np.zeros((n, 0))


def available_ids(batch: Batch, n_items: int) -> np.ndarray:
    return np.arange(n_items) if batch.available is None else np.flatnonzero(batch.available)
