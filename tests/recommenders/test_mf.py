"""Matrix factorization: learns a planted low-rank click model, is deterministic, logs exact propensities."""

from __future__ import annotations

import numpy as np
import pydantic
import pytest

from counterfeed.core.contracts import Batch, Items, Log, RecommenderContext
from counterfeed.core.randomness import Keys
from counterfeed.plugins.recommenders import matrix_factorization
from counterfeed.plugins.recommenders.matrix_factorization import MatrixFactorization

K = 5


def planted(n_users: int = 500, n_items: int = 60, n_requests: int = 12_000, seed: int = 0):
    """A rank-3 logistic click model and a log of uniformly random slates drawn from it."""
    rng = np.random.default_rng(seed)
    pref = rng.normal(size=(n_users, 3))
    vec = rng.normal(size=(n_items, 3))
    quality = rng.normal(scale=0.5, size=n_items)
    prob = 1.0 / (1.0 + np.exp(-(pref @ vec.T + quality - 3.0)))
    items = Items(vec, quality, np.zeros(n_items, np.int64), 1, np.zeros(n_items))
    return items, prob, _log_from(prob, n_requests, rng)


def _log_from(prob: np.ndarray, n_requests: int, rng: np.random.Generator) -> Log:
    n_users, n_items = prob.shape
    users = rng.integers(0, n_users, n_requests)
    shown = np.argsort(rng.random((n_requests, n_items)), axis=1)[:, :K]
    clicks = rng.random((n_requests, K)) < prob[users[:, None], shown]
    n = n_requests * K
    return Log(user=np.repeat(users, K), session=np.repeat(np.arange(n_requests), K),
               time=np.zeros(n), position=np.tile(np.arange(K), n_requests), item=shown.ravel(),
               click=clicks.ravel(), dwell=clicks.ravel() * 1.0, propensity=np.full(n, K / n_items))


def fitted(items: Items, n_users: int, log: Log, seed: int = 0, **options) -> MatrixFactorization:
    mf = MatrixFactorization(**options)
    mf.setup(RecommenderContext(items, n_users, K, Keys(seed), "treatment"))
    mf.fit(log)
    return mf


def batch_for(users: np.ndarray, sessions: np.ndarray | None = None, available=None, seed: int = 0) -> Batch:
    sessions = np.zeros_like(users) if sessions is None else sessions
    return Batch(users, sessions, 1.0, K, Keys(seed).stream("policy:treatment"), available)


@pytest.fixture(scope="module")
def world():
    return planted()


def test_beats_popularity_on_planted_low_rank_model(world):
    items, prob, log = world
    n_users = prob.shape[0]
    users = np.arange(n_users)
    mf = fitted(items, n_users, log)
    pop = fitted(items, n_users, log, min_interactions=10**9)  # everyone falls back to popularity
    assert not pop.known_.any()
    mf_items = mf.recommend(batch_for(users)).items
    pop_items = pop.recommend(batch_for(users)).items
    # true click-through of the recommended slates under the planted model
    mf_ctr = prob[users[:, None], mf_items].mean()
    pop_ctr = prob[users[:, None], pop_items].mean()
    assert mf_ctr > pop_ctr + 0.05, (mf_ctr, pop_ctr)
    # held-out clicks (a fresh log): MF ranks the clicked items higher than popularity does.
    held = _log_from(prob, 6000, np.random.default_rng(99))
    clicked = held.click
    u, i = held.user[clicked], held.item[clicked]

    def mean_rank(rec: MatrixFactorization) -> float:
        s = rec.scores(u)
        return float(((s > s[np.arange(u.size), i][:, None]).sum(axis=1)).mean())

    # ~1900 held-out clicks; ranks over 60 items have SD ~17, so the SE of a mean is ~0.4 ranks
    assert mean_rank(mf) < mean_rank(pop) - 3.0


