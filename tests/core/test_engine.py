import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from counterfeed.core.experiment import assign
from counterfeed.core.plugins import get_registry
from counterfeed.core.runner import run
from counterfeed.errors import PluginError
from tests.conftest import small_scenario
from tests.plugins.oracle import TestPlugin

METRICS = ["impressions", "clicks", "ctr", "sessions", "dwell", "retained", "churned"]


def test_aa_worlds_have_exactly_zero_per_user_differences():
    sc = small_scenario(**{"experiment.arms.treatment": {"recommender": "popularity"}})
    res = run(sc, write=False, workers=1)
    out = res.outcomes
    a = out[out.world == "all-control"].set_index("user")[METRICS]
    b = out[out.world == "all-treatment"].set_index("user")[METRICS]
    pd.testing.assert_frame_equal(a, b)
    assert (res.truth.query("estimand == 'difference'").value.fillna(0) == 0).all()


def test_rerun_gives_identical_outcomes_events_and_estimates():
    sc = small_scenario()
    r1 = run(sc, write=False, workers=1, keep_events=True)
    r2 = run(sc, write=False, workers=1, keep_events=True)
    pd.testing.assert_frame_equal(r1.outcomes, r2.outcomes)
    for w in r1.events:
        for col, v in r1.events[w].sessions.items():
            assert np.array_equal(v, r2.events[w].sessions[col]), (w, col)
        assert np.array_equal(r1.events[w].impressions.item, r2.events[w].impressions.item)
    assert [e.to_dict() for e in r1.estimates] == [e.to_dict() for e in r2.estimates]


def test_results_do_not_depend_on_the_number_of_worker_processes():
    sc = small_scenario()
    serial = run(sc, write=False, workers=1)
    parallel = run(sc, write=False, workers=2)
    pd.testing.assert_frame_equal(serial.outcomes, parallel.outcomes)


def test_a_policy_better_by_construction_has_a_positive_true_effect(monkeypatch):
    reg = get_registry()
    name = reg.register_plugin(TestPlugin(), name="test-oracle-plugin")
    try:
        from counterfeed.core.contracts import RecommenderContext
        from counterfeed.core.population import build_population
        from counterfeed.core.randomness import Keys

        sc = small_scenario(**{"experiment.arms.treatment": {"recommender": "test-oracle"}})
        prefs = build_population(sc.population, Keys(sc.seed)).preferences
        monkeypatch.setattr(RecommenderContext, "extra_preferences", prefs, raising=False)
        res = run(sc, write=False, workers=1)
    finally:
        reg.unregister_plugin(name)
    t = res.truth.query("segment.isna() and estimand == 'difference'", engine="python").set_index("metric").value
    assert t["clicks"] > 0 and t["ctr"] > 0 and t["dwell"] > 0


def test_assignment_is_deterministic_and_balanced():
    a = assign(100_000, {"c": 0.5, "t": 0.3, "u": 0.2}, "salt", 3)
    assert np.array_equal(a, assign(100_000, {"c": 0.5, "t": 0.3, "u": 0.2}, "salt", 3))
    share = np.bincount(a) / a.size
    # binomial SD of a share with n=1e5 is <= 0.0016; 4 SD
    assert np.allclose(share, [0.5, 0.3, 0.2], atol=0.0065)
    assert not np.array_equal(a, assign(100_000, {"c": 0.5, "t": 0.3, "u": 0.2}, "other", 3))


def test_run_directory_contents(tmp_path):
    sc = small_scenario()
    res = run(sc, output_dir=tmp_path, write=True, workers=1)
    d = res.run_dir
    assert d.parent == tmp_path and d.name.startswith("small-")
    for f in ("scenario.yaml", "manifest.json", "outcomes.parquet", "timeseries.parquet", "truth.parquet",
              "estimates.json", "estimates.csv", "events/ab/sessions.parquet", "events/ab/impressions.parquet",
              "events/all-control/sessions.parquet", "events/all-treatment/impressions.parquet"):
        assert (d / f).is_file(), f
    man = json.loads((d / "manifest.json").read_text())
    assert man["seed"] == sc.seed and man["complete"] and man["worlds"] == ["ab", "all-control", "all-treatment"]
    assert {"simulate_s", "total_s"} <= set(man["timings"]) and man["versions"]["numpy"]
    assert any(p["name"] == "popularity" and p["source"] == "builtin" for p in man["plugins"])
    imp = pd.read_parquet(d / "events/ab/impressions.parquet")
    assert ((imp.propensity > 0) & (imp.propensity <= 1)).all()
    # nothing half-written is left next to it
    assert [p.name for p in tmp_path.iterdir()] == [d.name]
    from counterfeed.core.results import RunResult

    back = RunResult.load(d)
    assert len(back.estimates) == len(res.estimates)
    pd.testing.assert_frame_equal(back.outcomes, res.outcomes)


def test_random_policy_propensities_match_logged_frequencies():
    # 300 users x ~4 sessions x 5 slots: every logged propensity is exactly 1/items for uniform slates
    sc = small_scenario()
    res = run(sc, write=False, workers=1, keep_events=True)
    imp = res.events["all-treatment"].impressions
    exp_mask = imp.time >= sc.experiment.pre_period
    assert np.allclose(imp.propensity[exp_mask], 1 / 120)


