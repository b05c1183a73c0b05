"""The report sections every run has, written by the core (plugins add theirs through a hook).

:func:`before_plugins` writes the headline, the run, the sample-ratio check, estimates vs truth, the
interference decomposition, metrics over time and diagnostics; :func:`after_plugins` writes phases,
run details and the file list. They read a :class:`RunView` of a :class:`RunResult` and know no
estimator by name: a diagnostic that holds a series of records is summarized here and drawn by the
section of the plugin that produced it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from counterfeed.core import figures
from counterfeed.core._report_draw import FigureJobs, figure_path
from counterfeed.core._report_render import _KV, _Doc, _Figure, _Links, _Para, _Table
from counterfeed.core.display import (estimator_label, fmt, fmt_p, level_text, levels_differ, num,
                                      repeated_estimators)
from counterfeed.core.experiment import AB_WORLD, world_arm
from counterfeed.core.findings import ADDITIVE, Assessed, assess, confounded_warning, headline, mechanism_of, reports_naive
from counterfeed.core.results import RunResult
from counterfeed.core.scenario import format_duration

__all__ = ["RunView", "before_plugins", "after_plugins", "figure_path"]


class RunView:
    """A RunResult with what the sections share: arms, control, level, colours, the scored estimates,
    and the queue of the report's figures (drawn when the sections are written)."""

    def __init__(self, result: RunResult, directory: Path, figdir: Path, jobs: FigureJobs | None = None):
        self.result, self.dir, self.figdir = result, directory, figdir
        self.jobs = jobs if jobs is not None else FigureJobs(figdir)
        self.manifest, self.scenario = result.manifest, result.scenario
        self.estimates = result.estimates
        self.level = num(self.manifest.get("level")) or self.scenario.level
        #: the estimates' levels as text ("95%", or "80% and 95%" when analyses set their own)
        self.levels = level_text((e.level for e in self.estimates), self.level)
        self.mixed_levels = levels_differ((e.level for e in self.estimates), self.level)
        #: estimators that several analysis entries ran: their rows name the entry (:meth:`label`)
        self.repeated = repeated_estimators((e.estimator, e.analysis) for e in self.estimates)
        self.arms = [str(a) for a in self.manifest.get("arms") or self.scenario.arms]
        self.control = str(self.manifest.get("control") or self.scenario.control)
        self.name = str(self.manifest.get("scenario") or self.scenario.name or directory.name)
        self.colors = figures.arm_colors(self.arms, self.control)
        self.assessed: list[Assessed] = assess(result)
        truth = result.truth
        self.truth = truth if {"metric", "arm", "estimand", "value"} <= set(truth.columns) else None
        names = [e.metric for e in self.estimates]
        if self.truth is not None:
            names += [str(m) for m in self.truth["metric"]]
        self.metrics = list(dict.fromkeys(names))

    def label(self, e: Any) -> str:
        """The estimator of estimate ``e`` as the report's tables name it (core.display.estimator_label)."""
        return estimator_label(e.estimator, e.analysis, self.repeated)


def before_plugins(doc: _Doc, run: RunView) -> None:
    _header(doc, run)
    _srm(doc, run)
    _estimates(doc, run)
    _interference(doc, run)
    _timeseries(doc, run)
    _diagnostics(doc, run)


def after_plugins(doc: _Doc, run: RunView) -> None:
    _phases(doc, run)
    _details(doc, run)
    _files(doc, run)


# -- small helpers ----------------------------------------------------------------------------------
def _p_text(x: Any) -> str:
    text = fmt_p(x)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _compact(value: Any, limit: int | None = 160) -> str:
    if isinstance(value, float):
        text = fmt(value)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        text = f"[{len(value)} records]"  # a series (e.g. a path over time): its plugin's section draws it
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str, separators=(", ", ": "))
    else:
        text = str(value)
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


