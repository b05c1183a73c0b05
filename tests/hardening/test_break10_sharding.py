"""Break test 10's sharding findings, each with the behaviour it asked for.

- ``run(shards=...)`` in Python was not checked: 0 and -3 ran unsharded, 2.9 and '2' ran 2 shards; now
  the rule of ``execution.shards`` (and ``execution.scheduler``) applies, naming the argument.
- ``--scheduler`` at a port that answers with something else (an HTTP 400) was distributed's
  "MemoryError: Unable to allocate 3.07 EiB"; now the "did not answer as a Dask scheduler" message.
- ``sweep``'s refusal of sharded replications on Dask said "calibrate" and named the file even when
  ``--vary`` sharded; a point's problem in a varied field said ``--vary F=V: --set: F: ...``.
- The split-draw check drew a whole assignment per replication (49 s here for 1,000,000 users x
  1,000 replications); it now counts only the users that decide the verdict, with the same verdicts.
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import counterfeed
from counterfeed.calibration.engine import replication_seeds
from counterfeed.core.experiment import assign
from counterfeed.core.scenario import check_arms_filled, load_scenario
from counterfeed.core.shard import IN_PROCESS
from counterfeed.core.shard_spec import execution_arguments
from counterfeed.errors import CounterfeedError, ScenarioError
from tests.conftest import cli, small_scenario

ROOT = Path(__file__).resolve().parents[2]
AA = ROOT / "scenarios" / "aa_test.yaml"
ADAPTIVE = ROOT / "scenarios" / "adaptive_thompson.yaml"


# -- 1. run(shards=..., scheduler=...) follows execution's rules -------------------------------------------

@pytest.mark.parametrize("kwargs, pattern", [
    ({"shards": 0}, r"^run\(shards=\.\.\.\): Input should be greater than or equal to 1 \(got 0\)$"),
    ({"shards": -3}, r"^run\(shards=\.\.\.\): Input should be greater than or equal to 1 \(got -3\)$"),
    ({"shards": 2.9}, r"^run\(shards=\.\.\.\): Input should be a valid integer \(got 2\.9\)$"),
    ({"shards": "2"}, r"^run\(shards=\.\.\.\): Input should be a valid integer \(got '2'\)$"),
    ({"shards": True}, r"^run\(shards=\.\.\.\): Input should be a valid integer \(got True\)$"),
    ({"shards": 2000}, r"^run\(shards=\.\.\.\): Input should be less than or equal to 1024 \(got 2000\)$"),
    ({"shards": 80}, r"^run\(shards=\.\.\.\): 80 shards for 50 users: every shard needs at least one user"),
    ({"scheduler": "tcp://nowhere"}, r"^run\(scheduler=\.\.\.\): expected a Dask scheduler address tcp://HOST:PORT"),
    ({"scheduler": 5}, r"^run\(scheduler=\.\.\.\): Input should be a valid string \(got 5\)$"),
])
def test_run_checks_shards_and_scheduler_as_the_scenario_does(kwargs, pattern, tmp_path):
    sc = small_scenario(**{"population.users": 50})
    with pytest.raises(ScenarioError, match=pattern) as info:
        counterfeed.run(sc, output_dir=tmp_path / "runs", **kwargs)
    assert "--shards" not in str(info.value) and "--set" not in str(info.value)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", ["0", "2.9", "'2'", "true", "80"])
def test_the_api_and_the_scenario_give_the_same_verdict(value, capsys):
    """One rule: ``--set execution.shards=V`` and ``run(shards=V)`` fail with the same sentence."""
    import yaml

    code, _, err = cli(capsys, "validate", AA, "--set", "population.users=50", "--set", f"execution.shards={value}")
    assert code == 2
    sc = load_scenario(AA).with_overrides({"population.users": 50})
    with pytest.raises(ScenarioError) as info:
        execution_arguments(sc, yaml.safe_load(value))
    assert err.strip() == f"Error: --set: execution.shards: {info.value.bare_message}"


def test_run_arguments_default_to_the_scenario_and_keep_in_process():
    sc = small_scenario(**{"execution.shards": 3})
    assert execution_arguments(sc) == (3, None)
    assert execution_arguments(sc, 2) == (2, None)
    assert execution_arguments(sc, None, IN_PROCESS) == (3, IN_PROCESS)
    assert execution_arguments(sc, 1, "tcp://127.0.0.1:8786") == (1, "tcp://127.0.0.1:8786")


# -- 2. a port that answers something else than Dask -------------------------------------------------------

class _Server:
    """A TCP server on 127.0.0.1 that answers every connection with ``reply`` (then closes it, or keeps
    it open with ``hold``)."""

    def __init__(self, reply: bytes, hold: bool = False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.reply, self.hold, self.held = reply, hold, []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            try:
                conn.sendall(self.reply)
            except OSError:
                pass
            if self.hold:
                self.held.append(conn)
            else:
                conn.close()

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        for conn in self.held:
            conn.close()
        self.sock.close()


def test_an_http_answer_at_the_scheduler_port_is_one_message_exit_2_nothing_written(tmp_path, capsys):
    """distributed read "HTTP/1.1" as the length of a 3 EiB message and raised MemoryError."""
    with _Server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n") as server:
        start = time.monotonic()
        code, _, err = cli(capsys, "run", AA, "--set", "population.users=50", "--scheduler", server.address,
                           "--out", tmp_path / "runs", "--quiet")
        took = time.monotonic() - start
    assert code == 2, err
    assert f"cannot connect to the Dask scheduler at {server.address}: something accepts connections there but " \
           "did not answer as a Dask scheduler (it sent b'HTTP/1.1'" in err
    assert "MemoryError" not in err and "EiB" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and took < 20
    assert not (tmp_path / "runs").exists()


def test_a_port_that_closes_at_once_is_not_a_scheduler():
    from counterfeed.core.executors import DaskExecutor

    with _Server(b"") as server:
        with pytest.raises(CounterfeedError, match=r"did not answer as a Dask scheduler \(it closed the connection "
                                                   r"without a word"):
            DaskExecutor(scheduler=server.address, connect_timeout=2.0)


def test_a_dask_like_greeting_passes_the_probe():
    """What a scheduler sends first, an 8-byte length of its handshake, is let through to the Client
    (which decides the rest); the probe refuses only what no scheduler sends."""
    from counterfeed.core.executors import _check_listening

    with _Server(struct.pack("Q", 180) + b"\x00" * 16, hold=True) as server:
        _check_listening(server.address, 2.0)
    with _Server(b"SSH-2.0-OpenSSH_9.6\r\n", hold=True) as server:
        with pytest.raises(CounterfeedError, match=r"it sent b'SSH-2\.0-'"):
            _check_listening(server.address, 2.0)


# -- 3. sweep's messages name the sweep and the --vary point --------------------------------------------

def test_sweep_sharded_by_vary_on_dask_names_the_sweep_and_the_point(tmp_path, capsys):
    code, _, err = cli(capsys, "sweep", AA, "--vary", "execution.shards=1,2", "-n", "2", "--executor", "dask",
                       "--out", tmp_path / "sw")
    assert code == 2
    assert err.startswith("Error: --vary execution.shards=2: 2 shards with the Dask executor:"), err
    assert "sweep with the local executor" in err and "calibrate" not in err and "aa_test.yaml" not in err
    assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("command, extra", [("sweep", ["--vary", "population.users=100,200"]), ("calibrate", [])])
def test_sharded_on_dask_names_the_command_used(command, extra, tmp_path, capsys):
    code, _, err = cli(capsys, command, AA, *extra, "--set", "execution.shards=2", "-n", "2", "--executor", "dask",
                       "--out", tmp_path / "out")
    assert code == 2
    assert err.startswith("Error: --set: execution.shards: 2 shards with the Dask executor"), err
    assert f"; {command} with the local executor" in err
    assert not (tmp_path / "out").exists()


def test_varied_shards_replace_the_base_value():
    """``--vary execution.shards=1`` sets every point's shards: a sharded file is not refused for it."""
    from counterfeed.calibration.cli import _check_sharding

    sc = load_scenario(AA).with_overrides({"execution.shards": 2})
    _check_sharding(sc, "dask", None, [("execution.shards", [1])], "sweep")
    with pytest.raises(ScenarioError, match=r"^--vary execution\.shards=3: "):
        _check_sharding(sc, "dask", None, [("execution.shards", [1, 3])], "sweep")


