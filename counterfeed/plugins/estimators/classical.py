"""Classical A/B estimators: difference in means (Welch), ratio metrics (delta method), CUPED.

All three share one driver: per metric (and per segment when ``segments: true``) they summarize
each arm, compare every treatment arm with the control, add the relative lift when asked, and
adjust p-values across treatment arms (``correction: holm | bh``). Users are the randomization
unit: ratio metrics are analysed per user with the delta method, never per impression.

Multiple treatment arms (``correction``), per metric and segment, for difference and relative
estimates separately:

- ``holm``: Holm step-down adjusted p-values; intervals at the Bonferroni level
  ``1 - (1 - level) / m`` (m treatment arms), which are simultaneous at ``level``.
  ``Estimate.level`` stays ``level`` (the family's); ``diagnostics["interval_level"]`` is the
  per-interval level.
- ``bh``: Benjamini-Hochberg adjusted p-values (FDR); intervals stay at ``level``.
- ``diagnostics["p_value_raw"]`` always holds the unadjusted p-value.
"""

from __future__ import annotations

import math
import warnings
from abc import abstractmethod
from typing import Any, Literal

import numpy as np

from counterfeed.analysis.multiple import adjust_pvalues, bonferroni_level
from counterfeed.core.contracts import MetricInfo
from counterfeed.core.estimation import AnalysisData, Estimate, Estimator, EstimatorOptions, EstimatorTags
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import ModelError
from counterfeed.plugins.estimators._stats import (ArmStats, Comparison, SmallGroup, arm_values, few_users_warning,
                                                   iter_groups, mean_stats, not_identified_segment, ratio_columns,
                                                   ratio_stats, relative_lift, require_users, select_metrics,
                                                   unbalanced_ratio_warning, welch, where, require_comparison)

__all__ = ["ClassicalOptions", "DifferenceInMeans", "RatioDeltaMethod", "CUPED", "register_estimators"]

NEEDS_PRE = "cuped needs a pre-period: set experiment.pre_period"


class ClassicalOptions(EstimatorOptions):
    """Options of the classical estimators."""

    relative: bool = True
    correction: Literal["none", "holm", "bh"] = "none"
    segments: bool = False


