"""Constant rewards: no estimator reports an interval from zero observed variance, and the model-based
estimators estimate the constant itself (the reward model fitted on constant data predicts it exactly).

Genuine reward variation, at any scale, still gives an interval of positive width.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from counterfeed.ope import ESTIMATORS, LogisticRewardModel, evaluate, from_arrays, target_from_table
from counterfeed.ope.cli import ope

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ope_log.csv"
ALL = ",".join(ESTIMATORS)  # every estimator the CLI offers


def _strict(text: str):
    def bad(token):
        raise ValueError(f"non-standard JSON constant {token}")
    return json.loads(text, parse_constant=bad)


def _cli_results(path: Path, *args: str) -> dict[str, dict]:
    res = CliRunner().invoke(ope, [str(path), "--policy", "popularity", "--estimators", ALL, "--json", *args])
    assert res.exit_code == 0, res.output
    data = _strict(res.stdout)
    rows = data if isinstance(data, list) else data["results"]
    return {r["estimator"]: r for r in rows}


def _assert_no_interval(r: dict) -> None:
    assert r["lower"] is None and r["upper"] is None and r["interval"] == "none", r
    assert any("no interval" in w and "zero observed variance" in w for w in r["diagnostics"]["warnings"]), r


@pytest.mark.parametrize("boot", ["0", "41"])
@pytest.mark.parametrize("c", [0.0, 1.0])
def test_cli_constant_rewards_every_estimator(tmp_path, c, boot):
    """The example log with every reward set to ``c``: the defect was DR's -2e-12 [0, 1.1e-11] with no warning."""
    df = pd.read_csv(EXAMPLE)
    df["reward"] = c
    path = tmp_path / "const.csv"
    df.to_csv(path, index=False)
    res = _cli_results(path, "--bootstrap", boot)
    assert set(res) == set(ESTIMATORS)
    for name, r in res.items():
        if name == "ips" and c != 0:
            # IPS = c * mean weight: the weights' spread across rounds is genuine variance of this estimator,
            # and its point is not c (mean weight != 1 here); an honest interval of positive width
            assert r["lower"] is not None and r["upper"] > r["lower"], r
            continue
        assert r["value"] == pytest.approx(c, abs=1e-13), (name, r["value"])
        _assert_no_interval(r)


def _slate_log(reward: np.ndarray, seed: int = 3, n_rounds: int = 400, n_items: int = 12, k: int = 3):
    """A uniform-random slate log (propensity 1/n_items per position), rewards given per impression."""
    rng = np.random.default_rng(seed)
    n = n_rounds * k
    return from_arrays(round=np.repeat(np.arange(n_rounds), k), item=rng.integers(0, n_items, n),
                       position=np.tile(np.arange(k), n_rounds), reward=reward,
                       propensity=np.full(n, 1.0 / n_items))


def _spread_target(log, n_items: int = 12, k: int = 3):
    """A target spreading probability 1/3 (not exact in binary) over three items per position."""
    rows = [(item, j, 1 / 3) for j in range(k) for item in (j, j + 4, j + 8)]
    return target_from_table(log, pd.DataFrame(rows, columns=["item", "position", "prob"]))


@pytest.mark.parametrize("c", [0.0, 1.0, 0.7, -3.0, 1e6])
def test_constant_rewards_library(c):
    """Any constant (binary, fractional, identity link): no interval, point c to rounding (exactly for 0, 1)."""
    log = _slate_log(np.full(1200, c))
    res = evaluate(log, _spread_target(log), list(ESTIMATORS))
    for r in res:
        if r.estimator == "ips" and c != 0:
            continue  # c * mean weight: genuine variance (see above)
        assert r.interval == "none" and np.isnan(r.lower) and np.isnan(r.upper), (r.estimator, r)
        assert any("zero observed variance" in w for w in r.diagnostics["warnings"]), r
        if c in (0.0, 1.0):
            assert r.value == c, (r.estimator, r.value)
        else:
            assert r.value == pytest.approx(c, rel=1e-13), (r.estimator, r.value)


