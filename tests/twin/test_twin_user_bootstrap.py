"""The bootstrap over users (the default): a resampled log is the users' own rows, every replicate is a
refit from scratch, and the interval built from the replicates covers at its level."""

from __future__ import annotations

import numpy as np
import pytest

from counterfeed.twin.evaluate import METRICS, _combine


@pytest.fixture(scope="module")
def log(run_dir):
    from counterfeed.twin.data import load_twin_log

    return load_twin_log(run_dir)


def test_a_resampled_user_is_the_drawn_users_rows(log):
    draw = np.array([3, 3, 0, log.n_users - 1, 7])
    r = log.resample_users(draw)
    assert r.n_users == 5 and r.n_items == log.n_items and np.array_equal(r.item_ids, log.item_ids)
    for k, u in enumerate(draw):
        mine, theirs = r.user == k, log.user == u
        for col in ("item", "position", "click", "propensity", "time"):
            a, b = getattr(r, col)[mine], getattr(log, col)[theirs]
            order_a, order_b = np.lexsort((r.position[mine], r.time[mine])), np.lexsort((log.position[theirs],
                                                                                        log.time[theirs]))
            assert np.array_equal(a[order_a], b[order_b]), col
        assert np.array_equal(r.session_time[r.session_user == k], log.session_time[log.session_user == u])
    # sessions numbered by (user, time), each row's session belongs to its user, rows in serving-window order
    assert np.all(np.diff(r.session_user) >= 0)
    assert np.array_equal(r.session_user[r.session], r.user)
    assert np.array_equal(np.bincount(r.session, minlength=r.n_sessions) > 0, np.ones(r.n_sessions, bool))
    assert np.all(np.diff(np.floor(r.time / 0.25)) >= 0)  # the fixture's run serves in 6-hour windows


def test_user_replicates_are_refits_of_resampled_users(run_dir, log, tmp_path):
    from counterfeed.twin.fit import FitSettings, fit_twin

    meta, reps = fit_twin(log, FitSettings(dims=4, bootstrap=2, epochs=4, n_topics=3, seed=3))
    assert meta["bootstrap"] == "users" and len(reps) == 3
    point = reps[0]
    for rep in reps[1:]:
        assert rep.user.shape == point.user.shape and np.all(rep.weight == 1)
        assert not np.allclose(rep.bias, point.bias)  # refitted, not copied
    assert meta["replicates"][1] != meta["replicates"][0]


def test_the_interval_covers_at_its_level_with_few_replicates():
    """``e_0 - truth`` and each ``e_b - e_0`` are N(0, 1): the interval ``e_0 +- t_B sqrt(M)`` is exact
    (M / 1 ~ chi2_B / B), so over 4,000 trials it covers 95% within 1.2 points (3.5 binomial SDs)."""
    rng = np.random.default_rng(11)
    trials, b = 4000, 3
    hits = 0
    for _ in range(trials):
        e0 = rng.standard_normal()
        rows = [{"clicks": (0.0, e0, 0.0, 100)}] + [{"clicks": (0.0, e0 + d, 0.0, 100)}
                                                     for d in rng.standard_normal(b)]
        e = _combine(rows[:1], rows[1:], None, 0.95)[0]
        hits += e.lower <= 0.0 <= e.upper
    assert abs(hits / trials - 0.95) < 0.012, hits / trials
    assert list(METRICS)[1] == "clicks"


def test_parametric_bootstrap_of_a_plain_file_is_an_error(log):
    """It simulates the logging policy, which only a run directory's log names (tester s8 #3: it used to
    fall back to the users' bootstrap with a warning)."""
    import dataclasses

    from counterfeed.errors import DataError
    from counterfeed.twin.fit import FitSettings, fit_twin

    plain = dataclasses.replace(log, logging=None)
    with pytest.raises(DataError, match="--bootstrap-kind parametric: .* use --bootstrap-kind users"):
        fit_twin(plain, FitSettings(dims=2, bootstrap=2, epochs=1, bootstrap_kind="parametric"))


def test_a_log_too_sparse_for_its_parameters_is_warned(log):
    """The median item's clicks against 10 per parameter (Peduzzi et al. 1996): the fixture's items have
    between 10 and 90 clicks each, so an appeal alone (dims 0, 10 needed) passes and 8 factors and an
    appeal (90 needed) are warned."""
    from counterfeed.twin.fit import _warn_sparse

    clicks = np.bincount(log.item, weights=log.click, minlength=log.n_items)
    med = float(np.median(clicks[clicks > 0]))
    assert 10 <= med < 90, med
    with pytest.warns(UserWarning, match="the median item has .* clicks for its 9 parameters"):
        _warn_sparse(log, 8)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_sparse(log, 0)