class _ArmComparisons(Estimator):
    """Shared driver: arm summaries -> Welch/delta comparisons -> corrected estimates."""

    Options = ClassicalOptions
    tags = EstimatorTags(separable_metrics=True)
    method: str = ""

    def metrics_for(self, data: AnalysisData) -> list[str]:
        """The metrics to analyse, each checked to be known and present (a ``ModelError`` otherwise)."""
        return select_metrics(data, self.options.metrics, self.name)

    @abstractmethod
    def _arm_stats(self, frame: Any, data: AnalysisData, metric: str, info: MetricInfo,
                   segment: str | None) -> tuple[dict[str, ArmStats], dict[str, Any]]:
        """Per-arm summaries of ``metric`` in ``frame`` and diagnostics shared by its estimates."""

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        require_comparison(data, self.name)
        level = self.level_for(data)
        out: list[Estimate] = []
        for metric in self.metrics_for(data):
            info = data.metrics[metric]
            for segment, frame in iter_groups(data, self.options.segments):
                try:
                    arms, common = self._arm_stats(frame, data, metric, info, segment)
                except SmallGroup as exc:
                    if segment is None:
                        raise ModelError(f"{self.name}: {exc}") from None
                    out.extend(not_identified_segment(self.name, self.method, data, metric, segment, exc, level,
                                                      ("difference", "relative")[:1 + self.options.relative]))
                    continue
                out.extend(self._compare(data, metric, segment, arms, common, level))
        return out

    def _compare(self, data: AnalysisData, metric: str, segment: str | None,
                 arms: dict[str, ArmStats], common: dict[str, Any], level: float) -> list[Estimate]:
        treatments = data.treatments
        corr = self.options.correction
        ilevel = bonferroni_level(level, len(treatments)) if corr == "holm" else level
        control = arms[data.control]
        diffs = [welch(arms[a], control, ilevel) for a in treatments]
        lifts = ([relative_lift(arms[a], control, ilevel) for a in treatments]
                 if self.options.relative else [None] * len(treatments))
        rels: list[Comparison | None] = [x[0] if x else None for x in lifts]
        p_diff = adjust_pvalues([d.p_value for d in diffs], corr)
        have = [i for i, r in enumerate(rels) if r is not None]
        p_rel = dict(zip(have, adjust_pvalues([rels[i].p_value for i in have], corr)))
        per_arm = common.pop("per_arm", {})
        out = []
        for i, arm in enumerate(treatments):
            t = arms[arm]
            base = {"method": self.method, "n_control": control.n, "n_treatment": t.n,
                    **{f"{k}_control": v for k, v in control.extra.items()},
                    **{f"{k}_treatment": v for k, v in t.extra.items()},
                    "correction": corr, "family_level": level, "interval_level": ilevel,
                    "n_comparisons": len(treatments), **common, **per_arm.get(arm, {})}
            few = few_users_warning(t.units, control.units, diffs[i].df) + unbalanced_ratio_warning(t, control)
            warn_d = [*base.get("warnings", []), *diffs[i].warnings, *few]
            out.append(self._estimate(data, metric, arm, segment, "difference", diffs[i],
                                      float(p_diff[i]), {**base, "warnings": warn_d} if warn_d else base))
            r = rels[i]
            if r is not None:
                warn = [*base.get("warnings", []), *lifts[i][1], *few]
                out.append(self._estimate(data, metric, arm, segment, "relative", r, float(p_rel[i]),
                                          {**base, "warnings": warn} if warn else base))
        return out

    def _estimate(self, data: AnalysisData, metric: str, arm: str, segment: str | None,
                  estimand: str, c: Comparison, p_adj: float, base: dict[str, Any]) -> Estimate:
        diag = {**base, "se": c.se, "df": c.df if math.isfinite(c.df) else None,
                "p_value_raw": c.p_value, **({"rays": list(c.rays)} if c.rays else {})}
        return Estimate(estimator=self.name, metric=metric, arm=arm, control=data.control,
                        point=c.point, lower=c.lower, upper=c.upper, level=base["family_level"],
                        estimand=estimand, segment=segment, p_value=p_adj, diagnostics=diag)

    # -- per-arm summaries shared by subclasses ---------------------------------------------
    def _means(self, frame: Any, data: AnalysisData, metric: str, segment: str | None,
               ) -> dict[str, ArmStats]:
        ctx = where(metric, segment=segment)
        vals = arm_values(frame, data, (metric,), ctx=ctx)
        return {a: mean_stats(v[:, 0], ctx=f"{ctx}, arm '{a}'") for a, v in vals.items()}

    def _ratios(self, frame: Any, data: AnalysisData, metric: str, info: MetricInfo,
                segment: str | None) -> dict[str, ArmStats]:
        ctx = where(metric, segment=segment)
        vals = arm_values(frame, data, ratio_columns(info), ctx=ctx)
        return {a: ratio_stats(v[:, 0], v[:, 1], ctx=f"{self.name}: {ctx}, arm '{a}'")
                for a, v in vals.items()}


class DifferenceInMeans(_ArmComparisons):
    """Difference in means with Welch's t interval; delta-method ratio for ratio metrics.

    Formula: ``d = mean(Y | arm) - mean(Y | control)``,
    ``se = sqrt(s_t^2 / n_t + s_c^2 / n_c)``, interval ``d +- t_{df, (1+level)/2} se`` with the
    Welch-Satterthwaite ``df``; two-sided p-value of ``d = 0``. An arm whose users show no
    variation while the other's do takes the other arm's variance and ``df = n_other - 1``, with a
    warning (:func:`~counterfeed.plugins.estimators._stats.one_constant_arm`: Welch's interval
    treats that zero as exact and undercovers). With ``relative: true`` also
    ``m_t / m_c - 1`` with Fieller's interval (Fieller 1954), unbounded with a warning when the
    control mean is not distinguishable from 0 (see
    :func:`~counterfeed.plugins.estimators._stats.relative_lift`; omitted when the control mean
    is 0). A ratio metric (``MetricInfo.kind == "ratio"``) is analysed exactly as
    :class:`RatioDeltaMethod` does.

    Assumptions: users are randomized independently to arms and are the unit of analysis; the
    arm means are approximately normal (central limit theorem); no interference between users.
    Rows whose metric is NaN are left out.

    Reference: Welch, B. L. (1947). The generalization of "Student's" problem when several
    different population variances are involved. Biometrika 34, 28-35. Kohavi, Tang and Xu
    (2020), Trustworthy Online Controlled Experiments, ch. 17.
    """

    name = "diff-in-means"
    method = "welch"

    def _arm_stats(self, frame, data, metric, info, segment):
        if info.kind == "ratio":
            return self._ratios(frame, data, metric, info, segment), {"method": "delta-ratio"}
        return self._means(frame, data, metric, segment), {}


