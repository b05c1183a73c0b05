"""Coverage of the off-policy value intervals of learned targeting rules, and how often the learned
rule beats both single arms, over replications of scenarios/targeting.yaml.

Each replication runs the scenario under seed ``Keys(seed).derive_seed("replication", i)`` (as
``counterfeed calibrate`` does) and reads the manifest's ``targeting`` entries: whether the doubly
robust (and IPW) design-based 95% interval of each learned rule's value covers the rule's true
value (its world's mean: the realised value of these users, the estimand of that interval; see
:mod:`counterfeed.core.targeting`), the standardized errors ``(true - DR) / se`` (sd 1 for an
interval of the right width), the influence-function intervals' coverage of the same value, and
whether the rule's true value exceeds both all-control and all-treatment. Proportions are printed
with Wilson 95% intervals.

It also scores each CATE estimate against the per-user truth in every replication (the run's
``cate_scores``): the share of replications in which PEHE is at most 0.70 times the baseline of
predicting the average effect for everyone, both raw (against the R-replication conditional truth,
whose Monte Carlo error inflates both) and Monte Carlo-corrected (``pehe_ratio_mc``, see
:func:`counterfeed.analysis.cate_scores.truth_mc_error`), and the pooled per-user coverage of the
95% intervals, raw and Monte Carlo-corrected (``coverage_mc``), with Wilson intervals over users
(users of one replication are not independent, so a per-replication spread is printed too), and
the deconvolved coverage (``coverage_deconvolved``), the estimate of the coverage itself.

    python benchmarks/targeting_coverage.py --replications 100            # the acceptance check
    python benchmarks/targeting_coverage.py --replications 50 --out a.jsonl              # split a long run,
    python benchmarks/targeting_coverage.py --replications 50 --first 50 --out b.jsonl   # then
    python benchmarks/targeting_coverage.py --merge a.jsonl b.jsonl                      # summarise both
"""

from __future__ import annotations

import argparse
import json
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


def record(res) -> dict:
    """One replication's figures: per rule the coverage flags, beats-both and margins; per CATE estimate
    its scores (``cate_scores``)."""
    rules = {}
    for r in res.manifest["targeting"]["rules"]:
        if r["rule"] == "oracle":
            continue
        o = r["ope"]
        rules[r["rule"]] = {"dr_realised": bool(o["dr_realised_covers"]), "ipw_realised": bool(o["ipw_realised_covers"]),
                            "dr": bool(o["dr_covers"]), "ipw": bool(o["ipw_covers"]), "beats": bool(r["beats_both"]),
                            "gain": r["value"] - max(r["all_control"], r["all_arm"]),
                            "matched_identical": o["matched_identical"], "value": r["value"],
                            "dr_point": o["dr_realised"]["point"], "dr_se_design": o["dr_realised"]["se"],
                            "dr_se_if": o["dr"]["se"], "treated_share": r["treated_share"]}
    cate = {}
    for e in res.estimates:
        s = e.diagnostics.get("cate_scores") if e.estimand == "cate" else None
        if s:
            cate[e.estimator] = {k: s.get(k) for k in ("pehe", "pehe_baseline", "pehe_ratio", "pehe_mc",
                                                       "pehe_baseline_mc", "pehe_ratio_mc", "coverage", "coverage_mc",
                                                       "coverage_n", "mc_variance_share", "spearman",
                                                       "coverage_deconvolved", "error_variance_ratio",
                                                       "ite_coverage", "ite_coverage_n", "ite_interval_width",
                                                       "ite_coverage_mc", "ite_coverage_deconvolved",
                                                       "ite_error_variance_ratio", "ite_coverage_realised")}
            ind = e.diagnostics.get("individual_intervals")
            if ind:
                cate[e.estimator]["ite_diagnostics"] = {k: ind.get(k) for k in (
                    "mode", "unexplained_variance", "unexplained_variance_se", "identified_bounds", "floored_share",
                    "cells", "mean_width")}
            if e.user_effects is not None and "ite_lower" in e.user_effects and res.user_truth is not None:
                cate[e.estimator]["ite_groups"] = _groups(res, e)
    return {"seed": res.seed, "n_users": int(res.manifest["n_users"]), "rules": rules, "cate": cate}


