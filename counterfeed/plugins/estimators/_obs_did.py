"""Difference in differences on a per-period panel: Callaway-Sant'Anna (staggered-robust) and TWFE.

The panel (``data.panel``) has one row per (user, period) with the metric over that period and
``treated`` (0/1). A user's cohort is the first period in which they are treated (never-treated users
have none); treatment is absorbing. Estimands, in the metric's units per period:

- ``att``: the average over treated (user, period) cells of the effect, i.e. Callaway & Sant'Anna's
  "simple" aggregation of the group-time effects ``ATT(g, t)``, ``t >= g``, weighted by cohort size;
- ``att(e=k)``: the average effect ``k`` days after adoption (``k`` = the periods since adoption times
  the period length), their "event" aggregation.

Both average only the cells ``(g, t)`` that are identified (:func:`counterfeed.core.panel.identified_cells`):
without never-treated users nobody is left to compare with from the latest cohort's adoption on, and
a cohort adopting in the panel's first period has no period to difference against. The package
then leaves those cells out, as R's ``did`` does (``pre_process_did``). When it does,
:func:`fit_callaway_santanna` says so: the diagnostics list the identified and unidentified cells
(``identified_cells``, ``unidentified_cells``, ``unidentified_share``), ``att`` and each partly
identified ``att(e=k)`` carry a ``PARTLY IDENTIFIED`` warning and are scored against the truth over
their identified cells (``diagnostics["point_estimand"]``: ``att[identified]``,
``att(e=k)[identified]``; :mod:`counterfeed.core.truth_observational`), and an ``att(e=k)`` with
no identified cell is reported NOT IDENTIFIED (null point and interval).

:func:`fit_callaway_santanna` wraps the ``differences`` package's ``ATTgt`` (outcome-regression DiD
without covariates, analytic influence-function standard errors clustered by user);
:func:`fit_twfe` is linearmodels' ``PanelOLS`` of the metric on ``treated`` with user and period
effects and user-clustered errors, which is biased under staggered adoption with effects that vary
over time since adoption (Goodman-Bacon 2021; de Chaisemartin & D'Haultfoeuille 2020).

Reference: Callaway, B. & Sant'Anna, P. H. C. (2021). Difference-in-differences with multiple time
periods. J. Econometrics 225(2), 200-230.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from counterfeed.core.estimation import ATT, event_time_estimand
from counterfeed.core.panel import comparison_end, identified_cells
from counterfeed.core.truth_observational import identified_estimand
from counterfeed.errors import DataError, ModelError
from counterfeed.plugins.estimators._obs_data import quiet
from counterfeed.plugins.estimators._stats import FEW_USERS

__all__ = ["PanelFit", "cohorts", "fit_callaway_santanna", "fit_twfe", "period_length", "treated_cells"]


@dataclass
class PanelFit:
    """``point``/``se`` of the overall ATT and, per event-time day ``k``, ``(point, se)``."""

    point: float
    se: float
    df: float = math.inf
    events: dict[int, tuple[float, float]] = field(default_factory=dict)
    diagnostics: dict[str, Any] = field(default_factory=dict)
    #: estimands (``"att"`` or an event day ``k``) that use a group-time cell with fewer than two users
    #: in the cohort or in its comparison group: reported without an interval (:func:`thin_cells`)
    thin: dict[Any, str] = field(default_factory=dict)
    #: estimands (``"att"`` or an event day ``k``) that are NOT IDENTIFIED, with the reason: reported
    #: with a null point and interval (``events`` holds ``(nan, nan)`` for such a ``k``)
    unidentified: dict[Any, str] = field(default_factory=dict)
    #: per estimand (``"att"`` or an event day ``k``), diagnostics added to :attr:`diagnostics` on its
    #: row (``point_estimand``; ``warnings`` are appended to the fit's)
    notes: dict[Any, dict[str, Any]] = field(default_factory=dict)

    def diagnostics_for(self, key: Any) -> dict[str, Any]:
        """The diagnostics of the row of estimand ``key``: the fit's, plus :attr:`notes` ``[key]``."""
        extra = self.notes.get(key, {})
        out = {**self.diagnostics, **{k: v for k, v in extra.items() if k != "warnings"}}
        warns = [*self.diagnostics.get("warnings", []), *extra.get("warnings", [])]
        if warns:
            out["warnings"] = warns
        return out


