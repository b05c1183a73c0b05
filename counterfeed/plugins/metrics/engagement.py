"""Built-in per-user metrics computed from a world's session table.

All are computed over sessions with ``start <= time < end`` (the experiment period, or the
pre-period for the ``pre_`` covariates), one value per user, users without sessions included.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from counterfeed.core.contracts import Metric, MetricTags, Options, WorldEvents
from counterfeed.core.hookspecs import hookimpl
from counterfeed.core.scenario import format_duration, parse_duration

__all__ = ["Impressions", "Clicks", "CTR", "Sessions", "Dwell", "Retained", "Churned"]


def _per_user(events: WorldEvents, column: str | None, start: float, end: float) -> np.ndarray:
    s = events.sessions
    m = events.session_mask(start, end)
    weights = None if column is None else s[column][m].astype(np.float64)
    return np.bincount(s["user"][m], weights=weights, minlength=events.n_users).astype(np.float64)


class Impressions(Metric):
    """Items shown to the user (slate positions served)."""

    per_user_sessions = True
    name = "impressions"

    def compute(self, events, start, end):
        return _per_user(events, "impressions", start, end)


class Clicks(Metric):
    """Clicks by the user."""

    per_user_sessions = True
    name = "clicks"

    def compute(self, events, start, end):
        return _per_user(events, "clicks", start, end)


class CTR(Metric):
    """Click-through rate as a ratio of sums: sum(clicks) / sum(impressions) over users.

    The per-user column is the user's own ratio (NaN without impressions); estimators use the
    ``clicks`` and ``impressions`` columns (delta method), randomized by user.
    """

    per_user_sessions = True
    name = "ctr"
    aggregation = "ratio"
    numerator = "clicks"
    denominator = "impressions"

    def compute(self, events, start, end):
        c = _per_user(events, "clicks", start, end)
        i = _per_user(events, "impressions", start, end)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(i > 0, c / np.where(i > 0, i, 1), np.nan)


class Sessions(Metric):
    """Number of sessions (visits)."""

    per_user_sessions = True
    name = "sessions"

    def compute(self, events, start, end):
        return _per_user(events, None, start, end)


class Dwell(Metric):
    """Total dwell time in minutes."""

    per_user_sessions = True
    name = "dwell"

    def compute(self, events, start, end):
        return _per_user(events, "dwell", start, end)


class Retained(Metric):
    """1 if the user had a session in the last ``window`` of the period (default 7 days), else 0."""

    per_user_sessions = True
    name = "retained"
    aggregation = "binary"

    class Options(Options):
        window: float = Field(7.0, gt=0, description="days (or a duration such as '7d')")

        @field_validator("window", mode="before")
        @classmethod
        def _duration(cls, v):
            return parse_duration(v)

    def compute(self, events, start, end):
        lo = max(start, end - self.options.window)
        return (_per_user(events, None, lo, end) > 0).astype(np.float64)

    def scenario_notes(self, scenario) -> list[str]:
        """A window longer than the experiment makes "retained" mean "had a session during the experiment"."""
        window, duration = self.options.window, scenario.experiment.duration
        if window <= duration:
            return []
        return [f"retained's window ({format_duration(window)}) is longer than the experiment "
                f"({format_duration(duration)}), so 'retained' means 'had a session at any time during the "
                "experiment', not 'still returning at its end'; give a window shorter than experiment.duration "
                f"(e.g. {{metric: retained, window: {format_duration(duration / 2)}}}) to measure retention"]


class Churned(Metric):
    """1 if the user churned before the end of the period (at any time since the simulation start)."""

    per_user_sessions = True
    name = "churned"
    aggregation = "binary"
    higher_is_better = False
    #: churn is a state, not an event count: it deliberately looks back to the simulation start
    tags = MetricTags(cumulative=True)

    def compute(self, events, start, end):
        s = events.sessions
        m = s["churned"].astype(bool) & (s["time"] < end)
        out = np.zeros(events.n_users)
        out[s["user"][m]] = 1.0
        return out


@hookimpl
def register_metrics(register):
    for cls in (Impressions, Clicks, CTR, Sessions, Dwell, Retained, Churned):
        register(cls)
