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

Every file is strict JSON (RFC 8259, :func:`counterfeed._json.dumps`): a non-finite number is written
as ``null``. A replication record says what each such ``null`` stood for in its ``"_nonfinite"``
member, a map from the value's JSON Pointer (RFC 6901) to ``"Infinity"``, ``"-Infinity"`` or
``"NaN"``, e.g. ``{"/estimates/3/lower": "-Infinity", "/estimates/3/upper": "Infinity"}`` for an
unbounded interval; :meth:`ReplicationStore.load` puts the numbers back, so a resumed calibration,
the summary and a sweep see exactly the values the replication returned (an unbounded interval still
covers; a NaN stays NaN). Files written before this (with bare ``Infinity``/``NaN``) still load.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import numbers
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from counterfeed._json import dumps
from counterfeed.errors import OutputError

__all__ = ["ReplicationStore", "scenario_hash", "atomic_write_json"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_STORE_FILE = "store.json"


def scenario_hash(data: Any) -> str:
    """SHA-256 of canonical JSON of ``data`` (a scenario dict, minus its ``output`` section, with its
    ``execution`` at the defaults: the shard count changes no number, :func:`~counterfeed.core.shard_spec.unsharded`)."""
    from counterfeed.core.shard_spec import unsharded

    if isinstance(data, dict):
        data = {k: v for k, v in unsharded(data).items() if k != "output"}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (non-finite numbers as ``null``) to ``path`` atomically
    (temporary file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    data = dumps(obj, indent=1).encode()
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


#: the member of a stored record that maps JSON Pointers of non-finite numbers to their values
NONFINITE_KEY = "_nonfinite"
_NONFINITE_NAMES = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _pointer_token(key: Any) -> str:
    return str(key).replace("~", "~0").replace("/", "~1")


def _nonfinite(obj: Any, at: str = "") -> dict[str, str]:
    """JSON Pointer -> ``"Infinity"`` / ``"-Infinity"`` / ``"NaN"`` for every non-finite number in ``obj``."""
    if isinstance(obj, dict):
        return {p: v for k, x in obj.items() for p, v in _nonfinite(x, f"{at}/{_pointer_token(k)}").items()}
    if isinstance(obj, (list, tuple)):
        return {p: v for i, x in enumerate(obj) for p, v in _nonfinite(x, f"{at}/{i}").items()}
    if hasattr(obj, "tolist") and getattr(obj, "ndim", 0):  # a NumPy array
        return _nonfinite(obj.tolist(), at)
    if isinstance(obj, numbers.Real) and not isinstance(obj, (bool, numbers.Integral)):
        x = float(obj)
        if not math.isfinite(x):
            return {at: _NONFINITE_NAMES.get(x, "NaN")}
    return {}


def _restore_nonfinite(record: Any) -> Any:
    """Put back the numbers a stored record's ``"_nonfinite"`` map names (where the file has ``null``)."""
    if not isinstance(record, dict):
        return record
    marks = record.pop(NONFINITE_KEY, None)
    if not isinstance(marks, dict):
        return record
    for pointer, value in marks.items():
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in str(pointer).split("/")[1:]]
        if not tokens or value not in ("Infinity", "-Infinity", "NaN"):
            continue
        parent: Any = record
        try:
            for t in tokens[:-1]:
                parent = parent[int(t)] if isinstance(parent, list) else parent[t]
            last: Any = int(tokens[-1]) if isinstance(parent, list) else tokens[-1]
            if parent[last] is None:
                parent[last] = float(value)
        except (KeyError, IndexError, ValueError, TypeError):
            continue  # a map that does not fit the record: leave the null
    return record


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
        """Persist one finished replication (and clear an earlier failure of it): strict JSON, with its
        non-finite numbers named in ``"_nonfinite"`` (module docstring) so :meth:`load` restores them."""
        marks = _nonfinite(record)
        atomic_write_json(self._path(name), {**record, NONFINITE_KEY: marks} if marks else record)
        with contextlib.suppress(FileNotFoundError):
            self._path(name, error=True).unlink()

    def save_error(self, name: str, record: dict[str, Any]) -> None:
        """Persist the failure of one replication (it is retried by the next run)."""
        marks = _nonfinite(record)
        atomic_write_json(self._path(name, error=True), {**record, NONFINITE_KEY: marks} if marks else record)

    def load(self, names: set[str] | None = None) -> dict[str, dict[str, Any]]:
        """The stored records (all, or those named), their non-finite numbers restored (module docstring);
        an unreadable file counts as not done."""
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(self.done() if names is None else names):
            try:  # json.loads also reads the bare Infinity/NaN of files written by older versions
                out[name] = _restore_nonfinite(json.loads(self._path(name).read_text()))
            except (OSError, ValueError):
                continue
        return out

    def load_errors(self) -> dict[str, dict[str, Any]]:
        """The stored failures, as :meth:`load` reads records."""
        out: dict[str, dict[str, Any]] = {}
        for name in sorted(self.failed()):
            with contextlib.suppress(OSError, ValueError):
                out[name] = _restore_nonfinite(json.loads(self._path(name, error=True).read_text()))
        return out