# -- headline and run ---------------------------------------------------------------------------------
def _header(doc: _Doc, run: RunView) -> None:
    sc, m = run.scenario, run.manifest
    exp = sc.experiment
    summary = headline(run.result, run.assessed)
    if len(summary) == 1:
        doc.add(_Para(summary[0], "lead"))
    elif summary:
        doc.add(_Para("What this run shows:", "lead", summary))
    doc.h(2, "Run")
    if (sc.description or "").strip():
        doc.add(_Para(sc.description.strip()))
    mech = mechanism_of(sc)
    split = (exp.split or {}) if mech == "randomized" else {}  # a mechanism plans no split
    arms = ", ".join(a + (f" {num(split.get(a)):.0%}" if num(split.get(a)) is not None else "")
                     + (" (control)" if a == run.control and a != "control" else "") for a in run.arms)
    duration = format_duration(exp.duration)
    if exp.pre_period > 0:
        duration += f" after a {format_duration(exp.pre_period)} pre-period"
    users = num(m.get("n_users")) or sc.population.users
    timings = m.get("timings") or {}
    total = num(timings.get("total")) or num(timings.get("total_s"))
    rows = [["Scenario", run.name], ["Seed", str(m.get("seed", sc.seed))], ["Users", f"{int(users):,}"],
            ["Arms and split", arms] if mech == "randomized" else
            ["Arms and assignment", f"{arms}; assigned by mechanism '{mech}' (no planned split)"], ["Duration", duration], ["Interval level", run.levels],
            ["Created", str(m.get("created", "—"))],
            ["counterfeed version", str(m.get("counterfeed_version", "—"))]]
    if total is not None:
        rows.append(["Run time", f"{total:.1f} s"])
    doc.add(_KV([(str(k), str(v)) for k, v in rows]))
    notes = [str(n) for n in m.get("notes") or []]
    if notes:  # valid settings that are likely not what was meant (validate and run printed them)
        doc.add(_Para(f"{len(notes)} note(s) on the scenario:", "caution", notes))


def _srm(doc: _Doc, run: RunView) -> None:
    doc.h(2, "Sample ratio mismatch")
    srm = run.result.srm
    if not srm:
        doc.add(_Para("No sample-ratio check in this run.", "muted"))
        return
    chi2 = srm.get("chi2", srm.get("statistic"))
    stat = f"chi-square = {fmt(chi2)} on {srm.get('df', '—')} df, {_p_text(srm.get('p_value'))}"
    if srm.get("flagged"):
        doc.add(_Para(f"Sample ratio mismatch: the arms' sizes differ from the planned split more than "
                      f"chance allows ({stat}). Check assignment and logging before trusting any "
                      f"estimate below.", "warn"))
    else:
        planned = "the planned split" if mechanism_of(run.scenario) == "randomized" else \
            "the sizes the assignment mechanism's own probabilities predict"
        doc.add(_Para(f"Arm sizes match {planned} ({stat}).", "ok"))
    obs, exp = srm.get("observed") or {}, srm.get("expected") or {}
    rows = []
    for arm in list(dict.fromkeys(list(obs) + list(exp))):
        o, x = num(obs.get(arm)), num(exp.get(arm))
        ratio = f"{o / x:.3f}" if o is not None and x else "—"
        rows.append([arm, (fmt(o), "num"), (fmt(x), "num"), (ratio, "num")])
    if rows:
        doc.add(_Table(["Arm", "Observed users", "Expected users", "Observed / expected"], rows))


# -- estimates vs truth ---------------------------------------------------------------------------------
def _covered_cell(covered: bool | None) -> tuple[str, str]:
    return ("✓", "yes") if covered is True else ("✗", "no") if covered is False else ("—", "na")


def _est_row(e: Any, with_segment: bool = False, mixed_levels: bool = False, label: str | None = None) -> list[Any]:
    pv = (_p_text(e.p_value) if e.p_value is not None else
          f"P(better) = {e.prob_better:.3f}" if e.prob_better is not None else "—")
    level = f" ({level_text([e.level], e.level)})" if mixed_levels else ""  # analyses with levels of their own
    return [label or e.estimator, e.arm] + ([e.segment] if with_segment else []) + [
        e.estimand + (" NOT IDENTIFIED" if (e.diagnostics or {}).get("identified") is False else ""),  # as the CLI's
        (fmt(e.point), "num"), (f"{_bound(e.lower)} to {_bound(e.upper)}{level}", "num"),
        pv, (fmt(e.truth), "truth"), (fmt(e.error, signed=True), "num"), _covered_cell(e.covered)]


