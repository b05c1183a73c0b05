"""Regenerate the bad-input corpus and its manifest (``expected.yaml``).

Every case is a one-line edit of a small valid scenario / log / model, so a reader sees exactly what
is wrong. Run ``python tests/data/bad/_make_corpus.py`` after changing a case; the files are committed.
Patterns: ``{file}`` is replaced by the escaped path given on the command line.
"""

from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).parent

BASE = """\
name: bad-base
seed: 3
population:
  users: 200
  dimensions: 4
  segments:
    light: {share: 0.5, activity: 0.5}
    heavy: {share: 0.5, activity: 2}
catalog:
  plugin: synthetic
  items: 60
  topics: 4
user_model:
  plugin: choice
  position_bias: 0.8
experiment:
  arms:
    control: {recommender: popularity}
    treatment: {recommender: random}
  duration: 2d
  batch_window: 6h
  slate_size: 4
metrics:
  - clicks
  - ctr
  - metric: retained
    window: 1d
analysis:
  - estimator: diff-in-means
    metrics: [clicks]
output:
  dir: runs
  report: false
"""


def edit(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


F = "{file}"
# name -> (text or bytes, pattern). Every scenario runs through both `validate` and `run`.
SCENARIOS: dict[str, tuple[str | bytes, str]] = {
    # unknown keys, one per level
    "top_unknown_key": (edit("seed: 3\n", "seed: 3\nsede: 4\n"),
                        rf"{F}:3: sede: unknown field 'sede'; did you mean 'seed'\?"),
    "population_unknown_key": (edit("  dimensions: 4\n", "  dimensions: 4\n  dimentions: 3\n"),
                               rf"{F}:6: population\.dimentions: unknown field 'dimentions'; did you mean 'dimensions'\?"),
    "segment_unknown_key": (edit("{share: 0.5, activity: 0.5}", "{share: 0.5, activty: 0.5}"),
                            rf"{F}:7: population\.segments\.light\.activty: unknown field 'activty'; did you mean 'activity'\?"),
    "catalog_unknown_option": (edit("  topics: 4\n", "  topics: 4\n  topix: 2\n"),
                               rf"{F}:13: catalog\.topix: unknown field 'topix'; did you mean 'topics'\?"),
    "user_model_unknown_option": (edit("position_bias: 0.8", "position_bais: 0.8"),
                                  rf"{F}:15: user_model\.position_bais: unknown field 'position_bais'; did you mean 'position_bias'\?"),
    "experiment_unknown_key": (edit("  slate_size: 4\n", "  slate_size: 4\n  slatesize: 3\n"),
                               rf"{F}:23: experiment\.slatesize: unknown field 'slatesize'; did you mean 'slate_size'\?"),
    "arm_unknown_option": (edit("{recommender: popularity}", "{recommender: popularity, signall: clicks}"),
                           rf"{F}:18: experiment\.arms\.control\.signall: unknown field 'signall'; did you mean 'signal'\?"),
    "metric_unknown_option": (edit("    window: 1d\n", "    windw: 1d\n"),
                              rf"{F}:2[67]: metrics\[2\]\.windw: unknown field 'windw'; did you mean 'window'\?"),
    "analysis_unknown_option": (edit("    metrics: [clicks]\n", "    metrics: [clicks]\n    levle: 0.9\n"),
                                rf"{F}:3[01]: analysis\[0\]\.levle: unknown field 'levle'; did you mean 'level'\?"),
    "output_unknown_key": (edit("  report: false\n", "  report: false\n  formt: html\n"),
                           rf"{F}:34: output\.formt: unknown field 'formt'"),
    # unknown plugins of every kind, with close matches
    "unknown_catalog": (edit("plugin: synthetic", "plugin: synthetik"),
                        rf"{F}:(9|10): catalog(\.plugin)?: unknown catalog 'synthetik'; did you mean 'synthetic'\?"),
    "unknown_user_model": (edit("plugin: choice", "plugin: choise"),
                           rf"{F}:(13|14): user_model(\.plugin)?: unknown user-model 'choise'; did you mean 'choice'\?"),
    "unknown_recommender": (edit("recommender: popularity", "recommender: popularr"),
                            rf"{F}:18: experiment\.arms\.control: unknown recommender 'popularr'; did you mean 'popularity'\?"),
    "unknown_metric": (edit("  - ctr\n", "  - ctrr\n"),
                       rf"{F}:25: metrics\[1\]: unknown metric 'ctrr'; did you mean 'ctr'\?"),
    "unknown_estimator": (edit("estimator: diff-in-means", "estimator: diff-in-mean"),
                          rf"{F}:29: analysis\[0\]: unknown estimator 'diff-in-mean'; did you mean 'diff-in-means'"),
    "unknown_estimator_no_match": (edit("estimator: diff-in-means", "estimator: zzzzzz"),
                                   rf"{F}:29: analysis\[0\]: unknown estimator 'zzzzzz'; known estimators: .*diff-in-means"),
    # wrong types
    "seed_not_integer": (edit("seed: 3", "seed: three"), rf"{F}:2: seed: .*integer"),
    "users_not_integer": (edit("users: 200", "users: lots"), rf"{F}:4: population\.users: .*integer"),
    "users_fraction": (edit("users: 200", "users: 200.5"), rf"{F}:4: population\.users: .*integer"),
    "share_not_number": (edit("{share: 0.5, activity: 2}", "{share: half, activity: 2}"),
                         rf"{F}:8: population\.segments\.heavy\.share: .*number"),
    "catalog_items_not_integer": (edit("items: 60", "items: many"), rf"{F}:11: catalog\.items: .*integer"),
    "arms_is_a_list": (edit("    control: {recommender: popularity}\n    treatment: {recommender: random}\n",
                            "    - popularity\n    - random\n"),
                       rf"{F}:17: experiment\.arms: .*(dictionary|mapping)"),
    "arm_is_a_string": (edit("treatment: {recommender: random}", "treatment: random"),
                        rf"{F}:19: experiment\.arms\.treatment: .*(dictionary|mapping|object)"),
    "metric_is_a_list": (edit("  - clicks\n", "  - [clicks]\n"), rf"{F}:24: metrics\[0\]"),
    "analysis_is_a_mapping": (edit("  - estimator: diff-in-means\n    metrics: [clicks]\n",
                                   "  estimator: diff-in-means\n"),
                              rf"{F}:28: analysis: .*list"),
    "output_report_not_bool": (edit("report: false", "report: sometimes"), rf"{F}:33: output\.report: .*bool"),
    "slate_size_is_a_list": (edit("slate_size: 4", "slate_size: [4]"), rf"{F}:22: experiment\.slate_size: .*integer"),
    "user_model_option_wrong_type": (edit("position_bias: 0.8", "position_bias: high"),
                                     rf"{F}:15: user_model\.position_bias: .*number"),
    "recommender_option_bad_choice": (edit("{recommender: popularity}", "{recommender: popularity, exploration: always}"),
                                      rf"{F}:18: experiment\.arms\.control\.exploration: .*'none', 'epsilon' or 'softmax'"),
    "metric_option_bad_duration": (edit("window: 1d", "window: 1x"),
                                   rf"{F}:2[67]: metrics\[2\](\.window)?: .*expected a duration such as '14d'"),
    "metric_option_wrong_type": (edit("window: 1d", "window: [1]"),
                                 rf"{F}:2[67]: metrics\[2\](\.window)?: .*expected a duration such as '14d'"),
    # impossible values
    "users_negative": (edit("users: 200", "users: -5"), rf"{F}:4: population\.users: .*greater than 1"),
    "users_huge": (edit("users: 200", "users: 1.0e+30"), rf"{F}:4: population\.users: .*(less than or equal|integer)"),
    "users_huge_plain": (edit("users: 200", "users: 1e30"), rf"{F}:4: population\.users: .*integer"),
    "seed_huge": (edit("seed: 3", f"seed: {2**70}"), rf"{F}:2: seed: .*less than or equal"),
    "seed_negative": (edit("seed: 3", "seed: -1"), rf"{F}:2: seed: .*greater than or equal to 0"),
    "level_negative": (edit("seed: 3\n", "seed: 3\nlevel: -0.95\n"), rf"{F}:3: level: .*greater than 0\.5"),
    "level_one": (edit("seed: 3\n", "seed: 3\nlevel: 1\n"), rf"{F}:3: level: .*less than 1"),
    "segment_shares_sum": (edit("{share: 0.5, activity: 2}", "{share: 0.4, activity: 2}"),
                           rf"{F}:6: population\.segments: segment shares must sum to 1 \(got 0\.9: "),
    "segments_empty": (edit("  segments:\n    light: {share: 0.5, activity: 0.5}\n    heavy: {share: 0.5, activity: 2}\n",
                            "  segments: {}\n"),
                       rf"{F}:6: population\.segments: needs at least one segment"),
    "segment_activity_negative": (edit("activity: 2}", "activity: -2}"),
                                  rf"{F}:8: population\.segments\.heavy\.activity: .*greater than 0"),
    "split_not_summing": (edit("  duration: 2d\n", "  duration: 2d\n  split: {control: 0.5, treatment: 0.6}\n"),
                          rf"{F}:21: experiment\.split: shares must sum to 1 \(got 1\.1\)"),
    "split_unknown_arm": (edit("  duration: 2d\n", "  duration: 2d\n  split: {control: 0.5, treat: 0.5}\n"),
                          rf"{F}:21: experiment\.split: names unknown arm 'treat'"),
    "split_negative": (edit("  duration: 2d\n", "  duration: 2d\n  split: {control: -0.5, treatment: 1.5}\n"),
                       rf"{F}:21: experiment\.split: shares must be between 0 and 1"),
    "duration_zero": (edit("duration: 2d", "duration: 0d"), rf"{F}:20: experiment\.duration: must be positive"),
    "duration_negative": (edit("duration: 2d", "duration: -3"),
                          rf"{F}:20: experiment\.duration: duration must be between 0 and 3650 days"),
    "duration_bad_unit": (edit("duration: 2d", "duration: 2 fortnights"),
                          rf"{F}:20: experiment\.duration: expected a duration such as '14d'"),
    "batch_window_longer_than_duration": (edit("batch_window: 6h", "batch_window: 3d"),
                                          rf"{F}:16: experiment: batch_window must be positive and no longer than the duration"),
    "retrain_every_zero": (edit("  slate_size: 4\n", "  slate_size: 4\n  retrain_every: 0d\n"),
                           rf"{F}:23: experiment\.retrain_every: must be positive"),
    "slate_size_zero": (edit("slate_size: 4", "slate_size: 0"), rf"{F}:22: experiment\.slate_size: .*greater than or equal to 1"),
    "control_not_an_arm": (edit("  duration: 2d\n", "  duration: 2d\n  control: baseline\n"),
                           rf"{F}:21: experiment\.control: control 'baseline' is not one of the arms"),
    "one_arm": (edit("    treatment: {recommender: random}\n", ""), rf"{F}:17: experiment\.arms: needs at least two arms"),
    "arm_bad_name": (edit("treatment: {recommender: random}", "'1 bad': {recommender: random}"),
                     rf"{F}:17: experiment\.arms: arm name '1 bad' must start with a letter"),
    "arm_missing_recommender": (edit("treatment: {recommender: random}", "treatment: {}"),
                                rf"{F}:19: experiment\.arms\.treatment\.recommender: required field is missing"),
    "population_missing": (edit("population:\n  users: 200\n  dimensions: 4\n  segments:\n"
                                "    light: {share: 0.5, activity: 0.5}\n    heavy: {share: 0.5, activity: 2}\n", ""),
                           rf"{F}: population: required field is missing"),
    "metric_listed_twice": (edit("  - ctr\n", "  - clicks\n"), rf"{F}:25: metrics\[1\]: metric 'clicks' is listed twice"),
    "analysis_metric_not_computed": (edit("metrics: [clicks]", "metrics: [revenue]"),
                                     rf"{F}:30: analysis\[0\]\.metrics\[0\]: metric 'revenue' is not computed"),
    "catalog_items_negative": (edit("items: 60", "items: -60"), rf"{F}:11: catalog\.items: .*greater than or equal to 2"),
    "output_events_bad_choice": (edit("  report: false\n", "  report: false\n  events: everything\n"),
                                 rf"{F}:34: output\.events: .*'impressions' or 'sessions'"),
    "name_traversal": (edit("name: bad-base", "name: ../../x"), rf"{F}:1: name: "),
    "name_with_slash": (edit("name: bad-base", "name: a/b"), rf"{F}:1: name: .*pattern"),
    "name_hidden": (edit("name: bad-base", "name: .hidden"), rf"{F}:1: name: .*pattern"),
    # YAML-level problems
    "invalid_yaml_bracket": (edit("metrics: [clicks]", "metrics: [clicks"), rf"{F}:3[01]: invalid YAML"),
    "invalid_yaml_tab": (edit("  users: 200\n", "\tusers: 200\n"), rf"{F}:4: invalid YAML"),
    "invalid_yaml_indent": (edit("  dimensions: 4\n", "   dimensions: 4\n"), rf"{F}:5: invalid YAML"),
    "duplicate_top_key": (edit("seed: 3\n", "seed: 3\nseed: 4\n"), rf"{F}:3: duplicate key 'seed'"),
    "duplicate_nested_key": (edit("  dimensions: 4\n", "  dimensions: 4\n  users: 300\n"),
                             rf"{F}:6: duplicate key 'users' in population"),
    "duplicate_arm": (edit("    treatment: {recommender: random}\n",
                           "    treatment: {recommender: random}\n    control: {recommender: random}\n"),
                      rf"{F}:20: duplicate key 'control' in experiment\.arms"),
    "alias_bomb": ("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                   + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n"
                             for p, c in zip("abcdefg", "bcdefgh")),
                   rf"{F}:\d+: document too large"),
    "merge_key": (edit("    control: {recommender: popularity}\n",
                       "    base: &b {recommender: popularity}\n    control: {<<: *b}\n"),
                  rf"{F}:19: YAML merge keys"),
    "deep_nesting": ("name: deep\nx: " + "[" * 80 + "]" * 80 + "\n", rf"{F}:2: document nested deeper than 64"),
    "python_tag": (edit("seed: 3", "seed: !!python/object/apply:os.system [echo hacked]"),
                   rf"{F}:2: invalid value: tag .*python/object/apply:os\.system is not allowed"),
    "python_name_tag": (edit("name: bad-base", "name: !!python/name:os.system"), rf"{F}:1: invalid (value|YAML)"),
    "custom_tag": (edit("users: 200", "users: !env USERS"), rf"{F}:4: invalid (value|YAML)"),
    "non_utf8": (edit("name: bad-base", "name: bad-base").encode().replace(b"bad-base", b"bad-\xff\xfe", 1),
                 rf"{F}: not UTF-8 text \(byte \d+\)"),
    "nul_byte": (edit("seed: 3", "seed: 3\x00"), rf"{F}:2: invalid YAML"),
    "empty": ("", rf"{F}: expected a mapping at the top of the scenario, got nothing"),
    "only_comments": ("# nothing here\n# at all\n", rf"{F}: expected a mapping at the top of the scenario, got nothing"),
    "top_level_list": ("- name: x\n- seed: 2\n", rf"{F}:1: expected a mapping at the top of the scenario, got a list"),
    "top_level_scalar": ("just some words\n", rf"{F}:1: expected a mapping at the top of the scenario, got a string"),
    "mapping_key_is_list": (edit("seed: 3\n", "seed: 3\n? [a, b]\n: 1\n"), rf"{F}:3: mapping keys must be plain values"),
}