def _check_panel(panel: pd.DataFrame, metric: str, estimator: str) -> pd.DataFrame:
    need = ["user", "period", "treated", metric]
    missing = [c for c in need if c not in panel.columns]
    if missing:
        raise DataError(f"{estimator}: data.panel lacks column(s) {', '.join(missing)} (has {', '.join(panel.columns)})")
    frame = panel[need + (["start"] if "start" in panel.columns else [])].copy()
    frame[metric] = frame[metric].astype(float)
    if not np.all(np.isfinite(frame[metric].to_numpy())):
        raise DataError(f"{estimator}: data.panel column '{metric}' has missing or infinite values")
    if frame[metric].nunique() < 2:
        raise ModelError(f"{estimator}: metric '{metric}' is constant in the panel; no effect can be estimated "
                         "with an interval")
    ever = frame.groupby("user")["treated"].max()
    if ever.sum() < 2 or len(ever) < 4:
        raise ModelError(f"{estimator}: metric '{metric}': needs at least two treated users among at least four "
                         f"(the panel has {int(ever.sum())} treated of {len(ever)})")
    return frame


def cohorts(panel: pd.DataFrame, estimator: str) -> pd.Series:
    """Per user, the first period with ``treated == 1`` (NaN when never treated); DataError when a
    user's treatment switches off again (the estimators assume absorbing treatment)."""
    p = panel.sort_values(["user", "period"])
    tr = p["treated"].astype(int)
    back = (tr.groupby(p["user"]).diff() < 0)
    if back.any():
        u = p.loc[back.to_numpy(), "user"].iloc[0]
        raise DataError(f"{estimator}: user {u} is treated and then untreated again in data.panel; staggered "
                        "designs need treatment to stay on once adopted")
    first = p[tr.to_numpy() == 1].groupby("user")["period"].min()
    return pd.Series(first, index=pd.Index(sorted(p["user"].unique()), name="user"), dtype=float)


def period_length(panel: pd.DataFrame) -> float:
    """Days per period (the median step of ``start`` between consecutive periods; 1 without ``start``)."""
    if "start" not in panel.columns:
        return 1.0
    starts = panel.groupby("period")["start"].first().sort_index().to_numpy(dtype=float)
    steps = np.diff(starts)
    return float(np.median(steps)) if steps.size else 1.0


def fit_callaway_santanna(panel: pd.DataFrame, metric: str, estimator: str, *, level: float,
                          control_group: str = "not_yet_treated", start: float = 0.0) -> PanelFit:
    """Callaway-Sant'Anna through ``differences.ATTgt`` (see the module docstring). ``start`` is the
    experiment start (the panel's day of it): messages name cohorts by experiment day, the scenario's
    ``cohorts[].at``."""
    from differences import ATTgt

    frame = _check_panel(panel, metric, estimator)
    coh = cohorts(frame, estimator)
    if coh.notna().sum() < 2:
        raise ModelError(f"{estimator}: metric '{metric}': fewer than two users are ever treated in the panel")
    first_period = frame["period"].min()
    if (coh.dropna() <= first_period).all():
        raise ModelError(f"{estimator}: every treated user is treated from the first period: no pre-period to "
                         "difference against")
    frame["cohort"] = frame["user"].map(coh)
    data = frame.set_index(["user", "period"])[[metric, "cohort"]].rename(columns={metric: "y"})
    alpha = 1 - level
    with quiet():
        att = ATTgt(data=data, cohort_column="cohort")
        gt = att.fit(formula="y", est_method="reg", control_group=control_group, alpha=alpha, progress_bar=False)
        simple = att.aggregate("simple", alpha=alpha)
        event = att.aggregate("event", alpha=alpha)
    point, se = _row(simple.iloc[0])
    if not math.isfinite(point):
        raise ModelError(f"{estimator}: metric '{metric}': no group-time effect could be estimated (no "
                         f"{control_group.replace('_', '-')} users to compare with)")
    length = period_length(frame)
    events: dict[int, tuple[float, float]] = {}
    pre: dict[str, float] = {}
    pre_se: dict[str, float | None] = {}
    for rel, row in event.iterrows():
        p, s = _row(row)
        if not math.isfinite(p):
            continue
        if int(rel) >= 0:
            events[int(round(int(rel) * length))] = (p, s)
        else:
            pre[str(int(rel))] = p
            pre_se[str(int(rel))] = s if math.isfinite(s) else None
    diag = {"method": "callaway-santanna", "control_group": control_group, "period_days": length,
            "cohorts": int(coh.notna().sum() and coh.dropna().nunique()), "pre_trend_estimates": pre,
            "pre_trend_se": pre_se}
    flagged = pre_trend_warning(pre, pre_se, level)
    if flagged:
        diag["warnings"] = [flagged]
    periods = np.sort(frame["period"].unique())
    thin = _thin_estimands(thin_cells(coh, periods, control_group), length, start)
    fit = PanelFit(point, se, math.inf, events, diag, thin)
    estimated = _estimated_cells(gt)
    _mark_identification(fit, coh, periods, estimated, length, start)
    n_comp = comparison_users(coh, estimated, control_group)
    if n_comp is not None:
        fit.diagnostics["comparison_users"] = n_comp
        few = few_controls_warning(n_comp, control_group)
        if few:
            fit.diagnostics["warnings"] = [*fit.diagnostics.get("warnings", []), few]
    return fit


