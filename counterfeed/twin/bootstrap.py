"""The twin's bootstrap: refits whose spread gives every prediction its interval.

Both kinds refit **every step** of :func:`counterfeed.twin.fit.fit_twin` from scratch (click-model
choice, factorization, satiation half-life and weight, dwell, dynamics and frailty, the users'
posterior), so the spread of a prediction over the replicates ``1..B`` is the sampling error of the
whole fit; :mod:`counterfeed.twin.evaluate` predicts with the point fit (replicate 0) and takes the
interval's width from the replicates' mean squared deviation from it.

* ``users`` (the default; :func:`user_bootstrap`): the cluster bootstrap over users (Davison &
  Hinkley 1997, *Bootstrap Methods and their Application*, sec. 3.8; Field & Welsh 2007, JRSS B 69):
  ``n`` users are drawn with replacement from the ``n`` fitting users, a user drawn twice enters as
  two users with the same impressions, and the resampled log is fitted. The MNL's L2 penalty is held
  at the point fit's: chosen on the resampled log, its held-out sessions would have copies among the
  training sessions. In validation (docs/twin.md) this spread matched the twin's real error, where
  the earlier warm-started refits (4 epochs from the point fit) barely moved.
* ``parametric`` (:func:`parametric_bootstrap`; Efron & Tibshirani 1993, *An Introduction to the
  Bootstrap*, sec. 6.5): the point fit is simulated under the logging policy with the log's users,
  horizon, slate size and serving window, and that simulated log is refitted. It repeats the
  experiment inside the fitted model, so it misses the error of a model that does not hold: in
  validation its spread was 8 times smaller than the real error for matrix factorization's effect.

Items a resampled or simulated log never shows keep the point fit's values.
"""

from __future__ import annotations

import dataclasses
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from counterfeed.twin.data import TwinLog
from counterfeed.twin.store import Replicate

__all__ = ["parametric_bootstrap", "simulate_log", "user_bootstrap", "user_draw"]


def user_draw(seed: int, b: int, n_users: int) -> np.ndarray:
    """(n_users,) replicate ``b``'s resample of the fitting users' codes, with replacement, drawn from
    ``numpy.random.default_rng([seed, b])`` (known before any fit: ``twin fit`` checks them first)."""
    return np.random.default_rng([seed, b]).integers(0, n_users, n_users)


def simulate_log(twin: str | Path, logging: dict[str, Any], users: int, horizon: float, slate_size: int,
                 seed: int, replicate: int = 0) -> TwinLog:
    """A log of ``users`` twin users (replicate ``replicate``) under ``logging``, as a TwinLog whose item
    ids are the twin's item codes."""
    import pandas as pd

    from counterfeed.twin.data import twin_log_from_frame
    from counterfeed.twin.evaluate import simulate_worlds, twin_scenario
    from counterfeed.twin.store import read_meta

    # a scenario needs two arms; only the world where everyone gets the logging policy is simulated
    arms = {"logging": dict(logging), "unused": dict(logging)}
    out = simulate_worlds(twin_scenario(twin, replicate, users, arms, seed=seed), ["all-logging"])["all-logging"]
    df = pd.DataFrame(out.events.impressions.to_dict()).drop(columns=["arm"], errors="ignore")
    run_opts = read_meta(twin).get("run") or {}
    return twin_log_from_frame(df, source=f"{twin} (simulated, seed {seed})", horizon=horizon, logging=logging,
                               slate_size=slate_size, run=run_opts)


