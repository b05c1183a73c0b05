"""Fitting: the SEM class, the compiled-model cache, sampling backends and the SEMFit result."""

from __future__ import annotations

import math
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from counterfeed.sem.errors import SEMModelError
from counterfeed.sem.stats import SufficientStats, check_scale, sufficient_stats
from counterfeed.sem.syntax import ParsedModel, parse_model
from counterfeed.sem.table import ParameterTable, build_table

__all__ = ["SEM", "SEMFit", "fit_sem", "fit_sem_stats", "METHODS", "clear_cache"]

METHODS = ("nutpie", "pymc", "advi", "fullrank_advi", "pathfinder")
DENSITIES = ("auto", "numba", "pymc")
_CACHE: dict[tuple, dict] = {}


def clear_cache() -> None:
    """Forget every compiled model (the on-disk PyTensor cache stays)."""
    _CACHE.clear()


class SEM:
    """A parsed, checked SEM: ``SEM(text, exogenous=["treatment"], std_lv=False, priors=None)``.

    ``exogenous`` are observed 0/1 regressors (arm indicators) that the model conditions on.
    ``priors`` maps a label or ``lhs op rhs`` name to a prior string such as ``"normal(0, 1)"``.
    """

    def __init__(self, model: str | ParsedModel, *, exogenous: Sequence[str] = (),
                 std_lv: bool = False, priors: dict[str, str] | None = None):
        self.parsed = parse_model(model) if isinstance(model, str) else model
        self.exogenous = list(exogenous)
        self.std_lv = std_lv
        self.priors = dict(priors or {})
        self.table: ParameterTable = build_table(self.parsed, exogenous=self.exogenous,
                                                 std_lv=std_lv, priors=self.priors)

    def __str__(self) -> str:
        return str(self.table)

    def stats(self, data) -> SufficientStats:
        """Sufficient statistics of ``data`` (a DataFrame) for this model."""
        missing = [x for x in self.exogenous if x not in data.columns]
        if missing:
            raise SEMModelError(f"exogenous column(s) {', '.join(missing)} not in the data")
        return sufficient_stats(data, self.table.observed, self.table.exogenous)

    def fit(self, data, **kwargs) -> "SEMFit":
        """Fit to a DataFrame; see :func:`fit_sem_stats` for the options."""
        return self.fit_stats(self.stats(data), **kwargs)

    def fit_stats(self, stats: SufficientStats, *, draws: int = 1000, tune: int = 1000,
                  chains: int = 4, seed: int = 0, method: str = "nutpie",
                  cores: int | None = None, target_accept: float = 0.8,
                  advi_iterations: int = 30000, progress: bool = False,
                  on_stage: Callable[[str, str], None] | None = None,
                  density: str = "auto") -> "SEMFit":
        """Fit to precomputed sufficient statistics (cost does not depend on the number of rows).

        ``on_stage(stage, detail)`` is called as work starts: ``"compile"``, ``"sample"``, and
        ``"done"`` at the end (the CLI draws its progress display from it).

        ``density`` (nutpie only): ``"numba"`` samples the cached generic numba density of
        :mod:`counterfeed.sem._numba_logp` (nothing compiled per model or process), ``"pymc"``
        compiles the PyMC model (the reference), ``"auto"`` (default) takes numba whenever it
        covers the model (:func:`counterfeed.sem.numba_model.unsupported`)."""
        stage = on_stage or (lambda name, detail: None)
        from counterfeed.sem.model import build_pymc_model, data_arrays, initial_values

        if method not in METHODS:
            raise SEMModelError(f"unknown method '{method}'; expected one of {', '.join(METHODS)}")
        if density not in DENSITIES:
            raise SEMModelError(f"unknown density '{density}'; expected one of "
                                f"{', '.join(DENSITIES)}")
        if density == "numba" and method != "nutpie":
            raise SEMModelError("density 'numba' needs method 'nutpie'")
        for name, v in (("draws", draws), ("chains", chains)) + ((("tune", tune),) if method in ("nutpie", "pymc")
                                                                  else ()):
            if int(v) < 1:
                raise SEMModelError(f"{name} must be at least 1, got {v}")
        check_scale(stats)
        data = data_arrays(self.table, stats)
        init = initial_values(self.table)
        var_names = ["params"] + (["defined"] if self.table.definitions else [])
        warnings: list[str] = []
        t0 = time.perf_counter()
        import_s = 0.0
        if method == "nutpie" and density == "auto":
            from counterfeed.sem.numba_model import unsupported
            density = "pymc" if unsupported(self.table) else "numba"
        if method != "nutpie" or density == "pymc":
            key = (self.table.signature(),)
            entry = _CACHE.get(key)
            cache_hit = entry is not None
            stage("compile", "in-process cache" if cache_hit else "building the PyMC model")
            if entry is None:
                entry = {"model": build_pymc_model(self.table, data)}
                _CACHE[key] = entry
            model = entry["model"]
        if method == "nutpie":
            if density == "numba":
                # one generic density compiled once per installation (numba cache): a fresh
                # process only loads machine code; structure and data travel as an array
                stage("import", "nutpie")
                import nutpie  # (imports ArviZ: seconds, timed apart from the compile)

                import_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                compiled, cache_hit = _numba_compiled(self.table, data, stage)
            else:
                import nutpie

                compiled = entry.get("nutpie")
                if compiled is None:
                    cache_hit = False
                    with without_zero_div_rewrite():
                        compiled = nutpie.compile_pymc_model(model, initial_points=init,
                                                             jitter_rvs=set(), var_names=var_names)
                    entry["nutpie"] = compiled
                compiled = compiled.with_data(**data)
            compile_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            stage("sample", f"{chains} chain(s) x ({tune} tune + {draws} draws), nutpie")
            try:
                idata = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, seed=seed,
                                      cores=cores or min(chains, 2), progress_bar=progress,
                                      target_accept=target_accept)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # nutpie's Rust panics (pyo3 PanicException) derive from BaseException
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise SEMModelError(f"the sampler failed ({first}); check the data's scale and the model, or "
                                    "raise --tune") from None
            if density == "numba":
                from counterfeed.sem.numba_model import add_defined

                add_defined(self.table, idata)
            sample_s = time.perf_counter() - t1
        else:
            import pymc as pm

            with model:
                pm.set_data(data)
            compile_s = time.perf_counter() - t0
            t1 = time.perf_counter()
            stage("sample", f"{chains} chain(s) x ({tune} tune + {draws} draws), {method}")
            with model:
                if method == "pymc":
                    idata = pm.sample(draws=draws, tune=tune, chains=chains,
                                      cores=cores or 1, random_seed=seed, initvals=init,
                                      init="adapt_diag", progressbar=progress,
                                      var_names=var_names, target_accept=target_accept,
                                      compute_convergence_checks=False)
                elif method in ("advi", "fullrank_advi"):
                    approx = pm.fit(n=advi_iterations, method=method, random_seed=seed,
                                    progressbar=progress, start=init)
                    idata = approx.sample(draws * chains, random_seed=seed)
                    warnings.append(f"method '{method}' is an approximation: no R-hat, ESS or "
                                    f"divergence checks; use it for exploration only")
                else:
                    try:
                        import pymc_extras as pmx
                    except ImportError:
                        raise SEMModelError("method 'pathfinder' needs the pymc-extras package, "
                                            "which is not installed; use 'advi'") from None
                    idata = pmx.fit(method="pathfinder", random_seed=seed,
                                    num_draws=draws * chains)
                    warnings.append("method 'pathfinder' is an approximation: no R-hat, ESS or "
                                    "divergence checks")
            sample_s = time.perf_counter() - t1
        return self._result(idata, method, warnings, compile_s, sample_s, cache_hit, stats, data,
                            draws, chains, stage, import_s=import_s,
                            density=density if method == "nutpie" else "pymc")

    def _result(self, idata, method, warnings, compile_s, sample_s, cache_hit, stats, data,
                draws, chains, stage, *, density, import_s=0.0) -> "SEMFit":
        stage("done", "")
        return SEMFit.from_idata(self, idata, method=method, warnings=warnings,
                                 timings={"import_s": import_s, "compile_s": compile_s,
                                          "sample_s": sample_s, "cache_hit": cache_hit,
                                          "density": density},
                                 n_total=stats.n_total, draws=draws, chains=chains,
                                 scales=dict(zip(self.table.observed + self.table.latents,
                                                 data["k_all"].tolist())))


