"""Scenario schema of non-randomized designs: ``experiment.assignment`` and the top-level ``graph``.

``experiment.assignment`` picks the assignment mechanism (:mod:`counterfeed.core.mechanisms`)::

    assignment: {mechanism: randomized}                    # the split (default)
    assignment:                                            # self-selection / targeting
      mechanism: selection
      intercept: -1.0
      coefficients: {pre_sessions: 0.8, preference_strength: 0.0}   # per standard deviation
      segments: {heavy: 0.5}                               # added to the logit
    assignment:                                            # randomized nudge, then opt-in
      mechanism: encouragement
      nudge_share: 0.5
      nudge_effect: 2.0
      intercept: -2.0
      coefficients: {preference_strength: 1.0}
    assignment:                                            # a rollout by cohorts
      mechanism: staggered
      period: 1d
      cohorts: [{at: 2d, share: 0.3}, {at: 5d, share: 0.3}]   # the rest never adopts

``graph`` is the analyst's causal graph (:mod:`counterfeed.core.causal_graph`), inline or in a YAML
or JSON file of the same form (``graph: {file: graphs/hidden.yaml}``)::

    graph:
      treatment: treatment
      outcome: clicks
      edges: ["pre_sessions -> treatment", "pre_sessions -> clicks", "treatment -> clicks"]
      unobserved: [taste]

This module holds only the pydantic models (no NumPy): ``counterfeed validate`` imports it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Union

from pydantic import BeforeValidator, Discriminator, Field, Tag

from counterfeed.core._strict import StrictSpec as _Strict

__all__ = ["check_observational", "check_design_for", "check_arm_sizes", "everyone_adopts", "AssignmentSpec", "RandomizedSpec", "SelectionSpec", "EncouragementSpec", "StaggeredSpec",
           "CohortSpec", "GraphSpec", "OBSERVED_COVARIATES", "LATENT_TRAITS", "SELECTION_INPUTS"]

#: covariates a selection may depend on (``AnalysisData.covariates``' columns; ``feature_<k>`` too
#: when the scenario declares ``population.features``)
OBSERVED_COVARIATES = ("pre_sessions", "pre_impressions", "pre_clicks", "pre_dwell", "pre_ctr", "tenure")
#: traits the analyst never sees: the norm of the user's latent preference vector (how strongly
#: the user's taste separates items; it drives clicks) and a keyed N(0, 1) "novelty seeking" trait
#: that the built-in user model does not read
LATENT_TRAITS = ("preference_strength", "novelty")
SELECTION_INPUTS = OBSERVED_COVARIATES + LATENT_TRAITS


def _days(value: Any) -> float:
    from counterfeed.core.scenario_schema import parse_duration  # that module imports this one

    return parse_duration(value)


_Days = Annotated[float, BeforeValidator(_days)]


class RandomizedSpec(_Strict):
    """The randomized split (``experiment.split``), today's default."""

    mechanism: Literal["randomized"]


class _Logit(_Strict):
    """``logit P = intercept + sum_k coefficients[k] * z_k + segments[segment]``, ``z_k`` the
    standardized (mean 0, sd 1 over the users) value of covariate or trait ``k``."""

    treatment: str | None = Field(None, description="the treatment arm (default: the arm after the control)")
    intercept: float = Field(0.0, ge=-50, le=50)
    coefficients: dict[str, Annotated[float, Field(ge=-50, le=50)]] = Field(default_factory=dict)
    segments: dict[str, Annotated[float, Field(ge=-50, le=50)]] = Field(default_factory=dict)


class SelectionSpec(_Logit):
    """Each user takes the treatment with a logistic probability of covariates and latent traits."""

    mechanism: Literal["selection"]


class EncouragementSpec(_Logit):
    """A randomized nudge (share ``nudge_share``) adds ``nudge_effect`` to the opt-in logit."""

    mechanism: Literal["encouragement"]
    nudge_share: float = Field(0.5, gt=0, lt=1, description="share of users nudged (randomized)")
    nudge_effect: float = Field(2.0, ge=-50, le=50, description="added to the opt-in logit when nudged")


class CohortSpec(_Strict):
    """One cohort of a rollout: adopts ``at`` after the experiment start; a ``share`` of the users
    (keyed draw) or every user of the listed ``segments``."""

    at: _Days = Field(description="adoption time after the experiment start")
    share: float | None = Field(None, gt=0, le=1)
    segments: list[str] | None = None


class StaggeredSpec(_Strict):
    """Cohorts switch to the treatment at declared dates; ``period`` is the panel's period length."""

    mechanism: Literal["staggered"]
    treatment: str | None = Field(None, description="the treatment arm (default: the arm after the control)")
    period: _Days = Field(1.0, description="length of a panel period (adoption dates fall on period starts)")
    cohorts: list[CohortSpec] = Field(min_length=1)


def _mechanism(value: Any) -> str | None:
    """The union tag of an assignment spec; ``mechanism=`` marks it as no field name in error paths."""
    m = value.get("mechanism") if isinstance(value, dict) else getattr(value, "mechanism", None)
    return f"mechanism={m}" if isinstance(m, str) else None


