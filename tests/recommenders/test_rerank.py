"""Re-rankers: conformance around deterministic bases (exact propensities when they explore),
refusal of randomized bases, and what each re-ranking does on a hand-made candidate list."""

from __future__ import annotations

import numpy as np
import pytest

from counterfeed.core.contracts import Items, Log
from counterfeed.plugins.recommenders.rerank import MMR, Calibrated, PopularityDebiased, ProviderFair
from counterfeed.testing import check_recommender
from counterfeed.testing.fixtures import make_batch, make_context, make_log

RERANKERS = [MMR, Calibrated, PopularityDebiased, ProviderFair]
MF = {"factors": 4, "epochs": 1, "negatives": 1}


@pytest.mark.parametrize("cls", RERANKERS, ids=lambda c: c.name)
@pytest.mark.parametrize("options", [
    {"base": "popularity"},
    {"base": "matrix-factorization", "base_options": MF, "candidates": 20},
    {"base": "popularity", "exploration": "epsilon", "epsilon": 0.3, "candidates": 12},
    {"base": "matrix-factorization", "base_options": MF, "exploration": "softmax", "temperature": 2.0,
     "candidates": 15},
], ids=["popularity", "mf", "epsilon", "mf-softmax"])
def test_conformance(cls, options):
    check_recommender(cls, options)  # includes the empirical propensity check when exploring


def test_stochastic_flag_follows_exploration():
    assert not MMR(base="popularity").stochastic
    assert MMR(base="popularity", exploration="softmax").stochastic


def test_randomized_base_is_refused_with_a_message():
    # refused with the options (so `validate` rejects it, tester #6)
    with pytest.raises(ValueError, match="randomized candidate list.*no deterministic mode"):
        MMR(base="random")
    with pytest.raises(ValueError, match="randomized candidate list.*exploration: none"):
        MMR(base="popularity", base_options={"exploration": "epsilon"})
    # and at serving time, for a base that randomizes anyway
    from counterfeed.core.plugins import get_registry

    ctx = make_context(n_items=30, n_users=20, slate_size=4, seed=1)
    rec = MMR(base="popularity")
    rec.setup(ctx)
    rec.base_ = get_registry().create("recommender", "random")
    rec.base_.setup(ctx)
    rec.fit(Log.empty())
    with pytest.raises(ValueError, match="randomized candidate list.*exploration: none"):
        rec.recommend(make_batch(ctx, np.arange(5), sessions=np.zeros(5, np.int64)))


def test_unknown_base_is_an_options_error():
    from counterfeed.errors import ScenarioError

    with pytest.raises((ScenarioError, ValueError), match="no-such-recommender"):
        MMR(base="no-such-recommender")


def _ctx_with_topics(topics, quality):
    ctx = make_context(n_items=len(topics), n_users=10, slate_size=3, seed=2)
    n = len(topics)
    ctx.items = Items(vectors=np.eye(n), quality=np.asarray(quality, float), topic=np.asarray(topics),
                      n_topics=max(topics) + 1, arrival=np.zeros(n))
    return ctx


def _serve(rec, ctx, log=None):
    rec.setup(ctx)
    rec.fit(log if log is not None else Log.empty())
    return rec.recommend(make_batch(ctx, np.array([0, 1]), sessions=np.zeros(2, np.int64)))


def _click_log(items, users=None, clicks=None):
    n = len(items)
    users = np.zeros(n, np.int64) if users is None else np.asarray(users)
    return Log(user=users, session=np.arange(n), time=np.zeros(n), position=np.zeros(n, np.int64),
               item=np.asarray(items), click=np.ones(n, bool) if clicks is None else np.asarray(clicks, bool),
               dwell=np.zeros(n), propensity=np.ones(n))


