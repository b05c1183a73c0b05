"""Multi-phase experiments: decision rules, the phase schema, and a run scored against the oracle."""

import copy
import re

import numpy as np
import pytest

from counterfeed.core.contracts import Estimate
from counterfeed.core.phases import decide, phase_assignment, phase_windows
from counterfeed.core.runner import resolve, run
from counterfeed.core.scenario import PhaseSpec, Scenario
from counterfeed.errors import ScenarioError
from tests.conftest import SMALL


def _est(arm, point, half, prob=None):
    return Estimate("x", "clicks", arm, "control", point, point - half, point + half, prob_better=prob)


# (rule, threshold, estimates, higher_is_better, expected choice)
RULES = [
    ("interval_excludes_zero", None, [_est("b", 0.5, 0.4), _est("c", 0.9, 0.8)], True, "c"),
    ("interval_excludes_zero", None, [_est("b", 0.5, 0.6)], True, "control"),
    ("interval_excludes_zero", None, [_est("b", -0.5, 0.4)], False, "b"),
    # z = 0.3 / (0.6 / 1.96) = 0.98 -> P(better) = 0.84
    ("prob_better", 0.8, [_est("b", 0.3, 0.6)], True, "b"),
    ("prob_better", 0.9, [_est("b", 0.3, 0.6)], True, "control"),
    ("prob_better", 0.9, [_est("b", 0.0, 0.6, prob=0.95)], True, "b"),
    # se = 0.1: loss = 0.1 * (pdf(2) - 2 * cdf(-2)) = 0.00085
    ("expected_loss", 0.001, [_est("b", 0.2, 0.196)], True, "b"),
    ("expected_loss", 0.0005, [_est("b", 0.2, 0.196)], True, "control"),
    ("expected_loss", 0.1, [_est("b", -0.2, 0.196)], True, "control"),
]


@pytest.mark.parametrize("rule,threshold,estimates,higher,expected", RULES)
def test_decision_rules(rule, threshold, estimates, higher, expected):
    spec = PhaseSpec(duration=1, rule=rule, threshold=threshold)
    chosen, rows = decide(spec, estimates, "control", higher)
    assert chosen == expected
    assert [r["arm"] for r in rows] == [e.arm for e in estimates]


def _phased(**exp):
    d = copy.deepcopy(SMALL)
    d["experiment"].pop("duration")
    d["experiment"]["arms"] = {"control": {"recommender": "random"}, "treatment": {"recommender": "popularity"},
                               "third": {"recommender": "random"}}
    d["experiment"]["phases"] = [{"duration": "2d", "metric": "clicks"},
                                 {"duration": "1d", "rule": "expected_loss", "threshold": 0.5, "metric": "clicks"}]
    d["experiment"].update(exp)
    d["analysis"] = []
    d["metrics"] = ["clicks", "sessions"]
    return d


BAD = [
    ({"duration": "5d"}, r"experiment: .*duration \(5d\) must equal the sum of the phase durations \(3d\)"),
    ({"phases": [{"duration": "1d", "challengers": ["nope"]}]}, r"challengers names unknown arm 'nope'"),
    ({"allocation": {"metric": "clicks"}}, r"phases and allocation cannot be combined"),
    ({"phases": [{"duration": "1d", "rule": "coin_flip"}]}, r"experiment\.phases\.0\.rule|phases\[0\]\.rule"),
    ({"phases": []}, r"at least one phase"),
]


@pytest.mark.parametrize("exp,pattern", BAD)
def test_bad_phase_specs(exp, pattern):
    with pytest.raises(ScenarioError, match=pattern):
        Scenario.from_dict(_phased(**exp))


@pytest.mark.parametrize("phase,pattern", [
    ({"duration": "3d", "metric": "dwell"}, r"experiment\.phases\[0\]\.metric: metric 'dwell' is not computed"),
    ({"duration": "3d", "estimator": "diff-in-meanz"}, r"unknown estimator 'diff-in-meanz'"),
])
def test_phase_metric_and_estimator_are_resolved(phase, pattern):
    sc = Scenario.from_dict(_phased(phases=[phase]))
    with pytest.raises(ScenarioError, match=pattern):
        resolve(sc)


def test_duration_defaults_to_the_sum_of_phases_and_round_trips():
    sc = Scenario.from_dict(_phased())
    assert sc.experiment.duration == 3.0
    assert phase_windows(sc) == [(2.0, 4.0), (4.0, 5.0)]
    again = Scenario.from_dict(__import__("yaml").safe_load(sc.to_yaml()))
    assert again.experiment.phases == sc.experiment.phases


def test_phase_zero_is_the_ordinary_assignment_and_later_phases_rerandomize():
    from counterfeed.core.experiment import world_assignment

    sc = Scenario.from_dict(_phased())
    assert np.array_equal(phase_assignment(sc, 0, "control"), world_assignment(sc, "ab"))
    p1 = phase_assignment(sc, 1, "treatment")
    assert set(np.unique(p1)) == {0, 1, 2}
    assert not np.array_equal(p1, world_assignment(sc, "ab"))


def test_phased_run_records_decisions_and_scores_them_against_the_oracle(tmp_path):
    sc = Scenario.from_dict(_phased(phases=[
        {"duration": "2d", "metric": "clicks", "challengers": ["treatment"]},
        {"duration": "1d", "rule": "expected_loss", "threshold": 0.5, "metric": "clicks"}]))
    res = run(sc, output_dir=tmp_path, write=True, workers=1)
    phases = res.manifest["phases"]
    assert [p["phase"] for p in phases] == [0, 1]
    assert phases[0]["control"] == "control" and phases[0]["challengers"] == ["treatment"]
    assert phases[1]["control"] == phases[0]["chosen"]
    assert set(phases[1]["challengers"]) == {"control", "treatment", "third"} - {phases[1]["control"]}
    out = res.outcomes
    for p in phases:
        for arm, value in p["arm_values"].items():
            assert np.isfinite(value)
        assert p["oracle_value"] == max(p["arm_values"].values())
    # phase 0 tests control vs treatment only: the SRM check expects nobody in 'third'
    assert res.srm["expected"].get("third", 0) == 0 and not res.srm["flagged"]
    summary = res.manifest["phase_value"]
    assert summary["oracle"] == pytest.approx(sum(p["oracle_value"] for p in phases))
    assert summary["realized"] == pytest.approx(sum(p["realized_value"] for p in phases))
    assert summary["regret"] == pytest.approx(summary["oracle"] - summary["realized"])
    # the realized value over the whole experiment equals the A/B world's mean clicks
    ab = out[out.world == "ab"].clicks.mean()
    assert summary["realized"] == pytest.approx(ab)
    import json

    on_disk = json.loads((res.run_dir / "manifest.json").read_text())
    assert on_disk["phases"][0]["decision"] in {"keep", "switch"}
    assert re.fullmatch(r"(keep|switch)", phases[1]["decision"])
