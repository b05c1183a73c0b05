"""Issue 14 items 3-6: handed cases, built-in stochastic targets, honest intervals, strict JSON, warnings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from counterfeed.cli import main
from counterfeed.errors import DataError, PluginError
from counterfeed.ope import (Target, check_target_evaluable, evaluate, from_arrays, load_log, load_target,
                             target_from_recommender)
from counterfeed.ope.evaluate import bootstrap_interval
from counterfeed.ope.reward import cross_fit

CASES = Path("/work/shared/cases/2026-11-29")
DATA = Path(__file__).resolve().parents[1] / "data" / "ope_cases"


def _case(name: str) -> Path:
    """The handed case folder (a copy ships in tests/data/ope_cases so the test runs anywhere)."""
    return DATA / name if (DATA / name).is_dir() else CASES / name


def _strict(text: str):
    """json.loads that rejects NaN/Infinity, as strict parsers do."""
    def bad(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=bad)


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(["ope", *map(str, args)])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _run_ok(capsys, *args):
    try:
        main(["ope", *map(str, args)])
    except SystemExit as exc:  # pragma: no cover - shows the error in the failure
        raise AssertionError(capsys.readouterr().err) from exc
    return capsys.readouterr().out


def test_ope_no_common_support(capsys):
    d = _case("ope-no-common-support")
    code, out, err = _cli(capsys, d / "log.csv", "--target-probs", d / "target.csv", "--json")
    assert code == 2 and out == ""
    assert "target.csv" in err and "matches an item of the log" in err
    # the same target with the unseen item present in the item list: still no support -> unidentified
    log = load_log(str(d / "log.csv"))
    with pytest.raises(DataError, match="no common support.*not identified"):
        evaluate(log, Target(np.zeros(len(log)), None), ["ips", "snips"])


@pytest.mark.parametrize("table", ["target_float.csv", "target_int.csv"])
def test_ope_float_item_ids(capsys, table):
    d = _case("ope-float-item-ids")
    out = _strict(_run_ok(capsys, d / "log.csv", "--target-probs", d / table, "--estimators", "ips,snips",
                          "--json"))
    assert out[0]["estimator"] == "ips" and out[0]["value"] == pytest.approx(0.75, abs=1e-12)
    assert out[1]["value"] == pytest.approx(0.75, abs=1e-12)


def test_target_table_matching_no_logged_item_is_an_error(tmp_path):
    d = _case("ope-float-item-ids")
    log = load_log(str(d / "log.csv"))
    for items in (["a", "b"], [7, 8], [0.5, 1.5]):
        p = tmp_path / "t.csv"
        pd.DataFrame({"item": items, "position": [0, 0], "prob": [0.5, 0.5]}).to_csv(p, index=False)
        with pytest.raises(DataError, match="t.csv"):
            load_target(str(p), log)


def _uniform_log_csv(path: Path, n_rounds=2000, n_items=80, k=3, seed=3) -> float:
    """A uniform-random log over n_items and k positions (propensity 1/n_items); returns its click rate."""
    rng = np.random.default_rng(seed)
    items = np.stack([rng.choice(n_items, k, replace=False) for _ in range(n_rounds)])
    theta = np.linspace(0.02, 0.4, n_items)
    clicks = rng.random((n_rounds, k)) < theta[items] * np.array([1.0, 0.7, 0.5])
    df = pd.DataFrame({"round": np.repeat(np.arange(n_rounds), k), "item": items.ravel(),
                       "position": np.tile(np.arange(k), n_rounds), "reward": clicks.ravel().astype(int),
                       "propensity": 1.0 / n_items})
    df.to_csv(path, index=False)
    return float(df["reward"].mean())


def test_random_target_ips_equals_logged_click_rate_exactly(capsys, tmp_path):
    lp = tmp_path / "uniform.csv"
    ctr = _uniform_log_csv(lp)
    out = _strict(_run_ok(capsys, lp, "--policy", "random", "--estimators", "ips,snips", "--json"))
    assert out[0]["value"] == ctr  # every weight is (1/80) / (1/80) = 1 exactly
    assert out[1]["value"] == pytest.approx(ctr, rel=1e-12)
    assert out[0]["diagnostics"]["mean_weight"] == 1.0 and out[0]["diagnostics"]["warnings"] == []


def test_popularity_epsilon_target(capsys, tmp_path):
    lp = tmp_path / "uniform.csv"
    _uniform_log_csv(lp, n_rounds=600)
    out = _strict(_run_ok(capsys, lp, "--policy", "popularity", "--policy-option", "exploration=epsilon",
                          "--policy-option", "epsilon=0.2", "--estimators", "ips,dr", "--json"))
    log = load_log(str(lp))
    t = target_from_recommender(log, "popularity", {"exploration": "epsilon", "epsilon": 0.2})
    # logged items get 1 - eps (greedy at its position), eps / 77 (outside the top 3) or 0
    assert set(np.round(np.unique(t.prob), 9)) <= {0.0, 0.8, round(0.2 / 77, 9)}
    assert out[0]["value"] == pytest.approx(float(np.mean(t.prob * 80 * log.reward)))


def test_check_target_evaluable(registry):
    check_target_evaluable("random")
    check_target_evaluable("thompson", {"propensity_samples": 100})
    with pytest.raises(PluginError, match="test-noprops.*does not implement action_probabilities"):
        check_target_evaluable("test-noprops", registry=registry)


def _uniform_log(n_rounds, n_items=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    items = np.stack([rng.choice(n_items, k, replace=False) for _ in range(n_rounds)])
    theta = np.linspace(0.05, 0.6, n_items)
    clicks = rng.random((n_rounds, k)) < theta[items]
    log = from_arrays(round=np.repeat(np.arange(n_rounds), k), item=items.ravel(),
                      position=np.tile(np.arange(k), n_rounds), reward=clicks.ravel().astype(float),
                      propensity=np.full(n_rounds * k, 1.0 / n_items))
    return log, theta


def _table_target(log, probs):
    """A context-free target with ``probs`` over items 0..7 at every position."""
    k = log.n_positions
    df = pd.DataFrame({"item": np.tile(np.arange(probs.size), k), "position": np.repeat(np.arange(k), probs.size),
                       "prob": np.tile(probs, k)})
    from counterfeed.ope import target_from_table
    return target_from_table(log, df)


def test_dm_interval_includes_the_reward_models_error():
    log, theta = _uniform_log(1500)
    probs = np.r_[np.zeros(6), 0.5, 0.5]
    target = _table_target(log, probs)
    (dm,) = evaluate(log, target, ["dm"])
    assert dm.interval.startswith("bootstrap (reward model refitted")
    # the same bootstrap with the model held fixed (conditional on it) is narrower
    from counterfeed.core.randomness import Keys
    from counterfeed.ope.estimators import DirectMethod, Units
    model = cross_fit(log, folds=5, rng=Keys(0).numpy_generator("ope", "folds"))
    u = Units(w=target.prob / log.propensity, r=log.reward, rnd=log.round, n_rounds=log.n_rounds)
    u.q, u.dm = model.predict_logged(log), model.expected_under(log, target.support)
    _, se_fixed, lo, hi = bootstrap_interval(DirectMethod().terms(u), 0.95, 200, np.random.default_rng(1))
    assert dm.se > 3 * se_fixed, (dm.se, se_fixed)
    truth = float(probs @ theta)  # 0.5 (theta_6 + theta_7), rewards do not depend on position here
    assert dm.lower <= truth <= dm.upper


def test_switch_dr_that_is_dm_says_so_and_gets_dms_interval():
    log, _ = _uniform_log(400)
    target = _table_target(log, np.r_[np.zeros(6), 0.5, 0.5])  # weights 4 where shown
    dm, sw = evaluate(log, target, ["dm", "switch-dr"], tau=1.0)
    assert sw.value == pytest.approx(dm.value)
    assert sw.interval == dm.interval and (sw.lower, sw.upper) == pytest.approx((dm.lower, dm.upper))
    assert any("switch-dr equals DM here" in w for w in sw.diagnostics["warnings"])


def test_no_interval_from_a_single_round(capsys, tmp_path):
    p = tmp_path / "one.csv"
    pd.DataFrame({"round": [1, 1], "item": [0, 1], "position": [0, 1], "reward": [1, 0],
                  "propensity": [0.5, 0.5]}).to_csv(p, index=False)
    t = tmp_path / "t.csv"
    pd.DataFrame({"item": [0, 1, 0, 1], "position": [0, 0, 1, 1], "prob": [0.5] * 4}).to_csv(t, index=False)
    for extra in ([], ["--bootstrap", "50"]):
        out = _strict(_run_ok(capsys, p, "--target-probs", t, "--estimators", "ips,snips,dm", "--json", *extra))
        for r in out:
            assert r["lower"] is None and r["upper"] is None and r["interval"] == "none"
            assert any("at least 2 independent rounds" in w for w in r["diagnostics"]["warnings"])


def test_diagnostics_outside_safe_ranges_warn(capsys, tmp_path):
    log, _ = _uniform_log(2000)
    # half the target's mass on an item the log never shows (id 9), the rest on item 7
    probs = np.r_[np.zeros(7), 0.5]
    k = log.n_positions
    df = pd.DataFrame({"item": np.tile([7, 9], k), "position": np.repeat(np.arange(k), 2), "prob": 0.5})
    from counterfeed.ope import target_from_table
    res = {r.estimator: r for r in evaluate(log, target_from_table(log, df), ["ips", "snips", "dr"], clip=2.0)}
    w = " | ".join(res["ips"].diagnostics["warnings"])
    assert "mean importance weight" in w and "items the log never shows" in w and "clipped" in w
    assert "about 49% of the target's probability" in w and "NOT IDENTIFIED from this log" in w  # 1 - 0.512
    assert res["ips"].diagnostics["unsupported_target_mass"] == pytest.approx(0.5)
    del probs
    # the table and JSON of the CLI carry the same warning lines
    lp, tp = tmp_path / "log.csv", tmp_path / "t.csv"
    pd.DataFrame({"round": log.round_ids[log.round], "item": log.item, "position": log.position,
                  "reward": log.reward, "propensity": log.propensity}).to_csv(lp, index=False)
    df.to_csv(tp, index=False)
    text = _run_ok(capsys, lp, "--target-probs", tp)
    assert "warning (ips): mean importance weight" in text
    out = _strict(_run_ok(capsys, lp, "--target-probs", tp, "--json"))
    assert any("mean importance weight" in x for x in out[0]["diagnostics"]["warnings"])


def test_case_copies_match_the_handed_cases():
    """tests/data/ope_cases holds byte-identical copies of the handed cases (when these are present)."""
    for name in ("ope-no-common-support", "ope-float-item-ids"):
        if not (CASES / name).is_dir():
            continue
        for f in (CASES / name).iterdir():
            assert (DATA / name / f.name).read_bytes() == f.read_bytes()




def test_dm_fast_refit_bootstrap_equals_the_generic_refit():
    """The sufficient-statistics path (context-free model, per-position target) gives the same draws as
    refitting through cross_fit with the target written per impression."""
    from counterfeed.ope import Support
    from counterfeed.ope.estimators import DirectMethod
    from counterfeed.ope.evaluate import refit_bootstrap_interval

    log, _ = _uniform_log(300)
    target = _table_target(log, np.r_[np.zeros(5), 0.2, 0.3, 0.5])
    sup = target.support
    rows = [np.flatnonzero(sup.position == j) for j in log.position]
    per_unit = Support(np.concatenate([sup.item_code[r] for r in rows]), np.concatenate([sup.weight[r] for r in rows]),
                       unit=np.repeat(np.arange(len(log)), [r.size for r in rows]))
    unit_target = Target(target.prob, per_unit)
    from counterfeed.core.randomness import Keys
    model = cross_fit(log, folds=5, rng=Keys(0).numpy_generator("ope", "folds"))
    from counterfeed.ope.estimators import Units
    out = []
    for t in (target, unit_target):
        u = Units(w=t.prob / log.propensity, r=log.reward, rnd=log.round, n_rounds=log.n_rounds)
        u.q, u.dm = model.predict_logged(log), model.expected_under(log, t.support)
        out.append(refit_bootstrap_interval(DirectMethod(), u, log, t, None, model.fold, 0.9, 40,
                                            np.random.default_rng(5)))
    np.testing.assert_allclose(out[0], out[1], rtol=1e-9)


def test_examples_ope_log_runs_the_readme_tour(capsys):
    """examples/ope_log.csv (the README tour's log): uniform over 20 items, so `random` reproduces its click rate."""
    lp = Path(__file__).resolve().parents[2] / "examples" / "ope_log.csv"
    ctr = float(pd.read_csv(lp)["reward"].mean())
    out = _strict(_run_ok(capsys, lp, "--policy", "random", "--estimators", "ips", "--json"))
    assert out[0]["value"] == ctr
    out = _strict(_run_ok(capsys, lp, "--policy", "popularity", "--estimators", "ips,snips,dr", "--json"))
    assert all(r["lower"] <= r["value"] <= r["upper"] for r in out)


def test_per_round_target_matching_no_logged_round_is_an_error(tmp_path):
    log = load_log(str(_case("ope-float-item-ids") / "log.csv"))
    p = tmp_path / "t.csv"
    pd.DataFrame({"round": ["r1", "r2"], "item": [0, 1], "position": [0, 0], "prob": [1.0, 1.0]}).to_csv(p, index=False)
    with pytest.raises(DataError, match=r"t\.csv: no round of the table matches a logged round"):
        load_target(str(p), log)
    # whole-number float round ids match integer ones (the same id normalization)
    pd.DataFrame({"round": [1.0, 2.0, 3.0, 4.0], "item": [0, 1, 0, 1], "position": 0, "prob": 1.0}).to_csv(p, index=False)
    (ips,) = evaluate(log, load_target(str(p), log), ["ips"])
    # weights 1 / 0.5 on rewards 1, 0, 1, 1: (2 + 0 + 2 + 2) / 4, reported as its projection onto [0, 1]
    assert ips.diagnostics["point_raw"] == pytest.approx(1.5) and ips.value == 1.0
