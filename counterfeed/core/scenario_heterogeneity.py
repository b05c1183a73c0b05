"""The scenario sections of heterogeneous effects: observable user features (``population.features``),
the per-user truth (``truth``) and targeting (``targeting``). See docs/heterogeneity.md.

Only pydantic and plain Python here: ``counterfeed validate`` imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from counterfeed.core._strict import StrictSpec as _Strict

if TYPE_CHECKING:  # pragma: no cover
    from counterfeed.core.plan import Plan
    from counterfeed.core.scenario_schema import Scenario

__all__ = ["FeaturesSpec", "TruthSpec", "TargetingSpec", "DEFAULT_REPLICATIONS", "truth_replications",
           "check_heterogeneity", "check_targeting"]

#: noise replications of the per-user conditional effect when a run needs them and none are given
DEFAULT_REPLICATIONS = 8


class FeaturesSpec(_Strict):
    """Observable user features an analyst has (``feature_0 .. feature_<K-1>`` in the covariates).

    ``noisy-preferences``: a keyed random projection of the latent preferences to ``dimensions``
    columns, each standardized over the population, plus ``noise`` times standard normal noise (so
    ``noise: 0.5`` gives each feature a signal-to-noise variance ratio of 4).
    """

    kind: Literal["noisy-preferences"] = "noisy-preferences"
    dimensions: int = Field(4, ge=1, le=256, description="number of feature columns")
    noise: float = Field(0.5, ge=0.0, le=100.0, description="standard deviation of the added noise "
                         "(the projected signal has unit standard deviation)")


class TruthSpec(_Strict):
    """How much per-user truth a run computes."""

    replications: int | None = Field(
        None, ge=0, le=1000,
        description="noise replications of every counterfactual world for the per-user conditional "
                    f"effect (default: {DEFAULT_REPLICATIONS} when a CATE estimator or targeting is "
                    "present, else 0; 0 computes only the realised per-user effect)")


class TargetingSpec(_Strict):
    """A targeting rule learned from the experiment's CATE estimates and deployed as an intervention.

    Each user gets ``arm`` when their predicted effect on ``metric`` passes the rule (``threshold``:
    predicted effect > ``threshold``; ``top-fraction``: among the ``fraction`` of users with the
    largest predicted effect, and above ``threshold``), else the control.
    """

    metric: str = Field(description="per-user metric the rule maximizes (higher is better, or lower "
                        "when the metric says so)")
    arm: str | None = Field(None, description="the arm given to targeted users (default: the first "
                            "arm that is not the control)")
    rule: Literal["threshold", "top-fraction"] = "threshold"
    threshold: float = Field(0.0, allow_inf_nan=False, description="minimum predicted effect of a "
                             "targeted user")
    fraction: float | None = Field(None, gt=0.0, lt=1.0, description="top-fraction: share of users "
                                   "targeted")
    estimators: list[str] | None = Field(None, description="CATE estimators whose predictions make "
                                         "rules (default: every estimate with estimand 'cate')")
    folds: int = Field(5, ge=2, le=20, description="cross-fitting folds of the off-policy estimate's "
                       "outcome models")

    @model_validator(mode="after")
    def _fraction(self) -> "TargetingSpec":
        if self.rule == "top-fraction" and self.fraction is None:
            raise ValueError("rule 'top-fraction' needs a fraction (e.g. fraction: 0.3)")
        if self.rule == "threshold" and self.fraction is not None:
            raise ValueError("fraction applies to rule 'top-fraction' only")
        return self


def truth_replications(scenario: "Scenario", cate_estimators: bool) -> int:
    """The number of noise replications a run computes (see :class:`TruthSpec`)."""
    r = scenario.truth.replications
    if r is not None:
        return int(r)
    return DEFAULT_REPLICATIONS if cate_estimators or scenario.targeting is not None else 0


def check_heterogeneity(scenario: "Scenario") -> None:
    """Cross-field checks of ``targeting`` and ``truth``; raises a located ScenarioError."""
    t = scenario.targeting
    if t is None:
        return
    if t.arm is not None and t.arm not in scenario.arms:
        raise scenario.error(f"arm '{t.arm}' is not one of the arms ({', '.join(scenario.arms)})", "targeting.arm")
    if t.arm is not None and t.arm == scenario.control:
        raise scenario.error(f"arm '{t.arm}' is the control; target a treatment arm", "targeting.arm")
    names = [n for n, _ in scenario.metric_specs]
    if t.metric not in names:
        raise scenario.error(f"metric '{t.metric}' is not one of the scenario's metrics ({', '.join(names)})",
                             "targeting.metric")
    if scenario.truth.replications is not None and scenario.truth.replications < 2:
        raise scenario.error("targeting needs truth.replications >= 2: the oracle rule treats the users "
                             "whose true conditional effect is positive", "truth.replications")


def check_targeting(plan: "Plan") -> None:
    """A rule can be learned (an analysis estimator returns estimand 'cate'; the named estimators are
    among them and analyse ``targeting.metric``: their ``metrics`` option, else every per-user metric) and
    the targeting metric is a per-user, non-ratio metric (needs the resolved plugins)."""
    from counterfeed.core.estimation import CATE

    sc = plan.scenario
    t = sc.targeting
    if t is None:
        return
    info = plan.metrics[t.metric].info() if t.metric in plan.metrics else None
    if info is not None and (info.kind == "ratio" or getattr(info, "level", "user") == "population"):
        raise sc.error(f"metric '{t.metric}' is {'a ratio' if info.kind == 'ratio' else 'population-level'}; "
                       "a targeting rule's value needs a per-user metric (e.g. clicks)", "targeting.metric")
    cate = [e.name for e in plan.estimators if CATE in e.tags.estimands]
    if not cate:
        raise sc.error("no analysis estimator predicts per-user effects (estimand 'cate'), so no rule can "
                       "be learned; add one (e.g. dr-learner, linear-cate) or remove this section",
                       "targeting")
    for i, name in enumerate(t.estimators or []):
        if name not in cate:
            raise sc.error(f"'{name}' is not a CATE estimator of this scenario's analysis "
                           f"(those are: {', '.join(cate)})", f"targeting.estimators[{i}]")
    # the metrics each (selected) CATE estimator analyses: its ``metrics`` option, else every per-user metric
    # (the targeting metric is one, checked above); a rule is learned only from an estimate of targeting.metric
    analysed: dict[str, list[str] | None] = {}
    for e in plan.estimators:
        if CATE in e.tags.estimands and (t.estimators is None or e.name in t.estimators):
            chosen = getattr(e.options, "metrics", None)
            prev = analysed.get(e.name, [])
            analysed[e.name] = None if chosen is None or prev is None else [*prev, *chosen]
    if not any(m is None or t.metric in m for m in analysed.values()):
        groups: dict[str, list[str]] = {}
        for name, m in analysed.items():
            groups.setdefault(", ".join(dict.fromkeys(m or [])), []).append(name)
        which = "; ".join(f"{', '.join(names)} {'analyses' if len(names) == 1 else 'analyse'}: {ms}"
                          for ms, names in groups.items())
        raise sc.error(f"no CATE estimator analyses '{t.metric}' ({which}), so no rule can be learned; target one "
                       f"of those metrics or add '{t.metric}' to an estimator's metrics", "targeting.metric")
    for i, name in enumerate(t.estimators or []):
        m = analysed[name]
        if m is not None and t.metric not in m:
            raise sc.error(f"'{name}' does not analyse '{t.metric}' (its metrics: {', '.join(m)}), so it makes no "
                           f"rule; add '{t.metric}' to its metrics or leave it out", f"targeting.estimators[{i}]")


def target_arm(scenario: "Scenario") -> str:
    """``targeting.arm``, else the first arm that is not the control."""
    t = scenario.targeting
    if t is not None and t.arm is not None:
        return t.arm
    return next(a for a in scenario.arms if a != scenario.control)
