"""The SimPy world: a visit calendar, a serving process, retraining, and a columnar event sink.

A user's life is the loop "visit, get a slate, respond, come back after a gap (or churn)". The
serving process is the one SimPy process that carries time: every ``batch_window`` it closes a
window, serves every visit made in it in one vectorized batch, and the user model's answer gives
each served user's next visit, which goes straight into the calendar (:meth:`SimWorld.request`):
each user's pending window and visit time, two (n_users,) arrays. A visit at time ``t`` is served at the end
of the window that contains ``t`` (its request time ``t`` is logged); nothing observable happens to
a user between a visit and its window's end, so this is the same model as "wait, then request,
then wait for the server".

Users are calendar rows, not SimPy generators (docs/performance.md). A window is served in user-id
order, so the event log does not depend on how users were scheduled or sharded (core.shard).

The serving process closes a window every ``batch_window``: it groups the pending requests by arm,
asks each arm's recommender for all their slates in one vectorized call, lets the user model respond
to the whole batch, records the events, and feeds the window's feedback to the recommenders
(``update``). Every ``retrain_every`` after the experiment start each arm is refitted on its log.
During the pre-period everyone is served by the control arm; at ``pre_period`` the assignment applies.

Training data (``training``): ``own`` (default) -- each arm learns from the shared pre-period history
plus its own arm's impressions; ``pooled`` -- every arm learns from every arm's impressions (a source
of interference: in the A/B world an arm learns from data its counterfactual world never has);
``weighted`` -- like ``own``, but each experiment-period impression of arm ``a`` counts ``1 / share_a``
times (``share_a`` = the arm's share of the world's users), so every arm's data volume matches its
full-traffic world. Weights are applied by replication with keyed stochastic rounding: an impression
is passed ``floor(w) + 1{U < w - floor(w)}`` times (``U`` keyed by user, session, position), which
is exact for count-based models and for integer ``w`` (a 50/50 split) and needs nothing from the
recommender.

Assignment (:mod:`counterfeed.core.experiment`) is a component handed to the world: it says who
gets which arm at the experiment start, at a user's first experiment visit, and at its own
boundaries (adaptive allocation updates, :mod:`counterfeed.core.allocation`; phase ends,
:mod:`counterfeed.core.phases`). The world owns the user model's state (:attr:`SimWorld.user_state`)
and the arms' fitting (:meth:`SimWorld.fit_arms`, the one place an arm is fitted).

**Boundaries.** The experiment start, the assignment's boundaries and retraining are taken by the
serving process in time order: at a boundary at time ``b``, every request made before ``b`` has been
served and its feedback given to the recommenders, and every request made at or after ``b`` is
served after the boundary's action (a window that straddles ``b`` is served in two parts). So the
last pre-period window is served by the pre-period policy and is in every arm's training log when
the arms are fitted, a retraining at ``b`` sees every session before ``b``, and a phase's analysis
sees the whole phase. Identical arms therefore get identical models, in every world.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import simpy

from counterfeed.core.contracts import (Batch, Items, Log, Population, Recommender,
                                        RecommenderContext, Response, Slates, UserModel, WorldEvents)
from counterfeed.core import interrupts
from counterfeed.core._guard import call_plugin
from counterfeed.core._output_checks import check_response, check_slates
from counterfeed.core._training_log import TrainingLog, arm_training_log, whole_log
from counterfeed.core.experiment import Assignment, FixedAssignment
from counterfeed.core.randomness import Keys
from counterfeed.core.sessions_table import SESSION_COLUMNS, session_columns, session_rows
from counterfeed.errors import PluginError

__all__ = ["SimWorld", "WorldConfig", "SESSION_COLUMNS", "session_rows", "session_columns"]


@dataclass
class WorldConfig:
    """Everything a world needs besides the plugins (plain data, picklable)."""

    name: str
    arms: list[str]
    control: int
    assignment: np.ndarray | None  # (n_users,) arms from the start, used when no Assignment is given
    pre_period: float
    duration: float
    batch_window: float
    retrain_every: float | None
    slate_size: int
    training: str = "own"
    record_impressions: bool = True
    n_users: int = 0  # the number of users when the world is given no Population (a sharded world)
    arm_keys: list[str] | None = None  # each arm's random identity (plan.arm_key); default: its name

    def key(self, arm: int) -> str:
        """What arm index ``arm``'s random draws are keyed on (identical arms share it)."""
        return self.arm_keys[arm] if self.arm_keys is not None else self.arms[arm]

    @property
    def horizon(self) -> float:
        return self.pre_period + self.duration


