"""Conditional average treatment effects (CATE): who benefits from a treatment arm.

Each estimator adapts a learner from a well-kept library -- EconML's DR-learner and causal forest,
its T- and X-learners, a statsmodels OLS with treatment x covariate interactions -- to counterfeed's
analysis contract. counterfeed writes the adapter, the outer cross-fitting and the average effect:

- per (per-user metric, treatment arm): the users of the arm and the control, their covariates
  (``data.covariates``, pre-treatment only) and outcome;
- ``folds`` folds stratified by arm; for each fold the learner is fitted on the others and predicts
  the held-out users (users of other arms are given folds too and predicted by a model that never saw
  them), so ``user_effects`` holds one OUT-OF-FOLD prediction per user of ``outcomes``, with the
  learner's per-user interval where it has one (NaN where it has none: T-/X-learners);
- the average effect is the doubly robust (AIPW) mean of the learner's out-of-fold effects
  (:func:`~counterfeed.plugins.estimators._cate_data.dr_mean`), with the design propensity, so its
  interval is valid under randomization whatever the learner.

Each (metric, arm) gives two estimates: ``cate`` (with ``user_effects``) and ``difference`` (the same
average effect, scored against the true ATE like every other estimator). Ratio metrics have no
per-user effect and are left out (their numerator and denominator metrics are per-user). A metric
constant among the compared users is left out (nothing to learn); if every metric is, DataError.
Library warnings never escape: they are listed in ``diagnostics["warnings"]``.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from counterfeed.core.estimation import CATE, AnalysisData, Estimate, Estimator, EstimatorOptions, EstimatorTags
from counterfeed.core.hookspecs import hookimpl
from counterfeed.core.scoring import interval_quantile
from counterfeed.errors import DataError, ScenarioError

if TYPE_CHECKING:  # pragma: no cover - pandas, scipy and the learners load when an estimate is made
    from counterfeed.plugins.estimators._cate_data import Comparison

#: the nuisance (outcome) model kinds
Nuisance = Literal["hist_gradient_boosting", "lightgbm", "linear"]

__all__ = ["CateOptions", "ModifierOptions", "DRLearnerCATE", "CausalForestCATE", "TLearnerCATE", "XLearnerCATE",
           "LinearInteractionCATE", "register_estimators", "FoldFit"]

#: (effect, lower, upper, control outcome or None) of the held-out users of one fold
FoldFit = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]


class CateOptions(EstimatorOptions):
    """Options shared by the CATE estimators."""

    folds: int = Field(default=2, ge=2, le=20, description="outer cross-fitting folds")
    nuisance: Nuisance = Field(default="hist_gradient_boosting",
                               description="outcome models: hist_gradient_boosting | lightgbm | linear")
    nuisance_iterations: int = Field(default=100, ge=1, description="boosting iterations of the nuisance models")
    propensity: Literal["design", "learned"] = Field(
        default="design", description="design: the arm share (randomized); learned: a classifier on covariates")
    inner_folds: int = Field(default=2, ge=2, le=10, description="the library's own cross-fitting folds (cv)")


class ModifierOptions(CateOptions):
    """CATE options of the learners that separate effect modifiers from controls."""

    modifiers: list[str] | None = Field(
        default=None, min_length=1,
        description="effect modifiers: the covariates the effect may vary with (a name, or 'segment' for "
                    "its indicators); the others only adjust the nuisance models (default: every covariate)")
    individual_intervals: Literal["none", "conformal", "covariates", "posterior", "bounds"] = Field(
        default="none",
        description="also give each user an individual conditional effect interval (user_effects columns "
                    "ite_point, ite_lower, ite_upper) for the user's own effect, not only tau(X): 'conformal' "
                    "(the user's own outcome minus a conformal interval for their outcome in the other arm, "
                    "calibrated on that arm's users: covers the realised effect by randomization alone and the "
                    "expected effect if a user's noise has the same law in both arms; "
                    "counterfeed.analysis.cate_conformal); 'covariates' (the CATE plus the estimated unexplained "
                    "heterogeneity) or 'posterior' (empirical Bayes with a treated user's own outcome), "
                    "identified only under a stated assumption that the unexplained heterogeneity is estimable; "
                    "'bounds' (the largest unexplained heterogeneity the data allow: valid without that "
                    "assumption, wide) (counterfeed.analysis.cate_individual; these three need daily per-user "
                    "data, data.events)")

    @field_validator("modifiers")
    @classmethod
    def _distinct(cls, modifiers: list[str] | None) -> list[str] | None:
        """A modifier listed twice is an error located at its second entry (``modifiers[j]``, which
        ``validate``/``run`` prefix with ``analysis[i].``), naming the first; it added the same
        interaction twice (a rank-deficient design for ``linear-cate``)."""
        for j, m in enumerate(modifiers or []):
            if m in modifiers[:j]:
                raise ScenarioError(f"modifier '{m}' is listed twice (also modifiers[{modifiers.index(m)}])",
                                    field=f"modifiers[{j}]")
        return modifiers


class _Cate(Estimator):
    """The shared adapter: folds, out-of-fold predictions, the doubly robust mean effect."""

    def users_per_arm(self) -> int:
        """Cross-fitting stratified by arm needs at least 2 users of each arm in every fold (``comparison``)."""
        return 2 * int(self.options.folds)

    Options: ClassVar[type[CateOptions]] = CateOptions
    tags = EstimatorTags(requires_covariates=True, stochastic=True, estimands=(CATE, "difference"))
    conformance_options: ClassVar[dict[str, Any]] = {"nuisance": "linear"}
    per_user_intervals: ClassVar[bool] = True
    library: ClassVar[str] = ""

    @abstractmethod
    def fit_predict(self, c: Comparison, train: np.ndarray, x_test: np.ndarray, random_state: int,
                    level: float) -> FoldFit:
        """Fit on the users ``train`` (boolean mask over ``c``) and predict ``x_test``: effects, their
        per-user interval bounds (NaN where the learner has none) and, optionally, the control outcome."""

    def regressor(self, random_state: int) -> Any:
        from counterfeed.plugins.estimators._cate_data import nuisance_regressor

        return nuisance_regressor(self.options.nuisance, random_state, self.options.nuisance_iterations)

    def classifier(self, random_state: int) -> Any:
        from counterfeed.plugins.estimators._cate_data import nuisance_classifier

        return nuisance_classifier(self.options.propensity, self.options.nuisance, random_state,
                                   self.options.nuisance_iterations)

    def check_scenario(self, scenario: Any) -> None:
        """Randomized assignment only: the doubly robust average effect uses the design propensity (the
        arm share when the run records none), which is wrong when users select or are selected."""
        mechanism = getattr(getattr(scenario.experiment, "assignment", None), "mechanism", "randomized")
        if mechanism != "randomized":
            raise scenario.error(
                f"estimator '{self.name}' needs randomized assignment (its average effect weights by the "
                f"design propensity), got '{mechanism}'; use the observational estimators (aipw, iv-2sls, "
                "did-staggered) for this design", "experiment.assignment.mechanism")

    def check_metrics(self, scenario: Any, metrics: dict[str, Any]) -> None:
        """Reject before simulating what ``estimate`` would (``_cate_data.check_cate_scenario``)."""
        from counterfeed.plugins.estimators._cate_data import check_cate_scenario, declared_segments

        check_cate_scenario(scenario, metrics, self.options, self.name, self.per_user_intervals)
        # the declared segments: a level that no user draws keeps its (all-zero) indicator, reported NOT IDENTIFIED
        self.declared_segments_ = declared_segments(scenario)

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        from counterfeed.plugins.estimators._cate_data import (comparison, covariate_matrix, modifier_columns,
                                                               per_user_metrics)

        declared = getattr(self, "declared_segments_", None)  # set by check_metrics (validate and run do)
        x, names = covariate_matrix(data, self.name, declared)
        self.modifiers_ = modifier_columns(names, getattr(self.options, "modifiers", None), self.name, data.covariates)
        level = self.level_for(data)
        out: list[Estimate] = []
        metrics = per_user_metrics(data.metrics, self.options.metrics, self.name)
        for metric in metrics:
            for arm in data.treatments:
                c = comparison(data, x, metric, arm, self.options.folds, f"{self.name}")
                if c is not None:
                    out += self._one(data, x, names, metric, arm, c, level)
        if not out:
            raise DataError(f"{self.name}: every per-user metric ({', '.join(metrics) or 'none'}) is constant "
                            "among the compared users (or there is none); no effect to estimate")
        return out

    def _one(self, data: AnalysisData, x: np.ndarray, names: list[str], metric: str, arm: str,
             c: Comparison, level: float) -> list[Estimate]:
        import pandas as pd
        from scipy import stats

        from counterfeed.plugins.estimators._cate_data import (caught_warnings, dr_mean, fold_ids, fold_seed,
                                                               modifier_support, null_cells, null_unidentified)

        n = len(data.outcomes)
        k = self.options.folds
        # every user gets a fold: the compared users stratified by arm, the others at random
        t_all = np.full(n, -1, dtype=np.int64)
        t_all[c.rows] = c.t
        folds_all = fold_ids(np.where(t_all < 0, 2, t_all), k, data.seed, self.name, metric, arm)
        folds = folds_all[c.rows]
        tau_all, lo_all, hi_all = (np.full(n, np.nan) for _ in range(3))
        mu0 = np.full(c.rows.size, np.nan)
        warned: list[str] = []
        for f in range(k):
            train = folds != f
            test_all = folds_all == f
            rs = fold_seed(data.seed, self.name, metric, arm, f)
            with caught_warnings(warned):
                tau, lo, hi, m0 = self.fit_predict(c, train, x[test_all], rs, level)
                tau_all[test_all], lo_all[test_all], hi_all[test_all] = tau, lo, hi
                held = folds == f
                if m0 is not None:
                    mu0[held] = m0[np.isin(np.flatnonzero(test_all), c.rows[held])]
                else:
                    ctrl = train & (c.t == 0)
                    model = self.regressor(rs).fit(c.x[ctrl], c.y[ctrl])
                    mu0[held] = model.predict(c.x[held])
        if not (np.all(np.isfinite(tau_all)) and np.all(np.isfinite(mu0))):
            raise DataError(f"{self.name}: metric '{metric}', arm '{arm}': the learner returned non-finite effects")
        point, lower, upper, se = dr_mean(c, tau_all[c.rows], mu0, level)
        p_value = float(2 * stats.norm.sf(abs(point) / se)) if se > 0 else None
        effects = pd.DataFrame({"user": data.outcomes["user"].to_numpy(), "point": tau_all,
                                "lower": lo_all, "upper": hi_all})
        mode = getattr(self.options, "individual_intervals", "none")
        with caught_warnings(warned):  # a library warning of the individual intervals is the estimate's own
            individual = _individual(data, c, metric, effects, mu0, self.modifiers_, names, level, mode,
                                     (self.name, metric, arm)) \
                if mode != "none" and self.per_user_intervals else None
        bad, unused, support = modifier_support(data, c, folds, k, self.modifiers_, names, metric, arm,
                                                getattr(self, "declared_segments_", None))
        warned += support + null_unidentified(effects, bad, metric, conformal=mode == "conformal")
        null_cells(individual, c.x[:, self.modifiers_], bad[c.rows])
        ok = ~bad[c.rows]
        diag: dict[str, Any] = {
            "method": self.library, "folds": k, "nuisance": self.options.nuisance,
            "propensity": self.options.propensity, "propensity_source": c.propensity_source,
            "n_control": int((c.t == 0).sum()), "n_treatment": int(c.t.sum()), "se": se,
            "mean_predicted_effect": float(np.mean(tau_all[c.rows][ok])) if ok.any() else None,
            "sd_predicted_effect": float(np.std(tau_all[c.rows][ok])) if ok.any() else None,
            "per_user_intervals": self.per_user_intervals, "covariates": names,
            "effect_modifiers": [names[i] for i in np.flatnonzero(self.modifiers_) if names[i] not in unused],
            "unused_modifiers": unused, "users_not_identified": int(bad.sum()),
            "average_effect": "doubly robust (AIPW) mean of out-of-fold effects, design propensity",
            "point_estimand": "difference",  # the point and interval are the average effect's: scored as one
            "interval_estimand": "lower/upper: per-user interval for tau(X) = E[tau_i | X], the conditional "
                                 "average effect given the effect modifiers, not for the user's own effect",
        }
        if warned:
            diag["warnings"] = warned
        # the average effect's estimate carries no per-user intervals, so not their diagnostics either
        per_user = dict(diag) if individual is None else {
            **diag, "individual_intervals": individual, "warnings": warned + individual["warnings"]}
        common = dict(estimator=self.name, metric=metric, arm=arm, control=data.control, point=point,
                      lower=lower, upper=upper, level=level, p_value=p_value)
        return [Estimate(**common, estimand=CATE, diagnostics=per_user, user_effects=effects),
                Estimate(**common, estimand="difference", diagnostics=dict(diag))]


def _individual(data: AnalysisData, c: Comparison, metric: str, effects: Any, mu0: np.ndarray, modifiers: np.ndarray,
                names: list[str], level: float, mode: Any, key: tuple[str, str, str]) -> dict[str, Any]:
    """Add the individual conditional effect intervals (``ite_point``, ``ite_lower``, ``ite_upper``;
    NaN for users outside the comparison) to ``effects``; return their diagnostics
    (:func:`counterfeed.analysis.cate_individual.individual_intervals`)."""
    from counterfeed.analysis.cate_individual import individual_intervals, noise_variance, period_totals

    mod_names = [nm for nm, m in zip(names, modifiers) if m]
    if mode == "conformal":  # the other arm's users calibrate; no per-day data needed
        from counterfeed.analysis.cate_conformal import conformal_intervals
        from counterfeed.plugins.estimators._cate_data import PER_SESSION_SUMS
        noise = None  # the arms' day-to-day noise, to check the assumption, where per-day data exist
        if data.events is not None and data.end is not None and metric in PER_SESSION_SUMS:
            users = data.outcomes["user"].to_numpy()[c.rows]
            try:
                noise = noise_variance(period_totals(data.events, metric, users, data.start, data.end), c.y, metric)
            except DataError:  # under 2 days, or per-day values that do not add up: the check cannot run
                pass
        seg = data.outcomes["segment"].to_numpy()[c.rows] if "segment" in data.outcomes else None
        res = conformal_intervals(c.x, c.y, c.t, c.e, c.x[:, modifiers], mod_names, level, data.seed, *key,
                                  noise=noise, groups=seg)
        _ite_columns(effects, c, res)
        return res.diagnostics
    if data.events is None or data.end is None:
        raise DataError(f"individual_intervals: metric '{metric}' needs the A/B world's events and the "
                        "experiment's end (data.events, data.end): the users' noise comes from their daily values")
    users = data.outcomes["user"].to_numpy()[c.rows]
    v = noise_variance(period_totals(data.events, metric, users, data.start, data.end), c.y, metric)
    z = interval_quantile(level)
    se = (effects["upper"].to_numpy()[c.rows] - effects["lower"].to_numpy()[c.rows]) / (2 * z)
    res = individual_intervals(effects["point"].to_numpy()[c.rows], se, c.y, c.t, mu0, v, c.x[:, modifiers],
                               mod_names, level, mode)
    _ite_columns(effects, c, res)
    return res.diagnostics


def _ite_columns(effects: Any, c: Comparison, res: Any) -> None:
    """The individual intervals as ``user_effects`` columns (NaN for users outside the comparison)."""
    for col, val in (("ite_point", res.point), ("ite_lower", res.lower), ("ite_upper", res.upper)):
        effects[col] = np.nan
        effects.loc[c.rows, col] = val


def _interval(est: Any, x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = est.effect_interval(x, alpha=1.0 - level)
    return np.asarray(lo, dtype=np.float64).ravel(), np.asarray(hi, dtype=np.float64).ravel()


def _fit_econml(est: Any, c: Comparison, train: np.ndarray, x_test: np.ndarray, m: np.ndarray,
                level: float) -> FoldFit:
    """Fit an EconML final-stage learner with the modifiers ``m`` as ``X`` and the other covariates
    as ``W`` (nuisance controls only); predict effects and intervals at ``x_test``'s modifiers."""
    w = c.x[train][:, ~m] if (~m).any() else None
    est.fit(c.y[train], c.t[train], X=c.x[train][:, m], W=w)
    lo, hi = _interval(est, x_test[:, m], level)
    return np.asarray(est.effect(x_test[:, m]), dtype=np.float64).ravel(), lo, hi, None


