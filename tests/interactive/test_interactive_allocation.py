"""Adaptive allocation (Thompson sampling) and the adaptive-ipw estimator."""

import copy

import numpy as np
import pytest

from counterfeed.core.allocation import thompson_probabilities
from counterfeed.core.randomness import Keys
from counterfeed.core.runner import resolve, run
from counterfeed.core.scenario import Scenario
from counterfeed.errors import ScenarioError
from counterfeed.plugins.estimators.adaptive import ipw_difference
from tests.conftest import SMALL


def _adaptive(**alloc):
    d = copy.deepcopy(SMALL)
    d["experiment"]["arms"] = {"control": {"recommender": "random"}, "treatment": {"recommender": "popularity"}}
    d["experiment"]["allocation"] = {"metric": "clicks", "update_every": "6h", "floor": 0.1, **alloc}
    d["metrics"] = ["clicks", "sessions", "ctr"]
    d["analysis"] = [{"estimator": "diff-in-means", "metrics": ["clicks"]},
                     {"estimator": "adaptive-ipw", "metrics": ["clicks", "ctr"]}]
    return d


def test_thompson_probabilities_respect_the_floor_and_favour_the_better_arm():
    rng = np.random.default_rng(0)
    p = thompson_probabilities(np.array([1.0, 1.5, 0.2]), np.array([0.1, 0.1, 0.1]), rng, 4000, 0.05)
    assert p.sum() == pytest.approx(1.0)
    assert p.min() >= 0.05 and p.argmax() == 1
    even = thompson_probabilities(np.array([1.0, 1.0]), np.array([0.5, 0.5]), rng, 20_000, 0.1)
    # P(best) = 0.5 each; Monte Carlo sd with 20,000 draws is 0.0035
    assert even == pytest.approx([0.5, 0.5], abs=0.02)
    low = thompson_probabilities(np.array([1.0, 2.0]), np.array([0.01, 0.01]), rng, 1000, 0.1, False)
    assert low == pytest.approx([0.9, 0.1])


def test_adaptive_run_records_probabilities_that_reproduce_the_assignment():
    sc = Scenario.from_dict(_adaptive())
    res = run(sc, write=False, workers=1)
    ab = res.outcomes[res.outcomes.world == "ab"]
    p = ab.assignment_probability.to_numpy()
    assert np.all((p >= 0.1 - 1e-12) & (p <= 0.9 + 1e-12))
    history = res.manifest["allocation"]["history"]
    assert history[0]["probabilities"] == {"control": 0.5, "treatment": 0.5}
    assert len(history) > 4 and any(h["probabilities"]["treatment"] != 0.5 for h in history)
    # each user's arm is the keyed draw against the probabilities recorded for them
    u = Keys(sc.seed).stream(f"assignment:adaptive:{sc.name}").uniform(np.arange(len(ab), dtype=np.int64))
    p_control = np.where(ab.arm == "control", p, 1 - p)
    expected = np.where(u < p_control, "control", "treatment")
    assert (expected == ab.arm.to_numpy()).all()
    # the SRM check expects the recorded probabilities, so adaptive allocation is not flagged
    assert res.srm["expected"]["control"] == pytest.approx(p_control.sum())
    again = run(sc, write=False, workers=1)
    assert np.array_equal(again.outcomes.assignment_probability.to_numpy(na_value=-1),
                          res.outcomes.assignment_probability.to_numpy(na_value=-1))
    est = {(e.estimator, e.metric): e for e in res.estimates if e.estimand == "difference"}
    ipw = est[("adaptive-ipw", "clicks")]
    assert ipw.truth is not None and ipw.diagnostics["max_weight"] <= 10.0 + 1e-9
    assert ipw.diagnostics["naive_point"] == pytest.approx(est[("diff-in-means", "clicks")].point)


@pytest.mark.parametrize("alloc,pattern", [
    ({"metric": "dwell"}, r"experiment\.allocation\.metric: metric 'dwell' is not computed"),
    ({"metric": "ctr"}, r"metric 'ctr' is a ratio"),
])
def test_bad_allocation_metric(alloc, pattern):
    with pytest.raises(ScenarioError, match=pattern):
        resolve(Scenario.from_dict(_adaptive(**alloc)))


@pytest.mark.parametrize("alloc,pattern", [
    ({"floor": 0.6}, r"floor"),
    ({"update_every": "0h"}, r"update_every"),
    ({"method": "ucb"}, r"method"),
])
def test_bad_allocation_spec(alloc, pattern):
    with pytest.raises(ScenarioError, match=pattern):
        Scenario.from_dict(_adaptive(**alloc))


def _synthetic_adaptive(rng, n=2_000, effect=0.5):
    """Users arrive in order; heavy users (high baseline) come first; the probability of treatment
    rises in steps with the running difference (a crude Thompson-like rule)."""
    heavy = np.arange(n) < n * 0.4
    y0 = rng.gamma(2.0, 1.0, n) * np.where(heavy, 3.0, 1.0)
    y1 = y0 + effect * np.where(heavy, 2.0, 1.0) + rng.normal(0, 0.5, n)
    p = np.empty(n)
    arm = np.empty(n, dtype=int)
    p_t = 0.5
    for start in range(0, n, 200):
        idx = np.arange(start, min(start + 200, n))
        p[idx] = p_t
        arm[idx] = rng.random(idx.size) < p_t
        done = np.arange(idx[-1] + 1)
        yt, yc = y1[done][arm[done] == 1], y0[done][arm[done] == 0]
        if yt.size > 2 and yc.size > 2:
            p_t = float(np.clip(0.5 + (yt.mean() - yc.mean()), 0.1, 0.9))
    y = np.where(arm == 1, y1, y0)
    return y, arm, p, float(np.mean(y1 - y0))


def test_ipw_covers_the_truth_under_adaptive_assignment_and_the_naive_difference_is_biased():
    rng = np.random.default_rng(7)
    reps = 300
    covered = 0
    ipw_err, naive_err = [], []
    for _ in range(reps):
        y, arm, p, truth = _synthetic_adaptive(rng)
        tau, phi = ipw_difference(y, None, arm, p, 1 - p, 1, 0)
        se = phi.std(ddof=1) / np.sqrt(phi.size)
        covered += abs(tau - truth) <= 1.96 * se
        ipw_err.append(tau - truth)
        naive_err.append(y[arm == 1].mean() - y[arm == 0].mean() - truth)
    # 300 replications: coverage sd at 0.95 is 0.0126; [0.91, 0.99] is about +-3 sd
    assert 0.91 <= covered / reps <= 0.99
    ipw_err, naive_err = np.array(ipw_err), np.array(naive_err)
    # IPW mean error within 3 standard errors of 0; the naive mean error more than 10 away
    assert abs(ipw_err.mean()) < 3 * ipw_err.std() / np.sqrt(reps)
    assert abs(naive_err.mean()) > 10 * naive_err.std() / np.sqrt(reps)


def test_ipw_with_a_fixed_split_is_horvitz_thompson():
    rng = np.random.default_rng(1)
    y = rng.normal(size=500)
    arm = (rng.random(500) < 0.3).astype(int)
    tau, _ = ipw_difference(y, None, arm, np.full(500, 0.3), np.full(500, 0.7), 1, 0)
    assert tau == pytest.approx(y[arm == 1].sum() / (0.3 * 500) - y[arm == 0].sum() / (0.7 * 500))
    hajek, _ = ipw_difference(y, None, arm, np.full(500, 0.3), np.full(500, 0.7), 1, 0, normalized=True)
    assert hajek == pytest.approx(y[arm == 1].mean() - y[arm == 0].mean())
