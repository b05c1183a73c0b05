"""``counterfeed twin``: fit a twin of the users from an impression log, check it, evaluate policies in it."""

from __future__ import annotations

import math
import sys
from typing import Any

import click

from counterfeed import _json

__all__ = ["twin"]

_EPILOG = """\b
Examples:
  counterfeed twin fit runs/my-run --out twins/my-twin
  counterfeed twin fit logs.parquet --columns item=item_id,reward=click,time=ts --time-unit seconds \\
      --items items.csv --out twins/prod
  counterfeed twin check twins/my-twin runs/my-run --figures twins/my-twin-check
  counterfeed twin evaluate twins/my-twin --policy matrix-factorization --json
"""


class TwinError(click.ClickException):
    """A user error: one line, exit code 2 (as from the ``counterfeed`` entry point)."""

    exit_code = 2


def _err(fn, *args, **kwargs):
    """``fn(...)`` with user errors as :class:`TwinError` and warnings printed as ``warning: ...`` lines
    (not Python's ``file:line: UserWarning: ... return fn(...)``; tester17 L1)."""
    import warnings

    from counterfeed.errors import CounterfeedError

    plain, warnings.formatwarning = warnings.formatwarning, _plain_warning
    try:
        return fn(*args, **kwargs)
    except CounterfeedError as exc:
        raise TwinError(str(exc)) from None
    finally:
        warnings.formatwarning = plain


def _plain_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


#: a scenario field of a twin world -> the flag the user typed (tester17 L5)
_FLAGS = {"experiment.arms.target.recommender": "--policy", "experiment.arms.target.": "--policy-option ",
          "experiment.arms.logging.recommender": "--logging-policy",
          "experiment.arms.logging.": "--logging-option "}


def _err_flags(fn, *args, **kwargs):
    """:func:`_err`, with the twin scenario's policy fields named by the flags that set them."""
    try:
        return _err(fn, *args, **kwargs)
    except TwinError as exc:
        for field, flag in _FLAGS.items():
            if exc.message.startswith(field):
                raise TwinError(flag + exc.message[len(field):]) from None
        raise


def _say(quiet: bool):
    return (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))


def _policy(name: str | None, options: tuple[str, ...], flag: str) -> dict[str, Any] | None:
    from counterfeed.ope.cli import _parse_policy_options

    if name is None:
        if options:
            raise TwinError(f"--{flag}-option needs --{flag}")
        return None
    return {"recommender": name, **_parse_policy_options(options)}


@click.group("twin", epilog=_EPILOG)
def twin():
    """A twin of the users fitted from impression logs: fit it, check its fidelity, evaluate policies in it.

    See docs/twin.md.
    """


@twin.command("fit")
@click.argument("log_path", metavar="LOG", type=click.Path())
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Twin directory to create.")
@click.option("--columns", help="Column mapping as in 'counterfeed ope', e.g. item=item_id,reward=click,time=ts.")
@click.option("--time-unit", type=click.Choice(["days", "hours", "minutes", "seconds"]), default="days",
              show_default=True, help="Unit of the time column.")
@click.option("--world", help="Run directory: the world whose impressions to use (default all-<control>).")
@click.option("--items", "items_path", type=click.Path(dir_okay=False),
              help="Item table (CSV/Parquet): id, optional topic, optional text (title, description or text).")
@click.option("--embedder", default="minilm", show_default=True, help="Text embedder for item texts.")
@click.option("--dims", type=click.IntRange(1, 256), default=16, show_default=True, help="Latent dimensions.")
@click.option("--bootstrap", type=click.IntRange(0, 1000), default=20, show_default=True,
              help="Bootstrap replicates (the intervals).")
@click.option("--bootstrap-kind", type=click.Choice(["users", "parametric"]), default="users", show_default=True,
              help="users: refit every step on the users resampled with replacement; parametric: refit logs "
                   "simulated from the fit under the logging policy (needs a run directory's log; misses the "
                   "error of a model that does not hold).")
@click.option("--holdout", type=click.FloatRange(0, 0.9), default=0.2, show_default=True,
              help="Share of users held out for 'twin check'.")
@click.option("--topics", type=click.IntRange(1), default=10, show_default=True,
              help="Topics (k-means of item factors) when the item table gives none.")
