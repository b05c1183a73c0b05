"""User personas in text-embedding space."""

from __future__ import annotations

import numpy as np
import pytest

from counterfeed.core.contracts import Population
from counterfeed.core.randomness import Keys
from counterfeed.plugins.catalogs.text import SyntheticTextCatalog
from counterfeed.text.embedder import HashingEmbedder
from counterfeed.text.personas import persona_mixtures, text_preferences, topic_embeddings


def _population(n: int) -> Population:
    return Population(n=n, preferences=np.zeros((n, 4)), segment=np.zeros(n, np.int64),
                      segment_names=["all"], activity=np.ones(n))


@pytest.fixture
def items(make_ctx):
    return SyntheticTextCatalog(items=300, topics=10, embedder="hashing").build(make_ctx(seed=1))


def test_mixtures_are_distinct_topics_with_dirichlet_weights():
    topics, weights = persona_mixtures(5000, 10, Keys(2).stream("persona"), topics_per_user=3,
                                       concentration=0.5)
    assert topics.shape == weights.shape == (5000, 3)
    assert np.all(np.sort(topics, axis=1)[:, 1:] != np.sort(topics, axis=1)[:, :-1])
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    # Dirichlet(0.5, 0.5, 0.5): each weight has mean 1/3 and sd sqrt((1/3)(2/3)/2.5) = 0.298;
    # the mean of 5000 draws has standard error 0.0042, tolerance 0.02 is ~5 standard errors.
    assert abs(weights[:, 0].mean() - 1 / 3) < 0.02
    assert abs(weights[:, 0].std() - 0.298) < 0.02
    # topics uniform: each of 10 topics appears in 3/10 of personas (se 0.0065 per topic at n=5000)
    freq = np.bincount(topics.ravel(), minlength=10) / 5000
    assert np.all(np.abs(freq - 0.3) < 0.035)


def test_keyed_mixtures_do_not_depend_on_population_size():
    stream = Keys(4).stream("persona")
    small = persona_mixtures(10, 8, stream)
    large = persona_mixtures(1000, 8, stream)
    np.testing.assert_array_equal(small[0], large[0][:10])
    np.testing.assert_allclose(small[1], large[1][:10])
    gen = persona_mixtures(10, 8, np.random.default_rng(0))
    assert gen[0].shape == (10, 2)


def test_nearest_topic_of_each_user_is_one_of_their_persona_topics(items):
    pop = _population(2000)
    stream = Keys(9).stream("persona")
    pref = text_preferences(pop, items, stream, topics_per_user=2, concentration=1.0)
    assert pref.shape == (2000, 384) and pref.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(pref, axis=1), 1.0, rtol=1e-5)
    topics, weights = persona_mixtures(2000, items.n_topics, stream, topics_per_user=2)
    nearest = np.argmax(pref @ topic_embeddings(items).T, axis=1)
    assert np.all((nearest == topics[:, 0]) | (nearest == topics[:, 1]))
    # and the dominant topic wins in the clear majority of personas
    dominant = topics[np.arange(2000), np.argmax(weights, axis=1)]
    assert np.mean(nearest == dominant) > 0.8


def test_item_text_carries_signal_about_persona_utility(items):
    pref = text_preferences(_population(500), items, Keys(3).stream("persona"), topics_per_user=1)
    topics, _ = persona_mixtures(500, items.n_topics, Keys(3).stream("persona"), topics_per_user=1)
    util = pref @ items.embeddings.T
    on_topic = items.extra["text_topic"][None, :] == topics[:, :1]
    # ~15k on-topic and ~135k off-topic pairs with cosine sd < 0.1: the means' standard errors are
    # below 0.001, so a gap of 0.05 (hashing gives ~0.1, MiniLM ~0.4) is a real separation
    gap = util[on_topic].mean() - util[~on_topic].mean()
    assert gap > 0.05 and util[~on_topic].std() < 0.1


def test_embedder_mismatch_is_an_error(items):
    with pytest.raises(ValueError, match="embedded in 384 dimensions but the embedder gives 32"):
        text_preferences(_population(3), items, Keys(0).stream("p"), HashingEmbedder(dim=32))
