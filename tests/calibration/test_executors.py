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
    ({"kind": "dask", "scheduler": "127.0.0.1:8786"}, r"scheduler must be an address such as tcp://"),
])
def test_bad_executor_arguments(kwargs, pattern):
    with pytest.raises(CounterfeedError, match=pattern):
        get_executor(**kwargs)


def test_unreachable_scheduler_is_a_clear_error():
    # port 9 (discard) on localhost has no Dask scheduler; a short timeout keeps the test fast
    with pytest.raises(CounterfeedError, match=r"cannot connect to the Dask scheduler at tcp://127.0.0.1:9"):
        DaskExecutor(scheduler="tcp://127.0.0.1:9", connect_timeout=0.5)
