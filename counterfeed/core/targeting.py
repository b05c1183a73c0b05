"""Targeting as an intervention: a rule learned from the experiment's CATE estimates, deployed in a
world of its own and scored against all-control, all-arm and the oracle rule.

Workflow (scenario section ``targeting``, :class:`~counterfeed.core.scenario_heterogeneity.TargetingSpec`):

1. after the analysis stage, every :class:`~counterfeed.core.estimation.Estimate` with estimand
   ``"cate"`` on ``targeting.metric`` for ``targeting.arm`` makes a rule from its out-of-fold
   per-user predictions (:func:`rule_treats`): the user gets the arm when the predicted
   *improvement* (the effect, sign-flipped for a metric where lower is better) passes the rule;
2. the **oracle** rule treats the users whose true conditional effect (the per-user truth's
   ``conditional``, from the noise replications) is an improvement;
3. each rule is simulated as a world where every user gets the rule's arm from the experiment
   start (a :class:`~counterfeed.core.experiment.FixedAssignment` with per-user arms, run by the
   same executors and keyed noise as the counterfactual worlds): its **true value** is the metric's
   mean in that world, compared with all-control, all-arm and the oracle (``regret`` = oracle minus
   rule, in the improving direction);
4. next to it, the **off-policy estimate** of the rule's value from the experiment's data alone
   (:mod:`counterfeed.analysis.policy_value`: IPW and doubly robust with cross-fitted outcome models
   on the covariates an analyst has), with influence-function intervals and whether the DR interval
   covers the true value.
5. the estimand of the off-policy interval that is scored (``dr_realised``): the rule's true value
   as defined in 3, the realised mean of these users in the rule's world. With frozen models a
   user's outcome depends on their own arm only and the rule's world shares the users' noise with the
   experiment, so a user who had the rule's arm in the experiment has the same outcome in the
   rule's world (``matched_identical``: the share of those users for whom that holds); the value is
   then a finite-population estimand and its interval is the design-based one
   (:func:`~counterfeed.analysis.policy_value.design_value`). When ``matched_identical`` is below 1
   (interference through training or online updates) that condition fails: ``realised_valid`` is
   false, ``dr_realised_covers`` and ``ipw_realised_covers`` are null with ``realised_note`` saying
   why, and the rule gets a warning. The influence-function intervals
   (``ipw``, ``dr``) are for the population value ``E[Y(pi(X))]`` of fresh users; against the
   realised value they are conservative (they count the users' sampling and noise the rule's world
   shares with the experiment), and the population value itself is not known to the run: its noise
   replications also re-draw the models' training, a shock common to all users.

Also reported: the rule's *expected* gain over all-control from the per-user truth,
``mean_u(1{treated_u} * conditional_u)`` (noise-averaged, interference ignored), next to the
simulated one. Everything lands in ``manifest.json`` under ``targeting`` and in the report.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pandas as pd

from counterfeed.analysis.policy_value import PolicyValue, cross_fit_outcomes, design_value, policy_scores
from counterfeed.core.contracts import MetricInfo
from counterfeed.core.covariates import covariate_matrix
from counterfeed.core.estimation import CATE, AnalysisData, Estimate
from counterfeed.core.experiment import counterfactual_world
from counterfeed.core.outcomes import group_value
from counterfeed.core.randomness import Keys
from counterfeed.core.scoring import interval_quantile
from counterfeed.core.scenario import Scenario
from counterfeed.core.scenario_heterogeneity import TargetingSpec, target_arm, truth_replications

__all__ = ["ORACLE", "rule_world", "rule_treats", "targeting_rules", "targeting_report", "realised_condition_note"]

#: the world of the oracle rule (treat iff the true conditional effect is an improvement)
ORACLE = "targeting:oracle"


def rule_world(estimator: str) -> str:
    """The world name of the rule learned from ``estimator``'s CATE estimate."""
    return f"targeting:{estimator}"


