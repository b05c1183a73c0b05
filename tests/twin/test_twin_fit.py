"""The twin's fitting pieces recover known parameters; the fitted twin runs as a scenario population."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from counterfeed.twin.clicks import pbm_em
from counterfeed.twin.dynamics import fit_dynamics, satisfaction_path
from counterfeed.twin.satiation import satiation_feature


def test_pbm_em_recovers_examination():
    rng = np.random.default_rng(1)
    n, items, k = 200_000, 40, 5
    theta = np.array([1.0, 0.8, 0.6, 0.45, 0.3])
    alpha = rng.uniform(0.05, 0.6, items)
    it, pos = rng.integers(0, items, n), rng.integers(0, k, n)
    click = (rng.random(n) < theta[pos] * alpha[it]).astype(float)
    th, al = pbm_em(it, pos, click, items, k, iters=500)
    # 40,000 impressions per position: the standard error of theta_j is about 0.01
    np.testing.assert_allclose(th, theta, atol=0.04)
    np.testing.assert_allclose(al, alpha, atol=0.06)


def test_satiation_feature_matches_brute_force():
    rng = np.random.default_rng(2)
    n = 400
    user, topic = rng.integers(0, 5, n), rng.integers(0, 3, n)
    time, click = np.sort(rng.uniform(0, 10, n)), (rng.random(n) < 0.3).astype(float)
    got = satiation_feature(user, topic, time, click, 1.5)
    want = np.array([sum(0.5 ** ((time[r] - time[c]) / 1.5) for c in range(n)
                         if click[c] and user[c] == user[r] and topic[c] == topic[r] and time[c] < time[r])
                     for r in range(n)])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


def test_satisfaction_path_restarts_per_user():
    clicks = np.array([1.0, 0.0, 2.0, 1.0, 1.0])
    first = np.array([True, False, False, True, False])
    s = satisfaction_path(clicks, first, 0.3, 0.5)
    want, prev = [], None
    for c, f in zip(clicks, first):
        prev = (0.5 if f else prev) * 0.7 + 0.3 * c
        want.append(prev)
    np.testing.assert_allclose(s, want)


def _simulate_dynamics(n, rng, vr=1.0, rw=1.0, cr=0.02, cw=2.0, m=0.3, s0=0.5, horizon=30.0):
    users, times, clicks = [], [], []
    for u in range(n):
        t = rng.exponential(1 / vr)
        s = s0
        while t < horizon:
            c = rng.poisson(0.4 + 0.5 * rng.random())
            users.append(u), times.append(t), clicks.append(c)
            s = (1 - m) * s + m * c
            if rng.random() < min(1.0, cr * np.exp(cw * (s0 - s))):
                break
            t += rng.exponential(1 / (vr * np.exp(rw * (s - s0))))
    return np.array(users), np.array(times), np.array(clicks, float)


def test_dynamics_recovers_return_and_churn():
    rng = np.random.default_rng(3)
    su, st, c = _simulate_dynamics(1500, rng)
    keep = np.bincount(su, minlength=1500) > 0
    code = np.cumsum(keep) - 1
    dyn = fit_dynamics(code[su], st, c, 30.0, int(keep.sum()), frailty=False)
    # about 30,000 sessions: tolerances are 4 standard errors of the fit (its Hessian)
    assert abs(dyn.visit_rate - 1.0) < 4 * dyn.se["log_visit_rate"] + 0.02
    assert abs(dyn.return_weight - 1.0) < 4 * dyn.se["return_weight"] + 0.02
    assert abs(np.log(dyn.churn_rate) - np.log(0.02)) < 4 * dyn.se["log_churn_rate"] + 0.05
    assert abs(dyn.churn_weight - 2.0) < 4 * dyn.se["churn_weight"] + 0.05


def test_twin_directory_and_scenario_population(twin_dir, tmp_path):
    from counterfeed import run
    from counterfeed.core.scenario import Scenario

    meta = json.loads((twin_dir / "twin.json").read_text())
    assert meta["examination"]["model"] in ("pbm", "cascade", "mnl")
    assert set(meta["examination"]["heldout_loglik_per_impression"]) == {"pbm", "cascade", "mnl"}
    assert len(meta["replicates"]) == 4 and meta["logging"] == {"recommender": "random"}
    assert len(meta["heldout_users"]) + meta["n_train_users"] == meta["n_users"]
    sc = Scenario.from_dict({
        "name": "in-twin", "population": {"twin": str(twin_dir), "replicate": 2},
        "experiment": {"arms": {"a": {"recommender": "random"}, "b": {"recommender": "popularity"}},
                       "duration": "5d", "slate_size": 5}, "metrics": ["impressions", "clicks"], "analysis": []})
    assert sc.catalog.plugin == "twin" and sc.user_model.plugin == "twin"
    assert sc.population.users == meta["n_train_users"]
    res = run(sc, write=False, quiet=True, workers=1)
    assert res.outcomes["impressions"].sum() > 0
    assert "twin: " not in Scenario.from_dict({**sc.to_dict(), "population": {"users": 5}}).to_yaml()


def test_twin_scenario_errors_name_the_field(tmp_path):
    from counterfeed.core.scenario import Scenario
    from counterfeed.errors import ScenarioError

    with pytest.raises((ScenarioError, ValueError), match="not a twin directory"):
        Scenario.from_dict({"name": "x", "population": {"twin": str(tmp_path)},
                            "experiment": {"arms": {"a": {"recommender": "random"}, "b": {"recommender": "random"}}}})


def test_evaluate_and_check_cli(twin_dir, run_dir, tmp_path):
    from counterfeed.twin.cli import twin

    res = CliRunner().invoke(twin, ["evaluate", str(twin_dir), "--policy", "popularity", "--users", "150",
                                    "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    effects = {e["metric"]: e for e in out["effects"]}
    assert set(effects) == {"ctr", "clicks", "sessions", "retained"}
    for e in effects.values():
        assert e["replicates"] == 3
        if e["lower"] is None:  # nothing varied (e.g. everyone retained in a tiny world): no interval
            assert e["upper"] is None and any("did not vary" in w for w in e["warnings"])
        else:
            assert e["lower"] < e["effect"] < e["upper"]
    assert [r["estimator"] for r in out["ope"]] == ["ips", "dr"]
    res = CliRunner().invoke(twin, ["check", str(twin_dir), str(run_dir), "--users", "100", "--json", "--quiet",
                                    "--figures", str(tmp_path / "fig")])
    assert res.exit_code == 0, res.output
    aspects = {a["aspect"]: a for a in json.loads(res.output)["aspects"]}
    assert set(aspects) == {"ctr_by_position", "clicks_per_session", "sessions_per_user", "inter_visit_times",
                            "churn_curve", "item_popularity"}
    assert all(a["verdict"] in ("ok", "mismatch") for a in aspects.values())
    assert (tmp_path / "fig" / "fidelity.png").exists()


def test_attention_mnl_recovers_examination_and_appeal():
    """Sessions simulated from the twin's own MNL click model (20,000 sessions of 10 positions)."""
    from counterfeed.twin.mnl import SessionData, fit_mnl

    rng = np.random.default_rng(0)
    r, k, n_items = 20_000, 10, 100
    theta, b = 0.85 ** np.arange(k), rng.normal(-1.5, 1, n_items)
    items = np.argsort(rng.random((r, n_items)), axis=1)[:, :k]
    clicked = np.zeros((r, k), bool)
    for rnd in range(2):
        v = np.where(~clicked, b[items] + np.log(theta) + rng.gumbel(size=(r, k)), -np.inf)
        best = v.argmax(1)
        ok = (v[np.arange(r), best] > rng.gumbel(size=r)) & (clicked.sum(1) == rnd)
        clicked[np.flatnonzero(ok), best[ok]] = True
    sd = SessionData(np.repeat(np.arange(r), k), np.tile(np.arange(k), r), items.ravel(),
                     clicked.ravel().astype(float), np.zeros(r * k), np.ones(r * k), np.zeros(r * k, int), r, k)
    f = fit_mnl(sd, 1, n_items, dims=0, max_clicks=2, epochs=10, l2=0.0)
    th = f.theta / f.theta[0]
    # about 2,000 impressions per position: theta_j within 0.08 (several standard errors)
    np.testing.assert_allclose(th, theta, atol=0.08)
    slope = np.polyfit(b, f.bias + np.log(f.theta[0]), 1)[0]
    assert abs(slope - 1.0) < 0.1


def test_fit_cli_writes_a_twin_scenarios_can_use(run_dir, tmp_path):
    from counterfeed.core.scenario import load_scenario
    from counterfeed.twin.cli import twin

    out = tmp_path / "t"
    res = CliRunner().invoke(twin, ["fit", str(run_dir), "--out", str(out), "--dims", "4", "--bootstrap", "2",
                                    "--epochs", "3", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "twin written to" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["rep-0.npz", "rep-1.npz", "rep-2.npz", "scenario.yaml",
                                                     "twin.json"]
    frag = (out / "scenario.yaml").read_text()
    sc_file = tmp_path / "s.yaml"
    sc_file.write_text(frag + "name: s\nexperiment:\n  arms:\n    a: {recommender: random}\n"
                              "    b: {recommender: popularity}\n  duration: 2d\n")
    sc = load_scenario(sc_file)
    assert sc.user_model.plugin == "twin" and sc.population.twin == str(out.resolve())
