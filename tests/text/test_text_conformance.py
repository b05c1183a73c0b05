"""The text plugins pass the public conformance suite that third-party plugins run."""

from __future__ import annotations

import pytest

from counterfeed.plugins.catalogs.text import SyntheticTextCatalog
from counterfeed.plugins.recommenders.text_embedding import TextEmbeddingRecommender
from counterfeed.testing import check_catalog, check_recommender


@pytest.mark.parametrize("options", [
    {"embedder": "hashing"},
    {"embedder": "hashing", "exploration": "epsilon", "epsilon": 0.2},
    {"embedder": "hashing", "exploration": "softmax", "temperature": 0.1},
    {"embedder": "hashing", "exploration": "softmax", "temperature": 0.02, "candidates": 12},
    {"embedder": "hashing", "exploration": "softmax", "temperature": 0.05, "diversity": 0.4,
     "diversity_candidates": 20},
])
def test_text_embedding_recommender_conformance(options):
    assert set(check_recommender(TextEmbeddingRecommender, options).values()) == {"passed"}


def test_synthetic_text_catalog_conformance():
    opts = {"embedder": "hashing", "items": 40, "new_items_per_day": 2, "arrival_days": 3}
    assert set(check_catalog(SyntheticTextCatalog, opts).values()) == {"passed"}
