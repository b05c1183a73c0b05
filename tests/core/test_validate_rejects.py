"""Whatever ``run`` rejects, ``validate`` rejects first, with the same located message (issue 14,
item 11; issue 19): the tester's inputs (tests/data/run_rejects/) that used to pass ``validate``
and fail in ``run`` after simulating."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from counterfeed.cli import main

DATA = Path(__file__).resolve().parent.parent / "data" / "run_rejects"

#: input -> (line, field, a fragment of the message)
CASES = {
    "zw4": (13, "analysis[1]", "cuped needs a pre-period"),
    "zw2": (13, "analysis[1]", "the scenario has no ratio metrics"),
    "ope_bogus": (24, "analysis[0]", "unknown OPE estimator 'bogus'"),
    "ope_nopre": (24, "analysis[0]", "fit_on: pre_period needs a pre-period"),
    "ope_tt": (16, "experiment.arms.treatment.recommender", "needs a catalog with text"),
    "mmr_stoch": (8, "experiment.arms.b", "base 'popularity' is randomized"),
    "mmr_rand": (8, "experiment.arms.b", "base 'random' is randomized"),
    "ph": (13, "experiment.phases[0].metric", "'coverage' is population-level"),
    "alloc": (11, "experiment.allocation.metric", "'exposure-gini' is population-level"),
    "mmr_bad2": (11, "experiment.arms.b.base_options.bogus", "unknown field 'bogus'"),
}


def _cli(capsys, *args: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    return int(exc.value.code), capsys.readouterr().err


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_rejects_with_a_located_message(name, here, capsys):
    line, field, fragment = CASES[name]
    path = shutil.copy(DATA / f"{name}.yaml", here / f"{name}.yaml")
    rc, err = _cli(capsys, "validate", str(path))
    assert rc == 2, err
    assert f"{name}.yaml:{line}: {field}: " in err and fragment in err, err


@pytest.mark.parametrize("name", sorted(CASES))
def test_run_gives_validates_message_before_simulating(name, here, capsys):
    path = shutil.copy(DATA / f"{name}.yaml", here / f"{name}.yaml")
    rc_v, err_v = _cli(capsys, "validate", str(path))
    rc_r, err_r = _cli(capsys, "run", str(path), "--quiet")
    assert rc_r == rc_v == 2
    first = lambda err: re.search(r"Error: .*", err).group(0)  # noqa: E731
    assert first(err_r) == first(err_v)
    assert not list(here.glob("runs/*")), "run wrote output"


def test_validate_lists_schema_and_plugin_option_problems_in_one_pass(here, capsys):
    """nanopt.yaml has six problems; validate used to show two (schema) and reveal four (plugin
    options) only after those were fixed, and said "less than 1 (got nan)" for NaN (tester #15)."""
    path = shutil.copy(DATA / "nanopt.yaml", here / "nanopt.yaml")
    rc, err = _cli(capsys, "validate", str(path))
    assert rc == 2
    for line, field, message in [(3, "population.heterogeneity", "must be finite (got nan)"),
                                 (8, "experiment.split", "shares must be between 0 and 1"),
                                 (4, "catalog.quality_sd", "must be finite (got inf)"),
                                 (5, "user_model.visit_rate", "less than or equal to 1000"),
                                 (5, "user_model.churn_rate", "must be finite (got nan)"),
                                 (7, "experiment.arms.b.diversity", "must be finite (got nan)")]:
        assert f"nanopt.yaml:{line}: {field}: " in err and message in err, (field, err)
    assert "less than 1 (got nan)" not in err
