"""Each observational estimator gives the number of the library it wraps (to 1e-8) and a hand-derived
number on a case small enough to work out, on fixed synthetic data with known effects."""

from __future__ import annotations

import math
import warnings

import networkx as nx
import numpy as np
import pandas as pd
import pytest

from counterfeed.core.contracts import MetricInfo
from counterfeed.core.estimation import AnalysisData
from counterfeed.errors import DataError, ModelError
from counterfeed.plugins.estimators import _obs_backdoor as bd
from counterfeed.plugins.estimators._obs_refute import robustness_value, sensitivity
from counterfeed.plugins.estimators.observational import (AIPW, BackdoorIPW, BackdoorMatching, BackdoorRegression,
                                                          InstrumentalVariables, StaggeredDiD, TwoWayFixedEffects)
from counterfeed.testing.observational import declared_graph

ATE = 2.0


def linear_data(n: int = 1500, seed: int = 0, hidden: float = 0.0, graph=None) -> AnalysisData:
    """Y = 1 + 2 T + x1 + 0.5 x2 + hidden * u + e; T ~ Bernoulli(logistic(0.8 x1 - 0.5 x2 + hidden * u));
    covariates x1, x2 (observed), u unobserved."""
    rng = np.random.default_rng(seed)
    x1, x2, u = rng.normal(size=(3, n))
    t = rng.random(n) < 1 / (1 + np.exp(-(0.8 * x1 - 0.5 * x2 + hidden * u)))
    y = 1 + ATE * t + x1 + 0.5 * x2 + hidden * u + rng.normal(size=n)
    outcomes = pd.DataFrame({"user": np.arange(n), "arm": np.where(t, "b", "a"), "segment": "all", "y": y})
    cov = pd.DataFrame({"user": np.arange(n), "x1": x1, "x2": x2})
    return AnalysisData(outcomes=outcomes, arms=["a", "b"], control="a", metrics={"y": MetricInfo("y", "sum")},
                        seed=seed, covariates=cov, graph=declared_graph(["x1", "x2"]) if graph is None else graph)


def frame_of(data: AnalysisData) -> pd.DataFrame:
    return pd.DataFrame({"T": (data.outcomes["arm"] == "b").astype(float), "Y": data.outcomes["y"],
                         "x1": data.covariates["x1"], "x2": data.covariates["x2"]})


def one(cls, data, **options):
    out = cls(**options).estimate(data)
    assert len(out) == 1
    return out[0]


def test_regression_is_ols_with_hc3():
    import statsmodels.api as sm

    data = linear_data()
    e = one(BackdoorRegression, data, refute=False)
    f = frame_of(data)
    ols = sm.OLS(f["Y"], sm.add_constant(f[["T", "x1", "x2"]])).fit(cov_type="HC3")
    assert e.point == pytest.approx(ols.params["T"], abs=1e-8)
    assert e.diagnostics["se"] == pytest.approx(ols.bse["T"], abs=1e-8)
    assert e.diagnostics["adjustment_set"] == ["x1", "x2"] or sorted(e.diagnostics["adjustment_set"]) == ["x1", "x2"]
    assert e.lower < ATE < e.upper
    naive = e.diagnostics["naive"]
    assert naive["point"] - ATE > 5 * naive["se"]  # the naive difference is confounded upwards


