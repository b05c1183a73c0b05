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

__all__ = ["AdaptiveIPW", "AdaptiveIPWOptions", "assignment_probabilities", "ipw_difference"]


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


def ipw_difference(y: np.ndarray, x: np.ndarray | None, arm: np.ndarray, p_t: np.ndarray, p_c: np.ndarray,
                   treatment: Any, control: Any, normalized: bool = False) -> tuple[float, np.ndarray]:
    """IPW difference of arm means (``x`` None) or of ratios of sums, and its influence values.

    Returns ``(tau, phi)`` with ``se = sd(phi) / sqrt(n)``.
    """
    n = y.size
    w_t = np.where(arm == treatment, 1.0 / p_t, 0.0)
    w_c = np.where(arm == control, 1.0 / p_c, 0.0)

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

    @staticmethod
    def _naive(y: np.ndarray, x: np.ndarray | None, arm: np.ndarray, treat: Any, control: Any) -> float:
        t, c = arm == treat, arm == control
        if x is None:
            return float(y[t].mean() - y[c].mean()) if t.any() and c.any() else math.nan
        return float(y[t].sum() / x[t].sum() - y[c].sum() / x[c].sum()) if x[t].sum() and x[c].sum() else math.nan


@hookimpl
def register_estimators(register):
    register(AdaptiveIPW)
