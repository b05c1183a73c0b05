"""Conformance rules for estimators (:class:`counterfeed.Estimator`).

Data come from :func:`counterfeed.testing.fixtures.make_analysis_data`: 400 users in two arms with
``clicks`` and ``impressions`` (sums), ``retained`` (binary) and ``ctr`` (ratio of clicks to
impressions), each with its ``pre_`` column. Beside the outcomes, the data carry exactly the inputs
the estimator's ``tags`` (:class:`~counterfeed.core.estimation.EstimatorTags`) declare -- an event
log, the arms' policies, per-look values, assignment probabilities -- and nothing else, so every rule
also checks that the declared inputs suffice. The tags select the rules: ``missing_input_is_clear``
runs for an estimator that requires inputs, ``no_global_randomness`` for a stochastic one, ``for_metrics``
for one tagged ``separable_metrics``. Every rule
records warnings: an estimator must not let a numpy/scipy warning escape on any of these inputs.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

import numpy as np

from counterfeed.core.estimation import POLICY_VALUE, POLICY_VALUE_METRIC, AnalysisData, Estimate, EstimatorTags
from counterfeed.errors import CounterfeedError
from counterfeed.testing._core import Broken, Rule, Subject, common_rules, record_warnings, warning_text
from counterfeed.testing.fixtures import ANALYSIS_WINDOW, make_analysis_data

__all__ = ["ESTIMATOR_RULES", "tags_of", "analysis_data_for"]

#: the value each declared input takes when it is missing
_MISSING: dict[str, Any] = {"events": None, "policies": {}, "looks": None, "assignment_probabilities": None,
                            "covariates": None, "instrument": None, "panel": None, "graph": None}


def tags_of(cls: type) -> EstimatorTags:
    """The class's declared :class:`EstimatorTags` (the default tags when it declares none)."""
    tags = getattr(cls, "tags", None)
    return tags if isinstance(tags, EstimatorTags) else EstimatorTags()


def analysis_data_for(s: Subject, seed: int, **kwargs: Any) -> AnalysisData:
    """:func:`make_analysis_data` with exactly the inputs the estimator's tags declare."""
    tags = tags_of(s.cls)
    times = None
    if tags.requires_looks:
        times = s.call(s.new(), "look_times", float(ANALYSIS_WINDOW[1] - ANALYSIS_WINDOW[0]))
        if times is None or np.asarray(times).size == 0:
            raise Broken("requires_looks is declared but look_times() asks for no look")
    data = make_analysis_data(seed=seed, with_events=tags.requires_events, look_times=times, **kwargs)
    keep = set(tags.required_inputs())
    if "policies" not in keep:
        data = replace(data, policies={}, items=None, slate_size=None)
    if "panel" not in keep:
        data = replace(data, adoption=None)
    return replace(data, **{k: v for k, v in _MISSING.items() if k not in keep and k != "policies"})


def _estimate(s: Subject, data: AnalysisData, est: Any = None) -> list[Estimate]:
    est = s.new() if est is None else est
    with record_warnings() as records:
        out = s.call(est, "estimate", data)
    if records:
        raise Broken(f"estimate emitted a warning: {warning_text(records)}")
    if not isinstance(out, list) or not all(isinstance(e, Estimate) for e in out):
        raise Broken(f"estimate must return a list of Estimate, got {type(out).__name__}")
    return out


def _key(e: Estimate) -> tuple[Any, ...]:
    return (e.estimator, e.metric, e.arm, e.control, e.segment, e.estimand)


def _finite(e: Estimate) -> bool:
    return all(isinstance(v, (int, float, np.floating)) and math.isfinite(v) for v in (e.point, e.lower, e.upper))


