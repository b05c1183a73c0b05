"""The report's figures drawn by forked helper processes (core._report_draw): the same files and pages
as drawn in one process, the same error as the serial report when a figure fails, a helper that fails
or dies is made up for, and a plugin's figure never takes the file name of a queued one."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from counterfeed import hookimpl
from counterfeed.core import executors, figures
from counterfeed.core.plugins import get_registry
from counterfeed.core.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _copy(plain_run, tmp_path: Path, name: str = "run") -> Path:
    run = tmp_path / name
    shutil.copytree(plain_run[0], run, ignore=shutil.ignore_patterns("figures", "report.*"))
    return run


@pytest.fixture
def cores(monkeypatch):
    """Set the cores the report may use: 1 draws every figure here, 3 forks two helpers."""
    def set_cores(n: int) -> None:
        monkeypatch.setattr(executors, "available_cores", lambda: n)
    return set_cores


def _failing(monkeypatch, attempts: Path, messages: dict[str, str], only_in_helpers: bool = False):
    """Make figures.forest/timeseries raise ValueError(messages[stem]) for the stems in ``messages``
    (in helper processes only, with ``only_in_helpers``); every attempt is logged as 'pid stem'."""
    parent = os.getpid()
    for name in ("forest", "timeseries"):
        real = getattr(figures, name)

        def draw(path, *args, _real=real, **kwargs):
            with attempts.open("a") as f:
                f.write(f"{os.getpid()} {path.stem}\n")
            if path.stem in messages and not (only_in_helpers and os.getpid() == parent):
                raise ValueError(messages[path.stem])
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(figures, name, draw)


def _attempts(path: Path) -> list[tuple[int, str]]:
    return [(int(pid), stem) for pid, stem in (line.split() for line in path.read_text().splitlines())]


def test_helpers_draw_the_same_files_and_pages_as_one_process(tmp_path, plain_run, cores, monkeypatch):
    attempts = tmp_path / "attempts"
    _failing(monkeypatch, attempts, {})
    cores(1)
    serial = write_report(_copy(plain_run, tmp_path, "serial"))
    assert {pid for pid, _ in _attempts(attempts)} == {os.getpid()}
    attempts.unlink()
    cores(3)
    parallel = write_report(_copy(plain_run, tmp_path, "parallel"))
    assert any(pid != os.getpid() for pid, _ in _attempts(attempts))  # helpers drew some of them
    assert sorted(stem for _, stem in _attempts(attempts)) == sorted(k[7:] for k in serial if k.startswith("figure:"))
    assert set(serial) == set(parallel)
    for key in serial:
        if key.startswith("figure:"):
            assert serial[key].read_bytes() == parallel[key].read_bytes(), key
    for key in ("markdown", "html"):
        assert serial[key].read_bytes() == parallel[key].read_bytes(), key


@pytest.mark.parametrize("n_cores", [1, 3])
def test_a_failing_figure_raises_what_it_raises_in_one_process(tmp_path, plain_run, cores, monkeypatch, n_cores):
    """Two figures fail: the first one in the report's order is raised, drawn by whichever process."""
    attempts = tmp_path / "attempts"
    _failing(monkeypatch, attempts, {"estimates-ctr": "no room for ctr", "timeseries": "no room for days"})
    cores(n_cores)
    run = _copy(plain_run, tmp_path)
    with pytest.raises(ValueError, match="^no room for ctr$"):
        write_report(run)
    assert not (run / "report.html").exists()
    if n_cores > 1:
        assert any(pid != os.getpid() for pid, _ in _attempts(attempts))


def test_a_figure_a_helper_failed_on_is_drawn_here(tmp_path, plain_run, cores, monkeypatch):
    attempts = tmp_path / "attempts"
    _failing(monkeypatch, attempts, {"timeseries": "helper only", "estimates-clicks": "helper only"},
             only_in_helpers=True)
    cores(3)
    out = write_report(_copy(plain_run, tmp_path))
    assert out["figure:timeseries"].read_bytes().startswith(PNG_MAGIC)
    assert out["figure:estimates-clicks"].read_bytes().startswith(PNG_MAGIC)
    drawn_here = {stem for pid, stem in _attempts(attempts) if pid == os.getpid()}
    failed_elsewhere = {stem for pid, stem in _attempts(attempts) if pid != os.getpid()} & {"timeseries", "estimates-clicks"}
    assert failed_elsewhere and failed_elsewhere <= drawn_here


