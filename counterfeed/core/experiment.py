"""Assignment and worlds.

Who gets which arm, and when, is one :class:`Assignment` object handed to a world when it is built
(:class:`counterfeed.core.simulation.SimWorld`). The A/B world randomizes users to arms by a salted
hash of their id (:class:`FixedAssignment` from :func:`split_assignment`); one counterfactual world
per arm gives everyone that arm (:func:`everyone_on`). Adaptive allocation
(:mod:`counterfeed.core.allocation`) and multi-phase experiments (:mod:`counterfeed.core.phases`)
are other implementations of the same interface. All worlds share the population, the catalog and
the keyed randomness, so their differences are the effects of the policies alone.

The interface, in the order the world calls it (all calls come from the world's serving process,
in simulated-time order; see the boundary rule in :mod:`counterfeed.core.simulation`):

``start(world, t)``
    at the experiment start ``t`` (the end of the pre-period): the ``(n_users,)`` arm index of every
    user, ``-1`` for a user assigned later, at their first experiment-period visit. Every arm a
    user holds is fitted before anyone is served by it; when some users are left unassigned, every
    arm is fitted (any of them may be drawn).
``assign(world, users, t)``
    the arms of ``users`` (who have none yet) at their first experiment-period visit at time ``t``
    (hot path: one call per serving batch that holds such users). May depend on the users'
    covariates (``world.population``) and on ``t``.
``boundaries(start, horizon)``
    the times at which :meth:`Assignment.at_boundary` is called (sorted; may be empty).
``at_boundary(world, t)``
    called once per boundary, after every request made before ``t`` was served and fed back;
    returns a new ``(n_users,)`` assignment (applied to every later request) or None.
``assignment()``, ``probabilities()``, ``compliance()``, ``record()``
    after the run: the arm index of every user (the unit of the estimands), the ``(n_users,
    n_arms)`` probability each user had of each arm when assigned, the compliance type where the
    simulator knows it (None otherwise), and a JSON-able record for the run's manifest.

Randomness is keyed (:mod:`counterfeed.core.randomness`): an assignment is a pure function of the
seed, its salt and the user id (and, for adaptive designs, of the events so far), never of the
order in which users arrive.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

import numpy as np

from counterfeed.core.randomness import Stream, stream_key
from counterfeed.core.scenario import Scenario

if TYPE_CHECKING:  # pragma: no cover
    from counterfeed.core.simulation import SimWorld

__all__ = ["Assignment", "FixedAssignment", "assign", "split_assignment", "everyone_on",
           "world_names", "world_assignment", "AB_WORLD", "counterfactual_world", "world_arm",
           "COMPLIANCE_TYPES"]

AB_WORLD = "ab"

#: compliance types an assignment may report (Angrist, Imbens & Rubin 1996, JASA 91(434))
COMPLIANCE_TYPES = ("complier", "always-taker", "never-taker", "defier")


_COUNTERFACTUAL_PREFIX = "all-"


def counterfactual_world(arm: str) -> str:
    """The name of the world where every user gets ``arm``."""
    return f"{_COUNTERFACTUAL_PREFIX}{arm}"


def world_arm(world: str) -> str | None:
    """The arm of a counterfactual world's name; ``None`` for the A/B world (or another name)."""
    return world[len(_COUNTERFACTUAL_PREFIX):] if world.startswith(_COUNTERFACTUAL_PREFIX) else None


class Assignment(ABC):
    """Who gets which arm, and when (see the module docstring for the call order).

    Parameters
    ----------
    arms : the arm names, in the world's order (an arm index refers to this list).
    """

    def __init__(self, arms: list[str]):
        self.arms = list(arms)

    @abstractmethod
    def start(self, world: "SimWorld", t: float) -> np.ndarray:
        """(n_users,) int64 arm index of every user at the experiment start (-1: assigned later)."""

    def assign(self, world: "SimWorld", users: np.ndarray, t: float) -> np.ndarray:
        """(len(users),) arms of users without one at their first experiment visit at time ``t``."""
        raise NotImplementedError(f"{type(self).__name__}.start left users unassigned (-1), so it must implement "
                                  "assign(world, users, t); the default serves assignments that assign everyone at "
                                  "the start")

    def boundaries(self, start: float, horizon: float) -> list[float]:
        """Times in ``[start, horizon]`` at which :meth:`at_boundary` is called."""
        return []

    def at_boundary(self, world: "SimWorld", t: float) -> np.ndarray | None:
        """A new (n_users,) assignment for every request from ``t`` on, or None to keep the current."""
        return None

    @abstractmethod
    def assignment(self) -> np.ndarray:
        """(n_users,) arm index of every user after the run (the unit of the estimands)."""

    @abstractmethod
    def probabilities(self) -> np.ndarray:
        """(n_users, n_arms) probability each user had of each arm when assigned (rows sum to 1)."""

    def compliance(self) -> np.ndarray | None:
        """(n_users,) compliance type (one of :data:`COMPLIANCE_TYPES`) where known, else None."""
        return None

    def record(self) -> dict[str, Any]:
        """What the run keeps about the assignment beyond the probabilities (JSON-able values)."""
        return {}


