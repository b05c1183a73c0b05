"""Deliberately broken plugins: each breaks exactly one conformance rule (and a good one breaks none).

Registered through ``register_plugin`` inside the tests that use them (never globally).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy import stats

from counterfeed import (Catalog, DataError, Estimate, Estimator, EstimatorTags, Metric, Options,
                         Recommender, Response, Slates, UserModel, hookimpl)
from counterfeed.testing.fixtures import make_items


def _greedy(rec: Recommender, batch) -> Slates:
    """Deterministic top-k by item quality over the available items."""
    q = np.asarray(rec.ctx_.items.quality, dtype=float)
    if batch.available is not None:
        q = np.where(batch.available, q, -np.inf)
    n_avail = int(np.isfinite(q).sum())
    k = min(batch.slate_size, n_avail)
    top = np.argsort(-q, kind="stable")[:k]
    items = np.broadcast_to(top, (len(batch), k)).astype(np.int64)
    return Slates(items, np.ones(items.shape), np.broadcast_to(q[top], items.shape).copy())


class GoodRecommender(Recommender):
    """Top-k by quality; passes every rule."""

    name = "good-rec"

    class Options(Options):
        boost: float = 0.0

    def recommend(self, batch):
        return _greedy(self, batch)


class WrongShapeRecommender(GoodRecommender):
    """Drops the last position of every slate."""

    name = "wrong-shape"

    def recommend(self, batch):
        s = _greedy(self, batch)
        return Slates(s.items[:, :-1], s.propensities[:, :-1])


class BadPropensityRecommender(GoodRecommender):
    """Claims propensities of 2.0."""

    name = "bad-propensity"

    def recommend(self, batch):
        s = _greedy(self, batch)
        return Slates(s.items, np.full(s.items.shape, 2.0))


class RaisingUpdateRecommender(GoodRecommender):
    """Its online update always raises."""

    name = "raising-update"

    def update(self, feedback):
        raise ValueError("update exploded")


class RepeatingRecommender(GoodRecommender):
    """Shows its best item twice."""

    name = "repeating"

    def recommend(self, batch):
        s = _greedy(self, batch)
        items = s.items.copy()
        items[:, 1] = items[:, 0]
        return Slates(items, s.propensities)


class BatchDependentRecommender(GoodRecommender):
    """Shifts its slate by the batch size: a request's slate depends on the other requests."""

    name = "batch-dependent"

    def recommend(self, batch):
        s = _greedy(self, batch)
        return Slates(np.roll(s.items, len(batch) // 20, axis=1), s.propensities)


class LyingStochasticRecommender(GoodRecommender):
    """Uniformly random first item from the top two, but logs propensity 0.9 for it (truth: 0.5)."""

    name = "lying-stochastic"
    stochastic = True

    def recommend(self, batch):
        s = _greedy(self, batch)
        items = s.items.copy()
        swap = batch.stream.uniform(batch.users, batch.sessions) < 0.5
        items[swap, 0], items[swap, 1] = s.items[swap, 1], s.items[swap, 0]
        prop = np.ones(items.shape)
        prop[:, :2] = 0.9
        return Slates(items, prop)


class HonestStochasticRecommender(LyingStochasticRecommender):
    """The same policy with the right propensities (0.5 for the two first positions)."""

    name = "honest-stochastic"

    def recommend(self, batch):
        s = super().recommend(batch)
        s.propensities[:, :2] = 0.5
        return s

    def action_probabilities(self, batch, items):
        top = _greedy(self, batch).items
        items = np.asarray(items)
        out = np.zeros(items.shape)
        k = min(top.shape[1], items.shape[1])
        out[:, :k] = top[:, :k] == items[:, :k]
        if k >= 2:
            pair = (items[:, :2] == top[:, :1]) | (items[:, :2] == top[:, 1:2])
            out[:, :2] = np.where(pair, 0.5, 0.0)
        return out


class WrongActionProbabilitiesRecommender(HonestStochasticRecommender):
    """Logs the right propensities but its action_probabilities says 1 for every item."""

    name = "wrong-action-probabilities"

    def action_probabilities(self, batch, items):
        return np.ones(np.asarray(items).shape)


class MiscalibratedStochasticRecommender(GoodRecommender):
    """Swaps the first two items with probability 0.3 but logs 0.5 for both (sums stay at 1)."""

    name = "miscalibrated-stochastic"
    stochastic = True

    def recommend(self, batch):
        s = _greedy(self, batch)
        items = s.items.copy()
        swap = batch.stream.uniform(batch.users, batch.sessions) < 0.3
        items[swap, 0], items[swap, 1] = s.items[swap, 1], s.items[swap, 0]
        prop = np.ones(items.shape)
        prop[:, :2] = 0.5
        return Slates(items, prop)


class EagerRecommender(GoodRecommender):
    """Learns in its constructor."""

    name = "eager"

    def __init__(self, options=None, **kw):
        super().__init__(options, **kw)
        self.popularity_ = np.zeros(10)


class WarningEstimator(Estimator):
    """Difference in means that divides by zero on degenerate data (numpy warning)."""

    name = "warning-estimator"

    def estimate(self, data):
        out = []
        df = data.outcomes
        for metric in self.metrics_for(data):
            for arm in data.treatments:
                a = df.loc[df["arm"] == arm, metric].to_numpy(float)
                c = df.loc[df["arm"] == data.control, metric].to_numpy(float)
                d = a.mean() - c.mean()
                se = np.sqrt(a.var(ddof=1) / a.size + c.var(ddof=1) / c.size)
                z = 1.96 if self.level_for(data) > 0.9 else 1.28
                out.append(Estimate(self.name, metric, arm, data.control, d, d - z * se, d + z * se,
                                    level=self.level_for(data)))
        return out


class NotSeparableEstimator(WarningEstimator):
    """Declares ``separable_metrics`` but adds noise from one generator shared by all its metrics, so a
    metric's estimate depends on which metrics are estimated before it."""

    name = "not-separable"
    tags = EstimatorTags(separable_metrics=True, stochastic=True)

    def estimate(self, data):
        from counterfeed.core.randomness import Keys

        rng = Keys(data.seed).numpy_generator(self.name)
        out = []
        for e in super().estimate(replace(data, outcomes=data.outcomes[data.outcomes["arm"].isin(data.arms)])):
            shift = float(rng.normal())
            out.append(Estimate(self.name, e.metric, e.arm, e.control, e.point + shift, e.lower + shift,
                                e.upper + shift, level=e.level))
        return out


class LogEstimator(Estimator):
    """A third-party estimator that needs the impression log: per-user clicks from ``data.events``,
    difference in means with a normal interval."""

    name = "log-clicks"
    tags = EstimatorTags(requires_events=True, estimands=("difference",))

    def _clicks(self, data):
        if data.events is None or data.events.impressions is None:
            raise DataError("log-clicks: needs the A/B world's impression log (data.events)")
        imp = data.events.impressions
        return np.bincount(imp.user, weights=imp.click.astype(float), minlength=data.n_users)

    def estimate(self, data):
        y = self._clicks(data)
        arm = data.outcomes["arm"].to_numpy()
        level = self.level_for(data)
        z = float(stats.norm.ppf(0.5 + level / 2))
        out = []
        for treat in data.treatments:
            a, c = y[arm == treat], y[arm == data.control]
            if a.size < 2 or c.size < 2:
                raise DataError("log-clicks: needs two users per arm")
            d = float(a.mean() - c.mean())
            se = float(np.sqrt(a.var(ddof=1) / a.size + c.var(ddof=1) / c.size))
            out.append(Estimate(self.name, "clicks", treat, data.control, d, d - z * se, d + z * se, level=level))
        return out


class UndeclaredLogEstimator(LogEstimator):
    """Reads the impression log without declaring ``requires_events``."""

    name = "undeclared-log"
    tags = EstimatorTags()

    def _clicks(self, data):
        imp = data.events.impressions
        return np.bincount(imp.user, weights=imp.click.astype(float), minlength=data.n_users)


class SilentLogEstimator(LogEstimator):
    """Declares ``requires_events`` but answers without it (zeros) instead of saying it is missing."""

    name = "silent-log"

    def _clicks(self, data):
        if data.events is None:
            return np.zeros(data.n_users)
        return super()._clicks(data)


class LeakyMetric(Metric):
    """Counts every session, ignoring the window."""

    name = "leaky"

    def compute(self, events, start, end):
        return np.bincount(events.sessions["user"], minlength=events.n_users).astype(float)


class WrongDimCatalog(Catalog):
    """Ignores ctx.dimensions."""

    name = "wrong-dim"

    def build(self, ctx):
        return make_items(20, dimensions=4, seed=0)


class DwellWithoutClickUser(UserModel):
    """Dwells on every shown item, clicked or not."""

    name = "dwell-without-click"

    def init_state(self, population, items, keys):
        return {"keys": keys}

    def first_visit(self, state, users):
        return np.ones(len(users))

    def respond(self, state, batch, slates):
        n, k = slates.items.shape
        clicks = np.zeros((n, k), bool)
        return Response(clicks, np.ones((n, k)), np.ones(n))


class NeedsOptionsRecommender(GoodRecommender):
    """Only valid with ``mode`` set; declares conformance_options."""

    name = "needs-options"
    conformance_options = {"mode": "top"}

    class Options(Options):
        mode: str


@hookimpl
def register_recommenders(register):
    for cls in (WrongShapeRecommender, BadPropensityRecommender, RaisingUpdateRecommender):
        register(cls)
