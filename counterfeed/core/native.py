"""Compiled kernels that a process loads without importing numba.

The package's compiled loops (the keyed draws of :mod:`counterfeed.core.randomness`, the top-k of
every greedy slate, matrix factorization's counting and training loops) are written as numba
``njit`` functions (:mod:`counterfeed.core._kernels`, :mod:`counterfeed.plugins.recommenders._kernels`).
Loading them through numba costs every process about 0.8 s before its first draw: importing numba
(about 0.35 s) and numba's first cache load, which registers every implementation numba has
(``BaseContext.refresh``, about 0.45 s). In a run that is one core's time at the start of the
simulation while the other core idles.

So each kernel is compiled once per installation and CPU, through a C-ABI shim
(``numba.cfunc``: every array passed as a pointer and its shape, rebuilt with ``numba.carray``);
the shim's optimised LLVM module (numba's ``inspect_llvm``) is emitted as an object with the target
machine numba's JIT uses, and the objects are cached in one file under :func:`kernel_cache_dir`
(``native/``). Every process, the compiling one included, maps them with llvmlite's MCJIT (the LLVM
binding numba itself uses; about 0.01 s for every kernel, 0.05 s with llvmlite's import) and calls
them through cffi. The shim calls the ``njit`` kernel with the array types a direct call would
have had, so a kernel computes the same bits either way (``tests/core/test_native.py``).

The cache file is keyed by the kernels' sources, numba's and llvmlite's versions, the host CPU's
name and features (numba compiles for the host CPU), the ``NUMBA_*`` settings that can change
compiled code and the Python version.
Each object carries its SHA-256; a file that does not match is rebuilt, never loaded. Where the
file cannot be used (a symbol that cannot be resolved), the process compiles again; on another
platform than Linux (no ELF objects) it calls numba's own compiled shims.

Arguments are checked before every call (the compiled code reads and writes raw memory): a NumPy
array of the declared dtype and dimension, C-contiguous, aligned and writeable where the kernel
writes, integers where integers are declared (``TypeError`` otherwise); shapes that fit together
and indices in range (each kernel's check, ``ValueError``).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import operator
import os
import re
import struct
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from counterfeed.core.randomness import kernel_cache_dir

__all__ = ["kernel", "KERNELS", "cache_file", "within_range"]

_DTYPES = {"u64": np.uint64, "i64": np.int64, "i32": np.int32, "f64": np.float64, "f32": np.float32,
           "b1": np.bool_}


@dataclass(frozen=True)
class Arg:
    """One argument of a kernel: a scalar (``ndim`` 0: ``u64``, ``i64`` or ``f64``) or a
    C-contiguous array of ``dtype`` and ``ndim``, which the kernel writes when ``out``."""

    name: str
    code: str
    ndim: int
    out: bool

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_DTYPES[self.code])


def _parse(signature: str) -> tuple[Arg, ...]:
    """``"key: u64, out: f64[:,:]*"`` -> the arguments (``*``: written by the kernel)."""
    args = []
    for part in re.split(r",(?![^\[]*\])", signature):  # commas outside brackets
        name, _, kind = (s.strip() for s in part.partition(":"))
        out = kind.endswith("*")
        kind = kind.rstrip("*")
        code, _, dims = kind.partition("[")
        args.append(Arg(name, code, dims.count(":"), out))
    return tuple(args)


@dataclass(frozen=True)
class Spec:
    """A kernel: the module and ``njit`` function that define it, its arguments, its result
    (``void`` or ``i64``), and the check of its arguments' shapes and index ranges (called with
    the arguments, after their types are checked; raises ``ValueError``)."""

    module: str
    function: str
    args: tuple[Arg, ...]
    check: Callable[..., None]
    result: str = "void"


def _bad_value(kernel: str, what: str) -> ValueError:
    return ValueError(f"kernel {kernel}: {what}")


def within_range(index: np.ndarray, n: int) -> bool:
    """Every entry of the integer array ``index`` is in ``[0, n)`` (two reductions, no mask; true
    when empty)."""
    return index.size == 0 or (int(index.min()) >= 0 and int(index.max()) < n)


# The checks run before every call (the draws about 9,000 times a quickstart): messages are built
# only on failure.

def _check_draws(kind, key, user, session, slot, out) -> None:
    rows, cols = out.shape
    for a in (user, session, slot):
        r, c = a.shape
        if (r != 1 and r != rows) or (c != 1 and c != cols):
            raise _bad_value("draws", f"keys of shape {a.shape} do not broadcast to out {out.shape} (rows and "
                                      "columns 1 or out's)")
    if kind != 0 and kind != 1 and kind != 2:
        raise _bad_value("draws", f"kind must be 0, 1 or 2, got {kind}")


def _check_gumbel_max(key, base, eligible, user, session, slot, best, value) -> None:
    shape = base.shape
    if eligible.shape != shape or slot.shape != shape:
        raise _bad_value("gumbel_max", f"base {shape}, eligible {eligible.shape} and slot {slot.shape} must have "
                                       "one shape")
    n = (shape[0],)
    if user.shape != n or session.shape != n or best.shape != n or value.shape != n:
        raise _bad_value("gumbel_max", f"user, session, best and value must have base's {n[0]} rows")


def _check_position_choices(key_examine, key_choice, util, exam_prob, user, session, items, stride, max_clicks,
                            no_click, clicked, examined) -> None:
    n, k = util.shape
    if items.shape != util.shape or clicked.shape != util.shape:
        raise _bad_value("position_choices", f"util {util.shape}, items {items.shape} and clicked {clicked.shape} "
                                             "must have one shape")
    if user.shape != (n,) or session.shape != (n,) or exam_prob.shape != (k,) or examined.shape != (k,):
        raise _bad_value("position_choices", f"user and session must have util's {n} rows, exam_prob and "
                                             f"examined its {k} columns")


def _check_topk_rows(scores, available, k, out, vals) -> None:
    n, m = scores.shape
    if not 1 <= k <= m:
        raise _bad_value("topk_rows", f"k must be in [1, {m}] (the items), got {k}")
    if out.shape != (n, k) or vals.shape[0] < k:
        raise _bad_value("topk_rows", f"out must be ({n}, {k}) and vals at least {k} long, got {out.shape} and "
                                      f"{vals.shape}")
    if available.shape[0] not in (0, m):
        raise _bad_value("topk_rows", f"available must have {m} entries or none, got {available.shape[0]}")


def _check_count_cells(imp, clk, keys, clicks, fresh) -> None:
    if imp.shape != clk.shape or clicks.shape != keys.shape or fresh.shape[0] < keys.shape[0]:
        raise _bad_value("count_cells", "imp and clk must have one shape, clicks keys' shape, fresh at least "
                                        "keys' size")
    if not within_range(keys, imp.shape[0]):
        raise _bad_value("count_cells", f"keys must be cells of the grid, in [0, {imp.shape[0]})")


def _check_adagrad_epochs(U, V, acc_u, acc_v, pu, pi, wp, wn, perms, batch_size, lr, l2, losses,
                          gu, gv, cu, cv, rows_u, rows_v, qu, qi, qp, qn, rec, logits) -> None:
    name, n = "adagrad_epochs", pu.shape[0]
    if not (U.shape == acc_u.shape == gu.shape and V.shape == acc_v.shape == gv.shape
            and U.shape[1] == V.shape[1] >= 1):
        raise _bad_value(name, f"U {U.shape} and V {V.shape} (same columns), their accumulators and gradients "
                               "must match")
    if not (all(a.shape == (n,) for a in (pi, wp, wn, qu, qi, qp, qn)) and rec.shape == (n, 4)
            and logits.shape[0] >= min(batch_size, n)):
        raise _bad_value(name, f"pi, wp, wn and the work arrays must have the {n} pairs of pu (logits "
                               "min(batch_size, pairs))")
    if not (batch_size >= 1 and perms.shape[1] == n and losses.shape[0] >= perms.shape[0]):
        raise _bad_value(name, "batch_size must be at least 1, perms (epochs, pairs), losses one per epoch")
    if not (cu.shape == (U.shape[0],) and cv.shape == (V.shape[0],)
            and rows_u.shape[0] >= min(batch_size, U.shape[0]) and rows_v.shape[0] >= min(batch_size, V.shape[0])):
        raise _bad_value(name, "row counters and row lists must fit the tables")
    if not (within_range(pu, U.shape[0]) and within_range(pi, V.shape[0]) and within_range(perms, n)):
        raise _bad_value(name, "pu, pi must be rows of U, V and perms indices of the pairs")


_CORE = "counterfeed.core._kernels"
_RECS = "counterfeed.plugins.recommenders._kernels"

#: every kernel of the package (one cache file holds them all)
KERNELS: dict[str, Spec] = {
    "draws": Spec(_CORE, "draws", _parse(
        "kind: i64, key: u64, user: i64[:,:], session: i64[:,:], slot: i64[:,:], out: f64[:,:]*"), _check_draws),
    "gumbel_max": Spec(_CORE, "gumbel_max", _parse(
        "key: u64, base: f64[:,:], eligible: b1[:,:], user: i64[:], session: i64[:], slot: i64[:,:], "
        "best: i64[:]*, value: f64[:]*"), _check_gumbel_max),
    "position_choices": Spec(_CORE, "position_choices", _parse(
        "key_examine: u64, key_choice: u64, util: f64[:,:], exam_prob: f64[:], user: i64[:], session: i64[:], "
        "items: i64[:,:], stride: i64, max_clicks: i64, no_click: f64, clicked: b1[:,:]*, examined: b1[:]*"),
        _check_position_choices),
    "topk_rows": Spec(_RECS, "topk_rows", _parse(
        "scores: f64[:,:], available: b1[:], k: i64, out: i64[:,:]*, vals: f64[:]*"), _check_topk_rows),
    "count_cells": Spec(_RECS, "count_cells", _parse(
        "imp: i32[:]*, clk: i32[:]*, keys: i64[:], clicks: f64[:], fresh: i64[:]*"), _check_count_cells, "i64"),
    "adagrad_epochs": Spec(_RECS, "adagrad_epochs", _parse(
        "U: f32[:,:]*, V: f32[:,:]*, acc_u: f32[:,:]*, acc_v: f32[:,:]*, pu: i64[:], pi: i64[:], "
        "wp: f32[:], wn: f32[:], perms: i64[:,:], batch_size: i64, lr: f64, l2: f64, losses: f64[:]*, "
        "gu: f32[:,:]*, gv: f32[:,:]*, cu: i64[:]*, cv: i64[:]*, rows_u: i64[:]*, rows_v: i64[:]*, "
        "qu: i64[:]*, qi: i64[:]*, qp: f32[:]*, qn: f32[:]*, rec: i32[:,:]*, logits: f32[:]*"), _check_adagrad_epochs),
}

_SOURCES = (Path(__file__), Path(__file__).with_name("_kernels.py"),
            Path(__file__).parents[1] / "plugins" / "recommenders" / "_kernels.py")
_MAGIC = b"counterfeed-native-1\n"
#: prefixes of numba's runtime symbols. A shim names them only on its error path (an exception
#: raised inside the kernel: building, unpickling and raising it). The kernels cannot raise on the
#: arguments their calls check (no allocation, no bounds checks, error_model="numpy"; the training
#: loop's range step and array view are covered by its check), and numba's runtime is
#: not loaded here, so these resolve to :func:`_trap`: a message and abort, never wrong numbers.
_NUMBA_RUNTIME = ("numba_", "NRT_")


@ctypes.CFUNCTYPE(None)
def _trap() -> None:  # pragma: no cover - reached only by a kernel's bug
    os.write(2, b"counterfeed: a compiled kernel raised an exception (a bug in counterfeed: please report it); "
                b"aborting\n")
    os.abort()


_C = {"u64": "uint64_t", "i64": "int64_t", "f64": "double"}


class Kernel:
    """A loaded kernel, called with NumPy arrays and scalars in its declared order (see
    :data:`KERNELS`); returns ``None`` or an ``int``. Raises ``TypeError`` for an argument of
    another type, dtype, dimension or layout, a read-only array it would write or a float where an
    integer is declared, and ``ValueError`` for shapes that do not fit together or indices out of
    range (the spec's check).

    The call goes through cffi (ABI mode: a function pointer and ``ffi.from_buffer``, no compiler),
    about 3 µs for a kernel of four arrays against about 10 µs through ctypes; the argument checks
    are generated per kernel as straight-line code."""

    # ``__call__`` is a slot: the class attribute is the slot's descriptor, so calling an instance
    # calls the generated function stored in it, without a wrapper's frame
    __slots__ = ("name", "args", "_keep", "__call__")

    def __init__(self, name: str, address: int, keep: object = None):
        spec = KERNELS[name]
        self.name, self.args, self._keep = name, spec.args, keep
        ffi = _ffi()
        params = []
        for a in spec.args:
            params += [_C[a.code]] if a.ndim == 0 else ["void *"] + ["intptr_t"] * a.ndim
        result = "void" if spec.result == "void" else "int64_t"
        fn = ffi.cast(f"{result} (*)({', '.join(params)})", address)
        names = [a.name for a in spec.args]
        lines = [f"def call({', '.join(names)}):"]
        flat = []
        for i, a in enumerate(spec.args):
            if a.ndim == 0:  # integers as integers (not floats), floats as cffi converts them
                if a.code != "f64":
                    lines.append(f"    {a.name} = index({a.name})")
                flat.append(a.name)
                continue
            layout = "carray" if a.out else "c_contiguous"  # carray: C-contiguous, aligned, writeable
            lines.append(f"    if (type({a.name}) is not ndarray or {a.name}.dtype != D{i} or {a.name}.ndim != {a.ndim}"
                         f" or not {a.name}.flags.{layout}):")
            lines.append(f"        bad(ARGS[{i}], {a.name})")
            flat.append(f"from_buffer({a.name})")
            flat += [f"{a.name}.shape[{d}]" for d in range(a.ndim)]
        lines.append(f"    check({', '.join(names)})")
        lines.append(f"    return fn({', '.join(flat)})")
        scope = {"ndarray": np.ndarray, "fn": fn, "from_buffer": ffi.from_buffer, "ARGS": spec.args,
                 "index": operator.index, "check": spec.check,
                 "bad": self._bad, **{f"D{i}": a.dtype for i, a in enumerate(spec.args) if a.ndim}}
        exec("\n".join(lines), scope)  # noqa: S102 -- source built above from the fixed specs
        call = scope["call"]
        call.__name__ = call.__qualname__ = name
        self.__call__ = call

    def __repr__(self) -> str:
        return f"<compiled kernel {self.name}>"

    def _bad(self, a: Arg, v) -> None:
        raise TypeError(f"kernel {self.name}: {a.name} must be a C-contiguous{' aligned writeable' if a.out else ''} "
                        f"{a.ndim}-D {a.dtype} array, got {_describe(v)}")


_FFI = None


def _ffi():
    global _FFI
    if _FFI is None:
        import cffi

        _FFI = cffi.FFI()
    return _FFI


def _describe(v) -> str:
    if not isinstance(v, np.ndarray):
        return type(v).__name__
    layout = "C-contiguous" if v.flags.c_contiguous else "non-contiguous"
    return f"a {layout}{'' if v.flags.writeable else ' read-only'} {v.ndim}-D {v.dtype} array"


_LOCK = threading.Lock()
_LOADED: dict[str, Kernel] = {}


def kernel(name: str) -> Kernel:
    """The kernel ``name`` of :data:`KERNELS`, loaded with every other kernel on first use (from the
    cache file, else compiled by numba and cached). Raises ``KeyError`` for an unknown name and
    ``ImportError`` when the kernels must be compiled and numba cannot be imported."""
    k = _LOADED.get(name)
    if k is None:
        with _LOCK:
            if not _LOADED:
                _LOADED.update(_load())
        k = _LOADED[name]
    return k


# ------------------------------------------------------------------------------------------------
# The cache file
# ------------------------------------------------------------------------------------------------

def _distribution_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


#: numba settings that do not change compiled code (every other ``NUMBA_*`` variable is in the key)
_RUNTIME_ONLY = frozenset({"NUMBA_NUM_THREADS", "NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY",
                           "NUMBA_CACHE_DIR", "NUMBA_DEBUG_CACHE", "NUMBA_COLOR_SCHEME", "NUMBA_WARNINGS",
                           "NUMBA_DISABLE_PERFORMANCE_WARNINGS", "NUMBA_CAPTURED_ERRORS"})


def cache_file() -> Path:
    """The cache file of this installation, CPU and configuration (it need not exist)."""
    import llvmlite
    import llvmlite.binding as llvm

    h = hashlib.sha256()
    for path in _SOURCES:
        h.update(path.read_bytes())
    settings = sorted((k, v) for k, v in os.environ.items() if k.startswith("NUMBA_") and k not in _RUNTIME_ONLY)
    for part in (_distribution_version("numba"), llvmlite.__version__, llvm.get_host_cpu_name(),
                 llvm.get_host_cpu_features().flatten(), llvm.get_process_triple(), repr(settings),
                 sys.implementation.cache_tag, sys.platform):
        h.update(b"\0" + str(part).encode())
    return kernel_cache_dir() / "native" / f"kernels-{h.hexdigest()[:32]}.bin"


def _write(path: Path, objects: dict[str, tuple[str, bytes, list[str]]]) -> None:
    """One file: the magic line, the header's length (8 bytes, little-endian), the JSON header (per
    kernel: symbol, offset, size, SHA-256), the objects. Written to a temporary
    file and renamed into place: a reader sees a whole file or none."""
    header, blobs, offset = {}, [], 0
    for name, (symbol, obj, _) in objects.items():
        header[name] = {"symbol": symbol, "offset": offset, "size": len(obj), "sha256": hashlib.sha256(obj).hexdigest()}
        blobs.append(obj)
        offset += len(obj)
    head = json.dumps(header, sort_keys=True).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_MAGIC + struct.pack("<Q", len(head)) + head)
            for b in blobs:
                f.write(b)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> dict[str, tuple[str, bytes, list[str]]] | None:
    """The objects of a whole, intact cache file with every kernel (symbol, object, its undefined
    symbols, read from the object itself, whose SHA-256 matched); else ``None``."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return _read_bytes(data)


