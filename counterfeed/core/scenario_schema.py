"""The scenario schema: pydantic models with ``extra="forbid"`` at every level.

Plugin specs (catalog, user model, arms, metrics, analysis) name a plugin and carry its options
inline; the plugin's own ``Options`` model validates them when the scenario is resolved, so a typo in
an option is an error with the same file/line/field precision. Loading files is
:mod:`counterfeed.core.scenario`; turning validation errors into messages is
:mod:`counterfeed.core.scenario_messages`.
"""

from __future__ import annotations

import copy
import math
import re
from typing import Annotated, Any, Literal

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr,
                      ValidationError, ValidationInfo, field_validator, model_validator)
from pydantic_core import InitErrorDetails, PydanticCustomError

from counterfeed.core._strict import StrictSpec as _Strict
from counterfeed.core.scenario_heterogeneity import FeaturesSpec, TargetingSpec, TruthSpec, check_heterogeneity
from counterfeed.core.observational_spec import AssignmentSpec, GraphSpec, check_observational
from counterfeed.core.shard_spec import ExecutionSpec, check_execution
from counterfeed.core.scenario_messages import SET_ORIGIN, from_set, kind_of, line_of, validation_message
from counterfeed.core.scenario_overrides import Switch, apply_overrides, explain_switches
from counterfeed.core.scenario_raw import with_plugin_problems
from counterfeed.core.durations import format_duration, parse_duration
from counterfeed.errors import ScenarioError

__all__ = ["Scenario", "PluginSpec", "ArmSpec", "MetricSpec", "AnalysisSpec", "SegmentSpec",
           "PopulationSpec", "PhaseSpec", "AllocationSpec", "ExperimentSpec", "OutputSpec",
           "DEFAULT_METRICS", "Duration", "PositiveDuration", "parse_duration", "format_duration"]



class _InlineOptions(BaseModel):
    """A plugin reference whose other keys are the plugin's options (validated by its ``Options``)."""

    model_config = ConfigDict(extra="allow")

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class PluginSpec(_InlineOptions):
    """A catalog or user model: ``plugin`` plus its options inline."""

    plugin: str


class ArmSpec(_InlineOptions):
    """An arm: its recommender plugin and that recommender's options inline."""

    recommender: str


class MetricSpec(_InlineOptions):
    """A metric with options, e.g. ``{metric: retained, window: 3d}``."""

    metric: str


class AnalysisSpec(_InlineOptions):
    """One analysis: an estimator plugin and its options inline (``metrics``, ``level``, ...)."""

    estimator: str


class SegmentSpec(_Strict):
    share: float = Field(gt=0, le=1, description="fraction of users in this segment")
    activity: float = Field(1.0, gt=0, le=100, description="multiplier of the visit rate")
    heterogeneity: float = Field(1.0, ge=0, le=100, description="multiplier of the preference spread")


class PopulationSpec(_Strict):
    users: int = Field(gt=1, le=50_000_000, description="number of simulated users")
    dimensions: int = Field(16, ge=1, le=1024, description="latent dimensions of preferences and items")
    heterogeneity: float = Field(1.0, ge=0, le=100, description="spread of user preference vectors")
    segments: dict[str, SegmentSpec] = Field(default_factory=lambda: {"all": SegmentSpec(share=1.0)})
    features: FeaturesSpec | None = Field(None, description="observable user features (core.covariates)")
    twin: str | None = Field(None, description="a twin directory (counterfeed twin fit): population, "
                                               "catalog and user model fitted from logs (docs/twin.md)")
    replicate: int = Field(0, ge=0, description="the twin's replicate: 0 point fit, b >= 1 bootstrap")

    @field_validator("segments")
    @classmethod
    def _shares(cls, v: dict[str, SegmentSpec]) -> dict[str, SegmentSpec]:
        if not v:
            raise ValueError("needs at least one segment")
        total = sum(s.share for s in v.values())
        if abs(total - 1.0) > 1e-6:
            shares = ", ".join(f"{name} {s.share:g}" for name, s in v.items())
            hint = ("; if 'all' is the default single segment, kept when segments are added one by one with "
                    "--set, give the whole mapping, e.g. --set 'population.segments={a: {share: 1}}'"
                    ) if "all" in v and len(v) > 1 else ""
            raise ValueError(f"segment shares must sum to 1 (got {total:g}: {shares}){hint}")
        return v


