"""Estimates do not depend on the process's hash seed.

DoWhy identifies adjustment sets as Python sets, whose iteration order follows ``PYTHONHASHSEED``,
and its estimators took their regressors in that order: the AIPW estimate of
``scenarios/observational_selection.yaml`` moved in its last digits from one process to the next, and
its ``adjustment_set`` was listed in another order (a break test's finding). Every shipped scenario
was swept under two hash seeds; this was the only one that differed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "observational_selection.yaml"


def _estimates(hash_seed: int, out: Path) -> str:
    env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
    done = subprocess.run([sys.executable, "-m", "counterfeed", "run", str(SCENARIO), "--set", "population.users=300",
                           "--quiet", "--no-report", "--format", "csv", "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow  # two fresh processes run the observational scenario, 17 s
def test_observational_estimates_are_the_same_under_any_hash_seed(tmp_path):
    first, second = _estimates(1, tmp_path / "a"), _estimates(2, tmp_path / "b")
    assert "aipw" in first and '""adjustment_set"": [""segment[heavy]"", ""pre_sessions"", ""pre_clicks""]' in first
    assert first == second