def _check_estimate(e: Estimate, data: AnalysisData) -> None:
    label = f"estimate {e.metric}/{e.arm}" + (f"/{e.segment}" if e.segment else "")
    if not _finite(e):
        raise Broken(f"{label}: point and interval must be finite numbers, got "
                     f"point={e.point!r} lower={e.lower!r} upper={e.upper!r}")
    if not (e.lower <= e.point <= e.upper):
        raise Broken(f"{label}: needs lower <= point <= upper, got {e.lower:g} <= {e.point:g} <= {e.upper:g}")
    for field in ("p_value", "prob_better"):
        v = getattr(e, field)
        if v is not None and not (0.0 <= float(v) <= 1.0):
            raise Broken(f"{label}: {field} must be in [0, 1], got {v!r}")


def _level_option(s: Subject) -> float | None:
    return s.options.get("level")


def _rule_estimates(s: Subject) -> None:
    data = analysis_data_for(s, seed=1)
    out = _estimate(s, data)
    if not out:
        raise Broken("estimate returned no estimates for two arms and four metrics")
    want_level = _level_option(s) or data.level
    tags = tags_of(s.cls)
    metrics = list(data.metrics) + ([POLICY_VALUE_METRIC] if POLICY_VALUE in tags.estimands else [])
    for e in out:
        if not isinstance(e.estimator, str) or not e.estimator:
            raise Broken("Estimate.estimator must name the estimator")
        if e.metric not in metrics:
            raise Broken(f"estimate for unknown metric {e.metric!r} (metrics: {', '.join(metrics)})")
        family = e.estimand.startswith("att(e=") and "att(e=k)" in tags.estimands  # event-time estimands
        if e.estimand not in tags.estimands and ":" not in e.estimand and not family:
            raise Broken(f"estimand {e.estimand!r} is not declared in tags.estimands {tags.estimands} "
                         "(nor a model quantity named 'model:quantity')")
        if e.arm not in data.treatments or e.control != data.control:
            raise Broken(f"estimate compares {e.arm!r} with {e.control!r}; expected a treatment arm "
                         f"({', '.join(data.treatments)}) against the control {data.control!r}")
        if abs(e.level - want_level) > 1e-12:
            raise Broken(f"estimate has level {e.level}, expected {want_level}")


def _rule_ordered(s: Subject) -> None:
    data = analysis_data_for(s, seed=2)
    for e in _estimate(s, data):
        _check_estimate(e, data)


def _rule_level(s: Subject) -> None:
    if _level_option(s) is not None:  # the option overrides the data's level: test without it
        s = Subject(s.kind, s.cls, {k: v for k, v in s.options.items() if k != "level"})
    wide = {_key(e): e for e in _estimate(s, analysis_data_for(s, seed=3, level=0.95))}
    narrow = {_key(e): e for e in _estimate(s, analysis_data_for(s, seed=3, level=0.8))}
    strictly = 0
    for key, a in narrow.items():
        if abs(a.level - 0.8) > 1e-12:
            raise Broken(f"with data.level = 0.8 the estimate reports level {a.level}")
        b = wide.get(key)
        if b is None or not (_finite(a) and _finite(b)):
            continue
        wa, wb = a.upper - a.lower, b.upper - b.lower
        if wa > wb + 1e-9 * max(1.0, abs(wb)):
            raise Broken(f"the 80% interval of {a.metric}/{a.arm} ({wa:g} wide) is wider than the 95% one ({wb:g})")
        strictly += wa < wb
    if narrow and not strictly:
        raise Broken("no 80% interval is narrower than its 95% interval: the level is ignored")


def _rule_deterministic(s: Subject) -> None:
    a = {_key(e): e for e in _estimate(s, analysis_data_for(s, seed=4))}
    b = {_key(e): e for e in _estimate(s, analysis_data_for(s, seed=4))}
    if a.keys() != b.keys():
        raise Broken("two runs on the same data returned different sets of estimates")
    for key, ea in a.items():
        eb = b[key]
        if not np.allclose([ea.point, ea.lower, ea.upper], [eb.point, eb.lower, eb.upper], rtol=1e-9, atol=0,
                           equal_nan=True):
            raise Broken(f"two runs on the same data differ for {ea.metric}/{ea.arm}: "
                         f"{ea.point:g} [{ea.lower:g}, {ea.upper:g}] vs {eb.point:g} [{eb.lower:g}, {eb.upper:g}] "
                         "(seed randomness from data.seed)")


