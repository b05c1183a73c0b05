import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counterfeed.core.randomness import Keys, Stream, stream_key


def test_same_key_same_value_and_in_open_unit_interval():
    s = Keys(5).stream("x")
    a = s.uniform(np.arange(1000), 3, 7)
    b = s.uniform(np.arange(1000), 3, 7)
    assert np.array_equal(a, b)
    assert np.all((a > 0) & (a < 1))


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), users=st.lists(st.integers(0, 10**9), min_size=1, max_size=50),
       session=st.integers(0, 10**6), slot=st.integers(0, 10**4))
def test_draws_do_not_depend_on_batch_composition_or_order(seed, users, session, slot):
    s = Keys(seed).stream("choice")
    u = np.array(users, dtype=np.int64)
    together = s.uniform(u, session, slot)
    alone = np.array([s.uniform(np.array([x]), session, slot)[0] for x in users])
    assert np.array_equal(together, alone)
    perm = np.random.default_rng(0).permutation(len(u))
    assert np.array_equal(s.uniform(u[perm], session, slot), together[perm])


def test_distinct_streams_and_keys_are_uncorrelated():
    # 200k pairs: the correlation of independent uniforms has SD 1/sqrt(n) ~ 0.0022; 5 SD = 0.011
    k = Keys(1)
    users = np.arange(200_000)
    a, b = k.stream("a").uniform(users), k.stream("b").uniform(users)
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.011
    c = k.stream("a").uniform(users, 1)  # next session of the same stream
    assert abs(np.corrcoef(a, c)[0, 1]) < 0.011
    d = k.stream("a").uniform(users + 1)  # neighbouring users
    assert abs(np.corrcoef(a, d)[0, 1]) < 0.011


def test_uniform_moments_and_distributions():
    # n = 1e6: SE of the mean 0.00029, of the variance ~0.00027; tolerances are ~5 SE
    s = Keys(2).stream("m")
    u = s.uniform(np.arange(1_000_000))
    assert abs(u.mean() - 0.5) < 0.0015 and abs(u.var() - 1 / 12) < 0.0015
    z = s.normal(np.arange(1_000_000), 1)
    assert abs(z.mean()) < 0.005 and abs(z.std() - 1) < 0.005
    e = s.exponential(np.arange(1_000_000), 2)
    assert abs(e.mean() - 1) < 0.006
    g = s.gumbel(np.arange(1_000_000), 3)
    assert abs(g.mean() - np.euler_gamma) < 0.007


def test_seeds_change_streams_and_stream_keys_are_stable():
    assert stream_key(1, "x") != stream_key(2, "x")
    assert stream_key(1, "x") == stream_key(1, "x")
    assert not np.array_equal(Keys(1).stream("x").uniform(np.arange(10)), Keys(2).stream("x").uniform(np.arange(10)))
    s = Stream(stream_key(7, "child"))
    assert np.array_equal(s.child("a").uniform(np.arange(5)), s.child("a").uniform(np.arange(5)))


def test_derived_seeds_are_deterministic():
    assert Keys(3).derive_seed("replication", 1) == Keys(3).derive_seed("replication", 1)
    assert Keys(3).derive_seed("replication", 1) != Keys(3).derive_seed("replication", 2)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), users=st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=40),
       session=st.integers(0, 2**40), slot=st.integers(-5, 10**6))
def test_numpy_path_and_kernels_give_the_same_bits(seed, users, session, slot):
    """Small draws in a fresh process do not load numba; the value of a draw never depends on it."""
    from counterfeed.core import randomness

    s = Keys(seed).stream("choice")
    u = np.array(users, dtype=np.int64)
    kernels = randomness._kernels()
    if not kernels:  # pragma: no cover - numba unusable here: nothing to compare against
        return
    for i, method in enumerate((s.uniform, s.gumbel, s.exponential)):
        saved = randomness._KERNELS
        try:
            randomness._KERNELS, randomness._WITHOUT_KERNELS = None, 0  # as in a fresh process
            fresh = method(u, session, slot)
            assert randomness._KERNELS is None  # the NumPy / C-library log path served it
        finally:
            randomness._KERNELS = saved
        assert np.array_equal(fresh, kernels[i](s.key, u, np.int64(session), np.int64(slot)))


