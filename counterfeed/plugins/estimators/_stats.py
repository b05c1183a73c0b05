"""Numerical helpers shared by the classical and Bayesian A/B estimators.

Everything here works on plain NumPy arrays of per-user values and returns plain Python floats,
so results go straight into :class:`~counterfeed.core.contracts.Estimate` diagnostics. Degenerate
inputs (constant arms, zero variance) give defined answers without NumPy warnings; inputs that
cannot be analysed raise :class:`~counterfeed.errors.ModelError` with a message naming the
estimator, metric, arm and segment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Iterator

import numpy as np

from counterfeed._lazy import lazy_module
from counterfeed.core.contracts import AnalysisData, MetricInfo
from counterfeed.core.scoring import interval_quantile
from counterfeed.errors import ModelError

special = lazy_module("scipy.special")  # imported on first use: keeps start-up light

__all__ = ["ArmStats", "Comparison", "FEW_USERS", "few_users_warning", "mean_stats", "ratio_stats", "welch", "one_constant_arm", "relative_lift",
           "ratio_variance_floor", "unbalanced_ratio_warning",
           "normal_interval", "where", "select_metrics", "iter_groups", "arm_values",
           "ratio_columns", "SmallGroup", "not_identified_segment", "require_users"]

_TINY = 1e-12

#: below this many users in the smaller arm, an estimate warns that its interval is rough
FEW_USERS = 10


def few_users_warning(n_t: int, n_c: int, df: float | None = None) -> list[str]:
    """The warning on an interval from a small arm (fewer than :data:`FEW_USERS` users), else none.

    Why: the t interval assumes roughly normal arm means. With a handful of users and a skewed
    metric it undercovers even with both arms varying (an A/A calibration of ``clicks`` with about
    5 users in the smaller arm covered 90% at 95%, 300 replications), and no estimate of the
    variance from so few users is reliable."""
    n = min(n_t, n_c)
    if n >= FEW_USERS:
        return []
    on = f" with t quantiles on {df:.3g} degrees of freedom" if df is not None and math.isfinite(df) else ""
    return [f"only {n} users in the smaller arm ({n_t} and {n_c}): the interval{on} rests on a central limit "
            f"theorem and a variance estimated from very few users; with a skewed metric it can undercover, so "
            f"read it as rough"]


#: a ratio comparison whose smaller arm has fewer active users than this, against an arm this many
#: times larger, has the smaller arm's variance floored (:func:`ratio_variance_floor`) and is warned of
#: (:func:`unbalanced_ratio_warning`)
UNBALANCED_SMALL, UNBALANCED_FACTOR = 100, 5


def _unbalanced(t: "ArmStats", c: "ArmStats") -> tuple["ArmStats", "ArmStats", bool] | None:
    """``(small, large, small_is_t)`` when the unbalanced-ratio rule fires, else None."""
    if not (t.ratio or c.ratio):
        return None
    small_is_t = t.units <= c.units
    small, large = (t, c) if small_is_t else (c, t)
    if small.units >= UNBALANCED_SMALL or large.units < UNBALANCED_FACTOR * small.units:
        return None
    return small, large, small_is_t


def ratio_variance_floor(t: "ArmStats", c: "ArmStats") -> tuple["ArmStats", "ArmStats", float | None]:
    """Floor the smaller arm's variance at the larger arm's per-user variance, for unbalanced ratio arms.

    Returns ``(t, c, df)``. When the unbalanced rule fires (a ratio comparison whose smaller arm has
    fewer than :data:`UNBALANCED_SMALL` active users and the larger at least :data:`UNBALANCED_FACTOR`
    times as many, :attr:`ArmStats.units`), the smaller arm's variance becomes

    .. math:: v_{small} = \\max\\big(v_{J,small},\\; s_{large}^2 / n_{small}\\big),

    with ``s_large^2 = n_large v_large`` the larger arm's per-user variance (``sd ** 2``) and ``n`` all
    the arm's users (the scale on which ``sd`` is defined, :func:`ratio_stats`). When the floor binds,
    the variance comes from the larger arm, so ``df = units_large - 1``; otherwise the arms are
    returned unchanged with ``df = None`` (as they are when the rule does not fire).

    Why: the small arm's jackknife variance is too often small exactly when its ratio is off (the
    misses are one-sided), and the large arm adds almost no variance to offset it. Taking the variance
    from the arm that measured it is Student's equal-variance logic ("Student" 1908, Biometrika 6,
    1-25), as in :func:`one_constant_arm`: exact when the arms' per-user variances are equal (a
    randomized test with a modest effect), conservative when the small arm truly varies less, and
    unchanged when it varies more (its own variance wins the max). In an A/A simulation study
    (4,000 replications per case; lognormal user intensities with sigma 0.5-2, beta click rates) the
    interval without the floor covered 0.888-0.935 at 95% from 10 vs 1,000 to 100 vs 1,000 active
    users, and 0.965-0.997 with it, at 1.03-1.88 times the median width.
    """
    hit = _unbalanced(t, c)
    if hit is None:
        return t, c, None
    small, large, small_is_t = hit
    floor = large.sd ** 2 / small.n
    if not floor > small.var:
        return t, c, None
    floored = replace(small, var=floor, sd=math.sqrt(floor * small.n))
    df = float(max(large.units - 1, 1))
    return (floored, c, df) if small_is_t else (t, floored, df)


def unbalanced_ratio_warning(t: "ArmStats", c: "ArmStats") -> list[str]:
    """The warning on a ratio comparison of a small arm against a much larger one, else none.

    Why: the symmetric t interval of the difference leans on the small arm's ratio being near
    normal; the large arm adds almost no variance to balance its skew, and with skewed per-user
    click rates (beta(2, 8)) A/A intervals covered 0.905 with 10 against 1,000 active users,
    0.916 with 20 against 2,000 and 0.931 with 50 against 5,000 (95%; +-0.012, 2,000 replications
    each), and 0.933 [0.922, 0.944] in a simulated 95/5 split of 300 users (break test 11), while
    equal arms of 10 covered 0.951. The comparison therefore floors the smaller arm's variance at
    the larger arm's per-user variance (:func:`ratio_variance_floor`); the warning says whether the
    floor bound. ``counterfeed calibrate`` measures a scenario's own coverage."""
    hit = _unbalanced(t, c)
    if hit is None:
        return []
    small, large, _ = hit
    head = (f"unbalanced arms for a ratio metric: {small.units} active users in the smaller arm against "
            f"{large.units}: ")
    df = ratio_variance_floor(t, c)[2]
    if df is not None:  # the floor bound
        return [head + f"the smaller arm's variance was floored at the larger arm's per-user variance "
                f"({large.sd ** 2:.6g} per user over its {small.n} users) with {df:g} "
                "degrees of freedom, so the interval is wider than the arms' own variances give and "
                "conservative when the arms vary alike; measure its coverage with counterfeed calibrate"]
    return [head + "the smaller arm's variance was floored at the larger arm's per-user variance, which "
            "its own variance already exceeds, so the floor did not widen the interval; measure its "
            "coverage with counterfeed calibrate"]