def test_a_helper_that_dies_is_made_up_for(tmp_path, plain_run, cores, monkeypatch):
    parent = os.getpid()
    for name in ("forest", "timeseries"):
        real = getattr(figures, name)

        def dying(path, *args, _real=real, **kwargs):
            if os.getpid() != parent:
                os._exit(3)  # e.g. killed by the OOM killer: it reports nothing more
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(figures, name, dying)
    cores(2)
    out = write_report(_copy(plain_run, tmp_path))
    pngs = {k: p for k, p in out.items() if k.startswith("figure:")}
    assert {"figure:timeseries", "figure:estimates-clicks", "figure:estimates-ctr"} <= set(pngs)
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in pngs.values())
    assert out["html"].read_text(encoding="utf-8").count("data:image/png;base64,") == len(pngs)


@pytest.mark.parametrize("fails_after", [0, 1])
def test_no_fork_to_be_had_draws_everything_here(tmp_path, plain_run, cores, monkeypatch, fails_after):
    """Forking fails (memory, process limits) for the first or the second helper: no error, every
    figure drawn here (a helper already started is stopped)."""
    import multiprocessing

    attempts = tmp_path / "attempts"
    _failing(monkeypatch, attempts, {})
    process = type(multiprocessing.get_context("fork").Process())
    real_start, started = process.start, []

    def start(self):
        if len(started) >= fails_after:
            raise OSError(12, "Cannot allocate memory")
        started.append(self)
        real_start(self)

    monkeypatch.setattr(process, "start", start)
    cores(3)
    out = write_report(_copy(plain_run, tmp_path))
    assert len(started) == fails_after and not any(p.is_alive() for p in started)
    stems = [stem for pid, stem in _attempts(attempts) if pid == os.getpid()]
    assert sorted(stems) == sorted(k[7:] for k in out if k.startswith("figure:"))
    assert all(out[k].read_bytes().startswith(PNG_MAGIC) for k in out if k.startswith("figure:"))


def _report_then_exit(run: Path) -> None:
    try:
        write_report(run)
    except BaseException:  # noqa: BLE001 - the exit code says it
        os._exit(1)
    os._exit(0)


def test_a_daemonic_process_draws_without_helpers(tmp_path, plain_run, cores):
    """A daemonic process (a worker of multiprocessing.Pool, say) may not start children."""
    import multiprocessing

    cores(3)
    run = _copy(plain_run, tmp_path)
    proc = multiprocessing.get_context("fork").Process(target=_report_then_exit, args=(run,), daemon=True)
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0 and (run / "report.html").is_file()


class SameStemPlugin:
    """A plugin whose figure has the stem of a core figure queued (not yet drawn) before it."""

    @staticmethod
    @hookimpl
    def counterfeed_report_sections(result, report):
        rows = [{"label": "a", "mean": 0.1, "lower": 0.0, "upper": 0.2}]
        path = report.section("Plugin timeseries").figure("timeseries", "Not the core's.", figures.posterior_forest,
                                                          "t", rows, report.level)
        assert path.name == "timeseries-2.png" and path.is_file()


def test_a_plugin_figure_never_takes_a_queued_figure_s_file(tmp_path, plain_run, cores):
    cores(3)
    reg = get_registry()
    name = reg.register_plugin(SameStemPlugin, name="same-stem-section")
    try:
        out = write_report(_copy(plain_run, tmp_path))
    finally:
        reg.unregister_plugin(name)
    html = out["html"].read_text(encoding="utf-8")
    assert "failed in hook" not in html
    assert {"figure:timeseries", "figure:timeseries-2"} <= set(out)
    assert out["figure:timeseries"].read_bytes() != out["figure:timeseries-2"].read_bytes()


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_a_rebuild_that_fails_or_is_interrupted_leaves_the_old_report(tmp_path, plain_run, cores, monkeypatch, error):
    """Tester s10 #3: Ctrl-C during `counterfeed report RUN` had deleted the old figures already."""
    run = tmp_path / "run"
    shutil.copytree(plain_run[0], run)
    before = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert any(p.parts[0] == "figures" for p in before) and Path("report.html") in before

    def draw(path, *args, **kwargs):
        raise error("stop")

    monkeypatch.setattr(figures, "timeseries", draw)
    cores(1)
    with pytest.raises(error):
        write_report(run)
    after = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # the old report, its figures, and nothing hidden left behind
    assert not [p for p in run.iterdir() if p.name.startswith(".")]


