"""The run directory: written atomically by a run, read back by one reader.

Layout (DESIGN.md, "Run directory"): ``scenario.yaml`` (resolved), ``manifest.json`` (its presence
marks a finished run), ``estimates.json`` + ``estimates.csv``, ``truth.parquet``,
``outcomes.parquet``, ``timeseries.parquet``, ``user_truth.parquet``, ``events/<world>/*.parquet``,
and whatever plugins add (``posterior-*.nc``, the report). :func:`save_run` writes a :class:`RunResult` into a directory,
:func:`load_run` reads one back, and :class:`RunDirectory` gives a run a hidden temporary directory
that is renamed into place only when complete. ``counterfeed report`` and the report written at the
end of a run both read through :func:`load_run`.

A run writes its event logs (the bulk of the bytes; pyarrow releases the GIL) on a thread while its
report is drawn: :func:`save_run` with ``background=True``. :func:`wait_for_writes` waits for them and
raises what the writer raised; :meth:`RunDirectory.publish` and :meth:`RunDirectory.discard` wait
first, so nothing is published, or removed, half written.
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import secrets
import shutil
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from counterfeed._json import dumps
from counterfeed.core import interrupts
from counterfeed.core.contracts import Estimate, WorldEvents
from counterfeed.core.display import num
from counterfeed.core.results import RunResult
from counterfeed.core.scenario import load_scenario
from counterfeed.core.scoring import score_estimates
from counterfeed.core.shard_spec import unsharded
from counterfeed.errors import DataError, OutputError, ScenarioError

__all__ = ["RunDirectory", "save_run", "load_run", "write_events", "wait_for_writes"]

#: the optional tables and the columns an empty stand-in gets when the file is absent
_TABLES = {"truth": ["metric", "arm", "control", "estimand", "segment", "value"],
           "outcomes": ["world", "user", "arm", "segment"],
           "timeseries": ["world", "arm", "day", "metric", "value"],
           "user_truth": ["user", "metric", "arm", "control", "realised", "conditional", "conditional_se"]}


class RunDirectory:
    """A run directory written under a hidden temporary name and renamed when complete."""

    def __init__(self, parent: Path, name: str):
        self.parent = parent
        self.name = name
        self.tmp: Path | None = None
        self.final: Path | None = None
        self.created: list[Path] = []

    def create(self) -> Path:
        #: the folders this run creates above the run directory, deepest first: removed by
        #: :meth:`discard` when left empty (a failed run writes nothing)
        self.created, folder = [], self.parent
        while not folder.exists() and folder != folder.parent:
            self.created.append(folder)
            folder = folder.parent
        try:
            self.parent.mkdir(parents=True, exist_ok=True)
            self.tmp = self.parent / f".{self.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
            self.tmp.mkdir()
        except OSError as exc:
            raise OutputError(f"cannot create the run directory in '{self.parent}': "
                              f"{exc.strerror or exc}") from None
        return self.tmp

    def publish(self) -> Path:
        """Rename the finished temporary directory to ``<name>-<timestamp>[-n]`` (atomic).

        Raises ``KeyboardInterrupt`` instead when a Ctrl-C arrived during the run, even one that was
        swallowed on its way up (:mod:`counterfeed.core.interrupts`).
        """
        assert self.tmp is not None
        wait_for_writes(self.tmp)
        interrupts.check()
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = self.parent / f"{self.name}-{stamp}"
        for n in range(1, 10_000):
            final = base if n == 1 else Path(f"{base}-{n}")
            if final.exists():
                continue
            try:
                os.rename(self.tmp, final)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # another run took the name just now
                    continue
                raise OutputError(f"cannot publish the run directory '{final}': {exc.strerror or exc}") from None
            self.final = final
            return final
        raise OutputError(f"cannot find a free run directory name under '{self.parent}'")

    def discard(self) -> None:
        if self.tmp is not None:
            _join(self.tmp)  # the writer's error, if any, is not news: the run already failed
        if self.tmp is not None and self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        for folder in self.created:
            try:
                folder.rmdir()  # only when empty: another run may have written there meanwhile
            except OSError:
                break


# -- writing ---------------------------------------------------------------------------------------
def write_events(directory: Path, events: WorldEvents, record_impressions: bool) -> None:
    """``events/<world>/sessions.parquet`` (and ``impressions.parquet`` when recorded)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from counterfeed.core.shard_events import SessionsFile, write_sessions

    wdir = directory / "events" / events.world
    wdir.mkdir(parents=True, exist_ok=True)
    if isinstance(events.sessions, SessionsFile):  # written by a sharded world's shards: moved into place
        os.replace(events.sessions.path, wdir / "sessions.parquet")
        events.sessions.path = wdir / "sessions.parquet"
    else:
        write_sessions(wdir / "sessions.parquet", events.sessions, events.n_users)
    if record_impressions and events.impressions is not None:
        pq.write_table(pa.table(events.impressions.to_dict()), wdir / "impressions.parquet")


