"""Fixtures: synthetic run directories that follow notes/RUNDIR.md, for the report tests.

The numbers are simulated here (seeded) with known per-arm effects, so the truth, the estimates and the
SRM check are all computed, never typed in.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

METRICS = ("clicks", "ctr")  # two metrics keep the figure count (and the test time) down
from _report_strings import HOSTILE  # noqa: E402

EFFECTS = {"clicks": 0.4, "ctr": 0.01}  # per non-control arm index k: k * effect


def make_run_dir(root: Path, *, arms: int = 2, pre_days: int = 0, segments: bool = True,
                 srm_flagged: bool = False, description: str = "Synthetic run for the report tests.",
                 posterior: bool = False, paths: bool = False, phases: bool = False,
                 none_truth: bool = False, users: int = 2000, days: int = 14, seed: int = 3) -> Path:
    rng = np.random.default_rng(seed)
    names = ["control"] + [f"treatment{k}" if arms > 2 else "treatment" for k in range(1, arms)]
    control = names[0]
    run = Path(root) / f"synthetic-{arms}arms"
    (run / "events" / "ab").mkdir(parents=True)

    # assignment: equal split, or skewed towards the control when an SRM should be flagged
    p = np.full(arms, 1 / arms)
    if srm_flagged:
        p = np.array([0.6] + [0.4 / (arms - 1)] * (arms - 1))
    assign = rng.choice(arms, size=users, p=p)
    segment = np.where(rng.random(users) < 0.3, "heavy", "light")
    base = {m: rng.gamma(2.0, 1.0, users) * (2.0 if m == "clicks" else 1.0) for m in METRICS}
    base["ctr"] = rng.beta(2, 20, users)

    def world_values(arm_idx: np.ndarray) -> dict[str, np.ndarray]:
        lift = np.where(segment == "heavy", 1.5, 0.8)
        return {m: base[m] + arm_idx * EFFECTS[m] * lift for m in METRICS}

    worlds = {"ab": (assign, world_values(assign))}
    for k, arm in enumerate(names):
        worlds[f"all-{arm}"] = (np.full(users, k), world_values(np.full(users, k)))
    rows = []
    for w, (a, vals) in worlds.items():
        df = pd.DataFrame({"world": w, "user": np.arange(users), "arm": [names[i] for i in a],
                           "segment": segment})
        for m in METRICS:
            df[m] = vals[m]
            df[f"pre_{m}"] = base[m]
        rows.append(df)
    outcomes = pd.concat(rows, ignore_index=True)
    outcomes.to_parquet(run / "outcomes.parquet")

    # truth from the counterfactual worlds
    truth = []
    for m in METRICS:
        c = worlds[f"all-{control}"][1][m]
        for k, arm in enumerate(names[1:], start=1):
            t = worlds[f"all-{arm}"][1][m]
            for seg in (None, "heavy", "light"):
                sel = np.ones(users, bool) if seg is None else segment == seg
                truth.append({"metric": m, "arm": arm, "control": control, "estimand": "difference",
                              "segment": seg, "value": float(t[sel].mean() - c[sel].mean())})
            truth.append({"metric": m, "arm": arm, "control": control, "estimand": "relative",
                          "segment": None, "value": float(t.mean() / c.mean() - 1)})
    truth_df = pd.DataFrame(truth)
    if none_truth:  # an estimand the simulator cannot know: NaN in truth.parquet, None in estimates
        truth_df["value"] = np.nan
    truth_df.to_parquet(run / "truth.parquet")

    # estimates: difference in means with a normal interval, in the A/B world
    ab = outcomes[outcomes.world == "ab"]
    estimates = []
    for m in METRICS:
        for arm in names[1:]:
            for seg in ([None, "heavy", "light"] if segments else [None]):
                sub = ab if seg is None else ab[ab.segment == seg]
                x, y = sub.loc[sub.arm == arm, m], sub.loc[sub.arm == control, m]
                d = float(x.mean() - y.mean())
                se = float(math.sqrt(x.var() / len(x) + y.var() / len(y)))
                t = truth_df[(truth_df.metric == m) & (truth_df.arm == arm) & (truth_df.estimand == "difference")
                             & (truth_df.segment.isna() if seg is None else truth_df.segment == seg)]
                tv = None if none_truth else float(t.value.iloc[0])
                diag = {"n_treatment": int(len(x)), "n_control": int(len(y)), "se": se}
                estimates.append({
                    "estimator": "diff-in-means", "metric": m, "arm": arm, "control": control,
                    "point": d, "lower": d - 1.96 * se, "upper": d + 1.96 * se, "level": 0.95,
                    "estimand": "difference", "segment": seg,
                    "p_value": float(2 * stats.norm.sf(abs(d / se))), "prob_better": None,
                    "diagnostics": diag, "truth": tv, "error": None if tv is None else d - tv,
                    "covered": None if tv is None else bool(d - 1.96 * se <= tv <= d + 1.96 * se)})
    if paths:  # the sequential estimator's monitoring path: one look per day
        for e in [e for e in estimates if e["segment"] is None]:
            d, se = e["point"], e["diagnostics"]["se"]
            path = [{"day": day, "point": d * (1 + 0.5 / day), "lower": d - 1.96 * se * math.sqrt(days / day),
                     "upper": d + 1.96 * se * math.sqrt(days / day)} for day in range(1, days + 1)]
            estimates.append({**e, "estimator": "sequential", "diagnostics": {"path": path}})
    if posterior:
        estimates.append({
            "estimator": "sem", "metric": "clicks", "arm": names[1], "control": control, "point": 0.21,
            "lower": 0.12, "upper": 0.3, "level": 0.95, "estimand": "indirect", "segment": None,
            "p_value": None, "prob_better": 0.999,
            "diagnostics": {"defined": ["indirect", "total"], "posterior": "posterior-sem.nc",
                            "warnings": ["R-hat > 1.01 for 1 parameter(s): y~m (1.020)"]},
            "truth": 0.2, "error": 0.01, "covered": True})
        _write_posterior(run / "posterior-sem.nc", rng)

    counts = {a: int((assign == i).sum()) for i, a in enumerate(names)}
    expected = {a: users / arms for a in names}
    chi2 = float(sum((counts[a] - expected[a]) ** 2 / expected[a] for a in names))
    pval = float(stats.chi2.sf(chi2, arms - 1))
    srm = {"chi2": chi2, "df": arms - 1, "p_value": pval, "flagged": bool(pval < 0.001),
           "observed": counts, "expected": expected}
    (run / "estimates.json").write_text(json.dumps({"level": 0.95, "srm": srm, "estimates": estimates}))
    frame = pd.DataFrame([{**e, "diagnostics": json.dumps(e["diagnostics"])} for e in estimates])
    frame.to_csv(run / "estimates.csv", index=False)

    # daily timeseries per world and arm
    ts = []
    for w, (a, vals) in worlds.items():
        for i, arm in enumerate(names):
            if not (a == i).any():
                continue
            for day in range(pre_days + days):
                lift = 0 if day < pre_days else i
                for m in METRICS:
                    level = base[m].mean() / days + lift * EFFECTS[m] / days
                    ts.append({"world": w, "arm": arm, "day": day, "metric": m,
                               "value": float(level * (1 + 0.1 * math.sin(day / 2)) + rng.normal(0, level * 0.03))})
    pd.DataFrame(ts).to_parquet(run / "timeseries.parquet")
    pd.DataFrame({"user": [0], "session": [0], "time": [0.1], "arm": [control], "impressions": [10],
                  "clicks": [1], "dwell": [3.0], "churned": [False]}).to_parquet(run / "events/ab/sessions.parquet")

    scenario = {"name": "synthetic", "description": description, "seed": seed, "level": 0.95,
                "population": {"users": users},
                "experiment": {"arms": {a: {"recommender": "random"} for a in names}, "control": control,
                               "split": {a: 1 / arms for a in names}, "duration": f"{days}d",
                               "pre_period": f"{pre_days}d"}}
    (run / "scenario.yaml").write_text(yaml.safe_dump(scenario, sort_keys=False))
    manifest = {"scenario": "synthetic", "seed": seed, "counterfeed_version": "0.1.0",
                "versions": {"python": "3.11", "numpy": np.__version__},
                "plugins": [{"name": "random", "kind": "recommender", "class": "RandomRecommender",
                             "plugin": "counterfeed.plugins.recommenders.random", "source": "builtin",
                             "version": "0.1.0"}],
                "timings": {"simulate": 1.25, "estimate": 0.5, "total": 2.0},
                "worlds": list(worlds), "arms": names, "control": control, "n_users": users,
                "created": "2025-01-02T03:04:05+00:00", "level": 0.95, "complete": True}
    if phases:
        manifest["phases"] = [{"phase": 1, "days": 7, "decision": "continue", "p_value": 0.2},
                              {"phase": 2, "days": 14, "decision": f"ship {names[1]}", "p_value": 0.001}]
    (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def _write_posterior(path: Path, rng: np.random.Generator) -> None:
    import arviz as az

    params = rng.normal([0.5, 0.4, 0.1], 0.05, size=(2, 200, 3))
    ab = params[..., 0] * params[..., 1]
    defined = np.stack([ab, ab + params[..., 2]], axis=-1)
    idata = az.from_dict(posterior={"params": params, "defined": defined},
                         coords={"param": ["m~x", "y~m", "y~x"], "defined": ["indirect", "total"]},
                         dims={"params": ["param"], "defined": ["defined"]})
    idata.to_netcdf(str(path))


@pytest.fixture(scope="session")
def rich_run(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """2 arms, a 7-day pre-period, segments, an SEM posterior, monitoring paths and phases."""
    from counterfeed.core.report import write_report

    run = make_run_dir(tmp_path_factory.mktemp("rich"), arms=2, pre_days=7, posterior=True,
                       paths=True, phases=True)
    return run, write_report(run)


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    """4 arms, an SRM, no segments, unknown (NaN) truth and a hostile description."""
    from counterfeed.core.report import write_report

    run = make_run_dir(tmp_path_factory.mktemp("plain"), arms=4, srm_flagged=True, segments=False,
                       none_truth=True, description=HOSTILE)
    return run, write_report(run)
