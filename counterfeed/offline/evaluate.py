"""Offline ranking evaluation of a recommender on a logged dataset (static, held-out clicks).

The recommender is set up on the catalog, ``fit`` once on the training log (the impressions before
the split time) and never updated; every held-out round (a user's session after the split that has
at least one click) is served one list of ``cutoff`` items from the items available at that time,
and each of the round's clicks is scored by its rank in that list
(:mod:`counterfeed.offline.metrics`). Rounds are served in batches of equal availability (items
arrive at discrete times), stochastic recommenders draw on the stream ``Keys(seed).stream("policy:offline")``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from counterfeed.core._guard import guarded
from counterfeed.core.contracts import Batch, Items, Log, RecommenderContext
from counterfeed.errors import DataError, PluginError, plain
from counterfeed.offline.metrics import (MetricEstimate, coverage, grouped_warnings, rank_metric_values,
                                        ratio_estimate)

__all__ = ["OfflineReport", "evaluate_offline", "split_log", "held_out_ranks", "positivity_warning"]


@dataclass
class OfflineReport:
    """The offline metrics of one recommender; ``coverage`` maps ``k`` to a share of the catalog."""

    policy: str
    estimates: list[MetricEstimate]
    coverage: dict[int, float | None]
    n_train: int
    n_test_clicks: int
    #: the split time the caller passed (None when it did not pass one)
    split_time: float | None
    clip: float | None
    notes: list[str] = field(default_factory=list)
    #: what holds for the IPW metrics of every recommender on this log: the clipping note and the
    #: positivity warning (:func:`positivity_warning`), where they apply
    ipw_warnings: list[str] = field(default_factory=list)
    #: per held-out click: ``user``, ``weight`` (the IPW weight) and each metric's value (for bootstraps)
    clicks: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    #: held-out clicks logged with propensity 1, where positivity fails (:func:`positivity_warning`)
    positivity_failures: int = 0
    #: inverse-propensity weights above ``clip``, clipped to it
    clipped_weights: int = 0
    #: what holds for every metric of this recommender: the note that it returned lists shorter than
    #: ``cutoff`` (:func:`held_out_ranks`), where it did
    list_warnings: list[str] = field(default_factory=list)

    def ipw_label(self) -> str:
        """The IPW column's header. The estimate is self-normalized (Hajek: ``sum w v / sum w``), which is
        consistent, not unbiased: ``ipw (self-normalized, consistent)`` when positivity holds on every
        held-out click and no weight was clipped; otherwise ``ipw (biased: ...)`` saying why (a break test
        found "unbiased (ipw)" even then, and it overclaimed for the Hajek form in any case)."""
        why = []
        if self.positivity_failures:
            why.append(f"positivity fails for {self.positivity_failures} of {self.n_test_clicks}")
        if self.clipped_weights:
            why.append(f"{self.clipped_weights} weights clipped at {self.clip:g}")
        return f"ipw (biased: {'; '.join(why)})" if why else "ipw (self-normalized, consistent)"

    def value(self, metric: str, weighting: str = "naive") -> float | None:
        for e in self.estimates:
            if e.metric == metric and e.weighting == weighting:
                return e.value
        raise KeyError(f"{metric}/{weighting}")

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "split_time": self.split_time, "n_train_impressions": self.n_train,
                "n_test_clicks": self.n_test_clicks, "clip": self.clip,
                "estimates": [e.to_dict() for e in self.estimates],
                "coverage": {f"coverage@{k}": v for k, v in self.coverage.items()}, "notes": self.notes,
                "ipw_warnings": self.ipw_warnings, "positivity_failures": self.positivity_failures,
                "clipped_weights": self.clipped_weights,
                **({"list_warnings": self.list_warnings} if self.list_warnings else {})}


def split_log(log: Log, split_time: float | None = None, train_share: float = 0.8,
              names: tuple[str, str] = ("split_time", "train_share")) -> tuple[Log, Log, float]:
    """(train, test, split time): rows with ``time < split_time`` train; default: the ``train_share``
    quantile of the impression times. ``names``: what the caller calls the split time and the train
    share (``--split-time``/``--train-share`` on the command line), for the errors' advice."""
    if len(log) == 0:
        raise DataError("the log is empty")
    t = np.asarray(log.time, np.float64)
    by_share = split_time is None
    if by_share:
        if not 0.0 < train_share < 1.0:
            raise DataError(f"{names[1]} must be in (0, 1), got {train_share}")
        split_time = float(np.quantile(t, train_share))
    elif not math.isfinite(split_time):
        raise DataError(f"{names[0]} must be a finite time, got {split_time}")
    train, test = log.select(t < split_time), log.select(t >= split_time)
    if len(train) == 0 and np.unique(t).size == 1:
        raise DataError(f"every impression of the log has time {t[0]:g}, so a time split leaves no training data; "
                        "a log without a time column needs one mapped (e.g. --columns time=round)")
    n_clicks = int(np.asarray(test.click, bool).sum())
    if len(train) == 0 or n_clicks == 0:
        what = (f"{names[1]} {train_share:g} splits the log at time {split_time:g}" if by_share
                else f"{names[0]} {split_time:g}")
        change = (f"raise {names[1]}" if by_share else f"use a later {names[0]}") if len(train) == 0 else \
            (f"lower {names[1]}" if by_share else f"use an earlier {names[0]}")
        raise DataError(f"{what}, leaving {len(train)} training impressions and {n_clicks} held-out clicks "
                        f"(of {len(log)} impressions from time {t.min():g} to {t.max():g}); both must be "
                        f"positive: {change}")
    return train, test, float(split_time)


