"""The run report: Markdown and a self-contained HTML page with figures, built from a run directory.

``write_report(run_dir)`` reads only the files of a finished run (``manifest.json``,
``scenario.yaml``, ``estimates.json``, ``truth.parquet``, ``timeseries.parquet``,
``posterior-*.nc``), so ``counterfeed report RUN_DIR`` can rebuild the report of any run. It writes
``figures/*.png``, ``report.md`` and ``report.html`` (figures embedded as base64 PNG, inline CSS, no
external resources). Sections whose inputs are absent (segments, posteriors, monitoring paths,
phases) are skipped. Every string that came from a user is escaped.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from counterfeed.core._report_render import (_KV, _Doc, _Figure, _Links, _Para, _Table, _to_html,
                                             _to_markdown)
from counterfeed.errors import DataError

__all__ = ["write_report"]

_DIFF = ("difference", "relative")


@dataclass
class _Run:
    dir: Path
    manifest: dict[str, Any]
    scenario: dict[str, Any]
    level: float
    srm: dict[str, Any] | None
    estimates: list[dict[str, Any]]
    truth: Any = None
    timeseries: Any = None
    posteriors: list[Path] = field(default_factory=list)

    @property
    def arms(self) -> list[str]:
        arms = self.manifest.get("arms") or list((self.scenario.get("experiment") or {}).get("arms") or {})
        if not arms:
            arms = list(dict.fromkeys([e["control"] for e in self.estimates] + [e["arm"] for e in self.estimates]))
        return [str(a) for a in arms]

    @property
    def control(self) -> str | None:
        c = self.manifest.get("control") or (self.scenario.get("experiment") or {}).get("control")
        return str(c) if c is not None else (self.arms[0] if self.arms else None)

    @property
    def metrics(self) -> list[str]:
        names = [e["metric"] for e in self.estimates]
        if self.truth is not None and "metric" in self.truth:
            names += [str(m) for m in self.truth["metric"]]
        return list(dict.fromkeys(names))


def write_report(run_dir: str | Path) -> dict[str, Path]:
    """Write ``figures/*.png``, ``report.md`` and ``report.html`` into a finished run directory.

    Returns the written paths: ``"markdown"``, ``"html"``, ``"figures"`` (the folder) and one
    ``"figure:<name>"`` entry per PNG.
    """
    run = _load(Path(run_dir))
    figdir = run.dir / "figures"
    figdir.mkdir(exist_ok=True)
    for old in figdir.glob("*.png"):
        old.unlink()
    doc = _build(run, figdir)
    md_path, html_path = run.dir / "report.md", run.dir / "report.html"
    md_path.write_text(_to_markdown(doc), encoding="utf-8")
    html_path.write_text(_to_html(doc), encoding="utf-8")
    out: dict[str, Path] = {"markdown": md_path, "html": html_path, "figures": figdir}
    for png in sorted(figdir.glob("*.png")):
        out[f"figure:{png.stem}"] = png
    return out


# -- loading ---------------------------------------------------------------------------------------
def _load(path: Path) -> _Run:
    if not path.is_dir():
        raise DataError(f"{path}: not a directory")
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{path}: not a finished run directory (no manifest.json)")
    manifest = _read_json(manifest_path)
    scenario: dict[str, Any] = {}
    if (path / "scenario.yaml").is_file():
        import yaml

        try:
            scenario = yaml.safe_load((path / "scenario.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise DataError(f"{path / 'scenario.yaml'}: not valid YAML ({exc})") from None
        if not isinstance(scenario, dict):
            raise DataError(f"{path / 'scenario.yaml'}: expected a mapping at the top")
    est_doc = _read_json(path / "estimates.json") if (path / "estimates.json").is_file() else {}
    level = float(est_doc.get("level") or manifest.get("level") or scenario.get("level") or 0.95)
    estimates = [_clean_estimate(e, level) for e in est_doc.get("estimates") or []]
    run = _Run(path, manifest, scenario, level, est_doc.get("srm"), estimates)
    run.truth = _read_parquet(path / "truth.parquet")
    run.timeseries = _read_parquet(path / "timeseries.parquet")
    run.posteriors = sorted(path.glob("posterior-*.nc"))
    _fill_truth(run)
    return run


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object at the top")
    return data


def _read_parquet(path: Path):
    if not path.is_file():
        return None
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: cannot read Parquet ({exc})") from None


def _clean_estimate(e: dict[str, Any], level: float) -> dict[str, Any]:
    out = dict(e)
    for key in ("estimator", "metric", "arm", "control"):
        out[key] = str(out.get(key, ""))
    out["estimand"] = str(out.get("estimand") or "difference")
    out["segment"] = None if out.get("segment") is None else str(out["segment"])
    for key in ("point", "lower", "upper", "p_value", "prob_better", "truth", "error"):
        out[key] = num(out.get(key))
    out["level"] = num(out.get("level")) or level
    out["diagnostics"] = out.get("diagnostics") if isinstance(out.get("diagnostics"), dict) else {}
    return out


def _fill_truth(run: _Run) -> None:
    """Take the truth from truth.parquet for estimates that carry none (older or partial runs)."""
    t = run.truth
    if t is None or not {"metric", "arm", "estimand", "value"} <= set(t.columns):
        return
    lookup = {}
    for rec in t.to_dict("records"):
        seg = rec.get("segment")
        seg = None if seg is None or (isinstance(seg, float) and math.isnan(seg)) else str(seg)
        lookup[(str(rec["metric"]), str(rec["arm"]), str(rec["estimand"]), seg)] = num(rec["value"])
    for e in run.estimates:
        if e["truth"] is None:
            v = lookup.get((e["metric"], e["arm"], e["estimand"], e["segment"]))
            if v is not None and e["point"] is not None:
                e["truth"], e["error"] = v, e["point"] - v
                if e["lower"] is not None and e["upper"] is not None:
                    e["covered"] = bool(e["lower"] <= v <= e["upper"])


# -- small helpers used by the sections ------------------------------------------------------------
def num(x: Any) -> float | None:
    """A finite float, or None (None, NaN, inf and non-numbers all become None)."""
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def fmt(x: Any, signed: bool = False) -> str:
    """A number for people: 4 significant digits, thousands separators for large values."""
    v = num(x)
    if v is None:
        return "—"
    if v != 0 and abs(v) >= 1e4:
        s = f"{v:,.0f}"
    elif v != 0 and abs(v) < 1e-3:
        s = f"{v:.2e}"
    else:
        s = f"{v:.4g}"
    return ("+" + s) if signed and v > 0 else s


def fmt_p(x: Any) -> str:
    v = num(x)
    if v is None:
        return "—"
    return "< 0.001" if v < 0.001 else f"{v:.3f}"


def _p_text(x: Any) -> str:
    text = fmt_p(x)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def parse_days(value: Any) -> float:
    """A scenario duration ('7d', '12h', '2w', '30m' or a number of days) in days; unreadable -> 0."""
    from counterfeed.core.scenario import parse_duration

    try:
        return parse_duration(value) if value is not None else 0.0
    except ValueError:
        return 0.0


def _build(run: _Run, figdir: Path) -> _Doc:
    from counterfeed.core import _figures

    name = str(run.manifest.get("scenario") or run.scenario.get("name") or run.dir.name)
    doc = _Doc(f"Experiment report: {name}")
    colors = _figures.arm_colors(run.arms, run.control)
    _header(doc, run, name)
    _srm(doc, run)
    _estimates(doc, run, figdir, colors)
    _timeseries(doc, run, figdir, colors)
    _diagnostics(doc, run)
    _sem(doc, run, figdir)
    _monitoring(doc, run, figdir, colors)
    _phases(doc, run)
    _details(doc, run)
    _files(doc, run)
    return doc


def _safe_name(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "figure"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


def _figpath(figdir: Path, stem: str) -> Path:
    taken = {p.stem for p in figdir.glob("*.png")}
    return figdir / f"{_safe_name(stem, taken)}.png"


def _main_estimates(run: _Run) -> list[dict[str, Any]]:
    """The headline estimates: first metric, first estimator, difference, all users, each arm."""
    cands = [e for e in run.estimates if e["estimand"] == "difference" and e["segment"] is None
             and e["point"] is not None]
    if not cands:
        return []
    metric, estimator = cands[0]["metric"], cands[0]["estimator"]
    return [e for e in cands if e["metric"] == metric and e["estimator"] == estimator]


def _summary(run: _Run) -> list[str]:
    out = []
    for e in _main_estimates(run):
        lo, hi, p = e["lower"], e["upper"], e["point"]
        verb = "changed" if lo is None or hi is None or lo <= 0 <= hi else ("raised" if p > 0 else "lowered")
        amount = fmt(abs(p)) if verb != "changed" else fmt(p, signed=True)
        s = (f"{e['arm']} {verb} {e['metric']} by {amount} vs {e['control']} "
             f"({e['level']:.0%} interval {fmt(lo)} to {fmt(hi)}, {e['estimator']})")
        if verb == "changed":
            s += ", not distinguishable from zero"
        if e["truth"] is not None:
            inside = "inside" if e.get("covered") else "outside"
            s += f"; the true effect was {fmt(e['truth'])}, {inside} the interval."
        else:
            s += "; the true effect is not known for this estimand."
        out.append(s[0].upper() + s[1:])
    scored = [e for e in run.estimates if e.get("covered") is not None]
    if scored:
        k = sum(bool(e["covered"]) for e in scored)
        out.append(f"{k} of {len(scored)} intervals with a known truth covered it "
                   f"(nominal {run.level:.0%}).")
    if run.srm and run.srm.get("flagged"):
        out.append(f"Sample ratio mismatch detected ({_p_text(run.srm.get('p_value'))}): "
                   "the assignment is suspect, and so are the estimates.")
    return out


def _header(doc: _Doc, run: _Run, name: str) -> None:
    sc, m = run.scenario, run.manifest
    exp = sc.get("experiment") or {}
    desc = str(sc.get("description") or "").strip()
    summary = _summary(run)
    if len(summary) == 1:
        doc.add(_Para(summary[0], "lead"))
    elif summary:
        doc.add(_Para("What this run shows:", "lead", summary))
    doc.h(2, "Run")
    if desc:
        doc.add(_Para(desc))
    split = exp.get("split") or {}
    arms = ", ".join(a + (f" {num(split.get(a)):.0%}" if num(split.get(a)) is not None else "")
                     + (" (control)" if a == run.control and a != "control" else "") for a in run.arms)
    duration = str(exp.get("duration", "—"))
    pre = parse_days(exp.get("pre_period"))
    if pre > 0:
        duration += f" after a {exp.get('pre_period')} pre-period"
    users = m.get("n_users") or (sc.get("population") or {}).get("users")
    timings = m.get("timings") or {}
    total = num(timings.get("total")) or num(timings.get("total_s"))
    rows = [["Scenario", name], ["Seed", str(m.get("seed", sc.get("seed", "—")))],
            ["Users", f"{int(users):,}" if num(users) is not None else "—"], ["Arms and split", arms],
            ["Duration", duration], ["Interval level", f"{run.level:.0%}"],
            ["Created", str(m.get("created", "—"))],
            ["counterfeed version", str(m.get("counterfeed_version", "—"))]]
    if total is not None:
        rows.append(["Run time", f"{total:.1f} s"])
    doc.add(_KV([(str(k), str(v)) for k, v in rows]))


def _srm(doc: _Doc, run: _Run) -> None:
    doc.h(2, "Sample ratio mismatch")
    srm = run.srm
    if not srm:
        doc.add(_Para("No sample-ratio check in this run.", "muted"))
        return
    chi2 = srm.get("chi2", srm.get("statistic"))
    stat = (f"chi-square = {fmt(chi2)} on {srm.get('df', '—')} df, "
            f"{_p_text(srm.get('p_value'))}")
    if srm.get("flagged"):
        doc.add(_Para(f"Sample ratio mismatch: the arms' sizes differ from the planned split more than "
                      f"chance allows ({stat}). Check assignment and logging before trusting any "
                      f"estimate below.", "warn"))
    else:
        doc.add(_Para(f"Arm sizes match the planned split ({stat}).", "ok"))
    obs, exp = srm.get("observed") or {}, srm.get("expected") or {}
    rows = []
    for arm in list(dict.fromkeys(list(obs) + list(exp))):
        o, x = num(obs.get(arm)), num(exp.get(arm))
        ratio = f"{o / x:.3f}" if o is not None and x else "—"
        rows.append([arm, (fmt(o), "num"), (fmt(x), "num"), (ratio, "num")])
    if rows:
        doc.add(_Table(["Arm", "Observed users", "Expected users", "Observed / expected"], rows))


def _est_row(e: dict[str, Any], with_segment: bool = False) -> list[Any]:
    pv = (_p_text(e["p_value"]) if e["p_value"] is not None else
          f"P(better) = {e['prob_better']:.3f}" if e["prob_better"] is not None else "—")
    cov = e.get("covered")
    row = [e["estimator"], e["arm"]] + ([e["segment"]] if with_segment else []) + [
        e["estimand"], (fmt(e["point"]), "num"), (f"{fmt(e['lower'])} to {fmt(e['upper'])}", "num"),
        pv, (fmt(e["truth"]), "truth"), (fmt(e["error"], signed=True), "num"),
        ("✓", "yes") if cov is True else ("✗", "no") if cov is False else ("—", "na")]
    return row


def _forest_rows(ests: list[dict[str, Any]], with_segment: bool) -> list[tuple[str, list[dict]]]:
    panels: dict[str, list[dict]] = {}
    for e in ests:
        label = f"{e['estimator']} · {e['arm']}" + (f" · {e['segment']}" if with_segment else "")
        panels.setdefault(e["estimand"], []).append(
            {"label": label, "arm": e["arm"], "point": e["point"], "lower": e["lower"],
             "upper": e["upper"], "truth": e["truth"]})
    return list(panels.items())


def _estimates(doc: _Doc, run: _Run, figdir: Path, colors: dict[str, str]) -> None:
    from counterfeed.core import _figures

    doc.h(2, "Estimates vs truth")
    if not run.estimates:
        doc.add(_Para("This run has no estimates.", "muted"))
    else:
        doc.add(_Para("Each row is one estimator's effect of an arm against the control, with its "
                      f"{run.level:.0%} interval. The diamond is the true effect, computed from the "
                      "counterfactual worlds in which every user got one arm."))
    head = ["Estimator", "Arm", "Estimand", "Point", "Interval", "p / P(better)", "Truth", "Error",
            "Covered"]
    for metric in run.metrics:
        ests = [e for e in run.estimates if e["metric"] == metric]
        if not ests:
            continue
        doc.h(3, metric)
        overall = [e for e in ests if e["segment"] is None]
        if overall:
            path = _figures.forest(_figpath(figdir, f"estimates-{metric}"), f"{metric}: effect vs control",
                                   _forest_rows(overall, False), colors, run.level)
            doc.add(_Figure(path, f"{metric}: estimates (dot, interval) and the true effect (diamond)."),
                    _Table(head, [_est_row(e) for e in overall]))
        segs = [e for e in ests if e["segment"] is not None]
        if segs:
            doc.h(4, f"{metric} by segment")
            path = _figures.forest(_figpath(figdir, f"segments-{metric}"), f"{metric} by segment",
                                   _forest_rows(segs, True), colors, run.level)
            doc.add(_Figure(path, f"{metric}: estimates per user segment and the true segment effects."),
                    _Table(head[:2] + ["Segment"] + head[2:], [_est_row(e, True) for e in segs]))
    _truth_table(doc, run)


def _truth_table(doc: _Doc, run: _Run) -> None:
    t = run.truth
    if t is None or not {"metric", "arm", "estimand", "value"} <= set(t.columns) or t.empty:
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


def _timeseries(doc: _Doc, run: _Run, figdir: Path, colors: dict[str, str]) -> None:
    from counterfeed.core import _figures

    ts = run.timeseries
    if ts is None or ts.empty or not {"world", "arm", "day", "metric", "value"} <= set(ts.columns):
        return
    doc.h(2, "Metrics over simulated time")
    pre = parse_days((run.scenario.get("experiment") or {}).get("pre_period"))
    series: dict[str, dict] = {}
    grouped = ts.groupby(["metric", "world", "arm", "day"], sort=False)["value"].mean().reset_index()
    for (metric, world, arm), g in grouped.groupby(["metric", "world", "arm"], sort=False):
        world = str(world)
        if world == "ab":
            key = ("ab", str(arm))
        elif world.startswith("all-"):
            key = ("all", world[4:])
        else:
            continue
        g = g.sort_values("day")
        series.setdefault(str(metric), {})[key] = (g["day"].astype(float).tolist(),
                                                   g["value"].astype(float).tolist())
    if not series:
        return
    path = _figures.timeseries(_figpath(figdir, "timeseries"), series, run.arms, colors, pre)
    cap = ("Daily value per assigned user: each arm in the A/B world (solid) and in the world where "
           "every user got that arm (dashed).")
    if pre > 0:
        cap += " The shaded days are the pre-period, in which everyone got the control."
    doc.add(_Figure(path, cap))


def _compact(value: Any, limit: int = 160) -> str:
    if isinstance(value, float):
        text = fmt(value)
    elif isinstance(value, (dict, list)):
        text = json.dumps(value, default=str, separators=(", ", ": "))
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _warnings_of(e: dict[str, Any]) -> list[str]:
    w = e["diagnostics"].get("warnings")
    if isinstance(w, str):
        return [w] if w else []
    return [str(x) for x in w] if isinstance(w, list) else []


def _diagnostics(doc: _Doc, run: _Run) -> None:
    if not run.estimates:
        return
    doc.h(2, "Diagnostics")
    warned = [(e, w) for e in run.estimates for w in _warnings_of(e)]
    if warned:
        doc.add(_Para(f"{len(warned)} warning(s) from the estimators:", "caution",
                      [f"{e['estimator']} · {e['metric']} · {e['arm']}"
                       + (f" · {e['segment']}" if e["segment"] else "") + f": {w}" for e, w in warned]))
    else:
        doc.add(_Para("No estimator reported a warning.", "ok"))
    rows = []
    for e in run.estimates:
        d = {k: v for k, v in e["diagnostics"].items() if k not in ("warnings", "path")}
        text = "; ".join(f"{k}={_compact(v)}" for k, v in d.items()) or "—"
        rows.append([e["estimator"], e["metric"], e["arm"], e["segment"] or "all", e["estimand"],
                     (text, "code")])
    doc.add(_Table(["Estimator", "Metric", "Arm", "Segment", "Estimand", "Diagnostics"], rows, small=True))


# -- Bayesian SEM ------------------------------------------------------------------------------------
def _is_sem(e: dict[str, Any]) -> bool:
    return e["estimator"] == "sem" or e["estimator"].startswith("sem") or e["estimator"].endswith("sem")


def _posterior_quantities(path: Path, names_by_dim: dict[str, list[str]]) -> list[tuple[str, str, Any]]:
    """Every scalar quantity in the posterior group: (label, element name, draws).

    A variable that shares its name with its dimension (``defined`` over ``defined``) is stored by
    xarray as a coordinate, so coordinates holding draws count too; a dimension without string labels
    takes its names from ``names_by_dim`` when the lengths agree, else the element index.
    """
    import itertools

    import arviz as az
    import numpy as np

    post = az.from_netcdf(str(path)).posterior
    out = []
    variables = list(post.data_vars) + [c for c in post.coords if post[c].ndim > 1]
    for var in variables:
        da = post[var]
        if "chain" not in da.dims or "draw" not in da.dims:
            continue
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        labels = []
        for d in extra:
            coord = post.coords[d].values if d in post.coords and post.coords[d].ndim == 1 else None
            if coord is not None and len(coord) == da.sizes[d]:
                labels.append([str(v) for v in coord])
            elif len(names_by_dim.get(d, [])) == da.sizes[d]:
                labels.append(list(names_by_dim[d]))
            else:
                labels.append([str(i) for i in range(da.sizes[d])])
        values = np.asarray(da.transpose("chain", "draw", *extra).values, float)
        for idx in itertools.product(*[range(len(lab)) for lab in labels]):
            names = [labels[k][i] for k, i in enumerate(idx)]
            key = names[0] if len(names) == 1 else var
            label = var if not names else (names[0] if var in ("params", "param", "defined") and len(names) == 1
                                           else f"{var}[{', '.join(names)}]")
            out.append((label, key, values[(slice(None), slice(None), *idx)].reshape(-1)))
    return out


def _defined_order(run: _Run) -> list[str]:
    """Defined-quantity names in model order, from the first SEM estimate that lists them."""
    for e in run.estimates:
        d = e["diagnostics"].get("defined")
        if _is_sem(e) and isinstance(d, list):
            return [str(x.get("name")) if isinstance(x, dict) else str(x) for x in d]
    return []


def _defined_names(run: _Run) -> set[str]:
    names: set[str] = set()
    for e in run.estimates:
        if not _is_sem(e):
            continue
        if e["estimand"] not in _DIFF:
            names.add(e["estimand"])
        d = e["diagnostics"].get("defined")
        if isinstance(d, dict):
            names.update(str(k) for k in d)
        elif isinstance(d, list):
            names.update(str(x.get("name")) if isinstance(x, dict) else str(x) for x in d)
    return names


def _truth_for(run: _Run, quantity: str, path: Path) -> float | None:
    cands = [e for e in run.estimates if _is_sem(e) and e["estimand"] == quantity and e["truth"] is not None]
    linked = [e for e in cands if str(e["diagnostics"].get("posterior", "")).endswith(path.name)]
    if linked:
        return linked[0]["truth"]
    return cands[0]["truth"] if len(cands) == 1 else None


def _sem(doc: _Doc, run: _Run, figdir: Path) -> None:
    from counterfeed.core import _figures

    sem_ests = [e for e in run.estimates if _is_sem(e)]
    if not sem_ests and not run.posteriors:
        return
    import numpy as np

    doc.h(2, "Bayesian SEM")
    if sem_ests:
        doc.add(_Para(f"{len(sem_ests)} estimate(s) come from the structural equation model; they "
                      "appear with the other estimates above and are scored against the truth the "
                      "same way."))
    defined = _defined_names(run)
    alpha = (1 - run.level) / 2
    for path in run.posteriors:
        label = path.stem[len("posterior-"):]
        doc.h(3, f"Posterior: {label}")
        try:
            quantities = _posterior_quantities(path, {"defined": _defined_order(run)})
        except Exception as exc:  # a damaged or foreign NetCDF file should not sink the report
            doc.add(_Para(f"Could not read {path.name}: {type(exc).__name__}: {exc}", "caution"))
            continue
        rows, dens, table = [], [], []
        for qlabel, key, draws in quantities:
            x = draws[np.isfinite(draws)]
            if x.size == 0:
                continue
            lo, hi = (float(v) for v in np.quantile(x, [alpha, 1 - alpha]))
            is_def = key in defined or qlabel in defined or qlabel.startswith("defined[")
            if is_def:
                dens.append({"label": key if key in defined else qlabel, "draws": x,
                             "truth": _truth_for(run, key, path)})
            else:
                rows.append({"label": qlabel, "mean": float(x.mean()), "lower": lo, "upper": hi})
            table.append([qlabel, "defined" if is_def else "parameter", (fmt(x.mean()), "num"),
                          (fmt(x.std()), "num"), (f"{fmt(lo)} to {fmt(hi)}", "num")])
        if rows:
            shown = rows[:60]
            fig = _figures.posterior_forest(_figpath(figdir, f"sem-paths-{label}"),
                                            f"Structural paths and parameters ({label})", shown, run.level)
            more = f" (first 60 of {len(rows)})" if len(rows) > 60 else ""
            doc.add(_Figure(fig, f"Posterior mean and {run.level:.0%} credible interval of every model "
                                 f"parameter{more}."))
        if dens:
            fig = _figures.posterior_densities(_figpath(figdir, f"sem-defined-{label}"), dens, run.level)
            doc.add(_Figure(fig, "Posterior densities of the defined quantities (e.g. indirect and total "
                                 "effects), with the simulator's true effect where it is known."))
        if table:
            doc.add(_Table(["Quantity", "Kind", "Mean", "SD", f"{run.level:.0%} interval"], table, small=True))


# -- sequential monitoring and phases -----------------------------------------------------------------
def _monitoring(doc: _Doc, run: _Run, figdir: Path, colors: dict[str, str]) -> None:
    from counterfeed.core import _figures

    by_metric: dict[str, list[dict[str, Any]]] = {}
    for e in run.estimates:
        path = e["diagnostics"].get("path")
        if not isinstance(path, list):
            continue
        pts = [p for p in path if isinstance(p, dict) and num(p.get("day")) is not None]
        if not pts:
            continue
        by_metric.setdefault(e["metric"], []).append({
            "label": f"{e['estimator']} · {e['arm']}" + (f" ({e['estimand']})" if e["estimand"] != "difference" else ""),
            "arm": e["arm"], "truth": e["truth"], "days": [num(p["day"]) for p in pts],
            "point": [_nan(p.get("point")) for p in pts], "lower": [_nan(p.get("lower")) for p in pts],
            "upper": [_nan(p.get("upper")) for p in pts]})
    if not by_metric:
        return
    doc.h(2, "Sequential monitoring")
    doc.add(_Para("How each estimate and its interval moved as data accumulated, day by day."))
    for metric, lines in by_metric.items():
        fig = _figures.paths(_figpath(figdir, f"monitoring-{metric}"), f"{metric} over the experiment",
                             lines, colors, run.level)
        doc.add(_Figure(fig, f"{metric}: estimate (line) and interval (band) over time; dashed: the "
                             "true effect."))


def _nan(x: Any) -> float:
    v = num(x)
    return math.nan if v is None else v


def _phases(doc: _Doc, run: _Run) -> None:
    phases = run.manifest.get("phases")
    if not isinstance(phases, list) or not phases:
        return
    doc.h(2, "Phases and decisions")
    recs = [p if isinstance(p, dict) else {"phase": p} for p in phases]
    keys = list(dict.fromkeys(k for p in recs for k in p))
    rows = [[str(i + 1)] + [_compact(p.get(k), 120) if p.get(k) is not None else "—" for k in keys]
            for i, p in enumerate(recs)]
    doc.add(_Table(["#"] + [str(k) for k in keys], rows))


# -- run details and files -------------------------------------------------------------------------
def _details(doc: _Doc, run: _Run) -> None:
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


def _files(doc: _Doc, run: _Run) -> None:
    items: list[tuple[str, str]] = []
    for p in sorted(run.dir.rglob("*")):
        rel = p.relative_to(run.dir)
        if p.is_dir() or any(part.startswith(".") for part in rel.parts) or rel.parts[0] == "figures":
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