def _groups(res, e) -> dict:
    """Per (segment, arm) of the A/B test: users, and the individual intervals' raw coverage of the
    conditional and of the realised truth (subgroup calibration, which the pooled rate can hide)."""
    ue = e.user_effects.set_index("user")
    ut = res.user_truth
    ut = ut[(ut["metric"] == e.metric) & (ut["arm"] == e.arm) & (ut["control"] == e.control)].set_index("user")
    o = res.outcomes[res.outcomes["world"] == "ab"].set_index("user")
    users = ue.index[np.isfinite(ue["ite_lower"].to_numpy(float))]
    lo, hi = ue.loc[users, "ite_lower"].to_numpy(float), ue.loc[users, "ite_upper"].to_numpy(float)
    out = {}
    for col in ("conditional", "realised"):
        tau = ut[col].reindex(users).to_numpy(float)
        cov = (lo <= tau) & (tau <= hi)
        for (seg, arm), idx in o.loc[users].groupby(["segment", "arm"]).indices.items():
            g = out.setdefault(f"{seg}/{arm}", {"n": int(len(idx))})
            g[col] = float(np.mean(cov[idx]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replications", type=int, default=100)
    ap.add_argument("--first", type=int, default=0, help="index of the first replication (to split a long run)")
    ap.add_argument("--out", type=Path, default=None, help="append one JSON line per replication here")
    ap.add_argument("--merge", type=Path, nargs="+", default=None,
                    help="summarise these --out files instead of running (replications counted once by seed)")
    ap.add_argument("--users", type=int, default=None, help="override population.users")
    ap.add_argument("--truth-replications", type=int, default=None, help="override truth.replications")
    ap.add_argument("--estimators", default=None, help="comma-separated CATE estimators (default: the scenario's)")
    ap.add_argument("--individual", default=None, choices=["none", "conformal", "covariates", "posterior", "bounds"],
                    help="override the CATE estimators' individual_intervals option")
    args = ap.parse_args()
    if args.merge:
        recs = {}
        for f in args.merge:
            for line in f.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    recs[r["seed"]] = r
        summary(list(recs.values()), {"files": [str(f) for f in args.merge]})
        return
    base = load_scenario(SCENARIO)
    over: dict = {}
    if args.users:
        over["population.users"] = args.users
    if args.truth_replications is not None:
        over["truth.replications"] = args.truth_replications
    if args.estimators or args.individual:
        keep = args.estimators.split(",") if args.estimators else [a.estimator for a in base.analysis]
        over["analysis"] = [{**a.model_dump(exclude_unset=True), **({"individual_intervals": args.individual}
                            if args.individual and a.estimator != "diff-in-means" else {})}
                            for a in base.analysis if a.estimator in keep or a.estimator == "diff-in-means"]
    keys = Keys(base.seed)
    recs: list[dict] = []
    t0 = time.perf_counter()
    for i in range(args.first, args.first + args.replications):
        sc = base.with_overrides({**over, "seed": keys.derive_seed("replication", i)})
        rec = record(run(sc, write=False))
        recs.append(rec)
        if args.out:
            with args.out.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")
        print(f"replication {i + 1} done ({time.perf_counter() - t0:.0f} s)", flush=True)
        if len(recs) % 10 == 0 or i + 1 == args.first + args.replications:
            summary(recs, over)


def _deconvolved(x: dict) -> float | None:
    """``coverage_deconvolved`` of one replication's scores; from ``pehe``, ``pehe_mc`` and
    ``mc_variance_share`` for records written before the score existed (the same formula:
    ``mean(se^2) = pehe^2 - pehe_mc^2``, ``mean(s^2) = mean(se^2) (1 - share) / share``)."""
    from scipy import stats

    if x.get("coverage_deconvolved") is not None:
        return x["coverage_deconvolved"]
    share = x.get("mc_variance_share")
    if not share or x.get("pehe_mc") is None:
        return None
    se2 = x["pehe"] ** 2 - x["pehe_mc"] ** 2
    ratio = x["pehe_mc"] ** 2 / (se2 * (1 - share) / share)
    return float(2 * stats.norm.cdf(1.959964 / np.sqrt(ratio)) - 1) if ratio > 0 else 1.0


def _line(name: str, label: str, k: int, n: int) -> str:
    lo, hi = wilson(k, n)
    return f"{name:14s} {label:62s} {k:6d}/{n:<6d} = {k / n:.3f}  Wilson 95% [{lo:.3f}, {hi:.3f}]"


def summary(recs: list[dict], over: dict) -> None:
    """Print the proportions so far with Wilson intervals."""
    sizes = sorted({r["n_users"] for r in recs})
    print(f"\n{len(recs)} replications of {SCENARIO.name} (users {sizes}) {over or ''}")
    for rule in sorted({k for r in recs for k in r["rules"]}):
        rs = [r["rules"][rule] for r in recs if rule in r["rules"]]
        for key, label in (("dr_realised", "rule value: DR design-based 95% interval covers the true value"),
                           ("ipw_realised", "rule value: IPW design-based 95% interval covers it"),
                           ("dr", "rule value: DR influence-function interval covers it"),
                           ("ipw", "rule value: IPW influence-function interval covers it"),
                           ("beats", "rule's true value above all-control and all-treatment")):
            print(_line(rule, label, sum(x[key] for x in rs), len(rs)))
        z = np.array([(x["value"] - x["dr_point"]) / x["dr_se_design"] for x in rs])
        zi = np.array([(x["value"] - x["dr_point"]) / x["dr_se_if"] for x in rs])
        if z.size > 1:  # 1 for an interval of the right width; its sd over k replications is ~1/sqrt(2k)
            print(f"{rule:14s} (true - DR) / se over replications: design-based mean {z.mean():+.2f} sd "
                  f"{z.std(ddof=1):.2f}; influence-function sd {zi.std(ddof=1):.2f}")
        g = np.array([x["gain"] for x in rs])
        m = [x["matched_identical"] for x in rs if x["matched_identical"] is not None]
        print(f"{rule:14s} true value minus the better single arm: mean {g.mean():.3f}, median {np.median(g):.3f}, "
              f"min {g.min():.3f} (clicks per user); matched users identical in the rule's world: "
              f"min share {min(m) if m else float('nan'):.3f}")
    for est in sorted({k for r in recs for k in r["cate"]}):
        d = [r["cate"][est] for r in recs if est in r["cate"]]
        for key, label in (("pehe_ratio", "PEHE <= 0.70 x baseline (raw conditional truth)"),
                           ("pehe_ratio_mc", "PEHE <= 0.70 x baseline (Monte Carlo-corrected)")):
            v = np.array([x[key] for x in d if x[key] is not None], dtype=float)
            if v.size:
                print(_line(est, label, int((v <= 0.70).sum()), v.size)
                      + f"  ratio mean {v.mean():.3f} median {np.median(v):.3f}")
        for key, label in (("coverage", "per-user 95% intervals cover (raw conditional truth)"),
                           ("coverage_mc", "per-user 95% intervals cover (Monte Carlo-corrected)")):
            ok = [(x[key], x["coverage_n"]) for x in d if x[key] is not None]
            if ok:
                k = int(round(sum(c * n for c, n in ok)))
                n = int(sum(n for _, n in ok))
                per = np.array([c for c, _ in ok])
                print(_line(est, label, k, n) + f"  per replication {per.mean():.3f} "
                      f"[{np.quantile(per, 0.05):.3f}, {np.quantile(per, 0.95):.3f}]")
        share = [x["mc_variance_share"] for x in d if x["mc_variance_share"] is not None]
        if share:
            print(f"{est:14s} share of the widened interval's variance that is the truth's Monte Carlo error: "
                  f"{np.mean(share):.3f}")
        dec = np.array([v for v in (_deconvolved(x) for x in d) if v is not None])
        if dec.size:
            print(f"{est:14s} per-user 95% coverage, deconvolved (cate_scores.truth_mc_error): per replication "
                  f"mean {dec.mean():.3f} median {np.median(dec):.3f} [{np.quantile(dec, 0.05):.3f}, "
                  f"{np.quantile(dec, 0.95):.3f}]")
        _individual_lines(est, d)
    print(flush=True)


def _individual_lines(est: str, d: list[dict]) -> None:
    """The individual conditional effect intervals' coverage (``ite_*`` scores) over replications."""
    ok = [(x["ite_coverage"], x["ite_coverage_n"]) for x in d if x.get("ite_coverage") is not None]
    if not ok:
        return
    k, n = int(round(sum(c * m for c, m in ok))), int(sum(m for _, m in ok))
    per = np.array([c for c, _ in ok])
    print(_line(est, "INDIVIDUAL intervals cover (raw conditional truth)", k, n)
          + f"  per replication {per.mean():.3f} [{np.quantile(per, 0.05):.3f}, {np.quantile(per, 0.95):.3f}]")
    dec = np.array([x["ite_coverage_deconvolved"] for x in d if x.get("ite_coverage_deconvolved") is not None])
    if dec.size:
        lo, hi = wilson(int((np.abs(dec - 0.935) <= 0.035).sum()), dec.size)
        print(f"{est:14s} INDIVIDUAL intervals, deconvolved coverage: per replication mean {dec.mean():.3f} median "
              f"{np.median(dec):.3f} sd {dec.std(ddof=1) if dec.size > 1 else float('nan'):.3f} "
              f"[{np.quantile(dec, 0.05):.3f}, {np.quantile(dec, 0.95):.3f}]; in 0.90-0.97: "
              f"{int((np.abs(dec - 0.935) <= 0.035).sum())}/{dec.size} Wilson [{lo:.3f}, {hi:.3f}]")
    real = np.array([x["ite_coverage_realised"] for x in d if x.get("ite_coverage_realised") is not None])
    if real.size:
        print(f"{est:14s} INDIVIDUAL intervals cover the REALISED effect: per replication mean {real.mean():.3f} "
              f"[{np.quantile(real, 0.05):.3f}, {np.quantile(real, 0.95):.3f}] (the conformal mode guarantees >= 0.95 "
              "on average)")
    groups = [x["ite_groups"] for x in d if x.get("ite_groups")]
    for g in sorted({k for x in groups for k in x}):
        rows = [x[g] for x in groups if g in x]
        print(f"{est:14s} INDIVIDUAL intervals, {g:22s} n/replication {np.mean([r['n'] for r in rows]):6.0f}: cover "
              f"conditional {np.mean([r['conditional'] for r in rows]):.3f}, realised "
              f"{np.mean([r['realised'] for r in rows]):.3f} (raw, mean over replications)")
    w = [x["ite_interval_width"] for x in d if x.get("ite_interval_width") is not None]
    print(f"{est:14s} INDIVIDUAL intervals: mean width {np.mean(w):.2f}")
    diag = [x["ite_diagnostics"] for x in d if x.get("ite_diagnostics") and x["ite_diagnostics"].get("unexplained_variance")
            is not None]
    if diag:
        u = np.array([g["unexplained_variance"] for g in diag])
        s = np.array([g["unexplained_variance_se"] for g in diag])
        print(f"{est:14s} INDIVIDUAL intervals: mean width {np.mean(w):.2f}; unexplained effect variance mean "
              f"{u.mean():.2f} (sd over replications {u.std(ddof=1) if u.size > 1 else float('nan'):.2f}, mean se "
              f"{s.mean():.2f}); floored share mean {np.mean([g['floored_share'] for g in diag]):.3f}")
        b = np.array([g["identified_bounds"] for g in diag if g.get("identified_bounds")])
        if b.size:
            print(f"{est:14s} INDIVIDUAL intervals: identified set of the unexplained variance without the assumption "
                  f"(Frechet-Hoeffding): mean [{b[:, 0].mean():.2f}, {b[:, 1].mean():.2f}]")


if __name__ == "__main__":
    main()
