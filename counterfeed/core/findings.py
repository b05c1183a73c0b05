"""What a run shows: the headline, and how much of each estimate's error is interference.

An A/B test measures an arm's effect at the experiment's traffic split; the simulator's truth is the
global effect of shipping the arm to everyone (all-arm world vs all-control world). With interference
(recommenders trained on pooled logs, popularity counted over all users, ...) the two differ. For an
estimate with a known truth, ``interference_bias`` = estimate - global effect splits exactly into

- the **interference component** ``I``: the estimand's contrast (difference ``v_t - v_c`` or
  relative ``v_t / v_c - 1``) of the A/B world's outcomes, minus the same contrast of the same users'
  outcomes in the counterfactual worlds (each user in the world of the arm they were assigned). It
  needs no model: the worlds share keyed randomness, so the two outcomes of a user differ only by
  what the other arm's users did to the system;
- the **estimation error**: the rest (the randomization's sampling error and any estimator bias).

An interval that misses the global effect missed *because of interference* when, shifted by ``-I``,
it covers it; otherwise it missed *because of the estimator*. :func:`assess` scores every estimate
this way and :func:`headline` turns a :class:`RunResult` into the sentences that lead the report and
the summary of ``counterfeed run``. ``v`` is a metric's group value (:func:`group_value`: a mean per
user, or a ratio of sums).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from counterfeed.core.contracts import Estimate, MetricInfo
from counterfeed.core.display import estimator_label, fmt, fmt_p, level_text, num, repeated_estimators
from counterfeed.core.experiment import AB_WORLD, counterfactual_world
from counterfeed.core.outcomes import group_value
from counterfeed.core.plugins import get_registry
from counterfeed.core.results import RunResult
from counterfeed.errors import CounterfeedError

__all__ = ["Assessed", "assess", "confounded_warning", "flag_confounded", "headline", "main_estimates",
           "mechanism_of", "reports_naive", "NAIVE_KEYS", "allocation_of", "allocation_warning",
           "models_allocation", "ALLOCATION_KEYS"]

#: estimands whose misses :attr:`Assessed.miss` attributes to interference or the estimator
ADDITIVE = ("difference",)

#: estimands whose A/B-world contrast can be computed from per-user outcomes
_CONTRASTS: dict[str, Callable[[float, float], float]] = {
    "difference": lambda t, c: t - c,
    "relative": lambda t, c: t / c - 1.0 if c != 0 else math.nan,
}


@dataclass(frozen=True)
class Assessed:
    """One estimate, its interference component (None: not computable) and why its interval missed."""

    estimate: Estimate
    interference: float | None

    @property
    def bias(self) -> float | None:
        """Estimate minus the global effect (``interference_bias``); None without a truth."""
        return num(self.estimate.error)

    @property
    def estimation_error(self) -> float | None:
        return None if self.bias is None or self.interference is None else self.bias - self.interference

    @property
    def miss(self) -> str | None:
        """None (covered, or no truth), ``"interference"``, ``"estimator"`` or ``"unknown"``.

        Only an additive estimand (:data:`ADDITIVE`, the difference) is attributed: shifting its interval
        by the interference component leaves the counterfactual worlds' own sampling noise, which the
        A/B interval's width roughly matches. A ratio (``relative``) is not additive: its counterfactual
        contrast divides by the all-control world's mean, whose noise the A/B interval does not reflect
        (on ``interference_pooled`` at 400 users, relative intervals shifted by the interference component
        covered 44-78% of 200 replications against 96-99% for the differences), so its miss is
        ``"unknown"`` rather than blamed on the estimator."""
        e = self.estimate
        if e.covered is not False or e.truth is None:
            return None
        if (self.interference is None or num(e.lower) is None or num(e.upper) is None
                or e.estimand not in ADDITIVE):
            return "unknown"
        inside = e.lower - self.interference <= e.truth <= e.upper - self.interference
        return "interference" if inside else "estimator"


def assess(result: RunResult) -> list[Assessed]:
    """Every estimate of ``result`` with its interference component, in the estimates' order."""
    parts = _interference(result)
    return [Assessed(e, parts.get((e.metric, e.arm, e.control, e.estimand, e.segment)))
            for e in result.estimates]


def _infos(result: RunResult) -> dict[str, MetricInfo]:
    """The metrics' descriptions, from the installed plugins ({} when one is no longer installed)."""
    try:
        reg = get_registry()
        return {name: reg.create("metric", name, opts).info() for name, opts in result.scenario.metric_specs}
    except CounterfeedError:
        return {}


