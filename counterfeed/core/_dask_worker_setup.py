"""Set-up of the worker processes of a local Dask cluster (distributed's ``preload`` hook,
:class:`counterfeed.core.executors.DaskExecutor`).

A terminal's Ctrl-C goes to the whole foreground process group, so it reaches the worker processes
of a local cluster as well as the command. The command stops the run, says so in one line and
closes the cluster, which stops its workers; a worker process that took the signal itself printed
its own ``KeyboardInterrupt`` tracebacks on the way. Here each worker process ignores SIGINT (and
still stops when its nanny, or the command, ends it). The command starts the cluster with SIGINT
blocked (:func:`counterfeed.core.interrupts.sigint_blocked_for_spawned`), so a worker begins with
it blocked and no Ctrl-C interrupts its imports before this runs; here it is unblocked, ignored.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:  # noqa: ARG001 - distributed's preload signature
    """Ignore SIGINT in this worker process (called by distributed as the worker starts)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):  # started with it blocked (interrupts.sigint_blocked_for_spawned)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