def _bound(x: Any) -> str:
    """An interval bound: its number, "−∞"/"∞" for an unbounded side, "—" for a missing one."""
    v = num(x)
    if v is None and isinstance(x, float) and math.isinf(x):
        return "−∞" if x < 0 else "∞"
    return fmt(v)


def _forest_rows(ests: list[Any], with_segment: bool, run: RunView) -> list[tuple[str, list[dict]]]:
    panels: dict[str, list[dict]] = {}
    for e in ests:
        label = f"{run.label(e)} · {e.arm}" + (f" · {e.segment}" if with_segment else "")
        panels.setdefault(e.estimand, []).append(
            {"label": label, "arm": e.arm, "point": num(e.point), "lower": num(e.lower),
             "upper": num(e.upper), "truth": e.truth})
    return list(panels.items())


def _estimates(doc: _Doc, run: RunView) -> None:
    doc.h(2, "Estimates vs truth")
    if not run.estimates:
        doc.add(_Para("This run has no estimates.", "muted"))
    else:
        doc.add(_Para("Each row is one estimator's effect of an arm against the control, with its "
                      f"{run.levels} interval" + (" (its analysis's level)" if run.mixed_levels else "") + ". The diamond is the true effect, computed from the "
                      "counterfactual worlds in which every user got one arm."))
    head = ["Estimator", "Arm", "Estimand", "Point", "Interval", "p / P(better)", "Truth", "Error",
            "Covered"]
    for metric in run.metrics:
        ests = [e for e in run.estimates if e.metric == metric]
        if not ests:
            continue
        doc.h(3, metric)
        overall = [e for e in ests if e.segment is None]
        if overall:
            rows = _forest_rows(overall, False, run)
            path = run.jobs.add(f"estimates-{metric}", figures.forest, f"{metric}: effect vs control", rows,
                                run.colors, run.levels, weight=len(rows))
            doc.add(_Figure(path, f"{metric}: estimates (dot, interval) and the true effect (diamond)."),
                    _Table(head, [_est_row(e, False, run.mixed_levels, run.label(e)) for e in overall]))
        segs = [e for e in ests if e.segment is not None]
        if segs:
            doc.h(4, f"{metric} by segment")
            rows = _forest_rows(segs, True, run)
            path = run.jobs.add(f"segments-{metric}", figures.forest, f"{metric} by segment", rows, run.colors,
                                run.levels, weight=len(rows))
            doc.add(_Figure(path, f"{metric}: estimates per user segment and the true segment effects."),
                    _Table(head[:2] + ["Segment"] + head[2:], [_est_row(e, True, run.mixed_levels, run.label(e)) for e in segs]))
    _truth_table(doc, run)


def _truth_table(doc: _Doc, run: RunView) -> None:
    t = run.truth
    if t is None or t.empty:
        return
    if "segment" in t.columns:
        t = t[t["segment"].isna()]
    cols = list(dict.fromkeys((str(a), str(k)) for a, k in zip(t["arm"], t["estimand"])))
    cols.sort(key=lambda c: (run.arms.index(c[0]) if c[0] in run.arms else 99, c[1]))
    vals = {(str(r["metric"]), str(r["arm"]), str(r["estimand"])): r["value"] for r in t.to_dict("records")}
    rows = [[m] + [(fmt(vals.get((m, a, k)), signed=True), "truth") for a, k in cols]
            for m in dict.fromkeys(str(x) for x in t["metric"])]
    doc.h(3, "True effects")
    doc.add(_Para("From the counterfactual worlds (all users, each arm vs the control)."),
            _Table(["Metric"] + [f"{a} ({k})" for a, k in cols], rows))


_WHY = {"interference": "interference", "estimator": "the estimator", "unknown": "not known"}


