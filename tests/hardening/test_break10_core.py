"""Break test 8's remaining LOW findings on the scenario and the run directory, each with the behaviour
it asked for.

- ``users: true`` ran one user and ``slate_size: true`` a slate of one: a boolean is not a number, in
  the scenario's sections and in every plugin's options; NaN and infinities are an error there too.
- A ``retained`` window longer than the experiment made "retained" mean "visited at all", and a slate
  longer than the catalog was cut to the catalog: both silently. Each is now a located note.
- estimates.json wrote an unbounded interval (Fieller's) and a missing one alike as null bounds; the
  estimate now says which bound was infinite (``diagnostics.unbounded``) and reading a run restores it.
"""

from __future__ import annotations

import json
import re
import math
from pathlib import Path

import pytest

from counterfeed.core.estimation import Estimate
from tests.conftest import SMALL, cli, scenario_file


def _write(tmp_path: Path, **changes) -> Path:
    base = {**SMALL, "output": {"report": False, "dir": str(tmp_path / "runs")}, "metrics": ["clicks", "retained"],
            "analysis": [{"estimator": "diff-in-means"}]}
    return scenario_file(tmp_path / "s.yaml", base, **changes)


@pytest.mark.parametrize("field, value, message", [
    ("population.users", True, "population.users: expected a number, got a boolean (true)"),
    ("experiment.slate_size", True, "experiment.slate_size: expected a number, got a boolean (true)"),
    ("catalog.items", False, "catalog.items: expected a number, got a boolean (false)"),  # a plugin's option
    ("level", float("nan"), "level: must be finite (got nan)"),
    ("population.heterogeneity", float("inf"), "population.heterogeneity: must be finite (got inf)"),
])
def test_a_boolean_or_a_non_finite_number_is_not_a_number(tmp_path, capsys, field, value, message):
    path = _write(tmp_path, **{field: value})
    for verb in ("validate", "run"):
        code, _, err = cli(capsys, verb, path)
        assert code == 2 and message in err, (verb, err)
    assert not (tmp_path / "runs").exists()


def test_a_boolean_option_still_takes_booleans_and_an_integral_float_stays_a_count(tmp_path, capsys):
    path = _write(tmp_path, **{"population.users": 300.0, "output.report": False})
    code, _, err = cli(capsys, "validate", path)
    assert code == 0, err


def test_a_retained_window_longer_than_the_experiment_is_a_located_note(tmp_path, capsys):
    path = _write(tmp_path, metrics=["clicks", {"metric": "retained", "window": "10d"}])
    code, out, err = cli(capsys, "validate", path)
    assert code == 0 and out.startswith("ok:")
    assert f"note: {path}:28: metrics[1]: retained's window (10d) is longer than the experiment (4d)" in err  # located
    code, out, err = cli(capsys, "run", path, "--quiet")
    assert code == 0 and f"note: {path}:28: metrics[1]: retained's window (10d)" in err  # even with --quiet
    manifest = json.loads(next((tmp_path / "runs").glob("*/manifest.json")).read_text())
    assert manifest["notes"] == [line.removeprefix("note: ") for line in err.splitlines() if line.startswith("note: ")]
    # a window within the experiment: no note
    code, _, err = cli(capsys, "validate", _write(tmp_path, metrics=["clicks", {"metric": "retained", "window": "4d"}]))
    assert code == 0 and "note:" not in err


def test_a_slate_longer_than_the_catalog_is_a_note(tmp_path, capsys):
    path = _write(tmp_path, **{"catalog.items": 4, "experiment.slate_size": 5, "experiment.duration": "2d"})
    note = f"note: {path}:"  # located, as the other notes are
    want = "experiment.slate_size: slates of 5 items from a catalog of 4: every slate shows at most 4"
    for verb in ("validate", "run"):  # validate knows the catalog's size (Catalog.check) and says it first
        code, _, err = cli(capsys, verb, path, "--quiet") if verb == "run" else cli(capsys, verb, path)
        assert code == 0, err
        assert any(line.startswith(note) and want in line for line in err.splitlines()), (verb, err)


@pytest.mark.parametrize("lower, upper, side", [(-math.inf, math.inf, "both"), (-math.inf, 2.0, "lower"),
                                                (1.0, math.inf, "upper"), (1.0, 2.0, None)])
