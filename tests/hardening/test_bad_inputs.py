"""The bad-input corpus (tests/data/bad): every malformed file through the real CLI.

Each file in ``tests/data/bad/expected.yaml`` is run through its commands; each must exit with code 2
and print exactly one line on stderr that matches the file's pattern (naming the file and the line,
field or column), with no traceback, and write nothing: neither the ``--out`` directory nor the
working directory gets a file. All cases run in ONE subprocess (``_cli_driver.py`` calls
``counterfeed.cli.main`` per case); a few cases are also run as real console commands.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests" / "data" / "bad"
DRIVER = Path(__file__).with_name("_cli_driver.py")
MANIFEST: dict[str, dict] = yaml.safe_load((BAD / "expected.yaml").read_text())

# Cases whose current behaviour is a known defect in a file this suite may not edit. Strict xfail:
# when the owner fixes it, the test XPASSes, fails, and this entry must be removed. (None left.)
KNOWN_DEFECTS: dict[str, str] = {}

CASES = [(f, cmd) for f, spec in sorted(MANIFEST.items()) for cmd in spec["commands"]]


def _sem_cli_available() -> bool:
    return importlib.util.find_spec("counterfeed.sem.cli") is not None


def _argv(file: str, command: str, spec: dict, out: Path) -> list[str]:
    path = str(BAD / file)
    args = [a.replace("{dir}", str(BAD)) for a in spec.get("args", [])]
    if command == "run":
        return ["run", path, "--out", str(out), "--quiet"]
    if command == "validate":
        return ["validate", path]
    if command == "ope":
        return ["ope", path, *args]
    if command.startswith("sem "):
        return ["sem", command.split()[1], path, *args]
    raise AssertionError(f"unknown command {command!r} in expected.yaml")


def _case_id(file: str, command: str) -> str:
    return f"{file}::{command.replace(' ', '-')}"


def test_corpus_is_big_enough():
    kinds = {k: sum(1 for f in MANIFEST if f.startswith(k)) for k in ("scenarios/", "logs/", "sem/")}
    assert sum(kinds.values()) >= 50 and all(kinds.values()), kinds
    on_disk = {str(p.relative_to(BAD)) for sub in ("scenarios", "logs", "sem") for p in (BAD / sub).iterdir()}
    assert on_disk == set(MANIFEST), on_disk ^ set(MANIFEST)


# Bad command-line arguments and files, next to the corpus: (id, argv, pattern). {base} is a folder
# holding valid.yaml (a valid scenario), big.yaml (> 5 MB), a_dir/, bad_target.csv (prob 1.5),
# text_data.csv (a text column), plain.txt (not a run directory); {dir} is tests/data/bad.
ARG_CASES = [
    ("set-wrong-type", ["run", "{base}/valid.yaml", "--set", "population.users=abc"],
     r"^Error: --set: population\.users: .*integer"),
    ("set-unknown-field", ["run", "{base}/valid.yaml", "--set", "population.userz=10"],
     r"^Error: --set: population\.userz: unknown field 'userz'; did you mean 'users'\?"),
    ("set-into-a-scalar", ["run", "{base}/valid.yaml", "--set", "seed.x=1"], r"^Error: --set: seed: is not a mapping"),
    ("set-no-equals", ["run", "{base}/valid.yaml", "--set", "population.users"],
     r"Invalid value for --set: expected FIELD=VALUE"),
    ("valid-control", ["validate", "{base}/valid.yaml"], None),  # control: the valid file validates
    ("set-bad-recommender", ["run", "{base}/valid.yaml", "--set", "experiment.arms.control.recommender=popularr"],
     r"^Error: --set: experiment\.arms\.control\.recommender: unknown recommender 'popularr'; did you mean 'popularity'\?"),
    ("set-name-escape", ["run", "{base}/valid.yaml", "--set", "name=../escaped"], r"^Error: --set: name: "),
    ("set-python-tag", ["run", "{base}/valid.yaml", "--set", "seed=!!python/object/apply:os.getpid []"],
     r"Invalid value for --set: seed: invalid value: tag .*python/object/apply:os\.getpid is not allowed"),
    ("workers-zero", ["run", "{base}/valid.yaml", "--workers", "0"],
     r"^Error: Invalid value for '--workers': 0 is not in the range x>=1\. \(see 'counterfeed run --help'\)$"),
    ("missing-file", ["run", "{base}/nope.yaml"], r"{base}/nope\.yaml: file not found"),
    ("directory", ["validate", "{base}/a_dir"], r"File '{base}/a_dir' is a directory"),
    ("too-big", ["validate", "{base}/big.yaml"], r"{base}/big\.yaml: file larger than 5 MB"),
    ("report-not-a-run", ["report", "{base}/a_dir"], r"{base}/a_dir: not a finished counterfeed run directory"),
    ("ope-missing-log", ["ope", "{base}/nope.csv", "--target-probs", "{dir}/support/target.csv"],
     r"{base}/nope\.csv: no such file"),
    ("ope-missing-target", ["ope", "{dir}/support/valid_log.csv", "--target-probs", "{base}/nope.csv"],
     r"{base}/nope\.csv: no such file"),
    ("ope-bad-target", ["ope", "{dir}/support/valid_log.csv", "--target-probs", "{base}/bad_target.csv"],
     r"{base}/bad_target\.csv: column 'prob' row 1: probability 1\.5 is outside \[0, 1\]"),
    ("ope-both-targets", ["ope", "{dir}/support/valid_log.csv", "--target-probs", "{dir}/support/target.csv",
                          "--policy", "random"], r"give exactly one of --policy and --target-probs"),
    ("ope-unknown-policy", ["ope", "{dir}/support/valid_log.csv", "--policy", "popularr"],
     r"unknown recommender 'popularr'; did you mean 'popularity'\?"),
    ("ope-bad-column-map", ["ope", "{dir}/support/valid_log.csv", "--target-probs", "{dir}/support/target.csv",
                            "--columns", "bogus=x"], r"column mapping: unknown name 'bogus'"),
    ("ope-unknown-estimator", ["ope", "{dir}/support/valid_log.csv", "--target-probs", "{dir}/support/target.csv",
                               "--estimators", "ipss"], r"ipss"),
    ("sem-missing-data", ["sem", "fit", "f =~ x1 + x2 + x3", "{base}/nope.csv"], r"{base}/nope\.csv"),
    ("sem-text-column", ["sem", "fit", "f =~ x1 + x2 + x3", "{base}/text_data.csv", "--draws", "5", "--tune", "5"],
     r"x2"),
]


def _prepare(base: Path) -> None:
    (base / "valid.yaml").write_text((BAD / "support" / "valid.yaml").read_text())
    (base / "big.yaml").write_text("# padding\n" * 600_000)
    (base / "a_dir").mkdir()
    (base / "bad_target.csv").write_text("item,position,prob\n1,0,1.5\n2,0,0.5\n")
    (base / "text_data.csv").write_text("x1,x2,x3\n" + "".join(f"{i},v{i},{i % 3}\n" for i in range(30)))


def _subst(text: str, base: Path, regex: bool = False) -> str:
    b, d = (re.escape(str(base)), re.escape(str(BAD))) if regex else (str(base), str(BAD))
    return text.replace("{base}", b).replace("{dir}", d)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, dict]:
    """Run every case once, in one driver process."""
    base = tmp_path_factory.mktemp("bad")
    args_base = base / "args"
    args_base.mkdir()
    _prepare(args_base)
    cases, dirs = [], {}
    for cid, argv, _ in ARG_CASES:
        if argv[0] == "sem" and not _sem_cli_available():
            continue
        cwd = base / f"cwd-{cid}"
        cwd.mkdir()
        dirs[f"args::{cid}"] = (cwd, cwd)
        cases.append({"id": f"args::{cid}", "argv": [_subst(a, args_base) for a in argv], "cwd": str(cwd)})
    for i, (file, command) in enumerate(CASES):
        if command.startswith("sem ") and not _sem_cli_available():
            continue
        cwd, out = base / f"cwd{i}", base / f"out{i}"
        cwd.mkdir()
        out.mkdir()
        cid = _case_id(file, command)
        dirs[cid] = (cwd, out)
        cases.append({"id": cid, "argv": _argv(file, command, MANIFEST[file], out), "cwd": str(cwd)})
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, str(DRIVER)], input=json.dumps(cases), capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(proc.stdout)
    for cid, (cwd, out) in dirs.items():
        res[cid]["written"] = sorted({str(p) for d in (cwd, out) for p in d.rglob("*")})
    res["args_base"] = str(args_base)
    return res


@pytest.mark.parametrize("argv,pattern", [c[1:] for c in ARG_CASES], ids=[c[0] for c in ARG_CASES])
def test_bad_arguments_give_one_message_and_write_nothing(results, argv, pattern):
    if argv[0] == "sem" and not _sem_cli_available():
        pytest.skip("the SEM command line (counterfeed.sem.cli) is not there yet")
    cid = next(c[0] for c in ARG_CASES if c[1] is argv)
    if f"args::{cid}" in KNOWN_DEFECTS:
        pytest.xfail(KNOWN_DEFECTS[f"args::{cid}"])
    r = results[f"args::{cid}"]
    assert r["traceback"] is None, r["traceback"]
    stderr = r["stderr"].strip()
    if pattern is None:  # the control case
        assert r["code"] == 0 and stderr == "", stderr
        return
    assert r["code"] == 2, (r["code"], stderr)
    assert len(stderr.splitlines()) == 1 and "Traceback" not in stderr, stderr
    base = Path(results["args_base"])
    assert re.search(_subst(pattern, base, regex=True), stderr), f"\n  message: {stderr}\n  pattern: {pattern}"
    assert r["written"] == [], r["written"]


@pytest.mark.parametrize("file,command", CASES, ids=[_case_id(f, c) for f, c in CASES])
def test_bad_input_gives_one_located_message_and_writes_nothing(results, file, command):
    if command.startswith("sem ") and not _sem_cli_available():
        pytest.skip("the SEM command line (counterfeed.sem.cli) is not there yet")
    cid = _case_id(file, command)
    if cid in KNOWN_DEFECTS:
        pytest.xfail(KNOWN_DEFECTS[cid])
    r = results[cid]
    assert r["traceback"] is None, r["traceback"]
    stderr = r["stderr"].strip()
    assert r["code"] == 2, (r["code"], stderr)
    assert "Traceback" not in stderr
    assert len(stderr.splitlines()) == 1, stderr
    pattern = MANIFEST[file]["pattern"].replace("{file}", re.escape(str(BAD / file)))
    assert re.search(pattern, stderr), f"\n  message: {stderr}\n  pattern: {pattern}"
    if not command.startswith("sem "):  # SEM: see test_sem_message_names_the_file
        assert Path(file).name in stderr, f"message does not name the file: {stderr}"
    assert r["written"] == [], r["written"]


SEM_CASES = [(f, c) for f, c in CASES if c.startswith("sem ") and _case_id(f, c) not in KNOWN_DEFECTS]


@pytest.mark.parametrize("file,command", SEM_CASES, ids=[_case_id(f, c) for f, c in SEM_CASES])
def test_sem_message_names_the_file(results, file, command):
    if not _sem_cli_available():
        pytest.skip("the SEM command line (counterfeed.sem.cli) is not there yet")
    assert Path(file).name in results[_case_id(file, command)]["stderr"]


@pytest.mark.parametrize("file,command", [
    ("scenarios/users_negative.yaml", "run"),          # schema error
    ("logs/propensity_zero.csv", "ope"),               # data error
])
def test_real_console_subprocess(tmp_path, file, command):
    """The same contract through ``python -m counterfeed`` (real process, real stderr)."""
    out = tmp_path / "out"
    out.mkdir()
    argv = _argv(file, command, MANIFEST[file], out)
    r = subprocess.run([sys.executable, "-m", "counterfeed", *argv], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert re.search(MANIFEST[file]["pattern"].replace("{file}", re.escape(str(BAD / file))), lines[0])
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["out"]


def _cap_memory():
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))


def test_endless_input_file_is_refused_without_reading_it_all(tmp_path):
    r = subprocess.run([sys.executable, "-m", "counterfeed", "validate", "/dev/zero"], capture_output=True,
                       text=True, cwd=tmp_path, timeout=120, preexec_fn=_cap_memory,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-300:]
    assert re.search(r"/dev/zero: file larger than 5 MB", r.stderr), r.stderr[-300:]
