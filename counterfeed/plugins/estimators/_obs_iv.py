"""Instrumental variables: two-stage least squares for the LATE of an encouragement design.

With a binary instrument ``Z`` (the randomized nudge), a binary treatment ``T`` (the arm taken) and no
covariates, 2SLS is the Wald estimator ``(E[Y|Z=1] - E[Y|Z=0]) / (E[T|Z=1] - E[T|Z=0])``, the local
average treatment effect on compliers under independence, exclusion, monotonicity and relevance
(Imbens & Angrist 1994; Angrist, Imbens & Rubin 1996). Covariates, when given, enter both stages as
exogenous regressors. Standard errors are heteroskedasticity-robust (linearmodels' ``robust``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from counterfeed.errors import ModelError
from counterfeed.plugins.estimators._obs_data import quiet

__all__ = ["IVFit", "fit_2sls", "wald"]


@dataclass
class IVFit:
    point: float
    se: float
    diagnostics: dict[str, Any] = field(default_factory=dict)


def wald(y: np.ndarray, t: np.ndarray, z: np.ndarray) -> float:
    """The Wald estimator (ratio of the reduced form to the first stage)."""
    return float((y[z == 1].mean() - y[z == 0].mean()) / (t[z == 1].mean() - t[z == 0].mean()))


def fit_2sls(y: np.ndarray, t: np.ndarray, z: np.ndarray, covariates: pd.DataFrame | None = None,
             min_first_stage_f: float = 10.0) -> IVFit:
    """linearmodels ``IV2SLS(Y, [1, W], T, Z).fit(cov_type="robust")``: the coefficient of ``T``.

    Raises ModelError when the instrument does not vary, or does not move the treatment at all (the
    LATE is not identified); a first-stage F below ``min_first_stage_f`` (Staiger & Stock 1997) is
    reported as a warning in the diagnostics.
    """
    from linearmodels.iv import IV2SLS

    if np.unique(z).size < 2 or min((z == 1).sum(), (z == 0).sum()) < 2:
        raise ModelError("the instrument must take both values 0 and 1 for at least two users each")
    shift = t[z == 1].mean() - t[z == 0].mean()
    if not math.isfinite(shift) or abs(shift) < 1e-12:
        raise ModelError("the instrument does not change the share of users taking the treatment: the LATE "
                         "is not identified")
    exog = pd.DataFrame({"const": np.ones(len(y))})
    if covariates is not None and covariates.shape[1]:
        exog = pd.concat([exog, covariates.reset_index(drop=True)], axis=1)
    with quiet():
        res = IV2SLS(pd.Series(y, name="Y"), exog, pd.Series(t, name="T"), pd.Series(z, name="Z")).fit(cov_type="robust")
        fs = res.first_stage.diagnostics
    f_stat = float(fs["f.stat"].iloc[0]) if "f.stat" in fs else math.nan
    diag: dict[str, Any] = {"method": "2sls", "se_type": "robust", "first_stage_shift": float(shift),
                            "first_stage_f": f_stat if math.isfinite(f_stat) else None,
                            "complier_share": float(shift)}
    if math.isfinite(f_stat) and f_stat < min_first_stage_f:
        diag["warnings"] = [f"weak instrument: first-stage F = {f_stat:.1f} < {min_first_stage_f:g}; "
                            "the interval may undercover"]
    se = float(res.std_errors["T"])
    return IVFit(float(res.params["T"]), se if math.isfinite(se) else 0.0, diag)
