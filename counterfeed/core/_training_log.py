"""An arm's training log, grown in place as windows are recorded (amortized, never re-copied).

A world records one :class:`~counterfeed.core.contracts.Log` chunk per arm and window. Before
issue 20's end-to-end work every refit concatenated all chunks into one log and then selected the
arm's rows from it: two copies of the whole cumulative log per arm and per refit, about 0.7 CPU s of
the quickstart. :class:`TrainingLog` keeps the selected rows in capacity-doubling column buffers
instead: each refit appends only the chunks recorded since the last one, and hands the recommender
read-only views of the rows so far. The rows and their order are exactly those of the old
concatenate-then-select (a selection of a concatenation is the concatenation of the selections).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Callable

import numpy as np

from counterfeed.core.contracts import Log

__all__ = ["TrainingLog"]

_NAMES = tuple(f.name for f in fields(Log))


class TrainingLog:
    """The rows of a world's log chunks that ``keep`` selects, in recording order.

    ``keep(chunk)`` returns a boolean row mask, or None for every row. :meth:`log` takes the chunks
    recorded since its last call (the world's chunk list only grows) and returns the whole log so far.
    """

    def __init__(self, keep: Callable[[Log], np.ndarray | None]):
        self.keep = keep
        self.consumed = 0  # chunks of the world's list already appended
        self.rows = 0
        self.cols: dict[str, np.ndarray | None] | None = None

    def log(self, chunks: list[Log]) -> Log:
        """The selected rows of ``chunks`` (the world's whole chunk list) as a read-only Log."""
        for chunk in chunks[self.consumed:]:
            mask = self.keep(chunk)
            self._append(chunk if mask is None or mask.all() else chunk.select(mask))
        self.consumed = len(chunks)
        if self.cols is None:
            return Log.empty()
        out = {}
        for name, col in self.cols.items():
            if col is None:
                out[name] = None
                continue
            view = col[:self.rows]
            view.flags.writeable = False
            out[name] = view
        return Log(**out)

    def _append(self, chunk: Log) -> None:
        n = len(chunk)
        if not n:
            return
        if self.cols is None:
            self.cols = {name: None if getattr(chunk, name) is None else
                         np.empty((max(2 * n, 1024),) + getattr(chunk, name).shape[1:], getattr(chunk, name).dtype)
                         for name in _NAMES}
        end = self.rows + n
        for name in _NAMES:
            part, col = getattr(chunk, name), self.cols[name]
            if (part is None) != (col is None):  # a column missing from some chunks: dropped, as Log.concat does
                self.cols[name] = None
                continue
            if col is None:
                continue
            part = np.asarray(part)
            if part.dtype != col.dtype:  # keep Log.concat's dtype promotion
                col = col[:self.rows].astype(np.result_type(col.dtype, part.dtype))
            if end > col.shape[0]:
                grown = np.empty((max(2 * col.shape[0], end),) + col.shape[1:], col.dtype)
                grown[:self.rows] = col[:self.rows]
                col = grown
            col[self.rows:end] = part
            self.cols[name] = col
        self.rows = end