@click.option("--epochs", type=click.IntRange(1), default=12, show_default=True, help="Factorization epochs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--quiet", is_flag=True)
def fit_command(log_path, out, columns, time_unit, world, items_path, embedder, dims, bootstrap, bootstrap_kind,
                holdout, topics, epochs, seed, quiet):
    """Fit the twin's click model, preferences, satiation and visit/return/churn dynamics from LOG."""
    from pathlib import Path

    from counterfeed.twin.data import load_twin_log
    from counterfeed.twin.fit import FitSettings, fit_twin
    from counterfeed.twin.items import read_items
    from counterfeed.twin.store import write_twin

    if Path(out).exists() and any(Path(out).iterdir()):
        raise TwinError(f"{out}: exists and is not empty; choose another --out")
    say = _say(quiet)
    log = _err(load_twin_log, log_path, columns, time_unit=time_unit, world=world)
    known_topics, emb, texts = (None, None, None)
    if items_path:
        known_topics, emb, texts = _err(read_items, items_path, log.item_ids, embedder)
    st = FitSettings(dims=dims, holdout=holdout, bootstrap=bootstrap, n_topics=topics, epochs=epochs, seed=seed,
                     topics=known_topics, embeddings=emb, bootstrap_kind=bootstrap_kind)
    meta, reps = _err(fit_twin, log, st, say=say)
    meta.update(columns=columns, time_unit=time_unit)
    path = _err(write_twin, out, meta, reps, embeddings=emb, texts=texts)
    ex = meta["examination"]
    click.echo(f"twin written to {path}: {meta['n_train_users']} users fitted ({len(meta['heldout_users'])} held "
               f"out), {meta['n_items']} items, click model {ex['model']}, {bootstrap} bootstrap replicates "
               f"({'over users' if meta['bootstrap'] == 'users' else 'parametric'}), "
               f"{meta['seconds']:.1f} s")


