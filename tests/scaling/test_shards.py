"""Sharded worlds (issue 20): a world split into user-id blocks is the same world, byte for byte."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from counterfeed.core.contracts import CatalogContext
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.runner import resolve, run
from counterfeed.core.scenario import Scenario
from counterfeed.core.shard import IN_PROCESS, LocalShards, ShardedWorld, shard_blocks
from counterfeed.core.simulation import SimWorld, WorldConfig
from counterfeed.errors import ScenarioError

sys.path.insert(0, str(Path(__file__).parent))
from sharded_scenario import digest, sharded_scenario  # noqa: E402


def scenario(users: int = 300, **execution) -> Scenario:
    return sharded_scenario(users, **execution)


def test_blocks_cover_the_users_in_order():
    assert shard_blocks(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert shard_blocks(5, 1) == [(0, 5)]
    with pytest.raises(ValueError):
        shard_blocks(5, 0)


def test_population_block_is_the_rows_of_the_whole_population():
    sc = scenario()
    keys = Keys(sc.seed)
    whole = build_population(sc.population, keys)
    part = build_population(sc.population, keys, block=(100, 220))
    assert part.offset == 100 and part.n == 120
    assert np.array_equal(part.ids, np.arange(100, 220))
    for got, want in [(part.preferences, whole.preferences[100:220]), (part.segment, whole.segment[100:220]),
                      (part.activity, whole.activity[100:220])]:
        assert np.array_equal(got, want)


def _world(sc: Scenario, shards: int | None):
    plan = resolve(sc)
    keys = Keys(sc.seed)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=8))
    e = sc.experiment
    n = sc.population.users
    cfg = WorldConfig(name="ab", arms=sc.arms, control=0, assignment=np.arange(n) % 2, pre_period=e.pre_period,
                      duration=e.duration, batch_window=e.batch_window, retrain_every=e.retrain_every,
                      slate_size=e.slate_size, n_users=n)
    if shards is None:
        return SimWorld(cfg, items, build_population(sc.population, keys), keys, plan.user_model(),
                        plan.recommender)
    return ShardedWorld(cfg, items, (sc.population, keys), keys, plan.user_model(), plan.recommender,
                        shards=LocalShards(shards))


def test_a_sharded_world_is_the_single_process_world_row_for_row():
    """Each shard builds only its block of the population; sessions and impressions are equal."""
    sc = scenario()
    want = _world(sc, None).run()
    for shards in (3,):
        got = _world(sc, shards).run()
        for name, col in want.sessions.items():
            assert np.array_equal(got.sessions[name], col), (shards, name)
        for name, col in want.impressions.to_dict().items():
            assert np.array_equal(got.impressions.to_dict()[name], col), (shards, name)


def test_shards_build_their_block_from_the_spec_and_check_it_against_the_coordinators(monkeypatch):
    """With ``population_spec`` the coordinator keeps the whole population and each shard builds its
    block (a run does this, so the byte-identity tests below cover the rows); a spec that does not
    give the coordinator's population fails the world instead of simulating other users."""
    from counterfeed.core.shard import ShardError

    sc = scenario()
    plan = resolve(sc)
    keys = Keys(sc.seed)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=8))
    e = sc.experiment
    cfg = WorldConfig(name="ab", arms=sc.arms, control=0, assignment=np.arange(300) % 2, pre_period=e.pre_period,
                      duration=e.duration, batch_window=e.batch_window, retrain_every=e.retrain_every,
                      slate_size=e.slate_size)
    pop = build_population(sc.population, keys)
    sent = []
    real = LocalShards.create

    def create(self, blocks, make):
        sent.extend(make(lo, hi)[3] for lo, hi in blocks)
        return real(self, blocks, make)

    monkeypatch.setattr(LocalShards, "create", create)
    want = _world(sc, None).run()
    got = ShardedWorld(cfg, items, pop, keys, plan.user_model(), plan.recommender, shards=LocalShards(2),
                       population_spec=(sc.population, keys)).run()
    assert all(isinstance(s, tuple) and s[0] is sc.population for s in sent) and len(sent) == 2
    for name, col in want.sessions.items():
        assert np.array_equal(got.sessions[name], col), name
    with pytest.raises(ShardError, match=r"shard \[0, 150\): the population built from its spec"):
        ShardedWorld(cfg, items, pop, keys, plan.user_model(), plan.recommender, shards=LocalShards(2),
                     population_spec=(sc.population, Keys(sc.seed + 1))).run()


