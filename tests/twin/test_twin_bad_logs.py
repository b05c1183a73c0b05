"""Bad logs: one clear error naming file, column and row; exit code 2; nothing written."""

from __future__ import annotations

import re

import numpy as np
import pytest
from click.testing import CliRunner

from counterfeed.twin.cli import twin


def _write(df, tmp_path, name="log.csv"):
    p = tmp_path / name
    df.to_csv(p, index=False)
    return p


def _good(n_users=3):
    import pandas as pd

    rows = []
    for u in range(n_users):
        for s in range(2):
            for j in range(2):
                rows.append({"round": f"{u}-{s}", "user": u, "time": float(s), "item": j + s,
                             "position": j, "reward": int(j == 0), "propensity": 0.5})
    return pd.DataFrame(rows)


def _drop(df, col):
    return df.drop(columns=[col])


def _set(col, row, value):
    def f(df):
        df = df.copy()
        df[col] = df[col].astype(object) if isinstance(value, str) else df[col]
        df.loc[row, col] = value
        return df
    return f


CASES = [
    (lambda d: _drop(d, "propensity"), r"log\.csv: missing column 'propensity'"),
    (lambda d: _drop(d, "user"), r"log\.csv: missing column 'user' \(map it with --columns user=<column>\)"),
    # rounds as (user, session), the simulator's layout: it was reported as a missing 'round' (tester s8 #7)
    (lambda d: _drop(d, "user").rename(columns={"round": "session"}),
     r"log\.csv: missing column 'user' \(map it with --columns user=<column>\)"),
    (lambda d: _drop(d, "time"), r"log\.csv: missing column 'time'"),
    (_set("propensity", 3, 1.5), r"log\.csv: column 'propensity' row 4: propensity 1\.5 is outside \(0, 1\]"),
    (_set("propensity", 0, 0.0), r"log\.csv: column 'propensity' row 1: propensity 0\.0 is outside \(0, 1\]"),
    (_set("time", 3, -1.0), r"log\.csv: column 'time' row 4: timestamps out of order for user 0: -1 comes "
                            r"after 1 \(row 3\)"),
    (lambda d: d[d["user"] == 1], r"log\.csv: column 'user': only one user \(1\)"),
    (_set("reward", 2, 3), r"log\.csv: column 'reward' row 3: value 3; the twin models clicks"),
]


@pytest.mark.parametrize("mutate,message", CASES)
def test_bad_log_is_one_clear_error_and_writes_nothing(tmp_path, mutate, message):
    path = _write(mutate(_good()), tmp_path)
    out = tmp_path / "twin"
    res = CliRunner().invoke(twin, ["fit", str(path), "--out", str(out), "--quiet"])
    assert res.exit_code == 2, res.output
    assert re.search(message, res.output), res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]


def test_non_empty_out_is_refused(tmp_path, log_frame):
    path = tmp_path / "log.parquet"
    log_frame.to_parquet(path)
    out = tmp_path / "twin"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    res = CliRunner().invoke(twin, ["fit", str(path), "--out", str(out)])
    assert res.exit_code == 2 and "exists and is not empty" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_good_log_loads_with_sessions_in_time_order():
    from counterfeed.twin.data import twin_log_from_frame

    log = twin_log_from_frame(_good(), source="x")
    assert log.n_users == 3 and log.n_sessions == 6
    assert np.all(np.diff(log.session_time[log.session_user == 0]) >= 0)
    np.testing.assert_array_equal(log.session_index, np.tile([0, 1], 3))


def test_entry_point_exit_code(tmp_path):
    import subprocess
    import sys

    path = _write(_drop(_good(), "time"), tmp_path)
    res = subprocess.run([sys.executable, "-m", "counterfeed", "twin", "fit", str(path), "--out", str(tmp_path / "t")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and "missing column 'time'" in res.stderr
    assert not (tmp_path / "t").exists()


def test_too_few_users_to_hold_out_is_said_at_fit_and_at_check(tmp_path):
    path = _write(_good(n_users=2), tmp_path)
    out = tmp_path / "twin"
    with pytest.warns(UserWarning, match="no users held out for 'twin check': the log has 2 users"):
        res = CliRunner().invoke(twin, ["fit", str(path), "--out", str(out), "--bootstrap", "2", "--epochs", "1",
                                        "--quiet"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(twin, ["check", str(out), str(path)])
    assert res.exit_code == 2
    assert "too few users to hold any out" in res.output and "--holdout 0" not in res.output
