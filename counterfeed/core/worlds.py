"""One world of a run: its task, its output, and how it is built and simulated (in this process or
in a worker: :func:`simulate_world` is module-level so that process pools can run it).

:mod:`counterfeed.core.runner` decides which worlds a run has and where they run; this module is
what each of them does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from counterfeed.core.allocation import ThompsonAllocation
from counterfeed.core.contracts import Items, Population, WorldEvents
from counterfeed.core.experiment import (AB_WORLD, Assignment, FixedAssignment, everyone_on, split_assignment,
                                         world_arm)
from counterfeed.core.longterm import world_long_term
from counterfeed.core.mechanisms import mechanism_assignment
from counterfeed.core.outcomes import world_outcomes
from counterfeed.core.allocators import run_allocators
from counterfeed.core.phases import PhasedAssignment, phase_values
from counterfeed.core.plan import Plan, resolve
from counterfeed.core.randomness import Keys
from counterfeed.core.scenario import Scenario
from counterfeed.core.shard import ShardedWorld
from counterfeed.core.shard_events import SCRATCH, part_major
from counterfeed.core.simulation import SimWorld, WorldConfig
from counterfeed.core.user_truth import replication_keys, split_replication

__all__ = ["WorldTask", "WorldOutput", "simulate_world", "build_world", "world_assignment_component"]


@dataclass
class WorldTask:
    scenario: Scenario
    world: str
    items: Items
    population: Population
    progress: Callable[[float], None] | None = None  # simulated days so far (must pickle to workers)
    assignment: np.ndarray | None = None  # (n_users,) arm per user from the start (a targeting rule's world)
    shards: Any = None  # a shard pool (core.shard): the world's users are simulated by its shards
    scratch: Path | None = None  # the run's temporary directory: a sharded world's shards write its sessions there
    pre: Any = None  # the shared pre-period's end state (core.preperiod.PrePeriod), or None


@dataclass
class WorldOutput:
    world: str
    events: WorldEvents | None  # None for a noise replication (only its outcomes are kept)
    outcomes: pd.DataFrame
    timeseries: pd.DataFrame
    seconds: float
    sessions: int
    probabilities: np.ndarray | None = None  # (n_users, n_arms) Assignment.probabilities()
    allocation: dict[str, Any] | None = None  # adaptive allocation's record (ThompsonAllocation.record)
    phase_decisions: list[dict[str, Any]] | None = None  # a phased experiment's decisions (A/B world)
    phase_values: dict[str, Any] | None = None  # per-phase metric values (phased experiments)
    population: list[dict[str, Any]] = field(default_factory=list)  # population-level metric rows
    mechanism: dict[str, Any] | None = None  # a non-randomized mechanism's record (core.mechanisms)


@run_allocators()
def simulate_world(task: WorldTask) -> WorldOutput:
    """Simulate one world and compute its outcomes (a module-level function: runs in workers too).
    Meanwhile NumPy allocates without transparent huge pages and Arrow from the system allocator
    (:mod:`counterfeed.core.allocators`)."""
    t0 = time.perf_counter()
    sc, exp = task.scenario, task.scenario.experiment
    world, plan, assignment, replication = build_world(task)
    events = world.run() if task.pre is None else world.run(task.pre)
    events.items = task.items
    if isinstance(events.sessions, dict):  # the order of a sessions file (sharded worlds write that)
        events.sessions = part_major(events.sessions, events.n_users)
    plan.registry.hook.counterfeed_world_end(scenario=sc, world=task.world, events=events)
    outcomes = world_outcomes(events, plan.metrics, task.population, exp.pre_period, world.horizon,
                              getattr(world, "reduced", None))
    record = assignment.record()
    series, population = world_long_term(events, plan.metrics, plan.analysed, exp.pre_period, world.horizon)
    allocation = record.get("allocation")
    if allocation is not None:
        outcomes["assignment_probability"] = allocation["probability"]
    return WorldOutput(task.world, None if replication else events, outcomes, series, time.perf_counter() - t0,
                       int(events.sessions["user"].size), assignment.probabilities(), allocation,
                       record.get("phases"), phase_values(sc, events, plan.metrics) if exp.phases else None,
                       population, record.get("mechanism"))


def build_world(task: WorldTask) -> tuple[SimWorld, Plan, Assignment, int]:
    """The task's world (not run yet), its plan, its assignment component and its noise replication."""
    sc = task.scenario
    plan = resolve(sc)
    exp = sc.experiment
    cfg = WorldConfig(name=task.world, arms=sc.arms, control=sc.arms.index(sc.control),
                      assignment=None, pre_period=exp.pre_period,
                      duration=exp.duration, batch_window=exp.batch_window,
                      retrain_every=exp.retrain_every, slate_size=exp.slate_size, training=exp.training,
                      record_impressions=True, arm_keys=plan.arm_keys())
    base, replication = split_replication(task.world)  # a noise replication re-keys the world's noise
    keys = replication_keys(sc.seed, replication)
    assignment = world_assignment_component(sc, plan, replace(task, world=base), keys)
    windows = [(exp.pre_period, cfg.horizon)] + ([(0.0, exp.pre_period)] if exp.pre_period > 0 else [])
    if task.shards is not None:
        scratch = task.scratch / SCRATCH / f"{task.world}-{id(task)}" if task.scratch is not None else None
        world = ShardedWorld(cfg, task.items, task.population, keys, plan.user_model(), plan.recommender,
                             assignment, progress=task.progress, shards=task.shards, scratch=scratch,
                             metrics=plan.metrics, windows=windows,
                             population_spec=None if sc.population.twin else (sc.population, Keys(sc.seed)))
    else:
        world = SimWorld(cfg, task.items, task.population, keys, plan.user_model(), plan.recommender,
                         assignment, progress=task.progress)
    return world, plan, assignment, replication


def world_assignment_component(sc: Scenario, plan: Plan, task: WorldTask, keys: Keys) -> Assignment:
    """The world's :class:`Assignment`: everyone on one arm in a counterfactual world; in the A/B
    world adaptive allocation, phases, or the randomized split."""
    exp = sc.experiment
    if task.assignment is not None:  # a deployed targeting rule: each user's arm, with certainty
        return FixedAssignment(sc.arms, task.assignment, np.eye(len(sc.arms))[task.assignment])
    if task.world != AB_WORLD:
        return everyone_on(sc.arms, world_arm(task.world), sc.population.users)
    if exp.allocation is not None:
        al = exp.allocation
        metric = plan.metrics[al.metric]
        return ThompsonAllocation(
            sc.arms, np.array([float(exp.split[a]) for a in sc.arms]), metric, keys,
            sc.assignment_salt, update_every=al.update_every, floor=al.floor, draws=al.draws,
            higher_is_better=metric.info().higher_is_better)
    if exp.phases:
        return PhasedAssignment(sc, plan, task.population)
    return mechanism_assignment(sc, keys, task.population) or split_assignment(sc)
