"""Adaptive allocation: Thompson sampling shifts traffic between arms while the experiment runs.

Design (``experiment.allocation``):

- **When users are assigned.** A user is assigned at their first visit of the experiment period,
  with the assignment probabilities current at that moment, and keeps that arm (sticky assignment:
  the per-user outcome stays a clean unit for the estimand "everyone on arm a"). Users who never
  visit during the experiment are assigned at the end with the final probabilities (their outcome
  is 0 in every world, so this only keeps the table complete).
- **The draw.** User ``i`` has one keyed uniform ``U_i`` (stream ``assignment:adaptive:<salt>``) and
  gets arm ``searchsorted(cumsum(pi_t), U_i)``: reproducible, and independent of every draw of the
  user model. The probability vector ``pi_t`` in force at that moment is recorded per user.
- **The update.** Every ``update_every`` the sampler compares each arm's *rate* of the metric per
  day of exposure, ``r_a = sum_i y_i / sum_i e_i`` over the arm's assigned users (``y_i`` the metric
  from the experiment start until now, ``e_i`` the days since assignment), with the delta-method
  standard error ``se_a = sd((y_i - r_a e_i) / mean(e)) / sqrt(n_a)``. With ``R_a ~ N(r_a, se_a^2)``
  it estimates ``P(arm a is best)`` from ``draws`` Monte Carlo draws (a Generator derived from the
  seed and the update index) and sets ``pi_a = floor + (1 - A floor) P(a best)`` (A arms), so every
  arm keeps at least ``floor``: inverse-probability weights stay bounded by ``1 / floor``.

References: W. R. Thompson (1933), Biometrika 25; D. Russo et al. (2018), "A tutorial on Thompson
sampling"; V. Hadad, D. Hirshberg, R. Zhan, S. Wager, S. Athey (2021), "Confidence intervals for
policy evaluation in adaptive experiments", PNAS 118(15) (why the recorded probabilities matter).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from counterfeed.core.contracts import Metric
from counterfeed.core.experiment import Assignment
from counterfeed.core.randomness import Keys
from counterfeed.core._guard import call_plugin

__all__ = ["ThompsonAllocation", "thompson_probabilities"]


def thompson_probabilities(means: np.ndarray, ses: np.ndarray, rng: np.random.Generator, draws: int,
                           floor: float, higher_is_better: bool = True) -> np.ndarray:
    """``floor + (1 - A floor) * P(arm is best)`` for independent normal posteriors ``N(mean, se^2)``."""
    means = np.asarray(means, dtype=np.float64)
    ses = np.asarray(ses, dtype=np.float64)
    z = rng.standard_normal((draws, means.size))
    samples = means[None, :] + z * ses[None, :]
    best = np.argmax(samples if higher_is_better else -samples, axis=1)
    p_best = np.bincount(best, minlength=means.size) / draws
    return floor + (1.0 - means.size * floor) * p_best


class ThompsonAllocation(Assignment):
    """Assigns users at their first experiment visit with probabilities updated by Thompson sampling.

    An :class:`~counterfeed.core.experiment.Assignment`: ``start`` leaves everyone unassigned,
    ``assign`` draws the arms of a batch's new users, every ``update_every`` after the start
    ``at_boundary`` recomputes the probabilities from the events so far.

    Parameters
    ----------
    arms : arm names, in the world's order.
    initial : (A,) starting probabilities (the scenario's split).
    metric : the metric plugin compared (``sum``/``mean``/``binary`` per user).
    keys, salt : keyed randomness; the per-user uniform is ``keys.stream(f"assignment:adaptive:{salt}")``.
    update_every, floor, draws, higher_is_better : see :mod:`counterfeed.core.allocation`.
    """

    def __init__(self, arms: list[str], initial: np.ndarray, metric: Metric, keys: Keys, salt: str, *,
                 update_every: float, floor: float, draws: int, higher_is_better: bool = True):
        super().__init__(arms)
        self.initial = np.asarray(initial, dtype=np.float64)
        self.metric = metric
        self.keys = keys
        self.salt = salt
        self.update_every = float(update_every)
        self.floor = float(floor)
        self.draws = int(draws)
        self.higher_is_better = higher_is_better
        self.start_ = np.inf  # set by start(); until then (the pre-period) nobody is assigned
        self.updates_ = 0

    # -- the Assignment interface ----------------------------------------------------------------
    def start(self, world: Any, t: float) -> np.ndarray:
        """At the experiment start nobody is assigned (every arm is fitted by the world)."""
        n = world.n
        self.start_ = float(t)
        self.probs_ = self.initial.copy()
        self.assigned_ = np.zeros(n, dtype=bool)
        self.arm_ = np.full(n, -1, dtype=np.int64)
        self.probabilities_ = np.full((n, len(self.arms)), np.nan)
        self.assigned_at_ = np.full(n, np.nan)
        self.u_ = self.keys.stream(f"assignment:adaptive:{self.salt}").uniform(np.arange(n, dtype=np.int64))
        self.history_: list[dict[str, Any]] = [self._record(self.start_, None)]
        return np.full(n, -1, dtype=np.int64)

    def _draw(self, users: np.ndarray) -> np.ndarray:
        cum = np.cumsum(self.probs_)
        cum[-1] = 1.0
        return np.searchsorted(cum, self.u_[users], side="right").clip(0, len(self.arms) - 1)

    def assign(self, world: Any, users: np.ndarray, t: float) -> np.ndarray:
        """Draw the arms of a serving batch's new users with the probabilities now in force."""
        arm = self._draw(users)
        self.arm_[users] = arm
        self.assigned_[users] = True
        self.probabilities_[users] = self.probs_
        self.assigned_at_[users] = t
        return arm

    def boundaries(self, start: float, horizon: float) -> list[float]:
        out, k = [], 1
        while start + k * self.update_every < horizon:
            out.append(start + k * self.update_every)
            k += 1
        return out

    def at_boundary(self, world: Any, t: float) -> None:
        self.updates_ += 1
        self.update(world.snapshot(), t, self.updates_)
        return None

    def assignment(self) -> np.ndarray:
        """Every user's arm; users never seen in the experiment get the final probabilities."""
        rest = np.nonzero(~self.assigned_)[0]
        if rest.size:
            self.arm_[rest] = self._draw(rest)
            self.probabilities_[rest] = self.probs_
            self.assigned_[rest] = True
        return self.arm_.copy()

    def probabilities(self) -> np.ndarray:
        self.assignment()
        return self.probabilities_.copy()

    def update(self, events: Any, now: float, index: int) -> None:
        """Recompute the probabilities from the events so far (sessions only)."""
        y = np.asarray(call_plugin(self.metric, "compute", self.metric.compute, events, self.start_, now),
                       dtype=np.float64)
        exposure = np.where(self.assigned_, now - self.assigned_at_, 0.0)
        means = np.zeros(len(self.arms))
        ses = np.zeros(len(self.arms))
        for a in range(len(self.arms)):
            sel = self.assigned_ & (self.arm_ == a)
            if sel.sum() < 2 or exposure[sel].sum() <= 0:
                self.history_.append(self._record(now, "too few users"))
                return
            ya, ea = y[sel], exposure[sel]
            r = ya.sum() / ea.sum()
            lin = (ya - r * ea) / ea.mean()
            means[a], ses[a] = r, float(np.std(lin, ddof=1) / np.sqrt(sel.sum()))
        rng = self.keys.numpy_generator("allocation", self.salt, index)
        self.probs_ = thompson_probabilities(means, ses, rng, self.draws, self.floor, self.higher_is_better)
        self.history_.append(self._record(now, None, means, ses))

    def _record(self, t: float, note: str | None, means: np.ndarray | None = None,
                ses: np.ndarray | None = None) -> dict[str, Any]:
        row: dict[str, Any] = {"time": float(t), "probabilities": dict(zip(self.arms, self.probs_.tolist()))}
        if means is not None and ses is not None:
            row["rate"] = dict(zip(self.arms, means.tolist()))
            row["se"] = dict(zip(self.arms, ses.tolist()))
        if note:
            row["note"] = note
        return row

    def record(self) -> dict[str, Any]:
        """What the analysis needs: per-user probabilities at assignment time and the update history."""
        self.assignment()
        own = self.probabilities_[np.arange(self.arm_.size), self.arm_]
        return {"allocation": {"probabilities": self.probabilities_.copy(), "probability": own,
                               "assigned_at": self.assigned_at_.copy(), "history": list(self.history_),
                               "arms": list(self.arms)}}