def _read_bytes(data: bytes) -> dict[str, tuple[str, bytes, list[str]]] | None:
    start = len(_MAGIC) + 8
    if not data.startswith(_MAGIC) or len(data) < start:
        return None
    (n,) = struct.unpack("<Q", data[len(_MAGIC):start])
    try:
        header = json.loads(data[start:start + n])
        body = memoryview(data)[start + n:]
        out = {}
        for name in KERNELS:
            e = header[name]
            obj = bytes(body[e["offset"]:e["offset"] + e["size"]])
            if len(obj) != e["size"] or hashlib.sha256(obj).hexdigest() != e["sha256"]:
                return None
            out[name] = (str(e["symbol"]), obj, elf_undefined_symbols(obj))
    except (ValueError, KeyError, TypeError, IndexError, struct.error):
        return None
    return out


def elf_undefined_symbols(obj: bytes) -> list[str]:
    """Names of the undefined symbols of a 64-bit little-endian ELF relocatable object (its
    ``.symtab`` entries with section index 0), sorted. Raises ``ValueError`` for anything else.
    Layout: the System V ABI's ELF-64 object file format."""
    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF object")
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    names = set()
    for sh in sections:
        if sh[1] != 2:  # SHT_SYMTAB
            continue
        _, _, _, _, off, size, link, _, _, entsize = sh
        stroff = sections[link][4]
        for j in range(1, size // entsize):  # entry 0 is the null symbol
            st_name, _, _, st_shndx, _, _ = struct.unpack_from("<IBBHQQ", obj, off + j * entsize)
            if st_shndx == 0 and st_name:
                end = obj.index(b"\0", stroff + st_name)
                names.add(obj[stroff + st_name:end].decode())
    return sorted(names)


# ------------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------------

def _load() -> dict[str, Kernel]:
    path = cache_file()
    objects = _read(path) if sys.platform.startswith("linux") else None
    if objects is not None:
        try:
            return _map(objects)
        except (OSError, ValueError, AttributeError):
            pass  # a symbol this process cannot resolve: compile here instead
    return _compile(path)


def _symbol_address(name: str, libraries: tuple) -> int:
    """Where ``name`` is in this process: in ``libraries`` (the C math library, then every library
    loaded globally: libc, the Python C API); numba's runtime symbols (:data:`_NUMBA_RUNTIME`) go to
    :func:`_trap`. Raises ``ValueError`` for a name found nowhere."""
    if name.startswith(_NUMBA_RUNTIME):
        return ctypes.cast(_trap, ctypes.c_void_p).value
    for lib in libraries:
        try:
            return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value
        except AttributeError:
            continue
    raise ValueError(f"symbol {name!r} of a compiled kernel is not in this process")


def _libm():
    try:
        return ctypes.CDLL("libm.so.6")
    except OSError:
        from ctypes.util import find_library

        return ctypes.CDLL(find_library("m"))


def _map(objects: dict[str, tuple[str, bytes, list[str]]]) -> dict[str, Kernel]:
    """Map each object with its own MCJIT engine (kept alive by its kernel) and resolve its
    undefined symbols explicitly (LLVM's runtime linker resolves none of an object's symbols when
    one is missing, so every one is checked first)."""
    import llvmlite.binding as llvm

    try:
        llvm.initialize()
    except RuntimeError:  # llvmlite 0.45 and later initialise LLVM themselves and refuse the call
        pass
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    needed = {s for _, _, undefined in objects.values() for s in undefined}
    libraries = (_libm(), ctypes.CDLL(None))  # opened once for every symbol
    addresses = {s: _symbol_address(s, libraries) for s in needed}
    for s, addr in addresses.items():
        if not llvm.address_of_symbol(s):  # never replace a symbol numba (or anyone) registered
            llvm.add_symbol(s, addr)
    target = llvm.Target.from_default_triple().create_target_machine(codemodel="jitdefault", jit=True)
    out = {}
    for name, (symbol, obj, _) in objects.items():
        engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), target)
        engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        engine.finalize_object()
        address = engine.get_function_address(symbol)
        if not address:
            raise ValueError(f"kernel {name}: symbol {symbol} not in its object")
        out[name] = Kernel(name, address, (engine, target))
    return out


