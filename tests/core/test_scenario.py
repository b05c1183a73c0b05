import re

import pytest

from counterfeed.core.scenario import Scenario, load_scenario, parse_duration
from counterfeed.errors import ScenarioError

GOOD = """\
name: t
seed: 1
population:
  users: 100
  segments:
    a: {share: 0.5}
    b: {share: 0.5}
experiment:
  arms:
    control: {recommender: popularity}
    treatment: {recommender: random}
  duration: 7d
"""


def bad(old, new):
    assert old in GOOD
    return GOOD.replace(old, new)


BAD = [
    (bad("users: 100", "users: -1"), r"x\.yaml:4: population\.users: .*greater than 1"),
    (bad("users: 100", "users: lots"), r"x\.yaml:4: population\.users: .*integer"),
    (bad("users: 100", "users: 100\n  dimentions: 3"), r"x\.yaml:5: population\.dimentions: unknown field 'dimentions'; did you mean 'dimensions'\?"),
    (bad("seed: 1", "seed: 1\nsede: 2"), r"x\.yaml:3: sede: unknown field 'sede'; did you mean 'seed'\?"),
    (bad("duration: 7d", "duration: 7x"), r"x\.yaml:12: experiment\.duration: expected a duration such as '14d'"),
    (bad("duration: 7d", "duration: 0d"), r"experiment\.duration: must be positive"),
    (bad("duration: 7d", "duration: 7d\n  split: {control: 0.5, treatment: 0.4}"), r"x\.yaml:13: experiment\.split: shares must sum to 1 \(got 0\.9\)"),
    (bad("duration: 7d", "duration: 7d\n  split: {control: 0.5, treat: 0.5}"), r"experiment\.split: names unknown arm 'treat'"),
    (bad("duration: 7d", "duration: 7d\n  control: foo"), r"experiment\.control: control 'foo' is not one of the arms"),
    (bad("b: {share: 0.5}", "b: {share: 0.4}"), r"population\.segments: segment shares must sum to 1"),
    (bad("b: {share: 0.5}", "b: {share: 0.5, activty: 2}"), r"population\.segments\.b\.activty: unknown field 'activty'; did you mean 'activity'\?"),
    (bad("    treatment: {recommender: random}\n", ""), r"experiment\.arms: needs at least two arms"),
    (bad("treatment: {recommender: random}", "treatment: {}"), r"x\.yaml:11: experiment\.arms\.treatment\.recommender: required field is missing"),
    (bad("name: t", "name: ../../etc"), r"x\.yaml:1: name: .*pattern"),
    (bad("seed: 1", "seed: 1\nseed: 2"), r"x\.yaml:3: duplicate key 'seed'"),
    ("name: [", r"x\.yaml:1: invalid YAML"),
    ("- a\n- b\n", r"x\.yaml:1: expected a mapping at the top of the scenario, got a list"),
    ("", r"x\.yaml: expected a mapping at the top of the scenario, got nothing"),
    (bad("seed: 1", "seed: 99999999999999999999999"), r"seed: .*less than or equal"),
    ("a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
     "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n",
     r"document too large"),
    (bad("seed: 1", "seed: !!python/object:os.system ls"), r"x\.yaml:2: invalid value"),
]


@pytest.mark.parametrize("text,pattern", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_scenarios_give_one_located_message(text, pattern):
    with pytest.raises(ScenarioError) as info:
        load_scenario("x.yaml", text=text)
    msg = str(info.value)
    assert re.search(pattern, msg), msg
    assert "\n" not in msg


def test_good_scenario_defaults_and_round_trip():
    sc = load_scenario("x.yaml", text=GOOD)
    assert sc.control == "control" and sc.experiment.split == {"control": 0.5, "treatment": 0.5}
    assert sc.experiment.duration == 7.0 and sc.experiment.batch_window == pytest.approx(1 / 24)
    again = Scenario.from_dict(sc.to_dict())
    assert again.to_dict() == sc.to_dict()


@pytest.mark.parametrize("value,days", [("14d", 14), ("6h", 0.25), ("30m", 30 / 1440), ("2w", 14), (3, 3),
                                        ("90s", 90 / 86400), ("1.5d", 1.5)])
def test_durations(value, days):
    assert parse_duration(value) == pytest.approx(days)


def test_overrides_are_validated_with_field_paths():
    sc = load_scenario("x.yaml", text=GOOD)
    assert sc.with_overrides({"population.users": 50}).population.users == 50
    with pytest.raises(ScenarioError, match=r"population\.users"):
        sc.with_overrides({"population.users": 0})


def test_missing_file_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "nope.yaml")


