"""Model-based offline evaluation: simulate the logging and the target policy in the twin.

A world is one scenario whose population, catalog and user model are a replicate ``b`` of the twin
(``population: {twin: DIR, replicate: b}``) with the log's ``n_log`` fitting users, and two arms,
the logging and the target policy; only its counterfactual worlds ``all-logging`` and
``all-target`` are simulated (:func:`simulate_worlds`; the A/B world is never read), and they share
their random numbers (common random numbers), so the per-user differences carry little noise. Each
bootstrap replicate ``b = 1..B`` is simulated in one world, the point fit ``b = 0`` in ``K >= 2``
(the rest of ``users``): the cost of one run of ``users`` users. Worlds have the log's size because
a target that learns from its traffic does better in a bigger world.

For a metric with effect ``e_0j`` in the point fit's world ``j`` and ``e_b`` in replicate ``b``'s:

* prediction: ``e_0 = mean_j e_0j`` (no bias correction ``2 e_0 - mean e_b``: in validation it
  moved the prediction away from the truth);
* one world's simulation noise: ``W = var_j(e_0j)``, which holds what a learning target's training
  shares across a world's users (per-user terms cannot: measured 9 times the per-user variance for
  matrix factorization); the prediction's own is ``W / K``;
* the fit's error: ``M = mean_{b>=1} (e_b - e_0)^2``, the bootstrap estimate of the prediction's mean
  squared error, its variance plus its squared bias (Efron & Tibshirani 1993, sec. 10.2-10.3); each
  replicate is refitted from scratch (:mod:`counterfeed.twin.bootstrap`) and simulated in its own
  world, so ``M`` also holds one world's noise (the sum below counts it about twice: conservative);
* interval: ``e_0 +- t_B sqrt(M + W/K + W/R)``, the last term the noise of the realised effect in the
  mean of ``R`` worlds of the log's users (``truth_worlds``; ``R = 1``: what one online test of these
  users would see; none for the expected effect). ``M`` is a mean of ``B`` squares about ``e_0``, so
  the quantile is Student's t with ``B`` degrees of freedom; the Welch-Satterthwaite degrees of
  freedom of an earlier version gave t near z exactly when ``M`` was small by chance.

Ratio metrics (CTR = clicks / impressions) use the per-user linearization ``(c_u - r i_u) / mean(i)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from counterfeed.errors import DataError
from counterfeed.twin.store import read_meta

__all__ = ["TwinEffect", "evaluate_twin", "evaluate_many", "twin_scenario", "METRICS", "world_effects", "ope_beside",
           "simulate_worlds", "logging_policy", "PRE_ARM"]

#: the arm that serves a twin world's pre-period when the logged run had one (its control's policy)
PRE_ARM = "pre-period"

#: metric -> (numerator column, denominator column or None)
METRICS = {"ctr": ("clicks", "impressions"), "clicks": ("clicks", None), "sessions": ("sessions", None),
           "retained": ("retained", None)}


@dataclass
class TwinEffect:
    """Predicted effect of the target vs the logging policy on one metric (target minus logging)."""

    metric: str
    logging_value: float
    target_value: float
    effect: float
    lower: float | None
    upper: float | None
    se_parameters: float | None
    se_simulation: float
    replicates: int
    warnings: list[str] = field(default_factory=list)
    point_effect: float | None = None  # e_0, the point fit's effect (the prediction, = effect)
    point_worlds: int = 1  # worlds the point fit was simulated in (``effect`` is their mean)
    se_realised: float | None = None  # sqrt(W / R): the realised effect's noise (None: the expected effect)
    world_users: int | None = None  # users per simulated world

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def twin_scenario(path: str | Path, replicate: int, users: int, arms: dict[str, dict[str, Any]], *,
                  seed: int = 0, duration: float | None = None, metrics: list[str] | None = None) -> dict[str, Any]:
    """A scenario (as data) that simulates ``arms`` (the first is the control) in a twin replicate."""
    meta = read_meta(path)
    run = meta.get("run") or {}
    pre = float(run.get("pre_period") or 0.0)
    exp: dict[str, Any] = {"arms": arms, "control": next(iter(arms)), "pre_period": 0,
                           "duration": duration or max(float(meta["horizon"]) - pre, 1e-3),
                           "slate_size": int(meta["slate_size"])}
    if pre > 0:  # the logged run's pre-period, served by its control, before the policies take over
        exp.update(arms={PRE_ARM: dict(run["pre_period_policy"]), **arms}, control=PRE_ARM, pre_period=pre)
    exp.update({k: v for k, v in run.items() if k in ("batch_window", "retrain_every")})
    if exp.get("batch_window") is not None:
        from counterfeed.core.scenario_schema import parse_duration

        exp["batch_window"] = min(parse_duration(exp["batch_window"]), exp["duration"])
    return {"name": f"twin-{replicate}", "seed": int(seed), "population": {"twin": str(Path(path).resolve()),
            "replicate": replicate, "users": max(int(users), 2)}, "experiment": exp,
            "metrics": metrics or ["impressions", "clicks", "ctr", "sessions", "retained"], "analysis": [],
            "output": {"report": False}}


def simulate_worlds(scenario: dict[str, Any], worlds: list[str]):
    """Simulate only ``worlds`` of ``scenario`` (a scenario as data): ``{world: WorldOutput}``.

    ``counterfeed.run`` also simulates the A/B world, which the twin never reads; the worlds named
    here (``all-ARM``, or a noise replication ``all-ARM@r``) are built exactly as ``run`` builds them
    (same keys, catalog and population), so their outcomes are the ones ``run`` would give.
    """
    from counterfeed.core.plan import resolve
    from counterfeed.core.population import build_population
    from counterfeed.core.randomness import Keys
    from counterfeed.core.runner import WorldTask, simulate_world
    from counterfeed.core.scenario import Scenario

    sc = Scenario.from_dict(scenario)
    keys = Keys(sc.seed)
    items = resolve(sc).build_items(keys)
    population = build_population(sc.population, keys)
    return {w: simulate_world(WorldTask(sc, w, items, population)) for w in worlds}


def world_effects(outcomes, control_world: str, target_world: str) -> dict[str, tuple[float, float, float, int]]:
    """Per metric: (control value, target value, per-user difference variance, users) from two worlds."""
    a = outcomes[outcomes["world"] == control_world].sort_values("user")
    b = outcomes[outcomes["world"] == target_world].sort_values("user")
    out = {}
    for name, (num, den) in METRICS.items():
        if num not in a.columns or (den and den not in a.columns):
            continue
        xa, xb = a[num].to_numpy(float), b[num].to_numpy(float)
        if den is None:
            d = xb - xa
            out[name] = (float(xa.mean()), float(xb.mean()), float(d.var(ddof=1)), int(d.size))
            continue
        ia, ib = a[den].to_numpy(float), b[den].to_numpy(float)
        ra, rb = xa.sum() / max(ia.sum(), 1e-12), xb.sum() / max(ib.sum(), 1e-12)
        la = (xa - ra * ia) / max(ia.mean(), 1e-12)
        lb = (xb - rb * ib) / max(ib.mean(), 1e-12)
        out[name] = (float(ra), float(rb), float((lb - la).var(ddof=1)), int(xa.size))
    return out


def logging_policy(path: str | Path, meta: dict[str, Any], logging: dict[str, Any] | None) -> dict[str, Any]:
    """The logging policy to simulate: ``logging`` when given, else the one recorded at the fit."""
    logging = logging or meta.get("logging")
    if not logging:
        raise DataError(f"{path}: the twin does not know the logging policy (fitted from a file, not a run "
                        "directory); give it with --logging-policy NAME [--logging-option k=v]")
    return logging


def evaluate_twin(path: str | Path, target: dict[str, Any], *, logging: dict[str, Any] | None = None,
                  users: int | None = None, replicates: int | None = None, seed: int = 0, level: float = 0.95,
                  say=lambda msg: None, truth_worlds: int | None = 1) -> list[TwinEffect]:
    """Predicted effects of ``target`` (``{"recommender": name, **options}``) vs the logging policy.

    Raises
    ------
    DataError
        When the twin does not know its logging policy and none is given.
    """
    return evaluate_many(path, {"target": target}, logging=logging, users=users, replicates=replicates,
                         seed=seed, level=level, say=say, truth_worlds=truth_worlds)["target"]


def evaluate_many(path: str | Path, targets: dict[str, dict[str, Any]], *, logging: dict[str, Any] | None = None,
                  users: int | None = None, replicates: int | None = None, seed: int = 0, level: float = 0.95,
                  say=lambda msg: None, truth_worlds: int | None = 1) -> dict[str, list[TwinEffect]]:
    """:func:`evaluate_twin` for several targets at once (one run per world, one world per target).

    Every simulated world has the log's ``n_log`` fitting users (fewer only when ``users`` cannot pay
    for that: then a warning), because a target that learns from its traffic (matrix factorization,
    a bandit) does better in a bigger world: in validation, worlds of 12 times the log's users raised
    matrix factorization's predicted effect on sessions by a third. Each bootstrap replicate is
    simulated in one world, the point fit in the rest (at least 2), ``users`` in all.

    ``truth_worlds``: what the interval is for. ``1`` (the default): the effect realised in one world
    of the log's users, as an online test of them would see it; ``R``: the mean of ``R`` independent
    such worlds; ``None``: the expected effect for the log's users (no realised-noise term).

    Raises
    ------
    DataError
        ``replicates`` above the twin's; ``users`` below 2 per world.
    """
    import pandas as pd

    meta = read_meta(path)
    logging = logging_policy(path, meta, logging)
    n_boot = len(meta["replicates"]) - 1
    if replicates is not None and replicates > n_boot:
        raise DataError(f"--replicates {replicates}: the twin {path} has {n_boot} bootstrap replicates "
                        f"(fit it with --bootstrap {replicates} or more, or ask for at most {n_boot})")
    boot = list(range(1, n_boot + 1))[: replicates or n_boot]
    n_log = int(meta["n_train_users"])
    n_worlds = len(boot) + (2 if boot else 1)  # the point fit's worlds: 2 at least, their spread is its noise
    total = int(users or n_log * n_worlds)
    world = min(n_log, total // n_worlds)
    if world < 2:
        raise DataError(f"--users {total}: too few for {n_worlds} worlds (one per bootstrap replicate, "
                        f"{n_worlds - len(boot)} for the point fit, at least 2 users each): give at least {2 * n_worlds}")
    plan = [(0, j) for j in range(max(n_worlds - len(boot), (total - len(boot) * world) // world))]
    plan += [(b, 0) for b in boot]
    from counterfeed.twin.store import read_replicate

    for b in [0, *boot]:  # a broken replicate file is found before anything is simulated
        read_replicate(path, b)
    arms = {"logging": dict(logging), **{name: dict(t) for name, t in targets.items()}}
    results: dict[str, list[dict[str, tuple[float, float, float, int]]]] = {name: [] for name in targets}
    tied: dict[str, str] = {}
    pre = float((meta.get("run") or {}).get("pre_period") or 0.0)
    for b, j in plan:  # only the counterfactual worlds: the A/B world is never read
        sc = twin_scenario(path, b, world, arms, seed=seed + b + _WORLD_SEED * j)
        out = simulate_worlds(sc, [f"all-{a}" for a in arms])
        outcomes = pd.concat([o.outcomes for o in out.values()], ignore_index=True)
        for name in targets:
            results[name].append(world_effects(outcomes, "all-logging", f"all-{name}"))
            if (b, j) == plan[0]:
                # a probability table draws its slates: equal slates there are the table's, not a tie-break
                tied[name] = ("" if targets[name].get("recommender") == "probability-table"
                              else _cold_start_ties(out[f"all-{name}"].events, pre))
        say(f"replicate {b}, world {j}: simulated {world} users")
    k0 = len(plan) - len(boot)
    effects = {name: _combine(rows[:k0], rows[k0:], truth_worlds, level) for name, rows in results.items()}
    small = (f"each simulated world has {world} users, fewer than the log's {n_log} (--users {total} pays for no "
             f"more): a target that learns from its traffic learns from less, so its effect can be smaller; "
             f"give --users {n_log * n_worlds} or more") if world < n_log else ""
    few = _few_clicks(path, meta)
    n_items, k = int(meta.get("n_items") or 0), int(meta.get("slate_size") or 0)
    # the twin simulates only the items its log showed; with a catalog of a slate or two, every target
    # reorders those few items and a target that would show others (random over the real catalog, say)
    # is evaluated as a different policy (a break test's finding)
    narrow = (f"the twin knows only the {n_items} items its log showed (slates of {k}): every target is "
              "simulated over these items, so a target that would show items the log never did is evaluated "
              "as a different policy (log a policy that explores the catalog)") if 0 < n_items <= 2 * k else ""
    for name, rows in effects.items():
        for e in rows:
            e.world_users = world
            e.warnings.extend(w for w in (few, tied[name], small, narrow) if w)
    return effects


def _few_clicks(path: str | Path, meta: dict[str, Any]) -> str:
    """The fit's FEW CLICKS warning (:data:`counterfeed.twin.fit.FEW_CLICKS`), repeated on every effect of a
    twin whose click model was fitted on a handful of clicks (or skips); ``""`` otherwise, and for a twin
    written before ``twin.json`` recorded its click counts."""
    from counterfeed.twin.fit import few_clicks_warning

    clicks, shown = meta.get("n_train_clicks"), meta.get("n_train_impressions")
    if not isinstance(clicks, int) or not isinstance(shown, int):
        return ""
    users = [meta.get(k) if isinstance(meta.get(k), int) else None for k in ("n_train_clickers", "n_train_skippers")]
    return few_clicks_warning(clicks, shown, f"the {meta['n_train_users']} users the twin {path} was fitted on",
                              *users)


#: seed offset between the point fit's worlds (the replicate number is added too)
_WORLD_SEED = 1_000_003


def _cold_start_ties(events, start: float, sessions: int = 20) -> str:
    """A warning when the first ``sessions`` sessions of a world (from ``start``, after any pre-period)
    all got the same items: the policy's scores were tied, and ``topk`` gives ties to the lower item
    codes, which in a twin follow the log's canonical order, not the real system's item order
    (docs/twin.md, "Row order does not matter"; tester17 H2). ``""`` when they differ."""
    import pandas as pd

    imp = events.impressions.to_dict()
    t = np.asarray(imp["time"], np.float64)
    keep = t >= start
    m = sessions * (int(np.max(imp["position"])) + 1) if t.size else 0
    if keep.sum() > m > 0:  # only the earliest rows (a session's rows share its time): no full sort
        keep &= t <= np.partition(t[keep], m - 1)[m - 1]
    df = pd.DataFrame({k: np.asarray(imp[k])[keep] for k in ("user", "session", "time", "position", "item")})
    df = df.sort_values(["time", "user", "session", "position"], kind="stable")
    first = df.drop_duplicates(["user", "session"]).head(sessions)[["user", "session"]]
    slates = df.merge(first, on=["user", "session"]).groupby(["user", "session"])["item"].agg(
        lambda x: tuple(sorted(x)))
    if len(slates) < 2 or slates.nunique() > 1:
        return ""
    return (f"the target showed the same items to each of its first {len(slates)} sessions: its scores were tied "
            "at the start of the twin's world, and ties go to the twin's lower item codes (items numbered by "
            "first appearance in the log), not to the real system's order, so this effect can depend on that "
            "order (docs/twin.md, 'Row order does not matter')")


def _combine(point: list[dict[str, tuple[float, float, float, int]]],
             boot: list[dict[str, tuple[float, float, float, int]]], truth_worlds: int | None,
             level: float) -> list[TwinEffect]:
    """Per metric, the point fit's effect (mean over its worlds ``point``) and its interval from the
    bootstrap replicates' worlds ``boot`` (module docstring). Each entry: ``{metric: (logging value,
    target value, per-user variance of the difference, users)}``, one world each."""
    from scipy.stats import t as student_t

    out = []
    for name in METRICS:
        p_rows = [r[name] for r in point if name in r]
        if not p_rows:
            continue
        e0j = np.array([r[1] - r[0] for r in p_rows])
        effect = float(e0j.mean())
        lvalue, tvalue = float(np.mean([r[0] for r in p_rows])), float(np.mean([r[1] for r in p_rows]))
        # one world's simulation noise at the log's size: the spread of the point fit's worlds (it holds
        # what a learning target's training shares across a world's users), else the per-user term
        per_user = float(np.mean([r[2] / r[3] for r in p_rows]))
        v_world = float(e0j.var(ddof=1)) if e0j.size > 1 else per_user
        var_sim = v_world / e0j.size
        e = np.array([r[name][1] - r[name][0] for r in boot if name in r])
        warn: list[str] = [MODEL_WARNING]
        lo = hi = sp = None
        realised = 0.0 if truth_worlds is None else v_world / int(truth_worlds)
        if e.size < 2:
            warn.append("the twin has no bootstrap replicates (fit with --bootstrap >= 2): no interval")
        else:
            mse = float(np.mean((e - effect) ** 2))
            sp = math.sqrt(mse)
            half = float(student_t.ppf(0.5 + level / 2, e.size)) * math.sqrt(mse + var_sim + realised)
            lo, hi = float(effect - half), float(effect + half)
            if not half > 0:  # nothing varied: a zero-width interval would claim certainty
                lo = hi = None
                warn.append(f"{name} did not vary across the twin's replicates or users: no interval")
        out.append(TwinEffect(metric=name, logging_value=lvalue, target_value=tvalue,
                              effect=effect, lower=lo, upper=hi, se_parameters=sp,
                              se_simulation=math.sqrt(var_sim), replicates=int(e.size), warnings=warn,
                              se_realised=None if truth_worlds is None else math.sqrt(realised),
                              point_effect=effect, point_worlds=int(e0j.size)))
    return out


#: Stated with every twin effect: what the interval assumes, and what validation measured (docs/twin.md,
#: "What validation shows"), where the number is printed, not only in the docs.
MODEL_WARNING = (
    "the interval assumes the twin's user model holds (check it with 'twin check' on held-out users); it "
    "covers only the fit's and the simulation's error, not a model that is wrong. In validation (docs/twin.md; "
    "50 replications of 500-user, 21-day logs from the choice model, scored against the users' conditional "
    "effect) the twin's 95% intervals covered the true effect on CTR 97% of the time (Wilson [92, 99]%), on "
    "sessions per user 96% ([92, 98]%) and on retention 100% ([98, 100]%): conservative there")


def ope_beside(log_path: str, target: dict[str, Any], *, columns: str | None = None, seed: int = 0,
               level: float = 0.95, target_probs: str | None = None) -> list[dict[str, Any]]:
    """IPS and DR estimates of the target's CTR from the same log (``counterfeed.ope``), as dicts with
    the estimated value, its interval, and the effect against the logged CTR; ``target_probs``: the
    target as a probability table (``counterfeed ope --target-probs``) instead of ``target``."""
    from counterfeed.ope import evaluate, load_log, target_from_recommender
    from counterfeed.ope.target import load_target

    log = load_log(log_path, columns)
    if target_probs is not None:
        tgt = load_target(target_probs, log)
    else:
        opts = {k: v for k, v in target.items() if k != "recommender"}
        tgt = target_from_recommender(log, target["recommender"], opts, seed=seed)
    out = []
    for r in evaluate(log, tgt, ["ips", "dr"], level=level, seed=seed):
        d = r.to_dict()
        obs = r.logging_value
        d["effect"] = None if r.value is None else r.value - obs
        d["effect_lower"] = None if r.lower is None else r.lower - obs
        d["effect_upper"] = None if r.upper is None else r.upper - obs
        out.append(d)
    return out
