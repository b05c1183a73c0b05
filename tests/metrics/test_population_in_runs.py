"""Population-level metrics in a run: true global effect next to the naive A/B claim, never an estimate."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from tests.conftest import small_scenario

import counterfeed
from counterfeed.errors import ScenarioError

METRICS = ["clicks", "diversity", "coverage", "exposure-gini", "homogenization"]


@pytest.fixture(scope="module")
def result():
    sc = small_scenario(**{"metrics": METRICS})
    return counterfeed.run(sc, write=False, workers=1)


def test_population_metrics_get_truth_and_naive_claim_not_estimates(result):
    pop = result.manifest["population_metrics"]
    assert "not identified" in pop["note"]
    effects = {e["metric"]: e for e in pop["effects"]}
    assert set(effects) == {"coverage", "exposure-gini", "homogenization"}
    for e in effects.values():
        assert e["estimable_from_ab"] is False
        assert e["true_effect"] == pytest.approx(e["world_arm"] - e["world_control"])
        assert e["naive_ab_claim"] == pytest.approx(e["ab_arm"] - e["ab_control"])
        assert e["naive_error"] == pytest.approx(e["naive_ab_claim"] - e["true_effect"])
    # random (treatment) shows far more of the catalog than popularity (control) over 4 days
    assert effects["coverage"]["true_effect"] > 0.3
    assert effects["exposure-gini"]["true_effect"] < 0
    # estimators analyse the per-user metrics only; the ratio metric diversity is one of them
    assert {e.metric for e in result.estimates} == {"clicks", "diversity"}
    assert "coverage" not in result.outcomes.columns
    assert {"diversity-sum", "slates"} <= set(result.outcomes.columns)
    values = [(v["world"], v["arm"]) for v in pop["values"] if v["metric"] == "coverage"]
    assert ("ab", "control") in values and ("all-treatment", None) in values
    json.dumps(result.manifest, allow_nan=False)  # strict JSON


def test_long_term_metrics_in_the_time_series(result):
    ts = result.timeseries
    for metric in ("diversity", "coverage", "homogenization"):
        rows = ts[(ts["metric"] == metric) & (ts["world"] == "all-control")]
        assert sorted(rows["day"].unique().tolist()) == [2.0, 3.0, 4.0, 5.0]  # daily over the 4-day experiment
    assert "clicks" in set(ts["metric"])  # the daily engagement series is still there


def test_a_truth_row_for_per_user_but_not_population_metrics(result):
    assert set(result.truth["metric"]) == {"clicks", "diversity"}


def test_estimator_naming_a_population_metric_is_refused(tmp_path):
    sc = small_scenario(**{"metrics": METRICS,
                           "analysis": [{"estimator": "diff-in-means", "metrics": ["clicks", "coverage"]}]})
    with pytest.raises(ScenarioError, match=r"analysis\[0\]\.metrics\[1\].*population-level.*not identified"):
        counterfeed.run(sc, write=False)
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(sc.to_dict()))
    out = subprocess.run([sys.executable, "-m", "counterfeed", "validate", str(path)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 2 and "analysis[0].metrics[1]" in out.stderr and "population-level" in out.stderr


def test_population_values_are_nan_free_numbers_or_null(result):
    for v in result.manifest["population_metrics"]["values"]:
        assert v["value"] is None or math.isfinite(v["value"])


def test_report_has_the_long_term_section(tmp_path):
    sc = small_scenario(**{"metrics": METRICS, "output.report": True, "output.dir": str(tmp_path)})
    res = counterfeed.run(sc, workers=1)
    md = (res.run_dir / "report.md").read_text()
    section = md.split("## Long-term and population-level metrics", 1)[1]
    assert "not identified" in section.split("##", 1)[0]
    assert "True global effect" in section and "Naive A/B claim" in section
    cov = next(e for e in res.manifest["population_metrics"]["effects"] if e["metric"] == "coverage")
    assert f"{cov['true_effect']:+.4g}" in section
    assert list((res.run_dir / "figures").glob("long-term*.png"))
