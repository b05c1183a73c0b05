"""The analysis stage: the estimators' typed inputs from the A/B world, the estimators run and
their output checked, and the sample-ratio-mismatch check.

Everything an estimator may read is built here as a declared field of
:class:`~counterfeed.core.estimation.AnalysisData`, from the A/B world only; the counterfactual worlds
go to the truth stage (:mod:`counterfeed.core.truth`) instead.
"""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from counterfeed.analysis.srm import srm_check
from counterfeed.core.contracts import Items, Metric, MetricInfo, WorldEvents
from counterfeed.core.estimation import AnalysisData, Estimate, Estimator, PolicySpec
from counterfeed.core.outcomes import look_outcomes
from counterfeed.core.phases import phase_arms
from counterfeed.core.scenario import Scenario
from counterfeed.errors import PluginError

#: mechanisms whose assignment probabilities an analyst does not know (estimators must model them)
HIDDEN_PROPENSITY = ("selection", "encouragement")

__all__ = ["analysis_data", "requested_look_times", "estimands_of", "check_estimates", "require_estimate_list", "srm"]


def analysis_data(sc: Scenario, metrics: dict[str, Metric], analysed: list[str], estimators: list[Estimator],
                  ab_outcomes: pd.DataFrame, ab_events: WorldEvents, items: Items,
                  probabilities: np.ndarray | None, adaptive: bool = False,
                  output_dir: Path | None = None, mechanism: dict[str, Any] | None = None) -> AnalysisData:
    """The estimators' input: the A/B world's outcomes and every declared field beside them.

    ``metrics`` are every computed metric plugin (numerators and denominators included), ``analysed``
    the per-user metrics the scenario lists, ``probabilities`` the A/B world's assignment
    probabilities (``Assignment.probabilities()``, (n_users, n_arms)), ``adaptive`` whether they come
    from adaptive allocation, ``output_dir`` the run directory being written (None when nothing is),
    ``mechanism`` a non-randomized assignment's record (:mod:`counterfeed.core.mechanisms`): it fills
    ``instrument`` (encouragement), ``adoption`` and ``panel`` (staggered); ``graph`` is the scenario's.
    Under self-selection or opt-in the true propensities are not an analyst's input (they go to the
    run directory's ``assignment.parquet``): ``assignment_probabilities`` is then None.
    """
    exp = sc.experiment
    infos: dict[str, MetricInfo] = {n: metrics[n].info() for n in analysed}
    start, end = float(exp.pre_period), float(exp.pre_period + exp.duration)
    times = requested_look_times(estimators, end - start)
    looks = look_outcomes(ab_events, metrics, start, times) if times is not None else None
    return AnalysisData(
        outcomes=ab_outcomes, arms=list(sc.arms), control=sc.control, metrics=infos, level=sc.level,
        seed=sc.seed, start=start, end=end,
        assignment_probabilities=None if mechanism and mechanism["mechanism"] in HIDDEN_PROPENSITY
        else probabilities, adaptive_assignment=adaptive,
        policies={a: PolicySpec(exp.arms[a].recommender, dict(exp.arms[a].options or {})) for a in sc.arms},
        items=items, slate_size=int(exp.slate_size), events=ab_events, looks=looks, output_dir=output_dir,
        segments=None if sc.population.twin else [str(s) for s in sc.population.segments],
        **_observational_inputs(sc, metrics, ab_events, mechanism or {}, end))


def _observational_inputs(sc: Scenario, metrics: dict[str, Metric], ab_events: WorldEvents,
                          mechanism: dict[str, Any], end: float) -> dict[str, Any]:
    """``instrument``, ``adoption``, ``panel`` from the mechanism's record and the declared ``graph``."""
    from counterfeed.core.causal_graph import scenario_graph
    from counterfeed.core.panel import world_panel

    out: dict[str, Any] = {"graph": scenario_graph(sc)}
    if "instrument" in mechanism:
        out["instrument"] = np.asarray(mechanism["instrument"], dtype=np.int64)
    if "adoption" in mechanism:
        out["adoption"] = np.asarray(mechanism["adoption"], dtype=np.float64)
        out["panel"] = world_panel(ab_events, metrics, out["adoption"], float(mechanism["period"]), end)
    return out