def rule_treats(improvement: np.ndarray, spec: TargetingSpec) -> np.ndarray:
    """(n,) bool: who gets the arm, from each user's predicted improvement (NaN: never treated).

    ``threshold``: improvement > ``spec.threshold``. ``top-fraction``: the ``ceil(fraction * n)``
    users with the largest improvement (ties broken by user order), among those above the threshold.
    """
    imp = np.asarray(improvement, dtype=np.float64)
    ok = np.isfinite(imp) & (np.nan_to_num(imp, nan=-np.inf) > spec.threshold)
    if spec.rule == "threshold":
        return ok
    k = int(np.ceil(float(spec.fraction) * imp.size))
    order = np.lexsort((np.arange(imp.size), -np.nan_to_num(imp, nan=-np.inf)))
    top = np.zeros(imp.size, dtype=bool)
    top[order[:k]] = True
    return top & ok


def _sign(info: MetricInfo) -> float:
    return 1.0 if info.higher_is_better else -1.0


def targeting_rules(sc: Scenario, info: MetricInfo, estimates: list[Estimate], user_truth: pd.DataFrame,
                    n_users: int) -> dict[str, np.ndarray]:
    """World name -> (n_users,) arm index per user: one rule per matching CATE estimate, then the oracle.

    Raises ValueError when the per-user truth has no conditional effect for the metric and arm (the
    oracle needs the noise replications; the scenario check guarantees them).
    """
    spec = sc.targeting
    assert spec is not None
    arm, arms = target_arm(sc), sc.arms
    treat_i, ctrl_i = arms.index(arm), arms.index(sc.control)
    out: dict[str, np.ndarray] = {}
    for e in estimates:
        if (e.estimand != CATE or e.metric != spec.metric or e.arm != arm or e.user_effects is None
                or (spec.estimators is not None and e.estimator not in spec.estimators)):
            continue
        pred = np.full(n_users, np.nan)
        ue = e.user_effects
        pred[ue["user"].to_numpy(np.int64)] = ue["point"].to_numpy(np.float64)
        name, k = rule_world(e.estimator), 2
        while name in out:
            name, k = f"{rule_world(e.estimator)}-{k}", k + 1
        out[name] = np.where(rule_treats(_sign(info) * pred, spec), treat_i, ctrl_i).astype(np.int64)
    truth = user_truth[(user_truth.metric == spec.metric) & (user_truth.arm == arm)].sort_values("user")
    if len(truth) != n_users or truth["conditional"].isna().any():
        raise ValueError(f"no conditional per-user truth of '{spec.metric}' for arm '{arm}': the oracle rule "
                         "needs truth.replications >= 2")
    oracle = _sign(info) * truth["conditional"].to_numpy(np.float64) > 0
    out[ORACLE] = np.where(oracle, treat_i, ctrl_i).astype(np.int64)
    return out


def targeting_report(sc: Scenario, info: MetricInfo, rules: dict[str, np.ndarray],
                     rule_outcomes: dict[str, pd.DataFrame], outcomes: pd.DataFrame,
                     user_truth: pd.DataFrame, data: AnalysisData) -> dict[str, Any]:
    """The manifest's ``targeting`` entry: each rule's true value vs all-control, all-arm and the
    oracle, its regret and expected gain, and its off-policy estimates (IPW, DR, DR gains)."""
    spec = sc.targeting
    assert spec is not None
    arm, metric, sign = target_arm(sc), spec.metric, _sign(info)
    value = {w: group_value(f, info) for w, f in rule_outcomes.items()}
    all_ctrl = group_value(outcomes[outcomes.world == counterfactual_world(sc.control)], info)
    all_arm = group_value(outcomes[outcomes.world == counterfactual_world(arm)], info)
    truth = user_truth[(user_truth.metric == metric) & (user_truth.arm == arm)].sort_values("user")
    cond = truth["conditional"].to_numpy(np.float64)
    treat_i = sc.arms.index(arm)
    ope = _OffPolicy(sc, metric, data, spec.folds)
    best_single = max(all_ctrl, all_arm) if sign > 0 else min(all_ctrl, all_arm)
    entries = []
    for world, arm_of in rules.items():
        treated = arm_of == treat_i
        v = value[world]
        entry: dict[str, Any] = {
            "rule": world.removeprefix("targeting:"), "world": world, "treated_share": float(treated.mean()),
            "value": v, "all_control": all_ctrl, "all_arm": all_arm, "oracle": value[ORACLE],
            "regret": sign * (value[ORACLE] - v), "gain_vs_control": v - all_ctrl, "gain_vs_arm": v - all_arm,
            "beats_both": bool(sign * (v - best_single) > 0),
            "expected_gain_vs_control": float(np.mean(treated * cond)),
        }
        entry["ope"] = ope.evaluate(arm_of, v, all_ctrl, all_arm)
        if "dr" in entry["ope"]:
            entry["ope"].update(ope.realised(arm_of, v, rule_outcomes[world]))
        entry["warnings"] = _rule_warnings(entry, arm, sc.control)
        for line in entry["warnings"]:  # a warning, not progress: shown even with --quiet
            print(f"warning (targeting): {line}", file=sys.stderr, flush=True)
        entries.append(entry)
    se = truth["conditional_se"].to_numpy(np.float64) if "conditional_se" in truth else np.full(cond.size, np.nan)
    z = interval_quantile(float(data.level))
    return {"metric": metric, "arm": arm, "control": sc.control, "rule": spec.rule,
            "threshold": spec.threshold, "fraction": spec.fraction,
            "higher_is_better": info.higher_is_better, "level": data.level, "rules": entries,
            "oracle_replications": truth_replications(sc, True),  # the run's count (the default when not given)
            # users whose oracle decision the truth's Monte Carlo error cannot settle (|tau~| < z se)
            "oracle_uncertain_share": float(np.mean(np.abs(cond) < z * se)) if np.isfinite(se).all() else None}


