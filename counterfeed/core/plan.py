"""Resolution: a validated scenario plus the plugin registry -> a :class:`Plan` whose every plugin
name is known and every option validated. ``counterfeed validate`` stops here, so this module
imports nothing the simulation needs (no pandas, no pyarrow, no scipy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from counterfeed.core.contracts import Estimator, Items, Metric, MetricInfo, Recommender, UserModel
from counterfeed.core.estimation import EstimatorTags
from counterfeed.core.plugins import Registry, get_registry
from counterfeed.core.randomness import Keys
from counterfeed.core.scenario import Scenario
from counterfeed.core.observational_spec import check_design_for
from counterfeed.core.scenario_heterogeneity import check_targeting
from counterfeed.errors import CounterfeedError, ScenarioError

__all__ = ["Plan", "resolve", "check_estimator_metrics", "is_population", "NOT_IDENTIFIED", "POPULATION_NOTE",
           "arm_key", "PHASE_INPUTS", "PHASE_ESTIMAND", "phase_unfit", "phase_estimators"]

_WHY = ("not identified by comparing the arms of a user-randomized test (each arm's value depends on "
        "its size and on the other arm)")
_INSTEAD = ("the run reports the true global effect from the counterfactual worlds next to the naive A/B "
            "comparison instead (manifest.json 'population_metrics', report)")
NOT_IDENTIFIED = f"is population-level: its effect is {_WHY}; {_INSTEAD}"
#: the manifest's and the report's note: (short, with what the run does instead)
POPULATION_NOTE = (f"population-level metrics: their effect is {_WHY}",
                   f"Population-level metrics: their effect is {_WHY}; {_INSTEAD}.")


def is_population(metric: Metric | MetricInfo) -> bool:
    return getattr(metric, "level", "user") == "population"


def check_estimator_metrics(metrics: dict[str, Metric], wanted: list[str]) -> tuple[int, str] | None:
    """(index, error message) of the first population-level metric in ``wanted``, or None."""
    for i, m in enumerate(wanted):
        if m in metrics and is_population(metrics[m]):
            return i, f"metric '{m}' {NOT_IDENTIFIED}"
    return None


#: the :class:`~counterfeed.core.estimation.AnalysisData` inputs (names from
#: :meth:`EstimatorTags.required_inputs <counterfeed.core.estimation.EstimatorTags.required_inputs>`) that a
#: phase's analysis fills beside each user's outcomes over the phase
#: (:meth:`counterfeed.core.phases.PhasedAssignment._estimate`): none. A phase gives its estimator the
#: phase's outcomes (``pre_<metric>``: the metric before the phase), its arms and control, the metrics,
#: the level and the seed.
PHASE_INPUTS: frozenset[str] = frozenset()
#: the estimand a phase's decision rule reads: each challenger's difference from the phase's control
PHASE_ESTIMAND = "difference"
_INPUT_WORDS = {
    "events": "the A/B world's event log (data.events)",
    "policies": "every arm's recommender and the catalog (data.policies, data.items)",
    "looks": "per-look outcomes (data.looks)",
    "assignment_probabilities": "each user's assignment probabilities (data.assignment_probabilities)",
    "covariates": "pre-treatment covariates (data.covariates)",
    "instrument": "a randomized encouragement (data.instrument)",
    "panel": "per-period outcomes of a staggered rollout (data.panel)",
    "graph": "a declared causal graph (data.graph)",
}


def _tags_of(est: Any) -> EstimatorTags:
    tags = getattr(est, "tags", None)
    return tags if isinstance(tags, EstimatorTags) else EstimatorTags()


def phase_unfit(est: Any) -> list[str]:
    """Why estimator ``est`` (an instance or class) cannot decide a phase, judged from what its ``tags``
    declare (:class:`~counterfeed.core.estimation.EstimatorTags`), so a third-party estimator is judged
    as the built-in ones are: an input a phase does not fill (:data:`PHASE_INPUTS`), options that must
    name a model (``requires_model_spec``: a phase passes only its metric), or no
    :data:`PHASE_ESTIMAND` estimate among its ``estimands``. Empty when it can."""
    tags = _tags_of(est)
    why = []
    missing = [name for name in tags.required_inputs() if name not in PHASE_INPUTS]
    if missing:
        words = [_INPUT_WORDS.get(name, f"data.{name}") for name in missing]
        why.append("it needs " + (" and ".join(words) if len(words) < 3 else ", ".join(words[:-1]) + " and "
                                  + words[-1]) + ", which a phase does not give (it gives only each user's "
                   "outcomes over the phase)")
    if tags.requires_model_spec:
        why.append("its options must name a model, and a phase passes it only the phase's metric")
    if PHASE_ESTIMAND not in tags.estimands:
        why.append(f"it reports no '{PHASE_ESTIMAND}' estimate (estimands: "
                   f"{', '.join(tags.estimands) or 'none'}), which the phase's rule reads")
    return why


def phase_estimators(registry: Registry) -> list[str]:
    """The registered estimators :func:`phase_unfit` finds nothing against, sorted."""
    out = []
    for name in registry.names("estimator"):
        try:
            cls = registry.info("estimator", name).cls
        except Exception:  # noqa: BLE001 -- a plugin that cannot be loaded is not offered
            continue
        if not phase_unfit(cls):
            out.append(name)
    return sorted(out)


def arm_key(recommender: str, options: dict[str, Any]) -> str:
    """An arm's random identity: the canonical JSON of its recommender name and options.

    Policy streams and model initializations are keyed on it, not on the arm's name, so
    identically configured arms draw identically (issue 14, item 2). ``options`` should be
    canonical already: :meth:`Plan.arm_keys` passes the validated options without the ones that
    equal their defaults, so an arm that spells out a default is the same arm as one that leaves it
    out.
    """
    return json.dumps({"recommender": recommender, "options": options}, sort_keys=True,
                      separators=(",", ":"), default=str)


@dataclass
class Plan:
    """A scenario with every plugin name resolved and every option validated."""

    scenario: Scenario
    registry: Registry
    metrics: dict[str, Metric]          # every metric computed (user's + numerators/denominators)
    analysed: list[str]                 # the metrics the user listed
    estimators: list[Estimator]
    #: settings that are valid but likely not what was meant, each located as errors are
    #: ("s.yaml:12: metrics[2]: ..."):
    #: printed by ``validate`` and ``run`` and kept in the run manifest (``Metric.scenario_notes``)
    notes: list[str] = field(default_factory=list)

    def catalog(self):
        sc = self.scenario
        return self.create("catalog", sc.catalog.plugin, sc.catalog.options, "catalog", "plugin")

    def build_items(self, keys: Keys) -> Items:
        """The scenario's catalog, built by its plugin from the ``catalog`` stream of ``keys``, at the
        population's dimensions; relative paths in its options are read from the scenario file's folder
        (the working directory for a scenario given as data). The one place a world's items are made
        (``run``, twin evaluation, ``offline``), so they are the same items everywhere."""
        return _call_catalog(self.scenario, self.catalog(), "build", keys)

    def check_items(self) -> int | None:
        """Check the catalog's inputs (its file, columns and rows) as building it would, without
        building it (``Catalog.check``); the number of items, or None when known only by building.
        ``validate`` calls it, so that a catalog ``run`` would reject is rejected first.

        Raises
        ------
        DataError
            The error ``build_items`` would raise for the same inputs.
        """
        return catalog_items(self.scenario, self.catalog())

    def checked_notes(self) -> list[str]:
        """What ``validate`` checks beyond :func:`resolve`, the catalog's inputs (:meth:`check_items`),
        and every note it prints: :attr:`notes` and, with the catalog's size known, :func:`catalog_notes`.
        ``validate``, ``calibrate`` and ``sweep`` call it before any work or output.

        Raises
        ------
        DataError
            As :meth:`check_items`.
        """
        n_items = self.check_items()
        return self.notes + ([] if n_items is None else catalog_notes(self.scenario, n_items))

    def user_model(self) -> UserModel:
        sc = self.scenario
        return self.create("user-model", sc.user_model.plugin, sc.user_model.options, "user_model", "plugin")

    def recommender(self, arm: str) -> Recommender:
        spec = self.scenario.experiment.arms[arm]
        return self.create("recommender", spec.recommender, spec.options, f"experiment.arms.{arm}",
                            "recommender")

    def arm_keys(self) -> list[str]:
        """Each arm's :func:`arm_key`, in the scenario's arm order: its recommender's name and its
        options as validated (``16.0`` is ``16``), less those equal to their defaults."""
        arms = self.scenario.experiment.arms
        return [arm_key(arms[a].recommender, self._canonical_options(arms[a].recommender, arms[a].options))
                for a in self.scenario.arms]

    def _canonical_options(self, recommender: str, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` validated by the recommender's Options model, less those equal to their
        defaults; a wrapped recommender's options (a re-ranker's ``base`` and ``base_options``) the
        same way, with the base's own model."""
        model = self.registry.info("recommender", recommender).cls.Options
        try:
            out = model(**options).model_dump(mode="json", exclude_defaults=True)
        except Exception:  # noqa: BLE001 -- options resolve() rejects never reach a world; keep them as written
            return dict(options)
        base = options.get("base")
        if isinstance(base, str) and isinstance(options.get("base_options", {}), dict):
            nested = self._canonical_options(base, options.get("base_options") or {})
            out.pop("base_options", None)
            if nested:
                out["base_options"] = nested
        return out

    def create(self, kind: str, name: str, options: dict[str, Any], field: str,
                name_key: str | None = None) -> Any:
        """Instantiate a plugin; an unknown name is reported at ``field.name_key``, options at ``field.<opt>``."""
        try:
            self.registry.info(kind, name, field=f"{field}.{name_key}" if name_key else field)
            return self.registry.create(kind, name, options, field=field)
        except ScenarioError as err:
            raise self.scenario.locate(err) from None


