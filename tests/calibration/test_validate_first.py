"""Tester report s4 item 7 (validate before work, write nothing) and item 14 (coverage up to rounding)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from click.testing import CliRunner

from counterfeed.calibration.cli import calibrate_command, sweep_command
from counterfeed.calibration.summary import summarize
from counterfeed.core.scoring import covers, score_values


@pytest.mark.parametrize("cmd, extra", [
    (calibrate_command, []),  # the file itself has an unknown option (see the test body)
    (calibrate_command, ["--set", "experiment.arms.control.bogus=1"]),
    (sweep_command, ["--vary", "experiment.arms.control.bogus=1,2"]),
    (sweep_command, ["--vary", "population.users=60,120", "--set", "experiment.arms.control.bogus=1"]),
])
def test_user_error_exits_2_before_work_and_writes_nothing(cmd, extra, tiny_yaml, tmp_path):
    path = tiny_yaml
    if not extra:
        path = tmp_path / "bad.yaml"
        path.write_text(tiny_yaml.read_text().replace("{recommender: random}", "{recommender: random, bogus: 1}"))
    out = tmp_path / "o"
    if cmd is sweep_command and "--vary" not in extra:
        extra = ["--vary", "population.users=60,120", *extra]
    r = CliRunner().invoke(cmd, [str(path), "-n", "3", "--executor", "serial", "--out", str(out), *extra])
    assert r.exit_code == 2, r.output
    assert "bogus" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_coverage_is_judged_up_to_rounding():
    """Item 14: lower = upper = 0.33333333333333326 vs truth 0.33333333333333315 (cal_tp4) is covered."""
    lo = hi = 0.33333333333333326
    truth = 0.33333333333333315
    assert not (lo <= truth <= hi)  # the old exact comparison
    assert covers(lo, hi, truth) and score_values(lo, lo, hi, truth)[2] is True
    assert not covers(0.3333, 0.3334, 0.3335)  # a real miss stays a miss
    assert not covers(1e-20, 2e-20, 3e-20)  # relative to the numbers' scale, not absolute
    # calibration rechecks stored flags (older stores compared exactly) and counts zero-width intervals
    frame = pd.DataFrame([{"estimator": "diff-in-means", "metric": "diversity", "arm": "t", "estimand": "difference",
                           "segment": None, "point": lo, "lower": lo, "upper": hi, "p_value": math.nan,
                           "truth": truth, "covered": False, "level": 0.95, "replication": i, "seed": i}
                          for i in range(3)])
    row = summarize(frame).iloc[0]
    assert row["coverage"] == 1.0 and row["zero_width"] == 3
