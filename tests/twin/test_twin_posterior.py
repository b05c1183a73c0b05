"""The user factors' posterior (counterfeed.twin.posterior): exact information, and draws that restore
the population's spread on synthetic MNL logs whose users are known."""

from __future__ import annotations

import numpy as np
import torch

from counterfeed.twin.clicks import ClickFit
from counterfeed.twin.mnl import SessionData, _eta, _session_ll
from counterfeed.twin.posterior import user_information, user_posterior

THETA = np.array([1.0, 0.85, 0.7, 0.6, 0.5])


def _mnl_log(rng, P, V, b, sessions_per_user, k=5, max_clicks=1):
    """Sessions of ``k`` distinct random items; clicks by the attention MNL (no-click utility 0)."""
    n_users = P.shape[0]
    n_items = V.shape[0]
    n_s = n_users * sessions_per_user
    user = np.repeat(np.arange(n_users), sessions_per_user)
    items = np.argsort(rng.random((n_s, n_items)), axis=1)[:, :k]
    util = np.einsum("sd,skd->sk", P[user], V[items]) + b[items] + np.log(THETA)[None, :]
    clicks = np.zeros((n_s, k))
    avail = np.ones((n_s, k), bool)
    alive = np.ones(n_s, bool)  # a round that picks the no-click option ends the session
    for _ in range(max_clicks):
        g = rng.gumbel(size=(n_s, k + 1))
        val = np.c_[np.where(avail, util, -np.inf), np.zeros(n_s)] + g
        pick = val.argmax(1)
        hit = (pick < k) & alive
        alive = hit
        clicks[np.flatnonzero(hit), pick[hit]] = 1
        avail[np.flatnonzero(hit), pick[hit]] = False
    session = np.repeat(np.arange(n_s), k)
    position = np.tile(np.arange(k), n_s)
    data = SessionData(session, position, items.ravel(), clicks.ravel(), np.zeros(n_s * k), np.ones(n_s * k),
                       user[session], n_s, k)
    return data


def test_information_is_the_exact_gradient_and_hessian_for_single_clicks():
    # one click at most: each session is one or two logit rounds, whose Hessian in P_u does not depend on
    # the outcome, so the Fisher information is the exact negative Hessian (no tolerance beyond float32)
    rng = np.random.default_rng(3)
    n_users, n_items, d = 4, 12, 3
    P, V = rng.normal(0, 0.7, (n_users, d)), rng.normal(0, 1.0, (n_items, d))
    b = rng.normal(-1.0, 0.5, n_items)
    data = _mnl_log(rng, P, V, b, 25)
    G, F = user_information(data, P, V, b, 0.0, THETA, max_clicks=1)

    def total(p):
        eta = _eta(data, torch.arange(data.n), p, torch.as_tensor(V, dtype=torch.float64),
                   torch.as_tensor(b, dtype=torch.float64), 0.0).to(torch.float64)
        return _session_ll(eta, data.shown, data.click, torch.as_tensor(THETA, dtype=torch.float64), 0, 1,
                           None).sum()

    p = torch.as_tensor(P, dtype=torch.float64)
    grad = torch.autograd.functional.jacobian(total, p).numpy()
    hess = torch.autograd.functional.hessian(total, p).numpy()  # (U, d, U, d), block diagonal
    np.testing.assert_allclose(G, grad, rtol=1e-4, atol=1e-4)
    for u in range(n_users):
        np.testing.assert_allclose(F[u], -hess[u, :, u, :], rtol=1e-4, atol=1e-4)


def test_posterior_draws_have_the_population_spread_the_points_lack():
    rng = np.random.default_rng(11)
    n_users, n_items, d = 2000, 40, 2
    mu, sd = np.array([0.3, -0.2]), np.array([0.8, 0.5])
    P = mu + sd * rng.standard_normal((n_users, d))
    V, b = rng.normal(0, 1.0, (n_items, d)), rng.normal(-1.5, 0.5, n_items)
    data = _mnl_log(rng, P, V, b, 30, max_clicks=2)
    # a shrunk point fit, as a held-out-chosen penalty gives: half the true factors plus noise
    point = 0.5 * P + 0.1 * rng.standard_normal(P.shape)
    fit = ClickFit(model="mnl", theta=THETA, kappa=1.0, bias=b, user=point.astype(np.float32),
                   item=V.astype(np.float32), satiation_weight=0.0)
    post = user_posterior(data, fit, max_clicks=2)
    draws = post.mean + np.einsum("ude,ue->ud", post.chol, rng.standard_normal((n_users, d)))
    # 2000 users: an SD estimated from them has a sampling error of about sd / sqrt(2 * 2000) = 1.6%; the
    # tolerance (10%) adds the Laplace approximation of 30 sessions per user
    # (with 12 sessions it underestimates the SD by 5-12%, the known small-cluster bias of Laplace/PQL
    # in binary random-effects models; Breslow and Clayton 1993)
    np.testing.assert_allclose(np.sqrt(np.diag(post.sigma)), sd, rtol=0.10)
    np.testing.assert_allclose(draws.std(0), sd, rtol=0.10)
    np.testing.assert_allclose(post.mu, mu, atol=0.06)  # sampling error of a mean about 0.02
    # the posterior means alone are shrunk (their variance is Sigma less the mean posterior variance):
    # simulating them, as the points before, would understate the population's spread
    assert np.all(post.mean.std(0) < 0.95 * np.sqrt(np.diag(post.sigma)))


