"""Validate the twin against the simulator's truth (docs/twin.md, "What validation shows").

Each replication: counterfeed simulates a population with the dynamic ``choice`` user model under an
exploring logging policy (``random``) for ``--days`` (21); that world's impressions are the log. The
design makes retention move: churn per session ``--churn-rate`` (0.03, the model's default 0.01) at
baseline satisfaction, times ``exp(--churn-weight * (baseline - satisfaction))`` (2.0), so a sizeable
share of users churns over the horizon and fewer of those who click less. The truth is the users'
**conditional effect** (``--truth-replications`` R = 8): the mean over R noise replications of the same
users (``all-ARM@r``, independent of the log) of the difference between the world where everyone gets
the target (``matrix-factorization``, ``text-embedding``, ``thompson``) and the logging world; R = 0
gives the effect realised in the log's own noise instead. The twin is fitted from the log only (plus
the item table: topics and texts), then predicts each target's effect on CTR, clicks per user,
sessions per user and retention (``evaluate_many``, its interval for the mean of R worlds of the log's
users); IPS/DR estimate the CTR from the same log (every ``--ope-every`` replications).

Scored over replications x targets: coverage of the twin's 95% intervals, its mean absolute error
against the "no behavioural change" baseline (effect 0 on sessions and retention, the logged values),
and IPS/DR's coverage of the CTR effect. Then logs from a user model outside the twin's family (the
``choice`` model with periodic, not exponential, returns) are checked: the fidelity check should flag
the inter-visit times, and not flag them for in-family logs.

    python benchmarks/twin_validation.py --checks 0 --out twin_validation.jsonl   # the acceptance run
    python benchmarks/twin_validation.py --summarize twin_validation.jsonl

The defaults are the acceptance run's (docs/twin.md): 50 replications of 500-user logs, 8 bootstrap
replicates over users, 12,000 simulated twin users per evaluation, R = 8; about 60 CPU seconds per
replication (two processes with ``--replications 25 --seed 7000`` and ``--seed 7025`` halve the wait).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "twin"))
from regular_visits import PeriodicPlugin  # noqa: E402  (the out-of-family user model, shared with the tests)

TARGETS = {"mf": {"recommender": "matrix-factorization"},
           "text": {"recommender": "text-embedding", "embedder": "hashing"},
           "bandit": {"recommender": "thompson"}}
#: the targets as simulated (truth worlds, twin worlds): the Thompson sampler's Monte Carlo propensities
#: (200 Beta draws per item and serving window) are only recorded, never used by the policy or the users
#: (its slates come from a separate keyed stream), so one draw gives bit-identical outcomes at a fraction
#: of the cost; IPS/DR get the real target (TARGETS), whose propensities they need
SIM_TARGETS = {**TARGETS, "bandit": {"recommender": "thompson", "propensity_samples": 1}}


def scenario(seed: int, args, user_model: str = "choice", targets=None) -> dict:
    arms = {"logging": {"recommender": "random"}, **(targets if targets is not None else SIM_TARGETS)}
    um = {"plugin": user_model}
    if user_model == "choice":  # the benchmark's design: churn that happens, and depends on satisfaction
        um.update(churn_rate=args.churn_rate, churn_weight=args.churn_weight)
    return {"name": f"twin-validation-{seed}", "seed": seed,
            "population": {"users": args.users, "dimensions": 8},
            "catalog": {"plugin": "synthetic-text", "items": args.items, "topics": 6, "embedder": "hashing"},
            "user_model": um,
            "experiment": {"arms": arms, "duration": f"{args.days}d", "batch_window": "6h",
                           "slate_size": args.slate},
            "metrics": ["impressions", "clicks", "ctr", "sessions", "retained"], "analysis": []}


def simulate(seed: int, args, tmp: Path, user_model: str = "choice", targets=None, truth: int = 0):
    """Simulate the logging world (and the truth's worlds); write its log and item table.

    ``truth = 0``: the truth is the effect realised in the log's own noise (the targets' worlds with
    the logging world's random numbers); ``truth = R > 0``: the users' conditional effect, the mean
    over ``R`` noise replications of the logging and target worlds (``all-ARM@r``, r = 1..R: the same
    users, fresh noise, independent of the log). Returns (outcomes of the truth's worlds, log path,
    items path).
    """
    from counterfeed.core.experiment import counterfactual_world
    from counterfeed.core.user_truth import replication_world
    from counterfeed.twin.evaluate import simulate_worlds

    sc = scenario(seed, args, user_model, targets)
    arms = list(sc["experiment"]["arms"])
    worlds = ([counterfactual_world("logging")] +
              ([counterfactual_world(a) for a in arms[1:]] if truth == 0 else
               [replication_world(counterfactual_world(a), r) for r in range(1, truth + 1) for a in arms]))
    out = simulate_worlds(sc, worlds)
    ev = out["all-logging"].events
    df = pd.DataFrame(ev.impressions.to_dict()).drop(columns=["arm"], errors="ignore")
    log_path = tmp / f"log-{seed}.parquet"
    df.to_parquet(log_path)
    items = ev.items
    items_path = tmp / f"items-{seed}.parquet"
    pd.DataFrame({"id": np.arange(items.n), "topic": items.topic, "text": items.text}).to_parquet(items_path)
    # a noise replication's outcomes name its base world: label them with the replication's name
    outcomes = pd.concat([o.outcomes.assign(world=w) for w, o in out.items()], ignore_index=True)
    return outcomes, log_path, items_path


def true_effects(outcomes, name: str, truth: int) -> dict[str, tuple[float, float]]:
    """Per metric (logging value, effect): realised (``truth = 0``) or the mean over R replications."""
    from counterfeed.twin.evaluate import world_effects

    if truth == 0:
        return {m: (v[0], v[1] - v[0]) for m, v in world_effects(outcomes, "all-logging", f"all-{name}").items()}
    from counterfeed.core.user_truth import replication_world

    per = [world_effects(outcomes, replication_world("all-logging", r), replication_world(f"all-{name}", r))
           for r in range(1, truth + 1)]
    return {m: (float(np.mean([p[m][0] for p in per])), float(np.mean([p[m][1] - p[m][0] for p in per])))
            for m in per[0]}


def load(log_path: Path, args):
    from counterfeed.twin.data import twin_log_from_frame

    return twin_log_from_frame(pd.read_parquet(log_path), source=str(log_path), horizon=float(args.days),
                               logging={"recommender": "random"}, slate_size=args.slate,
                               run={"batch_window": "6h", "retrain_every": "1d"})


def replication(seed: int, args) -> list[dict]:
    from counterfeed.twin.evaluate import evaluate_many, ope_beside
    from counterfeed.twin.fit import FitSettings, fit_twin
    from counterfeed.twin.items import read_items
    from counterfeed.twin.store import write_twin

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        t0, c0 = time.perf_counter(), time.process_time()
        outcomes, log_path, items_path = simulate(seed, args, tmp, truth=args.truth_replications)
        t_sim, c_sim = time.perf_counter() - t0, time.process_time() - c0
        log = load(log_path, args)
        topics, emb, texts = read_items(str(items_path), log.item_ids, "hashing")
        t0, c0 = time.perf_counter(), time.process_time()
        meta, reps = fit_twin(log, FitSettings(dims=8, holdout=0.0, bootstrap=args.bootstrap, epochs=12,
                                               bootstrap_kind=args.bootstrap_kind, topics=topics, embeddings=emb, seed=seed))
        t_fit, c_fit = time.perf_counter() - t0, time.process_time() - c0
        twin = write_twin(tmp / "twin", meta, reps, embeddings=emb, texts=texts)
        t0, c0 = time.perf_counter(), time.process_time()
        # the truth is one realised world (truth_replications 0) or the mean of R: the interval says which
        pred = evaluate_many(twin, SIM_TARGETS, users=args.eval_users, seed=seed,
                             truth_worlds=max(1, args.truth_replications))
        t_eval, c_eval = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        opes = {name: {} for name in TARGETS}
        for name, spec in (TARGETS.items() if (seed - args.seed) % args.ope_every == 0 else ()):
            try:
                opes[name] = {r["estimator"]: r for r in ope_beside(str(log_path), spec, seed=seed)}
            except Exception as exc:  # reported, not fatal
                opes[name] = {"error": str(exc)}
        t_ope, c_ope = time.perf_counter() - t0, time.process_time() - c0
        rows = []
        for name in TARGETS:
            truth = true_effects(outcomes, name, args.truth_replications)
            ope = opes[name]
            for e in pred[name]:
                t = truth[e.metric]
                row = {"seed": seed, "target": name, "metric": e.metric, "truth": t[1],
                       "truth_logging": t[0], "truth_replications": args.truth_replications,
                       "twin": e.effect, "lower": e.lower, "upper": e.upper,
                       "twin_logging": e.logging_value, "twin_point": e.point_effect,
                       "model": meta["examination"]["model"],
                       "satiation": {k: meta["satiation"].get(k) for k in ("weight", "se", "halflife_days")},
                       "dynamics": meta["replicates"][0].get("dynamics") if isinstance(meta["replicates"][0], dict)
                       else None,
                       "config": {k: getattr(args, k) for k in ("users", "days", "churn_rate", "churn_weight",
                                                                 "bootstrap", "eval_users")},
                       "seconds": {"simulate": t_sim, "fit": t_fit, "evaluate": t_eval, "ope": t_ope},
                       "cpu_seconds": {"simulate": c_sim, "fit": c_fit, "evaluate": c_eval, "ope": c_ope}}
                if e.metric == "ctr":
                    for est in ("ips", "dr"):
                        r = ope.get(est)
                        if r:
                            row[est] = {"effect": r["effect"], "lower": r["effect_lower"], "upper": r["effect_upper"]}
                rows.append(row)
        return rows


def mismatch(seed: int, args, user_model: str) -> dict:
    """Fit a twin on logs of ``user_model`` (30% of the users held out) and run the fidelity check."""
    from counterfeed.twin.check import _summaries, _simulated, compare
    from counterfeed.twin.fit import FitSettings, fit_twin
    from counterfeed.twin.store import write_twin

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        _, log_path, _ = simulate(seed, args, tmp, user_model, targets={"copy": {"recommender": "random"}})
        log = load(log_path, args)
        meta, reps = fit_twin(log, FitSettings(dims=8, holdout=0.3, bootstrap=0, seed=seed))
        twin = write_twin(tmp / "twin", meta, reps)
        held = set(meta["heldout_users"])
        logged = log.select_users(np.flatnonzero([u in held for u in log.user_ids.tolist()]))
        sim = _simulated(str(twin), 3 * args.users, seed)
        ids = meta["item_ids"]
        a = _summaries(logged, ids, np.asarray(logged.item_ids, dtype=object))
        b = _summaries(sim, ids, np.asarray([ids[int(c)] for c in sim.item_ids], dtype=object))
        return {"seed": seed, "user_model": user_model, "model": meta["examination"]["model"],
                "verdicts": {x["aspect"]: x["verdict"] for x in compare(a, b)},
                "distances": {x["aspect"]: x["distance"] for x in compare(a, b)}}


def wilson(k: int, n: int) -> str:
    if n == 0:
        return "n/a"
    z, p = 1.96, k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"[{100 * (c - h):.0f}, {100 * (c + h):.0f}]%"


def ratio_interval(rows: list[dict], draws: int = 2000) -> str:
    """95% percentile interval of MAE(twin) / MAE(no change), resampling replications (all their targets)."""
    seeds = sorted({r["seed"] for r in rows})
    if len(seeds) < 2:
        return "no interval from one replication"
    err = {s: [(abs(r["twin"] - r["truth"]), abs(r["truth"])) for r in rows if r["seed"] == s] for s in seeds}
    rng = np.random.default_rng(0)
    out = []
    for _ in range(draws):
        pick = [p for i in rng.integers(0, len(seeds), len(seeds)) for p in err[seeds[i]]]
        a = np.array(pick)
        out.append(a[:, 0].mean() / max(a[:, 1].mean(), 1e-12))
    lo, hi = np.percentile(out, [2.5, 97.5])
    return f"bootstrap over replications 95% [{lo:.2f}, {hi:.2f}]"


def summarize(rows: list[dict], checks: list[dict]) -> None:
    reps = sorted({r["seed"] for r in rows})
    print(f"{len(reps)} replications x {len({r['target'] for r in rows})} targets")
    cfg = {json.dumps(r.get("config"), sort_keys=True) for r in rows}
    truth = {r.get("truth_replications", 0) for r in rows}
    print(f"  configuration {', '.join(sorted(cfg))}; truth: " +
          ", ".join("the realised effect in the log's noise" if t == 0 else
                    f"the users' conditional effect (mean of {t} noise replications)" for t in sorted(truth)))
    for metric in ("ctr", "clicks", "sessions", "retained"):
        sub = [r for r in rows if r["metric"] == metric and r["lower"] is not None]
        if not sub:
            continue
        cov = sum(r["lower"] <= r["truth"] <= r["upper"] for r in sub)
        mae = np.mean([abs(r["twin"] - r["truth"]) for r in sub])
        base = np.mean([abs(r["truth"]) for r in sub])
        bias = np.mean([r["twin"] - r["truth"] for r in sub])
        print(f"  {metric:<9} twin coverage {cov}/{len(sub)} = {100 * cov / len(sub):.0f}% (Wilson 95% "
              f"{wilson(cov, len(sub))}); MAE {mae:.4g} vs no-change baseline {base:.4g} "
              f"(ratio {mae / max(base, 1e-12):.2f}, {ratio_interval(sub)}); bias {bias:+.4g}")
        pts = [r for r in sub if r.get("twin_point") is not None and r["twin_point"] != r["twin"]]
        if pts:  # files from before the bias correction was dropped (the prediction is now the point fit's)
            mae0 = np.mean([abs(r["twin_point"] - r["truth"]) for r in pts])
            print(f"            point fit's effect before the bias correction ({len(pts)} pairs): MAE {mae0:.4g} "
                  f"(ratio {mae0 / max(np.mean([abs(r['truth']) for r in pts]), 1e-12):.2f}), "
                  f"bias {np.mean([r['twin_point'] - r['truth'] for r in pts]):+.4g}")
        for tgt in sorted({r["target"] for r in sub}):
            s2 = [r for r in sub if r["target"] == tgt]
            c2 = sum(r["lower"] <= r["truth"] <= r["upper"] for r in s2)
            print(f"      {tgt:<7} coverage {c2}/{len(s2)}, mean truth {np.mean([r['truth'] for r in s2]):+.4g}, "
                  f"mean twin {np.mean([r['twin'] for r in s2]):+.4g}")
        if metric == "ctr":
            for est in ("ips", "dr"):
                s3 = [r for r in sub if est in r and r[est]["lower"] is not None]
                if s3:
                    c3 = sum(r[est]["lower"] <= r["truth"] <= r[est]["upper"] for r in s3)
                    m3 = np.mean([abs(r[est]["effect"] - r["truth"]) for r in s3])
                    print(f"  ctr by {est}: coverage {c3}/{len(s3)} = {100 * c3 / len(s3):.0f}%, MAE {m3:.4g}")
    sat = [r["satiation"] for r in rows if r["metric"] == "ctr" and r["target"] == "mf" and r.get("satiation")]
    if sat:
        w = np.array([x["weight"] for x in sat])
        sd = w.std(ddof=1) if w.size > 1 else 0.0
        print(f"  fitted satiation weight (true 0.3, half-life 2 days): mean {w.mean():.3f}, sd {sd:.3f}, "
              f"median Hessian se {np.median([x['se'] for x in sat]):.3f}; half-life 2 days in "
              f"{sum(x['halflife_days'] == 2.0 for x in sat)}/{len(sat)}")
    for key, label in (("seconds", "wall"), ("cpu_seconds", "CPU")):
        secs = [r[key] for r in rows if r["metric"] == "ctr" and r["target"] == "mf" and key in r]
        if secs:
            print(f"  {label} seconds per replication (mean): total {np.mean([sum(s.values()) for s in secs]):.1f}; "
                  + ", ".join(f"{k} {np.mean([s.get(k, 0.0) for s in secs]):.1f}" for k in secs[0]))
    for um in sorted({c["user_model"] for c in checks}):
        sub = [c for c in checks if c["user_model"] == um]
        aspects = sub[0]["verdicts"]
        flags = {a: sum(c["verdicts"][a] == "mismatch" for c in sub) for a in aspects}
        print(f"  fidelity check on logs of '{um}' ({len(sub)} replications): mismatches flagged " +
              ", ".join(f"{a} {n}/{len(sub)}" for a, n in flags.items()))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replications", type=int, default=50)
    ap.add_argument("--checks", type=int, default=5, help="replications of the fidelity-check experiment")
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--items", type=int, default=60)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--churn-rate", type=float, default=0.03, help="choice model: churn probability per session at "
                    "baseline satisfaction (the model's default is 0.01)")
    ap.add_argument("--churn-weight", type=float, default=2.0, help="choice model: churn's dependence on satisfaction")
    ap.add_argument("--truth-replications", type=int, default=8, help="0: the truth is the effect realised in the "
                    "log's own noise; R: the users' conditional effect, the mean over R noise replications")
    ap.add_argument("--slate", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=8)
    ap.add_argument("--bootstrap-kind", choices=["users", "parametric"], default="users",
                    help="the twin's bootstrap (counterfeed.twin.bootstrap)")
    ap.add_argument("--eval-users", type=int, default=12000, help="twin users simulated per evaluation")
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--ope-every", type=int, default=5, help="IPS/DR beside the twin in every k-th replication only "
                    "(the Thompson target's Monte Carlo propensities make them the dearest step)")
    ap.add_argument("--out", default="twin_validation.jsonl")
    ap.add_argument("--summarize", help="only summarize an earlier --out file")
    args = ap.parse_args(argv)
    if args.summarize:
        lines = [json.loads(x) for x in Path(args.summarize).read_text().splitlines() if x.strip()]
        summarize([x for x in lines if "metric" in x], [x for x in lines if "verdicts" in x])
        return
    from counterfeed.core.plugins import get_registry

    get_registry().register_plugin(PeriodicPlugin(), name="twin-validation")
    out = Path(args.out)
    done = set()
    if out.exists():
        done = {(json.loads(x).get("seed"), json.loads(x).get("user_model")) for x in out.read_text().splitlines() if x}
    with out.open("a") as fh:
        for i in range(args.checks):
            for um in ("choice", "periodic-choice"):
                if (args.seed + 500 + i, um) in done:
                    continue
                c = mismatch(args.seed + 500 + i, args, um)
                fh.write(json.dumps(c) + "\n")
                fh.flush()
                print(f"check {i} {um}: {c['verdicts']}", file=sys.stderr, flush=True)
        for i in range(args.replications):
            seed = args.seed + i
            if (seed, None) in done:
                continue
            t0 = time.perf_counter()
            for row in replication(seed, args):
                fh.write(json.dumps(row) + "\n")
            fh.flush()
            print(f"replication {i + 1}/{args.replications} (seed {seed}) in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr, flush=True)
    lines = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    summarize([x for x in lines if "metric" in x], [x for x in lines if "verdicts" in x])


if __name__ == "__main__":
    main()
