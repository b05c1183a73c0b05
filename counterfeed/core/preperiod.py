"""The pre-period simulated once for the worlds that share it (issue 20, end-to-end throughput).

During the pre-period every user of every world is served by the control arm, and every random
draw is keyed by (seed, stream, user, session, slot), never by the world: the A/B world and the
counterfactual worlds of one run (and of one noise replication) live the same pre-period, draw for
draw. So it is simulated once, by :func:`simulate_pre_period`, and each world continues from a copy
of the state at its end (:meth:`PrePeriod.adopt`): the same events, outcomes and estimates as
worlds that each simulate their own pre-period (``tests/core/test_preperiod.py`` compares the run
directories byte for byte), for one pre-period's work instead of one per world.

It applies when the pre-period ends exactly at the end of a serving window (``pre_period`` a whole
number of ``batch_window``, as in every shipped scenario): nothing straddles the experiment start,
so the state at the end of that window is the whole state of the world. Otherwise, and for sharded
worlds (core.shard), every world simulates its own pre-period as before.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import simpy

from counterfeed.core.simulation import SimWorld

__all__ = ["PrePeriod", "pre_period_windows", "simulate_pre_period", "share_pre_periods"]

#: what a world changes during its pre-period (everything else is set by its construction)
STATE = ("_calendar", "_visit_time", "next_visit", "session_count", "user_state", "user_model", "policies", "_sessions",
         "_logs", "_fitted")


@dataclass
class PrePeriod:
    """A world's state at the end of its pre-period (picklable: it travels to worker processes).

    ``windows``: the pre-period's serving windows (the experiment starts at the end of the last);
    ``now``: the simulated time then (days); ``state``: the world's attributes named in :data:`STATE`.
    """

    windows: int
    now: float
    state: dict[str, Any]

    def adopt(self, world: SimWorld) -> int:
        """Give ``world`` a private copy of this state (events already recorded are shared, never
        copied: they are not changed after they are recorded); the window it continues from."""
        memo: dict[int, Any] = {id(x): x for x in (world.items, world.population, world.keys)}
        for log in self.state["_logs"]:
            memo[id(log)] = log
        for rows in self.state["_sessions"]:
            memo[id(rows)] = rows
        vars(world).update(copy.deepcopy(self.state, memo))
        world.env = simpy.Environment(initial_time=self.now)
        return self.windows


def pre_period_windows(world: SimWorld) -> int | None:
    """The number of serving windows of ``world``'s pre-period when it ends exactly at a window's
    end and the experiment has windows after it; else None (the pre-period is not shared)."""
    cfg = world.cfg
    if cfg.pre_period <= 0:
        return None
    k = int(round(cfg.pre_period / cfg.batch_window))
    if k < 1 or k * cfg.batch_window != cfg.pre_period or k >= world.n_windows():
        return None
    return k


def simulate_pre_period(world: SimWorld) -> PrePeriod | None:
    """Simulate ``world``'s pre-period (no boundary is taken: the experiment start is the first, at
    its end) and return the state at its end; None when :func:`pre_period_windows` is None."""
    k = pre_period_windows(world)
    if k is None:
        return None
    world.start()
    world.serve_windows(k)
    return PrePeriod(k, float(world.env.now), {name: getattr(world, name) for name in STATE})


def share_pre_periods(tasks: Sequence[Any], build: Callable[[Any], SimWorld]) -> list[Any]:
    """``tasks`` (core.runner.WorldTask) with ``pre`` set for the worlds that share a pre-period:
    unsharded worlds of the same scenario, catalog, population and noise replication, two or more.
    ``build(task)`` makes a task's world (it simulates the shared pre-period)."""
    from counterfeed.core.user_truth import split_replication

    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tasks):
        if t.shards is None and t.pre is None:
            key = (id(t.scenario), id(t.items), id(t.population), split_replication(t.world)[1])
            groups.setdefault(key, []).append(i)
    out = list(tasks)
    for idx in groups.values():
        if len(idx) < 2:
            continue
        world = build(replace(tasks[idx[0]], progress=None))
        if type(world) is not SimWorld:
            continue
        pre = simulate_pre_period(world)
        if pre is not None:
            for i in idx:
                out[i] = replace(tasks[i], pre=pre)
    return out
