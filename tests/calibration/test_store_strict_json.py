"""The replication store writes strict JSON (no NaN/Infinity) and reads back exactly what was stored:
an unbounded interval is still (-inf, inf) after a round trip, so coverage and the summary are unchanged,
and a resumed calibration equals a fresh one."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from _fakes import fake_scenario, normal_replicate

from counterfeed.calibration import calibrate, replication_seeds
from counterfeed.calibration.store import ReplicationStore
from counterfeed.calibration.summary import records_frame, summarize
from counterfeed.calibration.sweep import sweep


def _strict(text: str):
    def bad(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=bad)


def unbounded_replicate(scenario_data: dict, seed: int) -> list[dict]:
    """The fake z/t estimates plus a relative lift whose interval is unbounded (both sides every third
    seed, above otherwise, as Fieller's set is), and an estimate with no interval (NaN bounds, NaN p)."""
    out = normal_replicate(scenario_data, seed)
    common = {k: out[0][k] for k in ("metric", "arm", "control", "segment", "level", "truth")}
    both = seed % 3 == 0
    lower = -math.inf if both else out[0]["lower"]
    out.append(dict(estimator="fieller", estimand="relative", point=out[0]["point"], lower=lower,
                    upper=math.inf, p_value=out[0]["p_value"], covered=lower <= common["truth"], **common))
    out.append(dict(estimator="no-interval", estimand="difference", point=math.nan if seed % 2 else 0.1,
                    lower=math.nan, upper=math.nan, p_value=math.nan, covered=None, **common))
    return out


def _expected_frame(scenario, n: int) -> pd.DataFrame:
    """The records as the replicate returned them (what the summary saw when files kept Infinity)."""
    from counterfeed.calibration.engine import slim_estimate

    data = scenario.to_dict()
    recs = [{"name": f"rep-{i}", "index": i, "seed": s,
             "estimates": [slim_estimate(e) for e in unbounded_replicate(data, s)]}
            for i, s in enumerate(replication_seeds(scenario.seed, n))]
    return records_frame(recs)


def test_store_writes_strict_json_and_round_trips(tmp_path):
    rec = {"name": "rep-0", "index": 0, "seed": 1, "elapsed": 0.1,
           "estimates": [{"point": 1.0, "lower": -math.inf, "upper": math.inf, "p_value": math.nan,
                          "covered": True, "cate": {"scores": [1.0, math.nan, np.float64(-np.inf)]}}]}
    with ReplicationStore(tmp_path, kind="calibrate", scenario_name="x", digest="d") as store:
        store.save("rep-0", rec)
        store.save_error("rep-1", {"name": "rep-1", "elapsed": math.inf, "error": {"type": "E"}})
        for p in (tmp_path / "replications").glob("*.json"):
            _strict(p.read_text())  # raises on a bare NaN / Infinity / -Infinity
        assert _strict((tmp_path / "replications" / "rep-0.json").read_text())["estimates"][0]["lower"] is None
        back = store.load()["rep-0"]
        e = back["estimates"][0]
        assert e["lower"] == -math.inf and e["upper"] == math.inf and math.isnan(e["p_value"])
        s = e["cate"]["scores"]
        assert s[0] == 1.0 and math.isnan(s[1]) and s[2] == -math.inf
        assert set(back) == set(rec)  # the marker is not part of the record
        assert store.load_errors()["rep-1"]["elapsed"] == math.inf


def test_old_files_with_bare_infinity_still_load(tmp_path):
    with ReplicationStore(tmp_path, kind="calibrate", scenario_name="x", digest="d") as store:
        old = {"name": "rep-0", "index": 0, "seed": 1, "estimates": [{"lower": -math.inf, "upper": math.inf}]}
        (tmp_path / "replications" / "rep-0.json").write_text(json.dumps(old, allow_nan=True))
        assert store.load()["rep-0"]["estimates"][0] == {"lower": -math.inf, "upper": math.inf}


def test_calibrate_with_unbounded_intervals(tmp_path):
    sc, n = fake_scenario(), 12
    res = calibrate(sc, n, out_dir=tmp_path, replicate=unbounded_replicate, figures=False)
    files = sorted((tmp_path / "replications").glob("rep-*.json"))
    assert len(files) == n
    for p in [*files, tmp_path / "calibration.json", tmp_path / "store.json"]:
        _strict(p.read_text())
    # the same records, coverage and summary as the replicate's own values give
    expected = _expected_frame(sc, n)
    got = res.records[expected.columns]
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected, check_dtype=False)
    pd.testing.assert_frame_equal(res.summary, summarize(expected))
    s = res.summary.set_index("estimator")
    assert s.loc["fieller", "coverage"] == 1.0 and s.loc["fieller", "replications"] == n
    assert np.isnan(s.loc["no-interval", "coverage"])
    fl = res.records[res.records.estimator == "fieller"]
    assert (fl["upper"] == math.inf).all() and (fl["lower"] == -math.inf).any()  # both kinds exercised


def test_resumed_calibration_equals_a_fresh_one(tmp_path):
    sc, n = fake_scenario(), 9
    fresh = calibrate(sc, n, out_dir=tmp_path / "fresh", replicate=unbounded_replicate, figures=False)
    part = tmp_path / "part"
    calibrate(sc, 5, out_dir=part, replicate=unbounded_replicate, figures=False)  # "interrupted" after 5
    (part / "replications" / "rep-1.json").unlink()  # and one lost
    resumed = calibrate(sc, n, out_dir=part, replicate=unbounded_replicate, figures=False)
    assert sorted(resumed.report.computed) == sorted(["rep-1", *(f"rep-{i}" for i in range(5, n))])
    pd.testing.assert_frame_equal(resumed.summary, fresh.summary)
    pd.testing.assert_frame_equal(resumed.records, fresh.records)


def test_sweep_files_are_strict_and_keep_unbounded_intervals(tmp_path):
    sc = fake_scenario()
    res = sweep(sc, [("population.users", [100, 200])], 3, out_dir=tmp_path, replicate=unbounded_replicate,
                figures=False)
    files = sorted((tmp_path / "replications").glob("p*-rep-*.json"))
    assert len(files) == 6
    for p in [*files, tmp_path / "sweep.json"]:
        _strict(p.read_text())
    fl = res.records[res.records.estimator == "fieller"]
    assert len(fl) == 6 and (fl["upper"] == math.inf).all()
    for _, row in fl.iterrows():  # the bounds the replicate returned, -inf included
        data = sc.with_overrides({"population.users": int(row["population.users"])}).to_dict()
        (want,) = [e for e in unbounded_replicate(data, int(row["seed"])) if e["estimator"] == "fieller"]
        assert (row["lower"], row["upper"]) == (want["lower"], want["upper"])
    assert (res.summary.loc[res.summary.estimator == "fieller", "coverage"] == 1.0).all()


@pytest.mark.parametrize("key", ["a/b", "c~d"])
def test_pointer_escaping(tmp_path, key):
    with ReplicationStore(tmp_path, kind="sweep", scenario_name="x", digest="d") as store:
        store.save("p0-rep-0", {"index": 0, key: [math.inf]})
        assert store.load()["p0-rep-0"][key] == [math.inf]
