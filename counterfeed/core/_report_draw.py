"""The report's own figures, drawn on every core the run may use.

The core sections queue each figure (the drawing function, its ``figures/<stem>.png`` path and its
arguments) instead of drawing it on the spot: the report embeds a figure's file only when the page is
rendered, after every section was written. :meth:`FigureJobs.start` imports matplotlib and forks
helper processes (Linux, one per spare core), which take queued figures one at a time, the biggest
first; this process takes figures too (:meth:`FigureJobs.draw_here`, while the run's event logs are
still being written on a thread), then writes the plugins' sections. matplotlib is not
thread-safe, hence processes; forked after the import, they start drawing at once.

Errors read as if every figure had been drawn here: a figure a helper could not draw (or never
reported, because the helper died) is drawn again in this process, in queue order, and whatever
that raises is raised, as the serial report would have. A figure path is reserved when it is queued,
so a plugin's :meth:`~counterfeed.core.report.Section.figure` never picks the same file name.

While the report is drawn (``with FigureJobs(...)``) the objects that existed before are frozen for
the garbage collector (:func:`gc.freeze`, unless the caller froze some already): drawing allocates
enough to trigger full collections, each of which would scan a run's whole heap again (~0.1 s each
after a quickstart), and the helpers would copy every page the collector touches.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FigureJobs", "figure_path"]


def figure_path(figdir: Path, stem: str, reserved: set[Path] | frozenset[Path] = frozenset()) -> Path:
    """A free ``figures/<stem>.png`` path (the stem made file-name safe, ``-2``, ``-3``... if taken
    by a file or by one of the ``reserved`` paths)."""
    import re

    taken = {p.stem for p in figdir.glob("*.png")} | {p.stem for p in reserved}
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "figure"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return figdir / f"{name}.png"


@dataclass
class _Job:
    path: Path
    draw: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    weight: float

    def run(self) -> None:
        self.draw(self.path, *self.args, **self.kwargs)


@dataclass
class FigureJobs:
    """The figures queued by one report rendering, and the helper processes that draw them."""

    figdir: Path
    _jobs: list[_Job] = field(default_factory=list)
    _reserved: set[Path] = field(default_factory=set)
    _helpers: list[Any] = field(default_factory=list)  # (process, receiving end of its pipe)
    _counter: Any = None
    _order: list[int] = field(default_factory=list)
    _drawn: set[int] = field(default_factory=set)  # figures drawn in this process
    _froze: bool = False

    def reserve(self, stem: str) -> Path:
        """A fresh ``figures/<stem>[-n].png`` that no other figure of this report will get."""
        path = figure_path(self.figdir, stem, self._reserved)
        self._reserved.add(path)
        return path

    def add(self, stem: str, draw: Callable[..., Any], *args: Any, weight: float = 1.0, **kwargs: Any) -> Path:
        """Queue ``draw(path, *args, **kwargs)`` for a fresh ``figures/<stem>.png`` and return the path.
        ``weight``: the figure's relative drawing cost (roughly its number of panels); the heaviest
        are drawn first so that the cores finish together."""
        if self._counter is not None:
            raise RuntimeError("figures must be queued before FigureJobs.start()")
        path = self.reserve(stem)
        self._jobs.append(_Job(path, draw, args, kwargs, weight))
        return path

    def start(self) -> None:
        """Import matplotlib, then fork the helpers, which start drawing the queued figures."""
        import multiprocessing

        from counterfeed.core import figures

        self._order = sorted(range(len(self._jobs)), key=lambda i: -self._jobs[i].weight)
        n = min(self._spare_cores(), len(self._jobs) - 1)
        if n < 1:
            return
        figures.preload()  # once here, so that the forked helpers inherit matplotlib imported
        if self._froze:
            gc.freeze()  # matplotlib's objects too
        from counterfeed.core.pool_transport import forking_workers

        ctx = multiprocessing.get_context("fork")
        try:
            self._counter = ctx.Value("i", 0)
            for _ in range(n):
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=self._helper, args=(send, os.getpid()), daemon=True,
                                   name="counterfeed-figures")
                self._helpers.append((proc, recv))
                try:
                    with forking_workers():
                        proc.start()
                finally:
                    send.close()  # the helper's end, in the helper only
        except OSError:  # no semaphore, pipe or fork to be had (memory, limits): this process draws all
            self.close()
            self._counter = None

    def _spare_cores(self) -> int:
        import multiprocessing

        if (not sys.platform.startswith("linux") or len(self._jobs) < 2
                or multiprocessing.current_process().daemon):  # a daemonic process may not fork helpers
            return 0
        from counterfeed.core.executors import available_cores

        return available_cores() - 1

    def _claim(self) -> int | None:
        if self._counter is None:
            return None
        with self._counter.get_lock():
            k = self._counter.value
            if k >= len(self._order):
                return None
            self._counter.value = k + 1
        return self._order[k]

    def _helper(self, conn: Any, parent: int) -> None:
        """A forked helper: draw the figures it claims; send (index, True) or (index, False) each.
        It lives as a pool worker does (``pool_transport.worker_start``): dies with the parent,
        leaves Ctrl-C to it, ends at once when :meth:`close` terminates it."""
        from counterfeed.core.pool_transport import worker_start

        worker_start(parent)
        try:
            while (i := self._claim()) is not None:
                try:
                    self._jobs[i].run()
                except Exception:  # this process draws it again, so that the error is raised there
                    conn.send((i, False))
                else:
                    conn.send((i, True))
        finally:
            conn.close()

    def draw_here(self) -> None:
        """Draw queued figures in this process, as the helpers do, until none is left to claim (a
        no-op without helpers: :meth:`finish` then draws them all, in queue order). The caller can
        do this while it waits for something else, e.g. the run's event logs being written."""
        while (i := self._claim()) is not None:
            try:
                self._jobs[i].run()
            except Exception:  # noqa: BLE001 -- drawn again by finish(), after the figures before it
                continue
            self._drawn.add(i)

    def finish(self) -> None:
        """Draw what no helper took, wait for the helpers, then draw again here, in queue order, any
        figure a helper failed on or never reported; raises what drawing it raises."""
        from multiprocessing.connection import wait

        if self._counter is None:  # no helpers: everything is drawn here, in queue order
            for job in self._jobs:
                job.run()
            return
        self.draw_here()
        drawn = self._drawn
        pending = {recv: proc for proc, recv in self._helpers}
        while pending:
            for recv in wait(list(pending)):
                try:
                    i, ok = recv.recv()
                except EOFError:  # the helper is done (or died): what it did not report is redrawn
                    del pending[recv]
                    continue
                if ok:
                    drawn.add(i)
        for proc, recv in self._helpers:
            proc.join()
            recv.close()
        self._helpers.clear()
        for i, job in enumerate(self._jobs):
            if i not in drawn:
                job.run()

    def close(self) -> None:
        """Stop and reap the helpers (after an error or an interrupt here; a no-op once finished)."""
        for proc, recv in self._helpers:
            if proc.pid is not None:  # started
                proc.terminate()
                proc.join()
            recv.close()
        self._helpers.clear()

    def __enter__(self) -> FigureJobs:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            self._froze = True
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
        if self._froze:
            gc.unfreeze()
            self._froze = False
