"""Assignment mechanisms (selection, encouragement, staggered): recorded probabilities, compliance
types, adoption dates, the scenario checks, and the scenarios run end to end at small size."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from counterfeed.core import runner as runner_module
from counterfeed.core.experiment import AB_WORLD, COMPLIANCE_TYPES
from counterfeed.core.covariates import observable_features, user_covariates
from counterfeed.core.mechanisms import (EncouragementAssignment, SelectionAssignment, latent_traits,
                                         selection_index, sigmoid)
from counterfeed.core.observational_spec import EncouragementSpec, SelectionSpec
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.runner import run
from counterfeed.core.scenario import PopulationSpec, load_scenario
from counterfeed.errors import ScenarioError
from tests.conftest import small_scenario

ROOT = Path(__file__).resolve().parents[2]
N = 20_000


def _world(n: int, seed: int = 3) -> SimpleNamespace:
    """A stand-in for a world at the experiment start (t = 7): a keyed pre-period session log."""
    rng = np.random.default_rng(seed)
    visits = rng.poisson(rng.gamma(2.0, 2.0, n))
    user = np.repeat(np.arange(n), visits)
    sessions = {"user": user, "time": rng.uniform(0, 7, user.size), "impressions": np.full(user.size, 10),
                "clicks": rng.binomial(10, 0.2, user.size), "dwell": rng.exponential(2.0, user.size)}
    return SimpleNamespace(n=n, snapshot=lambda *a, **k: SimpleNamespace(sessions=sessions))


def _population(n: int = N):
    spec = PopulationSpec(users=n, dimensions=8, segments={"a": {"share": 0.6}, "b": {"share": 0.4}})
    return build_population(spec, Keys(5))


def _binned_agreement(p: np.ndarray, took: np.ndarray, bins: int = 10) -> None:
    """Realised frequency of taking the treatment equals the mean recorded probability in every
    decile of p, within 4 binomial standard errors (deterministic: keyed draws, fixed seeds)."""
    edges = np.quantile(p, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    for b in range(bins):
        sel = which == b
        se = np.sqrt(np.sum(p[sel] * (1 - p[sel]))) / sel.sum()
        assert abs(took[sel].mean() - p[sel].mean()) <= 4 * se + 1e-12, (b, took[sel].mean(), p[sel].mean())


def test_selection_records_probabilities_that_match_the_realised_frequencies():
    pop = _population()
    spec = SelectionSpec(mechanism="selection", intercept=-0.5, segments={"b": 0.7},
                         coefficients={"pre_sessions": 1.0, "pre_ctr": -0.5, "preference_strength": 0.8})
    a = SelectionAssignment(["c", "t"], 0, 1, spec, Keys(9), "salt", pop)
    world = _world(N)
    arm = a.start(world, 7.0)
    p = a.probabilities()
    assert p.shape == (N, 2) and np.allclose(p.sum(axis=1), 1.0)
    assert np.array_equal(a.assignment(), arm) and a.compliance() is None
    # the recorded probability is the declared logistic function of the declared inputs
    table = user_covariates(world.snapshot(), pop, 7.0, pop.ids)
    inputs = {**latent_traits(pop, Keys(9)), **{k: table[k].to_numpy() for k in ("pre_sessions", "pre_ctr")}}
    z = {k: (v - v.mean()) / v.std() for k, v in inputs.items()}
    eta = -0.5 + 0.7 * (pop.segment == 1) + z["pre_sessions"] - 0.5 * z["pre_ctr"] + 0.8 * z["preference_strength"]
    np.testing.assert_allclose(p[:, 1], sigmoid(eta), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(selection_index(spec, inputs, pop), eta, rtol=1e-12, atol=1e-12)
    _binned_agreement(p[:, 1], arm == 1)
    # keyed: the same seed and salt give the same users, another salt others
    again = SelectionAssignment(["c", "t"], 0, 1, spec, Keys(9), "salt", pop).start(world, 7.0)
    other = SelectionAssignment(["c", "t"], 0, 1, spec, Keys(9), "pepper", pop).start(world, 7.0)
    assert np.array_equal(again, arm) and not np.array_equal(other, arm)


@pytest.mark.parametrize("effect", [2.0, -1.5])
def test_encouragement_compliance_types_follow_both_potential_opt_ins(effect):
    pop = _population()
    spec = EncouragementSpec(mechanism="encouragement", nudge_share=0.4, nudge_effect=effect, intercept=-0.8,
                             coefficients={"preference_strength": 1.0, "pre_sessions": 0.5})
    a = EncouragementAssignment(["c", "t"], 0, 1, spec, Keys(2), "s", pop)
    arm = a.start(_world(N), 7.0)
    rec = a.record()["mechanism"]
    z, d1, d0, kind = rec["instrument"], rec["opt_in_nudged"], rec["opt_in_not_nudged"], a.compliance()
    # the arm is the potential opt-in under the realised nudge
    assert np.array_equal(arm == 1, np.where(z == 1, d1, d0))
    expected = np.select([d1 & ~d0, d1 & d0, ~d1 & ~d0, ~d1 & d0], list(COMPLIANCE_TYPES), default="?")
    assert np.array_equal(kind, expected)
    counts = {k: int(np.sum(kind == k)) for k in COMPLIANCE_TYPES}
    if effect > 0:  # one uniform for both opt-ins: the nudge only adds takers (monotonicity)
        assert counts["defier"] == 0 and counts["complier"] > 0
    else:
        assert counts["complier"] == 0 and counts["defier"] > 0
    # the nudge is randomized with its declared share (binomial, 4 standard errors)
    assert abs(z.mean() - 0.4) <= 4 * np.sqrt(0.4 * 0.6 / N)
    # the recorded probability is P(opt in | nudge, covariates), matching the realised opt-ins
    p = a.probabilities()[:, 1]
    _binned_agreement(p, arm == 1)
    for nudged in (0, 1):
        sel = z == nudged
        _binned_agreement(p[sel], (arm == 1)[sel], bins=5)


def test_staggered_adoption_dates_are_honoured_in_the_simulated_world():
    cohorts = [{"at": "1d", "share": 0.3}, {"at": "2d", "share": 0.3}]
    sc = small_scenario(**{"experiment.assignment": {"mechanism": "staggered", "cohorts": cohorts},
                           "experiment.retrain_every": None})
    res = run(sc, write=False, keep_events=True)
    s = res.events[AB_WORLD].sessions
    rec = res.manifest["assignment"]
    start = sc.experiment.pre_period
    assert start > 0  # the two clocks differ: the manifest counts days of the experiment (tester16 L5)
    assert rec["mechanism"] == "staggered" and set(rec["adoption"]) == {"1", "2", "never"}
    assert rec["adoption_day_origin"] == "experiment start" and rec["experiment_start_simulation_day"] == start
    n = sc.population.users
    for share, key in ((0.3, "1"), (0.3, "2"), (0.4, "never")):
        assert abs(rec["adoption"][key] / n - share) <= 4 * np.sqrt(share * (1 - share) / n)
    # every session after a user's adoption is served by the treatment, every one before by control
    ab = res.outcomes[res.outcomes["world"] == AB_WORLD].set_index("user")
    adoption = _captured(sc)["adoption"]
    treated_session = s["arm"] == sc.arms.index("treatment")
    assert np.array_equal(treated_session, s["time"] >= adoption[s["user"]])
    assert np.array_equal(ab["arm"].to_numpy() == "treatment", np.isfinite(adoption))
    # the analysis's adoption days are on the simulation's clock: the manifest's plus the pre-period
    assert set(np.unique(adoption[np.isfinite(adoption)])) == {start + 1, start + 2}


def _captured(sc) -> dict:
    """The analysis inputs the runner builds for ``sc`` (captured from analysis_data's result)."""
    seen: dict = {}
    original = runner_module.analysis_data

    def capture(*args, **kwargs):
        data = original(*args, **kwargs)
        seen.update(instrument=data.instrument, adoption=data.adoption, panel=data.panel, graph=data.graph,
                    outcomes=data.outcomes, probabilities=data.assignment_probabilities)
        return data

    runner_module.analysis_data = capture
    try:
        seen["result"] = run(sc, write=False)
    finally:
        runner_module.analysis_data = original
    return seen


BAD = [
    ({"experiment.assignment": {"mechanism": "selection", "coefficients": {"taste": 1.0}}},
     r"experiment\.assignment\.coefficients\.taste: unknown covariate or trait 'taste'"),
    ({"experiment.assignment": {"mechanism": "selection", "coefficients": {"feature_0": 1.0}}},
     r"coefficients\.feature_0: unknown covariate or trait 'feature_0' \(observed: pre_sessions, .*tenure;"),
    ({"population.features": {"dimensions": 2},
      "experiment.assignment": {"mechanism": "selection", "coefficients": {"feature_2": 1.0}}},
     r"coefficients\.feature_2: unknown covariate or trait 'feature_2' \(observed: .*feature_0, feature_1;"),
    ({"experiment.assignment": {"mechanism": "selection", "segments": {"nope": 1.0}}},
     r"experiment\.assignment\.segments\.nope: unknown segment 'nope'"),
    ({"experiment.assignment": {"mechanism": "selection", "treatment": "other"}},
     r"experiment\.assignment\.treatment: unknown arm 'other'"),
    ({"experiment.assignment": {"mechanism": "encouragement", "nudge_share": 1.5}},
     r"experiment\.assignment\.nudge_share"),
    ({"experiment.assignment": {"mechanism": "sorted"}}, r"experiment\.assignment"),
    ({"experiment.assignment": {"mechanism": "staggered", "cohorts": [{"at": "1d", "share": 0.7},
                                                                       {"at": "2d", "share": 0.7}]}},
     r"experiment\.assignment\.cohorts: the cohorts' shares must sum to at most 1"),
    ({"experiment.assignment": {"mechanism": "staggered", "cohorts": [{"at": "9d", "share": 0.5}]}},
     r"experiment\.assignment\.cohorts\[0\]\.at: must fall inside the experiment"),
    ({"experiment.assignment": {"mechanism": "staggered", "cohorts": [{"at": "12h", "share": 0.5}]}},
     r"experiment\.assignment\.cohorts\[0\]\.at: must be a whole number of panel periods"),
    ({"experiment.assignment": {"mechanism": "staggered", "cohorts": [{"at": "1d"}]}},
     r"experiment\.assignment\.cohorts\[0\]: give either a share of the users or a list of segments"),
    ({"experiment.assignment": {"mechanism": "staggered", "period": "6h", "cohorts": [{"at": "1d", "share": 0.5}]}},
     r"experiment\.assignment\.period: must be a whole number of days"),
    ({"experiment.assignment": {"mechanism": "staggered", "cohorts": [{"at": "1d", "segments": ["x"]}]}},
     r"experiment\.assignment\.cohorts\[0\]\.segments\[0\]: unknown segment 'x'"),
    ({"experiment.arms": {"a": {"recommender": "random"}, "b": {"recommender": "random"},
                          "c": {"recommender": "random"}}, "experiment.control": "a", "experiment.split": None,
      "experiment.assignment": {"mechanism": "selection"}}, r"experiment\.arms: mechanism 'selection' needs exactly two arms"),
    ({"experiment.assignment": {"mechanism": "selection"},
      "experiment.allocation": {"method": "thompson"}}, r"cannot be combined with phases or allocation"),
]


@pytest.mark.parametrize("overrides, pattern", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_mechanism_is_a_located_scenario_error(overrides, pattern):
    with pytest.raises(ScenarioError, match=pattern):
        small_scenario(**overrides)


def test_selection_on_observable_features_uses_the_analysts_feature_values():
    sc = small_scenario(**{"population.features": {"dimensions": 2, "noise": 0.0},
                           "experiment.assignment": {"mechanism": "selection", "coefficients": {"feature_1": 3.0}}})
    seen = _captured(sc)
    rec = seen["result"].manifest["assignment"]
    assert rec["mechanism"] == "selection"
    took = seen["outcomes"]["arm"].to_numpy() == "treatment"
    # the analyst's feature_1 (the same keyed values the covariates hold) separates takers from the rest
    feats = observable_features(build_population(sc.population, Keys(sc.seed)), sc.population.features, Keys(sc.seed))
    assert feats[took, 1].mean() > feats[~took, 1].mean() + 1.0


def test_a_bad_mechanism_in_a_file_names_its_line(tmp_path):
    text = (ROOT / "scenarios" / "observational_selection.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("pre_clicks: 0.3}", "pre_click: 0.3}"))
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), 1) if "pre_click: 0.3" in t)
    with pytest.raises(ScenarioError, match=rf"bad\.yaml:{line}: experiment\.assignment\.coefficients\.pre_click: "
                       "unknown covariate"):
        load_scenario(bad)


