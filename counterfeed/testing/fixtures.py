"""Small synthetic inputs for testing plugins: a catalog, a population, logs, batches, events, outcomes.

Every builder is deterministic for its ``seed`` and cheap (milliseconds), so plugin authors can use
them directly in their own tests::

    from counterfeed.testing.fixtures import make_items, make_context, make_batch

    ctx = make_context(n_items=40, n_users=100)
    rec = MyRecommender()
    rec.setup(ctx)
    slates = rec.recommend(make_batch(ctx, users=[0, 1, 2]))
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from counterfeed.core.contracts import (Batch, CatalogContext, Items, Log, MetricInfo, Population,
                                        RecommenderContext, WorldEvents)
from counterfeed.core.estimation import AnalysisData, Looks, PolicySpec
from counterfeed.core.randomness import Keys
from counterfeed.testing.observational import observational_inputs

__all__ = ["make_items", "make_population", "make_context", "make_catalog_context", "make_batch",
           "make_log", "make_world_events", "make_looks", "make_analysis_data", "make_covariates",
           "ANALYSIS_METRICS", "ANALYSIS_POLICY", "ANALYSIS_WINDOW"]

#: The metrics of :func:`make_analysis_data`: two sums, a binary and a ratio of the two sums.
ANALYSIS_METRICS: dict[str, MetricInfo] = {
    "clicks": MetricInfo("clicks", "sum"),
    "impressions": MetricInfo("impressions", "sum"),
    "retained": MetricInfo("retained", "binary"),
    "ctr": MetricInfo("ctr", "ratio", numerator="clicks", denominator="impressions"),
}

#: The policy of every treatment arm of :func:`make_analysis_data` (the control's is ``random``).
ANALYSIS_POLICY = PolicySpec("popularity", {})

#: The experiment window ``(start, end)`` in days of :func:`make_analysis_data` and its event log.
ANALYSIS_WINDOW = (0.0, 10.0)
_N_ITEMS, _SLATE = 30, 4  # the catalog and slate sizes of that event log
_START, _END = ANALYSIS_WINDOW


def make_items(n_items: int = 60, dimensions: int = 8, n_topics: int = 4, seed: int = 0, *,
               text: bool = True, late_items: int = 0) -> Items:
    """A random catalog; the last ``late_items`` items arrive at day 1 instead of day 0."""
    rng = np.random.default_rng(seed)
    topic = np.arange(n_items, dtype=np.int64) % n_topics
    centers = rng.normal(size=(n_topics, dimensions))
    vectors = centers[topic] + 0.5 * rng.normal(size=(n_items, dimensions))
    arrival = np.zeros(n_items)
    if late_items:
        arrival[n_items - late_items:] = 1.0
    names = [f"topic {t}" for t in range(n_topics)]
    texts = [f"item {i} about {names[t]}" for i, t in enumerate(topic)] if text else None
    return Items(vectors=vectors, quality=rng.normal(0.0, 0.5, n_items), topic=topic, n_topics=n_topics,
                 arrival=arrival, text=texts, topic_names=names,
                 topic_text=[f"stories about {n}" for n in names])


def make_population(n_users: int = 200, dimensions: int = 8, seed: int = 0,
                    segments: Sequence[str] = ("new", "loyal")) -> Population:
    """Random users in two segments; loyal users visit twice as often."""
    rng = np.random.default_rng(seed + 1)
    seg = np.arange(n_users, dtype=np.int64) % len(segments)
    activity = np.where(seg == 1, 2.0, 1.0)
    return Population(n=n_users, preferences=rng.normal(size=(n_users, dimensions)), segment=seg,
                      segment_names=list(segments), activity=activity)


def make_context(n_items: int = 60, n_users: int = 200, slate_size: int = 5, dimensions: int = 8,
                 seed: int = 0, arm: str = "treatment", items: Items | None = None) -> RecommenderContext:
    """A :class:`RecommenderContext` over :func:`make_items`."""
    items = make_items(n_items, dimensions, seed=seed) if items is None else items
    return RecommenderContext(items=items, n_users=n_users, slate_size=slate_size, keys=Keys(seed), arm=arm)


def make_catalog_context(dimensions: int = 8, seed: int = 0, cache_dir: str | None = None,
                         base_dir: str = ".") -> CatalogContext:
    """A :class:`CatalogContext` with the ``catalog`` stream of ``Keys(seed)``."""
    keys = Keys(seed)
    return CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=dimensions,
                          cache_dir=cache_dir, base_dir=base_dir)


def make_batch(ctx: RecommenderContext, users: Sequence[int] | np.ndarray, sessions=None, *,
               time: float = 0.5, available: np.ndarray | None = None, slate_size: int | None = None,
               stream: str = "policy:treatment") -> Batch:
    """A batch of requests from ``users`` (sessions default to 0) on the named policy stream."""
    users = np.asarray(users, dtype=np.int64)
    sessions = (np.zeros_like(users) if sessions is None
                else np.broadcast_to(np.asarray(sessions, dtype=np.int64), users.shape).copy())
    return Batch(users=users, sessions=sessions, time=float(time),
                 slate_size=ctx.slate_size if slate_size is None else int(slate_size),
                 stream=ctx.keys.stream(stream), available=available)


def make_log(ctx: RecommenderContext, n_requests: int = 300, seed: int = 0, *, start: float = 0.0,
             end: float = 1.0, arm: int = 0) -> Log:
    """A log of uniformly random slates (propensity ``k / n_items`` style 1/n) with clicks that favour
    items close to each user's hidden taste, so a learning policy has some signal."""
    rng = np.random.default_rng(seed + 2)
    items, k = ctx.items, ctx.slate_size
    n_items = items.n
    users = rng.integers(0, ctx.n_users, n_requests)
    sessions = np.zeros(n_requests, np.int64)
    seen: dict[int, int] = {}
    for r, u in enumerate(users):  # session index = number of earlier requests of that user
        sessions[r] = seen.get(int(u), 0)
        seen[int(u)] = sessions[r] + 1
    shown = np.argsort(rng.random((n_requests, n_items)), axis=1)[:, :k]
    taste = rng.normal(size=(ctx.n_users, items.vectors.shape[1]))
    util = np.einsum("rd,rkd->rk", taste[users], items.vectors[shown]) + items.quality[shown]
    click = rng.random((n_requests, k)) < 1.0 / (1.0 + np.exp(-(util - 2.0)))
    dwell = np.where(click, rng.exponential(30.0, (n_requests, k)), 0.0)
    time = np.sort(rng.uniform(start, end, n_requests))
    rep = lambda a: np.repeat(a, k)  # noqa: E731 - one column per (request, position)
    return Log(user=rep(users).astype(np.int64), session=rep(sessions), time=rep(time),
               position=np.tile(np.arange(k, dtype=np.int64), n_requests), item=shown.ravel().astype(np.int64),
               click=click.ravel(), dwell=dwell.ravel(), propensity=np.full(n_requests * k, 1.0 / n_items),
               arm=np.full(n_requests * k, arm, np.int64))


