"""Truth of ATT, LATE and the staggered estimands, derived by hand on tiny cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from counterfeed.core.contracts import WorldEvents
from counterfeed.core.experiment import AB_WORLD
from counterfeed.core.panel import world_panel
from counterfeed.core.truth_observational import observational_truth
from counterfeed.plugins.metrics.engagement import CTR, Clicks, Impressions


def _outcomes() -> pd.DataFrame:
    """Four users; per-user clicks effects (all-treatment minus all-control) 1, 3, 0, 4."""
    rows = []
    ab_arm = ["control", "treatment", "control", "treatment"]
    seg = ["a", "a", "b", "b"]
    worlds = {"all-control": ([1, 2, 3, 4], [10, 10, 10, 10]), "all-treatment": ([2, 5, 3, 8], [10, 20, 10, 20]),
              AB_WORLD: ([1, 5, 3, 8], [10, 20, 10, 20])}
    for world, (clicks, imps) in worlds.items():
        for u in range(4):
            arm = ab_arm[u] if world == AB_WORLD else world[4:]
            rows.append({"world": world, "user": u, "arm": arm, "segment": seg[u], "clicks": float(clicks[u]),
                         "impressions": float(imps[u]), "ctr": clicks[u] / imps[u]})
    return pd.DataFrame(rows)


def _value(truth: pd.DataFrame, metric: str, estimand: str, segment=None) -> float:
    sel = (truth["metric"] == metric) & (truth["estimand"] == estimand)
    sel &= truth["segment"].isna() if segment is None else truth["segment"] == segment
    assert sel.sum() == 1, truth
    return float(truth.loc[sel, "value"].iloc[0])


def test_att_and_late_by_hand():
    infos = {"clicks": Clicks().info(), "ctr": CTR().info()}
    compliance = np.array(["complier", "complier", "never-taker", "always-taker"], dtype=object)
    truth = observational_truth(_outcomes(), {}, ["control", "treatment"], "control", infos,
                                {"mechanism": "encouragement", "compliance": compliance})
    # ATT: treated users 1 and 3, effects 3 and 4
    assert _value(truth, "clicks", "att") == pytest.approx(3.5, abs=1e-12)
    # per segment: user 1 in a (3), user 3 in b (4)
    assert _value(truth, "clicks", "att", "a") == pytest.approx(3.0, abs=1e-12)
    assert _value(truth, "clicks", "att", "b") == pytest.approx(4.0, abs=1e-12)
    # LATE: compliers 0 and 1, effects 1 and 3
    assert _value(truth, "clicks", "late") == pytest.approx(2.0, abs=1e-12)
    # ratio metric: ratio of sums per world over the treated: 13/40 - 6/20
    assert _value(truth, "ctr", "att") == pytest.approx(13 / 40 - 6 / 20, abs=1e-12)
    assert set(truth["estimand"]) == {"att", "late"}
    # a selection design has no compliers: no LATE row; a randomized one adds nothing
    sel = observational_truth(_outcomes(), {}, ["control", "treatment"], "control", infos,
                              {"mechanism": "selection"})
    assert set(sel["estimand"]) == {"att"}
    assert observational_truth(_outcomes(), {}, ["control", "treatment"], "control", infos, None).empty


def _events(world: str, rows: list[tuple[int, float, int]]) -> WorldEvents:
    user = np.array([r[0] for r in rows], dtype=np.int64)
    n = len(rows)
    sessions = {"user": user, "session": np.arange(n), "time": np.array([r[1] for r in rows]),
                "arm": np.zeros(n, np.int16), "impressions": np.full(n, 10, np.int16),
                "clicks": np.array([r[2] for r in rows], np.int16), "dwell": np.zeros(n), "churned": np.zeros(n, bool)}
    return WorldEvents(world=world, n_users=3, sessions=sessions, impressions=None, start=0.0, end=4.0,
                       arms=["control", "treatment"], assignment=np.zeros(3, np.int64))


def test_staggered_att_and_event_time_effects_by_hand():
    # user 0 adopts on day 1, user 1 on day 3, user 2 never; periods of one day over [0, 4)
    adoption = np.array([1.0, 3.0, np.inf])
    never = _events("all-control", [(0, 1.5, 2), (0, 2.5, 1), (0, 3.5, 1), (1, 3.2, 1), (2, 2.1, 3)])
    ab = _events(AB_WORLD, [(0, 1.5, 3), (0, 2.5, 3), (0, 3.5, 4), (1, 3.2, 4), (2, 2.1, 3)])
    metrics = {"clicks": Clicks(), "impressions": Impressions()}
    panel = world_panel(ab, metrics, adoption, 1.0, 4.0)
    assert panel["treated"].tolist() == [0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 0]  # period-major
    assert panel.loc[panel["user"] == 0, "clicks"].tolist() == [0, 3, 3, 4]
    truth = observational_truth(pd.DataFrame(), {AB_WORLD: ab, "all-control": never}, ["control", "treatment"],
                                "control", {"clicks": Clicks().info()},
                                {"mechanism": "staggered", "adoption": adoption, "period": 1.0}, metrics, 4.0)
    # treated cells: user 0 at e = 0, 1, 2 with effects 1, 2, 3; user 1 at e = 0 with effect 3
    assert _value(truth, "clicks", "att(e=0)") == pytest.approx(2.0, abs=1e-12)
    assert _value(truth, "clicks", "att(e=1)") == pytest.approx(2.0, abs=1e-12)
    assert _value(truth, "clicks", "att(e=2)") == pytest.approx(3.0, abs=1e-12)
    assert _value(truth, "clicks", "att") == pytest.approx(9 / 4, abs=1e-12)
    assert set(truth["estimand"]) == {"att", "att(e=0)", "att(e=1)", "att(e=2)"}


def test_a_run_appends_the_att_over_the_users_who_took_the_treatment(small):
    """The runner's ATT row is the mean, over the A/B world's treated users, of their all-treatment
    minus all-control outcomes."""
    from counterfeed.core.runner import run

    sc = small(**{"experiment.assignment": {"mechanism": "selection", "coefficients": {"pre_sessions": 1.0}}})
    res = run(sc, write=False)
    o = res.outcomes
    ab = o[o["world"] == AB_WORLD].set_index("user")
    treated = ab.index[ab["arm"] == "treatment"]
    ctrl = o[o["world"] == "all-control"].set_index("user").loc[treated, "clicks"]
    cf = o[o["world"] == "all-treatment"].set_index("user").loc[treated, "clicks"]
    assert 0 < len(treated) < len(ab)
    assert _value(res.truth, "clicks", "att") == pytest.approx(float((cf - ctrl).mean()), abs=1e-12)
    assert res.manifest["assignment"]["mechanism"] == "selection"
