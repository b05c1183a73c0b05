"""Whatever ``run`` rejects, ``validate`` rejects first, with the same located message (issue 14,
item 11; issue 19): the tester's inputs (tests/data/run_rejects/) that used to pass ``validate``
and fail in ``run`` after simulating."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from counterfeed.cli import main

DATA = Path(__file__).resolve().parent.parent / "data" / "run_rejects"
ROOT = Path(__file__).resolve().parents[2]

#: input -> (line, field, a fragment of the message)
CASES = {
    "zw4": (13, "analysis[1]", "cuped needs a pre-period"),
    "zw2": (13, "analysis[1]", "the scenario has no ratio metrics"),
    "ope_bogus": (24, "analysis[0]", "unknown OPE estimator 'bogus'"),
    "ope_nopre": (24, "analysis[0]", "fit_on: pre_period needs a pre-period"),
    "ope_tt": (16, "experiment.arms.treatment.recommender", "needs a catalog with text"),
    "mmr_stoch": (8, "experiment.arms.b", "base 'popularity' is randomized"),
    "mmr_rand": (8, "experiment.arms.b", "base 'random' is randomized"),
    "ph": (13, "experiment.phases[0].metric", "'coverage' is population-level"),
    "alloc": (11, "experiment.allocation.metric", "'exposure-gini' is population-level"),
    "mmr_bad2": (11, "experiment.arms.b.base_options.bogus", "unknown field 'bogus'"),
}


def _cli(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return int(exc.value.code), capsys.readouterr().err


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_rejects_with_a_located_message(name, here, capsys):
    line, field, fragment = CASES[name]
    path = shutil.copy(DATA / f"{name}.yaml", here / f"{name}.yaml")
    rc, err = _cli(capsys, "validate", str(path))
    assert rc == 2, err
    assert f"{name}.yaml:{line}: {field}: " in err and fragment in err, err


@pytest.mark.parametrize("name", sorted(CASES))
def test_run_gives_validates_message_before_simulating(name, here, capsys):
    path = shutil.copy(DATA / f"{name}.yaml", here / f"{name}.yaml")
    rc_v, err_v = _cli(capsys, "validate", str(path))
    rc_r, err_r = _cli(capsys, "run", str(path), "--quiet")
    assert rc_r == rc_v == 2
    first = lambda err: re.search(r"Error: .*", err).group(0)  # noqa: E731
    assert first(err_r) == first(err_v)
    assert not list(here.glob("runs/*")), "run wrote output"


def test_validate_lists_schema_and_plugin_option_problems_in_one_pass(here, capsys):
    """nanopt.yaml has six problems; validate used to show two (schema) and reveal four (plugin
    options) only after those were fixed, and said "less than 1 (got nan)" for NaN (tester #15)."""
    path = shutil.copy(DATA / "nanopt.yaml", here / "nanopt.yaml")
    rc, err = _cli(capsys, "validate", str(path))
    assert rc == 2
    for line, field, message in [(3, "population.heterogeneity", "must be finite (got nan)"),
                                 (8, "experiment.split", "'a': must be finite (got nan)"),
                                 (4, "catalog.quality_sd", "must be finite (got inf)"),
                                 (5, "user_model.visit_rate", "less than or equal to 1000"),
                                 (5, "user_model.churn_rate", "must be finite (got nan)"),
                                 (7, "experiment.arms.b.diversity", "must be finite (got nan)")]:
        assert f"nanopt.yaml:{line}: {field}: " in err and message in err, (field, err)
    assert "less than 1 (got nan)" not in err


QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"
SCENARIOS = QUICKSTART.parent

#: --set options -> the message validate and run give (before anything is simulated)
ARM_CASES = [
    (["experiment.split.control=1.0", "experiment.split.treatment=0.0"],
     "Error: --set: experiment.split.treatment: share 0: arm 'treatment' would never get a user (expected a share "
     "above 0; to leave the arm out, remove it from experiment.arms)"),
    (["population.users=2"], "Error: --set: population.users: 2 users for 2 arms: the estimates need at least 2 "
                             "users in every arm (expected at least 4)"),
    (["population.users=3"], "Error: --set: population.users: 3 users for 2 arms: the estimates need at least 2 "
                             "users in every arm (expected at least 4)"),
]


@pytest.mark.parametrize("sets, message", ARM_CASES)
def test_an_arm_that_cannot_get_users_is_rejected_by_validate_and_by_run_before_simulating(sets, message, here,
                                                                                             capsys):
    """A zero share or too few users used to pass validate and fail run after every world was simulated."""
    import time

    options = [arg for s in sets for arg in ("--set", s)]
    rc, err = _cli(capsys, "validate", str(QUICKSTART), *options)
    assert rc == 2 and message in err, err
    start = time.monotonic()
    rc, err = _cli(capsys, "run", str(QUICKSTART), *options, "--quiet")
    assert rc == 2 and message in err, err
    assert time.monotonic() - start < 20  # simulating the worlds took ~30 s before
    assert not (here / "runs").exists()


def test_a_zero_share_written_in_the_file_is_located_at_its_line(here, capsys):
    text = QUICKSTART.read_text().replace("  split: {control: 0.5, treatment: 0.5}", "  split: {control: 1.0, treatment: 0}")
    line = text.splitlines().index("  split: {control: 1.0, treatment: 0}") + 1
    path = here / "zero.yaml"
    path.write_text(text)
    rc, err = _cli(capsys, "validate", str(path))
    assert rc == 2 and f"zero.yaml:{line}: experiment.split.treatment: share 0: arm 'treatment'" in err, err


#: zero shares and populations that cannot fill every arm, whatever assigns the users
ARM_FILE_CASES = [
    # adaptive allocation updates its starting split only once every arm has 2 users
    ("adaptive_thompson.yaml", ["experiment.split.control=1.0", "experiment.split.treatment=0.0"],
     "experiment.split.treatment: share 0: arm 'treatment' would never get a user"),
    # phases split users by the shares of the phase's arms (phase 0: control and greedy)
    ("phases_rollout.yaml", ["experiment.phases[0].challengers=[greedy]", "experiment.split.control=0.5",
                             "experiment.split.greedy=0.0", "experiment.split.thompson=0.5"],
     "experiment.split.greedy: share 0: arm 'greedy' would never get a user"),
    ("phases_rollout.yaml", ["experiment.split.control=0.5", "experiment.split.greedy=0.5",
                             "experiment.split.thompson=0.0"],  # no challengers: every arm in every phase
     "experiment.split.thompson: share 0"),
    # phase 1's control is phase 0's winner (control or greedy, share above 0): thompson gets nobody
    ("phases_rollout.yaml", ["experiment.phases[0].challengers=[greedy]", "experiment.phases[1].challengers=[thompson]",
                             "experiment.phases[2].challengers=[thompson]", "experiment.split.control=0.5",
                             "experiment.split.greedy=0.5", "experiment.split.thompson=0.0"],
     "experiment.split.thompson: share 0"),
    # phase 0's sample-ratio check divides by its arms' shares
    ("phases_rollout.yaml", ["experiment.phases[0].challengers=[greedy]", "experiment.split.control=0.0",
                             "experiment.split.greedy=0.0", "experiment.split.thompson=1.0"],
     "experiment.split: every arm of phase 0 (control, greedy) has share 0 (expected a share above 0 for at least one)"),
    ("phases_rollout.yaml", ["population.users=5"],  # its phases estimate though analysis is []
     "population.users: 5 users for 3 arms: the estimates need at least 2 users in every arm (expected at least 6)"),
]


@pytest.mark.parametrize("path, sets, message", ARM_FILE_CASES)
def test_zero_shares_under_allocation_and_phases_are_rejected(path, sets, message, capsys):
    rc, err = _cli(capsys, "validate", str(SCENARIOS / path), *[arg for s in sets for arg in ("--set", s)])
    assert rc == 2 and f"Error: --set: {message}" in err, err


@pytest.mark.parametrize("path, sets", [
    # the shares of an observational mechanism's arms are not a split (it decides who is treated); a
    # rollout's draw must leave 2 never-treated users (at 10 users this seed leaves 1, and is rejected:
    # tests/observational/test_staggered_never_treated_draw.py)
    ("staggered_rollout.yaml", ["population.users=20"]),
    # thompson is in no phase: not used
    ("phases_rollout.yaml", ["population.users=200", "experiment.phases=[{duration: 3d, challengers: [greedy]}]",
                             "experiment.split.control=0.5", "experiment.split.greedy=0.5",
                             "experiment.split.thompson=0.0"]),
    ("quickstart.yaml", ["population.users=4"]),  # 2 users per arm possible
    ("quickstart.yaml", ["population.users=2", "analysis=[]"]),  # no estimates: no arm size needed
], ids=["mechanism", "arm-in-no-phase", "four-users", "no-analysis"])
def test_shares_and_populations_that_may_fill_every_arm_still_validate(path, sets, capsys):
    main(["validate", str(SCENARIOS / path), *[arg for s in sets for arg in ("--set", s)]])
    assert capsys.readouterr().out.startswith("ok: ")


def test_the_python_api_and_calibrate_reject_an_arm_without_users_before_simulating(tmp_path, monkeypatch):
    """run(), calibrate() and a sweep's grid check the arms too, not only the command line's options."""
    from counterfeed.calibration.calibrate import calibrate
    from counterfeed.calibration.sweep import grid_points
    from counterfeed.core import runner
    from counterfeed.core.scenario import load_scenario
    from counterfeed.errors import ScenarioError

    def never(*args, **kwargs):
        raise AssertionError("simulated")

    monkeypatch.setattr(runner, "_simulate_all", never)
    sc = load_scenario(ROOT / "scenarios" / "quickstart.yaml").with_overrides(
        {"experiment.split.control": 1.0, "experiment.split.treatment": 0.0})
    for call in (lambda: runner.run(sc, write=False), lambda: calibrate(sc, 2, out_dir=tmp_path / "cal")):
        with pytest.raises(ScenarioError, match=r"experiment\.split\.treatment.*share 0"):
            call()
    with pytest.raises(ScenarioError, match=r"--vary population\.users=3: population\.users: 3 users for 2 arms"):
        grid_points(load_scenario(ROOT / "scenarios" / "quickstart.yaml"), [("population.users", [3, 40])])


def test_a_very_long_bad_value_is_shown_by_its_start_and_length():
    from counterfeed.core.scenario import load_scenario
    from counterfeed.errors import ScenarioError

    text = (ROOT / "scenarios" / "quickstart.yaml").read_text().replace("name: quickstart", "name: " + "a" * 5000 + "!")
    with pytest.raises(ScenarioError) as info:
        load_scenario("long.yaml", text=text)
    msg = str(info.value)
    assert "long.yaml" in msg and "name" in msg and "(5,001 characters)" in msg
    assert len(msg) < 400
