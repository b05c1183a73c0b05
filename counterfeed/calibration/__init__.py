"""Calibration and sweeps: replicate a scenario under many seeds and measure how its estimators
behave against the simulator's truth (bias, RMSE, coverage, false-positive rate, power, MDE).

Replications run on any :mod:`counterfeed.core.executors` executor (serial, local process pool,
Dask) and are persisted one by one, so an interrupted calibration resumes where it stopped.
"""

from counterfeed.calibration.calibrate import CalibrationResult, calibrate, default_out_dir
from counterfeed.calibration.engine import replication_seeds, run_replication
from counterfeed.calibration.summary import summarize, wilson_interval
from counterfeed.calibration.sweep import SweepResult, parse_vary, sweep

__all__ = ["calibrate", "CalibrationResult", "default_out_dir", "sweep", "SweepResult", "parse_vary",
           "replication_seeds", "run_replication", "summarize", "wilson_interval"]
