"""Tester16's design defects (MEDIUM 1, MEDIUM 7): designs whose run always failed with an unlocated
data error are rejected by `validate` with a located message where the scenario decides it; where
only the drawn data can tell, the run's error names the field and what was expected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from counterfeed.cli import main
from counterfeed.core.plan import resolve
from counterfeed.core.scenario import load_scenario
from counterfeed.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[2]


def scenario(tmp_path: Path, name: str, change) -> Path:
    """scenarios/<name>.yaml shrunk (40 users), with ``change(data)`` applied."""
    data = yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text())
    data["population"]["users"] = 40
    data["output"] = {"dir": str(tmp_path / "runs"), "report": False}
    change(data)
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def rejected(path: Path, pattern: str, capsys, commands=("validate", "run")) -> None:
    if "validate" in commands:
        with pytest.raises(ScenarioError) as err:
            resolve(load_scenario(path))
        assert str(err.value).startswith(f"{path}:") and re.search(pattern, str(err.value)), str(err.value)
    for command in commands:
        with pytest.raises(SystemExit) as done:
            main([command, str(path), "--quiet"] if command == "run" else [command, str(path)])
        out = capsys.readouterr()
        assert done.value.code == 2, (command, out)
        assert out.err.count("\n") == 1 and re.search(pattern, out.err), out.err
    runs = path.parent / "runs"
    assert not runs.exists() or not any(runs.iterdir())


def _set(path: str, value):
    def change(data):
        *head, last = path.split(".")
        node = data
        for k in head:
            node = node[k]
        node[last] = value
    return change


@pytest.mark.parametrize("name, users", [("observational_selection", 2), ("observational_hidden", 3),
                                         ("staggered_rollout", 2)])
def test_fewer_than_four_users_is_rejected_under_a_non_randomized_mechanism(tmp_path, capsys, name, users):
    """MEDIUM 1 (p02-p04, e10, s18, p09): at least two users per arm."""
    rejected(scenario(tmp_path, name, _set("population.users", users)),
             rf":\d+: population\.users: mechanism '\w+' needs at least 4 users .*got {users}", capsys)


@pytest.mark.parametrize("intercept, who", [(50.0, "every"), (-50.0, "no")])
def test_a_sure_assignment_is_rejected(tmp_path, capsys, intercept, who):
    """MEDIUM 1 (a17, a18): an intercept the schema allows but that treats everyone or no one."""
    rejected(scenario(tmp_path, "observational_selection", _set("experiment.assignment.intercept", intercept)),
             rf":\d+: experiment\.assignment\.intercept: {who} user would be treated", capsys)


def test_an_empty_arm_only_the_data_shows_is_a_located_run_error(tmp_path, capsys):
    """MEDIUM 1 (e15): the static bound cannot rule this out, but every drawn user opts in; the run
    names experiment.assignment and the arm counts, exit 2, nothing written."""
    def change(data):
        data["experiment"].update(pre_period="1d", duration="1d")
        data["experiment"]["assignment"].update(intercept=24.0, coefficients={"pre_sessions": 0.5}, segments={})
        data["analysis"] = [{"estimator": "diff-in-means"}]
    path = scenario(tmp_path, "observational_selection", change)
    resolve(load_scenario(path))
    rejected(path, r":\d+: experiment\.assignment: the selection assignment put 0 user\(s\) in arm 'control' "
                   r"\(control: 0, treatment: 40 of 40 users\)", capsys, commands=("run",))


def test_a_rollout_without_never_treated_users_needs_a_not_yet_treated_comparison(tmp_path, capsys):
    """MEDIUM 1 (s03, s22): every user adopts, so diff-in-means (and did with never_treated) have no
    control; did-staggered against the not-yet-treated is still accepted."""
    cohorts = [{"at": "2d", "share": 0.5}, {"at": "4d", "share": 0.5}]

    def change(data):
        data["experiment"]["assignment"]["cohorts"] = cohorts
    path = scenario(tmp_path, "staggered_rollout", change)
    rejected(path, r":\d+: experiment\.assignment\.cohorts: every user adopts, so the control arm 'control' is "
                   r"empty and estimator 'diff-in-means'", capsys)
    never = scenario(tmp_path, "staggered_rollout", lambda d: (change(d), d.update(analysis=[
        {"estimator": "did-staggered", "control_group": "never_treated"}])))
    with pytest.raises(ScenarioError, match=r"estimator 'did-staggered' has no never-treated users"):
        resolve(load_scenario(never))
    fine = scenario(tmp_path, "staggered_rollout", lambda d: (change(d), d.update(analysis=[
        {"estimator": "did-staggered"}])))
    resolve(load_scenario(fine))


def test_a_panel_estimator_needs_an_untreated_period(tmp_path, capsys):
    """MEDIUM 1 (s19): no pre-period and every cohort at 0."""
    def change(data):
        data["experiment"]["pre_period"] = "0d"
        data["experiment"]["assignment"]["cohorts"] = [{"at": "0d", "share": 0.5}]
        data["analysis"] = [{"estimator": "did-staggered"}]
    rejected(scenario(tmp_path, "staggered_rollout", change),
             r":\d+: experiment\.assignment\.cohorts\[0\]\.at: estimator 'did-staggered': every cohort adopts at "
             r"the start and there is no pre-period", capsys)


@pytest.mark.parametrize("name", ["observational_selection", "staggered_rollout"])
def test_a_split_under_a_non_randomized_mechanism_is_rejected(tmp_path, capsys, name):
    """MEDIUM 7 (a12, a22): experiment.split was silently ignored."""
    rejected(scenario(tmp_path, name, _set("experiment.split", {"control": 0.2, "treatment": 0.8})),
             r":\d+: experiment\.split: experiment\.split has no effect under mechanism", capsys)


def test_an_estimator_data_error_in_a_run_names_the_analysis_entry(tmp_path, capsys, monkeypatch):
    """MEDIUM 1 (p07): an error only the data shows (here forced) names the scenario line of the
    estimator that raised it, keeps its class and exit 2, and nothing is written."""
    from counterfeed.errors import ModelError
    from counterfeed.plugins.estimators.classical import DifferenceInMeans

    def fail(self, data):
        raise ModelError("diff-in-means: metric 'clicks', arm 'control': needs at least 2 users, got 1")
    monkeypatch.setattr(DifferenceInMeans, "estimate", fail)

    def change(data):
        data["experiment"].update(pre_period="1d", duration="1d")
        data["analysis"] = [{"estimator": "diff-in-means"}]
    path = scenario(tmp_path, "observational_selection", change)
    rejected(path, rf"^Error: {re.escape(str(path))}:\d+: analysis\[0\]: diff-in-means: metric 'clicks', arm "
                   r"'control': needs at least 2 users, got 1$", capsys, commands=("run",))


def test_a_misspelt_assignment_field_gets_a_did_you_mean(tmp_path, capsys):
    """tester16 LOW 9: the assignment is a union tagged by its mechanism; an unknown field in it is
    compared with that mechanism's own fields, as everywhere else in the schema."""
    def change(data):
        data["experiment"]["assignment"]["coefficents"] = data["experiment"]["assignment"].pop("coefficients")
    rejected(scenario(tmp_path, "observational_selection", change),
             r"experiment\.assignment\.coefficents: unknown field 'coefficents'; did you mean 'coefficients'\?", capsys)


def test_a_missing_graph_is_located_at_the_estimator_that_needs_it(tmp_path, capsys):
    """tester16 LOW 10: with no graph: section in the file, the error points at the analysis entry
    that needs one (file:line), not at a field the file does not have."""
    def change(data):
        data["analysis"] = [{"estimator": "diff-in-means"}, {"estimator": "aipw"}]
    rejected(scenario(tmp_path, "staggered_rollout", change),
             r"scenario\.yaml:\d+: analysis\[1\]: graph: estimator 'aipw' needs a causal graph", capsys)