def _interference(result: RunResult) -> dict[tuple, float]:
    o = result.outcomes
    if o.empty or not {"world", "user", "arm"} <= set(o.columns) or result.manifest.get("phases"):
        return {}  # with phases, a user's arm changes during the A/B world: no single counterpart
    wanted = {(e.metric, e.arm, e.control, e.estimand, e.segment) for e in result.estimates
              if e.truth is not None and e.estimand in _CONTRASTS}
    infos = _infos(result) if wanted else {}
    if not infos:
        return {}
    worlds = {str(w): f.set_index("user") for w, f in o.groupby("world", sort=False)}
    ab = worlds.get(AB_WORLD)
    out: dict[tuple, float] = {}
    groups: dict[tuple, tuple] = {}  # (arm, control, segment) -> the four groups, shared by the metrics
    for key in wanted:
        metric, arm, control, estimand, segment = key
        cf_t, cf_c = worlds.get(counterfactual_world(arm)), worlds.get(counterfactual_world(control))
        if ab is None or cf_t is None or cf_c is None or metric not in infos:
            continue
        if (arm, control, segment) not in groups:
            sel = ab if segment is None else ab[ab["segment"].astype(str) == segment]
            t_ab, c_ab = sel[sel["arm"] == arm], sel[sel["arm"] == control]
            groups[arm, control, segment] = (t_ab, c_ab, cf_t.reindex(t_ab.index), cf_c.reindex(c_ab.index))
        t_ab, c_ab, t_cf, c_cf = groups[arm, control, segment]
        info, f = infos[metric], _CONTRASTS[estimand]
        try:
            value = (f(group_value(t_ab, info), group_value(c_ab, info))
                     - f(group_value(t_cf, info), group_value(c_cf, info)))
        except (KeyError, ZeroDivisionError):
            continue
        if math.isfinite(value):
            out[key] = value
    return out


# -- the headline -----------------------------------------------------------------------------------
def main_estimates(estimates: list[Estimate], randomized: bool = True, adaptive: bool = False) -> list[Estimate]:
    """The headline estimates: first metric, first estimator, difference, all users, each arm. Under a
    non-randomized design an estimator that fits it (an observational estimator: it reports the naive
    comparison in ``diagnostics["naive..."]``) comes first, whatever its estimand (ATE, ATT, LATE); under
    adaptive allocation (``adaptive``) an estimator that weights by the recorded assignment probabilities
    (:func:`models_allocation`) comes first."""
    cands = [e for e in estimates if e.estimand == "difference" and e.segment is None and num(e.point) is not None]
    design = [e for e in estimates if reports_naive(e) and e.segment is None and e.estimand in
              ("difference", "att", "late") and num(e.point) is not None]
    if adaptive:
        design = [e for e in cands if models_allocation(e)]
        randomized = False
    cands = cands if randomized or not design else design
    if not cands:
        return []
    metric, estimator = cands[0].metric, cands[0].estimator
    return [e for e in cands if e.metric == metric and e.estimator == estimator]