def test_ipw_is_dowhy_and_hajek():
    from dowhy import CausalModel

    data = linear_data()
    e = one(BackdoorIPW, data, refute=False, clip=0.01)
    f = frame_of(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = CausalModel(f.copy(), "T", "Y", common_causes=["x1", "x2"])
        est = m.estimate_effect(m.identify_effect(proceed_when_unidentifiable=True),
                                method_name="backdoor.propensity_score_weighting", target_units="ate",
                                method_params={"propensity_score_model": bd._propensity_model(),
                                               "min_ps_score": 0.01, "max_ps_score": 0.99})
    assert e.point == pytest.approx(est.value, abs=1e-8)
    ps = np.clip(np.asarray(est.propensity_scores), 0.01, 0.99)
    t, y = f["T"].to_numpy(), f["Y"].to_numpy()
    hajek = np.sum(t * y / ps) / np.sum(t / ps) - np.sum((1 - t) * y / (1 - ps)) / np.sum((1 - t) / (1 - ps))
    assert e.point == pytest.approx(hajek, abs=1e-8)
    assert e.diagnostics["se"] == pytest.approx(bd.hajek_se(t, y, ps), abs=1e-12)
    assert e.lower < ATE < e.upper


def test_aipw_is_econml_linear_dr_learner():
    from econml.dr import LinearDRLearner

    data = linear_data()
    e = one(AIPW, data, refute=False)
    f = frame_of(data)
    seed = e.diagnostics.get("seed")
    from counterfeed.plugins.estimators.observational import _seed
    seed = _seed(data, "aipw", "y", "b")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = LinearDRLearner(**bd.aipw_params(2, "linear", seed)).fit(f["Y"].to_numpy(), f["T"].to_numpy(), X=None,
                                                                      W=f[["x1", "x2"]].to_numpy())
        lo, hi = m.ate_interval(alpha=0.05)
    assert e.point == pytest.approx(m.ate(), abs=1e-8)
    assert (e.lower, e.upper) == pytest.approx((float(lo), float(hi)), abs=1e-8)
    assert e.lower < ATE < e.upper


def test_aipw_sample_interval_is_the_residual_variance_of_econml_pseudo_outcomes_on_the_covariates():
    """The sample-ATE interval (bd.sample_ate_se): EconML's cached doubly robust pseudo-outcomes, whose
    mean is the estimate, regressed on the covariates by statsmodels OLS; se = sqrt(mse_resid / n)."""
    import statsmodels.api as sm
    from econml.dr import LinearDRLearner

    from counterfeed.plugins.estimators.observational import _seed

    data = linear_data()
    e = one(AIPW, data, refute=False)
    f = frame_of(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = LinearDRLearner(**bd.aipw_params(2, "linear", _seed(data, "aipw", "y", "b"))).fit(
            f["Y"].to_numpy(), f["T"].to_numpy(), X=None, W=f[["x1", "x2"]].to_numpy(), cache_values=True)
    psi = m._cached_values.nuisances[0][:, 1] - m._cached_values.nuisances[0][:, 0]
    assert psi.mean() == pytest.approx(e.point, abs=1e-8)
    ols = sm.OLS(psi, sm.add_constant(f[["x1", "x2"]].to_numpy())).fit()
    se = math.sqrt(ols.mse_resid / len(psi))
    s = e.diagnostics["sample_interval"]
    assert s["se"] == pytest.approx(se, abs=1e-8)
    assert (s["lower"], s["upper"]) == pytest.approx((e.point - 1.959963984540054 * se, e.point + 1.959963984540054 * se),
                                                     abs=1e-8)
    assert e.diagnostics["heterogeneity_r2"] == pytest.approx(ols.rsquared, abs=1e-8)


def test_matching_is_dowhy_and_abadie_imbens_by_hand():
    data = linear_data(n=600)
    e = one(BackdoorMatching, data, refute=False)
    f = frame_of(data)
    _, _, est = bd._estimate(f, ["x1", "x2"], "backdoor.propensity_score_matching",
                             method_params={"propensity_score_model": bd._propensity_model()})
    assert e.point == pytest.approx(est.value, abs=1e-8)
    tau, _ = bd.matching_variance(f["T"].to_numpy(), f["Y"].to_numpy(), np.asarray(est.propensity_scores))
    assert tau == pytest.approx(est.value, abs=1e-8)  # our matching is DoWhy's matching
    # hand case: 2 treated, 2 controls, distinct propensities; each unit's match is its nearest opposite
    t = np.array([1.0, 1.0, 0.0, 0.0])
    y = np.array([5.0, 7.0, 1.0, 2.0])
    ps = np.array([0.3, 0.8, 0.25, 0.7])
    tau, var = bd.matching_variance(t, y, ps)
    # matches: 0->2, 1->3, 2->0, 3->1: tau_i = 4, 5, 4, 5; K = 1 each; sigma2 from same-arm neighbour
    assert tau == pytest.approx(4.5)
    sigma2 = np.array([2.0, 2.0, 0.5, 0.5])
    assert var == pytest.approx((np.sum((np.array([4, 5, 4, 5]) - 4.5) ** 2) + np.sum(2 * sigma2)) / 16)


@pytest.mark.parametrize("cls", [BackdoorRegression, AIPW, BackdoorMatching])
def test_backdoor_estimators_on_a_noiseless_additive_case_by_hand(cls):
    """Y = 1 + 2 T + 3 w exactly, with w binary and T more likely when w = 1 (the naive difference is
    2 + 3 (P(w=1|T=1) - P(w=1|T=0)), confounded): OLS on [1, T, w] fits exactly, AIPW's outcome
    model is exact in each fold (so the doubly robust score is 2 for every user whatever the
    propensity), and matching on a propensity that takes one value per stratum pairs users within
    their stratum, where every difference is 2. Each gives the ATE 2 to 1e-8."""
    rng = np.random.default_rng(7)
    n = 400
    w = (rng.random(n) < 0.5).astype(float)
    t = rng.random(n) < np.where(w == 1, 0.7, 0.3)
    y = 1 + 2 * t + 3 * w
    outcomes = pd.DataFrame({"user": np.arange(n), "arm": np.where(t, "b", "a"), "segment": "all", "y": y})
    data = AnalysisData(outcomes=outcomes, arms=["a", "b"], control="a", metrics={"y": MetricInfo("y", "sum")},
                        seed=0, covariates=pd.DataFrame({"user": np.arange(n), "w": w}), graph=declared_graph(["w"]))
    naive = y[t].mean() - y[~t].mean()
    assert naive - 2 > 0.5
    e = one(cls, data, refute=False)
    assert e.point == pytest.approx(2.0, abs=1e-8)
    assert e.diagnostics["naive"]["point"] == pytest.approx(naive, abs=1e-12)


def test_sensitivity_is_dowhy_linear_sensitivity_analyzer():
    from dowhy.causal_refuters.linear_sensitivity_analyzer import LinearSensitivityAnalyzer

    data = linear_data()
    f = frame_of(data)
    mine = sensitivity(f, ["x1", "x2"], 0.95, k=1.0)
    checked = False
    _, _, est = bd._estimate(f, ["x1", "x2"], "backdoor.linear_regression")
    for bench in (["x1"], ["x2"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            an = LinearSensitivityAnalyzer(estimator=est.estimator, data=f, treatment_name=["T"],
                                           significance_level=0.05, benchmark_common_causes=bench,
                                           frac_strength_treatment=[1.0], frac_strength_outcome=[1.0],
                                           common_causes_order=est.estimator._observed_common_causes.columns)
            an.check_sensitivity(plot=False)
        assert mine["robustness_value"] == pytest.approx(an.stats["robustness_value"], abs=1e-8)
        assert mine["robustness_value_alpha"] == pytest.approx(an.stats["robustness_value_alpha"], abs=1e-8)
        if mine["benchmark"] == bench[0]:
            row = an.benchmarking_results.iloc[0]
            assert mine["adjusted_estimate"] == pytest.approx(row["bias_adjusted_estimate"], abs=1e-8)
            checked = True
            assert mine["adjusted_se"] == pytest.approx(row["bias_adjusted_se"], abs=1e-8)
    assert checked  # the strongest benchmark is one of the two
    # hand: t = 3, df = 100 -> f = 0.3, RV = (sqrt(f^4 + 4 f^2) - f^2) / 2
    assert robustness_value(3.0, 100.0) == pytest.approx(0.5 * (math.sqrt(0.3 ** 4 + 4 * 0.09) - 0.09))


def test_sensitivity_verdicts():
    """An effect of 2 (t about 40): robust against a confounder as strong as x1. An effect of 0.4,
    still significant (t about 8) but smaller than the bias a confounder as strong as x1 would cause
    (about 0.8 by Cinelli-Hazlett's bound): not robust, naming the benchmark. An insignificant one: not robust."""
    strong = one(BackdoorRegression, linear_data(n=2000, seed=1), refute=False).diagnostics["sensitivity"]
    assert strong["verdict"] == "robust", strong["message"]
    data = linear_data(n=2000, seed=2)
    data.outcomes["y"] = data.outcomes["y"] - 1.6 * (data.outcomes["arm"] == "b")  # effect 0.4
    weak = one(BackdoorRegression, data, refute=False).diagnostics["sensitivity"]
    assert weak["robustness_value_alpha"] > 0  # significant on its own
    assert weak["verdict"] == "not robust", weak["message"]
    assert weak["message"].startswith("not robust: ") and "as strong as 'x1'" in weak["message"]
    data.outcomes["y"] = data.outcomes["y"] - 0.4 * (data.outcomes["arm"] == "b")  # effect 0
    null = one(BackdoorRegression, data, refute=False).diagnostics["sensitivity"]
    assert null["verdict"] == "not robust" and "already contains 0" in null["message"]


def test_refutations_reported():
    e = one(BackdoorRegression, linear_data(n=800), refutation_simulations=5)
    refs = {r["refuter"]: r for r in e.diagnostics["refutations"]}
    assert set(refs) == {"placebo treatment", "random common cause", "data subset"}
    assert abs(refs["placebo treatment"]["new_effect"]) < 0.5  # the placebo effect is near 0 (ATE 2)
    assert abs(refs["random common cause"]["new_effect"] - e.point) < 0.1
    assert all(r["passed"] for r in refs.values()), refs


def test_graph_errors():
    g = declared_graph(["x1", "x2"])
    g.add_node("u", observed="no")
    g.add_edges_from([("u", "treatment"), ("u", "outcome")])
    with pytest.raises(DataError, match="no valid backdoor adjustment set"):
        BackdoorRegression(refute=False).estimate(linear_data(n=200, graph=g))
    with pytest.raises(DataError, match="no node 'treatment'"):
        BackdoorRegression(refute=False).estimate(linear_data(n=200, graph=nx.DiGraph([("x1", "outcome")])))
    with pytest.raises(DataError, match="not covariates of the data"):
        BackdoorRegression(refute=False).estimate(linear_data(n=200, graph=declared_graph(["x1", "x3"])))


# -- instrumental variables ---------------------------------------------------------------------------
def iv_data(z, t, y) -> AnalysisData:
    n = len(y)
    outcomes = pd.DataFrame({"user": np.arange(n), "arm": np.where(np.asarray(t) == 1, "b", "a"), "segment": "all",
                             "y": np.asarray(y, dtype=float)})
    return AnalysisData(outcomes=outcomes, arms=["a", "b"], control="a", metrics={"y": MetricInfo("y", "sum")},
                        instrument=np.asarray(z))


def test_iv_is_wald_on_a_2x2_table_and_linearmodels():
    from linearmodels.iv import IV2SLS

    # cells (z, t): counts and outcome means; E[Y|Z=1] - E[Y|Z=0] over E[T|Z=1] - E[T|Z=0]
    cells = {(0, 0): (40, 1.0), (0, 1): (10, 3.0), (1, 0): (15, 1.5), (1, 1): (35, 4.0)}
    z, t, y = [], [], []
    rng = np.random.default_rng(0)
    for (zz, tt), (k, mean) in cells.items():
        noise = rng.normal(size=k)
        noise -= noise.mean()
        z += [zz] * k
        t += [tt] * k
        y += list(mean + noise)
    ey1 = (15 * 1.5 + 35 * 4.0) / 50
    ey0 = (40 * 1.0 + 10 * 3.0) / 50
    wald = (ey1 - ey0) / (35 / 50 - 10 / 50)
    e = one(InstrumentalVariables, iv_data(z, t, y))
    assert e.estimand == "late"
    assert e.point == pytest.approx(wald, abs=1e-8)
    res = IV2SLS(pd.Series(y), pd.DataFrame({"const": np.ones(len(y))}), pd.Series(t, name="T", dtype=float),
                 pd.Series(z, dtype=float)).fit(cov_type="robust")
    assert e.point == pytest.approx(res.params["T"], abs=1e-8)
    assert e.diagnostics["se"] == pytest.approx(res.std_errors["T"], abs=1e-8)


def test_iv_without_first_stage_is_not_identified():
    """Equal treatment shares with and without the nudge (data, not configuration): a NOT IDENTIFIED
    estimate (NaN point and bounds, a warning), not an error that would lose the run."""
    e = one(InstrumentalVariables, iv_data([0, 0, 1, 1], [0, 1, 0, 1], [1, 2, 3, 4]))
    assert math.isnan(e.point) and math.isnan(e.lower) and math.isnan(e.upper)
    assert e.diagnostics["identified"] is False
    assert any("LATE NOT IDENTIFIED" in w and "no first stage" in w for w in e.diagnostics["warnings"])


def encouragement(n: int, compliers: float, seed: int, effect: float = 2.0):
    """z ~ Bernoulli(0.5); T = 1 for always-takers (20%) and nudged compliers (share ``compliers``);
    Y = 1 + effect T + heteroskedastic noise."""
    rng = np.random.default_rng(seed)
    z = (rng.random(n) < 0.5).astype(float)
    u = rng.random(n)
    t = ((u < 0.2) | ((u < 0.2 + compliers) & (z == 1))).astype(float)
    return z, t, 1 + effect * t + rng.normal(size=n) * (1 + t)


def test_iv_interval_is_the_anderson_rubin_set_of_linearmodels_robust_test():
    """Each end of the interval is where linearmodels' robust (HC0) test of Z in the regression of
    Y - b T on [1, Z] has statistic exactly q^2; the first-stage F is linearmodels' first-stage
    statistic."""
    from linearmodels.iv import IV2SLS

    z, t, y = encouragement(600, 0.3, 1)
    e = one(InstrumentalVariables, iv_data(z, t, y))
    q2 = 1.959963984540054 ** 2
    for b in (e.lower, e.upper):
        r = IV2SLS(pd.Series(y - b * t), pd.DataFrame({"c": np.ones(len(y)), "z": z}), None, None).fit(cov_type="robust")
        assert float(r.tstats["z"]) ** 2 == pytest.approx(q2, abs=1e-8)
    assert e.lower < e.point < e.upper
    res = IV2SLS(pd.Series(y), pd.DataFrame({"c": np.ones(len(y))}), pd.Series(t, name="T"),
                 pd.Series(z, name="Z")).fit(cov_type="robust")
    assert e.diagnostics["first_stage_f"] == pytest.approx(float(res.first_stage.diagnostics["f.stat"].iloc[0]),
                                                           rel=1e-8)
    assert e.diagnostics["ar_set"] == "interval" and "warnings" not in e.diagnostics


def test_anderson_rubin_by_hand_on_a_binary_instrument():
    """Without covariates the reduced-form and first-stage coefficients are differences of means, and
    their HC0 (co)variances sums over the two nudge groups of population (co)variances over group size;
    the set is the solution of the quadratic (pi_y - b pi_t)^2 = q^2 (V_yy - 2 b V_yt + b^2 V_tt)."""
    z, t, y = encouragement(400, 0.4, 2)
    g1, g0 = z == 1, z == 0

    def cov(a, b, g):
        return float(np.mean((a[g] - a[g].mean()) * (b[g] - b[g].mean())) / g.sum())

    pi_y, pi_t = y[g1].mean() - y[g0].mean(), t[g1].mean() - t[g0].mean()
    v_yy, v_yt, v_tt = (cov(y, y, g1) + cov(y, y, g0), cov(y, t, g1) + cov(y, t, g0), cov(t, t, g1) + cov(t, t, g0))
    q2 = 1.959963984540054 ** 2
    a, b, c = pi_t ** 2 - q2 * v_tt, -2 * (pi_y * pi_t - q2 * v_yt), pi_y ** 2 - q2 * v_yy
    h = math.sqrt(b * b - 4 * a * c)
    e = one(InstrumentalVariables, iv_data(z, t, y))
    assert (e.lower, e.upper) == (pytest.approx((-b - h) / (2 * a), abs=1e-8), pytest.approx((-b + h) / (2 * a), abs=1e-8))
    assert e.point == pytest.approx(pi_y / pi_t, abs=1e-8)
    assert e.diagnostics["first_stage_f"] == pytest.approx(pi_t ** 2 / v_tt, rel=1e-10)


@pytest.mark.parametrize("compliers, effect, shape", [(0.0, 2.0, "whole line"), (0.01, 2.0, "whole line"),
                                                     (0.01, 300.0, "two rays")])
def test_an_irrelevant_or_weak_instrument_gives_an_unbounded_set_and_a_loud_warning(compliers, effect, shape):
    """No complier (the nudge changes nobody; only sampling moves the first stage) and 1% compliers:
    the Anderson-Rubin set is unbounded, reported as (-inf, inf) -- null in JSON -- with a warning;
    never a finite interval. With a huge effect the set can be two rays (the line minus a gap whose
    ends are where linearmodels' robust test statistic is q^2). (Seeds fixed; with no complier the
    set is bounded in 5% of samples.)"""
    from linearmodels.iv import IV2SLS

    import json

    from counterfeed._json import dumps

    z, t, y = encouragement(400, compliers, {0.0: 3, 2.0: 5, 300.0: 11}[effect if compliers else 0.0], effect)
    e = one(InstrumentalVariables, iv_data(z, t, y))
    assert e.diagnostics["ar_set"] == shape
    assert (e.lower, e.upper) == (-math.inf, math.inf)
    assert e.diagnostics["first_stage_f"] < 1.959963984540054 ** 2
    assert any("WEAK INSTRUMENT" in w and "not bounded" in w for w in e.diagnostics["warnings"])
    d = json.loads(dumps(e.to_dict()))
    assert d["lower"] is None and d["upper"] is None
    if shape == "two rays":
        for b in e.diagnostics["ar_rays"]:
            r = IV2SLS(pd.Series(y - b * t), pd.DataFrame({"c": np.ones(len(y)), "z": z}), None, None).fit(
                cov_type="robust")
            assert float(r.tstats["z"]) ** 2 == pytest.approx(1.959963984540054 ** 2, abs=1e-8)


# -- difference in differences ------------------------------------------------------------------------
def panel_data(panel: pd.DataFrame, treated_users: set[int]) -> AnalysisData:
    users = np.sort(panel["user"].unique())
    tot = panel.groupby("user")["y"].sum().reindex(users).to_numpy()
    outcomes = pd.DataFrame({"user": users, "arm": ["b" if u in treated_users else "a" for u in users],
                             "segment": "all", "y": tot})
    adoption = np.array([1.0 if u in treated_users else np.inf for u in users])
    return AnalysisData(outcomes=outcomes, arms=["a", "b"], control="a", metrics={"y": MetricInfo("y", "sum")},
                        panel=panel, adoption=adoption)


def two_period_panel(seed: int = 0) -> tuple[pd.DataFrame, float]:
    rng = np.random.default_rng(seed)
    n = 40
    treated = np.arange(n) < 20
    rows = []
    for p in (0, 1):
        y = rng.normal(size=n) + 0.5 * p + 3.0 * treated + 1.5 * (treated & (p == 1))
        rows.append(pd.DataFrame({"user": np.arange(n), "period": p, "start": float(p), "treated": (treated & (p == 1)).astype(int),
                                  "y": y}))
    panel = pd.concat(rows, ignore_index=True)
    m = panel.groupby(["period", panel["user"] < 20])["y"].mean()
    did = (m[(1, True)] - m[(0, True)]) - (m[(1, False)] - m[(0, False)])
    return panel, float(did)


def test_twfe_on_two_periods_is_did_by_hand_and_panelols():
    from linearmodels.panel import PanelOLS

    panel, did = two_period_panel()
    e = one(TwoWayFixedEffects, panel_data(panel, set(range(20))))
    assert e.estimand == "att"
    assert e.point == pytest.approx(did, abs=1e-8)
    d = panel.set_index(["user", "period"]).sort_index()
    res = PanelOLS(d["y"], d[["treated"]].astype(float), entity_effects=True, time_effects=True).fit(
        cov_type="clustered", cluster_entity=True)
    assert e.diagnostics["se"] == pytest.approx(res.std_errors["treated"], abs=1e-8)


def test_callaway_santanna_on_two_periods_is_did_and_differences():
    from differences import ATTgt

    panel, did = two_period_panel(1)
    out = StaggeredDiD(control_group="never_treated").estimate(panel_data(panel, set(range(20))))
    by = {e.estimand: e for e in out}
    assert by["att"].point == pytest.approx(did, abs=1e-8)
    assert by["att(e=0)"].point == pytest.approx(did, abs=1e-8)
    d = panel.assign(cohort=np.where(panel["user"] < 20, 1.0, np.nan)).set_index(["user", "period"])[["y", "cohort"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        att = ATTgt(data=d, cohort_column="cohort")
        att.fit(formula="y", est_method="reg", control_group="never_treated", progress_bar=False)
        simple = att.aggregate("simple")
    assert by["att"].diagnostics["se"] == pytest.approx(float(simple.iloc[0, 1]), abs=1e-8)


def staggered_panel(seed: int = 0, n: int = 600) -> tuple[AnalysisData, float]:
    """Cohorts adopting at periods 2 and 4 of 6 plus never-treated users; the effect grows by 1 per
    period since adoption (1, 2, 3, ...): TWFE is biased, Callaway-Sant'Anna is not."""
    rng = np.random.default_rng(seed)
    cohort = rng.choice([2.0, 4.0, np.inf], n)
    rows, effects = [], []
    alpha = rng.normal(size=n)
    for p in range(6):
        on = p >= cohort
        eff = np.where(on, 1.0 + (p - np.where(on, cohort, 0)), 0.0)
        effects.append(eff[on])
        y = alpha + 0.3 * p + eff + rng.normal(size=n)
        rows.append(pd.DataFrame({"user": np.arange(n), "period": p, "start": 2.0 * p, "treated": on.astype(int), "y": y}))
    panel = pd.concat(rows, ignore_index=True)
    data = panel_data(panel, set(np.flatnonzero(np.isfinite(cohort)).tolist()))
    data.adoption = np.where(np.isfinite(cohort), 2.0 * cohort, np.inf)
    return data, float(np.concatenate(effects).mean())


def test_staggered_did_recovers_att_and_event_times_twfe_does_not():
    data, att = staggered_panel()
    cs = {e.estimand: e for e in StaggeredDiD(control_group="never_treated").estimate(data)}
    tw = one(TwoWayFixedEffects, data)
    assert cs["att"].lower < att < cs["att"].upper
    # event time k days after adoption (periods of 2 days): effect 1 + k / 2
    for k in (0, 2, 4):
        e = cs[f"att(e={k})"]
        assert e.lower < 1 + k / 2 < e.upper, (k, e.point)
    assert not (tw.lower < att < tw.upper), (tw.point, att)


def test_unidentified_graph_proceeds_only_when_asked_and_says_so():
    """A declared hidden confounder: an error by default; with proceed_when_unidentifiable the observed
    backdoor set (never the instrument) is used and a warning says the estimate is not identified."""
    g = nx.DiGraph([("instrument", "treatment"), ("x1", "treatment"), ("x1", "outcome"), ("x2", "treatment"),
                    ("x2", "outcome"), ("u", "x2"), ("u", "treatment"), ("u", "outcome"), ("treatment", "outcome")])
    g.nodes["u"]["observed"] = False
    data = linear_data(n=800, graph=g)
    data.instrument = (np.random.default_rng(0).random(800) < 0.5).astype(int)
    with pytest.raises(DataError, match=r"no valid backdoor adjustment set .*unobserved: u"):
        BackdoorRegression(refute=False).estimate(data)
    e = one(BackdoorRegression, data, refute=False, proceed_when_unidentifiable=True)
    assert sorted(e.diagnostics["adjustment_set"]) == ["x1", "x2"]
    assert any(w.startswith("not identified") for w in e.diagnostics["warnings"])
