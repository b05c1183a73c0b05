"""Adoption days are reported on the experiment's clock, the scenario's ``cohorts[].at`` (tester16
L5): manifest.json's ``assignment.adoption`` keys and the staggered estimators' cohort labels count
days from the experiment start, and the manifest names that origin. No estimate changes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from counterfeed.core.mechanisms import mechanism_summary, write_assignment
from counterfeed.plugins.estimators.observational import StaggeredDiD
from tests.observational.test_tester16_estimators import small_panel, warnings_of


def test_manifest_adoption_days_count_from_the_experiment_start(tmp_path):
    """staggered_rollout.yaml's cohorts at 1d, 5d, 9d after a 2-day pre-period: keys '1', '5', '9';
    assignment.parquet keeps the event log's clock in ``adoption`` and adds the experiment's."""
    adoption = np.array([3.0, 3.0, 7.0, 11.0, 11.0, 11.0, np.inf])
    record = {"mechanism": "staggered", "probability": np.full(7, 6 / 7), "adoption": adoption,
              "cohort": np.array([0, 0, 1, 2, 2, 2, 3]), "period": 1.0, "start": 2.0}
    rec = mechanism_summary(record)
    assert rec["adoption"] == {"1": 2, "5": 1, "9": 3, "never": 1}
    assert rec["adoption_day_origin"] == "experiment start"
    assert rec["experiment_start_simulation_day"] == 2.0 and rec["period"] == 1.0
    write_assignment(tmp_path, record)
    table = pd.read_parquet(tmp_path / "assignment.parquet")
    assert np.array_equal(table["adoption"].to_numpy(), adoption)
    assert np.array_equal(table["adoption_experiment_day"].to_numpy(), adoption - 2.0)


def test_did_cohort_labels_use_the_experiment_clock():
    """Cohorts first treated in panel periods 2 and 4 after a 1-day pre-period adopt on experiment days
    1 and 3; the thin-cell warning names them so, and the estimates do not depend on the clock."""
    data = small_panel(never=1)
    at_zero = {e.estimand: e for e in StaggeredDiD().estimate(data)}
    data.start = 1.0
    shifted = {e.estimand: e for e in StaggeredDiD().estimate(data)}
    text = warnings_of(shifted["att"])
    assert ("cohort adopting on day 1 of the experiment: 3 user(s); its comparison group in the period from "
            "experiment day 3: 1 user(s)") in text, text
    assert "cohort of period" not in text
    assert at_zero.keys() == shifted.keys()
    for key, e in at_zero.items():
        assert e.point == shifted[key].point or (math.isnan(e.point) and math.isnan(shifted[key].point))
