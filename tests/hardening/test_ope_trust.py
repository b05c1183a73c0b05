"""Tester report s4 items 1, 2, 3, 10, 11, 18 and the OPE parts of 19 (issue 14: numbers a user can trust).

Inputs are generated here under fixed seeds or copied into tests/data/ope_trust (tinyprop, hugerew, okt).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from counterfeed.cli import main
from counterfeed.errors import DataError
from counterfeed.ope import evaluate, from_arrays, load_log, target_from_table
from counterfeed.ope.evaluate import min_bootstrap_draws

DATA = Path(__file__).resolve().parents[1] / "data" / "ope_trust"


def _strict(text: str):
    def bad(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=bad)


def _cli(capsys, *args):
    code = 0
    try:
        main(["ope", *map(str, args)])
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _uniform(n_rounds=500, n_items=80, seed=0, item_reward=None, path=None):
    """Uniform-random log at position 0 (propensity 1/n_items); click prob 0.3, or ``item_reward`` for item 4."""
    rng = np.random.default_rng(seed)
    item = rng.integers(0, n_items, n_rounds)
    reward = (rng.random(n_rounds) < 0.3).astype(float)
    if item_reward is not None:
        reward[item == 4] = item_reward
    df = pd.DataFrame({"round": np.arange(n_rounds), "item": item, "position": 0, "reward": reward,
                       "propensity": 1.0 / n_items})
    if path is not None:
        df.to_csv(path, index=False)
    return df


@pytest.mark.parametrize("reward", [0.0, 1.0])
@pytest.mark.parametrize("boot", [0, 200])
def test_no_zero_width_interval_from_constant_weighted_rewards(capsys, tmp_path, reward, boot):
    """Item 1: the target plays one item the log shows a few times, always with the same reward."""
    log = tmp_path / "log.csv"
    df = _uniform(item_reward=reward, path=log)
    n4 = int((df["item"] == 4).sum())
    assert 2 <= n4 <= 15  # a few supported impressions (seed 0)
    tgt = tmp_path / "t.csv"
    pd.DataFrame({"item": [4], "position": [0], "prob": [1.0]}).to_csv(tgt, index=False)
    code, out, err = _cli(capsys, log, "--target-probs", tgt, "--estimators", "ips,snips", "--json",
                          "--bootstrap", boot)
    assert code == 0, err
    res = {r["estimator"]: r for r in _strict(out)}
    # SNIPS is then exactly the constant; IPS = reward * (weighted count) / N still varies with the count of
    # supported rounds when the reward is 1 (an honest, wide interval), but not when it is 0
    for r in ([res["snips"]] if reward else res.values()):
        assert r["lower"] is None and r["upper"] is None and r["interval"] == "none", r
        w = " ".join(r["diagnostics"]["warnings"])
        assert "no interval" in w and "zero observed variance" in w and f"{n4} impressions" in w


def test_no_interval_below_two_effective_units():
    """Item 1: an ESS under 2 (one weight dominates) gives no interval, whatever the rewards' spread."""
    log = load_log(str(DATA / "tinyprop.csv"))  # one propensity 1e-300: ESS 1
    (ips,) = evaluate(log, target_from_table(log, pd.read_csv(DATA / "okt.csv")), ["ips"])
    assert ips.interval == "none" and np.isnan(ips.lower)
    assert any("ESS 1" in w and "at least 2" in w for w in ips.diagnostics["warnings"])


