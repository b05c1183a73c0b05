"""Break test 14 (sem): A4, an optional sampler package that is missing (``method: pathfinder`` without
pymc-extras) is refused by ``validate`` at ``analysis[i].method``; B1, ``total`` set without ``outcome``
(never read) is refused at ``analysis[i].total``; A6, indicators collinear by construction
(impressions = slate_size x sessions) fail the run with a message naming the columns, at the entry's model.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SMALL, cli, scenario_file


def _write(tmp_path: Path, analysis: dict, **changes) -> Path:
    base = {**SMALL, "output": {"report": False, "dir": str(tmp_path / "runs")},
            "metrics": ["clicks", "impressions", "sessions"],
            "analysis": [{"estimator": "diff-in-means"}, {"estimator": "sem", "method": "advi", **analysis}]}
    return scenario_file(tmp_path / "s.yaml", base, **changes)


def _line(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(text))


def _both_refuse(capsys, tmp_path, path, located):
    for verb in ("validate", "run"):
        t0 = time.perf_counter()
        code, out, err = cli(capsys, verb, path, *(["--quiet", "--no-report", "--out", str(tmp_path / "out")]
                                                   if verb == "run" else []))
        assert code == 2, (verb, out, err)
        assert located in err, (verb, err)
        assert len(err.strip().splitlines()) == 1, err
        assert time.perf_counter() - t0 < 30, verb
    assert not (tmp_path / "out").exists() and not (tmp_path / "runs").exists()


@pytest.mark.skipif(importlib.util.find_spec("pymc_extras") is not None, reason="pymc-extras is installed")
def test_pathfinder_without_pymc_extras_is_refused_at_method(tmp_path, capsys):
    path = _write(tmp_path, {"method": "pathfinder", "model": "clicks ~ a*treatment"})
    _both_refuse(capsys, tmp_path, path,
                 f"{path}:{_line(path, 'method: pathfinder')}: analysis[1].method: sem: method 'pathfinder' needs "
                 "the pymc-extras package, which is not installed; install it (pip install pymc-extras) or use "
                 "another method (")


def test_a_missing_method_package_is_named(monkeypatch):
    from counterfeed.plugins.estimators import sem

    monkeypatch.setattr(sem, "_found", lambda module: module != "nutpie")
    with pytest.raises(sem.SEMOptionError, match="method 'nutpie' needs the nutpie package") as info:
        sem._check_method("nutpie")
    assert info.value.field == "method" and "pymc, advi, fullrank_advi" in str(info.value)
    sem._check_method("advi")  # no optional package


def test_total_without_outcome_is_refused_at_total(tmp_path, capsys):
    path = _write(tmp_path, {"model": "clicks ~ a*treatment", "total": "nope"})
    _both_refuse(capsys, tmp_path, path,
                 f"{path}:{_line(path, 'total:')}: analysis[1].total: sem: total 'nope' is set but outcome is "
                 "not: total names the quantity scored against the outcome metric's true effect")


def test_total_at_its_default_or_with_an_outcome_still_validates(tmp_path, capsys):
    for analysis in ({"model": "clicks ~ a*treatment", "total": "total"},
                     {"model": "clicks ~ a*treatment\nt := a", "outcome": "clicks", "total": "t"}):
        code, out, err = cli(capsys, "validate", _write(tmp_path, analysis))
        assert code == 0 and out.startswith("ok:"), err


def test_singular_message_names_the_collinear_columns():
    from counterfeed.sem.model import singular_message

    rng = np.random.default_rng(0)
    sessions, clicks = rng.poisson(3, 200).astype(float), rng.poisson(2, 200).astype(float)
    X = np.column_stack([clicks, sessions, 5 * sessions])
    msg = singular_message(["clicks", "sessions", "impressions"], np.cov(X.T), 200)
    assert "the columns sessions, impressions are collinear" in msg and "keep only one" in msg, msg
