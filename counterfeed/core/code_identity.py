"""Which code a process runs: what must be the same in every Dask worker of a run as in the command.

A sharded world or a calibration on an existing cluster (``--scheduler tcp://...``) computes part of
its numbers in workers that the user started, perhaps from another checkout or an older image. Every
number of a run depends on counterfeed's source and on the numerical libraries' versions, so a worker
that runs other code gives other numbers, silently (break test 12: workers from a copy with one
user-model constant changed gave a run whose every data file differed, with the same version in its
manifest). :func:`code_fingerprint` names the code; :func:`check_same_code` refuses a worker whose
fingerprint differs from this process's.
"""

from __future__ import annotations

import functools
import hashlib
import platform
from pathlib import Path
from typing import Any, Callable

from counterfeed.errors import CounterfeedError

__all__ = ["code_fingerprint", "check_same_code", "CodeMismatch", "run_checked"]

#: the libraries whose versions change a run's numbers (with Python's and counterfeed's own source)
LIBRARIES = ("numpy", "scipy", "pandas", "pyarrow", "simpy", "numba", "pluggy", "pydantic")


class CodeMismatch(CounterfeedError):
    """A Dask worker runs other code than the command: its numbers would differ (exit code 2)."""


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> dict[str, str]:
    """``{"counterfeed": version, "source": sha256 of the package's .py files (16 hex digits), "location":
    the package's folder, "python": version, <library>: version for each of LIBRARIES installed}``.

    The source digest covers every ``.py`` file under the installed package, by relative path and
    content (about 190 files, 2.5 MB: about 20 ms, once per process). ``location`` is reported, not
    compared: two checkouts of the same commit are the same code."""
    from importlib.metadata import PackageNotFoundError, version

    import counterfeed

    root = Path(counterfeed.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    out = {"counterfeed": str(getattr(counterfeed, "__version__", "?")), "source": digest.hexdigest()[:16],
           "location": str(root), "python": platform.python_version()}
    for lib in LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = "not installed"
    return out


def _differences(worker: dict[str, str], command: dict[str, str]) -> list[str]:
    """Every difference between a worker's fingerprint and the command's, worded for a message
    (``location`` is reported with the source, not compared); empty when they agree."""
    return [f"counterfeed's source differs (digest {worker.get('source')} in {worker.get('location', '?')} "
            f"against {command['source']} in {command.get('location', '?')})" if k == "source"
            else f"{k} {worker.get(k, 'unknown')} against {command[k]}"
            for k in command if k != "location" and worker.get(k) != command[k]]


def _refusal(where: str, differences: list[str]) -> CodeMismatch:
    return CodeMismatch(f"Dask worker {where} runs other code than this command: {'; '.join(differences)}. Its "
                        "numbers would differ from this process's: start the workers from the same installation "
                        "(the same counterfeed checkout and libraries)")


def check_same_code(remote: dict[str, str], where: str) -> None:
    """Raise :class:`CodeMismatch` naming ``where`` (a worker's address) and every difference between
    ``remote`` (its :func:`code_fingerprint`) and this process's; ``location`` is not compared."""
    differences = _differences(remote, code_fingerprint())
    if differences:
        raise _refusal(where, differences)


def run_checked(expected: dict[str, str], fn: Callable[[Any], Any], task: Any) -> Any:
    """``fn(task)`` in a Dask worker, after checking that the worker runs the code of ``expected`` (the
    command's :func:`code_fingerprint`); raises :class:`CodeMismatch` otherwise."""
    differences = _differences(code_fingerprint(), expected)
    if differences:
        from distributed import get_worker

        try:
            where = get_worker().address
        except ValueError:  # not in a worker (tests call it directly)
            where = "(this process)"
        raise _refusal(where, differences)
    return fn(task)
