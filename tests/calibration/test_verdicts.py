"""Tester report b2: calibrate flags the undercoverage it measures (item 1), refuses a scenario with no
estimator before simulating anything and counts estimate-less replications honestly (item 2), and names
the estimand in each zero-width warning (item 3)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from click.testing import CliRunner
from scipy.stats import binom, norm

from counterfeed.calibration import cli as cal_cli
from counterfeed.calibration.calibrate import calibrate
from counterfeed.calibration.cli import STRICT_EXIT_CODE, calibrate_command, sweep_command
from counterfeed.calibration.summary import (overcoverage_p, overrejection_p, strict_failures, summarize,
                                             undercoverage_p, verdict, wilson_interval)
from counterfeed.calibration.sweep import parse_vary, sweep
from counterfeed.calibration.engine import replication_seeds
from counterfeed.core.scenario import load_scenario
from counterfeed.errors import ScenarioError

Z = float(norm.ppf(0.975))
N = 100  # 100 of 100 covered has a Wilson lower bound of 0.963: "overcovers" is reachable


def _est(estimator, point, half, truth, p_value=None, estimand="difference", segment=None):
    lo, hi = point - half, point + half
    return dict(estimator=estimator, metric="y", arm="treatment", estimand=estimand, segment=segment,
                point=point, lower=lo, upper=hi, p_value=p_value, truth=truth, level=0.95,
                covered=bool(lo <= truth <= hi))


def _error(scenario_data: dict, seed: int) -> float:
    """Replication i's N(0, 1) error, as a stratified draw: the ((37 i mod N) + 1/2) / N quantile, so any
    N consecutive replications hold N exact quantiles (the verdicts below are then certain, not likely)."""
    i = replication_seeds(int(scenario_data["seed"]), 400).index(seed)
    return float(norm.ppf(((37 * i) % N + 0.5) / N))


def mixed_replicate(scenario_data: dict, seed: int) -> list[dict]:
    """Exact normal theory: the error of every estimate is one N(0, 1) draw ``x`` (:func:`_error`).

    honest: x +- 1.96 (covers 95%); narrow: x +- 0.5 (covers ~38%); wide: x +- 4 (covers ~100%);
    trigger-happy: the honest interval, but a p-value from se 0.5 (rejects ~33% of true nulls);
    powered: truth 1, honest interval, rejects often (power, not a false positive); flat: a zero-width
    interval at the truth, for both estimands (item 3)."""
    x = _error(scenario_data, seed)
    return [
        _est("honest", x, Z, 0.0, float(2 * norm.sf(abs(x)))),
        _est("narrow", x, 0.5, 0.0, float(2 * norm.sf(abs(x) / (0.5 / Z)))),
        _est("wide", x, 4.0, 0.0, float(2 * norm.sf(abs(x) / (4.0 / Z)))),
        _est("trigger-happy", x, Z, 0.0, float(2 * norm.sf(abs(x) / (0.5 / Z)))),
        _est("powered", 1.0 + x, Z, 1.0, float(2 * norm.sf(abs(1.0 + x)))),
        _est("flat", 0.0, 0.0, 0.0, estimand="difference"),
        _est("flat", 0.0, 0.0, 0.0, estimand="relative"),
    ]


def honest_replicate(scenario_data: dict, seed: int) -> list[dict]:
    return mixed_replicate(scenario_data, seed)[:1]


def sometimes_empty_replicate(scenario_data: dict, seed: int) -> list[dict]:
    """No estimate in the replications whose seed is even (as an analysis that estimated nothing)."""
    return [] if seed % 2 == 0 else honest_replicate(scenario_data, seed)


@pytest.fixture
def mixed_store(tiny_yaml, tmp_path):
    """The tiny scenario's output directory holding N replications of ``mixed_replicate``: the CLI
    resumes from it (0 computed now), as the tester's stored calibrations were resumed."""
    out = tmp_path / "cal"
    calibrate(load_scenario(str(tiny_yaml)), N, out_dir=out, replicate=mixed_replicate, figures=False)
    return out


def _by_estimator(rows):
    return {(r["estimator"], r["estimand"]): r for r in rows}


# -- item 1: a verdict per row ------------------------------------------------------------------------------

