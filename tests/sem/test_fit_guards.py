"""SEM fits that cannot be trusted say so, and bad sampler settings or data exit 2 with a message,
never a Rust panic (tester #8, #9)."""

import math
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from counterfeed.cli import main
from counterfeed.sem import SEM
from counterfeed.sem.cli import sem

DATA = Path(__file__).parent / "data" / "holzinger_swineford1939.csv"
ONE = "visual =~ x1 + x2 + x3"


def test_tune_0_is_a_usage_error_not_a_panic():
    res = CliRunner().invoke(sem, ["fit", ONE, str(DATA), "--tune", "0", "--draws", "5", "--chains", "1"])
    assert res.exit_code == 2 and "--tune" in res.output and "Traceback" not in res.output


def test_huge_values_are_rejected_naming_the_column(tmp_path, capsys):
    df = pd.read_csv(DATA)
    df["x1"] = df["x1"] * 1e200  # the tester's hshuge.csv: nutpie panicked "All initialization points failed"
    path = tmp_path / "huge.csv"
    df.to_csv(path, index=False)
    with pytest.raises(SystemExit) as exc:
        main(["sem", "fit", ONE, str(path), "--draws", "5", "--tune", "5", "--chains", "1"])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "huge.csv: column 'x1'" in err and "rescale" in err and "Traceback" not in err


def test_sampler_settings_are_checked_before_compiling():
    with pytest.raises(Exception, match="tune must be at least 1"):
        SEM(ONE).fit(pd.read_csv(DATA), draws=5, tune=0, chains=1)


@pytest.mark.slow
def test_one_draw_is_not_ok_and_has_no_credible_interval():
    fit = SEM(ONE).fit(pd.read_csv(DATA), draws=1, tune=5, chains=1, seed=0)
    assert not fit.ok
    assert any("no credible interval" in w for w in fit.warnings)
    assert any("could not be computed" in w for w in fit.warnings)
    row = fit.summary.loc["visual=~x2"]
    assert math.isnan(row["eti_2.5%"]) and math.isnan(row["eti_97.5%"])


def test_the_fit_table_shows_significant_digits_not_three_decimals():
    """Loadings of ~1e-8 (the tester's hs1e8.csv) printed as 0.000 with 3 fixed decimals (tester #19)."""
    from counterfeed.sem.fit import SEMFit

    fit = object.__new__(SEMFit)
    fit.summary = pd.DataFrame({"mean": [1.234e-8, 0.5], "sd": [2.5e-9, 0.1]}, index=["f=~x2", "f=~x3"])
    fit.timings, fit.method, fit.n_total = {"compile_s": 1.0, "sample_s": 1.0, "cache_hit": True}, "nutpie", 301
    fit.divergences, fit.warnings = 0, ["x"]
    text = str(fit)
    assert "1.234e-08" in text and "2.5e-09" in text and "0.000" not in text
