"""The built-in A/B estimators pass the public estimator conformance suite."""

from __future__ import annotations

import pytest

from counterfeed.testing import check_estimator
from counterfeed.plugins.estimators.bayesian_ab import BayesianAB
from counterfeed.plugins.estimators.classical import CUPED, DifferenceInMeans, RatioDeltaMethod


@pytest.mark.parametrize("cls, options", [
    (DifferenceInMeans, None),
    (DifferenceInMeans, {"correction": "holm", "segments": True}),
    (RatioDeltaMethod, {"correction": "bh"}),
    (CUPED, None),
    (BayesianAB, None),
])
def test_conformance(cls, options):
    check_estimator(cls, options)
