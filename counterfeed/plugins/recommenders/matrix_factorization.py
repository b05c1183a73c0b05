"""Implicit-feedback matrix factorization trained by a compiled (numba) loop, served with NumPy.

Model
-----
The click logit of user ``u`` for item ``i`` is

.. math:: s_{ui} = p_u^\\top q_i + b_i + c_u + g

with ``factors``-dimensional user and item vectors, item and user biases and a global bias.

Loss (weighted logistic, a.k.a. binomial log-loss on aggregated impressions)
---------------------------------------------------------------------------
The log is aggregated to unique ``(user, item)`` pairs with ``n`` impressions and ``c`` clicks. A
pair contributes ``c * softplus(-s) + w_shown * (n - c) * softplus(s)``: clicks are positives and
shown-but-not-clicked impressions are negatives. For every clicked pair, ``negatives`` items are
drawn uniformly from the items available at fit time and contribute ``softplus(s)`` each (sampled
implicit negatives, which teach the model about items the logging policy rarely showed). The loss
is averaged by total weight per mini-batch, plus ``l2`` times the mean squared norm of the touched
rows, minimized by mini-batch Adagrad (closed-form gradients, lazy row updates) over a few epochs,
in one compiled numba loop per fit on one thread (``threads`` is used by ``als``; the mini-batch
updates of this model are sequential). Until issue 20 the loop was torch tensor operations: the
same update, but about 0.4 s per daily refit of the quickstart, and a torch import in every
process that ran a world.

We chose the weighted logistic loss over BPR because shown-but-not-clicked impressions are real,
labelled negatives in a simulated log (BPR would discard their count information), and because
aggregating repeated impressions of a pair makes an epoch one pass over unique pairs, which keeps a
fit on a million impressions well under a second on one thread. ``fit_seconds_`` and ``loss_`` (the
mean loss of each epoch) record the last fit.

Serving
-------
After ``fit`` the weights are copied out to NumPy, so ``recommend`` is one matrix product. Users
with fewer than ``min_interactions`` clicks in the training log (or never seen) get the popularity
fallback score ``log(1 + clicks_i)``, where click counts come from the training log plus every
window passed to ``update`` (``update`` touches nothing else). Items absent from the training data
(e.g. arrived later) get a zero vector and the mean trained item bias. Exploration comes from
:func:`~counterfeed.plugins.recommenders._slates.make_slates` with exact propensities.

Reference: Y. Hu, Y. Koren, C. Volinsky, "Collaborative Filtering for Implicit Feedback Datasets",
ICDM 2008 (implicit feedback with confidence weights); C. Johnson, "Logistic Matrix Factorization
for Implicit Feedback Data", NIPS 2014 workshop (the logistic loss).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Literal

import numpy as np
from pydantic import Field

from counterfeed.core.contracts import Batch, Log, Options, Recommender, RecommenderContext, Slates
from counterfeed.core.hookspecs import hookimpl
from counterfeed.plugins.recommenders._slates import (EPSILON_DOC, EXPLORATION_DOC, TEMPERATURE_DOC,
                                                      make_slates, slate_propensities)

__all__ = ["MatrixFactorization", "FactorRecommender", "FactorOptions"]

_DENSE_CELLS = 1 << 24  # (user, item) grids up to this size are aggregated by counting, not sorting


class FactorOptions(Options):
    """Options every factor model shares: size, who is scored by the model, exploration, threads."""

    factors: int = Field(16, ge=1, le=512, description="latent dimensions")
    min_interactions: int = Field(1, ge=0, description="training clicks a user needs to be scored by the "
                                  "factors (0: any user with an impression)")
    exploration: Literal["none", "epsilon", "softmax"] = Field("none", description=EXPLORATION_DOC)
    epsilon: float = Field(0.1, ge=0.0, le=1.0, description=EPSILON_DOC)
    temperature: float = Field(0.5, gt=0.0, description=TEMPERATURE_DOC)
    candidates: int | None = Field(None, ge=1, description="softmax: items ranked before sampling")
    threads: int = Field(1, ge=1, le=64, description="threads during fit")
    updates: bool = Field(True, description="add each serving window's clicks to the popularity fallback "
                          "between fits (false: it stays that of the last fit)")


class FactorRecommender(Recommender):
    """Serving, popularity fallback and log bookkeeping shared by the factor models.

    A subclass implements ``_train(pairs, t_fit)`` on the unique (user, item) pairs of the valid
    rows of the fit log (:meth:`_pairs`) and sets ``user_factors_``, ``item_factors_`` and
    ``item_bias_``; scores are ``user_factors_[u] . item_factors_[i] + item_bias_[i]`` for known users and
    ``log(1 + clicks_i)`` for the others (see the module docstring).
    """

    stochastic = True
    Options = FactorOptions

    def setup(self, ctx: RecommenderContext) -> None:
        self.ctx_ = ctx
        n_items = ctx.items.n
        self.n_fits_ = 0
        self.clicks_ = np.zeros(n_items, dtype=np.float64)
        self.user_factors_ = np.zeros((ctx.n_users, self.options.factors))
        self.item_factors_ = np.zeros((n_items, self.options.factors))
        self.item_bias_ = np.zeros(n_items)
        self.known_ = np.zeros(ctx.n_users, dtype=bool)
        self.fit_seconds_ = 0.0
        self.grid_ = None  # the last fit's (keys, clicks, impression grid, click grid, cells): see _pairs

    # -- learning ------------------------------------------------------------------------------
    def fit(self, log: Log) -> None:
        """Retrain on ``log`` (the arm's cumulative log); resets the click counts."""
        start = time.perf_counter()
        ctx = self.ctx_
        n_items, n_users = ctx.items.n, ctx.n_users
        from counterfeed.core.native import within_range

        binary = log.click.dtype == np.bool_  # the simulation's clicks: no float copy of the column
        if within_range(log.user, n_users) and within_range(log.item, n_items):
            users, items = log.user.astype(np.int64, copy=False), log.item.astype(np.int64, copy=False)
            clicks, times = log.click if binary else log.click.astype(np.float64, copy=False), log.time
        else:  # rows naming no user or item of this world are left out
            ok = (log.user >= 0) & (log.user < n_users) & (log.item >= 0) & (log.item < n_items)
            users, items = log.user[ok].astype(np.int64), log.item[ok].astype(np.int64)
            clicks, times = log.click[ok] if binary else log.click[ok].astype(np.float64), log.time[ok]
        self.n_fits_ += 1
        pairs = self._pairs(users, items, clicks) if users.size else None
        if pairs is not None and binary:
            # 0/1 clicks: the per-item and per-user sums are the pairs' (exact integer sums in any
            # order, so the same floats as over the rows, from ~20x fewer entries)
            pu, pi, _, n_clk = pairs
            self.clicks_ = np.bincount(pi, weights=n_clk, minlength=n_items)
            user_clicks = np.bincount(pu, weights=n_clk, minlength=n_users)
            seen = np.bincount(pu, minlength=n_users) > 0
        else:
            self.clicks_ = np.bincount(items, weights=clicks, minlength=n_items).astype(np.float64)
            user_clicks = np.bincount(users, weights=clicks, minlength=n_users)
            seen = np.bincount(users, minlength=n_users) > 0
        self.known_ = seen & (user_clicks >= self.options.min_interactions)
        if pairs is not None:
            self._train(pairs, float(np.max(times)))
        self.fit_seconds_ = time.perf_counter() - start

    @abstractmethod
    def _train(self, pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], t_fit: float) -> None:
        """Fit the factors on the fit log's unique (user, item) ``pairs`` ``(pu, pi, n_imp, n_clk)``
        (:meth:`_pairs`: (m,) arrays, sorted by user then item, with each pair's impressions and
        clicks); ``t_fit`` is the latest event time (days) in the log."""

    def _pairs(self, users: np.ndarray, items: np.ndarray, clicks: np.ndarray):
        """Unique (user, item) pairs ``(pu, pi)`` (sorted) with their impression and click counts.

        On a (user, item) grid of at most ``max(_DENSE_CELLS, 4 * rows)`` cells the counts are
        kept on the grid between fits, with the sorted list of touched cells: when this fit's rows
        begin with the previous fit's rows (a cumulative log, checked element by element), only the
        new rows are counted (a compiled loop, ``_kernels.count_cells``) and only the newly touched
        cells are merged into the list.
        """
        n_items = self.ctx_.items.n
        key = users * n_items + items
        cells = self.ctx_.n_users * n_items
        if cells > max(_DENSE_CELLS, 4 * key.size):
            uniq, inv = np.unique(key, return_inverse=True)
            n_imp = np.bincount(inv, minlength=uniq.size).astype(np.float64)
            n_clk = np.bincount(inv, weights=clicks, minlength=uniq.size)
            self.grid_ = None
            return uniq // n_items, uniq % n_items, n_imp, n_clk
        grid, done = self.grid_, 0
        if grid is not None and grid[0].size <= key.size and np.array_equal(key[:grid[0].size], grid[0]) \
                and np.array_equal(clicks[:grid[1].size], grid[1]):
            imp, clk, uniq = grid[2], grid[3], grid[4]
            done = grid[0].size
        else:
            imp, clk = np.zeros(cells, dtype=np.int32), np.zeros(cells, dtype=np.int32)
            uniq = np.zeros(0, dtype=np.int64)
        from counterfeed.plugins.recommenders._compiled import count_cells

        new = np.ascontiguousarray(key[done:], dtype=np.int64)
        fresh = np.empty(new.size, dtype=np.int64)
        fresh = np.sort(fresh[:count_cells(imp, clk, new, np.ascontiguousarray(clicks[done:]), fresh)])
        if fresh.size:  # the touched cells, sorted: merge the new ones in (they are disjoint from uniq)
            uniq = np.insert(uniq, np.searchsorted(uniq, fresh), fresh)
        # a copy of the clicks: the next fit compares its rows with these, and a caller may change the
        # log's (bool, uncopied) click column in place between fits
        self.grid_ = (key, np.array(clicks, copy=True), imp, clk, uniq)
        return uniq // n_items, uniq % n_items, imp[uniq].astype(np.float64), clk[uniq].astype(np.float64)

    def update(self, feedback: Log) -> None:
        """Accumulate click counts for the popularity fallback (the factors change only in ``fit``)."""
        if len(feedback) == 0 or not self.options.updates:
            return
        n_items = self.ctx_.items.n
        ok = (feedback.item >= 0) & (feedback.item < n_items)
        self.clicks_ += np.bincount(feedback.item[ok], weights=feedback.click[ok].astype(np.float64),
                                    minlength=n_items)

    # -- serving -------------------------------------------------------------------------------
    def scores(self, users: np.ndarray) -> np.ndarray:
        """(n, n_items) scores: factor scores for known users, ``log(1 + clicks)`` for the others."""
        users = np.asarray(users, dtype=np.int64)
        known = self.known_[users]
        rows = np.flatnonzero(known)
        fitted = self.user_factors_[users[rows]] @ self.item_factors_.T
        fitted += self.item_bias_
        if rows.size == users.size:  # the usual case: no copy (a boolean-mask copy of rows is slow)
            return fitted
        out = np.empty((users.size, self.ctx_.items.n))
        out[rows] = fitted
        out[np.flatnonzero(~known)] = np.log1p(self.clicks_)
        return out

    def recommend(self, batch: Batch) -> Slates:
        o = self.options
        return make_slates(batch, self.scores(batch.users), o.exploration, epsilon=o.epsilon,
                           temperature=o.temperature, candidates=o.candidates)

    def action_probabilities(self, batch: Batch, items: np.ndarray) -> np.ndarray:
        """Exact, from the scores and the exploration scheme (``_slates.slate_propensities``)."""
        o = self.options
        return slate_propensities(batch, self.scores(batch.users), o.exploration, items, epsilon=o.epsilon,
                                  temperature=o.temperature, candidates=o.candidates)