class DRLearnerCATE(_Cate):
    """DR-learner (Kennedy 2023) from EconML: ``econml.dr.LinearDRLearner`` (``final: linear``) or
    ``econml.dr.ForestDRLearner`` (``final: forest``).

    The doubly robust pseudo-outcome ``mu1 - mu0 + T (Y - mu1) / e - (1 - T)(Y - mu0) / (1 - e)``
    (nuisances cross-fitted by EconML over ``inner_folds``) is regressed on the covariates: linearly
    (per-user intervals from the final OLS's heteroskedasticity-robust covariance; they cover the
    best linear approximation of the CATE) or by an honest random forest (bootstrap-of-little-bags
    intervals, Athey, Tibshirani & Wager 2019). Assumptions: randomized assignment (or
    ``propensity: learned`` under unconfoundedness), overlap, SUTVA.

    Reference: Kennedy, E. H. (2023). Towards optimal doubly robust estimation of heterogeneous
    causal effects. Electronic Journal of Statistics 17, 3008-3049. EconML (Battocchi et al. 2019).
    """

    name = "dr-learner"
    library = "econml.dr.LinearDRLearner / ForestDRLearner"

    class Options(ModifierOptions):
        final: Literal["linear", "forest"] = "linear"
        n_estimators: int = Field(default=200, ge=4, description="trees of the forest final stage")
        min_samples_leaf: int = Field(default=10, ge=1)

    def learner(self, random_state: int) -> Any:
        from econml.dr import ForestDRLearner, LinearDRLearner

        common = dict(model_propensity=self.classifier(random_state), model_regression=self.regressor(random_state),
                      cv=self.options.inner_folds, random_state=random_state)
        if self.options.final == "linear":
            return LinearDRLearner(**common)
        return ForestDRLearner(**common, n_estimators=self.options.n_estimators,
                               min_samples_leaf=self.options.min_samples_leaf, n_jobs=1)

    def fit_predict(self, c, train, x_test, random_state, level):
        return _fit_econml(self.learner(random_state), c, train, x_test, self.modifiers_, level)


