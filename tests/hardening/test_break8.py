"""Break test 8's findings (a new user's pass over the whole CLI), each with the behaviour it asked for.

- H1: two ``analysis`` entries of one estimator on one metric gave rows that could not be told apart,
  and ``calibrate``/``sweep`` pooled them into one row (twice the replications); estimates now carry
  their entry (``Estimate.analysis``).
- M1: ``validate`` accepted splits whose own draw left an arm with fewer than 2 users, and an
  ``output.dir`` that is a file; ``run`` failed on them after simulating.
- M2: with a per-analysis ``level`` the headline said "nominal 95%"; a per-analysis level of 0.3 was
  accepted although the scenario's must exceed 0.5.
- M3: ``report`` trusted an edited ``estimates.json`` ("inside the interval" for a truth outside it),
  and read a NaN in it silently.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from counterfeed.core.scenario import Scenario, check_arms_filled
from counterfeed.errors import ScenarioError
from tests.conftest import SMALL, cli, scenario_file


def _write(tmp_path: Path, **changes) -> Path:
    base = {**SMALL, "output": {"report": True, "dir": str(tmp_path / "runs")}, "metrics": ["clicks", "sessions"]}
    return scenario_file(tmp_path / "s.yaml", base, **changes)


def _rejected(capsys, path: Path, pattern: str) -> None:
    """Both ``validate`` and ``run`` exit 2 with the message, and nothing is written."""
    for verb in ("validate", "run"):
        code, _, err = cli(capsys, verb, path, "--quiet") if verb == "run" else cli(capsys, verb, path)
        assert code == 2, (verb, err)
        assert re.search(pattern, err), (verb, err)
    assert not (path.parent / "runs").exists()


def test_an_entry_that_repeats_another_is_rejected(tmp_path, capsys):
    path = _write(tmp_path, analysis=[{"estimator": "diff-in-means"}, {"estimator": "diff-in-means"}])
    _rejected(capsys, path, r"analysis\[1\] repeats analysis\[0\] \(estimator 'diff-in-means' with the same options\)")


def test_calibrate_and_sweep_summarise_each_entry_apart(tmp_path, capsys):
    """A run may compare two entries of one estimator on one metric (two levels, did-staggered's two
    control groups). calibrate and sweep summarised by (estimator, metric, arm, estimand) and pooled
    them (n = 2 x replications); every estimate now carries its analysis entry, by which they summarise."""
    import pandas as pd

    path = _write(tmp_path, analysis=[{"estimator": "diff-in-means"}, {"estimator": "diff-in-means", "level": 0.8}])
    out = tmp_path / "cal"
    code, text, err = cli(capsys, "calibrate", path, "-n", "4", "--out", out)
    assert code == 0, err
    summary = pd.read_csv(out / "calibration.csv")
    clicks = summary[(summary["metric"] == "clicks") & (summary["estimand"] == "difference")]
    assert sorted(clicks["analysis"]) == [0, 1]
    assert clicks["replications"].tolist() == [4, 4]  # not one row of 8
    assert dict(zip(clicks["analysis"], clicks["level"])) == {0: 0.95, 1: 0.8}
    assert "diff-in-means (analysis[1])" in text
    code, text, err = cli(capsys, "sweep", path, "--vary", "population.users=100,200", "-n", "2",
                          "--out", tmp_path / "sweep")
    assert code == 0, err
    sweep = pd.read_csv(tmp_path / "sweep" / "sweep.csv")
    clicks = sweep[(sweep["metric"] == "clicks") & (sweep["estimand"] == "difference")]
    assert len(clicks) == 4 and set(clicks["replications"]) == {2}


def test_a_run_names_the_entry_of_an_estimator_that_several_entries_ran(tmp_path, capsys):
    """The run's table, its estimates.json and its report tell two entries of one estimator apart."""
    path = _write(tmp_path, analysis=[{"estimator": "diff-in-means", "metrics": ["clicks"]},
                                      {"estimator": "diff-in-means", "metrics": ["clicks"], "level": 0.8},
                                      {"estimator": "cuped", "metrics": ["clicks"]}])
    code, text, err = cli(capsys, "run", path, "--quiet")
    assert code == 0, err
    assert "diff-in-means (analysis[0])" in text and "diff-in-means (analysis[1])" in text
    assert re.search(r"^- .*clicks by .*, diff-in-means \(analysis\[1\]\)\)", text, re.M)  # the headline too
    assert "cuped (analysis" not in text  # one entry: its name alone
    run_dir = next((tmp_path / "runs").iterdir())
    rows = json.loads((run_dir / "estimates.json").read_text())["estimates"]
    assert {(r["estimator"], r["analysis"]) for r in rows} == {("diff-in-means", 0), ("diff-in-means", 1),
                                                               ("cuped", 2)}
    assert "diff-in-means (analysis[1])" in (run_dir / "report.md").read_text()


