"""Satiation from repeat-topic behaviour: each impression's decayed count of its user's earlier clicks
on the item's topic, the feature whose weight the click model fits (the ``choice`` model's
``S_u[topic]``: +1 per click, halving every ``halflife`` days).
"""

from __future__ import annotations

import numpy as np

__all__ = ["satiation_feature", "item_topics"]


def satiation_feature(user: np.ndarray, topic: np.ndarray, time: np.ndarray, click: np.ndarray,
                      halflife: float) -> np.ndarray:
    """(N,) ``S = sum over the user's clicks c on the row's topic strictly before the row's time of
    0.5 ** ((t - t_c) / halflife)``. Vectorized: a cumulative log-sum-exp of ``t_c ln 2 / halflife`` per
    (user, topic) group, read at each row by binary search (O(N log N)).
    """
    n = user.shape[0]
    key = user.astype(np.int64) * (int(topic.max()) + 1) + topic
    lam = np.log(2.0) / halflife
    cl = np.flatnonzero(click > 0)
    if cl.size == 0:
        return np.zeros(n)
    ck, ct = key[cl], time[cl]
    order = np.lexsort((ct, ck))
    ck, ct = ck[order], ct[order]
    start = np.r_[True, ck[1:] != ck[:-1]]
    gstart = np.maximum.accumulate(np.where(start, np.arange(ck.size), 0))
    t0 = ct[gstart]  # each group's first click time keeps exponents small
    span = float(time.max() - time.min()) + 1.0
    # rows: find the clicks of the same key strictly before t; composite sort key (key, time)
    comp_c = ck.astype(np.float64) * (span * 4) + (ct - time.min())
    comp_r = key.astype(np.float64) * (span * 4) + (time - time.min())
    pos = np.searchsorted(comp_c, comp_r, side="left") - 1   # last click strictly before
    ok = pos >= 0
    ok[ok] = ck[pos[ok]] == key[ok]
    # within-group cumulative sums of exp(lam * (t_c - t0)) in log space; each group is offset by
    # 1000 * its index so that earlier groups contribute exp(-1000) (nothing) to later ones
    gid = np.cumsum(start) - 1
    offset = 1000.0 * gid
    within = np.logaddexp.accumulate(np.minimum(lam * (ct - t0), 700.0) + offset) - offset
    out = np.zeros(n)
    p = pos[ok]
    out[ok] = np.exp(within[p] - lam * (time[ok] - t0[p]))
    return out


def item_topics(vectors: np.ndarray, n_topics: int, seed: int = 0) -> np.ndarray:
    """(I,) topic of each item: k-means clusters of the fitted item vectors (scikit-learn)."""
    from sklearn.cluster import KMeans

    k = max(1, min(n_topics, vectors.shape[0]))
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(vectors).astype(np.int64)
