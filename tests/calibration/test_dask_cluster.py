"""A real Dask scheduler and worker on 127.0.0.1 (subprocesses) run a calibration via --scheduler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from counterfeed.calibration.cli import calibrate_command


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def dask_cluster(tmp_path: Path, subprocess_env):
    """Start ``dask scheduler`` and one ``dask worker --nthreads 1``; always shut both down."""
    sched_file = tmp_path / "scheduler.json"
    procs: list[subprocess.Popen] = []
    logs = [open(tmp_path / "scheduler.log", "wb"), open(tmp_path / "worker.log", "wb")]
    try:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(sched_file)],
            env=subprocess_env, stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 60
        while not sched_file.exists() and time.monotonic() < deadline:
            assert procs[0].poll() is None, (tmp_path / "scheduler.log").read_text()
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"],
            env=subprocess_env, stdout=logs[1], stderr=subprocess.STDOUT, start_new_session=True))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for fh in logs:
            fh.close()


@pytest.mark.slow  # ~30 s: two dask processes start and import the engine
def test_calibration_on_an_external_dask_cluster_matches_local(dask_cluster, tiny_yaml, tmp_path):
    dask_out, local_out = tmp_path / "dask", tmp_path / "local"
    r = CliRunner().invoke(calibrate_command, [str(tiny_yaml), "-n", "3", "--scheduler", dask_cluster,
                                               "--out", str(dask_out), "--json"])
    assert r.exit_code == 0, r.output
    via_dask = json.loads(r.output)
    r = CliRunner().invoke(calibrate_command, [str(tiny_yaml), "-n", "3", "--executor", "local",
                                               "--workers", "2", "--out", str(local_out), "--json"])
    assert r.exit_code == 0, r.output
    via_local = json.loads(r.output)
    assert via_dask["completed"] == via_local["completed"] == 3
    assert via_dask["summary"] == via_local["summary"]  # identical numbers, not just close
    pids = {json.loads(p.read_text())["pid"] for p in (dask_out / "replications").glob("rep-*.json")}
    assert os.getpid() not in pids  # computed by the external worker, not in this process
