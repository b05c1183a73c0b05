"""A learned rule that treats nobody or everyone, and an oracle from a noisy truth (tester17 M7, M6): a
warning, a null DR gain over the baseline the rule equals (never a [0, 0] interval presented as a
measured gain), and the oracle's replications and Monte Carlo uncertainty in the manifest and report."""

from __future__ import annotations

import numpy as np
import pytest

from counterfeed.core.runner import run
from counterfeed.core.targeting import _rule_warnings
from tests.conftest import small_scenario
from tests.heterogeneity.test_targeting import preset  # noqa: F401 -- the preset CATE estimator fixture


def _scenario():
    return small_scenario(**{"population.features": {"dimensions": 3},
                             "experiment.arms": {"control": {"recommender": "popularity"},
                                                 "treatment": {"recommender": "random"}},
                             "truth": {"replications": 2}, "analysis": [{"estimator": "test-preset-cate"}],
                             "targeting": {"metric": "clicks"}})


@pytest.mark.parametrize("sign, share, null, kept", [(-1.0, 0.0, "dr_gain_vs_control", "dr_gain_vs_arm"),
                                                     (1.0, 1.0, "dr_gain_vs_arm", "dr_gain_vs_control")])
def test_a_rule_that_treats_nobody_or_everyone_warns_and_has_no_zero_width_gain(preset, tmp_path, sign, share,
                                                                                null, kept, capsys):
    sc = _scenario()
    preset.predictions = {"clicks": np.full(sc.population.users, sign * 1e6)}
    res = run(sc, output_dir=tmp_path)
    t = res.manifest["targeting"]
    rule = next(r for r in t["rules"] if r["rule"] == "test-preset-cate")
    assert rule["treated_share"] == share
    assert rule["ope"][null] is None and rule["ope"][f"{null}_covers"] is None
    assert rule["ope"][kept]["upper"] > rule["ope"][kept]["lower"]
    which = "ALL-CONTROL" if share == 0.0 else "ALL-TREATMENT"
    assert any(w.startswith(f"RULE IS {which}") for w in rule["warnings"])
    assert f"RULE IS {which}" in capsys.readouterr().err  # shown under --quiet too (stderr)
    assert t["oracle_replications"] == 2 and 0.0 <= t["oracle_uncertain_share"] <= 1.0
    from counterfeed.core.report import write_report

    write_report(res.run_dir)
    md = (res.run_dir / "report.md").read_text()
    assert f"RULE IS {which}" in md and "Regret vs oracle (R=2)" in md and "2 noise replications" in md


def test_a_rule_beating_the_oracle_is_explained():
    entry = {"treated_share": 0.4, "rule": "dr-learner", "regret": -0.48}
    (w,) = _rule_warnings(entry, "treatment", "control")
    assert "beats the oracle" in w and "not an upper bound" in w
    assert _rule_warnings({**entry, "regret": 0.1}, "treatment", "control") == []
