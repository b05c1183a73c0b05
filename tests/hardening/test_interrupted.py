"""Interrupted runs never leave a directory that looks finished; output-directory failures (not a
directory, file too large / disk full) are one clear message with exit code 2 and nothing published.

Tests run as root here, so a read-only directory would still be writable: the permission case uses an
output path *under a regular file* (fails with ENOTDIR for root too), and the disk-full case caps the
child's file size with RLIMIT_FSIZE (writes then fail with EFBIG, as they would with ENOSPC)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from counterfeed.core.results import RunResult
from counterfeed.core.runner import run
from counterfeed.errors import DataError
from tests.conftest import SMALL, small_scenario

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _write(tmp_path: Path, doc: dict) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def _finished_looking(out: Path) -> list[Path]:
    """Entries that a reader could take for a finished run."""
    bad = [p for p in out.iterdir() if not p.name.startswith(".")]
    bad += [m for m in out.rglob("manifest.json") if not any(part.startswith(".") for part in m.relative_to(out).parts)]
    return bad


# Big enough to take many seconds (it is interrupted long before it ends).
BIG = {**SMALL, "name": "big", "population": {"users": 40000, "dimensions": 8},
       "experiment": {**SMALL["experiment"], "duration": "14d", "pre_period": "2d"}}


def _start_and_interrupt(tmp_path: Path, out: Path, sig: int, workers: int = 1,
                         pid: list[int] | None = None, ready=None) -> tuple[int, str]:
    """Start a big run, wait until its hidden temporary directory exists (and ``ready(pid)`` holds,
    when given), send ``sig`` midway (the run's pid is appended to ``pid`` when given)."""
    proc = subprocess.Popen([sys.executable, "-m", "counterfeed", "run", str(_write(tmp_path, BIG)), "--out",
                             str(out), "--quiet", "--workers", str(workers)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=ENV)
    if pid is not None:
        pid.append(proc.pid)
    try:
        deadline = time.monotonic() + 120
        tmp_dirs: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            tmp_dirs = list(out.glob(".big.tmp-*")) if out.exists() else []
            if tmp_dirs and (ready is None or ready(proc.pid)):
                break
            time.sleep(0.05)
        assert tmp_dirs, f"the run never created its hidden temporary directory: {proc.poll()} " \
                         f"{proc.stderr.read().decode() if proc.poll() is not None else ''}"
        time.sleep(0.5)  # midway: the worlds are being simulated
        assert proc.poll() is None, "the run finished before it could be interrupted; make it bigger"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err.decode()


def test_ctrl_c_midway_removes_the_temporary_directory(tmp_path):
    out = tmp_path / "out"
    code, err = _start_and_interrupt(tmp_path, out, signal.SIGINT)
    assert code == 130, err
    assert err.strip().splitlines() == ["Interrupted; nothing was published."], err
    assert not out.exists()  # the --out folder the run created is removed with its temporary directory


def _ours(root: str, pid: int) -> list[Path]:
    """The result directories the run with ``pid`` made (other runs on the machine may make theirs)."""
    return list(Path(root).glob(f"counterfeed-results-{pid}-*")) if Path(root).is_dir() else []


def test_sigterm_midway_with_worker_processes_stops_them_and_leaves_nothing(tmp_path):
    """``kill``/``timeout`` send SIGTERM: handled as Ctrl-C (exit 143), the worker processes stop at
    once, nothing is published and no shared-memory result directory is left (tester s10 #2, #6)."""
    import tempfile

    out = tmp_path / "out"
    pid: list[int] = []
    start = time.monotonic()
    roots = ("/dev/shm", tempfile.gettempdir())
    pool_started = lambda p: any(_ours(r, p) for r in roots)  # noqa: E731 - the workers have forked
    code, err = _start_and_interrupt(tmp_path, out, signal.SIGTERM, workers=2, pid=pid, ready=pool_started)
    assert code == 143, err
    assert err.strip().splitlines() == ["Terminated; nothing was published."], err
    assert time.monotonic() - start < 60  # not after the 40,000-user worlds ran to their end
    assert not out.exists()  # nor the --out folder it created
    assert not [d for r in roots for d in _ours(r, pid[0])]


def test_sigkill_midway_leaves_no_finished_looking_directory(tmp_path):
    out = tmp_path / "out"
    code, _ = _start_and_interrupt(tmp_path, out, signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert _finished_looking(out) == []
    leftover = [p for p in out.iterdir()]
    assert all(p.name.startswith(".big.tmp-") for p in leftover) and leftover
    with pytest.raises(DataError, match="not a finished counterfeed run directory"):
        RunResult.load(leftover[0])
    # The next run into the same directory is unaffected and complete.
    sc = small_scenario(**{"name": "big", "population.users": 100, "experiment.duration": "1d"})
    result = run(sc, output_dir=out, workers=1)
    assert result.run_dir.parent == out and not result.run_dir.name.startswith(".")
    assert (result.run_dir / "manifest.json").is_file()
    assert RunResult.load(result.run_dir).outcomes.equals(result.outcomes)
    finished = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert finished == [result.run_dir]


def _cli(args, **kw):
    return subprocess.run([sys.executable, "-m", "counterfeed", *args], capture_output=True, text=True,
                          timeout=300, env=ENV, **kw)


def test_output_dir_under_a_regular_file_is_one_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    doc = {**SMALL, "population": {"users": 80, "dimensions": 4}}
    r = _cli(["run", str(_write(tmp_path, doc)), "--out", str(blocker / "sub"), "--quiet"])
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    # the command checks --out before simulating (validate does the same)
    assert lines[0] == f"Error: --out: '{blocker}' is a file, expected a directory (or a path to create) for the " \
                       "run directories", lines[0]
    assert blocker.read_text() == "not a directory"
    # the Python API finds it where it creates the run directory: one OutputError, nothing written
    from counterfeed.core.runner import run
    from counterfeed.errors import OutputError

    with pytest.raises(OutputError, match=r"cannot create the run directory .*sub"):
        run(_write(tmp_path, doc), output_dir=blocker / "sub", quiet=True, workers=1)
    assert blocker.read_text() == "not a directory"


def _small_files():
    # A file-size cap that the run directory's Parquet files exceed (they are tens of kB), so a
    # write fails with EFBIG -- what a full disk looks like to the writer. SIGXFSZ would kill the
    # process first; ignoring it turns the signal into the error.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def test_disk_full_while_writing_is_one_clear_error_and_nothing_published(tmp_path):
    doc = {**SMALL, "population": {"users": 300, "dimensions": 8}}
    out = tmp_path / "out"
    r = _cli(["run", str(_write(tmp_path, doc)), "--out", str(out), "--quiet", "--workers", "1"],
             preexec_fn=_small_files)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.strip().splitlines() if not ln.startswith("note: ")]  # notes on the scenario aside
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "cannot write the run directory" in lines[0] and "File too large" in lines[0], lines[0]
    assert not out.exists()  # the partial temporary directory was removed, and the --out folder the run created


def test_a_swallowed_ctrl_c_still_publishes_nothing(tmp_path):
    """An interrupt dropped on its way up (as numba's ctypes cache callback drops one, printing
    'Exception ignored on calling ctypes callback function') must still stop the run: the next
    serving window or the publish step raises it, and nothing is published."""
    from counterfeed.core import interrupts

    previous = signal.getsignal(signal.SIGINT)
    interrupts.install()
    try:
        try:  # what a C callback does with the KeyboardInterrupt: print it and carry on
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
        except KeyboardInterrupt:
            pass
        assert interrupts.received()
        sc = small_scenario(**{"population.users": 60, "experiment.duration": "1d"})
        out = tmp_path / "out"
        with pytest.raises(KeyboardInterrupt):
            run(sc, output_dir=out, workers=1)
        assert not out.exists() or list(out.iterdir()) == []
    finally:
        interrupts.reset()
        signal.signal(signal.SIGINT, previous)
    # Once reset, runs publish again.
    result = run(small_scenario(**{"population.users": 60, "experiment.duration": "1d"}),
                 output_dir=tmp_path / "again", workers=1)
    assert (result.run_dir / "manifest.json").is_file()


def test_a_dropped_ctrl_c_prints_no_exception_ignored_traceback():
    """The CLI's one line is the whole story: the 'Exception ignored' report Python prints for a
    KeyboardInterrupt dropped by a C callback is silenced (other unraisable errors still print)."""
    code = ("import ctypes, os, signal, sys\n"
            "from counterfeed.core import interrupts\n"
            "interrupts.install()\n"
            "CB = ctypes.CFUNCTYPE(None)\n"
            "def cb():\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    for _ in range(1000): pass\n"
            "f = CB(cb); f()\n"
            "print('dropped', interrupts.received())\n"
            "def bad():\n"
            "    raise ValueError('still reported')\n"
            "g = CB(bad); g()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.stdout.strip() == "dropped True", r.stdout + r.stderr
    assert "KeyboardInterrupt" not in r.stderr, r.stderr
    assert "still reported" in r.stderr, r.stderr


def test_a_sigint_during_the_shutdown_cannot_turn_exit_130_into_death_by_signal():
    """Once the CLI has handled an interrupt it ignores SIGINT: under load the ctrl-c test above saw
    the one line printed and then exit -2 (killed by SIGINT) instead of 130, i.e. a SIGINT arriving
    after Python's finalization restored the default disposition. A second Ctrl-C while the process
    shuts down is the same case."""
    code = ("import atexit, os, signal, time\n"
            "from counterfeed import cli\n"
            "@cli.cli.command('boom')\n"
            "def boom():\n"
            "    raise KeyboardInterrupt\n"
            "def late():\n"
            "    print('ignored', signal.getsignal(signal.SIGINT) == signal.SIG_IGN, flush=True)\n"
            "    os.kill(os.getpid(), signal.SIGINT)\n"
            "    time.sleep(0.05)\n"
            "atexit.register(late)\n"
            "cli.main(['boom'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    assert r.stdout.strip() == "ignored True", r.stdout + r.stderr
    assert r.returncode == 130, r.stderr
    assert r.stderr.strip().splitlines() == ["Interrupted; nothing was published."], r.stderr


def test_ctrl_c_during_calibrate_says_the_finished_replications_are_kept(tmp_path):
    """Tester s10 #12: calibrate keeps every finished replication; its interrupt says so."""
    out = tmp_path / "cal"
    proc = subprocess.Popen([sys.executable, "-m", "counterfeed", "calibrate", str(ROOT / "scenarios" / "aa_test.yaml"),
                             "-n", "400", "--set", "population.users=300", "--workers", "2", "--out", str(out),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not list(out.glob("replications/rep-*.json")):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.decode().strip().splitlines()[-1] == (
        "Interrupted; the replications that finished are kept: rerun the same command to resume "
        "(--fresh starts over).")
    assert list((out / "replications").glob("rep-*.json"))


def test_a_discarded_run_removes_the_folders_it_created_and_only_those(tmp_path):
    """A run that fails writes nothing: the folders it created above its temporary directory go with
    it when empty; a folder that existed before, or that another run wrote into meanwhile, stays."""
    from counterfeed.core.rundir import RunDirectory

    rd = RunDirectory(tmp_path / "a" / "b" / "c", "x")
    rd.create()
    rd.discard()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    rd = RunDirectory(tmp_path / "kept" / "new" / "deeper", "x")
    rd.create()
    (tmp_path / "kept" / "new" / "other-run.txt").write_text("written meanwhile")
    rd.discard()
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "kept", "kept/new", "kept/new/other-run.txt"]
    rd = RunDirectory(tmp_path / "kept", "x")  # an existing --out folder: never removed
    rd.create()
    rd.discard()
    assert (tmp_path / "kept").is_dir()


def test_a_held_interrupt_lets_the_step_finish_then_raises():
    """``interrupts.held()``: a SIGINT or SIGTERM during the block is recorded and raised after it
    (a local Dask cluster closed halfway was closed again at exit, 10 s after "Interrupted"); a
    second one raises at once, so a step that hangs can still be left."""
    from counterfeed.core import interrupts

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()
    try:
        finished = []
        with pytest.raises(KeyboardInterrupt):
            with interrupts.held():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # (the handler runs at the next bytecode)
                finished.append(True)
        assert finished == [True] and interrupts.received() and interrupts.exit_code() == 130
        interrupts.reset()
        with pytest.raises(KeyboardInterrupt):
            with interrupts.held():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                finished.append("not reached")
        assert finished == [True] and interrupts.exit_code() == 143
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # the handlers are restored
        with interrupts.held():  # nothing received: nothing raised
            finished.append(2)
        assert finished == [True, 2]
    finally:
        interrupts.reset()
        for sig, handler in saved.items():  # this process's later children must not inherit them
            signal.signal(sig, handler)


def test_a_worker_signalled_before_its_set_up_ends_as_its_own_process(monkeypatch):
    """A pool worker or figure helper is forked with SIGINT and SIGTERM blocked
    (``pool_transport.forking_workers``) until ``worker_start`` has set its own dispositions: a
    ``terminate()`` that arrives first ends the child at once instead of running the parent's
    handler there (which unwound the parent's copied stack in the child: pytest's worker reported
    itself interrupted)."""
    import multiprocessing

    from counterfeed.core import interrupts
    from counterfeed.core.pool_transport import forking_workers

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    interrupts.install()  # the CLI's handlers, which raise KeyboardInterrupt
    try:
        ctx = multiprocessing.get_context("fork")
        proc = ctx.Process(target=_slow_set_up_then_work, daemon=True)
        with forking_workers():
            proc.start()
        assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # unblocked here again
        proc.terminate()  # before the child's set-up (it sleeps 0.5 s first)
        proc.join(10)
        assert proc.exitcode == -signal.SIGTERM  # died by the signal, after worker_start: exit code 3 not reached
    finally:
        interrupts.reset()
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _slow_set_up_then_work() -> None:
    from counterfeed.core.pool_transport import worker_start

    time.sleep(0.5)
    worker_start(os.getppid())
    time.sleep(5)
    os._exit(3)
