"""``counterfeed calibrate`` and ``counterfeed sweep`` (click commands the main CLI mounts).

Only click is imported at module level, so mounting these commands keeps ``counterfeed --help`` fast.
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Any

import click

from counterfeed import _json
from counterfeed._tables import FORMATS, print_table, table_console

__all__ = ["calibrate_command", "sweep_command", "COMMANDS", "UserError"]


class UserError(click.ClickException):
    """A user mistake: one message on stderr, exit code 2 (the project's code for user errors)."""

    exit_code = 2


_EXECUTOR_OPTIONS = [
    click.option("--replications", "-n", type=click.IntRange(1, 10_000_000), required=True,
                 help="Number of replications (seeds derived from the scenario's seed)."),
    click.option("--workers", "-w", type=click.IntRange(1, 4096), default=None,
                 help="Worker processes (default: the cores this process may use)."),
    click.option("--executor", type=click.Choice(["local", "dask", "serial"]), default="local",
                 show_default=True, help="local process pool, a Dask LocalCluster, or in-process."),
    click.option("--scheduler", metavar="tcp://HOST:PORT", default=None,
                 help="Use an existing Dask cluster (implies --executor dask)."),
    click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
                 help="Override a scenario field, as `run --set` does (repeatable)."),
    click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                 help="Output directory (rerun with the same one to resume)."),
    click.option("--fresh", is_flag=True, help="Discard the replications already in the output directory."),
    click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout."),
    click.option("--format", type=click.Choice(FORMATS), default="table", show_default=True, expose_value=False,
                 callback=lambda ctx, _p, v: ctx.meta.__setitem__("counterfeed.format", v),
                 help="Output: table, csv (the summary table) or json (same as --json)."),
    click.option("--quiet", "-q", is_flag=True, help="No progress bar and no table."),
]


def _with_options(fn):
    for opt in reversed(_EXECUTOR_OPTIONS):
        fn = opt(fn)
    return fn


def _load(path: str, sets: tuple[str, ...] = ()):
    """The scenario at ``path`` with the ``--set`` overrides applied, checked as ``validate`` checks it
    (a located error is a UserError: exit 2, nothing written)."""
    from counterfeed.cli import parse_sets
    from counterfeed.core.scenario import load_scenario
    from counterfeed.errors import CounterfeedError

    from counterfeed.core.plan import resolve

    try:
        sc = load_scenario(path)
        overrides = parse_sets(sets)
        sc = sc.with_overrides(overrides) if overrides else sc
        resolve(sc)  # whatever `validate` rejects is rejected here (the catalog's inputs by the notes' check
        # that follows: _plan_notes, _resolve_points), before any work or output
        return sc
    except CounterfeedError as exc:
        raise UserError(str(exc)) from None


def _resolve_points(sc: Any, grid: list, replications: int = 1) -> dict[str, list[str]]:
    """Every sweep point checked as ``validate`` checks a scenario; a ScenarioError names the point.
    Returns the points' notes (``Plan.notes``): each note and the points (``FIELD=V, ...``) it holds at."""
    from counterfeed.calibration.sweep import grid_points, point_error
    from counterfeed.core.plan import resolve
    from counterfeed.errors import ScenarioError

    notes: dict[str, list[str]] = {}
    for overrides, point in grid_points(sc, grid, estimators=True, replications=replications):
        try:
            plan = resolve(point)
            point_notes = plan.checked_notes()  # the catalog's inputs at this point, as `validate` checks them
        except ScenarioError as exc:
            raise point_error(overrides, exc) from None
        for note in point_notes:
            notes.setdefault(note, []).append(", ".join(f"{k}={v}" for k, v in overrides.items()))
    return notes


def _plan_notes(sc: Any) -> list[str]:
    from counterfeed.core.plan import resolve

    return resolve(sc).checked_notes()