@twin.command("check")
@click.argument("twin_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.argument("log_path", metavar="LOG", type=click.Path())
@click.option("--columns", help="Column mapping as in 'counterfeed ope'.")
@click.option("--time-unit", type=click.Choice(["days", "hours", "minutes", "seconds"]), default="days")
@click.option("--world", help="Run directory: the world whose impressions to use.")
@click.option("--users", type=click.IntRange(2),
              help="Users to simulate (default: 5 x the held-out users, at least 500).")
@click.option("--logging-policy", help="The logging policy (default: the one recorded from the run directory).")
@click.option("--logging-option", "logging_options", multiple=True, metavar="KEY=VALUE")
@click.option("--figures", type=click.Path(file_okay=False), help="Folder for the figures (PNG).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True)
def check_command(twin_dir, log_path, columns, time_unit, world, users, logging_policy, logging_options, figures,
                  seed, as_json, quiet):
    """Compare the twin's simulated distributions with the logged ones on the held-out users."""
    from counterfeed.twin.check import check_twin

    logging = _policy(logging_policy, logging_options, "logging-policy")
    report = _err_flags(check_twin, twin_dir, log_path, columns=columns, time_unit=time_unit, world=world, users=users,
                  seed=seed, figures=figures, say=_say(quiet), logging=logging)
    if as_json:
        click.echo(_json.dumps(report, indent=2))
        return
    click.echo(f"Fidelity of {twin_dir} on {report['heldout_users']} held-out users of {log_path} "
               f"(mismatch: p < {report['alpha']:g} and distance > tolerance):")
    for a in report["aspects"]:
        click.echo(f"  {a['aspect']:<20} {a['verdict']:<8} distance {_fmt(a['distance'])} (tolerance "
                   f"{_fmt(a['tolerance'])})  {a['statistic']}={_fmt(a['value'])} p={_fmt(a['p_value'])}  "
                   f"{a['summary']}: logged {_fmt(a['logged_mean'])} vs twin {_fmt(a['twin_mean'])}")
    if figures:
        click.echo(f"figures in {figures}")


@twin.command("evaluate")
@click.argument("twin_dir", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--policy", help="Registered recommender to evaluate (the target policy).")
@click.option("--target-probs", type=click.Path(dir_okay=False),
              help="Or the target as a context-free probability table (item, position, prob; docs/ope.md).")
@click.option("--policy-option", "policy_options", multiple=True, metavar="KEY=VALUE")
@click.option("--logging-policy", help="The logging policy (default: the one recorded from the run directory).")
@click.option("--logging-option", "logging_options", multiple=True, metavar="KEY=VALUE")
@click.option("--users", type=click.IntRange(2),
              help="Users simulated in all worlds together, in worlds of the log's fitted users: one per "
                   "replicate, the rest (at least 2) for the point fit. Default: enough for that.")
@click.option("--replicates", type=click.IntRange(2), help="Bootstrap replicates to use (default: all).")
@click.option("--log", "log_path", type=click.Path(), help="Log for the IPS/DR estimates (default: the fitted one).")
@click.option("--columns", help="Column mapping of --log as in 'counterfeed ope'.")
@click.option("--no-ope", is_flag=True, help="Skip the IPS/DR estimates.")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", is_flag=True)
def evaluate_command(twin_dir, policy, target_probs, policy_options, logging_policy, logging_options, users,
                     replicates, log_path, columns, no_ope, level, seed, as_json, quiet):
    """Predict a policy's effect on CTR, clicks, sessions and retention by simulating it in the twin."""
    from counterfeed.twin.evaluate import evaluate_twin, ope_beside
    from counterfeed.twin.policy import table_from_file
    from counterfeed.twin.store import read_meta

    if (policy is None) == (target_probs is None):
        raise TwinError("give exactly one of --policy and --target-probs")
    if target_probs is not None:
        meta = _err(read_meta, twin_dir)
        target = {"recommender": "probability-table",
                  "probs": _err(table_from_file, target_probs, meta["item_ids"], int(meta["slate_size"]))}
        policy = f"the table {target_probs}"
    else:
        target = _policy(policy, policy_options, "policy")
    logging = _policy(logging_policy, logging_options, "logging-policy")
    effects = _err_flags(evaluate_twin, twin_dir, target, logging=logging, users=users, replicates=replicates,
                         seed=seed, level=level, say=_say(quiet))
    ope: list[dict[str, Any]] | str = "skipped"
    if not no_ope:
        meta = _err(read_meta, twin_dir)
        src = log_path or meta["source"]
        try:
            ope = ope_beside(src, target, columns=columns if log_path else meta.get("columns"), seed=seed, level=level,
                             target_probs=target_probs)
        except Exception as exc:  # OPE is a side-by-side: its failure is reported, not fatal
            ope = f"not available: {exc}"
    if as_json:
        click.echo(_json.dumps({"effects": [e.to_dict() for e in effects], "ope": ope}, indent=2))
        return
    reps, e0 = effects[0].replicates, effects[0]
    worlds = f"the point fit in {e0.point_worlds} world{'s' * (e0.point_worlds != 1)} of {e0.world_users} users"
    click.echo(f"Predicted effect of {policy} vs the logging policy in {twin_dir} ({worlds}, "
               + (f"{reps} bootstrap replicates, {level:.0%} intervals):" if reps > 1
                  else "fewer than 2 bootstrap replicates: no intervals):"))
    shared = [w for w in effects[0].warnings if all(w in e.warnings for e in effects)]
    for e in effects:
        iv = "no interval" if e.lower is None else f"[{_fmt(e.lower)}, {_fmt(e.upper)}]"
        click.echo(f"  {e.metric:<9} logging {_fmt(e.logging_value)}  target {_fmt(e.target_value)}  "
                   f"effect {_fmt(e.effect)} {iv}")
        for w in e.warnings:
            if w not in shared:
                click.echo(f"    warning: {w}")
    for w in shared:  # stated once, not once per metric (tester17 L9)
        click.echo(f"warning (every metric): {w}")
    if isinstance(ope, str):
        click.echo(f"IPS/DR: {ope}")
    else:
        for r in ope:
            click.echo(f"  {r['estimator']:<9} CTR {_fmt(r['value'])} [{_fmt(r['lower'])}, {_fmt(r['upper'])}]  "
                       f"effect {_fmt(r['effect'])} (from the same log; no behavioural change)")
            # the OPE estimator's own warnings (e.g. NOT IDENTIFIED for a target the log does not support)
            # belong beside its number, as in `counterfeed ope` (a break test found them only in --json)
            for w in (r.get("diagnostics") or {}).get("warnings", []):
                click.echo(f"    warning ({r['estimator']}): {w}")
    sys.stdout.flush()


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    return f"{x:.4g}"
