"""A study that observes a random sample of a larger platform (issue 16's population truth).

The robust intervals (``aipw``'s influence-function variance) are for the population ATE, while a
run's truth is the average over the run's own users. To score them against a population effect that
is simulated rather than modelled, one replication here simulates a **platform** of ``K * n`` users
(``K`` = ``platform``, ``n`` the scenario's ``population.users``), the same scenario otherwise: the
catalog, matrix factorization fitted once on the pre-period of every platform user, the selection
mechanism applied to everyone, the counterfactual worlds (all-treatment, all-control) of every user.
The analyst's data is a uniformly random sample of ``n`` platform users (without replacement, drawn
by ``Keys(seed).numpy_generator("study-sample")``, so keyed by the replication's seed): the
estimators see only those users' outcome rows and covariates. Each estimate is scored against

- the **platform** ATE, ``mean_i (Y_i(all-b) - Y_i(all-c))`` over all ``N = K n`` users (the run's
  own ``difference`` truth; estimator names unchanged), and
- the **sample** ATE, the same over the ``n`` sampled users (estimator ``<name>:vs-sample``).

The sample is a simple random sample of the platform, so ``Var(SATE - PATE_N) = (1 - n/N) S^2 / n``
(the finite-population correction; Cochran 1977, Sampling Techniques, thm 2.2; ``S^2`` the variance
of the platform users' effects). The superpopulation ATE that AIPW's variance targets is ``PATE_N``
plus an error of variance ``S^2 / N``: an interval right for it is too wide for ``PATE_N`` by
``n/N`` of ``S^2 / n`` in variance (``1/K``; 10% with ``K = 10``).

This is benchmark code, not a scenario field: the check needs only the selection design, whose
analysis reads nothing per user but the outcome rows and the covariates (no instrument, panel,
assignment probabilities or event-reading estimator), and it is built from the public stages
(:func:`counterfeed.core.runner.run`, :func:`counterfeed.core.analyse.analysis_data`,
:func:`counterfeed.core.covariates.user_covariates`). :func:`study_data` refuses any other mechanism.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

METRIC = "clicks"
#: mechanisms whose analysis reads no per-user array besides the outcome rows and the covariates
SAMPLED_MECHANISMS = ("selection",)


def study_sample(seed: int, platform_users: int, n: int) -> np.ndarray:
    """(n,) sorted ids of the study's users: a uniform sample without replacement of the platform's."""
    from counterfeed.core.randomness import Keys

    if not 2 <= n <= platform_users:
        raise ValueError(f"a study of {n} users cannot be sampled from a platform of {platform_users}")
    rng = Keys(seed).numpy_generator("study-sample")
    return np.sort(rng.choice(platform_users, size=n, replace=False)).astype(np.int64)


def platform_scenario(scenario: Any, platform: int) -> Any:
    """The scenario of the platform: ``platform`` times the study's users, everything else the same."""
    if platform < 1:
        raise ValueError(f"platform must be >= 1 (times the study's users), got {platform}")
    return scenario.with_overrides({"population.users": int(platform) * int(scenario.population.users)})


def study_data(platform_sc: Any, result: Any, users: np.ndarray) -> tuple[Any, list[Any]]:
    """The analysis data of the sampled ``users`` of a platform run, and the estimators to run on it.

    ``result`` is ``run(platform_sc, keep_events=True)``. Returns (AnalysisData, estimators): the A/B
    world's outcome rows of ``users`` (in user order) and their covariates, computed exactly as a run
    computes them for its own users; no event log (``events`` is None: the A/B world's log holds every
    platform user). Raises ValueError for a mechanism other than selection.
    """
    from counterfeed.core.analyse import analysis_data
    from counterfeed.core.covariates import user_covariates
    from counterfeed.core.experiment import AB_WORLD
    from counterfeed.core.plan import is_population, resolve
    from counterfeed.core.population import build_population
    from counterfeed.core.randomness import Keys

    mech = platform_sc.experiment.assignment.mechanism
    if mech not in SAMPLED_MECHANISMS:
        raise ValueError(f"a sampled study is only built for {SAMPLED_MECHANISMS}, not '{mech}'")
    plan = resolve(platform_sc)
    infos = {n: m.info() for n, m in plan.metrics.items()}
    per_user = [n for n in plan.analysed if not is_population(infos[n])]
    out = result.outcomes
    ab = out[(out["world"] == AB_WORLD) & out["user"].isin(users)].drop(columns="world")
    ab = ab.sort_values("user").reset_index(drop=True)
    events = result.events[AB_WORLD]
    keys = Keys(platform_sc.seed)
    data = analysis_data(platform_sc, plan.metrics, per_user, plan.estimators, ab, events, events.items,
                         None, False, None, {"mechanism": mech})
    data.covariates = user_covariates(events, build_population(platform_sc.population, keys),
                                      float(platform_sc.experiment.pre_period), ab["user"].to_numpy(),
                                      platform_sc.population.features, keys)
    data.events = None  # the platform's whole log: an estimator that reads events is refused, not fed it
    return data, plan.estimators


