"""A third-party-style estimator (not derived from any built-in) that declares ``separable_metrics``, so
the run can re-estimate it one metric at a time through the public ``metrics_for``/``for_metrics``."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from scipy.special import ndtri

from counterfeed import Estimate, Estimator, EstimatorTags, hookimpl
from counterfeed.errors import ModelError


class MeanGapEstimator(Estimator):
    """Difference of arm means (ratio metrics: ratio of sums) with a normal interval; raises a ModelError
    when a ratio's denominator sums to 0 in an arm, or an arm has fewer than 2 users."""

    name = "test-mean-gap"
    tags = EstimatorTags(separable_metrics=True)

    def estimate(self, data):
        level = self.level_for(data)
        z = float(ndtri(0.5 + level / 2))
        df = data.outcomes
        out = []
        for metric in self.metrics_for(data):
            info = data.metrics[metric]
            stats = {}
            for arm in data.arms:
                rows = df[df["arm"] == arm]
                if len(rows) < 2:
                    raise ModelError(f"{self.name}: arm '{arm}' has fewer than 2 users")
                if info.kind == "ratio":
                    x, y = rows[info.numerator].to_numpy(float), rows[info.denominator].to_numpy(float)
                    if y.sum() == 0:
                        raise ModelError(f"{self.name}: metric '{metric}': the denominator sums to 0 in arm '{arm}'")
                    r = x.sum() / y.sum()
                    lin = (x - r * y) / y.mean()
                    stats[arm] = (r, lin.var(ddof=1) / lin.size)
                else:
                    v = rows[metric].to_numpy(float)
                    stats[arm] = (v.mean(), v.var(ddof=1) / v.size)
            mc, vc = stats[data.control]
            for arm in data.treatments:
                mt, vt = stats[arm]
                d, se = mt - mc, float(np.sqrt(vt + vc))
                out.append(Estimate(self.name, metric, arm, data.control, d, d - z * se, d + z * se, level=level))
        return out


class UnsplittableMeanGap(MeanGapEstimator):
    """The same estimator without the tag: the run cannot restrict it, so its error fails the run."""

    name = "test-mean-gap-joint"
    tags = EstimatorTags()


class PerMetricPlugin:
    @hookimpl
    def register_estimators(self, register):
        register(MeanGapEstimator)
        register(UnsplittableMeanGap)


@contextmanager
def per_metric_plugin():
    """The plugin registered for the duration of the block."""
    from counterfeed.core.plugins import get_registry

    reg = get_registry()
    name = reg.register_plugin(PerMetricPlugin(), name="test-per-metric-plugin")
    try:
        yield
    finally:
        reg.unregister_plugin(name)
