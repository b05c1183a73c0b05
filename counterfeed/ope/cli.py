"""``counterfeed ope``: evaluate a policy offline from a logged-feedback file."""

from __future__ import annotations

import math
from typing import Any

import click

from counterfeed import _json
from counterfeed._tables import emit_records, format_option, print_table, table_console
from counterfeed.ope.reward import MAX_FOLDS  # the package is imported with this module anyway

__all__ = ["ope"]

_EPILOG = """\b
Examples:
  counterfeed ope examples/ope_log.csv --policy random
  counterfeed ope logs.parquet --policy popularity --estimators ips,snips,dr --json
  counterfeed ope logs.csv --target-probs target.parquet --columns item=item_id,reward=click
  counterfeed ope logs.parquet --policy popularity --policy-option exploration=epsilon \\
      --policy-option epsilon=0.05 --clip 50 --bootstrap 500
"""


def _option_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _parse_policy_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.ClickException(f"--policy-option '{pair}' must look like key=value")
        k, v = pair.split("=", 1)
        out[k.strip()] = _option_value(v.strip())
    return out


def _fmt(x: float) -> str:
    """5 decimals in the usual range; 6 significant digits in scientific notation for huge or tiny values."""
    if not math.isfinite(x):
        return "nan"
    return f"{x:.5f}" if x == 0 or 1e-4 <= abs(x) < 1e6 else f"{x:.6g}"