def _print_notes(notes: dict[str, list[str]], points: int = 1) -> None:
    """Each note once on stderr (as ``validate`` prints them; a replication's run does not), with the
    ``--vary`` points it holds at unless it holds at all ``points``."""
    for note, where in notes.items():
        at = "" if len(where) >= points else f"--vary {'; '.join(where)}: "
        click.echo(f"note: {at}{note}", err=True)


def _executor(kind: str, workers: int | None, scheduler: str | None, tasks: int):
    """The executor for ``tasks`` replications (at most that many local worker processes)."""
    from counterfeed.core.executors import get_executor

    return get_executor(kind, workers=workers, scheduler=scheduler, tasks=tasks)


def _check_sharding(sc: Any, executor: str, scheduler: str | None, grid: Any = (), command: str = "calibrate") -> None:
    """A sharded scenario (``execution.shards`` > 1, in the file, by ``--set`` or varied) on the Dask
    executor: refused before anything starts or is written, naming ``command`` (``calibrate`` or
    ``sweep``) and where the shards came from (the first ``--vary execution.shards`` point above 1,
    when varied: the base scenario's value is then not used). Each replication runs inside a Dask
    worker, a daemonic process that cannot start the shards' cluster: every replication failed with
    "Nanny failed to start" (break test 7). Cheap: run before the scenario's costlier checks."""
    from counterfeed.errors import ScenarioError

    if executor != "dask" and not scheduler:
        return
    why = ("with the Dask executor: each replication runs inside a Dask worker, which cannot start the shards' "
           f"own cluster; {command} with the local executor (its replications may shard)")
    for f, values in grid:
        if f == "execution.shards":  # every point sets it: the base scenario's value is not used
            for v in values:
                if isinstance(v, int) and not isinstance(v, bool) and v > 1:
                    raise ScenarioError(f"--vary execution.shards={v}: {v} shards {why}, or drop --vary "
                                        "execution.shards (sharding does not change the numbers)")
            return
    shards = int(sc.execution.shards)
    if shards > 1:
        raise sc.error(f"{shards} shards {why}, or unsharded (execution.shards: 1): the numbers are the same",
                       "execution.shards")


#: ``calibrate --strict``: some row undercovers or over-rejects (1 is failed replications, 2 user errors)
STRICT_EXIT_CODE = 3


def _finish(result: Any, *, title: str, extra: list[str], as_json: bool, quiet: bool,
            strict: bool = False) -> None:
    from counterfeed.calibration.calibrate import _label, flagged_rows, summary_table, summary_warnings

    payload = result.to_json()
    fmt = "json" if as_json else click.get_current_context().meta.get("counterfeed.format", "table")
    if fmt == "json":
        click.echo(_json.dumps(payload, indent=1))
    elif fmt == "csv":
        result.summary.to_csv(sys.stdout, index=False)
    elif not quiet:
        console = table_console()
        print_table(summary_table(result.summary, title=title, extra=extra), console)
        cate = getattr(result, "cate", None)  # calibrate's result has per-user CATE scores, a sweep's none
        if cate is not None and len(cate):
            from counterfeed.calibration.cate_summary import cate_table
            print_table(cate_table(cate), console)
        for line in summary_warnings(result.summary, extra=extra):
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        if len(flagged_rows(result.summary)) and len(result.summary) > 1:
            k = len(result.summary)
            console.print(f"[dim]each row's verdict is a one-sided exact binomial test at 2.5%: with {k} rows, up "
                          f"to about {k} x 2.5% = {k * 2.5:g}% of well-calibrated rows may be flagged by chance "
                          f"(--strict fails only at the Bonferroni level 2.5%/number of tests)[/dim]",
                          highlight=False, soft_wrap=True)
        empty = payload.get("without_estimates") or 0
        if empty:
            console.print(f"warning: {empty} of {payload['completed']} replications returned no estimate "
                          "(the scenario's analysis estimated nothing in them): they count as completed but are in "
                          "no row of the summary", markup=False, highlight=False, soft_wrap=True)
        console.print(f"[dim]{payload['completed']} replications ({payload['computed_now']} computed now) "
                      f"in {result.out_dir}[/dim]")
    if result.errors:
        first = next(iter(result.errors.values())).get("error", {})
        click.echo(f"warning: {len(result.errors)} replication(s) failed (first: {first.get('type')}: "
                   f"{first.get('message')}); see {result.out_dir / 'replications'}/*.error.json; "
                   "a replication is a function of its seed, so rerunning the same command retries them "
                   "usefully only when they failed for a passing reason (a lost worker, a full disk); the "
                   "summary leaves them out, which conditions it on the replications that succeeded", err=True)
        sys.exit(1)
    if not strict:
        return
    from counterfeed.calibration.summary import strict_failures

    failed = strict_failures(result.summary)
    if len(failed):
        names = "; ".join(f"{_label(r, extra)} ({r['verdict']})" for r in failed.to_dict("records"))
        click.echo(f"error: --strict: {len(failed)} of {len(result.summary)} rows fail their exact test at the "
                   f"Bonferroni level 2.5%/{_tests(result.summary)}: {names}; exit code {STRICT_EXIT_CODE}", err=True)
        sys.exit(STRICT_EXIT_CODE)
    flagged = len(flagged_rows(result.summary))
    if flagged:
        click.echo(f"note: --strict: {flagged} row(s) flagged at 2.5% each, none at the Bonferroni level "
                   f"2.5%/{_tests(result.summary)} (so many rows flag some by chance): exit code 0", err=True)