def test_runs_with_1_2_4_shards_write_byte_identical_run_directories(tmp_path):
    """Outcomes, events (sessions and impressions of every world), truth and estimates."""
    import json

    sc = scenario()
    one = run(sc, output_dir=tmp_path / "one").run_dir
    base = digest(one)
    assert any(k.startswith("events/") for k in base) and "estimates.json" in base
    assert "execution" not in json.loads((one / "manifest.json").read_text())
    for shards in (2, 4):
        res = run(sc, output_dir=tmp_path / str(shards), shards=shards, scheduler=IN_PROCESS)
        assert digest(res.run_dir) == base, shards
        # the manifest (left out of the digest) says how the same results were computed
        manifest = json.loads((res.run_dir / "manifest.json").read_text())
        assert manifest["execution"] == {"shards": shards, "scheduler": IN_PROCESS}
    # `--shards` sets the scenario's execution.shards: the published scenario.yaml is still the unsharded
    # one's (break test 7 found `shards: 2` in it, and re-running it needed the cluster again)
    res = run(sc.with_overrides({"execution.shards": 2}), output_dir=tmp_path / "cli", scheduler=IN_PROCESS)
    assert digest(res.run_dir) == base
    assert json.loads((res.run_dir / "manifest.json").read_text())["execution"]["shards"] == 2


def test_parts_written_by_shards_give_the_same_run_directory_and_the_coordinator_never_gathers(tmp_path,
                                                                                              monkeypatch):
    """With 50-user parts (6 parts for 300 users, 6 row groups), 2 and 3 shards each write whole parts
    (parts shared by shards, merged on the coordinator, are the default 1-part case of the test above,
    and 4 shards here); all give the unsharded bytes, and at the end of a world the coordinator asks the
    shards for per-user outcomes and fragments, never for their session rows."""
    import pyarrow.parquet as pq

    from counterfeed.core import shard_events

    monkeypatch.setattr(shard_events, "PART_USERS", 50)
    assert shard_events.part_aligned_blocks(300, 2) == [(0, 150), (150, 300)]
    assert shard_events.part_aligned_blocks(300, 3) == [(0, 100), (100, 200), (200, 300)]
    assert shard_events.part_aligned_blocks(300, 4) == [(0, 75), (75, 150), (150, 225), (225, 300)]  # parts shared
    sc = scenario()
    one = run(sc, output_dir=tmp_path / "one", keep_events=True)
    base = digest(one.run_dir)
    calls: list[str] = []
    real = LocalShards.call

    def spy(self, method, args=None):
        calls.append(method)
        return real(self, method, args)

    monkeypatch.setattr(LocalShards, "call", spy)
    for shards in (2, 3, 4):
        res = run(sc, output_dir=tmp_path / str(shards), shards=shards, scheduler=IN_PROCESS, keep_events=True)
        assert digest(res.run_dir) == base, shards
        assert pq.ParquetFile(res.run_dir / "events" / "ab" / "sessions.parquet").num_row_groups == 6
        for world, ev in one.events.items():  # kept events read their sessions from the published file
            for name, col in ev.sessions.items():
                assert np.array_equal(res.events[world].sessions[name], col), (world, name)
    assert "sessions" not in calls and calls.count("outcomes") == calls.count("write_fragments") > 0


@pytest.mark.parametrize("n_users", [2, 7, 300, 65_536, 65_537, 70_000, 131_073, 196_609, 200_000, 262_145,
                                     1_000_000, 1_048_577, 5_000_000])
