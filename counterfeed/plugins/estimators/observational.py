"""Causal estimators for data that were not randomized: backdoor adjustment, IV, difference in differences.

Registered names (each a plugin like any other):

- ``backdoor-regression``, ``backdoor-ipw``, ``aipw``, ``backdoor-matching``: the ATE (estimand
  ``difference``) adjusted for the backdoor set that DoWhy identifies from the declared graph
  (``data.graph``) among the pre-treatment covariates (``data.covariates``); each estimate carries
  DoWhy's refutations and a Cinelli-Hazlett sensitivity verdict in its diagnostics;
- ``iv-2sls``: the LATE (estimand ``late``) of an encouragement design by two-stage least squares
  with the randomized nudge (``data.instrument``) as the instrument;
- ``did-staggered``: Callaway & Sant'Anna's staggered-robust difference in differences on the
  per-period panel (``data.panel``), estimands ``att`` and ``att(e=k)``;
- ``twfe``: the two-way fixed-effects regression on the same panel (estimand ``att``), for comparison.

Every estimate's diagnostics hold the naive difference in means of the same comparison
(``naive``), so the report shows what ignoring the design would have said. Formulas, assumptions and
references are in each helper module (``_obs_backdoor``, ``_obs_iv``, ``_obs_did``, ``_obs_refute``)
and in docs/observational.md.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from abc import abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from counterfeed.core.estimation import (ATT, LATE, AnalysisData, Estimate, Estimator, EstimatorOptions,
                                         EstimatorTags, event_time_estimand)
from counterfeed._lazy import lazy_module
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import ModelError
from counterfeed.plugins.estimators._stats import mean_stats, normal_interval, welch

# the helper modules import pandas and the causal libraries: loaded on first use, so that
# `counterfeed --help` and `validate` stay light (see counterfeed.testing.startup)
bd = lazy_module("counterfeed.plugins.estimators._obs_backdoor")
od = lazy_module("counterfeed.plugins.estimators._obs_data")

__all__ = ["BackdoorOptions", "BackdoorRegression", "BackdoorIPW", "AIPW", "BackdoorMatching", "IVOptions",
           "InstrumentalVariables", "PanelOptions", "StaggeredDiD", "TwoWayFixedEffects", "register_estimators"]

OBSERVATIONAL = ("backdoor-regression", "backdoor-ipw", "aipw", "backdoor-matching", "iv-2sls", "did-staggered",
                 "twfe")


def _seed(data: AnalysisData, *parts: str) -> int:
    """A random state keyed by the run's seed and the comparison (never a global generator)."""
    return (int(data.seed) * 1_000_003 + zlib.crc32("/".join(parts).encode())) % 2**31


def _naive(y, t, level: float) -> dict[str, float]:
    """The difference in means of the same users, ignoring how they were assigned (Welch)."""
    c = welch(mean_stats(y[t == 1], ctx="treated"), mean_stats(y[t == 0], ctx="control"), level)
    return {"point": c.point, "lower": c.lower, "upper": c.upper, "se": c.se}


def _constant(y: np.ndarray, name: str, comp: str) -> None:
    if float(np.max(y)) == float(np.min(y)):
        raise ModelError(f"{name}: {comp}: the outcome is constant; no effect can be estimated with an interval")


class _Observational(Estimator):
    """Base of every observational estimator: its ``check_metrics`` refuses, before anything is
    simulated, what ``estimate`` would (``_obs_metrics.per_user_metrics``, which ``estimate`` runs
    through ``_obs_data.analysable_metrics``): a ratio metric named in ``metrics``, or analysed metrics
    (the default) that are all ratios. Ratio metrics among the default metrics are skipped."""

    def check_metrics(self, scenario: Any, metrics: Any) -> None:
        from counterfeed.plugins.estimators._obs_metrics import per_user_metrics

        per_user_metrics(metrics, self.options.metrics, self.name)