def _finite(ctx, param, value):
    """Click callback: a float option must be a finite number (NaN/inf pass click's FloatRange)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value


def _not_nan(ctx, param, value):
    if value is not None and math.isnan(value):
        raise click.BadParameter("nan is not a number (inf is allowed)", ctx=ctx, param=param)
    return value


@click.command("ope", epilog=_EPILOG)
@click.argument("log_path", metavar="LOG", type=click.Path(dir_okay=False))
@click.option("--policy", help="Registered recommender to evaluate (the target policy).")
@click.option("--policy-option", "policy_options", multiple=True, metavar="KEY=VALUE",
              help="Option of the target recommender (repeatable); values are YAML scalars.")
@click.option("--fit-log", type=click.Path(dir_okay=False),
              help="Log (same format and --columns as LOG) the --policy recommender is fitted on; default: LOG "
                   "itself, which biases the estimates upward (winner's curse) for a recommender that learns.")
@click.option("--target-probs", type=click.Path(dir_okay=False),
              help="Table of target probabilities: round,position,item,prob or item,position,prob.")
@click.option("--estimators", default="ips,snips,dr", show_default=True,
              help="Comma-separated: dm, ips, snips, dr, sndr, switch-dr, dr-os.")
@click.option("--columns", help="Column mapping, e.g. item=item_id,reward=click.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Interval level.")
@click.option("--clip", type=click.FloatRange(0, min_open=True), callback=_finite,
              help="Maximum importance weight (a finite positive number).")
@click.option("--tau", type=click.FloatRange(0), default=10.0, show_default=True, callback=_not_nan,
              help="Switch-DR threshold (inf: DR).")
@click.option("--lambda", "lam", type=click.FloatRange(0), default=100.0, show_default=True, callback=_not_nan,
              help="DR-OS shrinkage (inf: DR).")
@click.option("--folds", type=click.IntRange(1, MAX_FOLDS), default=5, show_default=True,
              help=f"Cross-fitting folds of the reward model (at most {MAX_FOLDS}: more only adds fits, "
                   "each on nearly the whole log).")
@click.option("--bootstrap", type=click.IntRange(0), default=0, show_default=True,
              help="Bootstrap draws over rounds, refitting the reward model in each for DM/DR-type "
                   "estimators (0: analytic intervals, except DM: 200 refit draws). At least "
                   "1 + 2/(1 - level) (41 at 95%) so each tail has a draw beyond the interval's end.")
@click.option("--slate-size", type=click.IntRange(1), help="Slate size (default: largest logged position + 1).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of folds, bootstrap and policy draws.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON (same as --format json).")
@format_option()
def ope(log_path, policy, policy_options, fit_log, target_probs, estimators, columns, level, clip, tau, lam,
        folds, bootstrap, slate_size, seed, as_json, fmt):
    """Estimate how a policy would do from logged impressions with propensities (off-policy evaluation).

    LOG is a CSV or Parquet file with one row per impression (round, item, position, reward,
    propensity), or a counterfeed impression log. Give the target as a registered recommender
    (--policy) or as explicit probabilities (--target-probs). Diagnostics outside their safe ranges
    are printed as warnings under the table (and in the JSON); a target with no common support with
    the log is an error (exit 2). See docs/ope.md.
    """
    from counterfeed.errors import CounterfeedError

    if (policy is None) == (target_probs is None):
        raise click.ClickException("give exactly one of --policy and --target-probs")
    if policy_options and policy is None:
        raise click.ClickException("--policy-option needs --policy")
    if fit_log and policy is None:
        raise click.ClickException("--fit-log needs --policy")
    from counterfeed.ope.evaluate import bootstrap_problem  # before the log is read and the target fitted

    if (problem := bootstrap_problem(bootstrap, level)) is not None:
        raise click.ClickException(f"--bootstrap: {problem}")
    try:
        results = _run(log_path, policy, _parse_policy_options(policy_options), fit_log, target_probs,
                       estimators, columns, level, clip, tau, lam, folds, bootstrap, slate_size, seed)
    except CounterfeedError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json or fmt == "json":
        click.echo(_json.dumps([r.to_dict() for r in results], indent=2))
        return
    if fmt == "csv":
        emit_records([r.to_dict() for r in results], "csv")
        return
    _print_table(results, log_path)


def _run(log_path, policy, options, fit_path, target_probs, estimators, columns, level, clip, tau, lam, folds,
         bootstrap, slate_size, seed):
    from counterfeed.ope import evaluate, load_log, load_target, target_from_recommender
    from counterfeed.ope.target import catalog_from_log

    log = load_log(log_path, columns, slate_size=slate_size)
    if policy is not None:
        fit = load_log(fit_path, columns, slate_size=slate_size) if fit_path else None
        kw = {"fit_log": fit.to_contract_log(), "items": catalog_from_log(log, fit)} if fit is not None else {}
        target = target_from_recommender(log, policy, options, seed=seed, slate_size=slate_size, **kw)
    else:
        target = load_target(target_probs, log)
    names = [e for e in (s.strip() for s in estimators.split(",")) if e]
    if not names:
        raise click.ClickException("--estimators is empty")
    return evaluate(log, target, names, clip=clip, level=level, bootstrap=bootstrap, seed=seed, folds=folds,
                    tau=tau, lam=lam)


def _print_table(results, log_path) -> None:
    from rich.markup import escape
    from rich.table import Table

    first = results[0]
    d0 = first.diagnostics
    table = Table(title=f"Off-policy evaluation of {log_path}: {d0['n_impressions']} impressions, "
                        f"{d0['n_rounds']} rounds; logging policy value {_fmt(first.logging_value)}")
    for col in ("estimator", "value", f"{first.level:.0%} interval", "se", "ESS", "mean weight", "max weight",
                "clipped"):
        table.add_column(col, justify="left" if col == "estimator" else "right", no_wrap=True)
    notes: list[str] = []
    for r in results:
        d = r.diagnostics
        interval = "none" if r.interval == "none" else escape(f"[{_fmt(r.lower)}, {_fmt(r.upper)}]")
        se = _fmt(r.se) if math.isfinite(r.se) else "none"
        table.add_row(r.estimator, _fmt(r.value), interval, se, f"{d['ess']:.0f}",
                      f"{d['mean_weight']:.3g}", f"{d['max_weight']:.3g}", f"{d['clipped_share']:.1%}")
        if r.interval not in ("analytic", "none"):
            notes.append(f"{r.estimator}: interval by {r.interval}")
        notes.extend(f"warning ({r.estimator}): {w}" for w in d.get("warnings", []))
    console = table_console()  # never cut numbers: no width limit when piped, narrow layout if needed
    print_table(table, console)
    for line in dict.fromkeys(notes):  # each distinct line once, in order
        console.print(line, markup=False, highlight=False, soft_wrap=True)
