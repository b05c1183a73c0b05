"""Built-in per-user "beyond accuracy" metrics: diversity, novelty, unexpectedness, calibration, drift.

Every metric here is per user (``level = "user"``) and a **ratio**: a per-user sum over the user's
slates or clicks divided by a per-user count, so a user with nothing to measure (no slate, no click)
has a count of 0 and drops out of the group value (sum of numerators / sum of denominators) instead
of counting as 0. Estimators use the numerator and denominator columns (delta method), as for CTR.
Each reads the window's impressions (``events.impressions``) and the catalog (``events.items``).

Definitions (``k`` slate size, ``t_i`` topic of item ``i``, ``e_i`` unit vector of item ``i``):

``diversity`` (topic space)
    mean over the user's slates of the intra-list diversity ``ILD = 2/(k(k-1)) sum_{i<j} d(i, j)``
    with ``d = 1`` when two items differ in topic, else 0 (Ziegler et al., "Improving recommendation
    lists through topic diversification", WWW 2005). A slate of fewer than 2 items has ILD 0.
``diversity-embedding``
    the same with the cosine distance ``d = 1 - e_i . e_j`` of the items' text embeddings
    (``Items.embeddings``), or of their latent vectors when the catalog has no embeddings.
``novelty``
    mean over the user's clicks of the self-information ``log2(U / n_i)`` of the clicked item, where
    ``n_i`` is the number of users of the world who clicked ``i`` in the window and ``U`` the number
    of users with a click (Zhou et al., "Solving the apparent diversity-accuracy dilemma of
    recommender systems", PNAS 2010). It depends on the other users of the world by definition.
``unexpectedness``
    share of the user's clicks after their first that land on a topic the user had not clicked
    before in the window: ``(distinct clicked topics - 1) / (clicks - 1)``. Clicks are relevant by
    construction, so this is the unexpected-and-relevant notion of serendipity of Ge, Delgado-Battenfeld
    and Jannach ("Beyond accuracy", RecSys 2010), with the history taken as the user's earlier clicks
    (Kaminskas and Bridge, "Diversity, serendipity, novelty, and coverage", ACM TiiS 2016).
``calibration-kl``
    ``KL(p || q~) = sum_g p(g) log(p(g) / q~(g))`` between the topic mix ``p`` of the user's clicks
    and ``q~ = (1 - a) q + a p`` (``a = 0.01``), ``q`` the topic mix of the items shown to the user
    (Steck, "Calibrated recommendations", RecSys 2018, eq. 3-4). 0 is perfectly calibrated.
``taste-drift``
    total variation distance ``1/2 sum_g |p1(g) - p2(g)|`` between the topic mix of the user's clicks
    in the first and in the second half of the window (users with clicks in both halves): how far the
    user's consumption moved from where it started.
"""

from __future__ import annotations

import numpy as np

from counterfeed.core.contracts import Metric, WorldEvents
from counterfeed.core.hookspecs import hookimpl
from counterfeed.plugins.metrics.impression_index import (Clicks, ImpressionIndex, distinct, slate_ild_topic, slate_ild_vectors,
                                                          window_slates)

__all__ = ["Diversity", "DiversityEmbedding", "Novelty", "Unexpectedness", "CalibrationKL", "TasteDrift",
           "slate_ild_topic", "slate_ild_vectors", "topic_counts", "PARTS"]

CALIBRATION_ALPHA = 0.01


#: the last result of each helper, keyed by the identity of its input (the metrics of one run read
#: the same window's log many times; the arrays are never modified)
_LAST: dict[str, tuple] = {}


def _cached(name: str, key: tuple, fn):
    hit = _LAST.get(name)
    if hit is not None and len(hit[0]) == len(key) and all(
            a is b or (isinstance(a, float) and a == b) for a, b in zip(hit[0], key)):
        return hit[1]
    out = fn()
    _LAST[name] = (key, out)
    return out


def _index(events: WorldEvents) -> ImpressionIndex:
    """The impression log's :class:`ImpressionIndex` (one per log: every window and metric shares it)."""
    imp = events.impressions
    if imp is None:
        raise ValueError("this metric needs the impression log (the scenario records impressions by default)")
    if events.items is None:
        raise ValueError("this metric needs the catalog (WorldEvents.items)")
    return _cached("index", (imp, events.items), lambda: ImpressionIndex(imp, events.items))