class BackdoorOptions(EstimatorOptions):
    """Options of the backdoor estimators."""

    refute: bool = Field(True, description="run DoWhy's placebo, random-common-cause and data-subset refuters")
    proceed_when_unidentifiable: bool = Field(
        False, description="adjust for the observed back-door set even when the graph's hidden nodes confound")
    refutation_simulations: int = Field(default=10, ge=2, le=1000, description="simulations per refuter")
    sensitivity_k: float = Field(default=1.0, gt=0.0, description=(
        "benchmark confounder strength, times the strongest observed covariate (Cinelli-Hazlett)"))


class _Backdoor(_Observational):
    """Shared driver: comparison -> identified adjustment set -> DoWhy estimate -> refutation/sensitivity.

    An empty adjustment set (a graph with no back-door path from the treatment to the outcome, or
    confounders constant among these users) is accepted by every back-door estimator: it identifies
    the ATE by the plain difference in means (the back-door criterion with ``Z = {}``: Pearl 2009,
    Causality, 2nd ed., th. 3.3.2). ``backdoor-regression`` then fits ``Y ~ 1 + T``; the propensity
    estimators (``backdoor-ipw``, ``aipw``, ``backdoor-matching``), whose propensity is constant, report
    their own limit, the same OLS difference in means with an HC3 interval, with a warning saying so
    (``diagnostics["method"]``: ``difference in means (empty adjustment set)``)."""

    Options: ClassVar = BackdoorOptions
    tags = EstimatorTags(requires_covariates=True, requires_graph=True, stochastic=True, estimands=("difference",))
    #: whether the estimator weighs or matches on a propensity (then its overlap is checked: bd.overlap)
    propensity: ClassVar[bool] = True
    #: the conformance suite runs the refuters with two simulations each (the rules check the interface)
    conformance_options: ClassVar[dict[str, Any]] = {"refutation_simulations": 2}

    @abstractmethod
    def _fit(self, comp: Any, adjust: list[str], seed: int) -> Any:
        """The DoWhy estimate of the comparison ``comp`` adjusting for the columns ``adjust``."""

    def check_scenario(self, scenario: Any) -> None:
        """The scenario's graph must give a back-door set (``check_backdoor``); with
        ``proceed_when_unidentifiable`` a graph is still required."""
        from counterfeed.core.causal_graph import check_backdoor, scenario_graph

        if not self.options.proceed_when_unidentifiable:
            check_backdoor(scenario, f"estimator '{self.name}'")
        elif scenario_graph(scenario) is None:
            raise scenario.error(f"estimator '{self.name}' needs a causal graph (graph: treatment, outcome, edges)",
                                 "graph")

    def check_metrics(self, scenario: Any, metrics: Any) -> None:
        """Per-user metrics (``_Observational``) that are the graph's outcome (its adjustment set is for
        that outcome)."""
        from counterfeed.core.causal_graph import scenario_graph

        super().check_metrics(scenario, metrics)
        graph = scenario_graph(scenario)
        if graph is not None:
            self._check_outcome(graph)

    def _check_outcome(self, graph: Any) -> None:
        """A graph with a named outcome (``CausalGraph``) is estimated for that outcome only; a bare
        networkx graph's generic ``outcome`` node stands for any metric."""
        outcome = getattr(graph, "outcome", None)
        for m in (self.options.metrics or []) if outcome is not None else []:
            if m != outcome:
                raise ModelError(f"{self.name}: metric '{m}' is not the causal graph's outcome "
                                 f"'{outcome}'; the adjustment set is for that outcome (declare a "
                                 "graph per outcome, or leave metrics unset)")

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        from counterfeed.plugins.estimators._obs_refute import refute, sensitivity

        level = self.level_for(data)
        graph = od.require(data, "graph", self.name, "the analyst's declared causal graph")
        self._check_outcome(graph)
        outcome = getattr(graph, "outcome", None)
        metrics = od.analysable_metrics(data, self.options.metrics or ([outcome] if outcome else None), self.name)
        out = []
        for comp in od.comparisons(data, metrics, self.name):
            where = f"metric '{comp.metric}', arm '{comp.arm}'"
            comp = dataclasses.replace(comp, frame=bd.standardized(comp.frame, comp.covariates))
            y, t = comp.frame["Y"].to_numpy(), comp.frame["T"].to_numpy()
            _constant(y, self.name, where)
            adjust, warns = od.adjustment_set(graph, comp, self.name, metrics=data.metrics,
                                              proceed_when_unidentifiable=self.options.proceed_when_unidentifiable)
            seed = _seed(data, self.name, comp.metric, comp.arm)
            # nothing left to adjust for (the set is empty, or its nodes are constant among these users):
            # the propensity is constant, and the method's own limit is the difference in means
            plain = self.propensity and not adjust
            if plain:
                warns = [*warns, f"the adjustment set is empty here, so {self.name}'s propensity is constant and its "
                         "estimate is the difference in means: reported as the OLS of the outcome on the "
                         "treatment with an HC3 interval"]
            try:
                # the positivity check serves every back-door estimator: regression too extrapolates where
                # one arm has no users (its propensity-model warnings are the propensity estimators')
                lap, lap_warns, no_overlap = (bd.overlap(comp.frame, adjust, getattr(self.options, "folds", 0))
                                              if not plain else ({}, [], False))
                if not self.propensity:
                    lap_warns = [w for w in lap_warns if w.startswith(("NO OVERLAP", "not identified"))]
                fit = bd.fit_regression(comp.frame, []) if plain else self._fit(comp, adjust, seed)
                if plain:
                    fit.diagnostics = {**fit.diagnostics, "method": "difference in means (empty adjustment set)"}
            except ModelError as exc:
                raise ModelError(f"{self.name}: {where}: {exc}") from None
            warns = [*lap_warns, *warns]
            c = normal_interval(fit.point, fit.se, level, fit.df)
            half = (c.upper - c.lower) / 2
            if no_overlap:  # positivity fails: the point is an extrapolation, no interval (bd.overlap)
                c = dataclasses.replace(c, lower=-math.inf, upper=math.inf, p_value=None)
            diag: dict[str, Any] = {**fit.diagnostics, **({"overlap": lap} if lap else {}), "se": c.se,
                                    "adjustment_set": adjust,
                                    "n_treatment": int(t.sum()), "n_control": int((1 - t).sum()),
                                    "naive": _naive(y, t, level),
                                    "sensitivity": sensitivity(comp.frame, adjust, level, self.options.sensitivity_k,
                                                               None if self.name == "backdoor-regression" else self.name)}
            diag["identified"] = not any(w.startswith("not identified") for w in warns)
            if warns:
                diag["warnings"] = [*diag.get("warnings", []), *warns]
            if diag.get("sample_se") is not None and not no_overlap:  # an interval for this sample's own ATE (bd.sample_ate_se)
                cs = normal_interval(fit.point, diag["sample_se"], level, fit.df)
                diag["sample_interval"] = {"estimand": "sample ATE (the mean effect over these users)",
                                           "lower": cs.lower, "upper": cs.upper, "se": cs.se}
            if self.options.refute:
                diag["refutations"] = refute(fit, self.options.refutation_simulations, seed, half)
                if all(r["passed"] is False for r in diag["refutations"]):
                    diag["warnings"] = [*diag.get("warnings", []), "REFUTATION FAILED: every refuter moved the "
                                        "estimate by more than its interval half-width; do not rely on it"]
            out.append(Estimate(estimator=self.name, metric=comp.metric, arm=comp.arm, control=data.control,
                                point=c.point, lower=c.lower, upper=c.upper, level=level, estimand="difference",
                                p_value=c.p_value, diagnostics=diag))
        return out


