"""Staggered rollouts with treated (cohort, period) cells that no difference in differences identifies.

Without never-treated users nobody is untreated from the latest cohort's adoption on, and a cohort
adopting in the panel's first period has nothing to difference against. ``did-staggered`` then averages
only the identified cells (as R's ``did`` does); these tests check that it says so (a PARTLY
IDENTIFIED warning, the cells in the diagnostics, NOT IDENTIFIED event times) and is scored against the
truth over those cells, and that the shipped design (10% never treated) shows none of it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from counterfeed.core.contracts import WorldEvents
from counterfeed.core.experiment import AB_WORLD
from counterfeed.core.panel import comparison_end, identified_cells, world_panel
from counterfeed.core.scenario import load_scenario
from counterfeed.core.truth_observational import identified_estimand, observational_truth
from counterfeed.plugins.metrics.engagement import Clicks, Impressions

ROOT = Path(__file__).resolve().parents[2]


# -- the rule ----------------------------------------------------------------------------------------
def test_identified_cells_rule():
    # cohorts 1 and 3, nobody never treated: nothing from period 3 on, nor the latest cohort
    everyone = np.array([1.0, 3.0, 3.0])
    assert comparison_end(everyone) == 3.0
    assert identified_cells([1, 1, 1, 3], [1, 2, 3, 3], everyone).tolist() == [True, True, False, False]
    # a never-treated user (NaN or inf) is a comparison in every period
    assert comparison_end(np.array([1.0, 3.0, np.nan])) == math.inf
    assert comparison_end(np.array([1.0, np.inf])) == math.inf
    assert identified_cells([1, 3, 3], [5, 3, 9], np.array([1.0, 3.0, np.nan])).all()
    # a cohort adopting in the first period has no base period, never-treated users or not
    assert identified_cells([0, 0, 2], [0, 4, 2], np.array([0.0, 2.0, np.nan])).tolist() == [False, False, True]


# -- the truth, by hand --------------------------------------------------------------------------------
def _events(world: str, n_users: int, rows: list[tuple[int, float, int]]) -> WorldEvents:
    user = np.array([r[0] for r in rows], dtype=np.int64)
    n = len(rows)
    sessions = {"user": user, "session": np.arange(n), "time": np.array([r[1] for r in rows]),
                "arm": np.zeros(n, np.int16), "impressions": np.full(n, 10, np.int16),
                "clicks": np.array([r[2] for r in rows], np.int16), "dwell": np.zeros(n), "churned": np.zeros(n, bool)}
    return WorldEvents(world=world, n_users=n_users, sessions=sessions, impressions=None, start=0.0, end=4.0,
                       arms=["control", "treatment"], assignment=np.zeros(n_users, np.int64))


def _truth(adoption, ab, never) -> dict[str, float]:
    metrics = {"clicks": Clicks(), "impressions": Impressions()}
    truth = observational_truth(pd.DataFrame(), {AB_WORLD: ab, "all-control": never}, ["control", "treatment"],
                                "control", {"clicks": Clicks().info()},
                                {"mechanism": "staggered", "adoption": np.asarray(adoption), "period": 1.0},
                                metrics, 4.0)
    assert truth["segment"].isna().all()
    return dict(zip(truth["estimand"], truth["value"]))


def test_truth_over_the_identified_cells_without_never_treated_users():
    # user 0 adopts on day 1, users 1 and 2 on day 3, nobody never; one-day periods over [0, 4).
    # Treated cells (user, period: effect): (0, 1: 1), (0, 2: 2), (0, 3: 3), (1, 3: 4), (2, 3: 2).
    # Nobody is untreated in period 3: only user 0's periods 1 and 2 are identified.
    adoption = [1.0, 3.0, 3.0]
    never = _events("all-control", 3, [(0, 1.5, 2), (0, 2.5, 1), (0, 3.5, 1), (1, 3.2, 1), (2, 3.4, 2)])
    ab = _events(AB_WORLD, 3, [(0, 1.5, 3), (0, 2.5, 3), (0, 3.5, 4), (1, 3.2, 5), (2, 3.4, 4)])
    t = _truth(adoption, ab, never)
    assert t["att"] == pytest.approx((1 + 2 + 3 + 4 + 2) / 5, abs=1e-12)  # the rollout's ATT: unchanged
    assert t[identified_estimand("att")] == pytest.approx((1 + 2) / 2, abs=1e-12)
    assert t["att(e=0)"] == pytest.approx((1 + 4 + 2) / 3, abs=1e-12)
    assert t[identified_estimand("att(e=0)")] == pytest.approx(1.0, abs=1e-12)  # user 0's e=0 cell only
    # e=1 is wholly identified (no [identified] row, it would equal att(e=1)); e=2 not at all (nothing to score)
    assert t["att(e=1)"] == pytest.approx(2.0, abs=1e-12)
    assert t["att(e=2)"] == pytest.approx(3.0, abs=1e-12)
    assert set(t) == {"att", "att[identified]", "att(e=0)", "att(e=0)[identified]", "att(e=1)", "att(e=2)"}


def test_truth_leaves_out_a_cohort_adopting_in_the_first_period():
    # user 0 adopts on day 0 (no earlier period), user 1 on day 2, user 2 never
    adoption = [0.0, 2.0, np.inf]
    never = _events("all-control", 3, [(0, 0.5, 1), (0, 2.5, 1), (1, 2.5, 1), (1, 3.5, 2), (2, 1.5, 1)])
    ab = _events(AB_WORLD, 3, [(0, 0.5, 4), (0, 2.5, 2), (1, 2.5, 4), (1, 3.5, 3), (2, 1.5, 1)])
    t = _truth(adoption, ab, never)
    # treated cells: user 0 in periods 0-3 (effects 3, 0, 1, 0), user 1 in periods 2-3 (effects 3, 1)
    assert t["att"] == pytest.approx((3 + 0 + 1 + 0 + 3 + 1) / 6, abs=1e-12)
    assert t["att[identified]"] == pytest.approx((3 + 1) / 2, abs=1e-12)
    assert t["att(e=0)[identified]"] == pytest.approx(3.0, abs=1e-12)
    assert t["att(e=1)[identified]"] == pytest.approx(1.0, abs=1e-12)
    assert not any(k.startswith("att(e=2)[") or k.startswith("att(e=3)[") for k in t)


# -- a run ---------------------------------------------------------------------------------------------
def _strict_json(path: Path):
    def refuse(name):
        raise ValueError(f"{path.name} has {name}: JSON must say null")
    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def everyone_adopts(tmp_path_factory):
    """Cohorts on days 1 and 3 of a 6-day experiment (2-day pre-period), shares 0.5 and 0.5."""
    from counterfeed.core.runner import run

    out = tmp_path_factory.mktemp("stag")
    sc = load_scenario(ROOT / "scenarios" / "staggered_rollout.yaml").with_overrides({
        "population.users": 160, "catalog.items": 200, "experiment.duration": "6d",
        "experiment.assignment.cohorts": [{"at": "1d", "share": 0.5}, {"at": "3d", "share": 0.5}],
        "analysis": [{"estimator": "did-staggered", "metrics": ["clicks"]}],
        "output.dir": str(out), "output.report": False})
    return run(sc, keep_events=True, workers=1)


def test_att_without_never_treated_users_says_which_cells_it_averages(everyone_adopts):
    res = everyone_adopts
    est = {e.estimand: e for e in res.estimates if e.estimator == "did-staggered"}
    att = est["att"]
    d = att.diagnostics
    adoption = pd.read_parquet(res.run_dir / "assignment.parquet").sort_values("user")["adoption"].to_numpy()
    n1, n3 = int((adoption == 3.0).sum()), int((adoption == 5.0).sum())  # simulation days (2-day pre-period)
    assert n1 + n3 == len(adoption) and n1 > 0 and n3 > 0
    # the cells, in experiment days: cohort day 1 is identified on days 1-2; nothing is from day 3 on
    assert d["identified_cells"] == [{"cohort_day": 1.0, "users": n1, "period_days": [1.0, 2.0]}]
    assert d["unidentified_cells"] == [{"cohort_day": 1.0, "users": n1, "period_days": [3.0, 4.0, 5.0]},
                                       {"cohort_day": 3.0, "users": n3, "period_days": [3.0, 4.0, 5.0]}]
    share = 3 * (n1 + n3) / (5 * n1 + 3 * n3)
    assert d["unidentified_share"] == pytest.approx(share, abs=1e-12)
    warn = [w for w in d["warnings"] if w.startswith("PARTLY IDENTIFIED")]
    assert len(warn) == 1
    assert f"{share:.0%} of the treated user-periods" in warn[0]
    assert "cohort adopting on day 3" in warn[0] and "days 3 to 5" in warn[0] and "no user is never treated" in warn[0]
    assert d["point_estimand"] == "att[identified]"
    # scored against the ATT over the identified cells, computed here from the worlds' panels
    horizon = float(res.scenario.total_days)
    p_ab = world_panel(res.events[AB_WORLD], {"clicks": Clicks()}, adoption, 1.0, horizon)
    p_c = world_panel(res.events["all-control"], {"clicks": Clicks()}, adoption, 1.0, horizon)
    keep = (p_ab["treated"] == 1).to_numpy() & (p_ab["start"] < 5.0).to_numpy()  # before cohort 2 adopts
    by_hand = float(p_ab.loc[keep, "clicks"].mean() - p_c.loc[keep, "clicks"].mean())
    truth = dict(zip(res.truth.loc[res.truth["metric"] == "clicks", "estimand"],
                     res.truth.loc[res.truth["metric"] == "clicks", "value"]))
    assert att.truth == pytest.approx(by_hand, abs=1e-12)
    assert truth["att[identified]"] == pytest.approx(by_hand, abs=1e-12)
    assert att.error == pytest.approx(att.point - by_hand, abs=1e-12)
    assert truth["att"] != pytest.approx(by_hand, abs=1e-9)  # the rollout's ATT is another number
    # event times: e=0 and e=1 partly identified (cohort 1 only), e=2..4 not at all
    for k in (0, 1):
        e = est[f"att(e={k})"]
        assert e.diagnostics["point_estimand"] == f"att(e={k})[identified]"
        assert e.truth == truth[f"att(e={k})[identified]"] != truth[f"att(e={k})"]
        assert any(w.startswith(f"PARTLY IDENTIFIED: att(e={k})") for w in e.diagnostics["warnings"])
        assert math.isfinite(e.lower) and math.isfinite(e.upper)
    for k in (2, 3, 4):
        e = est[f"att(e={k})"]
        assert e.diagnostics["identified"] is False
        assert math.isnan(e.point) and math.isnan(e.lower) and math.isnan(e.upper) and e.p_value is None
        assert e.error is None and e.covered is None
        assert any(w.startswith(f"NOT IDENTIFIED: att(e={k})") for w in e.diagnostics["warnings"])
    # the run directory's JSON is strict: the NOT IDENTIFIED rows have null, not NaN
    rows = _strict_json(res.run_dir / "estimates.json")
    rows = rows["estimates"] if isinstance(rows, dict) else rows
    e2 = next(r for r in rows if r["estimand"] == "att(e=2)")
    assert e2["point"] is None and e2["lower"] is None and e2["upper"] is None


def test_headline_and_table_say_partly_identified(everyone_adopts):
    from counterfeed.cli import _estimate_row
    from counterfeed.core.findings import headline

    att = next(e for e in everyone_adopts.estimates if e.estimand == "att")
    assert _estimate_row(att)["estimand"] == "att PARTLY IDENTIFIED"
    assert any("PARTLY IDENTIFIED" in line for line in headline(everyone_adopts))


def test_an_estimator_whose_cells_differ_from_the_identified_ones_reports_not_identified():
    from counterfeed.plugins.estimators._obs_did import PanelFit, _mark_identification

    coh = pd.Series([1.0, 1.0, 3.0, 3.0], index=pd.Index(range(4), name="user"))
    periods = np.arange(5)
    fit = PanelFit(0.5, 0.1, events={0: (0.4, 0.1), 1: (0.6, 0.1)})
    # identified: cohort 1 in periods 1 and 2; pretend the package also estimated (1, 3)
    _mark_identification(fit, coh, periods, {(1.0, 1), (1.0, 2), (1.0, 3)}, 1.0, 0.0)
    assert set(fit.unidentified) == {"att", 0, 1}
    assert all(w.startswith("NOT IDENTIFIED") for w in fit.unidentified.values())
    # with the right cells: att, e=0 and e=1 partly identified (cohort 1's cells kept, cohort 3's left
    # out), e=2 and e=3 (cohort 1 in periods 3 and 4) not at all
    fit = PanelFit(0.5, 0.1, events={0: (0.4, 0.1), 1: (0.6, 0.1)})
    _mark_identification(fit, coh, periods, {(1.0, 1), (1.0, 2)}, 1.0, 0.0)
    assert fit.notes["att"]["point_estimand"] == "att[identified]"
    assert fit.notes[0]["point_estimand"] == "att(e=0)[identified]"
    assert fit.notes[1]["point_estimand"] == "att(e=1)[identified]"
    assert set(fit.unidentified) == {2, 3} and math.isnan(fit.events[2][0])
    assert fit.diagnostics_for("att")["point_estimand"] == "att[identified]"
    assert "point_estimand" not in fit.diagnostics


# -- the shipped design ---------------------------------------------------------------------------------
def test_the_shipped_rollout_has_never_treated_users_and_no_such_warning():
    from counterfeed.core.observational_spec import everyone_adopts
    from counterfeed.core.runner import run

    sc = load_scenario(ROOT / "scenarios" / "staggered_rollout.yaml")
    assert not everyone_adopts(sc)  # cohorts take 30% + 30% + 30%: 10% never adopt
    small = sc.with_overrides({"population.users": 120, "catalog.items": 150,
                               "analysis": [{"estimator": "did-staggered", "metrics": ["clicks"]}]})
    res = run(small, write=False, workers=1)
    est = [e for e in res.estimates if e.estimator == "did-staggered"]
    assert {e.estimand for e in est} >= {"att", "att(e=0)", "att(e=12)"}
    for e in est:
        d = e.diagnostics
        assert "point_estimand" not in d and "unidentified_cells" not in d and d.get("identified") is not False
        assert not any(("IDENTIFIED" in w) for w in d.get("warnings", []))
        assert e.truth == pytest.approx(float(res.truth.loc[(res.truth["metric"] == "clicks")
                                                            & (res.truth["estimand"] == e.estimand), "value"].iloc[0]))
    assert not res.truth["estimand"].str.endswith("[identified]").any()
