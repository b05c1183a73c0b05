"""A twin prediction never gets a zero-width interval: when nothing varied, there is no interval."""

from __future__ import annotations

import numpy as np

from counterfeed.twin.evaluate import METRICS, MODEL_WARNING, _combine


def _rows(values, var):
    return [{m: (v, v + 0.1 * (m == list(METRICS)[0]), var, 50) for m in METRICS} for v in values]


def _split(rows):  # one world of the point fit, the rest bootstrap replicates
    return rows[:1], rows[1:]


def test_no_interval_when_nothing_varied():
    out = {e.metric: e for e in _combine(*_split(_rows([1.0, 1.0, 1.0], 0.0)), 1, 0.95)}
    for e in out.values():
        assert e.lower is None and e.upper is None
        assert any("did not vary" in w for w in e.warnings)


def test_interval_when_the_simulations_vary():
    out = _combine(*_split(_rows([1.0, 1.2, 0.9], 0.04)), 1, 0.95)
    for e in out:
        assert e.lower is not None and e.lower < e.effect < e.upper
        assert MODEL_WARNING in e.warnings  # the assumption and the measured coverage travel with the number


def test_realised_noise_term_follows_what_the_truth_is():
    """``truth_worlds``: the realised effect of one world of the log's users adds one world's noise ``W``
    (the spread of the point fit's worlds) to the variance, the mean of R worlds ``W / R``, the expected
    effect (``None``) nothing."""
    # the point fit in two worlds (clicks effects 0.0 and 0.2: W = 0.02), two replicates at their mean
    point = [{"clicks": (1.0, 1.0 + e, 0.04, 50)} for e in (0.0, 0.2)]
    boot = [{"clicks": (1.0, 1.1, 0.04, 50)} for _ in range(2)]
    half = {}
    for label, r in (("one", 1), ("two", 2), ("expected", None)):
        e = _combine(point, boot, r, 0.95)[0]
        assert np.isclose(e.effect, 0.1) and np.isclose(e.se_parameters, 0.0) and e.point_worlds == 2
        half[label] = (e.upper - e.lower) / 2
    # total = M (0) + W/K (0.01) + W/R, quantile t with B = 2 df
    for label, extra in (("one", 0.02), ("two", 0.01), ("expected", 0.0)):
        assert np.isclose(half[label], 4.302653 * np.sqrt(0.01 + extra), rtol=1e-5), label
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
