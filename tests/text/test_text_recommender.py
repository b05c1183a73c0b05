"""The text-embedding content recommender."""

from __future__ import annotations

import numpy as np
import pytest

from counterfeed.core.contracts import Batch, Items, Log, RecommenderContext
from counterfeed.core.randomness import Keys
from counterfeed.errors import PluginError
from counterfeed.plugins.recommenders.text_embedding import TextEmbeddingRecommender

N_USERS = 6


def _items(n=12, e=4, arrival=None) -> Items:
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((n, e)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return Items(vectors=np.zeros((n, 2)), quality=np.zeros(n), topic=np.zeros(n, np.int64), n_topics=1,
                 arrival=np.zeros(n) if arrival is None else np.asarray(arrival, float), embeddings=emb)


def _rec(items, **opts) -> TextEmbeddingRecommender:
    """A set-up recommender; unless asked, it may re-recommend clicked items (an item is nearest itself)."""
    opts.setdefault("exclude_clicked", False)
    rec = TextEmbeddingRecommender(**opts)
    rec.setup(RecommenderContext(items=items, n_users=N_USERS, slate_size=3, keys=Keys(0)))
    return rec


def _batch(users, sessions=None, k=3, available=None, seed=0):
    users = np.asarray(users, np.int64)
    sessions = np.zeros_like(users) if sessions is None else np.asarray(sessions, np.int64)
    return Batch(users=users, sessions=sessions, time=1.0, slate_size=k,
                 stream=Keys(seed).stream("policy:treatment"), available=available)


def _clicks(users, items, times) -> Log:
    n = len(users)
    return Log(user=np.asarray(users, np.int64), session=np.zeros(n, np.int64), time=np.asarray(times, float),
               position=np.zeros(n, np.int64), item=np.asarray(items, np.int64), click=np.ones(n, bool),
               dwell=np.ones(n), propensity=np.ones(n))


def test_shapes_and_profiles_follow_clicks():
    items = _items()
    rec = _rec(items)
    rec.update(_clicks([0, 1], [5, 7], [0.5, 0.5]))
    s = rec.recommend(_batch([0, 1, 2, 0]))
    assert s.items.shape == s.propensities.shape == s.scores.shape == (4, 3)
    assert s.items[0, 0] == 5 and s.items[1, 0] == 7          # an item is most similar to itself
    np.testing.assert_array_equal(s.items[0], s.items[3])
    assert np.all(s.propensities == 1.0)
    assert all(len(set(row)) == 3 for row in s.items)
    # user 2 has no clicks: profile of the popular items (items 5 and 7)
    pop = items.embeddings[[5, 7]].mean(axis=0)
    np.testing.assert_allclose(rec.user_vectors([2])[0], pop / np.linalg.norm(pop), rtol=1e-5)


def test_no_clicks_at_all_uses_the_catalog_mean():
    items = _items()
    rec = _rec(items)
    mean = items.embeddings.mean(axis=0)
    expected = np.argsort(-(items.embeddings @ mean), kind="stable")[:3]
    np.testing.assert_array_equal(rec.recommend(_batch([4])).items[0], expected)


def test_available_mask_and_cold_start_items():
    items = _items(n=12, arrival=[0] * 11 + [5])
    # the new item 11 is a near-copy of item 2, which user 0 clicked; nobody has interacted with it
    items.embeddings[11] = items.embeddings[2] * 0.99 + 0.01 * items.embeddings[3]
    rec = _rec(items)
    rec.update(_clicks([0], [2], [0.0]))
    before = rec.recommend(_batch([0], available=items.available(1.0)))
    assert 11 not in before.items
    after = rec.recommend(_batch([0], available=items.available(6.0)))
    assert set(after.items[0, :2]) == {2, 11}


def test_half_life_makes_recent_clicks_dominate():
    items = _items()
    rec = _rec(items, half_life=1.0)
    rec.update(_clicks([0, 0], [1, 8], [0.0, 10.0]))             # item 1 long ago, item 8 just now
    assert rec.recommend(_batch([0])).items[0, 0] == 8
    slow = _rec(items, half_life=1e6)
    slow.update(_clicks([0, 0, 0], [1, 1, 8], [0.0, 0.0, 10.0]))  # no decay: two clicks beat one
    assert slow.recommend(_batch([0])).items[0, 0] == 1


def test_fit_rebuilds_what_updates_accumulated_and_survives_long_horizons():
    items = _items()
    log = _clicks([0, 1, 0, 3, 0], [1, 2, 3, 4, 9], [0.0, 50.0, 100.0, 400.0, 900.0])
    online = _rec(items, half_life=2.0)
    for i in range(len(log)):
        online.update(log.select(np.arange(len(log)) == i))
    offline = _rec(items, half_life=2.0)
    offline.update(_clicks([5], [6], [0.0]))                      # forgotten by fit
    offline.fit(log)
    users = np.arange(N_USERS)
    assert np.all(np.isfinite(online.profiles_))
    np.testing.assert_allclose(online.user_vectors(users), offline.user_vectors(users), atol=1e-5)
    np.testing.assert_array_equal(offline.user_vectors([5])[0], offline.fallback_profile())


@pytest.mark.parametrize("opts", [{"exploration": "epsilon", "epsilon": 0.3},
                                  {"exploration": "softmax", "temperature": 0.3},
                                  {"exploration": "softmax", "temperature": 0.5, "candidates": 7}])
def test_exact_propensities_match_empirical_frequencies(opts):
    items = _items(n=12, arrival=[0] * 10 + [9, 9])
    rec = _rec(items, **opts)
    assert rec.stochastic
    rec.update(_clicks([0], [4], [0.0]))
    n = 20_000
    s = rec.recommend(_batch(np.zeros(n, np.int64), np.arange(n), available=items.available(1.0)))
    assert not np.isin(s.items, [10, 11]).any()
    for j in range(3):
        ids, counts = np.unique(s.items[:, j], return_counts=True)
        for item, c in zip(ids, counts):
            p = s.propensities[:, j][s.items[:, j] == item]
            assert np.ptp(p) < 1e-12                                # same context: one propensity
            # binomial frequency: 5 standard errors of n=20000 draws (at most 0.0035 each)
            assert abs(c / n - p[0]) < 5 * np.sqrt(p[0] * (1 - p[0]) / n) + 1e-9
        # every item the position can show did show up, so their propensities sum to one
        shown = [s.propensities[:, j][s.items[:, j] == item][0] for item in ids]
        assert sum(shown) == pytest.approx(1.0, abs=1e-9)


def test_large_batches_are_scored_in_chunks_with_identical_results(monkeypatch):
    import counterfeed.plugins.recommenders.text_embedding as mod

    items = _items()
    rec = _rec(items, exploration="epsilon", epsilon=0.5)
    rec.update(_clicks([0, 1], [3, 4], [0.0, 0.0]))
    batch = _batch(np.arange(N_USERS).repeat(5), np.tile(np.arange(5), N_USERS))
    whole = rec.recommend(batch)
    monkeypatch.setattr(mod, "_SCORE_CELLS", 24)  # two rows per chunk
    chunked = rec.recommend(batch)
    np.testing.assert_array_equal(whole.items, chunked.items)
    np.testing.assert_array_equal(whole.propensities, chunked.propensities)


def test_catalog_without_text_or_embeddings_is_a_plugin_error():
    items = _items()
    items.embeddings = None
    with pytest.raises(PluginError, match="plugin 'text-embedding' in setup: needs a catalog with text"):
        _rec(items)


def test_catalog_with_text_only_is_embedded_with_the_option_embedder():
    items = _items(n=4)
    items.embeddings = None
    items.text = ["boots and jackets", "rockets to mars", "jackets and boots", "sourdough bread"]
    rec = _rec(items, embedder="hashing")
    rec.update(_clicks([0], [0], [0.0]))
    assert set(rec.recommend(_batch([0])).items[0, :2]) == {0, 2}


def _impressions(user, items, clicked, time=0.0) -> Log:
    n = len(items)
    return Log(user=np.full(n, user, np.int64), session=np.zeros(n, np.int64), time=np.full(n, time),
               position=np.arange(n, dtype=np.int64), item=np.asarray(items, np.int64),
               click=np.asarray(clicked, bool), dwell=np.zeros(n), propensity=np.ones(n))


def test_negative_feedback_moves_the_profile_away_from_ignored_items():
    items = _items()
    log = _impressions(0, [3, 5, 6], [True, False, False])
    plain, rocchio = _rec(items), _rec(items, negative_weight=0.5)
    plain.update(log)
    rocchio.update(log)
    e = items.embeddings
    expected = e[3] - 0.5 * (e[5] + e[6])
    np.testing.assert_allclose(rocchio.user_vectors([0])[0], expected / np.linalg.norm(expected), rtol=1e-5)
    np.testing.assert_allclose(plain.user_vectors([0])[0], e[3], rtol=1e-5)
    # the ignored items fall in the ranking, and popularity still counts clicks only
    r_plain = np.argsort(-plain.score([0])[0]).tolist()
    r_rocchio = np.argsort(-rocchio.score([0])[0]).tolist()
    assert r_rocchio.index(5) > r_plain.index(5) and r_rocchio.index(6) > r_plain.index(6)
    np.testing.assert_array_equal(rocchio.popularity_ > 0, np.arange(12) == 3)


def test_popularity_weight_adds_the_relative_log_click_count():
    items = _items()
    log = _clicks([0, 1, 2, 3], [4, 4, 4, 9], [1.0] * 4)
    plain, blended = _rec(items), _rec(items, popularity_weight=0.5)
    plain.update(log)
    blended.update(log)
    prior = blended.popularity_prior()
    assert prior[4] == pytest.approx(1.0) and prior[9] == pytest.approx(np.log1p(100 / 3) / np.log1p(100))
    assert np.all(prior[[0, 1, 2, 3, 5, 6, 7, 8, 10, 11]] == 0)
    np.testing.assert_allclose(blended.score([5]), np.round(plain.score([5]) + 0.5 * prior, 9), atol=1e-9)


def _two_clusters() -> Items:
    """Items 0-5 around direction a, items 6-11 around direction b (a and b orthogonal)."""
    rng = np.random.default_rng(1)
    a, b = np.eye(8)[0], np.eye(8)[1]
    centers = np.stack([a] * 6 + [b] * 6)
    emb = (centers + 0.15 * rng.standard_normal((12, 8))).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return Items(vectors=np.zeros((12, 2)), quality=np.zeros(12), topic=np.repeat([0, 1], 6), n_topics=2,
                 arrival=np.zeros(12), embeddings=emb)


def test_diversity_spreads_the_slate_over_the_users_interests():
    items = _two_clusters()
    log = _clicks([0, 0, 0], [0, 1, 6], [0.0, 0.0, 0.0])             # mostly cluster a, some b
    plain, diverse = _rec(items), _rec(items, diversity=0.5)
    plain.update(log)
    diverse.update(log)
    batch = _batch([0], k=4)
    assert set(items.topic[plain.recommend(batch).items[0]]) == {0}
    slate = diverse.recommend(batch).items[0]
    assert set(items.topic[slate]) == {0, 1}
    assert slate[0] == plain.recommend(batch).items[0, 0]          # the most relevant item still leads
    # the diversified scores put exactly the MMR slate on top, in order
    scores = diverse.diversify(diverse.score([0]), 4, None)[0]
    np.testing.assert_array_equal(np.argsort(-scores, kind="stable")[:4], slate)


def test_users_with_impressions_but_no_clicks_keep_the_fallback_profile():
    items = _items()
    rec = _rec(items, negative_weight=0.5)
    rec.update(_impressions(0, [3, 5], [False, False]))
    rec.update(_clicks([1], [7], [0.0]))
    np.testing.assert_array_equal(rec.user_vectors([0])[0], rec.fallback_profile())


def test_diversity_on_a_text_catalog_lowers_intra_slate_similarity(make_ctx):
    from counterfeed.plugins.catalogs.text import SyntheticTextCatalog

    items = SyntheticTextCatalog(items=240, topics=6, embedder="hashing").build(make_ctx(seed=3))
    topic = items.extra["text_topic"]
    a, b = np.flatnonzero(topic == 0)[:3], np.flatnonzero(topic == 1)[:1]
    log = _clicks([0] * 4, np.concatenate([a, b]), [0.0] * 4)
    similarity, relevance = {}, {}
    for lam in (0.0, 0.7):
        rec = TextEmbeddingRecommender(diversity=lam)    # 384 dims: MMR uses the 48-dim projection
        rec.setup(RecommenderContext(items=items, n_users=2, slate_size=10, keys=Keys(0)))
        rec.update(log)
        slate = rec.recommend(_batch([0], k=10)).items[0]
        e = items.embeddings[slate]
        sim = e @ e.T
        similarity[lam] = (sim.sum() - np.trace(sim)) / 90
        relevance[lam] = rec.score([0])[0, slate].mean()
    assert similarity[0.7] < similarity[0.0]
    assert relevance[0.7] < relevance[0.0]          # the price of diversity


def test_exclude_clicked_ranks_clicked_items_last():
    items = _items()
    rec = _rec(items, exclude_clicked=True)
    rec.update(_clicks([0, 0, 1], [5, 7, 5], [0.0, 0.0, 0.0]))
    rec.update(_clicks([0], [2], [1.0]))
    keep = _rec(items)
    keep.update(_clicks([0, 0, 1, 0], [5, 7, 5, 2], [0.0, 0.0, 0.0, 1.0]))
    slate = rec.recommend(_batch([0, 1], k=9)).items
    assert not np.isin(slate[0], [2, 5, 7]).any() and 5 not in slate[1]
    # the other items keep their relative order
    full = keep.recommend(_batch([0], k=12)).items[0]
    np.testing.assert_array_equal(slate[0], [i for i in full if i not in (2, 5, 7)])
    # with only 3 items available and 2 of them clicked, the clicked ones fill the slate last
    avail = np.isin(np.arange(12), [2, 5, 9])
    np.testing.assert_array_equal(rec.recommend(_batch([0], k=3, available=avail)).items[0, 0], 9)
