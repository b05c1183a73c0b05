"""The observational estimators' scenario checks: `validate` rejects a design they cannot analyse with
one located error (exit 2), before anything is simulated."""

from __future__ import annotations

from pathlib import Path

import pytest

from counterfeed.core.plan import resolve
from counterfeed.core.scenario import load_scenario
from counterfeed.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[2]


def scenario_with(name: str, estimator: dict):
    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    return sc.with_overrides({"analysis": [estimator]})


@pytest.mark.parametrize("name, estimator, pattern", [
    ("observational_hidden", {"estimator": "backdoor-regression"},
     r"graph: no valid adjustment set for estimator 'backdoor-regression'.*unobserved taste"),
    ("observational_selection", {"estimator": "iv-2sls"},
     r"experiment.assignment.mechanism: estimator 'iv-2sls' needs an encouragement design"),
    ("observational_selection", {"estimator": "twfe"},
     r"experiment.assignment.mechanism: estimator 'twfe' needs a staggered design"),
    ("staggered_rollout", {"estimator": "aipw"}, r"graph: .*needs a causal graph"),
])
def test_validate_rejects_designs_the_estimator_cannot_analyse(name, estimator, pattern):
    with pytest.raises(ScenarioError, match=pattern):
        resolve(scenario_with(name, estimator))


@pytest.mark.parametrize("name, estimator", [
    ("observational_selection", {"estimator": "aipw"}),
    ("observational_hidden", {"estimator": "backdoor-ipw", "proceed_when_unidentifiable": True}),
    ("observational_hidden", {"estimator": "iv-2sls"}),
    ("staggered_rollout", {"estimator": "did-staggered"}),
])
def test_validate_accepts_designs_the_estimator_can_analyse(name, estimator):
    resolve(scenario_with(name, estimator))


@pytest.mark.parametrize("estimator", ["did-staggered", "twfe"])
def test_a_rollout_where_everyone_adopts_at_once_is_not_identified(estimator):
    sc = load_scenario(ROOT / "scenarios" / "staggered_rollout.yaml").with_overrides({
        "analysis": [{"estimator": estimator}],
        "experiment.assignment.cohorts": [{"at": "2d", "share": 1.0}]})
    with pytest.raises(ScenarioError, match=r"experiment.assignment.cohorts: .*every user adopts at the same "
                                            r"date.*not identified"):
        resolve(sc)
    staggered = sc.with_overrides({"experiment.assignment.cohorts": [{"at": "2d", "share": 0.5},
                                                                     {"at": "4d", "share": 0.5}]})
    resolve(staggered)  # everyone adopts, but the later cohort is the comparison until it does


@pytest.mark.parametrize("name", ["observational_selection", "observational_hidden", "staggered_rollout"])
def test_cate_estimators_refuse_non_randomized_designs(name):
    with pytest.raises(ScenarioError, match=r"experiment.assignment.mechanism: estimator 'dr-learner' needs "
                                            r"randomized assignment"):
        resolve(scenario_with(name, {"estimator": "dr-learner"}))


def test_a_nudge_that_changes_nobody_gives_no_finite_late_interval(tmp_path):
    """An encouragement whose nudge moves nobody's opt-in (nudge_effect 0: both potential opt-ins are
    equal for every user, so there are no compliers): iv-2sls reports the Anderson-Rubin set, which
    is unbounded -- null bounds in estimates.json -- with a loud warning, and the first-stage F."""
    import json

    from counterfeed.core.runner import run

    sc = load_scenario(ROOT / "scenarios" / "observational_hidden.yaml").with_overrides({
        "population.users": 300, "experiment.pre_period": "3d", "experiment.duration": "4d", "catalog.items": 150,
        "experiment.assignment.nudge_effect": 0.0, "output.dir": str(tmp_path), "output.report": False,
        "analysis": [{"estimator": "iv-2sls", "metrics": ["clicks"]}]})
    out = run(sc, write=True, quiet=True)
    assert set(out.manifest["assignment"]["compliance"]) <= {"always-taker", "never-taker"}
    doc = json.loads((out.run_dir / "estimates.json").read_text())
    (e,) = [e for e in doc["estimates"] if e["estimator"] == "iv-2sls"]
    assert e["lower"] is None and e["upper"] is None
    assert e["diagnostics"]["first_stage_f"] < 1.959963984540054 ** 2
    assert any("WEAK INSTRUMENT" in w and "not bounded" in w for w in e["diagnostics"]["warnings"])


@pytest.mark.slow  # a run with its report (~10 s)
def test_aipw_reports_an_interval_for_the_sample_ate_beside_the_population_one(tmp_path):
    """estimates.json carries diagnostics.sample_interval (finite, around the point) and the report
    has its own paragraph for it."""
    import json

    from counterfeed.core.runner import run

    sc = load_scenario(ROOT / "scenarios" / "observational_selection.yaml").with_overrides({
        "population.users": 300, "experiment.pre_period": "3d", "experiment.duration": "4d", "catalog.items": 150,
        "output.dir": str(tmp_path), "analysis": [{"estimator": "aipw", "refute": False, "metrics": ["clicks"]}]})
    out = run(sc, write=True, quiet=True)
    est = json.loads((out.run_dir / "estimates.json").read_text())
    est = est["estimates"] if isinstance(est, dict) else est
    e = next(r for r in est if r["estimator"] == "aipw")
    s = e["diagnostics"]["sample_interval"]
    assert s["lower"] < e["point"] < s["upper"] and s["se"] > 0
    assert 0.0 <= e["diagnostics"]["heterogeneity_r2"] <= 1.0
    report = (out.run_dir / "report.md").read_text()
    assert "Interval for the sample ATE" in report and "Imbens 2004" in report
