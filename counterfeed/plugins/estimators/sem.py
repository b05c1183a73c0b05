"""The Bayesian SEM estimator (``sem``): a structural equation model fitted in PyMC per treatment arm.

For each treatment arm, the users of that arm and of the control form one data set with a 0/1
column ``treatment``; the model (lavaan-like syntax, see docs/sem.md) is fitted on its sufficient
statistics (so the cost does not grow with the number of users), with nutpie by default. Every
defined quantity (``:=``) and every labelled parameter becomes an :class:`Estimate` with its
posterior mean, an equal-tailed credible interval at the analysis level, ``prob_better`` =
P(quantity > 0), and the sampler diagnostics (R-hat, bulk/tail ESS, divergences, warnings). The
fits' wall times are not diagnostics (a run directory is the same bytes whenever it is made): they
are ``BayesianSEM.timings_``, for the run's manifest.

Scoring: the quantity named by ``total`` (default ``"total"``) estimates the effect of the treatment on
``outcome`` (a per-user metric, untransformed) and is reported as ``estimand="difference"`` of that
metric, so it is scored against the simulator's true effect. Other quantities (paths, indirect
effects) have no simulator truth and are reported as ``estimand="sem:<name>"``.

Assumptions: linear Gaussian SEM (a binary outcome is treated as a linear probability model);
randomized treatment, so the treatment indicator is exogenous. Reference: Merkle & Rosseel (2018),
blavaan: Bayesian structural equation models via parameter expansion, J. Stat. Softw. 85(4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, field_validator

from counterfeed.core import figures
from counterfeed.core.contracts import MetricInfo
from counterfeed.core.display import fmt
from counterfeed.core.estimation import (AnalysisData, Estimate, Estimator, EstimatorOptions,
                                         EstimatorTags)
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import DataError, ModelError

__all__ = ["BayesianSEM"]


#: the fit's timings (wall seconds, ``SEMFit.timings``) kept per arm in ``BayesianSEM.timings_``
_TIMINGS = ("import_s", "compile_s", "sample_s")


class BayesianSEM(Estimator):
    """Bayesian structural equation model per treatment arm (see the module docstring).

    After :meth:`estimate`, ``timings_`` holds the wall seconds of each arm's fit
    (``<arm>_import_s``, ``<arm>_compile_s``, ``<arm>_sample_s``): for the run's manifest timings,
    never in the estimates, whose diagnostics hold only what the data and the seed determine.
    """

    name = "sem"
    tags = EstimatorTags(requires_model_spec=True, stochastic=True, estimands=("difference",))
    #: the conformance suite's model: its data's ``clicks`` regressed on the arm indicator
    conformance_options = {"model": "clicks ~ b*treatment\ntotal := b", "outcome": "clicks",
                           "draws": 200, "tune": 200, "chains": 2}

    class Options(EstimatorOptions):
        model: str = Field(min_length=1, description="lavaan-like model; 'treatment' is the arm indicator")
        outcome: str | None = Field(None, description="metric whose true effect the 'total' quantity estimates")
        total: str = "total"
        draws: int = Field(1000, ge=10, le=100_000)
        tune: int = Field(1000, ge=10, le=100_000)
        chains: int = Field(4, ge=1, le=16)
        method: Literal["nutpie", "pymc", "advi", "fullrank_advi", "pathfinder"] = "nutpie"
        std_lv: bool = False
        priors: dict[str, str] = Field(default_factory=dict)

        @field_validator("model")
        @classmethod
        def _parses(cls, v: str) -> str:
            """Syntax errors surface when the scenario is validated, before any simulation."""
            from counterfeed.sem.syntax import parse_model

            try:
                parse_model(v)
            except ModelError as exc:
                raise ValueError(f"SEM model: {exc}") from None
            return v

    def check_metrics(self, scenario: Any, metrics: dict[str, MetricInfo]) -> None:
        """Before simulating, what :meth:`estimate` would reject (:func:`checked_sem` on the columns the
        run's outcome table will have, :func:`scenario_columns`), located at this entry's ``model``,
        ``outcome`` or ``priors.<name>``."""
        try:
            checked_sem(self.options, scenario_columns(scenario, metrics), metrics)
        except SEMOptionError as exc:
            i = self.analysis_entry(scenario)
            if i is None:  # not one of the scenario's analysis entries: located at the entry by the caller
                raise
            raise scenario.error(str(exc), f"analysis[{i}].{exc.field}") from None

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        o = self.options
        level = self.level_for(data)
        columns = list(data.outcomes.columns) + ([] if "treatment" in data.outcomes.columns else ["treatment"])
        sem = checked_sem(o, columns, data.metrics)
        run_dir = data.output_dir
        self.timings_: dict[str, float] = {}
        out: list[Estimate] = []
        for arm in data.treatments:
            frame = data.outcomes[data.outcomes["arm"].isin([data.control, arm])].copy()
            frame["treatment"] = (frame["arm"] == arm).astype(float)
            try:
                fit = sem.fit(frame, draws=o.draws, tune=o.tune, chains=o.chains, seed=int(data.seed) % (2**32),
                              method=o.method)
            except DataError as exc:
                if "singular" not in str(exc):
                    raise
                # the data, not the options, decide it; the run names the entry: say which option to change
                raise DataError(f"model: {exc}") from None
            self.timings_.update({f"{arm}_{k}": float(fit.timings[k]) for k in _TIMINGS if k in fit.timings})
            posterior = None
            if run_dir is not None:
                posterior = fit.save(Path(run_dir) / f"posterior-sem-{arm}.nc")
            diag_common = {"ok": fit.ok, "warnings": list(fit.warnings), "divergences": int(fit.divergences),
                           "method": fit.method, "n": float(fit.n_total),
                           "posterior": Path(posterior).name if posterior else None,
                           "defined": [str(q) for q in fit.summary.index[fit.summary["kind"] == "defined"]]}
            s = fit.summary
            labels = {n: str(s.loc[n, "label"] or "") for n in s.index}
            wanted = [n for n in s.index
                      if s.loc[n, "kind"] == "defined" or (labels[n] and labels[n] != n)]
            for key in wanted:
                label = labels[key] or key
                draws = fit.draws(key)
                lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
                is_total = label == o.total and o.outcome is not None
                out.append(Estimate(
                    estimator=self.name, metric=o.outcome if is_total else (o.outcome or "sem"), arm=arm,
                    control=data.control, point=float(draws.mean()), lower=float(lo), upper=float(hi),
                    level=level, estimand="difference" if is_total else f"sem:{label}",
                    prob_better=float((draws > 0).mean()),
                    diagnostics={**diag_common, "quantity": label, "sd": float(draws.std(ddof=1)),
                                 "r_hat": _f(s.loc[key, "r_hat"]), "ess_bulk": _f(s.loc[key, "ess_bulk"]),
                                 "ess_tail": _f(s.loc[key, "ess_tail"])}))
        return out


class SEMOptionError(ModelError):
    """A problem of the ``sem`` estimator's options, with the option it concerns (``field``: ``model``,
    ``outcome``, ``total``, ``method`` or ``priors.<name>``): ``estimate`` raises it as it is (the run locates it at the entry),
    ``check_metrics`` at ``analysis[i].<field>``."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


