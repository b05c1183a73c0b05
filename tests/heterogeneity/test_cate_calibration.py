"""`counterfeed calibrate` summarizes CATE estimators' per-user scores over replications."""

from __future__ import annotations

import json

import numpy as np
import pytest

from counterfeed.calibration.calibrate import calibrate
from counterfeed.calibration.cate_summary import cate_summary, cate_table, with_targeting_regret
from counterfeed.calibration.summary import wilson_interval
from counterfeed.core.plugins import get_registry
from counterfeed.core.scenario import Scenario

from test_cate_run import SCENARIO, _Plugin


def _rec(i, pehe, base, cov, which="conditional"):
    return {"index": i, "seed": i, "estimates": [
        {"estimator": "e", "metric": "m", "arm": "b", "estimand": "cate",
         "cate": {"truth_estimand": which, "pehe": pehe, "pehe_baseline": base, "coverage": cov,
                  "spearman": 0.5, "n_users": 10, "coverage_n": 10}},
        {"estimator": "e", "metric": "m", "arm": "b", "estimand": "difference"}]}


def test_cate_summary_by_hand():
    recs = [_rec(0, 0.5, 1.0, 0.95), _rec(1, 0.8, 1.0, 0.85), _rec(2, 0.6, 1.0, None, "realised")]
    s = cate_summary(recs).iloc[0]
    assert s["replications"] == 3 and s["truth_estimand"] == "mixed"
    assert s["pehe"] == pytest.approx(np.mean([0.5, 0.8, 0.6])) and s["pehe_ratio"] == pytest.approx(s["pehe"])
    assert s["beats_baseline_30"] == pytest.approx(2 / 3)
    assert (s["beats_lower"], s["beats_upper"]) == pytest.approx(wilson_interval(2, 3))
    assert s["coverage"] == pytest.approx(0.9)  # mean of the two replications that have intervals
    half = 12.706204736 * np.std([0.95, 0.85], ddof=1) / np.sqrt(2)  # t(0.975, 1 df)
    assert (s["coverage_lower"], s["coverage_upper"]) == pytest.approx((0.9 - half, 0.9 + half))
    assert s["coverage_in_band"] == pytest.approx(0.5)
    assert cate_table(cate_summary(recs)).row_count == 1
    assert cate_summary([{"index": 0, "seed": 0, "estimates": []}]).empty
    assert np.isnan(s["regret"])  # no targeting stage in these replications


def test_targeting_regret_per_estimator():
    targeting = {"metric": "m", "arm": "b", "rules": [{"rule": "e", "regret": 0.25}, {"rule": "oracle", "regret": 0.0}]}
    recs = []
    for i, r in enumerate((0.25, 0.35)):
        rec = _rec(i, 0.5, 1.0, 0.9)
        with_targeting_regret(rec["estimates"], {**targeting, "rules": [{"rule": "e", "regret": r}]})
        recs.append(rec)
    assert recs[0]["estimates"][0]["cate"]["regret"] == 0.25 and "cate" not in recs[0]["estimates"][1]
    s = cate_summary(recs).iloc[0]
    half = 12.706204736 * np.std([0.25, 0.35], ddof=1) / np.sqrt(2)
    assert (s["regret"], s["regret_lower"], s["regret_upper"]) == pytest.approx((0.3, 0.3 - half, 0.3 + half))
    other = _rec(0, 0.5, 1.0, 0.9)
    with_targeting_regret(other["estimates"], {**targeting, "metric": "other"})
    assert "regret" not in other["estimates"][0]["cate"]


def test_calibrate_reports_cate_scores(tmp_path):
    reg = get_registry()
    name = reg.register_plugin(_Plugin(), name="test-cate-calibration")
    try:
        sc = dict(SCENARIO, truth={"replications": 0})
        sc["population"] = dict(sc["population"], users=200)
        result = calibrate(Scenario.from_dict(sc), 2, out_dir=tmp_path / "cal", figures=False)
    finally:
        reg.unregister_plugin(name)
    row = result.cate.iloc[0]
    assert row["estimator"] == "test-cate-pre" and row["replications"] == 2
    assert row["truth_estimand"] == "realised" and 0 < row["pehe"] and 0 <= row["coverage"] <= 1
    payload = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert payload["cate"][0]["replications"] == 2
    assert (tmp_path / "cal" / "cate_calibration.csv").is_file()
