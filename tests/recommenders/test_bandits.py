"""Bandit recommenders: logged propensities match the policy, they learn, and they are reproducible."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from counterfeed.core.contracts import Batch, Items, Log, RecommenderContext
from counterfeed.core.randomness import Keys
from counterfeed.errors import PluginError
from counterfeed.plugins.recommenders import bandits
from counterfeed.plugins.recommenders.bandits import (BetaThompsonSampling, EpsilonGreedy, LinearThompsonSampling,
                                                      LinUCB)

K = 4
ALL = [EpsilonGreedy, BetaThompsonSampling, LinUCB, LinearThompsonSampling]
MONTE_CARLO = {BetaThompsonSampling, LinearThompsonSampling}


class Env:
    """Bernoulli clicks: P(click) = sigmoid(0.8 pref_u . vec_i + quality_i - 2.5), no position effect."""

    def __init__(self, n_users: int = 300, n_items: int = 80, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.pref = rng.normal(size=(n_users, 6))
        vec = rng.normal(size=(n_items, 6))
        quality = rng.normal(scale=0.8, size=n_items)
        self.prob = 1.0 / (1.0 + np.exp(-(0.8 * self.pref @ vec.T + quality - 2.5)))
        self.items = Items(vec, quality, np.zeros(n_items, np.int64), 1, np.zeros(n_items))
        self.rng = np.random.default_rng(seed + 1)

    def make(self, cls, seed: int = 0, **options):
        rec = cls(**options)
        rec.setup(RecommenderContext(self.items, self.prob.shape[0], K, Keys(seed), "treatment"))
        rec.fit(Log.empty())
        return rec

    def window(self, rec, w: int, n: int = 150, seed: int = 0) -> tuple[Log, float]:
        """Serve n distinct users in window w; return their feedback and the realized CTR."""
        users = self.rng.choice(self.prob.shape[0], n, replace=False)
        batch = Batch(users, np.full(n, w), float(w), K, Keys(seed).stream("policy:treatment"))
        slates = rec.recommend(batch)
        clicks = self.rng.random(slates.items.shape) < self.prob[users[:, None], slates.items]
        m = clicks.size
        log = Log(np.repeat(users, K), np.full(m, w), np.full(m, float(w)), np.tile(np.arange(K), n),
                  slates.items.ravel(), clicks.ravel(), clicks.ravel() * 1.0, slates.propensities.ravel())
        return log, float(clicks.mean())


def trained(cls, windows: int = 8, **options):
    env = Env()
    rec = env.make(cls, **options)
    for w in range(windows):
        rec.update(env.window(rec, w)[0])
    return env, rec


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_learns_and_beats_uniform_random(cls):
    env = Env()
    rec = env.make(cls)
    ctr = [rec.update(log) or c for log, c in (env.window(rec, w) for w in range(30))]
    uniform = env.prob.mean()  # expected CTR of uniformly random slates
    # each window has 600 impressions: the SE of a 5-window mean CTR is below 0.01
    early, late = np.mean(ctr[:5]), np.mean(ctr[-5:])
    assert late > early + 0.02, (early, late)
    assert late > uniform + 0.04, (late, uniform)


@pytest.mark.parametrize(("cls", "options"), [
    (EpsilonGreedy, {"epsilon": 0.3}),
    (BetaThompsonSampling, {}),
    (BetaThompsonSampling, {"candidates": None, "position_debias": True}),
    (BetaThompsonSampling, {"propensity_samples": 20_000}),  # small MC error: a sharp check
    (LinUCB, {"exploration": "epsilon", "epsilon": 0.2}),
    (LinUCB, {"exploration": "softmax", "temperature": 0.05}),
    (LinearThompsonSampling, {}),
], ids=lambda v: getattr(v, "name", None) or str(v))
def test_logged_propensities_match_empirical_frequencies(cls, options):
    options = dict(options)
    samples = options.pop("propensity_samples", None)
    env, rec = trained(cls, **options)
    if samples:  # only the checked batch needs the large Monte Carlo sample
        rec.options.propensity_samples = samples
    n = 4000
    # one user and one batch time: a fixed policy state, 4000 independent keyed (user, session) draws
    batch = Batch(np.full(n, 5), np.arange(100, 100 + n), 99.0, K, Keys(0).stream("policy:treatment"))
    slates = rec.recommend(batch)
    m = rec.options.propensity_samples if cls in MONTE_CARLO else np.inf
    checked = 0
    for j in range(K):
        shown, counts = np.unique(slates.items[:, j], return_counts=True)
        # over all items a position's propensities sum to 1 (also for the MC estimates, since each
        # draw puts one item there); items never shown in n draws carry an expected mass of at
        # most sum_i p_i (1 - p_i)^n <= n_items / (e n) < 0.008. A Monte Carlo estimate with no
        # hit logs 1/M instead of 0, which can add at most 1/M per such item.
        props = np.array([slates.propensities[slates.items[:, j] == i, j][0] for i in shown])
        floor = np.sum(props == 1 / m) / m if np.isfinite(m) else 0.0
        assert 0.99 <= props.sum() <= 1.0 + floor + 1e-9, (j, props.sum())
        for item, count in zip(shown, counts):
            p = slates.propensities[slates.items[:, j] == item, j]
            assert np.ptp(p) == 0.0
            freq = count / n
            pooled = freq if np.isinf(m) else (count + p[0] * m) / (n + m)
            # binomial SD of the frequency plus, for Monte Carlo propensities, their stated SE
            # sqrt(p(1-p)/M); 5 SDs keeps the family of ~100 checked cells from false alarms
            sd = np.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
            floor = 1 / m if p[0] * m == 1 else 0.0  # a zero-hit estimate is logged as 1/M
            assert abs(freq - p[0]) <= 5 * sd + 1.5 / n + floor, (j, item, freq, p[0])
            checked += 1
    assert checked >= K


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_deterministic_and_empty_update(cls):
    runs = []
    for _ in range(2):
        env, rec = trained(cls, windows=4)
        before = {k: v.copy() for k, v in vars(rec).items() if isinstance(v, np.ndarray)}
        rec.update(Log.empty())
        for k, v in before.items():
            np.testing.assert_array_equal(getattr(rec, k), v)
        batch = Batch(np.arange(40), np.full(40, 9), 9.0, K, Keys(0).stream("policy:treatment"))
        runs.append(rec.recommend(batch))
        assert np.all((runs[-1].propensities > 0) & (runs[-1].propensities <= 1))
    np.testing.assert_array_equal(runs[0].items, runs[1].items)
    np.testing.assert_array_equal(runs[0].propensities, runs[1].propensities)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_never_recommends_unavailable_items(cls):
    env, rec = trained(cls, windows=3)
    available = np.zeros(env.items.n, dtype=bool)
    available[10:40:2] = True  # 15 items
    slates = rec.recommend(Batch(np.arange(100), np.zeros(100, np.int64), 5.0, K,
                                 Keys(0).stream("policy:treatment"), available))
    assert available[slates.items].all()
    assert all(len(set(row)) == K for row in slates.items.tolist())


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_fit_on_the_cumulative_log_equals_online_updates(cls):
    env = Env()
    online = env.make(cls)
    logs = []
    for w in range(5):
        log, _ = env.window(online, w)
        online.update(log)
        logs.append(log)
    replayed = env.make(cls)
    replayed.fit(Log.concat(logs))
    for key, value in vars(online).items():
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(getattr(replayed, key), value, rtol=1e-9, atol=1e-9, err_msg=key)


def test_position_debiasing_credits_items_shown_low():
    env = Env()
    rec = env.make(BetaThompsonSampling, position_debias=True)
    plain = env.make(BetaThompsonSampling)
    rng = np.random.default_rng(3)
    n = 20_000
    # items 0..9 at position 0, items 10..19 at position 3; identical appeal, position 3 examined half as often
    item = np.r_[rng.integers(0, 10, n), rng.integers(10, 20, n)]
    pos = np.r_[np.zeros(n, np.int64), np.full(n, 3)]
    click = rng.random(2 * n) < np.where(pos == 0, 0.2, 0.1)
    log = Log(np.zeros(2 * n, np.int64), np.arange(2 * n), np.zeros(2 * n), pos, item, click,
              click * 1.0, np.ones(2 * n))
    for r in (rec, plain):
        r.fit(log)
    mean = [a / (a + b) for a, b in (r.posterior() for r in (rec, plain))]
    # 2000 impressions per item: the SE of a per-item CTR is ~0.009; group means of 10 items ~0.003
    assert abs(mean[0][10:20].mean() - mean[0][:10].mean()) < 0.02
    assert mean[1][:10].mean() - mean[1][10:20].mean() > 0.08


def test_embedding_features_need_embeddings():
    env = Env()
    with pytest.raises(PluginError, match="no text embeddings"):
        env.make(LinUCB, features="embeddings")
    emb = np.random.default_rng(0).normal(size=(env.items.n, 40))
    env.items.embeddings = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    rec = env.make(LinUCB, dimensions=8)
    assert rec.x_.shape == (env.items.n, 8)


@pytest.mark.parametrize(("cls", "options", "pattern"), [
    (EpsilonGreedy, {"epsilon": 2}, "epsilon"),
    (EpsilonGreedy, {"prior_alpha": 0}, "prior_alpha"),
    (BetaThompsonSampling, {"propensity_samples": 0}, "propensity_samples"),
    (BetaThompsonSampling, {"candidates": 0}, "candidates"),
    (LinUCB, {"exploration": "ucb"}, "exploration"),
    (LinUCB, {"features": "text"}, "features"),
    (LinearThompsonSampling, {"scale": -1}, "scale"),
    (LinearThompsonSampling, {"alpha": 1}, "alpha"),
])
def test_bad_options(cls, options, pattern):
    with pytest.raises(pydantic.ValidationError, match=pattern):
        cls(**options)


def test_registered_through_the_hook():
    seen = []
    bandits.register_recommenders(seen.append)
    assert [c.name for c in seen] == ["epsilon-greedy", "thompson", "linucb", "linear-thompson"]
