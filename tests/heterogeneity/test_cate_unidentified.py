"""Inputs the CATE estimators cannot identify (tester17 H1, M4, M5): a segment with fewer than 2 users
of an arm (overall or in a training fold) gets null effects and intervals and a NOT IDENTIFIED warning,
never an extrapolated effect or a zero-width interval; a constant modifier is named and not listed as
used; diff-in-means with segments reports a too-small segment instead of leaving it out."""

from __future__ import annotations

import numpy as np
import pytest

from counterfeed.plugins.estimators.cate import (CausalForestCATE, DRLearnerCATE, LinearInteractionCATE,
                                                 TLearnerCATE, XLearnerCATE)
from counterfeed.plugins.estimators.bayesian_ab import BayesianAB
from counterfeed.plugins.estimators.classical import DifferenceInMeans
from counterfeed.testing.cate_data import make_cate_data

FAST = {"nuisance_iterations": 20}
OPTIONS = {DRLearnerCATE: {"modifiers": ["segment", "feature_0"]},
           CausalForestCATE: {"modifiers": ["segment", "feature_0"], "n_estimators": 40},
           LinearInteractionCATE: {"modifiers": ["segment", "feature_0"]}, TLearnerCATE: {}, XLearnerCATE: {}}


def _rare(n=300, treated=0, control=3, seed=5):
    """A world where ``treated + control`` users form segment 'rare' with that many in each arm."""
    data = make_cate_data(n, seed=seed).data
    arm = data.outcomes["arm"].to_numpy()
    pick = list(np.flatnonzero(arm == "treatment")[:treated]) + list(np.flatnonzero(arm == "control")[:control])
    for frame in (data.outcomes, data.covariates):
        frame.loc[pick, "segment"] = "rare"
    return data, np.array(pick, dtype=np.int64)


def _cate(cls, data, **kw):
    est = cls({**FAST, **OPTIONS[cls], **kw})
    return next(e for e in est.estimate(data) if e.estimand == "cate")


@pytest.mark.parametrize("cls", list(OPTIONS))
def test_a_segment_without_treated_users_is_not_identified(cls):
    data, rare = _rare(treated=0, control=3)
    e = _cate(cls, data)
    ue = e.user_effects
    assert ue.loc[rare, ["point", "lower", "upper"]].isna().all().all()  # null, not extrapolated
    others = np.setdiff1d(np.arange(len(ue)), rare)
    assert ue.loc[others, "point"].notna().all()
    width = (ue["upper"] - ue["lower"]).dropna()
    assert (width > 0).all()  # never a zero-width interval
    warns = [w for w in e.diagnostics["warnings"] if w.startswith("NOT IDENTIFIED")]
    assert len(warns) == 1 and "segment 'rare'" in warns[0] and "0 user(s) in 'treatment'" in warns[0]
    assert "segment=rare" not in e.diagnostics["effect_modifiers"]
    assert e.diagnostics["users_not_identified"] == 3
    assert np.isfinite(e.point)  # the doubly robust average effect is identified under randomization


def test_a_segment_split_thin_by_the_folds_is_not_identified():
    """2 treated users overall, but a training fold of the 2-fold cross-fitting may hold only 1."""
    data, rare = _rare(treated=2, control=2, seed=8)
    e = _cate(LinearInteractionCATE, data)
    assert e.user_effects.loc[rare, "point"].isna().all()
    assert any("segment 'rare'" in w and "NOT IDENTIFIED" in w for w in e.diagnostics["warnings"])


def test_individual_intervals_of_an_unidentified_segment_are_null():
    from tests.heterogeneity.test_cate_individual import _world

    data, _ = _world(300, seed=4)
    arm = data.outcomes["arm"].to_numpy()
    rare = np.flatnonzero(arm == "control")[:3]
    for frame in (data.outcomes, data.covariates):
        frame.loc[rare, "segment"] = "rare"
    est = LinearInteractionCATE(LinearInteractionCATE.Options(modifiers=["segment"], individual_intervals="covariates"))
    e = next(e for e in est.estimate(data) if e.estimand == "cate")
    ue = e.user_effects
    assert ue.loc[rare, ["ite_point", "ite_lower", "ite_upper"]].isna().all().all()
    assert ue["ite_lower"].notna().sum() == len(ue) - 3
    cells = {tuple(c["modifiers"].items()): c for c in e.diagnostics["individual_intervals"]["cells"]}
    rare_cell = cells[(("segment=b", 0.0), ("segment=rare", 1.0))]
    assert rare_cell["identified"] is False and rare_cell["unexplained_variance"] is None and rare_cell["se"] is None
    assert all(c["se"] is not None for k, c in cells.items() if c is not rare_cell)


def test_a_constant_modifier_is_named_and_not_used():
    data = make_cate_data(300, seed=5).data
    data.covariates["pre_clicks"] = 0.0
    e = _cate(LinearInteractionCATE, data, modifiers=["pre_clicks"])
    assert e.diagnostics["effect_modifiers"] == [] and e.diagnostics["unused_modifiers"] == ["pre_clicks"]
    warns = e.diagnostics["warnings"]
    assert any(w.startswith("MODIFIER UNUSED") and "'pre_clicks'" in w for w in warns)
    assert any(w.startswith("NO EFFECT MODIFIER") for w in warns)


def test_valid_modifiers_give_no_new_warning():
    e = _cate(LinearInteractionCATE, make_cate_data(300, seed=5).data)
    assert not [w for w in e.diagnostics.get("warnings", []) if "IDENTIFIED" in w or "MODIFIER" in w]
    assert e.diagnostics["unused_modifiers"] == [] and e.user_effects["point"].notna().all()


@pytest.mark.parametrize("cls", [DifferenceInMeans, BayesianAB])
def test_segment_estimators_report_a_too_small_segment(cls):
    data, _ = _rare(treated=0, control=3)
    out = cls({"segments": True, "relative": False}).estimate(data)
    rare = [e for e in out if e.segment == "rare"]
    assert len(rare) == 1 and np.isnan(rare[0].point) and np.isnan(rare[0].lower)
    assert rare[0].diagnostics["identified"] is False
    assert rare[0].diagnostics["warnings"][0].startswith("NOT IDENTIFIED: segment 'rare'")
    rare[0].score(1.0)
    assert rare[0].covered is None and rare[0].error is None  # not estimated is not a miss
