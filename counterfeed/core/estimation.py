"""The analysis contracts: what an estimator is given (:class:`AnalysisData`), what it declares it
needs (:class:`EstimatorTags`), and what it returns (:class:`Estimate`).

Every input an estimator may read is a declared, typed field of :class:`AnalysisData`, filled by the
core (:mod:`counterfeed.core.analyse`) from the A/B world alone: per-user outcomes, the experiment
window, each user's assignment probabilities, the arms' policy specs, the A/B world's event log and
per-look outcomes. The counterfactual worlds never reach an estimator: the truth of every estimand is
computed once by the core's truth stage (:mod:`counterfeed.core.truth`) and estimates are scored by
:mod:`counterfeed.core.scoring`.

An estimator declares what it needs in ``tags`` (scikit-learn's estimator tags are the model); the
core fills those inputs, and the conformance suite (:mod:`counterfeed.testing`) builds them in its
synthetic data and selects the rules that apply.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import Field

from counterfeed.core.contracts import Items, MetricInfo, Options, Plugin, WorldEvents
from counterfeed.core.scoring import score_values

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["PolicySpec", "Looks", "EstimatorTags", "AnalysisData", "Estimate", "EstimatorOptions",
           "Estimator", "POLICY_VALUE", "POLICY_VALUE_METRIC", "EFFECT_ESTIMANDS", "ATT", "LATE", "CATE",
           "event_time_estimand", "ZERO_WIDTH"]

#: estimands whose truth the truth stage always computes (overall and per segment)
EFFECT_ESTIMANDS = ("difference", "relative")
#: the estimand of an arm's policy value (an off-policy estimate of the arm's click rate)
POLICY_VALUE = "policy-value"
#: the metric a policy value is about: clicks per impression over the experiment period
POLICY_VALUE_METRIC = "ctr-per-impression"
#: the average effect on the treated: mean over the users who received ``arm`` in the A/B world of
#: their all-arm minus all-control outcome (``difference`` is the ATE over everyone)
ATT = "att"
#: the local average treatment effect: the same mean over the compliers of an encouragement design
#: (Angrist, Imbens & Rubin 1996)
LATE = "late"
#: how the warning on a zero-width interval starts (see :meth:`Estimate.flag_zero_width`)
ZERO_WIDTH = "zero-width interval"
#: conditional (per-user) effects: an :class:`Estimate` with this estimand carries ``user_effects``;
#: its ``point``/``lower``/``upper`` are the average of the per-user effects and its interval
CATE = "cate"


def event_time_estimand(days: int) -> str:
    """The ATT ``days`` (an integer bucket start) after a user's adoption in a staggered rollout."""
    return f"att(e={int(days)})"


@dataclass(frozen=True)
class PolicySpec:
    """An arm's policy as the scenario names it: a recommender's registry name and its options."""

    recommender: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Looks:
    """Per-look cumulative outcomes of the A/B world, for sequential (peeking) analysis.

    Attributes
    ----------
    times : (D,) float, increasing: days from the experiment start to each look.
    exposed : (D, n) bool: user ``i`` had visited since the experiment start before look ``d``.
    values : metric name -> (D, n) float64: each user's metric over ``[start, start + times[d])``
        (``Metric.compute`` on the A/B world's events); ratio metrics are given by their numerator
        and denominator metrics.
    """

    times: np.ndarray
    exposed: np.ndarray
    values: dict[str, np.ndarray]

    def at(self, times: np.ndarray) -> "Looks":
        """The looks at exactly ``times`` (each must be one of ``self.times``); raises ``KeyError``."""
        times = np.asarray(times, dtype=np.float64)
        index = {float(t): d for d, t in enumerate(self.times)}
        missing = [float(t) for t in times if float(t) not in index]
        if missing:
            raise KeyError(f"no look at day(s) {missing} (looks: {[float(t) for t in self.times]})")
        rows = np.array([index[float(t)] for t in times], dtype=np.int64)
        return Looks(times, self.exposed[rows], {m: v[rows] for m, v in self.values.items()})


