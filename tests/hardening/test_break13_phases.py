"""Break test 13, A1, A2 and B2: multi-phase experiments that ``validate`` passed and ``run`` failed after
simulating a phase, and per-segment estimates of a population with one segment.

- A1: ``experiment.phases[i].estimator`` could name an estimator a phase cannot run (it needs looks,
  policies, a panel, an instrument, assignment probabilities, covariates or a causal graph; ``cuped``
  without a pre-period; ``ratio`` on a sum metric). It is now refused before anything is simulated, at
  ``experiment.phases[i].estimator``, judged from the estimator's tags (a third-party one too).
- A2: ``challengers: [control]`` in phase 0 left the phase nothing to test; it is an error at
  ``experiment.phases[0].challengers``. A later phase whose single challenger may be its control gets
  a note, and when it is, the phase keeps its control without a test instead of failing the run.
  An ``analysis`` entry with an arm outside phase 0 (no users under phase 0's assignment) is refused.
- B2: ``segments: true`` without ``population.segments`` is a located note.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from counterfeed import hookimpl
from counterfeed.core import phases as phases_module
from counterfeed.core import runner
from counterfeed.core.estimation import EstimatorTags
from counterfeed.core.plan import PHASE_INPUTS, phase_unfit
from counterfeed.core.plugins import get_registry
from counterfeed.core.phases import phase_arms
from counterfeed.core.scenario import Scenario
from counterfeed.plugins.estimators.classical import DifferenceInMeans
from tests.conftest import cli, scenario_file

WORKING = "Estimators a phase can run: bayesian-ab, cuped, diff-in-means, ratio"

BASE = {
    "name": "phases13", "seed": 3,
    "population": {"users": 200, "dimensions": 4},
    "catalog": {"plugin": "synthetic", "items": 60, "topics": 4},
    "experiment": {
        "arms": {"control": {"recommender": "popularity"}, "treatment": {"recommender": "random"}},
        "pre_period": "1d", "batch_window": "4h", "retrain_every": "1d", "slate_size": 5,
        "phases": [{"duration": "1d"}, {"duration": "1d"}],
    },
    "metrics": ["clicks", "impressions", "ctr"],
    "analysis": [],
    "output": {"report": False},
}


def _write(tmp_path: Path, **changes) -> Path:
    return scenario_file(tmp_path / "s.yaml", {**BASE, "output": {"report": False, "dir": str(tmp_path / "runs")}},
                         **changes)


def _line(path: Path, text: str, after: str = "phases:") -> int:
    """1-based line of the first line containing ``text`` after the first containing ``after``."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line)
    return next(i for i, line in enumerate(lines) if i >= start and text in line) + 1


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail loudly if a run gets as far as simulating."""
    def never(*args, **kwargs):
        raise AssertionError("simulated")

    monkeypatch.setattr(runner, "_simulate_all", never)


def _refused(capsys, tmp_path: Path, path: Path, want: str) -> None:
    """``validate`` and ``run`` both exit 2 with ``want`` in the one error, and write nothing."""
    for verb in ("validate", "run"):
        args = (verb, path, "--quiet", "--no-report") if verb == "run" else (verb, path)
        code, out, err = cli(capsys, *args)
        assert code == 2 and want in err, (verb, err)
        assert err.count("Error:") == 1 and "Traceback" not in err and "simulated" not in err, err
    assert not (tmp_path / "runs").exists()


# -- A1: estimators a phase cannot run ----------------------------------------------------------------
@pytest.mark.parametrize("estimator, needs", [
    ("sequential", "per-look outcomes (data.looks)"),
    ("offline-ranking", "the A/B world's event log (data.events) and every arm's recommender and the catalog "
                        "(data.policies, data.items)"),
    ("ope", "(data.policies, data.items)"),
    ("did-staggered", "per-period outcomes of a staggered rollout (data.panel)"),
    ("twfe", "(data.panel)"),
    ("iv-2sls", "a randomized encouragement (data.instrument)"),
    ("adaptive-ipw", "each user's assignment probabilities (data.assignment_probabilities)"),
    ("aipw", "pre-treatment covariates (data.covariates) and a declared causal graph (data.graph)"),
    ("causal-forest", "pre-treatment covariates (data.covariates)"),
    ("linear-cate", "(data.covariates)"),
])
def test_a_phase_estimator_needing_inputs_a_phase_does_not_give_is_refused(tmp_path, capsys, no_simulation,
                                                                            estimator, needs):
    path = _write(tmp_path, **{"experiment.phases": [{"duration": "1d", "estimator": estimator},
                                                     {"duration": "1d"}]})
    line = _line(path, f"estimator: {estimator}")
    _refused(capsys, tmp_path, path, f"{path}:{line}: experiment.phases[0].estimator: estimator '{estimator}' "
                                     f"cannot decide a phase: it needs ")
    code, _, err = cli(capsys, "validate", path)
    assert needs in err and "which a phase does not give" in err and WORKING in err, err


@pytest.mark.parametrize("estimator", ["ope", "did-staggered", "iv-2sls", "offline-ranking"])
def test_an_estimator_without_a_difference_estimate_is_refused_for_that_too(tmp_path, capsys, estimator):
    path = _write(tmp_path, **{"experiment.phases": [{"duration": "1d"}, {"duration": "1d", "estimator": estimator}]})
    code, _, err = cli(capsys, "validate", path)
    line = _line(path, f"estimator: {estimator}")
    assert code == 2 and f"{path}:{line}: experiment.phases[1].estimator:" in err, err
    assert "reports no 'difference' estimate" in err and "which the phase's rule reads" in err


def test_cuped_without_a_pre_period_and_ratio_on_a_sum_metric_are_refused(tmp_path, capsys, no_simulation):
    path = _write(tmp_path, **{"experiment.pre_period": "0d",
                               "experiment.phases": [{"duration": "1d", "estimator": "cuped"}, {"duration": "1d"}]})
    _refused(capsys, tmp_path, path, f"{path}:{_line(path, 'estimator: cuped')}: experiment.phases[0].estimator: "
                                     "cuped: cuped needs a pre-period")
    path = _write(tmp_path, **{"experiment.phases": [{"duration": "1d"},
                                                     {"duration": "1d", "estimator": "ratio", "metric": "clicks"}]})
    _refused(capsys, tmp_path, path, f"{path}:{_line(path, 'estimator: ratio')}: experiment.phases[1].estimator: "
                                     "ratio: metric 'clicks' is a sum metric, not a ratio")


class _NeedsCovariates(DifferenceInMeans):
    """Test only: a third-party estimator that declares it reads covariates."""

    name = "test-phase-needs-covariates"
    tags = EstimatorTags(requires_covariates=True)


class _Plain(DifferenceInMeans):
    """Test only: a third-party estimator that declares no input."""

    name = "test-phase-plain"


class _Plugin:
    @hookimpl
    def register_estimators(self, register):
        register(_NeedsCovariates)
        register(_Plain)


def test_a_third_party_estimator_is_judged_by_its_tags(tmp_path, capsys):
    reg = get_registry()
    name = reg.register_plugin(_Plugin(), name="test-break13-phases")
    try:
        path = _write(tmp_path, **{"experiment.phases": [
            {"duration": "1d", "estimator": "test-phase-needs-covariates"}, {"duration": "1d"}]})
        code, _, err = cli(capsys, "validate", path)
        assert code == 2 and "experiment.phases[0].estimator: estimator 'test-phase-needs-covariates' cannot " \
                              "decide a phase: it needs pre-treatment covariates (data.covariates)" in err, err
        assert "test-phase-plain" in err  # listed among those a phase can run
        path = _write(tmp_path, **{"experiment.phases": [
            {"duration": "1d", "estimator": "test-phase-plain"}, {"duration": "1d"}]})
        code, out, err = cli(capsys, "validate", path)
        assert code == 0 and out.startswith("ok:"), err
    finally:
        reg.unregister_plugin(name)
    assert phase_unfit(_Plain) == [] and phase_unfit(_NeedsCovariates)


def test_the_working_phase_estimators_still_run_and_get_only_the_phase_inputs(tmp_path, capsys, monkeypatch):
    seen = []
    original = phases_module.call_plugin

    def spy(plugin, hook, fn, *args):
        if hook == "estimate":
            seen.append((plugin.name, args[0]))
        return original(plugin, hook, fn, *args)

    monkeypatch.setattr(phases_module, "call_plugin", spy)
    path = _write(tmp_path, **{"experiment.phases": [
        {"duration": "1d", "estimator": "diff-in-means"},
        {"duration": "1d", "estimator": "bayesian-ab", "rule": "prob_better"},
        {"duration": "1d", "estimator": "cuped", "rule": "expected_loss"},
        {"duration": "1d", "estimator": "ratio", "metric": "ctr"}]})
    code, _, err = cli(capsys, "run", path, "--quiet", "--no-report")
    assert code == 0, err
    manifest = json.loads(next((tmp_path / "runs").glob("*/manifest.json")).read_text())
    assert [p["estimator"] for p in manifest["phases"]] == ["diff-in-means", "bayesian-ab", "cuped", "ratio"]
    for p in manifest["phases"]:
        assert len(p["estimates"]) == 1 and "note" not in p, p  # one challenger, one estimate each
    assert [name for name, _ in seen] == ["diff-in-means", "bayesian-ab", "cuped", "ratio"]
    everything = EstimatorTags(**{f: True for f in EstimatorTags.__dataclass_fields__ if f.startswith("requires_")})
    for _, data in seen:  # a phase fills exactly the declared inputs PHASE_INPUTS names (none)
        for field in everything.required_inputs():
            assert (field in PHASE_INPUTS) == (getattr(data, field) not in (None, {})), field
        assert "pre_clicks" in data.outcomes.columns  # what cuped reads: the metric before the phase


# -- A2: challengers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("control", [None, "treatment"])
def test_phase_zero_naming_only_its_control_is_refused(tmp_path, capsys, no_simulation, control):
    arm = control or "control"
    changes = {"experiment.phases": [{"duration": "1d", "challengers": [arm]}, {"duration": "1d"}]}
    if control:
        changes["experiment.control"] = control
    path = _write(tmp_path, **changes)
    line = _line(path, "challengers:")
    _refused(capsys, tmp_path, path, f"{path}:{line}: experiment.phases[0].challengers: names only '{arm}', the "
                                     "control of phase 0 (experiment.control): the phase would have no arm to test")


def test_empty_challengers_mean_every_arm():
    d = json.loads(json.dumps(BASE))
    d["experiment"]["phases"] = [{"duration": "1d", "challengers": []}, {"duration": "1d"}]
    sc = Scenario.from_dict(d)
    assert phase_arms(sc, 0, "control") == ["control", "treatment"]
    assert phase_arms(sc, 1, "treatment") == ["treatment", "control"]


def test_a_later_phase_whose_only_challenger_is_its_control_keeps_it_without_a_test(tmp_path, capsys):
    arms = {"control": {"recommender": "popularity"}, "treatment": {"recommender": "random"},
            "third": {"recommender": "random"}}
    path = _write(tmp_path, **{"experiment.arms": arms, "experiment.phases": [
        {"duration": "1d", "challengers": ["treatment"]},
        {"duration": "1d", "challengers": ["control"]}]})  # control if phase 0 keeps it, else control vs treatment
    line = [i for i, text in enumerate(path.read_text().splitlines(), 1) if "challengers:" in text][1]
    note = (f"note: {path}:{line}: experiment.phases[1].challengers: names only 'control', which can be phase 1's "
            "control (the arm phase 0 keeps or picks)")
    code, out, err = cli(capsys, "validate", path)
    assert code == 0 and out.startswith("ok:") and note in err, err
    code, _, err = cli(capsys, "run", path, "--quiet", "--no-report")
    assert code == 0 and note in err, err
    manifest = json.loads(next((tmp_path / "runs").glob("*/manifest.json")).read_text())
    first, second = manifest["phases"]
    assert first["decision"] == "keep" and first["chosen"] == "control"  # random does not beat popularity
    assert second["control"] == "control" and second["challengers"] == [] and second["estimates"] == []
    assert second["decision"] == "keep" and "no challenger" in second["note"]
    assert any(note.removeprefix("note: ") in n for n in manifest["notes"])


def test_an_analysis_with_an_arm_outside_phase_zero_is_refused(tmp_path, capsys, no_simulation):
    arms = {"control": {"recommender": "popularity"}, "treatment": {"recommender": "random"},
            "third": {"recommender": "random"}}
    path = _write(tmp_path, **{"experiment.arms": arms, "analysis": [{"estimator": "diff-in-means"}],
                               "experiment.phases": [{"duration": "1d", "challengers": ["third"]}, {"duration": "1d"}]})
    line = _line(path, "estimator: diff-in-means", after="analysis:")
    _refused(capsys, tmp_path, path, f"{path}:{line}: analysis[0]: with experiment.phases the analysis compares the "
                                     "arms under phase 0's assignment, and arm 'treatment' is not in phase 0")
    ope = _write(tmp_path, **{"experiment.arms": arms, "analysis": [{"estimator": "ope"}],
                              "experiment.phases": [{"duration": "1d", "challengers": ["third"]}, {"duration": "1d"}]})
    code, out, err = cli(capsys, "validate", ope)  # ope evaluates each arm on the control's log: no users needed
    assert code == 0 and out.startswith("ok:"), err


# -- B2: per-segment estimates of one segment ---------------------------------------------------------
def test_segments_true_with_a_single_segment_is_a_located_note(tmp_path, capsys):
    flat = {"experiment.phases": None, "experiment.duration": "2d",
            "analysis": [{"estimator": "diff-in-means", "segments": True}]}
    path = _write(tmp_path, **flat)
    line = _line(path, "segments: true", after="analysis:")
    note = (f"note: {path}:{line}: analysis[0].segments: segments: true, but population.segments is not set, so "
            "every user is in the one default segment 'all'")
    code, out, err = cli(capsys, "validate", path)
    assert code == 0 and out.startswith("ok:") and note in err, err
    code, _, err = cli(capsys, "run", path, "--quiet", "--no-report")
    assert code == 0 and note in err, err
    declared = _write(tmp_path, **flat, **{"population.segments": {"only": {"share": 1.0}}})
    code, _, err = cli(capsys, "validate", declared)
    assert code == 0 and "population.segments declares a single segment ('only')" in err, err
    two = _write(tmp_path, **flat, **{"population.segments": {"a": {"share": 0.5}, "b": {"share": 0.5}}})
    code, _, err = cli(capsys, "validate", two)
    assert code == 0 and "note:" not in err, err
    off = _write(tmp_path, **{**flat, "analysis": [{"estimator": "bayesian-ab"}]})
    code, _, err = cli(capsys, "validate", off)
    assert code == 0 and "note:" not in err, err