class MatrixFactorization(FactorRecommender):
    """Logistic matrix factorization on clicks (positives) and unclicked impressions (negatives)."""

    name = "matrix-factorization"

    class Options(FactorOptions):
        epochs: int = Field(4, ge=1, le=200, description="passes over the unique (user, item) pairs")
        lr: float = Field(0.2, gt=0.0, description="Adagrad learning rate")
        l2: float = Field(1e-4, ge=0.0, description="weight on the mean squared norm of touched rows")
        negatives: int = Field(2, ge=0, le=100, description="sampled negatives per clicked pair")
        shown_negative_weight: float = Field(1.0, ge=0.0, description="weight of unclicked impressions")
        batch_size: int = Field(8192, ge=64, description="pairs per mini-batch")
        warm_epochs: int | None = Field(None, ge=1, le=200, description="refits continue from the "
                                        "previous fit's factors and Adagrad state for this many epochs "
                                        "(null: every fit starts afresh and runs 'epochs'); faster, but "
                                        "a different learner: on the quickstart one warm epoch learned a "
                                        "weaker policy (true clicks effect 24% lower over 10 seeds)")

    def setup(self, ctx: RecommenderContext) -> None:
        super().setup(ctx)
        self.loss_: list[float] = []
        self.state_ = None  # warm start: the last fit's (U, V, Adagrad accumulators) as tensors

    # -- learning ------------------------------------------------------------------------------
    def _train(self, pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], t_fit: float) -> None:
        """Retrain from scratch (fresh keyed initialisation) on the fit log's pairs."""
        self._train_pairs(*self._training_pairs(pairs, t_fit))

    def _training_pairs(self, pairs: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                        t_fit: float) -> tuple[np.ndarray, ...]:
        """Unique (user, item) pairs with positive/negative weights, plus sampled negatives."""
        o = self.options
        pu, pi, n_imp, n_clk = pairs
        wpos, wneg = n_clk, o.shown_negative_weight * (n_imp - n_clk)
        rng = self.ctx_.keys.numpy_generator("mf", self.ctx_.seed_key, self.n_fits_)
        clicked = np.flatnonzero(n_clk > 0)
        pool = np.flatnonzero(self.ctx_.items.arrival <= t_fit)
        if pool.size == 0:
            pool = np.unique(pi)  # the log's items
        if o.negatives and clicked.size:
            su = np.repeat(pu[clicked], o.negatives)
            si = pool[rng.integers(0, pool.size, su.size)]
            pu, pi = np.concatenate([pu, su]), np.concatenate([pi, si])
            wpos = np.concatenate([wpos, np.zeros(su.size)])
            wneg = np.concatenate([wneg, np.ones(su.size)])
        return pu, pi, wpos, wneg, rng

    def _initial_factors(self, wpos: np.ndarray, wneg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A fresh fit's float32 tables ``U`` (n_users, factors + 1) and ``V`` (n_items, factors + 1),
        the bias in the last column (``s = U[u, :f] . V[i, :f] + U[u, f] + V[i, f]``): factors
        from :meth:`_normal_tables`, user biases 0, item biases the log-odds of the smoothed click rate of the training pairs
        (weights ``wpos``, ``wneg``)."""
        f = self.options.factors
        U, V = self._normal_tables()
        rate = (wpos.sum() + 1.0) / (wpos.sum() + wneg.sum() + 2.0)
        U[:, f] = 0.0
        V[:, f] = np.log(rate / (1.0 - rate))
        return U, V

    def _normal_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 ``N(0, (0.1 / sqrt(factors))^2)`` tables (n_users, factors + 1) and (n_items,
        factors + 1) from the arm's keyed ``mf-init`` generator (Philox), one per fit."""
        ctx, f = self.ctx_, self.options.factors
        gen = np.random.Generator(np.random.Philox(ctx.keys.derive_seed("mf-init", ctx.seed_key, self.n_fits_)))
        scale = np.float32(0.1 / np.sqrt(f))
        return (gen.standard_normal((ctx.n_users, f + 1), dtype=np.float32) * scale,
                gen.standard_normal((ctx.items.n, f + 1), dtype=np.float32) * scale)

    def _train_pairs(self, pu: np.ndarray, pi: np.ndarray, wpos: np.ndarray, wneg: np.ndarray,
                     rng: np.random.Generator) -> None:
        """Mini-batch Adagrad with closed-form gradients of the weighted logistic loss.

        For a pair with logit ``s``, ``d loss / d s = (w_pos + w_neg) * sigmoid(s) - w_pos``; the
        gradients of the factors follow by the chain rule. Adagrad's per-coordinate step sizes suit
        the very uneven row frequencies of recommender data; an untouched row's update is zero, so
        only the rows a mini-batch touches are updated (after summing duplicate rows). The loop is
        a compiled kernel (:func:`~counterfeed.plugins.recommenders._compiled.adagrad_epochs`); the
        initial factors and every epoch's visiting order come from the arm's keyed generators.
        """
        from counterfeed.plugins.recommenders._compiled import adagrad_epochs

        o, ctx = self.options, self.ctx_
        n_items, f = ctx.items.n, o.factors
        epochs = o.epochs
        if o.warm_epochs is not None and self.state_ is not None:
            U, V, acc_u, acc_v = self.state_  # warm start: continue from the previous fit
            epochs = o.warm_epochs
        else:
            U, V = self._initial_factors(wpos, wneg)
            acc_u, acc_v = np.full_like(U, 1e-8), np.full_like(V, 1e-8)
        if o.warm_epochs is not None:
            self.state_ = (U, V, acc_u, acc_v)
        perms = np.stack([rng.permutation(pu.size) for _ in range(epochs)]) if pu.size else \
            np.zeros((epochs, 0), dtype=np.int64)
        losses = np.zeros(epochs)
        adagrad_epochs(U, V, acc_u, acc_v, pu.astype(np.int64, copy=False), pi.astype(np.int64, copy=False),
                       wpos.astype(np.float32), wneg.astype(np.float32), perms, o.batch_size, o.lr, o.l2,
                       losses)
        self.loss_ = losses.tolist()
        self.user_factors_ = U[:, :f].astype(np.float64)  # copies: the state may go on training
        item_factors = V[:, :f].astype(np.float64)
        item_bias = V[:, f].astype(np.float64)
        trained = np.zeros(n_items, dtype=bool)
        trained[pi] = True
        item_factors[~trained] = 0.0
        item_bias[~trained] = item_bias[trained].mean() if trained.any() else 0.0
        self.item_factors_, self.item_bias_ = item_factors, item_bias


@hookimpl
def register_recommenders(register):
    register(MatrixFactorization)