def _positive_days(v: float) -> float:
    if v <= 0:
        raise ValueError("must be positive")
    return v


#: a duration field: '14d', '6h', '30m', '90s', '2w' or a number of days, stored as days
Duration = Annotated[float, BeforeValidator(parse_duration)]
PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive_days)]


PhaseRule = Literal["interval_excludes_zero", "prob_better", "expected_loss"]


class PhaseSpec(_Strict):
    """One phase of a multi-phase experiment (see :mod:`counterfeed.core.phases`)."""

    duration: PositiveDuration = Field(description="length of the phase")
    rule: PhaseRule = Field("interval_excludes_zero", description="decision rule applied at the phase's end")
    metric: str = Field("clicks", description="metric the rule decides on")
    estimator: str = Field("diff-in-means", description="estimator whose estimate the rule reads")
    threshold: float | None = Field(None, description="prob_better: minimum P(better) (default 0.95); "
                                    "expected_loss: maximum expected loss in metric units (default 0.01)")
    challengers: list[str] | None = Field(None, description="arms tested against the phase's control, which "
                                          "is never its own challenger (left out or []: every other arm); "
                                          "a list naming only the control is an error in phase 0 and, in a "
                                          "later phase whose control it may be, a note")

    @model_validator(mode="after")
    def _threshold_fits_rule(self) -> "PhaseSpec":
        """``prob_better``'s threshold is a probability in (0, 1); ``expected_loss``'s a loss >= 0;
        ``interval_excludes_zero`` takes none (its interval's level is the analysis level)."""
        t = self.threshold
        if t is None:
            return self
        if self.rule == "prob_better" and not 0.0 < t < 1.0:
            raise ValueError(f"threshold: prob_better's threshold is a probability in (0, 1) (got {t:g})")
        if self.rule == "expected_loss" and not (t >= 0.0 and math.isfinite(t)):
            raise ValueError(f"threshold: expected_loss's threshold is a loss in metric units, >= 0 (got {t:g})")
        if self.rule == "interval_excludes_zero":
            raise ValueError("threshold: rule interval_excludes_zero takes no threshold (its interval's level is "
                             "the scenario's level); leave threshold out or use rule prob_better or expected_loss")
        return self


class AllocationSpec(_Strict):
    """Adaptive allocation of users to arms (see :mod:`counterfeed.core.allocation`)."""

    method: Literal["thompson"] = "thompson"
    metric: str = Field("clicks", description="per-user metric whose arm means the sampler compares")
    update_every: PositiveDuration = Field(0.25, description="how often the assignment probabilities are updated")
    floor: float = Field(0.1, ge=0.0, lt=0.5, description="minimum assignment probability of every arm; 0 only "
                         "for a pure bandit: estimators that weight by 1 / probability (adaptive-ipw) reject "
                         "0 in their check_scenario, since an arm with probability 0 leaves the effect not "
                         "identified")
    draws: int = Field(4000, ge=100, le=1_000_000, description="Monte Carlo draws for P(arm is best)")