def save_run(result: RunResult, directory: Path, events: dict[str, WorldEvents] | None = None,
             record_impressions: bool = True, *, background: bool = False) -> None:
    """Write every file of ``result`` into ``directory``; ``manifest.json`` last of them (its presence
    marks a finished run; a run directory is published only after its event logs are written too).

    ``events`` (world name -> log) are written under ``events/``; ``record_impressions`` also writes
    the impression logs. With ``background`` the event logs are written on a thread (started first)
    and the call returns once the other files are written: :func:`wait_for_writes` (or publishing
    the :class:`RunDirectory`) waits for them. Raises OSError when the directory cannot be written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    if background and events:
        _start(directory, events, record_impressions)
    else:
        _write_all_events(directory, events or {}, record_impressions)
    (directory / "scenario.yaml").write_text(yaml.safe_dump(unsharded(result.scenario.to_dict()), sort_keys=False,
                                                           allow_unicode=True), encoding="utf-8")
    result.outcomes.to_parquet(directory / "outcomes.parquet", index=False)
    result.timeseries.to_parquet(directory / "timeseries.parquet", index=False)
    result.truth.to_parquet(directory / "truth.parquet", index=False)
    if result.user_truth is not None:
        result.user_truth.to_parquet(directory / "user_truth.parquet", index=False)
    payload = {"level": result.scenario.level, "srm": result.srm,
               "estimates": [e.to_dict() for e in result.estimates]}
    _write_json(directory / "estimates.json", payload)
    write_estimates_csv(result, directory / "estimates.csv")
    _write_json(directory / "manifest.json", result.manifest)


def _write_all_events(directory: Path, events: dict[str, WorldEvents], record_impressions: bool) -> None:
    from counterfeed.core.shard_events import SCRATCH

    for ev in events.values():
        write_events(directory, ev, record_impressions)
    shutil.rmtree(directory / SCRATCH, ignore_errors=True)  # sessions of sharded worlds not kept


class _Writer(threading.Thread):
    """The thread that writes a run's event logs; keeps what it raised for :func:`wait_for_writes`."""

    def __init__(self, directory: Path, events: dict[str, WorldEvents], record_impressions: bool):
        super().__init__(name=f"counterfeed-events-{directory.name}", daemon=True)
        self.task = (directory, dict(events), record_impressions)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            _write_all_events(*self.task)
        except BaseException as exc:  # noqa: BLE001 - raised again by wait_for_writes, in the caller
            self.error = exc


_writers: dict[Path, _Writer] = {}
_writers_lock = threading.Lock()


def _start(directory: Path, events: dict[str, WorldEvents], record_impressions: bool) -> None:
    import pyarrow.parquet  # noqa: F401 - imported here, not on the thread (a process forked meanwhile)

    from counterfeed.core import shard_events  # noqa: F401

    wait_for_writes(directory)  # one writer per directory at a time
    writer = _Writer(directory, events, record_impressions)
    with _writers_lock:
        _writers[directory.resolve()] = writer
    writer.start()


def _join(directory: Path) -> BaseException | None:
    with _writers_lock:
        writer = _writers.pop(directory.resolve(), None)
    if writer is None:
        return None
    writer.join()
    return writer.error


def wait_for_writes(directory: Path) -> None:
    """Wait until the event logs :func:`save_run` writes in the background into ``directory`` are
    written (at once when none are); raises what writing them raised (OSError when the disk refused)."""
    error = _join(directory)
    if error is not None:
        raise error


def write_estimates_csv(result: RunResult, target: Any) -> None:
    """The estimates table as CSV into ``target`` (a path or a text stream): the one writer of
    estimates.csv and of ``run --format csv`` (diagnostics: one JSON object per cell)."""
    frame = result.estimates_frame()  # diagnostics are dicts in the API; a JSON object per CSV cell
    frame["diagnostics"] = [dumps(d, sort_keys=True) for d in frame["diagnostics"]]
    frame.to_csv(target, index=False)


def _write_json(path: Path, doc: Any) -> None:
    path.write_text(dumps(doc, indent=2), encoding="utf-8")