def _tests(summary: Any) -> int:
    """How many exact tests the verdicts of ``summary`` made (the Bonferroni divisor of --strict)."""
    return int(sum(summary[c].notna().sum() for c in ("undercoverage_p", "overrejection_p") if c in summary))


def _guard(fn, *args, **kwargs):
    from counterfeed.errors import CounterfeedError

    try:
        return fn(*args, **kwargs)
    except CounterfeedError as exc:
        raise UserError(str(exc)) from None


@contextlib.contextmanager
def _resumable():
    """An interrupt says that the finished replications are kept (each is saved as it finishes)."""
    from counterfeed.core.interrupts import Interrupted

    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted("the replications that finished are kept: rerun the same command to resume "
                          "(--fresh starts over).") from None


@click.command("calibrate", epilog="""\b
Examples:
  counterfeed calibrate scenarios/quickstart.yaml -n 200
  counterfeed calibrate scenarios/aa_test.yaml -n 2000 --workers 8 --out runs/aa-cal
  counterfeed calibrate scenarios/aa_test.yaml -n 2000 --scheduler tcp://10.0.0.5:8786 --json
  counterfeed calibrate scenarios/aa_test.yaml -n 500 --strict    # exit 3 if a row undercovers
Rerun the same command to resume after an interruption; finished replications are kept.
Each row's verdict is a one-sided exact binomial test at 2.5%: with k rows, up to about
k x 2.5% of well-calibrated rows may be flagged by chance. --strict controls the family: it
fails only on rows whose test fails at the Bonferroni level 2.5%/m (m tests: one per row, plus
one per A/A row for its false-positive rate), so all-calibrated rows fail it at most 2.5% of runs.
Exit codes: 0 done; 1 some replications failed (rerun to retry); 2 user error (nothing written);
3 with --strict, some row undercovers or over-rejects at the Bonferroni level.""")
@click.argument("scenario", type=click.Path(dir_okay=False))
@_with_options
@click.option("--strict", is_flag=True,
              help="Exit 3 when a row undercovers or over-rejects at the Bonferroni level 2.5%/m, m the "
                   "number of exact tests judged (family-wise rate at most 2.5%; the verdict column keeps "
                   "each row's own 2.5% test). Outputs are still written.")
