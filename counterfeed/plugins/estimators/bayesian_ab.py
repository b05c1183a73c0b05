"""Bayesian A/B estimator: Beta-Binomial for binary metrics, a Student-t model (unknown variance)
for the others."""

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
from counterfeed.plugins.estimators._stats import (SmallGroup, arm_values, few_users_warning, iter_groups,
                                                   not_identified_segment, mean_stats, ratio_columns,
                                                   ratio_stats, relative_lift, select_metrics, welch,
                                                   where, require_comparison, unbalanced_ratio_warning)

stats = lazy_module("scipy.stats")  # imported on first use: keeps start-up light

__all__ = ["BayesianAB", "BayesianABOptions"]


class BayesianABOptions(EstimatorOptions):
    """Options of :class:`BayesianAB`."""

    prior_alpha: float = Field(1.0, gt=0.0)
    prior_beta: float = Field(1.0, gt=0.0)
    draws: int = Field(20_000, ge=1_000, le=5_000_000)
    relative: bool = True
    segments: bool = False


def _t_loss(d: float, se: float, df: float) -> tuple[float, float | None, float | None]:
    """For ``D = d + se T`` with ``T ~ t_df`` (``df = inf``: normal): ``P(D > 0)``,
    ``E[max(-D, 0)]`` and ``E[max(D, 0)]``.

    Uses ``E[(c - T)^+] = c F(c) + (df + c^2) / (df - 1) f(c)`` for the standard t (density
    ``f``, cdf ``F``; the normal limit is ``c Phi(c) + phi(c)``), from
    ``int_{-inf}^c t f(t) dt = -(df + t^2) f(t) / (df - 1)``. With ``df <= 1`` the posterior has no
    mean, so the expected losses are undefined: ``None``. ``se <= 0``: the point mass at ``d``.
    """
    if not se > 0.0:
        return (1.0 if d > 0 else 0.0 if d < 0 else 0.5), max(-d, 0.0), max(d, 0.0)
    z = d / se
    if math.isinf(df):
        pdf, cdf, cdf_neg = float(stats.norm.pdf(z)), float(stats.norm.cdf(z)), float(stats.norm.cdf(-z))
        return cdf, se * pdf - d * cdf_neg, se * pdf + d * cdf
    cdf, cdf_neg = float(stats.t.cdf(z, df)), float(stats.t.cdf(-z, df))
    if df <= 1.0:
        return cdf, None, None
    k = (df + z * z) / (df - 1.0) * float(stats.t.pdf(z, df))
    return cdf, se * k - d * cdf_neg, se * k + d * cdf


