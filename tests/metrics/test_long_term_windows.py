"""The long-term metrics over many windows of one run, from per-slate quantities computed once.

``metric_series`` hands every metric the whole run's events; the metrics compute each slate's
diversity (and each click's pair) once per log and sum them per window (``impression_index``). These
tests check the per-window values on a small feedback-loop run against the definitions, computed
from scratch in plain Python window by window, and against the metrics computed on each window's
events alone (what the series computed before, slate by slate per window).
"""

from __future__ import annotations

import math
from collections import defaultdict
from itertools import combinations

import numpy as np
import pandas as pd
import pytest

from counterfeed.core import runner
from counterfeed.core.contracts import CatalogContext, Log, WorldEvents
from counterfeed.core.longterm import is_population, metric_series, window_events
from counterfeed.core.outcomes import group_value
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.scenario import load_scenario
from counterfeed.plugins.metrics import beyond_accuracy as ba
from tests.metrics.test_beyond_accuracy_metrics import tiny_events

SCENARIO = "scenarios/feedback_loop.yaml"
NAMES = ["diversity", "diversity-embedding", "novelty", "unexpectedness", "calibration-kl", "taste-drift",
         "coverage", "exposure-gini", "exposure-entropy", "homogenization", "homogenization-growth", "clicks",
         "churned"]


@pytest.fixture(scope="module")
def run():
    sc = load_scenario(SCENARIO).with_overrides({
        "population.users": 120, "experiment.duration": "21d", "metrics": NAMES})
    keys = Keys(sc.seed)
    plan = runner.resolve(sc)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"),
                                                dimensions=sc.population.dimensions))
    out = runner.simulate_world(runner.WorldTask(sc, "ab", items, build_population(sc.population, keys)))
    infos = {n: m.info() for n, m in plan.metrics.items()}
    return out.events, plan.metrics, infos


def _series(events, metrics, infos, period):
    s = metric_series(events, metrics, infos, NAMES, 0.0, events.end, period)
    return {(r.arm, r.day, r.metric): r.value for r in s.itertuples()}


def _series_on_window_events(events, metrics, infos, period):
    """Each metric computed on the events of each period alone."""
    out = {}
    masks = [(a, events.assignment == i) for i, a in enumerate(events.arms)]
    t = 0.0
    while t < events.end - 1e-9:
        hi = min(t + period, events.end)
        ev = window_events(events, t, hi)
        for name in NAMES:
            m, info = metrics[name], infos[name]
            if is_population(m):
                for arm, mask in masks:
                    out[(arm, t, name)] = float(m.compute_group(ev, t, hi, mask))
                continue
            parts = [info.numerator, info.denominator] if info.kind == "ratio" else [name]
            frame = pd.DataFrame({p: metrics[p].compute(ev, t, hi) for p in parts})
            for arm, mask in masks:
                out[(arm, t, name)] = group_value(frame[mask], info)
        t = hi
    return out


@pytest.mark.parametrize("period", [7.0, 1.0])
def test_series_equals_each_window_computed_alone(run, period):
    events, metrics, infos = run
    new = _series(events, metrics, infos, period)
    old = _series_on_window_events(events, metrics, infos, period)
    assert set(new) == set(old) and len(new) == 2 * len(NAMES) * math.ceil(21 / period)
    for k in old:
        if k[2] == "diversity-embedding":  # sums of unit vectors: np.add.at below 4,096 rows, else reduceat
            assert new[k] == pytest.approx(old[k], rel=1e-12, nan_ok=True), k
        else:
            assert new[k] == old[k] or (math.isnan(new[k]) and math.isnan(old[k])), k


