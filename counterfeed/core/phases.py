"""Multi-phase experiments: after each phase a decision rule picks the control of the next phase.

A scenario's ``experiment.phases`` lists phases, each with a duration and a rule on one metric and
one estimator. The A/B world is one continuous simulation: users, their state and the recommenders'
learning carry over; at each phase boundary the world's events of that phase are analysed, the rule
decides, and users are re-randomized (salted hash, salt ``<salt>:phase<i>``; phase 0 uses the
experiment's own salt and split, so it is the ordinary A/B assignment) between the new control and
the phase's challengers (``challengers``; left out or ``[]``: every other arm), split in proportion to
the scenario's ``split``. A phase whose challengers name only its control (possible after phase 0,
whose control is ``experiment.control``: naming only it there is an error) serves the control to
everyone and keeps it without a test; its decision records a ``note``.

A phase's estimator sees only the users' outcomes over the phase (``pre_<metric>``: before the
phase), the phase's arms and control, the metrics, the level and the seed: ``resolve`` refuses one
whose tags ask for more (:func:`counterfeed.core.plan.phase_unfit`), or that fails the checks an
``analysis`` entry gets.

Rules, for a challenger's estimate ``D`` of (challenger - control) on the phase's metric, with
``s = +1`` when higher is better (``-1`` otherwise) and the normal approximation
``D ~ N(point, se^2)``, ``se = (upper - lower) / (2 z_{(1+level)/2})``:

- ``interval_excludes_zero``: switch if ``s * D`` has its whole interval above 0;
- ``prob_better``: switch if ``P(s D > 0) >= threshold`` (default 0.95; the estimator's own
  ``prob_better`` when it reports one, e.g. ``bayesian-ab``);
- ``expected_loss``: switch if ``s * point > 0`` and ``E[max(0, -s D)] <= threshold`` (default 0.01,
  in metric units; Stucchio 2015, "Bayesian A/B testing at VWO").

Among challengers that qualify the best ``s * point`` wins; with none the control is kept.

The value of the policy sequence is scored against an oracle: per phase, the mean per-user metric of
the A/B world in that phase (realized) and of each counterfactual world ``all-<arm>`` (what everyone
would have had on that arm, state carried over); ``oracle = sum_p max_a value_p(all-a)`` and
``regret = s (oracle - realized)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from counterfeed.core.contracts import Metric, Population
from counterfeed.core.estimation import AnalysisData, Estimate
from counterfeed.core.experiment import AB_WORLD, Assignment, assign, counterfactual_world
from counterfeed.core.outcomes import world_outcomes
from counterfeed.core.plan import PHASE_ESTIMAND
from counterfeed.core.scenario import PhaseSpec, Scenario
from counterfeed.core._guard import call_plugin
from counterfeed._lazy import lazy_module

stats = lazy_module("scipy.stats")  # imported by a phased experiment's decision only: keeps start-up light

__all__ = ["PhasedAssignment", "phase_windows", "phase_arms", "phase_assignment", "decide",
           "phase_values", "score_phases"]

_DEFAULT_THRESHOLD = {"prob_better": 0.95, "expected_loss": 0.01}


def phase_windows(scenario: Scenario) -> list[tuple[float, float]]:
    """``(start, end)`` in days from the simulation start of every phase."""
    t = scenario.experiment.pre_period
    out = []
    for p in scenario.experiment.phases or []:
        out.append((t, t + p.duration))
        t += p.duration
    return out


def phase_arms(scenario: Scenario, index: int, control: str) -> list[str]:
    """The arms of phase ``index`` given its control: the control first, then the challengers
    (``challengers`` less the control; left out or ``[]``: every other arm). Only the control when the
    challengers name only it (phase 0: a schema error; later: ``validate`` notes it and the phase keeps
    its control without a test)."""
    spec = (scenario.experiment.phases or [])[index]
    chosen = spec.challengers if spec.challengers else scenario.arms
    return [control] + [a for a in scenario.arms if a in chosen and a != control]


def phase_assignment(scenario: Scenario, index: int, control: str) -> np.ndarray:
    """Arm index (in ``scenario.arms``) of every user during phase ``index``."""
    exp = scenario.experiment
    arms = phase_arms(scenario, index, control)
    weights = np.array([float(exp.split[a]) for a in arms])
    if weights.sum() <= 0:
        weights = np.ones(len(arms))
    split = dict(zip(arms, (weights / weights.sum()).tolist()))
    salt = scenario.assignment_salt
    local = assign(scenario.population.users, split, salt if index == 0 else f"{salt}:phase{index}",
                   scenario.seed)
    return np.array([scenario.arms.index(a) for a in arms], dtype=np.int64)[local]


def _se(e: Estimate) -> float:
    z = float(stats.norm.ppf(0.5 + e.level / 2.0))
    return max((e.upper - e.lower) / (2.0 * z), 0.0) if math.isfinite(e.upper - e.lower) else math.inf


def decide(spec: PhaseSpec, estimates: list[Estimate], control: str, higher_is_better: bool = True
           ) -> tuple[str, list[dict[str, Any]]]:
    """Apply ``spec.rule`` to the challengers' estimates; return the chosen arm and a summary per arm."""
    s = 1.0 if higher_is_better else -1.0
    threshold = spec.threshold if spec.threshold is not None else _DEFAULT_THRESHOLD.get(spec.rule)
    rows: list[dict[str, Any]] = []
    best, best_score = control, -math.inf
    for e in estimates:
        se = _se(e)
        d = s * e.point
        if se > 0 and math.isfinite(se):
            p_better = float(stats.norm.cdf(d / se))
            loss = se * float(stats.norm.pdf(d / se)) - d * float(stats.norm.cdf(-d / se))
        else:
            p_better = 1.0 if d > 0 else 0.0 if d < 0 else 0.5
            loss = max(-d, 0.0)
        if e.prob_better is not None:
            p_better = float(e.prob_better) if higher_is_better else 1.0 - float(e.prob_better)
        if spec.rule == "interval_excludes_zero":
            ok = (e.lower > 0) if higher_is_better else (e.upper < 0)
        elif spec.rule == "prob_better":
            ok = p_better >= float(threshold)
        else:
            ok = d > 0 and loss <= float(threshold)
        rows.append({"arm": e.arm, "point": e.point, "lower": e.lower, "upper": e.upper,
                     "prob_better": p_better, "expected_loss": loss, "qualifies": bool(ok)})
        if ok and d > best_score:
            best, best_score = e.arm, d
    return best, rows