def test_shard_blocks_are_even_whatever_the_parts(n_users):
    """Every block is within 10% of an even split's largest (break test 12: whole 65,536-user parts gave
    131,073 users on 2 shards blocks of 131,072 and 1, and 200,000 on 3 shards 66% on one worker); the
    blocks are contiguous and cover every user once."""
    from counterfeed.core import shard_events

    for shards in range(1, min(n_users, 9) + 1):
        blocks = shard_events.part_aligned_blocks(n_users, shards)
        assert len(blocks) == shards and blocks[0][0] == 0 and blocks[-1][1] == n_users
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
        assert max(hi - lo for lo, hi in blocks) <= 1.1 * -(-n_users // shards), (n_users, shards, blocks)
        assert min(hi - lo for lo, hi in blocks) >= 1
    # whole parts where they are even enough: nothing to merge at 1M users on 2 shards
    assert shard_events.part_aligned_blocks(1_000_000, 2) == [(0, 524_288), (524_288, 1_000_000)]
    assert shard_events.part_aligned_blocks(131_073, 2) == [(0, 65_536), (65_536, 131_073)]


def test_a_sharded_world_reduces_outcomes_in_its_shards(tmp_path):
    """The per-user metrics computed per shard equal the single process's, for both periods."""
    from counterfeed.core.outcomes import world_outcomes

    sc = scenario()
    plan = resolve(sc)
    want = _world(sc, None)
    ev = want.run()
    got = _world(sc, 3)
    got.scratch, got._windows = tmp_path / "w", [(1.0, 4.0), (0.0, 1.0)]
    got._reduce = {n: m for n, m in plan.metrics.items() if m.per_user_sessions}
    ev3 = got.run()
    assert not isinstance(ev3.sessions, dict) and sorted(got.reduced) == sorted(
        (n, a, b) for n in got._reduce for a, b in got._windows)
    pop = build_population(sc.population, Keys(sc.seed))
    a = world_outcomes(ev, plan.metrics, pop, 1.0, 4.0)
    b = world_outcomes(ev3, plan.metrics, pop, 1.0, 4.0, got.reduced)
    assert a.equals(b) and not (tmp_path / "w" / "fragments").exists()
    for name, col in ev.sessions.items():
        assert np.array_equal(ev3.sessions[name], col), name


_NO_PYARROW = """
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, sys.argv[1])
from sharded_scenario import sharded_scenario
from counterfeed.core import shard_events
from counterfeed.core.contracts import CatalogContext
from counterfeed.core.plan import resolve
from counterfeed.core.randomness import Keys
from counterfeed.core.shard import LocalShards, Shard, ShardedWorld
from counterfeed.core.simulation import WorldConfig

shard_events.PART_USERS = 64
seen = []
real_outcomes, real_merge = Shard.outcomes, shard_events.merge_fragments


def outcomes(self, *args):
    seen.append(("state dropped", self.state is None and self.population is None))
    return real_outcomes(self, *args)


def merge(directory, path, n_users):
    seen.append(("pyarrow loaded", "pyarrow" in sys.modules))
    seen.append(("fragments", sorted({p.parent.name[:11] for p in Path(directory).rglob("*.npy")}),
                 sorted({p.name for p in Path(directory).rglob("*") if p.is_file()})))
    return real_merge(directory, path, n_users)


Shard.outcomes, shard_events.merge_fragments = outcomes, merge
sc = sharded_scenario(300)
plan, keys, e = resolve(sc), Keys(sc.seed), sc.experiment
items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"), dimensions=8))
cfg = WorldConfig(name="ab", arms=sc.arms, control=0, assignment=np.arange(300) % 2, pre_period=e.pre_period,
                  duration=e.duration, batch_window=e.batch_window, retrain_every=e.retrain_every,
                  slate_size=e.slate_size, n_users=300)
world = ShardedWorld(cfg, items, (sc.population, keys), keys, plan.user_model(), plan.recommender,
                     shards=LocalShards(2), scratch=Path(sys.argv[2]), windows=[(1.0, 4.0)],
                     metrics={n: m for n, m in plan.metrics.items() if m.per_user_sessions})
world.run()
print(repr(seen))
"""


def test_shards_let_go_of_their_state_and_write_fragments_without_pyarrow(tmp_path):
    """A shard drops its user-model state and population before the end-of-world work, and writes
    its fragments as raw ``.npy`` columns: nothing a shard runs loads pyarrow (about 80 MB of a
    worker), only the coordinator's merge. In a fresh process: this one has pyarrow loaded."""
    import subprocess

    from counterfeed.core.shard_events import FRAGMENT_COLUMNS

    script = tmp_path / "no_pyarrow.py"
    script.write_text(_NO_PYARROW)
    out = subprocess.run([sys.executable, str(script), str(Path(__file__).parent), str(tmp_path / "w")],
                         capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = eval(out.stdout.strip().splitlines()[-1])  # noqa: S307 -- the repr our own script printed
    assert seen[:3] == [("state dropped", True), ("state dropped", True), ("pyarrow loaded", False)], seen
    name, parts, files = seen[3]
    assert parts == [f"part-{k:06d}" for k in range(5)]  # 300 users in 64-user parts
    assert files == sorted(f"{nm}.npy" for nm, _ in FRAGMENT_COLUMNS), files


@pytest.mark.parametrize("value, message", [
    (0, "execution.shards"), (-2, "execution.shards"), ("two", "execution.shards"), (1.5, "execution.shards"),
    (301, "301 shards for 300 users"),
])
def test_bad_shard_counts_are_rejected_with_their_location(value, message):
    with pytest.raises(ScenarioError, match=message):
        scenario(shards=value)


def test_execution_shards_in_the_scenario_is_used(tmp_path, monkeypatch):
    import counterfeed.core.runner as runner
    from counterfeed.core import shard

    opened = []

    def in_process(shards, scheduler=None, workers=None):
        opened.append((shards, scheduler, workers))
        return shard.open_shards(shards, IN_PROCESS)

    monkeypatch.setattr(runner, "open_shards", in_process)
    sc = scenario(users=60, shards=2, scheduler="tcp://10.0.0.1:8786")
    run(sc, write=False)
    assert opened == [(2, "tcp://10.0.0.1:8786", None)]


QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"


@pytest.mark.parametrize("block, message", [
    ("execution:\n  shards: 0\n", r":\d+: execution\.shards: Input should be greater than or equal to 1"),
    ("execution:\n  shards: two\n", r":\d+: execution\.shards: "),
    ("execution:\n  shards: 5000\n", r":\d+: execution\.shards: .*less than or equal to 1024"),
    ("execution:\n  shard: 2\n", r":\d+: execution\.shard: unknown field 'shard'; did you mean 'shards'"),
    ("execution:\n  scheduler: localhost\n", r":\d+: execution\.scheduler: "),
    # addresses a looser pattern let through to a traceback in run (the helper's break test)
    ("execution:\n  scheduler: tcp://nohost:notaport\n", r":\d+: execution\.scheduler: expected a Dask scheduler address"),
    ("execution:\n  scheduler: tcp://127.0.0.1:1/path\n", r":\d+: execution\.scheduler: expected .*tcp://HOST:PORT"),
    ("execution:\n  scheduler: 'tcp://[::1'\n", r":\d+: execution\.scheduler: expected .*tcp://HOST:PORT"),
    ("execution:\n  scheduler: tcp://a..b:8786\n", r":\d+: execution\.scheduler: expected .*tcp://HOST:PORT"),
    ("execution:\n  scheduler: tcp://-host.example:8786\n", r":\d+: execution\.scheduler: expected .*tcp://HOST:PORT"),
    ("execution:\n  scheduler: tcp://host.:8786\n", r":\d+: execution\.scheduler: expected .*tcp://HOST:PORT"),
    ("execution:\n  scheduler: 'tcp://[:]:8786'\n", r":\d+: execution\.scheduler: expected .*tcp://HOST:PORT"),
    ("execution:\n  scheduler: 'tcp://[1.2.3.4]:8786'\n", r":\d+: execution\.scheduler: expected .*tcp://HOST:PORT"),
    ("execution:\n  scheduler: tcp://999.999.999.999:8786\n", r":\d+: execution\.scheduler: expected .*tcp://HOST:PORT"),
    (f"execution:\n  scheduler: tcp://{'.'.join(['a' * 63] * 5)}:8786\n", r":\d+: execution\.scheduler: expected"),
    ("execution:\n  scheduler: tcp://127.0.0.1:70000\n", r":\d+: execution\.scheduler: .*PORT 1 to 65535"),
    ("execution:\n  scheduler: tls://127.0.0.1:8786\n", r":\d+: execution\.scheduler: .*tls://.* not supported"),
    ("execution:\n  scheduler: ucx://127.0.0.1:8786\n", r":\d+: execution\.scheduler: .*not supported"),
    ("execution:\n  scheduler: inproc://x\n", r":\d+: execution\.scheduler: .*not supported"),
])
def test_validate_rejects_bad_execution_with_file_and_line(block, message, tmp_path, capsys):
    from counterfeed.cli import main

    path = tmp_path / "bad.yaml"
    path.write_text(QUICKSTART.read_text() + block)
    with pytest.raises(SystemExit) as exit_info:
        main(["validate", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(path) in err and re.search(message, err), err
    with pytest.raises(SystemExit) as exit_info:  # run rejects it too, writing nothing
        main(["run", str(path), "--out", str(tmp_path / "runs"), "--quiet"])
    assert exit_info.value.code == 2 and not (tmp_path / "runs").exists()


def test_run_shards_option_is_checked_like_the_scenario_field(tmp_path, capsys):
    from counterfeed.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["run", str(QUICKSTART), "--set", "population.users=50", "--shards", "80",
              "--out", str(tmp_path / "runs"), "--quiet"])
    assert exit_info.value.code == 2 and not (tmp_path / "runs").exists()
    assert "80 shards for 50 users" in capsys.readouterr().err


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "tcp://[::1]:8786", "tcp://my-host.example.com:8786"])
def test_scheduler_addresses_of_every_host_form_are_accepted(address):
    assert scenario(scheduler=address).execution.scheduler == address


def test_a_port_that_never_answers_as_a_scheduler_is_one_error_in_bounded_time(tmp_path, capsys):
    """Something that accepts connections and never speaks Dask's protocol (an HTTP server, a
    scheduler's dashboard port): distributed's Client waited for its handshake for good. Now one
    message within the connect timeout + 5 s, exit 2, and nothing written under --out."""
    import socket
    import threading
    import time

    from counterfeed.core.executors import DaskExecutor
    from counterfeed.errors import CounterfeedError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accepts, then says nothing
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:
        start = time.monotonic()
        with pytest.raises(CounterfeedError, match="did not answer as a Dask scheduler within 7 s"):
            DaskExecutor(scheduler=address, connect_timeout=2.0)
        assert time.monotonic() - start < 30
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


def test_workers_without_the_run_directory_fail_the_run_clearly_and_leave_nothing(tmp_path, monkeypatch):
    """Workers of an existing cluster write the sessions' fragments to the run's temporary directory,
    given as an absolute path (their working directory is not this process's). On machines that do
    not share that filesystem the coordinator finds fewer rows than they wrote: one OutputError (exit
    2) that says what is needed, the workers' copies removed, and nothing published. Simulated with
    in-process shards whose "filesystem" is a folder of their own."""
    from counterfeed.core import shard as shard_module
    from counterfeed.errors import OutputError

    elsewhere = tmp_path / "worker-machine"
    real_write, seen = shard_module.Shard.write_fragments, []

    def write_elsewhere(self, directory):
        seen.append(directory)
        return real_write(self, str(elsewhere) + directory)  # the same absolute path, on another disk

    def remove_elsewhere(self, directory):
        import shutil

        shutil.rmtree(str(elsewhere) + directory, ignore_errors=True)

    monkeypatch.setattr(shard_module.Shard, "write_fragments", write_elsewhere)
    monkeypatch.setattr(shard_module.Shard, "remove_scratch", remove_elsewhere)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="must be on a filesystem the workers share with this process"):
        run(scenario(users=60), output_dir="runs", shards=2, scheduler=IN_PROCESS, quiet=True)
    assert seen and all(Path(d).is_absolute() for d in seen)
    assert not [p for p in elsewhere.rglob("*") if p.is_file()]  # the workers' fragments removed
    assert not (tmp_path / "runs").exists()  # nothing published, not even the --out folder it created


