"""Break test 14's findings in the core, each with the behaviour it asked for.

- ``targeting`` with a CATE estimator and ``truth.replications`` left out (a run then computes the
  default number of noise replications) crashed after every world with a traceback: the targeting
  report read the option (None) instead of the run's count.
- A hashing embedder's ``dim`` had no upper bound: ``dim: 100000000`` passed validate and the run
  failed building the catalog with NumPy's unlocated MemoryError.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from counterfeed.core.scenario_heterogeneity import DEFAULT_REPLICATIONS
from tests.conftest import SMALL, cli, scenario_file


def _write(tmp_path: Path, **changes) -> Path:
    base = {**SMALL, "output": {"report": False, "dir": str(tmp_path / "runs")}, "metrics": ["clicks"]}
    return scenario_file(tmp_path / "s.yaml", base, **changes)


def test_targeting_without_truth_replications_uses_the_runs_count(tmp_path, capsys):
    path = _write(tmp_path, **{"population.features": {"dimensions": 2},
                               "analysis": [{"estimator": "t-learner", "metrics": ["clicks"]}],
                               "targeting": {"metric": "clicks"}})
    code, _, err = cli(capsys, "run", path, "--quiet")
    assert code == 0 and "Traceback" not in err, err
    manifest = json.loads(next((tmp_path / "runs").glob("*/manifest.json")).read_text())
    reports = manifest["targeting"]
    reports = reports if isinstance(reports, list) else [reports]
    assert reports and all(r["oracle_replications"] == DEFAULT_REPLICATIONS for r in reports), reports


def test_a_hashing_dimension_beyond_its_bound_is_refused_first(tmp_path, capsys):
    catalog = {"plugin": "synthetic-text", "items": 30, "topics": 3,
               "embedder": {"model": "hashing", "dim": 100_000_000}}
    path = _write(tmp_path, catalog=catalog)
    for verb in ("validate", "run"):
        code, _, err = cli(capsys, verb, path, *(["--quiet"] if verb == "run" else []))
        assert code == 2 and "catalog.embedder.dim: must be an integer >= 2 and <= " in err, (verb, err)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("phase, message", [
    ({"rule": "prob_better", "threshold": 5}, "prob_better's threshold is a probability in (0, 1) (got 5)"),
    ({"rule": "expected_loss", "threshold": -1}, "expected_loss's threshold is a loss in metric units, >= 0 (got -1)"),
    ({"threshold": 0.5}, "rule interval_excludes_zero takes no threshold"),
])
def test_a_phase_threshold_must_fit_its_rule(tmp_path, capsys, phase, message):
    path = _write(tmp_path, **{"experiment.phases": [{"duration": "2d", **phase}, {"duration": "2d"}],
                               "experiment.duration": None})
    for verb in ("validate", "run"):
        code, _, err = cli(capsys, verb, path, *(["--quiet"] if verb == "run" else []))
        assert code == 2 and "experiment.phases[0]: threshold: " + message in err, (verb, err)
    assert not (tmp_path / "runs").exists()
