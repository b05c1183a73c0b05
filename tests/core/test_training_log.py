"""core._training_log.TrainingLog: the rows of concatenate-then-select, grown in place."""

from dataclasses import fields

import numpy as np
import pytest

from counterfeed.core._training_log import TrainingLog
from counterfeed.core.contracts import Log


def _chunk(rng, n, arm=True):
    return Log(user=rng.integers(0, 50, n), session=rng.integers(0, 9, n), time=rng.uniform(0, 14, n),
               position=rng.integers(0, 10, n).astype(np.int16), item=rng.integers(0, 30, n),
               click=rng.random(n) < 0.2, dwell=rng.uniform(0, 9, n).astype(np.float32),
               propensity=rng.random(n), arm=rng.integers(0, 2, n).astype(np.int16) if arm else None)


def _same(a: Log, b: Log) -> None:
    for f in fields(Log):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert (x is None) == (y is None), f.name
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), f.name


@pytest.mark.parametrize("keep_arm", [None, 0, 1])
def test_growing_log_equals_concatenate_then_select_after_every_refit(keep_arm):
    rng = np.random.default_rng(3)
    keep = (lambda c: None) if keep_arm is None else (lambda c: (c.time < 7.0) | (c.arm == keep_arm))
    grown, chunks = TrainingLog(keep), []
    for sizes in ([0, 3, 700], [1], [], [2500, 0, 40], [9000]):  # refits between growing batches
        chunks += [_chunk(rng, n) for n in sizes]
        whole = Log.concat(chunks)
        want = whole if keep_arm is None else whole.select((whole.time < 7.0) | (whole.arm == keep_arm))
        got = grown.log(chunks)
        _same(got, want)
        assert all(not getattr(got, f.name).flags.writeable for f in fields(Log))  # views: read-only


def test_no_rows_gives_the_empty_log_and_a_missing_column_is_dropped_as_concat_drops_it():
    rng = np.random.default_rng(4)
    grown = TrainingLog(lambda c: None)
    _same(grown.log([]), Log.empty())
    chunks = [_chunk(rng, 5), _chunk(rng, 4, arm=False), _chunk(rng, 6)]
    got = grown.log(chunks)
    assert got.arm is None
    _same(got, Log.concat(chunks))


@pytest.mark.parametrize("headroom", [1.0, 2.0, 4.0])
def test_growth_in_one_step_per_refit_keeps_rows_and_dtype_promotion_of_concat(headroom):
    rng = np.random.default_rng(5)
    grown, chunks = TrainingLog(lambda c: None), []
    for sizes in ([3, 1200], [7000, 1], [5], [30000]):
        chunks += [_chunk(rng, n) for n in sizes]
        _same(grown.log(chunks, headroom=headroom), Log.concat(chunks))
    odd = _chunk(rng, 9)
    odd.user = odd.user.astype(np.int32)
    odd.dwell = odd.dwell.astype(np.float64)  # float32 columns so far: promoted, as np.concatenate does
    chunks.append(odd)
    _same(grown.log(chunks, headroom=headroom), Log.concat(chunks))


@pytest.mark.parametrize("arms", [(0,), (0, 1)])
def test_whole_log_is_the_concatenation_when_every_row_was_kept_else_the_chunks_are_concatenated(arms):
    """A world with one arm (every row is pre-period or the arm's) hands its training log's buffers to
    the snapshot; with two arms no training log holds every row and the snapshot concatenates."""
    from counterfeed.core._training_log import whole_log

    rng = np.random.default_rng(6)
    chunks = []
    logs = [TrainingLog(lambda c, a=a: (c.time < 7.0) | (c.arm == a)) for a in arms]
    for sizes in ([400, 0, 9], [2000], [3, 5]):  # a refit after each batch
        for n in sizes:
            c = _chunk(rng, n)
            if len(arms) == 1:
                c.arm[:] = 0
            chunks.append(c)
        for tl in logs:
            tl.log(chunks)
    chunks.append(_chunk(rng, 300))  # recorded after the last refit
    if len(arms) == 1:
        chunks[-1].arm[:] = 0
    got = whole_log(logs, chunks)
    _same(got, Log.concat(chunks))
    shares = np.shares_memory(got.user, logs[0].cols["user"])
    assert shares == (len(arms) == 1) and logs[0].whole == (len(arms) == 1)
    assert TrainingLog(lambda c: c.arm == 1).whole_log(chunks) is None  # it drops rows: not the whole log


