"""Break test 14, finding A3: every observational estimator refuses a ratio metric in ``validate``.

``did-staggered``, ``twfe`` and ``iv-2sls`` with ``metrics: [ctr]`` passed ``validate`` and ``run``
refused them only after simulating every world. All observational estimators now share one
``check_metrics`` (``observational._Observational``, on ``_obs_metrics.per_user_metrics``, the
function ``estimate`` uses), so ``validate`` and ``run`` refuse them alike, located at the analysis
entry, before anything is simulated or written. Ratio metrics among the default metrics (no
``metrics:`` option) are skipped as before; only all-ratio defaults are refused.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import cli

ROOT = Path(__file__).resolve().parents[2]
STAGGERED = ROOT / "scenarios" / "staggered_rollout.yaml"
FAST = ["--set", "population.users=300", "--set", "catalog.items=100", "--set", "population.dimensions=8"]
MESSAGE = ("{est}: metric 'ctr' is a ratio metric; observational estimators analyse per-user metrics "
           "(analyse its numerator and denominator instead)")


def _staggered(tmp_path: Path, analysis: list[dict], metrics: list[str]) -> Path:
    sc = yaml.safe_load(STAGGERED.read_text())
    sc["metrics"] = metrics
    sc["analysis"] = analysis
    sc["experiment"].update(duration="4d", pre_period="1d")
    sc["experiment"]["assignment"]["cohorts"] = [{"at": "1d", "share": 0.4}, {"at": "2d", "share": 0.4}]
    path = tmp_path / "stag.yaml"
    path.write_text(yaml.safe_dump(sc, sort_keys=False))
    return path


def _encouragement(tmp_path: Path, analysis: list[dict], metrics: list[str]) -> Path:
    sc = yaml.safe_load(STAGGERED.read_text())
    sc["name"] = "encouragement"
    sc["metrics"] = metrics
    sc["analysis"] = analysis
    sc["experiment"].update(duration="3d", pre_period="1d")
    sc["experiment"]["arms"] = {"control": {"recommender": "popularity"}, "treatment": {"recommender": "random"}}
    sc["experiment"]["assignment"] = {"mechanism": "encouragement"}
    path = tmp_path / "iv.yaml"
    path.write_text(yaml.safe_dump(sc, sort_keys=False))
    return path


def _line(path: Path, text: str) -> int:
    """The 1-based line of the first line of ``path`` that contains ``text``."""
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)


def _both_refuse(capsys, tmp_path: Path, path: Path, message: str) -> None:
    """validate and run exit 2 with ``message`` at ``analysis[0]``, before simulating; run writes nothing."""
    where = f"{path}:{_line(path, '- estimator:')}: analysis[0]: {message}"
    code, out, err = cli(capsys, "validate", path, *FAST)
    assert code == 2, out + err
    assert where in err, err
    out_dir = tmp_path / "out"
    code, out, err = cli(capsys, "run", path, "--quiet", "--no-report", "--out", out_dir, *FAST)
    assert code == 2, out + err
    assert where in err, err
    assert "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.rglob("*")), list(out_dir.rglob("*"))


@pytest.mark.parametrize("est", ["did-staggered", "twfe"])
def test_panel_estimators_refuse_a_named_ratio_metric_in_validate_as_in_run(est, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _staggered(tmp_path, [{"estimator": est, "metrics": ["ctr"]}], ["clicks", "impressions", "ctr"])
    _both_refuse(capsys, tmp_path, path, MESSAGE.format(est=est))


def test_iv_2sls_refuses_a_named_ratio_metric_in_validate_as_in_run(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _encouragement(tmp_path, [{"estimator": "iv-2sls", "metrics": ["ctr"]}], ["clicks", "impressions", "ctr"])
    _both_refuse(capsys, tmp_path, path, MESSAGE.format(est="iv-2sls"))


def test_a_ratio_metric_after_a_per_user_one_is_refused_too(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _encouragement(tmp_path, [{"estimator": "iv-2sls", "metrics": ["clicks", "ctr"]}],
                          ["clicks", "impressions", "ctr"])
    _both_refuse(capsys, tmp_path, path, MESSAGE.format(est="iv-2sls"))


@pytest.mark.parametrize("est", ["did-staggered", "twfe"])
def test_only_ratio_metrics_by_default_are_refused_in_validate_as_in_run(est, capsys, tmp_path, monkeypatch):
    """No ``metrics:`` option and only ratio metrics analysed: the run refused it after simulating."""
    monkeypatch.chdir(tmp_path)
    path = _staggered(tmp_path, [{"estimator": est}], ["ctr"])
    _both_refuse(capsys, tmp_path, path, f"{est}: no per-user (non-ratio) metric to analyse")


def test_every_observational_estimator_shares_the_check():
    from counterfeed.plugins.estimators import observational as obs
    from counterfeed.plugins.estimators._obs_metrics import per_user_metrics

    for cls in (obs.BackdoorRegression, obs.BackdoorIPW, obs.AIPW, obs.BackdoorMatching, obs.InstrumentalVariables,
                obs.StaggeredDiD, obs.TwoWayFixedEffects):
        assert issubclass(cls, obs._Observational), cls
    assert obs.OBSERVATIONAL == tuple(c.name for c in (
        obs.BackdoorRegression, obs.BackdoorIPW, obs.AIPW, obs.BackdoorMatching, obs.InstrumentalVariables,
        obs.StaggeredDiD, obs.TwoWayFixedEffects))

    class Info:
        def __init__(self, kind):
            self.kind = kind

    infos = {"clicks": Info("sum"), "impressions": Info("sum"), "ctr": Info("ratio")}
    assert per_user_metrics(infos, None, "x") == ["clicks", "impressions"]  # default: ratios skipped
    assert per_user_metrics(infos, ["impressions"], "x") == ["impressions"]
    with pytest.raises(Exception, match="metric 'ctr' is a ratio metric"):
        per_user_metrics(infos, ["ctr"], "x")


def test_ratio_metrics_among_the_defaults_are_still_skipped(capsys, tmp_path, monkeypatch):
    """No ``metrics:`` option: the per-user metrics are analysed and ``ctr`` is left out, as before."""
    monkeypatch.chdir(tmp_path)
    path = _staggered(tmp_path, [{"estimator": "twfe"}], ["clicks", "ctr"])
    code, out, err = cli(capsys, "validate", path, *FAST)
    assert code == 0, out + err
    out_dir = tmp_path / "out"
    code, out, err = cli(capsys, "run", path, "--quiet", "--no-report", "--out", out_dir, *FAST)
    assert code == 0, out + err
    import pandas as pd

    (csv,) = out_dir.rglob("estimates.csv")
    rows = pd.read_csv(csv)
    twfe = rows[rows["estimator"] == "twfe"]
    assert set(twfe["metric"]) == {"clicks"}, rows
