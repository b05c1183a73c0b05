"""Ranking metrics on held-out clicks, naive and inverse-propensity weighted, with user-clustered intervals.

Every held-out click ``c`` (user ``u_c``, item ``i_c``, logged propensity ``p_c``) is scored by the
rank ``r_c`` (1-based) of ``i_c`` in the list the evaluated recommender returns for that request:

- ``recall@k`` (= hit rate: one relevant item per event) ``1{r_c <= k}``;
- ``ndcg@k`` ``1{r_c <= k} / log2(r_c + 1)`` (the ideal DCG of one relevant item is 1);
- ``mrr`` ``1 / r_c`` for ``r_c <= cutoff``, else 0 (reciprocal rank truncated at the list's length);
- ``coverage@k``: the share of the catalog (items available at the end of the held-out period) that
  appears in at least one top-``k`` list; a property of the lists, not an average over clicks.

**Naive** averages over the logged clicks: it measures how well the recommender predicts what the
*logging policy* led users to click, so it rewards agreeing with the logging policy's exposure.
**Unbiased** (``ipw``) is the self-normalized inverse-propensity estimator

.. math:: \\hat M = \\frac{\\sum_c w_c\\, m_c}{\\sum_c w_c}, \\qquad w_c = \\min(1 / p_c,\\ \\text{clip}),

(Schnabel et al., "Recommendations as treatments", ICML 2016; Yang et al., "Unbiased offline
recommender evaluation for missing-not-at-random implicit feedback", RecSys 2018). Without clipping,
if every (item, position) has positive logging probability in every round, numerator and denominator
are unbiased for ``sum_r sum_(i,j) P(click | r, i, j) m(r, i)`` and ``sum_r sum_(i,j) P(click | r, i, j)``,
so the ratio is consistent for the metric over the clicks that *uniformly random exposure* would
produce: what the users like, rather than what they were shown. Clipping trades that for variance.

Intervals: both estimators are ratios of per-user sums ``A_u = sum w m``, ``B_u = sum w``; the
standard error is the delta method clustered by user, ``se^2 = sum_u (A_u - M B_u)^2 / (sum_u B_u)^2``
times ``U / (U - 1)`` (users are the independent units; a user's clicks are not), with a normal
interval. No interval from fewer than two users.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats

__all__ = ["MetricEstimate", "rank_metric_values", "ratio_estimate", "coverage", "metric_names"]


@dataclass
class MetricEstimate:
    """One offline metric: ``weighting`` is ``naive`` or ``ipw``; ``ess`` is Kish's effective sample size."""

    metric: str
    weighting: str
    value: float | None
    se: float | None
    lower: float | None
    upper: float | None
    n_clicks: int
    n_users: int
    ess: float | None

    def to_dict(self) -> dict:
        return asdict(self)


def metric_names(ks: Sequence[int]) -> list[str]:
    return [f"{m}@{k}" for k in ks for m in ("recall", "ndcg")] + ["mrr"]


def rank_metric_values(ranks: np.ndarray, ks: Sequence[int], cutoff: int) -> dict[str, np.ndarray]:
    """Per-click values of :func:`metric_names` from 1-based ranks (``0`` or ``> cutoff``: not in the list)."""
    r = np.asarray(ranks, np.float64)
    found = (r >= 1) & (r <= cutoff)
    out: dict[str, np.ndarray] = {}
    for k in ks:
        hit = found & (r <= k)
        out[f"recall@{k}"] = hit.astype(np.float64)
        out[f"ndcg@{k}"] = np.where(hit, 1.0 / np.log2(np.where(hit, r, 1.0) + 1.0), 0.0)
    out["mrr"] = np.where(found, 1.0 / np.where(found, r, 1.0), 0.0)
    return out


def ratio_estimate(metric: str, weighting: str, values: np.ndarray, weights: np.ndarray, users: np.ndarray,
                   level: float = 0.95) -> MetricEstimate:
    """``sum w m / sum w`` with the user-clustered delta-method interval (module docstring)."""
    v = np.asarray(values, np.float64)
    w = np.asarray(weights, np.float64)
    n = int(v.size)
    if n == 0 or w.sum() <= 0:
        return MetricEstimate(metric, weighting, None, None, None, None, n, 0, None)
    _, code = np.unique(np.asarray(users), return_inverse=True)
    a = np.bincount(code, weights=w * v)
    b = np.bincount(code, weights=w)
    n_users = int(a.size)
    m = float(a.sum() / b.sum())
    ess = float(w.sum() ** 2 / (w ** 2).sum())
    if n_users < 2:
        return MetricEstimate(metric, weighting, m, None, None, None, n, n_users, ess)
    se = float(np.sqrt(((a - m * b) ** 2).sum() * n_users / (n_users - 1)) / b.sum())
    z = float(stats.norm.ppf(0.5 + level / 2))
    return MetricEstimate(metric, weighting, m, se, m - z * se, m + z * se, n, n_users, ess)


def coverage(top_lists: np.ndarray, n_catalog: int) -> float | None:
    """Share of ``n_catalog`` items in at least one row of ``top_lists`` (``-1`` entries ignored)."""
    if n_catalog <= 0:
        return None
    shown = np.unique(top_lists[top_lists >= 0])
    return float(shown.size / n_catalog)
