"""Built-in population-level metrics: coverage, exposure concentration, popularity lift, provider
fairness, homogenization.

Each is one number for a group of users (``level = "population"``, see
:class:`counterfeed.core.longterm.PopulationMetric`), computed from the group's impressions with
``start <= time < end`` over the items available before ``end`` (``Items.arrival < end``). A run
reports each in every world and arm group, the true global effect from the counterfactual worlds
and what a naive A/B comparison would claim; no estimator sees them.

Definitions (``x_i`` impressions of item ``i`` among the ``n`` available items, ``X = sum x_i``):

``coverage``
    share of the available items shown at least once (Ge et al., "Beyond accuracy", RecSys 2010).
``exposure-gini``
    Gini coefficient ``G = sum_i (2 i - n - 1) x_(i) / (n X)`` of the sorted exposures ``x_(1) <=
    ... <= x_(n)``; 0 when every item is shown equally, ``1 - 1/n`` when one item gets everything
    (Fleder and Hosanagar, "Blockbuster culture's next rise or fall", Management Science 2009).
``exposure-entropy``
    Shannon entropy ``-sum_i p_i log2 p_i`` (bits) of the exposure shares ``p_i = x_i / X``;
    ``log2 n`` when uniform.
``popularity-lift``
    exposure share of the head (the ``head`` share of available items with the most exposure) divided
    by the head's share of true appeal, with appeal ``exp(quality_i)`` (the multinomial-logit weight
    of the utility every user shares). 1: exposure proportional to appeal; above 1: the head gets
    more than its appeal warrants (after Abdollahpouri et al., "The unfairness of popularity bias in
    recommendation", 2019, which compares recommended to profile popularity).
``provider-fairness-gap``
    total variation ``1/2 sum_g |e_g - c_g|`` between the exposure shares ``e_g`` of the provider
    groups and their shares ``c_g`` of the available catalog (equal exposure per item: Singh and
    Joachims, "Fairness of exposure in rankings", KDD 2018). Groups: ``Items.extra["provider"]``
    when the catalog has it, else the topics. :func:`group_exposure` gives the per-group shares.
``homogenization``
    mean over consecutive ``window``-day periods (default 7) of the mean pairwise cosine (Ochiai)
    similarity of the users' consumed (clicked) item sets in the period, over the group's users with
    a click there (periods with fewer than two such users are skipped): ``(|sum_u x_u / sqrt(n_u)|^2 - U) / (U (U - 1))`` for binary
    consumption vectors ``x_u`` with ``n_u`` items, exact in O(clicks) (Chaney, Stewart and
    Engelhardt, "How algorithmic confounding in recommendation systems increases homogeneity",
    RecSys 2018, measure the overlap of consumed sets with Jaccard; cosine is the overlap measure
    that decomposes over items, so it stays exact for millions of users; per period, as the
    interaction similarity of T-RECS, Lucherini et al. 2021, because consumed sets accumulated over
    months saturate).
``homogenization-growth``
    overlap of the consumed sets of the last ``window`` days (default 7) minus that of the first.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import Field

from counterfeed.core.contracts import Options, WorldEvents
from counterfeed.core.hookspecs import hookimpl
from counterfeed.core.longterm import PopulationMetric
from counterfeed.plugins.metrics.beyond_accuracy import _cached, _clicks, _index
from counterfeed.plugins.metrics.impression_index import distinct

__all__ = ["Coverage", "ExposureGini", "ExposureEntropy", "PopularityLift", "ProviderFairnessGap",
           "Homogenization", "HomogenizationGrowth", "gini", "group_exposure", "homogenization"]


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values ``x`` (NaN when they sum to 0)."""
    x = np.sort(np.asarray(x, dtype=np.float64))
    n, total = x.size, x.sum()
    if n == 0 or total <= 0:
        return math.nan
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * x).sum() / (n * total))


