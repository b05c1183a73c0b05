"""The scenario of the sharding checks (tests/scaling/test_shards*.py, benchmarks/shard_identity.py).

Matrix factorization retrained daily against a Thompson-sampling bandit (online updates every
window), a pre-period and two segments: every kind of state a shard boundary could break.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from counterfeed.core.scenario import Scenario


def sharded_scenario(users: int = 300, *, days: float = 3, dimensions: int = 8, items: int = 120,
                     window: str = "3h", factors: int = 4, epochs: int = 3, seed: int = 7,
                     **execution) -> Scenario:
    data = {
        "name": "sharded", "seed": seed,
        "population": {"users": users, "dimensions": dimensions,
                       "segments": {"casual": {"share": 0.6, "activity": 0.8},
                                    "heavy": {"share": 0.4, "activity": 2.0}}},
        "catalog": {"plugin": "synthetic", "items": items, "topics": 6},
        "experiment": {"arms": {"control": {"recommender": "thompson"},
                                "treatment": {"recommender": "matrix-factorization", "factors": factors,
                                              "epochs": epochs}},
                       "pre_period": "1d", "duration": f"{days}d", "batch_window": window,
                       "retrain_every": "1d", "slate_size": 5},
        "analysis": [{"estimator": "diff-in-means"}, {"estimator": "cuped"}],
        "output": {"report": False},
    }
    if execution:
        data["execution"] = execution
    return Scenario.from_dict(data)


def digest(run_dir: Path) -> dict[str, str]:
    """sha256 of every file of a run directory except the manifest (it holds timings and a date)."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != "manifest.json"}