def test_a_full_disk_while_the_workers_write_is_the_run_directorys_error(tmp_path, monkeypatch):
    """A shard that cannot write its fragments (the disk is full, on the worker) fails the run as the
    unsharded run's full disk does: one OutputError naming the folder (exit 2), not the worker's
    failure (exit 1); nothing published."""
    import errno

    from counterfeed.core import shard as shard_module
    from counterfeed.core.shard import DaskShards
    from counterfeed.errors import OutputError

    def full(self, directory):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shard_module.Shard, "write_fragments", full)
    for wrapped in (False, True):
        if wrapped:  # through Dask a worker's exception arrives wrapped by the pool: DaskShards._guard's
            real_call = shard_module.LocalShards.call
            pool = DaskShards.__new__(DaskShards)
            pool._where = ["tcp://worker:1", "tcp://worker:2"]
            monkeypatch.setattr(shard_module.LocalShards, "call",
                                lambda self, *a: pool._guard(0, lambda: real_call(self, *a)))
        out = tmp_path / f"runs-{wrapped}"
        with pytest.raises(OutputError, match=r"cannot write the sessions of world 'ab' in .*No space left on device"):
            run(scenario(users=60), output_dir=out, shards=2, scheduler=IN_PROCESS, quiet=True)
        assert not out.exists()


