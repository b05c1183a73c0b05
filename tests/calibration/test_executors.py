"""Executors: same results whichever runs the tasks; failures come back as values."""

from __future__ import annotations

import pytest

from counterfeed.core.executors import (DaskExecutor, LocalExecutor, SerialExecutor, available_cores,
                                        get_executor)
from counterfeed.errors import CounterfeedError


def square_or_fail(x: int) -> int:
    if x == 3:
        raise ValueError("three is not welcome")
    return x * x


def _collect(ex, tasks):
    out = dict(ex.submit_all(square_or_fail, tasks))
    assert sorted(out) == list(range(len(tasks)))
    return out


def _check(out):
    assert isinstance(out[3], ValueError) and "three" in str(out[3])
    assert {i: v for i, v in out.items() if i != 3} == {i: i * i for i in range(8) if i != 3}


def test_serial_yields_in_order_and_keeps_going_after_a_failure():
    with get_executor("serial") as ex:
        assert isinstance(ex, SerialExecutor)
        order = [i for i, _ in ex.submit_all(square_or_fail, list(range(8)))]
        assert order == list(range(8))
        _check(_collect(ex, list(range(8))))


def test_local_pool_gives_the_same_results():
    with get_executor("local", workers=2) as ex:
        assert isinstance(ex, LocalExecutor) and ex.workers == 2
        _check(_collect(ex, list(range(8))))
        assert list(ex.submit_all(square_or_fail, [])) == []
    with pytest.raises(RuntimeError, match="closed"):
        list(ex.submit_all(square_or_fail, [1]))


def test_local_with_one_worker_is_serial_and_default_uses_affinity():
    assert isinstance(get_executor("local", workers=1), SerialExecutor)
    assert available_cores() >= 1


def test_dask_local_cluster_gives_the_same_results():
    with get_executor("dask", workers=1) as ex:
        assert isinstance(ex, DaskExecutor)
        _check(_collect(ex, list(range(8))))


@pytest.mark.parametrize("kwargs, pattern", [
    ({"kind": "threads"}, r"unknown executor 'threads'; expected one of: serial, local, dask"),
    ({"kind": "serial", "scheduler": "tcp://127.0.0.1:1"}, r"--scheduler needs the dask executor"),
    ({"kind": "local", "workers": 0}, r"workers must be a positive integer, got 0"),
    ({"kind": "dask", "scheduler": "127.0.0.1:8786"}, r"scheduler: expected a Dask scheduler address tcp://HOST:PORT"),
])
def test_bad_executor_arguments(kwargs, pattern):
    with pytest.raises(CounterfeedError, match=pattern):
        get_executor(**kwargs)


def test_unreachable_scheduler_is_a_clear_error():
    # port 9 (discard) on localhost has no Dask scheduler; a short timeout keeps the test fast
    with pytest.raises(CounterfeedError, match=r"cannot connect to the Dask scheduler at tcp://127.0.0.1:9"):
        DaskExecutor(scheduler="tcp://127.0.0.1:9", connect_timeout=0.5)


def _free_port() -> int:
    """A port on localhost where nothing listens (bound, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("address, pattern", [
    ("tcp://127.0.0.1:{port}", r"at tcp://127\.0\.0\.1:\d+: connection refused: nothing listens at "
                               r"127\.0\.0\.1:\d+; is the scheduler running"),
    ("tcp://nonexistent.invalid:8786", r"at tcp://nonexistent\.invalid:8786: cannot resolve host "
                                       r"'nonexistent\.invalid'"),  # RFC 2606: never resolves
])
def test_a_scheduler_that_cannot_answer_fails_at_once_with_the_cause(address, pattern):
    """A refused port or an unresolvable host is said at once, not as a timeout after the Client's 30 s."""
    import time

    start = time.monotonic()
    with pytest.raises(CounterfeedError, match=r"cannot connect to the Dask scheduler " + pattern):
        DaskExecutor(scheduler=address.format(port=_free_port()))  # the default 30 s connect timeout
    assert time.monotonic() - start < 10


