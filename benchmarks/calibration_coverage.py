"""Coverage of the 95% intervals of every built-in analysis estimator over 500 replications.

Random (control, the logging policy OPE needs) vs popularity (a real effect), with a pre-period so CUPED has a covariate. Every estimator
registered by the built-in plugins is analysed (those with no interval-producing output on this
scenario are reported as such; the Bayesian SEM, an MCMC fit per replication, only with --with-sem).
Target: coverage within [93, 97]% (500 replications: the standard
error of a 95% rate is 0.97 points, so [93, 97] is a +-2 sd band).

    python benchmarks/calibration_coverage.py          # 500 replications, all cores, resumable
"""

from __future__ import annotations

from calibration_common import parser, run_calibration, scenario, verdict

COVERAGE = """
name: bench-coverage
seed: 7
population: {users: 800}
catalog: {plugin: synthetic, items: 200, topics: 8}
experiment:
  arms:
    control: {recommender: random}
    treatment: {recommender: popularity}
  pre_period: 1d
  duration: 2d
  batch_window: 2h
metrics: [clicks, sessions, dwell, ctr, retained]
analysis:
{analysis}
output: {dir: runs}
"""

_OPTIONS = {
    "cuped": "    metrics: [clicks, sessions, dwell]\n",
    # a mediation model: treatment -> clicks -> sessions; 'total' estimates the effect on sessions
    "sem": ("    model: |\n      clicks ~ a*treatment\n      sessions ~ b*clicks + c*treatment\n"
            "      total := c + a*b\n    outcome: sessions\n    draws: 500\n    tune: 500\n    chains: 2\n"),
}


def builtin_estimators() -> list[str]:
    from counterfeed.core.plugins import get_registry

    reg = get_registry()
    # estimators of non-randomized designs (a causal graph, an instrument, a rollout panel) cannot
    # analyse this randomized A/B scenario: validate rejects them (benchmarks/observational.py has theirs)
    design = {"graph", "instrument", "panel"}
    return [n for n in reg.names("estimator") if reg.info("estimator", n).source in ("builtin", "built-in")
            and not design & set(reg.info("estimator", n).cls.tags.required_inputs())] or reg.names("estimator")


def main() -> None:
    p = parser(__doc__.splitlines()[0], 500)
    p.add_argument("--with-sem", action="store_true",
                   help="include the Bayesian SEM (an MCMC fit per replication: much slower)")
    args = p.parse_args()
    names = [n for n in builtin_estimators() if args.with_sem or n != "sem"]
    analysis = "".join(f"  - estimator: {n}\n{_OPTIONS.get(n, '')}" for n in names)
    sc = scenario(COVERAGE.replace("{analysis}", analysis.rstrip("\n")), "coverage")
    res, wall, workers = run_calibration(sc, args, args.out / "calibrate-bench-coverage")
    print(f"\nCoverage calibration: estimators {', '.join(names)}; {res.completed} replications, "
          f"{workers} workers, {wall:.0f} s")
    print(f"{'estimator':15s} {'metric':10s} {'estimand':11s} {'coverage':>9s} {'95% CI':>18s} {'bias':>10s}  [93, 97]%")
    for _, r in res.summary.iterrows():
        if r["coverage"] != r["coverage"]:  # NaN: no known truth for this estimand
            print(f"{r['estimator']:15s} {r['metric']:10s} {r['estimand']:11s}   (no truth)")
            continue
        print(f"{r['estimator']:15s} {r['metric']:10s} {r['estimand']:11s} {100 * r['coverage']:8.2f}% "
              f"[{100 * r['coverage_lower']:5.2f}, {100 * r['coverage_upper']:5.2f}]% {r['bias']:10.4g}  "
              f"{verdict(r['coverage'], 0.93, 0.97)}")
    produced = {str(e).split(":")[0] for e in res.summary["estimator"]}  # "ope:dr" comes from "ope"
    missing = sorted(set(names) - produced)
    if missing:
        print(f"no estimates from: {', '.join(missing)}")
    print(f"output: {res.out_dir}")


if __name__ == "__main__":
    main()
