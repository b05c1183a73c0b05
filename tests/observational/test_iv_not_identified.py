"""iv-2sls on data that cannot identify the LATE (tester: a rare nudge aborted the whole run after
simulating) and the weak-instrument warning (it printed a negative "complier share").

- A nudge that reached fewer than two users (or missed fewer than two) is a chance outcome of the
  draw: a NOT IDENTIFIED estimate (null point and bounds, a warning naming the counts), and the run
  keeps its directory and the other estimators' results. A nudge share of 0 stays an error at
  validation (exit 2, nothing written).
- An unbounded Anderson-Rubin set: the warning names the signed first-stage shift (never as a
  complier share when negative), says NOT IDENTIFIED, and the estimate is flagged ``identified:
  false`` so the tables and the headline do not present its point as a finding.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from counterfeed.core.estimation import AnalysisData, MetricInfo
from counterfeed.plugins.estimators.observational import InstrumentalVariables

ROOT = Path(__file__).resolve().parents[2]


def _data(z, t, y) -> AnalysisData:
    n = len(y)
    outcomes = pd.DataFrame({"user": np.arange(n), "arm": np.where(np.asarray(t) == 1, "b", "a"), "segment": "all",
                             "y": np.asarray(y, dtype=float)})
    return AnalysisData(outcomes=outcomes, arms=["a", "b"], control="a", metrics={"y": MetricInfo("y", "sum")},
                        instrument=np.asarray(z, dtype=float))


def _warnings(e) -> str:
    return " | ".join(e.diagnostics.get("warnings", []))


@pytest.mark.parametrize("n_nudged", [0, 1, 199, 200])
def test_too_few_nudged_or_unnudged_users_is_not_identified_not_an_error(n_nudged):
    """200 users, 0/1 nudged (or 0/1 not nudged): the old code raised ModelError (the run aborted)."""
    from counterfeed._json import dumps

    rng = np.random.default_rng(4)
    n = 200
    z = np.zeros(n)
    z[:n_nudged] = 1
    t = (rng.random(n) < 0.4).astype(float)
    y = 1 + 2 * t + rng.normal(size=n)
    (e,) = InstrumentalVariables().estimate(_data(z, t, y))
    assert math.isnan(e.point) and math.isnan(e.lower) and math.isnan(e.upper) and e.p_value is None
    assert e.diagnostics["identified"] is False and e.diagnostics["ar_set"] == "not identified"
    assert (e.diagnostics["n_nudged"], e.diagnostics["n_not_nudged"]) == (n_nudged, n - n_nudged)
    w = _warnings(e)
    assert "LATE NOT IDENTIFIED" in w and f"reached {n_nudged} of the {n} users" in w and f"missed {n - n_nudged}" in w
    d = json.loads(dumps(e.to_dict()))  # strict JSON: null, never NaN
    assert d["point"] is None and d["lower"] is None and d["upper"] is None
    assert d["diagnostics"]["se"] is None and d["diagnostics"]["wald_interval"] is None


def test_two_nudged_users_still_give_an_estimate():
    rng = np.random.default_rng(5)
    n = 200
    z = np.zeros(n)
    z[:2] = 1
    t = (rng.random(n) < 0.3).astype(float)
    t[:2] = 1
    y = 1 + 2 * t + rng.normal(size=n)
    (e,) = InstrumentalVariables().estimate(_data(z, t, y))
    assert math.isfinite(e.point) and e.diagnostics["n_nudged"] == 2
    assert not any("LATE NOT IDENTIFIED" in w for w in e.diagnostics.get("warnings", []))


def _weak(seed: int, compliers: float, n: int = 400):
    rng = np.random.default_rng(seed)
    z = (rng.random(n) < 0.5).astype(float)
    u = rng.random(n)
    t = ((u < 0.2) | ((u < 0.2 + compliers) & (z == 1))).astype(float)
    return z, t, 1 + 2 * t + rng.normal(size=n) * (1 + t)


def _negative_weak_seed() -> int:
    """The first seed whose sample first stage (no compliers) is negative with an unbounded set."""
    for seed in range(200):
        z, t, y = _weak(seed, 0.0)
        if t[z == 1].mean() < t[z == 0].mean():
            (e,) = InstrumentalVariables().estimate(_data(z, t, y))
            if e.diagnostics["ar_set"] in ("whole line", "two rays"):
                return seed
    raise AssertionError("no seed")


def test_weak_instrument_with_a_negative_shift_names_it_a_first_stage_shift():
    """The old warning said "complier share -0.0..." while diagnostics.complier_share was null."""
    z, t, y = _weak(_negative_weak_seed(), 0.0)
    (e,) = InstrumentalVariables().estimate(_data(z, t, y))
    shift = e.diagnostics["first_stage_shift"]
    assert shift < 0 and e.diagnostics["complier_share"] is None
    w = _warnings(e)
    assert "complier share -" not in w and "complier share " + f"{shift:.3g}" not in w
    assert f"first-stage shift {shift:.3g}" in w and "no complier share" in w
    assert "WEAK INSTRUMENT" in w and "not bounded" in w and "NOT IDENTIFIED" in w
    assert e.diagnostics["identified"] is False
    assert (e.lower, e.upper) == (-math.inf, math.inf) and math.isfinite(e.point)  # the point stays, flagged
    assert e.diagnostics["wald_interval"] is None  # no finite Wald interval beside an unbounded set


def test_weak_instrument_with_a_positive_shift_calls_it_the_complier_share():
    for seed in range(200):
        z, t, y = _weak(seed, 0.01)
        (e,) = InstrumentalVariables().estimate(_data(z, t, y))
        if e.diagnostics["ar_set"] != "interval" and e.diagnostics["first_stage_shift"] > 0:
            break
    else:
        raise AssertionError("no seed")
    shift = e.diagnostics["first_stage_shift"]
    assert e.diagnostics["complier_share"] == pytest.approx(shift)
    assert f"first-stage shift {shift:.3g}: the estimated complier share" in _warnings(e)
    assert e.diagnostics["identified"] is False


def test_strong_instrument_is_identified_with_its_wald_interval():
    z, t, y = _weak(1, 0.3, 600)
    (e,) = InstrumentalVariables().estimate(_data(z, t, y))
    assert e.diagnostics["ar_set"] == "interval" and "identified" not in e.diagnostics
    assert e.diagnostics["wald_interval"] is not None


def test_the_headline_does_not_present_an_unbounded_point_as_a_finding():
    """findings._conclusion: no "changed clicks by ..., not distinguishable from zero" for a point
    whose interval is unbounded and which is flagged NOT IDENTIFIED."""
    from counterfeed.core.estimation import Estimate
    from counterfeed.core.findings import _conclusion

    e = Estimate("iv-2sls", "clicks", "treatment", "control", 15.35, -math.inf, math.inf, estimand="late",
                 diagnostics={"identified": False, "ar_set": "two rays"})
    s = _conclusion(e, None)
    assert "not distinguishable from zero" not in s and "changed clicks by" not in s
    assert "no finite 95% interval" in s and "NOT IDENTIFIED" in s and "not an estimate to act on" in s


def _cli(args: list[str]):
    """The console script (exit codes and messages as a user sees them)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "counterfeed", *args], capture_output=True, text=True, env=env,
                          timeout=300)


