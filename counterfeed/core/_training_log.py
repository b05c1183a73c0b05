"""An arm's training log, grown in place as windows are recorded (amortized, never re-copied).

A world records one :class:`~counterfeed.core.contracts.Log` chunk per arm and window. Before
issue 20's end-to-end work every refit concatenated all chunks into one log and then selected the
arm's rows from it: two copies of the whole cumulative log per arm and per refit, about 0.7 CPU s of
the quickstart. :class:`TrainingLog` keeps the selected rows in column buffers grown in place
instead: each refit appends only the chunks recorded since the last one (all of them in one
growth), and hands the recommender read-only views of the rows so far. The rows and their order are
exactly those of the old concatenate-then-select (a selection of a concatenation is the
concatenation of the selections). When every chunk was kept whole (a world with one arm, pooled
training) the log is the world's whole log: :meth:`TrainingLog.whole_log` hands it to the world's
snapshot, which then copies nothing. A world keeps one such log of every row (:func:`arm_training_log`,
which frees the chunks it copied); an arm's log is that log's rows, not a copy, for as long as it
keeps every row (a one-arm world, the pre-period at the experiment start).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Callable, Iterable

import numpy as np

from counterfeed.core.contracts import Log

__all__ = ["TrainingLog", "whole_log", "arm_training_log"]

_NAMES = tuple(f.name for f in fields(Log))


def whole_log(logs: Iterable["TrainingLog"], chunks: list[Log]) -> Log:
    """Every row of ``chunks`` (a world's recorded impressions): the buffers of a training log among
    ``logs`` that kept every row when there is one (no copy), else ``Log.concat(chunks)``."""
    for grown in logs:
        log = grown.whole_log(chunks)
        if log is not None:
            return log
    return Log.concat(chunks)


def arm_training_log(logs: dict, key: object, keep: Callable[[Log], np.ndarray | None]) -> "TrainingLog":
    """``logs[key]``, created when missing: ``logs[None]`` is the world's log of every row, and
    another key's log (rows selected by ``keep``) shares that log's rows while it keeps all of them."""
    if None not in logs:
        logs[None] = TrainingLog(lambda chunk: None, release=True)
    if key not in logs:
        logs[key] = TrainingLog(keep, base=logs[None])
    return logs[key]


class TrainingLog:
    """The rows of a world's log chunks that ``keep`` selects, in recording order.

    ``keep(chunk)`` returns a boolean row mask, or None for every row. :meth:`log` takes the chunks
    recorded since its last call (the world's chunk list only grows) and returns the whole log so far.
    """

    def __init__(self, keep: Callable[[Log], np.ndarray | None], base: "TrainingLog | None" = None,
                 release: bool = False):
        self.keep = keep
        self.consumed = 0  # chunks of the world's list already appended
        self.rows = 0
        self.cols: dict[str, np.ndarray | None] | None = None
        self.whole = True  # every chunk appended so far was kept whole
        #: a log of every row of the same chunks: while this one keeps every row, or keeps every row up
        #: to ``prefix`` rows and none after, its rows are the base's (a one-arm world, the pre-period)
        self.base = base
        self.prefix: int | None = None
        #: while every row was kept, replace the items of the chunk list by read-only views of the same
        #: rows here (equal arrays), so the chunks' own memory is freed and reused
        self.release = release

    def log(self, chunks: list[Log], headroom: float = 2.0) -> Log:
        """The selected rows of ``chunks`` (the world's whole chunk list) as a read-only Log.

        ``headroom``: when the buffers grow, their capacity becomes at least ``headroom`` times the
        rows then needed (and at least twice the old capacity); capacity never touched costs no memory.
        """
        start, capacity = self.consumed, self._capacity()
        masks = [self.keep(chunk) for chunk in chunks[start:]]
        if self.base is not None:
            base = self.base.log(chunks, headroom)  # the base keeps up (and may free the chunks, as equal views)
            whole = [m is None or m.all() for m in masks]
            if self.prefix is None and all(whole):  # still every row: the base's
                self.consumed = len(chunks)
                return base
            first = whole.index(False) if self.prefix is None else 0
            if all(m is not None and not m.any() for m in masks[first:]):  # a prefix of the base's rows
                if self.prefix is None:
                    self.prefix, self.whole = sum(len(c) for c in chunks[:start + first]), False
                self.consumed = len(chunks)
                return self.base._view(0, self.prefix)
            masks = [self.keep(chunk) for chunk in chunks[:start]] + masks  # copied from here on
            start, self.base = 0, None
        parts = []
        for chunk, mask in zip(chunks[start:], masks):
            if mask is None or mask.all():
                parts.append(chunk)
            else:
                self.whole = False
                parts.append(chunk.select(mask))
        self.consumed, rows = len(chunks), self.rows
        self._extend([p for p in parts if len(p)], headroom)
        if self.release and self.whole:  # after a growth, the views of earlier chunks move to the new buffers
            moved = self._capacity() != capacity
            self._release(chunks, 0 if moved else start, 0 if moved else rows)
        return Log.empty() if self.cols is None else self._view(0, self.rows)

    def _capacity(self) -> int:
        return 0 if self.cols is None else max((c.shape[0] for c in self.cols.values() if c is not None), default=0)

    def _view(self, a: int, b: int) -> Log:
        out = {}
        for name, col in self.cols.items():
            if col is None:
                out[name] = None
                continue
            view = col[a:b]
            view.flags.writeable = False
            out[name] = view
        return Log(**out)

    def _release(self, chunks: list[Log], first: int, at: int) -> None:
        """Replace ``chunks[first:]`` (all kept whole, in order, from row ``at``) by views of their rows
        here; a chunk whose columns are of other dtypes stays (its view would promote it)."""
        names, cols = list(self.cols), list(self.cols.values())
        dtypes = tuple(None if c is None else c.dtype for c in cols)
        for i in range(first, len(chunks)):
            d = vars(chunks[i])
            n = d["user"].shape[0]
            if n and tuple(None if d[f] is None else d[f].dtype for f in names) == dtypes:
                views = [None if c is None else c[at:at + n] for c in cols]
                for v in views:
                    if v is not None:
                        v.flags.writeable = False
                chunks[i] = Log(*views)
            at += n

    def whole_log(self, chunks: list[Log]) -> Log | None:
        """``Log.concat(chunks)`` (read-only) when ``keep`` selects every row of every chunk, else
        None (and nothing is appended)."""
        if not self.whole:
            return None
        for chunk in chunks[self.consumed:]:
            mask = self.keep(chunk)
            if mask is not None and not mask.all():
                return None
        return self.log(chunks, headroom=1.0)

    def _extend(self, parts: list[Log], headroom: float) -> None:
        """Append the rows of ``parts`` (non-empty logs), growing each column once."""
        if not parts:
            return
        if self.cols is None:
            self.cols = {name: None if getattr(parts[0], name) is None else
                         np.empty((0,) + getattr(parts[0], name).shape[1:], getattr(parts[0], name).dtype)
                         for name in _NAMES}
        end = self.rows + sum(len(p) for p in parts)
        for name in _NAMES:
            col = self.cols[name]
            got = [getattr(p, name) for p in parts]
            if col is None or any(g is None for g in got):  # a column missing from some chunks: dropped,
                self.cols[name] = None                       # as Log.concat does
                continue
            got = [np.asarray(g) for g in got]
            dtype = np.result_type(col.dtype, *(g.dtype for g in got))  # Log.concat's dtype promotion
            if dtype != col.dtype:
                col = col[:self.rows].astype(dtype)
            if end > col.shape[0]:
                grown = np.empty((max(2 * col.shape[0], int(end * headroom), end, 1024),) + col.shape[1:], dtype)
                grown[:self.rows] = col[:self.rows]
                col = grown
            at = self.rows
            for g in got:
                col[at:at + g.shape[0]] = g
                at += g.shape[0]
            self.cols[name] = col
        self.rows = end
