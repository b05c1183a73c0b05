"""Shared by the individual-interval tests: an ``AnalysisData`` of a two-arm experiment from synthetic
users' daily click counts (pre-period and experiment days), with the A/B world's events (one
session per user and day) so per-day noise can be read; and a report section that records what is
written to it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from counterfeed.core.contracts import MetricInfo, WorldEvents
from counterfeed.core.estimation import AnalysisData


def daily_data(pre: np.ndarray, post: np.ndarray, t: np.ndarray, seg: np.ndarray, x: np.ndarray, seed: int,
               e: np.ndarray | None = None) -> AnalysisData:
    """pre (n, P0) and post (n, P) daily clicks; t (n,) bool treated; seg (n,) segment labels; x (n,)
    an observable feature (``feature_0``); e (n,) the design probability of treatment (default 0.5).
    The experiment runs over days ``[P0, P0 + P)``; impressions are 3 and dwell 10 per click."""
    n, p0, p = t.size, pre.shape[1], post.shape[1]
    e = np.full(n, 0.5) if e is None else e
    daily = np.hstack([pre, post]).astype(np.float64)
    users = np.repeat(np.arange(n), p0 + p)
    sessions = {"user": users, "session": np.tile(np.arange(p0 + p), n), "time": np.tile(np.arange(p0 + p) + 0.5, n),
                "arm": np.repeat(t.astype(np.int64), p0 + p), "impressions": daily.ravel() * 3,
                "clicks": daily.ravel(), "dwell": daily.ravel() * 10.0, "churned": np.zeros(users.size, dtype=bool)}
    events = WorldEvents("ab", n, sessions, None, 0.0, p0 + p, ["control", "treatment"], t.astype(np.int64))
    outcomes = pd.DataFrame({"user": np.arange(n), "arm": np.where(t, "treatment", "control").astype(object),
                             "segment": seg, "clicks": post.sum(axis=1).astype(np.float64),
                             "pre_clicks": pre.sum(axis=1).astype(np.float64)})
    covariates = pd.DataFrame({"user": np.arange(n), "segment": seg, "pre_clicks": outcomes["pre_clicks"],
                               "feature_0": x})
    return AnalysisData(outcomes=outcomes, arms=["control", "treatment"], control="control",
                        metrics={"clicks": MetricInfo("clicks", "mean")}, seed=seed, start=float(p0),
                        end=float(p0 + p), assignment_probabilities=np.column_stack([1 - e, e]), events=events,
                        covariates=covariates)


class RecordingSection:
    """A report section that keeps its paragraphs (text, kind) and its last table."""

    def __init__(self) -> None:
        self.paragraphs: list[tuple[str, str]] = []

    def paragraph(self, text: str, kind: str = "") -> None:
        self.paragraphs.append((text, kind))

    def table(self, headers: list[str], rows: list) -> None:
        self.headers, self.rows = headers, rows
