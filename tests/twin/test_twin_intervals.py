"""A twin prediction never gets a zero-width interval: when nothing varied, there is no interval."""

from __future__ import annotations

import numpy as np

from counterfeed.twin.evaluate import METRICS, UNDERCOVERAGE_WARNING, _combine


def _rows(values, var):
    return [{m: (v, v + 0.1 * (m == list(METRICS)[0]), var, 50) for m in METRICS} for v in values]


def test_no_interval_when_nothing_varied():
    out = {e.metric: e for e in _combine(_rows([1.0, 1.0, 1.0], 0.0), n_log=100, level=0.95)}
    for e in out.values():
        assert e.lower is None and e.upper is None
        assert any("did not vary" in w for w in e.warnings)


def test_interval_when_the_simulations_vary():
    out = _combine(_rows([1.0, 1.2, 0.9], 0.04), n_log=100, level=0.95)
    for e in out:
        assert e.lower is not None and e.lower < e.effect < e.upper
        assert UNDERCOVERAGE_WARNING in e.warnings  # the measured undercoverage travels with the number


def test_realised_noise_term_follows_what_the_truth_is():
    """``truth_worlds``: one realised world of the log's users adds ``s^2 / n_log`` to the variance, the
    mean of R worlds ``s^2 / (R n_log)``, the expected effect (``n_log`` infinite) nothing."""
    import math

    rows = _rows([1.0, 1.2, 0.9], 0.04)
    half = {}
    for label, n in (("one", 100), ("two", 200), ("expected", math.inf)):
        e = next(x for x in _combine(rows, n_log=n, level=0.95) if x.metric == "clicks")
        half[label] = (e.upper - e.lower) / 2
        assert e.se_parameters == 0.0  # clicks: effect 0 in every replicate
    # clicks varies only through the simulation terms: total = s0^2/n0 + s^2/n_log, quantile t with B = 2 df
    for label, n in (("one", 100), ("two", 200), ("expected", math.inf)):
        assert np.isclose(half[label], 4.302653 * np.sqrt(0.04 / 50 + 0.04 / n), rtol=1e-5), label
    assert half["expected"] < half["two"] < half["one"]


def test_simulate_worlds_gives_the_outcomes_run_gives():
    """The twin simulates only the counterfactual worlds it reads; they are the worlds ``run`` builds."""
    import pandas as pd

    from counterfeed import run
    from counterfeed.core.scenario import Scenario
    from counterfeed.twin.evaluate import simulate_worlds

    sc = {"name": "sw", "seed": 3, "population": {"users": 30, "dimensions": 4},
          "catalog": {"plugin": "synthetic", "items": 20, "topics": 3}, "user_model": {"plugin": "choice"},
          "experiment": {"arms": {"a": {"recommender": "random"}, "b": {"recommender": "thompson"}},
                         "duration": "3d", "batch_window": "6h", "slate_size": 3},
          "metrics": ["impressions", "clicks", "sessions", "retained"], "analysis": [], "output": {"report": False}}
    res = run(Scenario.from_dict(sc), write=False, quiet=True, workers=1)
    out = simulate_worlds(sc, ["all-b", "all-a"])
    for w, o in out.items():
        a = res.outcomes[res.outcomes["world"] == w].reset_index(drop=True)
        pd.testing.assert_frame_equal(a[o.outcomes.columns], o.outcomes.reset_index(drop=True), check_dtype=False)
        assert len(a) == 30