def test_mmr_trades_relevance_for_topic_diversity():
    # popularity ranks items 0, 1, 2, 3 (clicks 9, 8, 7, 6); items 0-2 share topic 0, item 3 is topic 1
    ctx = _ctx_with_topics([0, 0, 0, 1, 2], [0] * 5)
    log = _click_log(np.repeat([0, 1, 2, 3], [9, 8, 7, 6]))
    plain = _serve(MMR(base="popularity", diversity=0.0), ctx, log).items[0]
    diverse = _serve(MMR(base="popularity", diversity=0.7), ctx, log).items[0]
    assert plain.tolist() == [0, 1, 2]
    assert diverse.tolist()[:2] == [0, 3]  # the second slot goes to the other topic


def test_calibrated_matches_the_users_topic_mix():
    # user 0 clicked topics 0 and 1 equally; the base ranks three topic-0 items first
    ctx = _ctx_with_topics([0, 0, 0, 1, 1], [0] * 5)
    log = _click_log([0, 0, 0, 1, 1, 2, 3, 4], users=[1] * 6 + [0, 0])
    log.click[:] = True
    log.user[:] = [1, 1, 1, 1, 1, 1, 0, 0]
    slate = _serve(Calibrated(base="popularity", weight=0.9), ctx, log).items[0]
    topics = ctx.items.topic[slate]
    assert sorted(topics.tolist()).count(1) >= 1 and sorted(topics.tolist()).count(0) >= 1
    plain = _serve(Calibrated(base="popularity", weight=0.0), ctx, log).items[0]
    assert ctx.items.topic[plain].tolist() == [0, 0, 0]


def test_popularity_debiasing_demotes_the_most_shown_item():
    ctx = _ctx_with_topics([0, 1, 2, 3], [0] * 4)
    # item 0 most clicked and shown 100 times; items 1, 2 clicked a little and shown rarely
    log = _click_log(np.r_[np.zeros(100, np.int64), [1, 1, 2, 3]], clicks=np.r_[np.ones(10), np.zeros(90), [1, 1, 1, 1]])
    plain = _serve(PopularityDebiased(base="popularity", beta=0.0), ctx, log).items[0]
    debiased = _serve(PopularityDebiased(base="popularity", beta=1.0), ctx, log).items[0]
    assert plain[0] == 0 and debiased[0] != 0 and 0 in plain


def test_provider_fair_caps_each_group_at_its_catalog_share():
    # 6 items: topic 0 has 4 of them (cap ceil(3 * 4/6) = 2), topic 1 has 2 (cap 1)
    ctx = _ctx_with_topics([0, 0, 0, 0, 1, 1], [0] * 6)
    log = _click_log(np.repeat([0, 1, 2, 3, 4], [9, 8, 7, 6, 5]))
    slate = _serve(ProviderFair(base="popularity"), ctx, log).items[0]
    assert slate.tolist() == [0, 1, 4]
    plain = _serve(ProviderFair(base="popularity", slack=5), ctx, log).items[0]
    assert plain.tolist() == [0, 1, 2]


@pytest.mark.parametrize("options", [
    {"base": "popularity"},
    {"base": "popularity", "exploration": "epsilon", "epsilon": 0.3, "candidates": 12},
    {"base": "matrix-factorization", "base_options": MF, "exploration": "softmax", "candidates": 15},
], ids=["deterministic", "epsilon", "softmax"])
@pytest.mark.parametrize("cls", RERANKERS, ids=lambda c: c.name)
def test_action_probabilities_match_logged_propensities(cls, options):
    ctx = make_context(n_items=40, n_users=50, slate_size=4, seed=3)
    rec = cls(**options)
    rec.setup(ctx)
    rec.fit(make_log(ctx, n_requests=300, seed=4))
    batch = make_batch(ctx, np.arange(30), sessions=np.arange(30) % 4)
    out = rec.recommend(batch)
    np.testing.assert_allclose(rec.action_probabilities(batch, out.items), out.propensities, rtol=1e-9)
    other = (out.items + 1) % ctx.items.n  # mostly slates the policy does not show there
    p = rec.action_probabilities(batch, other)
    assert ((p >= 0) & (p <= 1)).all()
    if options.get("exploration", "none") == "none":
        assert (p == 0).all()  # a deterministic policy shows nothing else at those positions
