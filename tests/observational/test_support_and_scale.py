"""Two back-door defects of a break test (the fourth):

- **A group the other arm never reaches.** 15% of the users (segment ``q``) were never treated: the ATE
  over all users needs their treated outcomes, which no treated user like them shows. The overlap
  check compared only the arms' propensity ranges and the share outside [0.1, 0.9] (15% < 20%), so
  backdoor-ipw gave 1.27 [1.05, 1.49] and backdoor-matching 0.74 [0.29, 1.20] against a true 2, with
  no warning. More than 5% of users (and at least 10) outside the common support is now "not
  identified" (``identified: false``), on every propensity estimator.
- **A covariate far from 0.** ``big = 1e12 + 1e9 x`` beside the intercept: OLS lost ``x`` to rank
  truncation and backdoor-regression returned the confounded 2.69 [2.51, 2.86] against 2. The
  covariates are standardized first (every back-door estimate is invariant to affine maps of them).
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from counterfeed.core.contracts import MetricInfo
from counterfeed.core.estimation import AnalysisData
from counterfeed.plugins.estimators.observational import AIPW, BackdoorIPW, BackdoorMatching, BackdoorRegression
from tests.observational.test_estimators_libraries import linear_data


def _data(arm, y, cov, graph) -> AnalysisData:
    n = len(y)
    outcomes = pd.DataFrame({"user": np.arange(n), "arm": arm, "segment": "all", "y": y})
    return AnalysisData(outcomes=outcomes, arms=["a", "b"], control="a", metrics={"y": MetricInfo("y", "sum")},
                        seed=1, covariates=pd.DataFrame({"user": np.arange(n), **cov}), graph=graph)


def test_a_segment_never_treated_is_not_identified_on_every_backdoor_estimator():
    rng = np.random.default_rng(5)
    n = 1000
    g = nx.DiGraph([("segment", "treatment"), ("segment", "outcome"), ("treatment", "outcome"),
                    ("x1", "treatment"), ("x1", "outcome")])
    x1 = rng.normal(size=n)
    seg = np.where(rng.random(n) < 0.15, "q", "p")
    t = (seg == "p") & (rng.random(n) < 1 / (1 + np.exp(-0.5 * x1)))
    y = 1 + 2 * t + 5 * (seg == "q") + x1 + rng.normal(size=n)
    data = _data(np.where(t, "b", "a"), y, {"x1": x1, "segment": seg}, g)
    for cls in (BackdoorIPW, AIPW, BackdoorMatching, BackdoorRegression):  # regression extrapolates too
        (e,) = cls(refute=False).estimate(data)
        w = " | ".join(e.diagnostics["warnings"])
        assert e.diagnostics["identified"] is False, cls.name
        assert "not identified: 1" in w and "positivity fails for them" in w, w
        assert e.diagnostics["overlap"]["common_support_share"] < 0.9


def test_a_well_overlapping_design_is_not_flagged():
    """The library test's confounded design: about 1% of users in the arms' extreme tails."""
    for cls in (BackdoorIPW, AIPW, BackdoorMatching, BackdoorRegression):
        (e,) = cls(refute=False).estimate(linear_data())
        assert e.diagnostics["identified"] is True, cls.name
        assert e.diagnostics["overlap"]["common_support_share"] > 0.95
        assert not any("positivity fails" in w for w in e.diagnostics.get("warnings", []))


@pytest.mark.parametrize("offset, scale", [(1e8, 1.0), (1e12, 1e9)])
def test_a_covariate_far_from_zero_is_still_adjusted_for(offset, scale):
    import statsmodels.api as sm

    rng = np.random.default_rng(5)
    n = 1000
    x1 = rng.normal(size=n)
    t = rng.random(n) < 1 / (1 + np.exp(-0.8 * x1))
    y = 1 + 2 * t + x1 + rng.normal(size=n)
    data = _data(np.where(t, "b", "a"), y, {"big": offset + scale * x1},
                 nx.DiGraph([("big", "treatment"), ("big", "outcome"), ("treatment", "outcome")]))
    ref = sm.OLS(y, sm.add_constant(np.column_stack([t.astype(float), x1]))).fit(cov_type="HC3")
    (e,) = BackdoorRegression(refute=False).estimate(data)
    assert e.point == pytest.approx(ref.params[1], abs=1e-8) and e.diagnostics["se"] == pytest.approx(ref.bse[1], rel=1e-6)
    assert e.lower < 2.0 < e.upper
    for cls in (BackdoorIPW, AIPW):
        (e,) = cls(refute=False).estimate(data)
        assert abs(e.point - 2.0) < 0.25, (cls.name, e.point)


def test_the_extreme_tails_of_a_smooth_design_are_not_a_positivity_failure():
    """Break test 5: a logistic selection on one normal confounder (slope 1) at 200 users has 5-10% of its
    users outside the range both arms cover, at ordinary propensities; none of 30 datasets is flagged."""
    from counterfeed.plugins.estimators import _obs_backdoor as bd

    rng = np.random.default_rng(11)
    flagged = 0
    for _ in range(30):
        x = rng.normal(size=200)
        t = (rng.random(200) < 1 / (1 + np.exp(-x))).astype(float)
        _, warns, _ = bd.overlap(pd.DataFrame({"T": t, "x": x}), ["x"])
        flagged += any(w.startswith("not identified") for w in warns)
    assert flagged == 0
