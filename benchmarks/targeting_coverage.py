"""Coverage of the off-policy value intervals of learned targeting rules, and how often the learned
rule beats both single arms, over replications of scenarios/targeting.yaml.

Each replication runs the scenario under seed ``Keys(seed).derive_seed("replication", i)`` (as
``counterfeed calibrate`` does) and reads the manifest's ``targeting`` entries: whether the doubly
robust (and IPW) 95% interval of each learned rule's value covers the rule's true value (its world's
mean), and whether the rule's true value exceeds both all-control and all-treatment. Proportions are
printed with Wilson 95% intervals.

It also scores each CATE estimate against the per-user truth in every replication (the run's
``cate_scores``): the share of replications in which PEHE is at most 0.70 times the baseline of
predicting the average effect for everyone, both raw (against the R-replication conditional truth,
whose Monte Carlo error inflates both) and Monte Carlo-corrected (``pehe_ratio_mc``, see
:func:`counterfeed.analysis.cate_scores.truth_mc_error`), and the pooled per-user coverage of the
95% intervals, raw and Monte Carlo-corrected (``coverage_mc``), with Wilson intervals over users
(users of one replication are not independent, so a per-replication spread is printed too).

    python benchmarks/targeting_coverage.py --replications 100            # the acceptance check
    python benchmarks/targeting_coverage.py --replications 100 --users 400 # 73 min on 2 shared cores
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

from counterfeed.core.randomness import Keys
from counterfeed.core.runner import run
from counterfeed.core.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "targeting.yaml"


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (Wilson 1927, JASA 22(158))."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mid - half, mid + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replications", type=int, default=100)
    ap.add_argument("--users", type=int, default=None, help="override population.users")
    ap.add_argument("--truth-replications", type=int, default=None, help="override truth.replications")
    ap.add_argument("--estimators", default=None, help="comma-separated CATE estimators (default: the scenario's)")
    args = ap.parse_args()
    base = load_scenario(SCENARIO)
    over: dict = {}
    if args.users:
        over["population.users"] = args.users
    if args.truth_replications is not None:
        over["truth.replications"] = args.truth_replications
    if args.estimators:
        keep = args.estimators.split(",")
        over["analysis"] = [a.model_dump() for a in base.analysis if a.estimator in keep or a.estimator == "diff-in-means"]
    keys = Keys(base.seed)
    counts: dict[str, dict[str, int]] = {}
    cate: dict[str, dict[str, list[float]]] = {}
    t0 = time.perf_counter()
    for i in range(args.replications):
        sc = base.with_overrides({**over, "seed": keys.derive_seed("replication", i)})
        res = run(sc, write=False)
        for r in res.manifest["targeting"]["rules"]:
            if r["rule"] == "oracle":
                continue
            c = counts.setdefault(r["rule"], {"n": 0, "dr": 0, "ipw": 0, "beats": 0, "gain": 0})
            c["n"] += 1
            c["dr"] += bool(r["ope"]["dr_covers"])
            c["ipw"] += bool(r["ope"]["ipw_covers"])
            c["beats"] += bool(r["beats_both"])
            c.setdefault("gains", []).append(r["value"] - max(r["all_control"], r["all_arm"]))
        for e in res.estimates:
            s = e.diagnostics.get("cate_scores") if e.estimand == "cate" else None
            if s:
                d = cate.setdefault(e.estimator, {})
                for k in ("pehe_ratio", "pehe_ratio_mc", "coverage", "coverage_mc", "coverage_n",
                          "mc_variance_share"):
                    d.setdefault(k, []).append(s.get(k))
        print(f"replication {i + 1}/{args.replications} done ({time.perf_counter() - t0:.0f} s)", flush=True)
        if (i + 1) % 10 == 0 or i + 1 == args.replications:
            summary(counts, cate, i + 1, over)


def _line(name: str, label: str, k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{name:14s} {label:58s} {k:6d}/{n:<6d} = {k / n:.3f}  Wilson 95% [{lo:.3f}, {hi:.3f}]"


def summary(counts: dict, cate: dict, done: int, over: dict) -> None:
    """Print the proportions so far with Wilson intervals."""
    print(f"\n{done} replications of {SCENARIO.name} {over or ''}")
    for rule, c in counts.items():
        for key, label in (("dr", "rule value: DR 95% interval covers the true value"),
                           ("ipw", "rule value: IPW 95% interval covers the true value"),
                           ("beats", "rule's true value above all-control and all-treatment")):
            print(_line(rule, label, c[key], c["n"]))
        g = np.array(c["gains"])
        print(f"{rule:14s} true value minus the better single arm: mean {g.mean():.3f}, "
              f"min {g.min():.3f} (clicks per user)")
    for est, d in cate.items():
        for key, label in (("pehe_ratio", "PEHE <= 0.70 x baseline (raw conditional truth)"),
                           ("pehe_ratio_mc", "PEHE <= 0.70 x baseline (Monte Carlo-corrected)")):
            v = np.array([x for x in d[key] if x is not None], dtype=float)
            if v.size:
                print(_line(est, label, int((v <= 0.70).sum()), v.size)
                      + f"  mean ratio {v.mean():.3f}")
        for key, label in (("coverage", "per-user 95% intervals cover (raw conditional truth)"),
                           ("coverage_mc", "per-user 95% intervals cover (Monte Carlo-corrected)")):
            ok = [(x, n) for x, n in zip(d[key], d["coverage_n"]) if x is not None]
            if ok:
                k = int(round(sum(x * n for x, n in ok)))
                n = int(sum(n for _, n in ok))
                per = np.array([x for x, _ in ok])
                print(_line(est, label, k, n) + f"  per replication {per.mean():.3f} "
                      f"[{np.quantile(per, 0.05):.3f}, {np.quantile(per, 0.95):.3f}]")
        share = [x for x in d["mc_variance_share"] if x is not None]
        if share:
            print(f"{est:14s} share of the widened interval's variance that is the truth's Monte Carlo error: "
                  f"{np.mean(share):.3f}")
    print(flush=True)


if __name__ == "__main__":
    main()