# OPE logs: the valid log has rounds 0..3, two positions each.
LOG_HEADER = "round,item,position,reward,propensity\n"
LOG_ROWS = ["0,1,0,1,0.5", "0,2,1,0,0.5", "1,3,0,0,0.5", "1,1,1,1,0.5",
            "2,2,0,1,0.5", "2,3,1,0,0.5", "3,1,0,0,0.5", "3,2,1,1,0.5"]


def log(row: int | None = None, new: str | None = None, header: str = LOG_HEADER) -> str:
    rows = list(LOG_ROWS)
    if row is not None:
        rows[row] = new
    return header + "\n".join(rows) + "\n"


TARGET = "{dir}/support/target.csv"
LOGS: dict[str, tuple[str, str, list[str]]] = {
    # name -> (text, pattern, extra args); the default target is a valid context-free table
    "missing_propensity_column": (log(header="round,item,position,reward,prop\n"),
                                  rf"{F}: missing column 'propensity'", []),
    "missing_reward_column": ("round,item,position,propensity\n0,1,0,0.5\n1,2,0,0.5\n",
                              rf"{F}: missing column 'reward'", []),
    "propensity_zero": (log(2, "2,2,0,1,0"), rf"{F}: column 'propensity' row 3: propensity 0(\.0)? is outside \(0, 1\]", []),
    "propensity_above_one": (log(3, "1,1,1,1,1.5"), rf"{F}: column 'propensity' row 4: propensity 1\.5 is outside", []),
    "propensity_negative": (log(0, "0,1,0,1,-0.2"), rf"{F}: column 'propensity' row 1: propensity -0\.2 is outside", []),
    "propensity_nan": (log(5, "2,3,1,0,"), rf"{F}: column 'propensity' row 6: missing value \(NaN\)", []),
    "propensity_text": (log(5, "2,3,1,0,high"), rf"{F}: column 'propensity' .*(type string|expected numbers)", []),
    "reward_nan": (log(1, "0,2,1,,0.5"), rf"{F}: column 'reward' row 2: missing value \(NaN\)", []),
    "position_text": (log(4, "2,2,first,1,0.5"), rf"{F}: column 'position' has type string; expected integers", []),
    "position_fraction": (log(4, "2,2,0.5,1,0.5"), rf"{F}: column 'position' row 5: expected an integer, got 0\.5", []),
    "position_negative": (log(6, "3,1,-1,0,0.5"), rf"{F}: column 'position' row 7: position -1 is out of range", []),
    "position_out_of_range": (log(7, "3,2,5,1,0.5"), rf"{F}: column 'position' row 8: position 5 is out of range; expected in \[0, 2\)",
                              ["--slate-size", "2"]),
    "duplicated_round_position": (log(3, "1,1,0,1,0.5"), rf"{F}: row 4: duplicated \(round, position\) = \(1, 0\); first seen at row 3", []),
    "item_missing": (log(2, "2,,0,1,0.5"), rf"{F}: column 'item' row 3: missing value \(NaN\)", []),
    "no_rows": (LOG_HEADER, rf"{F}: the log has no rows", []),
    "not_a_table": ('"unterminated,quote\n1,2\n', rf"{F}: (cannot read|missing column)", []),
}