def _interference(doc: _Doc, run: RunView) -> None:
    rows = [a for a in run.assessed if a.bias is not None]
    if not rows:
        return
    doc.h(2, "Interference: the A/B test vs shipping to everyone")
    doc.add(_Para("An A/B test measures each arm's effect while both arms share the system (its "
                  "traffic split, its training logs); the truth is the effect of giving the arm to "
                  "everyone. Their gap, interference_bias = estimate − true effect, splits into the "
                  "interference component (the A/B world's outcomes minus the same users' outcomes in "
                  "the counterfactual worlds, through the same contrast) and the estimation error (the "
                  "rest: sampling error and estimator bias). An interval that missed the truth missed "
                  "because of interference when, shifted by the interference component, it covers it. "
                  "Only differences are attributed: a ratio (relative) divides by the counterfactual "
                  "control mean, whose noise its interval does not reflect, so its miss is not decomposable."))
    misses = [a.miss for a in rows if a.miss]
    if misses:
        n_int = misses.count("interference")
        n_est = misses.count("estimator")
        doc.add(_Para(f"Of the {len(misses)} interval(s) that missed the truth: {n_int} because of "
                      f"interference, {n_est} because of the estimator"
                      + (f", {len(misses) - n_int - n_est} not decomposable." if len(misses) > n_int + n_est
                         else "."), "caution" if n_est else ""))
    with_seg = any(a.estimate.segment is not None for a in rows)
    table = []
    for a in rows:
        e = a.estimate
        split = e.estimand in ADDITIVE  # a ratio's gap is not split (see the paragraph above)
        table.append([run.label(e), e.metric, e.arm] + ([e.segment or "all"] if with_seg else []) + [
            e.estimand, (fmt(e.point), "num"), (fmt(e.truth), "truth"),
            (fmt(a.bias, signed=True), "num"),
            (fmt(a.interference, signed=True), "num") if split else "not decomposable",
            (fmt(a.estimation_error, signed=True), "num") if split else "not decomposable",
            "yes" if e.covered else "no" if e.covered is False else "—",
            "not decomposable" if a.miss and not split else _WHY.get(a.miss or "", "—")])
    head = (["Estimator", "Metric", "Arm"] + (["Segment"] if with_seg else [])
            + ["Estimand", "Estimate", "True effect", "interference_bias", "of which interference",
               "of which estimation", "Covered", "Missed because of"])
    doc.add(_Table(head, table, small=True))


# -- time series and diagnostics ------------------------------------------------------------------------
def _timeseries(doc: _Doc, run: RunView) -> None:
    ts = run.result.timeseries
    if ts is None or ts.empty or not {"world", "arm", "day", "metric", "value"} <= set(ts.columns):
        return
    doc.h(2, "Metrics over simulated time")
    pre = run.scenario.experiment.pre_period
    series: dict[str, dict] = {}
    grouped = ts.groupby(["metric", "world", "arm", "day"], sort=False)["value"].mean().reset_index()
    for (metric, world, arm), g in grouped.groupby(["metric", "world", "arm"], sort=False):
        world = str(world)
        if world == AB_WORLD:
            key = ("ab", str(arm))
        elif world_arm(world) is not None:
            key = ("all", world_arm(world))
        else:
            continue
        g = g.sort_values("day")
        series.setdefault(str(metric), {})[key] = (g["day"].astype(float).tolist(),
                                                   g["value"].astype(float).tolist())
    if not series:
        return
    path = run.jobs.add("timeseries", figures.timeseries, series, run.arms, run.colors, pre,
                        weight=len(series))
    cap = ("Daily value per assigned user: each arm in the A/B world (solid) and in the world where "
           "every user got that arm (dashed).")
    if pre > 0:
        cap += " The shaded days are the pre-period, in which everyone got the control."
    doc.add(_Figure(path, cap))


def _warnings_of(e: Any) -> list[str]:
    w = e.diagnostics.get("warnings")
    if isinstance(w, str):
        return [w] if w else []
    return [str(x) for x in w] if isinstance(w, list) else []