class ExperimentSpec(_Strict):
    arms: dict[str, ArmSpec]
    control: str | None = None
    split: dict[str, float] | None = None
    duration: PositiveDuration = Field(14.0, description="experiment length after the pre-period")
    pre_period: Duration = Field(0.0, description="period in which everyone gets the control arm")
    batch_window: Duration = Field(1 / 24, description="serving batch window")
    retrain_every: float | None = Field(1.0, description="refit each arm's recommender this often")
    slate_size: int = Field(10, ge=1, le=200)
    salt: str | None = None
    training: Literal["own", "pooled", "weighted"] = "own"
    phases: list[PhaseSpec] | None = None
    allocation: AllocationSpec | None = None
    assignment: AssignmentSpec | None = None  # mechanisms: counterfeed.core.observational_spec

    @field_validator("retrain_every", mode="before")
    @classmethod
    def _retrain_duration(cls, v: Any) -> Any:
        return None if v is None else parse_duration(v)

    @field_validator("arms")
    @classmethod
    def _arms(cls, v: dict[str, ArmSpec]) -> dict[str, ArmSpec]:
        if len(v) < 2:
            raise ValueError("needs at least two arms (a control and a treatment)")
        for name in v:
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", str(name)):
                raise ValueError(f"arm name {name!r} must start with a letter and use letters, digits, '_' or '-'")
        return v

    @field_validator("control")
    @classmethod
    def _control(cls, v: str | None, info: ValidationInfo) -> str | None:
        arms = info.data.get("arms")
        if v is not None and arms is not None and v not in arms:
            raise ValueError(f"control '{v}' is not one of the arms ({', '.join(arms)})")
        return v

    @field_validator("split")
    @classmethod
    def _split(cls, v: dict[str, float] | None, info: ValidationInfo) -> dict[str, float] | None:
        arms = info.data.get("arms")
        if v is None or arms is None:
            return v
        names = list(arms)
        unknown = [a for a in v if a not in arms]
        if unknown:
            raise ValueError(f"names unknown arm '{unknown[0]}' (arms: {', '.join(names)})")
        missing = [a for a in names if a not in v]
        if missing:
            raise ValueError(f"has no share for arm '{missing[0]}'")
        if any((not math.isfinite(x)) or x < 0 or x > 1 for x in v.values()):
            raise ValueError("shares must be between 0 and 1")
        total = sum(v.values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"shares must sum to 1 (got {total:g})")
        return v

    @field_validator("retrain_every")
    @classmethod
    def _retrain(cls, v: float | None) -> float | None:
        if v is not None and v <= 0:
            raise ValueError("must be positive (or null for never)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentSpec":
        if self.control is None:
            self.control = next(iter(self.arms))
        if self.split is None:
            self.split = {a: 1.0 / len(self.arms) for a in self.arms}
        if self.phases is not None:
            self._check_phases()
        if self.batch_window <= 0 or self.batch_window > self.duration:
            raise ValueError("batch_window must be positive and no longer than the duration")
        if self.allocation is not None and self.allocation.floor * len(self.arms) >= 1.0:
            raise ValueError(f"allocation.floor must be below 1/{len(self.arms)} (one share per arm)")
        if getattr(self.assignment, "mechanism", "randomized") != "randomized" and (self.phases or self.allocation):
            raise ValueError(f"assignment mechanism '{self.assignment.mechanism}' cannot be combined with "
                             "phases or allocation")
        return self

    def _check_phases(self) -> None:
        """At least one phase, not with allocation; ``duration`` (when given) is the phases' sum; every
        challenger is an arm; no phase names only an arm that is certainly its control (phase 0's
        ``control``), located at ``experiment.phases[i].challengers``."""
        phases = self.phases or []
        if not phases:
            raise ValueError("phases must list at least one phase")
        if self.allocation is not None:
            raise ValueError("phases and allocation cannot be combined")
        total = sum(p.duration for p in phases)
        if "duration" not in self.model_fields_set:
            self.duration = total
        elif abs(self.duration - total) > 1e-9:
            raise ValueError(f"duration ({format_duration(self.duration)}) must equal the sum of the "
                             f"phase durations ({format_duration(total)}), or be left out")
        for i, p in enumerate(phases):
            for a in p.challengers or []:
                if a not in self.arms:
                    raise ValueError(f"phases[{i}].challengers names unknown arm '{a}' "
                                     f"(arms: {', '.join(self.arms)})")
        for i, controls in enumerate(self.phase_controls()):
            tested = self.phase_candidates(i)
            if len(tested) == 1 and controls == tested:  # certainly the phase's control: nothing to test
                arm = next(iter(tested))
                whose = "experiment.control" if i == 0 else "no earlier phase tests another arm"
                raise ValidationError.from_exception_data("ExperimentSpec", [InitErrorDetails(
                    type=PydanticCustomError("value_error", "{msg}", {"msg": (
                        f"names only '{arm}', the control of phase {i} ({whose}): the phase would have no arm to "
                        "test against it; name another arm, or leave challengers out to test every other arm")}),
                    loc=("phases", i, "challengers"), input=phases[i].challengers)])

    def phase_candidates(self, index: int) -> set[str]:
        """The arms phase ``index`` names (its ``challengers``, or every arm when they are left out or
        ``[]``); its control, whichever arm it is, is compared with the others of them."""
        chosen = (self.phases or [])[index].challengers
        return set(chosen) if chosen else set(self.arms)

    def phase_controls(self) -> list[set[str]]:
        """For each phase, the arms that can be its control: phase 0's is ``control``; phase ``i + 1``'s
        is phase ``i``'s winner, its control or one of the arms it names (:meth:`phase_candidates`).
        A phase whose arms (:meth:`phase_candidates`) are a single arm that can be its control has, when
        that arm is its control, nothing to test (:func:`counterfeed.core.phases.phase_arms`)."""
        out: list[set[str]] = []
        controls = {self.control} if self.control is not None else set()
        for i in range(len(self.phases or [])):
            out.append(set(controls))
            controls = controls | self.phase_candidates(i)
        return out


class OutputSpec(_Strict):
    dir: str = "runs"
    events: Literal["impressions", "sessions"] = "impressions"
    report: bool = True


DEFAULT_METRICS = ["impressions", "clicks", "ctr", "sessions", "dwell", "retained", "churned"]


def _with_twin(data: dict, file: str | None, lines: dict[str, int], overridden: tuple[str, ...]) -> dict:
    """``population: {twin: DIR, replicate: b}``: the twin's users, dimensions, catalog and user model
    filled in unless given (the twin directory read once). A twin or replicate the directory does not
    serve, or fewer dimensions than the twin's, is a ScenarioError located at ``population.twin``,
    ``population.replicate`` or ``population.dimensions`` (under ``--set`` when set there). A twin or
    replicate of the wrong type is left to the schema's own checks of those fields."""
    pop = data.get("population")
    if not isinstance(pop, dict) or not isinstance(pop.get("twin"), str) or not pop["twin"]:
        return data
    replicate = pop.get("replicate", 0)
    if not isinstance(replicate, int) or isinstance(replicate, bool):
        return data
    from counterfeed.twin.store import TwinSpecError, scenario_parts

    def located(message: str, path: str) -> ScenarioError:
        if from_set(path, overridden):
            return ScenarioError(message, file=SET_ORIGIN, field=path)
        return ScenarioError(message, file=file, line=line_of(lines, path), field=path)

    try:
        parts = scenario_parts(pop["twin"], replicate)
    except TwinSpecError as exc:
        raise located(str(exc), f"population.{exc.field}") from None
    dims = pop.get("dimensions")
    if isinstance(dims, int) and not isinstance(dims, bool) and dims < parts["dimensions"]:
        raise located(f"population.dimensions is {dims} but the twin has {parts['dimensions']} dimensions; "
                      "leave population.dimensions out (it defaults to the twin's)", "population.dimensions")
    pop = {**pop, "twin": parts["catalog"]["path"]}
    pop.setdefault("users", parts["users"])
    pop.setdefault("dimensions", parts["dimensions"])
    data = {**data, "population": pop}
    data.setdefault("catalog", parts["catalog"])
    data.setdefault("user_model", parts["user_model"])
    return data


class Scenario(_Strict):
    """A validated scenario. Build with :func:`load_scenario` (file or text) or :meth:`from_dict`."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
    description: str = ""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    level: float = Field(0.95, gt=0.5, lt=1.0, description="confidence/credible level of intervals")
    population: PopulationSpec
    catalog: PluginSpec = Field(default_factory=lambda: PluginSpec(plugin="synthetic"))
    user_model: PluginSpec = Field(default_factory=lambda: PluginSpec(plugin="choice"))
    experiment: ExperimentSpec
    metrics: list[str | MetricSpec] = Field(default_factory=lambda: list(DEFAULT_METRICS), min_length=1,
                                            description="metrics computed per user (at least one; default: "
                                            "impressions, clicks, ctr, sessions, dwell, retained, churned)")
    analysis: list[AnalysisSpec] = Field(default_factory=lambda: [AnalysisSpec(estimator="diff-in-means")])
    output: OutputSpec = Field(default_factory=OutputSpec)
    truth: TruthSpec = Field(default_factory=TruthSpec)
    targeting: TargetingSpec | None = None
    graph: GraphSpec | None = None  # the analyst's causal graph (counterfeed.core.causal_graph)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)  # sharded worlds (core.shard)

    _file: str | None = PrivateAttr(default=None)
    _lines: dict[str, int] = PrivateAttr(default_factory=dict)
    _source: str | None = PrivateAttr(default=None)
    _overridden: tuple[str, ...] = PrivateAttr(default=())
    _written: dict[str, Any] | None = PrivateAttr(default=None)  # the document as given to from_dict
    _switches: tuple[Switch, ...] = PrivateAttr(default=())  # choices changed by --set

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if ".." in v:
            raise ValueError("name must not contain '..'")
        return v

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, *, file: str | None = None, lines: dict[str, int] | None = None,
                  source: str | None = None, overridden: tuple[str, ...] = ()) -> "Scenario":
        """Validate plain data. ``file``/``lines`` locate errors; ``overridden`` are the field
        paths set by ``--set`` (errors there name ``--set``)."""
        if not isinstance(data, dict):
            raise ScenarioError(f"expected a mapping at the top of the scenario, got {kind_of(data)}",
                                file=file, line=1 if data is not None else None)
        written = copy.deepcopy(data)
        data = _with_twin(data, file, lines or {}, overridden)  # read once, errors located
        try:
            sc = cls.model_validate(data)
        except ValidationError as exc:  # with the plugins' option problems (scenario_raw)
            raise with_plugin_problems(validation_message(exc, file=file, lines=lines or {}, root=cls,
                                       overridden=overridden), data, file=file, lines=lines or {},
                                       overridden=overridden) from None
        sc._file, sc._lines, sc._source, sc._overridden = file, dict(lines or {}), source, overridden
        sc._written = written
        sc._check_metric_names()
        check_heterogeneity(sc)
        check_observational(sc)
        check_execution(sc)
        return sc

    def _check_metric_names(self) -> None:
        seen: set[str] = set()
        for i, m in enumerate(self.metrics):
            name = m if isinstance(m, str) else m.metric
            if name in seen:
                raise self.error(f"metric '{name}' is listed twice", f"metrics[{i}]")
            seen.add(name)

    # -- locating errors ------------------------------------------------------------------------
    @property
    def file(self) -> str | None:
        return self._file

    def line_of(self, field: str) -> int | None:
        """Line of ``field`` (dotted path) or of its closest ancestor present in the file."""
        return line_of(self._lines, field)

    def written(self, field: str) -> bool:
        """Whether the user wrote ``field`` (dotted path): in this scenario's file or with ``--set``
        (a default filled in by validation is not written)."""
        return field in self._lines or from_set(field, self._overridden)

    def error(self, message: str, field: str) -> ScenarioError:
        """A ScenarioError located at ``field``: its line in this scenario's file, or ``--set``
        when the command line set it."""
        if from_set(field, self._overridden):
            return ScenarioError(message, file=SET_ORIGIN, field=field)
        return ScenarioError(message, file=self._file, line=self.line_of(field), field=field)

    def locate(self, err: ScenarioError) -> ScenarioError:
        """Add this scenario's file and line to an error raised with only a field path."""
        if err.file or not err.field:
            return err
        located = self.error(err.bare_message, err.field)
        others = [self.locate(o) for o in err.others] if len(err.others) == len(err.also) else err.also
        return explain_switches(ScenarioError(err.bare_message, file=located.file, line=located.line,
                                              field=err.field, also=others), self._switches)

    # -- views ----------------------------------------------------------------------------------
    @property
    def arms(self) -> list[str]:
        return list(self.experiment.arms)

    @property
    def control(self) -> str:
        return str(self.experiment.control)

    @property
    def metric_specs(self) -> list[tuple[str, dict[str, Any]]]:
        return [(m, {}) if isinstance(m, str) else (m.metric, m.options) for m in self.metrics]

    @property
    def assignment_salt(self) -> str:
        """The salt of the assignment hash: ``experiment.salt``, else the scenario's name."""
        return self.experiment.salt or self.name

    @property
    def total_days(self) -> float:
        return self.experiment.pre_period + self.experiment.duration

    def to_dict(self) -> dict[str, Any]:
        """Plain, fully resolved data (durations as strings); round-trips through from_dict."""
        d = self.model_dump(mode="json", exclude_none=False)
        exp = d["experiment"]
        for key in ("duration", "pre_period", "batch_window", "retrain_every"):
            if exp.get(key) is not None:
                exp[key] = format_duration(exp[key])
        if (exp.get("assignment") or {}).get("mechanism", "randomized") != "randomized":
            exp.pop("split", None)  # a mechanism plans no split (check_observational rejects one)
        for key in ("phases", "allocation", "assignment"):  # absent unless used: older scenarios dump unchanged
            if exp.get(key) is None:
                exp.pop(key, None)
        if d["population"].get("features") is None:  # absent unless used (docs/heterogeneity.md)
            d["population"].pop("features", None)
        for key in ("truth", "targeting"):
            if not d.get(key) or d[key] == {"replications": None}:
                d.pop(key, None)
        if d["population"].get("twin") is None:  # absent unless used: older scenarios dump unchanged
            d["population"].pop("twin", None)
            d["population"].pop("replicate", None)
        for ph in exp.get("phases") or []:
            ph["duration"] = format_duration(ph["duration"])
        if exp.get("allocation"):
            exp["allocation"]["update_every"] = format_duration(exp["allocation"]["update_every"])
        if d.get("graph") is None:
            d.pop("graph", None)
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def with_overrides(self, overrides: dict[str, Any]) -> "Scenario":
        """A copy with dotted field paths replaced (``{'population.users': 1000}``), revalidated.

        Problems in the replaced fields are attributed to ``--set``, not to a line of the file. The
        overrides apply to the document as written, before defaults are filled in: a switched
        choice (an assignment mechanism, a plugin) is validated with only the fields the user wrote.
        """
        resolved = self.to_dict()  # fills paths the user never wrote (counterfeed.core.scenario_overrides)
        data, paths, switches = apply_overrides(resolved if self._written is None else self._written,
                                                resolved, overrides)
        switches = [*self._switches, *switches]
        try:
            sc = Scenario.from_dict(data, file=self._file, lines=self._lines, source=self._source,
                                    overridden=tuple(dict.fromkeys(self._overridden + paths)))
        except ScenarioError as exc:
            raise explain_switches(exc, switches) from None
        sc._switches = tuple(switches)
        return sc
