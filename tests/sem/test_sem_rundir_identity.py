"""A run directory holds no wall-clock value outside manifest.json: the SEM estimates carry no fit
timings (they go to the estimator's ``timings_``, for the manifest) and the posterior file has no
``created_at`` (or PyMC sampling time), so two runs of one SEM scenario, sharded or not, give the
same bytes in every file but the manifest."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from counterfeed.sem._posterior_file import CLOCK_ATTRS, CLOCK_STATS, without_clock

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "sem_mediation.yaml"
#: the scenario's own mediation model (its analysis entry 1)
MODEL = yaml.safe_load(SCENARIO.read_text())["analysis"][1]["model"]
TIMING_KEYS = ("import_s", "compile_s", "sample_s")


def _idata(created_at: str, sampling_time: float):
    import arviz as az

    rng = np.random.default_rng(0)
    clock = {"created_at": created_at, "arviz_version": "x", "sampling_time": sampling_time}
    post = xr.Dataset({"params": (("chain", "draw", "param"), rng.normal(size=(2, 5, 3)))},
                      coords={"param": ["a", "b", "c"]}, attrs=dict(clock))
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, 5), bool)),
                        **{k: (("chain", "draw"), rng.random((2, 5)) + sampling_time) for k in CLOCK_STATS}},
                       attrs=dict(clock))
    return az.InferenceData(posterior=post, sample_stats=stats, warmup_posterior=post.copy(), attrs=dict(clock))


def test_without_clock_leaves_out_every_clock_value_and_keeps_the_rest(tmp_path):
    idata = _idata("2026-01-01T00:00:00", 1.5)
    clean = without_clock(idata)
    assert set(clean.groups()) == set(idata.groups())
    for g in clean.groups():
        ds = getattr(clean, g)
        assert not set(CLOCK_ATTRS) & set(ds.attrs) and ds.attrs["arviz_version"] == "x", g
        assert not set(CLOCK_STATS) & set(ds.variables), g
    assert "diverging" in clean.sample_stats and "created_at" not in clean.attrs
    np.testing.assert_array_equal(clean.posterior["params"].values, idata.posterior["params"].values)
    # idata itself is left as it was
    assert idata.posterior.attrs["created_at"] == "2026-01-01T00:00:00"
    assert set(CLOCK_STATS) <= set(idata.sample_stats.variables)
    # the same draws written at other times, after other sampling times: the same bytes
    a = without_clock(idata).to_netcdf(str(tmp_path / "a.nc"))
    b = without_clock(_idata("2027-06-30T12:34:56", 99.0)).to_netcdf(str(tmp_path / "b.nc"))
    assert Path(a).read_bytes() == Path(b).read_bytes()


@pytest.mark.slow
def test_sem_estimates_carry_no_timings_and_the_posterior_file_is_reproducible(tmp_path):
    """The estimator (2 chains x 200 draws on synthetic data) twice: the same estimates, diagnostics
    and posterior bytes; its timings are in ``timings_``."""
    from counterfeed.plugins.estimators.sem import BayesianSEM
    from counterfeed.testing.fixtures import make_analysis_data

    est = BayesianSEM(model="clicks ~ b*treatment\ntotal := b", outcome="clicks", draws=200, tune=200, chains=2)
    runs = []
    for name in ("one", "two"):
        data = make_analysis_data(300, seed=3)
        data.output_dir = tmp_path / name
        data.output_dir.mkdir()
        runs.append((est.estimate(data), dict(est.timings_), (data.output_dir / "posterior-sem-treatment.nc")
                     .read_bytes()))
    (first, timings, post1), (second, timings2, post2) = runs
    assert [e.to_dict() for e in first] == [e.to_dict() for e in second]
    for e in first:
        assert not {"compile_s", "sample_s", "import_s"} & set(e.diagnostics)
    assert set(timings) == {f"treatment_{k}" for k in TIMING_KEYS} == set(timings2)
    assert all(v >= 0 for v in timings.values()) and timings["treatment_sample_s"] > 0
    assert post1 == post2


@pytest.mark.slow
def test_two_runs_of_a_sem_scenario_differ_only_in_the_manifest(tmp_path):
    """sem_mediation, small (400 users, 1 + 3 days, 2 chains x 200 draws, no report: the report shows
    the manifest's timings), unsharded and with 2 in-process shards."""
    from counterfeed.core.runner import run
    from counterfeed.core.scenario import load_scenario

    sc = load_scenario(SCENARIO).with_overrides({
        "population.users": 400, "experiment.pre_period": "1d", "experiment.duration": "3d",
        "analysis": [{"estimator": "diff-in-means", "relative": False},
                     {"estimator": "sem", "outcome": "retained", "model": MODEL, "draws": 200, "tune": 200,
                      "chains": 2}],
        "output.report": False})
    one = run(sc, output_dir=tmp_path / "one", workers=1).run_dir
    two = run(sc, output_dir=tmp_path / "two", workers=1, shards=2, scheduler="in-process").run_dir
    files = sorted(p.relative_to(one) for p in one.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(two) for p in two.rglob("*") if p.is_file())
    assert Path("posterior-sem-treatment.nc") in files and Path("estimates.json") in files
    differ = [str(f) for f in files if f.name != "manifest.json" and (one / f).read_bytes() != (two / f).read_bytes()]
    assert differ == []
    text = (one / "estimates.json").read_text() + (one / "estimates.csv").read_text()
    assert "compile_s" not in text and "sample_s" not in text
    assert b"created_at" not in (one / "posterior-sem-treatment.nc").read_bytes()
    import json

    timings = json.loads((one / "manifest.json").read_text())["timings"]  # where the fit's seconds went
    assert timings["analysis_1_sem_treatment_sample_s"] > 0.0 and "analysis_1_sem_treatment_compile_s" in timings
