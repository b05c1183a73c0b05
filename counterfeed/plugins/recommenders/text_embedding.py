"""``text-embedding``: a content recommender on item text embeddings.

A user's profile is the exponentially decayed sum of the embeddings of the items they clicked,

.. math::

    s_u(t) = \\sum_{c \\in \\text{clicks}(u),\\, t_c \\le t} 2^{-(t - t_c)/h}\\, e_{i_c},

with half-life :math:`h` (days). Items are scored by cosine similarity,
:math:`\\text{score}_{ui} = \\langle s_u / \\lVert s_u \\rVert, e_i / \\lVert e_i \\rVert \\rangle`, over the
items available at serving time. Because the score needs only the item's text, items that nobody has
interacted with yet (cold start) are ranked like any other. A user without clicks gets the profile
of the currently popular items (decayed click counts, the ``popular_items`` most clicked), or the
catalog mean before any click.

Items the user already clicked are ranked last (``exclude_clicked``, on by default), so the feed
never re-serves them. Three more options adapt the pure nearest-neighbour feed:

- ``diversity`` (:math:`\\lambda`) re-ranks the best ``diversity_candidates`` items by maximal marginal
  relevance (Carbonell & Goldstein, 1998), trading relevance for dissimilarity to the items already
  placed in the slate;
- ``negative_weight`` (:math:`\\gamma`) adds Rocchio-style negative feedback (Rocchio, 1971): an item
  shown but not clicked enters the profile with weight :math:`-\\gamma\\, 2^{-(t - t_c)/h}`;
- ``popularity_weight`` (:math:`\\beta`) adds :math:`\\beta \\log(1 + 100\\, c_i / \\max_j c_j) / \\log 101`
  to the cosine, with :math:`c_i` the item's decayed click count in this arm.

All three are 0 by default (a pure content recommender).

Profiles are stored as a ``(n_users, e)`` float32 array of decayed sums in units of
:math:`2^{(t_c - t_{ref})/h}`; a common rescaling never changes a cosine, so updates touch only the
clicking users' rows and ``t_ref`` moves forward when the weights grow large. Scoring a batch is one
matrix product. Exploration (``none``, ``epsilon``, ``softmax``) and exact propensities come from
:func:`counterfeed.plugins.recommenders._slates.make_slates`.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from counterfeed.core.contracts import Batch, Log, Options, Recommender, RecommenderContext, Slates
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import PluginError
from counterfeed.plugins.recommenders._slates import (EPSILON_DOC, EXPLORATION_DOC, make_slates,
                                                      slate_propensities)
from counterfeed.text.embedder import check_embedder_spec

__all__ = ["TextEmbeddingRecommender"]

NEEDS_TEXT = "needs a catalog with text or embeddings (e.g. 'synthetic-text' or 'table')"

_MAX_EXPONENT = 60.0          # rebase t_ref before 2**exponent could overflow float32 sums
_SCORE_CELLS = 4_000_000      # rows x items scored at once (bounds the memory of one chunk)
_DECIMALS = 9                 # scores are rounded to this many decimals (see ``score``)
_CLICKED_SCORE = -1e3          # score of an item the user already clicked (``exclude_clicked``)
_MMR_DIM = 48                 # MMR similarities use the embeddings' top principal directions


def _round(x: np.ndarray) -> np.ndarray:
    """Round a float64 array to ``_DECIMALS`` decimals in place (and return it)."""
    scale = 10.0 ** _DECIMALS
    x *= scale
    np.rint(x, out=x)
    x /= scale
    return x


def _principal_basis(emb: np.ndarray, dim: int) -> np.ndarray:
    """(e, dim) top right singular vectors of (up to 4096 evenly spaced rows of) ``emb``."""
    step = max(1, emb.shape[0] // 4096)
    _, _, vt = np.linalg.svd(emb[::step].astype(np.float64), full_matrices=False)
    return vt[:dim].T.astype(np.float32)


class TextEmbeddingRecommender(Recommender):
    """Content-based recommendations from clicked items' text embeddings (see module docstring)."""

    name = "text-embedding"

    class Options(Options):
        half_life: float = Field(14.0, gt=0, description="half-life of a click in the profile (days)")
        exploration: Literal["none", "epsilon", "softmax"] = Field("none", description=EXPLORATION_DOC)
        epsilon: float = Field(0.1, ge=0.0, le=1.0, description=EPSILON_DOC)
        temperature: float = Field(0.05, gt=0.0, description="softmax temperature on cosine scores")
        candidates: int | None = Field(None, ge=1, description="softmax: top-scored items considered")
        popular_items: int = Field(50, ge=1, description="items whose mean embedding profiles new users")
        exclude_clicked: bool = Field(True, description="rank items the user already clicked last")
        diversity: float = Field(
            0.0, ge=0.0, lt=1.0, description="MMR trade-off: 0 ranks by relevance only, higher spreads the slate")
        diversity_candidates: int = Field(40, ge=2, le=1_000, description="MMR: top items re-ranked")
        negative_weight: float = Field(
            0.0, ge=0.0, le=1.0, description="weight of a shown-but-not-clicked item (Rocchio negative feedback)")
        popularity_weight: float = Field(
            0.0, ge=0.0, description="weight of the item's relative log click count added to the cosine")
        embedder: str | dict[str, Any] = Field(
            "minilm", description="encoder for catalogs that have text but no embeddings")

        @field_validator("embedder")
        @classmethod
        def _embedder_spec(cls, v: Any) -> Any:
            return check_embedder_spec(v)

    @property
    def stochastic(self) -> bool:  # type: ignore[override]
        return self.options.exploration != "none"

    def check_scenario(self, scenario: Any, catalog: Any, field: str) -> None:
        """The catalog plugin must give items with text (its ``CatalogTags.text``)."""
        if not catalog.tags.text:
            raise scenario.error(f"recommender '{self.name}' {NEEDS_TEXT}; catalog '{catalog.name}' has none",
                                 f"{field}.recommender")

    # -- state ---------------------------------------------------------------------------------
    def setup(self, ctx: RecommenderContext) -> None:
        super().setup(ctx)
        items = ctx.items
        emb = items.embeddings
        if emb is None:
            if not items.text:
                raise PluginError(NEEDS_TEXT, plugin=self.name, hook="setup")
            from counterfeed.text.embedder import get_embedder

            emb = get_embedder(self.options.embedder).embed(items.text)
        emb = np.asarray(emb, dtype=np.float32)
        if emb.shape[0] != items.n:
            raise PluginError(f"catalog has {items.n} items but {emb.shape[0]} embeddings",
                              plugin=self.name, hook="setup")
        norm = np.linalg.norm(emb, axis=1, keepdims=True)
        self.item_embeddings_ = emb / np.where(norm > 0, norm, 1.0)
        self._mmr: np.ndarray | None = None
        self._reset(ctx.n_users)

    def _mmr_embeddings(self) -> np.ndarray:
        """Item embeddings projected on their top ``_MMR_DIM`` principal directions (for MMR's similarity
        penalty only: cheaper by ``e / _MMR_DIM`` and exact up to the discarded directions)."""
        if self._mmr is None:
            emb = self.item_embeddings_
            self._mmr = emb if emb.shape[1] <= _MMR_DIM else emb @ _principal_basis(emb, _MMR_DIM)
        return self._mmr

    def _reset(self, n_users: int) -> None:
        e = self.item_embeddings_.shape[1]
        self.profiles_ = np.zeros((n_users, e), dtype=np.float32)
        self.popularity_ = np.zeros(self.item_embeddings_.shape[0], dtype=np.float64)
        self.clicks_ = np.zeros(n_users, dtype=np.int64)
        self._clicked_pairs: list[np.ndarray] = []
        self._clicked: Any = None
        self.t_ref_ = 0.0
        self._fallback: np.ndarray | None = None

    def _check_setup(self, hook: str) -> None:
        if not hasattr(self, "item_embeddings_"):
            raise PluginError("setup() was not called", plugin=self.name, hook=hook)

    def fit(self, log: Log) -> None:
        """Rebuild every profile from a full log (replaces what ``update`` accumulated)."""
        self._check_setup("fit")
        self._reset(self.profiles_.shape[0])
        self._add_feedback(log)

    def update(self, feedback: Log) -> None:
        """Add one window's feedback (clicks, and impressions when ``negative_weight`` > 0) to the profiles."""
        self._check_setup("update")
        self._add_feedback(feedback)

    def _add_feedback(self, log: Log) -> None:
        if log is None or len(log) == 0:
            return
        hit = np.asarray(log.click, dtype=bool)
        neg = self.options.negative_weight
        rows = np.ones(hit.size, bool) if neg > 0 else hit
        if not rows.any():
            return
        users = np.asarray(log.user, np.int64)[rows]
        items = np.asarray(log.item, np.int64)[rows]
        times = np.asarray(log.time, np.float64)[rows]
        click = hit[rows]
        h = self.options.half_life
        t_max = float(times.max())
        if (t_max - self.t_ref_) / h > _MAX_EXPONENT:
            factor = np.exp2(-(t_max - self.t_ref_) / h)
            self.profiles_ *= np.float32(factor)
            self.popularity_ *= factor
            self.t_ref_ = t_max
        w = np.exp2((times - self.t_ref_) / h)
        signed = np.where(click, w, -neg * w)
        uniq, inv = np.unique(users, return_inverse=True)
        from scipy.sparse import csr_matrix

        m = csr_matrix((signed, (inv, items)), shape=(uniq.size, self.item_embeddings_.shape[0]))
        self.profiles_[uniq] += (m @ self.item_embeddings_).astype(np.float32)
        self.popularity_ += np.bincount(items[click], weights=w[click], minlength=self.popularity_.size)
        self.clicks_ += np.bincount(users[click], minlength=self.clicks_.size)
        if self.options.exclude_clicked and click.any():
            self._clicked_pairs.append(users[click] * self.item_embeddings_.shape[0] + items[click])
            self._clicked = None
        self._fallback = None

    def fallback_profile(self) -> np.ndarray:
        """The profile of users without clicks: mean embedding of the most clicked items, else of all items."""
        if self._fallback is None:
            if self.popularity_.max(initial=0.0) > 0:
                k = min(self.options.popular_items, int((self.popularity_ > 0).sum()))
                top = np.argpartition(-self.popularity_, k - 1)[:k]
                vec = self.item_embeddings_[top].mean(axis=0)
            else:
                vec = self.item_embeddings_.mean(axis=0)
            norm = float(np.linalg.norm(vec))
            self._fallback = (vec / norm if norm > 0 else vec).astype(np.float32)
        return self._fallback

    # -- serving ---------------------------------------------------------------------------------
    def user_vectors(self, users: np.ndarray) -> np.ndarray:
        """(n, e) unit profile vectors of ``users`` (the fallback profile for users without clicks)."""
        users = np.asarray(users, np.int64)
        p = self.profiles_[users]
        norm = np.linalg.norm(p, axis=1, keepdims=True)
        cold = (norm[:, 0] <= 0) | (self.clicks_[users] == 0)
        p = p / np.where(norm > 0, norm, 1.0)
        if cold.any():
            p[cold] = self.fallback_profile()
        return p

    def score(self, users: np.ndarray, item_t64: np.ndarray | None = None) -> np.ndarray:
        """(n, n_items) cosine scores of every item for ``users``, rounded to ``1e-9``.

        The product runs in float64 and is rounded so that a request's scores, hence its slate, do
        not depend on which other requests share the batch: BLAS may sum in a different order for a
        different number of rows, and without rounding those last-bit differences reorder items
        whose scores tie exactly (e.g. two texts that differ only in words the profile lacks).
        """
        if item_t64 is None:
            item_t64 = self.item_embeddings_.T.astype(np.float64)
        scores = self.user_vectors(users).astype(np.float64) @ item_t64
        if self.options.popularity_weight > 0:
            scores += self.options.popularity_weight * self.popularity_prior()
        return _round(scores)

    def popularity_prior(self) -> np.ndarray:
        """(n_items,) ``log(1 + c_i) / log(1 + max c)`` of the decayed click counts (0 before any click)."""
        top = float(self.popularity_.max(initial=0.0))
        if top <= 0:
            return np.zeros_like(self.popularity_)
        # counts are in units of 2**((t - t_ref) / h); rescale so that the latest click weighs 1
        return np.log1p(self.popularity_ / top * 100.0) / np.log1p(100.0)

    def _demote_clicked(self, users: np.ndarray, scores: np.ndarray) -> None:
        """Give the items each user already clicked a score below every other item (in place)."""
        if not self._clicked_pairs:
            return
        if self._clicked is None:
            from scipy.sparse import csr_matrix

            n_items = self.item_embeddings_.shape[0]
            pairs = np.unique(np.concatenate(self._clicked_pairs))
            self._clicked_pairs = [pairs]
            self._clicked = csr_matrix((np.ones(pairs.size, bool), (pairs // n_items, pairs % n_items)),
                                       shape=(self.profiles_.shape[0], n_items))
        rows, cols = self._clicked[np.asarray(users, np.int64)].nonzero()
        scores[rows, cols] = _CLICKED_SCORE

    def diversify(self, scores: np.ndarray, k: int, available: np.ndarray | None) -> np.ndarray:
        """Scores whose top ``k`` are the maximal-marginal-relevance slate (Carbonell & Goldstein, 1998).

        Among the ``diversity_candidates`` best items, position ``j`` greedily takes

        .. math:: \\arg\\max_i \\; (1 - \\lambda)\\, \\text{score}_i - \\lambda \\max_{l \\in S} \\cos(e_i, e_l)

        with :math:`S` the items already placed and :math:`\\lambda` = ``diversity``; the cosine is taken
        between the embeddings' projections on their top ``_MMR_DIM`` principal directions. The chosen items get
        scores just above the row's best (in slate order) and every other item keeps its own, so
        exploration around the diversified slate still reports exact propensities.
        """
        from counterfeed.plugins.recommenders._slates import topk

        n = scores.shape[0]
        lam = self.options.diversity
        n_avail = scores.shape[1] if available is None else int(np.count_nonzero(available))
        c = max(k, min(self.options.diversity_candidates, n_avail))
        cand = topk(scores, c, available)
        rel = np.take_along_axis(scores, cand, axis=1)
        emb = self._mmr_embeddings()[cand]                           # (n, c, <= _MMR_DIM) float32
        # pairwise similarities of each request's candidates, one (c, e) @ (e, c) product per request
        # (so a row never depends on the batch), rounded like the scores
        sims = _round(np.matmul(emb, emb.transpose(0, 2, 1)).astype(np.float64))
        rows = np.arange(n)
        taken = np.zeros((n, c), dtype=bool)
        penalty = np.zeros((n, c))
        chosen = np.zeros((n, k), dtype=np.int64)
        for j in range(k):
            value = np.where(taken, -np.inf, (1.0 - lam) * rel - lam * penalty)
            pick = np.argmax(value, axis=1)
            chosen[:, j] = cand[rows, pick]
            taken[rows, pick] = True
            sim = sims[rows, pick]
            penalty = sim if j == 0 else np.maximum(penalty, sim)
        out = scores.copy()
        top = scores.max(axis=1, where=np.ones_like(scores, bool) if available is None else available,
                         initial=-np.inf)
        out[rows[:, None], chosen] = top[:, None] + 1e-6 * (k - np.arange(k))[None, :]
        return out

    def _scored_chunks(self, batch: Batch, hook: str):
        """Yield ``(rows, sub-batch, scores)`` per block of requests: the scores ``make_slates`` ranks."""
        self._check_setup(hook)
        n = len(batch)
        n_items = self.item_embeddings_.shape[0]
        o = self.options
        rows = max(1, _SCORE_CELLS // max(n_items, 1))
        if o.diversity > 0:
            rows = min(rows, max(1, _SCORE_CELLS // (o.diversity_candidates * _MMR_DIM)))
        # a slate never holds more items than are available (make_slates' greedy path assumes it)
        n_avail = n_items if batch.available is None else int(np.count_nonzero(batch.available))
        k = min(batch.slate_size, n_avail)
        item_t64 = self.item_embeddings_.T.astype(np.float64)
        for start in range(0, max(n, 1), rows):
            sl = slice(start, min(start + rows, n))
            sub = Batch(users=batch.users[sl], sessions=batch.sessions[sl], time=batch.time,
                        slate_size=k, stream=batch.stream, available=batch.available)
            scores = self.score(sub.users, item_t64)
            if o.exclude_clicked:
                self._demote_clicked(sub.users, scores)
            if o.diversity > 0 and k > 1:
                scores = self.diversify(scores, k, batch.available)
            yield sl, sub, scores

    def recommend(self, batch: Batch) -> Slates:
        o = self.options
        parts = [make_slates(sub, scores, o.exploration, epsilon=o.epsilon, temperature=o.temperature,
                             candidates=o.candidates) for _, sub, scores in self._scored_chunks(batch, "recommend")]
        if len(parts) == 1:
            return parts[0]
        return Slates(items=np.concatenate([p.items for p in parts]),
                      propensities=np.concatenate([p.propensities for p in parts]),
                      scores=np.concatenate([p.scores for p in parts]))

    def action_probabilities(self, batch: Batch, items: np.ndarray) -> np.ndarray:
        """Exact, from the (diversified) scores and the exploration scheme (``_slates.slate_propensities``)."""
        o = self.options
        items = np.asarray(items, np.int64)
        out = np.zeros(items.shape)
        for sl, sub, scores in self._scored_chunks(batch, "action_probabilities"):
            out[sl] = slate_propensities(sub, scores, o.exploration, items[sl], epsilon=o.epsilon,
                                         temperature=o.temperature, candidates=o.candidates)
        return out


@hookimpl
def register_recommenders(register):
    register(TextEmbeddingRecommender)
