"""What the long-term metrics derive from an impression log, computed once per log.

A run computes its long-term metrics over many windows of the same impression log: the experiment
period (per-user outcomes, population values), every week of the trajectories
(:func:`counterfeed.core.longterm.metric_series`), every look of a sequential analysis. Whatever
depends on one slate only (its rows, user and time, its intra-list diversity) or on one row only
(the clicks) is computed here once per log, vectorised over all slates; a window's per-user value is
then a grouped sum (``np.bincount``) over the slates or clicks inside the window.

A slate is one (user, session) of the log. When each slate's rows share one time (the engine logs a
slate at the moment it is served), a slate lies wholly inside or wholly outside any window, so the
sums over a window's slates are exactly those computed from the window's rows alone, in the same
order. When some slate spans several times (a hand-made log), :attr:`ImpressionIndex.slates_exact`
is False and :func:`window_slates` rebuilds the window's slates from its rows, as defined.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from counterfeed.core.contracts import Items, Log

__all__ = ["Clicks", "ImpressionIndex", "distinct", "slate_index", "slate_ild_topic", "slate_ild_vectors", "window_slates"]


def slate_index(log: Log) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """(user of each slate, first row of each slate, ``runs``, ``slate``); slates in (user, session) order.

    When each slate's rows are contiguous (as the engine logs them), ``runs`` is the first row of
    each run of rows (one run per slate, in log order), ``slate`` the slate of each run, and one sort
    of the runs suffices; else ``runs`` is None, ``slate`` is the slate of each row, and all rows are
    sorted. The slates are the same either way.
    """
    m = int(log.session.max(initial=0)) + 1
    key = log.user.astype(np.int64, copy=False) * m + log.session
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if key.size else np.zeros(0, np.int64)
    uniq, first, run_slate = np.unique(key[start], return_index=True, return_inverse=True)
    if uniq.size == start.size:
        return (uniq // m).astype(np.int64), start[first], start, run_slate.reshape(-1)
    uniq, first_row, inv = np.unique(key, return_index=True, return_inverse=True)
    return (uniq // m).astype(np.int64), first_row, None, inv.reshape(-1)


def distinct(x: np.ndarray) -> np.ndarray:
    """The sorted distinct values of the 1-d integer array ``x`` (``np.unique(x)`` by a sort: numpy 2.4's
    hashing ``np.unique`` is about 15 times slower on a million int64 values)."""
    x = np.sort(x)
    return x[np.r_[True, x[1:] != x[:-1]]] if x.size else x


def slate_ild_topic(slate: np.ndarray, topic: np.ndarray, n_slates: int, n_topics: int) -> np.ndarray:
    """(n_slates,) intra-list diversity in topic space: 1 - (pairs sharing a topic) / (all pairs)."""
    k = np.bincount(slate, minlength=n_slates).astype(np.float64)
    uniq, same = np.unique(slate.astype(np.int64) * n_topics + topic, return_counts=True)
    pair_slate = uniq // n_topics
    return _ild(np.bincount(pair_slate, weights=same * (same - 1) / 2.0, minlength=n_slates), k)


def _ild(same_pairs: np.ndarray, k: np.ndarray) -> np.ndarray:
    """1 - (pairs sharing a topic) / (all pairs) of slates of ``k`` items (0 below 2 items)."""
    pairs = k * (k - 1) / 2.0
    return np.where(pairs > 0, 1.0 - same_pairs / np.where(pairs > 0, pairs, 1.0), 0.0)


def _ild_runs(topic: np.ndarray, k: int) -> np.ndarray:
    """Topic ILD of consecutive slates of ``k`` rows each (``topic`` (n_slates * k,)), by comparing the
    ``k (k - 1) / 2`` position pairs: the same counts as :func:`slate_ild_topic`, without a sort."""
    cols = topic.reshape(-1, k).T.copy()
    same = np.zeros(cols.shape[1], np.int64)
    for i in range(k):
        for j in range(i + 1, k):
            same += cols[i] == cols[j]
    return _ild(same.astype(np.float64), np.full(same.size, float(k)))


def slate_ild_vectors(slate: np.ndarray, unit: np.ndarray, n_slates: int) -> np.ndarray:
    """(n_slates,) mean pairwise cosine distance of the rows' unit vectors ``unit`` (n_rows, d).

    ``sum_{i<j} (1 - e_i.e_j) = C(k,2) - (|sum e|^2 - k) / 2`` for unit vectors ``e``.
    """
    k = np.bincount(slate, minlength=n_slates).astype(np.float64)
    total = np.zeros((n_slates, unit.shape[1]))
    np.add.at(total, slate, unit) if slate.size < 4096 else _add_sorted(total, slate, unit)
    sim_pairs = ((total ** 2).sum(axis=1) - k) / 2.0
    pairs = k * (k - 1) / 2.0
    return np.where(pairs > 0, np.clip(1.0 - sim_pairs / np.where(pairs > 0, pairs, 1.0), 0.0, 2.0), 0.0)


def _add_sorted(total: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    order = np.argsort(rows, kind="stable")
    r = rows[order]
    starts = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    total[r[starts]] += np.add.reduceat(values[order], starts, axis=0)


def _unit_vectors(items: Items) -> np.ndarray:
    v = items.embeddings if items.embeddings is not None else items.vectors
    v = np.asarray(v, dtype=np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


@dataclass
class Clicks:
    """Clicked rows, in log order: user, item, time, and ``pair``, the index of the row's (user, item)
    pair in :attr:`ImpressionIndex.click_pairs`."""

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    pair: np.ndarray

    def __len__(self) -> int:
        return int(self.user.size)

    def select(self, mask: np.ndarray) -> "Clicks":
        return Clicks(self.user[mask], self.item[mask], self.time[mask], self.pair[mask])


class ImpressionIndex:
    """Per-slate and per-click arrays of one impression ``log`` over the catalog ``items``.

    Built lazily: each property is computed on first use and kept. The arrays are never modified.
    """

    def __init__(self, log: Log, items: Items):
        self.log, self.items = log, items
        self._rows: tuple = (None, None, None)  # (start, end, row selection) of the last window
        self._cols: dict[str, np.ndarray] = {}
        self._clicks: dict[tuple[float, float], Clicks] = {}  # the last few windows' clicks

    @cached_property
    def _slates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        return slate_index(self.log)

    @cached_property
    def slate(self) -> np.ndarray:
        """(n_rows,) slate of each row."""
        _, _, runs, slate = self._slates
        return slate if runs is None else np.repeat(slate, np.diff(np.r_[runs, self.log.time.size]))

    @property
    def slate_user(self) -> np.ndarray:
        """(n_slates,) user of each slate."""
        return self._slates[0]

    @cached_property
    def slate_time(self) -> np.ndarray:
        """(n_slates,) time of each slate's first row."""
        return self.log.time[self._slates[1]]

    @cached_property
    def slates_exact(self) -> bool:
        """True when every row of a slate has its slate's time (windows never split a slate)."""
        t, runs = self.log.time, self._slates[2]
        if runs is None:
            return bool(np.array_equal(t, self.slate_time[self.slate]))
        new_run = np.zeros(t.size, bool)
        new_run[runs] = True
        return bool(np.all((t[1:] == t[:-1]) | new_run[1:]))

    def slate_mask(self, start: float, end: float) -> np.ndarray:
        """(n_slates,) slates with ``start <= time < end`` (only meaningful when :attr:`slates_exact`)."""
        return (self.slate_time >= start) & (self.slate_time < end)

    @cached_property
    def ild_topic(self) -> np.ndarray:
        """(n_slates,) topic intra-list diversity of each slate (:func:`slate_ild_topic`)."""
        topic = self.items.topic[self.log.item]
        _, _, runs, run_slate = self._slates
        n = self.slate_user.size
        k = topic.size // max(n, 1)
        if runs is not None and n and n * k == topic.size and np.array_equal(runs, np.arange(n) * k):
            out = np.empty(n)  # contiguous slates of k rows each
            out[run_slate] = _ild_runs(topic, k)
            return out
        return slate_ild_topic(self.slate, topic, n, self.items.n_topics)

    @cached_property
    def ild_embedding(self) -> np.ndarray:
        """(n_slates,) embedding intra-list diversity of each slate (:func:`slate_ild_vectors`)."""
        return slate_ild_vectors(self.slate, _unit_vectors(self.items)[self.log.item], self.slate_user.size)

    @cached_property
    def clicks(self) -> Clicks:
        """All clicked rows, in log order."""
        log, c = self.log, self.log.click.astype(bool, copy=False)
        user, item = log.user[c], log.item[c]
        pair = np.unique(user.astype(np.int64, copy=False) * self.items.n + item, return_inverse=True)[1].reshape(-1)
        return Clicks(user, item, log.time[c], pair)

    @cached_property
    def click_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) of each distinct clicked pair, sorted by user then item."""
        c = self.clicks
        first = np.zeros(c.pair.size and int(c.pair.max()) + 1, np.int64)
        first[c.pair] = np.arange(c.pair.size)
        return c.user[first], c.item[first]

    def distinct_pairs(self, clicks: Clicks) -> tuple[np.ndarray, np.ndarray]:
        """(user, item) of the distinct pairs among ``clicks``, sorted by user then item."""
        users, items = self.click_pairs
        seen = np.zeros(users.size, bool)
        seen[clicks.pair] = True
        return users[seen], items[seen]

    def window_clicks(self, start: float, end: float) -> Clicks:
        """The clicks with ``start <= time < end``, in log order."""
        key = (float(start), float(end))
        if key not in self._clicks:
            c = self.clicks
            if len(self._clicks) >= 4:
                self._clicks.pop(next(iter(self._clicks)))
            self._clicks[key] = c.select((c.time >= start) & (c.time < end))
        return self._clicks[key]

    def rows(self, start: float, end: float) -> slice | np.ndarray:
        """The rows with ``start <= time < end``, in log order (the last window's is kept)."""
        if self._rows[:2] != (start, end):
            t = self.log.time
            m = (t >= start) & (t < end)
            self._rows, self._cols = (start, end, slice(None) if m.all() else np.flatnonzero(m)), {}
        return self._rows[2]

    def column(self, name: str, start: float, end: float) -> np.ndarray:
        """Column ``name`` of the log over the rows with ``start <= time < end``."""
        sel = self.rows(start, end)
        if name not in self._cols:
            self._cols[name] = getattr(self.log, name)[sel]
        return self._cols[name]

    def window_log(self, start: float, end: float) -> Log:
        """The rows with ``start <= time < end`` as a log."""
        sel = self.rows(start, end)
        return self.log if isinstance(sel, slice) else self.log.select(sel)


def window_slates(index: ImpressionIndex, start: float, end: float) -> tuple[ImpressionIndex, np.ndarray | None]:
    """The index whose slates, where the mask (None: all) is True, are the window's slates."""
    if index.slates_exact:
        return index, index.slate_mask(start, end)
    return ImpressionIndex(index.window_log(start, end), index.items), None
