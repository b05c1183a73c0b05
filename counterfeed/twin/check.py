"""``twin check``: simulated vs logged distributions on the users held out of the fit.

The twin (point fit) is simulated under the logging policy over the log's horizon; each aspect is
compared with the held-out users' log by a two-sample test (scipy) and a distance:

| aspect | test | distance (tolerance) |
|---|---|---|
| CTR by position | chi-square, sum over positions of the 2x2 tables | max relative CTR difference (0.15) |
| clicks per session | chi-square on counts 0, 1, 2, 3+ | total variation (0.05) |
| sessions per user | Kolmogorov-Smirnov | Wasserstein / logged mean (0.10) |
| inter-visit times | Kolmogorov-Smirnov | Wasserstein / logged mean (0.10) |
| churn curve (last visit time) | Kolmogorov-Smirnov | KS statistic (0.10) |
| item popularity (clicks per item) | chi-square on items | total variation of click shares beyond its sampling noise (0.10) |

Verdict ``mismatch`` when the test rejects at 0.001 **and** the distance exceeds its tolerance (with
many users any difference is significant; with few, only large ones are); ``ok`` otherwise. Tests treat
impressions and sessions as independent, so their p-values are optimistic under within-user correlation:
the distance condition guards against that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from counterfeed.errors import DataError
from counterfeed.twin.data import TwinLog, load_twin_log
from counterfeed.twin.store import read_meta

__all__ = ["check_twin", "compare", "TOLERANCE", "ALPHA"]

ALPHA = 0.001
#: what ``logged_mean`` / ``twin_mean`` of each aspect are (the same quantity on both sides)
SUMMARY = {"ctr_by_position": "CTR", "clicks_per_session": "clicks per session (3+ as 3)",
           "sessions_per_user": "sessions per user", "inter_visit_times": "days between visits",
           "churn_curve": "last visit / horizon", "item_popularity": "click share of the top 10% of items"}
TOLERANCE = {"ctr_by_position": 0.15, "clicks_per_session": 0.05, "sessions_per_user": 0.10,
             "inter_visit_times": 0.10, "churn_curve": 0.10, "item_popularity": 0.10}


def _summaries(log: TwinLog, catalog_ids: list[Any], raw_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Summaries of a log; ``raw_ids[code]`` is the catalog id of the log's item code."""
    import pandas as pd

    k = log.n_positions
    su, st = log.session_user, log.session_time
    same = su[1:] == su[:-1]
    last = np.full(log.n_users, -np.inf)
    np.maximum.at(last, su, st)
    return {"pos_n": np.bincount(log.position, minlength=k), "pos_c": np.bincount(log.position, weights=log.click,
            minlength=k), "clicks_per_session": np.minimum(log.session_clicks(), 3).astype(int),
            "sessions_per_user": np.bincount(su, minlength=log.n_users)[np.unique(su)],
            "gaps": (st[1:] - st[:-1])[same], "last_visit": last[np.unique(su)] / max(log.horizon, 1e-9),
            "item_clicks": pd.Series(log.click).groupby(raw_ids[log.item]).sum().reindex(
                pd.Index(catalog_ids), fill_value=0.0).to_numpy()}


