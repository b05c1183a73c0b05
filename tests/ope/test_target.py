"""Target probabilities from a recommender plugin and from tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from counterfeed.core.contracts import Batch
from counterfeed.core.randomness import Keys
from counterfeed.errors import DataError, PluginError, ScenarioError
from counterfeed.ope import evaluate, from_arrays, load_target, target_from_recommender, target_from_table
from counterfeed.plugins.recommenders._slates import slate_propensities, uniform_slates


def uniform_log(n_rounds=3000, n_items=8, k=3, seed=0):
    """Uniform random slates (marginal propensity 1/n_items), clicks ~ Bernoulli(theta[item] * pb[pos])."""
    users = np.arange(n_rounds, dtype=np.int64)
    batch = Batch(users=users, sessions=np.zeros(n_rounds, np.int64), time=0.0, slate_size=k,
                  stream=Keys(seed).stream("policy:logging"))
    sl = uniform_slates(batch, n_items)
    theta = np.linspace(0.05, 0.6, n_items)
    pb = np.array([1.0, 0.7, 0.4])[:k]
    clicks = Keys(seed).stream("choice").uniform(users[:, None], 0, np.arange(k)[None, :]) < theta[sl.items] * pb
    log = from_arrays(round=np.repeat(users, k), item=sl.items.ravel(), position=np.tile(np.arange(k), n_rounds),
                      reward=clicks.ravel().astype(float), propensity=sl.propensities.ravel(),
                      user=np.repeat(users, k), session=np.zeros(n_rounds * k, np.int64))
    return log, theta, pb


def test_deterministic_recommender(registry):
    log, theta, pb = uniform_log()
    t = target_from_recommender(log, "test-fixed", {}, seed=1)
    top = np.array([7, 6, 5])  # descending ids
    np.testing.assert_array_equal(t.prob, (log.item == top[log.position]).astype(float))
    assert t.support is not None and np.all(t.support.weight == 1.0)
    truth = float(np.mean(theta[top] * pb))
    res = {r.estimator: r for r in evaluate(log, t, ["ips", "snips", "dr", "dm"])}
    for name in ("ips", "snips", "dr"):
        # 9000 impressions; the intervals are ~ +-0.03 wide, truth must be inside the 99.9% band
        r = res[name]
        assert abs(r.value - truth) < 3.3 * r.se, (name, r.value, truth, r.se)
    assert res["dr"].diagnostics["max_weight"] == pytest.approx(8.0)
    rev = target_from_recommender(log, "test-fixed", {"reverse": True}, seed=1)
    np.testing.assert_array_equal(rev.prob, (log.item == np.array([0, 1, 2])[log.position]).astype(float))


def test_stochastic_recommender_with_propensities(registry):
    log, theta, pb = uniform_log(n_rounds=500)
    t = target_from_recommender(log, "test-epsilon", {"epsilon": 0.3}, seed=2, dm_samples=4)
    # recompute independently: fit = click counts with tie-break, scores shared by every round
    scores = np.bincount(log.item, log.reward, minlength=8) - 1e-6 * np.arange(8)
    items = np.full((log.n_rounds, 3), 0, np.int64)
    items[log.round, log.position] = log.item
    users, sessions = log.users_sessions()
    batch = Batch(users, sessions, 0.0, 3, Keys(2).stream("policy:target"))
    expect = slate_propensities(batch, scores, "epsilon", items, epsilon=0.3)[log.round, log.position]
    np.testing.assert_allclose(t.prob, expect)
    # 1 - eps, eps / (8 - 3), or 0 for a greedy item logged at another position
    assert set(np.round(np.unique(t.prob), 6).tolist()) == {0.0, 0.7, 0.06}
    # Monte Carlo support: 4 slates per impression, weights 1/4
    np.testing.assert_allclose(np.bincount(t.support.unit, t.support.weight), 1.0)
    (dr,) = evaluate(log, t, ["dr"])
    assert np.isfinite(dr.value)


def test_recommender_errors(registry):
    log, _, _ = uniform_log(n_rounds=20)
    with pytest.raises(PluginError, match="test-noprops.*stochastic and does not implement action_probabilities"):
        target_from_recommender(log, "test-noprops")
    with pytest.raises(ScenarioError, match="unknown recommender 'test-fixd'; did you mean 'test-fixed'"):
        target_from_recommender(log, "test-fixd")
    with pytest.raises(ScenarioError, match="reverse"):
        target_from_recommender(log, "test-fixed", {"reverse": "maybe"})
    strings = from_arrays(round=[1, 1], item=["a", "b"], position=[0, 1], reward=[0, 1], propensity=[1, 1])
    with pytest.raises(DataError, match="non-negative integer ids"):
        target_from_recommender(strings, "test-fixed")


BAD_TABLES = [
    (pd.DataFrame({"item": [0], "prob": [1.0]}), r"target\.csv: missing column 'position'"),
    (pd.DataFrame({"item": [0], "position": [0], "prob": [1.5]}), r"column 'prob' row 1: probability 1\.5 is outside \[0, 1\]"),
    (pd.DataFrame({"item": [0, 0], "position": [0, 0], "prob": [.5, .5]}), r"row 2: duplicated \(position, item\)"),
    (pd.DataFrame({"item": [0], "position": [-1], "prob": [1.0]}), r"column 'position' row 1: position -1 is negative"),
    (pd.DataFrame({"item": [0], "position": [0], "prob": [np.nan]}), r"column 'prob' row 1: missing value"),
]


@pytest.mark.parametrize("df,pattern", BAD_TABLES)
def test_bad_target_tables(tmp_path, df, pattern):
    log, _, _ = uniform_log(n_rounds=10)
    path = tmp_path / "target.csv"
    df.to_csv(path, index=False)
    with pytest.raises(DataError, match=pattern):
        load_target(str(path), log)


def test_simulator_rounds_in_target_table():
    log = from_arrays(round=[(3 << 32) + 1, (3 << 32) + 1], item=[4, 5], position=[0, 1], reward=[1, 0],
                      propensity=[0.5, 0.5])
    t = target_from_table(log, pd.DataFrame({"user": [3, 3], "session": [1, 1], "position": [0, 1],
                                             "item": [4, 9], "prob": [1.0, 1.0]}))
    np.testing.assert_array_equal(t.prob, [1.0, 0.0])
    assert t.support is not None and list(t.support.item_code) == [0, -1]  # item 9 never logged
