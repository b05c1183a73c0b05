"""Test plugins registered and unregistered inside tests."""

from __future__ import annotations

import numpy as np

from counterfeed import Batch, Recommender, Slates, hookimpl
from counterfeed.plugins.recommenders._slates import topk


class OracleRecommender(Recommender):
    """Better by construction: ranks items by the users' true expected utility (test only)."""

    name = "test-oracle"

    def recommend(self, batch: Batch) -> Slates:
        items = self.ctx_.items
        prefs = self.ctx_.extra_preferences
        scores = prefs[batch.users] @ items.vectors.T * 3.0 + items.quality
        top = topk(scores, batch.slate_size, batch.available)
        return Slates(top, np.ones(top.shape), np.take_along_axis(scores, top, axis=1))


class RaisingRecommender(Recommender):
    name = "test-raising"

    def recommend(self, batch: Batch) -> Slates:
        raise ValueError("boom")


class BadShapeRecommender(Recommender):
    name = "test-bad-shape"

    def recommend(self, batch: Batch) -> Slates:
        return Slates(np.zeros((len(batch), 1), np.int64), np.ones((len(batch), 1)))


class TestPlugin:
    @hookimpl
    def register_recommenders(self, register):
        register(OracleRecommender)
        register(RaisingRecommender)
        register(BadShapeRecommender)