class SimWorld:
    """One simulated world. ``run()`` returns its :class:`WorldEvents`.

    Parameters
    ----------
    config : the world's plain settings.
    items, population, keys : the catalog, the users and the keyed randomness.
    user_model : the user-model plugin (the world keeps its state, :attr:`user_state`).
    make_recommender : arm name -> a new recommender (set up and fitted by the world).
    assignment : who gets which arm and when (default: ``config.assignment`` from the start).
    progress : called with the simulated time (days) after every serving window.
    """

    def __init__(self, config: WorldConfig, items: Items, population: Population, keys: Keys,
                 user_model: UserModel, make_recommender: Callable[[str], Recommender],
                 assignment: Assignment | None = None, progress: Callable[[float], None] | None = None):
        self.cfg = config
        self.items = items
        self.population = population
        self.keys = keys
        self.user_model = user_model
        self.make_recommender = make_recommender
        if assignment is None:
            if config.assignment is None:
                raise ValueError("a world needs an assignment (config.assignment or an Assignment)")
            arm_of = np.asarray(config.assignment, dtype=np.int64)
            share = np.bincount(arm_of, minlength=len(config.arms)) / max(arm_of.size, 1)
            assignment = FixedAssignment(config.arms, arm_of, share)
        self.assignment = assignment
        self.progress = progress
        n = population.n if population is not None else int(config.n_users)
        self.n = n
        self.env = simpy.Environment()
        self._calendar = np.zeros(n, dtype=np.int64)  # each user's pending visit: its window (0: none)
        self._visit_time = np.zeros(n)                 # ... and its time
        self.next_visit = np.full(n, np.inf)
        self.session_count = np.zeros(n, dtype=np.int64)
        self.user_state: Any = None    # the user model's state (init_state), owned by the world
        self.policies: dict[int, Recommender] = {}
        self.streams = [keys.stream(f"policy:{config.key(a)}") for a in range(len(config.arms))]
        self.started = False           # the experiment period has begun
        self._current = np.full(n, config.control, dtype=np.int64)
        self._unassigned = False       # some users get their arm at their first experiment visit
        self._sessions: list[tuple[np.ndarray, ...]] = []
        self._logs: list[Log] = []
        self._training: dict[int | None, TrainingLog] = {}  # arm (None: every row, pooled) -> its training log
        self._has_arrivals = bool(np.any(items.arrival > 0))
        self._fitted: set[int] = set()
        self._weights: np.ndarray | None = None  # training: weighted -> per-arm impression weight

    @property
    def horizon(self) -> float:
        return self.cfg.horizon

    @property
    def now(self) -> float:
        return float(self.env.now)

    @property
    def served(self) -> np.ndarray:
        """(n_users,) arm index now serving each user (-1: not assigned yet); a read-only view."""
        view = self._current.view()
        view.flags.writeable = False
        return view

    # -- arms ---------------------------------------------------------------------------------
    def policy(self, arm: int) -> Recommender:
        """The recommender of arm index ``arm`` (created and set up on first use)."""
        rec = self.policies.get(arm)
        if rec is None:
            rec = self.make_recommender(self.cfg.arms[arm])
            ctx = RecommenderContext(items=self.items, n_users=self.n, slate_size=self.cfg.slate_size,
                                     keys=self.keys, arm=self.cfg.arms[arm], key=self.cfg.key(arm))
            call_plugin(rec, "setup", rec.setup, ctx)
            self.policies[arm] = rec
        return rec

    def arm_log(self, arm: int) -> Log:
        """The log an arm learns from: the shared pre-period history plus its own arm's data
        (or every arm's data with ``training: pooled``)."""
        key = None if self.cfg.training == "pooled" else arm
        pre = self.cfg.pre_period  # grown in place: a refit appends only the chunks recorded since the last
        grown = arm_training_log(self._training, key, lambda chunk: (chunk.time < pre) | (chunk.arm == arm))
        # room for the horizon's rows at the rate so far, plus a quarter (untouched capacity costs nothing)
        log = grown.log(self._logs, min(4.0, max(2.0, 1.25 * self.cfg.horizon / max(self.now, 1e-9))))
        if key is None or not len(log):
            return log
        if self.cfg.training == "weighted":
            log = self._replicate(log, arm, log.time >= self.cfg.pre_period)
        return log

    def fit_arms(self, arms: Any = None, *, refit: bool = False) -> None:
        """Fit arms on their training logs (:meth:`arm_log`), in arm order.

        ``arms`` (default: every arm now serving someone; every arm while some users are still
        unassigned); arms fitted before are skipped unless ``refit``. With no history yet (a world
        without pre-period, at its start) the arms are set up and count as fitted without a call.
        """
        if arms is None:
            if self._unassigned:
                arms = range(len(self.cfg.arms))
            else:
                arms = np.unique(self._current[self._current >= 0]).tolist()
        for arm in sorted(int(a) for a in arms):
            if arm in self._fitted and not refit:
                continue
            rec = self.policy(arm)
            if self._logs:
                call_plugin(rec, "fit", rec.fit, self.arm_log(arm))
            self._fitted.add(arm)

    def _arm_weights(self) -> np.ndarray:
        """``1 / share`` of every arm among the assigned users (1 for an arm without users)."""
        counts = np.bincount(self._current[self._current >= 0], minlength=len(self.cfg.arms))
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
        """Switch the arm of every user (-1: assigned at the next visit); arms new to serving are
        fitted first."""
        arm_of = np.asarray(assignment, dtype=np.int64)
        if arm_of.shape != (self.n,) or np.any(arm_of >= len(self.cfg.arms)) or np.any(arm_of < -1):
            raise ValueError(f"an assignment is one arm index in [-1, {len(self.cfg.arms)}) per user "
                             f"({self.n}), got shape {arm_of.shape}")
        self._current = arm_of.copy()
        self._unassigned = bool(np.any(arm_of < 0))
        self._weights = None
        self.fit_arms()

    # -- boundaries ------------------------------------------------------------------------------
    def _boundaries(self) -> list[tuple[float, int, Callable[[float], None]]]:
        """``(time, order, action)`` of every boundary: the experiment start, the assignment's own
        boundaries, retraining; sorted by time, then in that order."""
        cfg = self.cfg
        out = [(cfg.pre_period, 0, self._start_experiment)]
        out += [(float(t), 1, self._assignment_boundary)
                for t in self.assignment.boundaries(cfg.pre_period, cfg.horizon)]
        if cfg.retrain_every is not None:
            t = cfg.pre_period
            while True:
                t += cfg.retrain_every
                if t >= cfg.horizon:
                    break
                out.append((t, 2, self._retrain))
        return sorted(out, key=lambda b: (b[0], b[1]))

    def _start_experiment(self, t: float) -> None:
        self.started = True
        self.set_assignment(self.assignment.start(self, t))

    def _assignment_boundary(self, t: float) -> None:
        new = self.assignment.at_boundary(self, t)
        if new is not None:
            self.set_assignment(new)

    def _retrain(self, t: float) -> None:
        self.fit_arms(list(self.policies), refit=True)

    # -- the visit calendar ----------------------------------------------------------------------
    def request(self, users: np.ndarray, times: np.ndarray) -> None:
        """Register visits of ``users`` at ``times`` (arrays); each is served at the end of the
        window that contains its time, visits at or after the horizon are dropped. A user has at
        most one pending visit (the next one is requested when it is served)."""
        users = np.asarray(users, dtype=np.int64)
        times = np.asarray(times, dtype=np.float64)
        due = times < self.cfg.horizon
        if not due.all():
            users, times = users[due], times[due]
        self._calendar[users] = (times / self.cfg.batch_window).astype(np.int64) + 1  # ends at k * window
        self._visit_time[users] = times

    def _due(self, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The requests of window ``k`` in user-id order (a user visits at most once per window)."""
        users = np.flatnonzero(self._calendar == k)
        if not users.size:
            return None
        self._calendar[users] = 0
        return users, self._visit_time[users]

    def n_windows(self) -> int:
        """Serving windows until the horizon; the last one ends at or just after it."""
        return max(1, int(np.ceil(self.cfg.horizon / self.cfg.batch_window - 1e-9)))

    def _server(self, first: int = 1, last: int | None = None, boundaries: bool = True):
        """Close a window every ``batch_window`` (windows ``first`` to ``last``, default: all).
        Boundaries are taken in time order inside it: at a boundary ``b`` every request made before
        ``b`` has been served and fed back, and every request made at or after ``b`` is served after
        the boundary's action. ``boundaries=False``: none (a shared pre-period, core.preperiod)."""
        env = self.env
        window = self.cfg.batch_window
        bounds = self._boundaries() if boundaries else []
        nb = 0
        for k in range(first, (self.n_windows() if last is None else last) + 1):
            end = k * window
            yield env.timeout(max(end - env.now, 0.0))
            w = self._due(k)
            if w is not None:
                users, times = w
            if nb < len(bounds) and bounds[nb][0] <= end:
                while nb < len(bounds) and bounds[nb][0] <= end:
                    b, _, action = bounds[nb]
                    nb += 1
                    if w is not None:
                        before = times < b
                        if before.any():
                            self.serve(users[before], times[before], env.now)
                            users, times = users[~before], times[~before]
                    action(b)
            if w is not None and users.size:
                self.serve(users, times, env.now)
            interrupts.check()  # a Ctrl-C swallowed by a C callback still stops the world
            if self.progress is not None:
                self.progress(min(end, self.cfg.horizon))

    # -- serving -------------------------------------------------------------------------------
    def serve(self, users: np.ndarray, times: np.ndarray, now: float) -> None:
        sessions = self.session_count[users]
        self.session_count[users] += 1
        arm_of = self._current[users]
        if self._unassigned:
            arm_of = self._assign_new(users, arm_of, now)
        available = self.items.available(now) if self._has_arrivals else None
        arms = np.unique(arm_of)
        feedback: list[Log] = []
        parts: list[tuple[int, Batch, Slates, np.ndarray]] = []
        for arm in arms:  # every arm's slates first: the user model's answers do not feed them
            idx = np.nonzero(arm_of == arm)[0] if arms.size > 1 else slice(None)
            rec = self.policy(int(arm))
            batch = Batch(users=users[idx], sessions=sessions[idx], time=now, slate_size=self.cfg.slate_size,
                          stream=self.streams[arm], available=available)
            slates = call_plugin(rec, "recommend", rec.recommend, batch)
            check_slates(rec, slates, batch, self.items.n)
            parts.append((int(arm), batch, slates, times[idx]))
        for (arm, batch, slates, t), resp in zip(parts, self._respond(parts)):
            check_response(self.user_model, resp, slates)
            u = batch.users
            self.next_visit[u] = now + resp.next_gap
            self.request(u, self.next_visit[u])
            feedback.append(self._record(arm, u, batch.sessions, t, slates, resp))
        if self.cfg.training == "pooled":
            pooled = Log.concat(feedback)
            for rec in self.policies.values():
                call_plugin(rec, "update", rec.update, pooled)
        elif self.cfg.training == "weighted" and self.started:
            for arm, log in zip(arms, feedback):
                rec = self.policies[int(arm)]
                call_plugin(rec, "update", rec.update, self._replicate(log, int(arm)))
        else:
            for arm, log in zip(arms, feedback):
                rec = self.policies[int(arm)]
                call_plugin(rec, "update", rec.update, log)

    def _respond(self, parts: list[tuple[int, Batch, Slates, np.ndarray]]) -> list[Response]:
        """The user model's response to every ``(arm, batch, slates, times)`` of a window."""
        um = self.user_model
        return [call_plugin(um, "respond", um.respond, self.user_state, batch, slates)
                for _, batch, slates, _ in parts]

    def _record(self, arm: int, u: np.ndarray, s: np.ndarray, t: np.ndarray, slates: Slates,
                resp: Response) -> Log:
        n, k = slates.items.shape
        clicks = resp.clicks.astype(bool)
        self._add_sessions(session_rows(arm, u, s, t, k, clicks, resp.dwell, resp.next_gap))
        log = Log(user=np.repeat(u, k), session=np.repeat(s, k), time=np.repeat(t, k),
                  position=np.tile(np.arange(k, dtype=np.int16), n), item=slates.items.reshape(-1),
                  click=clicks.reshape(-1), dwell=resp.dwell.reshape(-1).astype(np.float32),
                  propensity=np.asarray(slates.propensities, dtype=np.float64).reshape(-1),
                  arm=np.full(n * k, arm, np.int16))
        if self.cfg.record_impressions or self.cfg.retrain_every is not None or not self.started:
            self._logs.append(log)
        return log

    # -- running -------------------------------------------------------------------------------
    def _add_sessions(self, rows: tuple[np.ndarray, ...]) -> None:
        self._sessions.append(rows)  # (a sharded world's shards keep their rows instead)

    def _first_visits(self) -> np.ndarray:
        """Set up the user model's state; the (n_users,) gap to every user's first visit."""
        um = self.user_model
        self.user_state = call_plugin(um, "init_state", um.init_state, self.population, self.items, self.keys)
        return np.asarray(call_plugin(um, "first_visit", um.first_visit, self.user_state, self.population.ids),
                          dtype=np.float64)

    def start(self) -> None:
        """Set up the user model's state and the control arm; every user's first visit is requested."""
        um = self.user_model
        first = self._first_visits()
        if first.shape != (self.n,) or np.any(~(first > 0)):
            raise PluginError("first_visit must return one positive gap per user", plugin=um.name,
                              hook="first_visit")
        self.policy(self.cfg.control)
        self.request(np.arange(self.n, dtype=np.int64), first)

    def serve_windows(self, last: int) -> None:
        """Serve windows 1 to ``last`` taking no boundary (core.preperiod: a shared pre-period)."""
        self.env.run(until=self.env.process(self._server(1, last, boundaries=False)))

    def run(self, pre: Any = None) -> WorldEvents:
        """Simulate the world to its horizon; from ``pre`` (a :class:`core.preperiod.PrePeriod`, the
        state at the end of a pre-period simulated once for several worlds) when given."""
        if pre is None:
            self.start()
            server = self._server()
        else:
            server = self._server(pre.adopt(self))
        self.env.run(until=self.env.process(server))
        return self.snapshot(self.cfg.record_impressions, self.assignment.assignment())

    def _session_columns(self) -> dict[str, np.ndarray]:
        return session_columns(self._sessions)  # the sessions table so far

    def snapshot(self, impressions: bool = False, assignment: np.ndarray | None = None) -> WorldEvents:
        """The events so far (sessions; impressions too when asked); ``assignment`` defaults to the
        arm now serving each user (-1 for users not assigned yet)."""
        cols = self._session_columns()
        log = whole_log(self._training.values(), self._logs) if impressions else None
        assignment = self._current.copy() if assignment is None else np.asarray(assignment)
        return WorldEvents(world=self.cfg.name, n_users=self.n, sessions=cols, impressions=log,
                           start=0.0, end=self.cfg.horizon, arms=list(self.cfg.arms),
                           assignment=assignment)

    def _assign_new(self, users: np.ndarray, arm_of: np.ndarray, now: float) -> np.ndarray:
        """Arms for the users of a batch who have none yet, from the assignment component."""
        new = arm_of < 0
        if not new.any():
            return arm_of
        who = users[new]
        arms = np.asarray(self.assignment.assign(self, who, now), dtype=np.int64)
        if arms.shape != who.shape or np.any((arms < 0) | (arms >= len(self.cfg.arms))):
            raise ValueError(f"{type(self.assignment).__name__}.assign must return one arm index in "
                             f"[0, {len(self.cfg.arms)}) per user")
        self._current[who] = arms
        self._weights = None
        arm_of = arm_of.copy()
        arm_of[new] = arms
        return arm_of

