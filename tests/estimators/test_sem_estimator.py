"""The scenario-side SEM estimator: validation at load time, and one small end-to-end fit (slow)."""

import json

import pytest

from counterfeed.core.runner import resolve
from counterfeed.core.scenario import load_scenario
from counterfeed.errors import ScenarioError

MODEL = """
      engagement =~ log1p(clicks) + log1p(dwell) + log1p(sessions)
      engagement ~ a*treatment
      retained   ~ b*engagement + c*treatment
      indirect := a*b
      total    := c + a*b
"""


def test_sem_syntax_errors_are_located_at_validation():
    sc = load_scenario("scenarios/sem_mediation.yaml")
    data = sc.to_dict()
    data["analysis"][1]["model"] = "engagement =~ clicks +\nengagement ~ ~ treatment"
    from counterfeed.core.scenario import Scenario

    bad = Scenario.from_dict(data, file="s.yaml")
    with pytest.raises(ScenarioError, match=r"analysis\[1\]\.model: SEM model: line 2"):
        resolve(bad)


@pytest.mark.slow
def test_sem_in_a_scenario_scores_the_total_effect(tmp_path):
    sc = load_scenario("scenarios/sem_mediation.yaml").with_overrides({
        "population.users": 600, "experiment.duration": "3d",  # structure is checked here, not accuracy
        "analysis": [{"estimator": "sem", "outcome": "retained", "model": MODEL, "draws": 200, "tune": 200,
                      "chains": 2}],
        "output.report": False})
    from counterfeed.core.runner import run

    res = run(sc, output_dir=tmp_path, workers=1)
    by = {e.diagnostics["quantity"]: e for e in res.estimates}
    assert {"a", "b", "c", "indirect", "total"} <= set(by)
    total = by["total"]
    assert total.metric == "retained" and total.estimand == "difference" and total.truth is not None
    assert by["indirect"].truth is None and by["indirect"].estimand == "sem:indirect"
    for e in res.estimates:
        assert e.lower <= e.point <= e.upper
        assert "r_hat" in e.diagnostics and "divergences" in e.diagnostics
    post = res.run_dir / "posterior-sem-treatment.nc"
    assert post.is_file()
    doc = json.loads((res.run_dir / "estimates.json").read_text())
    assert any(e["estimator"] == "sem" for e in doc["estimates"])
