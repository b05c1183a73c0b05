"""counterfeed.core.allocators: during a run NumPy asks for no huge pages and Arrow allocates from the
system allocator; both are restored after it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from types import SimpleNamespace

import numpy as np
import pytest

import pyarrow as pa

from counterfeed.core import allocators
from tests.conftest import small_scenario

try:
    from numpy._core import multiarray
except ImportError:  # NumPy 1.x
    from numpy.core import multiarray

get_hint = getattr(multiarray, "_get_madvise_hugepage", None)
pytestmark = pytest.mark.skipif(get_hint is None, reason="this NumPy has no huge page switch")


@pytest.fixture
def hint_on(monkeypatch):
    """NumPy's hint on and Arrow's pool mimalloc (the libraries' defaults), the environment silent."""
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    monkeypatch.delenv("ARROW_DEFAULT_MEMORY_POOL", raising=False)
    if "mimalloc" not in pa.supported_memory_backends():
        pytest.skip("this pyarrow has no mimalloc pool")
    previous, pool = multiarray._set_madvise_hugepage(True), pa.default_memory_pool()
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    yield
    multiarray._set_madvise_hugepage(previous)
    pa.set_memory_pool(pool)


def _pool() -> str:
    return pa.default_memory_pool().backend_name


def test_the_hint_is_off_and_arrow_on_the_system_pool_inside_and_both_restored_after(hint_on):
    with allocators.run_allocators():
        assert get_hint() is False and _pool() == "system"
        with allocators.run_allocators():  # nested: still set, and the inner exit does not restore
            assert get_hint() is False and _pool() == "system"
        assert get_hint() is False and _pool() == "system"
    assert get_hint() is True and _pool() == "mimalloc"


def test_the_hint_is_restored_when_the_block_raises(hint_on):
    with pytest.raises(RuntimeError):
        with allocators.run_allocators():
            raise RuntimeError("a failed run")
    assert get_hint() is True and _pool() == "mimalloc"


def test_an_explicit_environment_setting_is_the_users_choice(hint_on, monkeypatch):
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    with allocators.run_allocators():
        assert get_hint() is True and _pool() == "system"
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "mimalloc")
    with allocators.run_allocators():
        assert get_hint() is True and _pool() == "mimalloc"


def test_process_defaults_fill_in_only_what_the_environment_lacks(monkeypatch):
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    monkeypatch.setenv("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
    monkeypatch.setattr(allocators, "_LIBRARY", {"NUMPY_MADVISE_HUGEPAGE": "not_imported_here",
                                                 "ARROW_DEFAULT_MEMORY_POOL": "not_imported_either"})
    allocators.process_defaults()
    assert os.environ["NUMPY_MADVISE_HUGEPAGE"] == "0"
    assert os.environ["ARROW_DEFAULT_MEMORY_POOL"] == "jemalloc"


def test_process_defaults_leave_an_imported_library_to_the_runs(hint_on):
    """``counterfeed.cli.main`` called from a process that imported NumPy and pyarrow: setting the
    variables then would change nothing, and would make every run take them for the user's choice."""
    allocators.process_defaults()
    assert "NUMPY_MADVISE_HUGEPAGE" not in os.environ and "ARROW_DEFAULT_MEMORY_POOL" not in os.environ
    with allocators.run_allocators():
        assert get_hint() is False and _pool() == "system"


def test_a_choice_made_during_the_run_is_kept(hint_on):
    with allocators.run_allocators():
        pa.set_memory_pool(pa.mimalloc_memory_pool())  # the user's, from another thread, say
        multiarray._set_madvise_hugepage(True)
    assert _pool() == "mimalloc" and get_hint() is True


def test_the_command_runs_with_both_allocators_set():
    """``counterfeed`` sets the variables before NumPy and pyarrow are imported, so that they apply
    to the whole process (Arrow's C++ internals included) and to its children."""
    code = ("import click, counterfeed.cli as c\n"
            "@c.cli.command('probe')\n"
            "def probe():\n"
            "    import numpy, pyarrow\n"
            "    core = getattr(numpy, '_core', None) or numpy.core\n"
            "    print(core.multiarray._get_madvise_hugepage(), pyarrow.default_memory_pool().backend_name)\n"
            "c.main(['probe'])\n")
    env = {k: v for k, v in os.environ.items() if k not in allocators.ENVIRONMENT}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "system"]


def test_concurrent_runs_restore_once_the_last_one_ends(hint_on):
    inside, release = threading.Event(), threading.Event()

    def other_run():
        with allocators.run_allocators():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other_run)
    t.start()
    inside.wait(10)
    with allocators.run_allocators():
        pass
    assert get_hint() is False and _pool() == "system"  # the other run is still going
    release.set()
    t.join(10)
    assert get_hint() is True and _pool() == "mimalloc"


class _Probed(Exception):
    pass


def _probe(seen: list) -> None:
    """Record the settings where a run's first step would begin, and stop there."""
    seen.append((get_hint(), _pool()))
    raise _Probed


def test_a_world_alone_simulates_with_both_set(hint_on, monkeypatch):
    """simulate_world sets them itself (a world run by a calibration or a twin, outside run())."""
    from counterfeed.core import worlds

    seen = []
    monkeypatch.setattr(worlds, "build_world", lambda task: _probe(seen))  # its first step
    with pytest.raises(_Probed):
        worlds.simulate_world(SimpleNamespace(scenario=SimpleNamespace(experiment=None)))
    assert seen == [(False, "system")]
    assert get_hint() is True and _pool() == "mimalloc"


def test_run_sets_both_around_its_whole_body(hint_on, monkeypatch):
    """Not only its worlds: writing the run directory (Parquet) comes after them."""
    from counterfeed.core import runner

    seen = []
    monkeypatch.setattr(runner, "load_scenario", lambda path: _probe(seen))  # its first step
    with pytest.raises(_Probed):
        runner.run("no such scenario: loading it is replaced")
    assert seen == [(False, "system")]
    assert get_hint() is True and _pool() == "mimalloc"


def test_a_run_simulates_with_the_hint_off(hint_on, monkeypatch):
    """The world's simulation sees the hint off; the caller gets it back."""
    from counterfeed.core import worlds

    seen = []
    real = worlds.build_world
    monkeypatch.setattr(worlds, "build_world", lambda task: seen.append((get_hint(), _pool())) or real(task))
    from counterfeed.core.runner import run

    sc = small_scenario(**{"population.users": 60})
    run(sc, write=False, workers=1)
    assert seen and all(s == (False, "system") for s in seen)
    assert get_hint() is True and _pool() == "mimalloc"
    assert np.zeros(1 << 21).sum() == 0  # allocations still work after restoring


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_child_forked_while_another_thread_holds_the_lock_does_not_hang(hint_on):
    """A process pool forked during one thread's run, while another thread is entering its own:
    the child's runs take a lock of their own."""
    import multiprocessing

    def child(conn):
        with allocators.run_allocators():
            conn.send(get_hint())

    with allocators._lock:  # as if another thread were inside run_allocators at the fork
        recv, send = multiprocessing.get_context("fork").Pipe(duplex=False)
        proc = multiprocessing.get_context("fork").Process(target=child, args=(send,))
        proc.start()
    proc.join(20)
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive and proc.exitcode == 0 and recv.recv() is False
