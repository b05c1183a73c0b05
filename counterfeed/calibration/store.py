"""Append-only store of finished replications: one small JSON file per replication.

Layout under the output directory::

    store.json                      kind, scenario name and hash, created (written once)
    replications/rep-<i>.json       one finished replication (sweeps: p<j>-rep-<i>.json)
    replications/rep-<i>.error.json a replication that raised: its seed, error and traceback
    .lock                           held (flock) while a calibration writes here

Each file is written to a temporary name in the same directory, flushed, fsync'ed and renamed over
its final name (``os.replace`` is atomic on POSIX), so a process killed at any instant (SIGKILL
included) leaves either the whole file or none of it. Only the coordinating process writes, so
there is one writer per file. A rerun reads the finished names and skips them; a stored scenario
hash that differs from the current one is an error, never a silent mix of two scenarios.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from counterfeed.errors import OutputError

__all__ = ["ReplicationStore", "scenario_hash", "atomic_write_json"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_STORE_FILE = "store.json"


def scenario_hash(data: Any) -> str:
    """SHA-256 of canonical JSON of ``data`` (a scenario dict, minus its ``output`` section)."""
    if isinstance(data, dict):
        data = {k: v for k, v in data.items() if k != "output"}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    data = json.dumps(obj, indent=1, allow_nan=True, default=_json_default).encode()
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON serializable: {type(v).__name__}")


class ReplicationStore:
    """The replications finished so far in one output directory.

    Parameters
    ----------
    root : path
        The output directory (created if missing).
    kind : str
        ``"calibrate"`` or ``"sweep"``; a directory of the other kind is an error.
    scenario_name, digest : str
        The scenario and its hash (:func:`scenario_hash`); a different stored hash is an error.
    fresh : bool
        Discard whatever replications the directory holds first.
    """

    def __init__(self, root: str | Path, *, kind: str, scenario_name: str, digest: str,
                 fresh: bool = False):
        self.root = Path(root)
        self.dir = self.root / "replications"
        self.kind, self.scenario_name, self.digest = kind, scenario_name, digest
        self._lock_fh = None
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the output directory {self.root}: {exc.strerror}") from None
        self._lock()
        if fresh:
            self._discard()
        self._check_or_write_meta()
        self.dir.mkdir(exist_ok=True)
        for stale in self.dir.glob(".*.tmp-*"):  # left by a killed process; never a finished file
            with contextlib.suppress(OSError):
                stale.unlink()

    # -- state ------------------------------------------------------------------------------------
    def _lock(self) -> None:
        import fcntl

        fh = open(self.root / ".lock", "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise OutputError(f"{self.root} is in use by another calibration (its .lock is held); "
                              "wait for it or choose another --out") from None
        self._lock_fh = fh

    def close(self) -> None:
        """Release the directory lock."""
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> "ReplicationStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _discard(self) -> None:
        if self.dir.exists():
            shutil.rmtree(self.dir)
        with contextlib.suppress(FileNotFoundError):
            (self.root / _STORE_FILE).unlink()

    def _check_or_write_meta(self) -> None:
        meta_path = self.root / _STORE_FILE
        if meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except (OSError, ValueError) as exc:
                raise OutputError(f"{meta_path} is unreadable ({exc}); pass --fresh to start over") from None
            if meta.get("kind") != self.kind:
                raise OutputError(f"{self.root} holds a {meta.get('kind')!r} run, not {self.kind!r}; "
                                  "choose another --out")
            if meta.get("scenario_hash") != self.digest:
                raise OutputError(
                    f"{self.root} holds replications of a different scenario "
                    f"('{meta.get('scenario')}', hash {str(meta.get('scenario_hash'))[:12]}, now "
                    f"{self.digest[:12]}); pass --fresh to discard them or choose another --out")
            return
        if self.dir.exists() and any(self.dir.glob("*.json")):
            raise OutputError(f"{self.dir} has replications but no {_STORE_FILE}; "
                              "pass --fresh to discard them or choose another --out")
        atomic_write_json(meta_path, {"kind": self.kind, "scenario": self.scenario_name,
                                      "scenario_hash": self.digest,
                                      "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})

    # -- records ----------------------------------------------------------------------------------
    def _path(self, name: str, error: bool = False) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"bad replication name {name!r}")
        return self.dir / (f"{name}.error.json" if error else f"{name}.json")

    def done(self) -> set[str]:
        """Names of the finished (successful) replications."""
        return {p.name[:-5] for p in self.dir.glob("*.json")
                if not p.name.startswith(".") and not p.name.endswith(".error.json")}

    def failed(self) -> set[str]:
        """Names of replications whose last attempt raised."""
        return {p.name[: -len(".error.json")] for p in self.dir.glob("*.error.json")}

    def save(self, name: str, record: dict[str, Any]) -> None:
        """Persist one finished replication (and clear an earlier failure of it)."""
        atomic_write_json(self._path(name), record)
        with contextlib.suppress(FileNotFoundError):
            self._path(name, error=True).unlink()

    def save_error(self, name: str, record: dict[str, Any]) -> None:
        """Persist the failure of one replication (it is retried by the next run)."""
        atomic_write_json(self._path(name, error=True), record)

    def load(self, names: set[str] | None = None) -> dict[str, dict[str, Any]]:
        """The stored records (all, or those named); an unreadable file counts as not done."""
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(self.done() if names is None else names):
            try:
                out[name] = json.loads(self._path(name).read_text())
            except (OSError, ValueError):
                continue
        return out

    def load_errors(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(self.failed()):
            with contextlib.suppress(OSError, ValueError):
                out[name] = json.loads(self._path(name, error=True).read_text())
        return out
