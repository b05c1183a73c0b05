"""Sharded worlds: one world's users split into blocks of user ids, each block simulated by a shard.

A :class:`ShardedWorld` is a :class:`~counterfeed.core.simulation.SimWorld` whose users' state lives
in shards. The world (the *coordinator*) keeps what every user shares: the serving process and its
boundaries, the visit calendar, the assignment component, the arms' recommenders and their training
logs. A :class:`Shard` keeps what belongs to its users ``lo .. hi - 1``: its block of the
population, the user model's state for that block (built by ``init_state`` on a population block
whose ids are the global ones, :meth:`Population.block`) and its rows of the sessions table.

Per serving window the coordinator asks every arm's recommender for the whole window's slates (the
union of the shards' requests, in user-id order, exactly the batch a single process serves), sends
each shard its users' rows, and gets back the shards' responses (clicks, dwell, next visit) in one
round trip per shard. Responses are concatenated in shard order, which is user-id order, so the
recommenders' online updates (a Thompson-sampling bandit's) and their refits at retraining
boundaries (matrix factorization) see the very log a single process would build. Every draw of the
user model is keyed by (seed, stream, user, session, slot) with global user ids, so a shard's
answers are the single process's answers for its rows: a sharded world is the same world, number
for number (tests/scaling/test_shards.py).

Shards run in Dask workers as actors (:class:`DaskShards`: a ``distributed.LocalCluster`` by default,
an existing scheduler with ``scheduler="tcp://host:port"``) or in this process (:class:`LocalShards`,
for tests and debugging). A worker lost mid-run fails the world with :class:`ShardError`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from counterfeed.core._guard import call_plugin
from counterfeed.core.contracts import Batch, Items, Metric, Population, Response, Slates, UserModel, WorldEvents
from counterfeed.core.randomness import Keys
from counterfeed.core.simulation import (SESSION_COLUMNS, SimWorld, WorldConfig, session_columns,
                                        session_rows)
from counterfeed.errors import CounterfeedError, OutputError

__all__ = ["Shard", "ShardedWorld", "LocalShards", "DaskShards", "ShardError", "shard_blocks", "open_shards",
           "IN_PROCESS"]


class ShardError(CounterfeedError):
    """A shard (or the Dask worker that held it) failed during a world."""

    exit_code = 1  # not a scenario error


def shard_blocks(n_users: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous user-id blocks ``[lo, hi)`` covering ``0 .. n_users - 1`` (sizes differ by
    at most one)."""
    if shards < 1:
        raise ValueError(f"shards must be a positive integer, got {shards}")
    cuts = np.linspace(0, n_users, shards + 1).round().astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:])]