class RatioDeltaMethod(_ArmComparisons):
    """Ratio metrics (e.g. CTR = clicks / impressions) by the delta method, users as the unit.

    Formula: per arm ``R = sum_i X_i / sum_i Y_i`` over users ``i``; the delta method's
    ``Var(R) ~ Var(X - R Y) / (n mean(Y)^2)`` (first-order Taylor expansion of ``mean(X)/mean(Y)``,
    reported as ``se_delta_<arm>``) is estimated by the jackknife over users, which agrees with it
    to first order and does not undercover in small arms
    (:func:`~counterfeed.plugins.estimators._stats.ratio_stats`); ``d = R_t - R_c`` with
    ``se = sqrt(Var(R_t) + Var(R_c))`` and a t interval on ``min(n_t, n_c) - 1`` degrees of
    freedom (Welch's lower bound: :func:`~counterfeed.plugins.estimators._stats.welch`); relative
    lift ``R_t / R_c - 1`` from the same variances with the Fieller interval of
    :func:`~counterfeed.plugins.estimators._stats.relative_lift`. An A/A calibration of ``ctr``
    with 40 users (2 days, 1,000 replications) covered 94.6% [93.0%, 95.8%] at 95%; the
    delta-method Welch interval it replaces covered 92.8% [91.0%, 94.2%].

    Assumptions: users (not impressions) are randomized and independent, so clicks of one user
    are correlated and are never treated as independent trials; enough users per arm for the
    first-order expansion (the mean denominator is not close to 0).

    Options: ``metrics`` defaults to every ratio metric of the scenario; naming a non-ratio
    metric is an error (use ``diff-in-means``).

    Reference: Deng, A., Knoblich, U. and Lu, J. (2018). Applying the Delta Method in Metric
    Analytics: A Practical Guide with Novel Ideas. KDD '18. Efron, B. and Stein, C. (1981). The
    jackknife estimate of variance. Annals of Statistics 9, 586-596. Welch (1947), Biometrika 34.
    """

    name = "ratio"
    method = "delta-ratio"

    def metrics_for(self, data):
        return select_metrics(data, self._chosen(data.metrics), self.name)

    def _chosen(self, metrics: dict[str, MetricInfo]) -> list[str]:
        """The ratio metrics to analyse; ModelError when there are none or one named is not a ratio."""
        if not self.options.metrics:
            names = [m for m, info in metrics.items() if info.kind == "ratio"]
            if not names:
                raise ModelError(f"{self.name}: the scenario has no ratio metrics "
                                 f"(metrics: {', '.join(metrics) or 'none'})")
            return names
        for m in self.options.metrics:
            if m in metrics and metrics[m].kind != "ratio":
                raise ModelError(f"{self.name}: metric '{m}' is a {metrics[m].kind} metric, not a "
                                 f"ratio; use estimator 'diff-in-means' for it")
        return list(self.options.metrics)

    def check_metrics(self, scenario, metrics):
        self._chosen(metrics)

    def _arm_stats(self, frame, data, metric, info, segment):
        return self._ratios(frame, data, metric, info, segment), {}