SEM_MODELS: dict[str, tuple[str, str, str]] = {
    # name -> (model text, command, pattern of the message)
    "double_plus": ("f =~ x1 + + x2 + x3\n", "show", r"line 1, col \d+: "),
    "missing_rhs": ("f =~ x1 + x2 + x3\ng =~\n", "show", r"line [23], col \d+: expected a variable name after '=~'"),
    "unclosed_paren": ("f =~ x1 + x2 + x3\ny ~ log(x4\n", "show", r"line 2, col \d+: expected '\)'"),
    "unknown_operator": ("f == x1 + x2 + x3\n", "show", r"line 1, col 3: unknown operator '=='"),
    "bad_character": ("f =~ x1 + x2 + x3 @ x4\n", "show", r"line 1, col \d+: unexpected character '@'"),
    "dangling_star": ("f =~ x1 + x2 + *x3\n", "show", r"line 1, col \d+: "),
    "undefined_label": ("f =~ x1 + x2 + x3\ny ~ a*f\nind := a*b\n", "show", r"'b'"),
    "single_indicator": ("f =~ x1\ny ~ f\n", "show", r"single indicator 'x1'"),
    "no_scale": ("f =~ NA*x1 + x2 + x3\n", "show", r"latent 'f' has no scale"),
    "too_few_moments": ("f =~ x1 + x2\n", "show", r"not identified"),
    "negative_variance": ("f =~ x1 + x2 + x3\nx1 ~~ -1*x1\n", "show", r"line 2: variance of 'x1' fixed to a negative value"),
    "twice_specified": ("f =~ x1 + x2 + x3\nf =~ x1\n", "show", r"specified twice"),
    "undefined_variable": ("f =~ x1 + x2 + nope\n", "fit", r"'nope'"),
    "non_utf8": ("f =~ x1 + x2 + x3 # caf\udcff\n", "show", r"(UTF-8|decode)"),
}