class BackdoorRegression(_Backdoor):
    """Regression adjustment: OLS of the outcome on the treatment and the backdoor set (DoWhy's
    ``backdoor.linear_regression``), HC3 interval. Assumes a constant effect and a linear outcome
    model. Reference: DoWhy (Sharma & Kiciman 2020); MacKinnon & White (1985)."""

    name = "backdoor-regression"
    propensity = False

    def _fit(self, comp, adjust, seed):
        return bd.fit_regression(comp.frame, adjust)


class IPWOptions(BackdoorOptions):
    clip: float = Field(default=0.01, ge=0.0, lt=0.5, description="propensities clipped to [clip, 1 - clip]")


class BackdoorIPW(_Backdoor):
    """Inverse propensity weighting (Hajek) with a logistic propensity on the backdoor set (DoWhy's
    ``backdoor.propensity_score_weighting``), propensities clipped to ``[clip, 1 - clip]``; a
    conservative influence-function interval. Assumes no unobserved confounding and overlap. With an
    empty adjustment set: the difference in means (see :class:`_Backdoor`).
    Reference: Hirano, Imbens & Ridder (2003)."""

    name = "backdoor-ipw"
    Options = IPWOptions

    def _fit(self, comp, adjust, seed):
        return bd.fit_ipw(comp.frame, adjust, self.options.clip)