class PhasedAssignment(Assignment):
    """The A/B world's assignment in a multi-phase experiment: phase 0 is the ordinary randomized
    split; at each phase's end the phase is analysed, the rule decides, and the next phase's users
    are re-randomized (an :class:`~counterfeed.core.experiment.Assignment` with the phase ends as
    its boundaries). ``decisions`` holds one record per phase."""

    def __init__(self, scenario: Scenario, plan: Any, population: Population):
        super().__init__(scenario.arms)
        self.scenario = scenario
        self.plan = plan
        self.population = population
        self.decisions: list[dict[str, Any]] = []
        self.control = scenario.control
        self.first = phase_assignment(scenario, 0, scenario.control)

    def start(self, world: Any, t: float) -> np.ndarray:
        return self.first.copy()

    def boundaries(self, start: float, horizon: float) -> list[float]:
        return [end for _, end in phase_windows(self.scenario)]

    def at_boundary(self, world: Any, t: float) -> np.ndarray | None:
        sc = self.scenario
        i = len(self.decisions)
        start, end = phase_windows(sc)[i]
        spec = (sc.experiment.phases or [])[i]
        control = self.control
        arms = phase_arms(sc, i, control)
        note = None
        if len(arms) > 1:
            events = world.snapshot(False, world.served)
            outcomes = world_outcomes(events, self.plan.metrics, self.population, start, end)
            estimates = self._estimate(i, spec, outcomes, arms, control)
        else:  # its challengers name only its control (a note of validate's): nothing to test
            estimates = []
            note = (f"no challenger: phase {i}'s challengers name only its control '{control}', which served "
                    "everyone; kept without a test")
        info = self.plan.metrics[spec.metric].info()
        chosen, rows = decide(spec, estimates, control, info.higher_is_better)
        self.decisions.append({
            "phase": i, "start": start, "end": end, "control": control,
            "challengers": arms[1:], "rule": spec.rule, "metric": spec.metric,
            "estimator": spec.estimator, "decision": "switch" if chosen != control else "keep",
            "chosen": chosen, "estimates": rows, **({"note": note} if note else {})})
        self.control = chosen
        if i + 1 < len(sc.experiment.phases or []):
            return phase_assignment(sc, i + 1, chosen)
        return None

    def assignment(self) -> np.ndarray:
        """The phase-0 assignment (the unit of the experiment's outcome table)."""
        return self.first.copy()

    def probabilities(self) -> np.ndarray:
        """Phase 0's split over its arms, for every user."""
        sc = self.scenario
        first = phase_arms(sc, 0, sc.control)
        w = np.array([float(sc.experiment.split[a]) if a in first else 0.0 for a in sc.arms])
        w = w / w.sum() if w.sum() > 0 else np.isin(sc.arms, first) / len(first)
        return np.broadcast_to(w, (self.first.size, len(sc.arms))).copy()

    def record(self) -> dict[str, Any]:
        return {"phases": self.decisions}

    def _estimate(self, i: int, spec: PhaseSpec, outcomes: Any, arms: list[str], control: str
                  ) -> list[Estimate]:
        """The phase estimator's :data:`~counterfeed.core.plan.PHASE_ESTIMAND` estimates of each
        challenger vs ``control`` on the phase's metric. Its data are the users' outcomes over the phase
        (``pre_<metric>``: before the phase) and nothing of :data:`~counterfeed.core.plan.PHASE_INPUTS`'s
        kind: ``resolve`` refuses an estimator whose tags ask for more (:func:`~counterfeed.core.plan.phase_unfit`)."""
        plan = self.plan
        est = plan.create("estimator", spec.estimator, {"metrics": [spec.metric]},
                           f"experiment.phases[{i}].estimator")
        frame = outcomes[outcomes["arm"].isin(arms)].drop(columns="world").reset_index(drop=True)
        infos = {n: m.info() for n, m in plan.metrics.items()}
        data = AnalysisData(outcomes=frame, arms=arms, control=control, metrics=infos,
                            level=self.scenario.level, seed=self.scenario.seed)
        out = call_plugin(est, "estimate", est.estimate, data)
        return [e for e in out if e.metric == spec.metric and e.estimand == PHASE_ESTIMAND
                and e.segment is None and e.control == control]


