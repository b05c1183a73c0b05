"""Every shipped scenario validates and runs end to end through the CLI (at a small population).

The CLI path matters: `counterfeed run` prints the per-arm summary and writes the report, which
`counterfeed.run(..., write=False)` skips. A scenario added to ``scenarios/`` is covered here
without a new test (`feedback_loop.yaml` once crashed in the summary on a population-level metric).
Scenarios whose analysis compiles a Bayesian SEM run in the slow suite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from counterfeed.cli import main
from counterfeed.core.scenario import load_scenario

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml"))
SMALL_USERS = 150


def _params():
    for path in SCENARIOS:
        slow = any(a.estimator == "sem" for a in load_scenario(path).analysis)
        yield pytest.param(path, id=path.stem, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("path", list(_params()))
def test_scenario_validates_and_runs_through_the_cli(path, tmp_path, capsys):
    main(["validate", str(path)])
    out = tmp_path / "runs"
    # noise replications of the per-user truth: 2 (the fewest that give a conditional effect) instead
    # of the scenario's R, which only repeats the same worlds (R is covered in tests/heterogeneity)
    fewer = ["--set", "truth.replications=2"] if (load_scenario(path).truth.replications or 0) > 2 else []
    main(["run", str(path), "--set", f"population.users={SMALL_USERS}", *fewer, "--out", str(out), "--quiet"])
    printed = capsys.readouterr().out
    (run_dir,) = list(out.iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert manifest["n_users"] == SMALL_USERS
    assert all(arm in printed for arm in load_scenario(path).arms)  # the per-arm summary was printed
    if load_scenario(path).output.report:
        assert (run_dir / "report.html").is_file()
