"""Workers that run other code are refused (break test 12): the fingerprint, its comparison, and the
two places that ask for it (a sharded world's Dask workers, the Dask executor's tasks)."""

from __future__ import annotations

import pytest

from counterfeed.core.code_identity import CodeMismatch, check_same_code, code_fingerprint, run_checked


def test_the_fingerprint_names_the_source_the_libraries_and_python():
    fp = code_fingerprint()
    assert len(fp["source"]) == 16 and int(fp["source"], 16) >= 0
    assert {"counterfeed", "python", "numpy", "scipy", "simpy", "numba", "location"} <= set(fp)
    assert code_fingerprint() is fp  # once per process


def test_the_same_code_passes_wherever_it_lives():
    check_same_code({**code_fingerprint(), "location": "/elsewhere/counterfeed"}, "tcp://w:1")


@pytest.mark.parametrize("key, value, words", [
    ("source", "0" * 16, "counterfeed's source differs (digest 0000000000000000 in /other against"),
    ("numpy", "1.0.0", "numpy 1.0.0 against"),
    ("counterfeed", "9.9", "counterfeed 9.9 against"),
])
def test_other_code_is_refused_with_every_difference_named(key, value, words):
    remote = {**code_fingerprint(), key: value, "location": "/other"}
    with pytest.raises(CodeMismatch) as err:
        check_same_code(remote, "tcp://10.0.0.1:8786")
    msg = str(err.value)
    assert msg.startswith("Dask worker tcp://10.0.0.1:8786 runs other code than this command: ")
    assert words in msg and "start the workers from the same installation" in msg
    assert err.value.exit_code == 2
    del remote["pyarrow"]  # a library the worker lacks
    with pytest.raises(CodeMismatch, match="pyarrow unknown against"):
        check_same_code(remote, "w")


def test_a_checked_task_runs_only_on_the_same_code():
    assert run_checked(code_fingerprint(), lambda t: t * 2, 21) == 42
    other = {**code_fingerprint(), "scipy": "0.1"}
    with pytest.raises(CodeMismatch, match=r"Dask worker \(this process\) runs other code .* scipy "):
        run_checked(other, lambda t: t, 1)


class _Client:
    """The part of a ``distributed.Client`` that DaskShards uses before creating actors."""

    def __init__(self, fingerprints):
        self.fingerprints, self.asked, self.submitted = fingerprints, [], 0

    def wait_for_workers(self, n, timeout):
        pass

    def scheduler_info(self):
        return {"workers": dict.fromkeys(self.fingerprints)}

    def run(self, fn, workers):
        self.asked.append(list(workers))
        return {w: self.fingerprints[w] for w in workers}

    def submit(self, *args, **kwargs):
        self.submitted += 1
        raise AssertionError("no shard may be created on a refused worker")


def test_a_sharded_world_refuses_a_worker_with_other_code_before_creating_a_shard():
    from counterfeed.core.shard import DaskShards

    same = code_fingerprint()
    client = _Client({"tcp://a:1": same, "tcp://b:2": {**same, "source": "f" * 16}})
    pool = DaskShards(2, client)
    with pytest.raises(CodeMismatch, match="Dask worker tcp://b:2 runs other code"):
        pool.create([(0, 5), (5, 10)], lambda lo, hi: ())
    assert client.submitted == 0
    # workers already checked are not asked again
    client = _Client({"tcp://a:1": same})
    pool = DaskShards(1, client)
    pool._check_code(["tcp://a:1"])
    pool._check_code(["tcp://a:1"])
    assert client.asked == [["tcp://a:1"]]