#: the columns of the outcome table besides the metrics (core.outcomes.world_outcomes), and the arm
#: indicator this estimator adds
_ID_COLUMNS = ("user", "arm", "segment")


def metric_columns(metrics: dict[str, MetricInfo]) -> list[str]:
    """The per-user metrics among ``metrics`` (name -> info), then the numerators and denominators of its
    ratios that are not among them: the metric columns of the run's outcome table, in its order (the
    run computes every part of a ratio; population-level metrics have no per-user column)."""
    names = [n for n, info in metrics.items() if getattr(info, "level", "user") != "population"]
    for n in list(names):
        info = metrics[n]
        names += [part for part in (info.numerator, info.denominator) if part and part not in names]
    return names


def scenario_columns(scenario: Any, metrics: dict[str, MetricInfo]) -> list[str]:
    """The columns :meth:`BayesianSEM.estimate` will see, from the scenario and its analysed ``metrics``:
    ``user``, ``arm``, ``segment``, each metric column (:func:`metric_columns`) followed by
    ``pre_<metric>`` when there is a pre-period, and the 0/1 ``treatment`` indicator."""
    pre = float(scenario.experiment.pre_period) > 0
    cols = list(_ID_COLUMNS)
    for name in metric_columns(metrics):
        cols += [name, f"pre_{name}"] if pre else [name]
    return cols + ["treatment"]


