"""`validate` rejects what a CATE estimator's `estimate` would, before anything is simulated (tester17
M3): a modifier that is not a covariate, a ratio metric, individual intervals on a metric that is not a
per-session sum or on a 1-day experiment. One located message at the analysis entry."""

from __future__ import annotations

from pathlib import Path

import pytest

from counterfeed.core.plan import resolve
from counterfeed.core.scenario import load_scenario
from counterfeed.errors import ScenarioError
from counterfeed.plugins.estimators._cate_data import scenario_covariates

TARGETING = Path(__file__).resolve().parents[2] / "scenarios" / "targeting.yaml"
SMALL = {"population.users": 200, "experiment.duration": "3d", "truth.replications": 2}
LINEAR = {"estimator": "linear-cate", "metrics": ["clicks"], "modifiers": ["segment"], "individual_intervals": "posterior"}


@pytest.mark.parametrize("override, pattern", [
    ({"analysis": [{"estimator": "causal-forest", "metrics": ["clicks"], "modifiers": ["feature_9"]}]},
     r"analysis\[0\]: causal-forest: modifiers: 'feature_9' is not a covariate \(covariates: pre_sessions"),
    ({"metrics": ["clicks", "ctr"], "analysis": [{"estimator": "dr-learner", "metrics": ["clicks", "ctr"]}]},
     r"analysis\[0\]: dr-learner: ratio metric\(s\) ctr have no per-user effect"),
    ({"metrics": ["clicks", "retained"], "targeting.metric": "retained", "analysis": [{**LINEAR, "metrics": ["retained"]}]},
     r"analysis\[0\]: linear-cate: individual_intervals: metric 'retained' is not a per-session sum"),
    ({"experiment.duration": "1d", "analysis": [LINEAR]},
     r"analysis\[0\]: linear-cate: individual_intervals: the experiment lasts 1 days"),
])
def test_what_estimate_rejects_validate_rejects_first(override, pattern):
    with pytest.raises(ScenarioError, match=pattern) as err:
        resolve(load_scenario(TARGETING).with_overrides({**SMALL, **override}))
    assert err.value.field == "analysis[0]" and not err.value.also  # located, one message


def test_run_and_validate_agree_on_the_covariates():
    import numpy as np
    import pandas as pd

    from counterfeed.core.estimation import AnalysisData
    from counterfeed.core.contracts import MetricInfo
    from counterfeed.plugins.estimators._cate_data import covariate_matrix

    sc = load_scenario(TARGETING)
    cols = {c: np.zeros(4) for c in ["pre_sessions", "pre_impressions", "pre_clicks", "pre_dwell", "pre_ctr", "tenure"]}
    cols.update({f"feature_{k}": np.zeros(4) for k in range(sc.population.features.dimensions)})
    cov = pd.DataFrame({"user": np.arange(4), "segment": list(sc.population.segments)[::-1] * 2, **cols})
    data = AnalysisData(outcomes=pd.DataFrame({"user": np.arange(4), "arm": ["control", "treatment"] * 2}),
                        arms=["control", "treatment"], control="control",
                        metrics={"clicks": MetricInfo("clicks", "mean")}, covariates=cov)
    assert covariate_matrix(data, "test")[1] == scenario_covariates(sc)
    assert scenario_covariates(sc)[-1] == "segment=niche"


def test_a_modifier_in_the_file_is_located_at_its_line(tmp_path):
    text = TARGETING.read_text().replace("    modifiers: [segment]\n    individual_intervals: conformal\n  - estimator: linear",
                                         "    modifiers: [feature_9]\n    individual_intervals: conformal\n  - estimator: linear", 1)
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match="'feature_9' is not a covariate") as err:
        resolve(load_scenario(path))
    assert err.value.file is not None and err.value.line is not None
