"""The compiled kernels as a process loads them (counterfeed.core.native): the bits numba's own
functions give, mapped from the cache without numba, a damaged cache rebuilt rather than loaded,
and arguments checked before the compiled code reads them."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from counterfeed.core import native

# Every kernel on fixed inputs; prints the SHA-256 of each output and whether numba was imported.
_SCRIPT = r"""
import hashlib, json, sys
import numpy as np
from counterfeed.core import native
from counterfeed.plugins.recommenders import _compiled

rng = np.random.default_rng(7)
out = {}
def digest(*arrays):
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()

users = rng.integers(0, 10**6, (30, 1)); slots = np.arange(12)[None, :]
for kind in range(3):
    o = np.empty((30, 12))
    native.kernel("draws")(kind, np.uint64(99), users, np.full((1, 1), 4), slots, o)
    out[f"draws{kind}"] = digest(o)
base = rng.normal(size=(40, 9)); eligible = rng.random((40, 9)) < 0.6
best, value = np.empty(40, np.int64), np.empty(40)
native.kernel("gumbel_max")(np.uint64(3), base, eligible, np.arange(40), np.arange(40) % 5,
                            np.tile(np.arange(9), (40, 1)), best, value)
out["gumbel_max"] = digest(best, value)
clicked = np.empty((40, 9), bool)
native.kernel("position_choices")(np.uint64(3), np.uint64(4), base, 0.8 ** np.arange(9), np.arange(40),
                                  np.arange(40) % 5, np.tile(np.arange(9), (40, 1)), 10, 2, -1.0, clicked,
                                  np.empty(9, bool))
out["position_choices"] = digest(clicked)
scores = rng.normal(size=(50, 300)); scores[3, 10:20] = 0.0; scores[4, 5] = np.nan
top = np.empty((50, 10), np.int64)
_compiled.topk_rows(scores, rng.random(300) < 0.9, 10, top)
out["topk_rows"] = digest(top)
imp, clk = np.zeros(400, np.int32), np.zeros(400, np.int32)
keys = rng.integers(0, 400, 1000); fresh = np.empty(1000, np.int64)
n = _compiled.count_cells(imp, clk, keys, (rng.random(1000) < 0.2).astype(np.float64), fresh)
out["count_cells"] = digest(imp, clk, fresh[:n])
U = (rng.standard_normal((60, 5)) * 0.1).astype(np.float32); V = (rng.standard_normal((30, 5)) * 0.1).astype(np.float32)
acc_u, acc_v = np.full_like(U, 1e-8), np.full_like(V, 1e-8)
m = 2000; pu, pi = rng.integers(0, 60, m), rng.integers(0, 30, m)
losses = np.zeros(3)
_compiled.adagrad_epochs(U, V, acc_u, acc_v, pu, pi, (rng.random(m) < 0.3).astype(np.float32),
                         rng.integers(0, 3, m).astype(np.float32), np.stack([rng.permutation(m) for _ in range(3)]),
                         128, 0.1, 1e-3, losses)
