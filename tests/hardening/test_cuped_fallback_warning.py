"""cuped's "ratio metric(s) ... left out" warning survives the run's per-metric fallback.

With ``metrics`` unset, cuped leaves the ratio metrics out and says so once, on its first estimate. When
one metric cannot be estimated (a ``ModelError``), the run re-estimates the others one at a time with
copies whose ``metrics`` option names them (``Estimator.for_metrics``): those copies leave nothing out,
so the warning was lost and the user never learnt that the ratio metrics had been skipped. The run now
asks the unrestricted estimator for its left-out warning (``note_left_out``) and attaches it once.
A third-party estimator that declares the same method gets the same treatment.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pandas as pd

from counterfeed import Estimate, Estimator, EstimatorTags, hookimpl
from counterfeed.core.contracts import Metric, MetricInfo
from counterfeed.core.estimation import AnalysisData
from counterfeed.core.runner import _estimate, run
from counterfeed.core.scenario import Scenario
from counterfeed.errors import ModelError
from counterfeed.plugins.estimators.classical import CUPED

LEFT_OUT = "ratio metric(s) 'ctr' (clicks / impressions) left out"


class SparseMetric(Metric):
    """A per-user mean observed for user 0 only: no arm but one has a user with a value, so cuped cannot
    estimate it (a ``ModelError``) and the run falls back to one metric at a time."""

    per_user_sessions = True
    name = "test-sparse"
    aggregation = "mean"

    def compute(self, events, start, end):
        out = np.full(events.n_users, np.nan)
        out[0] = 1.0
        return out


class LeaveOutEstimator(Estimator):
    """Third-party style (no built-in base): difference of arm means of the non-ratio metrics, with a
    warning naming the ratio metrics its default list leaves out, through the public ``note_left_out``."""

    name = "test-leave-out"
    tags = EstimatorTags(separable_metrics=True)

    def metrics_for(self, data):
        return list(self.options.metrics or [m for m, i in data.metrics.items() if i.kind != "ratio"])

    def note_left_out(self, data, estimates):
        left = [] if self.options.metrics else [m for m, i in data.metrics.items() if i.kind == "ratio"]
        if left and estimates:
            first = estimates[0]
            first.diagnostics = {**first.diagnostics, "warnings": [*first.diagnostics.get("warnings", []),
                                                                   f"left out: {', '.join(left)}"]}
        return estimates

    def estimate(self, data):
        df, out = data.outcomes, []
        for metric in self.metrics_for(data):
            means = {}
            for arm in data.arms:
                v = df.loc[df["arm"] == arm, metric].dropna().to_numpy(float)
                if v.size < 2:
                    raise ModelError(f"{self.name}: metric '{metric}', arm '{arm}': fewer than 2 values")
                means[arm] = v.mean()
            for arm in data.treatments:
                d = means[arm] - means[data.control]
                out.append(Estimate(self.name, metric, arm, data.control, d, d - 1.0, d + 1.0, level=0.95))
        return self.note_left_out(data, out)


class _Plugin:
    @hookimpl
    def register_metrics(self, register):
        register(SparseMetric)

    @hookimpl
    def register_estimators(self, register):
        register(LeaveOutEstimator)


@contextmanager
def _plugin():
    from counterfeed.core.plugins import get_registry

    reg = get_registry()
    name = reg.register_plugin(_Plugin(), name="test-cuped-fallback-plugin")
    try:
        yield
    finally:
        reg.unregister_plugin(name)


TINY = {"name": "tiny-cuped", "seed": 5, "population": {"users": 60, "dimensions": 4},
        "catalog": {"plugin": "synthetic", "items": 30, "topics": 3},
        "user_model": {"plugin": "choice", "visit_rate": 0.5},
        "experiment": {"arms": {"a": {"recommender": "popularity"}, "b": {"recommender": "random"}},
                       "duration": "1d", "pre_period": "1d", "slate_size": 3},
        "metrics": ["test-sparse", "clicks", "impressions", "ctr"], "analysis": [{"estimator": "cuped"}],
        "output": {"report": False}}


def _left_out(estimates, needle=LEFT_OUT):
    return [(i, w) for i, e in enumerate(estimates) for w in e.diagnostics.get("warnings", []) if needle in w]


def test_the_run_keeps_cupeds_left_out_warning_when_it_falls_back_to_one_metric_at_a_time():
    with _plugin():
        result = run(Scenario.from_dict(TINY), write=False, workers=1)
    est = result.estimates
    assert {e.metric for e in est} == {"clicks", "impressions"}  # ctr left out, test-sparse not estimable
    (line,) = result.manifest["unestimated"]
    assert "'test-sparse' by cuped" in line
    ((where, msg),) = _left_out(est)  # exactly once, on the first row
    assert where == 0 and "estimator 'ratio'" in msg
    assert est[0].diagnostics["skipped_ratio_metrics"] == ["ctr"]


def test_without_a_fallback_the_warning_is_unchanged():
    with _plugin():
        result = run(Scenario.from_dict({**TINY, "metrics": TINY["metrics"][1:]}), write=False, workers=1)
    assert "unestimated" not in result.manifest or not result.manifest["unestimated"]
    ((where, _),) = _left_out(result.estimates)
    assert where == 0 and result.estimates[0].diagnostics["skipped_ratio_metrics"] == ["ctr"]


def _data() -> AnalysisData:
    """clicks and impressions (sums), ctr (a ratio cuped leaves out), y (one value in arm 'b': not estimable)."""
    rng = np.random.default_rng(3)
    n = 40
    pre_c, pre_i = rng.poisson(3, n).astype(float), rng.poisson(30, n).astype(float)
    clicks, imps = pre_c + rng.poisson(1, n), pre_i + rng.poisson(5, n)
    y = np.where(np.arange(n) < n // 2, rng.normal(size=n), np.nan)
    y[-1] = 0.5
    df = pd.DataFrame({"user": np.arange(n), "arm": np.repeat(["a", "b"], n // 2), "segment": "all",
                       "y": y, "pre_y": y, "clicks": clicks, "impressions": imps, "ctr": clicks / imps,
                       "pre_clicks": pre_c, "pre_impressions": pre_i, "pre_ctr": pre_c / pre_i})
    metrics = {"y": MetricInfo("y", "mean"), "clicks": MetricInfo("clicks", "sum"),
               "impressions": MetricInfo("impressions", "sum"),
               "ctr": MetricInfo("ctr", "ratio", numerator="clicks", denominator="impressions")}
    return AnalysisData(outcomes=df, arms=["a", "b"], control="a", metrics=metrics, seed=1)


def test_the_fallback_attaches_the_warning_once_whichever_metric_fails():
    data = _data()
    unestimated: list[str] = []
    out = _estimate(CUPED(), data, unestimated)
    assert [u for u in unestimated if "'y' by cuped" in u] == unestimated and len(unestimated) == 1
    assert {e.metric for e in out} == {"clicks", "impressions"}
    ((where, _),) = _left_out(out)
    assert where == 0 and out[0].diagnostics["skipped_ratio_metrics"] == ["ctr"]
    named: list[str] = []  # metrics named: nothing left out, nothing said, fallback or not
    out = _estimate(CUPED(metrics=["y", "clicks"]), data, named)
    assert len(named) == 1 and not _left_out(out, "left out")


def test_a_third_party_estimators_left_out_warning_survives_the_fallback():
    data = _data()
    unestimated: list[str] = []
    out = _estimate(LeaveOutEstimator(), data, unestimated)
    assert {e.metric for e in out} == {"clicks", "impressions"} and len(unestimated) == 1
    assert _left_out(out, "left out: ctr") == [(0, "left out: ctr")]


def test_a_note_left_out_that_returns_no_estimates_is_a_plugin_error():
    import pytest

    from counterfeed.errors import PluginError

    class Broken(LeaveOutEstimator):
        name = "test-broken-note"

        def note_left_out(self, data, estimates):
            return None if self.options.metrics is None else estimates

    with pytest.raises(PluginError, match="note_left_out must return a list of Estimate objects"):
        _estimate(Broken(), _data(), [])