def calibrate_command(scenario: str, replications: int, workers: int | None, executor: str,
                      scheduler: str | None, sets: tuple[str, ...], out_dir: str | None, fresh: bool,
                      as_json: bool, quiet: bool, strict: bool) -> None:
    """Replicate SCENARIO under many seeds and score its estimators.

    Reports per estimator, metric, arm and estimand: bias, RMSE, coverage of the true effect (with a
    Wilson interval), mean interval width, rejection rate (false-positive rate in an A/A scenario,
    power otherwise), the minimum detectable effect and a verdict (undercovers, over-rejects,
    overcovers or ok: one-sided exact binomial tests at 2.5%), with a warning naming each row that
    undercovers or over-rejects. Writes
    calibration.json, calibration.csv, replications.parquet, coverage.png and estimate_vs_truth.png to
    the output directory (default: <output.dir>/calibrate-<name>/).
    """
    from counterfeed.calibration.calibrate import calibrate, check_calibratable

    sc = _load(scenario, sets)
    _guard(_check_sharding, sc, executor, scheduler)  # cheap: before the split draws of check_calibratable
    _guard(check_calibratable, sc, "calibrate", replications)  # before any worker starts or any file is written
    _print_notes({note: [""] for note in _guard(_plan_notes, sc)})
    ex = _guard(_executor, executor, workers, scheduler, replications)
    with _resumable(), ex:
        result = _guard(calibrate, sc, replications, executor=ex, out_dir=out_dir, fresh=fresh,
                        quiet=quiet or as_json)
    _finish(result, title=f"Calibration of {sc.name} ({result.completed} replications)", extra=[],
            as_json=as_json, quiet=quiet, strict=strict)


@click.command("sweep", epilog="""\b
Examples:
  counterfeed sweep scenarios/quickstart.yaml --vary population.users=1000,5000,20000 -n 100
  counterfeed sweep s.yaml --vary experiment.duration=7d,14d,28d --vary population.users=2000,8000 -n 200
Values are YAML scalars; any scenario field path works (e.g. experiment.arms.treatment.factors).""")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--vary", "vary", multiple=True, required=True, metavar="FIELD=V1,V2,...",
              help="A scenario field and the values to try (repeat for a grid).")
@_with_options
def sweep_command(scenario: str, vary: tuple[str, ...], replications: int, workers: int | None,
                  executor: str, scheduler: str | None, sets: tuple[str, ...], out_dir: str | None,
                  fresh: bool, as_json: bool, quiet: bool) -> None:
    """Replicate SCENARIO over a grid of field values: power and minimum detectable effect.

    For each grid point and estimator, metric and arm: the rejection rate (power; the false-positive
    rate where the arms are identical) with a Wilson interval, and the MDE at 80% power and 5%
    two-sided significance (2.8 x the mean standard error). Writes sweep.json, sweep.csv,
    replications.parquet and power.png (default: <output.dir>/sweep-<name>/).
    """
    from counterfeed.calibration.sweep import parse_vary, sweep

    sc = _load(scenario, sets)
    grid = _guard(lambda: [parse_vary(v) for v in vary])
    _guard(_check_sharding, sc, executor, scheduler, grid, "sweep")  # cheap: before the points' split draws
    notes = _guard(_resolve_points, sc, grid, replications)  # every point checked (as `validate` would) first
    points = math.prod(len(values) for _, values in grid)
    _print_notes(notes, points)
    ex = _guard(_executor, executor, workers, scheduler, replications * points)
    with _resumable(), ex:
        result = _guard(sweep, sc, grid, replications, executor=ex, out_dir=out_dir, fresh=fresh,
                        quiet=quiet or as_json)
    _finish(result, title=f"Sweep of {sc.name}", extra=[f for f, _ in grid], as_json=as_json,
            quiet=quiet)


COMMANDS = [calibrate_command, sweep_command]


def register(cli: click.Group) -> None:
    """Mount the commands on the main ``counterfeed`` group (for the register_commands hook)."""
    for cmd in COMMANDS:
        cli.add_command(cmd)


@click.group()
def _standalone() -> None:
    """Calibration commands (also mounted in the main ``counterfeed`` CLI)."""


register(_standalone)

if __name__ == "__main__":  # python -m counterfeed.calibration.cli calibrate ...
    _standalone()