def test_a_large_sample_agrees_bit_for_bit_across_paths():
    # 200k draws of each kind: NumPy's SIMD log would differ in ~800 of them; the C library's log in none
    from counterfeed.core import randomness

    kernels = randomness._kernels()
    if not kernels:  # pragma: no cover
        return
    s = Keys(11).stream("visit")
    users = np.arange(200_000, dtype=np.int64)
    u = randomness._numpy_uniform(s.key, users, 3, 1)
    assert np.array_equal(u, kernels[0](s.key, users, np.int64(3), np.int64(1)))
    assert np.array_equal(-randomness._clib_log(-randomness._clib_log(u)), kernels[1](s.key, users, np.int64(3), np.int64(1)))
    assert np.array_equal(-randomness._clib_log(u), kernels[2](s.key, users, np.int64(3), np.int64(1)))


def test_compiled_draws_broadcast_as_a_ufunc_would():
    """The compiled draws take keys of any broadcastable shapes (scalars, a column against a row,
    more than two dimensions, strided views, empty) and give the NumPy path's values in the
    broadcast shape; scalar keys give a float64 scalar, as a ufunc returns."""
    from counterfeed.core import randomness

    kernels = randomness._kernels()
    if not kernels:  # pragma: no cover
        return
    rng = np.random.default_rng(4)
    key = Keys(21).stream("shapes").key
    grid = rng.integers(-2**62, 2**62, (6, 8))
    cases = [(np.int64(5), np.int64(3), np.int64(0)),
             (np.arange(7), np.int64(2), np.int64(1)),
             (np.arange(6)[:, None], np.arange(6)[:, None], np.arange(4)),
             (rng.integers(0, 10**9, (3, 4, 5)), np.int64(9), rng.integers(0, 100, (4, 5))),
             (np.zeros(0, np.int64), np.int64(1), np.int64(2)),
             (grid[:, ::3], np.int64(1), grid[0, :3]),
             (np.int64(8), np.arange(5)[:, None, None], np.arange(3)[None, :, None] * np.ones((1, 1, 2), np.int64)),
             (np.zeros((2, 3, 1), np.int64), np.int64(0), np.zeros(0, np.int64)),  # empty, 3-D (tester)
             (np.zeros((0, 3, 0), np.int64), np.int64(1), np.int64(2)),
             (np.asfortranarray(grid), np.zeros((6, 1), np.int32), np.array(True))]
    for user, session, slot in cases:
        user, session, slot = (np.asarray(a, dtype=np.int64) for a in (user, session, slot))
        shape = np.broadcast_shapes(user.shape, session.shape, slot.shape)
        u = randomness._numpy_uniform(key, user, session, slot)
        for draw, want in zip(kernels[:3], (u, -randomness._clib_log(-randomness._clib_log(u)), -randomness._clib_log(u))):
            got = draw(key, user, session, slot)
            assert np.shape(got) == shape
            assert np.array_equal(got, want)
            if not shape:
                assert isinstance(got, np.float64)
    # the stream key is a uint64 whatever it is passed as; keys must be integers, as the ufuncs' were
    assert np.array_equal(kernels[0](12345, np.arange(3), 1, 2),
                          randomness._numpy_uniform(np.uint64(12345), np.arange(3), 1, 2))
    assert np.array_equal(kernels[0](2**63 + 5, np.arange(3), 1, 2),
                          randomness._numpy_uniform(np.uint64(2**63 + 5), np.arange(3), 1, 2))
    with pytest.raises(TypeError, match="integers"):
        kernels[0](key, np.array([1.5, 2.7]), 0, 0)


@pytest.mark.parametrize("keys", [np.array([1.5, 2.0]), 1.5, np.array(["1", "2"]), np.array([1, 2], dtype=object),
                                  np.array([1j]), None, 2**70, [1.0]],
                         ids=["floats", "float", "strings", "objects", "complex", "none", "beyond-64-bits", "list"])
