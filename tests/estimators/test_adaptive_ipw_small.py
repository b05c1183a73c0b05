"""adaptive-ipw on small arms: t quantiles on min(n_t, n_c) - 1 degrees of freedom (Welch's lower
bound), a warning below 10 users in an arm, and a ModelError below 2 (no interval from fewer than
two independent units in an arm)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from estimator_data import analysis, frame
from counterfeed.errors import ModelError
from counterfeed.plugins.estimators.adaptive import AdaptiveIPW

pytestmark = pytest.mark.filterwarnings("error")


def _data(control, treatment, p_treat=0.5):
    d = analysis(frame({"control": np.asarray(control, float), "treatment": np.asarray(treatment, float)}))
    n = len(d.outcomes)
    d.assignment_probabilities = np.column_stack([np.full(n, 1 - p_treat), np.full(n, p_treat)])
    return d


def test_the_interval_uses_t_quantiles_on_the_smaller_arms_degrees_of_freedom():
    rng = np.random.default_rng(7)
    d = _data(rng.normal(1, 1, 40), rng.normal(1.5, 1, 5), p_treat=0.2)
    e = AdaptiveIPW().estimate(d)[0]
    q = stats.t.ppf(0.975, 4)
    assert e.diagnostics["df"] == 4
    assert (e.upper - e.lower) / 2 == pytest.approx(q * e.diagnostics["se"], rel=1e-9)
    assert any("only 5 users in the smaller arm" in w for w in e.diagnostics["warnings"])


def test_large_arms_have_no_warning_and_nearly_the_normal_interval():
    rng = np.random.default_rng(8)
    e = AdaptiveIPW().estimate(_data(rng.normal(1, 1, 400), rng.normal(1.2, 1, 400)))[0]
    assert "warnings" not in e.diagnostics and e.diagnostics["df"] == 399
    assert (e.upper - e.lower) / 2 == pytest.approx(stats.t.ppf(0.975, 399) * e.diagnostics["se"], rel=1e-9)


def test_an_arm_of_one_user_is_a_model_error():
    with pytest.raises(ModelError, match="at least 2 users in each of arms 'treatment' and 'control', got 1 and 6"):
        AdaptiveIPW().estimate(_data(np.arange(6), [3.0]))
