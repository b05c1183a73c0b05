"""Same scenario + seed -> identical outcomes, events, truth and estimates: across reruns, across
processes (Parquet files of two `counterfeed run` subprocesses), and across executors (workers=1 vs a
local process pool). The Dask executor's equality with the local one is tested by the calibration
suite (tests/calibration/test_executors.py::test_dask_local_cluster_gives_the_same_results and the
slow tests/calibration/test_dask_cluster.py); MCMC seeding is checked here on the SEM engine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from counterfeed.core.runner import run
from tests.conftest import SMALL, small_scenario

ROOT = Path(__file__).resolve().parents[2]


def _frames(result):
    est = result.estimates_frame()
    events = {w: (pd.DataFrame(e.sessions), pd.DataFrame(e.impressions.to_dict()) if e.impressions is not None else None)
              for w, e in (result.events or {}).items()}
    return result.outcomes, result.truth, result.timeseries, est, events


def _assert_same(a, b):
    fa, fb = _frames(a), _frames(b)
    for x, y in zip(fa[:4], fb[:4]):
        pd.testing.assert_frame_equal(x, y, check_exact=True)
    assert fa[4].keys() == fb[4].keys()
    for w in fa[4]:
        for x, y in zip(fa[4][w], fb[4][w]):
            if x is None:
                assert y is None
            else:
                pd.testing.assert_frame_equal(x, y, check_exact=True)
    assert a.srm == b.srm


@pytest.fixture(scope="module")
def scenario():
    return small_scenario(**{"population.users": 200, "experiment.duration": "2d", "experiment.pre_period": "1d",
                             "analysis": [{"estimator": "diff-in-means"}, {"estimator": "cuped", "metrics": ["clicks"]}]})


@pytest.fixture(scope="module")
def serial(scenario):
    return run(scenario, write=False, workers=1, keep_events=True)


def test_rerun_in_process_is_identical(scenario, serial):
    again = run(scenario, write=False, workers=1, keep_events=True)
    _assert_same(serial, again)
    assert len(serial.estimates) > 0 and serial.outcomes.shape[0] == 3 * 200


def test_local_process_pool_matches_serial(scenario, serial):
    pooled = run(scenario, write=False, workers=2, keep_events=True)
    _assert_same(serial, pooled)


def test_different_seed_differs(scenario, serial):
    other = run(scenario.with_overrides({"seed": scenario.seed + 1}), write=False, workers=1)
    assert not serial.outcomes.equals(other.outcomes)


def test_two_processes_write_identical_parquet(tmp_path):
    doc = {**SMALL, "population": {"users": 150, "dimensions": 8},
           "experiment": {**SMALL["experiment"], "duration": "2d", "pre_period": "1d"}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    dirs, procs = [], []
    for i in range(2):  # the two processes run at the same time (independent; halves the wall time)
        procs.append(subprocess.Popen([sys.executable, "-m", "counterfeed", "run", str(path), "--out",
                                       str(tmp_path / f"out{i}"), "--quiet", "--workers", "1"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "PYTHONPATH": str(ROOT)}))
    for i, proc in enumerate(procs):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        (run_dir,) = list((tmp_path / f"out{i}").iterdir())
        dirs.append(run_dir)
    files = sorted(p.relative_to(dirs[0]) for p in dirs[0].rglob("*.parquet"))
    assert {"outcomes.parquet", "truth.parquet", "timeseries.parquet"} <= {str(f) for f in files}
    assert any(str(f).startswith("events/") for f in files)
    for f in files:
        a, b = pd.read_parquet(dirs[0] / f), pd.read_parquet(dirs[1] / f)
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        assert (dirs[0] / f).read_bytes() == (dirs[1] / f).read_bytes(), f"{f} differs byte for byte"
    assert (dirs[0] / "estimates.csv").read_text() == (dirs[1] / "estimates.csv").read_text()


@pytest.mark.slow  # ~85 s on the shared 2-core box: PyTensor + nutpie compile the model from scratch
def test_sem_mcmc_with_the_same_seed_gives_identical_draws():
    sem = pytest.importorskip("counterfeed.sem", reason="the SEM engine is not importable")
    rng = np.random.default_rng(1)
    f = rng.normal(size=200)
    df = pd.DataFrame({f"x{i}": f * (0.5 + 0.2 * i) + rng.normal(size=200) for i in range(1, 4)})
    model = "f =~ x1 + x2 + x3"
    kw = dict(draws=40, tune=40, chains=2, seed=7, cores=1)
    a = sem.fit_sem(model, df, **kw)
    b = sem.fit_sem(model, df, **kw)
    pa, pb = a.idata.posterior["params"].values, b.idata.posterior["params"].values
    assert pa.shape[:2] == (2, 40)
    np.testing.assert_array_equal(pa, pb)
    c = sem.fit_sem(model, df, **{**kw, "seed": 8})
    assert not np.array_equal(pa, c.idata.posterior["params"].values)
