"""The sessions table of a world's events (:attr:`counterfeed.core.contracts.WorldEvents.sessions`):
its columns, and how a world (core.simulation) and its shards (core.shard) build it from the rows of
each served window part."""

from __future__ import annotations

import numpy as np

__all__ = ["SESSION_COLUMNS", "session_rows", "session_columns"]


#: the sessions table's columns and dtypes (:attr:`WorldEvents.sessions`)
SESSION_COLUMNS = (("user", np.int64), ("session", np.int64), ("time", np.float64), ("arm", np.int16),
                   ("impressions", np.int16), ("clicks", np.int16), ("dwell", np.float64), ("churned", bool))


def session_rows(arm: int, u: np.ndarray, s: np.ndarray, t: np.ndarray, k: int, clicks: np.ndarray,
                 dwell: np.ndarray, next_gap: np.ndarray) -> tuple[np.ndarray, ...]:
    """One window part's rows of the sessions table (``clicks``, ``dwell``: (n, k))."""
    n = u.size
    return (u, s, t, np.full(n, arm, np.int16), np.full(n, k, np.int16),
            clicks.sum(axis=1).astype(np.int16), dwell.sum(axis=1), ~np.isfinite(next_gap))


def session_columns(rows: list[tuple[np.ndarray, ...]]) -> dict[str, np.ndarray]:
    """Concatenate :func:`session_rows` chunks into the sessions table's columns."""
    return {nm: np.concatenate([r[i] for r in rows]).astype(dt, copy=False) if rows else np.zeros(0, dt)
            for i, (nm, dt) in enumerate(SESSION_COLUMNS)}