def test_verdict_per_row_from_the_wilson_intervals(tiny_yaml, tmp_path):
    res = calibrate(load_scenario(str(tiny_yaml)), N, out_dir=tmp_path / "c", replicate=mixed_replicate,
                    figures=False)
    rows = _by_estimator(res.summary.to_dict("records"))
    assert rows["honest", "difference"]["verdict"] == "ok"
    assert rows["narrow", "difference"]["verdict"] == "undercovers"
    assert rows["narrow", "difference"]["coverage_upper"] < 0.95
    assert rows["wide", "difference"]["verdict"] == "overcovers"
    assert rows["wide", "difference"]["coverage_lower"] > 0.95
    # A/A: coverage is fine but the false-positive rate is not
    th = rows["trigger-happy", "difference"]
    assert th["null_truth"] and th["coverage_upper"] >= 0.95 and th["rejection_lower"] > 0.05
    assert th["verdict"] == "over-rejects"
    # where the truth is not 0 a high rejection rate is power, never a flag
    pw = rows["powered", "difference"]
    assert not pw["null_truth"] and pw["rejection_lower"] > 0.05 and pw["verdict"] == "ok"


def _v(k, n, level=0.95, k_rej=None, n_rej=None):
    """The verdict of ``k`` of ``n`` covering (and ``k_rej`` of ``n_rej`` true nulls rejected), as summarize
    judges it: exact p-values, the displayed Wilson bounds as a consistency check."""
    rej_p = overrejection_p(k_rej, n_rej, level) if k_rej is not None else math.nan
    rej_lo = wilson_interval(k_rej, n_rej)[0] if k_rej is not None else math.nan
    return verdict(level, undercoverage_p(k, n, level), overcoverage_p(k, n, level), rej_p,
                   coverage_interval=wilson_interval(k, n), rejection_lower=rej_lo)


def test_verdict_function_edges():
    assert _v(1, 1) is None  # nothing judged from one replication
    assert verdict(0.95, math.nan) is None
    assert _v(74, 100) == "undercovers"
    assert _v(88, 100) == "undercovers"  # P(X <= 88 | 100, 0.95) = 0.006
    assert _v(90, 100) == "ok"  # P(X <= 90) = 0.028 > 0.025, though Wilson's [0.826, 0.945] misses 0.95
    assert _v(92, 100) == "ok"
    assert _v(95, 100, k_rej=12, n_rej=100) == "over-rejects"
    assert _v(95, 100, k_rej=7, n_rej=100) == "ok"
    # undercoverage is named first; over-rejection alone is judged without a coverage
    assert _v(70, 100, k_rej=12, n_rej=100) == "undercovers"
    assert verdict(0.95, math.nan, math.nan, overrejection_p(12, 100, 0.95)) == "over-rejects"
    # Wilson's interval excludes 0.95 but the exact test does not reject: "ok", the exact test decides
    assert wilson_interval(17, 20)[1] < 0.95 and undercoverage_p(17, 20, 0.95) > 0.025 and _v(17, 20) == "ok"
    # the exact test rejects but the shown Wilson bound holds the level: no flag that the table contradicts
    assert overcoverage_p(72, 72, 0.95) <= 0.025 and wilson_interval(72, 72)[0] < 0.95 and _v(72, 72) == "ok"
    assert _v(100, 100) == "overcovers"
    # a bound shown in a table or warning never rounds onto the level it is judged against
    from counterfeed.calibration.calibrate import _side
    assert _side(0.94996, 0.95) == "0.94996" and _side(0.7958, 0.95) == "0.796" and _side(0.95, 0.95) == "0.950"


def _flag_probability(n, p, flagged):
    """Exact probability, for k ~ Bin(n, p), that ``flagged(k)``: the sum of the pmf over flagged counts."""
    return float(sum(binom.pmf(k, n, p) for k in range(n + 1) if flagged(k)))


@pytest.mark.parametrize("n", [3, 5, 10, 20, 50, 200])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_a_calibrated_row_is_flagged_at_most_one_time_in_40_at_every_n(n, level):
    under = _flag_probability(n, level, lambda k: _v(k, n, level) == "undercovers")
    assert under <= 0.025
    over = _flag_probability(n, level, lambda k: _v(k, n, level) == "overcovers")
    assert over <= 0.025
    # an A/A row whose false-positive rate is exactly 1 - level (its coverage held at the level's count)
    k_cov = round(level * n)
    rej = _flag_probability(n, 1 - level, lambda j: _v(k_cov, n, level, j, n) == "over-rejects")
    assert rej <= 0.025
    # the old rule (Wilson's interval wholly below the level) was not conservative: 14% at n = 3, 7.5% at 20
    if level == 0.95 and n in (3, 20):
        wilson = _flag_probability(n, level, lambda k: wilson_interval(k, n)[1] < level)
        assert wilson == pytest.approx({3: 0.142625, 20: 0.0754836}[n], abs=1e-6)


