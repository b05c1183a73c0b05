"""Sharded worlds on a real Dask cluster: a ``dask scheduler`` and two ``dask worker`` processes on
127.0.0.1, started by the test (issue 20)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from counterfeed.core.runner import run
from counterfeed.core.shard import ShardError

sys.path.insert(0, str(Path(__file__).parent))
from sharded_scenario import digest, sharded_scenario as scenario  # noqa: E402

DASK = shutil.which("dask") or str(Path(sys.executable).with_name("dask"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cluster(tmp_path, worker_paths: tuple[str | None, ...] = (None, None)):
    """``(address, workers, stop)``: a scheduler and one single-threaded worker per ``worker_paths`` entry
    (a PYTHONPATH to put first, or None); ``stop()`` stops them all."""
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    logs = open(tmp_path / "cluster.log", "w")
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], stdout=logs, stderr=logs, env=env)]
    workers = [subprocess.Popen([DASK, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                                 "--host", "127.0.0.1", "--local-directory", str(tmp_path / f"w{i}")],
                                stdout=logs, stderr=logs,
                                env=env if path is None else {**env, "PYTHONPATH": path})
               for i, path in enumerate(worker_paths)]
    procs += workers

    def stop() -> None:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        logs.close()

    try:
        from distributed import Client

        with Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(len(workers), timeout=120)
    except BaseException:
        stop()
        raise
    return address, workers, stop


@pytest.fixture
def cluster(tmp_path):
    """``(address, workers)``: a scheduler and two single-threaded workers; all stopped afterwards."""
    address, workers, stop = _start_cluster(tmp_path)
    try:
        yield address, workers
    finally:
        stop()


@pytest.mark.slow
def test_a_run_sharded_on_a_real_cluster_writes_the_local_run_directory(tmp_path, cluster):
    address, _ = cluster
    sc = scenario()
    local = digest(run(sc, output_dir=tmp_path / "local").run_dir)
    remote = digest(run(sc, output_dir=tmp_path / "cluster", shards=2, scheduler=address).run_dir)
    assert remote == local


def _kill_when_it_holds_a_shard(address: str, worker: subprocess.Popen, stop: threading.Event) -> None:
    """SIGKILL ``worker`` as soon as the scheduler reports it holding a shard (an actor's key), so the
    kill lands mid-world however fast the machine is (a fixed delay raced a quick run in CI). Its
    client is not set as dask's default: closed after the run's own client, it would restore
    ``scheduler: dask.distributed`` globally and break later dask users (arviz in the SEM tests)."""
    from distributed import Client

    with Client(address, timeout=60, set_as_default=False) as client:
        addr = next(a for a, pid in client.run(os.getpid).items() if pid == worker.pid)
        while not stop.is_set():
            if client.has_what([addr]).get(addr):
                worker.send_signal(signal.SIGKILL)
                return
            time.sleep(0.05)


@pytest.mark.slow
def test_a_killed_worker_fails_the_run_clearly_and_publishes_nothing(tmp_path, cluster):
    address, workers = cluster
    sc = scenario(users=2000).with_overrides({"experiment.duration": "20d"})
    out = tmp_path / "runs"
    stop = threading.Event()
    killer = threading.Thread(target=_kill_when_it_holds_a_shard, args=(address, workers[1], stop), daemon=True)
    killer.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ShardError, match=r"shard \d on Dask worker tcp://127\.0\.0\.1:\d+ failed.*"
                                             r"nothing was published"):
            run(sc, output_dir=out, shards=2, scheduler=address)
    finally:
        stop.set()
        killer.join(timeout=30)
    assert workers[1].poll() is not None, "the worker was not killed before the run ended"
    assert time.perf_counter() - t0 < 120
    assert not out.exists() or not any(out.iterdir())  # no published (nor temporary) run directory


@pytest.mark.slow
def test_a_worker_running_other_code_is_refused_before_any_shard_runs(tmp_path):
    """A worker started from a copy of counterfeed whose source differs (here by one comment: the same
    behaviour, other code) is refused with exit code 2, naming the worker and the source digests, and
    nothing is published (break test 12: a copy with one changed constant gave other numbers silently)."""
    import counterfeed
    from counterfeed.core.code_identity import CodeMismatch

    copy = tmp_path / "other"
    shutil.copytree(Path(counterfeed.__file__).parent, copy / "counterfeed",
                    ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "counterfeed" / "core" / "simulation.py", "a") as f:
        f.write("\n# another checkout\n")
    address, _, stop = _start_cluster(tmp_path, (str(copy), str(copy)))
    out = tmp_path / "runs"
    refused = r"Dask worker tcp://127\.0\.0\.1:\d+ runs other code than this command: counterfeed's source differs"
    try:
        with pytest.raises(CodeMismatch, match=refused + r" .* in .*other/counterfeed") as err:
            run(scenario(), output_dir=out, shards=2, scheduler=address)
        assert err.value.exit_code == 2
        assert not out.exists() or not any(out.iterdir())
        # the executor of calibrate and sweep on that cluster: every task checks its worker first
        from counterfeed.core.executors import DaskExecutor

        with DaskExecutor(scheduler=address) as ex:
            results = dict(ex.submit_all(abs, [-1, -2, -3]))
        assert sorted(results) == [0, 1, 2]
        assert all(isinstance(r, CodeMismatch) and re.match(refused, str(r)) for r in results.values()), results
    finally:
        stop()


@pytest.mark.slow
def test_the_cluster_tests_leave_dask_default_scheduler_alone():
    """Runs after the two tests above (file order): neither the run's client nor the tests' own
    clients may leave a global ``dask.distributed`` scheduler behind (it failed the SEM tests)."""
    import dask

    assert dask.config.get("scheduler", None) in (None, "threads", "sync", "synchronous")