def catalog_items(scenario: Scenario, catalog: Any) -> int | None:
    """The number of items ``catalog`` (the scenario's catalog plugin) will build, from
    ``Catalog.check`` (which reads and checks its inputs without building), or None when known only by
    building. For a recommender's or user model's ``check_scenario`` that needs the catalog's size.

    Raises
    ------
    DataError
        The error building the catalog would raise for the same inputs.
    """
    n = _call_catalog(scenario, catalog, "check", Keys(scenario.seed))
    return None if n is None else int(n)


def _call_catalog(sc: Scenario, catalog: Any, hook: str, keys: Keys) -> Any:
    from pathlib import Path

    from counterfeed.core._guard import call_plugin
    from counterfeed.core.contracts import CatalogContext

    return call_plugin(catalog, hook, getattr(catalog, hook),
                       CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=sc.population.dimensions,
                                      base_dir=str(Path(sc.file).parent) if sc.file else "."))


def catalog_notes(sc: Scenario, n_items: int) -> list[str]:
    """Notes on the scenario that need its catalog's size: a slate longer than the catalog
    (``run`` prints them once the catalog is built, ``validate`` when ``Catalog.check`` gives the size)."""
    k = sc.experiment.slate_size
    if n_items >= k:
        return []
    return [str(sc.error(f"slates of {k} items from a catalog of {n_items:,}: every slate shows at most "
                         f"{n_items:,} (all of them, in the order each recommender ranks them)",
                         "experiment.slate_size"))]