def _slate_window(events: WorldEvents, start: float, end: float) -> tuple[ImpressionIndex, np.ndarray | None]:
    index = _index(events)
    return _cached("slate-window", (index, float(start), float(end)), lambda: window_slates(index, start, end))


def _per_slate_sum(events: WorldEvents, start: float, end: float, value: str | None) -> np.ndarray:
    """Per user, the sum over their slates in the window of the per-slate ``value`` (None: 1)."""
    index, mask = _slate_window(events, start, end)
    user = index.slate_user if mask is None else index.slate_user[mask]
    w = None if value is None else getattr(index, value) if mask is None else getattr(index, value)[mask]
    return np.bincount(user, weights=w, minlength=events.n_users).astype(np.float64)


def topic_counts(users: np.ndarray, topics: np.ndarray, n_users: int, n_topics: int) -> np.ndarray:
    """(n_users, n_topics) counts of rows per (user, topic)."""
    flat = np.bincount(users.astype(np.int64) * n_topics + topics, minlength=n_users * n_topics)
    return flat.reshape(n_users, n_topics).astype(np.float64)


# ------------------------------------------------------------------------------------------------
# numerators and denominators (each a registered per-user metric, so ratio metrics can name them)
# ------------------------------------------------------------------------------------------------

def _diversity_sum(events, start, end, space):
    return _per_slate_sum(events, start, end, "ild_topic" if space == "topic" else "ild_embedding")


def _slate_count(events, start, end):
    return _per_slate_sum(events, start, end, None)


def _clicks(events, start, end) -> Clicks:
    """The clicks with ``start <= time < end``, in log order."""
    return _index(events).window_clicks(start, end)


def _click_count(events, start, end):
    c = _clicks(events, start, end)
    return np.bincount(c.user, minlength=events.n_users).astype(np.float64)


def _novelty_sum(events, start, end):
    c = _clicks(events, start, end)
    if not len(c):
        return np.zeros(events.n_users)
    users, items = _index(events).distinct_pairs(c)
    n_i = np.bincount(items, minlength=events.items.n)
    u_active = int(np.count_nonzero(np.bincount(users)))
    info = np.log2(u_active / n_i[c.item])
    return np.bincount(c.user, weights=info, minlength=events.n_users).astype(np.float64)


def _unexpected_sum(events, start, end):
    c = _clicks(events, start, end)
    n_t = events.items.n_topics
    topics = np.bincount(distinct(c.user.astype(np.int64) * n_t + events.items.topic[c.item]) // n_t,
                         minlength=events.n_users).astype(np.float64)
    return np.maximum(topics - 1.0, 0.0)


def _unexpected_count(events, start, end):
    return np.maximum(_click_count(events, start, end) - 1.0, 0.0)


def _calibration_sum(events, start, end):
    index = _index(events)
    n, n_t, topic = events.n_users, events.items.n_topics, events.items.topic
    c = _clicks(events, start, end)
    p = topic_counts(c.user, topic[c.item], n, n_t)
    q = topic_counts(index.column("user", start, end), topic[index.column("item", start, end)], n, n_t)
    has = p.sum(axis=1) > 0
    p, q = p[has] / p[has].sum(axis=1, keepdims=True), q[has] / q[has].sum(axis=1, keepdims=True)
    qt = (1.0 - CALIBRATION_ALPHA) * q + CALIBRATION_ALPHA * p
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / qt), 0.0)
    out = np.zeros(n)
    out[has] = terms.sum(axis=1)
    return out


def _clickers(events, start, end):
    return (_click_count(events, start, end) > 0).astype(np.float64)


def _halves(events, start, end):
    mid = start + (end - start) / 2.0
    n, n_t = events.n_users, events.items.n_topics
    out = []
    for lo, hi in ((start, mid), (mid, end)):
        c = _clicks(events, lo, hi)
        counts = topic_counts(c.user, events.items.topic[c.item], n, n_t)
        out.append(counts)
    return out


def _drift_sum(events, start, end):
    a, b = _halves(events, start, end)
    both = (a.sum(axis=1) > 0) & (b.sum(axis=1) > 0)
    out = np.zeros(events.n_users)
    pa = a[both] / a[both].sum(axis=1, keepdims=True)
    pb = b[both] / b[both].sum(axis=1, keepdims=True)
    out[both] = 0.5 * np.abs(pa - pb).sum(axis=1)
    return out


