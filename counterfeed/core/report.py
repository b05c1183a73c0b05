"""The run report: Markdown and a self-contained HTML page with figures, rendered from a RunResult.

``write_report(run_dir)`` reads a finished run through the one run-directory reader
(:func:`counterfeed.core.rundir.load_run`), so ``counterfeed report RUN_DIR`` rebuilds the report of
any run exactly as the run wrote it. It writes ``figures/*.png``, ``report.md`` and ``report.html``
(figures embedded as base64 PNG, inline CSS, no external resources); every string that came from a
user or a plugin is escaped.

The core writes the sections every run has (the headline, the run, the sample-ratio check, estimates
vs truth, interference, metrics over time, diagnostics, phases, run details, files) and knows no
estimator by name. Plugins add their own sections through the ``counterfeed_report_sections`` hook:
it receives the :class:`RunResult` and a :class:`Report`, whose :meth:`Report.section` returns a
:class:`Section` to fill with paragraphs, tables and figures (drawn by :mod:`counterfeed.core.figures`
or by the plugin). The built-in SEM and sequential estimators use that hook like any third party.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from counterfeed.core import _report_sections as core_sections
from counterfeed.core._report_draw import FigureJobs
from counterfeed.core._report_render import _Doc, _Figure, _Para, _Table, _to_html, _to_markdown
from counterfeed.core.display import fmt, fmt_p, num
from counterfeed.core.plugins import get_registry
from counterfeed.core.results import RunResult
from counterfeed.core.rundir import load_run, wait_for_writes
from counterfeed.core.scenario import parse_duration

__all__ = ["write_report", "render_report", "Report", "Section", "fmt", "fmt_p", "num", "parse_days"]

HOOK = "counterfeed_report_sections"


def write_report(run_dir: str | Path) -> dict[str, Path]:
    """Write ``figures/*.png``, ``report.md`` and ``report.html`` into a finished run directory.

    Returns the written paths: ``"markdown"``, ``"html"``, ``"figures"`` (the folder) and one
    ``"figure:<name>"`` entry per PNG. Raises :class:`DataError` when the directory is not a
    readable finished run (see :func:`~counterfeed.core.rundir.load_run`).
    """
    d = Path(run_dir)
    return render_report(load_run(d), d)


def render_report(result: RunResult, directory: Path) -> dict[str, Path]:
    """Render the report of ``result`` into ``directory``. The figures are drawn into a hidden folder
    and the pages written to hidden files, which replace ``figures/``, ``report.md`` and
    ``report.html`` only once all of them are complete: an error or an interrupt while a report is
    rebuilt leaves the old one as it was."""
    figdir = directory / "figures"
    stage = directory / f".figures.tmp-{os.getpid()}"
    old = directory / f".figures.old-{os.getpid()}"
    md_path, html_path = directory / "report.md", directory / "report.html"
    md_tmp, html_tmp = (directory / f".{p.name}.tmp-{os.getpid()}" for p in (md_path, html_path))
    for leftover in (stage, old):  # of an earlier attempt by a process with this pid
        shutil.rmtree(leftover, ignore_errors=True)
    stage.mkdir()
    try:
        with FigureJobs(stage) as jobs:  # the core's figures: queued, then drawn on every core
            run = core_sections.RunView(result, directory, stage, jobs)
            doc = _Doc(f"Experiment report: {run.name}")
            core_sections.before_plugins(doc, run)
            jobs.start()
            jobs.draw_here()  # this process's share of the figures while the event logs are written
            wait_for_writes(directory)  # a run's event logs, still being written: plugins may read them
            _plugin_sections(doc, Report(doc, run), result)
            core_sections.after_plugins(doc, run)
            jobs.finish()
        md_tmp.write_text(_to_markdown(doc), encoding="utf-8")
        html_tmp.write_text(_to_html(doc), encoding="utf-8")  # embeds the figures from the staging folder
        if figdir.exists():
            figdir.rename(old)
        stage.rename(figdir)
        os.replace(md_tmp, md_path)
        os.replace(html_tmp, html_path)
    finally:
        for leftover in (stage, old):
            shutil.rmtree(leftover, ignore_errors=True)
        for leftover in (md_tmp, html_tmp):
            leftover.unlink(missing_ok=True)
    out: dict[str, Path] = {"markdown": md_path, "html": html_path, "figures": figdir}
    for png in sorted(figdir.glob("*.png")):
        out[f"figure:{png.stem}"] = png
    return out


def _plugin_sections(doc: _Doc, report: Report, result: RunResult) -> None:
    """Call every ``counterfeed_report_sections`` implementation, one plugin at a time and in
    registration order, so a plugin that raises costs only its own section (a note names it)."""
    reg = get_registry()
    reg.load()  # the hook relay is read directly below: every plugin must be registered first
    impls = getattr(reg.pm.hook, HOOK).get_hookimpls()
    for impl in impls:
        caller = reg.pm.subset_hook_caller(HOOK, remove_plugins=[i.plugin for i in impls if i is not impl])
        try:
            caller(result=result, report=report)
        except Exception as exc:  # a broken section must not sink the report, nor the run
            doc.add(_Para(f"The report section of plugin '{impl.plugin_name}' failed in hook "
                                 f"{HOOK}: {type(exc).__name__}: {exc}", "caution"))


class Report:
    """What a ``counterfeed_report_sections`` hook receives besides the :class:`RunResult`.

    Attributes: ``run_dir`` (the run directory: files a plugin wrote during the run are there),
    ``level`` (the run's interval level), ``colors`` (arm -> hex colour, the same in every figure),
    ``figdir`` (where figures go; :meth:`Section.figure` picks the file name).
    """

    def __init__(self, doc: _Doc, run: core_sections.RunView):
        self._doc, self._jobs = doc, run.jobs
        self.run_dir: Path = run.dir
        self.level: float = run.level
        self.colors: dict[str, str] = dict(run.colors)
        self.figdir: Path = run.figdir

    def section(self, title: str) -> Section:
        """Start a top-level section titled ``title`` (listed in the table of contents)."""
        self._doc.h(2, title)
        return Section(self._doc, self._jobs)


class Section:
    """A report section under construction; each method appends one block and returns the section."""

    KINDS = ("", "warn", "caution", "ok", "muted")

    def __init__(self, doc: _Doc, jobs: FigureJobs):
        self._doc, self._jobs = doc, jobs

    def heading(self, text: str) -> Section:
        """A sub-heading (third level)."""
        self._doc.h(3, text)
        return self

    def paragraph(self, text: str, kind: str = "", items: list[str] | None = None) -> Section:
        """A paragraph; ``kind``: "" (plain), "warn" (red box), "caution" (yellow), "ok" (green),
        "muted" (small grey); ``items`` become bullet points inside it."""
        if kind not in self.KINDS:
            raise ValueError(f"paragraph kind must be one of {self.KINDS}, got {kind!r}")
        self._doc.add(_Para(str(text), kind, [str(i) for i in items or []]))
        return self

    def table(self, headers: list[str], rows: list[list[Any]], small: bool = False) -> Section:
        """A table. A cell is a string, or ``(text, style)`` with style "num" (right-aligned),
        "truth" (the true value's colour), "code" (monospace), "yes"/"no"/"na" (a coverage mark)."""
        self._doc.add(_Table([str(h) for h in headers], rows, small))
        return self

    def figure(self, stem: str, caption: str, draw: Callable[..., Any], *args: Any, **kwargs: Any) -> Path:
        """Call ``draw(path, *args, **kwargs)`` to write a PNG at a fresh ``figures/<stem>[-n].png``
        and add it with ``caption``; returns the path. ``draw`` is typically a function of
        :mod:`counterfeed.core.figures`."""
        path = self._jobs.reserve(stem)  # not one of the core's figures, drawn at the same time
        draw(path, *args, **kwargs)
        self._doc.add(_Figure(path, str(caption)))
        return path


def parse_days(value: Any) -> float:
    """A scenario duration ('7d', '12h', '2w', '30m' or a number of days) in days; unreadable -> 0."""
    try:
        return parse_duration(value) if value is not None else 0.0
    except ValueError:
        return 0.0
