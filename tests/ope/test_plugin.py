"""The scenario estimator ``ope`` on synthetic WorldEvents."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from counterfeed.core.contracts import Batch, Items, Log, WorldEvents
from counterfeed.core.estimation import AnalysisData, PolicySpec
from counterfeed.core.randomness import Keys
from counterfeed.core.scoring import score_estimates
from counterfeed.core.truth import policy_value_truth
from counterfeed.errors import DataError
from counterfeed.plugins.estimators.ope import OffPolicy
from counterfeed.plugins.recommenders._slates import make_slates, uniform_slates

N_ITEMS, K = 6, 2
THETA = np.linspace(0.05, 0.5, N_ITEMS)
PB = np.array([1.0, 0.6])


def _world(name, users, arms_of_user, slates_for, arms):
    """One session per user; clicks ~ Bernoulli(THETA[item] * PB[pos]) keyed by (user, position)."""
    items, props = slates_for(users)
    u = Keys(9).stream("choice").uniform(users[:, None], 0, np.arange(K)[None, :])
    clicks = u < THETA[items] * PB
    n = users.size
    log = Log(user=np.repeat(users, K), session=np.zeros(n * K, np.int64), time=np.full(n * K, 1.0),
              position=np.tile(np.arange(K), n), item=items.ravel(), click=clicks.ravel(),
              dwell=np.zeros(n * K), propensity=props.ravel(), arm=np.repeat(arms_of_user, K))
    sessions = {"user": users, "session": np.zeros(n, np.int64), "time": np.ones(n), "arm": arms_of_user,
                "impressions": np.full(n, K), "clicks": clicks.sum(axis=1), "dwell": np.zeros(n),
                "churned": np.zeros(n, bool)}
    return WorldEvents(name, n, sessions, log, 0.0, 2.0, arms, arms_of_user)


def _uniform(users):
    b = Batch(users, np.zeros(users.size, np.int64), 1.0, K, Keys(9).stream("policy:control"))
    s = uniform_slates(b, N_ITEMS)
    return s.items, s.propensities


def _fixed(users):
    b = Batch(users, np.zeros(users.size, np.int64), 1.0, K, Keys(9).stream("policy:treatment"))
    s = make_slates(b, np.arange(N_ITEMS, dtype=float), "none")
    return np.array(s.items), s.propensities


def _data(n_users=6000):
    """The A/B world's declared inputs, and every world's events (for the truth stage)."""
    arms = ["control", "treatment"]
    users = np.arange(n_users, dtype=np.int64)
    assign = (users % 2).astype(np.int64)
    ab_items_c, ab_props_c = _uniform(users)
    ab_items_t, ab_props_t = _fixed(users)
    ab = _world("ab", users, assign, lambda u: (np.where(assign[:, None] == 0, ab_items_c, ab_items_t),
                                                np.where(assign[:, None] == 0, ab_props_c, ab_props_t)), arms)
    all_t = _world("all-treatment", users, np.ones(n_users, np.int64), _fixed, arms)
    all_c = _world("all-control", users, np.zeros(n_users, np.int64), _uniform, arms)
    items = Items(vectors=np.zeros((N_ITEMS, 1)), quality=np.zeros(N_ITEMS), topic=np.zeros(N_ITEMS, np.int64),
                  n_topics=1, arrival=np.zeros(N_ITEMS))
    data = AnalysisData(outcomes=pd.DataFrame({"user": users}), arms=arms, control="control", metrics={},
                        level=0.95, seed=9, events=ab, items=items, slate_size=K,
                        policies={"control": PolicySpec("random"), "treatment": PolicySpec("test-fixed")})
    return data, {"ab": ab, "all-treatment": all_t, "all-control": all_c}


def _scored(estimates, data, worlds):
    """Score as the runner does: the truth stage's policy values, then the scoring stage."""
    score_estimates(estimates, policy_value_truth(worlds, data.arms, data.control, data.start))
    return estimates


def test_estimates_scored_against_truth(registry):
    data, worlds = _data()
    ests = _scored(OffPolicy({"estimators": ["ips", "snips", "dr"]}).estimate(data), data, worlds)
    truth = float(np.mean(worlds["all-treatment"].impressions.click))
    assert [e.estimator for e in ests] == ["ope:ips", "ope:snips", "ope:dr"]
    for e in ests:
        assert (e.arm, e.control, e.metric, e.estimand) == ("treatment", "control", "ctr-per-impression",
                                                             "policy-value")
        assert e.truth == pytest.approx(truth)
        assert e.error == pytest.approx(e.point - truth)
        # 3000 control sessions x 2 positions, weights 6: se ~ 0.013; 3.5 se band (fixed seed)
        assert abs(e.point - truth) < 3.5 * e.diagnostics["se"], (e.estimator, e.point, truth)
        assert e.diagnostics["n_rounds"] == 3000 and e.diagnostics["max_weight"] == pytest.approx(6.0)
        assert e.diagnostics["logging_value"] == pytest.approx(
            float(np.mean(data.events.impressions.click[data.events.impressions.arm == 0])))


def test_level_option_and_missing_truth(registry):
    data, worlds = _data(n_users=400)
    del worlds["all-treatment"]
    (e,) = _scored(OffPolicy({"estimators": ["snips"], "level": 0.8}).estimate(data), data, worlds)
    assert e.level == 0.8 and e.truth is None and e.covered is None


def test_metrics_option(registry):
    data, _ = _data(n_users=40)
    assert OffPolicy({"metrics": ["clicks"]}).estimate(data) == []
    assert len(OffPolicy({"metrics": ["ctr-per-impression"], "estimators": ["ips"]}).estimate(data)) == 1


def test_errors(registry):
    data, _ = _data(n_users=40)
    data.policies.pop("treatment")
    with pytest.raises(DataError, match="no recommender spec for arm 'treatment'"):
        OffPolicy().estimate(data)
    data, _ = _data(n_users=40)
    data.events.impressions = None
    with pytest.raises(DataError, match="needs the A/B world's impression log"):
        OffPolicy().estimate(data)


def test_registers_through_the_hook():
    from counterfeed.core.plugins import Registry

    reg = Registry(load_entry_points=False, builtins=("counterfeed.plugins.estimators.ope",))
    est = reg.create("estimator", "ope", {"estimators": ["dr", "sndr"], "clip": 20})
    assert isinstance(est, OffPolicy) and est.options.clip == 20
