"""A log whose click model is not identified (tester: 900 impressions, no click; `twin fit` exited 0 and
`twin evaluate` gave a CTR effect of -0.00064 [-0.0061, 0.0049]).

- no click, or every impression clicked: `twin fit` is one error naming the file and the counts, exit
  2, nothing written; likewise when the fitting users (after --holdout) have none;
- fewer than FEW_CLICKS (10) clicks, or skips, among the fitting users: a loud FEW CLICKS warning at
  fit, recorded counts in twin.json, and the same warning on every effect of `twin evaluate`;
- a bootstrap resample that drew no click is refitted (a draw of the sampling distribution), not refused.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from counterfeed.errors import DataError
from counterfeed.twin.cli import twin


def _frame(n_users: int = 8, sessions: int = 3, slate: int = 3, click=lambda u, s, j: j == 0) -> pd.DataFrame:
    rows = []
    for u in range(n_users):
        for s in range(sessions):
            for j in range(slate):
                rows.append({"round": f"{u}-{s}", "user": u, "time": float(s) + 0.01 * u, "item": (u + s + j) % 7,
                             "position": j, "reward": int(click(u, s, j)), "propensity": 0.2})
    return pd.DataFrame(rows)


def _load(frame):
    from counterfeed.twin.data import twin_log_from_frame

    return twin_log_from_frame(frame, source="log.csv")


@pytest.mark.parametrize("reward, words", [(0, "0 clicks in 72 impressions (8 users): no impression was clicked"),
                                           (1, "72 clicks in 72 impressions (8 users): every impression was clicked")])
def test_a_log_without_clicks_or_skips_is_refused_and_nothing_is_written(tmp_path, reward, words):
    path = tmp_path / "log.csv"
    _frame(click=lambda u, s, j: reward).to_csv(path, index=False)
    out = tmp_path / "twin"
    res = CliRunner().invoke(twin, ["fit", str(path), "--out", str(out), "--bootstrap", "2", "--quiet"])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1 and str(path) in lines[0] and words in lines[0], res.output
    assert "click model is not identified" in lines[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_the_console_script_exits_2_on_a_log_without_clicks(tmp_path):
    path = tmp_path / "noclicks.csv"
    _frame(click=lambda u, s, j: 0).to_csv(path, index=False)
    res = subprocess.run([sys.executable, "-m", "counterfeed", "twin", "fit", str(path), "--out", str(tmp_path / "t"),
                          "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "0 clicks in 72 impressions" in res.stderr, res.stderr
    assert not (tmp_path / "t").exists()


def test_clicks_only_among_held_out_users_are_refused_naming_holdout():
    from counterfeed.twin.fit import FitSettings, _split, fit_twin

    n = 10
    _, held = _split(n, 0.2, np.random.default_rng(0))  # fit_twin's split for seed 0
    assert held.size == 2
    log = _load(_frame(n_users=n, click=lambda u, s, j: u in set(held.tolist()) and j == 0))
    with pytest.raises(DataError, match=r"log\.csv: the 8 fitting users have 0 clicks in 72 impressions \(no "
                                        r"impression was clicked; the log's other 6 clicks and 12 skips are among "
                                        r"the 2 users held out by --holdout 0\.2\)"):
        fit_twin(log, FitSettings(dims=2, bootstrap=0, epochs=1, seed=0, holdout=0.2))


def test_few_clicks_warn_loudly_at_fit_and_on_every_evaluated_effect(tmp_path):
    from counterfeed.twin.evaluate import _few_clicks
    from counterfeed.twin.fit import FEW_CLICKS, FitSettings, fit_twin
    from counterfeed.twin.store import read_meta, write_twin

    assert FEW_CLICKS == 10
    log = _load(_frame(click=lambda u, s, j: u < 3 and s == 0 and j == 0))  # 3 clicks in 72 impressions
    with pytest.warns(UserWarning, match=r"FEW CLICKS: log\.csv: the 8 fitting users have 3 clicks in 72 "
                                         r"impressions, fewer than 10"):
        meta, reps = fit_twin(log, FitSettings(dims=2, bootstrap=0, epochs=1, seed=0, holdout=0.0))
    assert (meta["n_clicks"], meta["n_train_clicks"], meta["n_train_impressions"]) == (3, 3, 72)
    path = write_twin(tmp_path / "twin", meta, reps)
    assert "FEW CLICKS" in _few_clicks(path, read_meta(path)) and "3 clicks in 72 impressions" in _few_clicks(
        path, read_meta(path))
    assert (meta["n_train_clickers"], meta["n_train_skippers"]) == (3, 8)
    many = {**read_meta(path), "n_train_clickers": 10, "n_train_skippers": 10}  # as if 10 users clicked, 10 skipped
    assert _few_clicks(path, {**many, "n_train_clicks": 30}) == ""  # 30 clicks and 42 skips
    assert "42 skips" not in _few_clicks(path, {**many, "n_train_clicks": 66})
    assert "6 skips" in _few_clicks(path, {**many, "n_train_clicks": 66})  # few skips: as loud
    old = {k: v for k, v in read_meta(path).items()
           if k not in ("n_train_clicks", "n_train_impressions", "n_train_clickers", "n_train_skippers")}
    assert _few_clicks(path, old) == ""  # a twin written before the counts were recorded
    # a twin written before the users were counted: the clicks alone decide
    assert _few_clicks(path, {k: v for k, v in {**read_meta(path), "n_train_clicks": 30}.items()
                              if k not in ("n_train_clickers", "n_train_skippers")}) == ""


def test_many_clicks_of_few_users_warn_too():
    """Break test 3: FEW CLICKS counted clicks, not users; 48 clicks of 2 users tell the spread of the
    users' tastes, from which the twin draws new users, no more than 2 users do."""
    from counterfeed.twin.fit import FitSettings, few_clicks_warning, fit_twin

    log = _load(_frame(n_users=12, sessions=4, slate=3, click=lambda u, s, j: u < 2))  # 24 clicks, 2 users
    with pytest.warns(UserWarning, match=r"FEW CLICKS: log\.csv: the 12 fitting users include only 2 users who "
                                         r"clicked \(24 clicks in 144 impressions\), fewer than 10"):
        meta, _ = fit_twin(log, FitSettings(dims=2, bootstrap=0, epochs=1, seed=0, holdout=0.0))
    assert (meta["n_train_clicks"], meta["n_train_clickers"], meta["n_train_skippers"]) == (24, 2, 10)
    assert few_clicks_warning(24, 144, "x", 10, 10) == ""
    assert "only 3 users who skipped an item (120 skips" in few_clicks_warning(24, 144, "x", 10, 3)