def comparison_users(coh: pd.Series, cells: set[tuple[float, int]], control_group: str) -> int | None:
    """The smallest comparison group, in users, of the post-adoption cells ``(g, t)`` in ``cells`` (those
    the fit estimated and aggregates): the never-treated users, plus, for ``not_yet_treated``, the users
    first treated after ``t`` (as :func:`thin_cells`). None when ``cells`` has no such cell."""
    never = int(coh.isna().sum())
    if control_group != "not_yet_treated":
        return never if any(t >= g for g, t in cells) else None
    later = coh.dropna().to_numpy()
    sizes = [never + int((later > t).sum()) for g, t in cells if t >= g]
    return min(sizes) if sizes else None


def few_controls_warning(n_comp: int, control_group: str) -> str | None:
    """The warning on every did-staggered estimate whose comparison group has fewer than
    :data:`~counterfeed.plugins.estimators._stats.FEW_USERS` users, else None. Why: the standard error
    is clustered by user (an influence-function variance), and with a handful of control units its
    between-unit variance is estimated from those few users: a scenario with 2-4 never-treated users
    of 300 (``control_group: never_treated``) covered 62-82% at 95% over 34 replications."""
    if n_comp >= FEW_USERS:
        return None
    who = ("never-treated users" if control_group != "not_yet_treated"
           else "comparison users (never treated or not yet treated) in its smallest aggregated cell")
    return (f"FEW CONTROLS: only {n_comp} {who}, fewer than {FEW_USERS}: the user-clustered interval "
            "rests on a variance estimated from very few control units, and cluster-robust (or bootstrap) "
            "inference with so few does not keep its level; it can undercover badly, so read it as rough")


def pre_trend_warning(pre: dict[str, float], se: dict[str, float | None], level: float) -> str | None:
    """A warning when a pre-adoption event-time estimate (periods before adoption, keys ``"-k"``) is
    away from 0 beyond a Bonferroni-corrected two-sided ``level`` over the k estimates with a standard
    error; None otherwise. Pre-period estimates are the usual check of parallel trends (Callaway and
    Sant'Anna 2021, sec. 4); passing it does not prove them (Roth 2022, AER: Insights 4(3))."""
    from counterfeed.core.scoring import interval_quantile

    tested = {k: (pre[k], s) for k, s in se.items() if s is not None and s > 0}
    if not tested:
        return None
    crit = interval_quantile(1 - (1 - level) / len(tested))
    worst = max(tested, key=lambda k: abs(tested[k][0]) / tested[k][1])
    z = abs(tested[worst][0]) / tested[worst][1]
    if z <= crit:
        return None
    return (f"PRE-TRENDS: before adoption (event period {worst}) the estimate is {tested[worst][0]:.4g}, "
            f"{z:.1f} standard errors from 0 (Bonferroni limit {crit:.2f} over {len(tested)} pre-periods): "
            "parallel trends, which the ATT rests on, look violated")


