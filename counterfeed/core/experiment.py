"""Assignment and worlds.

The A/B world randomizes users to arms by a salted hash of their id; one counterfactual world per arm
gives everyone that arm. All worlds share the population, the catalog and the keyed randomness, so
their differences are the effects of the policies alone.
"""

from __future__ import annotations

import numpy as np

from counterfeed.core.randomness import Stream, stream_key
from counterfeed.core.scenario import Scenario

__all__ = ["assign", "world_names", "world_assignment", "AB_WORLD", "counterfactual_world"]

AB_WORLD = "ab"


def counterfactual_world(arm: str) -> str:
    return f"all-{arm}"


def assign(n_users: int, split: dict[str, float], salt: str, seed: int) -> np.ndarray:
    """Arm index of each user: ``u = hash(seed, salt, user)`` in (0,1) against the cumulative split."""
    arms = list(split)
    cum = np.cumsum([split[a] for a in arms])
    cum[-1] = 1.0
    u = Stream(stream_key(seed, f"assignment:{salt}")).uniform(np.arange(n_users, dtype=np.int64))
    return np.searchsorted(cum, u, side="right").clip(0, len(arms) - 1).astype(np.int64)


def world_names(scenario: Scenario) -> list[str]:
    return [AB_WORLD] + [counterfactual_world(a) for a in scenario.arms]


def world_assignment(scenario: Scenario, world: str) -> np.ndarray:
    """The arm index of every user in ``world`` (from the experiment start)."""
    n = scenario.population.users
    arms = scenario.arms
    if world == AB_WORLD:
        split = {a: float(scenario.experiment.split[a]) for a in arms}
        salt = scenario.experiment.salt or scenario.name
        return assign(n, split, salt, scenario.seed)
    arm = world.removeprefix("all-")
    return np.full(n, arms.index(arm), dtype=np.int64)
