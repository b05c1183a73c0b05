"""The SimPy world: user processes, a serving batcher, retraining, and a columnar event sink.

A user is a small process that reads like what it models::

    while visit < horizon:
        yield world.request(uid, visit)   # visit, ask for a slate, wait until it is served
        visit = world.next_visit[uid]     # the user model drew the next visit (inf: churned)

Requests are served in batches at the end of each serving window, so a visit at time ``t`` is
registered directly with the window that contains ``t`` (its request time ``t`` is logged) and the
user's process wakes when that window's slates have been served and answered: one event per session,
shared by every request of the window, instead of a timer per user. Nothing observable happens
between a visit and its window's end, so this is the same model as "wait, then request, then wait
for the server", at a fraction of the cost.

The serving process closes a window every ``batch_window``: it groups the pending requests by arm,
asks each arm's recommender for all their slates in one vectorized call, lets the user model respond
to the whole batch, records the events, and feeds the window's feedback to the recommenders
(``update``). A retraining process calls ``fit`` on each arm's log every ``retrain_every``. During the
pre-period everyone is served by the control arm; at ``pre_period`` the world's assignment applies.

Training data (``training``): ``own`` (default) -- each arm learns from the shared pre-period history
plus its own arm's impressions; ``pooled`` -- every arm learns from every arm's impressions (a source
of interference: in the A/B world an arm learns from data its counterfactual world never has);
``weighted`` -- like ``own``, but each experiment-period impression of arm ``a`` counts ``1 / share_a``
times (``share_a`` = the arm's share of the world's users), so every arm's data volume matches its
full-traffic world. Weights are applied by replication with keyed stochastic rounding: an impression
is passed ``floor(w) + 1{U < w - floor(w)}`` times (``U`` keyed by user, session, position), which
is exact for count-based models and for integer ``w`` (a 50/50 split) and needs nothing from the
recommender.

Two optional extensions are attached by the runner: an ``allocator`` (adaptive allocation, assigns
users at their first experiment-period visit, :mod:`counterfeed.core.allocation`) and extra SimPy
``processes`` (phase boundaries, :mod:`counterfeed.core.phases`), which switch the assignment with
:meth:`SimWorld.set_assignment`.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import simpy

from counterfeed.core.contracts import (Batch, Items, Log, Population, Recommender,
                                        RecommenderContext, Response, Slates, UserModel, WorldEvents)
from counterfeed.core.randomness import Keys
from counterfeed.errors import CounterfeedError, PluginError

__all__ = ["SimWorld", "WorldConfig", "call_plugin"]


def call_plugin(plugin: Any, hook: str, fn: Callable, *args: Any) -> Any:
    """Call a plugin method; anything it raises becomes a PluginError naming it and the hook."""
    try:
        return fn(*args)
    except CounterfeedError:
        raise
    except Exception as exc:
        name = getattr(plugin, "name", type(plugin).__name__)
        raise PluginError(f"raised {type(exc).__name__}: {exc}", plugin=name, hook=hook) from exc


@dataclass
class WorldConfig:
    """Everything a world needs besides the plugins (plain data, picklable)."""

    name: str
    arms: list[str]
    control: int
    assignment: np.ndarray      # (n_users,) arm index from the experiment start
    pre_period: float
    duration: float
    batch_window: float
    retrain_every: float | None
    slate_size: int
    training: str = "own"
    record_impressions: bool = True

    @property
    def horizon(self) -> float:
        return self.pre_period + self.duration


class SimWorld:
    """One simulated world. ``run()`` returns its :class:`WorldEvents`."""

    def __init__(self, config: WorldConfig, items: Items, population: Population, keys: Keys,
                 user_model: UserModel, make_recommender: Callable[[str], Recommender]):
        self.cfg = config
        self.items = items
        self.population = population
        self.keys = keys
        self.user_model = user_model
        self.make_recommender = make_recommender
        n = population.n
        self.n = n
        self.env = simpy.Environment()
        self.windows: dict[int, tuple[simpy.Event, list[int], list[float]]] = {}
        self.next_visit = np.full(n, np.inf)
        self.session_count = np.zeros(n, dtype=np.int64)
        self.current = np.full(n, config.control, dtype=np.int64)
        self.policies: dict[int, Recommender] = {}
        self.streams = [keys.stream(f"policy:{a}") for a in config.arms]
        self._sessions: list[tuple[np.ndarray, ...]] = []
        self._logs: list[Log] = []
        self._has_arrivals = bool(np.any(items.arrival > 0))
        self.n_batches = 0
        self.allocator: Any = None      # adaptive allocation (counterfeed.core.allocation)
        self.processes: list[Callable[["SimWorld"], Any]] = []  # extra SimPy processes (phases)
        self._fitted: set[int] = set()
        self._weights: np.ndarray | None = None  # training: weighted -> per-arm impression weight

    # -- plugins ------------------------------------------------------------------------------
    def _policy(self, arm: int) -> Recommender:
        rec = self.policies.get(arm)
        if rec is None:
            rec = self.make_recommender(self.cfg.arms[arm])
            ctx = RecommenderContext(items=self.items, n_users=self.n, slate_size=self.cfg.slate_size,
                                     keys=self.keys, arm=self.cfg.arms[arm])
            call_plugin(rec, "setup", rec.setup, ctx)
            self.policies[arm] = rec
        return rec

    def _arm_log(self, arm: int) -> Log:
        """The log an arm learns from: the shared pre-period history plus its own arm's data
        (or every arm's data with ``training: pooled``)."""
        log = Log.concat(self._logs)
        if self.cfg.training == "pooled" or not len(log):
            return log
        log = log.select((log.time < self.cfg.pre_period) | (log.arm == arm))
        if self.cfg.training == "weighted":
            log = self._replicate(log, arm, log.time >= self.cfg.pre_period)
        return log

    def _arm_weights(self) -> np.ndarray:
        """``1 / share`` of every arm among the assigned users (1 for an arm without users)."""
        counts = np.bincount(self.current[self.current >= 0], minlength=len(self.cfg.arms))
        return np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 1.0)

    def _replicate(self, log: Log, arm: int, mask: np.ndarray | None = None) -> Log:
        """``log`` with the rows in ``mask`` repeated by the arm's weight (keyed stochastic rounding)."""
        if self._weights is None:
            self._weights = self._arm_weights()
        w = float(self._weights[arm])
        if w == 1.0 or not len(log):
            return log
        base = np.floor(w)
        reps = np.full(len(log), base, dtype=np.int64)
        if w > base:
            u = self.keys.stream("training:weight").uniform(log.user, log.session, log.position)
            reps += (u < w - base).astype(np.int64)
        if mask is not None:
            reps = np.where(mask, reps, 1)
        return log.select(np.repeat(np.arange(len(log)), reps))

    def set_assignment(self, assignment: np.ndarray) -> None:
        """Switch the arm of every user (-1: not assigned yet); arms new to serving are fitted first."""
        self.current = np.asarray(assignment, dtype=np.int64).copy()
        self._weights = None
        for arm in np.unique(self.current[self.current >= 0]):
            arm = int(arm)
            if arm not in self._fitted:
                rec = self._policy(arm)
                call_plugin(rec, "fit", rec.fit, self._arm_log(arm))
                self._fitted.add(arm)

    # -- processes -----------------------------------------------------------------------------
    def request(self, uid: int, t: float) -> simpy.Event:
        """Register user ``uid``'s visit at time ``t``; the event fires when its slate was served."""
        k = int(t / self.cfg.batch_window) + 1
        w = self.windows.get(k)
        if w is None:
            w = self.windows[k] = (self.env.event(), [], [])
        w[1].append(uid)
        w[2].append(t)
        return w[0]

    def _user(self, uid: int, visit: float):
        horizon = self.cfg.horizon
        request = self.request
        next_visit = self.next_visit
        while visit < horizon:
            yield request(uid, visit)
            visit = next_visit[uid]

    def n_windows(self) -> int:
        """Serving windows until the horizon; the last one ends at or just after it."""
        return max(1, int(np.ceil(self.cfg.horizon / self.cfg.batch_window - 1e-9)))

    def _server(self):
        env = self.env
        window = self.cfg.batch_window
        for k in range(1, self.n_windows() + 1):
            end = k * window
            yield env.timeout(max(end - env.now, 0.0))
            w = self.windows.pop(k, None)
            if w is None:
                continue
            done, pending, pending_time = w
            users = np.fromiter(pending, dtype=np.int64, count=len(pending))
            times = np.fromiter(pending_time, dtype=np.float64, count=len(pending))
            self.serve(users, times, env.now)
            done.succeed()

    def _start_experiment(self):
        yield self.env.timeout(self.cfg.pre_period)
        self.current = self.cfg.assignment.astype(np.int64, copy=True)
        self._weights = None
        if self.allocator is not None:
            self.allocator.start(self)
        for arm in np.unique(self.current[self.current >= 0]):
            rec = self._policy(int(arm))
            call_plugin(rec, "fit", rec.fit, self._arm_log(int(arm)))
            self._fitted.add(int(arm))

    def _retrain(self):
        every = self.cfg.retrain_every
        t = self.cfg.pre_period
        while True:
            t += every
            if t >= self.cfg.horizon:
                return
            yield self.env.timeout(t - self.env.now)
            for arm, rec in self.policies.items():
                call_plugin(rec, "fit", rec.fit, self._arm_log(arm))

    # -- serving -------------------------------------------------------------------------------
    def serve(self, users: np.ndarray, times: np.ndarray, now: float) -> None:
        sessions = self.session_count[users]
        self.session_count[users] += 1
        if self.allocator is not None:
            self.allocator.assign_new(self, users, now)
        arm_of = self.current[users]
        if self.cfg.pre_period > 0 and now >= self.cfg.pre_period:
            # a request made before the experiment started is served by the pre-period policy
            # (the control arm), whatever window it lands in
            arm_of = np.where(times < self.cfg.pre_period, self.cfg.control, arm_of)
        available = self.items.available(now) if self._has_arrivals else None
        arms = np.unique(arm_of)
        feedback: list[Log] = []
        for arm in arms:
            idx = np.nonzero(arm_of == arm)[0] if arms.size > 1 else slice(None)
            u, s, t = users[idx], sessions[idx], times[idx]
            rec = self._policy(int(arm))
            batch = Batch(users=u, sessions=s, time=now, slate_size=self.cfg.slate_size,
                          stream=self.streams[arm], available=available)
            slates = call_plugin(rec, "recommend", rec.recommend, batch)
            _check_slates(rec, slates, batch, self.items.n)
            resp = call_plugin(self.user_model, "respond", self.user_model.respond,
                               getattr(self.user_model, "state_"), batch, slates)
            _check_response(self.user_model, resp, slates)
            self.next_visit[u] = now + resp.next_gap
            log = self._record(int(arm), u, s, t, slates, resp)
            feedback.append(log)
        self.n_batches += 1
        if self.cfg.training == "pooled":
            pooled = Log.concat(feedback)
            for rec in self.policies.values():
                call_plugin(rec, "update", rec.update, pooled)
        elif self.cfg.training == "weighted" and now > self.cfg.pre_period:
            for arm, log in zip(arms, feedback):
                rec = self.policies[int(arm)]
                call_plugin(rec, "update", rec.update, self._replicate(log, int(arm)))
        else:
            for arm, log in zip(arms, feedback):
                rec = self.policies[int(arm)]
                call_plugin(rec, "update", rec.update, log)

    def _record(self, arm: int, u: np.ndarray, s: np.ndarray, t: np.ndarray, slates: Slates,
                resp: Response) -> Log:
        n, k = slates.items.shape
        clicks = resp.clicks.astype(bool)
        self._sessions.append((u, s, t, np.full(n, arm, np.int16), np.full(n, k, np.int16),
                               clicks.sum(axis=1).astype(np.int16), resp.dwell.sum(axis=1),
                               ~np.isfinite(resp.next_gap)))
        log = Log(user=np.repeat(u, k), session=np.repeat(s, k), time=np.repeat(t, k),
                  position=np.tile(np.arange(k, dtype=np.int16), n), item=slates.items.reshape(-1),
                  click=clicks.reshape(-1), dwell=resp.dwell.reshape(-1).astype(np.float32),
                  propensity=np.asarray(slates.propensities, dtype=np.float64).reshape(-1),
                  arm=np.full(n * k, arm, np.int16))
        if self.cfg.record_impressions or self.cfg.retrain_every is not None or \
                self.env.now < self.cfg.pre_period:
            self._logs.append(log)
        return log

    # -- running -------------------------------------------------------------------------------
    def run(self) -> WorldEvents:
        cfg = self.cfg
        um = self.user_model
        state = call_plugin(um, "init_state", um.init_state, self.population, self.items, self.keys)
        um.state_ = state
        self._policy(cfg.control)
        if cfg.pre_period > 0:
            self.env.process(self._start_experiment())
        else:
            self.current = cfg.assignment.astype(np.int64, copy=True)
            if self.allocator is not None:
                self.allocator.start(self)
            for arm in np.unique(self.current[self.current >= 0]):
                self._policy(int(arm))
                self._fitted.add(int(arm))
        users = self.population.ids
        first = np.asarray(call_plugin(um, "first_visit", um.first_visit, state, users), dtype=np.float64)
        if first.shape != (self.n,) or np.any(~(first > 0)):
            raise PluginError("first_visit must return one positive gap per user", plugin=um.name,
                              hook="first_visit")
        horizon = cfg.horizon
        # Hundreds of thousands of user processes stay alive for the whole run; left to the cyclic
        # collector they are rescanned at every full collection (while they are created, too), which
        # made throughput fall with the population size. Collections are made rarer while processes
        # are created and the event loop runs, and the long-lived objects are frozen out of the
        # collector; garbage cycles are still collected, afterwards.
        threshold = gc.get_threshold()
        gc.set_threshold(max(threshold[0], 50_000), *threshold[1:])
        try:
            process = self.env.process
            for uid in np.nonzero(first < horizon)[0].tolist():
                process(self._user(uid, first[uid]))
            server = self.env.process(self._server())
            if cfg.retrain_every is not None:
                self.env.process(self._retrain())
            for make in self.processes:
                self.env.process(make(self))
            gc.freeze()
            self.env.run(until=server)
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()
        return self._events()

    def _events(self) -> WorldEvents:
        final = self.allocator.final_assignment(self) if self.allocator is not None else None
        return self.snapshot(self.cfg.record_impressions, final)

    def snapshot(self, impressions: bool = False, assignment: np.ndarray | None = None) -> WorldEvents:
        """The events so far (sessions; impressions too when asked); ``assignment`` defaults to the
        world's configured assignment."""
        names = ("user", "session", "time", "arm", "impressions", "clicks", "dwell", "churned")
        dtypes = (np.int64, np.int64, np.float64, np.int16, np.int16, np.int16, np.float64, bool)
        if self._sessions:
            cols = {nm: np.concatenate([row[i] for row in self._sessions]).astype(dt, copy=False)
                    for i, (nm, dt) in enumerate(zip(names, dtypes))}
        else:
            cols = {nm: np.zeros(0, dt) for nm, dt in zip(names, dtypes)}
        log = Log.concat(self._logs) if impressions else None
        assignment = self.cfg.assignment.copy() if assignment is None else np.asarray(assignment)
        return WorldEvents(world=self.cfg.name, n_users=self.n, sessions=cols, impressions=log,
                           start=0.0, end=self.cfg.horizon, arms=list(self.cfg.arms),
                           assignment=assignment)


def _check_slates(rec: Recommender, slates: Any, batch: Batch, n_items: int) -> None:
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


def _check_response(um: UserModel, resp: Any, slates: Slates) -> None:
    name = getattr(um, "name", type(um).__name__)
    if not isinstance(resp, Response):
        raise PluginError(f"must return Response, got {type(resp).__name__}", plugin=name, hook="respond")
    shape = slates.items.shape
    if resp.clicks.shape != shape or resp.dwell.shape != shape or resp.next_gap.shape != shape[:1]:
        raise PluginError(f"clicks and dwell must have shape {shape} and next_gap ({shape[0]},)",
                          plugin=name, hook="respond")
    if np.any(np.isnan(resp.next_gap)) or np.any(resp.next_gap <= 0):
        raise PluginError("next_gap must be positive (inf for churn)", plugin=name, hook="respond")
