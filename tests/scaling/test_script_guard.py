"""A script that calls ``counterfeed.run(..., shards=N)`` at its top level, without ``if __name__ ==
"__main__":``: the local Dask cluster's spawned workers import it again (break test 12). Each worker now
exits at its first counterfeed call with one line, instead of simulating the script's runs again and
failing in about 300 lines of tracebacks; the script fails with one message that says what to do."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap

import pytest

from counterfeed.core.executors import refuse_in_spawned_bootstrap

SCRIPT = textwrap.dedent("""
    import counterfeed
    from counterfeed.core.scenario import load_scenario
    sc = load_scenario({path!r}).with_overrides({{"population.users": 120, "experiment.duration": "1d",
                                                 "experiment.pre_period": "1d"}})
    print("unsharded", len(counterfeed.run(sc, write=False).estimates), flush=True)
    print("sharded", len(counterfeed.run(sc, write=False, shards=2, workers=1).estimates), flush=True)
""")


def test_a_spawned_worker_importing_the_script_exits_at_its_first_counterfeed_call(monkeypatch):
    refuse_in_spawned_bootstrap("x")  # the parent process: nothing happens
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(SystemExit, match=r"counterfeed: counterfeed.run\(\) was called while a worker process "
                                         r"imported the main script: call counterfeed under 'if __name__ == "):
        from counterfeed.core.runner import run

        run("no-such-file.yaml")  # refused before the scenario is read


def test_an_unguarded_script_fails_with_one_message_saying_what_to_do(tmp_path):
    from pathlib import Path

    quickstart = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"
    script = tmp_path / "experiment.py"
    script.write_text(SCRIPT.format(path=str(quickstart)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300,
                          cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stdout.splitlines() == ["unsharded 14"]  # the worker did not simulate the script's run again
    assert "counterfeed: counterfeed.run() was called while a worker process imported the main script" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("counterfeed.errors.CounterfeedError: the local Dask cluster could not start its worker "
                           "processes")
    assert f"import the main script ({script}) again" in last and "if __name__ == \"__main__\":" in last
