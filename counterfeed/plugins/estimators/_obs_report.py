"""The report section of the observational estimators (``counterfeed_report_sections``)."""

from __future__ import annotations

from typing import Any

from counterfeed.core.display import fmt

__all__ = ["observational_section"]


def _interval(e: Any) -> str:
    if e.diagnostics.get("ar_set") in ("two rays", "whole line"):  # saved as null bounds
        return f"{fmt(e.point)} (unbounded: {e.diagnostics['ar_set']})"
    return f"{fmt(e.point)} [{fmt(e.lower)}, {fmt(e.upper)}]"


def _naive(e: Any) -> str:
    """The naive difference with its unit and estimand where they differ from the estimate's."""
    whole = "naive" not in e.diagnostics
    n = e.diagnostics.get("naive") or e.diagnostics.get("naive_whole_period")
    if not isinstance(n, dict):
        return "-"
    text = f"{fmt(n.get('point'))} [{fmt(n.get('lower'))}, {fmt(n.get('upper'))}]"
    if whole:  # a panel estimate is per user-period; this is per user over the whole experiment
        return text + " (whole period per user, not per period)"
    return text + (" (all users: an ATE-style difference, not a LATE)" if e.estimand == "late" else "")


def _refutations(e: Any) -> str:
    refs = e.diagnostics.get("refutations")
    if not refs:
        return "-"
    return "; ".join(f"{r['refuter']}: {'passed' if r.get('passed') else 'failed' if r.get('passed') is False else '?'}"
                     for r in refs)


def observational_section(result: Any, report: Any, names: tuple[str, ...]) -> None:
    """A table of every estimate of the estimators ``names`` with the naive difference beside it, the
    truth and coverage, and the sensitivity verdicts and refutations as paragraphs."""
    ests = [e for e in result.estimates if e.estimator in names]
    if not ests:
        return
    sec = report.section("Observational estimates")
    sec.paragraph("Estimates from data that were not randomized, each beside the naive difference in means of "
                  "the same users (what ignoring the design says) and the simulator's true effect.")
    rows = []
    for e in ests:
        cov = "na" if e.covered is None else ("yes" if e.covered else "no")
        rows.append([(e.estimator, "code"), e.metric, e.arm, (e.estimand, "code"), (_interval(e), "num"),
                     (_naive(e), "num"), ("-" if e.truth is None else fmt(e.truth), "truth"),
                     (cov, cov), _refutations(e)])
    sec.table(["estimator", "metric", "arm", "estimand", f"estimate [{report.level:.0%}]", "naive", "truth",
               "covers", "refutations"], rows, small=True)
    verdicts = [f"{e.estimator}, {e.metric}, {e.arm}: {e.diagnostics['sensitivity']['message']}"
                for e in ests if isinstance(e.diagnostics.get("sensitivity"), dict)]
    if verdicts:
        robust = all(e.diagnostics["sensitivity"].get("verdict") == "robust"
                     for e in ests if isinstance(e.diagnostics.get("sensitivity"), dict))
        sec.heading("Sensitivity to unobserved confounding")
        sec.paragraph("Cinelli & Hazlett (2020) robustness values of the linear outcome regression on the same "
                      "adjustment set, benchmarked against the strongest observed covariate.",
                      "ok" if robust else "caution", verdicts)
    samples = [f"{e.estimator}, {e.metric}, {e.arm}: [{fmt(s['lower'])}, {fmt(s['upper'])}] (se {fmt(s['se'])}; the "
               f"covariates explain {fmt(100 * e.diagnostics.get('heterogeneity_r2', 0.0))}% of the pseudo-outcomes' "
               "variance)" for e in ests if isinstance(s := e.diagnostics.get("sample_interval"), dict)]
    if samples:
        sec.heading("Interval for the sample ATE")
        sec.paragraph("The interval above is for the population ATE (users drawn like these); the simulator's truth "
                      "is the mean effect over these users, for which the variance of the effects between users "
                      "that the covariates explain does not count (Imbens 2004). Conservative for the sample ATE.",
                      "ok", samples)
    ivs = [f"{e.estimator}, {e.metric}, {e.arm}: first-stage F = {fmt(e.diagnostics['first_stage_f'])}, complier "
           f"share {fmt(e.diagnostics.get('complier_share'))}; Anderson-Rubin set: {e.diagnostics.get('ar_set', '?')}"
           for e in ests if "first_stage_f" in e.diagnostics]
    if ivs:
        sec.heading("Instrument strength")
        sec.paragraph("The interval of an instrumental-variable estimate is the Anderson-Rubin set, valid however "
                      "weak the instrument; it is unbounded when the first-stage F is below the squared critical "
                      "value (3.84 at 95%).", "ok" if all("set: interval" in v for v in ivs) else "caution", ivs)
    warns = [f"{e.estimator}, {e.metric}: {w}" for e in ests for w in e.diagnostics.get("warnings", [])]
    if warns:
        sec.paragraph("Warnings", "warn", warns)
