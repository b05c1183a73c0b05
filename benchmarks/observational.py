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

Which truth each coverage is against is printed with it:

- the **sample** truth: the effect averaged over the run's own users (the simulator's ``difference``
  and ``late`` rows), what ``aipw:sample`` (AIPW's interval for the sample ATE,
  ``diagnostics.sample_interval``) targets;
- the **population** effect: the average over users drawn like these into the same world (catalog,
  model fit), what the usual robust intervals (``aipw``, ``iv-2sls``) target. No run observes it;
  each replication records the variance ``S^2 / n`` of its sample truth around it (``S^2`` the
  variance of the users' own effects, known to the simulator), and :func:`population_scores` scores
  the intervals against ``sample truth + N(0, S^2 / n)`` (expected coverage and one seeded draw);
- with ``--platform K`` (observational_selection only; observational_platform.py) the population
  effect is simulated instead: each replication simulates a platform of ``K`` times the scenario's
  users and analyses a uniformly random sample of the scenario's size, so every estimate is scored
  against the **platform** truth (the mean effect over all the platform's users) and against the
  sample's (``<estimator>:vs-sample``).

Coverages come with Wilson 95% intervals. The scenarios are sized for this (600 users each); sizes
can still be changed (``--users``, ``--days``), and the printed header says which were used. Every
estimate is scored against the truth of its own run, so a smaller scenario changes the truth, not
the check. Only clicks (the metric the scenarios' graphs are about) is analysed.

    python benchmarks/observational.py -n 200 -w 1              # all three, resumable (--out)
    python benchmarks/observational.py -n 50 --only staggered_rollout
    python benchmarks/observational.py -n 200 -w 2 --only observational_selection --platform 10
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path
from typing import Any

from calibration_common import parser, verdict
from observational_platform import replicate_platform

import numpy as np  # noqa: E402  (after calibration_common pins the BLAS threads)

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
    """One replication (as :func:`counterfeed.calibration.engine.run_replication`), plus

    - one record per estimate with a sensitivity verdict: estimator ``<name>:verdict``, estimand
      ``robust``, point 1 (robust) or 0 (not robust) -- calibration keeps only estimate fields, so the
      verdict travels as one;
    - per estimand the truth knows per user (``difference`` over all users, ``late`` over the
      compliers), the sampling variance of that sample-average truth around the population effect of
      this replication's world, ``S^2 / n``: ``S^2`` the variance of the users' own effects
      ``Y_i(all-b) - Y_i(all-c)`` (``RunResult.user_truth``), ``n`` the users averaged
      (estimator ``truth:sampling_variance``, the variance in ``point``). :func:`population_scores`
      uses it to score intervals against the population effect.
    """
    import counterfeed.core.runner as runner_module
    from counterfeed.core.scenario import Scenario

    scenario = Scenario.from_dict(scenario_data).with_overrides({"seed": int(seed)})
    seen: dict[str, Any] = {}
    original = runner_module.observational_truth

    def keep_mechanism(*args: Any, **kwargs: Any):  # the compliance types are the simulator's record
        seen["mechanism"] = args[5] if len(args) > 5 else kwargs.get("mechanism")
        return original(*args, **kwargs)

    runner_module.observational_truth = keep_mechanism
    try:
        result = runner_module.run(scenario, write=False, quiet=True, workers=1)
    finally:
        runner_module.observational_truth = original
    out: list[dict[str, Any]] = [e.to_dict() for e in result.estimates]
    level = result.estimates[0].level if result.estimates else 0.95

    def record(estimator: str, arm: str, estimand: str, value: float) -> dict[str, Any]:
        return {"estimator": estimator, "metric": METRIC, "arm": arm, "estimand": estimand, "segment": None,
                "point": value, "lower": value, "upper": value, "p_value": None, "truth": None,
                "covered": None, "level": level}

    for e in result.estimates:
        sens = e.diagnostics.get("sensitivity")
        if isinstance(sens, dict) and "verdict" in sens:
            out.append(record(f"{e.estimator}:verdict", e.arm, "robust", 1.0 if sens["verdict"] == "robust" else 0.0))
        sample = e.diagnostics.get("sample_interval")
        if isinstance(sample, dict):  # the interval for this sample's own average effect
            row = {**e.to_dict(), "estimator": f"{e.estimator}:sample", "lower": sample["lower"],
                   "upper": sample["upper"]}
            row["covered"] = (None if row["truth"] is None or sample["lower"] is None or sample["upper"] is None
                              else bool(sample["lower"] <= row["truth"] <= sample["upper"]))
            out.append(row)
    ut = result.user_truth
    if ut is not None and len(ut):
        mech = seen.get("mechanism") or {}
        compliance = mech.get("compliance")
        for arm, part in ut[ut["metric"] == METRIC].groupby("arm"):
            tau = part.sort_values("user")["realised"].to_numpy(dtype=float)
            out.append(record("truth:sampling_variance", str(arm), "difference", float(np.var(tau, ddof=1) / tau.size)))
            if compliance is not None:
                c = tau[np.asarray(compliance)[part.sort_values("user")["user"].to_numpy()] == "complier"]
                if c.size >= 2:
                    out.append(record("truth:sampling_variance", str(arm), "late", float(np.var(c, ddof=1) / c.size)))
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


SAMPLE_TRUTH = "the SAMPLE truth (mean effect over the run's own users)"
PLATFORM_TRUTH = "the PLATFORM truth (mean effect over all the platform's simulated users)"
STUDY_SAMPLE_TRUTH = "the SAMPLE truth (mean effect over the study's sampled users)"


def coverage_line(records, estimator: str, estimand: str, lo: float | None = 0.93, hi: float | None = 0.97,
                  against: str = SAMPLE_TRUTH) -> str:
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
    return (f"  {estimator:22s} {estimand:10s} coverage of {against} "
            f"{k}/{n} = {k / n:6.1%} [Wilson {a:6.1%}, {b:6.1%}]"
            f"  mean truth {float(r['truth'].mean()):+.4g}, mean bias {bias:+.4g} (mean se {se:.4g}, bias/se "
            f"{bias / se if se > 0 else math.nan:+.1f}){target}")


def population_scores(records, estimator: str, estimand: str) -> list[str]:
    """Is the interval's width right, and for which estimand?

    Per replication ``i``: ``err_i = point_i - truth_i`` (the sample-average truth of its own users),
    ``v_i = S_i^2 / n_i`` (record ``truth:sampling_variance``: the variance of that sample average
    around the population effect of replication ``i``'s world, the population being users drawn
    like these ones into the same world). Printed:

    - the mean and root-mean-square standard error (half-width / z) against the empirical SD of
      ``err`` (what an interval for the sample average needs) and ``sqrt(var(err) + mean v)`` (what
      one for the population effect needs: ``point - population = err + (truth - population)``, the
      two terms uncorrelated because assignment is independent of the potential outcomes given the
      covariates, Imbens 2004, section 5);
    - coverage of the population effect, which no run observes: the population effect is
      ``truth_i - delta_i`` with ``delta_i ~ N(0, v_i)`` (the central limit theorem over ``n_i``
      users) independent of ``err_i``, so ``P(covered) = Phi((upper - truth) / sqrt(v)) -
      Phi((lower - truth) / sqrt(v))``; its mean over replications is printed (``expected``), and a
      count with a Wilson interval from one draw of ``delta_i`` per replication (generator seeded by
      the replication's seed);
    - coverage of the mean truth over replications, an estimand no interval here targets: worlds
      differ between replications (catalog, model fit, which items trend), and an interval from one
      run's users cannot know how much.
    """
    from scipy import stats

    rows = _rows(records, estimator, estimand)
    var = records[(records["estimator"] == "truth:sampling_variance") & (records["metric"] == METRIC)
                  & (records["estimand"] == estimand)][["replication", "arm", "point"]].rename(columns={"point": "v"})
    r = rows.merge(var, on=["replication", "arm"], how="inner")
    if not len(r):
        return [f"  {estimator}: no sampling variance recorded for {estimand} (rerun with this benchmark's replicate)"]
    z = 1.959963984540054
    lower = r["lower"].astype(float).fillna(-math.inf).to_numpy()
    upper = r["upper"].astype(float).fillna(math.inf).to_numpy()
    truth, v = r["truth"].to_numpy(dtype=float), r["v"].to_numpy(dtype=float)
    err = r["point"].to_numpy(dtype=float) - truth
    half = (upper - lower) / (2 * z)
    finite = np.isfinite(half)
    sd_sample = float(np.std(err, ddof=1))
    sd_pop = math.sqrt(sd_sample ** 2 + float(v.mean()))
    sv = np.sqrt(v)
    p_cov = stats.norm.cdf((upper - truth) / sv) - stats.norm.cdf((lower - truth) / sv)
    draws = np.array([np.random.default_rng(abs(int(s)) % 2 ** 63).standard_normal() for s in r["seed"]])
    pop = truth - sv * draws
    k, n = int(((lower <= pop) & (pop <= upper)).sum()), len(r)
    a, b = wilson(k, n)
    mean_truth = float(truth.mean())
    k_mean = int(((lower <= mean_truth) & (mean_truth <= upper)).sum())
    am, bm = wilson(k_mean, n)
    return [
        f"  {estimator} {estimand}: width check over {n} replications ({int(finite.sum())} bounded): mean se "
        f"{half[finite].mean():.4g}, rms se {math.sqrt(float(np.mean(half[finite] ** 2))):.4g}; "
        f"SD(estimate - sample truth) {sd_sample:.4g}; sd of the sample truth around the population effect "
        f"sqrt(mean S^2/n) {math.sqrt(float(v.mean())):.4g}; so SD(estimate - population effect) {sd_pop:.4g}",
        f"  {estimator} {estimand}: coverage of the POPULATION effect (sample truth + its own sampling error "
        f"S^2/n): expected {float(p_cov.mean()):.1%}; drawn {k}/{n} = {k / n:.1%} [Wilson {a:.1%}, {b:.1%}]  "
        f"target [93%, 97%]: {verdict(k / n, 0.93, 0.97)} (Wilson interval "
        f"{'overlaps' if a <= 0.97 and b >= 0.93 else 'misses'} it)",
        f"  {estimator} {estimand}: (not a target) coverage of the mean truth over replications "
        f"{mean_truth:+.4g}: {k_mean}/{n} = {k_mean / n:.1%} [Wilson {am:.1%}, {bm:.1%}]; SD of the truth "
        f"between replications {float(np.std(truth, ddof=1)):.4g} (worlds differ)",
    ]


def naive_line(records, estimator: str = "diff-in-means", against: str = "") -> str:
    """The naive estimate's mean bias over its mean standard error (target >= 5x)."""
    r = _rows(records, estimator, "difference")
    if not len(r):
        return f"  {estimator}: no scored estimates"
    se = (r["upper"] - r["lower"]) / (2 * 1.959963984540054)
    bias = float((r["point"] - r["truth"]).mean())
    ratio = abs(bias) / float(se.mean())
    per_rep = ((r["point"] - r["truth"]).abs() / se >= 5).mean()
    return (f"  naive bias / se{against} = {bias:+.4g} / {se.mean():.4g} = {ratio:.1f}x: "
            f"{'PASS' if ratio >= 5 else 'FAIL'} (target: >= 5x); |error| >= 5 se in {per_rep:.0%} of replications")


def platform_scores(records, estimator: str = "aipw") -> list[str]:
    """The study-of-a-platform replications (``--platform K``, observational_platform.py): the spread
    of the estimate around the platform truth beside the interval's standard error, and a check of
    the simulated sampling: the SD of ``SATE - PATE_N`` over replications against its
    finite-population prediction ``sqrt(mean (1 - n/N) S_N^2 / n)``."""
    r = _rows(records, estimator, "difference")

    def per_rep(name: str):
        x = records[(records["estimator"] == name) & (records["metric"] == METRIC)]
        return x[["replication", "arm", "point"]].rename(columns={"point": name})

    r = r.merge(per_rep("truth:platform_fpc_variance"), on=["replication", "arm"]).merge(
        per_rep("truth:sample_minus_platform"), on=["replication", "arm"]).merge(
        per_rep("truth:sampling_variance"), on=["replication", "arm"])
    if not len(r):
        return [f"  {estimator}: no platform records (run with --platform K)"]
    half = ((r["upper"] - r["lower"]) / (2 * 1.959963984540054)).to_numpy(dtype=float)
    err = (r["point"] - r["truth"]).to_numpy(dtype=float)
    gap = r["truth:sample_minus_platform"].to_numpy(dtype=float)
    fpc = float(r["truth:platform_fpc_variance"].mean())
    return [
        f"  {estimator} difference: width check over {len(r)} replications: rms se "
        f"{math.sqrt(float(np.mean(half ** 2))):.4g} (mean {half.mean():.4g}); SD(estimate - platform truth) "
        f"{float(np.std(err, ddof=1)):.4g}; SD(estimate - sample truth) {float(np.std(err - gap, ddof=1)):.4g}",
        f"  sampling check: SD(sample truth - platform truth) over replications {float(np.std(gap, ddof=1)):.4g} "
        f"(mean {float(gap.mean()):+.3g}) against the finite-population prediction sqrt(mean (1 - n/N) S_N^2/n) "
        f"{math.sqrt(fpc):.4g}; sqrt(mean S^2/n) over the sample {math.sqrt(float(r['truth:sampling_variance'].mean())):.4g}"
        f" (the superpopulation gap; the platform truth is closer to it by the factor sqrt(1 - n/N))",
    ]


def selection_report(records) -> list[str]:
    """observational_selection's lines; with ``--platform K`` records, against both truths."""
    lines: list[str] = []
    platform = bool(len(_rows(records, "aipw:vs-sample", "difference")))
    if platform:  # "aipw" is scored against the platform truth, "aipw:vs-sample" against the sample's
        lines.append(coverage_line(records, "aipw", "difference", against=PLATFORM_TRUTH))
        lines += platform_scores(records, "aipw")
        lines.append(coverage_line(records, "aipw:vs-sample", "difference", against=STUDY_SAMPLE_TRUTH))
        lines += population_scores(records, "aipw:vs-sample", "difference")
        sample_against = STUDY_SAMPLE_TRUTH
    else:
        lines.append(coverage_line(records, "aipw", "difference"))
        lines += population_scores(records, "aipw", "difference")
        sample_against = SAMPLE_TRUTH
    if len(_rows(records, "aipw:sample", "difference")):
        lines.append(coverage_line(records, "aipw:sample", "difference", against=sample_against))
        lines += population_scores(records, "aipw:sample", "difference")[:1]
    if platform:
        lines.append(coverage_line(records, "diff-in-means", "difference", None, against=PLATFORM_TRUTH))
        lines.append(naive_line(records, against=" (platform truth)"))
        lines.append(coverage_line(records, "diff-in-means:vs-sample", "difference", None, against=STUDY_SAMPLE_TRUTH))
        lines.append(naive_line(records, "diff-in-means:vs-sample", " (sample truth)"))
    else:
        lines.append(coverage_line(records, "diff-in-means", "difference", None))
        lines.append(naive_line(records))
    return lines


def report(name: str, records) -> list[str]:
    lines = [f"{name}:"]
    if name == "observational_selection":
        lines += selection_report(records)
    elif name == "observational_hidden":
        lines.append(coverage_line(records, "iv-2sls", "late"))
        lines += population_scores(records, "iv-2sls", "late")
        if len(_rows(records, "iv-2sls:sample", "late")):
            lines.append(coverage_line(records, "iv-2sls:sample", "late"))
            lines += population_scores(records, "iv-2sls:sample", "late")[:1]
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
    p.add_argument("--platform", type=int, default=None, metavar="K",
                   help="observational_selection only: simulate a platform of K times the scenario's users and "
                        "analyse a random sample of the scenario's size; score against the platform's and the "
                        "sample's truth (observational_platform.py)")
    args = p.parse_args()
    if args.platform is not None and (args.platform < 2 or set(args.only or ANALYSES) != {"observational_selection"}):
        p.error("--platform K needs K >= 2 and --only observational_selection")
    from counterfeed.calibration import calibrate
    from counterfeed.core.executors import get_executor

    out: list[str] = []
    for name in args.only or list(ANALYSES):
        sc = load(name, args.users, args.days)
        t0 = time.perf_counter()
        replicate, where, platform = replicate_with_verdicts, f"observational-{name}", ""
        if args.platform:
            replicate = functools.partial(replicate_platform, platform=args.platform)
            where += f"-platform{args.platform}"
            platform = (f", a uniform sample of them from a platform of {args.platform * sc.population.users} "
                        f"(K = {args.platform}, n/N = {1 / args.platform:.3g})")
        with get_executor(args.executor, workers=args.workers, scheduler=args.scheduler) as ex:
            res = calibrate(sc, args.replications, executor=ex, out_dir=args.out / where,
                            fresh=args.fresh, quiet=False, replicate=replicate)
            workers = ex.workers
        wall = time.perf_counter() - t0
        head = (f"{name}: {res.completed} replications ({sc.population.users} users{platform}, "
                f"{sc.experiment.duration:g}-day experiment), {workers} workers, {wall:.0f} s; failed: {len(res.errors)}")
        print(head)
        lines = report(name, res.records)
        print("\n".join(lines), flush=True)
        out += [head, *lines[1:]]
    print("\nSummary\n" + "\n".join(out), flush=True)


if __name__ == "__main__":
    main()
