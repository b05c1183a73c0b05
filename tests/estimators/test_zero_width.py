"""Issue 14: a zero-width interval is never silent. Every Estimate whose interval has zero width (no
variation observed, e.g. every user in each arm has the same value) carries a warning and
``zero_width: true``, whichever estimator built it: the check lives in the Estimate contract and in the
core's finishing step (``check_estimates``), so third-party estimators get it too."""

from __future__ import annotations

import numpy as np
import pytest

from estimator_data import RATIO_METRICS, analysis, frame
from counterfeed.core.analyse import check_estimates
from counterfeed.core.estimation import ZERO_WIDTH, Estimate, Estimator
from counterfeed.core.rundir import load_run
from counterfeed.core.runner import run
from counterfeed.core.scenario import Scenario
from counterfeed.plugins.estimators.bayesian_ab import BayesianAB
from counterfeed.plugins.estimators.classical import CUPED, DifferenceInMeans, RatioDeltaMethod
from tests.core.test_novelty_identification import TP2


def _warned(e: Estimate) -> bool:
    return e.diagnostics.get("zero_width") is True and \
        sum(str(w).startswith(ZERO_WIDTH) for w in e.diagnostics.get("warnings", [])) == 1


CONSTANT = {"same": (np.full(7, 0.1), np.full(5, 0.1)), "different": (np.full(6, 2.0), np.full(6, 3.0)),
            "zeros": (np.zeros(8), np.zeros(8))}


@pytest.mark.parametrize("case", sorted(CONSTANT))
@pytest.mark.parametrize("cls", [DifferenceInMeans, CUPED, BayesianAB])
def test_every_zero_width_estimate_is_warned(cls, case):
    c, t = CONSTANT[case]
    df = frame({"control": c, "treatment": t})
    df["pre_y"] = df["y"]
    out = cls().estimate(analysis(df))
    zero = [e for e in out if e.lower == e.upper]
    for e in out:
        assert _warned(e) == (e.lower == e.upper), (e.estimand, e.lower, e.upper, e.diagnostics)
    if cls is not BayesianAB:  # a Beta/Normal posterior of constant arms may have width; Welch's has none
        assert zero


def test_ratio_with_constant_ctr_and_the_relative_estimand_are_warned():
    """The delta-method ratio estimator: every user has CTR 0.1, so the difference and the relative lift
    are 0 [0, 0]; both estimands carry the warning."""
    df = frame({"control": [1.0, 2.0, 3.0], "treatment": [2.0, 4.0, 1.0]}).rename(columns={"y": "clicks"})
    df["impressions"] = df["clicks"] * 10
    df["ctr"] = 0.1
    out = RatioDeltaMethod().estimate(analysis(df, RATIO_METRICS))
    assert {e.estimand for e in out} == {"difference", "relative"}
    assert all(e.lower == e.upper and _warned(e) for e in out)


def test_an_interval_with_width_is_not_warned():
    rng = np.random.default_rng(0)
    for e in DifferenceInMeans().estimate(analysis(frame({"control": rng.normal(size=30),
                                                           "treatment": rng.normal(size=30)}))):
        assert "zero_width" not in e.diagnostics and not any(str(w).startswith(ZERO_WIDTH)
                                                             for w in e.diagnostics.get("warnings", []))


class _ThirdParty(Estimator):
    """A third-party-style estimator that overwrites its estimates' diagnostics after building them."""

    name = "third-party-constant"

    def estimate(self, data):
        e = Estimate(estimator=self.name, metric="y", arm="treatment", control="control", point=0.5,
                     lower=0.5, upper=0.5)
        e.diagnostics = {"method": "mine"}  # drops the warning the contract added
        return [e]


def test_third_party_estimates_get_the_warning_from_the_core():
    data = analysis(frame({"control": np.ones(4), "treatment": np.ones(4)}))
    (e,) = check_estimates(_ThirdParty(), _ThirdParty().estimate(data), data.metrics)
    assert _warned(e) and e.diagnostics["method"] == "mine"
    (again,) = check_estimates(_ThirdParty(), [e], data.metrics)  # idempotent: one warning
    assert _warned(again)


def test_tester_run_diversity_one_fixed_slate(tmp_path, capsys):
    """The tester's 60-user 1-day run: popularity and MMR show everyone one fixed slate, so diversity is
    the same for every user of an arm; diff-in-means reported 1 [1, 1] with no warning."""
    spec = {**TP2, "metrics": ["clicks", "diversity"],
            "analysis": [{"estimator": "diff-in-means"}, {"estimator": "bayesian-ab"}]}
    res = run(Scenario.from_dict(spec), output_dir=tmp_path, workers=1)
    div = [e for e in res.estimates if e.metric == "diversity" and e.estimand == "difference"]
    assert div and all(e.lower == e.upper for e in div)
    assert all(_warned(e) for e in div)
    assert all("zero_width" not in e.diagnostics for e in res.estimates if e.metric == "clicks")
    # the warning is kept in the run directory and read back exactly once
    back = [e for e in load_run(res.run_dir).estimates if e.metric == "diversity" and e.estimand == "difference"]
    assert back and all(_warned(e) for e in back)