@pytest.mark.slow  # a small run (~6 s)
def test_a_rare_nudge_keeps_the_run_and_its_other_estimates(tmp_path):
    """The tester's command: nudge_share 0.005, 400 users (1 nudged user in this draw). The old code
    exited 2 after simulating, with no run directory."""
    out = tmp_path / "out"
    res = _cli(["run", str(ROOT / "scenarios" / "observational_hidden.yaml"),
                "--set", "experiment.assignment.nudge_share=0.005", "--set", "population.users=400",
                "--set", "experiment.duration=5d", "--set", "experiment.pre_period=3d", "--set", "output.report=false",
                "--out", str(out), "-q", "--json"])
    assert res.returncode == 0, res.stderr
    (run_dir,) = list(out.iterdir())
    doc = json.loads((run_dir / "estimates.json").read_text())
    (iv,) = [e for e in doc["estimates"] if e["estimator"] == "iv-2sls"]
    assert iv["point"] is None and iv["lower"] is None and iv["upper"] is None
    assert iv["diagnostics"]["identified"] is False and iv["diagnostics"]["n_nudged"] < 2
    assert any("LATE NOT IDENTIFIED" in w and "reached" in w for w in iv["diagnostics"]["warnings"])
    others = {e["estimator"] for e in doc["estimates"]}
    assert {"diff-in-means", "backdoor-regression"} <= others


@pytest.mark.parametrize("share", ["0", "1"])
def test_a_nudge_share_of_0_or_1_is_still_a_validation_error(tmp_path, share):
    out = tmp_path / "out"
    res = _cli(["run", str(ROOT / "scenarios" / "observational_hidden.yaml"),
                "--set", f"experiment.assignment.nudge_share={share}", "--out", str(out), "-q"])
    assert res.returncode == 2
    assert "experiment.assignment.nudge_share" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not out.exists() or not any(out.iterdir())


