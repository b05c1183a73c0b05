"""slate_propensities agrees with make_slates' logged propensities and with empirical frequencies."""

from __future__ import annotations

import numpy as np
import pytest

from counterfeed.core.contracts import Batch
from counterfeed.core.randomness import Keys
from counterfeed.plugins.recommenders._slates import make_slates, slate_propensities

SCHEMES = [("none", {}), ("epsilon", {"epsilon": 0.3}), ("softmax", {"temperature": 0.7}),
           ("softmax", {"temperature": 1.5, "candidates": 7})]


def _batch(n, k=3, seed=0, available=None):
    users = np.arange(n, dtype=np.int64)
    return Batch(users=users, sessions=np.zeros(n, np.int64), time=0.0, slate_size=k,
                 stream=Keys(seed).stream("policy:test"), available=available)


@pytest.mark.parametrize("exploration,opts", SCHEMES)
@pytest.mark.parametrize("shared", [True, False])
def test_matches_make_slates_propensities(exploration, opts, shared):
    rng = np.random.default_rng(1)
    n, n_items = 200, 10
    scores = rng.normal(size=n_items) if shared else rng.normal(size=(n, n_items))
    avail = np.ones(n_items, bool)
    avail[[2, 5]] = False
    batch = _batch(n, available=avail)
    slates = make_slates(batch, scores, exploration, **opts)
    p = slate_propensities(batch, scores, exploration, slates.items, **opts)
    np.testing.assert_allclose(p, slates.propensities, rtol=1e-12)


@pytest.mark.parametrize("exploration,opts", SCHEMES[1:])
def test_matches_empirical_frequencies(exploration, opts):
    n, n_items, k = 20_000, 8, 3
    scores = np.linspace(1.0, -1.0, n_items)
    batch = _batch(n, k=k, seed=3)
    items = make_slates(batch, scores, exploration, **opts).items
    freq = np.zeros((n_items, k))
    for j in range(k):
        freq[:, j] = np.bincount(items[:, j], minlength=n_items) / n
    grid = np.broadcast_to(np.arange(n_items)[:, None], (n_items, k))
    exact = np.stack([slate_propensities(_batch(n_items, k=k), scores, exploration,
                                         np.broadcast_to(grid[:, j:j + 1], (n_items, k)), **opts)[:, j]
                      for j in range(k)], axis=1)
    # every position's probabilities over items sum to 1
    np.testing.assert_allclose(exact.sum(axis=0), 1.0, atol=1e-12)
    # binomial se of a frequency is <= 0.5/sqrt(20000) = 0.0035; 5 se = 0.018
    np.testing.assert_allclose(freq, exact, atol=0.018)


def test_impossible_items_get_zero():
    scores = np.arange(6, dtype=float)[::-1].copy()  # greedy slate 0, 1, 2
    batch = _batch(2, k=3, available=np.array([True, True, True, True, False, True]))
    items = np.array([[1, 0, 4], [0, 1, 2]])
    p = slate_propensities(batch, scores, "epsilon", items, epsilon=0.2)
    # item 1 at position 0 is a greedy item at another position; item 4 is unavailable
    np.testing.assert_allclose(p, [[0.0, 0.0, 0.0], [0.8, 0.8, 0.8]])
    p0 = slate_propensities(batch, scores, "none", items)
    np.testing.assert_allclose(p0, [[0, 0, 0], [1, 1, 1]])