def thin_cells(coh: pd.Series, periods: np.ndarray, control_group: str) -> dict[tuple[float, int], tuple[int, int]]:
    """The post-adoption group-time cells ``(g, t)``, ``t >= g``, of Callaway-Sant'Anna whose cohort
    ``g`` or comparison group has exactly one user, with ``(cohort size, comparison size)``. The
    comparison group of ``ATT(g, t)`` is the never-treated users, plus, for ``not_yet_treated``, the
    users first treated after ``t`` (Callaway & Sant'Anna 2021, section 2.2). A cell with no
    comparison user is not estimated (the package leaves it out); one with a single user in either
    group has a standard error from one unit, which the package still reports: no interval may rest
    on it (a between-unit variance needs two units)."""
    size = coh.value_counts()
    out: dict[tuple[float, int], tuple[int, int]] = {}
    for g in sorted(size.index):
        if g <= periods.min():  # adopts in the first period: not estimated (no base period)
            continue
        for t in periods[periods >= g]:
            comp = coh.isna() | (coh > t) if control_group == "not_yet_treated" else coh.isna()
            n_g, n_c = int(size[g]), int(comp.sum())
            if n_c >= 1 and min(n_g, n_c) < 2:
                out[(float(g), int(t))] = (n_g, n_c)
    return out


def _thin_estimands(cells: dict[tuple[float, int], tuple[int, int]], length: float,
                    start: float = 0.0) -> dict[Any, str]:
    """``{"att" or event day k: reason}`` for the estimands built on a thin cell; a cohort is named by
    its adoption day since the experiment ``start`` (panel period ``p`` starts on day ``p * length``)."""
    out: dict[Any, str] = {}
    for (g, t), (n_g, n_c) in sorted(cells.items()):
        why = (f"cohort adopting on day {round(g * length - start, 9):g} of the experiment: {n_g} user(s); its "
               f"comparison group in the period from experiment day {round(t * length - start, 9):g}: {n_c} user(s)")
        out.setdefault("att", why)
        out.setdefault(int(round((t - g) * length)), why)
    return out


def treated_cells(coh: pd.Series, periods: np.ndarray) -> pd.DataFrame:
    """One row per post-adoption cell ``(g, t)``, ``t >= g``: ``cohort`` (period ``g``), ``period``
    (``t``), ``users`` (the cohort's size: its user-periods in the cell) and ``identified``
    (:func:`counterfeed.core.panel.identified_cells`). ``coh``: per user, the first treated period
    (NaN: never, :func:`cohorts`); ``periods``: (P,) the panel's periods, sorted."""
    size = coh.value_counts()
    rows = [(float(g), int(t), int(size[g])) for g in sorted(size.index) for t in periods[periods >= g]]
    cells = pd.DataFrame(rows, columns=["cohort", "period", "users"])
    cells["identified"] = identified_cells(cells["cohort"].to_numpy(), cells["period"].to_numpy(),
                                           coh.to_numpy(), float(periods.min()) if periods.size else 0.0)
    return cells


def _estimated_cells(gt: Any) -> set[tuple[float, int]]:
    """The post-adoption cells ``(g, t)`` with a finite ``ATT`` in what ``ATTgt.fit`` returns (an
    ``ATTgtResult``, whose ``to_pandas()`` is indexed ``(cohort, base_period, time)``)."""
    table = gt.to_pandas() if hasattr(gt, "to_pandas") else gt
    out: set[tuple[float, int]] = set()
    for idx, row in table.iterrows():
        g, t = float(idx[0]), int(idx[-1])
        if t >= g and math.isfinite(_row(row)[0]):
            out.add((g, t))
    return out


def _day(p: float, length: float, start: float) -> float:
    """The experiment day on which panel period ``p`` starts."""
    return round(float(p) * length - start, 9)


def _cell_list(cells: pd.DataFrame, length: float, start: float) -> list[dict[str, Any]]:
    """``[{"cohort_day", "users", "period_days"}]`` per cohort: days since the experiment start of the
    cohort's adoption and of the starts of the periods of its cells (JSON-ready)."""
    return [{"cohort_day": _day(g, length, start), "users": int(part["users"].iloc[0]),
             "period_days": [_day(t, length, start) for t in sorted(part["period"])]}
            for g, part in cells.groupby("cohort", sort=True)]