def test_a_worker_lost_while_it_writes_is_the_workers_failure_not_the_disks(tmp_path, monkeypatch):
    """Dask reports a lost actor's worker as ``OSError("Unable to contact Actor's worker")``, without the
    errno a filesystem sets: a worker killed while it wrote its fragments (the end of a world, where an
    out-of-memory kill is likeliest) failed the run as a disk error in a hidden folder, exit 2 (break
    test 7). It is the shard's failure (exit 1, shard and worker named); nothing published."""
    from counterfeed.core import shard as shard_module
    from counterfeed.core.shard import DaskShards, ShardError

    def lost(self, directory):
        raise OSError("Unable to contact Actor's worker")

    monkeypatch.setattr(shard_module.Shard, "write_fragments", lost)
    real_call = shard_module.LocalShards.call
    pool = DaskShards.__new__(DaskShards)
    pool._where = ["tcp://worker:1", "tcp://worker:2"]
    monkeypatch.setattr(shard_module.LocalShards, "call", lambda self, *a: pool._guard(0, lambda: real_call(self, *a)))
    out = tmp_path / "runs"
    with pytest.raises(ShardError, match=r"shard 0 on Dask worker tcp://worker:1 failed: OSError: Unable to contact"):
        run(scenario(users=60), output_dir=out, shards=2, scheduler=IN_PROCESS, quiet=True)
    assert not out.exists()


