"""Non-randomized assignment mechanisms: self-selection, randomized encouragement, staggered rollout.

Each is an :class:`~counterfeed.core.experiment.Assignment` handed to the A/B world (the
counterfactual worlds still put everyone on one arm), declared in ``experiment.assignment``
(:mod:`counterfeed.core.observational_spec`). All draws are keyed by ``(seed, salt, user)``.

**Selection** (``mechanism: selection``). At the experiment start ``t0`` each user's covariates are
computed from the world's own pre-period log with the analyst's definitions
(:func:`counterfeed.core.covariates.user_covariates`: pre-period sessions, impressions, clicks, dwell,
click rate, tenure, observable features), beside two latent traits the analyst never sees
(:func:`latent_traits`). With ``z_k`` the standardized value of input ``k`` (mean 0, sd 1 over the
users; 0 when constant)::

    eta_i = intercept + sum_k coefficients[k] z_ik + segments[segment_i]
    p_i = 1 / (1 + exp(-eta_i)),   D_i = 1{U_i < p_i},   U_i keyed uniform ("assignment:selection:<salt>")

and user ``i`` takes the treatment arm when ``D_i = 1``. ``p_i`` is recorded as the probability of
the treatment arm (the true propensity score).

**Encouragement** (``mechanism: encouragement``). A randomized nudge ``Z_i = 1{V_i < nudge_share}``
(``V_i`` keyed, "assignment:nudge:<salt>") shifts the opt-in logit by ``nudge_effect``; both
potential opt-ins come from the same uniform ``U_i`` ("assignment:opt-in:<salt>")::

    D_i(z) = 1{U_i < sigmoid(eta_i + nudge_effect z)},   D_i = D_i(Z_i)

so the simulator knows every user's compliance type (Angrist, Imbens & Rubin 1996): complier
(``D(1)=1, D(0)=0``), always-taker (1, 1), never-taker (0, 0), defier (0, 1; only with a negative
``nudge_effect``). The arm is the one taken, ``Z`` is the instrument, and the recorded
probability of the treatment arm is ``sigmoid(eta_i + nudge_effect Z_i)``.

**Staggered rollout** (``mechanism: staggered``). Users fall into cohorts (a keyed draw against the
cohorts' cumulative shares, or by segment); cohort ``c`` switches to the treatment arm at
``t0 + at_c`` (an :meth:`at_boundary` of the world) and keeps it; users in no cohort never adopt.
The adoption day of every user is recorded on the simulation's clock (``t0 + at_c``; ``inf``:
never), with ``t0`` as ``start``; the manifest's summary counts them on the experiment's clock
(``at_c``, the scenario's). The recorded probability of the
treatment arm is the probability of ever adopting (the share of users in any cohort, or 0/1 by
segment).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from counterfeed.core.contracts import Population
from counterfeed.core.experiment import COMPLIANCE_TYPES, Assignment
from counterfeed.core.observational_spec import EncouragementSpec, SelectionSpec, StaggeredSpec
from counterfeed.core.randomness import Keys

__all__ = ["cohorts_of", "check_rollout_draw", "SelectionAssignment", "EncouragementAssignment", "StaggeredAssignment", "latent_traits", "selection_index", "treatment_arm", "mechanism_assignment", "sigmoid"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function ``1 / (1 + exp(-x))`` (stable for large ``|x|``)."""
    x = np.asarray(x, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -x))


def treatment_arm(arms: list[str], control: str, spec: Any) -> int:
    """Index of the treatment arm: ``spec.treatment``, else the first arm that is not the control."""
    name = spec.treatment or next(a for a in arms if a != control)
    return arms.index(name)


def latent_traits(population: Population, keys: Keys) -> dict[str, np.ndarray]:
    """(n,) traits the analyst never sees: ``preference_strength`` (the norm of the user's latent
    preference vector) and ``novelty`` (keyed N(0, 1), stream ``population:novelty``)."""
    return {"preference_strength": np.linalg.norm(population.preferences, axis=1),
            "novelty": keys.stream("population:novelty").normal(population.ids)}


def _standardized(x: np.ndarray) -> np.ndarray:
    sd = float(np.std(x))
    return (x - float(np.mean(x))) / sd if sd > 0 else np.zeros_like(x, dtype=np.float64)


def selection_index(spec: SelectionSpec | EncouragementSpec, inputs: dict[str, np.ndarray],
                    population: Population) -> np.ndarray:
    """(n,) the logit ``eta`` of the module docstring from the users' inputs (raw, standardized here)."""
    eta = np.full(population.n, float(spec.intercept))
    for name, coef in spec.coefficients.items():
        eta += float(coef) * _standardized(np.asarray(inputs[name], dtype=np.float64))
    if spec.segments:
        shift = np.array([float(spec.segments.get(s, 0.0)) for s in population.segment_names])
        eta += shift[population.segment]
    return eta