# -- results through shared memory, tasks through fork ------------------------------------------------
def _frame_of(n: int):
    import numpy as np
    import pandas as pd

    x = np.arange(n, dtype=np.float64) / 7.0
    return {"n": n, "x": x, "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)),
            "frame": pd.DataFrame({"a": x, "b": np.arange(n), "s": [f"u{i}" for i in range(n)]})}


def test_local_results_with_arrays_come_back_equal_writable_and_leave_no_file():
    import numpy as np
    import pandas as pd

    with get_executor("local", workers=2) as ex:
        dirs = ex._results
        out = dict(ex.submit_all(_frame_of, [10, 100_000, 0]))
        for i, n in enumerate([10, 100_000, 0]):
            want = _frame_of(n)
            assert out[i]["n"] == n
            np.testing.assert_array_equal(out[i]["x"], want["x"])
            np.testing.assert_array_equal(out[i]["fortran"], want["fortran"])
            assert out[i]["fortran"].flags.f_contiguous
            pd.testing.assert_frame_equal(out[i]["frame"], want["frame"])
        out[1]["x"][0] = -1.0  # writable (a private copy-on-write mapping)
        assert out[1]["x"][0] == -1.0
        assert all(not list(__import__("pathlib").Path(d).iterdir()) for d in dirs)  # unlinked at once
    assert not any(__import__("os").path.exists(d) for d in dirs)  # the directories go with the pool


def test_a_result_without_room_anywhere_comes_back_through_the_pipe(monkeypatch):
    import numpy as np

    from counterfeed.core import pool_transport

    class Full:
        f_bavail, f_frsize = 0, 4096

    monkeypatch.setattr(pool_transport.os, "statvfs", lambda path: Full())
    back = pool_transport.hand_back(_frame_of(300_000), ("/nonexistent",))
    assert not isinstance(back, pool_transport.MappedResult)  # the object itself, for the pipe
    sent = pool_transport.hand_back(_frame_of(300_000), ())
    np.testing.assert_array_equal(sent["x"], _frame_of(300_000)["x"])


def _nth_square(task):
    return {"i": task["i"], "big": task["big"][task["i"]] ** 2}


def test_inherited_tasks_reach_the_workers_by_fork_without_pickling():
    import numpy as np

    class Unpicklable:  # a task the pool could not pickle: only fork can hand it over
        def __init__(self, i):
            self.i = i

        def __getitem__(self, key):
            return {"i": self.i, "big": np.arange(10.0)}[key]

        def __reduce__(self):
            raise TypeError("inherited tasks must not be pickled")

    tasks = [Unpicklable(i) for i in range(5)]
    with LocalExecutor(workers=2, inherit=tasks) as ex:
        out = dict(ex.submit_all(_nth_square, tasks))
        assert {i: r["big"] for i, r in out.items()} == {i: float(i * i) for i in range(5)}
        other = dict(ex.submit_all(square_or_fail, [2, 3]))  # other tasks still go by pickle
        assert other[0] == 4 and isinstance(other[1], ValueError)
    with LocalExecutor(workers=2, inherit=tasks) as ex:
        tasks[2] = Unpicklable(99)  # after the fork: the workers work on the list as it was then
        tasks[4] = Unpicklable(20)
        out = dict(ex.submit_all(_nth_square, tasks))
        assert out[2] == {"i": 2, "big": 4.0}  # forked before the change
        assert out[4] == {"i": 4, "big": 16.0}
    tasks[1] = Unpicklable(20)  # big has 10 entries: this task raises
    with LocalExecutor(workers=2, inherit=tasks) as ex:
        out = dict(ex.submit_all(_nth_square, tasks))
        assert isinstance(out[1], IndexError) and out[0] == {"i": 0, "big": 0.0}


def _sleep_or_square(x: int) -> int:
    import time

    if x < 0:
        time.sleep(-x)
    return x * x