class SmallGroup(ModelError):
    """A group (arm within a segment) has too few users; whole-population callers re-raise it."""


@dataclass(frozen=True)
class ArmStats:
    """Summary of one arm: its point estimate (mean or ratio), the variance of that point, n, sd.

    ``ratio``: the point is a ratio of sums (:func:`ratio_stats`), whose comparisons take the
    conservative degrees of freedom of :func:`welch` and, for unbalanced arms, the variance floor of
    :func:`ratio_variance_floor`."""

    n: int
    point: float
    var: float
    sd: float
    extra: dict[str, Any] = field(default_factory=dict)
    ratio: bool = False

    @property
    def units(self) -> int:
        """The users the point rests on: for a ratio of sums those with a nonzero numerator or
        denominator (``extra["n_active"]``), else ``n``."""
        return int(self.extra.get("n_active", self.n)) if self.ratio else self.n

    @property
    def se(self) -> float:
        return math.sqrt(self.var)


@dataclass(frozen=True)
class Comparison:
    """Arm minus control (or a relative lift): point, standard error, interval, p-value, df."""

    point: float
    se: float
    lower: float
    upper: float
    p_value: float
    df: float
    warnings: tuple[str, ...] = ()
    #: a two-ray set ``(-inf, r0] U [r1, inf)`` (Fieller's when the control mean is near 0): ``(r0, r1)``,
    #: the gap it excludes; the bounds are then -inf and inf (estimators record it as ``diagnostics.rays``)
    rays: tuple[float, float] | None = None


