"""Per-user truth: the realised effect of each user from the counterfactual worlds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from counterfeed.core.contracts import MetricInfo
from counterfeed.core.runner import run
from counterfeed.core.user_truth import USER_TRUTH_COLUMNS, user_effects, user_metrics
from tests.conftest import small_scenario

INFOS = {"clicks": MetricInfo("clicks", "sum"), "impressions": MetricInfo("impressions", "sum"),
         "ctr": MetricInfo("ctr", "ratio", numerator="clicks", denominator="impressions"),
         "dwell": MetricInfo("dwell", "sum")}


def test_ratio_metrics_give_their_numerator_and_denominator_once():
    assert user_metrics(INFOS) == ["clicks", "impressions", "dwell"]


def _outcomes():
    rows = []
    for world, shift in (("ab", 0.0), ("all-a", 0.0), ("all-b", 1.0), ("all-c", -2.0)):
        for u in (2, 0, 1):  # not in user order: the function must align users
            rows.append({"world": world, "user": u, "clicks": u + shift, "impressions": 2.0 * u + 3 * shift,
                         "ctr": 0.5, "dwell": 10.0 * u})
    return pd.DataFrame(rows)


def test_user_effects_are_all_arm_minus_all_control_per_user():
    t = user_effects(_outcomes(), ["a", "b", "c"], "a", INFOS)
    assert list(t.columns) == USER_TRUTH_COLUMNS
    assert len(t) == 2 * 3 * 3  # two treatment arms x three metrics x three users
    b = t[(t.arm == "b")].set_index(["metric", "user"])["realised"]
    assert b.loc[("clicks", 0)] == 1.0 and b.loc[("impressions", 2)] == 3.0 and b.loc[("dwell", 1)] == 0.0
    c = t[(t.arm == "c") & (t.metric == "clicks")]
    assert list(c.user) == [0, 1, 2] and np.all(c.realised == -2.0)
    assert t.conditional.isna().all() and set(t.control) == {"a"}


def test_user_effects_without_counterfactual_worlds_is_an_empty_table():
    t = user_effects(_outcomes()[lambda f: f.world == "ab"], ["a", "b"], "a", INFOS)
    assert list(t.columns) == USER_TRUTH_COLUMNS and len(t) == 0


def test_run_keeps_user_truth_and_writes_it(tmp_path):
    res = run(small_scenario(), output_dir=tmp_path)
    ut = res.user_truth
    assert ut is not None and list(ut.columns) == USER_TRUTH_COLUMNS
    assert set(ut.metric) >= {"clicks", "impressions", "sessions"} and "ctr" not in set(ut.metric)
    # the mean of the per-user realised effects is the true average effect of the truth table
    clicks = ut[ut.metric == "clicks"]
    row = res.truth[(res.truth.metric == "clicks") & (res.truth.estimand == "difference")
                    & res.truth.segment.isna()]
    assert clicks.realised.mean() == pytest.approx(float(row.value.iloc[0]), abs=1e-12)
    back = pd.read_parquet(res.run_dir / "user_truth.parquet")
    pd.testing.assert_frame_equal(back, ut)
    assert res.load(res.run_dir).user_truth.shape == ut.shape