out["adagrad_epochs"] = digest(U, V, acc_u, acc_v, losses)
print(json.dumps({"numba": "numba" in sys.modules, "digests": out}))
"""


def _run(cache, stderr=None, **extra):
    """The script's result in a fresh process with this cache; its stderr appended to ``stderr``."""
    env = {**os.environ, "COUNTERFEED_CACHE_DIR": str(cache), **extra}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], check=True, env=env, capture_output=True, text=True)
    if stderr is not None:
        stderr.append(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cold(tmp_path_factory):
    """A process with an empty cache (it compiles with numba and writes the cache file)."""
    cache = tmp_path_factory.mktemp("native-cache")
    return cache, _run(cache)


def test_a_warm_process_maps_the_cached_kernels_without_numba_and_gets_the_same_bits(cold):
    cache, first = cold
    assert first["numba"]  # compiled there
    files = list((cache / "numba" / "native").glob("kernels-*.bin"))
    assert len(files) == 1
    warm = _run(cache)
    assert not warm["numba"]
    assert warm["digests"] == first["digests"]
    assert list((cache / "numba" / "native").glob("kernels-*.bin")) == files  # nothing rewritten


def test_the_shims_compute_what_the_njit_functions_compute():
    """Each kernel through its C-ABI shim gives numba's own function's bits on the same inputs."""
    from counterfeed.core import _kernels as core
    from counterfeed.plugins.recommenders import _compiled
    from counterfeed.plugins.recommenders import _kernels as recs

    rng = np.random.default_rng(11)
    users, session, slots = rng.integers(-2**62, 2**62, (7, 1)), np.full((1, 1), 3), np.arange(5)[None, :]
    for kind in range(3):
        a, b = np.empty((7, 5)), np.empty((7, 5))
        native.kernel("draws")(kind, np.uint64(5), users, session, slots, a)
        core.draws(kind, np.uint64(5), users, session, slots, b)
        assert np.array_equal(a, b)
    base, eligible = rng.normal(size=(25, 6)), rng.random((25, 6)) < 0.5
    args = (base, eligible, np.arange(25), np.arange(25) * 7, rng.integers(0, 99, (25, 6)))
    got = [np.empty(25, np.int64), np.empty(25)]
    want = [np.empty(25, np.int64), np.empty(25)]
    native.kernel("gumbel_max")(np.uint64(8), *args, *got)
    core.gumbel_max(np.uint64(8), *args, *want)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    args = (np.uint64(8), np.uint64(9), base, 0.7 ** np.arange(6), np.arange(25), np.arange(25) * 7,
            rng.integers(0, 99, (25, 6)), 100, 3, -0.5)
    got, want = np.empty((25, 6), bool), np.empty((25, 6), bool)
    native.kernel("position_choices")(*args, got, np.empty(6, bool))
    core.position_choices(*args, want, np.empty(6, bool))
    assert np.array_equal(got, want) and got.any()
    scores = rng.normal(size=(9, 40))
    a, b = np.empty((9, 4), np.int64), np.empty((9, 4), np.int64)
    _compiled.topk_rows(scores, np.zeros(0, bool), 4, a)
    recs.topk_rows(scores, np.zeros(0, bool), 4, b, np.empty(4))
    assert np.array_equal(a, b)
    U0 = (rng.standard_normal((12, 4)) * 0.1).astype(np.float32)
    V0 = (rng.standard_normal((8, 4)) * 0.1).astype(np.float32)
    m = 300
    data = (rng.integers(0, 12, m), rng.integers(0, 8, m), (rng.random(m) < 0.4).astype(np.float32),
            np.ones(m, np.float32), np.stack([rng.permutation(m) for _ in range(2)]), 32, 0.2, 1e-2)
    tables = [[U0.copy(), V0.copy(), np.full_like(U0, 1e-8), np.full_like(V0, 1e-8), np.zeros(2)] for _ in range(2)]
    _compiled.adagrad_epochs(*tables[0][:4], *data, tables[0][4])
    U, V = tables[1][0], tables[1][1]
    recs.adagrad_epochs(*tables[1][:4], *data, tables[1][4], np.zeros_like(U), np.zeros_like(V),
                        np.zeros(12, np.int64), np.zeros(8, np.int64), np.empty(12, np.int64), np.empty(8, np.int64),
                        np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.float32), np.empty(m, np.float32),
                        np.empty((m, 4), np.int32), np.empty(32, np.float32))
    assert all(np.array_equal(g, w) for g, w in zip(*tables))