# ------------------------------------------------------------------------------------------------
# Compiling (numba)
# ------------------------------------------------------------------------------------------------

def _shim(spec: Spec):
    """The ``numba.cfunc`` of ``spec``: scalars as they are, each array as a pointer and its shape,
    rebuilt with ``numba.carray`` (C order) and passed to the ``njit`` function."""
    import importlib

    import numba
    from numba import types

    nb = {"u64": types.uint64, "i64": types.int64, "i32": types.int32, "f64": types.float64,
          "f32": types.float32, "b1": types.boolean}
    params, call, sig = [], [], []
    for a in spec.args:
        if a.ndim == 0:
            params.append(a.name)
            call.append(a.name)
            sig.append(nb[a.code])
        else:
            dims = [f"{a.name}_{d}" for d in range(a.ndim)]
            params += [f"{a.name}_p", *dims]
            call.append(f"carray({a.name}_p, ({', '.join(dims)},))")
            sig += [types.CPointer(nb[a.code])] + [types.intp] * a.ndim
    source = f"def shim({', '.join(params)}):\n    return kernel({', '.join(call)})\n"
    scope = {"carray": numba.carray, "kernel": getattr(importlib.import_module(spec.module), spec.function)}
    exec(source, scope)  # noqa: S102 -- source built above from the fixed specs
    result = types.void if spec.result == "void" else types.int64
    return numba.cfunc(result(*sig), error_model="numpy")(scope["shim"])


