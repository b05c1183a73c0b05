"""Honest offline intervals on small or degenerate logs: no zero-width interval, t on users - 1 df within
the metric's range, positivity and clipping warnings, the split time, and a log without a time column."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

import counterfeed
from counterfeed.errors import DataError
from counterfeed.offline import evaluate_offline, ratio_estimate, split_log
from counterfeed.ope import load_log
from counterfeed.ope.target import catalog_from_log
from tests.conftest import small_scenario

# The tester's tiny log: three training users, three held-out users with one click each.
TINY = """user,session,time,position,item,click,propensity
0,0,0.1,0,0,1,1.0
0,0,0.1,1,1,1,1.0
1,0,0.2,0,0,1,1.0
1,0,0.2,1,1,1,1.0
2,0,0.3,0,0,1,1.0
2,0,0.3,1,2,1,1.0
2,0,0.3,2,3,0,1.0
2,0,0.3,3,4,0,1.0
10,1,1.0,0,1,1,0.5
11,1,1.1,0,2,1,0.25
12,1,1.2,0,0,1,1.0
"""


def _write(tmp_path, text, name="log.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _all_hit(text):  # every held-out click on item 0, the most popular: rank 1 for everyone
    return text.replace("10,1,1.0,0,1,", "10,1,1.0,0,0,").replace("11,1,1.1,0,2,", "11,1,1.1,0,0,")


def _deterministic(text):
    return text.replace(",0.5\n", ",1.0\n").replace(",0.25\n", ",1.0\n")


def _api(path, k=2, **kw):
    log = load_log(str(path))
    c = log.to_contract_log()
    train, test, split = split_log(c, 0.5)
    return evaluate_offline("popularity", {}, train, test, catalog_from_log(log), int(c.user.max()) + 1, ks=[k],
                            cutoff=5, split_time=split, **kw)


def cf(*args):
    return subprocess.run([sys.executable, "-m", "counterfeed", "offline", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_no_interval_when_no_variation_is_observed(tmp_path):
    rep = _api(_write(tmp_path, _all_hit(TINY)), k=1)
    for e in rep.estimates:
        assert e.value == 1.0 and e.n_users == 3
        assert e.lower is None and e.upper is None and e.se is None
        assert any("no variation observed" in w for w in e.warnings)
    assert any("no variation observed" in n for n in rep.notes)
    out = cf(_write(tmp_path, _all_hit(TINY)), "--policy", "popularity", "--split-time", "0.5", "--k", "1",
             "--cutoff", "5", "--json")
    assert out.returncode == 0, out.stderr
    assert "NaN" not in out.stdout
    est = json.loads(out.stdout)[0]["estimates"]
    assert all(e["lower"] is None and e["upper"] is None for e in est)


def test_the_ratio_interval_uses_t_on_users_minus_one_df_within_bounds():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(5), 4)
    v = rng.random(20)
    w = 1 / rng.uniform(0.2, 1.0, 20)
    free = ratio_estimate("mrr", "ipw", v, w, users)
    assert free.upper - free.value == pytest.approx(stats.t.ppf(0.975, 4) * free.se, rel=1e-12)
    assert any("only 5 users" in x for x in free.warnings)
    tight = ratio_estimate("mrr", "ipw", v, w, users, bounds=(free.value - 0.01, free.value + 0.01))
    assert (tight.lower, tight.upper) == pytest.approx((free.value - 0.01, free.value + 0.01))
    many = ratio_estimate("mrr", "ipw", rng.random(200), np.ones(200), np.arange(200) % 40)
    assert not many.warnings  # 40 users: no few-clusters warning


def test_metric_intervals_stay_in_the_unit_interval_with_a_few_users_warning(tmp_path):
    rep = _api(_write(tmp_path, TINY))
    for e in rep.estimates:
        assert 0.0 <= e.lower <= e.value <= e.upper <= 1.0
        assert any("only 3 users" in w and "2 df" in w for w in e.warnings)


def test_positivity_failure_is_reported(tmp_path):
    det = _write(tmp_path, _deterministic(TINY))
    rep = _api(det)
    for e in rep.estimates:
        flagged = any(w.startswith("positivity fails: all 3") for w in e.warnings)
        assert flagged == (e.weighting == "ipw")
    assert any("positivity fails" in n for n in rep.notes) and rep.ipw_warnings
    partial = _api(_write(tmp_path, TINY, "partial.csv"))  # one held-out click of three has propensity 1
    assert any("1 of 3" in w for w in partial.ipw_warnings)
    out = cf(det, "--policy", "popularity", "--split-time", "0.5", "--k", "2", "--cutoff", "5")
    assert out.returncode == 0 and "positivity fails" in out.stdout, out.stdout + out.stderr


def test_the_api_reports_the_split_time(tmp_path):
    assert _api(_write(tmp_path, TINY)).split_time == 0.5  # the split, not the first held-out time (1.0)


def test_a_log_without_time_says_how_to_map_one(tmp_path):
    out = cf("examples/ope_log.csv", "--policy", "popularity")
    assert out.returncode == 2
    assert "no 'time' column" in out.stderr and "--columns time=round" in out.stderr, out.stderr
    ok = cf("examples/ope_log.csv", "--policy", "popularity", "--columns", "time=round", "--json")
    assert ok.returncode == 0, ok.stderr
    flat = load_log("examples/ope_log.csv").to_contract_log()  # the API: every time 0
    with pytest.raises(DataError, match="every impression of the log has time 0"):
        split_log(flat)


def test_help_names_the_run_directory_layout():
    out = cf("--help")
    assert "events/ab/impressions.parquet" in out.stdout and "events/ab.parquet" not in out.stdout


def _offline_estimates(treatment: str, **options):
    """The offline-ranking estimates of a 120-user run: control popularity (deterministic) vs ``treatment``."""
    sc = small_scenario(**{"population.users": 120,
                           "analysis": [{"estimator": "offline-ranking", "metrics": ["clicks"], "ks": [3],
                                         "cutoff": 20, **options}],
                           "experiment.arms": {"control": {"recommender": "popularity"},
                                               "treatment": {"recommender": treatment}}})
    off = [e for e in counterfeed.run(sc, write=False, quiet=True).estimates if e.estimator == "offline-ranking"]
    assert off
    return off


def test_the_analysis_reports_clipping_and_positivity():
    """A deterministic control logs propensity 1: every IPW difference says positivity fails; clip is kept."""
    for e in _offline_estimates("random", clip=1.5):
        assert e.diagnostics["clip"] == 1.5
        warns = e.diagnostics.get("warnings", [])
        if e.estimand.endswith(":ipw"):
            assert any("clipped at 1.5" in w for w in warns) and any("positivity fails" in w for w in warns)
        else:
            assert not any("positivity" in w or "clipped" in w for w in warns)
        assert -1.0 <= e.lower <= e.point <= e.upper <= 1.0


def test_the_analysis_gives_no_interval_for_a_difference_without_variation():
    """Two arms that rank alike: every per-click difference is 0, so no interval (NaN, null in JSON), a warning."""
    for e in _offline_estimates("popularity"):
        assert e.point == 0.0 and np.isnan(e.lower) and np.isnan(e.upper)
        assert any("no variation observed" in w for w in e.diagnostics["warnings"])
