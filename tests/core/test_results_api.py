"""The Python API returns estimate diagnostics as dicts (issue 14, item 17); files keep JSON text."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from counterfeed.core.estimation import Estimate
from counterfeed.core.results import RunResult


def _result() -> RunResult:
    est = Estimate("diff-in-means", "clicks", "treatment", "control", 0.1, 0.0, 0.2,
                   diagnostics={"se": 0.05, "df": math.nan, "path": [{"day": 1.0, "n": np.int64(3)}],
                                "sizes": np.arange(2)})
    return RunResult(scenario=None, seed=0, estimates=[est], truth=pd.DataFrame(), srm={},
                     outcomes=pd.DataFrame(), timeseries=pd.DataFrame())


def test_estimates_frame_diagnostics_are_dicts():
    frame = _result().estimates_frame()
    diag = frame["diagnostics"].iloc[0]
    assert isinstance(diag, dict)
    assert diag == {"se": 0.05, "df": None, "path": [{"day": 1.0, "n": 3}], "sizes": [0, 1]}
    assert type(diag["path"][0]["n"]) is int