def test_scores_are_factor_scores_for_known_users_and_popularity_for_the_others(world):
    """A known user's row is ``factors . item factors + item bias``, any other's ``log(1 + clicks)``;
    a batch of known users only (one product, no copy) gives their rows bit for bit as a mixed batch
    does."""
    items, prob, log = world
    mf = fitted(items, prob.shape[0], log)
    mf.known_[::3] = False
    users = np.array([0, 1, 2, 3, 4, 5, 1, 7])
    s = mf.scores(users)
    for row, u in zip(s, users):
        want = mf.user_factors_[u] @ mf.item_factors_.T + mf.item_bias_ if mf.known_[u] else np.log1p(mf.clicks_)
        np.testing.assert_allclose(row, want, rtol=1e-12, atol=1e-12)
    known = mf.known_[users]
    assert known.any() and not known.all()
    np.testing.assert_array_equal(mf.scores(users[known]), s[known])


def test_deterministic_for_a_seed_and_different_across_seeds(world):
    items, prob, log = world
    n_users = prob.shape[0]
    a = fitted(items, n_users, log, seed=3, exploration="softmax", temperature=0.3)
    b = fitted(items, n_users, log, seed=3, exploration="softmax", temperature=0.3)
    c = fitted(items, n_users, log, seed=4, exploration="softmax", temperature=0.3)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    users = np.arange(50)
    sa, sb = a.recommend(batch_for(users, seed=3)), b.recommend(batch_for(users, seed=3))
    np.testing.assert_array_equal(sa.items, sb.items)
    np.testing.assert_array_equal(sa.propensities, sb.propensities)
    assert not np.array_equal(a.user_factors_, c.user_factors_)


@pytest.mark.parametrize("options", [
    {"exploration": "epsilon", "epsilon": 0.3},
    {"exploration": "softmax", "temperature": 0.5, "candidates": 20},
])
def test_logged_propensities_match_empirical_frequencies(world, options):
    items, prob, log = world
    mf = fitted(items, prob.shape[0], log, **options)
    n = 6000
    users = np.full(n, 7)  # one user, many sessions: the same policy state, independent keyed draws
    slates = mf.recommend(batch_for(users, np.arange(n)))
    for j in range(K):
        shown, counts = np.unique(slates.items[:, j], return_counts=True)
        for item, count in zip(shown, counts):
            p = slates.propensities[slates.items[:, j] == item, j]
            assert np.ptp(p) == 0.0  # one (item, position) has one propensity
            sd = np.sqrt(p[0] * (1 - p[0]) / n)
            # 5 binomial SDs: no false alarm over the few hundred (item, position) pairs checked
            assert abs(count / n - p[0]) <= 5 * sd + 1e-12, (j, item, count / n, p[0])


def test_never_recommends_unavailable_items_and_handles_cold_start(world):
    items, prob, log = world
    n_users = prob.shape[0]
    mf = fitted(items, n_users, log, exploration="epsilon", epsilon=0.5)
    available = np.ones(items.n, dtype=bool)
    available[::3] = False
    slates = mf.recommend(batch_for(np.arange(n_users), np.arange(n_users), available))
    assert available[slates.items].all()
    # a user with no clicks gets the popularity ranking, which update() moves
    cold = fitted(items, n_users, log.select(log.user != 0))
    assert not cold.known_[0]
    no_clicks = log.select((log.user != 1) | ~log.click)  # user 1 keeps impressions, loses clicks
    assert not fitted(items, n_users, no_clicks).known_[1]
    assert fitted(items, n_users, no_clicks, min_interactions=0).known_[1]
    before = cold.recommend(batch_for(np.array([0]))).items[0]
    target = int(np.argsort(cold.clicks_)[0])  # least clicked item
    fb = Log(np.zeros(5000, np.int64), np.zeros(5000, np.int64), np.ones(5000), np.zeros(5000, np.int64),
             np.full(5000, target), np.ones(5000, bool), np.ones(5000), np.ones(5000))
    cold.update(Log.empty())
    np.testing.assert_array_equal(cold.recommend(batch_for(np.array([0]))).items[0], before)
    cold.update(fb)
    assert cold.recommend(batch_for(np.array([0]))).items[0, 0] == target