class FixedAssignment(Assignment):
    """A fixed assignment from the experiment start: a randomized split or everyone on one arm.

    Parameters
    ----------
    arms : arm names.
    arm_of : (n_users,) arm index of every user.
    probabilities : (n_users, n_arms) or (n_arms,) assignment probabilities (a row for everyone).
    """

    def __init__(self, arms: list[str], arm_of: np.ndarray, probabilities: np.ndarray):
        super().__init__(arms)
        self.arm_of = np.asarray(arm_of, dtype=np.int64)
        p = np.asarray(probabilities, dtype=np.float64)
        if p.ndim == 1:
            p = np.broadcast_to(p, (self.arm_of.size, len(self.arms)))
        if p.shape != (self.arm_of.size, len(self.arms)):
            raise ValueError(f"probabilities must have shape ({self.arm_of.size}, {len(self.arms)}), "
                             f"got {p.shape}")
        self._probabilities = p

    def start(self, world: "SimWorld", t: float) -> np.ndarray:
        return self.arm_of.copy()

    def assignment(self) -> np.ndarray:
        return self.arm_of.copy()

    def probabilities(self) -> np.ndarray:
        return np.array(self._probabilities)


def assign(n_users: int, split: dict[str, float], salt: str, seed: int) -> np.ndarray:
    """Arm index of each user: ``u = hash(seed, salt, user)`` in (0,1) against the cumulative split."""
    return assign_users(np.arange(n_users, dtype=np.int64), split, salt, seed)


def assign_users(users: np.ndarray, split: dict[str, float], salt: str, seed: int) -> np.ndarray:
    """:func:`assign`'s arm index of the user ids ``users`` (int64) alone: each user's arm depends on
    its own id, so a block of ids is drawn without the others (the split-draw check counts in blocks)."""
    arms = list(split)
    cum = np.cumsum([split[a] for a in arms])
    cum[-1] = 1.0
    u = Stream(stream_key(seed, f"assignment:{salt}")).uniform(np.asarray(users, dtype=np.int64))
    return np.searchsorted(cum, u, side="right").clip(0, len(arms) - 1).astype(np.int64)


def _split(scenario: Scenario) -> dict[str, float]:
    return {a: float(scenario.experiment.split[a]) for a in scenario.arms}


def split_assignment(scenario: Scenario) -> FixedAssignment:
    """The A/B world's randomized split (salt ``experiment.salt``, default the scenario's name)."""
    split = _split(scenario)
    arm_of = assign(scenario.population.users, split, scenario.assignment_salt,
                    scenario.seed)
    p = np.array(list(split.values()))
    return FixedAssignment(scenario.arms, arm_of, p / p.sum())


def everyone_on(arms: list[str], arm: str, n_users: int) -> FixedAssignment:
    """A counterfactual world's assignment: every user on ``arm`` with probability 1."""
    i = arms.index(arm)
    return FixedAssignment(arms, np.full(n_users, i, dtype=np.int64), np.eye(len(arms))[i])


def world_names(scenario: Scenario) -> list[str]:
    return [AB_WORLD] + [counterfactual_world(a) for a in scenario.arms]


def world_assignment(scenario: Scenario, world: str) -> np.ndarray:
    """The arm index of every user in ``world`` (from the experiment start)."""
    if world == AB_WORLD:
        return split_assignment(scenario).assignment()
    return everyone_on(scenario.arms, world_arm(world), scenario.population.users).assignment()
