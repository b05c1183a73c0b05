"""`validate` rejects an `ope` analysis whose treatment arm cannot be evaluated off-policy (issue 14 item 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from counterfeed.core.runner import resolve
from counterfeed.core.scenario import load_scenario
from counterfeed.errors import ScenarioError

SCENARIO = """\
name: ope-check
seed: 1
population: {users: 50}
catalog: {plugin: synthetic, items: 30, topics: 3}
experiment:
  arms:
    control: {recommender: random}
    treatment: {recommender: TREATMENT}
  duration: 1d
  slate_size: 3
metrics: [clicks]
analysis:
  - estimator: ope
"""


def _scenario(tmp_path: Path, treatment: str):
    p = tmp_path / "s.yaml"
    p.write_text(SCENARIO.replace("TREATMENT", treatment))
    return load_scenario(str(p))


def test_validate_rejects_an_ope_target_without_action_probabilities(registry, tmp_path):
    sc = _scenario(tmp_path, "test-noprops")
    with pytest.raises(ScenarioError) as info:
        resolve(sc)
    msg = str(info.value)
    assert "s.yaml:8: experiment.arms.treatment.recommender" in msg
    assert "estimator 'ope' cannot evaluate arm 'treatment' offline" in msg
    assert "does not implement action_probabilities" in msg


@pytest.mark.parametrize("treatment", ["random", "{recommender: popularity, exploration: epsilon}"])
def test_validate_accepts_stochastic_builtins(registry, tmp_path, treatment):
    text = SCENARIO.replace("{recommender: TREATMENT}", treatment if treatment.startswith("{") else
                            f"{{recommender: {treatment}}}")
    p = tmp_path / "s.yaml"
    p.write_text(text)
    resolve(load_scenario(str(p)))
