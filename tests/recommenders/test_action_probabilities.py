"""The declared ``Recommender.action_probabilities`` contract: built-ins, the default, the conformance rule."""

from __future__ import annotations

import re

import numpy as np
import pytest

from counterfeed.core.contracts import Log, Recommender
from counterfeed.core.plugins import get_registry
from counterfeed.testing import ConformanceError, check_recommender
from counterfeed.testing.fixtures import make_batch, make_context, make_log
from tests.testing import broken_plugins as bp

# every stochastic built-in configuration (Thompson samplers with many Monte Carlo draws)
STOCHASTIC = [
    ("random", {}),
    ("popularity", {"exploration": "epsilon", "epsilon": 0.2}),
    ("popularity", {"exploration": "softmax", "temperature": 0.5}),
    ("epsilon-greedy", {}),
    ("thompson", {"propensity_samples": 20_000}),
    ("linucb", {"exploration": "softmax"}),
    ("linear-thompson", {"propensity_samples": 20_000}),
    ("matrix-factorization", {"exploration": "epsilon", "epochs": 1}),
]


def _ready(name, options):
    ctx = make_context(n_items=30, n_users=50, slate_size=4, seed=3)
    rec = get_registry().create("recommender", name, options)
    rec.setup(ctx)
    rec.fit(make_log(ctx, n_requests=200, seed=4))
    return rec, ctx


@pytest.mark.parametrize("name, options", STOCHASTIC, ids=[f"{n}-{o.get('exploration', '')}" for n, o in STOCHASTIC])
def test_builtin_action_probabilities_match_logged_and_frequencies(name, options):
    rec, ctx = _ready(name, options)
    assert type(rec).action_probabilities is not Recommender.action_probabilities
    n = 4000  # one user, many sessions: the empirical frequency of each (item, position)
    batch = make_batch(ctx, np.full(n, 5), sessions=np.arange(n))
    out = rec.recommend(batch)
    got = rec.action_probabilities(batch, out.items)
    np.testing.assert_allclose(got, out.propensities, rtol=1e-6, atol=1e-4)
    # full distribution of session 0 vs frequencies over sessions (the state does not depend on session)
    one = make_batch(ctx, np.full(ctx.items.n, 5), sessions=np.zeros(ctx.items.n, np.int64))
    p = rec.action_probabilities(one, np.repeat(np.arange(ctx.items.n)[:, None], 4, axis=1))
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-9)
    for j in range(4):
        freq = np.bincount(out.items[:, j], minlength=ctx.items.n) / n
        # 5 binomial SDs per item (n = 4000) plus the Monte Carlo error of the samplers (M = 20000)
        tol = 5 * np.sqrt(p[:, j] * (1 - p[:, j]) / n + p[:, j] * (1 - p[:, j]) / 20_000) + 2 / n
        assert np.all(np.abs(freq - p[:, j]) <= tol), (name, j)


def test_random_is_uniform_over_available_and_zero_past_the_slate():
    rec, ctx = _ready("random", {})
    avail = np.zeros(ctx.items.n, bool)
    avail[:10] = True
    batch = make_batch(ctx, np.arange(3), available=avail)
    items = np.array([[0, 9, 10, 1, 2]] * 3)  # item 10 unavailable; position 4 is past the slate of 4
    np.testing.assert_array_equal(rec.action_probabilities(batch, items)[0], [0.1, 0.1, 0.0, 0.1, 0.0])


def test_deterministic_default_compares_with_the_slate():
    rec, ctx = _ready("popularity", {})
    assert not rec.stochastic
    batch = make_batch(ctx, np.arange(6))
    slate = rec.recommend(batch).items
    p = rec.action_probabilities(batch, np.concatenate([slate, slate[:, :1]], axis=1))
    np.testing.assert_array_equal(p, np.c_[np.ones(slate.shape), np.zeros((6, 1))])
    # the Recommender default (not popularity's exact override) gives the same answer
    np.testing.assert_array_equal(Recommender.action_probabilities(rec, batch, slate), np.ones(slate.shape))


def test_stochastic_default_raises():
    rec = bp.LyingStochasticRecommender(bp.LyingStochasticRecommender.Options())
    ctx = make_context()
    rec.setup(ctx)
    rec.fit(Log.empty())
    with pytest.raises(NotImplementedError, match="stochastic and does not implement action_probabilities"):
        rec.action_probabilities(make_batch(ctx, [0]), np.zeros((1, 5), np.int64))


def test_conformance_catches_wrong_action_probabilities():
    with pytest.raises(ConformanceError) as info:
        check_recommender(bp.WrongActionProbabilitiesRecommender)
    assert "action_probabilities" in info.value.rules
    assert re.search(r"'wrong-action-probabilities' .*broke rule 'action_probabilities'.*action_probabilities "
                     r"gives 1 for the shown item \d+ but recommend logged propensity 0\.5", str(info.value))


def test_conformance_requires_the_method_of_stochastic_policies():
    with pytest.raises(ConformanceError) as info:
        check_recommender(bp.MiscalibratedStochasticRecommender)
    assert "action_probabilities" in info.value.rules


def test_docs_stochastic_example_passes_conformance():
    """The stochastic-recommender example of docs/plugins.md passes every rule, action_probabilities included."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "plugins.md").read_text()
    at = text.index("class TopTwoCoin")
    ns: dict = {}
    exec(text[text.rindex("```python", 0, at) + len("```python"):text.index("```", at)], ns)  # noqa: S102
    status = check_recommender(ns["TopTwoCoin"])
    assert status["action_probabilities"] == "passed" and set(status.values()) == {"passed"}
