"""Break test 12's low findings about the command line: the progress display of worlds that wait,
which option an execution error names, section type errors that named a class, ``run --json``'s
``execution``."""

from __future__ import annotations

import io
import json
import re

import pytest

import counterfeed.core.runner as runner
from counterfeed.core.progress import WorldProgress
from counterfeed.core.shard import IN_PROCESS
from tests.conftest import SMALL, cli, scenario_file, small_scenario

WORLDS = ["ab", "all-control", "all-treatment"]


def _console():
    from rich.console import Console

    return Console(file=io.StringIO(), width=100, force_terminal=False)


# -- 1. a world that has not started shows no elapsed time -------------------------------------------------

def test_a_world_that_has_not_started_reads_waiting_not_a_ticking_clock():
    """Each row showed 0:00:07 while it waited for the worlds before it (sharded worlds run one after
    another): a row's clock starts with its world, and until then it reads ``waiting``."""
    console = _console()
    with WorldProgress(WORLDS, 3.0, enabled=True, console=console) as show:
        show.start()
        assert [show.elapsed(w) for w in WORLDS] == [None, None, None]
        show.update("ab", 1.0)  # its first report: ab has started, the others wait
        assert show.elapsed("ab") is not None
        assert show.elapsed("all-control") is None and show.elapsed("all-treatment") is None
    rows = {line.split()[1]: line for line in console.file.getvalue().splitlines() if line.startswith("world ")}
    assert re.search(r"1\.0/3 simulated days \d+:\d\d:\d\d$", rows["ab"])
    for w in ("all-control", "all-treatment"):
        assert rows[w].endswith("0.0/3 simulated days waiting"), rows[w]


def test_a_reporter_asked_for_once_the_display_is_on_starts_its_world():
    """The sharded runner asks for each world's reporter as it starts it: that world's clock starts
    then (its setup counts), the others' do not; reporters handed out before the display starts
    (worlds forked to worker processes together) start nothing."""
    with WorldProgress(WORLDS, 3.0, enabled=True, console=_console()) as show:
        show.reporter("ab")
        show.start()
        assert show.elapsed("ab") is None
        show.reporter("all-control")
        assert show.elapsed("all-control") is not None and show.elapsed("all-treatment") is None


class _Recording(WorldProgress):
    """The runner's display, quiet, noting at each report which worlds' clocks run."""

    seen: list[tuple[str, float, dict[str, bool]]] = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "console": _console()})

    def update(self, world, days):
        super().update(world, days)
        if self._progress is not None:
            _Recording.seen.append((world, days, {w: self.elapsed(w) is not None for w in self.worlds}))


@pytest.mark.parametrize("how", [{"shards": 2, "scheduler": IN_PROCESS}, {"workers": 1}],
                         ids=["sharded", "unsharded-one-process"])
def test_worlds_run_one_after_another_start_their_clocks_one_after_another(how, tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "WorldProgress", _Recording)
    _Recording.seen = []
    runner.run(small_scenario(), output_dir=tmp_path, write=False, quiet=False, **how)  # the display on
    reports = [(w, running) for w, days, running in _Recording.seen if days < 6.0]  # before each world's end
    assert {w for w, _ in reports} == set(WORLDS)
    for world, running in reports:
        later = WORLDS[WORLDS.index(world) + 1:]
        assert running[world] and not any(running[w] for w in later), (world, running)


# -- 2. an execution error names the option the user typed -------------------------------------------------

@pytest.fixture()
def quick(tmp_path):
    return scenario_file(tmp_path / "s.yaml", SMALL)


def test_workers_with_a_scheduler_names_where_the_scheduler_came_from(quick, tmp_path, capsys):
    """``--scheduler tcp://...`` blamed ``(execution.scheduler)``, a field the user never wrote."""
    addr = "tcp://127.0.0.1:8786"
    code, _, err = cli(capsys, "validate", quick, "--shards", "2", "--workers", "1", "--scheduler", addr)
    assert code == 2 and f"the Dask cluster at {addr} (--scheduler) brings its own workers" in err, err
    code, _, err = cli(capsys, "validate", quick, "--set", f"execution.scheduler={addr}", "--workers", "1")
    assert code == 2 and "(--set execution.scheduler)" in err, err
    in_file = scenario_file(tmp_path / "f.yaml", SMALL, **{"execution": {"scheduler": addr}})
    line = next(i for i, t in enumerate(in_file.read_text().splitlines(), 1) if "scheduler:" in t)
    code, _, err = cli(capsys, "run", in_file, "--workers", "2")
    assert code == 2 and f"(execution.scheduler in {in_file}:{line})" in err, err


