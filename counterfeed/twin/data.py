"""Reading and validating the impression log a twin is fitted on.

The log is counterfeed's own event log (a run directory, or one world's ``impressions.parquet``) or any
CSV/Parquet file in the format of ``counterfeed ope`` (``docs/ope.md``), read through the same loader
(:func:`counterfeed.ope.logs.log_from_frame`) with the same column mapping. The twin also needs what
OPE does not: ``user`` and ``time`` columns, 0/1 clicks, timestamps in order within each user, and at
least two users (the bootstrap resamples users). Every problem is a :class:`DataError` naming the file,
the column and the 1-based data row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from counterfeed.errors import DataError

__all__ = ["TwinLog", "load_twin_log", "twin_log_from_frame", "TIME_UNITS"]

TIME_UNITS = {"days": 1.0, "hours": 1 / 24, "minutes": 1 / 1440, "seconds": 1 / 86400}


@dataclass
class TwinLog:
    """A validated impression log as dense arrays (N impressions, R sessions, U users, I items).

    Attributes
    ----------
    user : (N,) int64 user code in ``[0, U)``; ``user_ids[code]`` is the logged id.
    session : (N,) int64 session code in ``[0, R)``; sessions are numbered by (user, time).
    item : (N,) int64 item code in ``[0, I)``; ``item_ids[code]`` is the logged id.
    position, click, propensity, dwell, time : (N,) int64, float64 0/1, float64, float64 (minutes, 0
        when unknown), float64 (days since the log's start).
    session_user, session_time, session_index : (R,) the session's user code, time (days) and index
        among its user's sessions (0-based).
    horizon : end of observation (days): the last logged time, or the run's horizon.
    logging : the logging policy as ``{"recommender": name, **options}`` when known (run directories).
    """

    user: np.ndarray
    user_ids: np.ndarray
    session: np.ndarray
    item: np.ndarray
    item_ids: np.ndarray
    position: np.ndarray
    click: np.ndarray
    propensity: np.ndarray
    dwell: np.ndarray
    time: np.ndarray
    session_user: np.ndarray
    session_time: np.ndarray
    session_index: np.ndarray
    horizon: float
    source: str = "<log>"
    has_dwell: bool = False
    logging: dict[str, Any] | None = None
    slate_size: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.user.shape[0])

    @property
    def n_users(self) -> int:
        return int(self.user_ids.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_ids.shape[0])

    @property
    def n_sessions(self) -> int:
        return int(self.session_user.shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.position.max()) + 1

    @property
    def window(self) -> float:
        """The serving window (days) of a run's log; 0 for a log without one (served on request)."""
        return _days((self.extra.get("run") or {}).get("batch_window") or 0)

    def session_clicks(self) -> np.ndarray:
        """(R,) clicks per session."""
        return np.bincount(self.session, weights=self.click, minlength=self.n_sessions)

    def select_users(self, users: np.ndarray) -> "TwinLog":
        """The log restricted to the user codes ``users`` (codes, sessions and items re-numbered)."""
        keep_u = np.zeros(self.n_users, bool)
        keep_u[users] = True
        rows = keep_u[self.user]
        srows = keep_u[self.session_user]
        ucode = np.cumsum(keep_u) - 1
        scode = np.cumsum(srows) - 1
        return TwinLog(user=ucode[self.user[rows]], user_ids=self.user_ids[keep_u],
                       session=scode[self.session[rows]], item=self.item[rows], item_ids=self.item_ids,
                       position=self.position[rows], click=self.click[rows],
                       propensity=self.propensity[rows], dwell=self.dwell[rows], time=self.time[rows],
                       session_user=ucode[self.session_user[srows]], session_time=self.session_time[srows],
                       session_index=self.session_index[srows], horizon=self.horizon, source=self.source,
                       has_dwell=self.has_dwell, logging=self.logging, slate_size=self.slate_size,
                       extra=self.extra)

    def resample_users(self, users: np.ndarray) -> "TwinLog":
        """The log of the user codes ``users`` (``(n,)``, repeats allowed), for a bootstrap over users.

        Entry ``k`` becomes user ``k`` with all of user ``users[k]``'s impressions and sessions, so a user
        drawn twice is two users with the same rows (the cluster bootstrap's resample; Davison & Hinkley
        1997, sec. 3.8). Item codes and ids are kept. Rows are in the canonical order (serving window,
        user, time, session, position; :func:`_canonical`), sessions numbered by (user, time).
        """
        users = np.asarray(users, np.int64)
        by_user = np.argsort(self.user, kind="stable")  # within a user, rows stay in time order
        start = np.searchsorted(self.user[by_user], np.arange(self.n_users + 1))
        s_start = np.searchsorted(self.session_user, np.arange(self.n_users + 1))  # sessions are by (user, time)
        n_rows, n_sess = start[users + 1] - start[users], s_start[users + 1] - s_start[users]
        rows, sess = by_user[_ranges(start[users], n_rows)], _ranges(s_start[users], n_sess)
        new_user = np.repeat(np.arange(users.size), n_rows)
        # a row's new session: its block's first new session + the old session's rank within its user
        s_offset = np.repeat(np.cumsum(n_sess) - n_sess, n_rows)
        new_session = s_offset + self.session[rows] - np.repeat(s_start[users], n_rows)
        window = self.window
        serve = np.floor(self.time[rows] / window) if window > 0 else self.time[rows]
        perm = np.lexsort((self.position[rows], new_session, self.time[rows], new_user, serve))
        rows, new_user, new_session = rows[perm], new_user[perm], new_session[perm]
        return TwinLog(user=new_user, user_ids=np.arange(users.size), session=new_session, item=self.item[rows],
                       item_ids=self.item_ids, position=self.position[rows], click=self.click[rows],
                       propensity=self.propensity[rows], dwell=self.dwell[rows], time=self.time[rows],
                       session_user=np.repeat(np.arange(users.size), n_sess), session_time=self.session_time[sess],
                       session_index=self.session_index[sess], horizon=self.horizon,
                       source=f"{self.source} (users resampled)", has_dwell=self.has_dwell, logging=self.logging,
                       slate_size=self.slate_size, extra=self.extra)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of ``arange(s, s + n)`` over ``zip(starts, lengths)``, without a Python loop."""
    offsets = np.cumsum(lengths) - lengths
    return np.repeat(starts - offsets, lengths) + np.arange(int(lengths.sum()))


def _run_directory(path: Path, world: str | None) -> tuple[Path, dict[str, Any]]:
    """The impressions file of a run directory's world and what the run says about its log."""
    import yaml

    events = path / "events"
    if not events.is_dir():
        raise DataError(f"{path}: not a run directory (no events/ folder) and not a log file")
    worlds = sorted(p.name for p in events.iterdir() if (p / "impressions.parquet").exists())
    if not worlds:
        raise DataError(f"{path}: no impressions recorded (run the scenario with output.events: impressions)")
    info: dict[str, Any] = {}
    scenario_file = path / "scenario.yaml"
    sc = yaml.safe_load(scenario_file.read_text()) if scenario_file.exists() else None
    if world is None:
        control = (sc or {}).get("experiment", {}).get("control")
        world = f"all-{control}" if f"all-{control}" in worlds else worlds[0]
    if world not in worlds:
        raise DataError(f"{path}: no world '{world}' with impressions; worlds: {', '.join(worlds)}")
    if sc:
        exp = sc["experiment"]
        arm = exp.get("control") if world == "ab" or not world.startswith("all-") else world[4:]
        if world != "ab" and arm in exp["arms"]:
            info["logging"] = dict(exp["arms"][arm])
        info["horizon"] = _days(exp.get("pre_period", 0)) + _days(exp.get("duration", 14))
        info["slate_size"] = int(exp.get("slate_size", 10))
        info["run"] = {k: exp[k] for k in ("batch_window", "retrain_every") if k in exp}
        pre = _days(exp.get("pre_period", 0))
        if pre > 0:  # the control served everyone then: the twin's worlds replay that (tester17 H4)
            control = exp.get("control") or next(iter(exp["arms"]))
            info["run"].update(pre_period=pre, pre_period_policy=dict(exp["arms"][control]))
        if "batch_window" not in exp:  # the run served in windows of the schema's default
            from counterfeed.core.scenario_schema import ExperimentSpec

            info["run"]["batch_window"] = ExperimentSpec.model_fields["batch_window"].default
    return events / world / "impressions.parquet", info


def _days(v: Any) -> float:
    from counterfeed.core.scenario_schema import parse_duration

    return float(parse_duration(v))


def load_twin_log(path: str | Path, columns: str | dict[str, str] | None = None, *,
                  time_unit: str = "days", world: str | None = None) -> TwinLog:
    """Read a run directory, a world's ``impressions.parquet``, or a CSV/Parquet log (see module).

    Raises
    ------
    DataError
        Naming the file, the column and the row of the first problem.
    """
    from counterfeed.ope.logs import _read_table

    p = Path(path)
    info: dict[str, Any] = {}
    if p.is_dir():
        p, info = _run_directory(p, world)
    df = _read_table(str(p))
    return twin_log_from_frame(df, columns, source=str(p), time_unit=time_unit, **info)


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _canonical(log: Any, ucode: np.ndarray, time: np.ndarray, window: float):
    """The log's canonical row order and its item numbering, so that nothing fitted or simulated depends
    on the order of the file's rows (tester17 H2).

    Rows are ordered by serving window ``floor(time / window)`` (the time itself for a plain file,
    ``window = 0``), user (by sorted id), time, round (by sorted id) and position: the order counterfeed's
    simulator writes its impressions in, so a run's own log keeps its order and numbering. Items are
    numbered by first appearance in that order. Returns (permutation or None when the rows are
    already in order, (N,) item codes, (I,) item ids, (R,) each round code's rank by round id).
    """
    import pandas as pd

    try:
        order = np.argsort(log.round_ids, kind="stable")
    except TypeError:  # ids of mixed types: compare them as text
        order = np.argsort(np.asarray([str(x) for x in log.round_ids], dtype=object), kind="stable")
    rrank = np.empty(order.size, np.int64)
    rrank[order] = np.arange(order.size)
    serve = np.floor(time / window) if window > 0 else time
    perm = np.lexsort((log.position, rrank[log.round], time, ucode, serve))
    if np.array_equal(perm, np.arange(perm.size)):
        perm = None
    items = log.item_code if perm is None else log.item_code[perm]
    icode, first = pd.factorize(items)  # codes by first appearance in the canonical order
    return perm, icode.astype(np.int64), np.asarray(log.item_ids)[np.asarray(first)], rrank


def _plausible_time(time: np.ndarray, source: str, tname: str, unit: str, horizon: float | None) -> None:
    """A log spanning more than ten years is a wrong ``--time-unit`` (tester17 M9), not a twin to fit."""
    span = float(time.max() - (0.0 if horizon is not None else time.min())) if time.size else 0.0
    if span > 3650:
        hint = (" (if the column is in seconds, give --time-unit seconds)" if unit != "seconds" else "")
        raise DataError(f"{source}: column '{tname}' spans {span:.6g} days read as {unit}; a twin's log must "
                        f"span at most 3650 days{hint}")


def twin_log_from_frame(df: Any, columns: str | dict[str, str] | None = None, *, source: str = "<frame>",
                        time_unit: str = "days", horizon: float | None = None,
                        logging: dict[str, Any] | None = None, slate_size: int | None = None,
                        run: dict[str, Any] | None = None) -> TwinLog:
    """Validate a pandas DataFrame (the ``counterfeed ope`` format or the simulator's) into a TwinLog."""
    from counterfeed.ope.logs import log_from_frame, parse_columns

    if time_unit not in TIME_UNITS:
        raise DataError(f"time unit '{time_unit}' is not one of {', '.join(TIME_UNITS)}")
    mapping = parse_columns(columns)
    for name in ("user", "time"):  # before the OPE loader, whose round ids are made of the user's (tester s8 #7)
        col = mapping.get(name, name)
        if col not in df.columns:
            raise DataError(f"{source}: missing column '{col}' (map it with --columns {name}=<column>); the twin "
                            f"needs each impression's user and time; columns are: {', '.join(map(str, df.columns))}")
    log = log_from_frame(df, mapping, source=source, slate_size=slate_size)
    for name in ("user", "time"):
        if getattr(log, name) is None:
            col = mapping.get(name, name)
            raise DataError(f"{source}: missing column '{col}' (map it with --columns {name}=<column>); the twin "
                            f"needs each impression's user and time; columns are: {', '.join(map(str, df.columns))}")
    rname = mapping.get("reward", "reward" if "reward" in df.columns else "click")
    bad = (log.reward != 0) & (log.reward != 1)
    if bad.any():
        i = _first(bad)
        raise DataError(f"{source}: column '{rname}' row {i + 1}: value {log.reward[i]:g}; the twin models "
                        "clicks, expected 0 or 1")
    from counterfeed.ope.logs import normalize_ids

    time = log.time * TIME_UNITS[time_unit]
    tname = mapping.get("time", "time")
    _plausible_time(time, source, tname, time_unit, horizon)
    import pandas as pd

    ucol = mapping.get("user", "user")
    user_raw = normalize_ids(df[ucol].to_numpy(), source, ucol)  # the logged ids, not OPE's first-seen codes
    ucode, uids = pd.factorize(user_raw, sort=True)
    if uids.shape[0] < 2:
        raise DataError(f"{source}: column '{mapping.get('user', 'user')}': only one user ({uids[0]}); the twin "
                        "needs at least 2 users (its intervals come from resampling users)")
    order = np.argsort(ucode, kind="stable")
    same = ucode[order][1:] == ucode[order][:-1]
    back = same & (time[order][1:] < time[order][:-1])
    if back.any():
        j = _first(back)
        r0, r1 = int(order[j]), int(order[j + 1])
        raise DataError(f"{source}: column '{tname}' row {r1 + 1}: timestamps out of order for user "
                        f"{uids[ucode[r1]]}: {log.time[r1]:g} comes after {log.time[r0]:g} (row {r0 + 1}); "
                        "a user's impressions must be in time order")
    window = _days((run or {}).get("batch_window") or 0)
    perm, icode, item_ids, rrank = _canonical(log, ucode, time, window)
    if perm is not None:  # the log in its canonical order: nothing below depends on the file's row order
        ucode, time = ucode[perm], time[perm]
    rounds = log.round if perm is None else log.round[perm]
    rt = np.full(log.n_rounds, np.inf)
    np.minimum.at(rt, rounds, time)
    ru = np.zeros(log.n_rounds, np.int64)
    ru[rounds] = ucode
    t0 = 0.0 if horizon is not None else float(time.min())
    sorder = np.lexsort((rrank, rt, ru))
    scode = np.empty(log.n_rounds, np.int64)
    scode[sorder] = np.arange(log.n_rounds)
    su, st = ru[sorder], rt[sorder] - t0
    start = np.r_[True, su[1:] != su[:-1]]
    idx = np.arange(su.size)
    sindex = idx - np.maximum.accumulate(np.where(start, idx, 0))
    dwell = np.zeros(len(log))
    has_dwell = "dwell" in df.columns
    if has_dwell:
        dwell = np.nan_to_num(df["dwell"].to_numpy(dtype=np.float64), nan=0.0)
    rows = slice(None) if perm is None else perm
    end = float(time.max() - t0) if horizon is None else max(float(horizon), float(time.max()))
    return TwinLog(user=ucode.astype(np.int64), user_ids=np.asarray(uids), session=scode[rounds],
                   item=icode, item_ids=item_ids, position=log.position[rows], click=log.reward[rows],
                   propensity=log.propensity[rows], dwell=dwell[rows], time=time - t0, session_user=su,
                   session_time=st, session_index=sindex, horizon=end, source=source, has_dwell=has_dwell,
                   logging=logging, slate_size=int(slate_size or log.n_positions), extra={"run": run or {}})