def _rule_warnings(entry: dict[str, Any], arm: str, control: str) -> list[str]:
    """A rule that treats nobody or everyone (its gain over that baseline is 0 by construction, not
    measured), one whose realised-value (design-based) interval's condition fails (``matched_identical``
    below 1: interference), and one that beats the oracle (an oracle from R noise replications is no
    upper bound)."""
    out = []
    share, rule = entry["treated_share"], entry["rule"]
    if share in (0.0, 1.0):
        same = f"all-{control}" if share == 0.0 else f"all-{arm}"
        out.append(f"RULE IS {same.upper()}: the rule learned from {rule} gives {arm} to "
                   f"{'no user' if share == 0.0 else 'every user'}; it is {same}, so its gain over {same} is 0 by "
                   "construction, not measured (its DR gain is null)")
    note = (entry.get("ope") or {}).get("realised_note")
    if note:
        out.append(f"DR, THESE USERS NOT VALID for the rule {rule}: {note}")
    if entry["regret"] < 0:
        out.append(f"the rule learned from {rule} beats the oracle (regret {entry['regret']:.4g}): the oracle treats "
                   "by the conditional truth from the truth's R noise replications, which has Monte Carlo error, "
                   "so it is not an upper bound (oracle_uncertain_share: users whose oracle decision that error "
                   "cannot settle; raise truth.replications)")
    return out


def realised_condition_note(matched_identical: float | None, matched: int, differ: int) -> str:
    """Why the design-based interval of a rule's realised value (``ope.dr_realised``) is not valid: the
    users who had the rule's arm in the experiment do not all have the same outcome in the rule's world."""
    if matched_identical is None:
        return ("no user had the rule's arm in the experiment, so its condition (matched_identical = 1) cannot be "
                "checked; dr_realised_covers and ipw_realised_covers are null")
    return (f"matched_identical is {matched_identical:.3g} ({differ} of the {matched} users who had the rule's arm in "
            "the experiment have another outcome in the rule's world), but the design-based interval for these "
            "users' realised value needs 1: a user's outcome depends on the other users' arms (interference through "
            "model training or online updates: experiment.retrain_every, the arms' updates), so the rule world's "
            "value is not the estimand of ope.dr_realised / ope.ipw_realised and their *_covers are null (not "
            "scored); the influence-function intervals (ope.dr, ope.ipw) assume no interference too. Freeze the "
            "models (retrain_every: null, updates: false) for a valid realised-value interval")


