"""Start-up checks: which heavy libraries a ``counterfeed`` command imports in a fresh process.

``counterfeed --help`` and ``counterfeed validate`` import every plugin module (their ``Options``
validate a scenario), so a plugin that imports scipy, torch or pandas at module level slows every
command down. A plugin's own tests can check it::

    from counterfeed.testing.startup import heavy_imports

    def test_my_plugin_keeps_start_up_light():
        assert heavy_imports(["validate", "scenario_using_my_plugin.yaml"]) == []
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["HEAVY_MODULES", "heavy_imports"]

#: libraries a start-up command must not import (each costs 0.2-1 s)
HEAVY_MODULES = ("scipy", "numba", "torch", "pandas", "pyarrow", "transformers", "pymc", "sklearn")

_PROBE = """
import sys
from counterfeed.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def heavy_imports(argv: Sequence[str], modules: Sequence[str] = HEAVY_MODULES, *,
                  cwd: str | Path | None = None, timeout: float = 120) -> list[str]:
    """The ``modules`` that ``counterfeed *argv`` has imported when it finishes (fresh process).

    Raises
    ------
    RuntimeError
        When the probe process printed no result (it crashed before the command ended).
    """
    code = _PROBE.format(argv=list(argv), heavy=tuple(modules))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    lines = [line for line in r.stderr.splitlines() if line.startswith("HEAVY=")]
    if not lines:
        raise RuntimeError(f"counterfeed {' '.join(argv)} did not finish: {r.stderr[-2000:]}")
    return [m for m in lines[-1].removeprefix("HEAVY=").split(",") if m]