def test_every_draw_refuses_the_same_keys_on_both_paths(keys):
    """A small draw (the NumPy path) and a large one (the kernels) accept the same keys: integers
    and bools of any width. Anything else is the same TypeError on both paths and in every
    method, never a value (strings such as "1" were hashed as 1 on the NumPy path, complex keys
    lost their imaginary part)."""
    from counterfeed.core import randomness

    kernels = randomness._kernels()
    s = Keys(3).stream("keys")
    saved = randomness._KERNELS
    paths = [False] + ([kernels] if kernels else [])
    try:
        for path in paths:
            randomness._KERNELS = path  # False: the NumPy path; the kernels: theirs
            for draw in (s.uniform, s.gumbel, s.exponential, s.normal, s.bits):
                with pytest.raises(TypeError, match="random keys must be integers, got"):
                    draw(keys, 0, 0)
                with pytest.raises(TypeError, match="random keys must be integers, got"):
                    draw(0, keys, 0)
            with pytest.raises(TypeError, match="random keys must be integers, got"):
                s.gumbel_max(np.zeros((1, 2)), np.ones((1, 2), bool), np.zeros(1, np.int64), np.zeros(1, np.int64),
                             np.broadcast_to(np.asarray(keys), (1, 2)) if keys is not None else keys)
    finally:
        randomness._KERNELS = saved
    accepted = [np.array([True, False]), np.array([-3, 4], np.int8), np.array([2**64 - 1], np.uint64), [1, 2], -5]
    for good in accepted:
        randomness._KERNELS = False
        try:
            numpy_path = s.uniform(good, 1, 2)
        finally:
            randomness._KERNELS = saved
        if kernels:
            assert np.array_equal(numpy_path, kernels[0](s.key, good, 1, 2))


@pytest.mark.slow  # compiles the kernels in fresh processes, 11 s
def test_small_draws_do_not_load_numba_and_kernels_cache_outside_the_package(tmp_path):
    """Small draws load no compiled code; sustained ones load the kernels, compiled by numba in the
    first process (cold cache) and mapped from the cache, without numba, in the next."""
    import subprocess
    import sys
    from pathlib import Path

    import counterfeed

    code = ("import sys, numpy as np\n"
            "from counterfeed.core import randomness\n"
            "from counterfeed.core.randomness import Keys\n"
            "s = Keys(1).stream('x')\n"
            "s.uniform(np.arange(1000), 0); s.gumbel(np.arange(100), 1); s.exponential(np.arange(100), 2)\n"
            "assert 'numba' not in sys.modules and 'scipy' not in sys.modules, 'loaded numba/scipy'\n"
            "assert 'counterfeed.core.native' not in sys.modules, 'loaded the kernels'\n"
            "for i in range(40):  # many small draws add up: the kernels load for sustained use\n"
            "    s.gumbel(np.arange(4000), 10 + i)\n"
            "assert randomness._KERNELS, 'kernels not loaded'\n"
            "print('numba' in sys.modules)\n")
    env = {**__import__("os").environ, "COUNTERFEED_CACHE_DIR": str(tmp_path)}
    package = Path(counterfeed.__file__).parent

    def in_package():  # (files an older version may have left there do not count)
        return {p: p.stat().st_mtime for p in [*package.rglob("*.nbi"), *package.rglob("*.nbc"),
                                               *package.rglob("kernels-*.bin")]}

    before_package = in_package()
    cold = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    assert cold.stdout.strip() == "True"  # compiled here
    cached = list((tmp_path / "numba").rglob("*.nbi"))
    assert {p.name.split(".")[1].split("-")[0] for p in cached} >= {"draws"}
    assert len(list((tmp_path / "numba" / "native").glob("kernels-*.bin"))) == 1
    assert in_package() == before_package
    # a second process maps them without numba, and writes nothing
    before = sorted(p.name for p in (tmp_path / "numba").rglob("*"))
    warm = subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True, text=True)
    assert warm.stdout.strip() == "False"
    assert sorted(p.name for p in (tmp_path / "numba").rglob("*")) == before