@pytest.mark.parametrize("rec,pattern", [
    ("test-raising", r"plugin 'test-raising' in recommend: raised ValueError: boom"),
    ("test-bad-shape", r"plugin 'test-bad-shape' in recommend: slate items must have shape"),
])
def test_plugin_faults_name_the_plugin_and_hook_and_publish_nothing(tmp_path, rec, pattern):
    reg = get_registry()
    name = reg.register_plugin(TestPlugin(), name="test-fault-plugin")
    try:
        sc = small_scenario(**{"experiment.arms.treatment": {"recommender": rec}})
        with pytest.raises(PluginError, match=pattern):
            run(sc, output_dir=tmp_path, write=True, workers=1)
    finally:
        reg.unregister_plugin(name)
    assert list(tmp_path.iterdir()) == []


def test_pooled_training_and_segments_run():
    sc = small_scenario(**{"experiment.training": "pooled",
                           "population.segments": {"a": {"share": 0.5, "activity": 2.0}, "b": {"share": 0.5}}})
    res = run(sc, write=False, workers=1)
    assert set(res.truth.segment.dropna()) == {"a", "b"}


def test_arms_do_not_influence_each_other_in_the_ab_world():
    # Changing one arm's policy must leave the other arms' users untouched: their training logs hold
    # the shared pre-period history and their own arm's data only (the request-time rule at the
    # experiment start keeps the last pre-period requests on the control policy).
    arms = {"control": {"recommender": "popularity"}, "mf": {"recommender": "matrix-factorization", "factors": 8},
            "other": {"recommender": "random"}}
    split = {"control": 0.34, "mf": 0.33, "other": 0.33}
    r1 = run(small_scenario(**{"experiment.arms": arms, "experiment.split": split}), write=False, workers=1)
    arms2 = {**arms, "other": {"recommender": "popularity", "exploration": "epsilon", "epsilon": 0.3}}
    r2 = run(small_scenario(**{"experiment.arms": arms2, "experiment.split": split}), write=False, workers=1)

    def users_of(r, arm):
        o = r.outcomes
        return o[(o.world == "ab") & (o.arm == arm)][METRICS].reset_index(drop=True)

    for arm in ("control", "mf"):
        pd.testing.assert_frame_equal(users_of(r1, arm), users_of(r2, arm))


def test_five_identical_arms_with_a_pre_period_and_weighted_training_have_zero_truth():
    # issue 14 item 2: the last pre-period window's feedback reached only the control arm, so
    # identically configured arms got different models (this seed gave 24 nonzero true effects)
    arms = {a: {"recommender": "popularity"} for a in ("control", "b", "c", "d", "e")}
    sc = small_scenario(**{"experiment.arms": arms, "experiment.split": {a: 0.2 for a in arms},
                           "experiment.training": "weighted", "experiment.retrain_every": None, "seed": 5})
    res = run(sc, write=False, workers=1)
    out = res.outcomes
    base = out[out.world == "all-control"].set_index("user")[METRICS]
    for a in ("b", "c", "d", "e"):
        pd.testing.assert_frame_equal(base, out[out.world == f"all-{a}"].set_index("user")[METRICS])
    assert (res.truth.query("estimand == 'difference'").value.fillna(0) == 0).all()


def _report_days(reporter):
    for day in (0.5, 1.0, 2.5):
        reporter(day)
    return os.getpid()


def test_world_progress_reaches_the_display_from_worker_processes():
    from counterfeed.core.executors import get_executor
    from counterfeed.core.progress import WorldProgress

    with WorldProgress(["ab", "all-control"], 3.0, enabled=True, workers=True) as show:
        with get_executor("local", workers=2) as ex:
            show.start()
            pids = [pid for _, pid in ex.submit_all(_report_days, [show.reporter("ab")])]
        deadline = time.time() + 10
        while show.days["ab"] < 2.5 and time.time() < deadline:
            time.sleep(0.05)
    assert pids[0] != os.getpid()  # reported from another process, through the queue
    assert show.days == {"ab": 2.5, "all-control": 0.0}


@pytest.mark.parametrize("flags, shown", [(["--json"], True), (["--json", "--workers", "2"], True),
                                          (["--json", "--quiet"], False)])
def test_run_shows_per_world_progress_on_stderr_unless_quiet(tmp_path, flags, shown):
    import yaml

    from tests.conftest import SMALL

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**SMALL, "output": {"dir": str(tmp_path / "runs"), "report": False}}))
    r = subprocess.run([sys.executable, "-m", "counterfeed", "run", str(path), *flags], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["run_dir"]  # stdout stays pure JSON
    for world in ("ab", "all-control", "all-treatment"):
        assert (f"world {world}: " in r.stderr) is shown
    assert ("6.0/6 simulated days" in r.stderr) is shown


def test_nothing_outside_the_simulation_touches_the_worlds_private_state():
    import re
    from pathlib import Path

    import counterfeed

    root = Path(counterfeed.__file__).parent
    for path in root.rglob("*.py"):
        if path.name == "simulation.py":
            continue
        text = path.read_text()
        assert not re.search(r"\bworld\._\w", text), f"{path} reads a private attribute of the world"
        assert not re.search(r"\b(user_model|um)\.state_\b", text), f"{path} keeps user state on the plugin"
