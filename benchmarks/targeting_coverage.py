"""Coverage of the off-policy value intervals of learned targeting rules, and how often the learned
rule beats both single arms, over replications of scenarios/targeting.yaml.

Each replication runs the scenario under seed ``Keys(seed).derive_seed("replication", i)`` (as
``counterfeed calibrate`` does) and reads the manifest's ``targeting`` entries: whether the doubly
robust (and IPW) 95% interval of each learned rule's value covers the rule's true value (its world's
mean), and whether the rule's true value exceeds both all-control and all-treatment. Proportions are
printed with Wilson 95% intervals.

    python benchmarks/targeting_coverage.py --replications 100            # the acceptance check
    python benchmarks/targeting_coverage.py --replications 12 --users 1000 --truth-replications 2
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

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
    t0 = time.perf_counter()
    for i in range(args.replications):
        sc = base.with_overrides({**over, "seed": keys.derive_seed("replication", i)})
        t = run(sc, write=False).manifest["targeting"]
        for r in t["rules"]:
            if r["rule"] == "oracle":
                continue
            c = counts.setdefault(r["rule"], {"n": 0, "dr": 0, "ipw": 0, "beats": 0, "gain": 0})
            c["n"] += 1
            c["dr"] += bool(r["ope"]["dr_covers"])
            c["ipw"] += bool(r["ope"]["ipw_covers"])
            c["beats"] += bool(r["beats_both"])
        print(f"replication {i + 1}/{args.replications} done ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\n{args.replications} replications of {SCENARIO.name} {over or ''}")
    for rule, c in counts.items():
        for key, label in (("dr", "DR 95% interval covers the true value"),
                           ("ipw", "IPW 95% interval covers the true value"),
                           ("beats", "true value above all-control and all-treatment")):
            lo, hi = wilson(c[key], c["n"])
            print(f"{rule:14s} {label:48s} {c[key]:4d}/{c['n']:<4d} = {c[key] / c['n']:.3f}  "
                  f"Wilson 95% [{lo:.3f}, {hi:.3f}]")


if __name__ == "__main__":
    main()
