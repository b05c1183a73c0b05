"""A graph node whose column is constant in this run (break test 3): a rare nudge that reached nobody
made the ``instrument`` column constant, the covariates dropped it, and ``backdoor-regression`` then
stopped the run after simulating with "observed node(s) instrument are not covariates".

A variable the data has but that takes one value among a comparison's users is observed: DoWhy may
use it to identify the effect, and adjusting for it changes nothing, so the regression leaves it out
(with a warning when the identified set named it). A node the data lacks altogether stays an error.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from counterfeed.core.contracts import MetricInfo
from counterfeed.core.estimation import AnalysisData
from counterfeed.errors import DataError
from counterfeed.plugins.estimators.observational import AIPW, BackdoorRegression


def _graph(*extra_edges):
    g = nx.DiGraph([("x1", "treatment"), ("x1", "outcome"), ("treatment", "outcome"), *extra_edges])
    return g


def _data(graph, *, instrument=None, cov_extra=None, n=600, seed=3):
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n)
    t = rng.random(n) < 1 / (1 + np.exp(-0.8 * x1))
    y = 1 + 2 * t + x1 + rng.normal(size=n)
    outcomes = pd.DataFrame({"user": np.arange(n), "arm": np.where(t, "b", "a"), "segment": "all", "y": y})
    cov = pd.DataFrame({"user": np.arange(n), "x1": x1, **(cov_extra or {})})
    return AnalysisData(outcomes=outcomes, arms=["a", "b"], control="a", metrics={"y": MetricInfo("y", "sum")},
                        seed=seed, covariates=cov, graph=graph, instrument=instrument), x1, t, y


def _ols_t(x1, t, y):
    return sm.OLS(y, sm.add_constant(np.column_stack([t.astype(float), x1]))).fit(cov_type="HC3").params[1]


def test_a_nudge_that_reached_nobody_leaves_backdoor_regression_its_estimate():
    data, x1, t, y = _data(_graph(("instrument", "treatment")), instrument=np.zeros(600))
    (e,) = BackdoorRegression(refute=False).estimate(data)
    assert e.diagnostics["adjustment_set"] == ["x1"]
    assert e.point == pytest.approx(_ols_t(x1, t, y), abs=1e-8)
    assert e.lower < 2.0 < e.upper
    assert not e.diagnostics.get("warnings")  # the instrument is not in the backdoor set: nothing to say


def test_a_constant_confounder_is_adjusted_for_at_no_cost_and_said_so():
    data, x1, t, y = _data(_graph(("c", "treatment"), ("c", "outcome")), cov_extra={"c": np.full(600, 7.0)})
    for cls in (BackdoorRegression, AIPW):
        (e,) = cls(refute=False).estimate(data)
        assert e.diagnostics["adjustment_set"] == ["x1"]
        assert any("c took a single value" in w for w in e.diagnostics["warnings"])
        assert e.diagnostics["identified"] is True
    (e,) = BackdoorRegression(refute=False).estimate(data)
    assert e.point == pytest.approx(_ols_t(x1, t, y), abs=1e-8)


def test_a_single_level_categorical_node_is_observed():
    data, x1, t, y = _data(_graph(("segment", "treatment"), ("segment", "outcome")),
                           cov_extra={"segment": np.array(["light"] * 600)})
    (e,) = BackdoorRegression(refute=False).estimate(data)
    assert e.diagnostics["adjustment_set"] == ["x1"]
    assert any("segment took a single value" in w for w in e.diagnostics["warnings"])


def test_a_node_the_data_lacks_is_still_an_error():
    data, *_ = _data(_graph(("w", "treatment"), ("w", "outcome")))
    with pytest.raises(DataError, match="observed node.s. w are not covariates"):
        BackdoorRegression(refute=False).estimate(data)


def test_a_confounder_constant_among_the_users_leaves_the_propensity_estimators_the_difference_in_means():
    """Break test 4: when the only confounder is constant among the users, the adjustment set is empty
    and backdoor-ipw and -matching raised DoWhy's "No common causes" (the whole run stopped after
    simulating) and aipw said "the declared graph gives none". With nothing to adjust for the propensity
    is constant, and each method's own limit is the difference in means, which they report, warned."""
    from counterfeed.plugins.estimators.observational import BackdoorIPW, BackdoorMatching

    rng = np.random.default_rng(7)
    n = 600
    t = rng.random(n) < 0.4
    y = 1 + 2 * t + rng.normal(size=n)
    outcomes = pd.DataFrame({"user": np.arange(n), "arm": np.where(t, "b", "a"), "segment": "all", "y": y})
    g = nx.DiGraph([("segment", "treatment"), ("segment", "outcome"), ("treatment", "outcome")])
    data = AnalysisData(outcomes=outcomes, arms=["a", "b"], control="a", metrics={"y": MetricInfo("y", "sum")},
                        seed=1, covariates=pd.DataFrame({"user": np.arange(n), "segment": "casual"}), graph=g)
    ols = sm.OLS(y, sm.add_constant(t.astype(float))).fit(cov_type="HC3")
    for cls in (BackdoorIPW, AIPW, BackdoorMatching, BackdoorRegression):
        (e,) = cls(refute=False).estimate(data)
        assert e.point == pytest.approx(y[t].mean() - y[~t].mean(), abs=1e-9), cls.name
        assert e.diagnostics["se"] == pytest.approx(ols.bse[1], rel=1e-9)
        assert e.diagnostics["adjustment_set"] == [] and e.lower < 2.0 < e.upper
        w = " | ".join(e.diagnostics["warnings"])
        assert "segment took a single value" in w
        assert ("propensity is constant and its estimate is the difference in means" in w) == (cls.propensity)
        assert e.diagnostics["method"] == ("difference in means (empty adjustment set)" if cls.propensity
                                           else "regression")


def test_a_covariate_named_instrument_beside_the_nudge_is_a_clear_error():
    data, *_ = _data(_graph(("instrument", "treatment")), instrument=np.zeros(600),
                     cov_extra={"instrument": np.ones(600)})
    with pytest.raises(DataError, match="a covariate is named 'instrument'"):
        BackdoorRegression(refute=False).estimate(data)