def _cells_text(cells: pd.DataFrame, length: float, start: float) -> str:
    """``cohort adopting on day 1 (138 users): periods from day 3 to day 5; ...`` (runs of periods)."""
    parts = []
    for c in _cell_list(cells, length, start):
        days = c["period_days"]
        runs, lo = [], days[0]
        for a, b in zip(days, days[1:] + [None]):
            if b is None or b - a > length + 1e-9:
                runs.append(f"day {lo:g}" if lo == a else f"days {lo:g} to {a:g}")
                lo = b
        parts.append(f"cohort adopting on day {c['cohort_day']:g} ({c['users']} users): periods starting on "
                     + ", ".join(runs))
    return "; ".join(parts)


def _why_unidentified(cells: pd.DataFrame, coh: np.ndarray, first_period: float, length: float,
                      start: float) -> str:
    """Why ``cells`` (not identified) have no comparison: nobody untreated from the latest cohort's
    adoption on, and/or a cohort adopting in the first period."""
    why = []
    end = comparison_end(coh)
    if math.isfinite(end) and (cells["period"] >= end).any():
        why.append(f"no user is never treated, so from experiment day {_day(end, length, start):g}, when the "
                   "last cohort adopts, nobody is left untreated to compare with")
    first = sorted({_day(g, length, start) for g in cells["cohort"] if g <= first_period})
    if first:
        why.append(f"the cohort(s) adopting on day(s) {', '.join(f'{d:g}' for d in first)} adopt in the panel's "
                   "first period, with no earlier period to difference against")
    return "; and ".join(why)


def _mark_identification(fit: PanelFit, coh: pd.Series, periods: np.ndarray, estimated: set[tuple[float, int]],
                         length: float, start: float) -> None:
    """Tell the treated cells the fit could not identify (no comparison group): diagnostics listing the
    identified and unidentified cells, a PARTLY IDENTIFIED warning and the ``[identified]`` truth to
    score against on ``att`` and on each partly identified ``att(e=k)``, NOT IDENTIFIED rows for the
    event times with no identified cell. A no-op when every treated cell is identified. When the
    package's estimated cells are not the identified ones (unexpected), every estimand is NOT
    IDENTIFIED: no truth describes what it averaged. ``coh``, ``periods``: as :func:`treated_cells`;
    ``estimated``: the cells with an estimate (:func:`_estimated_cells`). In place."""
    cells = treated_cells(coh, periods)
    ident = cells[cells["identified"]]
    lost = cells[~cells["identified"]]
    ident_set = {(float(g), int(t)) for g, t in zip(ident["cohort"], ident["period"])}
    if lost.empty and estimated == ident_set:
        return
    total = float(cells["users"].sum())
    fit.diagnostics.update({
        "identified_cells": _cell_list(ident, length, start),
        "unidentified_cells": _cell_list(lost, length, start),
        "unidentified_share": float(lost["users"].sum()) / total if total > 0 else None,
    })
    why = _why_unidentified(lost, coh.to_numpy(), float(periods.min()), length, start) if not lost.empty else ""
    event = np.rint((cells["period"] - cells["cohort"]).to_numpy() * length).astype(np.int64)
    if estimated != ident_set:
        odd = sorted(estimated ^ ident_set)
        reason = (f"NOT IDENTIFIED: the estimator's group-time cells differ from the identified cells of this "
                  f"design (cells (cohort period, period) in one and not the other: {odd[:6]}); what it "
                  "averaged has no matching truth, so no estimate is reported")
        fit.unidentified["att"] = reason
        for k in list(fit.events):
            fit.unidentified[k] = reason
        return
    share = float(lost["users"].sum()) / total
    fit.notes["att"] = {"point_estimand": identified_estimand(ATT), "warnings": [
        f"PARTLY IDENTIFIED: {len(lost)} of {len(cells)} treated (cohort, period) cells, {share:.0%} of the "
        f"treated user-periods, are not identified and are left out of att ({_cells_text(lost, length, start)}): "
        f"{why}. att is therefore the ATT over the {len(ident)} identified cells only "
        f"({_cells_text(ident, length, start)}) and is scored against that estimand's truth "
        f"('{identified_estimand(ATT)}'), not against the ATT over all treated user-periods, which this design "
        "does not identify; the two differ when effects vary across cohorts or with time since adoption "
        "(Callaway & Sant'Anna 2021; R's did leaves out the same cells)"]}
    for k in sorted(set(event.tolist())):
        at = event == k
        kept, gone = cells[at & cells["identified"].to_numpy()], cells[at & ~cells["identified"].to_numpy()]
        name = event_time_estimand(int(k))
        if gone.empty:
            continue
        if kept.empty:
            fit.events[int(k)] = (math.nan, math.nan)
            fit.unidentified[int(k)] = (f"NOT IDENTIFIED: {name}: no cell {int(k)} day(s) after adoption is "
                                        f"identified ({_cells_text(gone, length, start)}): {why}; not estimated")
            continue
        if int(k) not in fit.events:
            continue
        part = float(gone["users"].sum()) / float(cells.loc[at, "users"].sum())
        fit.notes[int(k)] = {"point_estimand": identified_estimand(name), "warnings": [
            f"PARTLY IDENTIFIED: {name} averages only the identified cells "
            f"({_cells_text(kept, length, start)}); the cells of {_cells_text(gone, length, start)}, {part:.0%} of "
            f"the user-periods {int(k)} day(s) after adoption, are not identified and are left out ({why}). It is "
            f"scored against the truth over the identified cells ('{identified_estimand(name)}'), not over all of "
            "them"]}