@pytest.mark.slow  # compiles the kernels in fresh processes, 16 s
def test_a_damaged_cache_file_is_rebuilt_not_loaded(cold, tmp_path):
    """A flipped byte in an object, a truncated file or a foreign file: the next process compiles
    again (same bits) and replaces the file; it never maps what does not match its SHA-256."""
    cache, first = cold
    (path,) = (cache / "numba" / "native").glob("kernels-*.bin")
    good = path.read_bytes()
    assert native._read(path) is not None
    damaged = {"flipped": good[:-100] + bytes([good[-100] ^ 0x40]) + good[-99:], "truncated": good[:len(good) // 2],
               "foreign": b"not a cache file\n" * 10, "empty": b""}
    for name, data in damaged.items():
        copy = tmp_path / f"{name}.bin"
        copy.write_bytes(data)
        assert native._read(copy) is None, name
    # a header naming a symbol its object lacks: read (the objects match), then refused by the loader
    start = len(native._MAGIC) + 8
    (size,) = struct.unpack("<Q", good[len(native._MAGIC):start])
    header = json.loads(good[start:start + size])
    header["draws"]["symbol"] = "not_in_the_object"
    head = json.dumps(header, sort_keys=True).encode()
    renamed = native._MAGIC + struct.pack("<Q", len(head)) + head + good[start + size:]
    assert native._read_bytes(renamed) is not None
    for data in (damaged["flipped"], renamed):
        path.write_bytes(data)
        try:
            again = _run(cache)
            assert again["numba"] and again["digests"] == first["digests"]
            assert native._read(path) is not None and path.read_bytes() != data  # rewritten whole
        finally:
            path.write_bytes(good)


@pytest.mark.parametrize("blocked_by", ["a file as parent", pytest.param("a directory as the file", marks=pytest.mark.slow)])
def test_an_unwritable_cache_costs_time_not_the_kernels_and_says_so(cold, tmp_path, blocked_by):
    """A cache directory that cannot be created (its parent is a file), or a directory where the
    cache file goes: every process compiles (in a private temporary directory where numba's own
    cache cannot be written), with the same bits, writes nothing in the way, and warns once on
    stderr with the path and what to do, instead of silently compiling in every run. (Each case
    compiles the kernels in a fresh process, 12 s: the second runs in the slow suite.)"""
    cache, first = cold
    (name,) = (p.name for p in (cache / "numba" / "native").glob("kernels-*.bin"))
    if blocked_by == "a file as parent":
        (tmp_path / "a-file").write_text("")
        where = tmp_path / "a-file" / "cache"
        path = where / "numba" / "native" / name
    else:
        where = tmp_path / "blocked"
        path = where / "numba" / "native" / name
        path.mkdir(parents=True)
    stderr: list[str] = []
    result = _run(where, stderr)
    assert result["numba"] and result["digests"] == first["digests"]
    assert stderr[0].count("compiled-kernel cache not written") == 1, stderr[0]
    assert f"({path})" in stderr[0] and "COUNTERFEED_CACHE_DIR" in stderr[0]
    if blocked_by != "a file as parent":
        assert list(path.parent.iterdir()) == [path] and path.is_dir()  # no leftovers, the directory kept
    stderr = []
    _run(cache, stderr)  # a writable cache: not a word
    assert "cache not written" not in stderr[0]


def test_arguments_are_checked_before_the_compiled_code_reads_them():
    k = native.kernel("gumbel_max")
    base, eligible = np.zeros((4, 3)), np.ones((4, 3), bool)
    ids, slot = np.arange(4), np.zeros((4, 3), np.int64)
    best, value = np.empty(4, np.int64), np.empty(4)
    k(np.uint64(1), base, eligible, ids, ids, slot, best, value)  # as declared: runs
    read_only = value.copy()
    read_only.flags.writeable = False
    cases = {"base must be a C-contiguous 2-D float64": (base.astype(np.float32), eligible, ids, ids, slot, best,
                                                         value),
             "base must be a C-contiguous 2-D float64 array, got a non-contiguous": (np.zeros((3, 4)).T, eligible, ids,
                                                                                   ids, slot, best, value),
             "eligible must be a C-contiguous 2-D bool": (base, eligible[0], ids, ids, slot, best, value),
             "value must be a C-contiguous aligned writeable": (base, eligible, ids, ids, slot, best, read_only),
             "user must be a C-contiguous 1-D int64 array, got list": (base, eligible, [0, 1, 2, 3], ids, slot, best,
                                                                       value)}
    for message, args in cases.items():
        with pytest.raises(TypeError, match=message):
            k(np.uint64(1), *args)
    with pytest.raises(TypeError):
        k(np.uint64(1), base, eligible, ids, ids, slot, best)  # one argument short
    with pytest.raises(TypeError):
        k(1.5, base, eligible, ids, ids, slot, best, value)  # a float key
    with pytest.raises(TypeError):
        native.kernel("draws")(np.float32(1.0), np.uint64(1), slot, slot, slot, np.empty((4, 3)))  # a float kind
    shapes = {"gumbel_max": (native.kernel("gumbel_max"), (np.uint64(1), base, eligible, ids[:3], ids, slot, best,
                                                           value)),
              "position_choices": (native.kernel("position_choices"),
                                   (np.uint64(1), np.uint64(2), base, np.ones(3), ids[:3], ids, slot, 5, 2, 0.0,
                                    np.empty((4, 3), bool), np.empty(3, bool))),
              "position_choices items": (native.kernel("position_choices"),
                                         (np.uint64(1), np.uint64(2), base, np.ones(3), ids, ids, slot[:2], 5, 2,
                                          0.0, np.empty((4, 3), bool), np.empty(3, bool))),
              "draws": (native.kernel("draws"), (0, np.uint64(1), np.zeros((0, 0), np.int64), slot, slot,
                                                 np.empty((4, 3)))),
              "topk k": (native.kernel("topk_rows"), (base, np.zeros(0, bool), 0, np.empty((4, 0), np.int64),
                                                      np.empty(0))),
              "topk out": (native.kernel("topk_rows"), (base, np.zeros(0, bool), 2, np.empty((2, 2), np.int64),
                                                        np.empty(2))),
              "topk available": (native.kernel("topk_rows"), (base, np.ones(2, bool), 2, np.empty((4, 2), np.int64),
                                                              np.empty(2))),
              "count_cells fresh": (native.kernel("count_cells"), (np.zeros(8, np.int32), np.zeros(8, np.int32),
                                                                   np.arange(4), np.ones(4), np.empty(1, np.int64))),
              "count_cells keys": (native.kernel("count_cells"), (np.zeros(4, np.int32), np.zeros(4, np.int32),
                                                                  np.array([0, 5]), np.ones(2), np.empty(2, np.int64)))}
    for name, (kern, args) in shapes.items():
        with pytest.raises(ValueError, match=f"kernel {kern.name}: "):
            kern(*args)
    from counterfeed.plugins.recommenders._compiled import adagrad_epochs

    U = np.zeros((2, 3), np.float32)
    pairs = (np.zeros(1, np.int64), np.zeros(1, np.int64), np.ones(1, np.float32), np.ones(1, np.float32))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        adagrad_epochs(U, U.copy(), U.copy(), U.copy(), *pairs, np.zeros((1, 1), np.int64), 0, 0.1, 0.0, np.zeros(1))
    with pytest.raises(ValueError, match="pu, pi must be rows of U, V"):
        adagrad_epochs(U, U.copy(), U.copy(), U.copy(), np.array([2]), *pairs[1:], np.zeros((1, 1), np.int64), 4, 0.1,
                       0.0, np.zeros(1))
    with pytest.raises(ValueError, match="perms"):
        adagrad_epochs(U, U.copy(), U.copy(), U.copy(), *pairs, np.ones((1, 1), np.int64), 4, 0.1, 0.0, np.zeros(1))


def test_the_cache_file_is_keyed_by_sources_cpu_and_numba_settings(monkeypatch):
    path = native.cache_file()
    assert path.parent.name == "native" and path.name.startswith("kernels-")
    monkeypatch.setenv("NUMBA_OPT", "1")  # another optimisation level: other machine code
    assert native.cache_file() != path
    monkeypatch.delenv("NUMBA_OPT")
    import llvmlite.binding as llvm

    monkeypatch.setattr(llvm, "get_host_cpu_name", lambda: "another-cpu")
    assert native.cache_file() != path


def test_undefined_symbols_are_read_from_the_object(cold):
    cache, _ = cold
    (path,) = (cache / "numba" / "native").glob("kernels-*.bin")
    objects = native._read(path)
    assert "log" in objects["draws"][2] and "log" in objects["gumbel_max"][2]
    assert objects["draws"][2] == native.elf_undefined_symbols(objects["draws"][1])
    with pytest.raises(ValueError, match="ELF"):
        native.elf_undefined_symbols(b"MZ\x90\x00" + bytes(60))