def test_gumbel_max_is_argmax_of_the_masked_gumbel_sum_on_both_paths():
    """``Stream.gumbel_max`` (the user model's choice) gives exactly ``np.argmax`` of
    ``np.where(eligible, base + gumbel, -inf)`` and its value: first index on ties, 0 and -inf for
    a row with nothing eligible; the same with the compiled kernel and on the NumPy path."""
    from counterfeed.core import randomness

    rng = np.random.default_rng(5)
    n, k = 3000, 10
    s = Keys(8).stream("user:choice")
    users, sessions = rng.integers(0, 10**6, n), rng.integers(0, 50, n)
    slot = rng.integers(0, 5000, (n, k))
    base = rng.normal(size=(n, k))
    base[:5] = 0.0  # ties in the utility (the noise still differs)
    eligible = rng.random((n, k)) < 0.5
    eligible[:7] = False  # rows with nothing to choose
    v = np.where(eligible, base + s.gumbel(users[:, None], sessions[:, None], slot), -np.inf)
    want = np.argmax(v, axis=1)
    kernels = randomness._kernels()
    saved = randomness._KERNELS
    paths = ([saved] if kernels else []) + [None]
    for loaded in paths:
        try:
            randomness._KERNELS, randomness._WITHOUT_KERNELS = loaded, 0
            if loaded is None:  # a draw this size takes the NumPy path only below EXACT_LOG_MAX
                got = [s.gumbel_max(base[i:i + 100], eligible[i:i + 100], users[i:i + 100],
                                    sessions[i:i + 100], slot[i:i + 100]) for i in range(0, n, 100)]
                best, value = np.concatenate([g[0] for g in got]), np.concatenate([g[1] for g in got])
                assert randomness._KERNELS is None
            else:
                best, value = s.gumbel_max(base, eligible, users, sessions, slot)
        finally:
            randomness._KERNELS = saved
        assert np.array_equal(best, want)
        assert np.array_equal(value, v[np.arange(n), want])
        assert np.all(value[:7] == -np.inf) and np.all(best[:7] == 0)


@pytest.mark.parametrize("max_clicks", [1, 2, 4])
def test_position_choices_are_the_numpy_rounds_on_both_paths(max_clicks):
    """``position_choices`` (the choice model's clicks under position examination) gives the same
    clicks from its compiled kernel (one pass per row) as from the NumPy rounds of keyed draws
    (``examine.uniform`` < the examination probability, then ``gumbel_max`` over the examined, not
    yet clicked items against the no-click draw): ties in the utility, rows with nothing examined,
    int32 keys, and with at most ``max_clicks`` clicks per row."""
    from counterfeed.core import randomness
    from counterfeed.core.randomness import position_choices

    rng = np.random.default_rng(11)
    n, k, n_items = 3000, 10, 500
    keys = Keys(4)
    examine, choice = keys.stream("user:examine"), keys.stream("user:choice")
    users = rng.integers(0, 10**6, n).astype(np.int32)
    sessions = rng.integers(0, 50, n)
    items = np.argsort(rng.random((n, n_items)), axis=1)[:, :k]
    util = rng.normal(size=(n, k))
    util[:20] = 0.5  # ties in the utility
    exam_prob = 0.8 ** np.arange(k)
    args = (util, exam_prob, users, sessions, items, n_items + 1, max_clicks, -1.0)
    kernels = randomness._kernels()
    saved = randomness._KERNELS
    results, flat = [], []  # per path: the clicks, and with one examination probability for every position
    for loaded in ([saved] if kernels else []) + [False]:
        try:
            randomness._KERNELS = loaded
            results.append(position_choices(examine, choice, *args))
            nothing = position_choices(examine, choice, util[:5], np.zeros(k), users[:5], sessions[:5], items[:5],
                                       n_items + 1, max_clicks, -1.0)
            assert not nothing.any()  # nothing examined: no click
            flat.append(position_choices(examine, choice, util, [0.6], users, sessions, items, n_items + 1,
                                         max_clicks, -1.0))
        finally:
            randomness._KERNELS = saved
    for other in flat[1:]:
        np.testing.assert_array_equal(other, flat[0])
    clicks = results[0]
    assert clicks.dtype == bool and clicks.shape == (n, k)
    assert clicks.sum(axis=1).max() <= max_clicks and clicks.any()
    if max_clicks > 1:
        assert (clicks.sum(axis=1) > 1).any()  # a second round happened
    for other in results[1:]:
        np.testing.assert_array_equal(other, clicks)
