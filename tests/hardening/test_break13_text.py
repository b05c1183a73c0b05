"""Break test 13's text findings (A5, A6, C2), each with the behaviour it asked for.

- A5: the *values* of embedder options (``dim: 0``, ``dtype: float16``, ``batch_size: 0``,
  ``max_length: 1``, ``threads: 0``, ``device: cuda`` without CUDA) passed ``validate`` and failed at
  catalog build, unlocated, some with raw torch errors. ``validate`` now runs the embedders' own
  checks (``check_embedder_options``) on every ``embedder`` option and on the choice model's
  ``text_space``, located at the option.
- A6: the ``choice`` model's ``interests: text`` with a catalog without text, and its ``text_space``
  spec, were only refused by ``run`` (unlocated, or as a raw ValueError).
- C2: an uncached hub model on a machine that cannot reach the hub ended the run with a 3-line
  ``LocalEntryNotFoundError``; it is now one line saying what is missing and how to make it available.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from counterfeed.text.embedder import (EmbedderOptionError, HashingEmbedder, TransformerEmbedder,
                                       check_embedder_options, check_embedder_spec, get_embedder)
from tests.conftest import SMALL, cli, scenario_file

TEXT_CATALOG = {"plugin": "synthetic-text", "items": 40, "topics": 4, "embedder": "hashing"}


def _write(tmp_path: Path, **changes) -> Path:
    base = {**SMALL, "catalog": dict(TEXT_CATALOG), "experiment": {**SMALL["experiment"], "duration": "2d",
                                                                   "pre_period": "1d"},
            "output": {"report": False, "dir": str(tmp_path / "runs")}, "metrics": ["clicks"],
            "analysis": [{"estimator": "diff-in-means"}]}
    return scenario_file(tmp_path / "s.yaml", base, **changes)


def _line(path: Path, parent: str, key: str) -> int:
    """1-based line of the first ``key:`` after the line of ``parent:`` (the YAML is block style)."""
    lines = path.read_text().splitlines()
    start = next(i for i, text in enumerate(lines) if re.match(rf"\s*{parent}:", text))
    return next(i for i in range(start, len(lines)) if re.match(rf"\s*{key}:", lines[i])) + 1


def _refused_alike(capsys, tmp_path: Path, path: Path, want: str) -> None:
    """validate and run both exit 2 with ``want`` in their one error line; run writes nothing."""
    for verb in ("validate", "run"):
        args = ("run", path, "--quiet") if verb == "run" else ("validate", path)
        code, out, err = cli(capsys, *args)
        assert code == 2, (verb, out, err)
        errors = [line for line in err.splitlines() if line.startswith("Error:")]
        assert errors == [f"Error: {want}"] or (errors and errors[0].startswith(f"Error: {want}")), (verb, err)
        assert "Traceback" not in err and "RuntimeError" not in err and "AssertionError" not in err
    assert not (tmp_path / "runs").exists()


@pytest.fixture
def no_cuda(monkeypatch):
    """A torch that finds no CUDA device, whatever this machine has."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


# -- A5: option values, at the option -------------------------------------------------------------

BAD_VALUES = [  # (spec, option, message after "<field>.<option>: ")
    ({"model": "hashing", "dim": 0}, "dim", "must be an integer >= 2 and <= 65,536 (got 0)"),
    ({"model": "hashing", "dim": 1}, "dim", "must be an integer >= 2 and <= 65,536 (got 1)"),
    ({"model": "hashing", "dim": "big"}, "dim", "must be an integer >= 2 and <= 65,536 (got 'big')"),
    ({"model": "hashing", "dim": True}, "dim", "must be an integer >= 2 and <= 65,536 (got True)"),
    ({"model": "hashing", "bigrams": "yes"}, "bigrams", "must be true or false (got 'yes')"),
    ({"model": "minilm", "dtype": "float16"}, "dtype", "must be 'auto', 'float32' or 'bfloat16' (got 'float16')"),
    ({"model": "minilm", "batch_size": 0, "cache": False}, "batch_size", "must be an integer >= 1 (got 0)"),
    ({"model": "minilm", "max_length": 1}, "max_length", "must be an integer >= 2 (got 1)"),
    ({"model": "minilm", "threads": 0, "cache": False}, "threads", "must be an integer >= 1 (got 0)"),
    ({"model": "minilm", "threads": 2.5}, "threads", "must be an integer >= 1 (got 2.5)"),
    ({"model": "minilm", "device": "gpu"}, "device", "must be 'cpu', 'cuda', 'cuda:<n>' or 'auto' (got 'gpu')"),
    ({"model": "minilm", "device": "cuda"}, "device", "must be 'cpu' or 'auto' on this machine: "),
    ({"model": "minilm", "device": "cuda:1"}, "device", "must be 'cpu' or 'auto' on this machine: "),
    ({"model": "minilm", "cache": "no"}, "cache", "must be true or false (got 'no')"),
]