def _p_text(x: Any) -> str:
    text = fmt_p(x)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def headline(result: RunResult, assessed: list[Assessed] | None = None) -> list[str]:
    """The sentences that lead the report: the conclusion per arm, the interference finding, how
    the intervals fared against the truth (and why the misses missed), and a sample-ratio alarm."""
    assessed = assess(result) if assessed is None else assessed
    by_id = {id(a.estimate): a for a in assessed}
    mech, alloc = mechanism_of(result.scenario), allocation_of(result.scenario)
    mains = main_estimates(result.estimates, mech == "randomized", alloc is not None)
    failed = list(dict.fromkeys(e.estimator for e in result.estimates  # design-based, no point (NOT IDENTIFIED)
                                if reports_naive(e) and e.segment is None and num(e.point) is None))
    out = [_non_randomized(mech, mains, failed)] if mech != "randomized" else []
    if alloc is not None:
        out.append(_adaptive(alloc, mains))
    repeated = repeated_estimators((e.estimator, e.analysis) for e in result.estimates)
    out += [_conclusion(e, by_id.get(id(e)), estimator_label(e.estimator, e.analysis, repeated)) for e in mains]
    if mech != "staggered":  # a rollout's partial exposure is not interference between arms
        out += _interference_lines(result, assessed)
    judged = [a for a in assessed if a.estimate.covered is not None]
    # an unbounded interval (an Anderson-Rubin set, an extrapolation without overlap) covers any truth:
    # counting it as covered would flatter the tally
    scored = [a for a in judged if _bounded(a.estimate)]
    unbounded = len(judged) - len(scored)
    scored, repeats = _distinct_intervals(scored)
    if scored:
        k = sum(bool(a.estimate.covered) for a in scored)
        level = num(result.manifest.get("level")) or result.scenario.level
        levels = level_text((a.estimate.level for a in scored), level)
        s = f"{k} of {len(scored)} intervals with a known truth covered it (nominal {levels})"
        misses = [a.miss for a in scored if a.miss]
        n_unknown = misses.count("unknown")
        if len(misses) > n_unknown:
            n_int = misses.count("interference")
            s += (f"; of the {len(misses)} that missed, {n_int} missed because of interference (shifted by "
                  f"the interference component, they cover the truth) and {misses.count('estimator')} "
                  "because of the estimator")
            if n_unknown:
                s += f"; {n_unknown} cannot be attributed (relative estimands, or no interference component)"
        if repeats:  # a CATE learner's average-effect row is its difference row again
            s += (f"; {repeats} row{'s' if repeats > 1 else ''} repeating another row's interval of the same "
                  "analysis (a CATE learner's cate and difference rows) counted once")
        if unbounded:
            s += (f"; {unbounded} unbounded confidence set{'s' if unbounded > 1 else ''} (the whole line, or two "
                  "rays) not counted")
        out.append(s + ".")
    elif unbounded:
        out.append(f"{unbounded} confidence set{'s' if unbounded > 1 else ''} with a known truth "
                   f"{'are' if unbounded > 1 else 'is'} unbounded (the whole line, or two rays) and not counted.")
    srm = result.srm or {}
    if srm.get("flagged"):
        out.append(f"Sample ratio mismatch detected ({_p_text(srm.get('p_value'))}): "
                   "the assignment is suspect, and so are the estimates.")
    return out


def _bounded(e: Any) -> bool:
    """Both bounds of ``e``'s interval are finite numbers."""
    return num(e.lower) is not None and num(e.upper) is not None


#: the diagnostics in which an estimator that models a non-randomized design reports the naive
#: comparison beside its own (the observational estimators; ``did-staggered``: the whole period)
NAIVE_KEYS = ("naive", "naive_whole_period")


def reports_naive(e: Estimate) -> bool:
    """An estimator that models the assignment design: it reports the naive comparison beside its
    own in one of :data:`NAIVE_KEYS`. Other ``naive_*`` diagnostics (``sequential``'s fixed-horizon
    bounds, ``adaptive-ipw``'s unweighted point) do not make an estimate design-based."""
    return any(k in (e.diagnostics or {}) for k in NAIVE_KEYS)


#: the diagnostic in which an estimator that weights by the recorded assignment probabilities of an
#: adaptive allocation (``adaptive-ipw``) reports the unweighted comparison beside its own
ALLOCATION_KEYS = ("naive_point",)


def models_allocation(e: Estimate) -> bool:
    """An estimator that accounts for adaptive allocation: it reports the unweighted comparison beside its
    own in one of :data:`ALLOCATION_KEYS` (``adaptive-ipw``)."""
    return any(k in (e.diagnostics or {}) for k in ALLOCATION_KEYS)


def allocation_of(scenario: Any) -> str | None:
    """The method of the scenario's adaptive allocation (``experiment.allocation``), None without one."""
    alloc = getattr(scenario.experiment, "allocation", None)
    return None if alloc is None else str(getattr(alloc, "method", None) or "adaptive")


def _distinct_intervals(assessed: list[Any]) -> tuple[list[Any], int]:
    """``assessed`` without a CATE learner's ``cate`` row where it repeats the interval and truth of the
    same entry's ``difference`` row for that metric, arm and segment (the learner reports its average
    effect twice: one interval, which the tally must not count twice); and how many were dropped. Rows
    of other estimands are never merged, even with equal bounds (a zero-width difference and relative)."""
    seen: set[tuple[Any, ...]] = set()
    out = []
    for a in sorted(assessed, key=lambda a: a.estimate.estimand == "cate"):  # the difference rows first
        e = a.estimate
        estimand = "difference" if e.estimand == "cate" else e.estimand
        key = (e.estimator, e.analysis, e.metric, e.arm, e.segment, estimand, num(e.lower), num(e.upper),
               num(e.truth))
        if key not in seen:
            seen.add(key)
            out.append(a)
    return out, len(assessed) - len(out)