# -- reading ---------------------------------------------------------------------------------------
def load_run(run_dir: str | Path) -> RunResult:
    """Read a finished run directory back into a :class:`RunResult` (event logs stay on disk).

    ``manifest.json``, ``scenario.yaml`` and ``estimates.json`` are required; a missing
    ``truth``/``outcomes``/``timeseries`` table reads as an empty one. Raises :class:`DataError`
    naming the file and what is wrong with it (not a directory, no manifest, unreadable JSON,
    YAML or Parquet, an invalid scenario, a malformed estimate).
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise DataError(f"{d}: not a directory")
    if not (d / "manifest.json").is_file():
        raise DataError(f"{d}: not a finished counterfeed run directory (no manifest.json)")
    manifest = _read_json(d / "manifest.json")
    scenario = _read_scenario(d / "scenario.yaml")
    est_doc = _read_json(d / "estimates.json")
    level = num(est_doc.get("level")) or num(manifest.get("level")) or scenario.level
    raw = est_doc.get("estimates") or []
    if not isinstance(raw, list):
        raise DataError(f"{d / 'estimates.json'}: 'estimates' must be a list")
    estimates = [_estimate(e, i, level, d / "estimates.json") for i, e in enumerate(raw)]
    srm = est_doc.get("srm") if isinstance(est_doc.get("srm"), dict) else {}
    tables = {name: _read_parquet(d / f"{name}.parquet", cols) for name, cols in _TABLES.items()}
    for e in estimates:
        # covered and error are derived numbers: recompute them from the row's own truth and bounds, so a
        # report never states a verdict its numbers contradict (a break test edited a truth in
        # estimates.json and the report said "inside the interval" for a truth outside it). A null bound
        # is infinite where ``diagnostics.unbounded`` says so (read back above), else missing: left as stored
        # (a two-ray set is scored with its rays, Estimate.score).
        if e.truth is not None and not (math.isnan(e.lower) or math.isnan(e.upper)):
            e.score(e.truth)
    score_estimates(estimates, tables["truth"])  # estimates saved without their truth (partial runs)
    return RunResult(scenario=scenario, seed=int(manifest.get("seed", scenario.seed)), estimates=estimates,
                     truth=tables["truth"], srm=srm, outcomes=tables["outcomes"],
                     timeseries=tables["timeseries"], timings=manifest.get("timings") or {},
                     manifest=manifest, run_dir=d, user_truth=tables["user_truth"])


def _read_json(path: Path) -> dict[str, Any]:
    def strict(token: str) -> Any:  # a run directory's JSON is strict: a NaN there was put by hand
        raise ValueError(f"{token} is not JSON; a run directory writes null for a missing number")

    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=strict)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object at the top")
    return data


def _read_scenario(path: Path):
    if not path.is_file():
        raise DataError(f"{path}: missing (a run directory keeps its resolved scenario)")
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        yaml_error = exc.bare_message.startswith("invalid YAML")
        where = ", ".join(x for x in (f"line {exc.line}" if exc.line else "", exc.field or "") if x)
        detail = exc.bare_message.removeprefix("invalid YAML: ")
        what = "not valid YAML" if yaml_error else "not a valid scenario"
        raise DataError(f"{path}: {what} ({where + ': ' if where else ''}{detail})") from None


def _read_parquet(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        return pd.DataFrame(columns=columns)
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: cannot read Parquet ({exc})") from None


_FIELDS = set(Estimate.__dataclass_fields__)
_NUMBERS = ("point", "lower", "upper")
_OPTIONAL = ("p_value", "prob_better", "truth", "error")


def _estimate(e: Any, i: int, level: float, path: Path) -> Estimate:
    """One entry of estimates.json as an Estimate (null point/interval -> NaN, as the runner holds them)."""
    if not isinstance(e, dict):
        raise DataError(f"{path}: estimates[{i}] must be an object")
    missing = [k for k in ("estimator", "metric", "arm", "control") if e.get(k) is None]
    if missing:
        raise DataError(f"{path}: estimates[{i}] has no {', '.join(missing)}")
    kw = {k: v for k, v in e.items() if k in _FIELDS}
    for k in ("estimator", "metric", "arm", "control"):
        kw[k] = str(kw[k])
    kw["estimand"] = str(kw.get("estimand") or "difference")
    kw["segment"] = None if kw.get("segment") is None else str(kw["segment"])
    for k in _NUMBERS:
        v = num(kw.get(k))
        kw[k] = float("nan") if v is None else v
    side = (kw.get("diagnostics") or {}).get("unbounded") if isinstance(kw.get("diagnostics"), dict) else None
    if side in ("lower", "both") and math.isnan(kw["lower"]):  # JSON's null for an infinite bound
        kw["lower"] = -math.inf
    if side in ("upper", "both") and math.isnan(kw["upper"]):
        kw["upper"] = math.inf
    for k in _OPTIONAL:
        kw[k] = num(kw.get(k))
    kw["level"] = num(kw.get("level")) or level
    kw["covered"] = None if kw.get("covered") is None else bool(kw["covered"])
    entry = kw.get("analysis")
    if entry is not None and (isinstance(entry, bool) or not isinstance(entry, int) or entry < 0):
        raise DataError(f"{path}: estimates[{i}].analysis must be the index of an analysis entry (an integer "
                        f">= 0) or null, got {entry!r}")
    if not isinstance(kw.get("diagnostics"), dict):
        kw["diagnostics"] = {}
    return Estimate(**kw)

