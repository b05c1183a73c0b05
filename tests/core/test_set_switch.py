"""``--set`` applies to the scenario as written (tester16 L3): switching a choice (an assignment
mechanism, a recommender, a plugin) validates the new choice with only the fields the user wrote,
and a written field the new choice does not accept is ONE located problem that names the --set;
``validate`` and ``run`` say the same and the run writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from counterfeed.cli import main
from counterfeed.core.plan import resolve
from counterfeed.core.scenario import load_scenario
from counterfeed.core.scenario_overrides import apply_overrides

ROOT = Path(__file__).resolve().parents[2]
HIDDEN = ROOT / "scenarios" / "observational_hidden.yaml"

MINIMAL = """\
name: switch
population: {users: 40}
experiment:
  arms:
    control: {recommender: random}
    treatment: {recommender: popularity}
  duration: 2d
  assignment:
    mechanism: {mechanism}
"""


def _stderr_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


def test_switching_the_mechanism_names_only_the_fields_the_user_wrote(tmp_path, capsys):
    sets = ["--set", "experiment.assignment.mechanism=randomized"]
    err = _stderr_of(["validate", str(HIDDEN), *sets], capsys)
    ran = _stderr_of(["run", str(HIDDEN), "--out", str(tmp_path), "-q", *sets], capsys)
    assert err == ran  # whatever run rejects, validate rejects first, with the same words
    assert not any(tmp_path.iterdir())
    assert len(err.strip().splitlines()) == 1, err  # one message, not one per field
    assert "observational_hidden.yaml:61: experiment.assignment.nudge_share:" in err
    assert "--set experiment.assignment.mechanism=randomized" in err and "'encouragement'" in err
    for field, line in (("nudge_effect", 62), ("intercept", 63), ("coefficients", 64), ("segments", 65)):
        assert f"{field} (line {line})" in err
    assert "treatment" not in err  # a default of the old mechanism, never written in the file


@pytest.mark.parametrize("written, chosen", [("encouragement", "randomized"), ("encouragement", "selection"),
                                             ("selection", "randomized"), ("selection", "encouragement")])
def test_a_mechanism_written_alone_can_be_switched(tmp_path, capsys, written, chosen):
    path = tmp_path / "switch.yaml"
    path.write_text(MINIMAL.replace("{mechanism}", written))
    main(["validate", str(path), "--set", f"experiment.assignment.mechanism={chosen}"])
    assert capsys.readouterr().out.startswith("ok: switch")
    sc = load_scenario(path).with_overrides({"experiment.assignment.mechanism": chosen})
    assert sc.experiment.assignment.mechanism == chosen


def test_switching_a_recommender_names_the_set(capsys):
    err = _stderr_of(["validate", str(HIDDEN), "--set", "experiment.arms.treatment.recommender=random"], capsys)
    assert len(err.strip().splitlines()) == 1, err
    assert "observational_hidden.yaml:54: experiment.arms.treatment.signal:" in err
    assert "--set experiment.arms.treatment.recommender=random" in err and "'popularity'" in err


def test_a_set_below_an_unwritten_default_keeps_the_default():
    sc = load_scenario(HIDDEN).with_overrides({"analysis.0.level": 0.9, "output.report": False})
    resolve(sc)
    assert sc.analysis[0].estimator == "diff-in-means" and sc.output.report is False
    q = load_scenario(ROOT / "scenarios" / "quickstart.yaml").with_overrides({"catalog.items": 123})
    assert q.catalog.plugin == "synthetic" and q.catalog.options["items"] == 123


def test_a_new_choice_in_an_unwritten_mapping_starts_empty():
    """A twin fills user_model with its own options: choosing another user model does not keep them."""
    resolved = {"user_model": {"plugin": "twin-choice", "weights": "w.npz"}, "catalog": {"plugin": "x", "n": 5}}
    data, paths, switches = apply_overrides({}, resolved, {"user_model.plugin": "choice", "catalog.n": 6})
    assert data == {"user_model": {"plugin": "choice"}, "catalog": {"plugin": "x", "n": 6}}
    assert paths == ("user_model.plugin", "catalog.n") and switches == []