def test_replications_stored_without_their_entry_get_it_when_it_is_unambiguous():
    """A store written before estimates carried their entry: an estimator one entry ran gets that entry
    (``ope:dr`` is ``ope``'s, break test 10), and of several entries the one whose ``metrics`` name the
    row's metric; when several could have made a row, or a stored entry is not one of the scenario's,
    the store is refused (start afresh) rather than pooled."""
    from counterfeed.calibration.summary import assign_entries
    from counterfeed.errors import DataError

    entries = [("diff-in-means", ["clicks"]), ("cuped", None), ("diff-in-means", ["sessions"]), ("ope", None)]
    records = [{"index": 0, "estimates": [{"estimator": "cuped"}, {"estimator": "ratio", "analysis": None},
                                          {"estimator": "diff-in-means", "metric": "sessions"},
                                          {"estimator": "ope:dr", "metric": "ctr"}]}]
    assign_entries(records, entries)
    assert [e["analysis"] for e in records[0]["estimates"]] == [1, None, 2, 3]
    with pytest.raises(DataError, match=r"analysis entries \[0, 1\] could all have made its 'cuped'.*--fresh"):
        assign_entries([{"index": 3, "estimates": [{"estimator": "cuped", "metric": "clicks"}]}],
                       [("cuped", None), ("cuped", ["clicks"])])
    for bad in (-1, 4, "0", True, 1.5):
        with pytest.raises(DataError, match=r"replication 0 of the store, estimates\[0\]: analysis must be"):
            assign_entries([{"index": 0, "estimates": [{"estimator": "cuped", "analysis": bad}]}], entries)


def test_an_unreadable_store_is_refused_before_anything_is_simulated(tmp_path, capsys):
    path = _write(tmp_path, analysis=[{"estimator": "diff-in-means"}])
    out = tmp_path / "cal"
    code, _, err = cli(capsys, "calibrate", path, "-n", "2", "--out", out)
    assert code == 0, err
    record = next((out / "replications").glob("*.json"))
    doc = json.loads(record.read_text())
    doc["estimates"][0]["analysis"] = "x"
    record.write_text(json.dumps(doc))
    before = sorted(p.name for p in (out / "replications").iterdir())
    code, _, err = cli(capsys, "calibrate", path, "-n", "3", "--out", out)
    assert code == 2 and "analysis must be the index of one of the scenario's 1 analysis entries, got 'x'" in err
    assert sorted(p.name for p in (out / "replications").iterdir()) == before  # the third was not simulated


def test_entries_of_one_estimator_on_disjoint_metrics_are_fine(tmp_path, capsys):
    path = _write(tmp_path, analysis=[{"estimator": "diff-in-means", "metrics": ["clicks"]},
                                      {"estimator": "diff-in-means", "metrics": ["sessions"], "level": 0.8}])
    code, out, err = cli(capsys, "validate", path)
    assert code == 0, err


def test_an_analysis_level_is_bounded_like_the_scenarios(tmp_path, capsys):
    path = _write(tmp_path, analysis=[{"estimator": "diff-in-means", "level": 0.3}])
    _rejected(capsys, path, r"analysis\[0\]\.level: Input should be greater than 0\.5")


@pytest.mark.parametrize("users, control, treatment", [(200, 0.999, 0.001), (10, 0.95, 0.05)])
def test_a_split_whose_draw_leaves_an_arm_short_is_rejected_before_simulating(tmp_path, capsys, users, control,
                                                                            treatment):
    path = _write(tmp_path, **{"population.users": users, "experiment.split": {"control": control,
                                                                                "treatment": treatment}},
                  analysis=[{"estimator": "diff-in-means"}])
    _rejected(capsys, path, r"experiment\.split\.treatment: this seed's draw puts [01] of \d+ users in arm "
                            r"'treatment'.*at least 2 users in every arm")


def test_a_calibration_names_the_first_replication_whose_draw_leaves_an_arm_short():
    sc = Scenario.from_dict({**SMALL, "population": {"users": 8, "dimensions": 8},
                             "analysis": [{"estimator": "diff-in-means"}]})
    check_arms_filled(sc)  # this seed's own draw fills both arms
    from counterfeed.calibration.engine import replication_seeds

    with pytest.raises(ScenarioError, match=r"replication \d+ of 200 \(seed \d+\) puts [01] of 8 users in arm"):
        check_arms_filled(sc, replication_seeds(sc.seed, 200))  # 2 * 9/256 per replication: some fall short


def test_a_split_that_cannot_fall_short_is_not_drawn(monkeypatch):
    import counterfeed.core.experiment as experiment

    def boom(*args, **kwargs):
        raise AssertionError("drew the assignment although no draw can fall short")

    monkeypatch.setattr(experiment, "assign", boom)
    sc = Scenario.from_dict({**SMALL, "analysis": [{"estimator": "diff-in-means"}]})
    check_arms_filled(sc, list(range(1000)))  # 300 users 50/50: P(an arm < 2) is about 1e-88