class _OptIn(Assignment):
    """Shared part of selection and encouragement: the inputs at the start and the recorded arrays."""

    def __init__(self, arms: list[str], control: int, treatment: int, spec: Any, keys: Keys, salt: str,
                 population: Population, features: Any = None):
        super().__init__(arms)
        self.control, self.treatment = int(control), int(treatment)
        self.spec, self.keys, self.salt, self.population = spec, keys, salt, population
        self.features = features

    def _inputs(self, world: Any, t: float) -> dict[str, np.ndarray]:
        """Latent traits, and the analyst's covariates from the pre-period log when the index uses them."""
        inputs: dict[str, np.ndarray] = dict(latent_traits(self.population, self.keys))
        if any(k not in inputs for k in self.spec.coefficients):
            from counterfeed.core.covariates import user_covariates

            table = user_covariates(world.snapshot(), self.population, t, self.population.ids,
                                    self.features, self.keys if self.features is not None else None)
            inputs.update({k: table[k].to_numpy(np.float64) for k in self.spec.coefficients if k in table})
        return inputs

    def _uniform(self, what: str) -> np.ndarray:
        return self.keys.stream(f"assignment:{what}:{self.salt}").uniform(self.population.ids)

    def _arms_of(self, took: np.ndarray) -> np.ndarray:
        return np.where(took, self.treatment, self.control).astype(np.int64)

    def assignment(self) -> np.ndarray:
        return self.arm_.copy()

    def probabilities(self) -> np.ndarray:
        out = np.zeros((self.population.n, len(self.arms)))
        out[:, self.treatment] = self.p_
        out[:, self.control] = 1.0 - self.p_
        return out


class SelectionAssignment(_OptIn):
    """Self-selection (or targeting) on covariates and latent traits (see the module docstring)."""

    def start(self, world: Any, t: float) -> np.ndarray:
        self.p_ = sigmoid(selection_index(self.spec, self._inputs(world, t), self.population))
        self.arm_ = self._arms_of(self._uniform("selection") < self.p_)
        return self.arm_.copy()

    def record(self) -> dict[str, Any]:
        return {"mechanism": {"mechanism": "selection", "probability": self.p_.copy()}}


class EncouragementAssignment(_OptIn):
    """A randomized nudge, then opt-in on covariates and latent traits (see the module docstring)."""

    def start(self, world: Any, t: float) -> np.ndarray:
        eta = selection_index(self.spec, self._inputs(world, t), self.population)
        self.p0_ = sigmoid(eta)
        self.p1_ = sigmoid(eta + float(self.spec.nudge_effect))
        self.instrument_ = (self._uniform("nudge") < float(self.spec.nudge_share)).astype(np.int64)
        u = self._uniform("opt-in")
        self.d0_, self.d1_ = u < self.p0_, u < self.p1_
        took = np.where(self.instrument_ == 1, self.d1_, self.d0_)
        self.p_ = np.where(self.instrument_ == 1, self.p1_, self.p0_)
        self.arm_ = self._arms_of(took)
        return self.arm_.copy()

    def compliance(self) -> np.ndarray:
        """(n,) compliance type from both potential opt-ins ``D(1)``, ``D(0)``."""
        kind = np.full(self.population.n, COMPLIANCE_TYPES[2], dtype=object)  # never-taker
        kind[self.d1_ & ~self.d0_] = COMPLIANCE_TYPES[0]
        kind[self.d1_ & self.d0_] = COMPLIANCE_TYPES[1]
        kind[~self.d1_ & self.d0_] = COMPLIANCE_TYPES[3]
        return kind

    def record(self) -> dict[str, Any]:
        return {"mechanism": {"mechanism": "encouragement", "probability": self.p_.copy(),
                              "instrument": self.instrument_.copy(), "opt_in_nudged": self.d1_.copy(),
                              "opt_in_not_nudged": self.d0_.copy(), "compliance": self.compliance()}}