@dataclass(frozen=True)
class EstimatorTags:
    """What an estimator needs and does (scikit-learn's estimator tags are the model).

    The core fills the inputs a tag asks for; the conformance suite builds them in its synthetic data,
    checks that an estimator works from the inputs it declares (and nothing more), and checks that a
    missing declared input is a clear error.

    Attributes
    ----------
    requires_events : reads ``data.events`` (the A/B world's sessions and impressions).
    requires_policies : reads ``data.policies`` with ``data.items`` and ``data.slate_size``.
    requires_looks : reads ``data.looks``; the times come from :meth:`Estimator.look_times`.
    requires_assignment_probabilities : reads ``data.assignment_probabilities``.
    requires_covariates : reads ``data.covariates`` (pre-treatment covariates an analyst would have).
    requires_instrument : reads ``data.instrument`` (an encouragement design's randomized nudge).
    requires_panel : reads ``data.panel`` and ``data.adoption`` (per-period outcomes, staggered rollouts).
    requires_graph : reads ``data.graph`` (the analyst's declared causal graph).
    requires_model_spec : cannot run with default options: its options name the data's metrics (the
        conformance suite uses the class's ``conformance_options``).
    stochastic : draws random numbers (keyed by ``data.seed``, never a global generator).
    separable_metrics : each metric's estimates depend only on that metric's data and the options, so
        the estimator restricted to one metric (:meth:`Estimator.for_metrics`) gives exactly the
        estimates the full run gives for it. When ``estimate`` raises a ``ModelError`` (e.g. a ratio
        whose denominator sums to 0 in an arm) the run then estimates every metric of
        :meth:`Estimator.metrics_for` on its own and names the ones that fail in the manifest's
        ``unestimated``, instead of failing the run. The conformance rule ``for_metrics`` checks it.
    estimands : the estimands it returns; the truth stage computes each one's truth (for
        :data:`POLICY_VALUE`: the arm's click rate per impression in its counterfactual world).
    """

    requires_events: bool = False
    requires_policies: bool = False
    requires_looks: bool = False
    requires_assignment_probabilities: bool = False
    requires_model_spec: bool = False
    requires_covariates: bool = False
    requires_instrument: bool = False
    requires_panel: bool = False
    requires_graph: bool = False
    stochastic: bool = False
    separable_metrics: bool = False
    estimands: tuple[str, ...] = EFFECT_ESTIMANDS

    def required_inputs(self) -> list[str]:
        """The :class:`AnalysisData` fields this estimator reads beyond the outcomes."""
        out = []
        if self.requires_events:
            out.append("events")
        if self.requires_policies:
            out.append("policies")  # with data.items and data.slate_size
        if self.requires_looks:
            out.append("looks")
        if self.requires_assignment_probabilities:
            out.append("assignment_probabilities")
        if self.requires_covariates:
            out.append("covariates")
        if self.requires_instrument:
            out.append("instrument")
        if self.requires_panel:
            out.append("panel")  # with data.adoption
        if self.requires_graph:
            out.append("graph")
        return out