def test_diagnostics_scale_free_no_overflow(capsys):
    """Item 18: propensity 1e-300: ESS and the mean weight stay finite, warnings kept, no RuntimeWarning,
    and the table prints the huge IPS value in scientific notation."""
    log = load_log(str(DATA / "tinyprop.csv"))
    target = target_from_table(log, pd.read_csv(DATA / "okt.csv"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = evaluate(log, target, ["ips", "snips"])
    for r in res:
        d = r.diagnostics
        assert d["ess"] == pytest.approx(1.0, rel=1e-9)  # Kish's ESS is scale-invariant: (w/max) = (1, ~0, ~0)
        assert np.isfinite(d["mean_weight"]) and d["mean_weight"] == pytest.approx(0.5 / 1e-300 / 3, rel=1e-9)
        assert any("effective sample size 1" in w for w in d["warnings"])
    code, out, err = _cli(capsys, DATA / "tinyprop.csv", "--target-probs", DATA / "okt.csv", "--estimators", "ips")
    assert code == 0 and "RuntimeWarning" not in err
    # binary rewards: the huge IPS value is reported as its projection onto [0, 1], the raw value in
    # scientific notation in the warning (never as 300 digits)
    assert "1.667e+299 lies outside [0, 1]" in " ".join(out.split()) and "0" * 40 not in out


def test_dr_interval_includes_model_error_off_support():
    """Item 2: target mass on an item the log never shows -> DR-type intervals refit the reward model."""
    df = _uniform(n_rounds=2000, n_items=10, seed=3)
    log = from_arrays(**{k: df[k].to_numpy() for k in df})
    # half of the target's mass on item 99 (never logged), half on item 2
    table = pd.DataFrame({"item": [2, 99], "position": [0, 0], "prob": [0.5, 0.5]})
    res = {r.estimator: r for r in evaluate(log, target_from_table(log, table),
                                            ["dm", "dr", "switch-dr", "dr-os", "sndr"], seed=1)}
    dm_width = res["dm"].upper - res["dm"].lower
    for name in ("dr", "switch-dr", "dr-os", "sndr"):
        r = res[name]
        assert r.interval == "bootstrap (reward model refitted per draw)", (name, r.interval)
        # the extrapolated half carries DM's model error: at least half DM's width (up to draw noise)
        assert r.upper - r.lower > 0.4 * dm_width, (name, r.lower, r.upper, dm_width)
    # on support, DR keeps its analytic interval
    on = pd.DataFrame({"item": [2, 3], "position": [0, 0], "prob": [0.5, 0.5]})
    (dr,) = evaluate(log, target_from_table(log, on), ["dr"])
    assert dr.interval == "analytic"


def test_dr_interval_includes_model_error_under_a_deterministic_logger(capsys):
    """Item 2, the tester's case: control popularity (deterministic) log, target random: 80% of the target's
    mass is on items the logger never shows in those rounds (mean weight 0.2). DR and switch-DR were 5x
    narrower than DM's refit bootstrap (width 0.0054 vs 0.027) and missed the truth."""
    code, out, err = _cli(capsys, DATA / "zw9_ctrl.parquet", "--policy", "random", "--estimators",
                          "dm,dr,switch-dr", "--json")
    assert code == 0, err
    res = {r["estimator"]: r for r in _strict(out)}
    dm_width = res["dm"]["upper"] - res["dm"]["lower"]
    for name in ("dr", "switch-dr"):
        r = res[name]
        assert r["interval"] == "bootstrap (reward model refitted per draw)"
        assert r["upper"] - r["lower"] > 0.6 * dm_width, (name, r["lower"], r["upper"], dm_width)


def test_bootstrap_draws_too_few(capsys, tmp_path):
    """Item 3: fewer draws than a percentile interval needs -> exit 2, located, the minimum stated."""
    assert min_bootstrap_draws(0.95) == 41 and min_bootstrap_draws(0.9) == 21 and min_bootstrap_draws(0.99) == 201
    log = tmp_path / "log.csv"
    _uniform(path=log)
    for n in (1, 2, 40):
        code, out, err = _cli(capsys, log, "--policy", "random", "--estimators", "ips", "--bootstrap", n, "--json")
        assert code == 2 and out == ""
        assert "bootstrap" in err and "at least 41" in err
    code, out, err = _cli(capsys, log, "--policy", "random", "--estimators", "ips", "--bootstrap", 41, "--json")
    assert code == 0, err
    (r,) = _strict(out)
    assert r["lower"] < r["value"] < r["upper"]


@pytest.mark.parametrize("opt", [["--clip", "nan"], ["--clip", "inf"], ["--tau", "nan"], ["--lambda", "nan"]])
def test_non_finite_options_exit_2(capsys, tmp_path, opt):
    """Item 10."""
    log = tmp_path / "log.csv"
    _uniform(path=log)
    code, out, err = _cli(capsys, log, "--policy", "random", "--estimators", "ips,switch-dr,dr-os", *opt)
    assert code == 2 and out == "" and opt[0] in err
    with pytest.raises(DataError):
        evaluate(load_log(str(log)), target_from_table(load_log(str(log)), pd.DataFrame(
            {"item": [4], "position": [0], "prob": [1.0]})), ["ips"], clip=float("nan"))


def test_huge_rewards_located_error(capsys):
    """Item 19: rewards 1e308 overflow every sum: a located error, exit 2."""
    code, out, err = _cli(capsys, DATA / "hugerew.csv", "--target-probs", DATA / "okt.csv")
    assert code == 2 and out == ""
    assert "hugerew.csv" in err and "'reward' row 1" in err and "too large" in err


def test_binary_reward_interval_inside_unit_range(tmp_path):
    """Item 19: the analytic interval of a click rate stays in [0, 1] (intersection: coverage kept)."""
    df = _uniform(n_rounds=300, n_items=20, seed=5)
    df["reward"] = (np.random.default_rng(1).random(len(df)) < 0.97).astype(float)
    log = from_arrays(**{k: df[k].to_numpy() for k in df})
    table = pd.DataFrame({"item": [1, 2], "position": [0, 0], "prob": [0.5, 0.5]})
    (ips,) = evaluate(log, target_from_table(log, table), ["ips"])
    assert 0 <= ips.lower <= ips.value and ips.upper == 1.0  # the raw Wald upper end exceeds 1
    assert ips.value + 1.96 * ips.se > 1


def test_winners_curse_warning_and_fit_log(capsys, tmp_path):
    """Item 11: a target fitted on the log it evaluates is flagged; --fit-log fits it elsewhere."""
    log, other = tmp_path / "log.csv", tmp_path / "other.csv"
    _uniform(n_rounds=300, n_items=20, seed=7, path=log)
    _uniform(n_rounds=300, n_items=20, seed=8, path=other)
    args = ["--policy", "popularity", "--estimators", "ips", "--json"]
    code, out, err = _cli(capsys, log, *args)
    assert code == 0, err
    assert any("winner's curse" in w for w in _strict(out)[0]["diagnostics"]["warnings"])
    code, out, err = _cli(capsys, log, *args, "--fit-log", other)
    assert code == 0, err
    (r,) = _strict(out)
    assert not any("winner's curse" in w for w in r["diagnostics"]["warnings"])
    code, _, err = _cli(capsys, log, *args, "--fit-log", other, "--policy", "random")
    assert code == 0
    code, _, err = _cli(capsys, log, "--target-probs", other, "--fit-log", other)
    assert code == 2 and "--fit-log needs --policy" in err