def parametric_bootstrap(meta: dict[str, Any], reps: list[Replicate], settings, say=lambda msg: None,
                         embeddings: np.ndarray | None = None) -> tuple[dict[str, Any], list[Replicate]]:
    """Append ``settings.bootstrap`` parametric replicates to a point fit (``meta``, ``reps[:1]``)."""
    from counterfeed.twin.store import write_twin

    point = reps[0]
    options = [meta["replicates"][0]]
    out = [point]
    with tempfile.TemporaryDirectory(prefix="twin-pboot-") as tmp:
        twin = write_twin(Path(tmp) / "point", {**meta, "replicates": options}, [point], embeddings=embeddings)
        for b in range(1, settings.bootstrap + 1):
            sim = simulate_log(twin, meta["logging"], int(meta["n_train_users"]), float(meta["horizon"]),
                               int(meta["slate_size"]), seed=settings.seed + 7919 * b)
            codes = np.asarray(sim.item_ids, dtype=np.int64)
            st = dataclasses.replace(
                settings, bootstrap=0, holdout=0.0, seed=settings.seed + b,
                topics=None if settings.topics is None else settings.topics[codes],
                embeddings=None if settings.embeddings is None else settings.embeddings[codes])
            m_b, r_b = _refit(sim, st)
            out.append(_replicate(point, r_b[0], codes, refit_topics=settings.topics is None))
            options.append(m_b["replicates"][0])
            say(f"parametric bootstrap {b}/{settings.bootstrap}: {sim.n_users} simulated users, "
                f"{len(sim)} impressions, click model {m_b['examination']['model']}")
    return {**meta, "replicates": options}, out


def user_bootstrap(meta: dict[str, Any], reps: list[Replicate], settings, train: TwinLog, l2: float,
                   say=lambda msg: None) -> tuple[dict[str, Any], list[Replicate]]:
    """Append ``settings.bootstrap`` cluster-bootstrap replicates to a point fit (``meta``, ``reps[:1]``).

    ``train``: the fitting users' log (``U`` users); ``l2``: the point fit's penalty, held. Replicate
    ``b``'s ``U`` users are the resample's, its draw from ``numpy.random.default_rng([seed, b])``.
    """
    point = reps[0]
    options, out = [meta["replicates"][0]], [point]
    for b in range(1, settings.bootstrap + 1):
        draw = user_draw(settings.seed, b, train.n_users)
        resampled = train.resample_users(draw)
        codes = np.flatnonzero(np.bincount(resampled.item, minlength=train.n_items))
        st = dataclasses.replace(settings, bootstrap=0, holdout=0.0, seed=settings.seed + b, l2=l2)
        m_b, r_b = _refit(resampled, st)
        r = r_b[0]
        r.item, r.bias, r.topic = r.item[codes], r.bias[codes], r.topic[codes]
        out.append(_replicate(point, r, codes, refit_topics=settings.topics is None))
        options.append(m_b["replicates"][0])
        say(f"bootstrap over users {b}/{settings.bootstrap}: {np.unique(draw).size} distinct users of "
            f"{train.n_users}, click model {m_b['examination']['model']}")
    return {**meta, "replicates": options}, out


def _refit(log: TwinLog, settings) -> tuple[dict[str, Any], list[Replicate]]:
    """:func:`~counterfeed.twin.fit.fit_twin` of a replicate's log (``replicate=True``): its sparse-log and
    few-clicks warnings are the point fit's, already given, and a resample that drew no click is refitted,
    not refused (a draw of the sampling distribution)."""
    from counterfeed.twin.fit import fit_twin

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*the median item has")
        return fit_twin(log, settings, replicate=True)


def _replicate(point: Replicate, r: Replicate, codes: np.ndarray, refit_topics: bool) -> Replicate:
    """A refit's replicate: its values for the items it saw (``codes``, rows of ``r``'s item arrays in
    that order), the point fit's for the rest; its own users."""
    item, bias, topic = point.item.copy(), point.bias.copy(), point.topic.copy()
    item[codes], bias[codes] = r.item, r.bias
    if refit_topics:  # k-means topics are refitted too; unseen items keep theirs
        topic[codes] = r.topic
    return Replicate(item=item, bias=bias, topic=topic, user=r.user, activity=r.activity,
                     weight=np.ones(r.user.shape[0]), user_chol=r.user_chol)
