"""Online bandit recommenders: epsilon-greedy, Beta-Bernoulli Thompson sampling, LinUCB, linear TS.

All four learn from every serving window in ``update`` and rebuild their state from the arm's
cumulative log in ``fit`` (which therefore never double-counts a window already seen online). All
log the propensity of every shown (item, position):

- ``epsilon-greedy`` and ``linucb`` use :func:`make_slates`, whose propensities are exact;
- ``thompson`` and ``linear-thompson`` show the top-k of one posterior draw; the probability that an
  item lands at a position has no closed form, so it is estimated by Monte Carlo over ``M =
  propensity_samples`` posterior draws ranked the same way (:mod:`._montecarlo`: the logged value is
  ``max(hits, 1) / M``, ``action_probabilities`` gives ``hits / M``, standard error
  ``sqrt(p (1 - p) / M)``). The draws are keyed by ``(batch time, draw, item)`` on their own stream,
  so they are independent of the shown slate, shared by the requests of one batch and reproducible.

Every policy here implements ``action_probabilities`` (exact for the first two, Monte Carlo for the
samplers), so each can be the target of off-policy evaluation.

Both Thompson samplers rank a candidate set of at most ``max(candidates, k)`` items for a slate of
``k`` (``candidates`` None: every available item): the items with the highest optimistic score
(upper posterior quantile, or mean plus two posterior SDs). The candidate set is a deterministic
function of the state, so it is part of the policy (a retrieval stage before the sampling ranker, as
in production stacks) and the propensities are those of this two-stage policy. Items outside it are
essentially never in the top-k of a draw once the posterior has concentrated. A slate longer than
``candidates`` (``experiment.slate_size``, or the ``cutoff`` of ``offline-ranking``) widens the set
to the slate's length, as ``popularity``'s softmax ``candidates`` and the re-rankers' ``candidates``
do, so every slate is full; with ``k <= candidates`` the set, and so every slate, is unchanged.

References: L. Li, W. Chu, J. Langford, R. Schapire, "A contextual-bandit approach to personalized
news article recommendation", WWW 2010 (LinUCB, hybrid model); S. Agrawal, N. Goyal, "Thompson
sampling for contextual bandits with linear payoffs", ICML 2013; O. Chapelle, L. Li, "An empirical
evaluation of Thompson sampling", NIPS 2011.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from counterfeed._lazy import lazy_module
from counterfeed.core.contracts import Batch, Log, Options, Recommender, RecommenderContext, Slates
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import PluginError
from counterfeed.plugins.recommenders import _montecarlo as mc
from counterfeed.plugins.recommenders._slates import (EPSILON_DOC, EXPLORATION_DOC, TEMPERATURE_DOC,
                                                      make_slates, slate_propensities, topk)

_special = lazy_module("scipy.special")  # imported on first use: keeps start-up light

__all__ = ["EpsilonGreedy", "BetaThompsonSampling", "LinUCB", "LinearThompsonSampling"]


# --------------------------------------------------------------------------------------------
# Per-item Beta-Bernoulli counts (epsilon-greedy, Thompson)
# --------------------------------------------------------------------------------------------


class _ItemOptions(Options):
    prior_alpha: float = Field(1.0, gt=0.0, description="Beta prior pseudo-clicks")
    prior_beta: float = Field(1.0, gt=0.0, description="Beta prior pseudo-non-clicks")
    position_debias: bool = Field(False, description="count impressions by estimated examination")


class _ItemCounts(Recommender):
    """Clicks and impressions per (item, position); the posterior is ``Beta(alpha + c, beta + e - c)``.

    With ``position_debias`` the impressions ``e`` of an item are weighted by the examination
    probability of their position relative to the top, estimated from all clicks as
    ``w_j = CTR_j / CTR_0`` (clicks over expected clicks, Chapelle & Zhang 2009's COEC).
    """

    def setup(self, ctx: RecommenderContext) -> None:
        self.ctx_ = ctx
        self.k_ = max(int(ctx.slate_size), 1)
        self.impressions_ = np.zeros((ctx.items.n, self.k_))
        self.clicks_ = np.zeros((ctx.items.n, self.k_))

    def _add(self, log: Log) -> None:
        if len(log) == 0:
            return
        n_items = self.ctx_.items.n
        ok = (log.item >= 0) & (log.item < n_items)
        cell = log.item[ok] * self.k_ + np.clip(log.position[ok], 0, self.k_ - 1)
        size = n_items * self.k_
        self.impressions_ += np.bincount(cell, minlength=size).reshape(n_items, self.k_)
        self.clicks_ += np.bincount(cell, weights=log.click[ok].astype(np.float64),
                                    minlength=size).reshape(n_items, self.k_)

    def fit(self, log: Log) -> None:
        """Rebuild the counts from the arm's cumulative log."""
        self.impressions_[:] = 0.0
        self.clicks_[:] = 0.0
        self._add(log)

    def update(self, feedback: Log) -> None:
        self._add(feedback)

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Beta parameters ``(a, b)`` of every item's click probability."""
        o = self.options
        clicks = self.clicks_.sum(axis=1)
        if o.position_debias:
            ctr = (self.clicks_.sum(axis=0) + 1.0) / (self.impressions_.sum(axis=0) + 2.0)
            exposure = self.impressions_ @ (ctr / ctr[0])
        else:
            exposure = self.impressions_.sum(axis=1)
        return o.prior_alpha + clicks, o.prior_beta + np.maximum(exposure - clicks, 0.0)


class EpsilonGreedy(_ItemCounts):
    """Epsilon-greedy on per-item posterior-mean click-through rates.

    Score ``(alpha + c_i) / (alpha + beta + e_i)``; the greedy slate is its top-k, and each position
    is replaced with probability ``epsilon`` by a uniform draw from the other available items
    (exact propensities ``1 - epsilon`` and ``epsilon / m``, see ``_slates``). Reference: R. Sutton,
    A. Barto, "Reinforcement Learning: An Introduction", 2nd ed., 2018, section 2.2.
    """

    name = "epsilon-greedy"
    stochastic = True

    class Options(_ItemOptions):
        epsilon: float = Field(0.1, ge=0.0, le=1.0, description=EPSILON_DOC)

    def scores(self) -> np.ndarray:
        a, b = self.posterior()
        return a / (a + b)

    def recommend(self, batch: Batch) -> Slates:
        return make_slates(batch, self.scores(), "epsilon", epsilon=self.options.epsilon)

    def action_probabilities(self, batch: Batch, items: np.ndarray) -> np.ndarray:
        """Exact (``1 - epsilon``, ``epsilon / m`` or 0; see ``_slates.slate_propensities``)."""
        return slate_propensities(batch, self.scores(), "epsilon", items, epsilon=self.options.epsilon)


class BetaThompsonSampling(_ItemCounts):
    """Thompson sampling with a Beta-Bernoulli posterior per item; the slate is the top-k of one draw.

    Request ``r`` draws ``theta_ri = F^{-1}_{Beta(a_i, b_i)}(U_ri)`` with ``U`` keyed by
    ``(user, session, item)``; the slate is the top-k of ``theta_r`` over the candidate set (the
    ``candidates`` items with the highest 99.9% posterior quantile). The posterior is shared by all
    users, so the Monte Carlo propensities (module docstring) are computed once per batch.
    """

    name = "thompson"
    stochastic = True

    class Options(_ItemOptions):
        propensity_samples: int = Field(200, ge=1, le=100_000, description="Monte Carlo draws M")
        candidates: int | None = Field(50, ge=1, description="items ranked by the sampler")

    #: the conformance suite compares propensities with 1500 draws: make the MC error negligible
    conformance_options = {"propensity_samples": 20_000}

    def candidate_set(self, available: np.ndarray, a: np.ndarray, b: np.ndarray, k: int = 0) -> np.ndarray:
        """The ``max(candidates, k)`` available items with the highest upper quantile (all when fewer):
        a slate of ``k`` items is filled even when ``candidates`` is smaller (module docstring)."""
        c = self.options.candidates
        if c is None or available.size <= max(c, k):
            return available
        c = max(c, k)
        upper = _special.betaincinv(a[available], b[available], 0.999)
        return np.sort(available[topk(upper, c)])

    def _sample(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """(candidates, Beta a, Beta b of the candidates, (c, k) Monte Carlo hit table, k) for a batch."""
        a, b = self.posterior()
        cand = self.candidate_set(mc.available_ids(batch, a.size), a, b, batch.slate_size)
        k = min(batch.slate_size, cand.size)
        ac, bc = a[cand], b[cand]
        m = np.arange(self.options.propensity_samples)[:, None]
        u_mc = batch.stream.child("thompson-mc").uniform(m, mc.time_key(batch.time), cand[None, :])
        mc_top = mc.ranked_positions(_special.betaincinv(ac, bc, u_mc), k)  # (M, k)
        return cand, ac, bc, mc.hit_table(mc_top[None], cand.size)[0], k

    def recommend(self, batch: Batch) -> Slates:
        cand, ac, bc, hits, k = self._sample(batch)
        u = batch.stream.child("thompson").uniform(batch.users[:, None], batch.sessions[:, None], cand[None, :])
        draws = _special.betaincinv(ac, bc, u)
        pos = mc.ranked_positions(draws, k)
        prop = mc.mc_propensities(hits, pos, self.options.propensity_samples)
        return Slates(cand[pos], prop, np.take_along_axis(draws, pos, axis=1))

    def action_probabilities(self, batch: Batch, items: np.ndarray) -> np.ndarray:
        """Monte Carlo ``hits / M`` (the draws of ``recommend``'s propensities); standard error
        ``sqrt(p (1 - p) / M)`` with ``M = propensity_samples``, shared by the batch's requests."""
        cand, _, _, hits, _ = self._sample(batch)
        return mc.lookup_probabilities(hits, cand, items, self.options.propensity_samples)


# --------------------------------------------------------------------------------------------
# Hybrid linear model (LinUCB, linear Thompson sampling)
# --------------------------------------------------------------------------------------------


class _LinearOptions(Options):
    features: Literal["auto", "vectors", "embeddings"] = Field(
        "auto", description="item features: latent vectors, text embeddings, or embeddings if present")
    dimensions: int = Field(16, ge=1, le=256, description="features kept (principal components)")
    ridge: float = Field(1.0, gt=0.0, description="ridge penalty on every coefficient")
    shrinkage: float = Field(1.0, ge=0.0, description="pseudo-clicks shrinking user features to 0")


class _HybridLinear(Recommender):
    """Ridge regression of clicks on ``phi(u, i) = z_u * x_i`` (elementwise) plus a per-item intercept.

    The model is ``click ~ theta . (z_u * x_i) + beta_i``: ``x_i`` are the item features (the top
    ``dimensions`` principal components of ``items.embeddings`` when ``features`` is
    ``embeddings``, or ``auto`` and the catalog has embeddings; else of ``items.vectors``), scaled to unit mean norm; ``z_u`` is the
    user's feature, the mean of the features of the items they clicked, shrunk to 0 by
    ``shrinkage`` pseudo-clicks (a new user's ``z`` is 0 and gets the item intercepts alone).
    ``theta`` is shared across users and items; ``beta_i`` is item i's own intercept: the hybrid
    model of Li et al. (2010) with a one-dimensional per-item part. With ridge ``lambda`` on all
    coefficients, per-item sums ``n_i, B_i = sum phi, r_i = sum click`` and shared sums
    ``S = sum phi phi^T, b = sum click phi``, the solution is

    ``A_i = lambda + n_i``, ``A0 = lambda I + S - sum_i B_i B_i^T / A_i``,
    ``theta = A0^{-1} (b - sum_i B_i r_i / A_i)``, ``beta_i = (r_i - B_i . theta) / A_i``,

    and with unit noise variance the posterior is ``theta ~ N(theta, A0^{-1})``,
    ``beta_i | theta ~ N((r_i - B_i . theta) / A_i, 1 / A_i)``, so the score's variance is
    ``w_ui = (phi - c_i)^T A0^{-1} (phi - c_i) + 1 / A_i`` with ``c_i = B_i / A_i``.
    A window's impressions use the user features from before that window.
    """

    def check_scenario(self, scenario: Any, catalog: Any, field: str) -> None:
        """``features: embeddings`` needs a catalog plugin whose items carry embeddings (its
        ``CatalogTags.text``), as ``text-embedding`` does; ``auto`` falls back to the latent vectors."""
        if self.options.features == "embeddings" and not catalog.tags.text:
            raise scenario.error(f"recommender '{self.name}' with features: embeddings needs a catalog with text "
                                 f"embeddings (e.g. 'synthetic-text' or 'table'); catalog '{catalog.name}' has "
                                 "none: use features: vectors (or auto)", f"{field}.features")

    def setup(self, ctx: RecommenderContext) -> None:
        self.ctx_ = ctx
        o = self.options
        use_emb = o.features == "embeddings" or (o.features == "auto" and ctx.items.embeddings is not None)
        if use_emb and ctx.items.embeddings is None:
            raise PluginError("features='embeddings' but the catalog has no text embeddings",
                              plugin=self.name, hook="setup")
        raw = np.asarray(ctx.items.embeddings if use_emb else ctx.items.vectors, dtype=np.float64)
        if raw.shape[1] > o.dimensions:
            centered = raw - raw.mean(axis=0)
            _, _, vt = np.linalg.svd(centered, full_matrices=False)
            raw = centered @ vt[:o.dimensions].T
        norm = np.linalg.norm(raw, axis=1).mean()
        self.x_ = raw / (norm if norm > 0 else 1.0)
        self._reset()

    def _reset(self) -> None:
        n_items, d = self.x_.shape
        self.zsum_ = np.zeros((self.ctx_.n_users, d))
        self.zcount_ = np.zeros(self.ctx_.n_users)
        self.S_, self.b_ = np.zeros((d, d)), np.zeros(d)
        self.n_, self.B_, self.r_ = np.zeros(n_items), np.zeros((n_items, d)), np.zeros(n_items)
        self._solve()

    def user_features(self, users: np.ndarray) -> np.ndarray:
        return self.zsum_[users] / (self.zcount_[users] + self.options.shrinkage)[:, None].clip(1e-12)

    def _add(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray, z: np.ndarray) -> None:
        phi = z * self.x_[items]
        n_items = self.x_.shape[0]
        self.S_ += phi.T @ phi
        self.b_ += clicks @ phi
        self.n_ += np.bincount(items, minlength=n_items)
        self.r_ += np.bincount(items, weights=clicks, minlength=n_items)
        self.B_ += mc.group_sum(items, phi, n_items)

    def _add_clicks(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray) -> None:
        hit = clicks > 0
        n_users = self.ctx_.n_users
        self.zsum_ += mc.group_sum(users[hit], self.x_[items[hit]], n_users)
        self.zcount_ += np.bincount(users[hit], minlength=n_users)

    def _solve(self) -> None:
        lam = self.options.ridge
        a_i = lam + self.n_
        c = self.B_ / a_i[:, None]
        a0 = lam * np.eye(self.x_.shape[1]) + self.S_ - self.B_.T @ c
        self.cov_ = np.linalg.inv(a0)
        self.cov_ = (self.cov_ + self.cov_.T) / 2
        self.theta_ = self.cov_ @ (self.b_ - c.T @ self.r_)
        self.a_i_, self.c_ = a_i, c
        self.beta_ = (self.r_ - self.B_ @ self.theta_) / a_i

    def _valid(self, log: Log) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        ok = ((log.item >= 0) & (log.item < self.x_.shape[0]) & (log.user >= 0)
              & (log.user < self.ctx_.n_users))
        return log.user[ok], log.item[ok], log.click[ok].astype(np.float64), log.time[ok]

    def update(self, feedback: Log) -> None:
        users, items, clicks, _ = self._valid(feedback)
        if users.size == 0:
            return
        self._add(users, items, clicks, self.user_features(users))
        self._add_clicks(users, items, clicks)
        self._solve()

    def fit(self, log: Log) -> None:
        """Replay the cumulative log: each impression uses the user's clicks strictly before it."""
        self._reset()
        users, items, clicks, time = self._valid(log)
        if users.size == 0:
            return
        order = np.lexsort((time, users))
        users, items, clicks, time = users[order], items[order], clicks[order], time[order]
        cx = np.cumsum(self.x_[items] * clicks[:, None], axis=0)
        cn = np.cumsum(clicks)
        row = np.arange(users.size)
        new_user = np.r_[True, users[1:] != users[:-1]]
        new_time = new_user | np.r_[True, time[1:] != time[:-1]]
        user_start = np.maximum.accumulate(np.where(new_user, row, 0))
        time_start = np.maximum.accumulate(np.where(new_time, row, 0))
        zero = np.zeros((1, cx.shape[1]))
        cx0, cn0 = np.vstack([zero, cx]), np.r_[0.0, cn]  # cx0[j] = sum over rows < j
        zsum = cx0[time_start] - cx0[user_start]
        zcnt = cn0[time_start] - cn0[user_start]
        z = zsum / np.clip(zcnt + self.options.shrinkage, 1e-12, None)[:, None]
        self._add(users, items, clicks, z)
        self._add_clicks(users, items, clicks)
        self._solve()

    def mean_and_width(self, z: np.ndarray, items: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(n, n_items) posterior mean and SD (unit noise) of every item's score for users ``z``."""
        x = self.x_ if items is None else self.x_[items]
        c = self.c_ if items is None else self.c_[items]
        a_i = self.a_i_ if items is None else self.a_i_[items]
        beta = self.beta_ if items is None else self.beta_[items]
        mean = z @ (x * self.theta_).T + beta
        P, d = self.cov_, x.shape[1]
        zz = (z[:, :, None] * z[:, None, :] * P).reshape(-1, d * d)
        quad = zz @ (x[:, :, None] * x[:, None, :]).reshape(-1, d * d).T
        cross = z @ (x * (c @ P)).T
        own = np.einsum("id,de,ie->i", c, P, c) + 1.0 / a_i
        return mean, np.sqrt(np.maximum(quad - 2.0 * cross + own, 0.0))


class LinUCB(_HybridLinear):
    """Hybrid LinUCB: score ``mean_ui + alpha * w_ui`` (see :class:`_HybridLinear` for the model).

    Deterministic given its state (top-k, propensity 1) unless ``exploration`` adds epsilon or
    softmax exploration on the UCB scores, with exact propensities. Reference: Li et al. (2010).
    """

    name = "linucb"
    stochastic = True

    class Options(_LinearOptions):
        alpha: float = Field(0.5, ge=0.0, description="width of the confidence bonus")
        exploration: Literal["none", "epsilon", "softmax"] = Field("none", description=EXPLORATION_DOC)
        epsilon: float = Field(0.1, ge=0.0, le=1.0, description=EPSILON_DOC)
        temperature: float = Field(0.1, gt=0.0, description=TEMPERATURE_DOC)

    def scores(self, users: np.ndarray) -> np.ndarray:
        mean, width = self.mean_and_width(self.user_features(users))
        return mean + self.options.alpha * width

    def recommend(self, batch: Batch) -> Slates:
        o = self.options
        return make_slates(batch, self.scores(batch.users), o.exploration, epsilon=o.epsilon,
                           temperature=o.temperature)

    def action_probabilities(self, batch: Batch, items: np.ndarray) -> np.ndarray:
        """Exact, from the UCB scores and the exploration scheme (``_slates.slate_propensities``)."""
        o = self.options
        return slate_propensities(batch, self.scores(batch.users), o.exploration, items, epsilon=o.epsilon,
                                  temperature=o.temperature)


class LinearThompsonSampling(_HybridLinear):
    """Linear Thompson sampling on the hybrid model: the slate is the top-k of one posterior draw.

    Request ``r`` draws ``theta_r = theta + v L eps_r`` (``L L^T = A0^{-1}``, ``eps`` keyed by
    ``(user, session, coordinate)``) and ``beta_ri = (r_i - B_i . theta_r) / A_i + v e_ri / sqrt(A_i)``
    (``e`` keyed by ``(user, session, item)``), scores ``theta_r . (z_u * x_i) + beta_ri`` over its
    candidate set (the ``candidates`` items with the highest ``mean + 2 v w``) and shows the top-k.
    ``v = scale`` is the posterior scale (the noise SD of Agrawal & Goyal, 2013). Propensities by
    Monte Carlo (module docstring).
    """

    name = "linear-thompson"
    stochastic = True

    class Options(_LinearOptions):
        scale: float = Field(0.5, gt=0.0, description="posterior scale v")
        propensity_samples: int = Field(200, ge=1, le=100_000, description="Monte Carlo draws M")
        candidates: int | None = Field(50, ge=1, description="items ranked by the sampler per request")

    #: the conformance suite compares propensities with 1500 draws: make the MC error negligible
    conformance_options = {"propensity_samples": 20_000}

    def _design(self, z: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``score = G . theta + offset + v e / sqrt(A_i)`` for candidates ``cand`` (n, C) of users ``z``.

        Substituting ``beta_i = (r_i - B_i . theta) / A_i + noise`` gives ``G = z * x_i - c_i``
        (n, C, d) and ``offset = r_i / A_i``; returns ``G``, ``offset`` and ``1 / sqrt(A_i)``.
        """
        G = z[:, None, :] * self.x_[cand] - self.c_[cand]
        return G, self.r_[cand] / self.a_i_[cand], 1.0 / np.sqrt(self.a_i_[cand])

    def _solve(self) -> None:
        super()._solve()
        self.chol_ = np.linalg.cholesky(self.cov_ + 1e-12 * np.eye(self.cov_.shape[0]))

    def _candidates(self, batch: Batch):
        """(available ids, user features z, candidates (n, C), k, and ``_design``'s G, offset, 1/sd)."""
        o = self.options
        avail = mc.available_ids(batch, self.x_.shape[0])
        z = self.user_features(batch.users)
        mean, width = self.mean_and_width(z, avail)
        c = avail.size if o.candidates is None else min(max(o.candidates, batch.slate_size), avail.size)
        cand = avail[topk(mean + 2.0 * o.scale * width, c)]  # (n, C)
        return avail, z, cand, min(batch.slate_size, c), self._design(z, cand)

    def _hits(self, batch: Batch, avail, z, cand, k, design) -> np.ndarray:
        """(n, C, k) Monte Carlo hit tables of the requests (module docstring)."""
        o = self.options
        G, offset, inv_sd = design
        M, tkey, v, c, d = o.propensity_samples, mc.time_key(batch.time), o.scale, cand.shape[1], self.x_.shape[1]
        m = np.arange(M)[:, None]
        eps_mc = batch.stream.child("lints-mc-theta").normal(m, tkey, np.arange(d)[None, :])
        theta_mc = self.theta_ + v * eps_mc @ self.chol_.T  # (M, d), shared by the batch
        e_mc = batch.stream.child("lints-mc-beta").normal(m, tkey, avail[None, :]).T  # (|avail|, M)
        # requests with the same user features and candidates share their Monte Carlo rankings
        key = np.concatenate([z, cand.astype(np.float64)], axis=1)
        first, group = np.unique(key, axis=0, return_index=True, return_inverse=True)[1:]
        col = np.searchsorted(avail, cand[first])
        hits = np.empty((first.size, c, k))
        chunk = max(1, 4_000_000 // max(M * c, 1))
        for lo in range(0, first.size, chunk):
            rows = first[lo:lo + chunk]
            sc = G[rows] @ theta_mc.T + offset[rows, :, None] + v * e_mc[col[lo:lo + chunk]] * inv_sd[rows, :, None]
            mc_top = mc.ranked_positions(np.ascontiguousarray(sc.transpose(0, 2, 1)), k)  # (g, M, k)
            hits[lo:lo + rows.size] = mc.hit_table(mc_top, c)
        return hits[group.ravel()]

    def recommend(self, batch: Batch) -> Slates:
        avail, z, cand, k, design = self._candidates(batch)
        G, offset, inv_sd = design
        u, s, v = batch.users[:, None], batch.sessions[:, None], self.options.scale
        eps = batch.stream.child("lints-theta").normal(u, s, np.arange(self.x_.shape[1])[None, :])
        e = batch.stream.child("lints-beta").normal(u, s, cand)
        theta = self.theta_ + v * eps @ self.chol_.T  # (n, d)
        draws = np.einsum("ncd,nd->nc", G, theta) + offset + v * e * inv_sd
        pos = mc.ranked_positions(draws, k)
        hits = self._hits(batch, avail, z, cand, k, design)
        prop = mc.mc_propensities(hits, pos, self.options.propensity_samples)
        return Slates(np.take_along_axis(cand, pos, axis=1), prop, np.take_along_axis(draws, pos, axis=1))

    def action_probabilities(self, batch: Batch, items: np.ndarray) -> np.ndarray:
        """Monte Carlo ``hits / M`` per request (the draws of ``recommend``'s propensities); standard
        error ``sqrt(p (1 - p) / M)`` with ``M = propensity_samples``."""
        avail, z, cand, k, design = self._candidates(batch)
        hits = self._hits(batch, avail, z, cand, k, design)
        return mc.lookup_probabilities(hits, cand, items, self.options.propensity_samples)


@hookimpl
def register_recommenders(register):
    for cls in (EpsilonGreedy, BetaThompsonSampling, LinUCB, LinearThompsonSampling):
        register(cls)