class Shard:
    """The users ``lo .. hi - 1`` of one world: their population block, user-model state and sessions.

    Parameters
    ----------
    lo, hi : the block of global user ids.
    user_model : the user-model plugin (a fresh copy per shard when it travels to a worker).
    items : the catalog.
    keys : the world's keyed randomness (the user model's draws).
    population : the block (:meth:`Population.block`), or a ``(spec, keys)`` pair to build it in
        the shard (:func:`counterfeed.core.population.build_population` with ``block``), so the
        whole population never exists in one process; ``(spec, keys, ids, preferences)``: the same,
        checked against the ``preferences`` rows of users ``ids`` the coordinator holds (a
        mismatch raises :class:`ShardError`).
    arms : the arms' random identities (``WorldConfig.key``; arm index ``a`` uses the policy stream
        ``policy:<arms[a]>``).
    """

    def __init__(self, lo: int, hi: int, user_model: UserModel, items: Items, keys: Keys,
                 population: Population | tuple[Any, Keys], arms: Sequence[str]):
        if not isinstance(population, Population):
            from counterfeed.core.population import build_population

            spec, pop_keys, *probe = population
            population = build_population(spec, pop_keys, block=(lo, hi))
            if probe and not np.array_equal(population.preferences[probe[0] - lo], probe[1]):
                raise ShardError(f"shard [{lo}, {hi}): the population built from its spec is not the "
                                 f"coordinator's")
        if (population.offset, population.offset + population.n) != (lo, hi):
            raise ValueError(f"shard [{lo}, {hi}) was given users [{population.offset}, "
                             f"{population.offset + population.n})")
        self.lo, self.hi = lo, hi
        self.user_model = user_model
        self.items = items
        self.keys = keys
        self.population = population
        self.streams = [keys.stream(f"policy:{a}") for a in arms]
        self.state: Any = None
        self._rows: list[tuple[np.ndarray, ...]] = []
        self._seq: list[np.ndarray] = []

    def start(self) -> np.ndarray:
        """Set up the user model's state for the block; the gap to each user's first visit."""
        um = self.user_model
        self.state = call_plugin(um, "init_state", um.init_state, self.population, self.items, self.keys)
        return np.asarray(call_plugin(um, "first_visit", um.first_visit, self.state, self.population.ids),
                          dtype=np.float64)

    def respond(self, parts: list[tuple]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """The user model's answers to a window's ``(seq, arm, users, sessions, times, now, items,
        propensities, available)`` parts; records the sessions rows (tagged ``seq``, the part's
        place in the world's order). Returns ``(clicks, dwell, next_gap)`` per part."""
        um = self.user_model
        out = []
        for seq, arm, u, s, t, now, items, props, available in parts:
            batch = Batch(users=u, sessions=s, time=now, slate_size=items.shape[1],
                          stream=self.streams[arm], available=available)
            resp = call_plugin(um, "respond", um.respond, self.state, batch, Slates(items, props))
            clicks = np.asarray(resp.clicks).astype(bool)
            self._rows.append(session_rows(arm, u, s, t, items.shape[1], clicks, resp.dwell, resp.next_gap))
            self._seq.append(np.full(u.size, seq, np.int64))
            out.append((clicks, np.asarray(resp.dwell), np.asarray(resp.next_gap)))
        return out

    def sessions(self) -> tuple[list[np.ndarray], np.ndarray]:
        """The block's sessions rows so far: the columns (:data:`SESSION_COLUMNS` order) and the
        ``seq`` of each row."""
        cols = session_columns(self._rows)
        self._rows = [tuple(cols[nm] for nm, _ in SESSION_COLUMNS)] if self._rows else []
        self._seq = [np.concatenate(self._seq)] if self._seq else [np.zeros(0, np.int64)]
        return [cols[nm] for nm, _ in SESSION_COLUMNS], self._seq[0]

    def end(self) -> None:
        """The world is over: let go of the user model's state and the population block, which the
        outcomes and the fragments do not need, so that they fit in the memory simulating took."""
        import gc

        self.state = self.population = None
        gc.collect()

    def _picks(self, a: int, b: int) -> list[tuple[tuple[np.ndarray, ...], np.ndarray | None]]:
        """The recorded chunks (columns in :data:`FRAGMENT_COLUMNS` order, ``seq`` last) holding rows of
        users ``a .. b - 1``, each with the mask of those rows (None: all of them)."""
        picks = []
        for rows, seq in zip(self._rows, self._seq):
            m = (rows[0] >= a) & (rows[0] < b)
            if m.all():
                picks.append(((*rows, seq), None))
            elif m.any():
                picks.append(((*rows, seq), m))
        return picks

    @staticmethod
    def _column(picks: list[tuple[tuple[np.ndarray, ...], np.ndarray | None]], i: int) -> np.ndarray:
        """Column ``i`` (:data:`FRAGMENT_COLUMNS` order) of the picked rows, in the block's order."""
        from counterfeed.core.shard_events import FRAGMENT_COLUMNS

        dt = FRAGMENT_COLUMNS[i][1]
        got = [rows[i] if m is None else rows[i][m] for rows, m in picks]
        return np.concatenate(got).astype(dt, copy=False) if got else np.zeros(0, dt)

    def _rows_of(self, a: int, b: int) -> dict[str, np.ndarray]:
        """The sessions rows of users ``a .. b - 1`` (the block's order), copied out of the recorded
        chunks (one part at a time: the block's table is never built whole)."""
        picks = self._picks(a, b)
        return {nm: self._column(picks, i) for i, (nm, _) in enumerate(SESSION_COLUMNS)}

    def outcomes(self, metrics: dict[str, Metric], windows: Sequence[tuple[float, float]],
                 assignment: np.ndarray) -> dict[tuple[str, float, float], np.ndarray]:
        """The block's values ``(hi - lo,)`` of every metric over every ``(start, end)`` window, keyed
        ``(name, start, end)``; for metrics whose value is a user's own (``per_user_sessions``),
        computed part by part (core.shard_events)."""
        from counterfeed.core.shard_events import block_parts

        out: dict[tuple[str, float, float], list[np.ndarray]] = {}
        for _, a, b in block_parts(self.lo, self.hi):
            cols = self._rows_of(a, b)
            cols["user"] = cols["user"] - a
            events = WorldEvents(world="", n_users=b - a, sessions=cols, impressions=None, start=0.0,
                                 end=max((e for _, e in windows), default=0.0), arms=[],
                                 assignment=assignment[a - self.lo:b - self.lo])
            for name, m in metrics.items():
                for s, e in windows:
                    v = call_plugin(m, "compute", m.compute, events, s, e)
                    out.setdefault((name, s, e), []).append(np.asarray(v, dtype=np.float64))
        return {k: np.concatenate(v) for k, v in out.items()}

    def write_fragments(self, directory: str) -> int:
        """Write the block's sessions as fragments of the world's parts (core.shard_events) into
        ``directory``, one part and one column at a time, and let go of them; the number of rows
        written."""
        from counterfeed.core.shard_events import FRAGMENT_COLUMNS, block_parts, write_fragment

        n = 0
        for k, a, b in block_parts(self.lo, self.hi):
            picks = self._picks(a, b)
            write_fragment(Path(directory), k, a, ((nm, self._column(picks, i))
                                                    for i, (nm, _) in enumerate(FRAGMENT_COLUMNS)))
            n += sum(rows[0].size if m is None else int(m.sum()) for rows, m in picks)
        self._rows, self._seq = [], []
        return n

    def remove_scratch(self, directory: str) -> None:
        """Remove ``directory`` (a run's temporary directory) from this worker's filesystem: the
        fragments a worker wrote where the run cannot read them (no shared filesystem)."""
        import shutil

        shutil.rmtree(directory, ignore_errors=True)

    def memory(self) -> int:
        """Peak resident memory of this process (bytes; Linux ``ru_maxrss``)."""
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class LocalShards:
    """Shards held in this process (tests, debugging); same interface as :class:`DaskShards`."""

    def __init__(self, shards: int):
        self.n = int(shards)
        self._shards: list[Shard] = []

    def create(self, blocks: list[tuple[int, int]], make: Callable[[int, int], tuple]) -> None:
        self._shards = [Shard(lo, hi, *make(lo, hi)) for lo, hi in blocks]

    def call(self, method: str, args: Sequence[tuple] | None = None) -> list[Any]:
        """``shard.method(*args[i])`` on every shard ``i``; the results in shard order."""
        args = args if args is not None else [()] * len(self._shards)
        return [getattr(sh, method)(*a) for sh, a in zip(self._shards, args)]

    def release(self) -> None:
        self._shards = []

    def close(self) -> None:
        self.release()


class DaskShards:
    """Shards as Dask actors, one per worker (round robin when there are more shards than workers).

    ``client``: a ``distributed.Client`` (the caller owns it). ``timeout``: seconds a shard may take
    to answer one call before the world fails.
    """

    def __init__(self, shards: int, client: Any, timeout: float = 3600.0):
        self.n = int(shards)
        self.client = client
        self.timeout = timeout
        self._actors: list[Any] = []
        self._futures: list[Any] = []
        self._where: list[str] = []
        self._checked: set[str] = set()

    def create(self, blocks: list[tuple[int, int]], make: Callable[[int, int], tuple]) -> None:
        try:
            self.client.wait_for_workers(1, timeout=60)
        except TimeoutError:  # the cluster's set-up, not a failure of the run: the user's to fix (exit 2)
            raise CounterfeedError(f"the Dask cluster at {self.client.scheduler.address} has no workers (waited 60 "
                                   "s): start some with 'dask worker <scheduler address>'") from None
        workers = sorted(self.client.scheduler_info().get("workers", {}))
        self._where = [workers[i % len(workers)] for i in range(len(blocks))]
        self._check_code(sorted(set(self._where)))
        self._futures = [self.client.submit(Shard, lo, hi, *make(lo, hi), actor=True, workers=[w],
                                            allow_other_workers=False, pure=False)
                         for (lo, hi), w in zip(blocks, self._where)]
        self._actors = [self._result(f, i) for i, f in enumerate(self._futures)]

    def _check_code(self, workers: list[str]) -> None:
        """Refuse workers that run other code than this process (:mod:`counterfeed.core.code_identity`):
        their shards' numbers would differ. Each worker is asked once per pool."""
        from counterfeed.core.code_identity import check_same_code, code_fingerprint

        ask = [w for w in workers if w not in self._checked]
        if not ask:
            return
        for w, remote in sorted(self.client.run(code_fingerprint, workers=ask).items()):
            check_same_code(remote, w)
            self._checked.add(w)

    def call(self, method: str, args: Sequence[tuple] | None = None) -> list[Any]:
        args = args if args is not None else [()] * len(self._actors)
        pending = [self._guard(i, lambda: getattr(actor, method)(*a))
                   for i, (actor, a) in enumerate(zip(self._actors, args))]
        return [self._result(p, i) for i, p in enumerate(pending)]

    def _result(self, future: Any, i: int) -> Any:
        return self._guard(i, lambda: future.result(timeout=self.timeout))

    def _guard(self, i: int, step: Callable[[], Any]) -> Any:
        try:
            return step()
        except CounterfeedError:
            raise
        except Exception as exc:  # noqa: BLE001 -- a lost worker surfaces as many exception types
            raise ShardError(f"shard {i} on Dask worker {self._where[i]} failed: "
                             f"{type(exc).__name__}: {exc or 'the worker was lost'}; the run stopped and "
                             "nothing was published") from exc

    def release(self) -> None:
        for f in self._futures:
            f.release()
        self._actors, self._futures = [], []

    def close(self) -> None:
        self.release()


class ShardedWorld(SimWorld):
    """A :class:`SimWorld` whose users are simulated by shards (see the module docstring).

    Parameters are :class:`SimWorld`'s, plus ``shards``: a :class:`LocalShards` or
    :class:`DaskShards` pool, and ``population``: the whole population (its blocks travel to the
    shards) or a ``(spec, keys)`` pair each shard builds its block from; ``config.n_users`` then
    gives the number of users.

    ``scratch``: a folder (under the run's temporary directory) where, at the end of the world, the
    shards write their sessions (:mod:`counterfeed.core.shard_events`) instead of sending them: the
    events' ``sessions`` are then a :class:`~counterfeed.core.shard_events.SessionsFile`. ``metrics``
    and ``windows``: the per-user metrics (``per_user_sessions``) each shard computes for its users over
    each ``(start, end)``, gathered in :attr:`reduced` (``(name, start, end)`` -> ``(n_users,)``).
    ``population_spec``: the ``(spec, keys)`` a whole ``population`` was built from: the world keeps
    the whole population, and each shard builds its block rather than receiving it through Dask's
    task graph (about 270 bytes a user), checked on 16 rows of its block.
    """

    def __init__(self, config: WorldConfig, items: Items, population: Population | tuple[Any, Keys],
                 keys: Keys, user_model: UserModel, make_recommender: Callable, assignment: Any = None,
                 progress: Callable[[float], None] | None = None, *, shards: LocalShards | DaskShards,
                 scratch: Path | None = None, metrics: dict[str, Metric] | None = None,
                 windows: Sequence[tuple[float, float]] = (), population_spec: tuple[Any, Keys] | None = None):
        from counterfeed.core.shard_events import part_aligned_blocks

        whole = population if isinstance(population, Population) else None
        super().__init__(config, items, whole, keys, user_model, make_recommender, assignment, progress)
        self._population_source = population
        self._population_spec = population_spec
        self.pool = shards
        self.blocks = part_aligned_blocks(self.n, shards.n)
        self.scratch = scratch
        self._reduce = {n: m for n, m in (metrics or {}).items() if getattr(m, "per_user_sessions", False)}
        self._windows = list(windows)
        self.reduced: dict[tuple[str, float, float], np.ndarray] = {}
        self._over = False  # the serving process has finished: the sessions are final
        self._bounds = np.array([hi for _, hi in self.blocks[:-1]], dtype=np.int64)
        self._seq = 0

    def _block_args(self, lo: int, hi: int) -> tuple:
        src, spec = self._population_source, self._population_spec
        if isinstance(src, Population) and spec is not None:  # built in the shard, checked on 16 rows
            ids = np.unique(np.linspace(lo, hi - 1, 16).astype(np.int64))
            pop = (*spec, ids, src.preferences[ids - src.offset])
        else:
            pop = src.block(lo, hi) if isinstance(src, Population) else src
        return self.user_model, self.items, self.keys, pop, [self.cfg.key(a) for a in range(len(self.cfg.arms))]

    def _first_visits(self) -> np.ndarray:
        self.pool.create(self.blocks, self._block_args)
        return np.concatenate(self.pool.call("start"))

    def _respond(self, parts: list[tuple[int, Batch, Slates, np.ndarray]]) -> list[Response]:
        per_shard: list[list[tuple]] = [[] for _ in self.blocks]
        cuts = []
        for arm, batch, slates, times in parts:
            cut = np.r_[0, np.searchsorted(batch.users, self._bounds), len(batch)]  # users are id-sorted
            cuts.append(cut)
            items, props = slates.items, np.asarray(slates.propensities)
            for i in range(len(self.blocks)):
                a, b = cut[i], cut[i + 1]
                if b > a:
                    per_shard[i].append((self._seq, arm, batch.users[a:b], batch.sessions[a:b], times[a:b],
                                         batch.time, items[a:b], props[a:b], batch.available))
            self._seq += 1
        answers = self.pool.call("respond", [(p,) for p in per_shard])
        out = []
        taken = [0] * len(self.blocks)
        for j, cut in enumerate(cuts):
            got = []
            for i in range(len(self.blocks)):
                if cut[i + 1] > cut[i]:
                    got.append(answers[i][taken[i]])
                    taken[i] += 1
            out.append(Response(*(np.concatenate([g[c] for g in got]) for c in range(3))))
        return out

    def _add_sessions(self, rows: tuple[np.ndarray, ...]) -> None:
        """The shards keep their users' sessions rows."""

    def _server(self):
        yield from super()._server()
        self._over = True

    def _session_columns(self) -> Any:
        """The shards' rows merged into the single-process order (window parts in serving order, users
        in id order within a part: shard order); at the end of a world with a ``scratch`` folder, the
        sessions file the shards wrote instead (the rows never come here)."""
        #: peak resident memory (bytes) of the process holding each shard: after simulating (before any
        #: gathering), and :attr:`shard_memory` after the outcomes and the sessions file too
        self.shard_memory_simulating = self.shard_memory = [int(m) for m in self.pool.call("memory")]
        if self._over:
            self.pool.call("end")
        if self._over and self._reduce and self._windows:
            got = self.pool.call("outcomes", [(self._reduce, self._windows, self._current[lo:hi].copy())
                                              for lo, hi in self.blocks])
            self.reduced = {k: np.concatenate([g[k] for g in got]) for k in got[0]}
        if self._over and self.scratch is not None:
            from counterfeed.core.shard_events import SessionsFile, merge_fragments

            parts = Path(os.path.abspath(self.scratch)) / "fragments"  # the workers' working directory is not ours
            try:
                self.scratch.mkdir(parents=True, exist_ok=True)
                written = sum(int(n) for n in self.pool.call("write_fragments", [(str(parts),)] * len(self.blocks)))
                self.shard_memory = [int(m) for m in self.pool.call("memory")]
                merged = merge_fragments(parts, self.scratch / "sessions.parquet", self.n)
            except (OSError, ShardError) as exc:  # the disk is full or read-only, here or on a worker
                cause = exc.__cause__ if isinstance(exc, ShardError) else exc
                # a lost worker: its own error (exit 1). Dask reports one as an OSError too ("Unable to
                # contact Actor's worker", a CommClosedError), but without the errno a filesystem sets
                if not isinstance(cause, OSError) or (isinstance(exc, ShardError) and cause.errno is None):
                    raise
                raise OutputError(f"cannot write the sessions of world '{self.cfg.name}' in '{self.scratch}': "
                                  f"{cause.strerror or cause}") from None
            if merged != written:  # the workers wrote on filesystems of their own
                run_tmp = parts.parent.parent.parent  # <run's temporary directory>/<SCRATCH>/<world>/fragments
                self.pool.call("remove_scratch", [(str(run_tmp),)] * len(self.blocks))
                raise OutputError(f"the Dask workers wrote the sessions of world '{self.cfg.name}' ({written:,} rows) "
                                  f"under {parts}, and this process found {merged:,} of them there: with --scheduler, "
                                  "the run's output directory (--out, or output.dir) must be on a filesystem the "
                                  "workers share with this process, at the same absolute path")
            return SessionsFile(self.scratch / "sessions.parquet")
        got = self.pool.call("sessions")
        seq = np.concatenate([g[1] for g in got])
        order = np.argsort(seq, kind="stable")
        return {nm: np.concatenate([g[0][i] for g in got])[order] for i, (nm, _) in enumerate(SESSION_COLUMNS)}

    def run(self) -> Any:
        """Simulate the world (:meth:`SimWorld.run`), then release the shards."""
        try:
            return super().run()
        finally:
            self.pool.release()


# An actor call cut short by Ctrl-C leaves distributed's coroutine for its result unawaited, and
# Python warned about it (with a tracemalloc hint) after the run had said it was interrupted.
warnings.filterwarnings("ignore", message=r"coroutine 'ActorFuture\._result' was never awaited",
                        category=RuntimeWarning)

#: ``scheduler`` value that keeps the shards in this process (tests, debugging)
IN_PROCESS = "in-process"


class open_shards:
    """A shard pool for a run: ``with open_shards(4) as pool: ...``.

    ``scheduler``: None starts a ``distributed.LocalCluster`` of ``workers`` single-threaded worker
    processes (None: one per shard up to the cores this process may use; at most ``shards``; the
    shards share them round robin), closed on exit; ``tcp://host:port`` uses an existing cluster
    (its workers must import counterfeed; ``workers`` is ignored); :data:`IN_PROCESS` keeps the
    shards in this process. On one machine more worker processes than cores add only overhead (the
    machine's memory is shared by them all): 48 shards of a 48-user run on 2 cores, one process
    each, lost the scheduler's connection after 175 s.
    """

    def __init__(self, shards: int, scheduler: str | None = None, workers: int | None = None):
        from counterfeed.core.executors import pool_size

        self.shards = int(shards)
        self.scheduler = scheduler
        self.workers = pool_size(workers, self.shards)
        self._executor: Any = None

    def __enter__(self) -> LocalShards | DaskShards:
        if self.scheduler == IN_PROCESS:
            self.pool: LocalShards | DaskShards = LocalShards(self.shards)
            return self.pool
        from counterfeed.core.executors import DaskExecutor

        self._executor = DaskExecutor(workers=self.workers, scheduler=self.scheduler)
        if self.scheduler is None:
            try:
                self._executor.client.wait_for_workers(self.workers, timeout=120)
            except TimeoutError:
                started = len(self._executor.client.scheduler_info().get("workers", {}))
                self._executor.close()
                raise ShardError(f"the local Dask cluster started {started} of its {self.workers} worker processes "
                                 "in 120 s: fewer shards or --workers, or a machine with more cores") from None
        self.pool = DaskShards(self.shards, self._executor.client)
        return self.pool

    def __exit__(self, *exc: object) -> None:
        from counterfeed.core import interrupts

        with interrupts.held():  # closed whole, then a Ctrl-C that came meanwhile is raised
            try:
                self.pool.close()
            except Exception:  # noqa: BLE001 -- a lost worker's actors cannot be released; closing goes on
                pass
            if self._executor is not None:
                self._executor.close()