def test_fit_on_empty_log_serves_popularity():
    items, prob, _ = planted(n_users=20, n_items=10, n_requests=10)
    mf = fitted(items, 20, Log.empty())
    slates = mf.recommend(batch_for(np.arange(20)))
    assert slates.items.shape == (20, K)
    np.testing.assert_array_equal(slates.propensities, 1.0)


@pytest.mark.parametrize("updates", [True, False])
def test_updates_false_freezes_the_popularity_fallback_between_fits(updates):
    # MF's fallback counts and the popularity recommender's counts move with update() unless updates: false
    from counterfeed.plugins.recommenders.basic import PopularityRecommender

    items, prob, log = planted(n_users=40, n_items=12, n_requests=300)
    mf = fitted(items, 40, log, updates=updates)
    pop = PopularityRecommender(updates=updates)
    pop.setup(RecommenderContext(items, 40, K, Keys(0), "control"))
    pop.fit(log)
    before = (mf.clicks_.copy(), pop.counts_.copy())
    more = _log_from(prob, 200, np.random.default_rng(9))
    mf.update(more)
    pop.update(more)
    moved = [not np.array_equal(b, a) for b, a in zip(before, (mf.clicks_, pop.counts_))]
    assert moved == [updates, updates]


@pytest.mark.parametrize(("options", "pattern"), [
    ({"factors": 0}, "factors"),
    ({"exploration": "boltzmann"}, "exploration"),
    ({"epsilon": 1.5}, "epsilon"),
    ({"temperature": 0}, "temperature"),
    ({"negatives": -1}, "negatives"),
    ({"factor": 8}, "factor"),
])
def test_bad_options(options, pattern):
    with pytest.raises(pydantic.ValidationError, match=pattern):
        MatrixFactorization(**options)


def test_registered_through_the_hook():
    seen = []
    matrix_factorization.register_recommenders(seen.append)
    assert seen == [MatrixFactorization] and MatrixFactorization.name == "matrix-factorization"


@pytest.mark.parametrize("kind", ["normal", "ties", "masked-inf", "constant"])
def test_compiled_topk_equals_the_numpy_selection(kind, monkeypatch):
    """The numba top-k (large score matrices) returns exactly the NumPy path's slates, ties by lower id."""
    from counterfeed.plugins.recommenders import _slates

    rng = np.random.default_rng(5)
    for _ in range(40):
        n, m = int(rng.integers(1, 60)), int(rng.integers(2, 1200))
        k = int(rng.integers(1, m))
        s = rng.normal(size=(n, m)) if kind == "normal" else rng.integers(0, 4, (n, m)).astype(float)
        if kind == "masked-inf":
            s[rng.random((n, m)) < 0.3] = -np.inf
        if kind == "constant":
            s[:] = 1.0
        available = None if rng.random() < 0.5 else rng.random(m) < 0.6
        monkeypatch.setattr(_slates, "_KERNEL_MIN", 1 << 62)
        expected = _slates.topk(s, k, available)
        monkeypatch.setattr(_slates, "_KERNEL_MIN", 0)
        np.testing.assert_array_equal(_slates.topk(s, k, available), expected)