def test_two_pools_forked_from_two_threads_each_run_their_own_tasks():
    """Tester s10 #1: run() in threads raced on the inherited tasks of their pools."""
    import threading

    out: dict[int, dict] = {}

    def one(k: int) -> None:
        tasks = [{"i": i, "big": [float(k * 100 + j) for j in range(10)]} for i in range(4)]
        for _ in range(3):
            with LocalExecutor(workers=2, inherit=tasks) as ex:
                got = dict(ex.submit_all(_nth_square, tasks))
            assert {i: r["big"] for i, r in got.items()} == {i: float(k * 100 + i) ** 2 for i in range(4)}
        out[k] = got

    threads = [threading.Thread(target=one, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == [0, 1, 2]


def test_an_interrupt_stops_the_workers_at_once():
    import time

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with LocalExecutor(workers=2) as ex:
            workers = list(ex._workers)
            for _ in ex.submit_all(_sleep_or_square, [3, -60]):
                raise KeyboardInterrupt  # the consumer is interrupted while a task runs for a minute
    assert time.monotonic() - start < 30
    assert workers and not any(p.is_alive() for p in workers)


def test_a_killed_worker_is_one_clear_error():
    import os
    import signal

    with LocalExecutor(workers=1) as ex:
        (pid,) = [p.pid for p in ex._workers]
        results = ex.submit_all(_sleep_or_square, [-60])
        import threading

        threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()
        ((i, res),) = list(results)
    from counterfeed.core.executors import WorkerLost

    assert isinstance(res, WorkerLost) and res.exit_code == 1
    assert "a worker process died while it ran task 0 (killed, or out of memory?)" in str(res)


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_their_parent_and_its_result_directories_are_cleaned_up_later():
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    code = ("import os, signal, sys\n"
            "from counterfeed.core.executors import LocalExecutor\n"
            "ex = LocalExecutor(workers=2)\n"
            "print(' '.join(str(p.pid) for p in ex._workers), *ex._results, flush=True)\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    words = proc.stdout.split()
    pids, dirs = [int(w) for w in words if w.isdigit()], [w for w in words if not w.isdigit()]
    assert len(pids) == 2 and dirs and all(Path(d).is_dir() for d in dirs)

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()

    deadline = time.monotonic() + 20
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(p) for p in pids)  # killed with their parent (PR_SET_PDEATHSIG)
    with LocalExecutor(workers=1):  # the next pool removes the dead run's result directories
        pass
    assert not any(Path(d).exists() for d in dirs)



@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="the fork pool's pipes")
def test_an_interrupt_while_a_result_is_half_written_does_not_hang():
    """A worker terminated while it wrote its result leaves part of a message in the result pipe;
    the pool's manager thread waited for the rest forever and the interrupted run never exited
    (seen once in 16 Ctrl-C's of a quickstart). Here the parent writes such a partial message
    itself: a header announcing 1 MiB, then 100 bytes."""
    import subprocess
    import sys

    code = ("import struct\n"
            "from counterfeed.core.executors import LocalExecutor\n"
            "try:\n"
            "    with LocalExecutor(workers=1) as ex:\n"
            "        ex._pool._result_queue._writer._send(struct.pack('!i', 1 << 20) + b'x' * 100)\n"
            "        import time; time.sleep(0.5)\n"
            "        raise KeyboardInterrupt\n"
            "except KeyboardInterrupt:\n"
            "    print('stopped', flush=True)\n")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("the interrupted pool hung on the half-written result")
    assert proc.returncode == 0 and "stopped" in proc.stdout, proc.stderr[-2000:]


def test_a_pool_never_starts_more_processes_than_tasks():
    """A local pool forks all its workers at once: ``--workers 100000`` for three worlds forked until
    the machine ran out of processes. With the task count known, at most that many start."""
    import multiprocessing

    before = set(multiprocessing.active_children())
    with get_executor("local", workers=100_000, tasks=3) as ex:
        assert ex.workers == 3
        assert len(set(multiprocessing.active_children()) - before) == 3
        assert sorted(ex.submit_all(square_or_fail, [0, 1, 2])) == [(0, 0), (1, 1), (2, 4)]
    with get_executor("local", tasks=1) as ex:  # one task: no pool at all
        assert ex.kind == "serial"
    with pytest.raises(CounterfeedError, match="workers must be a positive integer"):
        get_executor("local", workers=0, tasks=3)


def test_run_and_calibrate_start_a_process_per_task_at_most(tmp_path, monkeypatch):
    """``run --workers 50`` (three worlds) and ``calibrate -n 2 --workers 50`` ask for 3 and 2."""
    from counterfeed.cli import main
    from counterfeed.core import executors, runner
    from tests.conftest import small_scenario

    asked = []
    real = executors.get_executor

    def recording(kind="local", workers=None, scheduler=None, inherit=None, tasks=None):
        ex = real(kind, workers=workers, scheduler=scheduler, inherit=inherit, tasks=tasks)
        asked.append(ex.workers)
        return ex

    monkeypatch.setattr(runner, "get_executor", recording)
    monkeypatch.setattr(executors, "get_executor", recording)
    runner.run(small_scenario(), write=False, workers=50)
    assert asked == [3]
    path = tmp_path / "s.yaml"
    import yaml

    path.write_text(yaml.safe_dump(small_scenario().to_dict()))
    main(["calibrate", str(path), "-n", "2", "--workers", "50", "--out", str(tmp_path / "cal"), "--quiet"])
    assert asked == [3, 2]


def test_local_cluster_workers_ignore_ctrl_c():
    """A terminal's Ctrl-C reaches every process of its group: the worker processes of a local Dask
    cluster ignore it (they printed their own tracebacks), and the run, which takes it, closes them."""
    import os
    import signal
    import time

    with DaskExecutor(workers=1) as ex:
        got = ex.client.run(_pid_and_sigint_ignored)
        assert [ignored for _, ignored in got.values()] == [True]
        for pid, _ in got.values():
            os.kill(pid, signal.SIGINT)
        time.sleep(0.5)
        assert ex.client.run(_pid_and_sigint_ignored) == got  # the same process, alive


def _pid_and_sigint_ignored():
    import os
    import signal

    # ignored, and no longer blocked (the worker began with it blocked: the next test)
    return os.getpid(), (signal.getsignal(signal.SIGINT) == signal.SIG_IGN
                         and signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_processes_spawned_from_a_thread_started_under_the_block_begin_with_sigint_blocked(tmp_path):
    """A local cluster's worker processes are spawned from its event-loop thread and were
    interrupted by a group Ctrl-C while still importing (tracebacks) before their set-up ignored
    SIGINT. Started under ``interrupts.sigint_blocked_for_spawned``, such a thread, and what it
    spawns, keep SIGINT blocked, even when that spawn is the one that starts multiprocessing's
    resource tracker (which unblocks SIGINT in the thread that starts it): checked in a fresh
    interpreter, where no tracker runs yet. The calling thread's mask is restored."""
    import subprocess
    import sys

    code = """
import multiprocessing, signal, sys, threading

def report():  # the spawned child: exit 0 when it began with SIGINT blocked
    sys.exit(0 if signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []) else 1)

def spawn(codes):
    for _ in range(2):  # the first spawn starts the resource tracker, the second comes after it
        p = multiprocessing.get_context("spawn").Process(target=report)
        p.start()
        p.join()
        codes.append(p.exitcode)

if __name__ == "__main__":
    from counterfeed.core.interrupts import sigint_blocked_for_spawned
    codes = []
    with sigint_blocked_for_spawned():
        t = threading.Thread(target=spawn, args=(codes,))
        t.start()
    t.join()
    print(codes, signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
"""
    script = tmp_path / "spawn_under_block.py"  # a file: the spawned children import its functions
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[0,", "0]", "False"]


def test_a_local_shard_cluster_has_a_worker_per_shard_up_to_the_cores():
    from counterfeed.core.shard import open_shards

    cores = available_cores()
    assert open_shards(48).workers == min(48, cores)
    assert open_shards(1).workers == 1
    assert open_shards(8, workers=3).workers == 3
    assert open_shards(2, workers=5).workers == 2
