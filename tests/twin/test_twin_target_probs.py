"""``twin evaluate --target-probs``: the target as a context-free probability table (recommender
``probability-table``)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from click.testing import CliRunner

from counterfeed.testing import check_recommender
from counterfeed.twin.policy import TableRecommender


def test_table_policy_passes_the_recommender_conformance_suite():
    assert set(check_recommender(TableRecommender).values()) == {"passed"}


def test_table_policy_draws_the_table_when_positions_do_not_share_items():
    from counterfeed.testing.fixtures import make_batch, make_context

    ctx = make_context(n_items=10, n_users=50, slate_size=2, seed=1)
    probs = [[0.5, 0.3, 0.2] + [0.0] * 7, [0.0] * 3 + [0.6, 0.4] + [0.0] * 5]
    rec = TableRecommender(TableRecommender.Options(probs=probs, propensity_samples=20_000))
    rec.setup(ctx)
    n = 4000
    out = rec.recommend(make_batch(ctx, np.zeros(n, np.int64), sessions=np.arange(n)))
    for j, row in enumerate(probs):
        freq = np.bincount(out.items[:, j], minlength=10) / n
        # 4,000 draws: binomial standard error at most 0.008; 4 of them
        assert np.all(np.abs(freq - np.asarray(row)) < 0.032)
        np.testing.assert_allclose(out.propensities[:, j], np.asarray(row)[out.items[:, j]], atol=0.015)


def test_evaluate_with_target_probs(twin_dir, tmp_path):
    from counterfeed.twin.cli import twin
    from counterfeed.twin.store import read_meta

    meta = read_meta(twin_dir)
    ids = meta["item_ids"]
    table = pd.DataFrame([{"item": i, "position": j, "prob": 1.0 / (3 + j)} for j in range(meta["slate_size"])
                          for i in ids[:3 + j]])  # positions overlap: renormalized sequential draws
    path = tmp_path / "target.csv"
    table.to_csv(path, index=False)
    res = CliRunner().invoke(twin, ["evaluate", str(twin_dir), "--target-probs", str(path), "--users", "120",
                                    "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert {e["metric"] for e in out["effects"]} == {"ctr", "clicks", "sessions", "retained"}
    assert [r["estimator"] for r in out["ope"]] == ["ips", "dr"], out["ope"]


def test_target_probs_errors_exit_2(twin_dir, tmp_path):
    from counterfeed.twin.cli import twin

    per_round = tmp_path / "rounds.csv"
    pd.DataFrame({"round": [0], "position": [0], "item": [0], "prob": [1.0]}).to_csv(per_round, index=False)
    res = CliRunner().invoke(twin, ["evaluate", str(twin_dir), "--target-probs", str(per_round)])
    assert res.exit_code == 2 and "per-round table cannot be simulated" in res.output
    res = CliRunner().invoke(twin, ["evaluate", str(twin_dir), "--target-probs", str(per_round),
                                    "--policy", "random"])
    assert res.exit_code == 2 and "exactly one of --policy and --target-probs" in res.output
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"item": [0], "position": [99], "prob": [1.0]}).to_csv(bad, index=False)
    res = CliRunner().invoke(twin, ["evaluate", str(twin_dir), "--target-probs", str(bad)])
    assert res.exit_code == 2 and "column 'position' row 1" in res.output