def replicate_platform(scenario_data: dict, seed: int, platform: int = 10) -> list[dict[str, Any]]:
    """One replication: the platform run, the study's sample analysed, records for calibration.

    Records: every estimate scored against the platform ATE (estimator names unchanged) and against
    the sample ATE (``<name>:vs-sample``); ``aipw``'s sample-ATE interval
    (``diagnostics.sample_interval``) against the sample ATE (``aipw:sample``); and, for the
    ``difference`` of each non-control arm on :data:`METRIC`, ``truth:sampling_variance`` (``S^2/n``
    over the sampled users' effects, what ``observational.population_scores`` reads),
    ``truth:platform_fpc_variance`` (``(1 - n/N) S_N^2 / n`` with ``S_N^2`` over the platform) and
    ``truth:sample_minus_platform`` (``SATE - PATE_N``).
    """
    from counterfeed.core.runner import run
    from counterfeed.core.scenario import Scenario

    study = Scenario.from_dict(scenario_data).with_overrides({"seed": int(seed)})
    sc = platform_scenario(study, platform)
    result = run(sc, write=False, quiet=True, workers=1, keep_events=True)
    return platform_records(sc, result, study_sample(sc.seed, int(sc.population.users), int(study.population.users)))


def platform_records(sc: Any, result: Any, users: np.ndarray) -> list[dict[str, Any]]:
    """:func:`replicate_platform`'s records from the platform run ``result`` of ``sc`` and the sample."""
    from counterfeed.core.analyse import check_estimates
    from counterfeed.core.scoring import score_estimates
    from counterfeed.core.truth_observational import subset_truth

    n = int(users.size)
    data, estimators = study_data(sc, result, users)
    estimates = [e for est in estimators for e in check_estimates(est, est.estimate(data), data.metrics)]
    score_estimates(estimates, result.truth)  # the platform truth (every simulated user)
    infos = dict(data.metrics)
    sample_truth = subset_truth(result.outcomes, list(sc.arms), sc.control, infos, users, "difference")
    records: list[dict[str, Any]] = [e.to_dict() for e in estimates]
    for e in estimates:
        vs = replace(e, estimator=f"{e.estimator}:vs-sample", truth=None, diagnostics=dict(e.diagnostics))
        score_estimates([vs], sample_truth)
        records.append(vs.to_dict())
        sample = e.diagnostics.get("sample_interval")
        if isinstance(sample, dict):
            own = replace(vs, estimator=f"{e.estimator}:sample", lower=sample["lower"], upper=sample["upper"])
            own.score(vs.truth)
            records.append(own.to_dict())
    ut = result.user_truth
    level = estimates[0].level if estimates else sc.level
    for arm, part in ut[ut["metric"] == METRIC].groupby("arm"):
        tau_all = part.sort_values("user")["realised"].to_numpy(dtype=float)
        tau = part[part["user"].isin(users)]["realised"].to_numpy(dtype=float)
        values = {"truth:sampling_variance": np.var(tau, ddof=1) / n,
                  "truth:platform_fpc_variance": (1 - n / tau_all.size) * np.var(tau_all, ddof=1) / n,
                  "truth:sample_minus_platform": tau.mean() - tau_all.mean()}
        for name, v in values.items():
            records.append({"estimator": name, "metric": METRIC, "arm": str(arm), "estimand": "difference",
                            "segment": None, "point": float(v), "lower": float(v), "upper": float(v),
                            "p_value": None, "truth": None, "covered": None, "level": level})
    return records