@pytest.mark.parametrize("args, option", [
    (["--shards", "400"], "--shards"),
    (["--set", "execution.shards=400"], "--set: execution.shards"),
])
def test_too_many_shards_names_the_option_that_set_them(quick, capsys, args, option):
    code, _, err = cli(capsys, "validate", quick, *args)
    assert code == 2 and f"Error: {option}: 400 shards for 300 users" in err, err


# -- 3. a section of the wrong kind: no class name ---------------------------------------------------------

@pytest.mark.parametrize("section, value, pattern", [
    ("execution", None, r"execution: expected a mapping such as \{shards: \.\.\., scheduler: \.\.\.\} \(got None\)$"),
    ("execution", 4, r"execution: expected a mapping such as \{shards: \.\.\., scheduler: \.\.\.\} \(got 4\)$"),
    ("execution", [2], r"execution: expected a mapping such as \{shards: .*\} \(got a list\)$"),
    ("population", "x", r"population: expected a mapping such as \{users: \.\.\., .*\} \(got 'x'\)$"),
    ("catalog", None, r"catalog: expected a mapping such as \{plugin: \.\.\.\} \(got None\)$"),
    ("experiment", 4, r"experiment: expected a mapping such as \{arms: \.\.\., .*, \.\.\.\} \(got 4\)$"),
    ("output", 1, r"output: expected a mapping such as \{dir: \.\.\., events: \.\.\., report: \.\.\.\} \(got 1\)$"),
    ("truth", 4, r"truth: expected a mapping such as \{replications: \.\.\.\} \(got 4\)$"),
    ("analysis", [1], r"analysis\[0\]: expected a mapping such as \{estimator: \.\.\.\} \(got 1\)$"),
    ("metrics", [1], r"metrics\[0\]: Input should be a valid string or a mapping such as \{metric: \.\.\.\} "
                     r"\(got 1\)$"),
])
def test_a_section_of_the_wrong_kind_says_a_mapping_was_expected_at_its_line(section, value, pattern, tmp_path,
                                                                             capsys):
    """``execution: null`` read "Input should be a valid dictionary or instance of ExecutionSpec"."""
    path = scenario_file(tmp_path / "s.yaml", SMALL, **{section: value})
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if t.startswith(f"{section}:"))
    code, _, err = cli(capsys, "validate", path)
    assert code == 2 and "instance of" not in err and "Spec" not in err, err
    first = err.strip().splitlines()[0]
    assert first.startswith(f"Error: {path}:"), first
    assert int(first.split(":")[2]) in (line, line + 1), first  # the section's line, or its first item's
    assert re.search(pattern, first), first


def test_a_section_of_the_wrong_kind_from_set_is_attributed_to_set(capsys, quick):
    code, _, err = cli(capsys, "validate", quick, "--set", "execution=4")
    assert code == 2 and "Error: --set: execution: expected a mapping such as {shards: ..., scheduler: ...} " \
                         "(got 4)" in err, err


# -- 4. run --json carries the manifest's execution --------------------------------------------------------

@pytest.mark.parametrize("args, expected", [([], None), (["--shards", "2"], {"shards": 2, "scheduler": IN_PROCESS})])
def test_run_json_has_the_manifests_execution(args, expected, quick, tmp_path, capsys, monkeypatch):
    original = runner.run
    # --shards runs in this process (no LocalCluster to start): the manifest says so, and so must --json
    monkeypatch.setattr(runner, "run", lambda sc, **kw: original(sc, **kw, scheduler=IN_PROCESS if args else None))
    code, out, err = cli(capsys, "run", quick, "--json", "--quiet", "--out", tmp_path / "runs", *args)
    assert code == 0, err
    doc = json.loads(out)
    manifest = json.loads((tmp_path / "runs").glob("*/manifest.json").__next__().read_text())
    assert doc["execution"] == manifest.get("execution") == expected
    assert ("execution" in manifest) == (expected is not None)  # the manifest leaves it out when unsharded