def _target_machine():
    """The target machine numba's JIT compiles with (numba.core.codegen.JITCPUCodegen): the host
    CPU and numba's features for it, numba's optimisation level, static relocations on x86 and the
    JIT code model, so that the object emitted here is the machine code numba would run."""
    import llvmlite.binding as llvm
    from numba.core import config
    from numba.core.codegen import get_host_cpu_features

    target = llvm.Target.from_triple(llvm.get_process_triple())
    arch = llvm.Target.from_default_triple().name
    reloc = "static" if arch.startswith("x86") else "pic" if arch.startswith("ppc") else "default"
    return target.create_target_machine(cpu=config.CPU_NAME or llvm.get_host_cpu_name(),
                                        features=get_host_cpu_features(), opt=config.OPT, reloc=reloc,
                                        codemodel="jitdefault", jit=True)


def _compile(path: Path) -> dict[str, Kernel]:
    """Compile every shim with numba, emit each one's optimised module (``inspect_llvm``, numba's
    public view of it) as an object with numba's target machine, cache the objects at ``path``
    (when it can be written) and map them as a later process will. Where objects are not ELF
    (another platform), the kernels call numba's own copies."""
    import llvmlite.binding as llvm

    shims = {name: _shim(spec) for name, spec in KERNELS.items()}
    numbas = {name: Kernel(name, cf.address, cf) for name, cf in shims.items()}
    if not sys.platform.startswith("linux"):
        return numbas
    machine = _target_machine()
    objects = {}
    for name, cf in shims.items():
        obj = machine.emit_object(llvm.parse_assembly(cf.inspect_llvm()))
        objects[name] = (cf.native_name, obj, elf_undefined_symbols(obj))
    try:
        _write(path, objects)
    except OSError as exc:  # a read-only cache, or a directory in the file's place: say so, once
        warnings.warn(f"compiled-kernel cache not written ({path}): {exc.strerror or exc}; every process will "
                      f"compile the kernels again (seconds each). Set COUNTERFEED_CACHE_DIR to a writable "
                      f"directory", RuntimeWarning, stacklevel=2)
    try:
        return _map(objects)
    except (OSError, ValueError, AttributeError):  # a symbol this process cannot resolve
        return numbas
