"""The ``ope`` click command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from ope_sim import simulate

from counterfeed.ope.cli import ope


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    p0 = np.full((2, 4), 0.25)
    pe = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    log, table, truth = simulate(rng, 400, p0, np.array([.1, .3, .5, .7]), np.array([1.0, .5]), pe)
    df = pd.DataFrame({"request": log.round_ids[log.round], "item_id": log.item, "position": log.position,
                       "click": log.reward, "propensity": log.propensity})
    lp, tp = tmp_path / "logs.csv", tmp_path / "target.parquet"
    df.to_csv(lp, index=False)
    table.to_parquet(tp)
    return str(lp), str(tp), log


def test_json_output(files):
    lp, tp, log = files
    res = CliRunner().invoke(ope, [lp, "--target-probs", tp, "--columns", "round=request,item=item_id,reward=click",
                                   "--estimators", "ips,snips,dr,dm,sndr,switch-dr,dr-os", "--json", "--clip", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert [r["estimator"] for r in out] == ["ips", "snips", "dr", "dm", "sndr", "switch-dr", "dr-os"]
    for r in out:
        assert r["lower"] <= r["value"] <= r["upper"]
        assert r["logging_value"] == pytest.approx(log.reward.mean())
        assert r["diagnostics"]["n_impressions"] == 800 and r["diagnostics"]["n_rounds"] == 400
        assert {"ess", "max_weight", "clipped_share"} <= set(r["diagnostics"])


def test_table_output_and_bootstrap(files):
    lp, tp, _ = files
    res = CliRunner().invoke(ope, [lp, "--target-probs", tp, "--columns", "round=request,item=item_id,reward=click",
                                   "--bootstrap", "50", "--level", "0.9"])
    assert res.exit_code == 0, res.output
    assert "snips" in res.output and "90% interval" in res.output and "logging policy value" in res.output


@pytest.mark.parametrize("args,pattern", [
    ([], "give exactly one of --policy and --target-probs"),
    (["--columns", "round=request,item=item_id,reward=click", "--target-probs", "TP", "--policy", "x"],
     "give exactly one"),
    (["--target-probs", "TP"], r"logs\.csv: missing column 'round'"),
    (["--columns", "round=request,item=item_id,reward=click", "--target-probs", "TP", "--estimators", "ipz"],
     "unknown OPE estimator 'ipz'"),
    (["--columns", "round=request,item=item_id,reward=click", "--policy", "nosuchpolicy"],
     "unknown recommender 'nosuchpolicy'"),
    (["--columns", "round=request,item=item_id,reward=click", "--target-probs", "TP", "--policy-option", "a=1"],
     "--policy-option needs --policy"),
])
def test_user_errors(files, registry, args, pattern):
    lp, tp, _ = files
    res = CliRunner().invoke(ope, [lp, *[tp if a == "TP" else a for a in args]])
    assert res.exit_code != 0
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert pd.Series([res.output]).str.contains(pattern).all(), res.output


def test_policy_option(files, registry):
    lp, _, _ = files
    res = CliRunner().invoke(ope, [lp, "--columns", "round=request,item=item_id,reward=click", "--policy",
                                   "test-fixed", "--policy-option", "reverse=true", "--json", "--estimators", "ips"])
    assert res.exit_code == 0, res.output
    (r,) = json.loads(res.output)
    assert r["diagnostics"]["max_weight"] == pytest.approx(4.0)
