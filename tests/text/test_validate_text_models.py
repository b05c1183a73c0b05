"""``validate`` rejects every model / embedder / layers setting of text recommenders and catalogs that
``run`` would reject later (after loading or training), and a re-ranker's unknown ``base`` at its own
field and line; ``run`` gives the same first line before simulating and writes nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import cli

ROOT = Path(__file__).resolve().parents[2]
TOWER = "tower: {recommender: text-two-tower,"

#: name -> (scenario, (old, new) text edit, line, field, message fragment)
CASES = {
    "lora_layers": ("text_two_tower", (TOWER, TOWER + " train: lora, layers: 10,"), 48,
                    "experiment.arms.tower.layers", "layers must be in [1, 6] for model 'minilm', got 10"),
    "last_missing_model": ("text_two_tower", (TOWER, TOWER + " train: last, model: /nonexistent/model,"), 48,
                           "experiment.arms.tower.model", "model directory '/nonexistent/model' does not exist"),
    "lora_hashing": ("text_two_tower", (TOWER, TOWER + " train: lora, model: hashing,"), 48,
                     "experiment.arms.tower.model", "'hashing' is the feature-hashing embedder, not a transformer"),
    "catalog_embedder": ("text_two_tower", ("  embedder: minilm", "  embedder: /nonexistent"), 37,
                         "catalog.embedder", "model directory '/nonexistent' does not exist"),
    "arm_embedder_dir": ("text_two_tower", (TOWER, TOWER + " embedder: {model: ./no/such/dir},"), 48,
                         "experiment.arms.tower.embedder", "model directory './no/such/dir' does not exist"),
    "rerank_base": ("feedback_loop", ("      base: matrix-factorization", "      base: nosuch"), 44,
                    "experiment.arms.mmr.base", "unknown recommender 'nosuch'"),
}


def _cli(capsys, *args: str) -> tuple[int, str]:
    code, _, err = cli(capsys, *args)
    return code, err


def _write(tmp_path, name):
    scenario, (old, new), *_ = CASES[name]
    text = (ROOT / "scenarios" / f"{scenario}.yaml").read_text()
    assert text.count(old) == 1, old
    path = tmp_path / f"{name}.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_and_run_reject_with_the_same_located_message(name, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _, _, line, field, fragment = CASES[name]
    path = _write(tmp_path, name)
    rc_v, err_v = _cli(capsys, "validate", str(path))
    assert rc_v == 2, err_v
    assert f"{name}.yaml:{line}: {field}: " in err_v and fragment in err_v, err_v
    rc_r, err_r = _cli(capsys, "run", str(path), "--quiet")
    first = lambda err: re.search(r"Error: .*", err).group(0)  # noqa: E731
    assert rc_r == 2 and first(err_r) == first(err_v)
    assert not list(tmp_path.glob("runs/*")), "run wrote output"


def test_valid_layers_and_head_only_settings_still_validate(tmp_path, monkeypatch, capsys):
    """layers up to the model's depth pass; with train: head the (unused) model is not checked."""
    monkeypatch.chdir(tmp_path)
    text = (ROOT / "scenarios" / "text_two_tower.yaml").read_text()
    for extra in (" train: lora, layers: 6,", " train: head, model: hashing,"):
        path = tmp_path / "ok.yaml"
        path.write_text(text.replace(TOWER, TOWER + extra))
        rc, err = _cli(capsys, "validate", str(path))
        assert rc == 0, (extra, err)


def test_an_uncached_hub_model_is_rejected_offline(tmp_path, monkeypatch, capsys):
    """With HF_HUB_OFFLINE set, a hub name missing from the local cache cannot load: validate says so."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    text = (ROOT / "scenarios" / "text_two_tower.yaml").read_text()
    path = tmp_path / "hub.yaml"
    path.write_text(text.replace("  embedder: minilm", "  embedder: nobody/not-a-cached-model"))
    rc, err = _cli(capsys, "validate", str(path))
    assert rc == 2 and "hub.yaml:37: catalog.embedder: " in err, err
    assert "not in the local Hugging Face cache and HF_HUB_OFFLINE is set" in err