@pytest.mark.parametrize("c", [0.0, 1.0, 0.25, 4.0])
def test_reward_model_on_constant_data_predicts_the_constant(c):
    """The logistic model's MLE does not exist for c = 0 or 1 (the optimizer stopped near 1e-12); the
    constant model is the exact minimizer for any c, and its predictions are c exactly."""
    log = _slate_log(np.full(1200, c))
    m = LogisticRewardModel().fit(log, np.arange(len(log)))
    p = m.predict(log, np.arange(12) % 12, np.arange(12) % 3, None)
    assert np.all(p == c)


def test_reward_model_not_constant_when_rewards_vary():
    rng = np.random.default_rng(0)
    log = _slate_log((rng.random(1200) < 0.3).astype(float))
    m = LogisticRewardModel().fit(log, np.arange(len(log)))
    assert m.constant_ is None
    p = m.predict(log, np.arange(12), np.zeros(12, np.int64), None)
    assert np.ptp(p) > 0 and np.all((p > 0) & (p < 1))


@pytest.mark.parametrize("scale", [1.0, 1e-14])
def test_genuine_variation_gives_positive_width(scale):
    """Rewards that vary give every estimator an interval of positive width, whatever their scale (a
    zero-width test in absolute terms called rewards of size 1e-14 'zero observed variance')."""
    rng = np.random.default_rng(1)
    log = _slate_log(scale * (rng.random(1200) < 0.4).astype(float))
    res = {r.estimator: r for r in evaluate(log, _spread_target(log), list(ESTIMATORS))}
    for name, r in res.items():
        assert r.interval != "none", (name, r.diagnostics["warnings"])
        assert np.isfinite(r.lower) and np.isfinite(r.upper) and r.upper - r.lower > 1e-3 * scale, (name, r)
        assert not any("zero observed variance" in w for w in r.diagnostics["warnings"])
    if scale != 1.0:  # IPS and SNIPS are linear in the rewards: the same interval, scaled
        ref_log = _slate_log((np.random.default_rng(1).random(1200) < 0.4).astype(float))
        ref = {r.estimator: r for r in evaluate(ref_log, _spread_target(ref_log), ["ips", "snips"])}
        for name in ("ips", "snips"):
            assert res[name].lower == pytest.approx(scale * ref[name].lower, rel=1e-9)
            assert res[name].upper == pytest.approx(scale * ref[name].upper, rel=1e-9)


def test_cli_example_log_has_intervals():
    """The unmodified example log: every estimator that reports an interval reports one of positive width."""
    res = _cli_results(EXAMPLE)
    widths = {n: r["upper"] - r["lower"] for n, r in res.items() if r["lower"] is not None}
    assert {"ips", "snips", "dr"} <= set(widths), res
    assert all(w > 1e-6 for w in widths.values()), widths


def test_a_point_outside_0_1_is_projected_so_that_its_interval_contains_it(tmp_path):
    """One click in the example log: DR's correction overshoots below 0. With binary rewards the
    interval is intersected with [0, 1]; the point is projected onto [0, 1] too (raw value kept), so
    no estimate lies outside its own interval."""
    df = pd.read_csv(EXAMPLE)
    df["reward"] = 0
    df.loc[5, "reward"] = 1
    path = tmp_path / "one_click.csv"
    df.to_csv(path, index=False)
    res = _cli_results(path)
    projected = 0
    for name, r in res.items():
        assert 0.0 <= r["value"] <= 1.0, name
        if r["lower"] is not None:
            assert r["lower"] <= r["value"] <= r["upper"], name
        if "point_raw" in r["diagnostics"]:
            projected += 1
            assert not 0.0 <= r["diagnostics"]["point_raw"] <= 1.0
            assert any("its projection onto [0, 1]" in w for w in r["diagnostics"]["warnings"])
    assert projected >= 1  # dr's raw point is about -2e-4
