"""Staggered rollouts whose intervals rest on too few comparison users, or on forbidden comparisons.

- ``did-staggered`` with fewer than ``FEW_USERS`` (10) users in its comparison group (the never-treated
  users under ``control_group: never_treated``; the smallest comparison group of the cells it
  aggregates under not-yet-treated controls) puts a FEW CONTROLS warning on every estimate: a tester's
  rollout with 2-4 never-treated users of 300 covered 62-82% at 95%.
- ``twfe`` with no never-treated user compares later cohorts with already-treated ones (Goodman-Bacon
  2021) and says so with a FORBIDDEN COMPARISONS warning.
- The shipped design (10% never treated) shows neither.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from counterfeed.core.scenario import load_scenario
from counterfeed.plugins.estimators._obs_did import comparison_users, few_controls_warning
from counterfeed.plugins.estimators._stats import FEW_USERS
from tests.observational.test_staggered_unidentified_cells import _strict_json

ROOT = Path(__file__).resolve().parents[2]
BOTH = [{"estimator": "did-staggered", "metrics": ["clicks"], "control_group": "never_treated"},
        {"estimator": "did-staggered", "metrics": ["clicks"]},
        {"estimator": "twfe", "metrics": ["clicks"]}]


def _run(tmp_path_factory, **overrides):
    from counterfeed.core.runner import run

    out = tmp_path_factory.mktemp("stag")
    sc = load_scenario(ROOT / "scenarios" / "staggered_rollout.yaml").with_overrides({
        "catalog.items": 200, "output.dir": str(out), "output.report": False, **overrides})
    return run(sc, workers=1)


def _never(res) -> int:
    adoption = pd.read_parquet(res.run_dir / "assignment.parquet")["adoption"].to_numpy(dtype=float)
    return int((~np.isfinite(adoption)).sum())


def _rows(res, estimator: str, control_group: str | None = None):
    return [e for e in res.estimates if e.estimator == estimator
            and (control_group is None or e.diagnostics.get("control_group") == control_group)]


@pytest.fixture(scope="module")
def few_never(tmp_path_factory):
    """200 users, cohorts of 32% on days 1, 3 and 5 of 6: 8 users never treated."""
    return _run(tmp_path_factory, **{
        "population.users": 200, "experiment.duration": "6d", "analysis": BOTH,
        "experiment.assignment.cohorts": [{"at": "1d", "share": 0.32}, {"at": "3d", "share": 0.32},
                                          {"at": "5d", "share": 0.32}]})


@pytest.fixture(scope="module")
def everyone_adopts(tmp_path_factory):
    """160 users, cohorts of 50% on days 1 and 3 of 6: nobody never treated."""
    return _run(tmp_path_factory, **{
        "population.users": 160, "experiment.duration": "6d", "analysis": BOTH[1:],
        "experiment.assignment.cohorts": [{"at": "1d", "share": 0.5}, {"at": "3d", "share": 0.5}]})


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """The shipped design (cohorts of 30% on days 1, 5, 9 of 14; 10% never) at 300 users."""
    return _run(tmp_path_factory, **{"population.users": 300, "analysis": BOTH})


def _few(e) -> list[str]:
    return [w for w in e.diagnostics.get("warnings", []) if w.startswith("FEW CONTROLS")]


def _forbidden(e) -> list[str]:
    return [w for w in e.diagnostics.get("warnings", []) if w.startswith("FORBIDDEN COMPARISONS")]


# -- the rule ----------------------------------------------------------------------------------------
def test_comparison_users_rule():
    # 2 never treated, cohorts at periods 2 (3 users) and 4 (5 users); panel periods 0..5
    coh = pd.Series([np.nan, np.nan, 2, 2, 2, 4, 4, 4, 4, 4], dtype=float)
    cells = {(2.0, 2), (2.0, 3), (2.0, 4), (2.0, 5), (4.0, 4), (4.0, 5), (2.0, 1)}  # (2, 1): a pre-period cell
    assert comparison_users(coh, cells, "never_treated") == 2
    # not yet treated: 2 + 5 in periods 2 and 3, only the 2 never-treated users from period 4 on
    assert comparison_users(coh, cells, "not_yet_treated") == 2
    assert comparison_users(coh, {(2.0, 2), (2.0, 3)}, "not_yet_treated") == 7
    assert comparison_users(coh, {(2.0, 1)}, "not_yet_treated") is None
    assert few_controls_warning(FEW_USERS, "never_treated") is None
    w = few_controls_warning(FEW_USERS - 1, "never_treated")
    assert w.startswith(f"FEW CONTROLS: only {FEW_USERS - 1} never-treated users") and "rough" in w


# -- runs --------------------------------------------------------------------------------------------
def test_did_staggered_warns_with_few_never_treated_users(few_never):
    n = _never(few_never)
    assert 2 <= n < FEW_USERS
    for group in ("never_treated", "not_yet_treated"):
        rows = _rows(few_never, "did-staggered", group)
        assert len(rows) >= 2  # att and event times
        for e in rows:  # every estimate; under not-yet-treated the last cohort's cells have only the never-treated
            assert e.diagnostics["comparison_users"] == n
            assert len(_few(e)) == 1, (group, e.estimand, e.diagnostics.get("warnings"))
            assert f"only {n} " in _few(e)[0] and "does not keep its level" in _few(e)[0]
    # twfe has a few never-treated users here, fewer than FEW_USERS: its comparisons rest mostly on
    # already-treated controls (break test 5: with 1 never-treated user it missed the ATT, unwarned)
    (tw,) = _rows(few_never, "twfe")
    assert tw.diagnostics["never_treated_users"] == n and len(_forbidden(tw)) == 1
    assert f"only {n} users are never treated (fewer than {FEW_USERS})" in _forbidden(tw)[0]
    # strict JSON, warnings included
    rows = _strict_json(few_never.run_dir / "estimates.json")
    rows = rows["estimates"] if isinstance(rows, dict) else rows
    assert any(w.startswith("FEW CONTROLS") for r in rows if r["estimator"] == "did-staggered"
               for w in r["diagnostics"]["warnings"])


def test_twfe_warns_without_never_treated_users(everyone_adopts):
    assert _never(everyone_adopts) == 0
    (tw,) = _rows(everyone_adopts, "twfe")
    assert tw.diagnostics["never_treated_users"] == 0
    (w,) = _forbidden(tw)
    assert "Goodman-Bacon 2021" in w and "de Chaisemartin" in w
    # did-staggered's identified cells compare cohort 1 with the 80 users of cohort 2: no FEW CONTROLS
    for e in _rows(everyone_adopts, "did-staggered"):
        assert not _few(e) and not _forbidden(e)


def test_shipped_design_shows_neither_warning(shipped):
    n = _never(shipped)
    assert n >= FEW_USERS
    rows = _rows(shipped, "did-staggered") + _rows(shipped, "twfe")
    assert len(rows) > 3
    for e in rows:
        assert not _few(e) and not _forbidden(e), (e.estimator, e.estimand, e.diagnostics.get("warnings"))
    assert all(e.diagnostics["comparison_users"] == n for e in _rows(shipped, "did-staggered", "never_treated"))