class StaggeredAssignment(Assignment):
    """Cohorts switch to the treatment arm at declared dates (see the module docstring)."""

    def __init__(self, arms: list[str], control: int, treatment: int, spec: StaggeredSpec, keys: Keys,
                 salt: str, population: Population, start: float):
        super().__init__(arms)
        self.control, self.treatment, self.spec = int(control), int(treatment), spec
        self.start_ = float(start)  # the experiment start (simulation day): the cohorts' ``at`` counts from it
        n = population.n
        self.cohort_ = cohorts_of(spec, keys, salt, population.ids, population.segment, population.segment_names)
        if spec.cohorts[0].share is not None:
            self.p_ = np.full(n, min(float(sum(float(c.share or 0.0) for c in spec.cohorts)), 1.0))
        else:
            self.p_ = (self.cohort_ < len(spec.cohorts)).astype(np.float64)
        at = np.array([start + float(c.at) for c in spec.cohorts] + [np.inf])
        self.adoption_ = at[self.cohort_]

    def _arms_at(self, t: float) -> np.ndarray:
        return np.where(self.adoption_ <= t + 1e-9, self.treatment, self.control).astype(np.int64)

    def start(self, world: Any, t: float) -> np.ndarray:
        return self._arms_at(t)

    def boundaries(self, start: float, horizon: float) -> list[float]:
        return sorted({float(a) for a in np.unique(self.adoption_) if start < a < horizon})

    def at_boundary(self, world: Any, t: float) -> np.ndarray:
        return self._arms_at(t)

    def assignment(self) -> np.ndarray:
        """The treatment arm for every user who adopts during the experiment, else the control."""
        return np.where(np.isfinite(self.adoption_), self.treatment, self.control).astype(np.int64)

    def probabilities(self) -> np.ndarray:
        out = np.zeros((self.p_.size, len(self.arms)))
        out[:, self.treatment] = self.p_
        out[:, self.control] = 1.0 - self.p_
        return out

    def record(self) -> dict[str, Any]:
        return {"mechanism": {"mechanism": "staggered", "probability": self.p_.copy(),
                              "adoption": self.adoption_.copy(), "cohort": self.cohort_.copy(),
                              "period": float(self.spec.period), "start": self.start_}}


def cohorts_of(spec: StaggeredSpec, keys: Keys, salt: str, ids: np.ndarray, segment: np.ndarray | None,
               segment_names: list[str]) -> np.ndarray:
    """Each user's cohort (``len(spec.cohorts)``: never treated), shape ``ids.shape``, int64: a keyed
    uniform against the cohorts' cumulative shares, or the cohort that lists the user's ``segment``
    (indices into ``segment_names``)."""
    if spec.cohorts[0].share is not None:
        shares = np.cumsum([float(c.share or 0.0) for c in spec.cohorts])
        u = keys.stream(f"assignment:cohort:{salt}").uniform(ids)
        return np.searchsorted(shares, u, side="right").astype(np.int64)
    of_segment = np.full(len(segment_names), len(spec.cohorts), dtype=np.int64)
    for c, cohort in enumerate(spec.cohorts):
        for s in cohort.segments or []:
            of_segment[segment_names.index(s)] = c
    return of_segment[segment]


def check_rollout_draw(sc: Any, seeds: Sequence[int] | None = None) -> None:
    """Before any world runs: a staggered rollout that leaves some users out of its cohorts must draw
    at least ``MIN_PER_ARM`` never-treated users, or its estimates would fail after every world was
    simulated. The draw is the run's own (keyed by ``sc.seed``, or by each of ``seeds``: the
    replications of ``calibrate`` and ``sweep``), so ``validate`` gives the verdict ``run`` would, and
    a calibration is refused rather than scored on only the draws that happened to leave enough.
    Raises a ScenarioError located at ``experiment.assignment.cohorts``."""
    from counterfeed.core.observational_spec import MIN_PER_ARM, everyone_adopts

    spec = sc.experiment.assignment
    if not isinstance(spec, StaggeredSpec) or everyone_adopts(sc):
        # with nobody left out, the panel estimators compare with the not-yet-treated (check_design_for);
        # with 1 never-treated user they would compare the last cohort with that one user and give no interval
        return
    users = int(sc.population.users)
    pop = sc.population
    if spec.cohorts[0].share is not None:
        share = max(1.0 - sum(float(c.share or 0.0) for c in spec.cohorts), 0.0)
        expected = f"the cohorts' shares leave {share:.3g} of the users out, {share * users:.3g} expected"
        fix = "leave a larger share out of the cohorts (shares summing to less), or raise population.users"
        everyone = "shares summing to 1"
    else:
        listed = {s for c in spec.cohorts for s in c.segments or []}
        total = sum(float(v.share) for v in pop.segments.values())
        share = None if pop.twin else sum(float(v.share) for k, v in pop.segments.items() if k not in listed) / total
        expected = "the users of segments in no cohort are the never treated"
        fix = "raise population.users, or the share of a segment in no cohort"
        everyone = "every segment in a cohort"
    one_run = seeds is None
    seeds = [int(sc.seed)] if seeds is None else [int(s) for s in seeds]
    if share is not None:  # each user is never treated independently with probability ``share``
        from scipy.stats import binom

        if float(binom.cdf(MIN_PER_ARM - 1, users, share)) * len(seeds) < 1e-12:
            return  # no draw can plausibly fall short: skip drawing (a million users, 1000 seeds: 64 s)

    from counterfeed.core.population import build_population, draw_segments

    def never(seed: int) -> int:
        keys, ids = Keys(int(seed)), np.arange(users, dtype=np.int64)
        if spec.cohorts[0].share is not None or pop.twin is None:  # the segments alone, cheaply
            segment = None if spec.cohorts[0].share is not None else draw_segments(pop, keys, ids)
            cohort = cohorts_of(spec, keys, sc.assignment_salt, ids, segment, list(pop.segments))
        else:
            built = build_population(pop, keys)
            cohort = cohorts_of(spec, keys, sc.assignment_salt, built.ids, built.segment, built.segment_names)
        return int((cohort == len(spec.cohorts)).sum())

    short = next(((i, s, k) for i, s in enumerate(seeds) for k in [never(s)] if k < MIN_PER_ARM), None)
    if short is None:
        return
    need = (f"the control arm '{sc.control}' needs at least {MIN_PER_ARM} for an estimate with an interval: {fix}; "
            f"or let every user adopt ({everyone}), and the panel estimators compare with the not-yet-treated")
    i, seed, k = short
    if one_run:
        raise sc.error(f"this seed's draw leaves {k} of {users} users never treated ({expected}); " + need,
                       "experiment.assignment.cohorts")
    raise sc.error(f"replication {i + 1} of {len(seeds)} (seed {seed}) draws {k} of {users} users never treated, "
                   f"fewer than {MIN_PER_ARM} ({expected}), and scoring only the replications whose draws leave "
                   f"enough would condition the coverage on the draw; {need}", "experiment.assignment.cohorts")