def test_errors_in_shards_and_scheduler_options_name_the_option(tmp_path, capsys):
    """A bad ``--shards`` or ``--scheduler`` is reported as that option's, ``--set`` only when the
    user wrote ``--set``."""
    from counterfeed.cli import main

    cases = [(["--set", "population.users=3", "--shards", "4"], "Error: --shards: 4 shards for 3 users"),
             (["--shards", "2", "--scheduler", "tcp://nohost:x"], "Error: --scheduler: expected a Dask scheduler"),
             (["--set", "execution.scheduler=tcp://a:b"], "Error: --set: execution.scheduler: expected")]
    for args, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(["run", str(QUICKSTART), *args, "--out", str(tmp_path / "runs"), "--quiet"])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
        with pytest.raises(SystemExit) as exit_info:  # validate rejects it first, in the same words
            main(["validate", str(QUICKSTART), *args])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
    main(["validate", str(QUICKSTART), "--shards", "4", "--scheduler", " tcp://10.0.0.5:8786 ", "--json"])
    assert '"scheduler": "tcp://10.0.0.5:8786"' in capsys.readouterr().out  # what run would use


def test_workers_with_an_existing_cluster_is_a_usage_error(tmp_path, capsys):
    """``--workers`` sets this machine's processes; an existing cluster has its own: one error, exit 2,
    nothing written (before any connection is tried: the address below answers nothing)."""
    from counterfeed.cli import main

    cases = [(cmd, args) for cmd in ("run", "validate")  # validate takes --workers, rejects it as run does
             for args in (["--scheduler", "tcp://127.0.0.1:9"], ["--set", "execution.scheduler=tcp://127.0.0.1:9"])]
    for command, args in cases:
        extra = ["--out", str(tmp_path / "runs"), "--quiet"] if command == "run" else []
        with pytest.raises(SystemExit) as exit_info:
            main([command, str(QUICKSTART), "--workers", "2", "--shards", "2", *args, *extra])
        assert exit_info.value.code == 2
        where = "--scheduler" if args[0] == "--scheduler" else "--set execution.scheduler"  # as the user typed it
        assert f"Error: --workers: the Dask cluster at tcp://127.0.0.1:9 ({where}) brings its own " \
               "workers" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_scheduler_nothing_listens_at_fails_the_run_at_once_and_writes_nothing(tmp_path, capsys):
    """``--scheduler`` at a refused port or an unresolvable host: exit 2 within seconds, the cause in
    the message, no run directory; ``validate`` checks the address's form only and connects to nothing."""
    import socket
    import time

    from counterfeed.cli import main

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        refused = f"tcp://127.0.0.1:{sock.getsockname()[1]}"  # closed: nothing listens there
    cases = [(refused, f"Error: cannot connect to the Dask scheduler at {refused}: connection refused: "
                       f"nothing listens at {refused[6:]}; is the scheduler running"),
             ("tcp://nonexistent.invalid:8786", "Error: cannot connect to the Dask scheduler at "
                                                "tcp://nonexistent.invalid:8786: cannot resolve host 'nonexistent.invalid'")]
    for address, message in cases:
        start = time.monotonic()
        with pytest.raises(SystemExit) as exit_info:
            main(["run", str(QUICKSTART), "--set", "population.users=50", "--shards", "2", "--scheduler", address,
                  "--out", str(tmp_path / "runs"), "--quiet"])
        assert exit_info.value.code == 2
        assert time.monotonic() - start < 15
        assert message in capsys.readouterr().err
        main(["validate", str(QUICKSTART), "--shards", "2", "--scheduler", address])  # returns: no exit 2
        assert capsys.readouterr().out.startswith("ok: quickstart")
    assert not (tmp_path / "runs").exists()


def test_a_local_cluster_with_fewer_workers_than_shards_writes_the_unsharded_run_directory(tmp_path, monkeypatch):
    """``--workers 2 --shards 4``: a LocalCluster of two worker processes, each holding two shards
    (round robin), gives the unsharded bytes."""
    import counterfeed.core.runner as runner
    from counterfeed.core import shard

    seen = []

    class Recording(shard.open_shards):
        def __enter__(self):
            pool = super().__enter__()
            seen.append((self.workers, len(pool.client.scheduler_info()["workers"]), pool))
            return pool

    monkeypatch.setattr(runner, "open_shards", Recording)
    sc = scenario(users=60)
    base = digest(run(sc, output_dir=tmp_path / "one").run_dir)
    got = digest(run(sc, output_dir=tmp_path / "four", shards=4, workers=2).run_dir)
    assert got == base
    assert [s[:2] for s in seen] == [(2, 2)]
    assert len(seen[0][2]._where) == 4 and len(set(seen[0][2]._where)) == 2  # the last world's four shards
