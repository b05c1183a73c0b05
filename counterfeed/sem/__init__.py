"""Bayesian structural equation models (lavaan-like syntax, PyMC, sufficient statistics).

    from counterfeed.sem import fit_sem
    fit = fit_sem("f =~ x1 + x2 + x3", df, draws=1000, chains=4, seed=0)
    print(fit); fit.ok; fit.summary; fit.save("posterior.nc")

See docs/sem.md.
"""

from __future__ import annotations

# BLAS threads are pinned where the process starts (counterfeed.cli.main), not here: importing a
# library must not change the environment of the whole process.
from counterfeed.sem.errors import SEMModelError, SEMSyntaxError
from counterfeed.sem.fit import SEM, SEMFit, clear_cache, fit_sem, fit_sem_stats
from counterfeed.sem.priors import Prior, parse_prior
from counterfeed.sem.stats import (SufficientStats, implied_moments, simulate, sufficient_loglik,
                                   sufficient_stats)
from counterfeed.sem.syntax import parse_model
from counterfeed.sem.table import ParameterTable

__all__ = ["SEM", "SEMFit", "SEMModelError", "SEMSyntaxError", "ParameterTable", "Prior",
           "SufficientStats", "clear_cache", "fit_sem", "fit_sem_stats", "implied_moments",
           "parse_model", "parse_prior", "simulate", "sufficient_loglik", "sufficient_stats"]