def homogenization(users: np.ndarray, items: np.ndarray, n_items: int) -> float:
    """Mean pairwise cosine similarity of the binary consumed-item sets of the users in ``users``
    (one row per consumption; repeats count once). NaN with fewer than two users."""
    pairs = distinct(users.astype(np.int64) * n_items + items)
    return _overlap(pairs // n_items, pairs % n_items, n_items)


def _overlap(u: np.ndarray, i: np.ndarray, n_items: int) -> float:
    """:func:`homogenization` of the distinct consumed pairs (user ``u``, item ``i``) sorted by user."""
    start = np.flatnonzero(np.r_[True, u[1:] != u[:-1]]) if u.size else np.zeros(0, np.int64)
    n_users = start.size
    if n_users < 2:
        return math.nan
    n_u = np.diff(np.r_[start, u.size])
    s = np.bincount(i, weights=1.0 / np.sqrt(np.repeat(n_u, n_u)), minlength=n_items)
    return float(((s ** 2).sum() - n_users) / (n_users * (n_users - 1)))


def _exposure(events: WorldEvents, start: float, end: float, users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(impressions of each available item, available mask) for the group (the last result is reused
    for the same inputs: every exposure metric of a group and window reads it)."""
    index = _index(events)

    def count() -> np.ndarray:
        user, item = index.column("user", start, end), index.column("item", start, end)
        keep = users[user]
        return np.bincount(item if keep.all() else item[keep], minlength=events.items.n).astype(np.float64)

    avail = events.items.arrival < end
    return _cached("exposure", (index, float(start), float(end), users), count)[avail], avail


def group_exposure(events: WorldEvents, start: float, end: float, users: np.ndarray) -> dict[str, np.ndarray]:
    """Per provider group: ``exposure`` share, ``catalog`` share and ``per_item`` exposure ratio."""
    x, avail = _exposure(events, start, end, users)
    groups = np.asarray(events.items.extra.get("provider", events.items.topic))[avail].astype(np.int64)
    n_g = int(groups.max(initial=-1)) + 1
    e = np.bincount(groups, weights=x, minlength=n_g)
    c = np.bincount(groups, minlength=n_g).astype(np.float64)
    e = e / e.sum() if e.sum() > 0 else np.full(n_g, np.nan)
    c = c / c.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"exposure": e, "catalog": c, "per_item": np.where(c > 0, e / c, np.nan)}


class Coverage(PopulationMetric):
    """Share of the available catalog shown at least once to the group (see module)."""

    name = "coverage"

    def compute_group(self, events, start, end, users):
        x, _ = _exposure(events, start, end, users)
        return float((x > 0).mean()) if x.size else math.nan


class ExposureGini(PopulationMetric):
    """Gini coefficient of the items' exposure; lower is more even (see module)."""

    name = "exposure-gini"
    higher_is_better = False

    def compute_group(self, events, start, end, users):
        return gini(_exposure(events, start, end, users)[0])


class ExposureEntropy(PopulationMetric):
    """Shannon entropy (bits) of the items' exposure shares (see module)."""

    name = "exposure-entropy"

    def compute_group(self, events, start, end, users):
        x, _ = _exposure(events, start, end, users)
        if x.sum() <= 0:
            return math.nan
        p = x[x > 0] / x.sum()
        return float(-(p * np.log2(p)).sum())


class PopularityLift(PopulationMetric):
    """Exposure share of the most-exposed items over their share of true appeal (see module)."""

    name = "popularity-lift"
    higher_is_better = False

    class Options(Options):
        head: float = Field(0.2, gt=0, lt=1, description="share of available items in the head")

    def compute_group(self, events, start, end, users):
        x, avail = _exposure(events, start, end, users)
        if x.sum() <= 0:
            return math.nan
        appeal = np.exp(events.items.quality[avail])
        n_head = max(1, int(math.ceil(self.options.head * x.size)))
        head = np.lexsort((np.arange(x.size), -x))[:n_head]
        return float((x[head].sum() / x.sum()) / (appeal[head].sum() / appeal.sum()))


class ProviderFairnessGap(PopulationMetric):
    """Total variation between provider groups' exposure and catalog shares (see module)."""

    name = "provider-fairness-gap"
    higher_is_better = False

    def compute_group(self, events, start, end, users):
        g = group_exposure(events, start, end, users)
        if not np.isfinite(g["exposure"]).all():
            return math.nan
        return float(0.5 * np.abs(g["exposure"] - g["catalog"]).sum())


class Homogenization(PopulationMetric):
    """Mean pairwise cosine overlap of the users' consumed item sets, per ``window`` (see module)."""

    name = "homogenization"
    higher_is_better = False

    class Options(Options):
        window: float = Field(7.0, gt=0, description="days per consumed set; the value is the mean over "
                              "consecutive windows (the last one may be shorter)")

    def compute_group(self, events, start, end, users):
        index = _index(events)
        c = _clicks(events, start, end)
        c = c.select(users[c.user])
        values = []
        lo = start
        while lo < end - 1e-12:
            hi = min(lo + self.options.window, end)
            u, i = index.distinct_pairs(c.select((c.time >= lo) & (c.time < hi)))
            values.append(_overlap(u, i, events.items.n))
            lo = hi
        finite = [v for v in values if math.isfinite(v)]
        return float(np.mean(finite)) if finite else math.nan


class HomogenizationGrowth(PopulationMetric):
    """Homogenization over the last ``window`` days minus over the first ``window`` days (see module)."""

    name = "homogenization-growth"
    higher_is_better = False

    class Options(Options):
        window: float = Field(7.0, gt=0, description="days at each end (at most half the period)")

    def compute_group(self, events, start, end, users):
        w = min(self.options.window, (end - start) / 2.0)
        h = Homogenization(window=w)
        return h.compute_group(events, end - w, end, users) - h.compute_group(events, start, start + w, users)


@hookimpl
def register_metrics(register):
    for cls in (Coverage, ExposureGini, ExposureEntropy, PopularityLift, ProviderFairnessGap, Homogenization,
                HomogenizationGrowth):
        register(cls)
