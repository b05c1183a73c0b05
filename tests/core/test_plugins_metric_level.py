"""``counterfeed plugins`` shows a metric's level (user / population) and whether a user-randomized A/B
comparison identifies its effect (population-level metrics, and per-user metrics with interference)."""

from __future__ import annotations

import json

from click.testing import CliRunner

from counterfeed.cli import cli


def _run(*args):
    out = CliRunner().invoke(cli, list(args))
    assert out.exit_code == 0, out.output
    return out.output


def test_plugins_json_carries_level_and_identification():
    rows = {r["name"]: r for r in json.loads(_run("plugins", "--json")) if r["kind"] == "metric"}
    assert rows["coverage"]["level"] == "population" and rows["coverage"]["identified"] is False
    assert "population-level" in rows["coverage"]["not_identified"]
    assert rows["novelty"]["level"] == "user" and rows["novelty"]["identified"] is False
    assert "does not identify the effect on novelty" in rows["novelty"]["not_identified"]
    assert rows["clicks"]["level"] == "user" and rows["clicks"]["identified"] is True
    assert rows["clicks"]["not_identified"] is None
    assert all("level" in r and "identified" in r for r in rows.values())


def test_plugins_show_prints_level_and_identification():
    cov = _run("plugins", "show", "coverage")
    assert "level: population" in cov and "identified by a user-randomized A/B comparison: no:" in cov
    nov = _run("plugins", "show", "novelty")
    assert "level: user" in nov and "identified by a user-randomized A/B comparison: no:" in nov
    clicks = _run("plugins", "show", "clicks")
    assert "level: user" in clicks and "identified by a user-randomized A/B comparison: yes" in clicks
    d = json.loads(_run("plugins", "show", "coverage", "--format", "json"))
    assert d["level"] == "population" and d["identified"] is False
    assert "level" not in json.loads(_run("plugins", "show", "popularity", "--format", "json"))