def test_strict_family_rule_keeps_the_family_wise_rate_at_2_5_percent():
    # k = 8 calibrated rows of n = 20 replications each (independent): --strict fails when some row fails at
    # the Bonferroni level 2.5% / 8
    k, n, level = 8, 20, 0.95
    rows = pd.DataFrame({"verdict": ["undercovers"] * k, "undercoverage_p": [math.nan] * k,
                         "overrejection_p": [math.nan] * k})

    def fails(c):  # row 0 has c of n covering; the others are judged but not failing (p = 1)
        r = rows.copy()
        r["undercoverage_p"] = [undercoverage_p(c, n, level)] + [1.0] * (k - 1)
        return 0 in strict_failures(r).index

    q = _flag_probability(n, level, fails)
    family = 1 - (1 - q) ** k
    assert family <= 0.025
    # the per-row rule alone would fail a perfect estimator's run far more often
    per_row = _flag_probability(n, level, lambda c: _v(c, n, level) == "undercovers")
    assert 1 - (1 - per_row) ** k > 0.05 > family


def test_summary_verdict_is_null_in_json_when_nothing_can_be_judged():
    frame = pd.DataFrame([{"estimator": "e", "metric": "m", "arm": "t", "estimand": "difference", "segment": None,
                           "point": 0.1, "lower": 0.0, "upper": 0.2, "p_value": math.nan, "truth": math.nan,
                           "covered": None, "level": 0.95, "replication": 0, "seed": 0}])
    row = summarize(frame).iloc[0]
    assert row["verdict"] is None


def test_table_json_and_stored_summary_carry_the_verdict_and_warn_of_each_undercovering_row(tiny_yaml, mixed_store):
    args = [str(tiny_yaml), "-n", str(N), "--executor", "serial", "--out", str(mixed_store)]
    r = CliRunner().invoke(calibrate_command, args)
    assert r.exit_code == 0, r.output
    assert "0 computed now" in r.output  # resumed from the store, as the tester's run did
    assert "verdict" in r.output and "undercovers" in r.output and "overcovers" in r.output
    lines = r.output.splitlines()
    under = [ln for ln in lines if ln.startswith("warning:") and "undercovers" in ln]
    assert len(under) == 1 and under[0].startswith("warning: narrow · y · treatment · difference: undercovers")
    assert "below the nominal 0.95" in under[0]
    over = [ln for ln in lines if ln.startswith("warning:") and "over-rejects" in ln]
    # narrow (also undercovering) and trigger-happy both reject true nulls too often; powered is not named
    assert sorted(ln.split(":")[1].strip() for ln in over) == ["narrow · y · treatment · difference",
                                                                 "trigger-happy · y · treatment · difference"]
    assert not any("powered" in ln or "honest" in ln or "wide" in ln for ln in under + over)

    js = CliRunner().invoke(calibrate_command, [*args, "--json"])
    assert js.exit_code == 0, js.output
    rows = _by_estimator(json.loads(js.stdout)["summary"])
    assert rows["narrow", "difference"]["verdict"] == "undercovers"
    assert rows["trigger-happy", "difference"]["verdict"] == "over-rejects"
    assert rows["honest", "difference"]["verdict"] == "ok" and rows["honest", "difference"]["null_truth"] is True
    stored = _by_estimator(json.loads((mixed_store / "calibration.json").read_text())["summary"])
    assert stored["narrow", "difference"]["verdict"] == "undercovers"
    csv = pd.read_csv(mixed_store / "calibration.csv")
    assert set(csv["verdict"]) == {"ok", "undercovers", "overcovers", "over-rejects"}


def test_strict_exits_3_naming_the_flagged_rows_and_still_writes(tiny_yaml, mixed_store):
    (mixed_store / "calibration.json").unlink()
    r = CliRunner().invoke(calibrate_command, [str(tiny_yaml), "-n", str(N), "--executor", "serial",
                                               "--out", str(mixed_store), "--strict", "--json"])
    assert r.exit_code == STRICT_EXIT_CODE == 3, r.output
    assert "narrow · y · treatment · difference (undercovers)" in r.stderr
    assert "trigger-happy · y · treatment · difference (over-rejects)" in r.stderr
    assert "wide" not in r.stderr and "honest" not in r.stderr  # overcovering is not a failure
    json.loads(r.stdout)  # the JSON is still printed whole
    assert (mixed_store / "calibration.json").exists()


