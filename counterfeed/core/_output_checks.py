"""Checks of what plugins hand the engine: a recommender's slates and a user model's response.

A broken plugin output becomes a :class:`~counterfeed.errors.PluginError` naming the plugin, the
hook and the rule it broke, before the engine uses it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from counterfeed.core.contracts import Batch, Recommender, Response, Slates, UserModel
from counterfeed.errors import PluginError

__all__ = ["check_slates", "check_response"]


def check_slates(rec: Recommender, slates: Any, batch: Batch, n_items: int) -> None:
    """Raise a PluginError unless ``slates`` are valid for ``batch`` (shapes, ids, propensities)."""
    name = getattr(rec, "name", type(rec).__name__)

    def fail(rule: str) -> None:
        raise PluginError(rule, plugin=name, hook="recommend")

    if not isinstance(slates, Slates):
        fail(f"must return Slates, got {type(slates).__name__}")
    items, prop = np.asarray(slates.items), np.asarray(slates.propensities)
    n = len(batch)
    n_avail = n_items if batch.available is None else int(batch.available.sum())
    k = min(batch.slate_size, n_avail)
    if items.shape != (n, k):
        fail(f"slate items must have shape ({n}, {k}) (requests, slate size), got {items.shape}")
    if prop.shape != items.shape:
        fail(f"propensities must have the shape of the items {items.shape}, got {prop.shape}")
    if items.dtype.kind not in "iu":
        fail(f"item ids must be integers, got dtype {items.dtype}")
    if n == 0:
        return
    if items.min() < 0 or items.max() >= n_items:
        fail(f"item ids must be in [0, {n_items}), got {int(items.min())}..{int(items.max())}")
    if not np.all((prop > 0) & (prop <= 1)):
        bad = prop[~((prop > 0) & (prop <= 1))][0]
        fail(f"propensities must be in (0, 1], got {bad!r}")
    if k > 1:
        srt = np.sort(items, axis=1)
        if np.any(srt[:, 1:] == srt[:, :-1]):
            fail("a slate shows the same item twice")
    if batch.available is not None and not batch.available[items].all():
        fail("a slate shows an item that is not available yet")


def check_response(um: UserModel, resp: Any, slates: Slates) -> None:
    """Raise a PluginError unless ``resp`` answers ``slates`` (shapes, positive next gaps)."""
    name = getattr(um, "name", type(um).__name__)
    if not isinstance(resp, Response):
        raise PluginError(f"must return Response, got {type(resp).__name__}", plugin=name, hook="respond")
    shape = slates.items.shape
    if resp.clicks.shape != shape or resp.dwell.shape != shape or resp.next_gap.shape != shape[:1]:
        raise PluginError(f"clicks and dwell must have shape {shape} and next_gap ({shape[0]},)",
                          plugin=name, hook="respond")
    if np.any(np.isnan(resp.next_gap)) or np.any(resp.next_gap <= 0):
        raise PluginError("next_gap must be positive (inf for churn)", plugin=name, hook="respond")
