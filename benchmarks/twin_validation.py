"""Validate the twin against the simulator's truth (docs/twin.md, "What validation shows").

Each replication: counterfeed simulates a population with the dynamic ``choice`` user model under an
exploring logging policy (``random``) and, in the same run, the counterfactual worlds where everyone
gets one target policy (``matrix-factorization``, ``text-embedding``, ``thompson``): their differences
with the logging world are the true effects. The twin is fitted from the logging world's impressions
only (plus the item table: topics and texts), then predicts each target's effect on CTR, clicks per
user, sessions per user and retention (``evaluate_many``); IPS/DR estimate the CTR from the same log.

Scored over replications x targets: coverage of the twin's 95% intervals, its mean absolute error
against the "no behavioural change" baseline (effect 0 on sessions and retention, the logged values),
and IPS/DR's coverage of the CTR effect. Then logs from a user model outside the twin's family (the
``choice`` model with periodic, not exponential, returns) are checked: the fidelity check should flag
the inter-visit times, and not flag them for in-family logs.

    python benchmarks/twin_validation.py --replications 50 --out twin_validation.jsonl
    python benchmarks/twin_validation.py --summarize twin_validation.jsonl
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


def scenario(seed: int, args, user_model: str = "choice", targets=None) -> dict:
    arms = {"logging": {"recommender": "random"}, **(targets if targets is not None else TARGETS)}
    return {"name": f"twin-validation-{seed}", "seed": seed,
            "population": {"users": args.users, "dimensions": 8},
            "catalog": {"plugin": "synthetic-text", "items": args.items, "topics": 6, "embedder": "hashing"},
            "user_model": {"plugin": user_model},
            "experiment": {"arms": arms, "duration": f"{args.days}d", "batch_window": "6h",
                           "slate_size": args.slate},
            "metrics": ["impressions", "clicks", "ctr", "sessions", "retained"], "analysis": []}


def simulate(seed: int, args, tmp: Path, user_model: str = "choice", targets=None):
    """Run the original world; write the logging world's log and item table; return (result, log path, items path)."""
    from counterfeed import run
    from counterfeed.core.scenario import Scenario

    sc = Scenario.from_dict(scenario(seed, args, user_model, targets))
    res = run(sc, write=False, quiet=True, workers=1, keep_events=True)
    ev = res.events["all-logging"]
    df = pd.DataFrame(ev.impressions.to_dict()).drop(columns=["arm"], errors="ignore")
    log_path = tmp / f"log-{seed}.parquet"
    df.to_parquet(log_path)
    items = ev.items
    items_path = tmp / f"items-{seed}.parquet"
    pd.DataFrame({"id": np.arange(items.n), "topic": items.topic, "text": items.text}).to_parquet(items_path)
    return res, log_path, items_path


def load(log_path: Path, args):
    from counterfeed.twin.data import twin_log_from_frame

    return twin_log_from_frame(pd.read_parquet(log_path), source=str(log_path), horizon=float(args.days),
                               logging={"recommender": "random"}, slate_size=args.slate,
                               run={"batch_window": "6h", "retrain_every": "1d"})


def replication(seed: int, args) -> list[dict]:
    from counterfeed.twin.evaluate import evaluate_many, ope_beside, world_effects
    from counterfeed.twin.fit import FitSettings, fit_twin
    from counterfeed.twin.items import read_items
    from counterfeed.twin.store import write_twin

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        t0 = time.perf_counter()
        res, log_path, items_path = simulate(seed, args, tmp)
        t_sim = time.perf_counter() - t0
        log = load(log_path, args)
        topics, emb, texts = read_items(str(items_path), log.item_ids, "hashing")
        t0 = time.perf_counter()
        meta, reps = fit_twin(log, FitSettings(dims=8, holdout=0.0, bootstrap=args.bootstrap, epochs=12,
                                               boot_epochs=3, topics=topics, embeddings=emb, seed=seed))
        t_fit = time.perf_counter() - t0
        twin = write_twin(tmp / "twin", meta, reps, embeddings=emb, texts=texts)
        t0 = time.perf_counter()
        pred = evaluate_many(twin, TARGETS, users=args.eval_users, seed=seed)
        t_eval = time.perf_counter() - t0
        rows = []
        for name, spec in TARGETS.items():
            truth = world_effects(res.outcomes, "all-logging", f"all-{name}")
            try:
                ope = {r["estimator"]: r for r in ope_beside(str(log_path), spec, seed=seed)}
            except Exception as exc:  # reported, not fatal
                ope = {"error": str(exc)}
            for e in pred[name]:
                t = truth[e.metric]
                row = {"seed": seed, "target": name, "metric": e.metric, "truth": t[1] - t[0],
                       "truth_logging": t[0], "twin": e.effect, "lower": e.lower, "upper": e.upper,
                       "twin_logging": e.logging_value, "twin_point": e.point_effect,
                       "model": meta["examination"]["model"],
                       "satiation": {k: meta["satiation"].get(k) for k in ("weight", "se", "halflife_days")},
                       "seconds": {"simulate": t_sim, "fit": t_fit, "evaluate": t_eval}}
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


def summarize(rows: list[dict], checks: list[dict]) -> None:
    reps = sorted({r["seed"] for r in rows})
    print(f"{len(reps)} replications x {len({r['target'] for r in rows})} targets")
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
              f"(ratio {mae / max(base, 1e-12):.2f}); bias {bias:+.4g}")
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
    secs = [r["seconds"] for r in rows if r["metric"] == "ctr" and r["target"] == "mf"]
    if secs:
        print("  seconds per replication: " + ", ".join(f"{k} {np.mean([s[k] for s in secs]):.1f}" for k in secs[0]))
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
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--items", type=int, default=60)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--slate", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=8)
    ap.add_argument("--eval-users", type=int, default=800, help="twin users simulated per evaluation")
    ap.add_argument("--seed", type=int, default=1000)
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
