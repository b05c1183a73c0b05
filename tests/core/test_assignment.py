"""The assignment component: the interface a world is handed, and its built-in implementations."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterfeed.core.contracts import CatalogContext
from counterfeed.core.experiment import (Assignment, FixedAssignment, everyone_on, split_assignment,
                                         world_assignment)
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.runner import WorldTask, resolve, simulate_world
from counterfeed.core.simulation import SimWorld, WorldConfig
from tests.conftest import small_scenario


@settings(max_examples=25, deadline=None, derandomize=True)
@given(n=st.integers(2, 400), shares=st.lists(st.integers(1, 9), min_size=2, max_size=4),
       seed=st.integers(0, 2**31), salt=st.text("abc", min_size=1, max_size=4))
def test_a_randomized_split_records_its_probabilities_and_is_deterministic(n, shares, seed, salt):
    arms = ["control"] + [f"a{i}" for i in range(1, len(shares))]
    split = {a: s / sum(shares) for a, s in zip(arms, shares)}
    sc = small_scenario(**{"population.users": n, "seed": seed, "experiment.salt": salt,
                           "experiment.arms": {a: {"recommender": "random"} for a in arms},
                           "experiment.split": split})
    a, b = split_assignment(sc), split_assignment(sc)
    assert np.array_equal(a.assignment(), b.assignment())
    assert np.array_equal(a.assignment(), world_assignment(sc, "ab"))
    p = a.probabilities()
    assert p.shape == (n, len(arms))
    np.testing.assert_allclose(p, np.broadcast_to([split[x] for x in arms], (n, len(arms))))
    assert a.compliance() is None and a.boundaries(0.0, 1.0) == []


def test_a_counterfactual_world_puts_everyone_on_one_arm_with_probability_one():
    cf = everyone_on(["c", "t", "u"], "t", 5)
    assert cf.assignment().tolist() == [1] * 5
    assert cf.probabilities().tolist() == [[0.0, 1.0, 0.0]] * 5
    with pytest.raises(ValueError, match=r"shape \(5, 3\)"):
        FixedAssignment(["c", "t", "u"], np.zeros(5, np.int64), np.ones((4, 3)) / 3)


class Rollout(Assignment):
    """Test only: everyone starts on control; at ``at`` the users of the most active half switch to
    the treatment (a staggered rollout on an observed covariate), users with no arm yet are drawn
    by their activity at their first visit."""

    def __init__(self, arms, at, defer=False):
        super().__init__(arms)
        self.at, self.defer = at, defer

    def start(self, world, t):
        self.activity = world.population.activity
        self.n = world.n
        return np.full(world.n, -1 if self.defer else 0, dtype=np.int64)

    def assign(self, world, users, t):
        return (self.activity[users] > np.median(self.activity)).astype(np.int64)

    def boundaries(self, start, horizon):
        return [self.at]

    def at_boundary(self, world, t):
        return (self.activity > np.median(self.activity)).astype(np.int64)

    def assignment(self):
        return (self.activity > np.median(self.activity)).astype(np.int64)

    def probabilities(self):
        return np.eye(2)[self.assignment()]


@pytest.fixture(scope="module")
def parts():
    sc = small_scenario(**{"population.users": 200,
                           "population.segments": {"a": {"share": 0.5, "activity": 2.0}, "b": {"share": 0.5}}})
    plan = resolve(sc)
    keys = Keys(sc.seed)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=8))
    return plan, keys, items, build_population(sc.population, keys)


def _world(parts, assignment, pre=0.5, window=0.3):
    plan, keys, items, pop = parts
    cfg = WorldConfig(name="ab", arms=["control", "treatment"], control=0, assignment=None, pre_period=pre,
                      duration=2.0, batch_window=window, retrain_every=0.5, slate_size=4)
    return SimWorld(cfg, items, pop, keys, plan.user_model(), plan.recommender, assignment)


@pytest.mark.parametrize("at", [1.5, 1.4])  # a window end, and inside a window (window 0.3 d)
def test_an_assignment_boundary_applies_from_its_time_on_even_inside_a_serving_window(parts, at):
    world = _world(parts, Rollout(["control", "treatment"], at))
    s = world.run().sessions
    high = parts[3].activity > np.median(parts[3].activity)
    before, after = s["time"] < at, s["time"] >= at
    # a request made before the boundary is served by the assignment in force when it was made
    assert np.all(s["arm"][before] == 0)
    assert np.array_equal(s["arm"][after], high[s["user"][after]].astype(np.int16))
    assert (s["arm"][after] == 1).any() and (s["arm"][after] == 0).any()


def test_users_left_unassigned_get_their_arm_at_their_first_experiment_visit(parts):
    world = _world(parts, Rollout(["control", "treatment"], at=10.0, defer=True))
    events = world.run()
    s = events.sessions
    high = parts[3].activity > np.median(parts[3].activity)
    exp = s["time"] >= 0.5
    assert np.all(s["arm"][~exp] == 0)  # the pre-period is served by the control arm
    assert np.array_equal(s["arm"][exp], high[s["user"][exp]].astype(np.int16))
    assert world.served.tolist() == [int(h) if u in set(s["user"][exp].tolist()) else -1
                                     for u, h in enumerate(high)]
    assert set(world.policies) == {0, 1}  # both arms set up and fitted at the start
    with pytest.raises(ValueError):
        world.served[0] = 1  # a read-only view


def test_the_run_exposes_each_worlds_assignment_probabilities():
    sc = small_scenario(**{"experiment.allocation": {"method": "thompson", "metric": "clicks",
                                                     "update_every": "1d"}})
    plan = resolve(sc)
    keys = Keys(sc.seed)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=8))
    pop = build_population(sc.population, keys)
    ab = simulate_world(WorldTask(sc, "ab", items, pop))
    assert ab.probabilities.shape == (pop.n, 2)
    np.testing.assert_allclose(ab.probabilities.sum(axis=1), 1.0)
    own = ab.probabilities[np.arange(pop.n), ab.events.assignment]
    np.testing.assert_array_equal(own, ab.outcomes["assignment_probability"].to_numpy())
    cf = simulate_world(WorldTask(sc, "all-treatment", items, pop))
    assert cf.probabilities.tolist() == [[0.0, 1.0]] * pop.n
