"""What the back-door estimates say about themselves (issue-16 tester, M3, M4, M11, L11): the
sensitivity message names RV and RV_alpha for what each means, with enough digits; the
sensitivity of ipw/aipw/matching is labelled as the linear regression's; an unidentified estimate
carries ``identified: false``. Each test fails on the code before the fix."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from counterfeed.core.contracts import MetricInfo
from counterfeed.core.estimation import AnalysisData
from counterfeed.plugins.estimators._obs_refute import _pct, sensitivity
from counterfeed.plugins.estimators.observational import AIPW, BackdoorRegression
from counterfeed.testing.observational import declared_graph


def data_of(n: int, seed: int, effect: float = 2.0, graph=None) -> AnalysisData:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=(2, n))
    t = rng.random(n) < 1 / (1 + np.exp(-(0.8 * x1 - 0.5 * x2)))
    y = 1 + effect * t + x1 + 0.5 * x2 + rng.normal(size=n)
    outcomes = pd.DataFrame({"user": np.arange(n), "arm": np.where(t, "b", "a"), "segment": "all", "y": y})
    cov = pd.DataFrame({"user": np.arange(n), "x1": x1, "x2": x2})
    return AnalysisData(outcomes=outcomes, arms=["a", "b"], control="a", metrics={"y": MetricInfo("y", "sum")},
                        seed=seed, covariates=cov, graph=declared_graph(["x1", "x2"]) if graph is None else graph)


def test_percentages_keep_three_significant_digits():
    assert _pct(0.0003) == "0.03%" and _pct(0.106) == "10.6%" and _pct(0.19) == "19%"


def test_sensitivity_message_says_what_rv_and_rv_alpha_mean():
    """RV brings the estimate to 0, RV_alpha makes it insignificant: both printed, each with its meaning
    (the old message printed RV_alpha as what "overturns" the estimate)."""
    d = data_of(800, 1)
    frame = pd.DataFrame({"T": (d.outcomes["arm"] == "b").astype(float), "Y": d.outcomes["y"],
                          "x1": d.covariates["x1"], "x2": d.covariates["x2"]})
    s = sensitivity(frame, ["x1", "x2"], 0.95)
    assert _pct(s["robustness_value"]) + " of the residual variance of treatment and outcome would bring the " \
        "estimate to 0" in s["message"]
    assert f"({_pct(s['robustness_value_alpha'])} would make it insignificant at 95%)" in s["message"]
    assert "overturn" not in s["message"]
    assert "of" not in s


def test_propensity_estimators_label_the_regressions_sensitivity():
    e = AIPW(refute=False).estimate(data_of(400, 2))[0]
    s = e.diagnostics["sensitivity"]
    assert s["of"] == "backdoor-regression"
    assert s["message"].startswith("(of the linear regression on the same adjustment set, estimate ")
    assert "not of aipw's own estimate" in s["message"]
    r = BackdoorRegression(refute=False).estimate(data_of(400, 2))[0]
    assert "of" not in r.diagnostics["sensitivity"]


def test_unidentified_estimate_is_flagged_in_its_diagnostics():
    g = nx.DiGraph([("x1", "treatment"), ("x1", "outcome"), ("x2", "treatment"), ("x2", "outcome"),
                    ("u", "treatment"), ("u", "outcome"), ("treatment", "outcome")])
    g.nodes["u"]["observed"] = False
    e = BackdoorRegression(refute=False, proceed_when_unidentifiable=True).estimate(data_of(300, 3, graph=g))[0]
    assert e.diagnostics["identified"] is False
    ok = BackdoorRegression(refute=False).estimate(data_of(300, 3))[0]
    assert ok.diagnostics["identified"] is True


@pytest.mark.parametrize("identified, marker", [(False, True), (True, False)])
def test_the_run_table_marks_an_unidentified_row(identified, marker):
    """The CLI's estimates table shows "NOT IDENTIFIED" in the estimand cell of such a row."""
    from counterfeed.cli import _estimate_row
    from counterfeed.core.estimation import Estimate

    e = Estimate(estimator="aipw", metric="y", arm="b", control="a", point=1.0, lower=0.5, upper=1.5,
                 diagnostics={"identified": identified})
    assert _estimate_row(e)["estimand"] == ("difference NOT IDENTIFIED" if marker else "difference")


def test_every_observational_option_has_a_description():
    """`plugins show` printed an empty description column for the seven estimators (tester M9)."""
    from counterfeed.plugins.estimators import observational as ob

    for cls in (ob.BackdoorRegression, ob.BackdoorIPW, ob.AIPW, ob.BackdoorMatching, ob.InstrumentalVariables,
                ob.StaggeredDiD, ob.TwoWayFixedEffects):
        bare = [n for n, f in cls.Options.model_fields.items() if not f.description]
        assert not bare, f"{cls.name}: options without a description: {bare}"


def test_twfe_rejects_the_staggered_options_it_would_ignore():
    """twfe has no comparison-group choice and no event-time effects: the keys are unknown to it."""
    from counterfeed.plugins.estimators.observational import StaggeredDiD, TwoWayFixedEffects

    for key, value in (("control_group", "never_treated"), ("event_times", False)):
        with pytest.raises(Exception, match=key):
            TwoWayFixedEffects(**{key: value})
        assert getattr(StaggeredDiD(**{key: value}).options, key) == value