@dataclass
class AnalysisData:
    """What an estimator sees: the A/B world's per-user outcomes and the declared inputs beside them.

    Attributes
    ----------
    outcomes : one row per user with columns ``user``, ``arm`` (name), ``segment`` (name), one column
        per metric, ``pre_<metric>`` for the pre-period value, and for ratio metrics their numerator
        and denominator columns.
    arms, control : the arms (scenario order) and the control arm's name.
    metrics : the analysed metrics and how they aggregate.
    level : the scenario's interval level; seed : the run's seed (key any randomness on it).
    start, end : the experiment period in days since the simulation start (``start`` is the end of
        the pre-period); ``end`` is None when unknown.
    assignment_probabilities : (n_users, n_arms) float, rows in ``outcomes`` order and columns in
        ``arms`` order: each user's probability of every arm at the moment of assignment.
    adaptive_assignment : the probabilities come from adaptive allocation (they vary with time).
    policies : arm -> its :class:`PolicySpec` (recommender name and options).
    items : the catalog the arms served; slate_size : items per slate.
    events : the A/B world's event log (sessions; impressions with propensities and arms).
    looks : per-look cumulative outcomes (:class:`Looks`) at the times estimators asked for.
    output_dir : a directory where an estimator may write artifacts (e.g. posteriors); None when the
        run writes nothing.
    covariates : one row per user in ``outcomes`` order, pre-treatment only: ``user``, ``segment``
        (name), pre-period ``pre_sessions``, ``pre_impressions``, ``pre_clicks``, ``pre_dwell``,
        ``pre_ctr`` (0 without impressions), ``tenure`` (days from the user's arrival to the
        experiment start) and the scenario's observable features ``feature_<k>``. Never latent state.
    instrument : (n_users,) int 0/1 in ``outcomes`` order: the randomized encouragement (nudge) of an
        encouragement design; ``outcomes["arm"]`` is then the arm the user actually took.
    adoption : (n_users,) float days since the simulation start at which each user switched to the
        treatment arm in a staggered rollout (``inf``: never).
    panel : long table of per-period outcomes: ``user``, ``period`` (int index), ``start`` (day),
        one column per analysed metric over that period, ``treated`` (0/1 during the period).
    graph : the analyst's declared causal graph (``counterfeed.core.causal_graph.CausalGraph``).
    segments : the scenario's declared segment names (None: only those in ``outcomes`` are known, as
        for a twin population). A declared segment can draw no user at all; an estimator reporting
        per segment reports it NOT IDENTIFIED rather than leave it out.
    """

    outcomes: "pd.DataFrame"
    arms: list[str]
    control: str
    metrics: dict[str, MetricInfo]
    level: float = 0.95
    seed: int = 0
    start: float = 0.0
    end: float | None = None
    assignment_probabilities: np.ndarray | None = None
    adaptive_assignment: bool = False
    policies: dict[str, PolicySpec] = field(default_factory=dict)
    items: Items | None = None
    slate_size: int | None = None
    events: WorldEvents | None = None
    looks: Looks | None = None
    output_dir: Path | None = None
    covariates: "pd.DataFrame | None" = None
    instrument: np.ndarray | None = None
    adoption: np.ndarray | None = None
    panel: "pd.DataFrame | None" = None
    graph: Any = None
    segments: list[str] | None = None

    @property
    def treatments(self) -> list[str]:
        return [a for a in self.arms if a != self.control]

    @property
    def n_users(self) -> int:
        return int(len(self.outcomes))


