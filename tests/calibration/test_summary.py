"""Summary statistics on hand-made replications, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from counterfeed.calibration.summary import MDE_MULTIPLIER, records_frame, summarize, wilson_interval


def test_wilson_interval_matches_the_textbook_value():
    # 8/10 at 95%: (0.4902, 0.9433) (Brown, Cai & DasGupta 2001, Wilson score interval).
    lo, hi = wilson_interval(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-4) and hi == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0
    assert all(math.isnan(v) for v in wilson_interval(0, 0))


def _rec(index, point, lower, upper, truth, p_value, estimator="e"):
    return {"index": index, "seed": 100 + index, "estimates": [{
        "estimator": estimator, "metric": "m", "arm": "b", "estimand": "difference", "segment": None,
        "point": point, "lower": lower, "upper": upper, "p_value": p_value, "truth": truth,
        "covered": None if truth is None else lower <= truth <= upper, "level": 0.95}]}


def test_summary_statistics():
    recs = [_rec(0, 1.0, 0.5, 1.5, 0.8, 0.001), _rec(1, 0.2, -0.3, 0.7, 0.8, 0.40),
            _rec(2, 0.9, 0.4, 1.4, 0.8, 0.01), _rec(3, 0.7, 0.2, 1.2, 0.8, 0.03)]
    row = summarize(records_frame(recs)).iloc[0]
    err = np.array([0.2, -0.6, 0.1, -0.1])
    assert row["replications"] == 4
    assert row["bias"] == pytest.approx(err.mean())
    assert row["rmse"] == pytest.approx(math.sqrt((err ** 2).mean()))
    assert row["coverage"] == pytest.approx(0.75)  # replication 1 misses 0.8
    assert (row["coverage_lower"], row["coverage_upper"]) == pytest.approx(wilson_interval(3, 4))
    assert row["mean_width"] == pytest.approx(1.0)
    assert row["rejection_rate"] == pytest.approx(0.75)  # p < 0.05 in 3 of 4
    assert row["mde"] == pytest.approx(MDE_MULTIPLIER * 1.0 / (2 * 1.959963984540054))
    assert MDE_MULTIPLIER == pytest.approx(2.8, abs=0.01)


def test_rejection_without_p_value_uses_the_interval_and_unknown_truth_gives_nan():
    recs = [_rec(0, 1.0, 0.5, 1.5, None, None), _rec(1, 0.1, -0.4, 0.6, None, None),
            _rec(2, -1.0, -1.5, -0.2, None, None)]
    row = summarize(records_frame(recs)).iloc[0]
    assert row["rejection_rate"] == pytest.approx(2 / 3)
    assert math.isnan(row["coverage"]) and math.isnan(row["bias"])
    assert row["segment"] is None


def test_groups_are_separate_and_sorted():
    recs = [_rec(0, 1.0, 0.5, 1.5, 1.0, 0.01, estimator="z"), _rec(0, 1.0, 0.5, 1.5, 1.0, 0.01, estimator="a")]
    recs[0]["estimates"] += recs[1]["estimates"]
    s = summarize(records_frame(recs[:1]))
    assert list(s["estimator"]) == ["a", "z"]


def test_unbounded_intervals_are_counted_cover_and_leave_the_width_to_the_bounded_ones():
    recs = [_rec(0, 1.0, 0.5, 1.5, 0.8, 0.001), _rec(1, 0.2, -math.inf, math.inf, 0.8, 0.40),
            _rec(2, 0.9, 0.4, 1.4, 0.8, 0.01), _rec(3, 0.7, -math.inf, 1.2, 0.8, 0.03)]
    s = summarize(records_frame(recs)).iloc[0]
    assert s["unbounded"] == 2 and s["zero_width"] == 0
    assert s["coverage"] == 1.0
    assert s["mean_width"] == pytest.approx(1.0)  # the two bounded intervals


def test_estimates_their_estimator_marked_not_identified_are_counted_and_warned():
    """Break test 5: calibrate scored estimates that the estimator itself had marked not identified
    (a positivity failure, a weak instrument) and said nothing; they are still scored (that measures the
    flag's cost), counted in ``not_identified`` and named in a warning."""
    from counterfeed.calibration.calibrate import summary_warnings
    from counterfeed.calibration.engine import slim_estimate

    recs = [_rec(i, 1.0, 0.5, 1.5, 0.8, 0.01) for i in range(5)]
    for r in recs[:2]:
        r["estimates"][0]["not_identified"] = True
    row = summarize(records_frame(recs)).iloc[0]
    assert row["not_identified"] == 2 and row["replications"] == 5 and row["coverage"] == 1.0
    assert any("in 2 of 5 replications the estimator marked its estimate not identified" in w
               for w in summary_warnings(summarize(records_frame(recs))))
    assert summarize(records_frame([_rec(0, 1.0, 0.5, 1.5, 0.8, 0.01)])).iloc[0]["not_identified"] == 0  # old stores
    assert slim_estimate({"estimator": "e", "diagnostics": {"identified": False}})["not_identified"] is True
    assert slim_estimate({"estimator": "e", "diagnostics": {}})["not_identified"] is False
