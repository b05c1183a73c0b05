"""Run many ``counterfeed`` command lines in one process (one interpreter start for the whole corpus).

Reads a JSON list of ``{"id", "argv", "cwd"}`` on stdin; for each case calls
:func:`counterfeed.cli.main` with stdout/stderr captured, exactly as the console script would, and
records the exit code (None when an exception escaped ``main``: that is a crash), stderr, and a
traceback if any. Prints a JSON list of results on the real stdout.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
import traceback

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def run_case(argv: list[str], cwd: str) -> dict:
    from counterfeed.cli import main

    out, err = io.StringIO(), io.StringIO()
    code, tb = None, None
    old = os.getcwd()
    t0 = time.perf_counter()
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - a crash is what this driver is looking for
        tb = traceback.format_exc()
    finally:
        os.chdir(old)
    return {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "traceback": tb,
            "seconds": time.perf_counter() - t0}


def main() -> None:
    cases = json.load(sys.stdin)
    results = {c["id"]: run_case(c["argv"], c["cwd"]) for c in cases}
    sys.stdout.write(json.dumps(results))


if __name__ == "__main__":
    main()
