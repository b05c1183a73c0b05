"""``sem`` command group: ``sem show MODEL`` and ``sem fit MODEL DATA``."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from counterfeed import _json
from counterfeed._tables import format_option
from counterfeed.errors import CounterfeedError

__all__ = ["sem"]


def _model_text(model: str) -> tuple[str, str | None]:
    """MODEL is a path to a file or the model text itself: returns (text, path or None)."""
    if "\n" not in model and len(model) < 4096:
        try:
            p = Path(model)
            if p.is_file():
                try:
                    return p.read_text(encoding="utf-8"), model
                except UnicodeDecodeError as exc:
                    raise click.ClickException(f"{model}: not UTF-8 text (byte {exc.start})") from None
        except OSError:
            pass
        if not any(op in model for op in ("=~", "~", ":=")):
            raise click.ClickException(f"MODEL '{model}' is neither a file nor model text "
                                       f"(expected e.g. 'f =~ x1 + x2 + x3')")
    return model, None


def _is_file(model: str) -> bool:
    try:
        return "\n" not in model and len(model) < 4096 and Path(model).is_file()
    except OSError:
        return False


def _read_data(path: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise click.ClickException(f"DATA file '{path}' does not exist")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        if p.suffix.lower() in (".csv", ".txt", ".gz"):
            return pd.read_csv(p)
    except Exception as exc:  # malformed file: one clear message
        raise click.ClickException(f"cannot read DATA '{path}': {exc}") from None
    raise click.ClickException(f"DATA '{path}': expected a .csv or .parquet file")


def _build(model: str, exogenous: tuple[str, ...], std_lv: bool, priors: tuple[str, ...], data=None):
    """The checked SEM of MODEL; with ``data``, every variable that is not a latent must be one of its
    columns first (a missing column would otherwise surface as a wrong identification count)."""
    from counterfeed.sem import SEM
    from counterfeed.sem.stats import check_columns
    from counterfeed.sem.syntax import parse_model
    from counterfeed.sem.table import observed_variables

    prior_map = {}
    for spec in priors:
        name, _, dist = _split_prior(spec)
        prior_map[name.strip()] = dist.strip()
    text, path = _model_text(model)
    try:
        parsed = parse_model(text)
        if data is not None:
            check_columns(data, observed_variables(parsed))
        return SEM(parsed, exogenous=exogenous, std_lv=std_lv, priors=prior_map)
    except CounterfeedError as exc:
        raise click.ClickException(f"{path}: {exc}" if path else str(exc)) from None


def _split_prior(spec: str):
    # "visual=~x2=normal(1,0.5)": split at the last '=' that is not part of '=~'
    for i in range(len(spec) - 1, -1, -1):
        if spec[i] == "=" and spec[i + 1:i + 2] != "~":
            return spec[:i], "=", spec[i + 1:]
    raise click.ClickException(f"--prior '{spec}': expected NAME=PRIOR, e.g. a=normal(0,1)")


_EXAMPLE = """engagement =~ clicks + dwell + sessions
engagement ~ a*treatment
retained ~ b*engagement + c*treatment
indirect := a*b"""


@click.group("sem")
def sem() -> None:
    """Bayesian structural equation models in lavaan-like syntax (see docs/sem.md)."""


@sem.command("show")
@click.argument("model")
@click.option("--exogenous", "-x", multiple=True, help="Exogenous 0/1 column (repeatable).")
@click.option("--std-lv", is_flag=True, help="Fix latent variances to 1, free all loadings.")
@click.option("--prior", "priors", multiple=True, help="NAME=PRIOR, e.g. a=normal(0,1).")
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON records.")
def show(model, exogenous, std_lv, priors, as_json) -> None:
    """Print the parameter table of MODEL (a file path or the model text).

    Example: counterfeed sem show 'f =~ x1 + x2 + x3'
    """
    m = _build(model, exogenous, std_lv, priors)
    if as_json:
        df = m.table.to_frame()
        click.echo(df.to_json(orient="records"))
    else:
        click.echo(str(m.table))


@sem.command("fit")
@click.argument("model")
@click.argument("data")
@click.option("--exogenous", "-x", multiple=True,
              help="Exogenous 0/1 column, e.g. treatment (repeatable).")
@click.option("--draws", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--tune", default=1000, show_default=True, type=click.IntRange(1))
@click.option("--chains", default=4, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--method", default="nutpie", show_default=True,
              type=click.Choice(["nutpie", "pymc", "advi", "fullrank_advi", "pathfinder"]))
@click.option("--density", default="auto", show_default=True,
              type=click.Choice(["auto", "numba", "pymc"]),
              help="nutpie: the cached numba SEM density, or the PyMC model (compiled per model).")
@click.option("--std-lv", is_flag=True, help="Fix latent variances to 1, free all loadings.")
@click.option("--prior", "priors", multiple=True, help="NAME=PRIOR, e.g. a=normal(0,1).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (same as --format json).")
@format_option()
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Directory to write posterior.nc and summary.csv into.")
@click.option("--quiet", "-q", is_flag=True,
              help="No progress display on stderr (it is shown even with --json).")
def fit(model, data, exogenous, draws, tune, chains, seed, method, density, std_lv, priors,
        as_json, fmt, out, quiet) -> None:
    """Fit MODEL (file or text) to DATA (CSV or Parquet) and print estimates with diagnostics.

    Example: counterfeed sem fit model.sem users.parquet -x treatment --draws 1000 --out post/
    """
    df = _read_data(data)
    m = _build(model, exogenous, std_lv, priors, data=df)
    progress = _StageProgress(enabled=not quiet)
    try:
        result = m.fit(df, draws=draws, tune=tune, chains=chains, seed=seed, method=method,
                       on_stage=progress, density=density)
    except CounterfeedError as exc:
        where = f"{model} with {data}" if _is_file(model) else str(data)
        raise click.ClickException(f"{where}: {exc}") from None
    finally:
        progress.close()
    if out:
        outdir = Path(out)
        outdir.mkdir(parents=True, exist_ok=True)
        result.save(outdir / "posterior.nc")
        result.summary.to_csv(outdir / "summary.csv")
    if as_json or fmt == "json":
        click.echo(_json.dumps(result.to_dict()))
    elif fmt == "csv":
        result.summary.to_csv(sys.stdout)
    else:
        click.echo(str(result))
        if out:
            click.echo(f"posterior written to {Path(out) / 'posterior.nc'}")


class _StageProgress:
    """Compile and sampling progress on stderr (rich): one line per stage with elapsed time."""

    def __init__(self, enabled: bool):
        self.progress = self.task = None
        if enabled:
            from rich.console import Console
            from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

            self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                     TimeElapsedColumn(), console=Console(stderr=True))
            self.progress.start()

    def __call__(self, stage: str, detail: str) -> None:
        if self.progress is None:
            return
        if self.task is not None:
            self.progress.update(self.task, completed=1)
        self.task = None
        if stage == "done":
            self.close()
            return
        self.task = self.progress.add_task(f"{stage}: {detail}", total=1)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
