"""Degenerate and bad inputs: a defined answer or a clear ModelError, never a NumPy warning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from estimator_data import RATIO_METRICS, analysis, frame
from counterfeed.core.contracts import MetricInfo
from counterfeed.errors import ModelError
from counterfeed.plugins.estimators.classical import (CUPED, DifferenceInMeans,
                                                      RatioDeltaMethod)

pytestmark = pytest.mark.filterwarnings("error")

ALL = [DifferenceInMeans, CUPED]


def _with_pre(df):
    return df.assign(pre_y=df["y"])


@pytest.mark.parametrize("cls", ALL)
def test_all_zeros(cls):
    df = _with_pre(frame({"control": np.zeros(50), "treatment": np.zeros(40)}))
    est = cls().estimate(analysis(df))
    assert len(est) == 1  # the relative lift is left out: the control mean is 0
    e = est[0]
    assert (e.point, e.lower, e.upper, e.p_value) == (0.0, 0.0, 0.0, 1.0)


def test_identical_constant_arms_and_different_constants():
    same = DifferenceInMeans().estimate(analysis(frame({"control": np.full(7, 0.1),
                                                        "treatment": np.full(3, 0.1)})))
    assert [(e.point, e.lower, e.upper, e.p_value) for e in same] == [(0.0, 0.0, 0.0, 1.0)] * 2
    diff = DifferenceInMeans().estimate(analysis(frame({"control": np.full(5, 2.0),
                                                        "treatment": np.full(5, 3.0)})))
    assert [(e.estimand, e.point, e.lower, e.upper, e.p_value) for e in diff] == [
        ("difference", 1.0, 1.0, 1.0, 0.0), ("relative", 0.5, 0.5, 0.5, 0.0)]


def test_one_constant_arm_is_fine():
    e = DifferenceInMeans().estimate(analysis(frame({"control": np.zeros(30),
                                                     "treatment": np.r_[np.zeros(29), 1.0]})))[0]
    assert e.lower < e.point < e.upper and 0 < e.p_value < 1


def test_ratio_with_constant_ctr_has_zero_width():
    df = frame({"control": [1.0, 2.0, 3.0], "treatment": [2.0, 4.0, 1.0]}).rename(columns={"y": "clicks"})
    df["impressions"] = df["clicks"] * 10
    df["ctr"] = 0.1
    est = RatioDeltaMethod().estimate(analysis(df, RATIO_METRICS))
    assert [(e.point, e.lower, e.upper, e.p_value) for e in est] == [(0.0, 0.0, 0.0, 1.0)] * 2


def test_cuped_constant_covariate_means_no_adjustment():
    rng = np.random.default_rng(1)
    df = frame({"control": rng.normal(0, 1, 20), "treatment": rng.normal(0, 1, 20)}, pre_y=np.ones(40))
    c = CUPED().estimate(analysis(df))[0]
    d = DifferenceInMeans().estimate(analysis(df))[0]
    assert c.diagnostics["theta"] == 0.0 and c.diagnostics["variance_reduction"] == 0.0
    assert (c.point, c.lower, c.upper) == pytest.approx((d.point, d.lower, d.upper), rel=1e-12)


def test_cuped_missing_pre_values_are_filled_with_the_mean():
    rng = np.random.default_rng(2)
    pre = rng.normal(0, 1, 60)
    df = frame({"control": pre[:30] + rng.normal(0, 0.5, 30), "treatment": pre[30:] + 0.3}, pre_y=pre)
    df.loc[[0, 31], "pre_y"] = np.nan
    e = CUPED().estimate(analysis(df))[0]
    assert e.diagnostics["n_control"] + e.diagnostics["n_treatment"] == 60
    assert np.isfinite([e.point, e.lower, e.upper]).all()


def test_small_segment_is_not_estimated_and_says_so():
    # it used to be left out silently (tester17 M5): now a NOT IDENTIFIED row, with no number
    df = frame({"control": np.arange(6.0), "treatment": np.arange(6.0) + 1},
               segments=np.array(["big"] * 5 + ["tiny"] + ["big"] * 5 + ["tiny"]))
    est = DifferenceInMeans(segments=True).estimate(analysis(df))
    assert {e.segment for e in est if np.isfinite(e.point)} == {None, "big"}
    tiny = [e for e in est if e.segment == "tiny"]
    assert tiny and all(np.isnan([e.point, e.lower, e.upper]).all() and e.diagnostics["identified"] is False
                        for e in tiny)


@pytest.mark.parametrize("estimator, df, metrics, arms, pattern", [
    (DifferenceInMeans(), frame({"control": [1.0], "treatment": [2.0]}), None, None,
     "needs at least 2 users with a value, got 1"),
    (CUPED(), frame({"control": [1.0], "treatment": [2.0, 3.0]}, pre_y=[1.0, 2.0, 3.0]), None, None,
     "needs at least 2 users with a value, got 1"),
    (DifferenceInMeans(), frame({"control": [1.0, 2.0], "treatment": [2.0, 3.0]}), None,
     ("control", "treatment", "ghost"), "arm 'ghost': the arm has no users"),
    (DifferenceInMeans(), frame({"control": [1.0, 2.0], "treatment": [np.nan, np.nan]}), None, None,
     "arm 'treatment': the arm has no users with a value"),
    (DifferenceInMeans(), frame({"control": [1.0, np.inf], "treatment": [1.0, 2.0]}), None, None,
     "infinite values"),
    (DifferenceInMeans(), frame({"control": [1.0, 2.0]}), None, ("control",),
     "needs a control arm and at least one treatment arm"),
    (DifferenceInMeans(metrics=["revenue"]), frame({"control": [1.0, 2.0], "treatment": [1.0, 2.0]}),
     None, None, "unknown metric 'revenue'; the scenario's metrics are: y"),
    (CUPED(), frame({"control": [1.0, 2.0], "treatment": [1.0, 2.0]}), None, None,
     r"cuped needs a pre-period: set experiment.pre_period \(column 'pre_y'"),
    (CUPED(metrics=["ctr"]), frame({"control": [1.0, 2.0], "treatment": [1.0, 2.0]},
                                   clicks=[1.0] * 4, impressions=[2.0] * 4, ctr=[0.5] * 4),
     RATIO_METRICS, None, "metric 'ctr' is a ratio metric; cuped needs sum, mean or binary"),
    (RatioDeltaMethod(metrics=["clicks"]), frame({"control": [1.0, 2.0], "treatment": [1.0, 2.0]},
                                                 clicks=[1.0] * 4, impressions=[2.0] * 4, ctr=[0.5] * 4),
     RATIO_METRICS, None, "metric 'clicks' is a sum metric, not a ratio; use estimator 'diff-in-means'"),
    (RatioDeltaMethod(), frame({"control": [1.0, 2.0], "treatment": [1.0, 2.0]}), None, None,
     "the scenario has no ratio metrics"),
    (RatioDeltaMethod(), frame({"control": [1.0, 2.0], "treatment": [1.0, 2.0]},
                               clicks=[0.0] * 4, impressions=[0.0, 0.0, 1.0, 2.0], ctr=[0.0] * 4),
     RATIO_METRICS, None, "arm 'control': the denominator sums to 0"),
    (DifferenceInMeans(), frame({"control": [1.0, 2.0], "treatment": [1.0, 2.0]}),
     {"y": MetricInfo("y", "sum"), "ctr": MetricInfo("ctr", "ratio", "clicks", "impressions")}, None,
     "column 'clicks' of metric 'ctr' is missing"),
])
def test_bad_inputs(estimator, df, metrics, arms, pattern):
    data = analysis(df, metrics, arms=arms or ("control", "treatment"))
    with pytest.raises(ModelError, match=pattern):
        estimator.estimate(data)


def test_integer_and_nullable_columns():
    df = frame({"control": [1, 2, 3, 4], "treatment": [2, 3, 4, 6]})
    df["y"] = df["y"].astype("Int64")
    df.loc[0, "y"] = pd.NA
    e = DifferenceInMeans().estimate(analysis(df))[0]
    assert e.diagnostics["n_control"] == 3 and e.point == pytest.approx(15 / 4 - 3)


def test_cuped_default_metrics_skip_ratio_metrics():
    rng = np.random.default_rng(3)
    df = frame({"control": rng.poisson(3, 20).astype(float), "treatment": rng.poisson(3, 20).astype(float)})
    df = df.rename(columns={"y": "clicks"})
    df["impressions"] = df["clicks"] + 5
    df["ctr"] = df["clicks"] / df["impressions"]
    for col in ("clicks", "impressions", "ctr"):
        df[f"pre_{col}"] = df[col] + rng.normal(0, 1, 40)
    assert {e.metric for e in CUPED().estimate(analysis(df, RATIO_METRICS))} == {"clicks", "impressions"}
    only_ratio = {"ctr": RATIO_METRICS["ctr"]}
    with pytest.raises(ModelError, match="the scenario has only ratio metrics"):
        CUPED().estimate(analysis(df, only_ratio))
