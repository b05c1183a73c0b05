"""Test estimators for heterogeneity: one that records the covariates it is given, and a CATE
estimator that returns preset per-user predictions (a stand-in for real CATE learners in targeting
tests; the test sets ``PresetCate.predictions`` before a run)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd

from counterfeed import hookimpl
from counterfeed.core.estimation import CATE, Estimate, Estimator, EstimatorTags


class CovariateRecorder(Estimator):
    """Records ``data.covariates`` and returns nothing (test only)."""

    name = "test-covariate-recorder"
    tags = EstimatorTags(requires_covariates=True)
    seen: ClassVar[list] = []

    def estimate(self, data):
        type(self).seen.append((data.covariates, data.outcomes))
        return []


class PresetCate(Estimator):
    """Returns ``predictions`` (metric -> (n_users,) array) as 'cate' estimates with zero-width
    per-user intervals (test only: the targeting machinery, not an estimator, is under test)."""

    name = "test-preset-cate"
    tags = EstimatorTags(requires_covariates=True, estimands=(CATE,))
    predictions: ClassVar[dict[str, np.ndarray]] = {}

    def estimate(self, data):
        out = []
        users = data.outcomes["user"].to_numpy()
        for metric, pred in type(self).predictions.items():
            p = np.asarray(pred, dtype=float)[users]
            table = pd.DataFrame({"user": users, "point": p, "lower": p, "upper": p})
            m = float(p.mean())
            out.append(Estimate(self.name, metric, data.treatments[0], data.control, m, m, m,
                                level=data.level, estimand=CATE, user_effects=table))
        return out


class HeterogeneityTestPlugin:
    @hookimpl
    def register_estimators(self, register):
        register(CovariateRecorder)
        register(PresetCate)
