"""Re-rankers: recommender wrappers that re-order any recommender's candidates for diversity,
calibration, less popularity bias or fairer provider exposure.

Every re-ranker wraps a ``base`` recommender (any registered name, with ``base_options``), forwards
``setup``/``fit``/``update`` to it, asks it for the top ``candidates`` items of each request (a
batch with ``slate_size = candidates``), and greedily picks the slate from them. The base's scores
of its candidates (``Slates.scores``, else ``1 / (1 + rank)``) are rescaled per request to
``rel`` in [0, 1] (min-max; all 1 when equal).

Propensities
------------
The re-ranking itself is deterministic. With ``exploration: none`` (default) the wrapper's output is
**deterministic** (``stochastic = False``, every propensity 1). With ``exploration: epsilon`` or
``softmax`` the re-ranked order is turned into a slate by the shared exploration schemes of
:mod:`~counterfeed.plugins.recommenders._slates` (epsilon: the re-ranked top-k with uniform
exploration outside it; softmax: stratified softmax over the re-ranked candidates with score
``-rank``), which log the **exact** per-position propensities. A base whose candidate list is itself
random (any candidate propensity below 1) is refused when serving, with a message: the probability
that a re-ranked slate shows an item at a position depends on the joint distribution of the base's
whole candidate list, which no recommender reports, so a logged propensity would be wrong. Run the
base with ``exploration: none`` and explore in the wrapper instead.

Re-rankers (each greedy: position ``j`` takes the candidate with the best marginal objective)
------------------------------------------------------------------------------------------------
``mmr``
    maximal marginal relevance, ``lambda * rel_i - (1 - lambda) * max_{s in S} sim(i, s)`` (Carbonell
    and Goldstein, SIGIR 1998); ``sim`` is 1 for a shared topic (``space: topic``) or the cosine of
    the text embeddings / latent vectors (``space: embedding``).
``calibrated``
    Steck's calibrated recommendations (RecSys 2018, eq. 6): maximize ``(1 - lambda) sum_{s in S} rel_s
    - lambda KL(p_u || q~(S))`` with ``p_u`` the topic mix of the user's clicks in the logs passed to
    ``fit``/``update``, ``q(S)`` the topic mix of the chosen items, ``q~ = (1 - a) q + a p_u``
    (``a = 0.01``). Users without clicks get the relevance order.
``popularity-debiased``
    re-weighting by inverse popularity, ``rel_i * ((n_bar + 1) / (n_i + 1)) ** beta`` with ``n_i`` the
    item's impressions in the arm's log and ``n_bar`` their mean (the inverse-popularity weights of
    Steck, "Item popularity and recommendation accuracy", RecSys 2011).
``provider-fair``
    an exposure constraint: a provider group (``Items.extra["provider"]``, else the topic) takes at
    most ``ceil(k * c_g) + slack`` positions of a slate, ``c_g`` its share of the available catalog
    (proportional exposure, Singh and Joachims, KDD 2018); positions the caps cannot fill go to the
    best remaining candidates.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from counterfeed.core.contracts import Batch, Log, Options, Recommender, RecommenderContext, Slates
from counterfeed.core.hookspecs import hookimpl
from counterfeed.plugins.recommenders._slates import make_slates, slate_propensities

__all__ = ["Reranker", "MMR", "Calibrated", "PopularityDebiased", "ProviderFair"]

CALIBRATION_ALPHA = 0.01


class RerankOptions(Options):
    base: str = Field(description="the wrapped recommender's registry name")
    base_options: dict[str, Any] = Field(default_factory=dict, description="the wrapped recommender's options")
    candidates: int = Field(50, ge=1, le=10_000, description="items asked from the base per request")
    exploration: Literal["none", "epsilon", "softmax"] = Field(
        "none", description="none: the re-ranked top-k; epsilon: each position shows a uniformly drawn "
        "other candidate with probability epsilon; softmax: positions drawn in turn by softmax over -rank "
        "(exact propensities logged either way)")
    epsilon: float = Field(0.1, ge=0, le=1, description="epsilon exploration: probability that a position "
                           "shows a uniformly drawn other candidate")
    temperature: float = Field(1.0, gt=0, le=1e6, description="softmax over -rank")

    @model_validator(mode="after")
    def _base_valid(self):
        from counterfeed.core.plugins import get_registry

        reg = get_registry()
        reg.info("recommender", self.base, field="base")  # an unknown name is the `base` field's error
        base = reg.create("recommender", self.base, self.base_options, field="base_options")
        explores = getattr(base.options, "exploration", None)  # None: no switch, randomized if stochastic
        if explores != "none" and (explores is not None or base.stochastic):
            hint = ("run the base with exploration: none" if explores is not None
                    else "it has no deterministic mode; wrap a deterministic recommender")
            raise ValueError(f"base '{self.base}' is randomized, and the exact propensity of a re-ranked slate "
                             f"is not computable from a randomized candidate list: {hint}, and set this "
                             "re-ranker's own exploration (epsilon or softmax), which logs exact propensities")
        return self


class Reranker(Recommender):
    """Base class of the re-rankers: candidates from ``base``, greedy re-ranking (see module)."""

    Options = RerankOptions
    conformance_options = {"base": "popularity"}

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.options.exploration != "none"

    def check_scenario(self, scenario: Any, catalog: Any, field: str) -> None:
        """The base recommender's own scenario checks, located in this arm: the base's options at
        ``<field>.base_options.<option>``, the base itself (e.g. ``text-embedding`` on a catalog
        without text) at ``<field>.base``. Nested re-rankers delegate the same way."""
        from counterfeed.core.plugins import get_registry
        from counterfeed.errors import ScenarioError

        base = get_registry().create("recommender", self.options.base, self.options.base_options,
                                     field=f"{field}.base_options")
        inner = f"{field}.base_options"
        try:
            base.check_scenario(scenario, catalog, inner)
        except ScenarioError as err:
            where = err.field or inner
            if where in (inner, f"{inner}.recommender"):  # the base as a whole: the arm's `base` field
                where = f"{field}.base"
            raise scenario.error(f"base '{self.options.base}' of re-ranker '{self.name}': {err.bare_message}",
                                 where) from None

    def setup(self, ctx: RecommenderContext) -> None:
        from counterfeed.core.plugins import get_registry

        super().setup(ctx)
        self.base_ = get_registry().create("recommender", self.options.base, self.options.base_options,
                                           field="base")
        self.base_.setup(ctx)
        items = ctx.items
        self.group_ = np.asarray(items.extra.get("provider", items.topic), dtype=np.int64)
        vec = items.embeddings if items.embeddings is not None else items.vectors
        self.unit_ = np.asarray(vec, dtype=np.float64) / np.maximum(
            np.linalg.norm(vec, axis=1, keepdims=True), 1e-12)

    def fit(self, log: Log) -> None:
        self.base_.fit(log)
        self._learn(log, reset=True)

    def update(self, feedback: Log) -> None:
        self.base_.update(feedback)
        self._learn(feedback, reset=False)

    def _learn(self, log: Log, reset: bool) -> None:
        """Re-ranker state from a log (``reset``: a full log given to ``fit``); none by default."""

    # -- serving -------------------------------------------------------------------------------
    def recommend(self, batch: Batch) -> Slates:
        o = self.options
        chosen, objective, k = self._reranked(batch)
        if o.exploration == "none" or len(batch) == 0:
            return Slates(chosen[:, :k], np.ones((len(batch), k)), objective[:, :k])
        return make_slates(batch, self._rank_scores(chosen), o.exploration, epsilon=o.epsilon,
                           temperature=o.temperature, candidates=chosen.shape[1])

    def action_probabilities(self, batch: Batch, items: np.ndarray) -> np.ndarray:
        """(n, k') exact probability that :meth:`recommend` shows ``items[r, j]`` at position ``j``.

        Deterministic (``exploration: none``): 1 where ``items`` is the re-ranked slate, else 0.
        Exploring: the exact scheme probabilities of
        :func:`~counterfeed.plugins.recommenders._slates.slate_propensities` over the re-ranked order.
        """
        o = self.options
        items = np.asarray(items, dtype=np.int64)
        chosen, _, k = self._reranked(batch)
        if o.exploration != "none":
            return slate_propensities(batch, self._rank_scores(chosen), o.exploration, items, epsilon=o.epsilon,
                                      temperature=o.temperature, candidates=chosen.shape[1])
        out = np.zeros(items.shape)
        kk = min(k, items.shape[1])
        out[:, :kk] = chosen[:, :kk] == items[:, :kk]
        return out

    def _rank_scores(self, chosen: np.ndarray) -> np.ndarray:
        """(n, n_items) scores ``-rank`` for the re-ranked candidates, ``-1e9`` for every other item."""
        scores = np.full((chosen.shape[0], self.ctx_.items.n), -1e9)
        np.put_along_axis(scores, chosen, -np.arange(chosen.shape[1], dtype=np.float64)[None, :], axis=1)
        return scores

    def _reranked(self, batch: Batch) -> tuple[np.ndarray, np.ndarray, int]:
        """(n, steps) re-ranked item ids, the objective of each pick, and the slate size k."""
        o = self.options
        n_avail = self.ctx_.items.n if batch.available is None else int(batch.available.sum())
        k = min(batch.slate_size, n_avail)
        cand_batch = Batch(batch.users, batch.sessions, batch.time, max(o.candidates, k), batch.stream,
                           batch.available)
        base = self.base_.recommend(cand_batch)
        cand, prop = np.asarray(base.items, dtype=np.int64), np.asarray(base.propensities, dtype=np.float64)
        if prop.size and (prop < 1.0).any():
            raise ValueError(
                f"re-ranker '{self.name}': base '{o.base}' returned a randomized candidate list "
                f"(propensities down to {prop.min():.3g}); the exact propensity of a re-ranked slate is not "
                "computable from the base's per-position propensities. Run the base with exploration: none "
                "and set this re-ranker's own exploration (epsilon or softmax), which logs exact propensities")
        rel = _relevance(base.scores, cand.shape)
        steps = cand.shape[1] if o.exploration == "softmax" else k
        order, objective = self._order(batch, cand, rel, steps)
        return np.take_along_axis(cand, order, axis=1), objective, k

    def _order(self, batch: Batch, cand: np.ndarray, rel: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
        """(n, steps) candidate columns in re-ranked order, and the objective value of each pick."""
        state = self._start(batch, cand, rel)
        n, c = cand.shape
        taken = np.zeros((n, c), bool)
        order = np.zeros((n, steps), np.int64)
        value = np.zeros((n, steps))
        rows = np.arange(n)
        for j in range(steps):
            gain = np.where(taken, -np.inf, self._gain(state, j, taken))
            pick = np.argmax(gain, axis=1)  # ties: the base's better-ranked candidate
            order[:, j], value[:, j] = pick, gain[rows, pick]
            taken[rows, pick] = True
            self._picked(state, pick)
        return order, value

    def _start(self, batch: Batch, cand: np.ndarray, rel: np.ndarray) -> dict[str, Any]:
        return {"cand": cand, "rel": rel}

    def _gain(self, state: dict[str, Any], step: int, taken: np.ndarray) -> np.ndarray:
        return state["rel"]

    def _picked(self, state: dict[str, Any], pick: np.ndarray) -> None:
        """Update the state after each row took candidate column ``pick``."""


def _relevance(scores: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Per-request min-max rescaling of the base's candidate scores to [0, 1] (rank-based without scores)."""
    n, c = shape
    s = (np.broadcast_to(1.0 / (1.0 + np.arange(c)), (n, c)) if scores is None
         else np.asarray(scores, dtype=np.float64))
    s = np.where(np.isfinite(s), s, np.nan)
    lo, hi = np.nanmin(s, axis=1, keepdims=True) if c else s, np.nanmax(s, axis=1, keepdims=True) if c else s
    span = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(span > 0, (s - lo) / np.where(span > 0, span, 1.0), 1.0)
    return np.nan_to_num(out, nan=0.0)


class MMR(Reranker):
    """Maximal marginal relevance around any recommender (see module)."""

    name = "mmr"

    class Options(RerankOptions):
        diversity: float = Field(0.3, ge=0, le=1, description="1 - lambda: weight of the redundancy penalty")
        space: Literal["topic", "embedding"] = Field("topic", description="similarity: 1 for a shared topic "
                                                     "(topic) or the cosine of the item embeddings (embedding)")

    def _start(self, batch, cand, rel):
        return {"cand": cand, "rel": rel, "maxsim": np.zeros(cand.shape)}

    def _gain(self, state, step, taken):
        lam = 1.0 - self.options.diversity
        return lam * state["rel"] - (1.0 - lam) * state["maxsim"]

    def _picked(self, state, pick):
        cand = state["cand"]
        chosen = cand[np.arange(cand.shape[0]), pick]
        if self.options.space == "topic":
            topic = self.ctx_.items.topic
            sim = (topic[cand] == topic[chosen][:, None]).astype(np.float64)
        else:
            sim = np.einsum("ncd,nd->nc", self.unit_[cand], self.unit_[chosen])
        np.maximum(state["maxsim"], sim, out=state["maxsim"])


class Calibrated(Reranker):
    """Steck's calibrated recommendations around any recommender (see module)."""

    name = "calibrated"

    class Options(RerankOptions):
        weight: float = Field(0.5, ge=0, le=1, description="lambda: weight of the KL term")

    def setup(self, ctx: RecommenderContext) -> None:
        super().setup(ctx)
        self.history_ = np.zeros((ctx.n_users, ctx.items.n_topics))

    def _learn(self, log: Log, reset: bool) -> None:
        if reset:
            self.history_[:] = 0.0
        if not len(log):
            return
        c = log.click.astype(bool)
        t = self.ctx_.items.n_topics
        ok = c & (log.user >= 0) & (log.user < self.ctx_.n_users)
        self.history_ += np.bincount(log.user[ok] * t + self.ctx_.items.topic[log.item[ok]],
                                     minlength=self.history_.size).reshape(self.history_.shape)

    def _start(self, batch, cand, rel):
        h = self.history_[batch.users]
        total = h.sum(axis=1, keepdims=True)
        p = np.where(total > 0, h / np.where(total > 0, total, 1.0), 0.0)
        return {"cand": cand, "rel": rel, "p": p, "has": total[:, 0] > 0,
                "counts": np.zeros_like(p), "relsum": np.zeros(cand.shape[0]),
                "onehot": np.eye(self.ctx_.items.n_topics)[self.ctx_.items.topic[cand]]}  # (n, c, T)

    def _gain(self, state, step, taken):
        lam = self.options.weight
        counts = state["counts"][:, None, :] + state["onehot"]  # (n, c, T)
        q = counts / (step + 1.0)
        p = state["p"][:, None, :]
        qt = (1 - CALIBRATION_ALPHA) * q + CALIBRATION_ALPHA * p
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(p > 0, p * np.log(p / qt), 0.0).sum(axis=2)
        total = (1 - lam) * (state["relsum"][:, None] + state["rel"]) - lam * kl
        return np.where(state["has"][:, None], total, state["rel"])

    def _picked(self, state, pick):
        rows = np.arange(pick.size)
        state["counts"] += state["onehot"][rows, pick]
        state["relsum"] += state["rel"][rows, pick]


class PopularityDebiased(Reranker):
    """Inverse-popularity re-weighting around any recommender (see module)."""

    name = "popularity-debiased"

    class Options(RerankOptions):
        beta: float = Field(0.5, ge=0, le=10, description="exponent of the inverse-popularity weight")

    def setup(self, ctx: RecommenderContext) -> None:
        super().setup(ctx)
        self.impressions_ = np.zeros(ctx.items.n)

    def _learn(self, log: Log, reset: bool) -> None:
        if reset:
            self.impressions_[:] = 0.0
        if len(log):
            self.impressions_ += np.bincount(log.item, minlength=self.impressions_.size)[: self.impressions_.size]

    def _gain(self, state, step, taken):
        n = self.impressions_
        w = ((n.mean() + 1.0) / (n[state["cand"]] + 1.0)) ** self.options.beta
        return (state["rel"] + 1e-9) * w


class ProviderFair(Reranker):
    """Proportional provider-exposure caps per slate around any recommender (see module)."""

    name = "provider-fair"

    class Options(RerankOptions):
        slack: int = Field(0, ge=0, le=100, description="positions a group may take beyond its share")

    def _start(self, batch, cand, rel):
        avail = np.ones(self.ctx_.items.n, bool) if batch.available is None else batch.available
        g = self.group_
        n_g = int(g.max(initial=-1)) + 1
        share = np.bincount(g[avail], minlength=n_g) / max(int(avail.sum()), 1)
        k = min(batch.slate_size, int(avail.sum()))
        cap = np.ceil(k * share - 1e-9) + self.options.slack
        return {"cand": cand, "rel": rel, "group": g[cand], "cap": cap,
                "used": np.zeros((cand.shape[0], n_g))}

    def _gain(self, state, step, taken):
        used = np.take_along_axis(state["used"], state["group"], axis=1)
        over = used >= state["cap"][state["group"]]
        allowed = ~over & ~taken
        # a row whose caps exclude every remaining candidate falls back to relevance
        fallback = ~allowed.any(axis=1, keepdims=True)
        return np.where(over & ~fallback, -1e6 + state["rel"], state["rel"])

    def _picked(self, state, pick):
        rows = np.arange(pick.size)
        state["used"][rows, state["group"][rows, pick]] += 1


@hookimpl
def register_recommenders(register):
    for cls in (MMR, Calibrated, PopularityDebiased, ProviderFair):
        register(cls)
