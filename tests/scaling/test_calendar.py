"""The visit calendar: visits land in the window that contains them, a window is served in user-id
order whatever order its visits were registered in, and visits at or after the horizon are dropped."""

from __future__ import annotations

import numpy as np

from counterfeed.core.contracts import CatalogContext
from counterfeed.core.plan import resolve
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.scenario import Scenario
from counterfeed.core.simulation import SimWorld, WorldConfig


def _world(users: int = 50) -> SimWorld:
    sc = Scenario.from_dict({
        "name": "cal", "seed": 3, "population": {"users": users, "dimensions": 4},
        "catalog": {"plugin": "synthetic", "items": 30, "topics": 3},
        "experiment": {"arms": {"a": {"recommender": "popularity"}, "b": {"recommender": "popularity"}},
                       "duration": "2d", "batch_window": "1h", "retrain_every": None, "slate_size": 3}})
    plan = resolve(sc)
    keys = Keys(sc.seed)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=4))
    cfg = WorldConfig(name="all-a", arms=sc.arms, control=0, assignment=np.zeros(users, np.int64),
                      pre_period=0.0, duration=2.0, batch_window=1 / 24, retrain_every=None, slate_size=3)
    return SimWorld(cfg, items, build_population(sc.population, keys), keys, plan.user_model(), plan.recommender)


def test_a_window_is_served_in_user_id_order_whatever_the_registration_order():
    w = _world()
    rng = np.random.default_rng(0)
    users = rng.permutation(50)
    times = rng.uniform(0, 3 / 24, 50)          # three windows
    w.request(users[:20], times[:20])
    w.request(users[20:], times[20:])
    w.request(np.array([7]), np.array([5.0]))  # at the horizon (2 days + 0 pre-period): dropped
    seen = []
    for k in (1, 2, 3):
        u, t = w._due(k)
        assert np.all(np.diff(u) > 0)             # user-id order
        assert np.all((t >= (k - 1) / 24) & (t < k / 24))  # the window that contains each visit
        assert dict(zip(users.tolist(), times.tolist())) | dict(zip(u.tolist(), t.tolist())) \
            == dict(zip(users.tolist(), times.tolist()))
        seen += u.tolist()
    assert sorted(seen) == list(range(50)) and w._due(4) is None and not w._calendar.any()  # nothing pending


def test_a_world_does_not_depend_on_the_order_its_visits_are_registered_in():
    a, b = _world(), _world()
    ea = a.run()
    original = b.request
    b.request = lambda users, times: original(np.asarray(users)[::-1], np.asarray(times)[::-1])
    eb = b.run()
    assert ea.sessions["user"].size >= 90  # 50 users, 2 days, about one visit a day
    for col in ea.sessions:
        assert np.array_equal(ea.sessions[col], eb.sessions[col]), col