def where(metric: str, arm: str | None = None, segment: str | None = None) -> str:
    """``metric 'x', arm 'b', segment 's'`` for error messages."""
    parts = [f"metric '{metric}'"]
    if arm is not None:
        parts.append(f"arm '{arm}'")
    if segment is not None:
        parts.append(f"segment '{segment}'")
    return ", ".join(parts)


def _sample_var(v: np.ndarray) -> float:
    """Unbiased sample variance; exactly 0 for a constant array (no rounding residue)."""
    if v.size < 2:
        return math.nan
    if float(np.max(v)) == float(np.min(v)):
        return 0.0
    return float(np.var(v, ddof=1))


def mean_stats(y: np.ndarray, *, ctx: str) -> ArmStats:
    """Mean of per-user values ``y`` with ``var = s^2 / n``; needs at least 2 users."""
    y = np.asarray(y, dtype=np.float64)
    n = int(y.size)
    if n < 2:
        raise SmallGroup(f"{ctx}: needs at least 2 users with a value, got {n}")
    mean = float(y[0]) if float(np.max(y)) == float(np.min(y)) else float(np.mean(y))
    s2 = _sample_var(y)
    return ArmStats(n, mean, s2 / n, math.sqrt(s2), {"mean": mean, "sd": math.sqrt(s2)})