def held_out_ranks(rec: Any, test: Log, items: Items, cutoff: int, stream: Any, chunk: int = 4096,
                   name: str = "policy", short: list[tuple[int, int, int]] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ranks of the clicked rows, indices of those rows in ``test``, the served lists (rounds, cutoff)).

    A rank is 1-based, 0 when the item is not among the ``cutoff`` items served to its round. A
    recommender that returns a shorter list than asked (``min(cutoff, available items)``) has the
    list it returned scored (its missing tail is ``-1``: nothing served there, so a click on an item
    it did not return ranks 0); each such batch is appended to ``short`` as ``(rounds, returned,
    asked)`` when a list is given. A list of the wrong number of rows, or not a table of item ids,
    is the recommender's error (:class:`~counterfeed.errors.PluginError`), not a NumPy one.
    """
    click = np.flatnonzero(np.asarray(test.click, bool))
    u, s = np.asarray(test.user, np.int64)[click], np.asarray(test.session, np.int64)[click]
    t = np.asarray(test.time, np.float64)[click]
    keys = np.stack([u, s], axis=1)
    rounds, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    r_time = np.full(rounds.shape[0], np.inf)
    np.minimum.at(r_time, inv, t)
    arrivals = np.unique(np.asarray(items.arrival, np.float64))
    bucket = np.searchsorted(arrivals, r_time, side="right")
    lists = np.full((rounds.shape[0], cutoff), -1, np.int64)
    for b in np.unique(bucket):
        idx = np.flatnonzero(bucket == b)
        avail = items.arrival <= r_time[idx].min()
        k = int(min(cutoff, avail.sum()))
        for lo in range(0, idx.size, chunk):
            sl = idx[lo:lo + chunk]
            batch = Batch(users=rounds[sl, 0], sessions=rounds[sl, 1], time=float(r_time[sl].min()),
                          slate_size=k, stream=stream, available=None if avail.all() else avail)
            with guarded(name, "recommend"):
                got = np.asarray(rec.recommend(batch).items)
            if got.ndim != 2 or got.shape[0] != sl.size or (got.size and got.dtype.kind not in "iu"):
                raise PluginError(f"slate items must be an integer array of shape ({sl.size}, {k}) (requests, "
                                  f"slate size), got {got.dtype} {got.shape}", plugin=name, hook="recommend")
            m = min(k, got.shape[1])
            lists[sl, :m] = got[:, :m]
            if m < k and short is not None:
                short.append((int(sl.size), int(m), k))
    item = np.asarray(test.item, np.int64)[click]
    match = lists[inv] == item[:, None]
    ranks = np.where(match.any(axis=1), match.argmax(axis=1) + 1, 0)
    return ranks, click, lists


def evaluate_offline(policy: str, options: dict[str, Any] | None, train: Log, test: Log, items: Items,
                     n_users: int, *, ks: Sequence[int] = (10,), cutoff: int = 100, clip: float | None = None,
                     level: float = 0.95, seed: int = 0, registry: Any = None, recommender: Any = None,
                     split_time: float | None = None) -> OfflineReport:
    """Fit recommender ``policy`` (or the given instance) on ``train`` and score it on ``test``'s clicks.

    Returns naive and ``ipw`` estimates of ``recall@k``, ``ndcg@k`` (each ``k`` in ``ks``) and ``mrr``
    (truncated at ``cutoff``), and ``coverage@k``; ``split_time`` (from :func:`split_log`) is recorded
    in the report. Held-out clicks logged with propensity 1 (a deterministic logger) break positivity:
    the ``ipw`` estimates then carry a warning, and the report's ``notes`` list it with every
    estimate's warnings (:func:`~counterfeed.offline.metrics.grouped_warnings`). Raises :class:`DataError` for propensities outside
    (0, 1] on held-out clicks or a ``k`` above ``cutoff``.
    """
    from counterfeed.core.plugins import get_registry
    from counterfeed.core.randomness import Keys

    ks = sorted(set(int(k) for k in ks))
    if not ks or ks[0] < 1 or ks[-1] > cutoff:
        raise DataError(f"every k must be in [1, cutoff={cutoff}], got {ks}")
    reg = registry if registry is not None else get_registry()
    rec = recommender if recommender is not None else reg.create("recommender", policy, options or {},
                                                                 field="policy")
    keys = Keys(seed)
    with guarded(policy, "setup/fit"):
        rec.setup(RecommenderContext(items=items, n_users=int(n_users), slate_size=cutoff, keys=keys,
                                     arm="offline"))
        rec.fit(train)
    short: list[tuple[int, int, int]] = []
    ranks, rows, lists = held_out_ranks(rec, test, items, cutoff, keys.stream("policy:offline"), name=policy,
                                        short=short)
    list_warnings = []
    if short:
        rounds, fewest = sum(r for r, _, _ in short), min(m for _, m, _ in short)
        asked = max(a for _, _, a in short)
        list_warnings.append(f"recommender '{policy}' returned lists shorter than asked for {rounds} held-out rounds "
                             f"(down to {fewest} of {asked} items): clicks on items it did not return rank 0 "
                             "(not retrieved), so its metrics at k above that length are truncated")
    p = np.asarray(test.propensity, np.float64)[rows]
    bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
    if bad.any():
        raise DataError(f"held-out click {int(rows[np.argmax(bad)])}: propensity {plain(p[np.argmax(bad)])} is not in (0, 1]")
    w = 1.0 / p
    notes = []
    positivity = positivity_warning(p)
    if clip is not None:
        notes.append(f"{int((w > clip).sum())} of {w.size} weights clipped at {clip:g} (biased toward the logging policy)")
        w = np.minimum(w, clip)
    ipw_warnings = [*notes, *([positivity] if positivity else [])]
    users = np.asarray(test.user, np.int64)[rows]
    values = rank_metric_values(ranks, ks, cutoff)
    est = []
    for name, v in values.items():
        est.append(ratio_estimate(name, "naive", v, np.ones_like(v), users, level, bounds=(0.0, 1.0)))
        est.append(ratio_estimate(name, "ipw", v, w, users, level, bounds=(0.0, 1.0)))
        est[-1].warnings[:0] = [positivity] if positivity else []
    notes.extend(grouped_warnings(est))
    notes.extend(list_warnings)
    end = float(np.asarray(test.time, np.float64).max())
    n_cat = int((np.asarray(items.arrival) <= end).sum())
    cov = {k: coverage(lists[:, :k], n_cat) for k in ks}
    return OfflineReport(policy, est, cov, len(train), int(rows.size),
                         None if split_time is None else float(split_time), clip, notes,
                         clicks={"user": users, "weight": w, **values}, ipw_warnings=ipw_warnings,
                         positivity_failures=int((p >= 1.0).sum()),
                         clipped_weights=0 if clip is None else int((1.0 / p > clip).sum()),
                         list_warnings=list_warnings)


def positivity_warning(propensity: np.ndarray) -> str | None:
    """The warning for held-out clicks logged with propensity 1, or None when there are none.

    A click logged with propensity 1 came from a round where the logger could show nothing else
    there: the other items had probability 0, so positivity fails and inverse-propensity weighting
    cannot recover what uniform exposure would have produced (Schnabel et al. 2016, sec. 3).
    """
    p = np.asarray(propensity, np.float64)
    n1 = int((p >= 1.0).sum())
    if n1 == 0:
        return None
    share = "all" if n1 == p.size else f"{n1} of"
    same = " (so it equals the naive one)" if n1 == p.size else ""
    return (f"positivity fails: {share} {p.size} held-out clicks were logged with propensity 1 (a deterministic "
            "logging policy gives the other items no chance of exposure there); the IPW metric is not consistent "
            f"for the uniform-exposure target{same}")
