"""Off-policy evaluation inside a scenario: each treatment arm's value estimated from the control arm's logs."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from counterfeed.core.contracts import Log
from counterfeed.core.estimation import (POLICY_VALUE, POLICY_VALUE_METRIC, AnalysisData, Estimate,
                                         Estimator, EstimatorOptions, EstimatorTags)
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import DataError, PluginError, ScenarioError

__all__ = ["OffPolicy", "METRIC"]

NEEDS_PRE = "estimator 'ope': fit_on: pre_period needs a pre-period (set experiment.pre_period)"

#: the metric every OPE estimate is about: clicks per impression under the arm's policy
METRIC = POLICY_VALUE_METRIC

#: the most cross-fitting folds: :data:`counterfeed.ope.reward.MAX_FOLDS` (not imported here, it would
#: import scipy with this plugin; a test checks the two agree)
MAX_FOLDS = 100


def _ope_log(log: Log, source: str):
    from counterfeed.ope.logs import from_arrays

    return from_arrays(round=(log.user.astype(np.int64) << np.int64(32)) + log.session.astype(np.int64),
                       item=log.item, position=log.position, reward=log.click.astype(np.float64),
                       propensity=log.propensity, user=log.user, session=log.session, time=log.time,
                       source=source)


class OffPolicy(Estimator):
    r"""Off-policy estimates of each treatment arm's click rate per impression from the control arm's logs.

    For every treatment arm, its recommender (``data.policies[arm]``) is set up on the catalog,
    fitted on the control arm's impressions of the A/B world and asked for its probability of every
    logged (item, position); then each OPE estimator (:mod:`counterfeed.ope.estimators`: position-wise
    IPS, SNIPS, DR, ... with intervals clustered by session) estimates
    :math:`V(\pi_e) = E_{\pi_e}[\text{click}]` per impression (estimand ``policy-value``). Its truth,
    computed by the core's truth stage, is the click rate of the counterfactual world where everyone
    gets that arm, over the experiment period. Assumptions: the logged
    propensities are exact, the target's items have positive logging probability, clicks at a position
    depend only on the item there, and no interference (the target's logs in its own world would come
    from the same users). Reference: Dudik et al. (2014); Li et al. (2018).
    """

    name = "ope"
    tags = EstimatorTags(requires_events=True, requires_policies=True, stochastic=True,
                         estimands=(POLICY_VALUE,))

    class Options(EstimatorOptions):
        estimators: list[str] = Field(default_factory=lambda: ["ips", "snips", "dr"], min_length=1,
                                      description="OPE estimators to report (at least one)")
        clip: float | None = Field(default=None, gt=0)
        tau: float = Field(default=10.0, ge=0)
        lam: float = Field(default=100.0, ge=0)
        folds: int = Field(default=5, ge=1, le=MAX_FOLDS,
                           description=f"cross-fitting folds of the DM/DR reward model, 1..{MAX_FOLDS}: each "
                           "fold refits the model on the other rounds, so more folds cost more fits for "
                           "out-of-fold predictions that barely change beyond a few")
        bootstrap: int = Field(default=0, ge=0, description="bootstrap draws over rounds (0: analytic "
                               "intervals); otherwise at least 1 + 2/(1 - level) (41 at level 0.95), checked "
                               "by validate against the entry's or the scenario's level")
        fit_on: Literal["logs", "pre_period"] = Field(
            default="logs", description="'logs': fit the target on every control-arm impression it is "
            "evaluated on; 'pre_period': fit it on the pre-period log (as the arm is fitted at the "
            "experiment start) and evaluate it on the experiment period's control impressions, which "
            "removes the winner's curse of fitting and evaluating on the same data")

    def users_per_arm(self) -> int:
        """0: each arm's policy is evaluated on the control arm's impressions, not on the arm's own users
        (a control without impressions is a DataError at estimation)."""
        return 0

    def check_scenario(self, scenario: Any) -> None:
        """Every treatment arm's recommender must be evaluable off-policy, and ``bootstrap`` must give a
        percentile interval at the entry's level (else the scenario's), as :func:`counterfeed.ope.evaluate`
        requires (before anything is simulated; located at ``analysis[i].bootstrap``)."""
        from counterfeed.ope.evaluate import bootstrap_problem
        from counterfeed.ope.target import check_target_evaluable  # scipy: imported on use

        level = self.options.level if self.options.level is not None else float(scenario.level)
        if (problem := bootstrap_problem(self.options.bootstrap, level)) is not None:
            i = self.analysis_entry(scenario)
            raise ScenarioError(problem, field="bootstrap" if i is None else f"analysis[{i}].bootstrap")
        for arm in (a for a in scenario.arms if a != scenario.control):
            spec = scenario.experiment.arms[arm]
            try:
                check_target_evaluable(spec.recommender, dict(spec.options or {}))
            except PluginError as exc:
                raise ScenarioError(f"estimator 'ope' cannot evaluate arm '{arm}' offline: {exc}",
                                    field=f"experiment.arms.{arm}.recommender") from None

    def check_metrics(self, scenario: Any, metrics: Any) -> None:
        """Every OPE estimator name is known; ``fit_on: pre_period`` has a pre-period."""
        from counterfeed.ope.estimators import make_estimator

        for name in self.options.estimators:
            make_estimator(name, tau=self.options.tau, lam=self.options.lam)
        if self.options.fit_on == "pre_period" and float(scenario.experiment.pre_period) <= 0:
            raise DataError(NEEDS_PRE)

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        from counterfeed.ope import evaluate, target_from_recommender  # scikit-learn: imported on use

        chosen = getattr(self.options, "metrics", None)
        if chosen and METRIC not in chosen:
            return []  # the only metric this estimator estimates was not asked for
        events = data.events
        if events is None or events.impressions is None or events.impressions.arm is None:
            raise DataError("estimator 'ope' needs the A/B world's impression log with its arm column "
                            "(record impressions in the scenario)")
        imp = events.impressions
        c = data.arms.index(data.control)
        ctrl = imp.select(imp.arm == c)
        if len(ctrl) == 0:
            raise DataError(f"estimator 'ope': the control arm '{data.control}' has no impressions")
        start = float(data.start)
        fit_log = ctrl
        if self.options.fit_on == "pre_period":
            if start <= 0:
                raise DataError(NEEDS_PRE)
            fit_log = imp.select(imp.time < start)
            ctrl = ctrl.select(ctrl.time >= start)
            if len(ctrl) == 0:
                raise DataError(f"estimator 'ope': the control arm '{data.control}' has no impressions "
                                "after the pre-period")
        log = _ope_log(ctrl, f"world {events.world}, arm {data.control}")
        level = self.level_for(data)
        seed = int(data.seed)
        out: list[Estimate] = []
        for arm in data.treatments:
            if arm not in data.policies:
                raise DataError(f"estimator 'ope': no recommender spec for arm '{arm}'")
            spec = data.policies[arm]
            rec_name = spec.recommender
            target = target_from_recommender(log, rec_name, dict(spec.options), seed=seed,
                                             items=data.items, n_users=data.n_users,
                                             slate_size=data.slate_size, fit_log=fit_log,
                                             fit_is_eval=self.options.fit_on == "logs")
            o = self.options
            results = evaluate(log, target, o.estimators, clip=o.clip, level=level, bootstrap=o.bootstrap,
                               seed=seed, folds=o.folds, tau=o.tau, lam=o.lam)
            for r in results:
                diag = dict(r.diagnostics, se=r.se, logging_value=r.logging_value, interval=r.interval,
                            recommender=rec_name)
                out.append(Estimate(estimator=f"ope:{r.estimator}", metric=METRIC, arm=arm,
                                    control=data.control, point=r.value, lower=_bound(r.lower), upper=_bound(r.upper),
                                    level=level, estimand=POLICY_VALUE, diagnostics=diag))
        return out


def _bound(x: float | None) -> float:
    """An interval bound; NaN where there is none (the Estimate contract's "no interval", null in JSON)."""
    return float(x) if x is not None and np.isfinite(x) else float("nan")


@hookimpl
def register_estimators(register):
    register(OffPolicy)
