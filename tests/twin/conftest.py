"""A small simulated log (the ``choice`` model under random recommendations) shared by the twin tests."""

from __future__ import annotations

import pandas as pd
import pytest

SCENARIO = {
    "name": "twin-fixture", "seed": 5,
    "population": {"users": 120, "dimensions": 4},
    "catalog": {"plugin": "synthetic", "items": 30, "topics": 3},
    "experiment": {"arms": {"control": {"recommender": "random"}, "treatment": {"recommender": "popularity"}},
                   "duration": "10d", "batch_window": "6h", "slate_size": 5},
    "metrics": ["impressions", "clicks", "sessions"], "analysis": [],
    "output": {"report": False},
}


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    from counterfeed import run
    from counterfeed.core.scenario import Scenario

    out = tmp_path_factory.mktemp("twin-runs")
    res = run(Scenario.from_dict(SCENARIO), output_dir=out, quiet=True, workers=1)
    return res.run_dir


@pytest.fixture(scope="session")
def log_frame(run_dir):
    return pd.read_parquet(run_dir / "events" / "all-control" / "impressions.parquet")


@pytest.fixture(scope="session")
def twin_dir(run_dir, tmp_path_factory):
    from counterfeed.twin.data import load_twin_log
    from counterfeed.twin.fit import FitSettings, fit_twin
    from counterfeed.twin.store import write_twin

    meta, reps = fit_twin(load_twin_log(run_dir), FitSettings(dims=4, bootstrap=3, epochs=6, bootstrap_kind="parametric",
                                                              n_topics=3))
    return write_twin(tmp_path_factory.mktemp("twins") / "twin", meta, reps)
