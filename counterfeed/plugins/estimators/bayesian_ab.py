"""Bayesian A/B estimator: Beta-Binomial for binary metrics, a Normal model for the others."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from counterfeed._lazy import lazy_module
from counterfeed.core.estimation import (AnalysisData, Estimate, Estimator, EstimatorOptions,
                                         EstimatorTags)
from counterfeed.core.hookspecs import hookimpl
from counterfeed.core.randomness import Keys
from counterfeed.errors import ModelError
from counterfeed.plugins.estimators._stats import (SmallGroup, arm_values, iter_groups, not_identified_segment,
                                                   mean_stats, normal_interval, one_constant_arm, ratio_columns,
                                                   ratio_stats, relative_lift, select_metrics,
                                                   where, require_comparison)

stats = lazy_module("scipy.stats")  # imported on first use: keeps start-up light

__all__ = ["BayesianAB", "BayesianABOptions"]


class BayesianABOptions(EstimatorOptions):
    """Options of :class:`BayesianAB`."""

    prior_alpha: float = Field(1.0, gt=0.0)
    prior_beta: float = Field(1.0, gt=0.0)
    draws: int = Field(20_000, ge=1_000, le=5_000_000)
    relative: bool = True
    segments: bool = False


def _normal_loss(d: float, se: float) -> tuple[float, float, float]:
    """For ``D ~ N(d, se^2)``: ``P(D > 0)``, ``E[max(-D, 0)]`` and ``E[max(D, 0)]``."""
    if se <= 0.0:
        return (1.0 if d > 0 else 0.0 if d < 0 else 0.5), max(-d, 0.0), max(d, 0.0)
    z = d / se
    pdf = float(stats.norm.pdf(z))
    return (float(stats.norm.cdf(z)), se * pdf - d * float(stats.norm.cdf(-z)),
            se * pdf + d * float(stats.norm.cdf(z)))


class BayesianAB(Estimator):
    """Posterior of the arm difference: Beta-Binomial (binary metrics) or Normal (other metrics).

    Binary metrics (``MetricInfo.kind == "binary"``, per-user values 0/1): each arm's rate
    ``p_a ~ Beta(alpha + s_a, beta + n_a - s_a)`` with ``s_a`` successes among ``n_a`` users and
    prior ``Beta(alpha, beta)`` (default ``Beta(1, 1)``, uniform). ``draws`` posterior draws per arm
    from a NumPy Generator keyed by ``(seed, metric, segment, arm)`` give the difference
    ``p_t - p_c`` (point: posterior mean, exact; interval: equal-tailed credible interval of the
    draws), ``prob_better = P(p_t > p_c)`` (``<`` when ``higher_is_better`` is false) and the
    relative lift ``p_t / p_c - 1`` (point: posterior median).

    Other metrics (sum, mean, ratio): Normal model with a flat prior on each arm mean and the
    sampling variance plugged in, so ``mu_a | data ~ N(mean_a, s_a^2 / n_a)`` (ratio metrics: the
    ratio of sums with its delta-method variance). Everything is closed form:
    ``D = mu_t - mu_c ~ N(d, se^2)``, interval ``d +- z se``, ``prob_better = Phi(d / se)``, and the
    relative lift ``mu_t / mu_c - 1`` with Fieller's set (the ratios ``rho`` whose
    ``mu_t - rho mu_c`` has 0 inside its central posterior interval; Fieller 1954), unbounded
    with a warning when ``mu_c`` is not distinguishable from 0; shared with the classical
    estimators: :func:`~counterfeed.plugins.estimators._stats.relative_lift` with normal quantiles.

    ``diagnostics["expected_loss"]`` is the expected loss of shipping the treatment,
    ``E[max(mu_c - mu_t, 0)]`` (signs swapped when lower is better), and
    ``expected_loss_control`` that of keeping the control (Stucchio 2015).

    Assumptions: users independent and randomized; for the Normal model, enough users for the
    arm means to be approximately normal (it equals Welch's interval with a normal quantile).

    References: Gelman, A. et al. (2013). Bayesian Data Analysis, 3rd ed., ch. 2-3.
    Stucchio, C. (2015). Bayesian A/B Testing at VWO (technical report).
    """

    name = "bayesian-ab"
    tags = EstimatorTags(stochastic=True, separable_metrics=True)  # draws keyed by metric
    Options = BayesianABOptions

    def metrics_for(self, data: AnalysisData) -> list[str]:
        """The metrics to analyse, each checked to be known and present (a ``ModelError`` otherwise)."""
        return select_metrics(data, self.options.metrics, self.name)

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        require_comparison(data, self.name)
        level = self.level_for(data)
        out: list[Estimate] = []
        for metric in self.metrics_for(data):
            info = data.metrics[metric]
            for segment, frame in iter_groups(data, self.options.segments):
                try:
                    if info.kind == "binary":
                        out.extend(self._beta(data, frame, metric, segment, level, info.higher_is_better))
                    else:
                        out.extend(self._normal(data, frame, metric, segment, level))
                except SmallGroup as exc:
                    if segment is None:
                        raise ModelError(f"{self.name}: {exc}") from None
                    out.extend(not_identified_segment(self.name, "bayesian", data, metric, segment, exc, level,
                                                      ("difference", "relative")[:1 + self.options.relative]))
        return out

    def _make(self, data: AnalysisData, metric: str, arm: str, segment: str | None, estimand: str,
              point: float, lower: float, upper: float, level: float, prob: float,
              diag: dict[str, Any]) -> Estimate:
        return Estimate(estimator=self.name, metric=metric, arm=arm, control=data.control,
                        point=float(point), lower=float(lower), upper=float(upper), level=level,
                        estimand=estimand, segment=segment, prob_better=float(prob),
                        diagnostics=diag)

    def _beta(self, data, frame, metric, segment, level, higher) -> list[Estimate]:
        ctx = where(metric, segment=segment)
        vals = arm_values(frame, data, (metric,), ctx=ctx)
        a0, b0 = self.options.prior_alpha, self.options.prior_beta
        keys = Keys(data.seed)
        post, draws = {}, {}
        for arm, v in vals.items():
            y = v[:, 0]
            if not np.all((y == 0.0) | (y == 1.0)):
                raise ModelError(f"{self.name}: {ctx}, arm '{arm}': binary metric has values other "
                                 f"than 0 and 1")
            s, n = float(y.sum()), int(y.size)
            post[arm] = (a0 + s, b0 + n - s, n, s)
            rng = keys.numpy_generator(self.name, metric, segment or "", arm)
            draws[arm] = rng.beta(a0 + s, b0 + n - s, size=self.options.draws)
        q = [(1.0 - level) / 2.0, (1.0 + level) / 2.0]
        ac, bc, nc, sc = post[data.control]
        pc = draws[data.control]
        out = []
        for arm in data.treatments:
            at, bt, nt, st = post[arm]
            pt = draws[arm]
            diff = pt - pc
            gain = diff if higher else -diff
            prob = float(np.mean(gain > 0.0))
            diag = {"model": "beta-binomial", "prior_alpha": a0, "prior_beta": b0,
                    "n_control": nc, "n_treatment": nt, "successes_control": sc,
                    "successes_treatment": st, "posterior_control": [ac, bc],
                    "posterior_treatment": [at, bt], "mean_control": ac / (ac + bc),
                    "mean_treatment": at / (at + bt), "draws": self.options.draws,
                    "expected_loss": float(np.mean(np.maximum(-gain, 0.0))),
                    "expected_loss_control": float(np.mean(np.maximum(gain, 0.0)))}
            lo, hi = np.quantile(diff, q)
            out.append(self._make(data, metric, arm, segment, "difference",
                                  at / (at + bt) - ac / (ac + bc), lo, hi, level, prob, diag))
            if self.options.relative:
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    rel = pt / pc - 1.0
                if np.all(np.isfinite(rel)):
                    lo, mid, hi = np.quantile(rel, [q[0], 0.5, q[1]])
                    out.append(self._make(data, metric, arm, segment, "relative", mid, lo, hi,
                                          level, prob, diag))
        return out

    def _normal(self, data, frame, metric, segment, level) -> list[Estimate]:
        info = data.metrics[metric]
        ctx = where(metric, segment=segment)
        if info.kind == "ratio":
            vals = arm_values(frame, data, ratio_columns(info), ctx=ctx)
            arms = {a: ratio_stats(v[:, 0], v[:, 1], ctx=f"{self.name}: {ctx}, arm '{a}'")
                    for a, v in vals.items()}
        else:
            vals = arm_values(frame, data, (metric,), ctx=ctx)
            arms = {a: mean_stats(v[:, 0], ctx=f"{ctx}, arm '{a}'") for a, v in vals.items()}
        c = arms[data.control]
        out = []
        for arm in data.treatments:
            t = arms[arm]
            d = t.point - c.point
            tg, cg, _, guard = one_constant_arm(t, c)  # an arm without variation: the other's variance
            se = math.sqrt(tg.var + cg.var)
            gain = d if info.higher_is_better else -d
            prob, loss_t, loss_c = _normal_loss(gain, se)
            diag = {"model": "normal", "prior": "flat", "n_control": c.n, "n_treatment": t.n,
                    "mean_control": c.point, "mean_treatment": t.point, "sd_control": c.sd,
                    "sd_treatment": t.sd, "se": se, "expected_loss": loss_t,
                    "expected_loss_control": loss_c, **({"warnings": guard} if guard else {})}
            ci = normal_interval(d, se, level)
            out.append(self._make(data, metric, arm, segment, "difference", d, ci.lower, ci.upper,
                                  level, prob, diag))
            lift = relative_lift(t, c, level, welch_df=False) if self.options.relative else None
            if lift is not None:
                rel, warn = lift
                out.append(self._make(data, metric, arm, segment, "relative", rel.point, rel.lower,
                                      rel.upper, level, prob,
                                      {**diag, "se": rel.se, **({"warnings": warn} if warn else {})}))
        return out


@hookimpl
def register_estimators(register):
    register(BayesianAB)
