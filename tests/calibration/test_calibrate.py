"""calibrate() with a known-answer replication: statistics, persistence, resume, failures."""

from __future__ import annotations

import json

import pytest
from _fakes import normal_replicate
from _fakes import fake_scenario

from counterfeed.calibration import calibrate, replication_seeds
from counterfeed.core.executors import get_executor
from counterfeed.core.randomness import Keys
from counterfeed.errors import CounterfeedError, OutputError


def test_seeds_are_derived_from_the_scenario_seed():
    assert replication_seeds(5, 3) == [Keys(5).derive_seed("replication", i) for i in range(3)]
    assert replication_seeds(5, 3) != replication_seeds(6, 3)


def test_aa_calibration_of_exact_normal_estimators(tmp_path):
    # 400 replications: a rate of 0.95 has sd sqrt(.95*.05/400) = 0.011, so [0.92, 0.98] is a ~2.7-sd
    # band; the false-positive rate (0.05) likewise lies in [0.02, 0.08]. Fixed seeds: no flakes.
    res = calibrate(fake_scenario(lift=0.0), 400, out_dir=tmp_path, replicate=normal_replicate)
    s = res.summary.set_index("estimator")
    assert set(s.index) == {"z-test", "t-interval"}
    for est in ("z-test", "t-interval"):
        assert s.loc[est, "replications"] == 400
        assert 0.92 <= s.loc[est, "coverage"] <= 0.98
        assert 0.02 <= s.loc[est, "rejection_rate"] <= 0.08
        assert s.loc[est, "coverage_lower"] < s.loc[est, "coverage"] < s.loc[est, "coverage_upper"]
        # bias of a mean difference of 100 vs 100 N(0,1): sd 0.141/sqrt(400) = 0.007 per replication mean
        assert abs(s.loc[est, "bias"]) < 0.03
        assert s.loc[est, "rmse"] == pytest.approx(0.1414, rel=0.15)
    assert {"json", "csv", "parquet", "coverage", "scatter"} <= set(res.files)
    assert all(p.exists() and p.stat().st_size > 0 for p in res.files.values())
    payload = json.loads((tmp_path / "calibration.json").read_text())
    assert payload["completed"] == 400 and len(payload["summary"]) == 2
    assert sorted(res.records["replication"].unique()) == list(range(400))


def test_power_with_a_real_effect(tmp_path):
    # lift 0.5 with 100 per arm: power of a 5% z-test = P(|Z + 0.5/0.1414| > 1.96) = 0.94.
    res = calibrate(fake_scenario(lift=0.5), 100, out_dir=tmp_path, replicate=normal_replicate, figures=False)
    assert (res.summary["rejection_rate"] > 0.85).all()
    assert (res.summary["mde"].between(0.35, 0.45)).all()  # 2.8 * 0.1414 = 0.396


def test_resume_skips_finished_replications_and_extends(tmp_path):
    sc = fake_scenario()
    first = calibrate(sc, 10, out_dir=tmp_path, replicate=normal_replicate, figures=False)
    assert len(first.report.computed) == 10
    again = calibrate(sc, 10, out_dir=tmp_path, replicate=normal_replicate, figures=False)
    assert again.report.computed == [] and len(again.report.skipped) == 10
    assert again.summary.equals(first.summary)
    more = calibrate(sc, 15, out_dir=tmp_path, replicate=normal_replicate, figures=False)
    assert more.report.computed == [f"rep-{i}" for i in range(10, 15)]
    fewer = calibrate(sc, 5, out_dir=tmp_path, replicate=normal_replicate, figures=False)
    assert fewer.completed == 5 and fewer.report.computed == []


def test_changed_scenario_in_the_same_directory_is_an_error(tmp_path):
    calibrate(fake_scenario(users=200), 2, out_dir=tmp_path, replicate=normal_replicate, figures=False)
    with pytest.raises(OutputError, match=r"different scenario .*--fresh .*another --out"):
        calibrate(fake_scenario(users=300), 2, out_dir=tmp_path, replicate=normal_replicate, figures=False)
    fresh = calibrate(fake_scenario(users=300), 2, out_dir=tmp_path, replicate=normal_replicate,
                      figures=False, fresh=True)
    assert len(fresh.report.computed) == 2