def test_unknown_plugin_lists_close_matches():
    from counterfeed.core.runner import resolve

    sc = load_scenario("x.yaml", text=bad("recommender: popularity", "recommender: popularr"))
    with pytest.raises(ScenarioError, match=r"x\.yaml:10: experiment\.arms\.control\.recommender: unknown recommender "
                                            r"'popularr'; did you mean 'popularity'\?"):
        resolve(sc)


def test_unknown_plugin_option_is_located():
    from counterfeed.core.runner import resolve

    sc = load_scenario("x.yaml", text=bad("recommender: popularity}", "recommender: popularity, epsilonn: 0.2}"))
    with pytest.raises(ScenarioError, match=r"x\.yaml:10: experiment\.arms\.control\.epsilonn: unknown field"):
        resolve(sc)


def test_several_problems_are_all_shown_each_located():
    text = bad("users: 100", "users: -1\n  dimentions: 3").replace(
        "duration: 7d", "duration: 7d\n  split: {control: 0.5, treatment: 0.4}")
    with pytest.raises(ScenarioError) as info:
        load_scenario("x.yaml", text=text)
    lines = str(info.value).splitlines()
    assert lines == ["x.yaml:4: population.users: Input should be greater than 1 (got -1)",
                     "x.yaml:5: population.dimentions: unknown field 'dimentions'; did you mean 'dimensions'?",
                     "x.yaml:14: experiment.split: shares must sum to 1 (got 0.9)"]
    assert "more problem" not in str(info.value)
    assert (info.value.file, info.value.line, info.value.field) == ("x.yaml", 4, "population.users")


def test_union_branches_that_did_not_apply_are_not_listed():
    with pytest.raises(ScenarioError) as info:
        load_scenario("x.yaml", text=GOOD + "metrics: [clicks, {window: 3d}]\n")
    assert str(info.value) == "x.yaml:13: metrics[1].metric: required field is missing"


@pytest.mark.parametrize("override, pattern", [
    ({"population.users": 0}, r"^--set: population\.users: Input should be greater than 1 \(got 0\)$"),
    ({"experiment.split": {"control": 0.5, "treatment": 0.6}}, r"^--set: experiment\.split: shares must sum to 1"),
    ({"population.dimensions": 0, "seed": -1},
     r"^--set: seed: .*greater than or equal to 0.*\n--set: population\.dimensions: .*greater than or equal to 1"),
    ({"analysis.5.estimator": "x"}, r"^--set: analysis\[5\]\.estimator: no element 5 in list$"),
])
def test_override_errors_name_set_not_a_scenario_line(override, pattern):
    sc = load_scenario("x.yaml", text=GOOD)
    with pytest.raises(ScenarioError) as info:
        sc.with_overrides(override)
    assert re.search(pattern, str(info.value)), str(info.value)
    assert "x.yaml" not in str(info.value)


def test_override_errors_found_when_resolving_name_set():
    from counterfeed.core.runner import resolve

    sc = load_scenario("x.yaml", text=GOOD).with_overrides({"experiment.arms.control.recommender": "popularr"})
    with pytest.raises(ScenarioError, match=r"^--set: experiment\.arms\.control\.recommender: unknown recommender "
                                            r"'popularr'; did you mean 'popularity'\?$"):
        resolve(sc)
    # a problem elsewhere still names its line in the file
    sc = load_scenario("x.yaml", text=bad("recommender: random", "recommender: randm")).with_overrides({"seed": 3})
    with pytest.raises(ScenarioError, match=r"^x\.yaml:11: experiment\.arms\.treatment\.recommender"):
        resolve(sc)


def test_problems_in_several_plugins_are_all_shown():
    from counterfeed.core.plan import resolve

    text = bad("recommender: popularity}", "recommender: popularity, epsilonn: 0.2}").replace(
        "recommender: random}", "recommender: randm}")
    sc = load_scenario("x.yaml", text=text)
    with pytest.raises(ScenarioError) as info:
        resolve(sc)
    lines = str(info.value).splitlines()
    assert len(lines) == 2, lines
    assert re.match(r"x\.yaml:10: experiment\.arms\.control\.epsilonn: unknown field", lines[0])
    assert re.match(r"x\.yaml:11: experiment\.arms\.treatment\.recommender: unknown recommender 'randm'; "
                    r"did you mean 'random'\?", lines[1])


def test_several_problems_in_one_plugins_options_are_all_located():
    from counterfeed.core.plan import resolve

    sc = load_scenario("x.yaml", text=bad("recommender: popularity}", "recommender: popularity, epsilonn: 0.2, signl: 1}"))
    with pytest.raises(ScenarioError) as info:
        resolve(sc)
    lines = str(info.value).splitlines()
    assert len(lines) == 2 and all(line.startswith("x.yaml:10: experiment.arms.control.") for line in lines), lines
