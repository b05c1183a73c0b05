"""The ``counterfeed`` command line: one click group; user errors are one line and exit code 2.

BLAS threads: :func:`main` sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` to 1 (unless already set) before anything imports numpy. counterfeed's
parallelism is processes (worlds, replications, chains); a multi-threaded BLAS in each of them
oversubscribes the cores and makes PyMC/nutpie 10-30x slower. Set the variables yourself to
override; Python API users set them before importing numpy (docs/sem.md). It sets the memory
allocators' variables the same way (:mod:`counterfeed.core.allocators`).
"""

from __future__ import annotations

import gc
import importlib
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

import click

from counterfeed import _json
from counterfeed._tables import Column, emit_table, format_option, print_rich_table, table_console
from counterfeed.errors import CounterfeedError

__all__ = ["cli", "main", "LazyGroup"]


class LazyGroup(click.Group):
    """A click group whose subcommands can be imported on first use (keeps ``--help`` fast)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, tuple[str, str]] = {}

    def add_lazy_command(self, name: str, target: str, help: str = "") -> None:
        """Add ``name`` resolved from ``"module:attribute"`` when it is first used."""
        self.lazy[name] = (target, help)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, _, attr = self.lazy[name][0].partition(":")
            cmd = getattr(importlib.import_module(module), attr)
            if cmd.name != name:
                cmd.name = name
            self.commands[name] = cmd
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(60)))
            else:
                rows.append((name, self.lazy[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def parse_sets(values: tuple[str, ...]) -> dict[str, Any]:
    """``--set FIELD=VALUE`` pairs; values are plain YAML scalars or collections (no tags)."""
    from counterfeed.core._yaml import YamlProblem, load_yaml

    out: dict[str, Any] = {}
    for item in values:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise click.BadParameter(f"expected FIELD=VALUE, got {item!r}", param_hint="--set")
        try:
            out[key.strip()] = load_yaml(raw)[0]
        except YamlProblem as exc:
            raise click.BadParameter(f"{key.strip()}: {exc.message}", param_hint="--set") from None
    return out


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, (int, float)):
        if isinstance(x, float) and not math.isfinite(x):
            return "-"
        return f"{x:.{digits}g}"
    return str(x)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="counterfeed", prog_name="counterfeed")
def cli() -> None:
    """Simulate recommender systems, run A/B experiments on simulated users, and score every
    estimate against the simulator's ground truth.

    \b
    Example:
      counterfeed run scenarios/quickstart.yaml
    """


@cli.command("run")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--out", "out", type=click.Path(file_okay=False), help="Parent directory of the run directory.")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
              help="Override a scenario field, e.g. --set population.users=1000 (repeatable).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Processes for the worlds (default: automatic); with --shards, the local Dask cluster's "
                   "worker processes (default: one per shard, at most one per core; shards share them round robin).")
@click.option("--shards", type=click.IntRange(min=1, max=1024),
              help="Split every world's users into N blocks simulated by Dask workers (execution.shards).")
@click.option("--scheduler", metavar="ADDRESS",
              help="Dask scheduler for the shards, e.g. tcp://10.0.0.5:8786 (default: a LocalCluster).")
@click.option("--no-report", is_flag=True, help="Do not write report.md/report.html.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (same as --format json).")
@format_option()
@click.option("--quiet", "-q", is_flag=True, help="No progress messages.")
def run_command(scenario: str, out: str | None, sets: tuple[str, ...], workers: int | None,
                shards: int | None, scheduler: str | None, no_report: bool, as_json: bool, fmt: str,
                quiet: bool) -> None:
    """Run a scenario: simulate the A/B world and the counterfactual worlds, estimate, score.

    ``--format csv`` prints the estimates table (the run directory's estimates.csv); ``json`` the
    summary, estimates, SRM check and timings.

    \b
    Example:
      counterfeed run scenarios/quickstart.yaml --set population.users=1000
      counterfeed run scenarios/quickstart.yaml --format csv > estimates.csv
      counterfeed run scenarios/quickstart.yaml --shards 4 --scheduler tcp://10.0.0.5:8786
    """
    from counterfeed.core.runner import run

    sc = _scenario_with_options(scenario, sets, shards, scheduler, {"output.report": False} if no_report else {})
    _check_workers(workers, sc, scheduler)
    from counterfeed.core.scenario import check_output_dir

    check_output_dir(sc, out)  # --out, else output.dir: not a file, nor under one
    fmt = "json" if as_json else fmt
    result = run(sc, output_dir=out, write=True, quiet=quiet, workers=workers)  # progress: stderr
    gc.freeze()  # the run's objects live until exit: no collection (nor the one at exit) scans them again
    if fmt == "csv":
        from counterfeed.core.rundir import write_estimates_csv

        write_estimates_csv(result, sys.stdout)  # the run directory's estimates.csv, byte for byte
        return
    if fmt == "json":
        doc = {"run_dir": str(result.run_dir), "srm": result.srm,
               "summary": result.summary().to_dict(orient="records"),
               "population_metrics": result.manifest.get("population_metrics"),
               "estimates": [e.to_dict() for e in result.estimates], "timings": result.timings,
               "execution": result.manifest.get("execution")}  # the manifest's: null when unsharded
        click.echo(_json.dumps(doc, indent=2))
        return
    _print_result(result)


def _check_workers(workers: int | None, sc: Any, scheduler: str | None) -> None:
    """``--workers`` with an existing Dask cluster is a usage error (``run`` and ``validate``); the
    message names where the cluster's address came from: ``--scheduler`` (``scheduler``, the
    option's value), ``--set execution.scheduler=...`` or the scenario file's line."""
    if workers is None or not sc.execution.scheduler:
        return
    from counterfeed.core.scenario_messages import SET_ORIGIN

    origin = "--scheduler" if scheduler is not None else "execution.scheduler"
    where = sc.error("", "execution.scheduler")  # located: the file's line, or --set
    if scheduler is None and where.file == SET_ORIGIN:
        origin = f"{SET_ORIGIN} {origin}"
    elif scheduler is None and where.file:
        origin += f" in {where.file}" + (f":{where.line}" if where.line else "")
    raise click.UsageError(f"--workers: the Dask cluster at {sc.execution.scheduler} ({origin}) "
                           "brings its own workers; --workers sets the processes of a run on this machine")


def _scenario_with_options(path: str, sets: tuple[str, ...], shards: int | None, scheduler: str | None,
                           extra: dict[str, Any]) -> Any:
    """The scenario at ``path`` with ``--set`` values, ``--shards``, ``--scheduler`` (stripped, as a
    ``--set`` value is) and ``extra`` overrides applied: what ``run`` runs and ``validate`` checks."""
    from counterfeed.core.scenario import check_arms_filled, load_scenario

    sc = load_scenario(path)
    overrides = {**parse_sets(sets), **extra}
    options: dict[str, str] = {}  # field -> the option that set it: its errors name the option, not --set
    if shards is not None:  # checked as the scenario's execution.shards would be
        overrides["execution.shards"], options["execution.shards"] = shards, "--shards"
    if scheduler is not None:
        overrides["execution.scheduler"], options["execution.scheduler"] = scheduler.strip(), "--scheduler"
    sc = _with_options(sc, overrides, options) if overrides else sc
    check_arms_filled(sc)  # a run would fail at its estimates, after simulating every world
    return sc


def _with_options(sc: Any, overrides: dict[str, Any], options: dict[str, str]) -> Any:
    """``sc.with_overrides(overrides)``; a problem in a field that a command-line option set (``options``:
    field -> option) is attributed to that option (``--shards: ...``), not to ``--set``."""
    from counterfeed.errors import ScenarioError

    try:
        return sc.with_overrides(overrides)
    except ScenarioError as exc:
        option = options.get(exc.field or "")
        if option is None or exc.file != "--set" or exc.others or exc.also:
            raise
        raise ScenarioError(exc.bare_message, file=option) from None


def _yes_no(v: Any) -> str:
    return "" if v is None else ("[green]yes[/]" if v else "[red]no[/]")


def _print_result(result: Any) -> None:
    from counterfeed.core.display import estimator_label, level_text, levels_differ, repeated_estimators
    from counterfeed.core.findings import headline

    console = table_console()
    for line in headline(result):  # what to conclude first: the same sentences lead the report
        console.print(f"- {line}", markup=False, highlight=False, soft_wrap=True)
    sc = result.scenario
    rows = [{"metric": r.metric, "arm": r.arm, "ab": r.ab_value, "world": r.world_value,
             "effect": None if r.arm == sc.control else r.true_effect}
            for r in result.summary().itertuples(index=False)]
    print_rich_table(rows, [Column("metric"), Column("arm"), Column("ab", "A/B mean", _fmt, True),
                            Column("world", "all-arm world", _fmt, True),
                            Column("effect", "true effect", lambda v: "" if v is None else _fmt(v), True)],
                     title=f"{sc.name}: per arm and metric (A/B world, counterfactual world, true effect "
                           f"vs {sc.control})", console=console)
    srm = result.srm
    flag = "[bold red]SAMPLE RATIO MISMATCH[/]" if srm.get("flagged") else "ok"
    console.print(f"SRM check: chi2={_fmt(srm.get('statistic'))}, p={_fmt(srm.get('p_value'))} -> {flag}")
    if result.estimates:
        error_title = "error (interference bias)" if result.manifest.get("training") else "error"
        repeated = repeated_estimators((e.estimator, e.analysis) for e in result.estimates)
        rows = [{**_estimate_row(e), "estimator": estimator_label(e.estimator, e.analysis, repeated)}
                for e in result.estimates]
        if levels_differ((e.level for e in result.estimates), sc.level):  # analyses set their own levels
            for row, e in zip(rows, result.estimates):
                row["interval"] += f" {level_text([e.level], e.level)}"
        cols = [Column("estimator"), Column("metric"), Column("arm"), Column("estimand"), Column("segment"),
                Column("point", "estimate", _fmt, True), Column("interval", right=True),
                Column("p", "p / P(better)", _fmt, True), Column("truth", show=_fmt, right=True),
                Column("error", error_title, _fmt, True), Column("covered", show=_yes_no)]
        print_rich_table(rows, cols, title="Estimates vs truth", console=console)
        _print_estimate_notes(console, result.estimates, repeated)
    _print_closed_loop(console, result.manifest)
    tm = result.timings
    console.print(f"{int(tm.get('sessions', 0)):,} sessions simulated in {tm.get('simulate_s', 0):.1f} s "
                  f"({tm.get('sessions_per_s', 0):,.0f}/s); total {tm.get('total_s', 0):.1f} s")
    if result.run_dir:
        console.print(f"run directory: {result.run_dir}")


def _estimate_row(e: Any) -> dict[str, Any]:
    """One row of the run's estimates table; an estimate flagged ``identified: false`` (a back-door
    estimate under ``proceed_when_unidentifiable``) shows it in its estimand cell."""
    return {**e.to_dict(), "segment": e.segment or "", "interval": f"[{_fmt(e.lower)}, {_fmt(e.upper)}]",
            "estimand": e.estimand + (" NOT IDENTIFIED" if e.diagnostics.get("identified") is False else
                                      " PARTLY IDENTIFIED" if str(e.diagnostics.get("point_estimand", "")).endswith(
                                          "[identified]") else ""),  # did-staggered: scored over the identified cells
            "p": e.p_value if e.p_value is not None else e.prob_better}


def _print_estimate_notes(console: Any, estimates: list[Any], repeated: set[str] | None = None) -> None:
    """Under the estimates table: each estimator's warnings, and what an interval shown [-, -] means;
    ``repeated``: the estimators several entries ran, as the table found them (None: found here)."""
    from counterfeed.core._report_sections import _warnings_of
    from counterfeed.core.display import estimator_label, repeated_estimators

    if repeated is None:
        repeated = repeated_estimators((e.estimator, e.analysis) for e in estimates)
    lines = []
    for e in estimates:
        where = (f"{estimator_label(e.estimator, e.analysis, repeated)} · {e.metric} · {e.arm}"
                 + (f" · {e.segment}" if e.segment else ""))
        if (e.point is not None and e.diagnostics.get("identified") is not False  # NOT IDENTIFIED: its warning says
                and (_fmt(e.lower) == "-" or _fmt(e.upper) == "-")):
            ar = e.diagnostics.get("ar_set")  # an instrumental-variable estimate's Anderson-Rubin set
            lines.append(f"{where}: interval [-, -]: no finite interval (the Anderson-Rubin set is {ar}: the "
                         "instrument is too weak to bound the effect)" if ar else
                         f"{where}: interval [-, -]: no finite interval (unbounded, e.g. Fieller's interval for a "
                         "relative lift whose control mean is not clearly away from 0, or not computable; see "
                         "the warnings)")
        lines.extend(f"warning ({where}): {w}" for w in _warnings_of(e))
    for line in dict.fromkeys(lines):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _print_closed_loop(console: Any, manifest: dict[str, Any]) -> None:
    """Phases (decisions, realized vs oracle value) and adaptive allocation, when the run had them."""
    phases = manifest.get("phases")
    if phases:
        rows = [{**ph, "days": f"{_fmt(ph.get('start'))}-{_fmt(ph.get('end'))}"} for ph in phases]
        print_rich_table(rows, [Column(c, show=str) for c in ("phase", "days", "control", "rule", "metric",
                                                                "decision", "chosen")],
                         title="Phases: decisions", console=console)
        value = manifest.get("phase_value") or {}
        if value:
            console.print("value: " + ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()
                                                if isinstance(v, (int, float))))
    alloc = manifest.get("allocation")
    if alloc and alloc.get("history"):
        last = alloc["history"][-1]
        probs = ", ".join(f"{a}={_fmt(p)}" for a, p in last.get("probabilities", {}).items())
        console.print(f"adaptive allocation ({alloc.get('method')}): final assignment probabilities {probs} "
                      f"after {len(alloc['history']) - 1} updates")


@cli.command("validate")
@click.argument("scenario", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
              help="Override a scenario field as `run --set` would (repeatable).")
@click.option("--shards", type=click.IntRange(min=1, max=1024), help="As `run --shards` (execution.shards).")
@click.option("--scheduler", metavar="ADDRESS", help="As `run --scheduler` (execution.scheduler).")
@click.option("--workers", type=click.IntRange(min=1), help="As `run --workers`.")
@click.option("--json", "as_json", is_flag=True, help="Print the resolved scenario as JSON.")
@click.option("--out", "out", type=click.Path(file_okay=False), help="As `run --out` (its parent directory).")
@click.option("--no-report", is_flag=True, help="As `run --no-report`.")
@click.option("--quiet", "-q", is_flag=True, help="As `run --quiet` (validate prints one line either way).")
def validate_command(scenario: str, sets: tuple[str, ...], shards: int | None, scheduler: str | None,
                     workers: int | None, as_json: bool, out: str | None, no_report: bool, quiet: bool) -> None:
    """Check a scenario (schema, plugin names, plugin options, the catalog's file) without running it.

    With ``--set``, ``--shards``, ``--scheduler``, ``--workers``, ``--out`` or ``--no-report``, the scenario is
    checked with what ``run`` would apply for the same options, so whatever that run would reject is rejected
    here first, and a run's command line validates with ``run`` replaced by ``validate``. (Whether a
    scheduler answers is known only when a run connects to it.)

    \b
    Example:
      counterfeed validate scenarios/quickstart.yaml
      counterfeed validate scenarios/quickstart.yaml --set population.users=1000 --shards 4
    """
    from counterfeed.core.plan import resolve

    from counterfeed.core.scenario import check_output_dir

    sc = _scenario_with_options(scenario, sets, shards, scheduler, {"output.report": False} if no_report else {})
    _check_workers(workers, sc, scheduler)
    notes = resolve(sc).checked_notes()  # and the catalog's file and rows, as building it would check them
    check_output_dir(sc, out)  # where `run` would write: --out, else output.dir
    for line in notes:  # valid, but likely not what was meant (run prints them too)
        click.echo(f"note: {line}", err=True)
    if as_json:
        click.echo(_json.dumps(sc.to_dict(), indent=2))
    else:
        click.echo(f"ok: {sc.name} ({sc.population.users:,} users, arms {', '.join(sc.arms)}, "
                   f"{sc.experiment.duration:g} days)")


@cli.group("plugins", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (same as --format json).")
@format_option()
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool, fmt: str) -> None:
    """List every plugin class with its kind, where it came from and its version.

    \b
    Examples:
      counterfeed plugins --json
      counterfeed plugins show popularity
    """
    if ctx.invoked_subcommand is not None:
        return
    from counterfeed.core.plugin_docs import metric_facts
    from counterfeed.core.plugins import get_registry

    infos = [{**i.to_dict(), **metric_facts(i)} for i in get_registry().all_plugins()]
    if as_json or fmt == "json":
        click.echo(_json.dumps(infos, indent=2))
        return
    cols = [Column("kind"), Column("name"), Column("source"), Column("version"), Column("module"),
            Column("plugin", "registered by")]
    emit_table(infos, cols, fmt, title="counterfeed plugins")


@plugins_command.command("show")
@click.argument("name")
@click.option("--kind", type=click.Choice(["recommender", "user-model", "catalog", "metric", "estimator"]),
              help="The kind, when several kinds have a plugin of that name.")
@format_option()
def plugins_show(name: str, kind: str | None, fmt: str) -> None:
    """Show a plugin: what it does and its options (type, default, allowed values, description).

    \b
    Example:
      counterfeed plugins show popularity
      counterfeed plugins show diff-in-means --format json
    """
    from counterfeed.core.plugin_docs import describe, find
    from counterfeed.core.plugins import get_registry
    from counterfeed.errors import PluginError

    found = find(name, kind)
    if not found:
        import difflib

        names = sorted({i.name for i in get_registry().all_plugins() if kind is None or i.kind == kind})
        # close in spelling and from the same first letter: a typo keeps the first letter far more often
        # than not, and 'nope' is not a misspelt 'ope' (one insertion, yet difflib's ratio 0.86)
        key = name.strip().lower()  # plugin names are lower case: 'RATIO' and ' ratio' mean 'ratio'
        close = [c for c in difflib.get_close_matches(key, names, n=3, cutoff=0.6) if c[:1] == key[:1]]
        raise PluginError(f"no plugin named '{name}'" + (f"; did you mean {' or '.join(map(repr, close))}?"
                                                        if close else "; see 'counterfeed plugins'"))
    if len(found) > 1:
        raise click.UsageError(f"'{name}' names a {' and a '.join(i.kind for i in found)}; add --kind")
    d = describe(found[0])
    if fmt == "json":
        click.echo(_json.dumps(d, indent=2))
        return
    cols = [Column("option"), Column("type"), Column("default", show=lambda v: "null" if v is None else str(v)),
            Column("bounds", "allowed"), Column("description")]
    rows = [{**r, "default": "(required)" if r["required"] else r["default"]} for r in d["options"]]
    if fmt == "table":
        click.echo(f"{d['kind']} '{d['name']}' ({d['class']}; {d['source']} {d['version']})\n")
        if "level" in d:
            click.echo(f"level: {d['level']}; aggregation: {d['aggregation']}; "
                       f"{'higher' if d['higher_is_better'] else 'lower'} is better")
            click.echo("identified by a user-randomized A/B comparison: "
                       + ("yes\n" if d["identified"] else f"no: {d['not_identified']}\n"))
        click.echo(d["doc"] + "\n")
        if not rows:
            click.echo("No options.")
            return
    emit_table(rows, cols, fmt, title="Options")


@cli.command("report")
@click.argument("run_dir", type=click.Path(file_okay=False))
def report_command(run_dir: str) -> None:
    """Rebuild report.md and report.html of a finished run directory.

    \b
    Example:
      counterfeed report runs/quickstart-20261127-120000
    """
    from counterfeed.core.report import write_report
    from counterfeed.errors import DataError

    if not (Path(run_dir) / "manifest.json").is_file():
        raise DataError(f"{run_dir}: not a finished counterfeed run directory (no manifest.json)")
    try:
        paths = write_report(run_dir)
    except OSError as exc:  # a read-only or full run directory: the old report is left as it was
        from counterfeed.errors import OutputError

        raise OutputError(f"cannot write the report into '{run_dir}': {exc.strerror or exc}") from None
    for name, p in paths.items():
        click.echo(f"{name}: {p}")


_COMMANDS_REGISTERED = False


def _register_plugin_commands() -> None:
    global _COMMANDS_REGISTERED
    if _COMMANDS_REGISTERED:
        return
    _COMMANDS_REGISTERED = True
    from counterfeed.core.plugins import get_registry

    get_registry().load_commands(cli)


BLAS_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def pin_blas_threads() -> None:
    """One BLAS thread per process unless the user chose otherwise (see the module docstring)."""
    for var in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(var, "1")


_NOTHING = "nothing was published."


def _exit_interrupted(detail: str | None) -> NoReturn:
    """Say "Interrupted; <detail>" on stderr and exit 130 ("Terminated; <detail>" and 143 after a
    SIGTERM; "Aborted." when ``detail`` is None), with SIGINT and SIGTERM ignored from here on, so
    that a signal arriving during the shutdown cannot turn that exit code into death by signal
    (core/interrupts.py)."""
    from counterfeed.core import interrupts

    interrupts.ignore_further()
    code = interrupts.exit_code() if interrupts.received() else 130
    word = "Terminated" if code == 128 + signal.SIGTERM else "Interrupted"
    click.echo("Aborted." if detail is None else f"{word}; {detail}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script."""
    pin_blas_threads()  # before any command imports numpy
    from counterfeed.core.allocators import process_defaults

    process_defaults()  # likewise: no transparent huge pages for NumPy, Arrow on the system allocator
    from counterfeed.core import interrupts

    interrupts.install()  # a Ctrl-C swallowed on its way up still stops the run (core/interrupts.py)
    try:
        _register_plugin_commands()
        cli.main(args=argv, prog_name="counterfeed", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C inside a command into Abort; say what happened to the run.
        cause = exc.__cause__ or exc.__context__
        interrupted = isinstance(cause, KeyboardInterrupt)
        _exit_interrupted(getattr(cause, "detail", _NOTHING) if interrupted else None)
    except click.UsageError as exc:  # one line: the problem and where to look, no usage block
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"Error: {exc.format_message()}{hint}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except CounterfeedError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        _exit_interrupted(getattr(exc, "detail", _NOTHING))


if __name__ == "__main__":  # python -m counterfeed.cli, as the console script
    main()
