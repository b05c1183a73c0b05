"""``adaptive-ipw``: inverse-probability weighting with the assignment probabilities recorded at
assignment time, valid under adaptive allocation."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from counterfeed.core.estimation import (AnalysisData, Estimate, Estimator, EstimatorOptions,
                                         EstimatorTags)
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import DataError, ModelError
from counterfeed.plugins.estimators._stats import few_users_warning, normal_interval

__all__ = ["AdaptiveIPW", "AdaptiveIPWOptions", "assignment_probabilities", "ipw_difference",
           "require_positive_floor", "NOT_IDENTIFIED"]

#: how the warning of an estimate whose users include some that could never get an arm begins
NOT_IDENTIFIED = "not identified"


class AdaptiveIPWOptions(EstimatorOptions):
    """Options of :class:`AdaptiveIPW`."""

    normalized: bool = Field(False, description="Hajek (self-normalized) weights instead of Horvitz-Thompson")


def assignment_probabilities(data: AnalysisData) -> np.ndarray:
    """(n, A) probability of every arm at each user's assignment, in ``data.arms`` order.

    ``data.assignment_probabilities`` (recorded by adaptive allocation, else the fixed split).
    """
    p = data.assignment_probabilities
    n = len(data.outcomes)
    if p is None:
        raise DataError("adaptive-ipw: needs each user's assignment probabilities "
                        "(data.assignment_probabilities)")
    p = np.asarray(p, dtype=np.float64)
    if p.shape != (n, len(data.arms)):
        raise DataError(f"adaptive-ipw: assignment probabilities have shape {p.shape}, expected "
                        f"({n}, {len(data.arms)}) (users, arms)")
    return p


def require_positive_floor(scenario: Any, who: str) -> None:
    """Reject ``experiment.allocation.floor: 0`` for an estimator that weights users by ``1 / pi``.

    With a floor of 0 an adaptive allocation can give an arm probability 0 to some users; their
    outcome under that arm is never observable, so the mean over all users is not identified
    (positivity fails) and the inverse-probability weights are unbounded. Raises the
    :class:`~counterfeed.errors.ScenarioError` of ``scenario.error`` located at
    ``experiment.allocation.floor``. No allocation, or a floor above 0: nothing.
    """
    alloc = getattr(getattr(scenario, "experiment", None), "allocation", None)
    if alloc is None or float(alloc.floor) > 0.0:
        return
    raise scenario.error(
        f"floor {alloc.floor:g} lets the allocation give an arm probability 0, but estimator '{who}' weights "
        f"each user by 1 / (their assignment probability): a user who could never get an arm makes the "
        f"effect not identified and the weights unbounded; set a floor above 0 (e.g. 0.05; the inverse "
        f"weights are then at most 1 / floor), or drop '{who}' for a pure bandit",
        "experiment.allocation.floor")


def ipw_difference(y: np.ndarray, x: np.ndarray | None, arm: np.ndarray, p_t: np.ndarray, p_c: np.ndarray,
                   treatment: Any, control: Any, normalized: bool = False) -> tuple[float, np.ndarray]:
    """IPW difference of arm means (``x`` None) or of ratios of sums, and its influence values.

    ``y``, ``x``, ``arm``, ``p_t``, ``p_c``: (n,) per user (``p_*`` each user's probability of the
    treatment / control arm at assignment). Returns ``(tau, phi)``, ``phi`` (n,), with
    ``se = sd(phi) / sqrt(n)``. A user whose received arm has a probability that is not above 0
    is inconsistent data: a ``DataError``. (A probability of 0 for the arm a user did *not* get
    gives that user weight 0 here; the caller must decide whether the estimand is identified,
    as :class:`AdaptiveIPW` does.)
    """
    n = y.size
    is_t, is_c = arm == treatment, arm == control
    for mask, p, name in ((is_t, p_t, treatment), (is_c, p_c, control)):
        if not np.all(np.asarray(p)[mask] > 0.0):
            raise DataError(f"adaptive-ipw: a user assigned to arm '{name}' has a recorded probability of it "
                            f"that is not above 0")
    w_t, w_c = np.zeros(n), np.zeros(n)
    w_t[is_t] = 1.0 / np.asarray(p_t, dtype=np.float64)[is_t]
    w_c[is_c] = 1.0 / np.asarray(p_c, dtype=np.float64)[is_c]

    def arm_part(w: np.ndarray) -> tuple[float, np.ndarray]:
        if n == 0:
            return math.nan, np.zeros(0)
        norm = float(w.mean()) if normalized else 1.0
        if norm == 0.0:
            return math.nan, np.zeros(n)
        mu_y = float((w * y).mean() / norm)
        if x is None:
            # HT: phi = w y (mean mu); Hajek: mu + w (y - mu) / mean(w)
            return mu_y, (mu_y + w * (y - mu_y) / norm) if normalized else w * y
        mu_x = float((w * x).mean() / norm)
        if mu_x == 0.0:
            return math.nan, np.zeros(n)
        r = mu_y / mu_x
        # ratio of (weighted) means, delta method: r + w (y - r x) / (norm mu_x)
        return r, r + w * (y - r * x) / (norm * mu_x)

    m_t, phi_t = arm_part(w_t)
    m_c, phi_c = arm_part(w_c)
    return m_t - m_c, phi_t - phi_c


class AdaptiveIPW(Estimator):
    """Difference in means by inverse-probability weighting with the recorded assignment probabilities.

    With ``pi_{i,a}`` the probability that user ``i`` got arm ``a`` *at the moment of assignment*
    (under adaptive allocation it depends on everything observed before), ``W_i`` the arm and
    ``Y_i`` the per-user metric over the experiment, over all ``n`` users:

    .. math:: \\hat\\mu_a = \\frac{1}{n}\\sum_i \\frac{1\\{W_i = a\\}}{\\pi_{i,a}} Y_i, \\qquad
              \\hat\\tau = \\hat\\mu_t - \\hat\\mu_c, \\qquad
              \\widehat{se} = \\operatorname{sd}(\\varphi_i) / \\sqrt{n},

    with ``phi_i = 1{W_i=t} Y_i / pi_{i,t} - 1{W_i=c} Y_i / pi_{i,c}`` (Horvitz-Thompson); with
    ``normalized`` each arm's weights are divided by their mean (Hajek) and ``phi`` is the
    linearization. Ratio metrics use IPW-weighted sums and the delta method. Because
    ``E[1{W_i=a} / pi_{i,a} | past] = 1`` whatever the allocation rule did with the past, each term
    is unbiased for the potential-outcome mean (a martingale difference sequence); with probabilities
    bounded away from 0 (the allocator's ``floor``) the martingale CLT gives the normal interval,
    here with t quantiles on ``min(n_t, n_c) - 1`` degrees of freedom (the lower bound of Welch's,
    which the large-sample interval reaches; small arms get the wider interval and, below 10 users,
    a warning). Fewer than 2 users in an arm: a ``ModelError``.

    Positivity: the estimand needs ``pi_{i,t} > 0`` and ``pi_{i,c} > 0`` for every user. A scenario
    with ``experiment.allocation.floor: 0`` is rejected by ``validate`` and ``run``
    (:meth:`check_scenario`, located at that field). When the recorded probabilities still hold a 0
    (or NaN) for either arm (e.g. a third-party allocation), the estimate is ``point`` NaN, interval
    ``(-inf, inf)`` (``null`` in JSON), ``p_value`` None, ``diagnostics["identified"]`` false and a
    warning starting ``not identified``: never a number weighted by ``1 / 0``.
    The naive difference of arm means is reported in ``diagnostics["naive_point"]``: it is biased
    when who arrives when differs (e.g. heavy users arrive early, when the split was still even).

    Assumptions: no interference between users (arms' recommenders learn from their own users, so
    data volume differs with traffic; see ``training: weighted``), potential outcomes fixed given the
    user, probabilities recorded exactly. References: D. G. Horvitz, D. J. Thompson (1952), JASA 47;
    V. Hadad, D. A. Hirshberg, R. Zhan, S. Wager, S. Athey (2021), "Confidence intervals for policy
    evaluation in adaptive experiments", PNAS 118(15) (variance-stabilizing adaptive weights improve
    on this plain IPW when probabilities approach 0); M. Kato et al. (2020), "Efficient adaptive
    experimental design for average treatment effect estimation" (A2IPW).
    """

    name = "adaptive-ipw"
    tags = EstimatorTags(requires_assignment_probabilities=True, estimands=("difference",))
    Options = AdaptiveIPWOptions

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        level = self.level_for(data)
        probs = assignment_probabilities(data)
        frame = data.outcomes
        arm = frame["arm"].to_numpy()
        out = []
        for mname in self.metrics_for(data):
            info = data.metrics[mname]
            if info.kind == "ratio":
                y = frame[info.numerator].to_numpy(np.float64)
                x = frame[info.denominator].to_numpy(np.float64)
            else:
                y, x = frame[mname].to_numpy(np.float64), None
            ci = data.arms.index(data.control)
            for treat in data.treatments:
                ti = data.arms.index(treat)
                n_t, n_c = int(np.sum(arm == treat)), int(np.sum(arm == data.control))
                if min(n_t, n_c) < 2:
                    raise ModelError(f"{self.name}: metric '{mname}': needs at least 2 users in each of arms "
                                     f"'{treat}' and '{data.control}', got {n_t} and {n_c}")
                zero = ~(probs[:, [ti, ci]] > 0.0).all(axis=1)  # NaN counts as not positive
                if zero.any():
                    out.append(self._not_identified(data, mname, treat, level, int(zero.sum()), n_t, n_c,
                                                    self._naive(y, x, arm, treat, data.control)))
                    continue
                tau, phi = ipw_difference(y, x, arm, probs[:, ti], probs[:, ci], treat, data.control,
                                          self.options.normalized)
                if not math.isfinite(tau) or phi.size < 2:
                    continue
                se = float(np.std(phi, ddof=1) / math.sqrt(phi.size))
                df = float(min(n_t, n_c) - 1)  # Welch's lower bound on the degrees of freedom
                cmp = normal_interval(tau, se, level, df)
                naive = self._naive(y, x, arm, treat, data.control)
                w = 1.0 / np.where(arm == treat, probs[:, ti], probs[:, ci])
                diag = {"se": se, "df": df, "naive_point": naive, "max_weight": float(w.max()),
                        "min_probability": float(np.nanmin(probs[:, [ti, ci]])),
                        "weights": "hajek" if self.options.normalized else "horvitz-thompson",
                        "adaptive": bool(data.adaptive_assignment), "n_treatment": n_t, "n_control": n_c}
                few = few_users_warning(n_t, n_c, df)
                if few:
                    diag["warnings"] = few
                out.append(Estimate(estimator=self.name, metric=mname, arm=treat, control=data.control,
                                    point=tau, lower=cmp.lower, upper=cmp.upper, level=level,
                                    p_value=cmp.p_value, diagnostics=diag))
        return out

    def check_scenario(self, scenario: Any) -> None:
        """``experiment.allocation.floor`` must be above 0 (:func:`require_positive_floor`)."""
        require_positive_floor(scenario, self.name)

    def _not_identified(self, data: AnalysisData, metric: str, treat: str, level: float, n_zero: int,
                        n_t: int, n_c: int, naive: float) -> Estimate:
        """Some users had probability 0 of the treatment or the control arm: no point, no interval."""
        why = (f"{NOT_IDENTIFIED}: {n_zero} of {len(data.outcomes)} users had assignment probability 0 of arm "
               f"'{treat}' or '{data.control}', so their outcome under that arm could never be observed and "
               f"the difference over all users is not identified by inverse-probability weighting (positivity "
               f"fails; a floor above 0 in the allocation prevents it); no estimate or interval is reported")
        return Estimate(estimator=self.name, metric=metric, arm=treat, control=data.control, point=math.nan,
                        lower=-math.inf, upper=math.inf, level=level, p_value=None,
                        diagnostics={"identified": False, "warnings": [why], "n_zero_probability": n_zero,
                                     "naive_point": naive, "n_treatment": n_t, "n_control": n_c,
                                     "adaptive": bool(data.adaptive_assignment),
                                     "weights": "hajek" if self.options.normalized else "horvitz-thompson"})

    @staticmethod
    def _naive(y: np.ndarray, x: np.ndarray | None, arm: np.ndarray, treat: Any, control: Any) -> float:
        t, c = arm == treat, arm == control
        if x is None:
            return float(y[t].mean() - y[c].mean()) if t.any() and c.any() else math.nan
        return float(y[t].sum() / x[t].sum() - y[c].sum() / x[c].sum()) if x[t].sum() and x[c].sum() else math.nan


@hookimpl
def register_estimators(register):
    register(AdaptiveIPW)
