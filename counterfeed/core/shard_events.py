"""A world's sessions table on disk, in user-id parts: what lets a sharded world's coordinator stay small.

``events/<world>/sessions.parquet`` holds one row group sequence per *part*: the users
``k * PART_USERS .. (k + 1) * PART_USERS - 1``, their rows in the world's order (serving order,
users in id order within a window). The parts depend only on the number of users, so the file is
the same bytes whether one process wrote it (:func:`write_sessions`) or ``N`` shards did.

A sharded world (:mod:`counterfeed.core.shard`) never gathers its sessions: each shard writes, for
every part its user block touches, a *fragment* (its rows of that part plus their ``seq``, the
window part they were served in) into a scratch folder under the run's temporary directory
(:data:`SCRATCH`, so nothing is published when the run fails or is interrupted). A fragment is raw:
one ``.npy`` file per column (:func:`write_fragment`), written one column at a time, so a shard
never imports pyarrow (about 80 MB of a worker's memory once it has written Parquet) and never holds
a part's columns twice. The coordinator then writes the Parquet file part by part
(:func:`merge_fragments`): a part written by one shard is its fragment; a part shared by shards is
their fragments in shard order, stably sorted by ``seq`` -- exactly the single-process order. The
coordinator holds one part at a time, never the table.
:class:`SessionsFile` reads the file's columns back only when a consumer asks for them.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from counterfeed.core.simulation import SESSION_COLUMNS

__all__ = ["PART_USERS", "ALIGNED_SLACK", "SCRATCH", "part_bounds", "block_parts", "part_aligned_blocks", "part_major",
           "write_sessions", "FRAGMENT_COLUMNS", "write_fragment", "merge_fragments", "SessionsFile"]

#: users per part of a sessions file (parts cover user ids ``[k * PART_USERS, (k + 1) * PART_USERS)``)
PART_USERS = 65_536

#: the scratch folder, under a run's temporary directory, of the shards' fragments and merged files
SCRATCH = ".shards"


def part_bounds(n_users: int) -> list[tuple[int, int]]:
    """The ``[lo, hi)`` user-id ranges of the parts of an ``n_users`` world (one part at least)."""
    n_parts = max(1, -(-int(n_users) // PART_USERS))
    return [(k * PART_USERS, min(int(n_users), (k + 1) * PART_USERS)) for k in range(n_parts)]


def block_parts(lo: int, hi: int) -> list[tuple[int, int, int]]:
    """``(k, a, b)``: the users ``a .. b - 1`` of part ``k`` that are in the block ``lo .. hi - 1``."""
    return [(k, max(lo, k * PART_USERS), min(hi, (k + 1) * PART_USERS))
            for k in range(lo // PART_USERS, -(-hi // PART_USERS))]


#: how much larger than an even split's largest block a block of whole parts may be
ALIGNED_SLACK = 0.10


def part_aligned_blocks(n_users: int, shards: int) -> list[tuple[int, int]]:
    """``shards`` contiguous user blocks: made of whole parts (every part written by one shard, nothing
    to merge) when that keeps the largest block within :data:`ALIGNED_SLACK` of an even split's
    largest, else :func:`~counterfeed.core.shard.shard_blocks`'s even blocks (a part shared by two
    shards is merged by the coordinator, :func:`merge_fragments`; the same bytes either way).

    A shard's memory is its block's, so the blocks must be even: whole parts alone gave 131,073 users
    on 2 shards blocks of 131,072 and 1 user, and 200,000 users on 3 shards 66% of them on one worker
    (break test 12). 1M users on 2 shards (16 parts) stay whole parts: 524,288 and 475,712 users."""
    from counterfeed.core.shard import shard_blocks

    even = shard_blocks(n_users, shards)
    parts = part_bounds(n_users)
    if len(parts) < shards:
        return even
    aligned = [(parts[a][0], parts[b - 1][1]) for a, b in shard_blocks(len(parts), shards)]
    largest = max(hi - lo for lo, hi in even)
    return aligned if max(hi - lo for lo, hi in aligned) <= (1.0 + ALIGNED_SLACK) * largest else even


def part_major(cols: dict[str, np.ndarray], n_users: int) -> dict[str, np.ndarray]:
    """A sessions table in the file's order: part by part, the world's order within a part (the same
    table when the world has one part). Every world's events are in this order, sharded or not, so
    what is computed from them does not depend on the number of shards."""
    if len(part_bounds(n_users)) == 1:
        return cols
    order = np.argsort(np.asarray(cols["user"]) // PART_USERS, kind="stable")
    return {nm: np.asarray(v)[order] for nm, v in cols.items()}


def _table(cols: Mapping[str, np.ndarray]):
    import pyarrow as pa

    return pa.table({nm: np.asarray(cols[nm], dtype=dt) for nm, dt in SESSION_COLUMNS})


def _writer(path: Path):
    import pyarrow.parquet as pq

    from counterfeed.core.simulation import session_columns

    return pq.ParquetWriter(path, _table(session_columns([])).schema)


def write_sessions(path: Path, cols: Mapping[str, np.ndarray], n_users: int) -> None:
    """Write a sessions table (:data:`SESSION_COLUMNS`, the world's order) to ``path`` part by part."""
    user = np.asarray(cols["user"])
    parts = part_bounds(n_users)
    with _writer(path) as w:
        for lo, hi in parts:
            rows = slice(None) if len(parts) == 1 else np.flatnonzero((user >= lo) & (user < hi))
            w.write_table(_table({nm: np.asarray(cols[nm])[rows] for nm, _ in SESSION_COLUMNS}))


#: a fragment's columns: the sessions table's and ``seq`` (the row's window part in the world's order)
FRAGMENT_COLUMNS = (*SESSION_COLUMNS, ("seq", np.int64))


def write_fragment(directory: Path, k: int, a: int, columns: Iterable[tuple[str, np.ndarray]]) -> None:
    """A shard's fragment of part ``k``: its rows of the part (users from ``a``, its order), the
    ``(name, values)`` of every :data:`FRAGMENT_COLUMNS` column, saved as ``<name>.npy`` in the folder
    ``part-<k>-<a>`` of ``directory``. ``columns`` may be a generator: each column is saved and let go
    before the next one is asked for."""
    folder = directory / f"part-{k:06d}-{a:012d}"
    folder.mkdir(parents=True, exist_ok=True)
    dtypes = dict(FRAGMENT_COLUMNS)
    for name, values in columns:
        np.save(folder / f"{name}.npy", np.asarray(values, dtype=dtypes[name]), allow_pickle=False)


def merge_fragments(directory: Path, path: Path, n_users: int) -> int:
    """Write the sessions file ``path`` from the fragments in ``directory`` (then removed), one part at
    a time: a part's fragments in user order, stably sorted by ``seq`` (see the module docstring).
    Returns the number of rows written."""
    rows = 0
    with _writer(path) as w:
        for k in range(len(part_bounds(n_users))):
            got = sorted(directory.glob(f"part-{k:06d}-*"))
            cols = {nm: np.concatenate([np.load(f / f"{nm}.npy", allow_pickle=False) for f in got])
                    if got else np.zeros(0, dt) for nm, dt in FRAGMENT_COLUMNS}
            if len(got) > 1:
                order = np.argsort(cols["seq"], kind="stable")
                cols = {nm: v[order] for nm, v in cols.items()}
            w.write_table(_table(cols))
            rows += len(cols["seq"])
            del cols
    shutil.rmtree(directory, ignore_errors=True)
    return rows


class SessionsFile(Mapping):
    """A sessions table kept on disk: ``file[name]`` reads (once) the column ``name`` of the Parquet
    file ``path`` (:data:`SESSION_COLUMNS` names). ``path`` follows the file when the run directory
    moves it (:func:`counterfeed.core.rundir.write_events`)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._cols: dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._cols:
            if name not in dict(SESSION_COLUMNS):
                raise KeyError(name)
            import pyarrow.parquet as pq

            dt = dict(SESSION_COLUMNS)[name]
            self._cols[name] = pq.read_table(self.path, columns=[name]).column(name).to_numpy().astype(dt, copy=False)
        return self._cols[name]

    def __iter__(self) -> Iterator[str]:
        return iter(nm for nm, _ in SESSION_COLUMNS)

    def __len__(self) -> int:
        return len(SESSION_COLUMNS)
