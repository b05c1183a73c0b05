"""Calibration of the observational estimators on the three observational scenarios (issue 16).

Runs ``counterfeed calibrate``-style replications (:func:`counterfeed.calibration.calibrate`, resumable,
one directory per scenario under ``--out``) of

- ``scenarios/observational_selection.yaml`` with diff-in-means (naive) and aipw: target AIPW covers
  the true ATE in [93, 97]% of replications, and the naive estimate's bias is at least 5x its standard
  error;
- ``scenarios/observational_hidden.yaml`` with diff-in-means, iv-2sls and backdoor-regression
  (proceed_when_unidentifiable): target IV covers the true LATE in [93, 97]% and the sensitivity
  verdict calls the backdoor estimate "not robust" in >= 90% of replications;
- ``scenarios/staggered_rollout.yaml`` with did-staggered and twfe: target the staggered-robust ATT
  interval covers the true ATT in [93, 97]%, TWFE's does not.

Coverages come with Wilson 95% intervals. The scenarios are sized for this (600 users each); sizes
can still be changed (``--users``, ``--days``), and the printed header says which were used. Every
estimate is scored against the truth of its own run, so a smaller scenario changes the truth, not
the check. Only clicks (the metric the scenarios' graphs are about) is analysed.

    python benchmarks/observational.py -n 200 -w 1              # all three, resumable (--out)
    python benchmarks/observational.py -n 50 --only staggered_rollout
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from calibration_common import parser, verdict

ROOT = Path(__file__).resolve().parents[1]

#: scenario -> the analysis the benchmark runs on it (replacing the scenario's own)
ANALYSES: dict[str, list[dict[str, Any]]] = {
    "observational_selection": [{"estimator": "diff-in-means", "relative": False, "metrics": ["clicks"]},
                                {"estimator": "aipw", "refute": False, "metrics": ["clicks"]}],
    "observational_hidden": [{"estimator": "diff-in-means", "relative": False, "metrics": ["clicks"]},
                             {"estimator": "iv-2sls", "metrics": ["clicks"]},
                             {"estimator": "backdoor-regression", "refute": False,
                              "proceed_when_unidentifiable": True, "metrics": ["clicks"]}],
    "staggered_rollout": [{"estimator": "did-staggered", "event_times": False, "metrics": ["clicks"]},
                          {"estimator": "twfe", "metrics": ["clicks"]}],
}
#: the metric each check is read on (the scenarios' graphs are about clicks)
METRIC = "clicks"


def replicate_with_verdicts(scenario_data: dict, seed: int) -> list[dict[str, Any]]:
    """One replication (as :func:`counterfeed.calibration.engine.run_replication`), plus one record per
    estimate with a sensitivity verdict: estimator ``<name>:verdict``, estimand ``robust``, point 1
    (robust) or 0 (not robust) -- calibration keeps only estimate fields, so the verdict travels as one."""
    from counterfeed.core.runner import run
    from counterfeed.core.scenario import Scenario

    scenario = Scenario.from_dict(scenario_data).with_overrides({"seed": int(seed)})
    result = run(scenario, write=False, quiet=True, workers=1)
    out: list[dict[str, Any]] = [e.to_dict() for e in result.estimates]
    for e in result.estimates:
        sens = e.diagnostics.get("sensitivity")
        if isinstance(sens, dict) and "verdict" in sens:
            v = 1.0 if sens["verdict"] == "robust" else 0.0
            out.append({"estimator": f"{e.estimator}:verdict", "metric": e.metric, "arm": e.arm, "estimand": "robust",
                        "segment": e.segment, "point": v, "lower": v, "upper": v, "p_value": None, "truth": None,
                        "covered": None, "level": e.level})
    return out


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (Wilson 1927)."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mid - half, mid + half


def load(name: str, users: int | None, days: int | None):
    from counterfeed.core.scenario import load_scenario

    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml")
    over: dict[str, Any] = {"analysis": ANALYSES[name]}
    if users:
        over["population.users"] = users
    if days:
        over["experiment.duration"] = f"{days}d"
    return sc.with_overrides(over)


def _rows(records, estimator: str, estimand: str):
    r = records[(records["estimator"] == estimator) & (records["metric"] == METRIC) & (records["estimand"] == estimand)]
    return r[r["truth"].notna()] if estimand != "robust" else r


def coverage_line(records, estimator: str, estimand: str, lo: float | None = 0.93, hi: float | None = 0.97) -> str:
    r = _rows(records, estimator, estimand)
    n = len(r)
    if n == 0:
        return f"  {estimator:22s} {estimand:10s} no scored estimates"
    k = int(r["covered"].astype(bool).sum())
    a, b = wilson(k, n)
    bias = float((r["point"] - r["truth"]).mean())
    se = float(((r["upper"] - r["lower"]) / (2 * 1.959963984540054)).mean())
    target = "" if lo is None else (f"  target [{lo:.0%}, {hi:.0%}]: {verdict(k / n, lo, hi)}"
                                    f" (Wilson interval {'overlaps' if a <= hi and b >= lo else 'misses'} it)")
    return (f"  {estimator:22s} {estimand:10s} coverage {k}/{n} = {k / n:6.1%} [Wilson {a:6.1%}, {b:6.1%}]"
            f"  mean truth {float(r['truth'].mean()):+.4g}, mean bias {bias:+.4g} (mean se {se:.4g}, bias/se "
            f"{bias / se if se > 0 else math.nan:+.1f}){target}")


def report(name: str, records) -> list[str]:
    lines = [f"{name}:"]
    if name == "observational_selection":
        lines.append(coverage_line(records, "aipw", "difference"))
        lines.append(coverage_line(records, "diff-in-means", "difference", None))
        r = _rows(records, "diff-in-means", "difference")
        if len(r):
            se = (r["upper"] - r["lower"]) / (2 * 1.959963984540054)
            bias = float((r["point"] - r["truth"]).mean())
            ratio = abs(bias) / float(se.mean())
            per_rep = ((r["point"] - r["truth"]).abs() / se >= 5).mean()
            lines.append(f"  naive bias / se = {bias:+.4g} / {se.mean():.4g} = {ratio:.1f}x: "
                         f"{'PASS' if ratio >= 5 else 'FAIL'} (target: >= 5x); |error| >= 5 se in {per_rep:.0%} "
                         "of replications")
    elif name == "observational_hidden":
        lines.append(coverage_line(records, "iv-2sls", "late"))
        lines.append(coverage_line(records, "backdoor-regression", "difference", None))
        lines.append(coverage_line(records, "diff-in-means", "difference", None))
        r = _rows(records, "backdoor-regression:verdict", "robust")
        n, k = len(r), int((r["point"] == 0.0).sum())
        a, b = wilson(k, n)
        lines.append(f"  sensitivity verdict 'not robust' for backdoor-regression: {k}/{n} = "
                     f"{(k / n if n else math.nan):.1%} [Wilson {a:.1%}, {b:.1%}]  target >= 90%: "
                     f"{'PASS' if n and k / n >= 0.9 else 'FAIL'}")
    else:
        lines.append(coverage_line(records, "did-staggered", "att"))
        line = coverage_line(records, "twfe", "att", None)
        r = _rows(records, "twfe", "att")
        cov = float(r["covered"].astype(bool).mean()) if len(r) else math.nan
        lines.append(line + f"  target: does not cover (< 93%): {'PASS' if cov < 0.93 else 'FAIL'}")
    return lines


def main() -> None:
    p = parser(__doc__.splitlines()[0], 200)
    p.add_argument("--only", choices=list(ANALYSES), action="append", help="run only this scenario (repeatable)")
    p.add_argument("--users", type=int, default=None, help="population size (default: the scenario's)")
    p.add_argument("--days", type=int, default=None, help="experiment duration in days (default: the scenario's)")
    args = p.parse_args()
    from counterfeed.calibration import calibrate
    from counterfeed.core.executors import get_executor

    out: list[str] = []
    for name in args.only or list(ANALYSES):
        sc = load(name, args.users, args.days)
        t0 = time.perf_counter()
        with get_executor(args.executor, workers=args.workers, scheduler=args.scheduler) as ex:
            res = calibrate(sc, args.replications, executor=ex, out_dir=args.out / f"observational-{name}",
                            fresh=args.fresh, quiet=False, replicate=replicate_with_verdicts)
            workers = ex.workers
        wall = time.perf_counter() - t0
        head = (f"{name}: {res.completed} replications ({sc.population.users} users, "
                f"{sc.experiment.duration:g}-day experiment), {workers} workers, {wall:.0f} s; failed: {len(res.errors)}")
        print(head)
        lines = report(name, res.records)
        print("\n".join(lines), flush=True)
        out += [head, *lines[1:]]
    print("\nSummary\n" + "\n".join(out), flush=True)


if __name__ == "__main__":
    main()