SMALL = {"population.users": 300, "experiment.pre_period": "3d", "experiment.duration": "4d",
         "catalog.items": 150}


@pytest.mark.parametrize("name", ["observational_selection", "observational_hidden", "staggered_rollout"])
def test_the_scenarios_validate_and_run_at_small_size(name, tmp_path):
    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    overrides = dict(SMALL)
    if name == "staggered_rollout":
        overrides["experiment.assignment.cohorts"] = [{"at": "1d", "share": 0.3}, {"at": "2d", "share": 0.3}]
    small = sc.with_overrides({**overrides, "output.dir": str(tmp_path), "output.report": False})
    seen = _captured(small)
    res = seen["result"]
    truth = res.truth
    estimands = set(truth["estimand"])
    mech = small.experiment.assignment.mechanism
    n = small.population.users
    # an analyst does not know the propensities of self-selection or opt-in; a rollout's schedule is known
    assert (seen["probabilities"] is None) == (mech != "staggered")
    if mech == "staggered":
        assert {"att", "att(e=0)", "att(e=1)", "att(e=2)"} <= estimands and "late" not in estimands
        panel = seen["panel"]
        assert len(panel) == n * 7 and set(panel.columns) >= {"user", "period", "start", "clicks", "treated"}
        assert seen["instrument"] is None and np.isinf(seen["adoption"]).sum() > 0
    else:
        assert "att" in estimands and ("late" in estimands) == (mech == "encouragement")
        assert seen["panel"] is None and seen["adoption"] is None
        assert (seen["instrument"] is not None) == (mech == "encouragement")
        assert seen["graph"] is not None and seen["graph"].outcome == "clicks"
    # the run directory holds the simulator's own graph
    out = run(small, write=True)
    for f in ("dgp_graph.json", "dgp_graph.gml"):
        assert (out.run_dir / f).is_file()
    recorded = pd.read_parquet(out.run_dir / "assignment.parquet")
    assert recorded["user"].tolist() == list(range(n))
    assert recorded["probability"].between(0, 1).all()
    if mech == "encouragement":
        assert set(recorded["compliance"]) <= set(COMPLIANCE_TYPES)
        assert np.array_equal(recorded["instrument"].to_numpy(), seen["instrument"])
    assert re.search(r'"treatment"', (out.run_dir / "dgp_graph.json").read_text())
