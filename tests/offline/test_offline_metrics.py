"""Offline ranking metrics: a hand computation on fixed data, and the unbiasedness of the IPW version."""

from __future__ import annotations

import math

import numpy as np
import pytest

from counterfeed.core.contracts import Log, Recommender, Slates
from counterfeed.offline import evaluate_offline, rank_metric_values, ratio_estimate
from counterfeed.testing.fixtures import make_items

ORDER = np.array([3, 1, 2, 0, 5, 4])  # the fixed ranking of the test recommender


class FixedRanking(Recommender):
    """Always the same order (restricted to the available items)."""

    name = "fixed-ranking"

    def recommend(self, batch):
        avail = np.ones(self.ctx_.items.n, bool) if batch.available is None else batch.available
        order = ORDER[avail[ORDER]][:batch.slate_size]
        items = np.tile(order, (len(batch), 1))
        return Slates(items=items, propensities=np.ones(items.shape))


def _log(rows):
    a = np.array(rows, dtype=float)
    n = len(rows)
    return Log(user=a[:, 0].astype(np.int64), session=a[:, 1].astype(np.int64), time=a[:, 2],
               position=np.zeros(n, np.int64), item=a[:, 3].astype(np.int64), click=a[:, 4] > 0,
               dwell=np.zeros(n), propensity=a[:, 5])


# user, session, time, item, click, propensity
TEST = _log([(0, 1, 2.0, 3, 1, 0.5), (0, 1, 2.0, 2, 1, 0.25), (0, 1, 2.0, 5, 0, 0.5),
             (1, 1, 2.5, 4, 1, 0.1), (2, 1, 3.0, 1, 1, 1.0), (2, 2, 3.5, 0, 0, 0.2)])
TRAIN = _log([(0, 0, 0.5, 1, 1, 0.5)])


def _report(**kw):
    return evaluate_offline("fixed-ranking", {}, TRAIN, TEST, make_items(6, text=False), 3, ks=[2], cutoff=6,
                            recommender=FixedRanking(), **kw)


def _cluster_se(v, w, users):
    """The user-clustered delta-method standard error, written out user by user."""
    m = sum(wi * vi for wi, vi in zip(w, v)) / sum(w)
    total = 0.0
    for u in sorted(set(users)):
        a = sum(wi * vi for wi, vi, ui in zip(w, v, users) if ui == u)
        b = sum(wi for wi, ui in zip(w, users) if ui == u)
        total += (a - m * b) ** 2
    n = len(set(users))
    return math.sqrt(total * n / (n - 1)) / sum(w)


def test_metrics_match_a_hand_computation():
    rep = _report()
    # held-out clicks: items 3 (rank 1, p .5), 2 (rank 3, p .25), 4 (rank 6, p .1), 1 (rank 2, p 1)
    w = [2.0, 4.0, 10.0, 1.0]
    users = [0, 0, 1, 2]
    expected = {
        "recall@2": [1, 0, 0, 1],
        "ndcg@2": [1, 0, 0, 1 / math.log2(3)],
        "mrr": [1, 1 / 3, 1 / 6, 1 / 2],
    }
    for name, v in expected.items():
        assert rep.value(name, "naive") == pytest.approx(sum(v) / 4, abs=1e-12)
        ipw = sum(wi * vi for wi, vi in zip(w, v)) / sum(w)
        assert rep.value(name, "ipw") == pytest.approx(ipw, abs=1e-12)
        est = next(e for e in rep.estimates if e.metric == name and e.weighting == "ipw")
        assert est.se == pytest.approx(_cluster_se(v, w, users), rel=1e-12)
        # Student's t on users - 1 = 2 df (CR1, Cameron & Miller 2015), intersected with [0, 1]
        assert est.lower == pytest.approx(max(0.0, ipw - 4.302652729911275 * est.se), rel=1e-9, abs=1e-15)
        assert est.upper == pytest.approx(min(1.0, ipw + 4.302652729911275 * est.se), rel=1e-9)
        assert est.n_clicks == 4 and est.n_users == 3
        assert est.ess == pytest.approx(sum(w) ** 2 / sum(x * x for x in w))
    assert rep.coverage[2] == pytest.approx(2 / 6)  # items 3 and 1 are the only top-2 items


def test_clipping_and_bad_propensities():
    rep = _report(clip=4.0)
    assert rep.value("recall@2", "ipw") == pytest.approx((2 + 1) / (2 + 4 + 4 + 1))
    assert "clipped" in rep.notes[0]
    bad = _log([(0, 1, 2.0, 3, 1, 0.0)])
    from counterfeed.errors import DataError

    with pytest.raises(DataError, match="propensity"):
        evaluate_offline("fixed-ranking", {}, TRAIN, bad, make_items(6, text=False), 3, ks=[2], cutoff=6,
                         recommender=FixedRanking())
    with pytest.raises(DataError, match="k must be in"):
        _report_k = evaluate_offline("fixed-ranking", {}, TRAIN, TEST, make_items(6, text=False), 3, ks=[7],
                                     cutoff=6, recommender=FixedRanking())  # noqa: F841