def test_strict_passes_when_no_row_is_flagged(tiny_yaml, tmp_path):
    out = tmp_path / "honest"
    calibrate(load_scenario(str(tiny_yaml)), 40, out_dir=out, replicate=honest_replicate, figures=False)
    r = CliRunner().invoke(calibrate_command, [str(tiny_yaml), "-n", "40", "--executor", "serial",
                                               "--out", str(out), "--strict"])
    assert r.exit_code == 0, r.output
    assert "warning" not in r.output


# -- item 3: one zero-width warning per row, naming its estimand -------------------------------------------

def test_zero_width_warnings_name_the_estimand_and_are_not_repeated(tiny_yaml, mixed_store):
    r = CliRunner().invoke(calibrate_command, [str(tiny_yaml), "-n", str(N), "--executor", "serial",
                                               "--out", str(mixed_store)])
    assert r.exit_code == 0, r.output
    zero = [ln for ln in r.output.splitlines() if "zero-width" in ln]
    assert zero == [f"warning: flat · y · treatment · {e}: {N} of {N} replications reported a zero-width "
                    "interval (no observed variance): its coverage says little" for e in ("difference", "relative")]
    warnings = [ln for ln in r.output.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == len(set(warnings))


# -- item 2: nothing to score is refused up front; estimate-less replications are counted -------------------

def test_a_scenario_without_estimators_is_refused_before_anything_runs(tmp_path, monkeypatch):
    def no_executor(*a, **k):
        raise AssertionError("an executor was started before the scenario was checked")

    monkeypatch.setattr(cal_cli, "_executor", no_executor)
    out = tmp_path / "o"
    r = CliRunner().invoke(calibrate_command, ["scenarios/phases_rollout.yaml", "-n", "20", "--workers", "1",
                                               "--out", str(out), "--set", "population.users=400"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert "scenarios/phases_rollout.yaml:" in r.output and "analysis" in r.output
    assert "no estimator to score" in r.output and "phases" in r.output and "not calibrated" in r.output
    assert not out.exists()
    # set on the command line: located at --set
    r = CliRunner().invoke(calibrate_command, ["scenarios/quickstart.yaml", "-n", "2", "--out", str(out),
                                               "--set", "analysis=[]"])
    assert r.exit_code == 2 and "--set: analysis" in r.output and not out.exists(), r.output
    r = CliRunner().invoke(sweep_command, ["scenarios/phases_rollout.yaml", "-n", "2", "--out", str(out),
                                           "--vary", "population.users=300,400"])
    assert r.exit_code == 2 and "no estimator to score" in r.output and not out.exists(), r.output


def test_the_api_refuses_too_and_writes_nothing(tmp_path):
    sc = load_scenario("scenarios/phases_rollout.yaml").with_overrides({"population.users": 400})
    with pytest.raises(ScenarioError, match="no estimator to score"):
        calibrate(sc, 3, out_dir=tmp_path / "o")
    with pytest.raises(ScenarioError, match="no estimator to score"):
        sweep(sc, [parse_vary("population.users=300,400")], 2, out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_replications_without_estimates_count_as_completed(tiny_yaml, tmp_path):
    out = tmp_path / "c"
    res = calibrate(load_scenario(str(tiny_yaml)), 10, out_dir=out, replicate=sometimes_empty_replicate,
                    figures=False)
    empty = len(res.without_estimates)
    assert 0 < empty < 10
    assert res.completed == 10 and res.records["replication"].nunique() == 10 - empty
    payload = json.loads((out / "calibration.json").read_text())
    assert payload["completed"] == 10 and payload["without_estimates"] == empty
    assert payload["summary"][0]["replications"] == 10 - empty
    r = CliRunner().invoke(calibrate_command, [str(tiny_yaml), "-n", "10", "--executor", "serial", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "Calibration of tiny (10 replications)" in r.output and "10 replications (0 computed now)" in r.output
    assert f"warning: {empty} of 10 replications returned no estimate" in r.output

    sw = sweep(load_scenario(str(tiny_yaml)), [parse_vary("population.users=60,120")], 10,
               out_dir=tmp_path / "s", replicate=sometimes_empty_replicate, figures=False)
    assert sw.to_json()["completed"] == 20 and sw.to_json()["without_estimates"] == 2 * empty