class AIPWOptions(BackdoorOptions):
    folds: int = Field(default=2, ge=2, le=20, description="cross-fitting folds of the nuisance models")
    outcome_model: Literal["linear", "boosting"] = Field("linear", description="outcome model: linear | boosting")


class AIPW(_Backdoor):
    """Augmented inverse propensity weighting (doubly robust), cross-fitted, through DoWhy's EconML
    ``LinearDRLearner``; consistent if either the propensity or the outcome model is right. With an
    empty adjustment set: the difference in means (see :class:`_Backdoor`).
    Reference: Robins, Rotnitzky & Zhao (1994); Chernozhukov et al. (2018)."""

    name = "aipw"
    Options = AIPWOptions

    def _fit(self, comp, adjust, seed):
        return bd.fit_aipw(comp.frame, adjust, self.options.folds, self.options.outcome_model, seed)


class BackdoorMatching(_Backdoor):
    """One-nearest-neighbour propensity-score matching with replacement (DoWhy's
    ``backdoor.propensity_score_matching``), Abadie-Imbens standard error. With an empty adjustment
    set: the difference in means (see :class:`_Backdoor`).
    Reference: Abadie & Imbens (2006, 2016); Rosenbaum & Rubin (1983)."""

    name = "backdoor-matching"

    def _fit(self, comp, adjust, seed):
        return bd.fit_matching(comp.frame, adjust)


class IVOptions(EstimatorOptions):
    """Options of the IV estimator (a first-stage F below ``min_first_stage_f`` is warned about; the
    interval is the Anderson-Rubin set whatever the F)."""

    min_first_stage_f: float = Field(default=10.0, ge=0.0, description="warn below this first-stage F")


class InstrumentalVariables(_Observational):
    """Two-stage least squares (the Wald estimator without covariates) of the LATE, instrument
    ``data.instrument``, treatment = the arm taken (linearmodels ``IV2SLS``, robust standard error);
    the interval is the weak-instrument-robust Anderson-Rubin set (unbounded, with a warning, when
    the nudge barely moves the treatment; ``_obs_iv``). Assumes a randomized instrument, exclusion,
    monotonicity (no defiers). Reference: Imbens & Angrist (1994); Angrist, Imbens & Rubin (1996);
    Anderson & Rubin (1949); Andrews, Stock & Sun (2019)."""

    name = "iv-2sls"
    Options = IVOptions
    tags = EstimatorTags(requires_instrument=True, estimands=(LATE,))

    def check_scenario(self, scenario: Any) -> None:
        """An encouragement design (the nudge is the instrument); a declared graph must show it valid."""
        from counterfeed.core.causal_graph import check_instrument, scenario_graph

        _require_mechanism(scenario, "encouragement", self.name)
        if scenario_graph(scenario) is not None:
            check_instrument(scenario, f"estimator '{self.name}'")

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        from counterfeed.plugins.estimators._obs_iv import fit_2sls

        level = self.level_for(data)
        metrics = od.analysable_metrics(data, self.options.metrics, self.name)
        z_all = np.asarray(od.require(data, "instrument", self.name, "the randomized encouragement"), dtype=float)
        if z_all.shape != (data.n_users,) or not np.isin(z_all, (0.0, 1.0)).all():
            raise ModelError(f"{self.name}: data.instrument must be {data.n_users} values 0/1 in outcomes order")
        out = []
        for comp in od.comparisons(data, metrics, self.name, with_covariates=False):
            where = f"metric '{comp.metric}', arm '{comp.arm}'"
            y, t, z = comp.frame["Y"].to_numpy(), comp.frame["T"].to_numpy(), z_all[comp.rows]
            _constant(y, self.name, where)
            try:
                fit = fit_2sls(y, t, z, min_first_stage_f=self.options.min_first_stage_f, level=level)
            except ModelError as exc:
                raise ModelError(f"{self.name}: {where}: {exc}") from None
            wald_ci = normal_interval(fit.point, fit.se, level)
            diag = {**fit.diagnostics, "se": fit.se if math.isfinite(fit.se) else None, "n": comp.n,
                    "wald_interval": ([wald_ci.lower, wald_ci.upper] if math.isfinite(fit.se)
                                      and fit.ar.shape == "interval" else None),  # none beside an unbounded AR set
                    "naive": _naive(y, t, level)}
            out.append(Estimate(estimator=self.name, metric=comp.metric, arm=comp.arm, control=data.control,
                                point=fit.point, lower=fit.ar.lower, upper=fit.ar.upper, level=level, estimand=LATE,
                                p_value=fit.ar.p_value if math.isfinite(fit.ar.p_value) else None,
                                diagnostics=diag))
        return out


