"""core.outcomes.timeseries: the daily series of each arm's users, against its definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from counterfeed.core.contracts import WorldEvents
from counterfeed.core.outcomes import _active, timeseries


def _events(seed: int) -> WorldEvents:
    rng = np.random.default_rng(seed)
    n_users, n = 60, 900
    assignment = rng.choice([0, 2], size=n_users)  # arm 1 has no users: it has no rows
    user = rng.integers(0, n_users - 5, n)           # the last users never visit
    sessions = {"user": user, "session": np.zeros(n, np.int64), "time": rng.uniform(0, 6.5, n),
                "arm": assignment[user].astype(np.int16), "impressions": rng.integers(0, 4, n).astype(np.int16),
                "clicks": rng.integers(0, 2, n).astype(np.int16), "dwell": rng.exponential(2.0, n),
                "churned": np.zeros(n, bool)}
    return WorldEvents(world="w", n_users=n_users, sessions=sessions, impressions=None, start=0.0, end=6.5,
                       arms=["a", "b", "c"], assignment=assignment)


@pytest.mark.parametrize("seed", [0, 1])
def test_daily_series_matches_the_definitions_row_by_row(seed):
    ev = _events(seed)
    got = timeseries(ev)
    assert list(got.columns) == ["world", "arm", "day", "metric", "value"] and isinstance(got.index, pd.RangeIndex)
    assert got.dtypes.astype(str).tolist() == ["str", "str", "int64", "str", "float64"]
    s = pd.DataFrame(ev.sessions)
    s["day"] = np.minimum(s.time.astype(int), 6)
    rows = []
    for metric in ("sessions", "impressions", "clicks", "dwell", "ctr", "active"):
        for a, arm in ((0, "a"), (2, "c")):  # metric, then arm, then day
            size = int((ev.assignment == a).sum())
            for day in range(7):
                g = s[(s.arm == a) & (s.day == day)]
                v = {"sessions": len(g), "impressions": g.impressions.sum(), "clicks": g.clicks.sum(),
                     "dwell": g.dwell.sum(), "active": g.user.nunique()}.get(metric)
                v = (g.clicks.sum() / g.impressions.sum() if g.impressions.sum() else np.nan) if v is None else v / size
                rows.append(("w", arm, day, metric, float(v)))
    want = pd.DataFrame(rows, columns=got.columns)
    pd.testing.assert_frame_equal(got.drop(columns="value"), want.drop(columns="value"), check_dtype=False)
    np.testing.assert_allclose(got.value, want.value, rtol=1e-12)


def test_active_users_by_grid_and_by_sort_agree():
    ev = _events(3)
    s = ev.sessions
    day = np.minimum(s["time"].astype(np.int64), 6)
    by_grid = _active(s["user"], day, ev.assignment, 3, 7, grid=True)
    np.testing.assert_array_equal(by_grid, _active(s["user"], day, ev.assignment, 3, 7, grid=False))
    assert by_grid.sum() == len({(u, d) for u, d in zip(s["user"].tolist(), day.tolist())})
