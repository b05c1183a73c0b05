"""``offline-ranking``: the offline ranking metrics of every arm's recommender as a scenario analysis.

A scenario lists it under ``analysis:`` like any estimator::

    analysis:
      - estimator: diff-in-means
      - estimator: offline-ranking       # options: log, train_share, ks, cutoff, clip, metrics, level

It answers the question an offline evaluation answers before an A/B test, on the data a team would
have: the **pre-period log** of the A/B world (every user served by the control arm, with logged
propensities). That log is split by time (:func:`counterfeed.offline.evaluate.split_log`, the first
``train_share`` of its impressions train), each arm's recommender (``data.policies``) is fitted on
the training part and scored on the held-out clicks (:func:`counterfeed.offline.evaluate.evaluate_offline`:
recall@k, NDCG@k, MRR, naive and self-normalized IPW, Schnabel et al. 2016).

Each :class:`~counterfeed.core.estimation.Estimate` is the **offline difference** treatment arm minus
control of one offline metric under one weighting, estimand ``offline:<metric>:<weighting>`` (for
example ``offline:ndcg@10:ipw``), reported once per online metric it is read against (the
``metrics`` option, default every analysed metric). Both arms are scored on the same held-out clicks
with the same weights, so the difference of the two self-normalized ratios is the ratio of the
per-click differences, ``sum_c w_c (m_c^arm - m_c^control) / sum_c w_c``, and its interval is the
same user-clustered delta method (:func:`counterfeed.offline.metrics.ratio_estimate`). Its truth is
not an online quantity, so scoring leaves it unscored and attaches the online truth beside it instead
(``diagnostics["truth_beside"] = "difference"`` asks for it; ``diagnostics["online_effect"]``: the
true effect on that metric from the counterfactual worlds),
which is what an offline-vs-online comparison reads. The arm's and the control's own values, their
intervals and coverage@k are in the diagnostics too.

``log: control`` uses the control arm's experiment-period impressions instead (for a scenario
without a pre-period).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field, model_validator

from counterfeed.core.estimation import AnalysisData, Estimate, Estimator, EstimatorOptions, EstimatorTags
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import DataError, ScenarioError

__all__ = ["OfflineRanking", "OFFLINE_PREFIX"]

#: estimands of this estimator are ``offline:<metric>:<weighting>``
OFFLINE_PREFIX = "offline:"


class OfflineRanking(Estimator):
    """Offline ranking metrics of each arm on the pre-period log, as differences vs control (module docstring)."""

    name = "offline-ranking"
    tags = EstimatorTags(requires_events=True, requires_policies=True, stochastic=True, estimands=())
    #: the conformance data has no pre-period: evaluate on the control arm's log there
    conformance_options: ClassVar[dict[str, Any]] = {"log": "control", "cutoff": 20, "ks": [3]}

    class Options(EstimatorOptions):
        log: Literal["pre_period", "control"] = Field(
            "pre_period", description="the logged data: the A/B world's pre-period impressions, or the "
                                      "control arm's impressions during the experiment")
        train_share: float = Field(0.8, gt=0.0, lt=1.0, description="share of the log's impressions (by time) "
                                                                    "the recommenders are fitted on")
        ks: list[int] = Field(default_factory=lambda: [10], min_length=1, description="cut-offs k of recall@k, ndcg@k")
        cutoff: int = Field(100, ge=1, le=100_000, description="length of the served lists (MRR is truncated there)")
        clip: float | None = Field(None, ge=1.0, description="largest IPW weight (None: no clipping)")
        weighting: list[Literal["naive", "ipw"]] = Field(default_factory=lambda: ["naive", "ipw"], min_length=1)

        @model_validator(mode="after")
        def _ks_within_cutoff(self) -> "OfflineRanking.Options":
            bad = [k for k in self.ks if not 1 <= k <= self.cutoff]
            if bad:
                raise ValueError(f"every k in ks must be in [1, cutoff={self.cutoff}], got {bad}")
            return self

    def check_scenario(self, scenario: Any) -> None:
        """``log: pre_period`` needs a pre-period (checked by ``validate`` before anything runs)."""
        if self.options.log == "pre_period" and float(scenario.experiment.pre_period) <= 0:
            raise ScenarioError("estimator 'offline-ranking' with log: pre_period needs a pre-period: set "
                                "experiment.pre_period (e.g. 7d) or use log: control", field="experiment.pre_period")

    def _log(self, data: AnalysisData) -> Any:
        events = data.events
        if events is None or events.impressions is None:
            raise DataError("estimator 'offline-ranking' needs the A/B world's impression log (data.events)")
        imp = events.impressions
        if self.options.log == "pre_period":
            log = imp.select(np.asarray(imp.time, np.float64) < float(data.start))
            where = f"before the experiment start (day {float(data.start):g})"
        else:
            if imp.arm is None:
                raise DataError("estimator 'offline-ranking': log: control needs the impressions' arm column")
            log = imp.select((np.asarray(imp.arm) == data.arms.index(data.control))
                             & (np.asarray(imp.time, np.float64) >= float(data.start)))
            where = f"of the control arm '{data.control}' during the experiment"
        if len(log) == 0:
            raise DataError(f"estimator 'offline-ranking': no impressions {where}")
        return log

    def _too_few(self, n_clicks: int, n_users: int, split: float) -> str:
        return (f"train_share {self.options.train_share:g} holds out {n_clicks} clicks of {n_users} users after "
                f"day {split:g}; an interval needs clicks of two users or more: lower train_share (or "
                "log more: a longer pre-period with log: pre_period, more users)")

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        from counterfeed.offline.evaluate import evaluate_offline, split_log
        from counterfeed.offline.metrics import ratio_estimate

        o = self.options
        missing = [a for a in data.arms if a not in data.policies]
        if missing or data.items is None:
            raise DataError("estimator 'offline-ranking' needs every arm's recommender (data.policies) and the "
                            f"catalog (data.items); missing: {', '.join(missing) or 'items'}")
        train, test, split = split_log(self._log(data), train_share=o.train_share)
        clicked = np.asarray(test.click, bool)
        clickers = np.unique(np.asarray(test.user)[clicked]).size
        if clickers < 2:  # before fitting any arm's recommender
            raise DataError(self._too_few(int(clicked.sum()), int(clickers), split))
        level = self.level_for(data)
        reports = {}
        for arm in data.arms:
            spec = data.policies[arm]
            reports[arm] = evaluate_offline(spec.recommender, dict(spec.options), train, test, data.items,
                                            data.n_users, ks=o.ks, cutoff=o.cutoff, clip=o.clip, level=level,
                                            seed=int(data.seed), split_time=split)
        ctrl = reports[data.control]
        users, w = ctrl.clicks["user"], ctrl.clicks["weight"]
        weights = {"naive": np.ones_like(w), "ipw": w}
        out: list[Estimate] = []
        for arm in data.treatments:
            rep = reports[arm]
            for name in (k for k in ctrl.clicks if k not in ("user", "weight")):
                for wt in o.weighting:
                    d = ratio_estimate(name, wt, rep.clicks[name] - ctrl.clicks[name], weights[wt], users, level,
                                       bounds=(-1.0, 1.0))
                    if d.value is None or d.n_users < 2:
                        raise DataError(self._too_few(d.n_clicks, d.n_users, split))
                    warns = [*(ctrl.ipw_warnings if wt == "ipw" else []), *d.warnings,
                             *rep.list_warnings, *ctrl.list_warnings]
                    diag = {"arm_value": rep.value(name, wt), "control_value": ctrl.value(name, wt), "se": d.se,
                            "n_test_clicks": d.n_clicks, "n_users": d.n_users, "ess": d.ess, "split_time": split,
                            "n_train_impressions": rep.n_train, "log": o.log, "clip": o.clip,
                            "recommender": data.policies[arm].recommender, "truth_beside": "difference",
                            **{f"arm_coverage@{k}": v for k, v in rep.coverage.items()},
                            **{f"control_coverage@{k}": v for k, v in ctrl.coverage.items()}}
                    lo, hi = (np.nan, np.nan) if d.lower is None else (float(d.lower), float(d.upper))
                    for metric in self.metrics_for(data):
                        out.append(Estimate(estimator=self.name, metric=metric, arm=arm, control=data.control,
                                            point=float(d.value), lower=lo, upper=hi,
                                            level=level, estimand=f"{OFFLINE_PREFIX}{name}:{wt}",
                                            diagnostics={**diag, **({"warnings": list(warns)} if warns else {})}))
        return out


@hookimpl
def register_estimators(register):
    register(OfflineRanking)