def test_twin_population_draws_each_user_from_its_posterior(tmp_path):
    from counterfeed.core.randomness import Keys
    from counterfeed.twin.model import twin_population
    from counterfeed.twin.store import Replicate, write_twin

    rng = np.random.default_rng(5)
    n_fit, d = 50, 3
    sd = np.array([0.5, 1.0, 2.0])
    mean = np.zeros((n_fit, d)) + np.array([1.0, -1.0, 0.0])
    chol = np.broadcast_to(np.diag(sd), (n_fit, d, d)).copy()
    rep = dict(item=rng.normal(0, 1, (10, d)), bias=np.zeros(10), topic=np.zeros(10, np.int64), user=mean,
               activity=np.ones(n_fit), weight=np.ones(n_fit))
    twin = write_twin(tmp_path / "t", {"dims": d, "replicates": [{}]}, [Replicate(**rep, user_chol=chol)])
    points = write_twin(tmp_path / "p", {"dims": d, "replicates": [{}]}, [Replicate(**rep)])
    a = twin_population(str(twin), 0, 20_000, Keys(1))
    b = twin_population(str(twin), 0, 20_000, Keys(1))
    np.testing.assert_array_equal(a.preferences, b.preferences)  # keyed: the same users in every world
    # 20,000 draws: the SD of an SD estimate is sd / sqrt(2 * 20,000) = 0.5% and of a mean sd / 141
    np.testing.assert_allclose(a.preferences.std(0), sd, rtol=0.03)
    np.testing.assert_allclose(a.preferences.mean(0), mean[0], atol=0.03)
    assert abs(np.corrcoef(a.preferences.T)[0, 2]) < 0.03  # independent coordinates (C is diagonal here)
    # without posterior covariances the twin's users are the points, as before
    np.testing.assert_array_equal(twin_population(str(points), 0, 100, Keys(1)).preferences, mean[:1].repeat(100, 0))


def test_a_fitted_mnl_twin_carries_its_users_posterior(twin_dir):
    from counterfeed.twin.store import read_meta, read_replicate

    meta = read_meta(twin_dir)
    post = meta["factorization"]["user_posterior"]
    if meta["examination"]["model"] != "mnl":  # PBM/cascade twins simulate their points
        assert post is None and read_replicate(twin_dir, 0).user_chol is None
        return
    for b in range(len(meta["replicates"])):
        rep = read_replicate(twin_dir, b)
        assert rep.user_chol.shape == rep.user.shape + rep.user.shape[1:]
    # the population's spread is at least the posterior means' (Sigma = var(m) + mean C at EM's fixed point)
    assert np.all(np.array(post["population_sd"]) >= 0.99 * np.array(post["fitted_sd"]))


def test_appeal_is_recalibrated_for_the_drawn_users():
    from counterfeed.twin.posterior import _first_round_clicks, recalibrate_appeal

    rng = np.random.default_rng(13)
    n_users, n_items, d = 1500, 30, 2
    P = rng.normal(0, 1.0, (n_users, d))
    V, b = rng.normal(0, 1.0, (n_items, d)), rng.normal(-2.0, 0.5, n_items)
    data = _mnl_log(rng, P, V, b, 12, max_clicks=1)
    point = 0.4 * P  # shrunk points with the true appeal: calibrated at the points, not for the draws
    fit = ClickFit(model="mnl", theta=THETA, kappa=1.0, bias=b, user=point.astype(np.float32),
                   item=V.astype(np.float32), satiation_weight=0.0)
    post = user_posterior(data, fit, max_clicks=1)
    logth = np.log(THETA)
    draws = post.mean + np.einsum("ude,ue->ud", post.chol, rng.standard_normal((n_users, d)))  # fresh draws
    at_points = _first_round_clicks(data, point, V, b, 0.0, logth, n_items)
    before = _first_round_clicks(data, draws, V, b, 0.0, logth, n_items)
    after = _first_round_clicks(data, draws, V, recalibrate_appeal(data, fit, post), 0.0, logth, n_items)
    # the draws' spread raises the clicks with the old appeal; recalibrated, each item's expected clicks
    # are the points' again, up to the Monte Carlo noise of one fresh draw per user (items have ~2,400
    # impressions from ~1,000 users: a few percent)
    assert before.sum() > 1.05 * at_points.sum()
    assert abs(after.sum() / at_points.sum() - 1) < 0.02
    assert np.median(np.abs(after / at_points - 1)) < 0.04
