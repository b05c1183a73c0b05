"""A run with a CATE estimator scores its per-user effects against the per-user truth, writes
cate_scores.json / cate_curves.parquet / cate_effects.parquet and adds its report section."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

from counterfeed import hookimpl
from counterfeed.core.estimation import CATE, EstimatorTags
from counterfeed.core.plugins import get_registry
from counterfeed.core.runner import run
from counterfeed.core.scenario import Scenario
from counterfeed.plugins.estimators.cate import LinearInteractionCATE


class PrePeriodCATE(LinearInteractionCATE):
    """The linear interaction model on covariates made from the outcomes' pre-period columns (test only:
    it needs no covariates from the core)."""

    name = "test-cate-pre"
    tags = EstimatorTags(stochastic=True, estimands=(CATE, "difference"))

    def estimate(self, data):
        out = data.outcomes
        cov = out[["user", "segment"] + [c for c in out.columns if c.startswith("pre_")]].fillna(0.0)
        return super().estimate(replace(data, covariates=cov))


class _Plugin:
    @hookimpl
    def register_estimators(self, register):
        register(PrePeriodCATE)


SCENARIO = {
    "name": "cate-run", "seed": 5,
    "population": {"users": 300, "dimensions": 4, "segments": {"a": {"share": 0.5}, "b": {"share": 0.5, "activity": 2.0}}},
    "catalog": {"plugin": "synthetic", "items": 60, "topics": 4},
    "user_model": {"plugin": "choice"},
    "experiment": {"arms": {"control": {"recommender": "random"}, "treatment": {"recommender": "popularity"}},
                   "pre_period": "3d", "duration": "5d", "slate_size": 5},
    "metrics": ["clicks", "sessions", "ctr"],
    "analysis": [{"estimator": "test-cate-pre", "metrics": ["clicks"]}],
    "truth": {"replications": 2},
}


@pytest.fixture
def cate_plugin():
    reg = get_registry()
    name = reg.register_plugin(_Plugin(), name="test-cate-plugin")
    yield
    reg.unregister_plugin(name)


def test_run_scores_cate_estimates_and_reports_them(tmp_path, cate_plugin):
    result = run(Scenario.from_dict(SCENARIO), output_dir=tmp_path)
    cate = [e for e in result.estimates if e.estimand == CATE]
    assert len(cate) == 1
    scores = cate[0].diagnostics["cate_scores"]
    assert scores["truth_estimand"] == "conditional" and scores["n_users"] == 300
    assert scores["pehe"] > 0 and scores["pehe_baseline"] > 0
    rows = json.loads((result.run_dir / "cate_scores.json").read_text())
    assert rows[0]["estimator"] == "test-cate-pre" and len(rows[0]["deciles"]) == 10
    assert rows[0]["pehe"] == pytest.approx(scores["pehe"])
    assert len(pd.read_parquet(result.run_dir / "cate_effects.parquet")) == 300
    curves = pd.read_parquet(result.run_dir / "cate_curves.parquet")
    assert set(curves["q"].round(2)) >= {0.0, 0.5, 1.0}
    report = (result.run_dir / "report.md").read_text()
    assert "Heterogeneous effects (CATE)" in report and "cate-uplift-clicks-treatment" in report
    assert (result.run_dir / "figures").glob("cate-calibration-*.png")
