"""Tester16's report defects (MEDIUM 6-8, LOW 1): a non-randomized run must not read like an A/B
test. The headline prefers the estimator that fits the design and says assignment was not
randomized; the diagnostics flag the naive comparisons; no split is stated; the sample-ratio check
does not speak of a planned split; a rollout's gap is not blamed on interference; diagnostics tables
never cut numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from counterfeed.core.contracts import Estimate
from counterfeed.core.findings import headline
from counterfeed.core.report import render_report
from counterfeed.core.results import RunResult
from counterfeed.core.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]


def _result(name: str, estimates: list[Estimate]) -> RunResult:
    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    srm = {"chi2": 0.5, "df": 1, "p_value": 0.48, "flagged": False, "observed": {"control": 50, "treatment": 50},
           "expected": {"control": 50.0, "treatment": 50.0}}
    return RunResult(scenario=sc, seed=1, estimates=estimates, truth=pd.DataFrame(), srm=srm,
                     outcomes=pd.DataFrame(), timeseries=pd.DataFrame(), manifest={"level": 0.95})


def _naive() -> Estimate:
    e = Estimate("diff-in-means", "clicks", "treatment", "control", 4.0, 2.8, 5.2)
    e.score(2.4)
    return e


def test_a_selection_run_leads_with_the_adjusted_estimate_and_says_assignment_was_not_randomized(tmp_path):
    adjusted = Estimate("aipw", "clicks", "treatment", "control", 2.5, 1.0, 4.0,
                        diagnostics={"naive": {"point": 4.0, "lower": 2.8, "upper": 5.2}})
    adjusted.score(2.4)
    res = _result("observational_selection", [_naive(), adjusted])
    lines = headline(res)
    assert lines[0].startswith("Assignment was not randomized (mechanism: selection)")
    assert "the headline is aipw's ATE estimate" in lines[0]
    assert lines[1].startswith("Treatment raised clicks by 2.5 vs control") and "aipw" in lines[1]
    assert not any("diff-in-means" in line for line in lines[:2])
    (tmp_path / "manifest.json").write_text("{}")
    md = render_report(res, tmp_path)["markdown"].read_text(encoding="utf-8")
    assert "Arms and split" not in md and "50%" not in md
    assert "assigned by mechanism 'selection' (no planned split)" in md
    assert "planned split" not in md.replace("no planned split", "")
    assert "No estimator reported a warning" not in md
    assert ("diff-in-means · clicks · treatment: naive: assignment was not randomized (mechanism: selection)"
            in md)
    assert "aipw · clicks · treatment: naive" not in md


def test_a_run_with_only_the_naive_estimate_says_it_is_confounded():
    lines = headline(_result("observational_selection", [_naive()]))
    assert lines[0].startswith("Assignment was not randomized (mechanism: selection): the estimate below is a "
                               "naive comparison")


def test_a_staggered_headline_does_not_blame_interference(tmp_path):
    att = Estimate("did-staggered", "clicks", "treatment", "control", 0.58, 0.32, 0.85, estimand="att",
                   diagnostics={"naive_whole_period": {"point": 7.5},
                                "pre_trend_estimates": {"-5": -0.04692642481234567891, "-4": 0.123456789012345678,
                                                        **{str(-k): 0.1 * k for k in range(6, 40)}}})
    att.score(0.54)
    naive = _naive()
    naive.diagnostics["interference_bias"] = 2.46  # the all-at-start world differs from the rollout
    res = _result("staggered_rollout", [naive, att])
    lines = headline(res)
    assert "the headline is did-staggered's ATT estimate" in lines[0]
    assert not any("interference" in line.lower() for line in lines)
    (tmp_path / "manifest.json").write_text("{}")
    md = render_report(res, tmp_path)["markdown"].read_text(encoding="utf-8")
    diag = md[md.index("## Diagnostics"):]
    assert "…" not in diag and "-0.04692642481234568" in diag and '"-39": 3.9000000000000004' in diag


def test_a_randomized_run_is_unchanged(tmp_path):
    from tests.conftest import small_scenario

    e = _naive()
    res = RunResult(scenario=small_scenario(metrics=["clicks"]), seed=1, estimates=[e], truth=pd.DataFrame(),
                    srm={"chi2": 0.5, "df": 1, "p_value": 0.48, "flagged": False}, outcomes=pd.DataFrame(),
                    timeseries=pd.DataFrame(), manifest={"level": 0.95})
    assert headline(res)[0].startswith("Treatment raised clicks by 4 vs control")
    (tmp_path / "manifest.json").write_text("{}")
    md = render_report(res, tmp_path)["markdown"].read_text(encoding="utf-8")
    assert "Arms and split" in md and "Arm sizes match the planned split" in md
    assert "No estimator reported a warning" in md


def test_the_confounding_warning_is_on_each_naive_row_of_the_output(tmp_path):
    """Not only in the headline and the report: every estimate of an estimator that compares the
    arms as randomized carries the warning in its diagnostics (JSON, estimates.json, estimates.csv),
    and the report lists it once."""
    import json

    from counterfeed.core.findings import confounded_warning, flag_confounded
    from counterfeed.core.runner import run

    sc = load_scenario(ROOT / "scenarios" / "observational_selection.yaml").with_overrides({
        "population.users": 150, "experiment.duration": "3d",
        "analysis": [{"estimator": "diff-in-means", "metrics": ["clicks"]}]})
    res = run(sc, output_dir=tmp_path)
    msg = confounded_warning("selection")
    assert res.estimates and all(msg in e.diagnostics["warnings"] for e in res.estimates)
    run_dir = next(tmp_path.iterdir())
    saved = json.loads((run_dir / "estimates.json").read_text())
    rows = saved["estimates"] if isinstance(saved, dict) else saved
    assert rows and all(msg in r["diagnostics"]["warnings"] for r in rows)
    assert msg in (run_dir / "estimates.csv").read_text()
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert md.count(f"diff-in-means · clicks · treatment: {msg}") == 1
    # idempotent; randomized runs and estimators that model the design are left alone
    e, adjusted = _naive(), Estimate("aipw", "clicks", "treatment", "control", 2.5, 1.0, 4.0,
                                     diagnostics={"naive": {"point": 4.0}})
    flag_confounded([e, adjusted], "selection")
    flag_confounded([e, adjusted], "selection")
    assert e.diagnostics["warnings"] == [msg] and "warnings" not in adjusted.diagnostics
    plain = _naive()
    flag_confounded([plain], "randomized")
    assert "warnings" not in plain.diagnostics


def test_other_naive_diagnostics_do_not_make_an_estimate_design_based():
    """sequential's naive_lower/naive_upper and adaptive-ipw's naive_point are not the observational
    estimators' naive comparison: under selection such estimates get the warning and never lead."""
    from counterfeed.core.findings import confounded_warning, flag_confounded, reports_naive

    seq = Estimate("sequential", "clicks", "treatment", "control", 2.5, 1.0, 4.0,
                   diagnostics={"naive_lower": 1.2, "naive_upper": 3.8, "naive_rejected_any_day": True})
    ipw = Estimate("adaptive-ipw", "clicks", "treatment", "control", 2.4, 1.1, 3.7, diagnostics={"naive_point": 2.6})
    assert not reports_naive(seq) and not reports_naive(ipw)
    flag_confounded([seq, ipw], "selection")
    assert all(confounded_warning("selection") in e.diagnostics["warnings"] for e in (seq, ipw))
    lines = headline(_result("observational_selection", [seq]))
    assert lines[0].startswith("Assignment was not randomized (mechanism: selection): the estimate below is a "
                               "naive comparison")