def test_incremental_pair_counts_equal_a_recount(world):
    """Refits on a growing (cumulative) log count only the new rows, with the counts of a recount;
    a log that does not extend the previous one is recounted from scratch."""
    items, prob, log = world
    n_users = prob.shape[0]
    mf = fitted(items, n_users, log.select(np.arange(len(log)) < len(log) // 2))
    grid = mf.grid_[2]
    mf.fit(log)
    assert mf.grid_[2] is grid  # counted incrementally on the same grid
    fresh = fitted(items, n_users, log)
    users, its, clicks = log.user.astype(np.int64), log.item.astype(np.int64), log.click.astype(float)
    for a, b in zip(mf._pairs(users, its, clicks), fresh._pairs(users, its, clicks)):
        np.testing.assert_array_equal(a, b)
    shuffled = log.select(np.random.default_rng(1).permutation(len(log)))
    mf.fit(shuffled)  # not an extension: recounted
    assert mf.grid_[2] is not grid
    for a, b in zip(mf._pairs(users, its, clicks), fresh._pairs(users, its, clicks)):
        np.testing.assert_array_equal(a, b)


def test_click_counts_from_the_pairs_equal_the_rows_counts(world):
    """With 0/1 clicks (bool) the per-item clicks, the known users and the factors come from the
    unique pairs; a log whose clicks are another dtype is counted over its rows; both give the
    same floats. Rows naming no user or item of the world are left out either way."""
    from dataclasses import replace

    items, prob, log = world
    n_users = prob.shape[0]
    as_int = replace(log, click=log.click.astype(np.int8))
    extended = Log.concat([log, replace(log.select(np.arange(len(log)) < 2), user=np.array([n_users, 0]),
                                        item=np.array([0, items.n]))])  # an unknown user, an unknown item
    for options in ({}, {"min_interactions": 3}):
        a = fitted(items, n_users, log, **options)
        for other in (as_int, extended):
            b = fitted(items, n_users, other, **options)
            np.testing.assert_array_equal(a.clicks_, b.clicks_)
            assert a.clicks_.dtype == b.clicks_.dtype == np.float64
            np.testing.assert_array_equal(a.known_, b.known_)
            np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
            np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert 0 < a.known_.sum() < n_users  # min_interactions left some users unknown


def test_a_refit_after_the_logs_clicks_changed_in_place_is_a_fresh_fit(world):
    """A log's bool click column is not copied by ``fit``: changed in place between fits (tester),
    the refit still counts the new clicks (the counts kept between fits hold their own copy)."""
    from dataclasses import replace

    items, prob, log = world
    n_users = prob.shape[0]
    mine = replace(log, click=log.click.copy())
    mf = fitted(items, n_users, mine)
    mine.click[: len(mine) // 2] = False
    mf.fit(mine)
    fresh = fitted(items, n_users, replace(mine, click=mine.click.copy()))
    np.testing.assert_array_equal(mf.clicks_, fresh.clicks_)
    np.testing.assert_array_equal(mf.known_, fresh.known_)
    assert mf.clicks_.sum() == mine.click.sum()


def _adagrad_reference(U, V, acc_u, acc_v, pu, pi, wp, wn, perms, batch_size, lr, l2):
    """The update of the torch implementation this kernel replaced (5d66b26), in NumPy: per
    mini-batch, logits from the tables as they were at its start, per-sample gradients of the
    weighted logistic loss summed per distinct row (``np.add.at`` for torch's ``index_add_``), one
    Adagrad step per touched row; the bias column (last) unregularised. Returns each epoch's mean
    data term over pairs (``softplus`` by ``np.logaddexp``)."""
    f = U.shape[1] - 1
    losses = []
    for perm in perms:
        total_loss = 0.0
        for start in range(0, perm.size, batch_size):
            sel = perm[start:start + batch_size]
            u, i, p_w, n_w = pu[sel], pi[sel], wp[sel], wn[sel]
            p, q = U[u].copy(), V[i].copy()
            s = (p[:, :f] * q[:, :f]).sum(1) + p[:, f] + q[:, f]
            norm = max(float((p_w + n_w).sum()), 1e-9)
            g = (((p_w + n_w) / (1.0 + np.exp(-s.astype(np.float64))) - p_w) / norm)[:, None]
            s64 = s.astype(np.float64)
            total_loss += float((p_w * np.logaddexp(0.0, -s64) + n_w * np.logaddexp(0.0, s64)).sum()) / norm * sel.size
            reg = 2.0 * l2 / sel.size
            gp, gq = reg * p + g * q, reg * q + g * p
            gp[:, f] = g[:, 0]
            gq[:, f] = g[:, 0]
            for table, acc, rows, grad in ((U, acc_u, u, gp), (V, acc_v, i, gq)):
                total = np.zeros(table.shape, np.float64)
                np.add.at(total, rows, grad)
                touched = np.unique(rows)
                acc[touched] += (total[touched] ** 2).astype(acc.dtype)
                table[touched] -= (lr * total[touched] / np.sqrt(acc[touched])).astype(table.dtype)
        losses.append(total_loss / perm.size)
    return np.array(losses)


def test_compiled_adagrad_makes_the_reference_update():
    """The numba loop is the torch implementation's algorithm, not merely a fast one that also
    learns: on a small problem with duplicate rows within mini-batches, two epochs from the same
    start give the reference's factors to float32 rounding, and its mean loss per epoch."""
    from counterfeed.plugins.recommenders._compiled import adagrad_epochs

    rng = np.random.default_rng(3)
    n_users, n_items, f, n = 40, 25, 4, 900
    pu, pi = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    wp = (rng.random(n) < 0.3).astype(np.float32)
    wn = rng.integers(0, 3, n).astype(np.float32)
    U0 = (rng.standard_normal((n_users, f + 1)) * 0.1).astype(np.float32)
    V0 = (rng.standard_normal((n_items, f + 1)) * 0.1).astype(np.float32)
    perms = np.stack([rng.permutation(n) for _ in range(2)])
    tables = [(U0.copy(), V0.copy(), np.full_like(U0, 1e-8), np.full_like(V0, 1e-8)) for _ in range(2)]
    losses = np.zeros(2)
    adagrad_epochs(*tables[0], pu, pi, wp, wn, perms, 128, 0.2, 1e-2, losses)
    want_losses = _adagrad_reference(*tables[1], pu, pi, wp, wn, perms, 128, 0.2, 1e-2)
    np.testing.assert_allclose(losses, want_losses, rtol=1e-5)  # the diagnostic loss_, both signs of s
    assert np.abs(tables[1][0] - U0).max() > 1e-2 and np.abs(tables[1][1] - V0).max() > 1e-2  # they learned
    for got, want in zip(tables[0], tables[1]):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-6)


def test_the_diagnostic_loss_is_accurate_at_extreme_logits():
    """``loss_`` (each epoch's mean data term) is float64 without cancellation: a clicked pair at a
    logit of +20 loses softplus(-20) = 2.06e-9, not 0 (tester: the float32 form lost it), and the
    other extremes match ``np.logaddexp`` too."""
    from counterfeed.plugins.recommenders._compiled import adagrad_epochs

    for s, p, q in [(20.0, 1.0, 0.0), (12.0, 1.0, 0.0), (5.0, 1.0, 2.0), (-12.0, 0.0, 1.0), (-30.0, 1.0, 1.0),
                    (0.0, 1.0, 1.0)]:
        U = np.zeros((1, 3), np.float32)
        V = np.zeros((1, 3), np.float32)
        V[0, 2] = s  # the item bias: s = U . V + biases = s
        losses = np.zeros(1)
        adagrad_epochs(U, V, np.full_like(U, 1e-8), np.full_like(V, 1e-8), np.zeros(1, np.int64),
                       np.zeros(1, np.int64), np.array([p], np.float32), np.array([q], np.float32),
                       np.zeros((1, 1), np.int64), 64, 0.1, 0.0, losses)
        want = (p * np.logaddexp(0.0, -s) + q * np.logaddexp(0.0, s)) / (p + q)
        np.testing.assert_allclose(losses[0], want, rtol=1e-6)