def _drift_users(events, start, end):
    a, b = _halves(events, start, end)
    return ((a.sum(axis=1) > 0) & (b.sum(axis=1) > 0)).astype(np.float64)


def _part(name: str, doc: str, fn) -> type[Metric]:
    """A registered per-user metric class computing ``fn(events, start, end)``."""
    def compute(self, events, start, end):  # the ratio metric and the outcome table both ask for it
        key = (events.impressions, events.items, float(start), float(end))
        return _cached(f"part:{name}", key, lambda: fn(events, start, end)).copy()

    return type(name.title().replace("-", ""), (Metric,), {
        "name": name, "__doc__": doc, "__module__": __name__, "compute": compute})


#: the numerators and denominators of the ratio metrics, registered under their own names
PARTS: tuple[type[Metric], ...] = (
    _part("slates", "Slates shown to the user (distinct sessions in the impression log).", _slate_count),
    _part("diversity-sum", "Sum over the user's slates of their topic intra-list diversity.",
          lambda e, s, t: _diversity_sum(e, s, t, "topic")),
    _part("diversity-embedding-sum", "Sum over the user's slates of their embedding intra-list diversity.",
          lambda e, s, t: _diversity_sum(e, s, t, "embedding")),
    _part("novelty-sum", "Sum over the user's clicks of the clicked item's self-information (bits).",
          _novelty_sum),
    _part("clicked-items", "Clicks in the impression log (the count behind novelty).", _click_count),
    _part("unexpectedness-sum", "Distinct topics the user clicked, minus one (0 without clicks).",
          _unexpected_sum),
    _part("unexpectedness-count", "The user's clicks after their first.", _unexpected_count),
    _part("calibration-kl-sum", "The user's calibration KL (0 without clicks).", _calibration_sum),
    _part("clickers", "1 if the user clicked in the window, else 0.", _clickers),
    _part("taste-drift-sum", "The user's taste drift (0 without clicks in both halves).", _drift_sum),
    _part("taste-drift-users", "1 if the user clicked in both halves of the window, else 0.", _drift_users),
)
_BY_NAME = {p.name: p for p in PARTS}


class _Ratio(Metric):
    aggregation = "ratio"

    def compute(self, events, start, end):
        num = _BY_NAME[self.numerator]().compute(events, start, end)
        den = _BY_NAME[self.denominator]().compute(events, start, end)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


class Diversity(_Ratio):
    """Mean intra-list diversity in topic space of the slates shown to the user (see module)."""

    name, numerator, denominator = "diversity", "diversity-sum", "slates"


class DiversityEmbedding(_Ratio):
    """Mean intra-list diversity in embedding space of the slates shown to the user (see module)."""

    name, numerator, denominator = "diversity-embedding", "diversity-embedding-sum", "slates"


class Novelty(_Ratio):
    """Mean self-information (bits) of the items the user clicked (see module)."""

    name, numerator, denominator = "novelty", "novelty-sum", "clicked-items"
    interference = ("its item popularity pools every user of the world, so in the A/B world each arm's "
                    "novelty depends on the other arms' clicks: the A/B comparison does not identify the "
                    "effect on novelty (see the true effect from the counterfactual worlds; docs/long-term.md)")


class Unexpectedness(_Ratio):
    """Share of the user's later clicks on a topic new to them (see module)."""

    name, numerator, denominator = "unexpectedness", "unexpectedness-sum", "unexpectedness-count"


class CalibrationKL(_Ratio):
    """Steck's calibration KL between clicked and shown topic mixes; lower is better (see module)."""

    name, numerator, denominator = "calibration-kl", "calibration-kl-sum", "clickers"
    higher_is_better = False


class TasteDrift(_Ratio):
    """Total variation between the topic mix of the user's clicks early and late (see module)."""

    name, numerator, denominator = "taste-drift", "taste-drift-sum", "taste-drift-users"
    higher_is_better = False


@hookimpl
def register_metrics(register):
    for cls in (*PARTS, Diversity, DiversityEmbedding, Novelty, Unexpectedness, CalibrationKL, TasteDrift):
        register(cls)
