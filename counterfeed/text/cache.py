"""On-disk embedding cache: one SQLite file, rows keyed by (model identity, text hash).

A text's key is the BLAKE2b-128 digest of its UTF-8 bytes; the model identity is the embedder's
``identity`` string (model name plus a fingerprint of its files and settings), so a different model,
revision or truncation length never reads another's vectors. SQLite in WAL mode lets several
processes (e.g. Dask workers) share one cache. A cache that cannot be opened or written degrades to
no cache with a warning: the embeddings are still computed, only not reused.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import warnings
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["EmbeddingCache", "default_cache_dir", "text_key"]

_CHUNK = 500  # SQL variables per lookup query (below every SQLite build's limit)


def default_cache_dir() -> Path:
    """``$COUNTERFEED_CACHE_DIR/embeddings`` when the variable is set, else ``~/.cache/counterfeed/embeddings``."""
    root = os.environ.get("COUNTERFEED_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "counterfeed"
    return base / "embeddings"


def text_key(text: str) -> bytes:
    """The cache key of one text."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()


class EmbeddingCache:
    """Vectors of one model identity, stored in ``<directory>/embeddings.sqlite3``."""

    def __init__(self, directory: str | os.PathLike, identity: str, dim: int):
        self.directory = Path(directory).expanduser()
        self.identity = identity
        self.dim = int(dim)
        self._conn: sqlite3.Connection | None = None
        self._broken = False

    @property
    def path(self) -> Path:
        return self.directory / "embeddings.sqlite3"

    def _connect(self) -> sqlite3.Connection | None:
        if self._conn is not None or self._broken:
            return self._conn
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60.0)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE IF NOT EXISTS emb (model TEXT NOT NULL, key BLOB NOT NULL, "
                         "vec BLOB NOT NULL, PRIMARY KEY (model, key)) WITHOUT ROWID")
            conn.commit()
        except (OSError, sqlite3.Error) as exc:
            warnings.warn(f"embedding cache disabled: cannot use {self.path}: {exc}", RuntimeWarning,
                          stacklevel=3)
            self._broken = True
            return None
        self._conn = conn
        return conn

    def get(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are absent from the result)."""
        conn = self._connect()
        found: dict[bytes, np.ndarray] = {}
        if conn is None:
            return found
        keys = list(keys)
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(f"SELECT key, vec FROM emb WHERE model = ? AND key IN ({marks})",
                                [self.identity, *chunk])
            for key, blob in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.size == self.dim:
                    found[bytes(key)] = vec
        return found

    def put(self, keys: Iterable[bytes], vectors: np.ndarray) -> None:
        """Store vectors (rows of a float32 array) under their keys."""
        conn = self._connect()
        if conn is None:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        rows = [(self.identity, k, vectors[i].tobytes()) for i, k in enumerate(keys)]
        try:
            with conn:
                conn.executemany("INSERT OR REPLACE INTO emb (model, key, vec) VALUES (?, ?, ?)", rows)
        except sqlite3.Error as exc:
            warnings.warn(f"embedding cache not written ({self.path}): {exc}", RuntimeWarning, stacklevel=3)

    def count(self) -> int:
        """How many vectors this model identity has in the cache."""
        conn = self._connect()
        if conn is None:
            return 0
        return int(conn.execute("SELECT COUNT(*) FROM emb WHERE model = ?", [self.identity]).fetchone()[0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_conn"] = None
        return state
