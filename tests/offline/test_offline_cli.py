"""``counterfeed offline``: the command on a simulator-layout log, its JSON, and its user errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from counterfeed.testing.fixtures import make_context, make_log


@pytest.fixture
def log_file(tmp_path):
    ctx = make_context(n_items=40, n_users=60, slate_size=4, seed=1)
    log = make_log(ctx, n_requests=800, seed=2, start=0.0, end=10.0)
    p = tmp_path / "impressions.csv"
    pd.DataFrame(log.to_dict()).to_csv(p, index=False)
    return p, log


def cf(*args):
    return subprocess.run([sys.executable, "-m", "counterfeed", "offline", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_offline_json_on_a_simulator_log(log_file):
    path, log = log_file
    res = cf(path, "--policy", "popularity", "--k", "5,10", "--split-time", "8", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)[0]
    assert out["policy"] == "popularity" and out["split_time"] == 8.0
    held = (log.time >= 8) & log.click
    assert out["n_test_clicks"] == int(held.sum())
    names = {(e["metric"], e["weighting"]) for e in out["estimates"]}
    assert names == {(m, w) for m in ("recall@5", "ndcg@5", "recall@10", "ndcg@10", "mrr") for w in ("naive", "ipw")}
    for e in out["estimates"]:
        assert 0 <= e["value"] <= 1 and e["lower"] <= e["value"] <= e["upper"]
    # uniform logging (propensity 1/40 everywhere): the IPW estimate is the naive one
    by = {(e["metric"], e["weighting"]): e["value"] for e in out["estimates"]}
    assert by[("mrr", "ipw")] == pytest.approx(by[("mrr", "naive")])
    assert set(out["coverage"]) == {"coverage@5", "coverage@10"}


def test_offline_table(log_file):
    res = cf(log_file[0], "--policy", "popularity")
    assert res.returncode == 0, res.stderr
    assert "recall@10" in res.stdout and "ipw (self-normalized, consistent)" in res.stdout and "coverage@10" in res.stdout


@pytest.mark.parametrize("args, message", [
    (["--policy", "popularr"], "popularr"),
    (["--policy", "popularity", "--k", "0"], "--k"),
    (["--policy", "popularity", "--k", "200"], "larger than --cutoff"),
    (["--policy", "popularity", "--split-time", "100"], "held-out clicks"),
    (["--policy", "popularity", "--columns", "item=nope"], "nope"),
])
def test_offline_user_errors_exit_2(log_file, args, message):
    res = cf(log_file[0], *args)
    assert res.returncode == 2, res.stdout + res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