def test_no_interval_from_one_user():
    e = ratio_estimate("mrr", "ipw", np.array([1.0, 0.5]), np.array([1.0, 2.0]), np.array([4, 4]))
    assert e.value == pytest.approx(2 / 3) and e.se is None and e.lower is None


def _simulate(rng, logging, click, n_rounds):
    """One log with slate size 1: per user, ``n_rounds`` items drawn from ``logging`` and Bernoulli clicks."""
    n_users, n_items = click.shape
    cum = np.cumsum(logging, axis=1)
    u = np.repeat(np.arange(n_users), n_rounds)
    i = (rng.random(u.size)[:, None] > cum[u]).sum(axis=1)
    c = rng.random(u.size) < click[u, i]
    return u[c], i[c], logging[u[c], i[c]]


def test_ipw_metrics_are_unbiased_for_the_uniform_exposure_metric():
    """On simulated logs (slate size 1, a skewed logging policy with full support, known click
    probabilities), the mean of the self-normalized IPW estimate over S = 300 independent logs equals
    the metric over the clicks of uniformly random exposure, ``sum_ui c_ui m_ui / sum_ui c_ui``.

    Tolerance: 4 Monte Carlo standard errors (sd over the logs / sqrt(S); a false alarm ~6e-5 per
    metric) plus the ratio estimator's first-order bias ``|R Var(B) - Cov(A, B)| / E[B]^2`` (A = sum of
    w m, B = sum of w per log; Cochran, Sampling Techniques, 1977, sec. 6.8), estimated from the same
    logs (about 0.5 MC standard errors here, with ~2,100 clicks per log). The naive estimate converges
    to the logging policy's click-weighted metric instead, many standard errors away from the truth.
    """
    rng = np.random.default_rng(7)
    n_users, n_items, n_rounds, S = 200, 20, 30, 300
    x, y = rng.normal(size=(n_users, 3)), rng.normal(size=(n_items, 3))
    click = 1 / (1 + np.exp(-(x @ y.T - 1.0)))
    pop = rng.normal(size=n_items) * 1.5            # the logging policy favours arbitrary items
    logging = np.exp(pop)[None, :] * np.ones((n_users, 1))
    logging /= logging.sum(axis=1, keepdims=True)
    score = x @ y.T + rng.normal(size=(n_users, n_items))  # the evaluated recommender's (noisy) scores
    rank = np.argsort(np.argsort(-score, axis=1), axis=1) + 1
    m = rank_metric_values(rank.ravel(), [5], cutoff=n_items)
    truths = {k: float((click.ravel() * v).sum() / click.sum()) for k, v in m.items()}
    naive_limit = {k: float((logging.ravel() * click.ravel() * v).sum() / (logging * click).sum()) for k, v in m.items()}
    est = {k: [] for k in m}
    naive = {k: [] for k in m}
    sums = {k: [] for k in m}
    for _ in range(S):
        u, i, p = _simulate(rng, logging, click, n_rounds)
        vals = rank_metric_values(rank[u, i], [5], cutoff=n_items)
        for k, v in vals.items():
            est[k].append(ratio_estimate(k, "ipw", v, 1 / p, u).value)
            sums[k].append(((v / p).sum(), (1 / p).sum()))
            naive[k].append(ratio_estimate(k, "naive", v, np.ones_like(v), u).value)
            sums[k + "/naive"] = sums.get(k + "/naive", []) + [(v.sum(), float(v.size))]
    for k in m:
        e = np.array(est[k])
        mc_se = e.std(ddof=1) / np.sqrt(S)
        a, b = np.array(sums[k]).T
        bias = abs(truths[k] * b.var(ddof=1) - np.cov(a, b)[0, 1]) / b.mean() ** 2
        assert abs(e.mean() - truths[k]) < 4 * mc_se + bias, (k, e.mean(), truths[k], mc_se, bias)
        nv = np.array(naive[k])
        assert abs(nv.mean() - truths[k]) > 10 * nv.std(ddof=1) / np.sqrt(S)
        a, b = np.array(sums[k + "/naive"]).T
        bias = abs(naive_limit[k] * b.var(ddof=1) - np.cov(a, b)[0, 1]) / b.mean() ** 2
        assert abs(nv.mean() - naive_limit[k]) < 4 * nv.std(ddof=1) / np.sqrt(S) + bias