class BayesianAB(Estimator):
    """Posterior of the arm difference: Beta-Binomial (binary metrics) or Student-t (other metrics).

    Binary metrics (``MetricInfo.kind == "binary"``, per-user values 0/1): each arm's rate
    ``p_a ~ Beta(alpha + s_a, beta + n_a - s_a)`` with ``s_a`` successes among ``n_a`` users and
    prior ``Beta(alpha, beta)`` (default ``Beta(1, 1)``, uniform; ``prior_alpha``/``prior_beta``
    set an informative conjugate prior). The Binomial variance is a function of the rate, so its
    uncertainty is carried by the Beta posterior and nothing is plugged in. ``draws`` posterior
    draws per arm from a NumPy Generator keyed by ``(seed, metric, segment, arm)`` give the
    difference ``p_t - p_c`` (point: posterior mean, exact; interval: equal-tailed credible
    interval of the draws), ``prob_better = P(p_t > p_c)`` (``<`` when ``higher_is_better`` is
    false) and the relative lift ``p_t / p_c - 1`` (point: posterior median).

    Other metrics (sum, mean, ratio): each arm's users ``y_1..y_n ~ N(mu_a, sigma_a^2)`` with both
    parameters unknown and the reference (Jeffreys) prior ``p(mu_a, sigma_a^2) ∝ 1 / sigma_a^2``,
    whose marginal posterior is ``mu_a | data ~ t_{n_a - 1}(mean_a, s_a^2 / n_a)`` (Gelman et al.,
    BDA3, sec. 3.2); ratio metrics use the ratio of sums and its jackknife variance (the delta
    method's, estimated so that small arms do not undercover:
    :func:`~counterfeed.plugins.estimators._stats.ratio_stats`) in place of ``mean_a`` and
    ``s_a^2 / n_a``, and ``df = min(n_t, n_c) - 1``, the ``ratio`` estimator's (so its credible
    interval is that estimator's confidence interval; 94.6% coverage in a 40-user A/A
    calibration of ``ctr``, against 92.8% with the delta-method variance). The difference ``D = mu_t - mu_c`` then has the
    Behrens-Fisher posterior (Box and Tiao 1973, sec. 2.5), taken here as ``D ~ d + se T`` with
    ``T ~ t_df``, ``se^2 = s_t^2 / n_t + s_c^2 / n_c`` and the Welch-Satterthwaite ``df`` (the
    Welch 1947 t approximation of that distribution, between ``min(n_t, n_c) - 1`` and
    ``n_t + n_c - 2``). So the credible
    interval ``d +- t_{df} se`` is Welch's interval, ``prob_better = F_df(d / se)``, and the
    expected losses have a closed form (:func:`_t_loss`; undefined, ``None`` with a warning, when
    ``df <= 1``). The plug-in Normal model with a known variance that this replaces was
    overconfident at small n (an A/A calibration with 8 users covered 88-91% at 95%). An arm
    whose users show no variation takes the other arm's variance and ``df = n_other - 1`` with a
    warning (:func:`~counterfeed.plugins.estimators._stats.one_constant_arm`), and fewer than 10
    users in the smaller arm add the small-arm warning of the classical estimators
    (:func:`~counterfeed.plugins.estimators._stats.few_users_warning`). Fewer than 2 users in an
    arm: a ``ModelError`` (a ``not identified`` estimate for a segment). The relative lift
    ``mu_t / mu_c - 1`` uses Fieller's set with the same t quantile (Fieller 1954), unbounded
    with a warning when ``mu_c`` is not distinguishable from 0; shared with the classical
    estimators: :func:`~counterfeed.plugins.estimators._stats.relative_lift`.

    ``diagnostics["expected_loss"]`` is the expected loss of shipping the treatment,
    ``E[max(mu_c - mu_t, 0)]`` (signs swapped when lower is better), and
    ``expected_loss_control`` that of keeping the control (Stucchio 2015), in metric units.

    Assumptions: users independent and randomized; for the t model, arm means approximately
    normal (skewed metrics in very small arms can still undercover: hence the warning).

    References: Gelman, A. et al. (2013). Bayesian Data Analysis, 3rd ed., ch. 2-3 (sec. 3.2).
    Box, G. E. P. and Tiao, G. C. (1973). Bayesian Inference in Statistical Analysis, sec. 2.5.
    Welch, B. L. (1947). Biometrika 34, 28-35. Stucchio, C. (2015). Bayesian A/B Testing at VWO.
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
            if n < 2:  # no interval from fewer than two independent units (the prior alone would give one)
                raise SmallGroup(f"{ctx}, arm '{arm}': needs at least 2 users with a value, got {n}")
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
            # Welch-Satterthwaite t approximation of the Behrens-Fisher posterior of mu_t - mu_c
            # (an arm without variation takes the other's variance and df: one_constant_arm)
            ci = welch(t, c, level)
            d, se, df = ci.point, ci.se, ci.df
            gain = d if info.higher_is_better else -d
            prob, loss_t, loss_c = _t_loss(gain, se, df)
            warns = [*ci.warnings, *few_users_warning(t.units, c.units, df), *unbalanced_ratio_warning(t, c)]
            if loss_t is None:
                warns.append(f"the posterior of the difference is Student-t with {df:.3g} degrees of freedom "
                             f"(<= 1): it has no mean, so the expected losses are undefined (null)")
            diag = {"model": "student-t", "prior": "jeffreys", "n_control": c.n, "n_treatment": t.n,
                    "mean_control": c.point, "mean_treatment": t.point, "sd_control": c.sd,
                    "sd_treatment": t.sd, "se": se, "df": df if math.isfinite(df) else None,
                    "expected_loss": loss_t, "expected_loss_control": loss_c,
                    **({"warnings": warns} if warns else {})}
            out.append(self._make(data, metric, arm, segment, "difference", d, ci.lower, ci.upper,
                                  level, prob, diag))
            lift = relative_lift(t, c, level, welch_df=True) if self.options.relative else None
            if lift is not None:
                rel, warn = lift
                warn = [*warn, *(w for w in warns if w not in warn)]
                out.append(self._make(data, metric, arm, segment, "relative", rel.point, rel.lower,
                                      rel.upper, level, prob,
                                      {**diag, "se": rel.se, **({"warnings": warn} if warn else {}),
                                   **({"rays": list(rel.rays)} if rel.rays else {})}))
        return out


@hookimpl
def register_estimators(register):
    register(BayesianAB)