def test_changing_only_the_output_dir_field_does_not_invalidate(tmp_path):
    sc = fake_scenario()
    calibrate(sc, 2, out_dir=tmp_path, replicate=normal_replicate, figures=False)
    moved = sc.with_overrides({"output.dir": "elsewhere"})
    assert calibrate(moved, 2, out_dir=tmp_path, replicate=normal_replicate, figures=False).report.computed == []


def test_failures_are_recorded_and_do_not_stop_the_others(tmp_path):
    sc = fake_scenario(fail_every=3)
    seeds = replication_seeds(sc.seed, 12)
    bad = {i for i, s in enumerate(seeds) if s % 3 == 0}
    assert 0 < len(bad) < 12
    with get_executor("local", workers=2) as ex:
        res = calibrate(sc, 12, out_dir=tmp_path, replicate=normal_replicate, executor=ex, figures=False)
    assert set(res.errors) == {f"rep-{i}" for i in bad}
    assert res.completed == 12 - len(bad)
    err = json.loads((tmp_path / "replications" / f"rep-{min(bad)}.error.json").read_text())
    assert err["seed"] == seeds[min(bad)] and err["error"]["type"] == "ValueError"
    assert "deliberate failure" in err["error"]["message"] and "Traceback" in err["error"]["traceback"]


def test_every_replication_failing_stops_early_with_the_first_error(tmp_path):
    with pytest.raises(CounterfeedError, match=r"first 5 replications all failed; first error .*deliberate"):
        calibrate(fake_scenario(fail_every=1), 50, out_dir=tmp_path, replicate=normal_replicate)
    assert len(list((tmp_path / "replications").glob("*.error.json"))) == 5


def test_executors_give_identical_summaries(tmp_path):
    sc = fake_scenario()
    serial = calibrate(sc, 20, out_dir=tmp_path / "s", replicate=normal_replicate, figures=False)
    with get_executor("local", workers=2) as ex:
        local = calibrate(sc, 20, out_dir=tmp_path / "l", replicate=normal_replicate, executor=ex, figures=False)
    assert serial.summary.equals(local.summary)
    assert serial.records.equals(local.records)


def test_two_calibrations_cannot_share_a_directory_at_once(tmp_path):
    from counterfeed.calibration.store import ReplicationStore

    with ReplicationStore(tmp_path, kind="calibrate", scenario_name="x", digest="d"):
        with pytest.raises(OutputError, match=r"in use by another calibration"):
            ReplicationStore(tmp_path, kind="calibrate", scenario_name="x", digest="d")
    with ReplicationStore(tmp_path, kind="calibrate", scenario_name="x", digest="d") as store:
        (store.dir / ".rep-0.json.tmp-123").write_text("{half")  # as left by a killed writer
    with ReplicationStore(tmp_path, kind="calibrate", scenario_name="x", digest="d") as store:
        assert not list(store.dir.iterdir()) and store.done() == set()


def test_a_resume_whose_remaining_replications_fail_summarizes_the_stored_ones(tmp_path):
    """Stored successes mean the scenario works: the early-abort rule (a broken scenario fails every
    replication alike) does not apply to a resumed run, which reports its failures as a fresh run does."""
    sc = fake_scenario(fail_every=3)
    seeds = replication_seeds(sc.seed, 12)
    bad = {i for i, s in enumerate(seeds) if s % 3 == 0}
    first = calibrate(sc, 12, out_dir=tmp_path, replicate=normal_replicate, figures=False)
    assert set(first.errors) == {f"rep-{i}" for i in bad} and first.completed == 12 - len(bad)
    again = calibrate(sc, 12, out_dir=tmp_path, replicate=normal_replicate, figures=False)  # retries only the bad
    assert set(again.errors) == set(first.errors) and again.completed == first.completed
    assert again.summary.equals(first.summary)
