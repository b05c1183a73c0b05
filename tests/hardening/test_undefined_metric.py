"""One metric an estimator cannot estimate (a per-user ratio whose denominator sums to 0 in an arm)
does not abort the run: the other metrics are estimated and published, and the one left out is named
in the manifest and on stderr. When no metric can be estimated the run still fails with the error.

The fallback is public: an estimator tagged ``separable_metrics`` is re-run one metric at a time through
``Estimator.metrics_for`` and ``Estimator.for_metrics``, so a third-party estimator gets it too."""

from __future__ import annotations

import pytest

from counterfeed.core.runner import run
from counterfeed.core.scenario import Scenario
from counterfeed.errors import ModelError
from counterfeed.testing import check_estimator
from tests.core.test_novelty_identification import TP2
from tests.plugins.per_metric import MeanGapEstimator, per_metric_plugin

# The tester's tp2.yaml (shared with the novelty test): in 1 day with 60 users nobody in arm 'b'
# clicks two topics, so unexpectedness (a ratio of per-user sums) has a zero denominator there.
TINY = {**TP2, "output": {"report": True}}


def test_an_undefined_metric_leaves_the_others_estimated(tmp_path, capfd):
    result = run(Scenario.from_dict(TINY), output_dir=tmp_path, workers=1)
    metrics = {e.metric for e in result.estimates}
    assert "clicks" in metrics and "unexpectedness" not in metrics
    (line,) = result.manifest["unestimated"]
    assert "unexpectedness" in line and "denominator sums to 0" in line and "diff-in-means" in line
    assert "warning: no estimate of metric 'unexpectedness'" in capfd.readouterr().err
    assert (result.run_dir / "manifest.json").is_file()


def test_when_no_metric_can_be_estimated_the_run_fails():
    doc = {**TINY, "metrics": ["unexpectedness"]}
    with pytest.raises(ModelError, match="denominator sums to 0"):
        run(Scenario.from_dict(doc), write=False, workers=1)


def test_a_third_party_estimator_gets_the_fallback(tmp_path):
    """A plugin estimator with no private hook: ``separable_metrics`` and the default ``for_metrics``."""
    doc = {**TINY, "analysis": [{"estimator": "test-mean-gap"}]}
    with per_metric_plugin():
        result = run(Scenario.from_dict(doc), output_dir=tmp_path, workers=1)
    assert {e.metric for e in result.estimates} == {"clicks"}
    (line,) = result.manifest["unestimated"]
    assert "'unexpectedness' by test-mean-gap" in line and "denominator sums to 0" in line


def test_an_estimator_that_cannot_be_restricted_still_fails():
    doc = {**TINY, "analysis": [{"estimator": "test-mean-gap-joint"}]}
    with per_metric_plugin(), pytest.raises(ModelError, match="denominator sums to 0"):
        run(Scenario.from_dict(doc), write=False, workers=1)


def test_for_metrics_is_public_and_conformant():
    est = MeanGapEstimator({"level": 0.9})
    one = est.for_metrics(["clicks"])
    assert type(one) is MeanGapEstimator and one.options.metrics == ["clicks"] and one.options.level == 0.9
    assert est.options.metrics is None  # a new estimator; this one is unchanged
    check_estimator(MeanGapEstimator)  # every rule, the for_metrics rule included
