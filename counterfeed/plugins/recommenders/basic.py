"""The simplest built-in policies: ``random`` and ``popularity``."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from counterfeed.core.contracts import Batch, Log, Options, Recommender, RecommenderContext, Slates
from counterfeed.core.hookspecs import hookimpl
from counterfeed.plugins.recommenders._slates import (EPSILON_DOC, EXPLORATION_DOC, TEMPERATURE_DOC,
                                                      make_slates, slate_propensities, uniform_probabilities,
                                                      uniform_slates)

__all__ = ["RandomRecommender", "PopularityRecommender", "ExplorationOptions"]


class ExplorationOptions(Options):
    """Exploration shared by the score-based recommenders (see ``_slates``)."""

    exploration: Literal["none", "epsilon", "softmax"] = Field("none", description=EXPLORATION_DOC)
    epsilon: float = Field(0.1, ge=0, le=1, description=EPSILON_DOC)
    temperature: float = Field(1.0, gt=0, le=1e6, description=TEMPERATURE_DOC)
    candidates: int | None = Field(None, ge=1, description="softmax: only the top-N items are candidates")


class RandomRecommender(Recommender):
    """Uniformly random slates without repeats; every item's propensity at every position is 1/m."""

    name = "random"
    stochastic = True

    def recommend(self, batch: Batch) -> Slates:
        return uniform_slates(batch, self.ctx_.items.n)

    def action_probabilities(self, batch: Batch, items: np.ndarray) -> np.ndarray:
        """Exact: ``1/m`` for an available item at a slate position (``m`` available items), else 0."""
        return uniform_probabilities(batch, self.ctx_.items.n, items)


class PopularityRecommender(Recommender):
    """Rank items by their click count in the arm's own log (optionally decayed).

    ``score_i = log(1 + c_i)`` where ``c_i`` counts clicks (or impressions, ``signal``) on item ``i``,
    multiplied by ``0.5 ** (dt / halflife)`` between updates when ``halflife`` is set. ``fit`` recounts
    from a full log; ``update`` adds one window's feedback. Exploration (epsilon or stratified
    softmax) logs exact propensities.
    """

    name = "popularity"

    class Options(ExplorationOptions):
        signal: Literal["clicks", "impressions"] = Field("clicks", description="what is counted per item")
        halflife: float | None = Field(None, gt=0, description="days; decay of old counts")
        updates: bool = Field(True, description="add each serving window's feedback to the counts between "
                              "fits (false: the counts stay those of the last fit)")

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.options.exploration != "none"

    def setup(self, ctx: RecommenderContext) -> None:
        super().setup(ctx)
        self.counts_ = np.zeros(ctx.items.n)
        self.last_time_ = 0.0

    def _decay(self, t: float) -> None:
        if self.options.halflife and t > self.last_time_:
            self.counts_ *= 0.5 ** ((t - self.last_time_) / self.options.halflife)
        self.last_time_ = max(self.last_time_, t)

    def _add(self, log: Log) -> None:
        if not len(log):
            return
        items = log.item if self.options.signal == "impressions" else log.item[log.click.astype(bool)]
        self.counts_ += np.bincount(items, minlength=self.counts_.size)[: self.counts_.size]

    def fit(self, log: Log) -> None:
        self.counts_[:] = 0.0
        if self.options.halflife and len(log):
            w = 0.5 ** ((log.time.max() - log.time) / self.options.halflife)
            sel = np.ones(len(log), bool) if self.options.signal == "impressions" else log.click.astype(bool)
            self.counts_ += np.bincount(log.item[sel], weights=w[sel], minlength=self.counts_.size)
            self.last_time_ = float(log.time.max())
        else:
            self._add(log)

    def update(self, feedback: Log) -> None:
        if not self.options.updates:
            return
        if len(feedback):
            self._decay(float(feedback.time.max()))
        self._add(feedback)

    def recommend(self, batch: Batch) -> Slates:
        o = self.options
        scores = np.log1p(self.counts_)
        return make_slates(batch, scores, o.exploration, epsilon=o.epsilon, temperature=o.temperature,
                           candidates=o.candidates)

    def action_probabilities(self, batch: Batch, items: np.ndarray) -> np.ndarray:
        """Exact, from the scores and the exploration scheme (``_slates.slate_propensities``)."""
        o = self.options
        return slate_propensities(batch, np.log1p(self.counts_), o.exploration, items, epsilon=o.epsilon,
                                  temperature=o.temperature, candidates=o.candidates)


@hookimpl
def register_recommenders(register):
    register(RandomRecommender)
    register(PopularityRecommender)