def test_an_unbounded_interval_is_not_counted_as_covering_the_truth_in_the_headline():
    """An Anderson-Rubin set of the whole line covers any truth; the headline's tally (break test 3)
    counted it as a covering interval. It is left out of the tally and counted apart."""
    from counterfeed.core.contracts import Estimate
    from counterfeed.core.findings import headline
    from tests.observational.test_tester16_validate_report import _naive, _result

    unbounded = Estimate("iv-2sls", "clicks", "treatment", "control", 1.0, -math.inf, math.inf, estimand="late",
                         diagnostics={"identified": False})
    unbounded.score(2.0)
    missed = Estimate("diff-in-means", "clicks", "treatment", "control", 4.0, 3.0, 5.0)
    missed.score(2.0)
    assert unbounded.covered is True  # the scoring's answer, which the tally must not take at face value
    tally = [line for line in headline(_result("observational_hidden", [_naive(), missed, unbounded]))
             if "known truth" in line]
    assert tally == [tally[0]] and tally[0].startswith("0 of 2 intervals with a known truth covered it")
    assert "1 unbounded confidence set (the whole line, or two rays) not counted" in tally[0]
    only = [line for line in headline(_result("observational_hidden", [unbounded])) if "known truth" in line]
    assert only == ["1 confidence set with a known truth is unbounded (the whole line, or two rays) and not counted."]
    # the conclusion sentence does not call an unbounded set's truth "inside the interval" (break test 4)
    unbounded.diagnostics["naive"] = {"point": 4.0}  # a design estimator: the headline's main estimate
    lines = headline(_result("observational_hidden", [unbounded]))
    assert not any("inside the interval" in line for line in lines)
    assert any("inside the unbounded confidence set, which is not counted as covering it" in line for line in lines)


def test_a_truth_in_the_gap_of_a_two_ray_set_is_not_covered():
    """Break test 4: a two-ray Anderson-Rubin set is stored with bounds -inf/inf and its rays' inner ends
    in diagnostics.ar_rays; a truth strictly inside the gap was scored as covered (calibrate's coverage of
    iv-2sls counted it too)."""
    from counterfeed.core.contracts import Estimate
    from counterfeed.plugins.estimators._obs_iv import anderson_rubin

    rng = np.random.default_rng(0)
    n = 400
    z = (rng.random(n) < 0.5) * 1.0
    t = (rng.random(n) < 0.3 + 0.06 * z) * 1.0
    y = 1 + 0.25 * z + rng.normal(size=n)
    ar = anderson_rubin(y, t, z, 0.95)
    assert ar.shape == "two rays"
    r0, r1 = ar.rays
    e = Estimate("iv-2sls", "y", "b", "a", 0.1, -math.inf, math.inf, estimand="late",
                 diagnostics={"ar_rays": [r0, r1], "identified": False})
    for truth, covered in ((0.5 * (r0 + r1), False), (r0 - 1.0, True), (r1 + 1.0, True), (r0, True), (r1, True)):
        e.score(truth)
        assert e.covered is covered, truth
    e.diagnostics = {"identified": False}  # the whole line: covers everything
    e.score(0.5 * (r0 + r1))
    assert e.covered is True


def test_an_old_run_with_a_two_ray_set_is_rescored_on_reading():
    """Break test 5: a run written before the gap was scored kept covered: true, and `counterfeed report`
    showed it; reading it rescored nothing (it had a truth). score_estimates rescores two-ray sets."""
    from counterfeed.core.contracts import Estimate
    from counterfeed.core.scoring import score_estimates

    truth = pd.DataFrame({"metric": ["y"], "arm": ["b"], "estimand": ["late"], "value": [0.5], "control": ["a"]})
    # the bounds as the run wrote them (-inf/inf) and as JSON gives them back (null: break test 6 found the
    # reading then scored nothing, and the report said "outside the interval" for a truth inside a ray)
    for lo, hi in ((-math.inf, math.inf), (None, None), (math.nan, math.nan)):
        for value, covered in ((0.5, False), (5.0, True), (-7.0, True)):
            e = Estimate("iv-2sls", "y", "b", "a", 0.1, lo, hi, estimand="late",
                         diagnostics={"ar_rays": [-2.0, 3.0], "identified": False}, truth=value, covered=not covered)
            score_estimates([e], truth.assign(value=[value]))
            assert e.covered is covered and e.truth == value, (lo, value)
