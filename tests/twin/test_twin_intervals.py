"""A twin prediction never gets a zero-width interval: when nothing varied, there is no interval."""

from __future__ import annotations

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