def allocation_warning(method: str) -> str:
    """The warning on an estimate that compares adaptively allocated arms as if the split were fixed."""
    return (f"naive: arms were allocated adaptively (allocation: {method}): each arm's share of new users "
            "changed during the run with the outcomes seen so far, so users who arrived at different times "
            "(heavy users arrive first) are in the arms in different proportions and this unweighted "
            "comparison of the arms is confounded by arrival time (docs/interactive.md); adaptive-ipw weights "
            "each user by the recorded assignment probabilities")


def mechanism_of(scenario: Any) -> str:
    """The scenario's assignment mechanism (``randomized`` without ``experiment.assignment``)."""
    return str(getattr(getattr(scenario.experiment, "assignment", None), "mechanism", None) or "randomized")


def confounded_warning(mech: str) -> str:
    """The warning on an estimate that compares the arms as if randomized when they were not."""
    return (f"naive: assignment was not randomized (mechanism: {mech}); this comparison of the arms "
            "is confounded")


def flag_confounded(estimates: list[Estimate], mech: str, allocation: str | None = None) -> None:
    """Under a non-randomized ``mech`` (``experiment.assignment.mechanism``), add
    :func:`confounded_warning` to the ``diagnostics["warnings"]`` of every estimate whose estimator
    does not model the design (:func:`reports_naive` is false: diff-in-means, CUPED, the Bayesian
    comparison...), so that the JSON output, ``estimates.json`` and ``estimates.csv`` carry it on
    the row, not only the report and the headline. Under adaptive ``allocation``
    (``experiment.allocation``'s method) add :func:`allocation_warning` to every estimate whose estimator
    does not weight by the assignment probabilities (:func:`models_allocation` is false). Idempotent; a
    no-op for ``randomized`` without allocation."""
    flags = []
    if mech != "randomized":
        flags.append((confounded_warning(mech), reports_naive))
        # a back-door estimate whose graph names no confounder is the plain comparison (break test 11)
        flags.append((empty_adjustment_warning(mech), lambda e: not _adjusts_nothing(e)))
    if allocation is not None:
        flags.append((allocation_warning(allocation), models_allocation))
    for msg, models_design in flags:
        for e in estimates:
            warns = list((e.diagnostics or {}).get("warnings") or [])
            if not models_design(e) and msg not in warns:
                e.diagnostics = {**(e.diagnostics or {}), "warnings": [*warns, msg]}


def _adjusts_nothing(e: Estimate) -> bool:
    """A back-door estimate (``diagnostics.adjustment_set``) whose adjustment set is empty."""
    diag = e.diagnostics or {}
    return "adjustment_set" in diag and not diag["adjustment_set"]


def empty_adjustment_warning(mech: str) -> str:
    """The warning on a back-door estimate with an empty adjustment set under a non-randomized design."""
    return (f"naive: assignment was not randomized (mechanism: {mech}) and the declared graph names no "
            "confounder, so the adjustment set is empty and this estimate is the plain difference in means: "
            "confounded unless the graph is right that nothing causes both the treatment and the outcome "
            "(check the graph against what drove assignment)")


def _non_randomized(mech: str, mains: list[Estimate], failed: Sequence[str] = ()) -> str:
    if mains and reports_naive(mains[0]):
        e = mains[0]
        name = {"difference": "ATE", "att": "ATT", "late": "LATE"}.get(e.estimand, e.estimand)
        return (f"Assignment was not randomized (mechanism: {mech}): a plain comparison of the arms is "
                f"confounded, so the headline is {e.estimator}'s {name} estimate, which relies on the "
                "design's identifying assumptions (docs/observational.md).")
    if failed:  # the design's estimators are in the analysis, but identified nothing in this run
        return (f"Assignment was not randomized (mechanism: {mech}): {', '.join(failed)} could not estimate the "
                "effect in this run (NOT IDENTIFIED: see its warnings), so the estimate below is a naive "
                "comparison of the arms, confounded by who took the treatment: not an estimate to act on.")
    return (f"Assignment was not randomized (mechanism: {mech}): the estimate below is a naive comparison of "
            "the arms, confounded by who took the treatment; add an estimator that fits the design (aipw, "
            "iv-2sls, did-staggered; docs/observational.md).")