def compare(logged: dict[str, np.ndarray], twin: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The per-aspect tests, distances and verdicts (see module)."""
    from scipy import stats

    out = []

    def add(aspect, statistic, value, p, distance, lm, tm):
        bad = p is not None and p < ALPHA and distance > TOLERANCE[aspect]
        out.append({"aspect": aspect, "statistic": statistic, "value": float(value), "p_value": p,
                    "distance": float(distance), "tolerance": TOLERANCE[aspect],
                    "verdict": "mismatch" if bad else "ok", "summary": SUMMARY[aspect],
                    "logged_mean": lm, "twin_mean": tm})

    k = min(logged["pos_n"].size, twin["pos_n"].size)
    chi, df = 0.0, 0
    rel = 0.0
    for j in range(k):
        tab = np.array([[logged["pos_c"][j], logged["pos_n"][j] - logged["pos_c"][j]],
                        [twin["pos_c"][j], twin["pos_n"][j] - twin["pos_c"][j]]])
        if tab.sum(0).min() > 0 and tab.sum(1).min() > 0:
            chi += stats.chi2_contingency(tab, correction=False)[0]
            df += 1
            cl, ct = tab[0, 0] / tab[0].sum(), tab[1, 0] / tab[1].sum()
            rel = max(rel, abs(ct - cl) / max(cl, 1e-9))
    add("ctr_by_position", "chi2", chi, float(stats.chi2.sf(chi, max(df, 1))), rel,
        float(logged["pos_c"].sum() / logged["pos_n"].sum()), float(twin["pos_c"].sum() / twin["pos_n"].sum()))
    a = np.bincount(logged["clicks_per_session"], minlength=4)[:4]
    b = np.bincount(twin["clicks_per_session"], minlength=4)[:4]
    keep = (a + b) > 0
    tab = np.vstack([a[keep], b[keep]])
    chi, p = (stats.chi2_contingency(tab)[:2] if keep.sum() > 1 else (0.0, 1.0))
    tv = 0.5 * np.abs(a / a.sum() - b / b.sum()).sum()
    add("clicks_per_session", "chi2", chi, float(p), tv, float(logged["clicks_per_session"].mean()),
        float(twin["clicks_per_session"].mean()))
    for aspect, key in (("sessions_per_user", "sessions_per_user"), ("inter_visit_times", "gaps")):
        x, y = logged[key].astype(float), twin[key].astype(float)
        if x.size < 2 or y.size < 2:
            add(aspect, "ks", 0.0, None, 0.0, None, None)
            continue
        ks = stats.ks_2samp(x, y)
        w = stats.wasserstein_distance(x, y) / max(x.mean(), 1e-9)
        add(aspect, "ks", ks.statistic, float(ks.pvalue), w, float(x.mean()), float(y.mean()))
    ks = stats.ks_2samp(logged["last_visit"], twin["last_visit"])
    add("churn_curve", "ks", ks.statistic, float(ks.pvalue), ks.statistic,
        float(np.mean(logged["last_visit"])), float(np.mean(twin["last_visit"])))
    a, b = logged["item_clicks"], twin["item_clicks"][: logged["item_clicks"].size]
    keep = (a + b) >= 10
    if keep.sum() > 1:
        tab = np.vstack([a[keep], b[keep]])
        chi, p = stats.chi2_contingency(tab)[:2]
    else:
        chi, p = 0.0, 1.0
    tv = 0.5 * np.abs(a / max(a.sum(), 1) - b / max(b.sum(), 1)).sum()
    add("item_popularity", "chi2", chi, float(p), max(0.0, tv - _noise_tv(a, b)), _top_share(a), _top_share(b))
    return out


def _top_share(clicks: np.ndarray) -> float | None:
    """Share of the clicks on the top 10% of items (at least one): comparable across log sizes."""
    if clicks.sum() <= 0:
        return None
    top = max(1, int(np.ceil(0.1 * clicks.size)))
    return float(np.sort(clicks)[::-1][:top].sum() / clicks.sum())


def _noise_tv(a: np.ndarray, b: np.ndarray, draws: int = 20) -> float:
    """Expected total variation between two multinomial samples of these sizes from the pooled shares
    (parametric bootstrap): the part of the item-popularity distance that is sampling noise."""
    rng = np.random.default_rng(0)
    pooled = (a + b) / max((a + b).sum(), 1)
    na, nb = int(round(a.sum())), int(round(b.sum()))
    if na == 0 or nb == 0:
        return 0.0
    x, y = rng.multinomial(na, pooled, size=draws) / na, rng.multinomial(nb, pooled, size=draws) / nb
    return float(0.5 * np.abs(x - y).sum(1).mean())


def _simulated(path: str, users: int, seed: int, logging: dict[str, Any] | None = None) -> TwinLog:
    import pandas as pd

    from counterfeed.twin.data import twin_log_from_frame
    from counterfeed.twin.evaluate import logging_policy, simulate_worlds, twin_scenario

    meta = read_meta(path)
    logging = logging_policy(path, meta, logging)
    # a scenario needs two arms; only the world where everyone gets the logging policy is simulated
    arms = {"logging": dict(logging), "copy": dict(logging)}
    sc = twin_scenario(path, 0, users, arms, seed=seed, metrics=["impressions"])
    imp = simulate_worlds(sc, ["all-logging"])["all-logging"].events.impressions
    df = pd.DataFrame(imp.to_dict()).drop(columns=["arm"], errors="ignore")
    return twin_log_from_frame(df, source="<twin>", horizon=float(meta["horizon"]))


def _same_log(meta: dict[str, Any], log: TwinLog, log_path: str) -> None:
    """The log must be the one the twin was fitted on: its held-out users are looked up in it (tester17
    M11). Compared by size (impressions, users, items), so a copy of the log elsewhere still checks."""
    got = {"impressions": len(log), "users": log.n_users, "items": log.n_items}
    want = {"impressions": meta.get("n_impressions"), "users": meta.get("n_users"), "items": meta.get("n_items")}
    diff = [f"{k} {got[k]} (fitted: {want[k]})" for k in got if want[k] is not None and got[k] != want[k]]
    if diff:
        raise DataError(f"{log_path}: not the log the twin was fitted on ({meta.get('source')}): it has "
                        f"{', '.join(diff)}; 'twin check' compares the twin with the users it held out of "
                        "that log (the same file, --world, --columns and --time-unit)")


def check_twin(path: str, log_path: str, *, columns: str | None = None, time_unit: str = "days",
               world: str | None = None, users: int | None = None, seed: int = 0, figures: str | None = None,
               say=lambda msg: None, logging: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fidelity report (JSON-ready dict); writes ``fidelity.png`` under ``figures`` when given.

    ``logging``: the logging policy to simulate, when the twin does not know it (a plain file's twin).

    Raises
    ------
    DataError
        The log is not the one the twin was fitted on, the twin has no held-out users, or the logging
        policy is unknown.
    """
    meta = read_meta(path)
    log = load_twin_log(log_path, columns, time_unit=time_unit, world=world)
    _same_log(meta, log, log_path)
    held = set(meta["heldout_users"])
    if not held:
        why = ("it was fitted with --holdout 0" if not meta.get("settings", {}).get("holdout")
               else f"its log had too few users to hold any out ({meta.get('n_train_users')} fitted; "
                    "holding out needs at least 3)")
        raise DataError(f"{path}: the twin has no held-out users ({why}); nothing to check on")
    codes = np.flatnonzero([u in held for u in log.user_ids.tolist()])
    if codes.size < 2:
        raise DataError(f"{log_path}: fewer than 2 of the twin's held-out users are in this log")
    from counterfeed.twin.evaluate import logging_policy

    logging = logging_policy(path, meta, logging)
    logged = log.select_users(codes)
    n_sim = int(users or max(5 * codes.size, 500))
    say(f"simulating {n_sim} twin users under the logging policy")
    sim = _simulated(path, n_sim, seed, logging)
    ids = meta["item_ids"]
    a = _summaries(logged, ids, np.asarray(logged.item_ids, dtype=object))
    b = _summaries(sim, ids, np.asarray([ids[int(c)] for c in sim.item_ids], dtype=object))
    aspects = compare(a, b)
    if figures:
        _figures(Path(figures), a, b, aspects)
    return {"twin": str(path), "log": str(log_path), "heldout_users": int(codes.size), "simulated_users": n_sim,
            "aspects": aspects, "alpha": ALPHA}


def _figures(folder: Path, a: dict[str, np.ndarray], b: dict[str, np.ndarray], aspects) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    verdict = {x["aspect"]: x["verdict"] for x in aspects}
    fig, ax = plt.subplots(2, 3, figsize=(13, 7))
    k = min(a["pos_n"].size, b["pos_n"].size)
    for s, lab in ((a, "logged (held-out)"), (b, "twin")):
        ax[0, 0].plot(np.arange(k), s["pos_c"][:k] / np.maximum(s["pos_n"][:k], 1), "o-", label=lab)
    ax[0, 0].set(title=f"CTR by position ({verdict['ctr_by_position']})", xlabel="position")
    ax[0, 0].legend()
    w = 0.4
    for off, s in ((-w / 2, a), (w / 2, b)):
        c = np.bincount(s["clicks_per_session"], minlength=4)[:4]
        ax[0, 1].bar(np.arange(4) + off, c / c.sum(), width=w)
    ax[0, 1].set(title=f"clicks per session ({verdict['clicks_per_session']})", xticks=range(4),
                 xticklabels=["0", "1", "2", "3+"])
    for i, (key, name) in enumerate((("sessions_per_user", "sessions per user"), ("gaps", "inter-visit days"),
                                     ("last_visit", "churn curve: last visit / horizon"))):
        axis = ax[0, 2] if i == 0 else ax[1, i - 1]
        for s in (a, b):
            x = np.sort(s[key])
            axis.step(x, np.arange(1, x.size + 1) / max(x.size, 1), where="post")
        aspect = {"sessions_per_user": "sessions_per_user", "gaps": "inter_visit_times",
                  "last_visit": "churn_curve"}[key]
        axis.set(title=f"{name} ({verdict[aspect]})", ylabel="CDF")
    for s in (a, b):
        share = np.sort(s["item_clicks"])[::-1] / max(s["item_clicks"].sum(), 1)
        ax[1, 2].plot(share)
    ax[1, 2].set(title=f"item popularity ({verdict['item_popularity']})", xlabel="item rank", ylabel="click share",
                 yscale="log")
    fig.tight_layout()
    fig.savefig(folder / "fidelity.png", dpi=90)
    plt.close(fig)
