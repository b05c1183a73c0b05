"""Holm/BH adjustments against hand-worked lists; the SRM chi-square check."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from counterfeed.analysis import adjust_pvalues, bonferroni_level, srm_check
from counterfeed.errors import DataError

P = [0.01, 0.04, 0.03, 0.005]


@pytest.mark.parametrize("p, method, expected", [
    # Holm: sorted 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> running max 0.06
    (P, "holm", [0.03, 0.06, 0.06, 0.02]),
    # BH: 0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04 -> running min from the top
    (P, "bh", [0.02, 0.04, 0.04, 0.02]),
    (P, "none", P),
    ([0.5, 0.6], "holm", [1.0, 1.0]),      # 0.5*2 = 1, then max(1, 0.6)
    ([0.5, 0.6], "bh", [0.6, 0.6]),        # 0.5*2/1 = 1 capped by 0.6*2/2 = 0.6
    ([0.2, 0.2, 0.2], "bh", [0.2, 0.2, 0.2]),
    ([0.2, 0.2, 0.2], "holm", [0.6, 0.6, 0.6]),
    ([0.03], "holm", [0.03]),
    ([], "bh", []),
])
def test_adjust_pvalues_hand_worked(p, method, expected):
    assert adjust_pvalues(p, method).tolist() == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("p, method, pattern", [
    ([0.1, 1.2], "holm", r"in \[0, 1\]"),
    ([0.1, np.nan], "bh", r"in \[0, 1\]"),
    ([[0.1, 0.2]], "bh", "flat sequence"),
    ([0.1], "bonferroni", "unknown correction 'bonferroni'"),
])
def test_adjust_pvalues_bad_input(p, method, pattern):
    with pytest.raises(ValueError, match=pattern):
        adjust_pvalues(p, method)


def test_bonferroni_level():
    assert bonferroni_level(0.95, 1) == 0.95
    assert bonferroni_level(0.95, 4) == pytest.approx(0.9875)


def test_srm_fair_split_not_flagged():
    r = srm_check({"control": 5020, "treatment": 4980}, {"control": 0.5, "treatment": 0.5})
    ref = stats.chisquare([5020, 4980], [5000, 5000])
    assert r["statistic"] == pytest.approx(ref.statistic) and r["p_value"] == pytest.approx(ref.pvalue)
    assert r["df"] == 1 and not r["flagged"]
    assert r["expected"] == {"control": 5000.0, "treatment": 5000.0}
    assert r["observed"] == {"control": 5020, "treatment": 4980} and r["total"] == 10000


def test_srm_fires_on_skewed_split():
    # a deliberate bug: 15% of the treatment users are lost from a 50/50 split of 20000 users
    rng = np.random.default_rng(0)
    n_t = rng.binomial(20_000, 0.5)
    counts = {"control": 20_000 - n_t, "treatment": int(n_t * 0.85)}
    r = srm_check(counts, {"control": 1, "treatment": 1})
    assert r["flagged"] and r["p_value"] < 1e-10


def test_srm_unequal_weights_three_arms():
    counts, split = {"a": 2010, "b": 3990, "c": 4000}, {"a": 0.2, "b": 0.4, "c": 0.4}
    r = srm_check(counts, split)
    ref = stats.chisquare([2010, 3990, 4000], [2000, 4000, 4000])
    assert r["df"] == 2 and r["p_value"] == pytest.approx(ref.pvalue) and not r["flagged"]
    # the same counts under a 1/3 split are a glaring mismatch
    assert srm_check(counts, {"a": 1, "b": 1, "c": 1})["flagged"]


def test_srm_fair_random_splits_rarely_flag():
    # 300 fair experiments at threshold 0.01: expect 3 false alarms (Poisson SD 1.7); allow <= 9
    rng = np.random.default_rng(42)
    flags = sum(srm_check({"a": int(k), "b": int(10_000 - k)}, {"a": 0.5, "b": 0.5}, 0.01)["flagged"]
                for k in rng.binomial(10_000, 0.5, 300))
    assert flags <= 9


def test_srm_zero_weight_arm():
    assert srm_check({"a": 10, "b": 10, "c": 0}, {"a": 1, "b": 1, "c": 0})["df"] == 1
    r = srm_check({"a": 10, "b": 10, "c": 1}, {"a": 1, "b": 1, "c": 0})
    assert r["flagged"] and r["p_value"] == 0.0


@pytest.mark.parametrize("counts, split, threshold, pattern", [
    ({"a": 10}, {"a": 0.5, "b": 0.5}, 0.001, "differ from arms in split"),
    ({"a": -1, "b": 3}, {"a": 0.5, "b": 0.5}, 0.001, "non-negative integer"),
    ({"a": 1.5, "b": 3}, {"a": 0.5, "b": 0.5}, 0.001, "non-negative integer"),
    ({"a": 1, "b": 3}, {"a": -0.5, "b": 0.5}, 0.001, "finite non-negative"),
    ({"a": 0, "b": 0}, {"a": 0.5, "b": 0.5}, 0.001, "no users"),
    ({"a": 1, "b": 1}, {"a": 0.0, "b": 0.0}, 0.001, "sum to 0"),
    ({"a": 1, "b": 1}, {"a": 0.5, "b": 0.5}, 1.5, "threshold"),
])
def test_srm_bad_input(counts, split, threshold, pattern):
    with pytest.raises(DataError, match=pattern):
        srm_check(counts, split, threshold)