def make_world_events(n_users: int = 80, seed: int = 0, *, start: float = 0.0, end: float = 10.0,
                      n_items: int = 30, slate_size: int = 4, arms: Sequence[str] = ("control", "treatment"),
                      world: str = "ab", assignment: np.ndarray | None = None,
                      click_rate: float = 0.2) -> WorldEvents:
    """A world's sessions and impressions over ``[start, end)``; some users churn, some never visit.

    Slates are uniformly random (propensity ``1 / n_items`` at every position); each impression is
    clicked with probability ``click_rate``."""
    rng = np.random.default_rng(seed + 3)
    assignment = (np.arange(n_users, dtype=np.int64) % len(arms) if assignment is None
                  else np.asarray(assignment, dtype=np.int64))
    counts = rng.poisson(4.0, n_users)
    counts[: max(1, n_users // 10)] = 0  # users who never visit
    user = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    session = np.concatenate([np.arange(c, dtype=np.int64) for c in counts]) if counts.sum() else np.zeros(0, np.int64)
    time = np.empty(user.size)
    pos = 0
    for c in counts:
        time[pos:pos + c] = np.sort(rng.uniform(start, end, c))
        pos += c
    n_s = user.size
    shown = np.argsort(rng.random((n_s, n_items)), axis=1)[:, :slate_size]
    click = rng.random((n_s, slate_size)) < click_rate
    dwell = np.where(click, rng.exponential(20.0, (n_s, slate_size)), 0.0)
    churned = np.zeros(n_s, bool)
    last = np.cumsum(counts)[counts > 0] - 1
    churned[last] = rng.random(last.size) < 0.3
    sessions = {"user": user, "session": session, "time": time, "arm": assignment[user],
                "impressions": np.full(n_s, slate_size, np.int64), "clicks": click.sum(axis=1).astype(np.int64),
                "dwell": dwell.sum(axis=1), "churned": churned}
    rep = lambda a: np.repeat(a, slate_size)  # noqa: E731
    impressions = Log(user=rep(user), session=rep(session), time=rep(time),
                      position=np.tile(np.arange(slate_size, dtype=np.int64), n_s), item=shown.ravel().astype(np.int64),
                      click=click.ravel(), dwell=dwell.ravel(), propensity=np.full(n_s * slate_size, 1.0 / n_items),
                      arm=rep(assignment[user]))
    return WorldEvents(world=world, n_users=n_users, sessions=sessions, impressions=impressions, start=start,
                       end=end, arms=list(arms), assignment=assignment, items=make_items(n_items, seed=seed))


def make_looks(events: WorldEvents, times: Sequence[float] | np.ndarray, start: float = 0.0) -> Looks:
    """Per-look cumulative values of :data:`ANALYSIS_METRICS` from ``events`` (see :class:`Looks`).

    ``clicks`` and ``impressions`` sum the sessions of ``[start, start + t)``; ``retained`` is 1 for a
    user with a session in that window.
    """
    times = np.asarray(times, dtype=np.float64)
    s, n = events.sessions, events.n_users
    in_exp = s["time"] >= start
    first = np.full(n, np.inf)
    np.minimum.at(first, s["user"][in_exp], s["time"][in_exp])
    values: dict[str, list[np.ndarray]] = {"clicks": [], "impressions": [], "retained": []}
    for t in times:
        m = in_exp & (s["time"] < start + t)
        for name, col in (("clicks", "clicks"), ("impressions", "impressions")):
            values[name].append(np.bincount(s["user"][m], weights=s[col][m].astype(np.float64), minlength=n))
        values["retained"].append((np.bincount(s["user"][m], minlength=n) > 0).astype(np.float64))
    return Looks(times=times, exposed=np.stack([first < start + t for t in times]),
                 values={k: np.stack(v) for k, v in values.items()})


def make_analysis_data(n_users: int = 400, seed: int = 0, *, arms: Sequence[str] = ("control", "treatment"),
                       effect: float = 0.3, level: float = 0.95, degenerate: str | None = None,
                       with_events: bool = True, look_times: Sequence[float] | np.ndarray | None = None
                       ) -> AnalysisData:
    """Per-user outcomes of an A/B world with the metrics of :data:`ANALYSIS_METRICS`, and every
    declared input beside them.

    Columns: ``user``, ``arm``, ``segment``, ``clicks``, ``impressions``, ``retained``, ``ctr`` and
    ``pre_<metric>`` for each. Treatment arms get ``effect`` more expected clicks per impression
    unit. ``degenerate`` is ``None``, ``"zeros"`` (every outcome 0, no clicks in the log) or
    ``"one-per-arm"`` (one user per arm).

    Beside the outcomes: the experiment window ``[0, 10)``; equal assignment probabilities (arms are
    drawn uniformly); the policies (control ``random``, treatments :data:`ANALYSIS_POLICY`) with a
    30-item catalog and slates of 4; with ``with_events`` a synthetic event log of the same users and
    arms (:func:`make_world_events`); with ``look_times`` (days from the start) the per-look values
    of that log (:func:`make_looks`, all zero when ``degenerate="zeros"``); the observational inputs
    (covariates, a declared graph, an instrument, a staggered panel) of
    :func:`~counterfeed.testing.observational.observational_inputs`.
    """
    arms = list(arms)
    rng = np.random.default_rng(seed + 4)
    if degenerate == "one-per-arm":
        n_users = len(arms)
    arm_idx = np.arange(n_users) % len(arms) if degenerate == "one-per-arm" else rng.integers(0, len(arms), n_users)
    segment = np.where(np.arange(n_users) % 3 == 0, "loyal", "new")
    pre_impr = rng.poisson(20.0, n_users).astype(float)
    impressions = rng.poisson(20.0, n_users).astype(float) + 0.5 * (pre_impr - 20.0).clip(0)
    base = rng.gamma(2.0, 0.05, n_users)
    lift = effect * (arm_idx > 0) * 0.05
    pre_clicks = rng.binomial(pre_impr.astype(int), base).astype(float)
    clicks = rng.binomial(impressions.astype(int), np.clip(base + lift, 0, 1)).astype(float)
    retained = (rng.random(n_users) < 0.6 + 0.05 * (arm_idx > 0)).astype(float)
    pre_retained = (rng.random(n_users) < 0.6).astype(float)
    if degenerate == "zeros":
        pre_impr = impressions = clicks = pre_clicks = retained = pre_retained = np.zeros(n_users)
    elif degenerate not in (None, "one-per-arm"):
        raise ValueError(f"unknown degenerate case {degenerate!r}")

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros_like(num), where=den > 0)

    outcomes = pd.DataFrame({
        "user": np.arange(n_users, dtype=np.int64), "arm": np.asarray(arms, dtype=object)[arm_idx],
        "segment": segment, "clicks": clicks, "impressions": impressions, "retained": retained,
        "ctr": ratio(clicks, impressions), "pre_clicks": pre_clicks, "pre_impressions": pre_impr,
        "pre_retained": pre_retained, "pre_ctr": ratio(pre_clicks, pre_impr),
    })
    events = looks = None
    if with_events or look_times is not None:
        events = make_world_events(n_users, seed, start=_START, end=_END, n_items=_N_ITEMS, slate_size=_SLATE,
                                   arms=arms, assignment=arm_idx, click_rate=0.0 if degenerate == "zeros" else 0.2)
    if look_times is not None:
        looks = make_looks(events, look_times, _START)
        if degenerate == "zeros":
            looks.values = {k: np.zeros_like(v) for k, v in looks.values.items()}
    policies = {a: (PolicySpec("random", {}) if i == 0 else ANALYSIS_POLICY) for i, a in enumerate(arms)}
    covariates = make_covariates(outcomes, seed)
    observational = observational_inputs(outcomes, covariates, arm_idx, ["clicks", "impressions", "retained"], seed,
                                         ANALYSIS_WINDOW, zeros=degenerate == "zeros")
    return AnalysisData(**observational, outcomes=outcomes, arms=arms, control=arms[0], metrics=dict(ANALYSIS_METRICS),
                        level=level, seed=seed, start=_START, end=_END,
                        assignment_probabilities=np.full((n_users, len(arms)), 1.0 / len(arms)),
                        policies=policies, items=make_items(_N_ITEMS, seed=seed), slate_size=_SLATE,
                        events=events if with_events else None, looks=looks, covariates=covariates)


def make_covariates(outcomes: pd.DataFrame, seed: int = 0, n_features: int = 2) -> pd.DataFrame:
    """Pre-treatment covariates of ``outcomes``' users (the columns of ``AnalysisData.covariates``):
    ``user``, ``segment``, ``pre_sessions``, ``pre_impressions``, ``pre_clicks``, ``pre_dwell``,
    ``pre_ctr``, ``tenure`` (days) and ``feature_0..`` (standard normal), drawn from their own
    generator so the outcomes do not change."""
    rng = np.random.default_rng(seed + 5)
    n = len(outcomes)
    pre_impr = outcomes["pre_impressions"].to_numpy(np.float64) if "pre_impressions" in outcomes else np.zeros(n)
    pre_clicks = outcomes["pre_clicks"].to_numpy(np.float64) if "pre_clicks" in outcomes else np.zeros(n)
    cov = pd.DataFrame({"user": outcomes["user"].to_numpy(), "segment": outcomes["segment"].to_numpy(),
                        "pre_sessions": np.ceil(pre_impr / 4.0), "pre_impressions": pre_impr,
                        "pre_clicks": pre_clicks, "pre_dwell": pre_clicks * rng.gamma(2.0, 10.0, n),
                        "pre_ctr": np.divide(pre_clicks, pre_impr, out=np.zeros(n), where=pre_impr > 0),
                        "tenure": rng.uniform(0.0, 60.0, n)})
    for k in range(n_features):
        cov[f"feature_{k}"] = rng.normal(size=n)
    return cov