def test_release_replaces_whole_kept_chunks_by_equal_views_of_the_current_buffers():
    """A training log that kept every row hands the chunks' memory back: the world's list then holds
    read-only views of its rows (equal arrays, same dtypes), moved to the new buffers after a growth;
    a chunk whose view would have another dtype keeps its arrays, and a log that dropped rows
    releases nothing."""
    rng = np.random.default_rng(8)
    chunks, copies = [], []
    grown = TrainingLog(lambda c: None, release=True)

    def add(n, dwell=np.float32):
        chunks.append(_chunk(rng, n))
        chunks[-1].dwell = chunks[-1].dwell.astype(dwell)
        copies.append(Log(**{f.name: getattr(chunks[-1], f.name).copy() for f in fields(Log)}))

    for sizes in ([5, 0, 900], [3000], [20, 7]):  # 900 rows, then a growth, then none (headroom 1)
        for n in sizes:
            add(n)
        _same(grown.log(chunks, headroom=1.0), Log.concat(copies))
        for c, want in zip(chunks, copies):
            _same(c, want)
            assert not len(c) or (np.shares_memory(c.user, grown.cols["user"]) and not c.user.flags.writeable)
    add(11, np.float64)  # the buffers' dwell becomes float64 (Log.concat's promotion)
    _same(grown.log(chunks, headroom=1.0), Log.concat(copies))
    for c, want in zip(chunks, copies):
        _same(c, want)  # float32 chunks keep their own arrays; the float64 one is a view
    assert np.shares_memory(chunks[-1].user, grown.cols["user"])
    kept = [_chunk(rng, 50) for _ in range(3)]
    before = list(kept)
    TrainingLog(lambda c: c.arm == 0, release=True).log(kept)
    assert all(a is b for a, b in zip(kept, before))


def test_an_arm_log_shares_the_world_log_while_it_keeps_every_row_then_copies_its_own():
    """arm_training_log: the world's log of every row (None) frees the chunks; an arm's log is that
    log's rows (no copy) while it keeps every row, or a prefix of them and nothing after (an arm
    that serves nobody after the pre-period), then its own selection;
    after every refit each log equals concatenate-then-select, and the snapshot takes the world's."""
    from counterfeed.core._training_log import arm_training_log, whole_log

    rng = np.random.default_rng(9)
    chunks, copies, logs = [], [], {}

    def add(n, arm):
        c = _chunk(rng, n)
        c.time[:] = rng.uniform(0, 7, n) if arm is None else rng.uniform(7, 14, n)
        c.arm[:] = 0 if arm is None else arm
        c.item = c.item.astype(np.int32) if arm == 1 else c.item  # another recommender's dtype
        chunks.append(c)
        copies.append(Log(**{f.name: getattr(c, f.name).copy() for f in fields(Log)}))

    def keep(a):
        return lambda c: (c.time < 7.0) | (c.arm == a)

    for batch in ([(400, None), (0, None), (300, None)], [(200, 0)], [(100, 0), (150, 1), (50, 0)], [(70, 1)]):
        for n, arm in batch:
            add(n, arm)
        whole = Log.concat(copies)
        for a in (0, 1, 2):  # arm 2 (the pre-period's policy in another arm's world) never gets a row
            got = arm_training_log(logs, a, keep(a)).log(chunks)
            want = [c.select(keep(a)(c)) for c in copies]
            _same(got, Log.concat(want))
            shares = np.shares_memory(got.user, logs[None].cols["user"])
            # shared while every row, or every row up to some and none after, is kept (arm 1 at 4 chunks)
            assert shares == (len(chunks) <= 4 or a == 2), (a, len(chunks))
        _same(logs[None].log(chunks), whole)
        for c, want in zip(chunks, copies):
            _same(c, want)
    _same(whole_log(logs.values(), chunks), Log.concat(copies))
    assert logs[0].base is None and logs[1].base is None and logs[0].cols["item"].dtype == np.int64
    assert logs[2].base is logs[None] and logs[2].prefix == 700 and not logs[2].whole
