"""A staggered rollout whose cohorts leave a tiny share never treated (break test 3): about 45% of seeds
drew fewer than 2 never-treated users, and ``run`` then failed after simulating every world, with a hint
about "the assignment's intercept or coefficients" that such a design does not have; ``calibrate``
scored only the seeds that survived.

The cohorts are drawn from the seed before any world runs, so the draw is checked first: ``validate``
and ``run`` reject the seed (exit 2, located at the cohorts, nothing written) with the expected count
and what to change, and ``calibrate``/``sweep`` refuse when any replication's draw falls short, rather
than scoring the coverage conditional on the draw.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from counterfeed.core.mechanisms import mechanism_assignment
from counterfeed.core.population import build_population
from counterfeed.core.randomness import Keys
from counterfeed.core.scenario import load_scenario
from tests.conftest import cli

ROOT = Path(__file__).resolve().parents[2]
TINY = [{"at": "1d", "share": 0.332}, {"at": "5d", "share": 0.332}, {"at": "9d", "share": 0.332}]


def _scenario(tmp_path: Path, cohorts=TINY, segments=None) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / "staggered_rollout.yaml").read_text())
    data["population"]["users"] = 300
    data["experiment"]["assignment"]["cohorts"] = cohorts
    if segments:
        data["population"]["segments"] = segments
    data["output"] = {"dir": str(tmp_path / "runs")}
    path = tmp_path / "rollout.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _cli(capsys, *args: str) -> tuple[int, str]:
    code, out, err = cli(capsys, *args)
    return code, out + err


def _never_by_the_run(path: Path, seed: int) -> int:
    """The never-treated users of the A/B world's own assignment under ``seed``."""
    sc = load_scenario(path).with_overrides({"seed": seed})
    keys = Keys(sc.seed)
    a = mechanism_assignment(sc, keys, build_population(sc.population, keys))
    return int((a.assignment() == sc.arms.index(sc.control)).sum())


def test_validate_gives_the_verdict_of_the_runs_own_draw_seed_by_seed(tmp_path, capsys):
    path = _scenario(tmp_path)
    verdicts = []
    for seed in range(1, 13):
        never = _never_by_the_run(path, seed)
        code, out = _cli(capsys, "validate", str(path), "--set", f"seed={seed}")
        verdicts.append(never < 2)
        if never < 2:
            assert code == 2, out
            assert "experiment.assignment.cohorts" in out
            assert f"leaves {never} of 300 users never treated" in out
            assert "1.2 expected" in out and "intercept" not in out
        else:
            assert code == 0, out
    # 300 users at 0.4%: P(fewer than 2) = 0.66, so 12 seeds give both verdicts (P(not) < 1e-5)
    assert any(verdicts) and not all(verdicts)


def test_run_rejects_the_draw_before_simulating_and_writes_nothing(tmp_path, capsys):
    path = _scenario(tmp_path)
    seed = next(s for s in range(1, 50) if _never_by_the_run(path, s) < 2)
    code, out = _cli(capsys, "run", str(path), "--set", f"seed={seed}", "--quiet")
    assert code == 2 and "never treated" in out
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_calibrate_refuses_when_some_replications_would_draw_too_few(tmp_path, capsys):
    path = _scenario(tmp_path)
    from counterfeed.calibration.engine import replication_seeds

    code, out = _cli(capsys, "calibrate", str(path), "-n", "6", "--out", str(tmp_path / "cal"))
    assert code == 2, out
    seeds = replication_seeds(load_scenario(path).seed, 6)
    first = next(i for i, s in enumerate(seeds) if _never_by_the_run(path, s) < 2)
    assert re.search(rf"replication {first + 1} of 6 \(seed \d+\) draws [01] of 300 users never treated, "
                     "fewer than 2", out), out
    assert "condition the coverage on the draw" in out
    assert not (tmp_path / "cal").exists()
    # one replication is a replication too: validate accepts the scenario's seed, and calibrate -n 1 names
    # the replication's seed, not "this seed" (break test 4)
    base = next(b for b in range(1, 200) if _never_by_the_run(path, b) >= 2
                and _never_by_the_run(path, replication_seeds(b, 1)[0]) < 2)
    assert _cli(capsys, "validate", str(path), "--set", f"seed={base}")[0] == 0
    code, out = _cli(capsys, "calibrate", str(path), "--set", f"seed={base}", "-n", "1", "--out", str(tmp_path / "cal"))
    assert code == 2 and f"replication 1 of 1 (seed {replication_seeds(base, 1)[0]})" in out, out
    assert "this seed's draw" not in out and not (tmp_path / "cal").exists()


def test_one_never_treated_user_is_refused_even_for_panel_estimators(tmp_path, capsys):
    """With did-staggered (not-yet-treated controls) alone, a draw that leaves 1 never-treated user is
    refused although one that leaves 0 (everyone adopts) is accepted: with that one user, the cells after
    the last adoption compare with a single user and no estimate gets an interval (break test 5 found
    every row NO INTERVAL when the check was relaxed); with none, those cells are left out (PARTLY
    IDENTIFIED)."""
    path = _scenario(tmp_path)
    seed = next(s for s in range(1, 50) if _never_by_the_run(path, s) == 1)
    for analysis in ("[{estimator: did-staggered, metrics: [clicks]}]", "[{estimator: twfe, metrics: [clicks]}]"):
        code, out = _cli(capsys, "validate", str(path), "--set", f"seed={seed}", "--set", f"analysis={analysis}")
        assert code == 2 and "leaves 1 of 300 users never treated" in out


def test_a_draw_that_cannot_fall_short_is_not_drawn():
    """1M users, 10% never treated, 1,000 replications: P(fewer than 2) is about 1e-45000, so no seed is
    drawn (drawing them took 64 s); the verdict is the same."""
    from counterfeed.core import mechanisms

    sc = load_scenario(ROOT / "scenarios" / "staggered_rollout.yaml").with_overrides({"population.users": 1_000_000})
    calls = []
    original = mechanisms.cohorts_of
    try:
        mechanisms.cohorts_of = lambda *a, **k: calls.append(1) or original(*a, **k)
        mechanisms.check_rollout_draw(sc, list(range(1000)))
    finally:
        mechanisms.cohorts_of = original
    assert calls == []


def test_a_rollout_that_takes_everyone_or_leaves_enough_is_not_checked_away(tmp_path, capsys):
    everyone = [{"at": "1d", "share": 0.5}, {"at": "5d", "share": 0.5}]
    analysis = ["--set", "analysis=[{estimator: did-staggered, metrics: [clicks]}]"]
    assert _cli(capsys, "validate", str(_scenario(tmp_path, everyone)), *analysis)[0] == 0
    shipped = ROOT / "scenarios" / "staggered_rollout.yaml"
    assert _cli(capsys, "validate", str(shipped))[0] == 0


def test_cohorts_by_segment_count_the_drawn_segment_in_no_cohort(tmp_path, capsys):
    segments = {"casual": {"share": 0.5}, "heavy": {"share": 0.494}, "rare": {"share": 0.006}}
    cohorts = [{"at": "1d", "segments": ["casual"]}, {"at": "5d", "segments": ["heavy"]}]
    path = _scenario(tmp_path, cohorts, segments)
    seen = set()
    for seed in range(1, 13):
        never = _never_by_the_run(path, seed)
        code, out = _cli(capsys, "validate", str(path), "--set", f"seed={seed}")
        assert (code == 2) == (never < 2), (seed, never, out)
        seen.add(never < 2)
    assert seen == {True, False}  # 0.6% of 300: P(fewer than 2) = 0.46, both verdicts in 12 seeds
