"""Bayesian structural equation models (lavaan-like syntax, PyMC, sufficient statistics).

    from counterfeed.sem import fit_sem
    fit = fit_sem("f =~ x1 + x2 + x3", df, draws=1000, chains=4, seed=0)
    print(fit); fit.ok; fit.summary; fit.save("posterior.nc")

See docs/sem.md.
"""

from __future__ import annotations

import os as _os

# Unpinned BLAS threads make PyMC/nutpie 10-30x slower on small shared machines.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    _os.environ.setdefault(_var, "1")

from counterfeed.sem.errors import SEMModelError, SEMSyntaxError  # noqa: E402
from counterfeed.sem.fit import SEM, SEMFit, clear_cache, fit_sem, fit_sem_stats  # noqa: E402
from counterfeed.sem.priors import Prior, parse_prior  # noqa: E402
from counterfeed.sem.stats import (SufficientStats, implied_moments, simulate,  # noqa: E402
                                   sufficient_loglik, sufficient_stats)
from counterfeed.sem.syntax import parse_model  # noqa: E402
from counterfeed.sem.table import ParameterTable  # noqa: E402

__all__ = ["SEM", "SEMFit", "SEMModelError", "SEMSyntaxError", "ParameterTable", "Prior",
           "SufficientStats", "clear_cache", "fit_sem", "fit_sem_stats", "implied_moments",
           "parse_model", "parse_prior", "simulate", "sufficient_loglik", "sufficient_stats"]