@dataclass
class Estimate:
    """One estimated effect of ``arm`` vs ``control`` on ``metric``, scored against the truth.

    ``estimand`` says what is estimated: ``"difference"`` (arm mean minus control mean),
    ``"relative"`` (arm / control - 1), ``"policy-value"`` (the arm's value, see :data:`POLICY_VALUE`)
    ``"att"``, ``"late"``, ``"att(e=K)"``, ``"cate"`` (with ``user_effects``: one row per user in
    ``outcomes`` order, columns ``user``, ``point``, ``lower``, ``upper``, out-of-fold predictions)
    or a model quantity such as ``"sem:indirect"``. The core's scoring stage fills ``truth``,
    ``error`` and ``covered`` from the truth stage where the estimand's truth is known. ``analysis``
    is the index of the scenario's ``analysis`` entry that made the estimate (set by the run; None
    outside a scenario's analysis, e.g. ``counterfeed ope``): two entries of one estimator with
    different options (a level, a control group, a correction) give rows that differ only by it, and
    ``calibrate``/``sweep`` summarise each entry's rows apart.
    """

    estimator: str
    metric: str
    arm: str
    control: str
    point: float
    lower: float
    upper: float
    level: float = 0.95
    estimand: str = "difference"
    segment: str | None = None
    p_value: float | None = None
    prob_better: float | None = None
    diagnostics: dict[str, Any] = field(default_factory=dict)
    user_effects: "pd.DataFrame | None" = None
    truth: float | None = None
    error: float | None = None
    covered: bool | None = None
    analysis: int | None = None

    def __post_init__(self) -> None:
        self.flag_zero_width()
        self.flag_unbounded()

    def flag_unbounded(self) -> None:
        """Record an infinite bound as ``diagnostics["unbounded"]``: ``"lower"``, ``"upper"`` or ``"both"``
        (e.g. Fieller's set for a relative lift whose control mean is not clearly away from 0). JSON writes
        an infinite bound and a missing one alike as null; this says which it was, so a reader of
        estimates.json (and :func:`counterfeed.core.rundir.load_run`) can tell an unbounded interval,
        which covers, from a missing one. Called when an Estimate is built and again by the core on every
        estimator's output; idempotent."""
        def infinite(x: Any) -> bool:
            try:
                return math.isinf(float(x))
            except (TypeError, ValueError):
                return False

        side = {(True, True): "both", (True, False): "lower", (False, True): "upper"}.get(
            (infinite(self.lower), infinite(self.upper)))
        diag = dict(self.diagnostics or {})
        if side is None:
            diag.pop("unbounded", None)
        else:
            diag["unbounded"] = side
        if diag != (self.diagnostics or {}):
            self.diagnostics = diag

    def flag_zero_width(self) -> bool:
        """Warn on a zero-width interval: whether ``lower == upper`` (finite, to 1e-12 relative).

        A zero-width interval means no variation was observed (e.g. every user in both arms has the same
        value of the metric: a 1-day run where both arms show everyone one fixed slate), not that the
        effect is known exactly: the interval then says nothing about the uncertainty. The estimate keeps
        its numbers and gets ``diagnostics["zero_width"] = True`` and a warning starting with
        :data:`ZERO_WIDTH` (printed under the run's table, kept in the JSON and the report). Called when an
        Estimate is built and again by the core on every estimator's output
        (:func:`counterfeed.core.analyse.check_estimates`), so every estimator, third-party ones
        included, gets it; idempotent.
        """
        try:
            lo, hi = float(self.lower), float(self.upper)
        except (TypeError, ValueError):
            return False
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo > 1e-12 * max(1.0, abs(lo), abs(hi)):
            return False
        diag = dict(self.diagnostics or {})
        warns = list(diag.get("warnings") or [])
        if not any(str(w).startswith(ZERO_WIDTH) for w in warns):
            warns.append(f"{ZERO_WIDTH} [{lo:g}, {hi:g}] for '{self.metric}' ({self.estimand}, {self.arm} vs "
                         f"{self.control}): no variation was observed (e.g. every user in each arm has the "
                         "same value), so this interval says nothing about the uncertainty; do not read it "
                         "as an exact effect")
        self.diagnostics = {**diag, "warnings": warns, "zero_width": True}
        return True

    def score(self, truth: float | None) -> None:
        """Attach the true value, the error and whether the interval covers it (see :mod:`~counterfeed.core.scoring`)."""
        diag = self.diagnostics or {}
        rays = diag.get("rays") or diag.get("ar_rays")  # a two-ray set's gap: Fieller's, Anderson-Rubin's
        lower, upper = self.lower, self.upper
        if rays and all(v is None or (isinstance(v, float) and math.isnan(v)) for v in (lower, upper)):
            lower, upper = -math.inf, math.inf  # a two-ray set's bounds, read back from JSON's nulls
        self.truth, self.error, self.covered = score_values(self.point, lower, upper, truth, rays)

    def to_dict(self) -> dict[str, Any]:
        """Every scalar field (``user_effects``, a table, is stored beside the estimates)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "user_effects"}


class EstimatorOptions(Options):
    """Options every estimator accepts: which metrics to analyse (default: all) and the level."""

    metrics: list[str] | None = Field(None, description="metrics to analyse (default: all the scenario's)")
    level: float | None = Field(default=None, gt=0.5, lt=1.0, description="interval level, in (0.5, 1) like the "
                                "scenario's `level` (default: the scenario's)")


class Estimator(Plugin, ABC):
    """Estimates effects from the A/B world's outcomes and the inputs its ``tags`` declare.

    Every estimator's docstring states its formula, its assumptions and a reference. ``Options``
    subclasses :class:`EstimatorOptions`; ``level`` there overrides the scenario's level.
    """

    kind = "estimator"
    Options: ClassVar[type[Options]] = EstimatorOptions
    tags: ClassVar[EstimatorTags] = EstimatorTags()
    #: wall seconds of this estimator's own stages (e.g. a sampler's compile and sampling time), set by
    #: ``estimate``: the run records them in the manifest's timings as ``analysis_<entry>_<name>_<key>``,
    #: never in the estimates, whose diagnostics hold only what the data and the seed determine (a run
    #: directory is the same bytes whenever it is made)
    timings_: dict[str, float] | None = None

    def users_per_arm(self) -> int:
        """The fewest users an arm needs for this estimator's estimate (default 2: no interval from fewer
        than two independent units). Before simulating, ``validate`` and ``run`` check the randomized
        split's own draw against the largest of the analysis's (:func:`counterfeed.core.scenario.check_arms_filled`);
        override it when the estimator needs more (e.g. ``2 * folds`` for cross-fitting), or 0 when it
        compares no arms' users (``ope`` evaluates each arm's policy on the control arm's log)."""
        return 2

    def metrics_for(self, data: AnalysisData) -> list[str]:
        """The metrics this estimator analyses on ``data``: its ``metrics`` option, else all of
        ``data.metrics``. Override it when the estimator picks its metrics otherwise (e.g. only ratio
        metrics), raising a ``ModelError`` for a metric it cannot analyse. With the tag
        ``separable_metrics`` the run re-estimates each of these on its own (:meth:`for_metrics`)
        when ``estimate`` fails."""
        chosen = getattr(self.options, "metrics", None)
        return list(chosen) if chosen else list(data.metrics)

    def for_metrics(self, metrics: list[str]) -> "Estimator | None":
        """A new estimator like this one that analyses only ``metrics`` (names from :meth:`metrics_for`),
        or None when it cannot be restricted to them.

        The run calls it (with one metric at a time) when ``estimate`` raised a ``ModelError`` and the
        tags declare ``separable_metrics``; see :class:`EstimatorTags`. The default returns None
        without that tag, else an instance of the same class whose options are a copy with the
        ``metrics`` option set (None when ``Options`` has no ``metrics`` field). Override it when the
        options name the metrics another way. Its estimates must be those of the full run for these
        metrics (conformance rule ``for_metrics``).
        """
        if not self.tags.separable_metrics or "metrics" not in type(self.options).model_fields:
            return None
        return type(self)(self.options.model_copy(update={"metrics": list(metrics)}))

    def note_left_out(self, data: AnalysisData, estimates: list[Estimate]) -> list[Estimate]:
        """``estimates`` with this estimator's word on the metrics its default metric list leaves out
        (e.g. cuped's ratio metrics), once; the default says nothing and returns them unchanged.

        When ``estimate`` fails and the run re-estimates one metric at a time (:meth:`for_metrics`),
        the one-metric copies name their metric and leave nothing out, so the run asks this estimator,
        whose options are the user's, to add the warning to the rows they made. An estimator that
        leaves metrics out says so here and calls it from its own ``estimate`` too."""
        return estimates

    def level_for(self, data: AnalysisData) -> float:
        lvl = getattr(self.options, "level", None)
        return float(lvl) if lvl is not None else float(data.level)

    def look_times(self, duration: float) -> np.ndarray | None:
        """Days from the experiment start at which it needs ``data.looks`` (``requires_looks``), for
        an experiment of ``duration`` days; None when it needs none."""
        return None

    def check_scenario(self, scenario: Any) -> None:
        """Raise for a precondition checkable from the scenario alone; ``validate`` and ``run`` call it
        before simulating. Raise :class:`~counterfeed.errors.ScenarioError` with a ``field`` path
        (located in the file for you). The default checks nothing."""

    def analysis_entry(self, scenario: Any) -> int | None:
        """The index of this estimator's entry in ``scenario.analysis`` (the first entry of this
        estimator with these options), to locate a ``check_scenario`` / ``check_metrics`` error at
        ``analysis[i].<option>``; None when it is not one of the scenario's entries (e.g. a phase's)."""
        for i, spec in enumerate(getattr(scenario, "analysis", None) or []):
            if spec.estimator != self.name:
                continue
            try:
                if type(self.options)(**spec.options) == self.options:
                    return i
            except Exception:  # noqa: BLE001 -- another entry's invalid options: not this one
                continue
        return None

    def check_metrics(self, scenario: Any, metrics: dict[str, MetricInfo]) -> None:
        """Raise for a precondition on the scenario's analysed ``metrics`` (name -> info) or its
        options; ``validate`` and ``run`` call it before simulating and report the error at this
        analysis entry (a :class:`~counterfeed.errors.CounterfeedError` without a field) or at the
        error's ``field``. Use the same function ``estimate`` uses. The default checks nothing."""

    @abstractmethod
    def estimate(self, data: AnalysisData) -> list[Estimate]:
        """Return one :class:`Estimate` per (metric, treatment arm[, segment]) it covers."""
