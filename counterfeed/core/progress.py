"""Progress of the worlds' simulation on stderr (rich): one bar per world, in simulated days.

A world reports its simulated time through a :class:`DayReporter` (a picklable callable handed to
:class:`~counterfeed.core.simulation.SimWorld` as ``progress``), at most every ``step`` simulated
days. In this process it updates the display directly; in worker processes of the local executor
it sends ``(world, days)`` through a ``multiprocessing.Manager`` queue that a thread of this
process drains into the display. The display goes to stderr, so ``--json`` output on stdout stays
clean; ``--quiet`` turns it off. A world's clock starts when it does (its first report, or its
reporter handed out once the display is on, as sharded worlds run one after another): until then
its row reads ``waiting``, not a time that ticks while other worlds run.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as _queue
import sys
import threading
from typing import Any, Callable

__all__ = ["DayReporter", "WorldProgress"]


class DayReporter:
    """Sends ``(world, days)`` to ``sink`` (a callable or a queue) every ``step`` simulated days."""

    def __init__(self, world: str, sink: Any, step: float = 0.25):
        self.world = world
        self.sink = sink
        self.step = step
        self._last = -float("inf")

    def __call__(self, days: float) -> None:
        if days - self._last < self.step:
            return
        self._last = days
        if callable(self.sink):
            self.sink(self.world, days)
        elif self.sink is not None:
            try:
                self.sink.put((self.world, days))
            except (OSError, EOFError):  # the display's queue is gone (its process died): the run goes on
                self.sink = None


def _elapsed_column() -> Any:
    """rich's elapsed-time column, reading ``waiting`` for a world that has not started."""
    from rich.progress import TimeElapsedColumn
    from rich.text import Text

    class ElapsedOrWaiting(TimeElapsedColumn):
        def render(self, task: Any) -> Text:
            if task.start_time is None:
                return Text("waiting", style="progress.remaining")
            return super().render(task)

    return ElapsedOrWaiting()


class WorldProgress:
    """A rich display with one bar per world (total: the horizon in days); inert when disabled.

    Use as a context manager; call :meth:`start` once worker processes exist (the display and the
    queue's drain thread are threads, and a process forked after them could inherit a held lock).
    ``console``: where the display goes (default: a rich console on stderr).
    """

    def __init__(self, worlds: list[str], days: float, enabled: bool, workers: bool = False,
                 console: Any = None):
        self.worlds = list(worlds)
        self.console = console
        self.total = float(days)
        self.enabled = enabled
        self.days: dict[str, float] = {w: 0.0 for w in worlds}
        self._manager: Any = None
        self._queue: Any = None
        self._progress: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._tasks: dict[str, Any] = {}
        self._begun: set[str] = set()  # worlds whose clock runs (begin)
        if enabled and workers:
            from multiprocessing.managers import SyncManager

            from counterfeed.core.pool_transport import worker_start

            ctx = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
            self._manager = SyncManager(ctx=ctx)  # dies with this process, leaves Ctrl-C to it
            self._manager.start(initializer=worker_start, initargs=(os.getpid(),))
            self._queue = self._manager.Queue()

    def reporter(self, world: str) -> DayReporter | None:
        """The progress callable for ``world`` (None when the display is off). Asked for once the
        display is on, it starts ``world``'s clock: a caller running worlds one after another (the
        sharded ones) asks for each world's reporter as it starts that world."""
        if not self.enabled:
            return None
        if self._progress is not None:
            self.begin(world)
        return DayReporter(world, self._queue if self._queue is not None else self.update)

    def start(self) -> None:
        if not self.enabled or self._progress is not None:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        width = max(len(w) for w in self.worlds) + 6
        display = Progress(TextColumn("{task.description:<%d}" % width), BarColumn(),
                           TextColumn("{task.completed:5.1f}/{task.total:g} simulated days"),
                           _elapsed_column(), console=self.console or Console(stderr=True))
        self._tasks = {w: display.add_task(f"world {w}", total=self.total, start=False)
                       for w in self.worlds}  # each world's clock starts with the world (begin)
        for w in list(self._begun):
            display.start_task(self._tasks[w])
        self._progress = display
        self._progress.start()
        if self._queue is not None:
            self._thread = threading.Thread(target=self._drain, daemon=True)
            self._thread.start()

    def begin(self, world: str) -> None:
        """Start ``world``'s clock (its row reads ``waiting`` until then); its first report does too."""
        self._begun.add(world)
        if self._progress is not None:
            self._progress.start_task(self._tasks[world])  # no-op when already started

    def elapsed(self, world: str) -> float | None:
        """Seconds since ``world``'s clock started; None while it waits (or with the display off)."""
        if self._progress is None:
            return None
        return next(t.elapsed for t in self._progress.tasks if t.id == self._tasks[world])

    def update(self, world: str, days: float) -> None:
        if world not in self._begun:
            self.begin(world)
        self.days[world] = max(self.days[world], days)
        if self._progress is not None:
            self._progress.update(self._tasks[world], completed=min(self.days[world], self.total))

    def done(self, world: str, message: str, say: Callable[[str], None]) -> None:
        """Mark ``world`` finished and print ``message`` (above the display when it is on)."""
        self.update(world, self.total)
        if self._progress is not None:
            self._progress.console.print(message, highlight=False)
        else:
            say(message)

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                world, days = self._queue.get(timeout=0.1)
            except (_queue.Empty, EOFError, OSError):
                continue
            self.update(world, days)

    def __enter__(self) -> "WorldProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._progress is not None:
            self._progress.stop()
        if self._manager is not None:
            self._manager.shutdown()