def test_evaluate_repeats_the_few_clicks_warning(tmp_path):
    path = tmp_path / "few.csv"
    _frame(n_users=6, sessions=2, click=lambda u, s, j: u < 2 and s == 0 and j == 0).to_csv(path, index=False)
    out = tmp_path / "twin"
    with pytest.warns(UserWarning, match="FEW CLICKS"):
        res = CliRunner().invoke(twin, ["fit", str(path), "--out", str(out), "--bootstrap", "2", "--epochs", "1",
                                        "--dims", "2", "--holdout", "0", "--quiet"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(twin, ["evaluate", str(out), "--policy", "popularity", "--logging-policy", "random",
                                    "--no-ope", "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    effects = json.loads(res.output)["effects"]
    assert effects and all(any(w.startswith("FEW CLICKS") and "2 clicks in 36 impressions" in w
                               for w in e["warnings"]) for e in effects)


def test_a_bootstrap_resample_without_clicks_is_refitted_not_refused():
    """One clicking user, left out of replicate 1's resample: the point fit is allowed (with FEW CLICKS),
    and the replicate, whose resampled log has no click, is refitted rather than failing the fit."""
    from counterfeed.twin.fit import FitSettings, fit_twin

    n = 8
    draw = np.random.default_rng([0, 1]).integers(0, n, n)  # user_bootstrap's draw of replicate 1
    clicker = int(np.setdiff1d(np.arange(n), draw)[0])
    log = _load(_frame(n_users=n, click=lambda u, s, j: u == clicker and j == 0))
    with pytest.warns(UserWarning, match="FEW CLICKS"):
        meta, reps = fit_twin(log, FitSettings(dims=2, bootstrap=1, epochs=1, seed=0, holdout=0.0))
    assert len(reps) == 2 and meta["n_train_clicks"] == 3
