"""The ``als`` recommender: learns a planted click model, is byte-identical across runs and thread
counts, warm-starts its refits, and serves through the shared factor-model code."""

from __future__ import annotations

import numpy as np

from counterfeed.core.contracts import Log, RecommenderContext
from counterfeed.core.randomness import Keys
from counterfeed.plugins.recommenders.als import AlternatingLeastSquares
from tests.recommenders.test_mf import K, _log_from, batch_for, planted


def fitted(items, n_users: int, logs: list[Log], seed: int = 0, **options) -> AlternatingLeastSquares:
    rec = AlternatingLeastSquares(**options)
    rec.setup(RecommenderContext(items, n_users, K, Keys(seed), "treatment"))
    for log in logs:
        rec.fit(log)
    return rec


def test_als_beats_popularity_on_a_planted_low_rank_model():
    items, prob, log = planted()
    n_users = prob.shape[0]
    users = np.arange(n_users)
    als = fitted(items, n_users, [log])
    pop = fitted(items, n_users, [log], min_interactions=10**9)  # everyone on the popularity fallback
    ctr_als = prob[users[:, None], als.recommend(batch_for(users)).items].mean()
    ctr_pop = prob[users[:, None], pop.recommend(batch_for(users)).items].mean()
    # 500 users x 5 slots: the per-user CTR of a slate has SD ~0.1, so the SE of a mean is ~0.005
    assert ctr_als > ctr_pop + 0.03, (ctr_als, ctr_pop)


def test_als_is_byte_identical_across_runs_and_thread_counts():
    items, prob, log = planted(n_requests=6000)
    more = Log.concat([log, _log_from(prob, 3000, np.random.default_rng(5))])
    a = fitted(items, prob.shape[0], [log, more], threads=1)
    b = fitted(items, prob.shape[0], [log, more], threads=1)
    c = fitted(items, prob.shape[0], [log, more], threads=2)
    for other in (b, c):
        assert a.user_factors_.tobytes() == other.user_factors_.tobytes()
        assert a.item_factors_.tobytes() == other.item_factors_.tobytes()


def test_als_refits_start_from_the_previous_factors():
    items, prob, log = planted(n_requests=6000)
    more = Log.concat([log, _log_from(prob, 3000, np.random.default_rng(5))])
    warm = fitted(items, prob.shape[0], [log, more], warm_iterations=1)
    cold = fitted(items, prob.shape[0], [more], iterations=1)
    # one warm sweep continues a converged model; one cold sweep from the keyed start does not
    assert not np.allclose(warm.user_factors_, cold.user_factors_)
    again = fitted(items, prob.shape[0], [log, more], warm_iterations=1)
    assert np.array_equal(warm.item_factors_, again.item_factors_)
    # the warm fit stays as good as a long cold fit on the same data (held-out CTR of slates)
    long = fitted(items, prob.shape[0], [more], iterations=25)
    users = np.arange(prob.shape[0])
    ctr = [prob[users[:, None], r.recommend(batch_for(users)).items].mean() for r in (warm, long)]
    assert abs(ctr[0] - ctr[1]) < 0.02, ctr
