"""Shared fixtures: a fake-replication scenario and the tiny real scenario used with the engine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # so worker processes (fork) and subprocesses import _fakes by name
    sys.path.insert(0, str(HERE))

from _fakes import fake_scenario  # noqa: E402,F401  (re-exported for fixtures)

TINY_YAML = """\
name: tiny
seed: 11
population: {users: 120}
catalog: {plugin: synthetic, items: 200, topics: 6}
experiment:
  arms:
    control: {recommender: popularity}
    treatment: {recommender: random}
  duration: 2d
metrics: [clicks, sessions, ctr]
analysis:
  - estimator: diff-in-means
  - estimator: ratio
output: {dir: runs}
"""


@pytest.fixture
def tiny_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_YAML.replace("dir: runs", f"dir: {tmp_path / 'runs'}"))
    return path


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(HERE.parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, str(HERE), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env
