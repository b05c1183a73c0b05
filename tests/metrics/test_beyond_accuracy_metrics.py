"""Long-term metrics against hand-computed values on a tiny fixed log, and their properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterfeed.core.contracts import Items, Log, WorldEvents
from counterfeed.plugins.metrics import beyond_accuracy as ba
from counterfeed.plugins.metrics import exposure as ex

# items: topics 0 0 1 2 2, unit vectors, quality ln 2 for item 2 (appeal 2, the others 1)
ITEMS = Items(vectors=np.array([[1.0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]]),
              quality=np.array([0, 0, math.log(2), 0, 0]), topic=np.array([0, 0, 1, 2, 2]), n_topics=3,
              arrival=np.zeros(5))
# (user, session, time, [items], [clicks]); user 2 never visits
SLATES = [(0, 0, 0.5, [0, 1], [1, 0]), (1, 0, 0.5, [0, 2], [1, 1]),
          (0, 1, 1.5, [2, 3], [0, 1]), (0, 2, 1.7, [1, 2], [1, 0])]


def tiny_events() -> WorldEvents:
    cols: dict[str, list] = {k: [] for k in ("user", "session", "time", "position", "item", "click")}
    for u, s, t, items, clicks in SLATES:
        for j, (i, c) in enumerate(zip(items, clicks)):
            for k, v in zip(cols, (u, s, t, j, i, c)):
                cols[k].append(v)
    n = len(cols["user"])
    log = Log(user=np.array(cols["user"]), session=np.array(cols["session"]), time=np.array(cols["time"]),
              position=np.array(cols["position"]), item=np.array(cols["item"]),
              click=np.array(cols["click"], bool), dwell=np.zeros(n), propensity=np.ones(n))
    sessions = {"user": np.array([0, 1, 0, 0]), "session": np.array([0, 0, 1, 2]),
                "time": np.array([0.5, 0.5, 1.5, 1.7]), "arm": np.array([0, 1, 0, 0]),
                "impressions": np.full(4, 2), "clicks": np.array([1, 2, 1, 1]), "dwell": np.zeros(4),
                "churned": np.zeros(4, bool)}
    return WorldEvents("ab", 3, sessions, log, 0.0, 2.0, ["a", "b"], np.array([0, 1, 0]), items=ITEMS)


def per_user(cls) -> np.ndarray:
    return cls().compute(tiny_events(), 0.0, 2.0)


def test_diversity_hand_computed():
    # user 0: slates of topics (0,0), (1,2), (0,1) -> ILD 0, 1, 1; user 1: (0,1) -> 1; user 2: none
    np.testing.assert_allclose(per_user(ba.Diversity), [2 / 3, 1.0, np.nan])
    # vectors: (e0, e1) identical -> 0; (e2, e3) and (e1, e2) orthogonal -> 1
    np.testing.assert_allclose(per_user(ba.DiversityEmbedding), [2 / 3, 1.0, np.nan])


def test_novelty_unexpectedness_hand_computed():
    # clickers U = 2; item 0 clicked by both (log2(2/2) = 0), items 1, 2, 3 by one (1 bit)
    np.testing.assert_allclose(per_user(ba.Novelty), [2 / 3, 1 / 2, np.nan])
    # user 0 clicks topics 0, 2, 0: (2 distinct - 1) / (3 clicks - 1); user 1 topics 0, 1: 1 / 1
    np.testing.assert_allclose(per_user(ba.Unexpectedness), [1 / 2, 1.0, np.nan])


def test_calibration_and_drift_hand_computed():
    # user 0: clicked topic mix p = (2/3, 0, 1/3); shown q = (3/6, 2/6, 1/6); q~ = .99 q + .01 p
    q0, q2 = 0.99 * 0.5 + 0.01 * 2 / 3, 0.99 / 6 + 0.01 / 3
    kl0 = 2 / 3 * math.log((2 / 3) / q0) + 1 / 3 * math.log((1 / 3) / q2)
    # user 1: clicked and shown mixes are both (1/2, 1/2, 0): perfectly calibrated
    np.testing.assert_allclose(per_user(ba.CalibrationKL), [kl0, 0.0, np.nan], atol=1e-12)
    # user 0: first half [0, 1) clicks topic 0; second half topics 2 and 0: TV((1,0,0), (.5,0,.5)) = .5
    np.testing.assert_allclose(per_user(ba.TasteDrift), [0.5, np.nan, np.nan])


def test_population_metrics_hand_computed():
    ev, everyone = tiny_events(), np.ones(3, bool)
    # exposure of items 0..4: 2, 2, 3, 1, 0 (8 impressions)
    assert ex.Coverage().compute_group(ev, 0, 2, everyone) == pytest.approx(4 / 5)
    # sorted (0, 1, 2, 2, 3): sum (2i - 6) x_(i) = -2 + 4 + 12 = 14; G = 14 / (5 * 8)
    assert ex.ExposureGini().compute_group(ev, 0, 2, everyone) == pytest.approx(0.35)
    h = -(2 * 0.25 * math.log2(0.25) + 0.375 * math.log2(0.375) + 0.125 * math.log2(0.125))
    assert ex.ExposureEntropy().compute_group(ev, 0, 2, everyone) == pytest.approx(h)
    # head = 1 item (item 2): exposure share 3/8, appeal share 2/6
    assert ex.PopularityLift().compute_group(ev, 0, 2, everyone) == pytest.approx((3 / 8) / (2 / 6))
    # topics: exposure (4/8, 3/8, 1/8) vs catalog (2/5, 1/5, 2/5)
    assert ex.ProviderFairnessGap().compute_group(ev, 0, 2, everyone) == pytest.approx(0.5 * (0.1 + 0.175 + 0.275))
    # consumed sets {0, 1, 3} and {0, 2}: cosine 1 / sqrt(3 * 2)
    assert ex.Homogenization().compute_group(ev, 0, 2, everyone) == pytest.approx(1 / math.sqrt(6))
    # arm group a (users 0 and 2): one consumer -> undefined; its coverage is items 0-3
    group_a = np.array([True, False, True])
    assert math.isnan(ex.Homogenization().compute_group(ev, 0, 2, group_a))
    assert ex.Coverage().compute_group(ev, 0, 2, group_a) == pytest.approx(4 / 5)
    g = ex.group_exposure(ev, 0, 2, everyone)
    np.testing.assert_allclose(g["exposure"], [0.5, 0.375, 0.125])
    np.testing.assert_allclose(g["per_item"], [1.25, 1.875, 0.3125])


def test_ratio_parts_are_consistent():
    ev = tiny_events()
    np.testing.assert_allclose(ba.PARTS[0]().compute(ev, 0, 2), [3, 1, 0])  # slates
    for cls in (ba.Diversity, ba.Novelty, ba.Unexpectedness, ba.CalibrationKL, ba.TasteDrift):
        m = cls()
        num = ba._BY_NAME[m.numerator]().compute(ev, 0, 2)
        den = ba._BY_NAME[m.denominator]().compute(ev, 0, 2)
        v = m.compute(ev, 0, 2)
        np.testing.assert_allclose(v[den > 0], num[den > 0] / den[den > 0])
        assert np.isnan(v[den == 0]).all() and (num[den == 0] == 0).all()


# -- properties ---------------------------------------------------------------------------------

slates = st.integers(1, 6).flatmap(lambda k: st.lists(st.integers(0, 4), min_size=k, max_size=k))


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 8), st.integers(0, 3), st.integers(1, 5))
def test_diversity_of_identical_items_is_zero(k, topic, n_slates):
    slate = np.repeat(np.arange(n_slates), k)
    assert np.all(ba.slate_ild_topic(slate, np.full(slate.size, topic), n_slates, 4) == 0)
    unit = np.tile([[0.6, 0.8]], (slate.size, 1))
    np.testing.assert_allclose(ba.slate_ild_vectors(slate, unit, n_slates), 0.0, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=8, unique=True))
def test_diversity_of_distinct_topics_is_one_and_vectors_match_brute_force(topics):
    k = len(topics)
    slate = np.zeros(k, np.int64)
    assert ba.slate_ild_topic(slate, np.array(topics), 1, 6)[0] == pytest.approx(1.0)
    rng = np.random.default_rng(k)
    v = rng.normal(size=(k, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    brute = np.mean([1 - v[i] @ v[j] for i in range(k) for j in range(i + 1, k)])
    assert ba.slate_ild_vectors(slate, v, 1)[0] == pytest.approx(brute)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 50), st.floats(0.1, 100))
def test_gini_of_uniform_exposure_is_zero(n, level):
    assert ex.gini(np.full(n, level)) == pytest.approx(0.0, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), min_size=2, max_size=30).filter(lambda x: sum(x) > 0))
def test_gini_bounds_and_concentration(x):
    n = len(x)
    g = ex.gini(np.array(x))
    assert -1e-12 <= g <= 1 - 1 / n + 1e-12
    one = np.zeros(n)
    one[0] = 5
    assert ex.gini(one) == pytest.approx(1 - 1 / n)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sets(st.integers(0, 9), min_size=1, max_size=6), min_size=2, max_size=7))
def test_homogenization_matches_brute_force(sets):
    users = np.concatenate([np.full(len(s), u) for u, s in enumerate(sets)])
    items = np.concatenate([sorted(s) for s in sets])
    pairs = [len(a & b) / math.sqrt(len(a) * len(b)) for i, a in enumerate(sets) for b in sets[i + 1:]]
    assert ex.homogenization(users, items, 10) == pytest.approx(np.mean(pairs))
    same = np.repeat(np.arange(len(sets)), 3)
    assert ex.homogenization(same, np.tile([1, 4, 7], len(sets)), 10) == pytest.approx(1.0)
    assert ex.homogenization(np.arange(len(sets)), np.arange(len(sets)), 10) == pytest.approx(0.0)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_per_user_metric_ranges(seed):
    from counterfeed.testing.fixtures import make_world_events

    ev = make_world_events(seed=seed % 1000)
    kl = ba.CalibrationKL().compute(ev, 0, 10)
    assert (kl[np.isfinite(kl)] >= -1e-12).all()
    for cls in (ba.Diversity, ba.Unexpectedness, ba.TasteDrift):
        v = cls().compute(ev, 0, 10)
        assert ((v[np.isfinite(v)] >= -1e-12) & (v[np.isfinite(v)] <= 1 + 1e-12)).all()
    assert (ba.Novelty().compute(ev, 0, 10)[np.isfinite(ba.Novelty().compute(ev, 0, 10))] >= 0).all()
    e = ex.ExposureEntropy().compute_group(ev, 0, 10, np.ones(ev.n_users, bool))
    assert 0 <= e <= math.log2(ev.items.n) + 1e-9


def test_calibration_is_zero_when_clicks_mirror_the_slates():
    ev = tiny_events()
    log = ev.impressions
    mirrored = Log(**{**vars(log), "click": np.ones(len(log), bool)})
    ev2 = WorldEvents("ab", 3, ev.sessions, mirrored, 0, 2, ev.arms, ev.assignment, items=ITEMS)
    kl = ba.CalibrationKL().compute(ev2, 0, 2)
    np.testing.assert_allclose(kl[:2], 0.0, atol=1e-12)


def test_uniform_exposure_entropy_and_zero_gap():
    from counterfeed.core.contracts import Log as L

    n = 6
    items = Items(vectors=np.eye(n), quality=np.zeros(n), topic=np.arange(n) % 3, n_topics=3, arrival=np.zeros(n))
    log = L(user=np.repeat(np.arange(n), n), session=np.zeros(n * n, np.int64), time=np.full(n * n, 0.5),
            position=np.tile(np.arange(n), n), item=np.tile(np.arange(n), n), click=np.zeros(n * n, bool),
            dwell=np.zeros(n * n), propensity=np.ones(n * n))
    ev = WorldEvents("all-a", n, {}, log, 0, 1, ["a"], np.zeros(n, np.int64), items=items)
    everyone = np.ones(n, bool)
    assert ex.ExposureEntropy().compute_group(ev, 0, 1, everyone) == pytest.approx(math.log2(n))
    assert ex.ExposureGini().compute_group(ev, 0, 1, everyone) == pytest.approx(0.0)
    assert ex.ProviderFairnessGap().compute_group(ev, 0, 1, everyone) == pytest.approx(0.0)
    assert ex.PopularityLift().compute_group(ev, 0, 1, everyone) == pytest.approx(1.0)
    assert ex.Coverage().compute_group(ev, 0, 1, everyone) == pytest.approx(1.0)


def test_homogenization_is_the_mean_over_windows_and_growth_their_difference():
    ev, everyone = tiny_events(), np.ones(3, bool)
    # window [0, 1): users 0 and 1 both consumed item 0 (and user 1 item 2): cosine 1 / sqrt(2)
    # window [1, 2): only user 0 consumes: undefined, skipped
    assert ex.Homogenization(window=1.0).compute_group(ev, 0, 2, everyone) == pytest.approx(1 / math.sqrt(2))
    assert ex.Homogenization(window=7.0).compute_group(ev, 0, 2, everyone) == pytest.approx(1 / math.sqrt(6))
    assert math.isnan(ex.HomogenizationGrowth(window=1.0).compute_group(ev, 0, 2, everyone))
    from counterfeed.testing.fixtures import make_world_events

    ev = make_world_events(n_users=60, seed=3)
    h = ex.Homogenization(window=2.5)
    parts = [ex.Homogenization(window=10).compute_group(ev, lo, lo + 2.5, np.ones(60, bool))
             for lo in (0, 2.5, 5, 7.5)]
    assert h.compute_group(ev, 0, 10, np.ones(60, bool)) == pytest.approx(np.mean(parts))
    g = ex.HomogenizationGrowth(window=2.5).compute_group(ev, 0, 10, np.ones(60, bool))
    assert g == pytest.approx(parts[-1] - parts[0])