class CausalForestCATE(_Cate):
    """Causal forest (Wager & Athey 2018; Athey, Tibshirani & Wager 2019) from EconML:
    ``econml.dml.CausalForestDML``.

    Outcome and treatment are residualized by cross-fitted nuisance models (``inner_folds``); an
    honest generalized random forest solves the local moment ``E[(Y~ - tau(x) T~) T~ | X = x] = 0``.
    Per-user intervals: the forest's bootstrap-of-little-bags variance (normal). Each tree is grown
    on a subsample of ``max_samples`` of the users, at most ``max_tree_users`` (subsample size
    ``s`` with ``s / n -> 0``, as the theory of Wager & Athey allows), so the forest's cost is
    bounded and the fit time grows linearly with the users. Assumptions:
    randomized assignment (or unconfoundedness with ``propensity: learned``), overlap, SUTVA.

    Reference: Athey, S., Tibshirani, J. & Wager, S. (2019). Generalized random forests. Annals of
    Statistics 47, 1148-1178.
    """

    name = "causal-forest"
    library = "econml.dml.CausalForestDML"
    conformance_options: ClassVar[dict[str, Any]] = {"nuisance": "linear", "n_estimators": 40}

    class Options(ModifierOptions):
        n_estimators: int = Field(default=200, ge=4, multiple_of=4, description="trees (a multiple of 4)")
        min_samples_leaf: int = Field(default=10, ge=1)
        max_depth: int | None = Field(default=None, ge=1)
        max_samples: float = Field(default=0.45, gt=0.0, le=0.5,
                                   description="share of the training users each tree is grown on")
        max_tree_users: int | None = Field(
            default=5_000, ge=20, description="cap on the users each tree is grown on (null: none); "
            "above it the forest's cost stops growing with the users, so the fit time grows linearly "
            "(through the nuisance models and prediction)")

    def tree_samples(self, n: int) -> float | int:
        """EconML's ``max_samples`` for ``n`` training users: the share, or the cap when it binds."""
        o = self.options
        if o.max_tree_users is not None and o.max_samples * n > o.max_tree_users:
            return int(min(o.max_tree_users, n // 2))
        return o.max_samples

    def learner(self, random_state: int, n: int = 0) -> Any:
        from econml.dml import CausalForestDML

        o = self.options
        return CausalForestDML(model_y=self.regressor(random_state), model_t=self.classifier(random_state),
                               discrete_treatment=True, cv=o.inner_folds, n_estimators=o.n_estimators,
                               min_samples_leaf=o.min_samples_leaf, max_depth=o.max_depth,
                               max_samples=self.tree_samples(n), n_jobs=1, random_state=random_state)

    def fit_predict(self, c, train, x_test, random_state, level):
        est = self.learner(random_state, int(train.sum()))
        return _fit_econml(est, c, train, x_test, self.modifiers_, level)


class TLearnerCATE(_Cate):
    """T-learner from EconML: ``econml.metalearners.TLearner``: one outcome model per arm,
    ``tau(x) = mu1(x) - mu0(x)``.

    No per-user interval (the library gives none without a bootstrap): ``user_effects`` has NaN
    ``lower``/``upper``. The average effect's interval is the doubly robust one (see the module).

    Reference: Kuenzel, S. R., Sekhon, J. S., Bickel, P. J. & Yu, B. (2019). Metalearners for
    estimating heterogeneous treatment effects using machine learning. PNAS 116, 4156-4165.
    """

    name = "t-learner"
    library = "econml.metalearners.TLearner"
    per_user_intervals = False

    def learner(self, random_state: int) -> Any:
        from econml.metalearners import TLearner

        return TLearner(models=self.regressor(random_state))

    def fit_predict(self, c, train, x_test, random_state, level):
        est = self.learner(random_state).fit(c.y[train], c.t[train], X=c.x[train])
        nan = np.full(x_test.shape[0], np.nan)
        return (np.asarray(est.effect(x_test), dtype=np.float64).ravel(), nan, nan.copy(),
                np.asarray(est.models[0].predict(x_test), dtype=np.float64))


class XLearnerCATE(_Cate):
    """X-learner from EconML: ``econml.metalearners.XLearner``: per-arm outcome models, imputed
    effects ``Y - mu0(x)`` (treated) and ``mu1(x) - Y`` (control) regressed on covariates, combined
    with the propensity ``g(x)``: ``tau(x) = g(x) tau0(x) + (1 - g(x)) tau1(x)``.

    No per-user interval: ``user_effects`` has NaN ``lower``/``upper``.

    Reference: Kuenzel, Sekhon, Bickel & Yu (2019), PNAS 116, 4156-4165.
    """

    name = "x-learner"
    library = "econml.metalearners.XLearner"
    per_user_intervals = False

    def learner(self, random_state: int) -> Any:
        from econml.metalearners import XLearner

        return XLearner(models=self.regressor(random_state), propensity_model=self.classifier(random_state))

    def fit_predict(self, c, train, x_test, random_state, level):
        est = self.learner(random_state).fit(c.y[train], c.t[train], X=c.x[train])
        nan = np.full(x_test.shape[0], np.nan)
        return np.asarray(est.effect(x_test), dtype=np.float64).ravel(), nan, nan.copy(), None


class LinearInteractionCATE(_Cate):
    """Linear interaction model: statsmodels OLS of ``Y ~ 1 + T + Xc + T:Xc`` (``Xc`` the covariates
    centred on the training fold's means; columns constant there are dropped) with a
    heteroskedasticity-robust covariance (``cov_type``, default HC3).

    ``tau(x) = b_T + b_TX' (x - xbar)`` (interactions with the ``modifiers`` only); its per-user standard error is ``sqrt(c' V c)`` with
    ``c = (0, 1, 0, x - xbar)``, normal interval. The intervals cover the best linear approximation of
    the CATE. With centred covariates ``b_T`` is Lin's (2013) regression-adjusted ATE.

    Reference: Lin, W. (2013). Agnostic notes on regression adjustments to experimental data.
    Annals of Applied Statistics 7, 295-318. statsmodels (Seabold & Perktold 2010).
    """

    name = "linear-cate"
    library = "statsmodels OLS with treatment x covariate interactions"

    class Options(ModifierOptions):
        cov_type: Literal["HC0", "HC1", "HC2", "HC3"] = "HC3"

    def fit_predict(self, c, train, x_test, random_state, level):
        import statsmodels.api as sm

        xt = c.x[train]
        keep = _independent_columns(xt, self.modifiers_)
        mean = xt[:, keep].mean(axis=0)
        xc = xt[:, keep] - mean
        mod = self.modifiers_[keep]  # interactions with the effect modifiers only
        t = c.t[train].astype(np.float64)[:, None]
        design = np.column_stack([np.ones(xc.shape[0]), t, xc, t * xc[:, mod]])
        res = sm.OLS(c.y[train], design).fit(cov_type=self.options.cov_type)
        z = x_test[:, keep] - mean
        contrast = np.column_stack([np.zeros(len(z)), np.ones(len(z)), np.zeros_like(z), z[:, mod]])
        base = np.column_stack([np.ones(len(z)), np.zeros(len(z)), z, np.zeros_like(z[:, mod])])
        tau = contrast @ res.params
        se = np.sqrt(np.einsum("ij,jk,ik->i", contrast, res.cov_params(), contrast))
        q = interval_quantile(level)
        return tau, tau - q * se, tau + q * se, base @ res.params


def _independent_columns(x: np.ndarray, first: np.ndarray | None = None) -> np.ndarray:
    """(n_columns,) bool: the columns of ``x`` to regress on, dropping constant ones and those that are
    exact linear combinations of columns kept before them, taking the ``first`` columns (bool mask:
    the effect modifiers) first, so a modifier is never dropped for a covariate collinear with it
    (QR of the centred, unit-norm columns in that order; rank tolerance as numpy's ``matrix_rank``).
    The kept columns span the same space, so the fit and every effect are unchanged. A covariate such
    as ``pre_impressions``, the slate size times ``pre_sessions``, made every linear-cate design
    rank-deficient: statsmodels' pseudo-inverse gave the same effects, with a SingularMatrixWarning on
    every run."""
    keep = np.ptp(x, axis=0) > 0 if x.shape[0] else np.zeros(x.shape[1], dtype=bool)
    first = np.zeros(x.shape[1], dtype=bool) if first is None else np.asarray(first, dtype=bool)
    cols = np.concatenate([np.flatnonzero(keep & first), np.flatnonzero(keep & ~first)])
    out = np.zeros_like(keep)
    if cols.size == 0:
        return out
    xc = x[:, cols] - x[:, cols].mean(axis=0)
    xc = xc / np.linalg.norm(xc, axis=0)
    d = np.abs(np.diag(np.linalg.qr(xc, mode="r")))
    tol = (d.max() if d.size else 0.0) * max(xc.shape) * np.finfo(float).eps
    out[cols[: d.size][d > tol]] = True
    return out


@hookimpl
def register_estimators(register):
    for cls in (DRLearnerCATE, CausalForestCATE, TLearnerCATE, XLearnerCATE, LinearInteractionCATE):
        register(cls)


@hookimpl
def counterfeed_report_sections(result, report):
    """"Heterogeneous effects (CATE)": per-user scores, uplift curves and decile calibration, when the
    run directory holds CATE scores (see :mod:`counterfeed.plugins.estimators._cate_report`)."""
    from counterfeed.plugins.estimators._cate_report import cate_section

    cate_section(result, report)