AssignmentSpec = Annotated[Union[Annotated[RandomizedSpec, Tag("mechanism=randomized")],
                                 Annotated[SelectionSpec, Tag("mechanism=selection")],
                                 Annotated[EncouragementSpec, Tag("mechanism=encouragement")],
                                 Annotated[StaggeredSpec, Tag("mechanism=staggered")]],
                           Discriminator(_mechanism, custom_error_type="mechanism",
                                         custom_error_message="mechanism must be one of randomized, selection, "
                                         "encouragement, staggered")]


class GraphSpec(_Strict):
    """A causal graph: ``edges`` as ``"a -> b"`` strings, the ``treatment`` and ``outcome`` nodes,
    ``unobserved`` nodes (not logged), or ``file`` naming a YAML/JSON file holding those keys."""

    file: str | None = None
    treatment: str = "treatment"
    outcome: str | None = None
    nodes: list[str] = Field(default_factory=list, description="nodes besides those in edges")
    edges: list[str] = Field(default_factory=list)
    unobserved: list[str] = Field(default_factory=list)


def check_observational(sc: Any) -> None:
    """Cross-field checks of ``experiment.assignment`` and ``graph`` on a validated scenario.

    Raises
    ------
    ScenarioError
        Located at the offending field (file, line, field path).
    """
    spec = sc.experiment.assignment
    if spec is not None and spec.mechanism != "randomized":
        _check_mechanism(sc, spec)
    if sc.graph is not None:
        from counterfeed.core.causal_graph import scenario_graph

        scenario_graph(sc)


#: users each arm needs for an interval (two independent units, the standards' minimum)
MIN_PER_ARM = 2
#: a logit beyond this bound for every user makes the assignment deterministic in practice
#: (a probability below 1/(1 + e^25) ~ 1.4e-11 per user)
SURE_LOGIT = 25.0


def _check_mechanism(sc: Any, spec: Any) -> None:
    where = "experiment.assignment"
    if len(sc.arms) != 2:
        raise sc.error(f"mechanism '{spec.mechanism}' needs exactly two arms (a control and a treatment), "
                       f"got {len(sc.arms)}", "experiment.arms")
    if sc.written("experiment.split"):
        raise sc.error(f"experiment.split has no effect under mechanism '{spec.mechanism}' (the mechanism "
                       "decides who is treated); remove it", "experiment.split")
    if sc.population.users < 2 * MIN_PER_ARM:
        raise sc.error(f"mechanism '{spec.mechanism}' needs at least {2 * MIN_PER_ARM} users (at least "
                       f"{MIN_PER_ARM} in each arm for any interval), got {sc.population.users}",
                       "population.users")
    if spec.treatment is not None and spec.treatment not in sc.arms:
        raise sc.error(f"unknown arm '{spec.treatment}' (arms: {', '.join(sc.arms)})", f"{where}.treatment")
    if spec.treatment == sc.control:
        raise sc.error(f"the treatment must differ from the control '{sc.control}'", f"{where}.treatment")
    segments = list(sc.population.segments)
    if isinstance(spec, StaggeredSpec):
        _check_cohorts(sc, spec, segments)
        return
    features = sc.population.features
    observed = list(OBSERVED_COVARIATES) + [f"feature_{k}" for k in range(features.dimensions if features else 0)]
    for name in spec.coefficients:
        if name not in observed and name not in LATENT_TRAITS:
            raise sc.error(f"unknown covariate or trait '{name}' (observed: {', '.join(observed)}; "
                           f"latent: {', '.join(LATENT_TRAITS)})", f"{where}.coefficients.{name}")
    for name in spec.segments:
        if name not in segments:
            raise sc.error(f"unknown segment '{name}' (segments: {', '.join(segments)})",
                           f"{where}.segments.{name}")
    if any(k.startswith("pre_") for k in spec.coefficients) and sc.experiment.pre_period <= 0:
        raise sc.error("pre-period covariates need a pre-period (experiment.pre_period > 0)",
                       f"{where}.coefficients")
    _check_logit_range(sc, spec)


def _check_logit_range(sc: Any, spec: Any) -> None:
    """Reject a logit that is beyond +-SURE_LOGIT for every possible user: everyone (or no one) is
    treated, so one arm is empty. A standardized input of n users lies within +-sqrt(n - 1)."""
    spread = sum(abs(v) for v in spec.coefficients.values()) * math.sqrt(max(sc.population.users - 1, 1))
    shifts = [0.0, *spec.segments.values()]
    if isinstance(spec, EncouragementSpec):
        shifts = [s + n for s in shifts for n in (0.0, spec.nudge_effect)]
    low, high = spec.intercept + min(shifts) - spread, spec.intercept + max(shifts) + spread
    for bound, who in ((low, "every"), (-high, "no")):
        if bound > SURE_LOGIT:
            raise sc.error(f"{who} user would be treated: the opt-in logit lies between {low:.3g} and {high:.3g} "
                           f"for every user (|logit| > {SURE_LOGIT:g} is a sure outcome), so one arm is empty "
                           "and no effect can be estimated; use an intercept nearer 0",
                           "experiment.assignment.intercept")


