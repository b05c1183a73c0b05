"""Break test 13, A4: the ``sem`` estimator's model checks ran only at estimation, after every world had
been simulated. Each of them is decided by the scenario (the run's outcome columns are its per-user
metrics, ``pre_<metric>`` with a pre-period, ``user``, ``arm``, ``segment`` and the ``treatment``
indicator), so ``validate`` and ``run`` now reject them before simulating, at ``analysis[i].model``,
``analysis[i].outcome`` or ``analysis[i].priors.<name>``, with the words ``estimate`` uses (one function,
``counterfeed.plugins.estimators.sem.checked_sem``, checks for both).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from counterfeed.errors import ModelError
from tests.conftest import SMALL, cli, scenario_file

RATIO = ("a ratio metric (clicks / impressions): it has no value for a user with no impressions, a linear "
         "SEM needs every user's value")


def _write(tmp_path: Path, analysis: dict, **changes) -> Path:
    base = {**SMALL, "output": {"report": False, "dir": str(tmp_path / "runs")},
            "metrics": ["clicks", "impressions", "ctr"],
            "analysis": [{"estimator": "diff-in-means"}, {"estimator": "sem", "method": "advi", **analysis}]}
    return scenario_file(tmp_path / "s.yaml", base, **changes)


def _line(path: Path, text: str) -> int:
    """The line of ``path`` whose text starts with ``text`` (after indentation)."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(text))


CASES = [
    ("unknown_variable", {"model": "clicks ~ a*treatment + b*dwell"}, "model",
     "analysis[1].model: 'dwell' is neither a latent variable (no 'dwell =~ ...') nor a data column; columns "
     "are: user, arm, segment, clicks, pre_clicks, impressions, pre_impressions, ctr, pre_ctr, treatment"),
    ("outcome_not_a_metric", {"outcome": "dwell", "model": "clicks ~ a*treatment"}, "outcome",
     "analysis[1].outcome: sem: outcome 'dwell' is not a metric of this run"),
    ("unparseable_prior", {"model": "clicks ~ a*treatment", "priors": {"a": "Foo(1)"}}, "a:",
     "analysis[1].priors.a: prior for 'a': cannot parse prior 'Foo(1)'; expected e.g. 'normal(0, 1)'"),
    ("single_indicator_latent", {"model": "eng =~ clicks\neng ~ a*treatment"}, "model",
     "analysis[1].model: latent 'eng' has a single indicator 'clicks' and is not identified; fix the residual "
     "variance (clicks ~~ 0*clicks) or add indicators"),
    ("ratio_metric", {"model": "ctr ~ a*treatment"}, "model", f"analysis[1].model: sem: 'ctr' is {RATIO}"),
    ("transformed_pre_ratio", {"model": "clicks ~ a*treatment + b*log1p(pre_ctr)"}, "model",
     "analysis[1].model: sem: 'pre_ctr' is the pre-period value of the ratio metric 'ctr'"
     + RATIO.removeprefix("a ratio metric")),
    ("ratio_outcome", {"outcome": "ctr", "model": "clicks ~ a*treatment"}, "outcome",
     f"analysis[1].outcome: sem: outcome 'ctr' is {RATIO}"),
    # the outcome's estimate is the quantity named by `total`: a model without it scored nothing, silently
    ("total_not_defined", {"outcome": "clicks", "model": "clicks ~ a*treatment"}, "- estimator: sem",
     "analysis[1].total: sem: outcome 'clicks' is scored by the quantity 'total', which the model does not "
     "define (its defined quantities and labels: a)"),
    ("total_names_no_label", {"outcome": "clicks", "model": "clicks ~ a*treatment\nt := a", "total": "tot"},
     "total:", "analysis[1].total: sem: outcome 'clicks' is scored by the quantity 'tot', which the model "
     "does not define (its defined quantities and labels: t, a)"),
]


@pytest.mark.parametrize("analysis, key, message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_sem_model_problem_is_rejected_before_simulating(tmp_path, capsys, analysis, key, message):
    path = _write(tmp_path, analysis)
    line = _line(path, key)
    for verb in ("validate", "run"):
        t0 = time.perf_counter()
        code, out, err = cli(capsys, verb, path, *(["--quiet", "--no-report", "--out", str(tmp_path / "out")]
                                                   if verb == "run" else []))
        assert code == 2, (verb, out, err)
        assert f"{path}:{line}: {message}" in err, (verb, err)
        assert len(err.strip().splitlines()) == 1, err  # one message
        assert time.perf_counter() - t0 < 30, verb  # no simulation, no sampling
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()  # nothing written


def test_the_columns_follow_the_scenario(tmp_path, capsys):
    """No pre-period: no ``pre_`` columns; a ratio's numerator and denominator are columns even when only
    the ratio is listed (the run computes them)."""
    path = _write(tmp_path, {"model": "clicks ~ a*treatment + b*pre_clicks"}, **{"experiment.pre_period": "0d"})
    code, _, err = cli(capsys, "validate", path)
    assert code == 2 and (f"{path}:{_line(path, 'model')}: analysis[1].model: 'pre_clicks' is neither a latent "
                          "variable (no 'pre_clicks =~ ...') nor a data column; columns are: user, arm, segment, "
                          "clicks, impressions, ctr, treatment") in err, err
    path = _write(tmp_path, {"outcome": "clicks", "model": "clicks ~ a*treatment + b*log1p(impressions)\ntotal := a"},
                  metrics=["ctr"])
    code, out, err = cli(capsys, "validate", path)
    assert code == 0 and out.startswith("ok:"), err


def test_the_mediation_scenario_and_a_prior_on_a_path_still_validate(tmp_path, capsys):
    code, out, err = cli(capsys, "validate", "scenarios/sem_mediation.yaml")
    assert code == 0 and out.startswith("ok:"), err
    path = _write(tmp_path, {"outcome": "clicks", "model": "clicks ~ a*treatment + b*pre_clicks\ntotal := a",
                             "priors": {"a": "normal(0, 2)", "clicks ~~ clicks": "halfnormal(1)"}})
    code, out, err = cli(capsys, "validate", path)
    assert code == 0 and out.startswith("ok:"), err


def test_the_second_of_two_priors_is_the_one_named(tmp_path, capsys):
    path = _write(tmp_path, {"model": "clicks ~ a*treatment + b*pre_clicks",
                             "priors": {"a": "normal(0, 1)", "b": "halfnormal(-1)"}})
    code, _, err = cli(capsys, "validate", path)
    assert code == 2 and f"{path}:{_line(path, 'b:')}: analysis[1].priors.b: prior for 'b': invalid arguments" in err, err


@pytest.mark.parametrize("model, message", [
    ("ctr ~ a*treatment", "sem: 'ctr' is " + RATIO),
    ("clicks ~ a*treatment + b*dwell", "'dwell' is neither a latent variable (no 'dwell =~ ...') nor a data column; "
     "columns are: user, arm, segment, clicks, "),
])
def test_estimate_raises_the_same_message_before_fitting(model, message):
    """The same check at estimation (a data set built without a scenario), before any sampling."""
    from counterfeed.plugins.estimators.sem import BayesianSEM
    from counterfeed.testing.fixtures import make_analysis_data

    data = make_analysis_data(120, seed=1)
    est = BayesianSEM(model=model, method="advi", draws=10, tune=10, chains=1)
    t0 = time.perf_counter()
    with pytest.raises(ModelError, match=re.escape(message)):
        est.estimate(data)
    assert time.perf_counter() - t0 < 10
