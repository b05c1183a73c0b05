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
times ``U / (U - 1)`` (users are the independent units; a user's clicks are not; the CR1 small-sample
factor). The interval is ``M +- t_{U-1} se`` with Student's t on ``U - 1`` degrees of freedom, the
few-clusters correction of Cameron & Miller, "A Practitioner's Guide to Cluster-Robust Inference",
J. Human Resources 50(2), 2015, sec. VI.C (a normal z is too narrow with few users), and it is
intersected with the range the quantity can take (``bounds``: ``[0, 1]`` for a metric level,
``[-1, 1]`` for a difference of two levels). Each :class:`MetricEstimate` lists its ``warnings``:

- no interval from fewer than two users (``se`` and the bounds are None);
- no interval when no variation is observed (every user's ``A_u - M B_u`` is 0, e.g. every held-out
  click at rank 1): a zero-width interval would claim certainty that a handful of clicks cannot give;
- fewer than :data:`FEW_USERS` users: the t interval's coverage may still fall short of its level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from counterfeed.core.scoring import interval_quantile

__all__ = ["MetricEstimate", "rank_metric_values", "ratio_estimate", "coverage", "metric_names", "FEW_USERS",
           "grouped_warnings"]

#: below this many users (clusters) an interval carries a few-clusters warning (Cameron & Miller 2015)
FEW_USERS = 30


@dataclass
class MetricEstimate:
    """One offline metric: ``weighting`` is ``naive`` or ``ipw``; ``ess`` is Kish's effective sample size;
    ``warnings`` says why there is no interval or why it may be too narrow."""

    metric: str
    weighting: str
    value: float | None
    se: float | None
    lower: float | None
    upper: float | None
    n_clicks: int
    n_users: int
    ess: float | None
    warnings: list[str] = field(default_factory=list)

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
                   level: float = 0.95, bounds: tuple[float, float] | None = None) -> MetricEstimate:
    """``sum w m / sum w`` with the user-clustered CR1 interval on ``U - 1`` df, intersected with
    ``bounds`` (module docstring)."""
    v = np.asarray(values, np.float64)
    w = np.asarray(weights, np.float64)
    n = int(v.size)
    if n == 0 or w.sum() <= 0:
        return MetricEstimate(metric, weighting, None, None, None, None, n, 0, None,
                              ["no held-out click with positive weight, no estimate"])
    _, code = np.unique(np.asarray(users), return_inverse=True)
    a = np.bincount(code, weights=w * v)
    b = np.bincount(code, weights=w)
    n_users = int(a.size)
    m = float(a.sum() / b.sum())
    ess = float(w.sum() ** 2 / (w ** 2).sum())
    if n_users < 2:
        return MetricEstimate(metric, weighting, m, None, None, None, n, n_users, ess,
                              [f"no interval from the clicks of {n_users} user (an interval needs two "
                               "independent users or more)"])
    resid = a - m * b
    if np.allclose(resid, 0.0, rtol=0.0, atol=1e-12 * max(1.0, float(np.abs(a).max()))):
        return MetricEstimate(metric, weighting, m, None, None, None, n, n_users, ess,
                              [f"no variation observed across {n} held-out clicks of {n_users} users; no "
                              "interval: a zero-width one would claim a certainty these clicks cannot give"])
    se = float(np.sqrt((resid ** 2).sum() * n_users / (n_users - 1)) / b.sum())
    half = interval_quantile(level, n_users - 1) * se
    lo, hi = m - half, m + half
    warns = []
    if n_users < FEW_USERS:
        warns.append(f"only {n_users} users (independent units): the interval uses Student's t on "
                     f"{n_users - 1} df, and its coverage may still fall short of {level:g}")
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return MetricEstimate(metric, weighting, m, se, lo, hi, n, n_users, ess, warns)


def coverage(top_lists: np.ndarray, n_catalog: int) -> float | None:
    """Share of ``n_catalog`` items in at least one row of ``top_lists`` (``-1`` entries ignored)."""
    if n_catalog <= 0:
        return None
    shown = np.unique(top_lists[top_lists >= 0])
    return float(shown.size / n_catalog)


def grouped_warnings(estimates: Sequence[MetricEstimate]) -> list[str]:
    """Each distinct warning once, prefixed by the metrics (and weightings) it applies to."""
    where: dict[str, list[str]] = {}
    for e in estimates:
        for w in e.warnings:
            where.setdefault(w, []).append(f"{e.metric} {e.weighting}")
    return [f"{', '.join(names)}: {w}" for w, names in where.items()]