class _OffPolicy:
    """The off-policy estimates of rules from the A/B world's data (cross-fitted once per run)."""

    def __init__(self, sc: Scenario, metric: str, data: AnalysisData, folds: int):
        out = data.outcomes
        self.ctrl_i, self.treat_i = sc.arms.index(sc.control), sc.arms.index(target_arm(sc))
        self.level, self.metric = float(data.level), metric
        self.y = out[metric].to_numpy(np.float64)
        self.arm = np.array([sc.arms.index(a) for a in out["arm"]], dtype=np.int64)
        self.users = out["user"].to_numpy(np.int64)
        probs = data.assignment_probabilities
        self.p = (np.asarray(probs, dtype=np.float64) if probs is not None
                  else np.full((self.y.size, len(sc.arms)), np.nan))
        self.adaptive = bool(data.adaptive_assignment)
        x = covariate_matrix(data.covariates) if data.covariates is not None else np.zeros((self.y.size, 0))
        self.mu = cross_fit_outcomes(x, self.y, self.arm, len(sc.arms), folds,
                                     Keys(data.seed).numpy_generator("targeting", "folds"))
        self.n_covariates = int(x.shape[1])

    def scores(self, arm_of: np.ndarray):
        return policy_scores(arm_of[self.users], self.arm, self.y, self.p, self.mu)

    def realised(self, arm_of: np.ndarray, true_value: float, world: pd.DataFrame) -> dict[str, Any]:
        """The DR and IPW values of ``arm_of`` with design-based intervals for the realised value of
        these users (the rule world's mean ``true_value``), whether they cover it, and the share of the
        users who had the rule's arm in the experiment whose outcome in the rule's world is the same
        (``matched_identical``). Below 1 (or with no such user) the interval's condition fails:
        ``realised_valid`` is false, the ``*_realised_covers`` are null and ``realised_note`` says why."""
        rule = arm_of[self.users]
        sc = self.scores(arm_of)
        dr = design_value(sc.dr, rule, self.arm, self.y, self.p, self.mu, self.level)
        ipw = design_value(sc.ipw, rule, self.arm, self.y, self.p, None, self.level)
        hit = rule == self.arm
        w = world.set_index("user")[self.metric].reindex(self.users[hit]).to_numpy(np.float64)
        identical = np.isclose(w, self.y[hit], rtol=0, atol=1e-9)  # per user: float rounding is not a difference
        same = float(np.mean(identical)) if hit.any() else None
        out: dict[str, Any] = {"dr_realised": dr.to_dict(), "ipw_realised": ipw.to_dict(),
                               "dr_realised_covers": dr.covers(true_value),
                               "ipw_realised_covers": ipw.covers(true_value),
                               "matched_identical": same, "realised_valid": bool(hit.any() and identical.all())}
        if not out["realised_valid"]:  # the estimand of the design-based interval is not the rule world's value
            out["dr_realised_covers"] = out["ipw_realised_covers"] = None
            out["realised_note"] = realised_condition_note(same, int(hit.sum()), int((~identical).sum()))
        return out

    def evaluate(self, arm_of: np.ndarray, true_value: float, all_ctrl: float, all_arm: float) -> dict[str, Any]:
        """IPW and DR values of the rule ``arm_of`` (indexed by user id), DR gains over all-control and
        all-arm, and whether each interval covers its true counterpart."""
        if not np.all(np.isfinite(self.p)):
            return {"note": "no assignment probabilities: the off-policy value is not identified"}
        rule = self.scores(arm_of)
        ctrl = self.scores(np.full(arm_of.size, self.ctrl_i, dtype=np.int64))
        treat = self.scores(np.full(arm_of.size, self.treat_i, dtype=np.int64))
        lvl = self.level
        ipw, dr = PolicyValue.from_scores(rule.ipw, lvl), PolicyValue.from_scores(rule.dr, lvl)
        # a rule equal to all-control (all-arm) has a gain of 0 over it by construction: null, not [0, 0]
        g_ctrl = PolicyValue.from_scores(rule.dr - ctrl.dr, lvl) if np.any(arm_of != self.ctrl_i) else None
        g_arm = PolicyValue.from_scores(rule.dr - treat.dr, lvl) if np.any(arm_of != self.treat_i) else None
        return {"ipw": ipw.to_dict(), "dr": dr.to_dict(), "dr_gain_vs_control": g_ctrl and g_ctrl.to_dict(),
                "dr_gain_vs_arm": g_arm and g_arm.to_dict(), "ipw_covers": ipw.covers(true_value),
                "dr_covers": dr.covers(true_value),
                "dr_gain_vs_control_covers": g_ctrl and g_ctrl.covers(true_value - all_ctrl),
                "dr_gain_vs_arm_covers": g_arm and g_arm.covers(true_value - all_arm),
                "n_users": int(self.y.size), "n_covariates": self.n_covariates, "adaptive_assignment": self.adaptive}
