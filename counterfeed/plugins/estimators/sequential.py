"""Sequential monitoring: daily estimates with always-valid intervals (and the naive ones beside them)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import Field

from counterfeed.core import display, figures
from counterfeed.core.estimation import (AnalysisData, Estimate, Estimator, EstimatorOptions,
                                         EstimatorTags)
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import DataError, ModelError
from counterfeed.plugins.estimators._stats import mean_stats, ratio_stats, welch

__all__ = ["SequentialDifference", "SequentialOptions", "cs_radius", "sequential_path"]


def cs_rho(level: float, planned_n: float) -> float:
    """The mixture parameter that makes the CS tightest at ``planned_n`` units.

    ``rho^2 = (-2 log alpha + log(1 - 2 log alpha)) / planned_n`` (Waudby-Smith et al. 2023, eq. for
    the optimal ``rho`` of the asymptotic CS).
    """
    a = 1.0 - level
    return math.sqrt((-2.0 * math.log(a) + math.log(1.0 - 2.0 * math.log(a))) / max(planned_n, 1.0))


def cs_radius(sd: float, n: int, level: float, rho: float) -> float:
    """Half-width of the asymptotic confidence sequence for a mean of ``n`` units with SD ``sd``.

    ``sd * sqrt( 2 (n rho^2 + 1) / (n^2 rho^2) * log( sqrt(n rho^2 + 1) / alpha ) )``.
    """
    if n < 2 or not math.isfinite(sd):
        return math.inf
    a = 1.0 - level
    nr = n * rho * rho
    return sd * math.sqrt(2.0 * (nr + 1.0) / (n * nr) * math.log(math.sqrt(nr + 1.0) / a))


def sequential_path(values: np.ndarray, arm: np.ndarray, exposed: np.ndarray, treatment: Any, control: Any,
                    level: float, planned_n: float, *, denominators: np.ndarray | None = None,
                    scale: bool = True) -> list[dict[str, Any]]:
    """Daily diff-in-means with the always-valid and the naive Welch intervals.

    Parameters
    ----------
    values : (D, n) cumulative per-user metric up to the end of each look (numerator for ratios).
    arm : (n,) arm labels; ``exposed`` : (D, n) bool, users who have entered by each look.
    denominators : (D, n) denominators for a ratio metric (then each arm's point is a ratio of sums).
    scale : multiply points and intervals by ``exposed_d / n`` (per-assigned-user units; the
        exposed set does not depend on the arm, so this is a known constant per look).
    """
    rho = cs_rho(level, planned_n)
    path: list[dict[str, Any]] = []
    n_all = arm.size
    for d in range(values.shape[0]):
        t_sel = exposed[d] & (arm == treatment)
        c_sel = exposed[d] & (arm == control)
        try:
            if denominators is None:
                st, sc = mean_stats(values[d, t_sel], ctx="t"), mean_stats(values[d, c_sel], ctx="c")
            else:
                st = ratio_stats(values[d, t_sel], denominators[d, t_sel], ctx="t")
                sc = ratio_stats(values[d, c_sel], denominators[d, c_sel], ctx="c")
        except ModelError:
            continue
        cmp = welch(st, sc, level)
        n = st.n + sc.n
        radius = cs_radius(cmp.se * math.sqrt(n), n, level, rho) if cmp.se > 0 else 0.0
        f = (float(exposed[d].sum()) / n_all) if (scale and denominators is None) else 1.0
        path.append({"day": d + 1, "n": int(n), "point": f * cmp.point,
                     "lower": f * (cmp.point - radius), "upper": f * (cmp.point + radius),
                     "naive_lower": f * cmp.lower, "naive_upper": f * cmp.upper,
                     **({"warnings": list(cmp.warnings)} if cmp.warnings else {})})
    return path


def _rejects(lo: float, hi: float) -> bool:
    return lo > 0.0 or hi < 0.0


class SequentialOptions(EstimatorOptions):
    """Options of :class:`SequentialDifference`."""

    every: float = Field(1.0, gt=0, le=365, description="days between looks")
    planned_users: int | None = Field(None, ge=2, description="units at which the CS is tightest "
                                      "(default: the number of assigned users)")


class SequentialDifference(Estimator):
    """Daily diff-in-means with an asymptotic confidence sequence (always valid) and naive Welch CIs.

    At every look ``d`` (every ``every`` days of the experiment period) the units are the users who
    have visited since the experiment started (they enter at their first visit; entry does not depend
    on the arm, because the first experiment visit was scheduled under the pre-period policy), and each
    user's outcome is their metric from the experiment start to the look. With arm means (ratio of
    sums for ratio metrics, delta method) the difference ``D_d`` has Welch standard error ``se_d``;
    with ``n_d`` units the per-unit standard deviation is ``sigma_d = se_d sqrt(n_d)``.

    Always-valid interval (the asymptotic confidence sequence of Waudby-Smith, Arbour, Sinha, Kennedy
    and Ramdas, built on Robbins' normal mixture)::

        D_d +- sigma_d * sqrt( 2 (n_d rho^2 + 1) / (n_d^2 rho^2) * log( sqrt(n_d rho^2 + 1) / alpha ) )

    with ``rho^2 = (-2 log alpha + log(1 - 2 log alpha)) / n*`` tuned for ``n* = planned_users``.
    Under the null ``P(exists d: 0 outside the interval) <= alpha`` asymptotically, so the experiment
    may be peeked at daily and stopped at any look. The naive interval ``D_d +- t se_d`` is valid at one
    fixed look only; rejecting at the first look it excludes 0 inflates the false-positive rate.

    Assumptions: users are independent units randomized at a fixed split; the asymptotic CS needs
    finite variance and is approximate for small ``n_d``. Points and intervals of sum/mean/binary
    metrics are reported per assigned user (multiplied by the exposed share, a constant of the look),
    so the final look is scored against the global effect.

    Output: the final look's estimate (always-valid interval) per metric and treatment, with
    ``diagnostics["path"]`` (``day, n, point, lower, upper, naive_lower, naive_upper``),
    ``rejected_any_day``, ``naive_rejected_any_day`` and the first such days.

    References: I. Waudby-Smith, D. Arbour, R. Sinha, E. H. Kennedy, A. Ramdas (2023), "Time-uniform
    central limit theory and asymptotic confidence sequences", arXiv:2103.06476 (Ann. Statist., to
    appear); H. Robbins (1970), "Statistical methods related to the law of the iterated logarithm".
    """

    name = "sequential"
    tags = EstimatorTags(requires_looks=True, estimands=("difference",))
    Options = SequentialOptions

    def look_times(self, duration: float) -> np.ndarray:
        """Every ``every`` days from the experiment start, and the end of the experiment."""
        looks = np.arange(self.options.every, duration + 1e-9, self.options.every)
        if looks.size == 0 or looks[-1] < duration - 1e-9:
            looks = np.append(looks, duration)
        return looks

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        if data.looks is None or data.end is None:
            raise DataError("sequential: needs the per-look outcomes of the A/B world (data.looks) and the "
                            "experiment end (run it from a scenario)")
        level = self.level_for(data)
        times = self.look_times(float(data.end - data.start))
        try:
            looks = data.looks.at(times)
        except KeyError as exc:
            raise DataError(f"sequential: {exc.args[0]}") from None
        arm = data.outcomes["arm"].to_numpy()
        planned = float(self.options.planned_users or data.n_users)
        out: list[Estimate] = []
        for mname in self.metrics_for(data):
            info = data.metrics[mname]
            names = [str(info.numerator), str(info.denominator)] if info.kind == "ratio" else [mname]
            missing = [m for m in names if m not in looks.values]
            if missing:
                raise DataError(f"sequential: no per-look values of metric(s) {missing} in data.looks")
            num = looks.values[names[0]]
            den = looks.values[names[1]] if info.kind == "ratio" else None
            for treat in data.treatments:
                path = sequential_path(num, arm, looks.exposed, treat, data.control, level, planned,
                                       denominators=den)
                if not path:
                    continue
                for row in path:
                    row["day"] = float(times[row["day"] - 1])
                out.append(self._final(mname, treat, data.control, level, path))
        return out

    def _final(self, metric: str, arm: str, control: str, level: float, path: list[dict[str, Any]]) -> Estimate:
        last = path[-1]
        rej = [r["day"] for r in path if _rejects(r["lower"], r["upper"])]
        naive = [r["day"] for r in path if _rejects(r["naive_lower"], r["naive_upper"])]
        diag = {"path": path, "method": "asymptotic confidence sequence (Waudby-Smith et al. 2023)",
                "looks": len(path), "rejected_any_day": bool(rej), "first_rejection_day": rej[0] if rej else None,
                "naive_rejected_any_day": bool(naive), "naive_first_rejection_day": naive[0] if naive else None,
                "naive_lower": last["naive_lower"], "naive_upper": last["naive_upper"]}
        guarded = [r["day"] for r in path if r.get("warnings")]
        if guarded:  # an arm without variation at some looks: its variance was the other arm's (_stats.welch)
            diag["warnings"] = [*last.get("warnings", []), *(
                [f"at {len(guarded)} of {len(path)} looks (days {', '.join(map(str, guarded[:10]))}"
                 f"{', ...' if len(guarded) > 10 else ''}) one arm's users showed no variation; its variance "
                 "was taken as the other arm's there"] if guarded != [last["day"]] else [])]
        return Estimate(estimator=self.name, metric=metric, arm=arm, control=control, point=last["point"],
                        lower=last["lower"], upper=last["upper"], level=level, diagnostics=diag)


@hookimpl
def register_estimators(register):
    register(SequentialDifference)


# -- its report section ----------------------------------------------------------------------------
@hookimpl
def counterfeed_report_sections(result, report):
    """"Sequential monitoring": per metric, each look's estimate and always-valid interval over the
    experiment (from ``diagnostics["path"]``), with the true effect."""
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for e in result.estimates:
        path = e.diagnostics.get("path") if e.estimator == SequentialDifference.name else None
        if not isinstance(path, list):
            continue
        pts = [p for p in path if isinstance(p, dict) and display.num(p.get("day")) is not None]
        if not pts:
            continue
        by_metric.setdefault(e.metric, []).append({
            "label": f"{e.estimator} · {e.arm}" + (f" ({e.estimand})" if e.estimand != "difference" else ""),
            "arm": e.arm, "truth": e.truth, "days": [display.num(p["day"]) for p in pts],
            **{k: [_nan(p.get(k)) for p in pts] for k in ("point", "lower", "upper")}})
    if not by_metric:
        return
    sec = report.section("Sequential monitoring")
    sec.paragraph("How each estimate and its interval moved as data accumulated, day by day.")
    for metric, lines in by_metric.items():
        sec.figure(f"monitoring-{metric}", f"{metric}: estimate (line) and interval (band) over time; dashed: "
                   "the true effect.", figures.paths, f"{metric} over the experiment", lines, report.colors,
                   report.level)


def _nan(x: Any) -> float:
    v = display.num(x)
    return math.nan if v is None else v
