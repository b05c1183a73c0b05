"""write_report: files, self-containment, truth, SRM, escaping, optional sections, bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from counterfeed.core.report import fmt, parse_days, write_report
from counterfeed.errors import DataError

from _report_strings import HOSTILE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _html(out: dict[str, Path]) -> str:
    return out["html"].read_text(encoding="utf-8")


def test_writes_markdown_html_and_figures(rich_run):
    run, out = rich_run
    assert out["markdown"] == run / "report.md" and out["html"] == run / "report.html"
    figures = sorted((run / "figures").glob("*.png"))
    stems = {p.stem for p in figures}
    assert {"estimates-clicks", "segments-clicks", "timeseries", "sem-paths-sem", "sem-defined-sem",
            "monitoring-clicks"} <= stems
    assert {k for k in out if k.startswith("figure:")} == {f"figure:{s}" for s in stems}
    for p in figures:
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 5_000
    md = out["markdown"].read_text(encoding="utf-8")
    for p in figures:  # every figure is referenced from the Markdown by a relative path
        assert f"](figures/{p.name})" in md


def test_html_is_self_contained(rich_run, plain_run):
    for _, out in (rich_run, plain_run):
        html = _html(out)
        assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
        assert "<link" not in html and "<script" not in html.lower() and "@import" not in html
        imgs = re.findall(r'<img [^>]*src="([^"]+)"', html)
        assert imgs and all(src.startswith("data:image/png;base64,") for src in imgs)
        assert len(imgs) == len(list(out["figures"].glob("*.png")))
        assert '<nav>' in html and 'href="#estimates-vs-truth"' in html  # table of contents


def test_truth_values_and_coverage_shown(rich_run):
    run, out = rich_run
    html = _html(out)
    est = json.loads((run / "estimates.json").read_text())["estimates"]
    for e in est:
        assert f'<td class="truth">{fmt(e["truth"])}</td>' in html
    n_cov = sum(e["covered"] is True for e in est)
    n_miss = sum(e["covered"] is False for e in est)
    assert html.count('<td class="yes">✓</td>') == n_cov
    assert html.count('<td class="no">✗</td>') == n_miss
    assert f"{n_cov} of {n_cov + n_miss} intervals with a known truth covered it" in html
    truth = pd.read_parquet(run / "truth.parquet")
    rel = truth[(truth.estimand == "relative") & truth.segment.isna()]
    for v in rel.value:  # the true-effects table lists estimands no estimator covered
        assert fmt(v, signed=True) in html


def test_headline_sentence_from_estimates(rich_run):
    run, out = rich_run
    e = next(e for e in json.loads((run / "estimates.json").read_text())["estimates"]
             if e["metric"] == "clicks" and e["segment"] is None)
    verb = "raised" if e["lower"] > 0 else "lowered" if e["upper"] < 0 else "changed"
    assert f"Treatment {verb} clicks by" in _html(out)
    assert f"the true effect was {fmt(e['truth'])}" in _html(out)


def test_srm_warning_only_when_flagged(rich_run, plain_run):
    assert 'class="box warn"' not in _html(rich_run[1])
    assert "Arm sizes match the planned split" in _html(rich_run[1])
    html = _html(plain_run[1])
    assert 'class="box warn"' in html and "Sample ratio mismatch:" in html
    srm = json.loads((plain_run[0] / "estimates.json").read_text())["srm"]
    assert srm["flagged"]
    for arm, n in srm["observed"].items():
        assert f"<td>{arm}</td><td class=\"num\">{fmt(n)}</td>" in html


def test_user_strings_are_escaped(plain_run):
    run, out = plain_run
    html = _html(out)
    assert "<script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    md = out["markdown"].read_text(encoding="utf-8")
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert HOSTILE.split("|")[0].strip() not in md


def test_four_arms_unknown_truth_no_optional_sections(plain_run):
    run, out = plain_run
    html = _html(out)
    for arm in ("treatment1", "treatment2", "treatment3"):
        assert f"<td>{arm}</td>" in html
    assert '<td class="truth">' in html and '<td class="truth">—</td>' in html
    assert '<td class="yes">' not in html and '<td class="na">—</td>' in html
    assert "the true effect is not known" in html
    for absent in ("Bayesian SEM", "Sequential monitoring", "Phases and decisions", "by segment",
                   "pre-period"):
        assert absent not in html
    assert {p.stem for p in out["figures"].glob("*.png")} == {
        "estimates-clicks", "estimates-ctr", "timeseries"}


def test_optional_sections_render_when_present(rich_run):
    run, out = rich_run
    html = _html(out)
    assert "Bayesian SEM" in html and "R-hat &gt; 1.01" in html  # SEM warning surfaced
    assert "<td>indirect</td><td>defined</td>" in html and "<td>y~m</td><td>parameter</td>" in html
    assert "Sequential monitoring" in html and "Phases and decisions" in html
    assert "<td>ship treatment</td>" in html
    assert "after a 7d pre-period" in html and "pre-period" in html
    assert 'href="outcomes.parquet"' in html and 'href="events/ab/sessions.parquet"' in html


def test_rebuild_replaces_stale_figures(tmp_path, plain_run):
    run = tmp_path / "copy"
    shutil.copytree(plain_run[0], run)
    (run / "figures" / "stale.png").write_bytes(PNG_MAGIC)
    (run / "timeseries.parquet").unlink()  # a rebuild with fewer inputs drops their sections
    out = write_report(run)
    assert not (run / "figures" / "stale.png").exists()
    assert "figure:timeseries" not in out and "figure:estimates-clicks" in out
    assert "Metrics over simulated time" not in _html(out)


@pytest.mark.parametrize("value, days", [("7d", 7.0), ("12h", 0.5), ("2w", 14.0), ("90m", 0.0625),
                                         (3, 3.0), ("0d", 0.0), (None, 0.0), ("soon", 0.0), (True, 0.0)])
def test_parse_days(value, days):
    assert parse_days(value) == pytest.approx(days)


def _no_manifest(d: Path) -> None:
    (d / "manifest.json").unlink()


def _bad_json(d: Path) -> None:
    (d / "estimates.json").write_text("{not json")


def _bad_yaml(d: Path) -> None:
    (d / "scenario.yaml").write_text("a: [unclosed")


def _bad_parquet(d: Path) -> None:
    (d / "truth.parquet").write_bytes(b"PAR1 nope")


@pytest.mark.parametrize("damage, pattern", [
    (_no_manifest, r"not a finished counterfeed run directory \(no manifest.json\)"),
    (_bad_json, r"estimates.json: cannot read JSON"),
    (_bad_yaml, r"scenario.yaml: not valid YAML"),
    (_bad_parquet, r"truth.parquet: cannot read Parquet"),
])
def test_bad_run_directory(tmp_path, plain_run, damage, pattern):
    run = tmp_path / "run"
    shutil.copytree(plain_run[0], run, ignore=shutil.ignore_patterns("figures", "report.*"))
    damage(run)
    with pytest.raises(DataError, match=pattern):
        write_report(run)


def test_not_a_directory(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        write_report(tmp_path / "missing")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_screenshot_is_not_blank(tmp_path, rich_run):
    from PIL import Image

    script = Path(__file__).resolve().parents[2] / "scripts" / "screenshot_report.py"
    png = tmp_path / "shot.png"
    proc = subprocess.run([sys.executable, str(script), str(rich_run[0]), str(png), "--height", "3000"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert png.stat().st_size > 50_000
    lo, hi = Image.open(png).convert("L").getextrema()
    assert hi - lo > 100  # text and figures, not one colour


def test_report_into_a_read_only_run_directory_is_one_clear_error(tmp_path, plain_run, monkeypatch, capsys):
    """Tester s10 #8: a read-only run directory gave a raw OSError traceback."""
    import errno

    from counterfeed import cli
    from counterfeed.core import report

    def read_only(run_dir):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(report, "write_report", read_only)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["report", str(plain_run[0])])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"Error: cannot write the report into '{plain_run[0]}': Read-only file system"]