def _rule_input_unchanged(s: Subject) -> None:
    data = analysis_data_for(s, seed=5)
    before = data.outcomes.copy(deep=True)
    _estimate(s, data)
    if not before.equals(data.outcomes):
        raise Broken("estimate modified data.outcomes; work on a copy")


def _degenerate(case: str) -> Any:
    def check(s: Subject) -> None:
        data = analysis_data_for(s, seed=6, degenerate=case)
        est = s.new()
        try:
            with record_warnings() as records:
                out = est.estimate(data)
        except CounterfeedError:
            return  # a clear, user-facing error is a correct answer to degenerate data
        except Exception as exc:
            raise Broken(f"on degenerate data ({case}) estimate raised {type(exc).__name__}: {exc}; raise a "
                         "CounterfeedError (e.g. DataError) with a clear message or return finite estimates") from exc
        if records:
            raise Broken(f"on degenerate data ({case}) estimate emitted a warning: {warning_text(records)}")
        for e in out:
            if _declined_interval(e):
                continue  # no interval from zero observed variance, said in a warning: an honest answer
            try:
                _check_estimate(e, data)
            except Broken as exc:
                raise Broken(f"on degenerate data ({case}): {exc}") from None
    return check


def _declined_interval(e: Estimate) -> bool:
    """A finite point with no interval (both bounds NaN, the Estimate contract's "no interval") and a
    warning saying why ("no interval: ...")."""
    warns = (e.diagnostics or {}).get("warnings") or []

    def absent(b) -> bool:
        return b is None or (isinstance(b, float) and math.isnan(b))

    return (e.point is not None and math.isfinite(e.point) and absent(e.lower) and absent(e.upper)
            and any(str(w).startswith("no interval") for w in warns))


def _rule_metrics_option(s: Subject) -> None:
    if "metrics" not in s.cls.Options.model_fields:
        return
    refused = []
    for metric in ("clicks", "retained", "ctr"):  # an estimator may refuse a kind of metric it cannot handle
        sub = Subject(s.kind, s.cls, {**s.options, "metrics": [metric]})
        try:
            got = {e.metric for e in _estimate(sub, analysis_data_for(sub, seed=7))}
        except Broken as exc:
            if isinstance(exc.__cause__, CounterfeedError):
                refused.append(f"{metric}: {exc.__cause__}")
                continue
            raise
        if got - {metric}:
            raise Broken(f"with metrics=[{metric!r}] it estimated {sorted(got)}")
        return
    raise Broken("refused every single metric it was asked for: " + "; ".join(refused))


def _rule_for_metrics(s: Subject) -> None:
    data = analysis_data_for(s, seed=10)
    est = s.new()
    full = {_key(e): e for e in _estimate(s, data, est)}
    names = list(s.call(est, "metrics_for", data))
    if not names:
        raise Broken("metrics_for returned no metric")
    for m in names:
        one = s.call(est, "for_metrics", [m])
        if one is None:
            raise Broken(f"separable_metrics is declared but for_metrics([{m!r}]) returned None")
        got = _estimate(s, data, one)
        if not got and any(k[1] == m for k in full):
            raise Broken(f"for_metrics([{m!r}]) estimated nothing, but the full run estimates {m!r}")
        for e in got:
            f = full.get(_key(e))
            if e.metric != m or f is None:
                raise Broken(f"for_metrics([{m!r}]) gave an estimate of {e.metric!r} ({e.estimand}, {e.arm}) "
                             "that the full run does not give")
            if not np.allclose([e.point, e.lower, e.upper], [f.point, f.lower, f.upper], rtol=1e-9, atol=0,
                               equal_nan=True):
                raise Broken(f"for_metrics([{m!r}]) gives {e.point:g} [{e.lower:g}, {e.upper:g}] for "
                             f"{e.metric}/{e.arm} ({e.estimand}), the full run {f.point:g} [{f.lower:g}, "
                             f"{f.upper:g}]; separable_metrics needs the same estimates (key randomness by metric)")


