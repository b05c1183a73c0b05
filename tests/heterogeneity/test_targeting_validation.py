"""`validate` rejects a targeting section that cannot run: no CATE estimator to learn a rule from, an
estimator name that is not one, a non-finite threshold (one located error, exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from counterfeed.core.plan import resolve
from counterfeed.core.scenario import load_scenario
from counterfeed.errors import ScenarioError

TARGETING = Path(__file__).resolve().parents[2] / "scenarios" / "targeting.yaml"


@pytest.mark.parametrize("override, pattern", [
    ({"analysis": [{"estimator": "diff-in-means"}]}, r"targeting: no analysis estimator predicts per-user"),
    ({"targeting.estimators": ["diff-in-means"]},
     r"targeting.estimators\[0\]: 'diff-in-means' is not a CATE estimator"),
    ({"targeting.threshold": float("nan")}, r"targeting.threshold: must be finite"),
    ({"targeting.threshold": float("inf")}, r"targeting.threshold: must be finite"),
])
def test_targeting_that_cannot_run_is_rejected_at_validate(override, pattern):
    with pytest.raises(ScenarioError, match=pattern):
        resolve(load_scenario(TARGETING).with_overrides(override))


def test_the_shipped_targeting_scenario_validates():
    resolve(load_scenario(TARGETING))