def _numba_compiled(table, data, stage):
    """(nutpie model on the cached numba density, cache_hit): cache_hit is true only when
    nothing was compiled (the density was loaded earlier in this process or from the cache)."""
    loaded = "counterfeed.sem._numba_logp" in sys.modules
    stage("compile", "SEM density (loaded)" if loaded else
          "SEM density (cached; the first use compiles ~1 min)")
    from counterfeed.sem import _numba_logp
    from counterfeed.sem.numba_model import compiled_model

    return compiled_model(table, data), loaded or _numba_logp.cache_hit()


def fit_sem(model: str | SEM, data, *, exogenous: Sequence[str] = (), std_lv: bool = False,
            priors: dict[str, str] | None = None, **kwargs) -> "SEMFit":
    """Parse ``model`` (text or :class:`SEM`) and fit it to the DataFrame ``data``.

    ``kwargs``: draws=1000, tune=1000, chains=4, seed=0, method="nutpie" (or "pymc", "advi",
    "fullrank_advi", "pathfinder"), cores, target_accept, progress."""
    sem = model if isinstance(model, SEM) else SEM(model, exogenous=exogenous, std_lv=std_lv,
                                                    priors=priors)
    return sem.fit(data, **kwargs)


def fit_sem_stats(model: str | SEM, stats: SufficientStats, *, std_lv: bool = False,
                  priors: dict[str, str] | None = None, **kwargs) -> "SEMFit":
    """Fit to precomputed :class:`SufficientStats` (exogenous taken from ``stats.exogenous``)."""
    sem = model if isinstance(model, SEM) else SEM(model, exogenous=stats.exogenous,
                                                    std_lv=std_lv, priors=priors)
    return sem.fit_stats(stats, **kwargs)