def mechanism_assignment(sc: Any, keys: Keys, population: Population) -> Assignment | None:
    """The A/B world's assignment for a non-randomized ``experiment.assignment``, else None."""
    spec = sc.experiment.assignment
    if spec is None or spec.mechanism == "randomized":
        return None
    control, treat = sc.arms.index(sc.control), treatment_arm(sc.arms, sc.control, spec)
    if isinstance(spec, StaggeredSpec):
        return StaggeredAssignment(sc.arms, control, treat, spec, keys, sc.assignment_salt, population,
                                   float(sc.experiment.pre_period))
    cls = EncouragementAssignment if isinstance(spec, EncouragementSpec) else SelectionAssignment
    return cls(sc.arms, control, treat, spec, keys, sc.assignment_salt, population, sc.population.features)


def mechanism_summary(record: dict[str, Any]) -> dict[str, Any]:
    """What the manifest keeps of a mechanism's record (counts and shares; JSON-able). A rollout's
    ``adoption`` counts users by adoption day since the experiment start (the scenario's
    ``cohorts[].at``), which ``adoption_day_origin`` names."""
    p = np.asarray(record["probability"], dtype=np.float64)
    out: dict[str, Any] = {"mechanism": record["mechanism"], "mean_probability": float(p.mean()),
                           "min_probability": float(p.min()), "max_probability": float(p.max())}
    if "compliance" in record:
        kinds, counts = np.unique(np.asarray(record["compliance"], dtype=str), return_counts=True)
        out["compliance"] = {str(k): int(c) for k, c in zip(kinds, counts)}
        out["nudged"] = int(np.sum(record["instrument"]))
    if "adoption" in record:  # days of the experiment, the scenario's cohorts[].at (tester16 L5)
        start = float(record["start"])
        days, counts = np.unique(np.asarray(record["adoption"], dtype=np.float64), return_counts=True)
        out["adoption"] = {("never" if not np.isfinite(d) else f"{round(d - start, 9):g}"): int(c)
                           for d, c in zip(days, counts)}
        out["adoption_day_origin"] = "experiment start"
        out["experiment_start_simulation_day"] = start  # assignment.parquet's adoption: simulation days
        out["period"] = record["period"]
    return out


def write_assignment(directory: Any, record: dict[str, Any]) -> None:
    """``assignment.parquet`` in ``directory``: one row per user with the recorded ``probability`` of
    the treatment arm and whatever else the mechanism knows (``instrument``, both potential opt-ins,
    ``compliance``; ``adoption`` day (simulation clock), ``adoption_experiment_day`` (the same day
    counted from the experiment start, the scenario's ``cohorts[].at``) and ``cohort``)."""
    import pandas as pd
    from pathlib import Path

    p = np.asarray(record["probability"], dtype=np.float64)
    cols: dict[str, Any] = {"user": np.arange(p.size, dtype=np.int64), "probability": p}
    for key in ("instrument", "opt_in_nudged", "opt_in_not_nudged", "compliance", "adoption", "cohort"):
        if key in record:
            value = np.asarray(record[key])
            cols[key] = value.astype(str) if value.dtype == object else value
    if "adoption" in record:  # ``adoption`` is on the event log's clock; this one on the scenario's
        cols["adoption_experiment_day"] = np.asarray(record["adoption"], dtype=np.float64) - float(record["start"])
    pd.DataFrame(cols).to_parquet(Path(directory) / "assignment.parquet", index=False)
