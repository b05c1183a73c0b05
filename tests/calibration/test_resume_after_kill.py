"""SIGKILL a calibration midway; the rerun resumes with nothing lost and nothing computed twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import sys
from _fakes import normal_replicate
from _fakes import fake_scenario
from counterfeed.calibration import calibrate
from counterfeed.core.executors import get_executor
with get_executor("local", workers=2) as ex:
    calibrate(fake_scenario(), int(sys.argv[2]), out_dir=sys.argv[1], replicate=normal_replicate,
              executor=ex, figures=False)
"""


def _stored(out: Path) -> dict[int, dict]:
    recs = {}
    for p in (out / "replications").glob("rep-*.json"):
        if not p.name.endswith(".error.json"):
            rec = json.loads(p.read_text())
            recs[rec["index"]] = rec
    return recs


def test_sigkill_midway_then_resume(tmp_path, subprocess_env):
    n, out, log = 24, tmp_path / "cal", tmp_path / "computed.log"
    env = {**subprocess_env, "CF_FAKE_SLEEP": "0.15", "CF_FAKE_LOG": str(log)}
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(out), str(n)], env=env,
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(_stored(out)) < 6 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the coordinator and its pool workers, no cleanup
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    first = _stored(out)
    assert 6 <= len(first) < n, "the kill must land midway"
    assert len({r["invocation"] for r in first.values()}) == 1

    from _fakes import normal_replicate
    from _fakes import fake_scenario

    from counterfeed.calibration import calibrate

    res = calibrate(fake_scenario(), n, out_dir=out, replicate=normal_replicate, figures=False)
    final = _stored(out)
    assert sorted(final) == list(range(n))  # exactly 0..N-1, one file each
    computed_now = {int(name.split("-")[1]) for name in res.report.computed}
    assert computed_now.isdisjoint(first) and computed_now | set(first) == set(range(n))
    for i, rec in first.items():  # what was finished before the kill is untouched
        assert final[i] == rec
    assert {final[i]["invocation"] for i in computed_now} == {res.report.invocation}
    seeds_logged = log.read_text().split()
    # each persisted-before-kill replication was computed exactly once overall; the rest at most
    # twice (those in flight when killed were computed but never persisted, so they rerun).
    for i, rec in first.items():
        assert seeds_logged.count(str(rec["seed"])) == 1
    assert not list((out / "replications").glob(".*tmp*"))
    assert res.summary["replications"].eq(n).all()