def test_a_problem_in_a_varied_field_is_located_at_the_point_once(tmp_path, capsys):
    code, _, err = cli(capsys, "sweep", ADAPTIVE, "--vary", "experiment.allocation.floor=0,0.05", "-n", "2",
                       "--out", tmp_path / "sw")
    assert code == 2
    assert err.startswith("Error: --vary experiment.allocation.floor=0: experiment.allocation.floor: floor 0 lets"), err
    assert "--set" not in err and not (tmp_path / "sw").exists()


def test_a_point_error_elsewhere_keeps_its_own_location():
    from counterfeed.calibration.sweep import point_error

    varied = point_error({"population.users": 10}, ScenarioError("too few", file="--set", field="population.users"))
    assert str(varied) == "--vary population.users=10: population.users: too few"
    real_set = point_error({"population.users": 10}, ScenarioError("bad", file="--set", field="analysis[0]"))
    assert str(real_set) == "--vary population.users=10: --set: analysis[0]: bad"
    in_file = point_error({"population.users": 10}, ScenarioError("bad", file="s.yaml", line=3, field="analysis[0]"))
    assert str(in_file) == "--vary population.users=10: s.yaml:3: analysis[0]: bad"


# -- 4. the split-draw check: fast, with the verdicts of whole assignments -----------------------------------

