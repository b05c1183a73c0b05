"""The simulated population, built from ``scenario.population`` with keyed randomness."""

from __future__ import annotations

import numpy as np

from counterfeed.core.contracts import Population
from counterfeed.core.randomness import Keys
from counterfeed.core.scenario import PopulationSpec

__all__ = ["build_population", "draw_segments"]


def draw_segments(spec: PopulationSpec, keys: Keys, users: np.ndarray) -> np.ndarray:
    """Each user's segment (index into ``spec.segments``), shape ``users.shape``, int64: a keyed
    uniform against the segments' cumulative shares (synthetic populations, not twins)."""
    shares = np.array([spec.segments[s].share for s in spec.segments])
    u = keys.stream("population:segment").uniform(users)
    return np.searchsorted(np.cumsum(shares) / shares.sum(), u, side="right").clip(0, len(shares) - 1).astype(np.int64)


def build_population(spec: PopulationSpec, keys: Keys, block: tuple[int, int] | None = None) -> Population:
    """Users with segment, activity and latent preferences; user ``u``'s draws depend only on ``u``.

    ``block=(lo, hi)`` builds only users ``lo .. hi - 1`` (a shard's block, ``offset=lo``), the same
    rows as the whole population's.

    Preferences are ``heterogeneity * segment.heterogeneity * z_u`` with ``z_u ~ N(0, I)`` scaled to
    unit expected norm, so they live on the scale of the catalog's unit topic centroids.
    """
    if spec.twin is not None:  # fitted from logs (counterfeed/twin)
        from counterfeed.twin.model import twin_population

        pop = twin_population(spec.twin, spec.replicate, spec.users, keys, spec.dimensions)
        return pop if block is None else pop.block(*block)
    lo, hi = block or (0, spec.users)
    n, d = hi - lo, spec.dimensions
    users = np.arange(lo, hi, dtype=np.int64)
    names = list(spec.segments)
    segment = draw_segments(spec, keys, users)
    activity = np.array([spec.segments[s].activity for s in names])[segment]
    het = spec.heterogeneity * np.array([spec.segments[s].heterogeneity for s in names])[segment]
    z = keys.stream("population:preference").normal(users[:, None], 0, np.arange(d)[None, :])
    prefs = z * (het[:, None] / np.sqrt(d))
    return Population(n=n, preferences=prefs, segment=segment, segment_names=names,
                      activity=activity, offset=lo)
