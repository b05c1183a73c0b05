"""Break test 14's findings on the ``ope`` and ``offline-ranking`` estimators.

- A2: ``ope`` with ``bootstrap: 1`` passed validate; the run failed after simulating every world ("at
  least 41 are needed"). validate now refuses it at ``analysis[i].bootstrap``, with the level of the entry or
  of the scenario, by the same function the estimation uses (:func:`counterfeed.ope.evaluate.bootstrap_problem`).
- B3: ``ope`` ``folds: 100000`` ran for a minute; folds are bounded (``MAX_FOLDS``), located.
- A5: ``offline-ranking`` ``train_share: 0.001`` / ``0.999`` failed after simulating with messages that did
  not say which option to change; they now name ``train_share``, the counts and the fix (the failure is
  data-dependent, so it stays at estimation), and a too-small held-out set fails before any arm is fitted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import SMALL, cli, scenario_file


def _write(tmp_path: Path, **changes) -> Path:
    base = {**SMALL, "output": {"report": False, "dir": str(tmp_path / "runs")}, "metrics": ["clicks"],
            "analysis": [{"estimator": "diff-in-means"}]}
    return scenario_file(tmp_path / "s.yaml", base, **changes)


def _line(path: Path, key: str) -> int:
    return next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(key + ":"))


def _both_refuse(capsys, tmp_path: Path, path: Path, message: str) -> None:
    for verb in ("validate", "run"):
        code, out, err = cli(capsys, verb, path, "--quiet") if verb == "run" else cli(capsys, verb, path)
        assert code == 2 and message in err, (verb, err)
        assert "ok:" not in out and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("entry, top, need", [
    ({"bootstrap": 1}, {}, 41),
    ({"bootstrap": 40}, {}, 41),
    ({"bootstrap": 30, "level": 0.99}, {}, 201),
    ({"bootstrap": 100}, {"level": 0.99}, 201),  # the scenario's level when the entry has none
])
def test_ope_bootstrap_too_few_is_refused_by_validate(tmp_path, capsys, entry, top, need):
    path = _write(tmp_path, analysis=[{"estimator": "diff-in-means"}, {"estimator": "ope", **entry}], **top)
    level = entry.get("level", top.get("level", 0.95))
    _both_refuse(capsys, tmp_path, path,
                 f"{path}:{_line(path, 'bootstrap')}: analysis[1].bootstrap: {entry['bootstrap']} draws are too "
                 f"few for a {level:g} percentile interval; at least {need} are needed")


@pytest.mark.parametrize("entry, top", [
    ({"bootstrap": 0}, {}),
    ({"bootstrap": 41}, {}),
    ({"bootstrap": 21, "level": 0.9}, {"level": 0.99}),  # the entry's level wins over the scenario's
])
def test_ope_bootstrap_enough_validates(tmp_path, capsys, entry, top):
    path = _write(tmp_path, analysis=[{"estimator": "ope", **entry}], **top)
    code, out, err = cli(capsys, "validate", path)
    assert code == 0 and "ok:" in out, err


def test_validate_and_the_estimation_share_one_rule():
    from counterfeed.ope.evaluate import bootstrap_problem, min_bootstrap_draws

    for level in (0.9, 0.95, 0.99):
        need = min_bootstrap_draws(level)
        assert bootstrap_problem(0, level) is None and bootstrap_problem(need, level) is None
        assert f"at least {need} are needed" in bootstrap_problem(need - 1, level)


def test_ope_folds_are_bounded(tmp_path, capsys):
    from counterfeed.ope.reward import MAX_FOLDS
    from counterfeed.plugins.estimators.ope import MAX_FOLDS as PLUGIN_MAX

    assert PLUGIN_MAX == MAX_FOLDS
    path = _write(tmp_path, analysis=[{"estimator": "ope", "folds": 100_000}])
    _both_refuse(capsys, tmp_path, path, f"{path}:{_line(path, 'folds')}: analysis[0].folds: Input should be "
                                         f"less than or equal to {MAX_FOLDS}")
    code, _, err = cli(capsys, "validate", _write(tmp_path, analysis=[{"estimator": "ope", "folds": MAX_FOLDS}]))
    assert code == 0, err


def test_evaluate_refuses_folds_beyond_the_bound():
    import numpy as np

    from counterfeed.errors import DataError
    from counterfeed.ope import evaluate, from_arrays, target_from_table
    from counterfeed.ope.reward import MAX_FOLDS

    n = 50
    log = from_arrays(round=np.arange(n), item=np.arange(n) % 5, position=np.zeros(n, int),
                      reward=(np.arange(n) % 3 == 0).astype(float), propensity=np.full(n, 0.2))
    import pandas as pd

    target = target_from_table(log, pd.DataFrame({"item": np.arange(5), "position": 0, "prob": 0.2}))
    with pytest.raises(DataError, match=rf"folds must be in \[1, {MAX_FOLDS}\]"):
        evaluate(log, target, ["dr"], folds=MAX_FOLDS + 1)


@pytest.mark.parametrize("share, message", [
    (0.001, "train_share 0.001 splits the log at time"),
    (0.999, "train_share 0.999 "),  # no held-out click, or clicks of fewer than two users
])
def test_offline_train_share_extremes_say_what_to_change(tmp_path, capsys, share, message):
    """Data-dependent, so refused at estimation (after the simulation), but in one line naming the entry,
    the option, the counts and what to change."""
    path = _write(tmp_path, analysis=[{"estimator": "offline-ranking", "train_share": share}],
                  **{"experiment.pre_period": "1d"})
    code, out, err = cli(capsys, "validate", path)
    assert code == 0, err
    code, out, err = cli(capsys, "run", path, "--quiet")
    assert code == 2 and f"analysis[0]: {message}" in err, err
    assert ("raise train_share" if share < 0.5 else "lower train_share") in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "runs").exists()


def test_offline_command_refuses_a_nan_split_time(tmp_path, capsys):
    code, _, err = cli(capsys, "offline", "examples/ope_log.csv", "--policy", "popularity", "--split-time", "nan")
    assert code == 2 and "--split-time" in err and "not a finite number" in err, err


def test_split_log_names_the_callers_option():
    import numpy as np

    from counterfeed.errors import DataError
    from counterfeed.ope import from_arrays
    from counterfeed.offline.evaluate import split_log

    n = 40
    log = from_arrays(round=np.arange(n), item=np.arange(n) % 4, position=np.zeros(n, int),
                      reward=np.ones(n), propensity=np.full(n, 0.25), time=np.arange(n) / 10.0).to_contract_log()
    with pytest.raises(DataError, match="--split-time 100, leaving 40 training impressions and 0 held-out "
                                        "clicks.*use an earlier --split-time"):
        split_log(log, 100.0, names=("--split-time", "--train-share"))
    with pytest.raises(DataError, match="leaving 0 training impressions.*use a later split_time"):
        split_log(log, -1.0)
