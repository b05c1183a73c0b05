"""Off-policy evaluation: estimate a new policy's value from logged impressions with propensities.

>>> from counterfeed.ope import load_log, load_target, evaluate          # doctest: +SKIP
>>> log = load_log("logs.parquet")                                       # doctest: +SKIP
>>> results = evaluate(log, load_target("target.parquet", log), ["ips", "snips", "dr"])  # doctest: +SKIP

See ``docs/ope.md`` for the log format, the estimators and their assumptions.
"""

from __future__ import annotations

from counterfeed.ope.estimators import (ESTIMATORS, DirectMethod, DoublyRobust,
                                        DoublyRobustWithShrinkage, InverseProbabilityWeighting,
                                        OffPolicyEstimator, SelfNormalizedDoublyRobust,
                                        SelfNormalizedInverseProbabilityWeighting,
                                        SwitchDoublyRobust, make_estimator)
from counterfeed.ope.evaluate import OPEResult, evaluate
from counterfeed.ope.logs import OPELog, from_arrays, load_log, log_from_frame, parse_columns
from counterfeed.ope.reward import LogisticRewardModel, RewardModel, cross_fit
from counterfeed.ope.target import (Support, Target, catalog_from_log, check_target_evaluable, load_target,
                                    target_from_recommender, target_from_table)

__all__ = [
    "OPELog", "load_log", "log_from_frame", "from_arrays", "parse_columns",
    "Target", "Support", "load_target", "target_from_table", "target_from_recommender", "catalog_from_log",
    "check_target_evaluable",
    "RewardModel", "LogisticRewardModel", "cross_fit",
    "OffPolicyEstimator", "DirectMethod", "InverseProbabilityWeighting",
    "SelfNormalizedInverseProbabilityWeighting", "DoublyRobust", "SelfNormalizedDoublyRobust",
    "SwitchDoublyRobust", "DoublyRobustWithShrinkage", "ESTIMATORS", "make_estimator",
    "OPEResult", "evaluate",
]