def phase_values(scenario: Scenario, events: Any, metrics: dict[str, Metric]) -> list[float]:
    """Mean per-user value of each phase's metric over that phase, in one world."""
    out = []
    for spec, (start, end) in zip(scenario.experiment.phases or [], phase_windows(scenario)):
        m = metrics[spec.metric]
        out.append(float(np.mean(call_plugin(m, "compute", m.compute, events, start, end))))
    return out


def score_phases(scenario: Scenario, decisions: list[dict[str, Any]], values: dict[str, list[float]],
                 higher: list[bool]) -> dict[str, Any]:
    """Realized vs oracle cumulative value and the regret (see the module docstring)."""
    realized = oracle = regret = 0.0
    for i, d in enumerate(decisions):
        s = 1.0 if higher[i] else -1.0
        cf = {a: values[counterfactual_world(a)][i] for a in scenario.arms}
        best = max(cf, key=lambda a: s * cf[a])
        d["realized_value"] = values[AB_WORLD][i]
        d["oracle_arm"] = best
        d["oracle_value"] = cf[best]
        d["arm_values"] = cf
        realized += values[AB_WORLD][i]
        oracle += cf[best]
        regret += s * (cf[best] - values[AB_WORLD][i])
    return {"realized": realized, "oracle": oracle, "regret": regret}
