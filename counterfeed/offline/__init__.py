"""Offline ranking evaluation: recall@k, NDCG@k, MRR and coverage on held-out clicks, naive and
inverse-propensity weighted (see :mod:`counterfeed.offline.metrics`); the ``offline-ranking``
scenario analysis is :mod:`counterfeed.offline.estimator`.

The names below are imported on first use (PEP 562), so registering the estimator plugin at start-up
does not import scipy.
"""

from importlib import import_module
from typing import Any

_WHERE = {"OfflineReport": "evaluate", "evaluate_offline": "evaluate", "held_out_ranks": "evaluate",
          "split_log": "evaluate", "MetricEstimate": "metrics", "coverage": "metrics",
          "rank_metric_values": "metrics", "ratio_estimate": "metrics"}

__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"counterfeed.offline.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'counterfeed.offline' has no attribute {name!r}")