def _row(row: pd.Series) -> tuple[float, float]:
    """(ATT, std_error) from a row of ``ATTgt.aggregate`` (its columns are a MultiIndex)."""
    vals = {str(k[-1]) if isinstance(k, tuple) else str(k): v for k, v in row.items()}
    p, s = float(vals.get("ATT", math.nan)), float(vals.get("std_error", math.nan))
    return p, (s if math.isfinite(s) else math.nan)


def fit_twfe(panel: pd.DataFrame, metric: str, estimator: str) -> PanelFit:
    """Two-way fixed effects: ``PanelOLS(y ~ treated + EntityEffects + TimeEffects)``, clustered by user."""
    from linearmodels.panel import PanelOLS

    frame = _check_panel(panel, metric, estimator)
    if frame["treated"].nunique() < 2:
        raise ModelError(f"{estimator}: metric '{metric}': 'treated' does not vary in the panel")
    data = frame.set_index(["user", "period"]).sort_index()
    with quiet():
        mod = PanelOLS(data[metric], data[["treated"]].astype(float), entity_effects=True, time_effects=True)
        res = mod.fit(cov_type="clustered", cluster_entity=True)
    point, se = float(res.params["treated"]), float(res.std_errors["treated"])
    if not math.isfinite(point):
        raise ModelError(f"{estimator}: metric '{metric}': the treatment is collinear with the fixed effects")
    n_users = int(data.index.get_level_values(0).nunique())
    n_never = int(cohorts(frame, estimator).isna().sum())
    diag: dict[str, Any] = {"method": "twfe", "se_type": "clustered by user", "n_users": n_users,
                            "n_periods": int(data.index.get_level_values(1).nunique()), "never_treated_users": n_never}
    if n_never < FEW_USERS:
        diag["warnings"] = [forbidden_comparisons(n_never)]
    return PanelFit(point, se if math.isfinite(se) else 0.0, float(n_users - 1), {}, diag)


def forbidden_comparisons(n_never: int) -> str:
    """twfe's warning when fewer than ``FEW_USERS`` users are never treated (:func:`fit_twfe`): its
    comparisons then rest mostly (with none, only) on already-treated users as controls. A break test's
    rollout with 1 never-treated user of 300 gave 0.332 [0.167, 0.498] against an ATT of 0.533, unwarned,
    while the same rollout with none carried this warning."""
    who = ("no user is never treated, so twfe compares later cohorts with already-treated users as controls "
           "(and, once the last cohort adopts, has no untreated user at all)" if n_never == 0 else
           f"only {n_never} {'user is' if n_never == 1 else 'users are'} never treated (fewer than {FEW_USERS}), so "
           "twfe's comparisons rest mostly on later cohorts against already-treated users as controls")
    return (f"FORBIDDEN COMPARISONS: {who}; under effects that change with time since adoption these comparisons "
            "enter with wrong-signed weights and bias the estimate, interval included, away from the rollout's ATT "
            "(Goodman-Bacon 2021, J. Econometrics 225(2); de Chaisemartin & D'Haultfoeuille 2020, AER 110(9)); "
            "did-staggered reports what this design identifies")