def checked_sem(o: "BayesianSEM.Options", columns: list[str], metrics: dict[str, MetricInfo]):
    """The SEM of the options ``o`` for data with ``columns`` and ``metrics`` (name -> info), checked as
    ``validate`` and ``estimate`` both check it; raises :class:`SEMOptionError` naming the option.

    In order: every variable that is not a latent is a column (before the model's identification, which
    a misspelt column would make wrong; the message is ``counterfeed.sem.stats.check_columns``'s); no
    variable is a ratio metric; the model builds (``counterfeed.sem.SEM``: identification, then each prior
    on its own so that an error names it); ``outcome`` is a per-user metric that is not a ratio.
    """
    _check_method(o.method)
    if o.outcome is None and o.total != "total":
        raise SEMOptionError(f"sem: total '{o.total}' is set but outcome is not: total names the quantity "
                             f"scored against the outcome metric's true effect, so without an outcome it is "
                             f"never read; set outcome (a per-user metric) or remove total", "total")
    from counterfeed.sem import SEM
    from counterfeed.sem.stats import check_columns, data_column
    from counterfeed.sem.syntax import parse_model
    from counterfeed.sem.table import observed_variables

    def build(priors: dict[str, str], field: str):
        try:
            return SEM(parse_model(o.model), exogenous=["treatment"], std_lv=o.std_lv, priors=priors)
        except ModelError as exc:
            raise SEMOptionError(str(exc), field) from None
        except Exception as exc:  # a parse error type outside the hierarchy is still a model error
            raise SEMOptionError(f"sem: {exc}", field) from None

    try:
        variables = observed_variables(parse_model(o.model))
        check_columns(columns, variables)
    except ModelError as exc:
        raise SEMOptionError(str(exc), "model") from None
    ratios = {n: info for n, info in metrics.items() if info.kind == "ratio"}
    for var in variables:
        col = data_column(var)
        name = col.removeprefix("pre_") if col.startswith("pre_") and col not in ratios else col
        if name in ratios:
            what = (f"'{col}' is a ratio metric" if col == name
                    else f"'{col}' is the pre-period value of the ratio metric '{name}'")
            raise SEMOptionError(_ratio_message(what, ratios[name]), "model")
    sem = build({}, "model")
    if o.priors:
        for key, spec in o.priors.items():
            build({key: spec}, f"priors.{key}")
        sem = build(dict(o.priors), "priors")
    if o.outcome is not None:
        if o.outcome not in metric_columns(metrics):
            raise SEMOptionError(f"sem: outcome '{o.outcome}' is not a metric of this run", "outcome")
        if o.outcome in ratios:
            raise SEMOptionError(_ratio_message(f"outcome '{o.outcome}' is a ratio metric", ratios[o.outcome]),
                                 "outcome")
        parsed = parse_model(o.model)
        named = [d.name for d in parsed.definitions] + [t.label for st in parsed.statements for t in st.terms
                                                        if t.label]
        if o.total not in named:  # the estimate scored against the outcome's truth would never be made
            have = ", ".join(dict.fromkeys(named)) or "none"
            raise SEMOptionError(f"sem: outcome '{o.outcome}' is scored by the quantity '{o.total}', which the model "
                                 f"does not define (its defined quantities and labels: {have}); add "
                                 f"'{o.total} := ...' to the model (e.g. the sum of the paths from treatment to "
                                 f"{o.outcome}), or name one of those as total", "total")
    return sem


#: the sampling methods that need an optional package: method -> (module, pip package)
_METHOD_PACKAGES = {"nutpie": ("nutpie", "nutpie"), "pathfinder": ("pymc_extras", "pymc-extras")}


def _check_method(method: str) -> None:
    """``method``'s optional package can be imported (found, not imported: validate stays cheap)."""
    need = _METHOD_PACKAGES.get(method)
    if need is None:
        return
    module, package = need
    if not _found(module):
        others = ", ".join(m for m in ("nutpie", "pymc", "advi", "fullrank_advi", "pathfinder")
                           if m != method and (m not in _METHOD_PACKAGES or _found(_METHOD_PACKAGES[m][0])))
        raise SEMOptionError(f"sem: method '{method}' needs the {package} package, which is not installed; "
                             f"install it (pip install {package}) or use another method ({others})", "method")