@dataclass
class SEMFit:
    """Posterior of an SEM fit, with diagnostics that are always computed and shown."""

    sem: SEM
    idata: Any
    summary: Any  # pandas DataFrame, one row per free parameter and defined quantity
    divergences: int
    warnings: list[str]
    timings: dict
    method: str
    n_total: float
    chain_means: Any = None
    extra: dict = field(default_factory=dict)
    #: Heywood-type flags (:class:`counterfeed.sem.diagnostics.Boundary`); each is also a warning
    boundary: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.warnings

    @classmethod
    def from_idata(cls, sem, idata, *, method, warnings, timings, n_total, draws, chains,
                   scales: dict[str, float] | None = None):
        import pandas as pd

        from counterfeed.sem.diagnostics import boundary_checks

        post = idata.posterior
        table = sem.table
        frames, chain_means = [], []
        for var, dim in (("params", "param"), ("defined", "quantity")):
            if var not in post:
                continue
            x = np.asarray(post[var].transpose("chain", "draw", dim).values, float)
            names = [str(v) for v in post[var][dim].values]
            frames.append(_summarize(x, names, var))
            chain_means.append(pd.DataFrame(x.mean(axis=1), columns=names))
        summary = pd.concat(frames)
        rows = {r.key: r for r in table.free_rows()}
        summary.insert(0, "label", [rows[n].label if n in rows else n for n in summary.index])
        summary.insert(1, "kind", [rows[n].kind if n in rows else "defined" for n in summary.index])
        divergences = 0
        stats = getattr(idata, "sample_stats", None)
        if stats is not None and "diverging" in stats:
            divergences = int(np.asarray(stats["diverging"].values).sum())
        warnings = list(warnings)
        boundary = []
        if scales is not None and "params" in post:
            flat = np.asarray(post["params"].transpose("chain", "draw", "param").values, float)
            keys = [str(v) for v in post["params"]["param"].values]
            boundary = boundary_checks(table, dict(zip(keys, flat.reshape(-1, len(keys)).T)),
                                       scales)
            warnings += [b.message for b in boundary]
        flagged = {b.param for b in boundary}
        summary["boundary"] = [n in flagged for n in summary.index]
        approx = method not in ("nutpie", "pymc")
        if draws * chains < 2:  # one draw: no spread, so no credible interval
            lo, hi = [c for c in summary.columns if c.endswith("%")][:2] or [None, None]
            if lo is not None:
                summary[[lo, hi]] = np.nan
            warnings.append(f"{draws * chains} posterior draw(s) in all: no credible interval and no "
                            "convergence diagnostics; draw more")
        if not approx:
            unknown = summary[summary["r_hat"].isna() | summary["ess_bulk"].isna()]
            if len(unknown):
                warnings.append(f"R-hat/ESS could not be computed for {len(unknown)} parameter(s) (too few "
                                "draws): convergence is not established")
            bad = summary[summary["r_hat"] > 1.01]
            if len(bad):
                warnings.append(f"R-hat > 1.01 for {len(bad)} parameter(s): "
                                + ", ".join(f"{n} ({v:.3f})" for n, v in bad["r_hat"].items()))
            if divergences:
                warnings.append(f"{divergences} divergent transition(s) after tuning; raise "
                                f"target_accept or reparametrize")
            need = min(400, 100 * chains)
            low = summary[(summary["ess_bulk"] < need) | (summary["ess_tail"] < need)]
            if len(low):
                warnings.append(f"low ESS (< {need}) for {len(low)} parameter(s): "
                                + ", ".join(f"{n} (bulk {b:.0f}, tail {t:.0f})" for n, b, t in
                                            zip(low.index, low["ess_bulk"], low["ess_tail"])))
            cm = pd.concat(chain_means, axis=1) if chain_means else None
            if cm is not None and chains > 1:
                odd = _odd_chains(cm, summary)
                if odd:
                    warnings.append("chain(s) disagree with the others (another mode?): "
                                    + "; ".join(odd))
        return cls(sem, idata, summary, divergences, warnings, timings, method, n_total,
                   chain_means=pd.concat(chain_means, axis=1) if chain_means else None,
                   boundary=boundary)

    def save(self, path) -> str:
        """Write the posterior as ArviZ NetCDF without wall-clock metadata (ArviZ's ``created_at``,
        PyMC's sampling times): the same fit saved twice gives the same bytes. Its timings are
        :attr:`timings`."""
        from pathlib import Path

        from counterfeed.sem._posterior_file import without_clock

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        without_clock(self.idata).to_netcdf(str(path))
        return str(path)

    def estimate(self, name: str) -> dict:
        """Summary row of a parameter (key such as ``visual=~x2``, or label) or defined quantity."""
        s = self.summary
        if name in s.index:
            return s.loc[name].to_dict()
        hit = s[s["label"] == name]
        if len(hit):
            return hit.iloc[0].to_dict()
        raise KeyError(f"no parameter or defined quantity '{name}'; have: {', '.join(s.index)}")

    def draws(self, name: str) -> np.ndarray:
        """All posterior draws (chains concatenated) of one parameter or defined quantity."""
        post = self.idata.posterior
        for var, dim in (("params", "param"), ("defined", "quantity")):
            if var in post and name in [str(v) for v in post[var][dim].values]:
                return np.asarray(post[var].sel({dim: name}).values).reshape(-1)
        key = self.summary.index[self.summary["label"] == name]
        if len(key):
            return self.draws(key[0])
        raise KeyError(name)

    def to_dict(self) -> dict:
        summ = self.summary.reset_index(names="param")
        return {"method": self.method, "ok": self.ok, "warnings": self.warnings,
                "divergences": self.divergences, "n": self.n_total,
                "timings": self.timings,
                "boundary": [{"param": b.param, "kind": b.kind, "message": b.message}
                             for b in self.boundary],
                "summary": [{k: _json_value(v) for k, v in rec.items()}
                            for rec in summ.to_dict("records")]}

    def __str__(self) -> str:
        import pandas as pd

        with pd.option_context("display.width", 140, "display.max_rows", 500,
                               "display.float_format", "{:.4g}".format):  # significant digits
            body = self.summary.to_string()
        t = self.timings
        lines = [f"Bayesian SEM ({self.method}), n = {self.n_total:.0f}; compile "
                 f"{t['compile_s']:.2f} s ({'cached' if t['cache_hit'] else 'new'}), "
                 f"sampling {t['sample_s']:.2f} s; divergences: {self.divergences}", body]
        lines.append("diagnostics: OK (R-hat <= 1.01, ESS adequate, no divergences, no "
                     "parameter at a boundary)" if self.ok
                     else "WARNINGS:\n" + "\n".join(f"  - {w}" for w in self.warnings))
        return "\n".join(lines)


