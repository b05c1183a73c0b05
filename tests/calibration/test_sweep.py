"""Sweeps: grid parsing and validation, power per grid point, resume."""

from __future__ import annotations

import pytest
from _fakes import normal_replicate
from _fakes import fake_scenario

from counterfeed.calibration.sweep import grid_points, parse_vary, sweep
from counterfeed.errors import OutputError, ScenarioError


def test_parse_vary_reads_yaml_scalars():
    assert parse_vary("population.users=1000, 5000") == ("population.users", [1000, 5000])
    assert parse_vary("experiment.duration=7d,14d") == ("experiment.duration", ["7d", "14d"])
    assert parse_vary("level=0.9") == ("level", [0.9])


@pytest.mark.parametrize("vary, pattern", [
    (["population.users"], r"expected FIELD=VALUE\[,VALUE\.\.\.\]"),
    (["=5"], r"expected FIELD=VALUE"),
    (["population.users="], r"population.users: expected a comma-separated list"),
    (["population.users=1,,2"], r"population.users: expected a comma-separated list"),
    (["population.users=5,5"], r"a value is listed twice"),
    (["population.users=-4"], r"--vary population.users=-4: population.users: .*greater than 1"),
    (["populaton.users=100"], r"--vary populaton.users=100: populaton: unknown field 'populaton'; did you mean 'population'"),
    (["experiment.duration=soon"], r"experiment.duration: expected a duration"),
    (["seed=1,2"], r"replications already vary the seed"),
    (["level=0.9", "level=0.8"], r"--vary level is given twice"),
])
def test_bad_grids(vary, pattern):
    with pytest.raises(ScenarioError, match=pattern):
        grid_points(fake_scenario(), [parse_vary(v) for v in vary])


def test_grid_is_the_cartesian_product():
    pts = grid_points(fake_scenario(), [parse_vary("population.users=100,200"), parse_vary("level=0.9,0.8")])
    assert [p for p, _ in pts] == [{"population.users": u, "level": lv} for u in (100, 200) for lv in (0.9, 0.8)]
    assert pts[3][1].population.users == 200 and pts[3][1].level == 0.8


def test_power_grows_with_sample_size_and_resume(tmp_path):
    sc = fake_scenario(lift=0.3)
    grid = [parse_vary("population.users=50,400")]
    res = sweep(sc, grid, 60, out_dir=tmp_path, replicate=normal_replicate)
    z = res.summary[res.summary["estimator"] == "z-test"].set_index("population.users")
    # lift 0.3: power 0.19 at 25/arm and 0.85 at 200/arm; 60 replications -> sd <= 0.065.
    assert z.loc[50, "rejection_rate"] < 0.45 < 0.65 < z.loc[400, "rejection_rate"]
    assert z.loc[50, "mde"] > 2.5 * z.loc[400, "mde"]  # MDE shrinks like 1/sqrt(n): ratio sqrt(8) = 2.83
    assert res.files["power"].exists() and res.files["csv"].exists()
    again = sweep(sc, grid, 60, out_dir=tmp_path, replicate=normal_replicate, figures=False)
    assert again.report.computed == [] and again.summary.equals(res.summary)
    with pytest.raises(OutputError, match="different scenario"):
        sweep(sc, [parse_vary("population.users=50,800")], 2, out_dir=tmp_path, replicate=normal_replicate)