def requested_look_times(estimators: list[Estimator], duration: float) -> np.ndarray | None:
    """The union of the look times the estimators that declare ``requires_looks`` ask for, or None.

    ``duration`` is ``data.end - data.start``, the same value an estimator computes from its data.
    """
    wanted = [np.asarray(t, dtype=np.float64) for est in estimators if est.tags.requires_looks
              for t in [est.look_times(duration)] if t is not None]
    return np.unique(np.concatenate(wanted)) if wanted else None


def estimands_of(estimators: list[Estimator]) -> set[str]:
    """Every estimand the estimators declare they return (the truth stage computes their truth)."""
    return {k for est in estimators for k in est.tags.estimands}


def require_estimate_list(est: Estimator, out: Any, hook: str) -> list[Estimate]:
    """``out`` when it is a list of Estimates, else a PluginError naming ``est`` and its ``hook``."""
    if not isinstance(out, list) or not all(isinstance(e, Estimate) for e in out):
        raise PluginError(f"{hook} must return a list of Estimate objects", plugin=est.name, hook=hook)
    return out


def check_estimates(est: Estimator, out: Any, metrics: dict[str, MetricInfo] | None = None) -> list[Estimate]:
    """An estimator's output is a list of Estimates with numeric, ordered point and interval; a
    zero-width interval gets its "no variation observed" warning (:meth:`Estimate.flag_zero_width`), and
    an estimate of a metric whose ``MetricInfo.interference`` is set (``metrics``) gets it as a warning."""
    require_estimate_list(est, out, "estimate")
    for e in out:
        for field in ("point", "lower", "upper"):
            if not isinstance(getattr(e, field), numbers.Real):
                raise PluginError(f"Estimate.{field} must be a number, got {getattr(e, field)!r} "
                                  f"({e.metric}, {e.arm})", plugin=est.name, hook="estimate")
        vals = (e.lower, e.point, e.upper)
        if all(np.isfinite(vals)) and not (e.lower <= e.point <= e.upper):
            raise PluginError(f"interval [{e.lower:g}, {e.upper:g}] does not contain the point {e.point:g} "
                              f"({e.metric}, {e.arm})", plugin=est.name, hook="estimate")
    for e in out:
        e.flag_zero_width()  # again: an estimator may have changed the bounds after building the Estimate
        e.flag_unbounded()
        why = getattr((metrics or {}).get(e.metric), "interference", None)
        if why:
            msg = f"metric '{e.metric}': {why}"
            e.diagnostics = {**e.diagnostics, "warnings": [*e.diagnostics.get("warnings", []), msg],
                             "identified": False}
    return out


def srm(scenario: Scenario, ab_outcomes: pd.DataFrame, allocation: dict[str, Any] | None = None
        ) -> dict[str, Any]:
    """Sample-ratio-mismatch check of the A/B world's arm sizes against the expected shares."""
    counts = {a: int((ab_outcomes["arm"] == a).sum()) for a in scenario.arms}
    if allocation is not None:  # adaptive: expected shares are the recorded probabilities' means
        mean = np.nanmean(allocation["probabilities"], axis=0)
        return srm_check(counts, {a: float(mean[i]) for i, a in enumerate(scenario.arms)})
    if scenario.experiment.phases:  # the outcome table holds the phase-0 assignment
        first = phase_arms(scenario, 0, scenario.control)
        return srm_check(counts, {a: float(scenario.experiment.split[a]) if a in first else 0.0
                                  for a in scenario.arms})
    return srm_check(counts, {a: float(scenario.experiment.split[a]) for a in scenario.arms})
