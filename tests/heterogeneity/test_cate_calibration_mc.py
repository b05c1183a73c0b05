"""`calibrate`'s CATE table (tester17 M1, M2): the targeting regret survives the replication's second
slimming pass; the Monte Carlo-corrected PEHE and coverage are reported beside the raw ones and the
0.90-0.97 judgement reads the deconvolved coverage (docs/heterogeneity.md), saying so."""

from __future__ import annotations

import numpy as np
import pytest

from counterfeed.calibration.cate_summary import cate_summary, cate_table, with_targeting_regret
from counterfeed.calibration.engine import _task, slim_estimate
from counterfeed.core.estimation import Estimate


def _estimate(**scores):
    return Estimate(estimator="e", metric="m", arm="b", control="a", point=0.1, lower=0.0, upper=0.2,
                    estimand="cate", diagnostics={"cate_scores": {"truth_estimand": "conditional", "pehe": 1.0,
                                                                  "pehe_baseline": 2.0, "coverage": 0.5, **scores}})


def _replicate(scenario, seed):  # module level: what run_replication does with a run's estimates
    targeting = {"metric": "m", "arm": "b", "rules": [{"rule": "e", "regret": 0.25}]}
    return with_targeting_regret([slim_estimate(_estimate(pehe_mc=0.8, pehe_baseline_mc=1.6))], targeting)


def test_the_targeting_regret_survives_the_second_slimming_pass():
    rec = _task({"name": "x", "index": 0, "seed": 1, "replicate": _replicate, "scenario": {}})
    (est,) = rec["estimates"]
    assert est["cate"]["regret"] == 0.25 and est["cate"]["pehe_mc"] == 0.8
    assert cate_summary([rec]).iloc[0]["regret"] == 0.25


def _rec(i, cov, dec, mc=0.5, base_mc=1.0):
    return {"index": i, "seed": i, "estimates": [slim_estimate(_estimate(
        coverage=cov, coverage_deconvolved=dec, pehe_mc=mc, pehe_baseline_mc=base_mc, ite_coverage=0.8,
        ite_coverage_deconvolved=0.9))]}


def test_the_corrected_scores_are_reported_and_judge_the_band():
    recs = [_rec(0, 0.55, 0.93), _rec(1, 0.50, 0.95), _rec(2, 0.60, 0.80, mc=0.7)]
    s = cate_summary(recs).iloc[0]
    assert s["coverage"] == pytest.approx(0.55)  # raw, unchanged
    assert s["coverage_deconvolved"] == pytest.approx(np.mean([0.93, 0.95, 0.80]))
    assert s["deconvolved_lower"] < s["coverage_deconvolved"] < s["deconvolved_upper"]
    assert s["in_band_of"] == "deconvolved" and s["coverage_in_band"] == pytest.approx(2 / 3)  # raw: 0 of 3
    assert s["pehe_mc"] == pytest.approx(np.mean([0.5, 0.5, 0.7])) and s["pehe_ratio_mc"] == pytest.approx(s["pehe_mc"])
    assert s["ite_coverage"] == pytest.approx(0.8) and s["ite_coverage_deconvolved"] == pytest.approx(0.9)
    table = cate_table(cate_summary(recs))
    headers = [c.header for c in table.columns]
    assert "PEHE (MC-corr.)" in headers and "deconvolved [95% CI]" in headers and "user coverage, raw [95% CI]" in headers
    assert "(deconvolved)" in list(table.columns[headers.index("in 0.90-0.97 [95% CI]")].cells)[0]


def test_without_the_correction_the_band_is_judged_on_the_raw_coverage_and_says_so():
    recs = [_rec(0, 0.93, None), _rec(1, 0.95, 0.94)]
    s = cate_summary(recs).iloc[0]
    assert s["in_band_of"] == "raw" and s["coverage_in_band"] == pytest.approx(1.0)