def test_an_output_dir_that_is_a_file_is_rejected_first(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for where in ("afile", "afile/sub"):
        path = _write(tmp_path, output={"report": False, "dir": str(tmp_path / where)})
        for verb in ("validate", "run"):
            code, _, err = cli(capsys, verb, path)
            assert code == 2 and f"output.dir: '{tmp_path / 'afile'}' is a file" in err, (verb, err)


def test_headline_and_report_name_the_levels_the_analyses_used(tmp_path):
    from counterfeed.core.findings import headline
    from counterfeed.core.rundir import load_run
    from counterfeed.core.runner import run

    path = _write(tmp_path, analysis=[{"estimator": "diff-in-means", "metrics": ["clicks"], "level": 0.8},
                                      {"estimator": "diff-in-means", "metrics": ["sessions"]}])
    result = run(path, output_dir=tmp_path / "runs", quiet=True)
    lines = headline(result)
    assert any("nominal 80% and 95%" in s for s in lines), lines
    report = (result.run_dir / "report.md").read_text()
    assert "**Interval level:** 80% and 95%" in report
    assert "nominal 95%)" not in report
    assert "(80%)" in report and "(95%)" in report  # each row's interval says its level when they differ
    # M3: covered and error follow the row's own truth and bounds when the run is read back
    doc = json.loads((result.run_dir / "estimates.json").read_text())
    row = next(e for e in doc["estimates"] if e["estimand"] == "difference" and e["metric"] == "clicks")
    row["truth"] = row["upper"] + 5.0
    (result.run_dir / "estimates.json").write_text(json.dumps(doc))
    back = next(e for e in load_run(result.run_dir).estimates if e.estimand == "difference" and e.metric == "clicks")
    assert back.covered is False and math.isclose(back.error, back.point - back.truth)
    text = (result.run_dir / "estimates.json").read_text().replace(f'"truth": {row["truth"]}', '"truth": NaN', 1)
    (result.run_dir / "estimates.json").write_text(text)
    from counterfeed.errors import DataError

    with pytest.raises(DataError, match=r"estimates\.json: cannot read JSON \(NaN is not JSON"):
        load_run(result.run_dir)


def test_an_estimator_that_needs_more_users_per_arm_is_checked_against_the_draw(tmp_path, capsys):
    """Cross-fitting with 2 folds needs 4 users of each arm (``Estimator.users_per_arm``): at 6 users the
    run failed after simulating while ``validate`` said ok."""
    path = _write(tmp_path, **{"population.users": 6}, analysis=[{"estimator": "linear-cate", "metrics": ["clicks"]}])
    _rejected(capsys, path, r"experiment\.split\.\w+: this seed's draw puts [0-3] of 6 users in arm '\w+'.*"
                            r"analysis\[0\] \(linear-cate\) needs at least 4 users in every arm")
    path = _write(tmp_path, **{"population.users": 40}, analysis=[{"estimator": "linear-cate", "metrics": ["clicks"]}])
    code, _, err = cli(capsys, "validate", path)
    assert code == 0, err


def test_an_empty_metrics_list_is_rejected(tmp_path, capsys):
    path = _write(tmp_path, metrics=[], analysis=[{"estimator": "diff-in-means"}])
    _rejected(capsys, path, r"metrics: List should have at least 1 item")


# -- break test 9 (a fresh helper's pass over the fixes above) ---------------------------------------
@pytest.mark.parametrize("analysis, pattern", [
    ([{"estimator": "diff-in-means", "metrics": ["clicks", "clicks"]}],
     r"analysis\[0\]\.metrics\[1\]: metric 'clicks' is listed twice \(also metrics\[0\]\)"),
    # the same entry up to the order of its metrics, a default level written out, the default metrics listed
    ([{"estimator": "diff-in-means", "metrics": ["clicks", "sessions"]},
      {"estimator": "diff-in-means", "metrics": ["sessions", "clicks"], "level": 0.95}],
     r"analysis\[1\] repeats analysis\[0\]"),
    ([{"estimator": "diff-in-means"}, {"estimator": "diff-in-means", "metrics": ["clicks", "sessions"]}],
     r"analysis\[1\] repeats analysis\[0\]"),
])
def test_an_effective_repeat_is_rejected(tmp_path, capsys, analysis, pattern):
    _rejected(capsys, _write(tmp_path, analysis=analysis), pattern)


def test_ope_needs_no_users_of_the_arm_it_evaluates_offline(tmp_path, capsys):
    """``ope`` evaluates each arm's policy on the control's log (``users_per_arm`` 0): a treatment share
    that draws nobody is fine for it, as it was before the draw check (break test 9)."""
    path = _write(tmp_path, **{"experiment.split": {"control": 0.9995, "treatment": 0.0005}},
                  analysis=[{"estimator": "ope", "estimators": ["ips"], "fit_on": "pre_period"}])
    code, _, err = cli(capsys, "validate", path)
    assert code == 0, err


def test_an_out_under_a_file_is_rejected_by_validate_as_by_run(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    path = _write(tmp_path, analysis=[{"estimator": "diff-in-means"}])
    for verb in ("validate", "run"):
        code, _, err = cli(capsys, verb, path, "--out", tmp_path / "afile" / "sub")
        assert code == 2 and f"--out: '{tmp_path / 'afile'}' is a file" in err, (verb, err)
