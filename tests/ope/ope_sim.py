"""Test helpers: simulated slate logs with a known target value, and test recommenders."""

from __future__ import annotations

import numpy as np

from counterfeed.core.contracts import Options, Recommender
from counterfeed.ope.logs import from_arrays
from counterfeed.plugins.recommenders._slates import make_slates, slate_propensities


def simulate(rng: np.random.Generator, n_rounds: int, p0: np.ndarray, theta: np.ndarray,
             pb: np.ndarray, pe: np.ndarray):
    """Position-wise slate log: position j shows item a ~ p0[j] (independently), click ~ Bernoulli(theta[a] pb[j]).

    Returns the log, the target's per-position distribution ``pe`` as a context-free table, and the
    true value of ``pe`` (mean over positions of sum_a pe[j, a] theta[a] pb[j]).
    """
    import pandas as pd

    k, n_items = p0.shape
    cdf = np.cumsum(p0, axis=1)
    u = rng.random((n_rounds, k))
    items = np.minimum((u[:, :, None] > cdf[None]).sum(axis=2), n_items - 1)
    clicks = rng.random((n_rounds, k)) < theta[items] * pb[None, :]
    pos = np.broadcast_to(np.arange(k), (n_rounds, k))
    log = from_arrays(round=np.repeat(np.arange(n_rounds), k), item=items.ravel(), position=pos.ravel(),
                      reward=clicks.ravel().astype(float), propensity=p0[pos, items].ravel())
    jj, aa = np.meshgrid(np.arange(k), np.arange(n_items), indexing="ij")
    table = pd.DataFrame({"item": aa.ravel(), "position": jj.ravel(), "prob": pe.ravel()})
    truth = float(np.mean((pe * theta[None, :]).sum(axis=1) * pb))
    return log, table, truth


class FixedRanking(Recommender):
    """Deterministic: items by descending id (or ascending with reverse=true)."""

    name = "test-fixed"

    class Options(Options):
        reverse: bool = False

    def recommend(self, batch):
        n_items = self.ctx_.items.n
        scores = np.arange(n_items, dtype=float) * (-1 if self.options.reverse else 1)
        return make_slates(batch, scores, "none")


class EpsilonByClicks(Recommender):
    """Stochastic: epsilon-greedy over click counts learned in fit, with exact action_probabilities."""

    name = "test-epsilon"
    stochastic = True

    class Options(Options):
        epsilon: float = 0.2

    def fit(self, log):
        self.scores_ = np.bincount(log.item, log.click.astype(float), minlength=self.ctx_.items.n)
        self.scores_ = self.scores_ - 1e-6 * np.arange(self.ctx_.items.n)

    def recommend(self, batch):
        return make_slates(batch, self.scores_, "epsilon", epsilon=self.options.epsilon)

    def action_probabilities(self, batch, items):
        return slate_propensities(batch, self.scores_, "epsilon", items, epsilon=self.options.epsilon)


class StochasticNoProps(FixedRanking):
    name = "test-noprops"
    stochastic = True