def check_arm_sizes(sc: Any, arms: Any) -> None:
    """After a non-randomized assignment (``arms``: each user's arm), each arm needs MIN_PER_ARM users
    (except the control of a rollout that takes everyone: the not-yet-treated are its comparison).
    Raises a ScenarioError located at ``experiment.assignment``: only the drawn data can tell."""
    spec = sc.experiment.assignment
    counts = {a: int((arms == a).sum()) for a in sc.arms}
    skip = {sc.control} if isinstance(spec, StaggeredSpec) and everyone_adopts(sc) else set()
    for arm, n in counts.items():
        if arm not in skip and n < MIN_PER_ARM:
            got = ", ".join(f"{a}: {k}" for a, k in counts.items())
            raise sc.error(f"the {spec.mechanism} assignment put {n} user(s) in arm '{arm}' ({got} of "
                           f"{sum(counts.values())} users); each arm needs at least {MIN_PER_ARM} for an estimate "
                           "with an interval: move the assignment's intercept or coefficients toward 0, or "
                           "raise population.users", "experiment.assignment")


def everyone_adopts(sc: Any) -> bool:
    """Whether a staggered rollout's cohorts take every user (no never-treated users are left)."""
    cohorts = list(sc.experiment.assignment.cohorts)
    if all(c.share is not None for c in cohorts):
        return sum(c.share for c in cohorts) >= 1 - 1e-9
    return {s for c in cohorts for s in c.segments or []} >= set(sc.population.segments)


def check_design_for(sc: Any, est: Any) -> None:
    """Whether estimator ``est`` can analyse ``sc``'s non-randomized design (after its own
    ``check_scenario``): a rollout that takes every user leaves the control arm empty (only a panel
    estimator comparing with the not-yet-treated can go on), and a panel estimator needs a period
    before some cohort adopts. Raises a located ScenarioError."""
    spec = sc.experiment.assignment
    if not isinstance(spec, StaggeredSpec):
        return
    where = "experiment.assignment.cohorts"
    panel = bool(getattr(est.tags, "requires_panel", False))
    # a panel estimator without the choice (twfe) compares with whoever is untreated in each period
    not_yet = getattr(est.options, "control_group", "not_yet_treated") == "not_yet_treated"
    if everyone_adopts(sc) and not (panel and not_yet):
        raise sc.error(f"every user adopts, so the control arm '{sc.control}' is empty and estimator "
                       f"'{est.name}' has no never-treated users to compare with; leave a share of the users "
                       "out of the cohorts (shares summing to less than 1)", where)
    if panel and sc.experiment.pre_period <= 0 and all(c.at <= 0 for c in spec.cohorts):
        raise sc.error(f"estimator '{est.name}': every cohort adopts at the start and there is no pre-period, "
                       "so no adopter has an untreated period to difference against; add "
                       "experiment.pre_period or a later cohort", f"{where}[0].at")


def _check_cohorts(sc: Any, spec: StaggeredSpec, segments: list[str]) -> None:
    where = "experiment.assignment"
    exp = sc.experiment
    if spec.period < 1 or abs(spec.period - round(spec.period)) > 1e-9:
        raise sc.error(f"must be a whole number of days (event times are in days), got {spec.period:g}",
                       f"{where}.period")
    for key, value in (("experiment.pre_period", exp.pre_period), ("experiment.duration", exp.duration)):
        if abs(value / spec.period - round(value / spec.period)) > 1e-9:
            raise sc.error(f"must be a whole number of panel periods ({spec.period:g} days)", key)
    by_share = [c.share is not None for c in spec.cohorts]
    seen: set[str] = set()
    for i, c in enumerate(spec.cohorts):
        field = f"{where}.cohorts[{i}]"
        if (c.share is None) == (c.segments is None):
            raise sc.error("give either a share of the users or a list of segments", field)
        if by_share[i] != by_share[0]:
            raise sc.error("cohorts are either all by share or all by segments", field)
        if not 0 <= c.at < exp.duration:
            raise sc.error(f"must fall inside the experiment (0 to {exp.duration:g} days)", f"{field}.at")
        if abs(c.at / spec.period - round(c.at / spec.period)) > 1e-9:
            raise sc.error(f"must be a whole number of panel periods ({spec.period:g} days)", f"{field}.at")
        for j, s in enumerate(c.segments or []):
            if s not in segments:
                raise sc.error(f"unknown segment '{s}' (segments: {', '.join(segments)})", f"{field}.segments[{j}]")
            if s in seen:
                raise sc.error(f"segment '{s}' is in two cohorts", f"{field}.segments[{j}]")
            seen.add(s)
    if by_share[0] and sum(c.share or 0.0 for c in spec.cohorts) > 1 + 1e-9:
        raise sc.error("the cohorts' shares must sum to at most 1", f"{where}.cohorts")
