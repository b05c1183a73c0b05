"""The choice model's ``text_space``: users' text tastes in another encoder's space than the catalog's."""

from __future__ import annotations

import numpy as np

from counterfeed.core.randomness import Keys
from counterfeed.plugins.catalogs.text import SyntheticTextCatalog
from counterfeed.plugins.users.choice import ChoiceUserModel
from counterfeed.testing.fixtures import make_population
from counterfeed.text.embedder import get_embedder


def test_text_space_puts_tastes_and_item_vectors_in_the_other_space(make_ctx):
    items = SyntheticTextCatalog({"items": 60, "topics": 4, "embedder": {"model": "hashing", "dim": 64}}).build(
        make_ctx())
    pop = make_population(50, dimensions=8)
    same = ChoiceUserModel({"interests": "text", "latent_weight": 0}).init_state(pop, items, Keys(1))
    other = ChoiceUserModel({"interests": "text", "latent_weight": 0, "text_space": "hashing"}).init_state(
        pop, items, Keys(1))
    assert same.text_items is None and same.text_preferences.shape == (50, 64)
    np.testing.assert_allclose(other.text_items, get_embedder("hashing").embed(items.text))
    assert other.text_preferences.shape == (50, 384)
    assert other.items.embeddings.shape == (60, 64)  # the catalog the recommenders see is unchanged
    users = np.arange(5)
    slate = np.tile(np.arange(10), (5, 1))
    m = ChoiceUserModel({"interests": "text", "latent_weight": 0, "text_space": "hashing", "quality_weight": 0})
    util = m.utility(other, users, slate, 0.0)
    expected = 4.0 * other.text_preferences[users] @ other.text_items[:10].T
    np.testing.assert_allclose(util, expected, rtol=1e-5)
