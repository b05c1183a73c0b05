"""``--set`` works the same in validate, run, calibrate and sweep, so validate can reject first what
a run with the same overrides would reject; no Wilson interval from fewer than two replications."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from counterfeed.calibration.cli import calibrate_command
from counterfeed.calibration.summary import wilson_interval
from counterfeed.cli import main

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"


@pytest.mark.parametrize("override, field", [("population.users=0", "population.users"),
                                             ("experiment.slate_size=abc", "experiment.slate_size")])
def test_validate_rejects_what_run_set_would_reject(tmp_path, capsys, override, field):
    for argv in (["validate", str(QUICKSTART)], ["run", str(QUICKSTART), "--out", str(tmp_path)]):
        with pytest.raises(SystemExit) as info:
            main(argv + ["--set", override])
        assert info.value.code == 2
        assert field in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_validate_applies_set(capsys):
    main(["validate", str(QUICKSTART), "--set", "population.users=321"])
    assert "321 users" in capsys.readouterr().out


def test_calibrate_rejects_a_bad_set_before_any_work(tmp_path):
    out = tmp_path / "cal"
    r = CliRunner().invoke(calibrate_command, [str(QUICKSTART), "-n", "2", "--executor", "serial",
                                               "--set", "population.users=-5", "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert "population.users" in r.output
    assert not out.exists()


def test_no_wilson_interval_from_fewer_than_two_trials():
    assert all(math.isnan(v) for v in wilson_interval(1, 1))
    assert all(math.isnan(v) for v in wilson_interval(0, 1))
    lo, hi = wilson_interval(2, 2)
    assert 0.0 < lo < 1.0 and hi == 1.0