def ratio_stats(x: np.ndarray, y: np.ndarray, *, ctx: str) -> ArmStats:
    """Ratio of sums ``R = sum(x) / sum(y)`` with its jackknife variance (delta method as a diagnostic).

    Parameters
    ----------
    x, y : (n,) arrays
        Per-user numerator (e.g. clicks) and denominator (e.g. impressions); users are the
        randomization unit.

    Returns
    -------
    ArmStats
        ``point = R``, ``var`` the jackknife variance of ``R``, ``sd = sqrt(n var)`` (per-user
        scale, so ``var = sd^2 / n`` as for a mean), ``ratio = True``; ``extra`` holds the sums,
        means, ``sd_linearized`` and ``se_delta`` (the delta-method standard error).

    Raises
    ------
    SmallGroup
        Fewer than 2 users. ``ModelError``: the denominator sums to 0.

    Notes
    -----
    The delta method (first-order Taylor expansion of ``mean(x) / mean(y)``) gives

    .. math:: \\operatorname{Var}(R) \\approx \\frac{1}{n}\\Big(\\frac{\\sigma_x^2}{\\mu_y^2}
              - 2\\frac{\\mu_x \\sigma_{xy}}{\\mu_y^3} + \\frac{\\mu_x^2 \\sigma_y^2}{\\mu_y^4}\\Big)
              = \\frac{\\operatorname{Var}(x - R y)}{n \\mu_y^2},

    the sample variance of the linearized values ``(x_i - R y_i) / mean(y)`` over n (Deng,
    Knoblich and Lu 2018, "Applying the Delta Method in Metric Analytics", KDD). It ignores that
    ``R`` and ``mean(y)`` are themselves estimated, and with a few dozen users of a skewed metric
    it is too small: in an A/A calibration of ``ctr`` with 40 users (about 20 per arm, 2 days,
    2,000 replications) its 95% Welch interval covered 93.2% (+-1.1 points, 95%), and 91.5%
    (+-1.7) with 20 users (1,000 replications). ``var`` is therefore the jackknife variance of the ratio,

    .. math:: v_J = \\frac{n - 1}{n} \\sum_i (R_{(i)} - \\bar R_{(\\cdot)})^2, \\qquad
              R_{(i)} = \\frac{\\sum_{j \\ne i} x_j}{\\sum_{j \\ne i} y_j},

    (Quenouille 1956; Tukey 1958; for ratio estimators Wolter 2007, Introduction to Variance
    Estimation, 2nd ed., ch. 4), which equals the delta method to first order, so large samples
    are unchanged, and is conservative: for any symmetric statistic of i.i.d. users its expectation
    is at least the variance of that statistic on ``n - 1`` users (Efron and Stein 1981, "The
    jackknife estimate of variance", Annals of Statistics 9, 586-596). A leave-one-out
    denominator of 0 (one user holds every denominator unit) leaves ``R_(i)`` undefined: the
    delta-method variance is used. Values that all lie on ``x = R y`` give variance 0.

    Users with ``x = y = 0`` (no impressions, hence no clicks) do not enter ``R``: the jackknife runs
    over the others, and ``extra["n_active"]`` counts them. The comparison's degrees of freedom and the
    small-arm warnings read that count (:attr:`ArmStats.units`): with 97% of users idle, 9 active users
    per arm had been given ``min(n) - 1 = 99`` degrees of freedom and covered 0.913 (break test 11).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = int(x.size)
    if n < 2:
        raise SmallGroup(f"{ctx}: needs at least 2 users with a value, got {n}")
    sx, sy = float(np.sum(x)), float(np.sum(y))
    if sy == 0.0:
        raise ModelError(f"{ctx}: the denominator sums to 0, so the ratio is undefined")
    r = sx / sy
    my = sy / n
    lin = (x - r * y) / my
    scale = max(1.0, abs(r)) * _TINY
    s2 = 0.0 if float(np.max(np.abs(lin))) <= scale else _sample_var(lin)
    var = s2 / n
    active = (x != 0.0) | (y != 0.0)  # the users R depends on
    xa, ya = x[active], y[active]
    m = int(xa.size)
    loo = sy - ya  # leave-one-out denominators
    if s2 > 0.0 and m >= 2 and np.all(loo != 0.0):
        r_loo = (sx - xa) / loo
        var = float((m - 1) / m * np.sum((r_loo - r_loo.mean()) ** 2))
    extra = {"ratio": r, "numerator_sum": sx, "denominator_sum": sy,
             "numerator_mean": sx / n, "denominator_mean": my, "sd_linearized": math.sqrt(s2),
             "se_delta": math.sqrt(s2 / n), "n_active": m}
    return ArmStats(n, r, var, math.sqrt(var * n), extra, ratio=True)


def _two_sided(stat: float, df: float) -> float:
    if math.isinf(df):
        return float(2.0 * special.ndtr(-abs(stat)))  # the normal and t tails that scipy.stats
    return float(2.0 * special.stdtr(df, -abs(stat)))  # uses, without its per-call overhead



def normal_interval(point: float, se: float, level: float, df: float = math.inf) -> Comparison:
    """``point +- q se`` with a t (finite ``df``) or normal quantile; p-value of ``point = 0``.

    A zero standard error gives a zero-width interval and p-value 1 (point 0) or 0 (point != 0).
    """
    if not (se > 0.0 and math.isfinite(se)):
        return Comparison(point, 0.0, point, point, 1.0 if point == 0.0 else 0.0, df)
    q = interval_quantile(level, df)
    return Comparison(point, se, point - q * se, point + q * se, _two_sided(point / se, df), df)


def one_constant_arm(t: ArmStats, c: ArmStats) -> tuple[ArmStats, ArmStats, float | None, list[str]]:
    """Guard the comparison of an arm that shows no variation with one that does.

    Returns ``(t, c, df, warnings)``. When exactly one arm's per-user values are all equal (its
    sample variance is 0) and the other's are not, the constant arm's variance is taken as the
    other arm's per-user variance (``v = s_other^2 / n_constant``) and ``df = n_other - 1``;
    otherwise the arms are returned unchanged with ``df = None`` and no warning.

    Why: a sample variance of 0 is an estimate, not knowledge. A small arm often shows no
    variation although its population varies (6 users of a metric that is 1 for 90% of users
    are all 1 with probability 0.53), and Welch's interval, which treats that 0 as exact, takes
    all its width from the other arm: in an A/A calibration with a 6-user arm it covered 76% at
    95%. With one variance estimate for both arms, ``(d - delta) / (s_other sqrt(1/n_t + 1/n_c))``
    is Student's t with ``n_other - 1`` degrees of freedom when the arms' variances are equal
    (the equal-variance assumption of Student's two-sample test, "Student" 1908, Biometrika 6,
    1-25, with the variance from the arm that measured it); when the constant arm truly varies
    less, the interval is conservative. Both arms constant: unchanged (a zero-width interval,
    flagged by :meth:`~counterfeed.core.contracts.Estimate.flag_zero_width`).
    """
    t_const, c_const = t.var == 0.0 and t.sd == 0.0, c.var == 0.0 and c.sd == 0.0
    if t_const == c_const:
        return t, c, None, []
    const, other, name = (t, c, "treatment") if t_const else (c, t, "control")
    s2 = other.var * other.n  # the other arm's per-user variance (v = s^2 / n)
    subst = replace(const, var=s2 / const.n, sd=math.sqrt(s2))
    msg = (f"the {name} arm's {const.n} users show no variation (sample variance 0); its variance was "
           f"taken as the other arm's ({s2:.6g} per user) with {other.n - 1} degrees of freedom, "
           f"a conservative interval: Welch's would treat the 0 as exact and undercover")
    return (subst, c, float(other.n - 1), [msg]) if t_const else (t, subst, float(other.n - 1), [msg])


def _prepare(t: ArmStats, c: ArmStats) -> tuple[ArmStats, ArmStats, float | None, list[str]]:
    """The arms a comparison uses and its fixed df, shared by :func:`welch` and :func:`relative_lift`:
    ``(t, c, df, warnings)``, with ``df`` None when it comes from the arms (:func:`welch`): one arm
    constant takes the other's variance (:func:`one_constant_arm`); an unbalanced ratio's smaller arm
    takes the floored variance (:func:`ratio_variance_floor`)."""
    t, c, df_guard, warns = one_constant_arm(t, c)
    if df_guard is not None or not (t.ratio or c.ratio):
        return t, c, df_guard, warns
    t, c, df_floor = ratio_variance_floor(t, c)
    return t, c, df_floor, warns


def welch(t: ArmStats, c: ArmStats, level: float) -> Comparison:
    """Welch's unequal-variance t interval and test for ``t.point - c.point``.

    Notes
    -----
    ``se^2 = v_t + v_c`` (``v`` the variance of each arm's point) and the Welch-Satterthwaite
    degrees of freedom ``df = (v_t + v_c)^2 / (v_t^2 / (n_t - 1) + v_c^2 / (n_c - 1))``
    (Welch 1947, Biometrika 34, 28-35). With zero variance in both arms ``df = n_t + n_c - 2``
    (a zero-width interval). With zero variance in one arm only, that arm's variance is the
    other's and ``df`` the other's ``n - 1`` (:func:`one_constant_arm`), with a warning on the
    comparison.

    Ratio metrics (an arm from :func:`ratio_stats`): ``df = min(u_t, u_c) - 1`` over the users the
    ratios rest on (:attr:`ArmStats.units`: those with impressions), the lower bound of the
    Welch-Satterthwaite ``df`` (Hsu 1938, "Contributions to the theory of 'Student's' t-test as
    applied to the problem of two samples", Statistical Research Memoirs 2, 1-24). Satterthwaite's
    ``df`` assumes each arm's variance estimate is a scaled chi-square on ``n - 1`` df, i.e. normal
    per-user values; the jackknife variance of a ratio of skewed per-user sums varies more than
    that. With the jackknife variance and this ``df``, the A/A calibrations in :func:`ratio_stats`
    covered 94.95% (40 users, 2,000 replications) and 94.8% (20 users, 1,000), against 93.2% and
    91.5% before. For large arms both ``df`` are large and the interval is the normal one.

    Unbalanced ratio arms (fewer than 100 active users in the smaller, at least 5 times as many in
    the larger): the smaller arm's variance is floored at the larger arm's per-user variance
    (:func:`ratio_variance_floor`), and when the floor binds ``df = u_large - 1``. In an A/A
    simulation study (4,000 replications per case, lognormal user intensities with sigma 0.5 to 2)
    such intervals covered 0.888-0.935 without the floor and 0.965-0.997 with it.

    A kurtosis-aware Satterthwaite ``df`` (each arm's ``Var(s^2)`` from its kurtosis, Cramer 1946
    sec. 27.4) was tried for every ratio comparison and not kept: it brought balanced arms with very
    heavy-tailed users (sigma 2) from 0.939-0.944 to 0.945-0.968 in that study, but on the
    simulator's own ``ctr`` (``benchmarks/calibration_relative.py``) it overcovered, 96.75% with an
    A/A rejection of 3.25% against 95.4% and 4.6%, outside the calibration band of 2,000 replications.
    """
    d = t.point - c.point
    t, c, df_fixed, warns = _prepare(t, c)
    vt, vc = t.var, c.var
    se = math.sqrt(vt + vc)
    if se == 0.0:
        return normal_interval(d, 0.0, level, float(t.n + c.n - 2))
    if df_fixed is not None:
        df = df_fixed
    elif t.ratio or c.ratio:
        df = float(max(min(t.units, c.units) - 1, 1))
    else:
        den = vt * vt / (t.n - 1) + vc * vc / (c.n - 1)
        df = (vt + vc) ** 2 / den if den > 0.0 else math.inf
    out = normal_interval(d, se, level, df)
    return replace(out, warnings=tuple(warns)) if warns else out


def relative_lift(t: ArmStats, c: ArmStats, level: float, *,
                  welch_df: bool = True) -> tuple[Comparison, list[str]] | None:
    """Relative lift ``m_t / m_c - 1`` of two independent arm estimates, with Fieller's interval.

    Parameters
    ----------
    t, c : ArmStats
        Treatment and control summaries: the point estimates ``m`` (a mean or a ratio of sums)
        and the variances ``v`` of those points.
    level : float
        Two-sided interval level in (0, 1).
    welch_df : bool
        ``True``: t quantile with the degrees of freedom of the difference (:func:`welch`; classical
        estimators); ``False``: normal quantile (the Bayesian Normal model).

    Returns
    -------
    (Comparison, warnings) or None
        ``point = m_t / m_c - 1``; ``se`` is the first-order delta-method standard error of the
        ratio, ``sqrt(v_t / m_c^2 + m_t^2 v_c / m_c^4)`` (Deng, Knoblich and Lu 2018, section
        3.3), kept as a diagnostic only; ``p_value`` tests a zero lift. ``None`` when
        ``m_c == 0`` (the lift is undefined). ``warnings`` is empty unless the interval is
        unbounded.

    Notes
    -----
    **Fieller's interval** (Fieller 1954, "Some problems in interval estimation", JRSS B 16,
    175-185; for A/B metrics: Kohavi, Tang and Xu 2020, Trustworthy Online Controlled
    Experiments, ch. 18 on percent-change intervals): the ratios ``rho = mu_t / mu_c`` that
    the test of ``mu_t - rho mu_c = 0`` does not reject,
    ``(m_t - rho m_c)^2 <= q^2 (v_t + rho^2 v_c)``. With ``a = m_c^2 - q^2 v_c > 0`` it is
    ``rho in [(m_t m_c - h) / a, (m_t m_c + h) / a]``, ``h = q sqrt(m_t^2 v_c + a v_t)``, an
    asymmetric interval around the point. Its p-value is that of ``m_t - m_c = 0`` (the
    Welch test of the difference), so it rejects exactly when the interval excludes 0, and an
    A/A test rejects exactly as often as the difference's test.

    Why not the symmetric ``point +- q se``: on small samples of skewed or rare-event metrics
    the ratio's sampling distribution is skewed, and that interval undercovered (91.8% for
    dwell, 92.2% for churn in a 400-user experiment). The log-ratio delta method
    (``exp(log(m_t / m_c) +- q sqrt(v_t / m_t^2 + v_c / m_c^2)) - 1``, Deng et al. 2018) does
    better but still undercovers when the variance estimates move with the means (CTR in
    ``tests/calibration/skewed_data.py``: 93.1% coverage, 7.3% A/A rejections over 6,000
    replications), needs positive means, and never covers a ratio <= 0. Fieller's coverage is that of the difference's test at the true ratio, so it is
    calibrated wherever the Welch interval is (``benchmarks/calibration_relative.py``).

    ``a <= 0`` means the control mean is not distinguishable from 0 at this level: the set is
    unbounded, so the bounds are ``-inf`` / ``inf`` (``null`` in JSON) with a warning, never a
    confident number. With ``a < 0`` and ``g = m_t^2 v_c + a v_t >= 0`` it is two rays,
    ``rho <= r_lo`` or ``rho >= r_hi`` with ``r = (m_t m_c -+ q sqrt(g)) / a``, which exclude the gap
    between them (lift 0 among them when the difference's test rejects): ``rays`` records that gap, by
    which the truth is scored and which the warning states; otherwise it is the whole line. ``q`` is the normal quantile or the t
    quantile with the difference's degrees of freedom (:func:`welch`), and ``v_t``, ``v_c`` are the
    difference's variances, so an unbalanced
    ratio's smaller arm has its floored variance here too (:func:`ratio_variance_floor`) and the lift
    rejects exactly when the difference does. Both arms constant
    (zero variances) give the exact ratio with a zero-width interval, as the difference does;
    one arm constant takes the other arm's variance, as the difference does
    (:func:`one_constant_arm`, whose warning is returned).
    """
    mt, mc = t.point, c.point
    if mc == 0.0:
        return None
    point = mt / mc - 1.0
    if t.var == 0.0 and c.var == 0.0:  # both arms constant: the exact ratio
        return normal_interval(point, 0.0, level, float(t.n + c.n - 2)), []
    # one arm constant, or an unbalanced ratio's floored arm: the variances of the difference
    guarded_t, guarded_c, _, guard = _prepare(t, c)
    vt, vc = guarded_t.var, guarded_c.var
    se = math.sqrt(vt / mc ** 2 + mt ** 2 * vc / mc ** 4)
    diff = welch(t, c, level) if welch_df else normal_interval(mt - mc, math.sqrt(vt + vc), level)
    q = interval_quantile(level, diff.df)
    a = mc * mc - q * q * vc
    if a <= 0.0:
        crit = (f"the critical value of t with {diff.df:.3g} degrees of freedom"
                if diff.df is not None and math.isfinite(diff.df)
                else "the normal critical value")
        g = mt * mt * vc + a * vt
        rays = None
        if a < 0.0 and g >= 0.0:  # two rays around a gap (the whole line when g < 0)
            r = sorted(((mt * mc - q * math.sqrt(g)) / a - 1.0, (mt * mc + q * math.sqrt(g)) / a - 1.0))
            rays = (r[0], r[1])
        shape = (f"two rays, lift <= {rays[0]:.6g} or >= {rays[1]:.6g} (the lifts between them are excluded"
                 + (", 0 among them: the lift is not 0 at this level" if rays[0] < 0.0 < rays[1] else "") + ")"
                 if rays else "the whole line")
        msg = (f"relative lift: the control mean {mc:.6g} is within {q:.3g} standard errors of 0 ({crit}), "
               f"so the ratio has no bounded {level:g} interval: Fieller's set is {shape}; "
               f"reported as (-inf, inf)")
        return Comparison(point, se, -math.inf, math.inf, diff.p_value, diff.df, rays=rays), [*guard, msg]
    h = q * math.sqrt(mt * mt * vc + a * vt)
    return Comparison(point, se, (mt * mc - h) / a - 1.0, (mt * mc + h) / a - 1.0,
                      diff.p_value, diff.df), guard


# --------------------------------------------------------------------------------------------
# Reading AnalysisData
# --------------------------------------------------------------------------------------------


def require_comparison(data: AnalysisData, estimator: str) -> None:
    """A control arm and at least one treatment arm, or a ModelError naming the estimator."""
    if data.control not in data.arms or not data.treatments:
        raise ModelError(f"{estimator}: needs a control arm and at least one treatment arm, "
                         f"got arms {data.arms} with control '{data.control}'")


def select_metrics(data: AnalysisData, chosen: list[str] | None, estimator: str) -> list[str]:
    """The metrics to analyse, each checked to be known and present in the outcomes."""
    names = list(chosen) if chosen else list(data.metrics)
    for m in names:
        if m not in data.metrics:
            known = ", ".join(sorted(data.metrics)) or "none"
            raise ModelError(f"{estimator}: unknown metric '{m}'; the scenario's metrics are: {known}")
        info = data.metrics[m]
        cols = ratio_columns(info) if info.kind == "ratio" else (m,)
        for col in cols:
            if col not in data.outcomes.columns:
                raise ModelError(f"{estimator}: column '{col}' of metric '{m}' is missing from the outcomes")
    return names


def ratio_columns(info: MetricInfo) -> tuple[str, str]:
    """(numerator, denominator) column names of a ratio metric."""
    if not info.numerator or not info.denominator:
        raise ModelError(f"ratio metric '{info.name}' must name its numerator and denominator")
    return info.numerator, info.denominator


def iter_groups(data: AnalysisData, segments: bool) -> Iterator[tuple[str | None, Any]]:
    """(None, all outcomes), then (segment name, rows) for each segment when ``segments``: those the
    users drew and the declared ones (``data.segments``) that drew none, whose rows are empty (and
    :func:`arm_values` raises :class:`SmallGroup` for them)."""
    yield None, data.outcomes
    if segments and "segment" in data.outcomes.columns:
        seg = data.outcomes["segment"].astype(str)
        for name in sorted(set(seg.unique()) | set(data.segments or ())):
            yield name, data.outcomes[(seg == name).to_numpy()]


def require_users(frame: Any, ctx: str) -> None:
    """:class:`SmallGroup` when ``frame`` (a segment's rows, :func:`iter_groups`) has no row at all."""
    if len(frame) == 0:
        raise SmallGroup(f"{ctx}: no user drew this segment")


def arm_values(frame: Any, data: AnalysisData, columns: tuple[str, ...], *, ctx: str,
               ) -> dict[str, np.ndarray]:
    """Per arm, a (n, len(columns)) float array of the rows with no missing value in ``columns``.

    Every arm of the experiment must have users; rows with a NaN in any column are dropped
    (e.g. a per-session mean for a user with no session); infinite values are an error.
    """
    require_users(frame, ctx)
    arm_col = frame["arm"].astype(str).to_numpy()
    block = frame[list(columns)].to_numpy(dtype=np.float64, na_value=np.nan)
    out: dict[str, np.ndarray] = {}
    for arm in [data.control, *data.treatments]:
        rows = block[arm_col == arm]
        rows = rows[~np.any(np.isnan(rows), axis=1)]
        if not np.all(np.isfinite(rows)):
            raise ModelError(f"{ctx}, arm '{arm}': infinite values in {', '.join(columns)}")
        if rows.shape[0] == 0:
            raise SmallGroup(f"{ctx}, arm '{arm}': the arm has no users with a value")
        out[arm] = rows
    return out


def not_identified_segment(who: str, method: str, data: AnalysisData, metric: str, segment: str, exc: Exception,
                           level: float, estimands: tuple[str, ...]) -> list[Any]:
    """A segment too small to compare the arms: one NOT IDENTIFIED estimate per (treatment arm,
    estimand) with a NaN point and interval and a warning saying why, so that "too small" reads
    differently from "no such segment"."""
    from counterfeed.core.estimation import Estimate

    why = f"NOT IDENTIFIED: segment '{segment}' is too small to compare the arms ({exc}); its effect is not estimated"
    nan = float("nan")
    return [Estimate(estimator=who, metric=metric, arm=arm, control=data.control, point=nan, lower=nan, upper=nan,
                     level=level, estimand=estimand, segment=segment,
                     diagnostics={"method": method, "identified": False, "warnings": [why]})
            for arm in data.treatments for estimand in estimands]