def _rule_missing_input(s: Subject) -> None:
    for name in tags_of(s.cls).required_inputs():
        data = replace(analysis_data_for(s, seed=8), **{name: _MISSING[name]})
        try:
            with record_warnings():
                s.new().estimate(data)
        except CounterfeedError:
            continue  # a clear, user-facing error names what is missing
        except Exception as exc:
            raise Broken(f"without its declared input data.{name} estimate raised {type(exc).__name__}: {exc}; "
                         "raise a CounterfeedError (e.g. DataError) naming the missing input") from exc
        raise Broken(f"without its declared input data.{name} estimate still returned; a required input that "
                     "is missing must be a CounterfeedError (or do not declare it required)")


def _rule_no_global_randomness(s: Subject) -> None:
    runs = []
    for global_seed in (0, 12345):
        np.random.seed(global_seed)
        random.seed(global_seed)
        runs.append({_key(e): e for e in _estimate(s, analysis_data_for(s, seed=9))})
    a, b = runs
    if a.keys() != b.keys() or any(
            not np.allclose([ea.point, ea.lower, ea.upper], [b[k].point, b[k].lower, b[k].upper], rtol=1e-9,
                            atol=0, equal_nan=True) for k, ea in a.items()):
        raise Broken("results change with NumPy's global random state; draw from a generator keyed by "
                     "data.seed (e.g. Keys(data.seed).numpy_generator(...))")


def _requires_inputs(cls: type) -> str | None:
    return None if tags_of(cls).required_inputs() else "applies to estimators whose tags require inputs"


def _separable(cls: type) -> str | None:
    return None if tags_of(cls).separable_metrics else "applies to estimators tagged separable_metrics"


def _stochastic(cls: type) -> str | None:
    return None if tags_of(cls).stochastic else "applies to estimators tagged stochastic"


ESTIMATOR_RULES: list[Rule] = common_rules("estimator") + [
    Rule("returns_estimates", "Returns Estimates for treatment arms vs the control, at the data's level.",
         _rule_estimates),
    Rule("interval_ordered", "Finite point and interval with lower <= point <= upper; p-values in [0, 1].",
         _rule_ordered),
    Rule("level_honoured", "The 80% interval is no wider than the 95% one, and narrower for some estimate.",
         _rule_level),
    Rule("deterministic", "The same data give the same estimates.", _rule_deterministic),
    Rule("input_unchanged", "`estimate` does not modify `data.outcomes`.", _rule_input_unchanged),
    Rule("degenerate_all_zeros", "All-zero outcomes give a CounterfeedError or finite estimates, never a "
         "raw exception or a warning.", _degenerate("zeros")),
    Rule("degenerate_one_user_per_arm", "One user per arm gives a CounterfeedError or finite estimates, never "
         "a raw exception or a warning.", _degenerate("one-per-arm")),
    Rule("metrics_option", "The `metrics` option limits the metrics analysed.", _rule_metrics_option),
    Rule("for_metrics", "Restricted to each metric of `metrics_for(data)` by `for_metrics([m])`, it gives "
         "exactly the full run's estimates of `m` (the run's per-metric fallback relies on it).",
         _rule_for_metrics, _separable),
    Rule("missing_input_is_clear", "Without an input its tags require, `estimate` raises a CounterfeedError.",
         _rule_missing_input, _requires_inputs),
    Rule("no_global_randomness", "Stochastic estimators draw from generators keyed by data.seed, not from "
         "NumPy's global random state.", _rule_no_global_randomness, _stochastic),
]