class PanelOptions(EstimatorOptions):
    """Options of ``did-staggered`` (``twfe`` has none of its own: it has no comparison-group choice
    and no event-time effects, so these keys are rejected there)."""

    control_group: Literal["not_yet_treated", "never_treated"] = Field(
        "not_yet_treated", description="compare with not_yet_treated (and never) or only never_treated users")
    event_times: bool = Field(True, description="also report att(e=k), the effect k days after adoption")


def _require_mechanism(scenario: Any, mechanism: str, name: str) -> None:
    got = getattr(getattr(scenario.experiment, "assignment", None), "mechanism", "randomized")
    if got != mechanism:
        article = "an" if mechanism[0] in "aeiou" else "a"
        raise scenario.error(f"estimator '{name}' needs {article} {mechanism} design (experiment.assignment.mechanism: "
                             f"{mechanism}), got '{got}'", "experiment.assignment.mechanism")


class _Panel(_Observational):
    Options: ClassVar = EstimatorOptions

    def check_scenario(self, scenario: Any) -> None:
        """A staggered rollout (the per-period panel and adoption days come from it) with someone to
        compare the adopters with: never-treated users or a later cohort (not yet treated)."""
        _require_mechanism(scenario, "staggered", self.name)
        from counterfeed.core.observational_spec import everyone_adopts

        if everyone_adopts(scenario) and len({c.at for c in scenario.experiment.assignment.cohorts}) == 1:
            raise scenario.error(
                f"estimator '{self.name}': every user adopts at the same date, so no never-treated or "
                "not-yet-treated users are left to compare with and the effect on the treated is not "
                "identified; leave some users out of the cohorts or stagger their dates",
                "experiment.assignment.cohorts")

    @abstractmethod
    def _fits(self, data: AnalysisData, panel: Any, metric: str, level: float) -> Any:
        """The panel fit of ``metric`` (its overall ATT and, where the method gives them, event-time
        effects) at interval level ``level``."""

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        level = self.level_for(data)
        metrics = od.analysable_metrics(data, self.options.metrics, self.name)
        panel = od.require(data, "panel", self.name, "per-period outcomes of a staggered rollout")
        od.require(data, "adoption", self.name, "each user's adoption day")
        arms = data.outcomes["arm"].astype(str).to_numpy()
        treated = arms != data.control
        out = []
        for metric in metrics:
            if metric not in panel.columns:
                continue  # the panel has the per-user metrics the core could split by period
            fit = self._fits(data, panel, metric, level)
            y = data.outcomes[metric].to_numpy(dtype=float)
            ok = np.isfinite(y)
            naive = (_naive(y[ok], treated[ok].astype(float), level)
                     if min(treated[ok].sum(), (~treated[ok]).sum()) >= 2 else None)
            arm = data.treatments[0]
            rows = [(ATT, fit.point, fit.se)] + [(event_time_estimand(k), p, s) for k, (p, s) in sorted(fit.events.items())]
            for (estimand, point, se), key in zip(rows, ["att", *sorted(fit.events)]):
                diag = fit.diagnostics_for(key)  # the fit's, plus this estimand's (cells left out: _obs_did)
                if key in fit.unidentified:  # no identified group-time cell: no point, no interval
                    out.append(Estimate(
                        estimator=self.name, metric=metric, arm=arm, control=data.control, point=math.nan,
                        lower=math.nan, upper=math.nan, level=level, estimand=estimand, p_value=None,
                        diagnostics={**diag, "se": None, "identified": False, "naive_whole_period": naive,
                                     "warnings": [*diag.get("warnings", []), fit.unidentified[key]]}))
                    continue
                if key in fit.thin:  # fewer than two users on one side of a cell: no interval
                    out.append(Estimate(
                        estimator=self.name, metric=metric, arm=arm, control=data.control, point=point,
                        lower=math.nan, upper=math.nan, level=level, estimand=estimand, p_value=None,
                        diagnostics={**diag, "se": None, "naive_whole_period": naive, "warnings": [
                            *diag.get("warnings", []), f"NO INTERVAL: {estimand} uses a group-time cell with a single user on one side "
                            f"({fit.thin[key]}); an interval needs at least two independent users in each "
                            "group it compares"]}))
                    continue
                if not math.isfinite(se):
                    continue  # an event time with a single cohort-period cell has no standard error
                c = normal_interval(point, se, level, fit.df)
                diag = {**diag, "se": c.se, "naive_whole_period": naive}
                out.append(Estimate(estimator=self.name, metric=metric, arm=arm, control=data.control,
                                    point=c.point, lower=c.lower, upper=c.upper, level=level, estimand=estimand,
                                    p_value=c.p_value, diagnostics=diag))
        if not out:
            raise ModelError(f"{self.name}: data.panel has none of the analysed metrics ({', '.join(metrics)})")
        return out


