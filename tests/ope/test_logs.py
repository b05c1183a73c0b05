"""Loading logs: the format, column mapping, the simulator's layout, and bad logs (table of messages)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from counterfeed.errors import DataError
from counterfeed.ope import load_log, log_from_frame, parse_columns


def good() -> pd.DataFrame:
    return pd.DataFrame({"round": [1, 1, 2, 2], "item": [5, 6, 5, 7], "position": [0, 1, 0, 1],
                         "reward": [1, 0, 0, 1], "propensity": [0.5, 0.25, 0.5, 0.25]})


def _with(**changes):
    def make():
        df = good()
        for col, val in changes.items():
            if val is None:
                df = df.drop(columns=col)
            else:
                df[col] = val
        return df
    return make


BAD = [
    (_with(propensity=None), {}, r"logs\.csv: missing column 'propensity' \(map it with --columns propensity=<column>\)"),
    (_with(reward=None), {}, r"missing column 'reward'"),
    (_with(propensity=[0.5, 0.0, 0.5, 0.25]), {}, r"column 'propensity' row 2: propensity 0\.0 is outside \(0, 1\]"),
    (_with(propensity=[0.5, 0.25, 1.5, 0.25]), {}, r"row 3: propensity 1\.5 is outside \(0, 1\]"),
    (_with(propensity=[0.5, -0.1, 0.5, 0.25]), {}, r"row 2: propensity -0\.1 is outside"),
    (_with(propensity=[0.5, 0.25, np.nan, 0.25]), {}, r"column 'propensity' row 3: missing value \(NaN\)"),
    (_with(reward=[1.0, np.nan, 0.0, 1.0]), {}, r"column 'reward' row 2: missing value \(NaN\)"),
    (_with(reward=["yes", "no", "no", "yes"]), {}, r"column 'reward' has type string; expected numbers"),
    (_with(position=["a", "b", "a", "b"]), {}, r"column 'position' has type string; expected integers"),
    (_with(position=[0, 1.5, 0, 1]), {}, r"column 'position' row 2: expected an integer, got 1\.5"),
    (_with(position=[0, -1, 0, 1]), {}, r"column 'position' row 2: position -1 is out of range; expected a non-negative"),
    (_with(position=[0, 1, 0, 3]), {"slate_size": 2}, r"row 4: position 3 is out of range; expected in \[0, 2\)"),
    (_with(position=[0, 1, 1, 1]), {}, r"row 4: duplicated \(round, position\) = \(2, 1\); first seen at row 3"),
    (_with(item=[5, None, 5, 7]), {}, r"column 'item' row 2: missing value \(NaN\)"),
    (_with(round=[1.0, np.nan, 2.0, 2.0]), {}, r"column 'round' row 2: missing value \(NaN\)"),
    (_with(reward=[1, 0, np.inf, 1]), {}, r"column 'reward' row 3: value inf is not finite"),
    (lambda: good().rename(columns={"item": "item_id"}), {"columns": "item=itemid"},
     r"column 'itemid' \(mapped to 'item'\) is missing; columns are: round, item_id"),
    (good, {"columns": "itm=item"}, r"unknown name 'itm'"),
    (good, {"columns": "item"}, r"column mapping 'item' must look like name=column"),
    (lambda: good().iloc[:0], {}, r"logs\.csv: the log has no rows"),
]


@pytest.mark.parametrize("make,kwargs,pattern", BAD)
def test_bad_logs(tmp_path, make, kwargs, pattern):
    path = tmp_path / "logs.csv"
    make().to_csv(path, index=False)
    with pytest.raises(DataError, match=pattern):
        load_log(str(path), **kwargs)


def test_missing_file_and_format(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: no such file"):
        load_log(str(tmp_path / "nope.csv"))
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(DataError, match=r"unknown log format '\.json'"):
        load_log(str(p))


@pytest.mark.parametrize("ext", ["csv", "parquet"])
def test_round_trip_and_mapping(tmp_path, ext):
    df = good().rename(columns={"item": "item_id", "reward": "click"})
    df["context_age"] = [1.0, 1.0, 2.0, 2.0]
    path = tmp_path / f"logs.{ext}"
    getattr(df, f"to_{ext}")(path, index=False)
    log = load_log(str(path), "item=item_id,reward=click")
    assert len(log) == 4 and log.n_rounds == 2 and log.n_items == 3
    np.testing.assert_array_equal(log.item, [5, 6, 5, 7])
    np.testing.assert_array_equal(log.item_ids[log.item_code], log.item)
    np.testing.assert_array_equal(log.round_ids[log.round], [1, 1, 2, 2])
    assert log.observed_value == 0.5
    np.testing.assert_array_equal(log.context["context_age"], [1, 1, 2, 2])
    assert parse_columns("item=item_id, reward=click") == {"item": "item_id", "reward": "click"}


def test_string_ids():
    df = good()
    df["round"] = ["a", "a", "b", "b"]
    df["item"] = ["x", "y", "x", "z"]
    log = log_from_frame(df)
    assert log.n_rounds == 2 and list(log.item_ids) == ["x", "y", "z"]


def test_simulator_layout_detected():
    df = pd.DataFrame({"user": [3, 3, 3, 3, 4, 4], "session": [0, 0, 1, 1, 0, 0],
                       "time": [0.1, 0.1, 0.5, 0.5, 0.2, 0.2], "position": [0, 1, 0, 1, 0, 1],
                       "item": [1, 2, 1, 3, 2, 1], "click": [True, False, False, False, True, True],
                       "dwell": [2.0, 0, 0, 0, 1.0, 3.0], "propensity": [.9, .9, .9, .05, .9, .9],
                       "arm": [0, 0, 0, 0, 0, 0]})
    log = log_from_frame(df, source="impressions.parquet")
    assert log.n_rounds == 3
    np.testing.assert_array_equal(log.round_ids[log.round], (df.user.to_numpy() << 32) + df.session.to_numpy())
    np.testing.assert_array_equal(log.reward, df.click.astype(float))
    users, sessions = log.users_sessions()
    np.testing.assert_array_equal(users, [3, 3, 4])
    np.testing.assert_array_equal(sessions, [0, 1, 0])
    contract = log.to_contract_log()
    np.testing.assert_array_equal(contract.user, df.user)
    np.testing.assert_array_equal(contract.click, df.click)
    # the reward can still be mapped, e.g. to dwell time
    assert log_from_frame(df, "reward=dwell").observed_value == pytest.approx(1.0)
    with pytest.raises(DataError, match=r"impressions\.parquet: column 'user' row 2: missing value"):
        log_from_frame(df.assign(user=[3, None, 3, 3, 4, 4]), source="impressions.parquet")


def test_sessions_derived_per_user():
    df = good().assign(user=[7, 7, 7, 7], round=[1, 1, 2, 2])
    users, sessions = log_from_frame(df).users_sessions()
    np.testing.assert_array_equal(users, [7, 7])
    np.testing.assert_array_equal(sessions, [0, 1])


def test_string_user_ids_are_coded_in_order_of_first_appearance():
    df = good().assign(user=["ü-b", "ü-b", "a", "a"], round=[1, 1, 2, 2])
    users, sessions = log_from_frame(df).users_sessions()
    np.testing.assert_array_equal(users, [0, 1])
    np.testing.assert_array_equal(sessions, [0, 0])
    with pytest.raises(DataError, match=r"column 'user' row 2: expected an integer, got 0.5"):
        log_from_frame(good().assign(user=[1.0, 0.5, 1.0, 1.0]))