class CUPED(_ArmComparisons):
    """CUPED: difference in means of the outcome adjusted by its pre-period value.

    Formula: with ``Y`` the metric and ``X = pre_<metric>`` the same metric over the pre-period,
    ``theta = sum_a sum_i (Y - Ybar_a)(X - Xbar_a) / sum_a sum_i (X - Xbar_a)^2`` (the pooled
    within-arm regression slope), ``Y_cv = Y - theta (X - Xbar)`` with ``Xbar`` the mean over all
    users, then Welch's interval on ``Y_cv``:
    ``d_cv = (Ybar_t - Ybar_c) - theta (Xbar_t - Xbar_c)``. The within-arm variance falls by the
    factor ``1 - rho^2`` (rho the pooled within-arm correlation of Y and X); diagnostics report
    ``theta``, ``rho``, ``variance_reduction = 1 - var(Y_cv) / var(Y)`` (pooled within arms)
    and ``se_unadjusted``.

    Assumptions: the covariate is measured before treatment, so it is independent of the
    assignment and the adjustment adds no bias; the estimated ``theta`` is treated as known
    (its sampling error is O(1/n)). A missing pre-period value is replaced by the mean of the
    observed ones; a covariate with no observed value at all (in the population or a segment)
    gives the unadjusted difference in means, with ``adjusted: false`` and a warning naming the
    covariate. The relative lift is that of the adjusted means (same interval as above).
    Ratio metrics are left out when ``metrics`` is unset, with a warning naming them on the first
    estimate (``diagnostics["warnings"]``, shown under the run's table and in the report; see
    :meth:`note_left_out`, which the run's per-metric fallback calls too), and
    refused (a ``ModelError``) when named: adjust their numerator and denominator sum metrics, or
    use ``ratio``.

    Reference: Deng, A., Xu, Y., Kohavi, R. and Walker, T. (2013). Improving the Sensitivity of
    Online Controlled Experiments by Utilizing Pre-Experiment Data. WSDM '13.
    """

    name = "cuped"
    method = "cuped"

    def metrics_for(self, data):
        names = select_metrics(data, self._chosen(data.metrics), self.name)
        for m in names:
            if f"pre_{m}" not in data.outcomes.columns:
                raise ModelError(f"{self.name}: {NEEDS_PRE} (column 'pre_{m}' is missing from the outcomes)")
        return names

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        return self.note_left_out(data, super().estimate(data))

    def note_left_out(self, data: AnalysisData, estimates: list[Estimate]) -> list[Estimate]:
        """``estimates`` with the warning naming the ratio metrics the default metric list leaves out
        (``diagnostics["warnings"]`` and ``["skipped_ratio_metrics"]``), once, on the first; unchanged
        when ``metrics`` is set. ``estimate`` calls it, and so does the run's per-metric fallback, on
        this estimator, since its one-metric copies (:meth:`for_metrics`) leave nothing out."""
        skipped = self._skipped(data.metrics)
        if skipped and estimates:  # once, on the first row: the run's table and the report list its warnings
            first = estimates[0]
            parts = ", ".join(f"'{m}' ({data.metrics[m].numerator} / {data.metrics[m].denominator})"
                              for m in skipped)
            msg = (f"ratio metric(s) {parts} left out: cuped adjusts per-user values by their pre-period value, "
                   "and a ratio of sums has no per-user value to adjust; use estimator 'ratio' for them, or "
                   "cuped on their numerator and denominator metrics")
            first.diagnostics = {**first.diagnostics, "skipped_ratio_metrics": skipped,
                                 "warnings": [*first.diagnostics.get("warnings", []), msg]}
        return estimates

    def _skipped(self, metrics: dict[str, MetricInfo]) -> list[str]:
        """The ratio metrics the default metric list leaves out (none when ``metrics`` is set)."""
        return [] if self.options.metrics else [m for m, info in metrics.items() if info.kind == "ratio"]

    def _chosen(self, metrics: dict[str, MetricInfo]) -> list[str]:
        """The metrics to adjust (default: every non-ratio one); ModelError for a ratio metric."""
        if not self.options.metrics:  # default: every metric it can adjust (ratio metrics are skipped)
            names = [m for m, info in metrics.items() if info.kind != "ratio"]
            if not names:
                raise ModelError(f"{self.name}: the scenario has only ratio metrics; cuped needs sum, mean "
                                 f"or binary metrics (use estimator 'ratio')")
            return names
        for m in self.options.metrics:
            if m in metrics and metrics[m].kind == "ratio":
                raise ModelError(f"{self.name}: metric '{m}' is a ratio metric; cuped needs sum, mean "
                                 f"or binary metrics (use estimator 'ratio', or cuped on its numerator "
                                 f"and denominator)")
        return list(self.options.metrics)

    def check_metrics(self, scenario, metrics):
        self._chosen(metrics)
        if float(scenario.experiment.pre_period) <= 0.0:
            raise ModelError(f"{self.name}: {NEEDS_PRE}")

    def _arm_stats(self, frame, data, metric, info, segment):
        pre = f"pre_{metric}"
        require_users(frame, where(metric, segment=segment))
        if not frame[pre].notna().any():
            return self._unadjusted(frame, data, metric, segment, pre)
        filled = frame[[metric, pre, "arm"]].copy()
        filled[pre] = filled[pre].astype("float64").fillna(filled[pre].astype("float64").mean())
        ctx = where(metric, segment=segment)
        vals = arm_values(filled, data, (metric, pre), ctx=ctx)
        for a, v in vals.items():
            if v.shape[0] < 2:
                raise SmallGroup(f"{ctx}, arm '{a}': needs at least 2 users with a value, got {v.shape[0]}")
        sxy = sxx = syy = 0.0
        for v in vals.values():
            dy, dx = v[:, 0] - v[:, 0].mean(), v[:, 1] - v[:, 1].mean()
            sxy += float(dy @ dx)
            sxx += float(dx @ dx)
            syy += float(dy @ dy)
        theta = sxy / sxx if sxx > 0.0 else 0.0
        rho = sxy / math.sqrt(sxx * syy) if sxx > 0.0 and syy > 0.0 else 0.0
        xbar = float(np.mean(np.concatenate([v[:, 1] for v in vals.values()])))
        stats_adj, raw = {}, {}
        for a, v in vals.items():
            c = f"{ctx}, arm '{a}'"
            stats_adj[a] = mean_stats(v[:, 0] - theta * (v[:, 1] - xbar), ctx=c)
            raw[a] = mean_stats(v[:, 0], ctx=c)
        s_adj = sum((s.n - 1) * s.sd ** 2 for s in stats_adj.values())
        s_raw = sum((s.n - 1) * s.sd ** 2 for s in raw.values())
        common = {"theta": theta, "rho": rho, "covariate": pre, "adjusted": True,
                  "variance_reduction": 1.0 - s_adj / s_raw if s_raw > 0.0 else 0.0,
                  "pre_mean": xbar}
        common["per_arm"] = _unadjusted_per_arm(raw, data)
        return stats_adj, common

    def _unadjusted(self, frame, data, metric, segment, pre):
        """No observed covariate value: the unadjusted difference in means, with a warning."""
        where_ = f" in segment '{segment}'" if segment is not None else ""
        msg = (f"covariate '{pre}' has no observed value{where_}, so CUPED cannot adjust "
               f"'{metric}'; reporting the unadjusted difference in means (no variance reduction)")
        warnings.warn(f"{self.name}: {msg}", UserWarning, stacklevel=2)
        raw = self._means(frame, data, metric, segment)
        return raw, {"theta": 0.0, "rho": None, "covariate": pre, "adjusted": False,
                     "variance_reduction": 0.0, "pre_mean": None, "warnings": [msg],
                     "per_arm": _unadjusted_per_arm(raw, data)}


def _unadjusted_per_arm(raw: dict[str, ArmStats], data: AnalysisData) -> dict[str, dict[str, float]]:
    """Per treatment arm: the unadjusted difference's standard error and the raw arm means."""
    return {a: {"se_unadjusted": math.sqrt(raw[a].var + raw[data.control].var),
                "mean_unadjusted_treatment": raw[a].point,
                "mean_unadjusted_control": raw[data.control].point} for a in data.treatments}


@hookimpl
def register_estimators(register):
    """Register the classical estimators."""
    for cls in (DifferenceInMeans, RatioDeltaMethod, CUPED):
        register(cls)