def main() -> None:
    manifest: dict[str, dict] = {}
    for sub in ("scenarios", "logs", "sem"):
        for p in (HERE / sub).glob("*"):
            p.unlink()
    for name, (text, pattern) in SCENARIOS.items():
        path = HERE / "scenarios" / f"{name}.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        manifest[f"scenarios/{name}.yaml"] = {"commands": ["validate", "run"], "pattern": pattern}
    for name, (text, pattern, extra) in LOGS.items():
        (HERE / "logs" / f"{name}.csv").write_text(text)
        manifest[f"logs/{name}.csv"] = {"commands": ["ope"], "pattern": pattern,
                                        "args": ["--target-probs", TARGET, *extra]}
    for name, (text, command, pattern) in SEM_MODELS.items():
        (HERE / "sem" / f"{name}.txt").write_bytes(text.encode("utf-8", "surrogateescape"))
        manifest[f"sem/{name}.txt"] = {"commands": [f"sem {command}"], "pattern": pattern,
                                       "args": ["{dir}/support/sem_data.csv"] if command == "fit" else []}
    (HERE / "support" / "valid.yaml").write_text(BASE)
    (HERE / "support" / "valid_log.csv").write_text(log())
    (HERE / "support" / "target.csv").write_text("item,position,prob\n1,0,0.4\n2,0,0.3\n3,0,0.3\n"
                                                 "1,1,0.2\n2,1,0.5\n3,1,0.3\n")
    import numpy as np

    rng = np.random.default_rng(0)
    f = rng.normal(size=60)
    cols = {f"x{i}": np.round(f * (0.6 + 0.1 * i) + rng.normal(size=60) * 0.7, 4) for i in range(1, 5)}
    lines = ["x1,x2,x3,x4"] + [",".join(str(cols[c][r]) for c in cols) for r in range(60)]
    (HERE / "support" / "sem_data.csv").write_text("\n".join(lines) + "\n")
    header = ("# Bad-input corpus: file -> the commands it is run through and the regex its one-line\n"
              "# error must match. {file} is the path as given; {dir} is tests/data/bad.\n"
              "# Generated by _make_corpus.py (edit the cases there).\n")
    (HERE / "expected.yaml").write_text(header + yaml.safe_dump(manifest, sort_keys=True, width=200))
    print(f"{len(SCENARIOS)} scenarios, {len(LOGS)} logs, {len(SEM_MODELS)} SEM models")


if __name__ == "__main__":
    main()
