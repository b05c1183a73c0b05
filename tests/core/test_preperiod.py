"""The pre-period simulated once for the worlds that share it (core.preperiod) gives the run
directory, byte for byte, of worlds that each simulate their own: shipped scenarios that cover MF
retraining, adaptive allocation, phases, targeting rules, pooled training, a non-randomized
mechanism and noise replications, in one process and over worker processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from counterfeed.core import runner
from counterfeed.core.preperiod import PrePeriod, pre_period_windows, share_pre_periods
from counterfeed.core.runner import WorldTask, build_world, run
from counterfeed.core.scenario import load_scenario
from tests.conftest import small_scenario
from tests.scaling.sharded_scenario import digest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["quickstart", "adaptive_thompson", "phases_rollout", "targeting", "interference_pooled",
             "observational_selection", "segments_hte"]
SLOW = {"targeting"}  # (its deployed rules' worlds make it the longest: ~25 s)
SHORTER = {"quickstart": {"experiment.pre_period": "2d", "experiment.duration": "3d"}}
ADOPT = PrePeriod.adopt


def _run(sc, tmp_path: Path, name: str, share: bool, workers: int, monkeypatch) -> dict[str, str]:
    monkeypatch.setattr(runner, "SHARE_PRE_PERIOD", share)
    adopted = []
    monkeypatch.setattr(PrePeriod, "adopt", lambda self, world: adopted.append(1) or ADOPT(self, world))
    out = digest(run(sc, output_dir=tmp_path / name, workers=workers).run_dir)
    # every world adopts it (in this process; worker processes adopt it there) when there is one
    assert (len(adopted) >= 3) == (share and workers == 1 and sc.experiment.pre_period > 0)
    return out


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in SCENARIOS])
def test_a_shared_pre_period_writes_the_run_directory_of_separate_ones(name, tmp_path, monkeypatch):
    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml").with_overrides(
        {"population.users": 160, "output.report": False, **SHORTER.get(name, {})})
    separate = _run(sc, tmp_path, "separate", False, 1, monkeypatch)
    assert any(k.startswith("events/") for k in separate) and "estimates.json" in separate
    assert _run(sc, tmp_path, "shared", True, 1, monkeypatch) == separate
    if name == "quickstart":  # worlds in worker processes continue from the pickled state
        assert _run(sc, tmp_path, "workers", True, 2, monkeypatch) == separate


def _tasks(sc):
    from counterfeed.core.contracts import CatalogContext
    from counterfeed.core.plan import resolve
    from counterfeed.core.population import build_population
    from counterfeed.core.randomness import Keys

    keys = Keys(sc.seed)
    plan = resolve(sc)
    items = plan.catalog().build(CatalogContext(keys=keys, stream=keys.stream("catalog"),
                                                dimensions=sc.population.dimensions))
    population = build_population(sc.population, keys)
    return [WorldTask(sc, w, items, population) for w in ("ab", "all-control", "all-treatment")]


def test_worlds_share_the_pre_period_state_and_copy_what_changes():
    tasks = share_pre_periods(_tasks(small_scenario()), lambda t: build_world(t)[0])
    pre = tasks[0].pre
    assert pre is not None and all(t.pre is pre for t in tasks)
    assert pre.windows == 24 and pre.now == 2.0  # 2 days of 2-hour windows
    a, b = (build_world(t)[0] for t in tasks[:2])
    assert pre.adopt(a) == pre.adopt(b) == 24 and a.env.now == 2.0
    assert a._logs[0] is pre.state["_logs"][0]  # recorded events are shared...
    assert a.session_count is not b.session_count  # ...mutable state is each world's own
    assert np.array_equal(a.session_count, pre.state["session_count"])
    assert a.policies[0] is not b.policies[0]


@pytest.mark.parametrize("overrides", [{"experiment.pre_period": "0d"}, {"experiment.pre_period": "3h"}])
def test_no_shared_pre_period_without_one_or_when_it_ends_inside_a_window(overrides):
    tasks = _tasks(small_scenario(**overrides))
    assert pre_period_windows(build_world(tasks[0])[0]) is None
    assert all(t.pre is None for t in share_pre_periods(tasks, lambda t: build_world(t)[0]))


def test_work_done_while_the_worlds_run_takes_the_lowest_priority():
    """The output's imports run in a thread of the parent while worker processes simulate; on
    Linux that thread runs at nice 19 (only on cores the workers leave idle), and the rest of the
    process keeps its priority."""
    import os
    import sys
    import threading

    from counterfeed.core.runner import _quietly

    if not sys.platform.startswith("linux"):
        pytest.skip("a thread's own nice value is Linux's")
    seen = []
    t = threading.Thread(target=_quietly, args=(lambda: seen.append(os.getpriority(os.PRIO_PROCESS,
                                                                                    threading.get_native_id())),))
    t.start()
    t.join()
    assert seen == [19]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) < 19
    t = threading.Thread(target=_quietly, args=(lambda: 1 / 0,))  # its errors stay in it
    t.start()
    t.join()


def test_the_imports_ahead_are_timed_apart_from_the_simulation(tmp_path, monkeypatch):
    """The output's imports started while worker processes simulate are waited for after
    ``simulate_s`` is taken (as ``preload_wait_s``), not inside it: ``simulate_s`` is the worlds'
    time. Here the imports ahead take 3 s of sleep and the worlds well under that."""
    import time

    monkeypatch.setattr(runner, "_preload_output", lambda report: time.sleep(3.0))
    res = run(small_scenario(), output_dir=tmp_path, workers=2)
    tm = res.timings
    assert tm["preload_wait_s"] > 0.5  # the thread ran, and run() waited for it before returning
    assert tm["simulate_s"] + tm["preload_wait_s"] >= 2.9  # (it started once the workers forked)
    assert tm["simulate_s"] < 2.5, tm  # a 300-user, 3-day world: under 1 s here


def test_a_failed_run_waits_for_the_imports_ahead(tmp_path, monkeypatch):
    """A run that fails while its worlds are simulated joins the thread before it raises: no later
    fork of the same process inherits its import locks."""
    import threading
    import time

    from counterfeed.errors import ModelError

    done = threading.Event()
    monkeypatch.setattr(runner, "_preload_output", lambda report: (time.sleep(1.5), done.set()))
    monkeypatch.setattr(runner, "simulate_world", _broken_world)  # (sent to the worker processes)
    with pytest.raises(ModelError, match="broken world"):
        run(small_scenario(), output_dir=tmp_path, workers=2)
    assert done.is_set()
    assert not any(tmp_path.iterdir())  # nothing published


def _broken_world(task):
    from counterfeed.errors import ModelError

    raise ModelError("broken world")