def _found(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _ratio_message(what: str, info: MetricInfo) -> str:
    num, den = info.numerator or "its numerator", info.denominator or "its denominator"
    return (f"sem: {what} ({num} / {den}): it has no value for a user with no {den}, a linear SEM needs "
            f"every user's value (dropping those users would condition on an outcome of the treatment), "
            f"and its true effect is a ratio of sums, not a mean of per-user ratios; model {num} and "
            f"{den} instead (e.g. '{num} ~ a*treatment + b*{den}')")


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


@hookimpl
def register_estimators(register):
    register(BayesianSEM)


# -- its report section ----------------------------------------------------------------------------
@hookimpl
def counterfeed_report_sections(result, report):
    """"Bayesian SEM": per posterior file of this estimator's estimates, a forest of the model's
    parameters, the densities of the defined quantities (with the true effect where known) and a
    table of every quantity."""
    ests = [e for e in result.estimates if e.estimator == BayesianSEM.name]
    if not ests:
        return
    sec = report.section("Bayesian SEM")
    sec.paragraph(f"{len(ests)} estimate(s) come from the structural equation model; they appear with the "
                  "other estimates above and are scored against the truth the same way.")
    names = list(dict.fromkeys(str(e.diagnostics.get("posterior")) for e in ests if e.diagnostics.get("posterior")))
    for name in names:
        path = Path(report.run_dir) / name
        if path.is_file():
            _posterior_section(sec, report, ests, path)


def _quantity_of(e: Estimate) -> str:
    return str(e.diagnostics.get("quantity") or e.estimand)


def _defined(ests: list[Estimate]) -> tuple[list[str], set[str]]:
    """Defined-quantity names in model order (from the first estimate that lists them), and every
    name that counts as defined (those, plus the quantities estimated other than as an effect)."""
    order: list[str] = []
    for e in ests:
        d = e.diagnostics.get("defined")
        if isinstance(d, list):
            order = [str(x.get("name")) if isinstance(x, dict) else str(x) for x in d]
            break
    names = set(order) | {_quantity_of(e) for e in ests if e.estimand not in ("difference", "relative")}
    return order, names


def _truth_for(ests: list[Estimate], quantity: str, path: Path) -> float | None:
    cands = [e for e in ests if quantity in (e.estimand, _quantity_of(e)) and e.truth is not None]
    linked = [e for e in cands if str(e.diagnostics.get("posterior", "")).endswith(path.name)]
    if linked:
        return linked[0].truth
    return cands[0].truth if len(cands) == 1 else None


def _posterior_section(sec, report, ests: list[Estimate], path: Path) -> None:
    label = path.stem[len("posterior-"):] if path.stem.startswith("posterior-") else path.stem
    sec.heading(f"Posterior: {label}")
    order, defined = _defined(ests)
    try:
        quantities = _posterior_quantities(path, {"defined": order})
    except Exception as exc:  # a damaged or foreign NetCDF file should not sink the report
        sec.paragraph(f"Could not read {path.name}: {type(exc).__name__}: {exc}", "caution")
        return
    level, alpha = report.level, (1 - report.level) / 2
    rows, dens, table = [], [], []
    for qlabel, key, draws in quantities:
        x = draws[np.isfinite(draws)]
        if x.size == 0:
            continue
        lo, hi = (float(v) for v in np.quantile(x, [alpha, 1 - alpha]))
        is_def = key in defined or qlabel in defined or qlabel.startswith("defined[")
        if is_def:
            dens.append({"label": key if key in defined else qlabel, "draws": x,
                         "truth": _truth_for(ests, key, path)})
        else:
            rows.append({"label": qlabel, "mean": float(x.mean()), "lower": lo, "upper": hi})
        table.append([qlabel, "defined" if is_def else "parameter", (fmt(x.mean()), "num"),
                      (fmt(x.std()), "num"), (f"{fmt(lo)} to {fmt(hi)}", "num")])
    if rows:
        more = f" (first 60 of {len(rows)})" if len(rows) > 60 else ""
        sec.figure(f"sem-paths-{label}", f"Posterior mean and {level:.0%} credible interval of every model "
                   f"parameter{more}.", figures.posterior_forest,
                   f"Structural paths and parameters ({label})", rows[:60], level)
    if dens:
        sec.figure(f"sem-defined-{label}", "Posterior densities of the defined quantities (e.g. indirect and "
                   "total effects), with the simulator's true effect where it is known.",
                   figures.posterior_densities, dens, level)
    if table:
        sec.table(["Quantity", "Kind", "Mean", "SD", f"{level:.0%} interval"], table, small=True)


def _posterior_quantities(path: Path, names_by_dim: dict[str, list[str]]) -> list[tuple[str, str, Any]]:
    """Every scalar quantity in the posterior group: (label, element name, draws).

    A variable that shares its name with its dimension (``defined`` over ``defined``) is stored by
    xarray as a coordinate, so coordinates holding draws count too; a dimension without string labels
    takes its names from ``names_by_dim`` when the lengths agree, else the element index.
    """
    import itertools

    import arviz as az

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