def test_a_rebuilt_report_is_the_report_the_run_wrote(tmp_path, plain_run):
    """Tester s10 #11: the rebuilt report listed report.md/html with the old report's sizes."""
    run = _copy(plain_run, tmp_path)  # no report yet, as in the run's own temporary directory
    first = write_report(run)
    md, html = first["markdown"].read_bytes(), first["html"].read_bytes()
    again = write_report(run)
    assert again["markdown"].read_bytes() == md and again["html"].read_bytes() == html


def test_this_process_draws_its_share_before_waiting_for_the_event_logs(tmp_path, plain_run, cores, monkeypatch):
    """The report waits for a run's event logs (written on a thread) only after this process took
    its share of the figures: it draws while the logs are written instead of idling."""
    from counterfeed.core import report as report_module

    attempts = tmp_path / "attempts"
    _failing(monkeypatch, attempts, {})
    parent = os.getpid()
    for name in ("forest", "timeseries"):
        real = getattr(figures, name)

        def slow_in_helpers(path, *args, _real=real, **kwargs):
            if os.getpid() != parent:
                import time

                time.sleep(0.3)  # the helper is still busy when this process claims figures
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(figures, name, slow_in_helpers)
    seen: list[list[str]] = []
    real_wait = report_module.wait_for_writes

    def wait(directory):
        seen.append([stem for pid, stem in _attempts(attempts) if pid == parent] if attempts.exists() else [])
        return real_wait(directory)

    monkeypatch.setattr(report_module, "wait_for_writes", wait)
    cores(2)
    out = write_report(_copy(plain_run, tmp_path))
    assert len(seen) == 1 and seen[0], "no figure was drawn here before waiting for the event logs"
    here = [stem for pid, stem in _attempts(attempts) if pid == parent]
    assert seen[0] == here  # all of this process's figures were drawn before the wait
    assert all(p.read_bytes().startswith(PNG_MAGIC) for k, p in out.items() if k.startswith("figure:"))


@pytest.mark.parametrize("nrow,ncol", [(1, 1), (1, 2), (2, 2), (3, 2), (4, 2), (2, 3)])
def test_the_layout_below_a_legend_band_is_matplotlibs_measured_once(nrow, ncol):
    """``figures._tight_below_band`` measures the panels once and gives the subplot parameters of
    ``tight_layout(rect=...)``, which measures them twice (the time series' and the posterior
    densities' figures draw byte-identical PNGs either way)."""
    plt = figures._plt()

    def figure():
        fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol + 0.8, 2.8 * nrow + 0.5), squeeze=False)
        for k, ax in enumerate(axes.flat):
            ax.plot([0, 1, 2], [0.001 * 10 ** k, 0.004 * 10 ** k, 0.002 * 10 ** k])
            ax.set_title(f"panel {k}", loc="left")
            ax.set_xlabel("day")
        fig.legend(handles=[], loc="upper center")
        return fig

    band = 0.4 / (2.8 * nrow + 0.5)
    want, got = figure(), figure()
    want.tight_layout(rect=(0, 0, 1, 1 - band))
    figures._tight_below_band(got, nrow, band)
    for name in ("left", "right", "bottom", "top", "wspace", "hspace"):
        assert getattr(got.subplotpars, name) == pytest.approx(getattr(want.subplotpars, name), rel=1e-12, abs=1e-15)
    assert got.subplotpars.top < 1 - band  # the band is kept free
    plt.close(want)
    plt.close(got)
