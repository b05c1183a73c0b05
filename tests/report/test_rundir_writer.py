"""A run writes its event logs on a thread while its report is drawn (rundir.save_run with
background=True): the files are the ones written in line, a writer that fails fails the run as a
failed write always did (OutputError, nothing published), and an interrupt meanwhile leaves nothing."""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path

import pytest

from counterfeed.core import rundir, runner
from counterfeed.core.runner import run
from counterfeed.errors import OutputError
from tests.conftest import small_scenario

SCENARIO = {"population.users": 120, "experiment.duration": "2d", "output.report": True}
_NOT_DATA = {"manifest.json", "report.md", "report.html"}  # timestamps, timings, and the file sizes listed


def _data_files(run_dir: Path) -> dict[str, bytes]:
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file() and p.name not in _NOT_DATA and "figures" not in p.relative_to(run_dir).parts}


def test_event_logs_written_on_a_thread_are_the_files_written_in_line(tmp_path, monkeypatch):
    threads: list[str] = []
    real = rundir.write_events

    def spy(*args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(rundir, "write_events", spy)
    background = run(small_scenario(**SCENARIO), output_dir=tmp_path / "bg", workers=1).run_dir
    assert threads and all(t.startswith("counterfeed-events") for t in threads)
    inline_save = rundir.save_run
    monkeypatch.setattr(runner, "save_run", lambda *a, **k: inline_save(*a, **{**k, "background": False}))
    threads.clear()
    inline = run(small_scenario(**SCENARIO), output_dir=tmp_path / "inline", workers=1).run_dir
    assert threads == [threading.main_thread().name] * len(threads) and threads
    files = _data_files(background)
    assert any(name.startswith("events/") for name in files) and "outcomes.parquet" in files
    assert files == _data_files(inline)
    html = (background / "report.html").read_text(encoding="utf-8")
    assert 'href="events/ab/sessions.parquet"' in html  # listed by the report, written by then


@pytest.mark.parametrize("error, expected", [
    (OSError(errno.ENOSPC, "No space left on device"), OutputError),
    (RuntimeError("the writer broke"), RuntimeError),
])
def test_a_failing_event_writer_fails_the_run_and_publishes_nothing(tmp_path, monkeypatch, error, expected):
    seen: list[str] = []

    def failing(*args, **kwargs):
        seen.append(threading.current_thread().name)
        time.sleep(0.2)  # fails after the main thread went on to the report
        raise error

    monkeypatch.setattr(rundir, "write_events", failing)
    out = tmp_path / "out"
    with pytest.raises(expected) as info:
        run(small_scenario(**SCENARIO), output_dir=out, workers=1)
    if expected is OutputError:
        assert "cannot write the run directory" in str(info.value) and "No space left on device" in str(info.value)
    else:
        assert info.value is error
    assert seen and seen[0].startswith("counterfeed-events")
    assert not out.exists()  # nor the --out folder the run created


def test_an_interrupt_while_the_events_are_written_leaves_nothing(tmp_path, monkeypatch):
    real = rundir.write_events
    done: list[float] = []

    def slow(*args, **kwargs):
        time.sleep(0.3)
        real(*args, **kwargs)
        done.append(time.monotonic())

    def interrupted(directory, say):
        raise KeyboardInterrupt

    monkeypatch.setattr(rundir, "write_events", slow)
    monkeypatch.setattr(runner, "_report", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run(small_scenario(**SCENARIO), output_dir=out, workers=1)
    removed = time.monotonic()
    assert done and max(done) <= removed  # the writer was waited for before the directory went
    time.sleep(0.4)
    assert not out.exists()  # nor the --out folder the run created
