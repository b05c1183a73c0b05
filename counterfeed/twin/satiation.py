"""Satiation from repeat-topic behaviour: each impression's decayed count of its user's earlier clicks
on the item's topic, the feature whose weight the click model fits (the ``choice`` model's
``S_u[topic]``: +1 per click, halving every ``halflife`` days).
"""

from __future__ import annotations

import numpy as np

__all__ = ["satiation_feature", "satiation_instrument", "item_topics"]


def satiation_feature(user: np.ndarray, topic: np.ndarray, time: np.ndarray, click: np.ndarray,
                      halflife: float) -> np.ndarray:
    """(N,) ``S = sum over the user's clicks c on the row's topic strictly before the row's time of
    click_c * 0.5 ** ((t - t_c) / halflife)`` (``click`` may be any non-negative weight). Vectorized:
    a cumulative log-sum-exp of ``t_c ln 2 / halflife`` per
    (user, topic) group, read at each row by binary search (O(N log N)).
    """
    n = user.shape[0]
    key = user.astype(np.int64) * (int(topic.max()) + 1) + topic
    lam = np.log(2.0) / halflife
    cl = np.flatnonzero(click > 0)
    if cl.size == 0:
        return np.zeros(n)
    ck, ct, cw = key[cl], time[cl], np.log(np.asarray(click, np.float64)[cl])
    order = np.lexsort((ct, ck))
    ck, ct, cw = ck[order], ct[order], cw[order]
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
    within = np.logaddexp.accumulate(np.minimum(lam * (ct - t0), 700.0) + cw + offset) - offset
    out = np.zeros(n)
    p = pos[ok]
    out[ok] = np.exp(within[p] - lam * (time[ok] - t0[p]))
    return out


def satiation_instrument(user: np.ndarray, topic: np.ndarray, time: np.ndarray, click: np.ndarray,
                         prob: np.ndarray, halflife: float) -> tuple[np.ndarray, float]:
    """(N,) the instrument of the satiation feature, scaled by its first-stage slope; and the slope.

    The observed ``S`` (:func:`satiation_feature`) is confounded: users click often on the topics they
    like and come back sooner when they click, so a high ``S`` also marks a lasting taste and a busy
    user, which a factorization of a short log under-fits, and the fitted satiation weight comes out
    near 0 (or negative). The instrument is the part of the user's recent exposure to the topic that
    the logging policy drew at random: ``Z = sum_{earlier impressions s of the topic} prob_s 0.5 **
    ((t - t_s) / halflife) - share_topic * pbar_{user,topic} * D``, where ``D`` is the same decayed
    count over all the user's earlier impressions, ``share`` each topic's share of the impressions and
    ``pbar`` the user's mean ``prob`` on the topic. Under a logging policy that picks topics
    independently of the user's history (``random``, an exploring policy), ``Z`` has mean 0 whatever
    the user's tastes and visit times, and it moves the expected recent clicks on the topic
    (relevance); shown items act on later clicks only through the clicks they draw (the ``choice``
    model's satiation: the exclusion restriction). First stage ``S = c Z`` by least squares
    (Angrist & Pischke 2009, *Mostly Harmless Econometrics*, sec. 4.1); the weight is then fitted on
    ``c Z`` (a plug-in second stage in a logit, approximately consistent for small weights:
    Terza, Basu & Rathouz 2008).

    ``prob``: (N,) each impression's click probability under a fit without satiation, > 0.
    Returns (``c Z``, ``c``).
    """
    p = np.clip(np.asarray(prob, np.float64), 1e-9, None)
    s = satiation_feature(user, topic, time, click, halflife)
    z = satiation_feature(user, topic, time, p, halflife)
    d = satiation_feature(user, np.zeros_like(topic), time, np.ones_like(p), halflife)
    _, grp = np.unique(user.astype(np.int64) * (int(topic.max()) + 1) + topic, return_inverse=True)
    pbar = np.bincount(grp, weights=p) / np.bincount(grp)
    share = np.bincount(topic) / topic.size
    z = z - share[topic] * pbar[grp] * d
    zz = float(z @ z)
    c = float(z @ s) / zz if zz > 0 else 0.0
    return c * z, c


def item_topics(vectors: np.ndarray, n_topics: int, seed: int = 0) -> np.ndarray:
    """(I,) topic of each item: k-means clusters of the fitted item vectors (scikit-learn)."""
    from sklearn.cluster import KMeans

    k = max(1, min(n_topics, vectors.shape[0]))
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(vectors).astype(np.int64)
