"""Shared fixtures: small scenarios that run in a second or two."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

from counterfeed.core.scenario import Scenario  # noqa: E402

SMALL = {
    "name": "small",
    "seed": 11,
    "population": {"users": 300, "dimensions": 8},
    "catalog": {"plugin": "synthetic", "items": 120, "topics": 6},
    "user_model": {"plugin": "choice"},
    "experiment": {
        "arms": {"control": {"recommender": "popularity"}, "treatment": {"recommender": "random"}},
        "duration": "4d", "pre_period": "2d", "batch_window": "2h", "retrain_every": "1d",
        "slate_size": 5,
    },
    "output": {"report": False},
}


def scenario_file(path: str | Path, data: dict, **changes) -> Path:
    """``data`` with dotted-path ``changes`` (``{"experiment.split": {...}}``) written as YAML at ``path``."""
    import copy

    import yaml

    data = copy.deepcopy(data)
    for key, value in changes.items():
        node = data
        *head, last = key.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    path = Path(path)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def small_scenario(**overrides) -> Scenario:
    """The small scenario with dotted-path overrides."""
    sc = Scenario.from_dict(SMALL)
    return sc.with_overrides(overrides) if overrides else sc


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``counterfeed ARGS`` in this process as the console script runs it: (exit code, stdout, stderr)."""
    from counterfeed.cli import main

    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def small():
    return small_scenario