def _adaptive(method: str, mains: list[Estimate]) -> str:
    if mains and models_allocation(mains[0]):
        return (f"Arms were allocated adaptively (allocation: {method}): a plain comparison of the arms is "
                f"confounded by arrival time, so the headline is {mains[0].estimator}'s estimate, which weights "
                "each user by the recorded assignment probabilities (docs/interactive.md).")
    return (f"Arms were allocated adaptively (allocation: {method}): the estimate below is an unweighted "
            "comparison of the arms, confounded by arrival time (each arm's share of new users changed during "
            "the run); add adaptive-ipw, which weights by the recorded assignment probabilities "
            "(docs/interactive.md).")


def _conclusion(e: Estimate, a: Assessed | None, name: str | None = None) -> str:
    """One estimate's sentence; ``name``: the estimator as the tables name it (its entry when repeated)."""
    name = name or e.estimator
    lo, hi, p = num(e.lower), num(e.upper), float(e.point)
    verb = "changed" if lo is None or hi is None or lo <= 0 <= hi else ("raised" if p > 0 else "lowered")
    amount = fmt(abs(p)) if verb != "changed" else fmt(p, signed=True)
    s = (f"{e.arm} {verb} {e.metric} by {amount} vs {e.control} "
         f"({e.level:.0%} interval {fmt(lo)} to {fmt(hi)}, {name})")
    unidentified = (e.diagnostics or {}).get("identified") is False  # e.g. proceed_when_unidentifiable
    if lo is None or hi is None:  # e.g. an unbounded Anderson-Rubin set: the point is not a finding
        s = (f"{e.arm} vs {e.control} on {e.metric}: {name} gives no finite {e.level:.0%} interval (point "
             f"{fmt(p, signed=True)}){'; NOT IDENTIFIED by these data' if unidentified else ''}, not an "
             "estimate to act on (see its warnings)")
    else:
        if verb == "changed":
            s += ", not distinguishable from zero"
        if unidentified:
            s += "; NOT IDENTIFIED, not an estimate to act on (see its warnings)"
        weak = next((str(w) for w in (e.diagnostics or {}).get("warnings") or []
                     if str(w).startswith("weak instrument")), None)
        if weak:  # the headline's own number rests on it: say so here, not only under the table
            s += f"; {weak.split(';')[0]}, so the interval is wide and the point unstable"
    if str((e.diagnostics or {}).get("point_estimand", "")).endswith("[identified]"):  # did-staggered, cells left out
        s += ("; PARTLY IDENTIFIED: it averages only the treated cells with a comparison group, not the whole "
              "rollout (see its warning), and is scored against the truth over those cells")
    if e.truth is None:
        s += "; the true effect is not known for this estimand."
    elif not _bounded(e) and e.covered is not None:  # the whole line, or two rays (an Anderson-Rubin set)
        s += (f"; the true effect was {fmt(e.truth)}, " + ("inside the unbounded confidence set, which is not "
              "counted as covering it." if e.covered else "in the gap between the confidence set's two rays."))
    elif e.covered:
        s += f"; the true effect was {fmt(e.truth)}, inside the interval."
    else:
        s += f"; the true effect was {fmt(e.truth)}, outside the interval"
        why = a.miss if a is not None else "unknown"
        s += {"interference": " because of interference, not because of the estimator (see below).",
              "estimator": " because of the estimator (sampling error or bias), not only of interference."
              }.get(why or "", ".")
    return s[0].upper() + s[1:]


def _interference_lines(result: RunResult, assessed: list[Assessed]) -> list[str]:
    """One sentence per main estimate whose error has an interference component larger than its
    estimation error, or whose interval missed because of it."""
    out = []
    mains = {id(e) for e in main_estimates(result.estimates, mechanism_of(result.scenario) == "randomized",
                                           allocation_of(result.scenario) is not None)}
    for a in assessed:
        e = a.estimate
        if id(e) not in mains or a.bias is None or a.interference is None:
            continue
        if a.miss != "interference" and abs(a.interference) <= abs(a.estimation_error or 0.0):
            continue
        direction = "overstates" if a.bias > 0 else "understates"
        out.append(f"Interference: the A/B test measures the effect of {e.arm} at this traffic split, not "
                   f"the effect of shipping it to everyone. It {direction} the global effect on {e.metric} "
                   f"by {fmt(abs(a.bias))} (interference_bias {fmt(a.bias, signed=True)}): "
                   f"{fmt(a.interference, signed=True)} from interference between the arms and "
                   f"{fmt(a.estimation_error, signed=True)} from estimation.")
    return out

