"""Offline ranking evaluation: recall@k, NDCG@k, MRR and coverage on held-out clicks, naive and
inverse-propensity weighted (see :mod:`counterfeed.offline.metrics`)."""

from counterfeed.offline.evaluate import OfflineReport, evaluate_offline, held_out_ranks, split_log
from counterfeed.offline.metrics import MetricEstimate, coverage, rank_metric_values, ratio_estimate

__all__ = ["OfflineReport", "evaluate_offline", "held_out_ranks", "split_log", "MetricEstimate", "coverage",
           "rank_metric_values", "ratio_estimate"]
