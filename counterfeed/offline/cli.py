"""``counterfeed offline``: ranking metrics of a recommender on a logged dataset's held-out clicks."""

from __future__ import annotations

import math
from typing import Any

import click

from counterfeed._tables import Column, emit_records, emit_table, format_option

__all__ = ["offline"]

_EPILOG = """\b
Examples:
  counterfeed offline runs/x/events/ab/impressions.parquet --policy popularity
  counterfeed offline logs.csv --policy matrix-factorization --policy-option factors=32 --k 5,10,20
  counterfeed offline runs/x/events/ab/impressions.parquet --policy text-embedding --scenario runs/x/scenario.yaml --json
  counterfeed offline examples/ope_log.csv --columns time=round --policy popularity
"""


def _fmt(x: Any) -> str:
    return "" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.4f}"


def _interval(lo: Any, hi: Any) -> str:
    return "-" if lo is None else f"[{_fmt(lo)}, {_fmt(hi)}]"


def _finite(ctx, param, value):
    """Click callback: a float option must be a finite number (click's float type takes nan and inf)."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value


def _ks(text: str) -> list[int]:
    try:
        ks = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.ClickException(f"--k '{text}' must be comma-separated positive integers, e.g. 5,10") from None
    if not ks or min(ks) < 1:
        raise click.ClickException(f"--k '{text}' must be comma-separated positive integers, e.g. 5,10")
    return ks


def scenario_catalog(path: str) -> Any:
    """The catalog of a scenario file (the items a run of it simulates)."""
    from counterfeed.core.plan import resolve
    from counterfeed.core.randomness import Keys
    from counterfeed.core.scenario import load_scenario

    sc = load_scenario(path)
    return resolve(sc).build_items(Keys(sc.seed))


@click.command("offline", epilog=_EPILOG)
@click.argument("log_path", metavar="LOG", type=click.Path(dir_okay=False))
@click.option("--policy", required=True, help="Registered recommender to evaluate.")
@click.option("--policy-option", "policy_options", multiple=True, metavar="KEY=VALUE",
              help="Option of the recommender (repeatable); values are YAML scalars.")
@click.option("--columns", help="Column mapping, e.g. item=item_id,reward=click (as for `counterfeed ope`).")
@click.option("--split-time", type=float, callback=_finite,
              help="Impressions before this time train, later clicks are held out.")
@click.option("--train-share", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.8,
              show_default=True, help="Without --split-time: the quantile of impression times to split at.")
@click.option("--k", "ks", default="10", show_default=True, help="Cutoffs of recall@k, ndcg@k, coverage@k.")
@click.option("--cutoff", type=click.IntRange(1), default=100, show_default=True,
              help="Length of the ranked list per held-out round (MRR is truncated there).")
@click.option("--clip", type=click.FloatRange(1), help="Largest inverse-propensity weight (default: none).")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.95,
              show_default=True, help="Interval level.")
@click.option("--scenario", "scenario_path", type=click.Path(dir_okay=False),
              help="Take the catalog (texts, embeddings, arrivals) from this scenario file; default: bare "
                   "item ids from the log.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the recommender's randomness.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@format_option()
def offline(log_path, policy, policy_options, columns, split_time, train_share, ks, cutoff, clip, level,
            scenario_path, seed, as_json, fmt):
    """Offline ranking evaluation: recall@k, NDCG@k, MRR and coverage on held-out clicks, naive and
    inverse-propensity weighted (self-normalized, with the logged propensities).

    LOG is read like `counterfeed ope`'s (CSV or Parquet, a counterfeed impression log or the OPE
    format with --columns). The recommender is fitted on the impressions before the split and ranks
    the items for every held-out round that has a click. See docs/text.md ("Offline evaluation").
    """
    from counterfeed.errors import CounterfeedError
    from counterfeed.ope.cli import _parse_policy_options

    k_list = _ks(ks)
    if max(k_list) > cutoff:
        raise click.ClickException(f"--k {max(k_list)} is larger than --cutoff {cutoff}")
    options = _parse_policy_options(policy_options)
    try:
        report = _run(log_path, policy, options, columns, split_time, train_share, k_list, cutoff, clip, level,
                      scenario_path, seed)
    except CounterfeedError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json or fmt == "json":
        emit_records([report.to_dict()], "json")
        return
    records = _records(report)
    cols = [Column("metric"), Column("naive", show=_fmt, right=True), Column("naive_interval", "naive interval"),
            Column("ipw", report.ipw_label(), show=_fmt, right=True), Column("ipw_interval", "ipw interval"),
            Column("ess", "ipw ESS", show=lambda v: "" if v is None else f"{v:.0f}", right=True)]
    title = (f"Offline evaluation of {policy} on {log_path}: {report.n_train} training impressions, "
             f"{report.n_test_clicks} held-out clicks from time {report.split_time:g}; intervals: user-clustered, "
             f"t on users - 1 df, within [0, 1]")
    emit_table(records, cols, fmt, title=title, notes=report.notes)


def _records(report: Any) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for e in report.estimates:
        r = rows.setdefault(e.metric, {"metric": e.metric})
        r[e.weighting] = e.value
        r[f"{e.weighting}_interval"] = _interval(e.lower, e.upper)
        if e.weighting == "ipw":
            r["ess"] = e.ess
    for k, v in report.coverage.items():
        rows[f"coverage@{k}"] = {"metric": f"coverage@{k}", "naive": v, "naive_interval": "", "ipw_interval": ""}
    return list(rows.values())


def _run(log_path, policy, options, columns, split_time, train_share, ks, cutoff, clip, level, scenario_path,
         seed):
    from counterfeed.offline.evaluate import evaluate_offline, split_log
    from counterfeed.ope import load_log
    from counterfeed.ope.target import catalog_from_log, check_target_evaluable

    check_target_evaluable(policy, options)  # unknown name or bad options: before reading any data
    log = load_log(log_path, columns)
    if log.time is None:
        from counterfeed.errors import DataError

        raise DataError(f"{log_path}: the log has no 'time' column, so it cannot be split into training and "
                        "held-out periods; map one with --columns time=<column> (e.g. --columns time=round)")
    contract = log.to_contract_log()
    items = scenario_catalog(scenario_path) if scenario_path else catalog_from_log(log)
    if int(contract.item.max()) >= items.n:
        from counterfeed.errors import DataError

        raise DataError(f"{log_path}: item id {int(contract.item.max())} is outside the catalog of {items.n} items")
    train, test, split = split_log(contract, split_time, train_share, names=("--split-time", "--train-share"))
    report = evaluate_offline(policy, options, train, test, items, int(contract.user.max()) + 1, ks=ks,
                              cutoff=cutoff, clip=clip, level=level, seed=seed, split_time=split)
    return report
