"""The report section "Targeting" (``counterfeed_report_sections``): each rule learned from a CATE
estimate, deployed in its own world, against all-control, all-arm and the oracle rule, with its
off-policy value estimates (see :mod:`counterfeed.core.targeting`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from counterfeed.core.display import fmt
from counterfeed.core.hookspecs import hookimpl

__all__ = ["targeting_rows", "draw_values"]


def _ci(d: dict[str, Any] | None) -> str:
    if not d or "point" not in d:
        return "—"
    return f"{fmt(d['point'])} [{fmt(d['lower'])}, {fmt(d['upper'])}]"


def _mark(v: Any) -> tuple[str, str]:
    return ("yes", "yes") if v is True else (("no", "no") if v is False else ("—", "na"))


def _realised(ope: dict[str, Any]) -> list[tuple[str, str]]:
    """The "DR, these users" and "Covers" cells: not shown as an interval when its condition fails
    (``realised_valid`` false: matched users' outcomes differ in the rule's world, see the rule's warning)."""
    if ope.get("realised_valid") is False:
        m = ope.get("matched_identical")
        return [(f"not valid (matched_identical {fmt(m)})" if m is not None else "not valid", "na"), ("—", "na")]
    return [(_ci(ope.get("dr_realised")), "num"), _mark(ope.get("dr_realised_covers"))]


def targeting_rows(t: dict[str, Any]) -> list[list[Any]]:
    """Table rows: rule, treated share, true value, gains vs all-control/all-arm, regret, the
    expected gain from the conditional truth, IPW and DR values with influence-function intervals, the
    DR value with its design-based interval and whether that covers the true value."""
    rows = []
    for r in t.get("rules", []):
        ope = r.get("ope") or {}
        rows.append([(r["rule"], "code"), (f"{100 * r['treated_share']:.0f}%", "num"), (fmt(r["value"]), "truth"),
                     (fmt(r["gain_vs_control"], signed=True), "num"), (fmt(r["gain_vs_arm"], signed=True), "num"),
                     (fmt(r["regret"]), "num"), (fmt(r["expected_gain_vs_control"], signed=True), "num"),
                     (_ci(ope.get("ipw")), "num"), (_ci(ope.get("dr")), "num"), *_realised(ope)])
    return rows


def draw_values(path: Path, t: dict[str, Any]) -> None:
    """Bars: the true value of all-control, all-arm, each rule and the oracle; DR intervals as ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = t.get("rules", [])
    first = rules[0]
    names = [f"all-{t['control']}", f"all-{t['arm']}"] + [r["rule"] for r in rules]
    values = [first["all_control"], first["all_arm"]] + [r["value"] for r in rules]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.0))
    ax.bar(range(len(names)), values, color=["#999999", "#999999"] + ["#4c72b0"] * len(rules))
    for i, r in enumerate(rules, start=2):
        dr = (r.get("ope") or {}).get("dr")
        if dr:
            ax.errorbar([i], [dr["point"]], yerr=[[dr["point"] - dr["lower"]], [dr["upper"] - dr["point"]]],
                        fmt="o", color="black", capsize=4, label="DR estimate" if i == 2 else None)
    lo = min(values + [(r.get("ope") or {}).get("dr", {}).get("lower", values[0]) for r in rules])
    hi = max(values + [(r.get("ope") or {}).get("dr", {}).get("upper", values[0]) for r in rules])
    pad = 0.15 * (hi - lo) if hi > lo else 1.0
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel(f"{t['metric']} per user")
    if any((r.get("ope") or {}).get("dr") for r in rules):
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _oracle_caveat(t: dict[str, Any]) -> str:
    """The oracle's own noise: it treats by a truth estimated from R noise replications."""
    reps, share = t.get("oracle_replications"), t.get("oracle_uncertain_share")
    if not reps:
        return ""
    unsettled = "" if share is None else (f"; for {100 * share:.1f}% of the users the truth's Monte Carlo error "
                                          "cannot settle the oracle's decision")
    return (f" The oracle's truth is estimated from {reps} noise replications{unsettled}, so the oracle is not an "
            "upper bound: a negative regret is within its noise.")


@hookimpl
def counterfeed_report_sections(result, report):
    """"Targeting": the rules' true values, regret and off-policy estimates (when the run targeted)."""
    t = (getattr(result, "manifest", None) or {}).get("targeting")
    if not t or not t.get("rules"):
        return
    sec = report.section("Targeting")
    first = t["rules"][0]
    metric, arm, control = t["metric"], t["arm"], t["control"]
    ate = first["all_arm"] - first["all_control"]
    how = (f"above {fmt(t['threshold'])}" if t["rule"] == "threshold"
           else f"among the top {100 * (t['fraction'] or 0):.0f}% (and above {fmt(t['threshold'])})")
    sec.paragraph(
        f"Each rule gives {arm} to the users whose out-of-fold predicted effect on {metric} is {how} "
        f"(sign-flipped when lower is better) and {control} to the others, and is deployed in a world of its own. The true average "
        f"effect of {arm} for everyone is {fmt(ate, signed=True)} {metric} per user (all-{arm} "
        f"{fmt(first['all_arm'])} vs all-{control} {fmt(first['all_control'])}); the oracle rule (treat "
        f"iff the true conditional effect, from the noise replications, is an improvement) reaches "
        f"{fmt(first['oracle'])}." + _oracle_caveat(t))
    reps = t.get("oracle_replications")
    sec.table(["Rule", "Treated", "True value", f"vs all-{control}", f"vs all-{arm}",
               f"Regret vs oracle (R={reps})" if reps else "Regret vs oracle",
               "Expected gain", "IPW value", "DR value", "DR, these users", "Covers"], targeting_rows(t))
    for r in t["rules"]:
        for w in r.get("warnings") or []:
            sec.paragraph(w, kind="warn")
    sec.paragraph("True value: the metric's mean in the rule's world (same noise as the counterfactual "
                  "worlds). Expected gain: mean over users of 1{treated} x true conditional effect "
                  "(noise-averaged, interference ignored). IPW/DR: off-policy estimates from the A/B "
                  "world's data with cross-fitted outcome models on the covariates and "
                  f"{100 * t['level']:.0f}% influence-function intervals (for the value in a fresh "
                  "population of users); DR, these users: the same estimate with the design-based interval "
                  "for the realised value of these users (the true value; only the assignment is random), "
                  "which Covers scores; it needs matched_identical = 1 (no interference: frozen models), else it "
                  "is not valid and not scored. Both are honest only for rules made from out-of-fold predictions.",
                  kind="muted")
    sec.figure("targeting", f"True {metric} per user of all-{control}, all-{arm} and each rule's world (bars); "
               "the doubly robust estimate of each rule's value with its interval (black).", draw_values, t)