class StaggeredDiD(_Panel):
    """Callaway & Sant'Anna (2021) difference in differences for staggered adoption (the
    ``differences`` package's ``ATTgt``): group-time effects against not-yet- (or never-) treated
    users, aggregated to the ATT over treated user-periods and by time since adoption. Assumes
    parallel trends, no anticipation and absorbing treatment."""

    name = "did-staggered"
    Options = PanelOptions
    tags = EstimatorTags(requires_panel=True, estimands=(ATT, "att(e=k)"))

    def _fits(self, data, panel, metric, level):
        from counterfeed.plugins.estimators._obs_did import fit_callaway_santanna

        fit = fit_callaway_santanna(panel, metric, self.name, level=level, control_group=self.options.control_group,
                                    start=float(data.start))
        if not self.options.event_times:
            fit.events = {}
        return fit


class TwoWayFixedEffects(_Panel):
    """Two-way fixed effects: ``Y_it = a_i + b_t + beta D_it + e_it`` (linearmodels ``PanelOLS``),
    user-clustered interval. Unbiased for the ATT only when effects are the same for every cohort and
    time since adoption (Goodman-Bacon 2021); shown for comparison."""

    name = "twfe"
    tags = EstimatorTags(requires_panel=True, estimands=(ATT,))

    def _fits(self, data, panel, metric, level):
        from counterfeed.plugins.estimators._obs_did import fit_twfe

        return fit_twfe(panel, metric, self.name)


@hookimpl
def register_estimators(register):
    for cls in (BackdoorRegression, BackdoorIPW, AIPW, BackdoorMatching, InstrumentalVariables, StaggeredDiD,
                TwoWayFixedEffects):
        register(cls)


@hookimpl
def counterfeed_report_sections(result, report):
    """"Observational estimates": each observational estimate beside the naive difference in means,
    the truth, its sensitivity verdict and refutations."""
    from counterfeed.plugins.estimators._obs_report import observational_section

    observational_section(result, report, OBSERVATIONAL)