def test_an_infinite_bound_is_recorded(lower, upper, side):
    e = Estimate("ratio", "ctr", "treatment", "control", 1.5, lower, upper, estimand="relative")
    assert e.diagnostics.get("unbounded") == side
    e.lower, e.upper = 1.0, 2.0
    e.flag_unbounded()
    assert "unbounded" not in e.diagnostics  # the core's check follows bounds an estimator changed


def test_reading_a_run_restores_an_unbounded_interval_and_its_coverage(tmp_path, capsys):
    """JSON writes +-inf as null. With ``diagnostics.unbounded`` the reader knows the bounds were infinite:
    the row covers its truth (recomputed on reading, as every row's is), where a missing interval does not."""
    from counterfeed.core.rundir import load_run

    code, _, err = cli(capsys, "run", _write(tmp_path), "--quiet")
    assert code == 0, err
    run_dir = next((tmp_path / "runs").iterdir())
    doc = json.loads((run_dir / "estimates.json").read_text())
    unbounded, missing = doc["estimates"][0], doc["estimates"][1]
    for row, diag in ((unbounded, {"unbounded": "both"}), (missing, {})):
        row.update(lower=None, upper=None, covered=False)  # as a tampered or old file could say
        row["diagnostics"] = diag
    (run_dir / "estimates.json").write_text(json.dumps(doc))
    got = load_run(run_dir).estimates
    assert (got[0].lower, got[0].upper, got[0].covered) == (-math.inf, math.inf, True)
    assert math.isnan(got[1].lower) and got[1].covered is False  # missing: left as stored


def test_the_headline_counts_a_cate_learners_one_interval_once(tmp_path, capsys):
    """A CATE learner reports its average effect twice (``cate``, with the per-user effects, and
    ``difference``): one interval, which "N of N covered" counted twice."""
    path = _write(tmp_path, metrics=["clicks"], analysis=[{"estimator": "linear-cate"}])
    code, out, err = cli(capsys, "run", path, "--quiet")
    assert code == 0, err
    doc = json.loads(next((tmp_path / "runs").glob("*/estimates.json")).read_text())["estimates"]
    assert sorted(r["estimand"] for r in doc) == ["cate", "difference"]
    assert "1 row repeating another row's interval of the same analysis" in out
    assert re.search(r"- [01] of 1 intervals with a known truth covered it", out), out


def test_segment_shares_that_do_not_sum_to_one_name_each_share(capsys):
    """``--set population.segments.a.share=1`` keeps the default segment ``all``: the message said "got 2"
    about a segment the user never wrote."""
    code, _, err = cli(capsys, "validate", "scenarios/aa_test.yaml", "--set", "population.segments.a.share=1")
    assert code == 2 and "segment shares must sum to 1 (got 2: all 1, a 1); if 'all' is the default single segment" in err
    code, out, err = cli(capsys, "validate", "scenarios/aa_test.yaml", "--set", "population.segments={a: {share: 1}}")
    assert code == 0, err


def test_calibrate_and_sweep_print_a_note_once_not_per_replication(tmp_path, capsys):
    """Each replication is a run; its notes are the scenario's, which the command prints once (a
    helper saw hundreds of lines with -q)."""
    path = _write(tmp_path, metrics=["clicks", {"metric": "retained", "window": "10d"}])
    code, _, err = cli(capsys, "calibrate", path, "-n", "3", "-w", "1", "-q", "--out", tmp_path / "cal")
    assert code == 0, err
    assert [ln for ln in err.splitlines() if ln.startswith("note: ")] == [
        next(ln for ln in err.splitlines() if "metrics[1]: retained's window (10d)" in ln)]
    code, _, err = cli(capsys, "sweep", path, "--vary", "experiment.duration=4d,12d", "-n", "2", "-w", "1", "-q",
                       "--out", tmp_path / "sweep")
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and notes[0].startswith("note: --vary experiment.duration=4d: ") and \
        "metrics[1]: retained's window (10d)" in notes[0], notes


def test_the_manifests_versions_do_not_depend_on_what_the_process_imported(monkeypatch):
    """A run that found its two-tower model cached never imported torch, and its manifest had no torch
    (break test 7): the versions now come from the installed distributions."""
    import sys
    from importlib.metadata import version

    from counterfeed.core.runner import _versions

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    got = _versions()
    assert got["torch"] == version("torch") and got["numpy"] == version("numpy")