@pytest.mark.parametrize("spec, option, message", BAD_VALUES,
                         ids=[f"{o}-{i}" for i, (_, o, _) in enumerate(BAD_VALUES)])
def test_a_bad_catalog_embedder_value_is_refused_by_validate_at_the_option(tmp_path, capsys, no_cuda, spec, option,
                                                                           message):
    path = _write(tmp_path, **{"catalog.embedder": spec})
    line = _line(path, "embedder", option)
    _refused_alike(capsys, tmp_path, path, f"{path}:{line}: catalog.embedder.{option}: {message}")


def _table(tmp_path: Path) -> Path:
    rows = ["id,title,description,topic"] + [f"i{i},Title {i},About thing {i % 3},t{i % 3}" for i in range(12)]
    (tmp_path / "items.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "items.csv"


@pytest.mark.parametrize("where", ["table", "text-embedding", "text_space"])
def test_every_embedder_option_gets_the_value_checks(tmp_path, capsys, where):
    """The same spec check on the table catalog's, a text recommender's ``embedder`` and ``text_space``."""
    bad = {"model": "hashing", "dim": 0}
    if where == "table":
        table = _table(tmp_path)
        path = _write(tmp_path, catalog={"plugin": "table", "path": str(table), "topic_column": "topic",
                                         "text_columns": ["title", "description"], "embedder": bad})
        parent, field = "embedder", "catalog.embedder.dim"
    elif where == "text-embedding":
        path = _write(tmp_path, **{"experiment.arms.treatment": {"recommender": "text-embedding", "embedder": bad}})
        parent, field = "treatment", "experiment.arms.treatment.embedder.dim"
    else:
        path = _write(tmp_path, user_model={"plugin": "choice", "interests": "text", "text_space": bad})
        parent, field = "text_space", "user_model.text_space.dim"
    line = _line(path, parent, "dim")
    _refused_alike(capsys, tmp_path, path, f"{path}:{line}: {field}: must be an integer >= 2 and <= 65,536 (got 0)")


def test_valid_values_still_validate_and_a_cuda_device_is_accepted_where_torch_has_one(tmp_path, capsys, monkeypatch):
    path = _write(tmp_path, **{"catalog.embedder": {"model": "minilm", "batch_size": 8, "max_length": 64,
                                                    "threads": 2, "dtype": "float32", "device": "auto",
                                                    "cache": False}})
    code, out, err = cli(capsys, "validate", path)
    assert code == 0, err
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_embedder_spec({"model": "minilm", "device": "cuda:1"})["device"] == "cuda:1"
    with pytest.raises(ValueError, match=r"one of this machine's 2 CUDA device\(s\), cuda:0..cuda:1 \(got 'cuda:2'\)"):
        check_embedder_spec({"model": "minilm", "device": "cuda:2"})


def test_the_embedders_and_the_spec_check_refuse_the_same_values_with_one_check(no_cuda):
    """One piece of code: the embedders raise ``check_embedder_options``'s error, before loading any model."""
    for spec, option, message in BAD_VALUES:
        opts = {k: v for k, v in spec.items() if k != "model"}
        with pytest.raises(EmbedderOptionError) as direct:
            check_embedder_options(opts)
        assert (direct.value.option, str(direct.value)) == (option, f"{option} {direct.value.problem}")
        assert direct.value.problem.startswith(message)
        with pytest.raises(EmbedderOptionError) as built:  # what the catalog build calls
            get_embedder(spec)
        assert (built.value.option, built.value.problem) == (option, direct.value.problem)
    with pytest.raises(EmbedderOptionError, match="dim must be an integer >= 2"):
        HashingEmbedder(dim=0)
    with pytest.raises(EmbedderOptionError, match="threads must be an integer >= 1"):
        TransformerEmbedder("./not/a/model", threads=0)  # refused before the model is looked for
    assert check_embedder_options({"dim": 32.0, "threads": None}) == {"dim": 32, "threads": None}


def test_a_cpu_or_auto_device_is_checked_without_importing_torch():
    code = ("import sys\nfrom counterfeed.text.embedder import check_embedder_spec\n"
            "for d in ('cpu', 'auto'):\n"
            "    check_embedder_spec({'model': 'minilm', 'device': d, 'threads': 2, 'dtype': 'auto'})\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# -- A6: the choice model's text options ----------------------------------------------------------

def test_text_interests_need_a_catalog_with_text(tmp_path, capsys):
    path = _write(tmp_path, catalog={"plugin": "synthetic", "items": 60, "topics": 4},
                  user_model={"plugin": "choice", "interests": "text"})
    line = _line(path, "user_model", "interests")
    _refused_alike(capsys, tmp_path, path, f"{path}:{line}: user_model.interests: 'text' needs a catalog with text")


@pytest.mark.parametrize("text_space, key, message", [
    ({"model": "hashing", "foo": 1}, "text_space", "unknown embedder option 'foo' (expected: bigrams, dim, model)"),
    ("./no/such/model", "text_space", "model directory './no/such/model' does not exist"),
    ("bogus", "text_space", "model 'bogus' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"),
    ({"model": "minilm", "dtype": "half"}, "dtype", "must be 'auto', 'float32' or 'bfloat16' (got 'half')"),
])
def test_text_space_gets_the_embedder_spec_checks(tmp_path, capsys, monkeypatch, text_space, key, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = _write(tmp_path, user_model={"plugin": "choice", "interests": "text", "text_space": text_space})
    field = "user_model.text_space" + ("" if key == "text_space" else f".{key}")
    line = _line(path, "text_space", key) if key != "text_space" else _line(path, "user_model", "text_space")
    _refused_alike(capsys, tmp_path, path, f"{path}:{line}: {field}: {message}")


def test_valid_text_options_validate_and_run(tmp_path, capsys):
    path = _write(tmp_path, user_model={"plugin": "choice", "interests": "text", "text_space": {"model": "hashing",
                                                                                               "dim": 64}})
    code, _, err = cli(capsys, "validate", path)
    assert code == 0, err
    code, _, err = cli(capsys, "run", path, "--quiet")
    assert code == 0, err
    assert list((tmp_path / "runs").glob("*/manifest.json"))


# -- C2: an uncached hub model where the hub cannot be reached ------------------------------------

def test_an_unreachable_hub_ends_the_run_with_one_clear_line(tmp_path, capsys, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):  # what snapshot_download raises without network and without a cached copy
        raise LocalEntryNotFoundError("An error happened while trying to locate the files on the Hub, and we cannot "
                                      "find the appropriate snapshot folder for the specified revision on the local "
                                      "disk.\nPlease check your internet connection and try again.")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    model = "nobody/not-a-cached-model"
    path = _write(tmp_path, **{"catalog.embedder": model})
    code, _, err = cli(capsys, "validate", path)
    assert code == 0, err  # documented: without HF_HUB_OFFLINE, run may download it
    code, _, err = cli(capsys, "run", path, "--quiet")
    assert code == 2
    errors = [line for line in err.splitlines() if line.strip()]
    assert len(errors) == 1, err
    assert (f"model '{model}' is not in the local Hugging Face cache and the Hugging Face hub could not be reached"
            in errors[0]), err
    assert f"hf download {model}" in errors[0] and "local model directory" in errors[0]
    assert "LocalEntryNotFoundError" not in err and "internet connection" not in err
    assert not (tmp_path / "runs").exists()