def _json_value(v):
    """Strict-JSON value: NumPy scalars as Python ones, NaN as None."""
    if isinstance(v, np.generic):
        v = v.item()
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _summarize(x: np.ndarray, names: list[str], var: str):
    """Mean, sd, 95% equal-tailed interval, R-hat and ESS per column of x (chain, draw, k)."""
    import arviz as az
    import pandas as pd

    flat = x.reshape(-1, x.shape[2])
    lo, hi = np.quantile(flat, [0.025, 0.975], axis=0)
    out = pd.DataFrame({"mean": flat.mean(0), "sd": flat.std(0, ddof=1), "eti_2.5%": lo,
                        "eti_97.5%": hi}, index=names)
    rhat, essb, esst = [], [], []
    for j in range(x.shape[2]):
        col = x[:, :, j]
        if x.shape[0] > 1 and x.shape[1] > 3:
            rhat.append(float(az.rhat(col)))
        else:
            rhat.append(math.nan)
        essb.append(float(az.ess(col, method="bulk")) if x.shape[1] > 3 else math.nan)
        esst.append(float(az.ess(col, method="tail")) if x.shape[1] > 3 else math.nan)
    out["r_hat"], out["ess_bulk"], out["ess_tail"] = rhat, essb, esst
    return out


def _odd_chains(chain_means, summary) -> list[str]:
    """Chains whose mean of some quantity sits > 5 posterior SDs from the median of chain means."""
    out = []
    med = chain_means.median(axis=0)
    sd = summary["sd"].reindex(chain_means.columns).replace(0, np.nan)
    for ch in range(len(chain_means)):
        dev = ((chain_means.iloc[ch] - med).abs() / sd)
        dev = dev[dev > 5]
        if len(dev):
            name = dev.idxmax()
            out.append(f"chain {ch}: {name} mean {chain_means.iloc[ch][name]:.3g} vs "
                       f"{med[name]:.3g}")
    return out


@contextmanager
def without_zero_div_rewrite():
    """Compile without PyTensor's canonicalize rewrite ``local_zero_div`` (``0 / x -> 0``).

    On SEM graphs a constant zero block divided by a sampled quantity (e.g. the 2 x 1 zero block of a
    regression on the arm indicator with two exogenous groups) makes ``local_zero_div`` and
    ``constant_folding`` undo each other forever inside nutpie's ``rewrite_graph``, so the compile
    never returns (the kind of issue 14 item 7). Dropping this one algebraic shortcut while the model
    compiles changes no value; the rewrite is restored afterwards, so other PyTensor users in the
    process are unaffected.
    """
    from pytensor.compile import optdb
    from pytensor.tensor.rewriting.math import local_zero_div

    db = optdb["canonicalize"]
    tags = [t for t, rewrites in db.__db__.items() if t != "local_zero_div" and local_zero_div in rewrites]
    db.remove_tags("local_zero_div", *tags)
    try:
        yield
    finally:
        db.add_tags("local_zero_div", *tags)

