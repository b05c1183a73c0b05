"""The ``sem`` click group through CliRunner."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from counterfeed.sem.cli import sem

DATA = Path(__file__).parent / "data" / "holzinger_swineford1939.csv"
HS39 = "visual =~ x1 + x2 + x3\ntextual =~ x4 + x5 + x6\nspeed =~ x7 + x8 + x9"


def test_show_literal_model():
    res = CliRunner().invoke(sem, ["show", "f =~ x1 + x2 + x3\ny ~ a*f + c*t\nind := a*2",
                                   "-x", "t"])
    assert res.exit_code == 0, res.output
    assert "free parameters" in res.output and "ind" in res.output and "a*2" in res.output


def test_show_file_and_json(tmp_path):
    f = tmp_path / "hs.sem"
    f.write_text(HS39)
    res = CliRunner().invoke(sem, ["show", str(f), "--json", "--prior", "visual=~x2=normal(1,0.5)"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    row = next(r for r in rows if r["lhs"] == "visual" and r["rhs"] == "x2")
    assert row["prior"] == "normal(1, 0.5) [orig]"


@pytest.mark.parametrize("args,pattern", [
    (["show", "f =~ x1 + + x2"], "line 1, col 11: expected a variable name after '+'"),
    (["show", "nonexistent_file.sem"], "neither a file nor model text"),
    (["show", "y ~ a*x", "--prior", "a=normal(0)"], "normal takes 2 argument"),
    (["show", "y ~ a*x", "--prior", "nonsense"], "expected NAME=PRIOR"),
    (["fit", "f =~ x1 + x2 + x3", "missing.csv"], "DATA file 'missing.csv' does not exist"),
    (["fit", "f =~ x1 + x2 + nope", str(DATA)], "'nope' is neither a latent variable"),
    (["fit", "visual =~ x1 + nope", str(DATA)], "'nope' is neither a latent variable"),  # not "not identified"
    (["fit", "f =~ x1 + x2 + log(nope)", str(DATA)], "'nope' is neither a latent variable"),
    (["fit", HS39, str(DATA), "--method", "magic"], "Invalid value for '--method'"),
])
def test_cli_errors(args, pattern):
    res = CliRunner().invoke(sem, args)
    assert res.exit_code != 0
    assert pattern in res.output


@pytest.mark.slow
def test_fit_cli_writes_posterior(tmp_path):
    out = tmp_path / "post"
    res = CliRunner().invoke(sem, ["fit", HS39, str(DATA), "--draws", "300", "--chains", "2",
                                   "--seed", "1", "--json", "--out", str(out)])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output.strip().splitlines()[-1])
    assert {"ok", "warnings", "divergences", "summary", "timings"} <= set(payload)
    assert (out / "posterior.nc").is_file() and (out / "summary.csv").is_file()
    import arviz as az

    idata = az.from_netcdf(out / "posterior.nc")
    assert "params" in idata.posterior


class _FakeFit:
    def to_dict(self):
        return {"ok": True}

    def __str__(self):
        return "fake fit"


@pytest.mark.parametrize("extra, shown", [([], True), (["--json"], True),
                                          (["--json", "--quiet"], False), (["-q"], False)])
def test_fit_progress_on_stderr(monkeypatch, extra, shown):
    """Compile and sampling stages go to stderr (also with --json); --quiet silences them."""
    from counterfeed.sem.fit import SEM

    def fake_fit(self, df, *, on_stage=None, **kw):
        on_stage("compile", "building the model")
        on_stage("sample", "2 chain(s) x (10 tune + 10 draws), nutpie")
        on_stage("done", "")
        return _FakeFit()

    monkeypatch.setattr(SEM, "fit", fake_fit)
    res = CliRunner().invoke(sem, ["fit", HS39, str(DATA)] + extra)
    assert res.exit_code == 0, res.output
    assert ("compile: building the model" in res.stderr) is shown
    assert ("sample: 2 chain(s)" in res.stderr) is shown
    if shown is False:
        assert res.stderr == ""
    if "--json" in extra:
        assert json.loads(res.stdout) == {"ok": True}
