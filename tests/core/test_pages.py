"""counterfeed.core.pages: NumPy's huge page hint is off during a run and restored after it."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from counterfeed.core import pages
from tests.conftest import small_scenario

try:
    from numpy._core import multiarray
except ImportError:  # NumPy 1.x
    from numpy.core import multiarray

get_hint = getattr(multiarray, "_get_madvise_hugepage", None)
pytestmark = pytest.mark.skipif(get_hint is None, reason="this NumPy has no huge page switch")


@pytest.fixture
def hint_on(monkeypatch):
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    previous = multiarray._set_madvise_hugepage(True)
    yield
    multiarray._set_madvise_hugepage(previous)


def test_the_hint_is_off_inside_and_restored_after(hint_on):
    with pages.small_pages():
        assert get_hint() is False
        with pages.small_pages():  # nested: still off, and the inner exit does not restore
            assert get_hint() is False
        assert get_hint() is False
    assert get_hint() is True


def test_the_hint_is_restored_when_the_block_raises(hint_on):
    with pytest.raises(RuntimeError):
        with pages.small_pages():
            raise RuntimeError("a failed run")
    assert get_hint() is True


def test_an_explicit_environment_setting_is_the_users_choice(hint_on, monkeypatch):
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    with pages.small_pages():
        assert get_hint() is True


def test_concurrent_runs_restore_once_the_last_one_ends(hint_on):
    inside, release = threading.Event(), threading.Event()

    def other_run():
        with pages.small_pages():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=other_run)
    t.start()
    inside.wait(10)
    with pages.small_pages():
        pass
    assert get_hint() is False  # the other run is still going
    release.set()
    t.join(10)
    assert get_hint() is True


def test_a_run_simulates_with_the_hint_off(hint_on, monkeypatch):
    """The world's simulation sees the hint off; the caller gets it back."""
    from counterfeed.core import worlds

    seen = []
    real = worlds._simulate_world
    monkeypatch.setattr(worlds, "_simulate_world", lambda task: seen.append(get_hint()) or real(task))
    from counterfeed.core.runner import run

    sc = small_scenario(**{"population.users": 60})
    run(sc, write=False, workers=1)
    assert seen and not any(seen)
    assert get_hint() is True
    assert np.zeros(1 << 21).sum() == 0  # allocations still work after restoring