def resolve(scenario: Scenario, registry: Registry | None = None) -> Plan:
    """Validate every plugin reference and option of ``scenario``.

    Raises
    ------
    ScenarioError
        Naming file, line and field of every problem found (one plugin's problems do not hide
        another's; checks that depend on a failed part are skipped).
    """
    reg = registry or get_registry()
    sc = scenario
    plan = Plan(sc, reg, {}, [], [])
    problems: list[ScenarioError] = []

    def attempt(fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except ScenarioError as err:
            problems.append(err)
            return None

    catalog = attempt(plan.catalog)
    user_model = attempt(plan.user_model)
    if user_model is not None and catalog is not None:
        attempt(user_model.check_scenario, sc, catalog, "user_model")
    for arm in sc.arms:
        rec = attempt(plan.recommender, arm)
        if rec is not None and catalog is not None:
            attempt(rec.check_scenario, sc, catalog, f"experiment.arms.{arm}")
    for i, (name, opts) in enumerate(sc.metric_specs):
        metric = attempt(plan.create, "metric", name, opts, f"metrics[{i}]")
        if metric is not None:
            plan.metrics[name] = metric
            plan.notes += [str(sc.error(note, f"metrics[{i}]")) for note in metric.scenario_notes(sc)]  # file:line
        plan.analysed.append(name)
    for name in list(plan.metrics):
        info = plan.metrics[name].info()
        for part in (info.numerator, info.denominator):
            if part and part not in plan.metrics:
                plan.metrics[part] = plan.create("metric", part, {}, f"metrics[{plan.analysed.index(name)}]")
    metrics_ok = all(name in plan.metrics for name in plan.analysed)
    entries: list[tuple[int, Estimator]] = []  # (index in analysis, the estimator) of the created ones
    for i, spec in enumerate(sc.analysis):
        est = attempt(plan.create, "estimator", spec.estimator, spec.options, f"analysis[{i}]", "estimator")
        if est is None:
            continue
        if not problems:  # an estimator checks its preconditions on an otherwise valid scenario
            try:
                est.check_scenario(sc)
                check_design_for(sc, est)
            except ScenarioError as err:
                problems.append(_located(sc, err, f"analysis[{i}]"))
                continue
        if metrics_ok:
            attempt(_check_estimator_metrics, plan, est, i)
        plan.notes += _segment_notes(sc, est, i)
        plan.estimators.append(est)
        entries.append((i, est))
    if metrics_ok and not problems:
        attempt(_check_distinct_analyses, plan, entries)
    for i, est in enumerate(plan.estimators if metrics_ok and not problems else []):
        attempt(_check_estimator_plan, plan, est, i)
    if not problems and (sc.experiment.allocation is not None or sc.experiment.phases):
        _check_extensions(plan)
    if not problems and sc.targeting is not None:
        attempt(check_targeting, plan)
    if problems:
        first = problems[0]
        raise ScenarioError(first.bare_message, file=first.file, line=first.line, field=first.field,
                            also=[*(first.others if len(first.others) == len(first.also) else first.also),
                                  *problems[1:]])
    return plan


def _located(sc: Scenario, err: ScenarioError, where: str) -> ScenarioError:
    """An estimator's ``check_scenario`` error located in the file; when the field it names is not in the
    file (a missing section), at ``where``, the entry that needs it."""
    located = sc.locate(err)
    if located.line is None and located.file == sc.file and err.field and not err.others:
        located = sc.error(f"{err.field}: {err.bare_message}", where)
    return located


def _check_estimator_metrics(plan: Plan, est: Estimator, i: int) -> None:
    """The metrics estimator ``analysis[i]`` names are computed and analysable per user."""
    sc = plan.scenario
    wanted = getattr(est.options, "metrics", None) or []
    if (bad := check_estimator_metrics(plan.metrics, wanted)) is not None:
        raise sc.error(bad[1], f"analysis[{i}].metrics[{bad[0]}]")
    for j, m in enumerate(wanted):  # a metric named twice was estimated twice (and pooled by calibrate)
        if m in wanted[:j]:
            raise sc.error(f"metric '{m}' is listed twice (also metrics[{wanted.index(m)}])",
                           f"analysis[{i}].metrics[{j}]")
    for j, m in enumerate(wanted):
        if m not in plan.metrics:
            raise sc.error(f"metric '{m}' is not computed in this scenario (metrics: "
                           f"{', '.join(plan.analysed)})", f"analysis[{i}].metrics[{j}]")


def _check_distinct_analyses(plan: Plan, entries: list[tuple[int, Estimator]]) -> None:
    """No ``analysis`` entry repeats an earlier one (the same estimator with the same options): its rows
    would be the earlier entry's, listed and tallied twice. Entries of one estimator with different
    options on one metric (``did-staggered`` against each control group, two levels) are a run's to
    compare: each estimate carries its entry (``Estimate.analysis``), which the run's tables show and by
    which ``calibrate`` and ``sweep`` summarise."""
    sc = plan.scenario
    seen: dict[str, int] = {}
    for i, est in entries:
        spec = sc.analysis[i]
        opts = est.options.model_dump(mode="json")  # defaults filled: `level: 0.95` is the default level
        if "metrics" in opts:  # an order, or the default list written out, names the same metrics
            opts["metrics"] = sorted(set(opts["metrics"] or plan.analysed))
        if "level" in opts:
            opts["level"] = opts["level"] or sc.level
        key = json.dumps([est.name, opts], sort_keys=True, default=str)
        first = seen.setdefault(key, i)
        if first != i:
            raise sc.error(f"analysis[{i}] repeats analysis[{first}] (estimator '{spec.estimator}' with the same "
                           "options): its rows would be listed and counted twice; remove one", f"analysis[{i}]")


def _check_estimator_plan(plan: Plan, est: Estimator, i: int) -> None:
    """``est.check_metrics`` on the analysed metrics; an error without a field is located at ``analysis[i]``."""
    sc = plan.scenario
    try:
        est.check_metrics(sc, {n: plan.metrics[n].info() for n in plan.analysed})
    except ScenarioError as err:
        raise sc.locate(err) from None
    except CounterfeedError as err:
        raise sc.error(str(err), f"analysis[{i}]") from None


def _segment_notes(sc: Scenario, est: Estimator, i: int) -> list[str]:
    """A located note when ``analysis[i]`` asks for per-segment estimates (``segments: true``) of a
    population with a single segment (``population.segments`` left out: every user is in 'all'): each
    segment's rows would repeat the overall ones. A twin population's segments come from the twin."""
    if getattr(est.options, "segments", None) is not True or sc.population.twin:
        return []
    segments = list(sc.population.segments)
    if len(segments) != 1:
        return []
    if sc.written("population.segments"):
        why = f"population.segments declares a single segment ('{segments[0]}')"
    else:
        why = f"population.segments is not set, so every user is in the one default segment '{segments[0]}'"
    return [str(sc.error(f"segments: true, but {why}: its per-segment estimates repeat the overall ones; declare "
                         "two or more segments under population.segments to compare the arms within each",
                         f"analysis[{i}].segments"))]


def _check_extensions(plan: Plan) -> None:
    """Metrics and estimators named by ``experiment.allocation`` / ``experiment.phases`` exist and can run.

    Each phase's metric is computed and analysable per user; each phase's estimator (created with the
    phase's metric as its only option) can decide a phase (:func:`phase_unfit`: it needs no input a
    phase does not fill and reports a difference) and passes the checks an ``analysis`` entry gets,
    located at ``experiment.phases[i].estimator``: its ``check_scenario``, the design check
    (:func:`check_design_for`) and its ``check_metrics`` (e.g. ``cuped`` without a pre-period, ``ratio``
    on a metric that is not a ratio). A phase after the first that names a single arm, which an earlier
    phase's decision may make its control, gets a note (that case leaves the phase nothing to test:
    it keeps its control without a test); phase 0 naming only its control is a schema error. The run's
    ``analysis`` compares the arms under phase 0's assignment: an entry that compares the arms' own users
    (``users_per_arm() > 0``) needs every arm in phase 0.
    """
    sc = plan.scenario
    exp = sc.experiment
    if exp.allocation is not None:
        m = exp.allocation.metric
        if m not in plan.metrics:
            raise sc.error(f"metric '{m}' is not computed in this scenario (metrics: "
                           f"{', '.join(plan.analysed)})", "experiment.allocation.metric")
        if plan.metrics[m].info().kind == "ratio":
            raise sc.error(f"metric '{m}' is a ratio; adaptive allocation needs a per-user metric "
                           "(e.g. clicks)", "experiment.allocation.metric")
        if (bad := check_estimator_metrics(plan.metrics, [m])) is not None:
            raise sc.error(bad[1], "experiment.allocation.metric")
    controls = exp.phase_controls() if exp.phases else []
    first = exp.phase_candidates(0) | {sc.control} if exp.phases else set(sc.arms)
    outside = [a for a in sc.arms if a not in first]
    for j, est in enumerate(plan.estimators if outside else []):  # every entry was created (no problems)
        if est.users_per_arm() > 0:
            raise sc.error(f"with experiment.phases the analysis compares the arms under phase 0's assignment, "
                           f"and arm '{outside[0]}' is not in phase 0 (experiment.phases[0].challengers: "
                           f"{', '.join(a for a in sc.arms if a in first and a != sc.control)}): it has no users "
                           f"there; name it in phase 0's challengers, or leave the analysis out (analysis: [])",
                           f"analysis[{j}]")
    for i, ph in enumerate(exp.phases or []):
        if ph.metric not in plan.metrics:
            raise sc.error(f"metric '{ph.metric}' is not computed in this scenario (metrics: "
                           f"{', '.join(plan.analysed)})", f"experiment.phases[{i}].metric")
        if (bad := check_estimator_metrics(plan.metrics, [ph.metric])) is not None:
            raise sc.error(bad[1], f"experiment.phases[{i}].metric")
        _check_phase_estimator(plan, i)
        tested = exp.phase_candidates(i)
        if len(tested) == 1 and tested <= controls[i]:
            arm = next(iter(tested))
            plan.notes.append(str(sc.error(
                f"names only '{arm}', which can be phase {i}'s control (the arm phase {i - 1} keeps or picks): "
                f"the phase then has no arm to test against it, serves '{arm}' to everyone and keeps it without "
                "a test (its decision records a note)",
                f"experiment.phases[{i}].challengers")))


def _check_phase_estimator(plan: Plan, i: int) -> None:
    """Phase ``i``'s estimator can decide the phase; see :func:`_check_extensions`."""
    sc = plan.scenario
    ph = (sc.experiment.phases or [])[i]
    where = f"experiment.phases[{i}].estimator"
    est = plan.create("estimator", ph.estimator, {"metrics": [ph.metric]}, where)
    why = phase_unfit(est)
    if why:
        raise sc.error(f"estimator '{ph.estimator}' cannot decide a phase: {'; '.join(why)}. Estimators a phase "
                       f"can run: {', '.join(phase_estimators(plan.registry))}", where)
    try:
        est.check_scenario(sc)
        check_design_for(sc, est)
    except ScenarioError as err:
        raise _located(sc, err, where) from None
    try:
        est.check_metrics(sc, {n: m.info() for n, m in plan.metrics.items()})
    except ScenarioError as err:
        raise sc.locate(err) from None
    except CounterfeedError as err:
        raise sc.error(f"{err} (phase {i}'s estimator on its metric '{ph.metric}')", where) from None
