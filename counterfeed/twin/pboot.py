"""The parametric bootstrap of the twin (the default ``--bootstrap-kind``).

A bootstrap over users reuses each user's own impressions, so it cannot show how noisy that user's
fitted preferences are, and a refit warm-started from the point fit barely moves. The parametric
bootstrap (Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, sec. 6.5; its bias
correction, sec. 10.3) repeats the whole experiment inside the fitted model instead:

1. the point fit (replicate 0) is written as a twin and **simulated under the logging policy** with
   the log's users (its fitted users, one for one), horizon, slate size and serving window;
2. that simulated log is **refitted from scratch by every step** of :func:`counterfeed.twin.fit.fit_twin`
   (click-model choice, factorization and its penalty, satiation half-life, dwell, dynamics and
   frailty), giving replicate ``b``; items the simulated log never showed keep the point fit's values.

The spread of a prediction over replicates ``1..B`` is then the sampling error of the whole fit plus
the noise of a log of this size; :mod:`counterfeed.twin.evaluate` predicts with the point fit and
takes the interval's width from that spread. (The bias correction ``2 e_0 - mean_b e_b`` of sec. 10.3
was dropped: the refits start from the point fit's own errors, and in validation it moved the
predictions away from the truth.)
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from counterfeed.twin.data import TwinLog
from counterfeed.twin.store import Replicate

__all__ = ["parametric_bootstrap", "simulate_log"]


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
    from counterfeed.twin.fit import fit_twin
    from counterfeed.twin.store import write_twin

    point = reps[0]
    n_items = point.item.shape[0]
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
            m_b, r_b = fit_twin(sim, st)
            r = r_b[0]
            item, bias, topic = point.item.copy(), point.bias.copy(), point.topic.copy()
            item[codes], bias[codes] = r.item, r.bias
            if settings.topics is None:  # k-means topics are refitted too; unseen items keep theirs
                topic[codes] = r.topic
            out.append(Replicate(item=item, bias=bias, topic=topic, user=r.user, activity=r.activity,
                                 weight=np.ones(r.user.shape[0]), user_chol=r.user_chol))
            options.append(m_b["replicates"][0])
            say(f"parametric bootstrap {b}/{settings.bootstrap}: {sim.n_users} simulated users, "
                f"{len(sim)} impressions, click model {m_b['examination']['model']}")
    return {**meta, "replicates": options}, out