def _definitions(events: WorldEvents, lo: float, hi: float, users: set[int]) -> dict[str, float]:
    """Diversity, novelty, calibration KL, coverage, exposure Gini and homogenization of the group
    ``users`` over ``[lo, hi)``, from their definitions (module docstrings), one slate and pair at a time."""
    log, items = events.impressions, events.items
    rows = [r for r in range(len(log)) if lo <= log.time[r] < hi]
    slates, shown, clicked = defaultdict(list), defaultdict(list), defaultdict(list)
    for r in rows:
        u, i = int(log.user[r]), int(log.item[r])
        slates[(u, int(log.session[r]))].append(int(items.topic[i]))
        shown[u].append(i)
        if log.click[r]:
            clicked[u].append(i)
    ild = [np.mean([a != b for a, b in combinations(t, 2)]) if len(t) > 1 else 0.0
           for (u, _), t in slates.items() if u in users]
    clickers = {i: {u for u in clicked if i in clicked[u]} for i in range(items.n)}
    info = [math.log2(len(clicked) / len(clickers[i])) for u in users for i in clicked.get(u, [])]
    kls = []
    for u in users:
        if clicked.get(u):
            p = np.bincount(items.topic[clicked[u]], minlength=items.n_topics) / len(clicked[u])
            q = np.bincount(items.topic[shown[u]], minlength=items.n_topics) / len(shown[u])
            q = 0.99 * q + 0.01 * p
            kls.append(sum(p[g] * math.log(p[g] / q[g]) for g in range(items.n_topics) if p[g] > 0))
    x = np.zeros(items.n)
    for u in users:
        for i in shown.get(u, []):
            x[i] += 1
    x = x[items.arrival < hi]
    sets = [set(clicked[u]) for u in users if clicked.get(u)]
    cos = [len(a & b) / math.sqrt(len(a) * len(b)) for a, b in combinations(sets, 2)]
    nan = float("nan")
    return {"diversity": np.mean(ild) if ild else nan, "novelty": np.mean(info) if info else nan,
            "calibration-kl": np.mean(kls) if kls else nan, "coverage": float((x > 0).mean()),
            "exposure-gini": np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size * x.sum()),
            "homogenization": np.mean(cos) if cos else nan}


def test_weekly_series_matches_the_definitions(run):
    events, metrics, infos = run
    new = _series(events, metrics, infos, 7.0)
    for a, arm in enumerate(events.arms):
        users = set(np.flatnonzero(events.assignment == a).tolist())
        for lo in (0.0, 7.0, 14.0):
            for name, want in _definitions(events, lo, lo + 7.0, users).items():
                assert new[(arm, lo, name)] == pytest.approx(want, rel=1e-12, abs=1e-12, nan_ok=True), (arm, lo, name)


def test_a_slate_split_by_the_window_counts_as_two_slates():
    """A hand-made log whose slate has rows at two times: each window sees the part in it, as defined."""
    ev = tiny_events()
    log = ev.impressions
    t = log.time.copy()
    t[1] = 1.2  # slate (user 0, session 0): topics (0, 0) now at times 0.5 and 1.2
    ev.impressions = Log(**{**vars(log), "time": t})
    assert not ba._index(ev).slates_exact
    for lo, hi in ((0.0, 1.0), (1.0, 2.0), (0.0, 2.0)):
        alone = ba.Diversity().compute(window_events(ev, lo, hi), lo, hi)
        np.testing.assert_array_equal(ba.Diversity().compute(ev, lo, hi), alone)
    # [1, 2): user 0's slates (0), (1, 2), (0, 1) -> ILD 0, 1, 1; the split part alone has no pair
    np.testing.assert_allclose(ba.Diversity().compute(ev, 1.0, 2.0), [2 / 3, np.nan, np.nan])
    np.testing.assert_allclose(ba.PARTS[0]().compute(ev, 0.0, 2.0), [3, 1, 0])  # the full window: one slate


@pytest.mark.parametrize("period", [7.0, 2.5, 1.0])
def test_period_cut_gives_each_period_the_rows_of_window_events_in_order(run, period):
    """metric_series cuts the events into periods in one pass (core.longterm._PeriodCut): each
    period's sessions and impressions are window_events' rows, in the same order; a metric that reads
    only the sessions (per_user_sessions) gets no impressions, as a shard's metrics do."""
    from counterfeed.core.longterm import _PeriodCut

    events, metrics, _ = run
    assert not np.all(np.diff(events.sessions["time"]) >= 0)  # unsorted times: the mask path of _window
    t, periods = 0.0, []
    while t < events.end - 1e-9:
        periods.append((t, min(t + period, events.end)))
        t = periods[-1][1]
    cut = _PeriodCut(events, periods)
    for i, (lo, hi) in enumerate(periods):
        want = window_events(events, lo, hi)
        for name in ("churned", "diversity"):
            got = cut.events(i, metrics[name])
            assert got.sessions.keys() == want.sessions.keys()
            for k, v in want.sessions.items():
                assert got.sessions[k].dtype == v.dtype and np.array_equal(got.sessions[k], v), (i, k)
            if metrics[name].per_user_sessions:
                assert got.impressions is None
                continue
            for k, v in vars(want.impressions).items():
                assert np.array_equal(getattr(got.impressions, k), v), (i, k)