def _old_verdict(users: int, split: dict[str, float], salt: str, seeds, need: int):
    """The check as it was: a whole assignment per seed; the first (replication, arm, count) short of ``need``."""
    for i, seed in enumerate(seeds):
        counts = np.bincount(assign(users, split, salt, seed), minlength=len(split))
        for arm, k in zip(split, counts):
            if k < need:
                return i, arm, int(k)
    return None


@pytest.mark.parametrize("users, split, need", [
    (1_000_000, {"control": 0.99997, "treatment": 0.00003}, 2),
    (300, {"control": 0.5, "treatment": 0.5}, 2),
    (40, {"control": 0.9, "treatment": 0.05, "other": 0.05}, 3),
    (1000, {"control": 0.998, "treatment": 0.002}, 2),
    (5000, {"control": 0.999, "treatment": 0.0005, "other": 0.0005}, 4),
    (100, {"control": 0.97, "treatment": 0.03}, 6),
])
def test_arm_counts_decide_as_whole_assignments_do(users, split, need):
    from counterfeed.core.scenario import _arm_counts

    seeds = replication_seeds(7, 30 if users > 100_000 else 300)
    short = 0
    for seed in seeds:
        full = np.bincount(assign(users, split, "salt", seed), minlength=len(split)).tolist()
        got = _arm_counts(users, split, "salt", seed, need)
        if min(full) < need:  # a short draw: exactly its counts (the message reports them)
            assert got == full, seed
            short += 1
        else:
            assert min(got) >= need and all(g <= f for g, f in zip(got, full)), seed
    if users == 1000:
        assert short > 0  # the table exercises short draws too


@pytest.mark.parametrize("users, treatment", [(1000, 0.002), (4000, 0.0008), (30, 0.1), (5000, 0.003)])
def test_check_arms_filled_refuses_the_replication_the_old_check_refused(users, treatment):
    sc = small_scenario(**{"population.users": users, "experiment.split": {"control": 1 - treatment,
                                                                           "treatment": treatment},
                           "analysis": [{"estimator": "diff-in-means", "metrics": ["clicks"]}]})
    seeds = replication_seeds(sc.seed, 200)
    split = {a: float(sc.experiment.split[a]) for a in sc.arms}
    expected = _old_verdict(users, split, sc.assignment_salt, seeds, 2)
    if expected is None:
        check_arms_filled(sc, seeds)
        return
    i, arm, k = expected
    with pytest.raises(ScenarioError, match=re.escape(f"replication {i + 1} of 200 (seed {seeds[i]}) puts {k} of "
                                                      f"{users} users in arm '{arm}'")):
        check_arms_filled(sc, seeds)
    with pytest.raises(ScenarioError):  # a refusal is not remembered as a pass
        check_arms_filled(sc, seeds)


def test_the_check_of_a_million_users_small_arm_is_fast():
    """49 s before (1,000 replications; a whole 1,000,000-user assignment each), about 2 s after."""
    sc = load_scenario(AA).with_overrides({"population.users": 1_000_000, "experiment.split.control": 0.99997,
                                           "experiment.split.treatment": 0.00003})
    seeds = replication_seeds(sc.seed, 200)
    start = time.perf_counter()
    check_arms_filled(sc, seeds)
    assert time.perf_counter() - start < 5.0  # the whole assignments took about 10 s


def test_calibrate_refuses_sharding_on_dask_before_the_split_draws(tmp_path, capsys):
    """Both problems at once: the cheap refusal (sharding on Dask) is the one reported."""
    code, _, err = cli(capsys, "calibrate", AA, "--set", "population.users=1000", "--set",
                       "experiment.split.control=0.998", "--set", "experiment.split.treatment=0.002",
                       "--set", "execution.shards=2", "-n", "200", "--executor", "dask", "--out", tmp_path / "cal")
    assert code == 2 and "shards with the Dask executor" in err, err
    code, _, err = cli(capsys, "calibrate", AA, "--set", "population.users=1000", "--set",
                       "experiment.split.control=0.998", "--set", "experiment.split.treatment=0.002",
                       "-n", "200", "--executor", "dask", "--out", tmp_path / "cal")
    assert code == 2 and "in arm 'treatment'" in err, err  # the split alone is refused too
    assert not (tmp_path / "cal").exists()
