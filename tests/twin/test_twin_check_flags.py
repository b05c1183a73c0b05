"""``twin check`` flags the aspect a log from outside the twin's family gets wrong, and only that.

The log comes from the ``choice`` model with regular visits (the gap after a session uniform on [0.5,
1.5] times its mean instead of exponential): the twin's return model is exponential, so the
inter-visit times must be flagged; CTR by position, clicks per session and item popularity (the click
side, which is in the family) must not. benchmarks/twin_validation.py repeats this over replications.
"""

from __future__ import annotations

import pytest

from tests.twin.regular_visits import PeriodicPlugin


def _check(tmp_path, user_model: str) -> dict[str, str]:
    from counterfeed import run
    from counterfeed.core.scenario import Scenario
    from counterfeed.twin.check import check_twin
    from counterfeed.twin.data import load_twin_log
    from counterfeed.twin.fit import FitSettings, fit_twin
    from counterfeed.twin.store import write_twin

    sc = {"name": f"check-{user_model}", "seed": 21, "population": {"users": 300, "dimensions": 4},
          "catalog": {"plugin": "synthetic", "items": 40, "topics": 4}, "user_model": {"plugin": user_model},
          "experiment": {"arms": {"control": {"recommender": "random"}, "copy": {"recommender": "random"}},
                         "duration": "10d", "batch_window": "6h", "slate_size": 5},
          "metrics": ["impressions", "clicks"], "analysis": [], "output": {"report": False}}
    res = run(Scenario.from_dict(sc), output_dir=tmp_path / user_model, quiet=True, workers=1)
    meta, reps = fit_twin(load_twin_log(res.run_dir), FitSettings(dims=4, holdout=0.3, bootstrap=0, seed=2))
    twin = write_twin(tmp_path / f"twin-{user_model}", meta, reps)
    report = check_twin(str(twin), str(res.run_dir), users=900, seed=3)
    return {a["aspect"]: a["verdict"] for a in report["aspects"]}


@pytest.mark.slow
def test_check_flags_regular_visits_and_not_the_in_family_log(tmp_path):
    from counterfeed.core.plugins import get_registry

    registry = get_registry()
    registry.register_plugin(PeriodicPlugin(), name="regular-visits-test")
    try:
        out_of_family = _check(tmp_path, "periodic-choice")
    finally:
        registry.unregister_plugin("regular-visits-test")
    assert out_of_family["inter_visit_times"] == "mismatch", out_of_family
    for aspect in ("ctr_by_position", "clicks_per_session", "item_popularity"):
        assert out_of_family[aspect] == "ok", out_of_family
    in_family = _check(tmp_path, "choice")
    assert set(in_family.values()) == {"ok"}, in_family
