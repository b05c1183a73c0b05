"""The Bayesian SEM estimator (``sem``): a structural equation model fitted in PyMC per treatment arm.

For each treatment arm, the users of that arm and of the control form one data set with a 0/1
column ``treatment``; the model (lavaan-like syntax, see docs/sem.md) is fitted on its sufficient
statistics (so the cost does not grow with the number of users), with nutpie by default. Every
defined quantity (``:=``) and every labelled parameter becomes an :class:`Estimate` with its
posterior mean, an equal-tailed credible interval at the analysis level, ``prob_better`` =
P(quantity > 0), and the sampler diagnostics (R-hat, bulk/tail ESS, divergences, warnings).

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
from typing import ClassVar, Literal

import numpy as np
from pydantic import Field, field_validator

from counterfeed.core.contracts import AnalysisData, Estimate, Estimator, EstimatorOptions
from counterfeed.core.hookspecs import hookimpl
from counterfeed.errors import ModelError

__all__ = ["BayesianSEM"]


class BayesianSEM(Estimator):
    """Bayesian structural equation model per treatment arm (see the module docstring)."""

    name = "sem"
    conformance_skip: ClassVar[str] = ("needs a model naming the scenario's metrics; its behaviour is "
                                       "tested in tests/sem and tests/sem/test_sem_estimator.py")

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

    def estimate(self, data: AnalysisData) -> list[Estimate]:
        from counterfeed.sem import SEM

        o = self.options
        level = self.level_for(data)
        try:
            sem = SEM(o.model, exogenous=["treatment"], std_lv=o.std_lv, priors=o.priors)
        except ModelError:
            raise
        except Exception as exc:  # a parse error type outside the hierarchy is still a model error
            raise ModelError(f"sem: {exc}") from None
        if o.outcome is not None and o.outcome not in data.outcomes.columns:
            raise ModelError(f"sem: outcome '{o.outcome}' is not a metric of this run")
        run_dir = data.extras.get("run_dir")
        out: list[Estimate] = []
        for arm in data.treatments:
            frame = data.outcomes[data.outcomes["arm"].isin([data.control, arm])].copy()
            frame["treatment"] = (frame["arm"] == arm).astype(float)
            fit = sem.fit(frame, draws=o.draws, tune=o.tune, chains=o.chains, seed=int(data.seed) % (2**32),
                          method=o.method)
            posterior = None
            if run_dir is not None:
                posterior = fit.save(Path(run_dir) / f"posterior-sem-{arm}.nc")
            diag_common = {"ok": fit.ok, "warnings": list(fit.warnings), "divergences": int(fit.divergences),
                           "method": fit.method, "n": float(fit.n_total),
                           "compile_s": float(fit.timings.get("compile_s", np.nan)),
                           "sample_s": float(fit.timings.get("sample_s", np.nan)),
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


def _f(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


@hookimpl
def register_estimators(register):
    register(BayesianSEM)
