"""Defects of tester17's report on the twin (H2-H5, M3, M8-M13, L3-L6, L9): each a regression test."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from counterfeed.errors import DataError
from counterfeed.twin.cli import twin

RUN = {"batch_window": "6h"}


def _load(frame, **kw):
    from counterfeed.twin.data import twin_log_from_frame

    return twin_log_from_frame(frame, source="log", horizon=10.0, run=RUN, **kw)


def _arrays(log):
    keys = ("user", "user_ids", "session", "item", "item_ids", "position", "click", "propensity", "dwell", "time",
            "session_user", "session_time", "session_index")
    return {k: np.asarray(getattr(log, k)) for k in keys}


def _reordered(frame):
    """The same impressions in another valid order: by user, then time (each user's rows stay in order)."""
    return frame.sample(frac=1, random_state=3).sort_values(["user", "time", "position"], kind="stable")


# -- H2: nothing depends on the order of the log's rows --------------------------------------------------

def test_row_order_does_not_change_the_log(log_frame):
    a, b = _arrays(_load(log_frame)), _arrays(_load(_reordered(log_frame).reset_index(drop=True)))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_a_simulated_log_keeps_its_order_and_numbering(log_frame):
    """The simulator writes rows in the canonical order, so a run's log (the validation benchmark's path)
    keeps its item numbering (first appearance) and its rows: its fits are unchanged."""
    log = _load(log_frame)
    np.testing.assert_array_equal(log.item_ids, pd.unique(log_frame["item"]))
    np.testing.assert_array_equal(log.click, log_frame["click"].to_numpy(float))
    np.testing.assert_array_equal(log.time, log_frame["time"].to_numpy(float))


@pytest.fixture(scope="module")
def order_twins(log_frame, tmp_path_factory):
    from counterfeed.twin.fit import FitSettings, fit_twin
    from counterfeed.twin.store import write_twin

    out = []
    for i, frame in enumerate((log_frame, _reordered(log_frame).reset_index(drop=True))):
        log = _load(frame, logging={"recommender": "random"}, slate_size=5)
        meta, reps = fit_twin(log, FitSettings(dims=2, bootstrap=0, epochs=2, n_topics=3, seed=1))
        out.append(write_twin(tmp_path_factory.mktemp(f"order{i}") / "twin", meta, reps))
    return out


def test_row_order_does_not_change_predictions(order_twins):
    from counterfeed.twin.evaluate import evaluate_twin

    got = [[(e.metric, e.logging_value, e.target_value) for e in
            evaluate_twin(t, {"recommender": "popularity"}, users=60, seed=2)] for t in order_twins]
    assert got[0] == got[1]


def test_tied_cold_start_is_warned(order_twins):
    """popularity starts with zero counts: everyone gets the twin's lowest item codes, which follow the
    log's order, not the real system's; the effect says so. A random target does not tie."""
    from counterfeed.twin.evaluate import evaluate_twin

    def warned(policy):
        return [any("showed the same items to each of its first" in w for w in e.warnings)
                for e in evaluate_twin(order_twins[0], {"recommender": policy}, users=60, seed=2)]

    assert all(warned("popularity"))
    assert not any(warned("random"))


# -- H3: a twin without bootstrap replicates simulates the users asked for ---------------------------------

def test_no_bootstrap_twin_simulates_all_the_users(order_twins):
    from counterfeed.twin.evaluate import evaluate_twin

    from counterfeed.twin.store import read_meta

    said = []
    evaluate_twin(order_twins[0], {"recommender": "popularity"}, users=50, say=said.append)
    n_log = read_meta(order_twins[0])["n_train_users"]
    sizes = [int(m.split("simulated ")[1].split()[0]) for m in said]
    assert all(m.startswith("replicate 0, world ") for m in said)  # all of them to the point fit
    assert set(sizes) == {min(n_log, 50)} and 50 - n_log < sum(sizes) <= 50  # whole worlds of the log's size


# -- L6: replicates and users that cannot be honoured are errors ---------------------------------------------

def test_too_many_replicates_or_too_few_users_are_errors(twin_dir):
    from counterfeed.twin.evaluate import evaluate_twin

    with pytest.raises(DataError, match=r"--replicates 5: the twin .* has 3 bootstrap replicates"):
        evaluate_twin(twin_dir, {"recommender": "popularity"}, replicates=5)
    with pytest.raises(DataError, match=r"--users 5: too few for 5 worlds.*give at least 10"):
        evaluate_twin(twin_dir, {"recommender": "popularity"}, users=5)


# -- H5, M13: a twin directory that is corrupt, inconsistent or of another format ----------------------------

def _copy(twin_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(twin_dir, dst)
    return dst


def _evaluate_cli(path, *extra):
    return CliRunner().invoke(twin, ["evaluate", str(path), "--policy", "popularity", "--no-ope", *extra])


def test_truncated_replicate_is_one_error_before_simulating(twin_dir, tmp_path):
    d = _copy(twin_dir, tmp_path)
    (d / "rep-2.npz").write_bytes((twin_dir / "rep-2.npz").read_bytes()[:3000])
    res = _evaluate_cli(d)
    assert res.exit_code == 2, res.output
    assert "rep-2.npz: not a readable twin replicate (BadZipFile" in res.output
    assert "simulated" not in res.output and "Traceback" not in res.output


def test_replicate_shape_and_format_are_checked(twin_dir, tmp_path):
    from counterfeed.twin.store import read_meta, read_replicate

    d = _copy(twin_dir, tmp_path)
    z = dict(np.load(d / "rep-0.npz"))
    z["item"] = z["item"][:5]
    np.savez(d / "rep-0.npz", **z)
    n = read_meta(d)["n_items"]
    with pytest.raises(DataError, match=rf"rep-0.npz: array 'item' has shape \(5, 4\); expected \({n}, 4\)"):
        read_replicate(d, 0)
    assert _evaluate_cli(d).exit_code == 2
    meta = json.loads((d / "twin.json").read_text())
    meta["format"] = 99
    (d / "twin.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=r"twin.json: field 'format' is 99; this version .* reads twin format 1"):
        read_meta(d)


def test_empty_item_topic_is_one_error(tmp_path):
    from counterfeed.twin.items import read_items

    p = tmp_path / "items.csv"
    pd.DataFrame({"id": ["a", "b", "c"], "topic": ["x", None, "y"]}).to_csv(p, index=False)
    with pytest.raises(DataError, match=r"items.csv: column 'topic' row 2 \(item b\): empty"):
        read_items(str(p), np.array(["a", "b", "c"], dtype=object))


# -- M3: what building a twin population rejects, validation rejects ------------------------------------------

def test_scenario_validation_rejects_a_broken_twin(twin_dir, tmp_path):
    from counterfeed.core.scenario import Scenario
    from counterfeed.errors import CounterfeedError

    def scenario(path, **pop):
        return {"name": "t", "population": {"twin": str(path), **pop},
                "experiment": {"arms": {"a": {"recommender": "random"}, "b": {"recommender": "popularity"}},
                               "duration": "2d"}, "metrics": ["clicks"], "analysis": []}

    Scenario.from_dict(scenario(twin_dir))
    with pytest.raises(CounterfeedError, match="population.dimensions is 2 but the twin has 4 dimensions"):
        Scenario.from_dict(scenario(twin_dir, dimensions=2))
    d = _copy(twin_dir, tmp_path)
    (d / "rep-1.npz").write_bytes(b"not a zip")
    with pytest.raises(CounterfeedError, match="rep-1.npz: not a readable twin replicate"):
        Scenario.from_dict(scenario(d, replicate=1))
    (d / "rep-0.npz").unlink()
    with pytest.raises(CounterfeedError, match="no replicate 0"):
        Scenario.from_dict(scenario(d))


# -- H4: a run with a pre-period ------------------------------------------------------------------------------

def test_pre_period_is_recorded_and_replayed(run_dir, twin_dir, tmp_path):
    import yaml

    from counterfeed.twin.data import load_twin_log
    from counterfeed.twin.evaluate import PRE_ARM, twin_scenario

    fake = tmp_path / "run"
    (fake / "events" / "all-treatment").mkdir(parents=True)
    shutil.copy(run_dir / "events" / "all-control" / "impressions.parquet", fake / "events" / "all-treatment")
    sc = yaml.safe_load((run_dir / "scenario.yaml").read_text())
    sc["experiment"].update(pre_period="3d", duration="7d")
    (fake / "scenario.yaml").write_text(yaml.safe_dump(sc))
    log = load_twin_log(fake, world="all-treatment")
    run = log.extra["run"]
    assert run["pre_period"] == 3.0 and run["pre_period_policy"] == {"recommender": "random"}
    assert log.logging == {"recommender": "popularity"} and log.horizon == 10.0
    d = _copy(twin_dir, tmp_path)
    meta = json.loads((d / "twin.json").read_text())
    meta["run"] = {**meta["run"], "pre_period": 3.0, "pre_period_policy": {"recommender": "random"}}
    (d / "twin.json").write_text(json.dumps(meta))
    exp = twin_scenario(d, 0, 10, {"logging": {"recommender": "popularity"}, "t": {"recommender": "mmr"}})
    exp = exp["experiment"]
    assert exp["pre_period"] == 3.0 and exp["duration"] == pytest.approx(meta["horizon"] - 3.0)
    assert exp["control"] == PRE_ARM and exp["arms"][PRE_ARM] == {"recommender": "random"}
    assert exp["arms"]["logging"] == {"recommender": "popularity"}


# -- M8, M11, M12: twin check --------------------------------------------------------------------------------

def test_check_of_a_plain_file_twin_with_logging_policy(order_twins, log_frame, tmp_path):
    path = tmp_path / "log.parquet"
    log_frame.to_parquet(path)
    d = order_twins[0]
    meta = json.loads((d / "twin.json").read_text())
    assert meta["logging"] == {"recommender": "random"}
    meta["logging"] = None  # as fitted from a plain file
    d2 = tmp_path / "plain"
    shutil.copytree(d, d2)
    (d2 / "twin.json").write_text(json.dumps(meta))
    res = CliRunner().invoke(twin, ["check", str(d2), str(path), "--users", "40", "--quiet"])
    assert res.exit_code == 2 and "--logging-policy" in res.output
    res = CliRunner().invoke(twin, ["check", str(d2), str(path), "--users", "40", "--quiet",
                                    "--logging-policy", "random"])
    assert res.exit_code == 0, res.output
    assert "distance" in res.output and "tolerance" in res.output
    assert "click share of the top 10% of items" in res.output
    res = CliRunner().invoke(twin, ["check", str(d2), str(path), "--users", "40", "--json", "--quiet",
                                    "--logging-policy", "random"])
    pop = [a for a in json.loads(res.output)["aspects"] if a["aspect"] == "item_popularity"][0]
    assert 0 < pop["logged_mean"] <= 1 and 0 < pop["twin_mean"] <= 1
    other = tmp_path / "other.parquet"
    log_frame[log_frame["user"] != log_frame["user"].iloc[0]].to_parquet(other)
    res = CliRunner().invoke(twin, ["check", str(d2), str(other), "--logging-policy", "random"])
    assert res.exit_code == 2 and "not the log the twin was fitted on" in res.output


# -- M9, L3: the time unit and the logged ids in messages ------------------------------------------------------

def test_wrong_time_unit_is_named_at_fit(log_frame):
    from counterfeed.twin.data import twin_log_from_frame

    f = log_frame.assign(time=log_frame["time"] * 86400)
    with pytest.raises(DataError, match=r"column 'time' spans .* days read as days.*--time-unit seconds"):
        twin_log_from_frame(f, source="log")


def test_messages_name_the_logged_user_id():
    from counterfeed.twin.data import twin_log_from_frame

    rows = [{"round": f"r{u}{s}", "user": f"u{u}", "time": float(s), "item": "a", "position": 0, "reward": 1,
             "propensity": 0.5} for u in (7, 3) for s in (1, 0)]
    with pytest.raises(DataError, match="timestamps out of order for user u3: 0 comes after 1"):
        twin_log_from_frame(pd.DataFrame(rows), source="log")
    with pytest.raises(DataError, match=r"only one user \(u7\)"):
        twin_log_from_frame(pd.DataFrame(rows[:1]), source="log")


# -- M10: target tables --------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, message", [
    ([("a", 0, 0.7), ("b", 0, 0.7)], r"position 0 sum to 1.4; expected 1"),
    ([("a", 0, 0.5), ("zz", 0, 0.5)], r"column 'item' row 2: item 'zz' is not an item of the twin"),
    ([("a", 0, 0.5), ("a", 0, 0.5)], r"row 2: item 'a' at position 0 is listed twice"),
    ([("a", 0, -0.1), ("b", 0, 1.1)], r"column 'prob' row 1: -0.1; expected"),
])
def test_target_table_errors(tmp_path, rows, message):
    from counterfeed.twin.policy import table_from_file

    p = tmp_path / "t.csv"
    pd.DataFrame(rows, columns=["item", "position", "prob"]).to_csv(p, index=False)
    with pytest.raises(DataError, match=message):
        table_from_file(str(p), ["a", "b"], 1)


# -- L5, L9: the CLI names the flags and says the undercoverage once -----------------------------------------------

def test_policy_errors_name_the_flags(twin_dir):
    assert _evaluate_cli(twin_dir, "--policy-option", "bogus=1").output.startswith("Error: --policy-option bogus:")
    res = CliRunner().invoke(twin, ["evaluate", str(twin_dir), "--policy", "nope", "--no-ope"])
    assert res.exit_code == 2 and res.output.startswith("Error: --policy: unknown recommender 'nope'")
    res = _evaluate_cli(twin_dir, "--logging-policy", "nope")
    assert res.output.startswith("Error: --logging-policy: unknown recommender 'nope'")


def test_model_warning_printed_once(twin_dir):
    res = _evaluate_cli(twin_dir, "--users", "16", "--quiet")
    assert res.exit_code == 0, res.output
    assert res.output.count("the interval assumes the twin's user model holds") == 1


# -- L1, L4: warnings as plain lines; a type error names its row ------------------------------------------------

def test_type_error_names_the_row(tmp_path):
    from counterfeed.twin.data import load_twin_log

    rows = [{"round": f"r{u}{s}", "user": u, "time": float(s), "item": "a", "position": 0,
             "reward": "yes" if (u, s) == (1, 1) else 1, "propensity": 0.5} for u in (0, 1) for s in (0, 1)]
    p = tmp_path / "log.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    with pytest.raises(DataError, match=r"column 'reward' has type string; expected numbers \(row 4: 'yes'\)"):
        load_twin_log(p)


def test_warnings_are_plain_lines():
    import warnings

    from counterfeed.twin.cli import _err

    def warn():
        warnings.warn("something to know", UserWarning)

    shown = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = lambda m, c, f, n, file=None, line=None: shown.append(
            warnings.formatwarning(m, c, f, n))
        _err(warn)
        assert "UserWarning" in warnings.formatwarning("x", UserWarning, "f.py", 1)  # restored after the CLI call
    assert shown == ["warning: something to know\n"]
