"""Estimator formulas on hand-computed cases, SNIPS under uniform logging, unbiasedness and coverage."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterfeed.errors import DataError
from counterfeed.ope import (LogisticRewardModel, RewardModel, Support, Target, evaluate, from_arrays,
                             target_from_table)
from counterfeed.ope.estimators import DoublyRobustWithShrinkage, SwitchDoublyRobust

from ope_sim import simulate


class ConstantModel(RewardModel):
    """q(a, j) = table[a, j] (no fitting), to check the formulas by hand."""

    def __init__(self, table):
        self.table = np.asarray(table, float)

    def fit(self, log, rows):
        return self

    def predict(self, log, item_code, position, rows):
        return self.table[item_code, position]  # item ids 0, 1 have codes 0, 1 in _tiny


def _tiny():
    # 2 rounds x 2 positions, items coded in order of appearance: 0 -> code 0, 1 -> code 1; one non-binary
    # reward (at a unit of target weight 0), so the intervals are not intersected with [0, 1]
    log = from_arrays(round=[10, 10, 11, 11], item=[0, 1, 1, 0], position=[0, 1, 0, 1],
                      reward=[1.0, 0.5, 1.0, 1.0], propensity=[0.5, 0.25, 0.5, 0.75])
    # target: position 0 -> item 0 w.p. 0.2, item 1 w.p. 0.8 ; position 1 -> item 0 w.p. 1
    table = pd.DataFrame({"item": [0, 1, 0], "position": [0, 0, 1], "prob": [0.2, 0.8, 1.0]})
    q = np.array([[0.3, 0.6], [0.9, 0.1]])  # q[item, position]
    return log, target_from_table(log, table), q


def test_formulas_by_hand():
    log, target, q = _tiny()
    pe = np.array([0.2, 0.0, 0.8, 1.0])
    np.testing.assert_allclose(target.prob, pe)
    w = pe / np.array([0.5, 0.25, 0.5, 0.75])
    r = np.array([1.0, 0.5, 1.0, 1.0])
    qi = np.array([q[0, 0], q[1, 1], q[1, 0], q[0, 1]])
    dm_pos = np.array([0.2 * q[0, 0] + 0.8 * q[1, 0], 1.0 * q[0, 1]])
    dm = dm_pos[[0, 1, 0, 1]]
    res = {x.estimator: x for x in evaluate(log, target, ["dm", "ips", "snips", "dr", "sndr", "switch-dr",
                                                          "dr-os"], reward_model=ConstantModel(q), folds=1,
                                            tau=1.5, lam=2.0)}
    assert res["dm"].value == pytest.approx(dm.mean())
    assert res["ips"].value == pytest.approx((w * r).mean())
    assert res["snips"].value == pytest.approx((w * r).sum() / w.sum())
    assert res["dr"].value == pytest.approx((dm + w * (r - qi)).mean())
    assert res["sndr"].value == pytest.approx(dm.mean() + (w * (r - qi)).sum() / w.sum())
    assert res["switch-dr"].value == pytest.approx((dm + (w <= 1.5) * w * (r - qi)).mean())
    ws = 2.0 * w / (w ** 2 + 2.0)
    assert res["dr-os"].value == pytest.approx((dm + ws * (r - qi)).mean())
    # IPS analytic se: per-round sums S_r of w r, n_r = 2 impressions each -> e_r = (S_r - V n_r) / N
    s = np.array([(w * r)[:2].sum(), (w * r)[2:].sum()])
    e = (s - res["ips"].value * 2) / 4
    assert res["ips"].se == pytest.approx(math.sqrt(2 / 1 * (e @ e)))
    # the analytic interval's half-width is q * se: z (df = inf), or Student's t on n_eff - 1 df
    from counterfeed.ope import estimators as ope_est
    from counterfeed.ope.evaluate import analytic_interval
    terms = ope_est.make_estimator("ips").terms
    u = ope_est.Units(w=w, r=r, rnd=np.array([0, 0, 1, 1]), n_rounds=2)
    v, se, lo, hi = analytic_interval(terms(u), 0.95, df=math.inf)
    assert se == pytest.approx(res["ips"].se) and hi - v == pytest.approx(1.959964 * se, rel=1e-6)
    v, se, lo, hi = analytic_interval(terms(u), 0.95, df=1.0)
    assert hi - v == pytest.approx(12.706205 * se, rel=1e-6)  # t_{1, 0.975}
    # two rounds are fewer than MIN_EFFECTIVE_UNITS: no interval from evaluate, the se still reported
    assert res["ips"].interval == "none" and math.isnan(res["ips"].upper)
    assert any("effective independent units" in x for x in res["ips"].diagnostics["warnings"])
    d = res["ips"].diagnostics
    assert d["max_weight"] == pytest.approx(w.max())
    assert d["ess"] == pytest.approx(w.sum() ** 2 / (w @ w))
    assert d["n_rounds"] == 2 and d["n_impressions"] == 4
    assert res["ips"].logging_value == pytest.approx(r.mean())  # 0.875: the mean logged reward


def test_clipping():
    log, target, q = _tiny()
    (r,) = evaluate(log, target, ["ips"], clip=1.0)
    w = np.minimum(np.array([0.4, 0.0, 1.6, 4 / 3]), 1.0)
    assert r.value == pytest.approx((w * np.array([1, 0, 1, 1])).mean())
    assert r.diagnostics["clipped_share"] == pytest.approx(0.5)
    assert r.diagnostics["max_weight"] == pytest.approx(1.6)


def test_switch_and_shrinkage_limits():
    log, target, q = _tiny()
    m = ConstantModel(q)
    dm, dr = (x.value for x in evaluate(log, target, ["dm", "dr"], reward_model=m, folds=1))
    big, zero = (evaluate(log, target, [SwitchDoublyRobust(t)], reward_model=m, folds=1)[0].value
                 for t in (np.inf, 0.0))
    assert big == pytest.approx(dr) and zero == pytest.approx(dm)
    inf_lam = evaluate(log, target, [DoublyRobustWithShrinkage(np.inf)], reward_model=m, folds=1)[0].value
    assert inf_lam == pytest.approx(dr)


def test_dm_needs_full_distribution():
    log, _, _ = _tiny()
    partial = target_from_table(log, pd.DataFrame({"item": [0], "position": [0], "prob": [0.5]}))
    assert evaluate(log, partial, ["ips"])[0].value == pytest.approx(0.5 / 0.5 * 1 / 4)
    with pytest.raises(DataError, match=r"full distribution.*position 0 sum to 0\.5"):
        evaluate(log, partial, ["dr"])


@settings(max_examples=30, deadline=None)
@given(n_items=st.integers(2, 6), k=st.integers(1, 3), n_rounds=st.integers(2, 40), seed=st.integers(0, 10_000))
def test_snips_uniform_equals_mean(n_items, k, n_rounds, seed):
    rng = np.random.default_rng(seed)
    p0 = np.full((k, n_items), 1.0 / n_items)
    log, table, _ = simulate(rng, n_rounds, p0, rng.random(n_items), np.ones(k), p0)
    (r,) = evaluate(log, target_from_table(log, table), ["snips"])
    assert r.value == pytest.approx(log.reward.mean(), abs=1e-12)


@pytest.mark.parametrize("scale", [1.0, 3.0])  # 3.0: rewards outside [0, 1] -> identity link (ridge)
def test_reward_model_sufficient_statistics_match_rowwise(scale):
    rng = np.random.default_rng(5)
    k, n_items = 3, 5
    p0 = rng.dirichlet(np.ones(n_items), size=k)
    log, _, _ = simulate(rng, 400, p0, rng.random(n_items), np.array([1.0, 0.7, 0.4]), p0)
    log.reward = log.reward * scale
    agg = LogisticRewardModel(l2=0.5).fit(log, np.arange(len(log)))
    # the same model with a constant zero context column is fitted row by row
    log.context["context_zero"] = np.zeros(len(log))
    row = LogisticRewardModel(l2=0.5, context=["context_zero"]).fit(log, np.arange(len(log)))
    grid_i, grid_j = np.meshgrid(np.arange(n_items), np.arange(k), indexing="ij")
    rows = np.zeros(grid_i.size, np.int64)
    np.testing.assert_allclose(agg.predict(log, grid_i.ravel(), grid_j.ravel(), None),
                               row.predict(log, grid_i.ravel(), grid_j.ravel(), rows), atol=1e-5)


def _replications(n_rep, n_rounds, names, seed):
    rng = np.random.default_rng(seed)
    k, n_items = 3, 6
    p0 = np.array([[.3, .2, .2, .1, .1, .1], [.1, .3, .2, .2, .1, .1], [.2, .2, .2, .2, .1, .1]])
    pe = np.array([[.05, .05, .1, .2, .3, .3], [.6, .1, .1, .1, .05, .05], [0, 0, .25, .25, .25, .25]])
    theta = np.array([.1, .2, .3, .4, .5, .6])
    pb = np.array([1.0, 0.6, 0.3])
    vals, cover = {n: [] for n in names}, {n: [] for n in names}
    truth = None
    for _ in range(n_rep):
        log, table, truth = simulate(rng, n_rounds, p0, theta, pb, pe)
        for r in evaluate(log, target_from_table(log, table), names, folds=2):
            vals[r.estimator].append(r.value)
            cover[r.estimator].append(r.lower <= truth <= r.upper)
    return truth, {n: np.array(v) for n, v in vals.items()}, {n: np.mean(c) for n, c in cover.items()}


def test_ips_unbiased_and_covers():
    n_rep = 200
    truth, vals, cover = _replications(n_rep, 300, ["ips", "snips", "dr"], seed=11)
    for name in ("ips", "dr"):
        v = vals[name]
        # bias within 4 Monte Carlo standard errors of the mean over replications
        assert abs(v.mean() - truth) < 4 * v.std(ddof=1) / math.sqrt(n_rep), name
        # coverage of a 95% interval: binomial sd over 200 reps is 0.015; allow 3.5 sd plus CLT slack
        assert 0.89 <= cover[name] <= 0.99, (name, cover[name])
    assert abs(vals["snips"].mean() - truth) < 0.01  # O(1/N) bias with 900 impressions


@pytest.mark.slow
def test_all_estimators_bias_and_coverage_report(capsys):
    names = ["dm", "ips", "snips", "dr", "sndr", "switch-dr", "dr-os"]
    n_rep = 500
    truth, vals, cover = _replications(n_rep, 1000, names, seed=12)
    with capsys.disabled():
        print(f"\ntruth {truth:.4f}")
        for n in names:
            v = vals[n]
            print(f"{n:10s} bias {v.mean() - truth:+.5f} (mc se {v.std(ddof=1) / math.sqrt(n_rep):.5f}) "
                  f"sd {v.std(ddof=1):.4f} coverage {cover[n]:.3f}")
    for n in ("ips", "dr", "sndr", "snips"):
        assert abs(vals[n].mean() - truth) < 4 * vals[n].std(ddof=1) / math.sqrt(n_rep) + 1e-3
        # binomial sd over 500 reps is 0.0097; 3 sd
        assert 0.92 <= cover[n] <= 0.98, (n, cover[n])


def test_bootstrap_close_to_analytic():
    rng = np.random.default_rng(3)
    k, n_items = 2, 4
    p0 = np.full((k, n_items), 0.25)
    pe = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    log, table, _ = simulate(rng, 2000, p0, np.array([.1, .3, .5, .7]), np.array([1.0, .5]), pe)
    target = target_from_table(log, table)
    (a,) = evaluate(log, target, ["ips"])
    (b,) = evaluate(log, target, ["ips"], bootstrap=400, seed=1)
    (b2,) = evaluate(log, target, ["ips"], bootstrap=400, seed=1)
    assert b.interval == "bootstrap" and b.value == a.value
    assert (b.lower, b.upper) == (b2.lower, b2.upper)  # keyed generator: reproducible
    # the bootstrap se of a mean over 2000 clusters is within ~10% of the analytic one (400 draws: ~3.5% sd)
    assert b.se == pytest.approx(a.se, rel=0.15)


def test_explicit_per_round_table_and_support():
    log, _, q = _tiny()
    rows = pd.DataFrame({"round": [10, 10, 10, 11, 11], "position": [0, 0, 1, 0, 1], "item": [0, 1, 1, 1, 0],
                         "prob": [0.5, 0.5, 1.0, 1.0, 1.0]})
    t = target_from_table(log, rows)
    np.testing.assert_allclose(t.prob, [0.5, 1.0, 1.0, 1.0])
    assert isinstance(t.support, Support) and not t.support.per_position
    (dm,) = evaluate(log, t, ["dm"], reward_model=ConstantModel(q), folds=1)
    assert dm.value == pytest.approx((0.5 * q[0, 0] + 0.5 * q[1, 0] + q[1, 1] + q[1, 0] + q[0, 1]) / 4)


def test_target_shape_checked():
    log, _, _ = _tiny()
    with pytest.raises(DataError, match="shape"):
        evaluate(log, Target(np.ones(3), None), ["ips"])
    with pytest.raises(DataError, match="unknown OPE estimator 'ipss'; did you mean 'ips'"):
        evaluate(log, Target(np.ones(4), None), ["ipss"])


def test_context_reward_model_in_evaluate():
    rng = np.random.default_rng(8)
    k, n_items = 2, 4
    p0 = np.full((k, n_items), 0.25)
    pe = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    log, table, truth = simulate(rng, 3000, p0, np.array([.1, .3, .5, .7]), np.array([1.0, .5]), pe)
    log.context["context_x"] = rng.normal(size=len(log))  # pure noise feature
    target = target_from_table(log, table)
    # the points only: few refit-bootstrap draws (a context model refits per draw, 0.1 s each)
    plain = {r.estimator: r.value for r in evaluate(log, target, ["dm", "dr"], model_bootstrap=20)}
    ctx = {r.estimator: r.value for r in evaluate(log, target, ["dm", "dr"], model_bootstrap=20,
                                                  reward_model=LogisticRewardModel(context=["context_x"]))}
    # a noise feature barely moves the fit: DM within 0.005, DR (weights dominate) within 0.002
    assert ctx["dm"] == pytest.approx(plain["dm"], abs=0.005)
    assert ctx["dr"] == pytest.approx(plain["dr"], abs=0.002)


def test_target_never_shows_logged_items():
    """No common support: the value is unidentified, an error (issue 14 item 3), never IPS 0 / SNIPS NaN."""
    import warnings

    log, _, _ = _tiny()
    target = Target(np.zeros(4), None)
    for kwargs in ({}, {"bootstrap": 50}):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(DataError, match="no common support.*not identified"):
                evaluate(log, target, ["ips", "snips"], **kwargs)