def test_only_a_cate_row_repeating_its_difference_row_is_counted_once():
    """Break test 10: a zero-width difference and relative of one entry, with equal bounds and truth,
    were merged by the headline's tally; only a CATE learner's cate row repeats its difference row."""
    from types import SimpleNamespace

    from counterfeed.core.findings import _distinct_intervals

    def row(estimand, estimator="diff-in-means"):
        return SimpleNamespace(estimate=Estimate(estimator, "retained", "t", "c", 0.0, 0.0, 0.0, estimand=estimand,
                                                 truth=0.0, analysis=0))

    kept, dropped = _distinct_intervals([row("difference"), row("relative")])
    assert (len(kept), dropped) == (2, 0)
    kept, dropped = _distinct_intervals([row("cate", "linear-cate"), row("difference", "linear-cate")])
    assert (len(kept), dropped) == (1, 1) and kept[0].estimate.estimand == "difference"


def test_the_report_lists_the_scenarios_notes_and_shows_unbounded_sides(tmp_path, capsys):
    path = _write(tmp_path, metrics=["clicks", {"metric": "retained", "window": "10d"}],
                  **{"output.report": True})
    code, _, err = cli(capsys, "run", path, "--quiet")
    assert code == 0, err
    report = next((tmp_path / "runs").glob("*/report.md")).read_text()
    assert "1 note(s) on the scenario:" in report and "retained's window (10d) is longer" in report
    assert "window: 2d}" in err  # the advice fits the 4-day experiment
    from counterfeed.core._report_sections import _bound

    assert (_bound(-math.inf), _bound(math.inf), _bound(float("nan")), _bound(1.5)) == ("−∞", "∞", "—", "1.5")


def test_numpy_integer_shards_are_integers():
    import numpy as np

    from counterfeed.core.shard_spec import execution_arguments
    from counterfeed.errors import ScenarioError
    from tests.conftest import small_scenario

    assert execution_arguments(small_scenario(), np.int64(2))[0] == 2
    with pytest.raises(ScenarioError, match=r"run\(shards=\.\.\.\)"):
        execution_arguments(small_scenario(), np.bool_(True))


@pytest.mark.parametrize("sets, message", [
    (["experiment.assignment.coefficients={pre_sessions: true}"],
     "experiment.assignment.coefficients: 'pre_sessions': expected a number, got a boolean (true)"),
    (["experiment.split={control: true, treatment: false}"], "experiment.split: 'control': expected a number"),
])
def test_a_boolean_inside_a_mapping_of_numbers_is_not_a_number(capsys, sets, message):
    code, _, err = cli(capsys, "validate", "scenarios/observational_selection.yaml"
                       if "assignment" in sets[0] else "scenarios/aa_test.yaml", *[x for s in sets for x in ("--set", s)])
    assert code == 2 and message in err, err


def test_an_unbounded_option_still_takes_infinity(capsys):
    """ope's tau and lam mean plain DR at infinity (documented); break test 10 found them refused."""
    code, _, err = cli(capsys, "validate", "scenarios/ope_offline.yaml", "--set",
                       "analysis=[{estimator: ope, estimators: [switch-dr, dr-os], fit_on: pre_period, tau: .inf, "
                       "lam: .inf}]")
    assert code == 0, err


def test_the_cate_in_band_share_is_judged_at_the_entrys_level():
    """An 80% CATE entry whose users' intervals cover 80% is in band; the band was fixed at 0.90-0.97
    (break test 10, now that two entries at different levels can be calibrated)."""
    from counterfeed.calibration.cate_summary import cate_summary

    def rec(i, level, coverage, entry):
        return {"index": i, "estimates": [{"estimator": "linear-cate", "analysis": entry, "metric": "clicks",
                                           "arm": "t", "estimand": "cate", "level": level,
                                           "cate": {"pehe": 1.0, "pehe_baseline": 2.0, "coverage": coverage}}]}

    got = cate_summary([rec(i, 0.8, 0.8, 0) for i in range(4)] + [rec(i, 0.95, 0.95, 1) for i in range(4)])
    assert got["analysis"].tolist() == [0, 1] and got["coverage_in_band"].tolist() == [1.0, 1.0]


def test_a_duration_given_a_boolean_asks_for_a_duration(capsys):
    code, _, err = cli(capsys, "validate", "scenarios/aa_test.yaml", "--set", "experiment.batch_window=true")
    assert code == 2 and "experiment.batch_window: expected a duration such as '14d' (or a number of days), got a " \
                          "boolean (true)" in err, err
