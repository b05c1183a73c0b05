import numpy as np
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
