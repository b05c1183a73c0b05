"""A twin of the users fitted from impression logs (``counterfeed twin``; docs/twin.md).

>>> from counterfeed.twin import load_twin_log, fit_twin, write_twin, evaluate_twin   # doctest: +SKIP
>>> meta, reps = fit_twin(load_twin_log("runs/my-run"))                               # doctest: +SKIP
>>> write_twin("twins/mine", meta, reps)                                              # doctest: +SKIP
>>> evaluate_twin("twins/mine", {"recommender": "matrix-factorization"})              # doctest: +SKIP

In a scenario, ``population: {twin: DIR}`` makes the twin the population, catalog and user model.
"""

from __future__ import annotations

from counterfeed.twin.check import check_twin
from counterfeed.twin.data import TwinLog, load_twin_log, twin_log_from_frame
from counterfeed.twin.evaluate import TwinEffect, evaluate_twin, ope_beside
from counterfeed.twin.fit import FitSettings, fit_twin
from counterfeed.twin.store import read_meta, read_replicate, write_twin

__all__ = ["TwinLog", "load_twin_log", "twin_log_from_frame", "FitSettings", "fit_twin", "write_twin",
           "read_meta", "read_replicate", "evaluate_twin", "ope_beside", "TwinEffect", "check_twin"]