def _diagnostics(doc: _Doc, run: RunView) -> None:
    if not run.estimates:
        return
    doc.h(2, "Diagnostics")
    warned = [(e, w) for e in run.estimates for w in _warnings_of(e)]
    mech = mechanism_of(run.scenario)
    if mech != "randomized":  # an estimator that does not model the design compares the arms as randomized
        warned += [(e, confounded_warning(mech)) for e in {(e.estimator, e.metric, e.arm): e for e in run.estimates
                                                           if not reports_naive(e)}.values()]
    if warned:  # each once: an estimator's rows (a CATE's cate and difference) share their warnings
        lines = list(dict.fromkeys(f"{run.label(e)} · {e.metric} · {e.arm}" + (f" · {e.segment}" if e.segment else "")
                                   + f": {w}" for e, w in warned))
        doc.add(_Para(f"{len(lines)} warning(s) from the estimators:", "caution", lines))
    else:
        doc.add(_Para("No estimator reported a warning.", "ok"))
    rows = []
    for e in run.estimates:
        d = {k: v for k, v in e.diagnostics.items() if k != "warnings"}
        text = "; ".join(f"{k}={_compact(v, None)}" for k, v in d.items()) or "—"  # never cut numbers
        rows.append([run.label(e), e.metric, e.arm, e.segment or "all", e.estimand, (text, "code")])
    doc.add(_Table(["Estimator", "Metric", "Arm", "Segment", "Estimand", "Diagnostics"], rows, small=True))


# -- phases, run details and files -------------------------------------------------------------------
def _phases(doc: _Doc, run: RunView) -> None:
    phases = run.manifest.get("phases")
    if not isinstance(phases, list) or not phases:
        return
    doc.h(2, "Phases and decisions")
    recs = [p if isinstance(p, dict) else {"phase": p} for p in phases]
    keys = list(dict.fromkeys(k for p in recs for k in p))
    rows = [[str(i + 1)] + [_compact(p.get(k), 120) if p.get(k) is not None else "—" for k in keys]
            for i, p in enumerate(recs)]
    doc.add(_Table(["#"] + [str(k) for k in keys], rows))


def _details(doc: _Doc, run: RunView) -> None:
    m = run.manifest
    plugins, versions, timings = m.get("plugins") or [], m.get("versions") or {}, m.get("timings") or {}
    if not (plugins or versions or timings):
        return
    doc.h(2, "Run details")
    if plugins:
        doc.h(3, "Plugins")
        doc.add(_Table(["Name", "Kind", "Class", "Plugin", "Source", "Version"],
                       [[str(p.get(k, "—")) for k in ("name", "kind", "class", "plugin", "source", "version")]
                        for p in plugins if isinstance(p, dict)], small=True))
    if timings:
        doc.h(3, "Timings")
        doc.add(_Table(["Timing", "Value"], [[str(k), (fmt(v), "num")] for k, v in timings.items()],
                       small=True))
    if versions:
        doc.h(3, "Versions")
        doc.add(_Table(["Package", "Version"], [[str(k), str(v)] for k, v in versions.items()], small=True))


_FILE_NOTES = {
    "scenario.yaml": "resolved scenario", "manifest.json": "seed, versions, plugins, timings",
    "estimates.json": "estimates, truth and SRM", "estimates.csv": "estimates as a table",
    "truth.parquet": "true effects", "outcomes.parquet": "one row per (world, user)",
    "timeseries.parquet": "daily metrics per world and arm", "report.md": "this report as Markdown",
    "report.html": "this report", "sessions.parquet": "session events",
    "impressions.parquet": "impression events with propensities",
}


def _files(doc: _Doc, run: RunView) -> None:
    items: list[tuple[str, str]] = []
    for p in sorted(run.dir.rglob("*")):
        rel = p.relative_to(run.dir)
        if p.is_dir() or any(part.startswith(".") for part in rel.parts) or rel.parts[0] == "figures" \
                or rel.as_posix() in ("report.md", "report.html"):  # listed below, as a rebuild finds them
            continue
        note = _FILE_NOTES.get(p.name, "posterior draws (ArviZ NetCDF)" if p.suffix == ".nc" else "")
        size = p.stat().st_size
        human = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"
        items.append((rel.as_posix(), f"{note}, {human}" if note else human))
    for name in ("report.md", "report.html"):
        if name not in {i[0] for i in items}:
            items.append((name, _FILE_NOTES[name]))
    items.append(("figures/", "the figures of this report as PNG"))
    doc.h(2, "Files")
    doc.add(_Links(items))
