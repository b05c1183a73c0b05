"""Fuzzing the loaders: whatever the document or model text, they accept it or raise a
CounterfeedError -- never any other exception (which the CLI would show as a traceback)."""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterfeed.core.runner import resolve
from counterfeed.core.scenario import Scenario, load_scenario
from counterfeed.errors import CounterfeedError, ScenarioError
from tests.conftest import SMALL
from tests.hardening._counts import FUZZ_COUNTS

FAST = settings(deadline=None, suppress_health_check=list(HealthCheck), database=None)

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["14d", "6h", "-1d", "0d", "1e30", "nan", "random", "popularity", "choice",
                              "synthetic", "clicks", "diff-in-means", "../x", ""]))
keys = (st.sampled_from(["name", "seed", "population", "users", "experiment", "arms", "catalog", "plugin",
                        "metrics", "analysis", "estimator", "output", "dir", "split", "duration", "segments",
                        "share", "recommender", "level", "control"]) | st.text(max_size=8)
        | st.integers(-3, 3) | st.none() | st.booleans() | st.floats(allow_nan=True))
documents = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=5),
                         max_leaves=25)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == k:  # a NaN key cannot be looked up again (nan != nan): do not mutate below it
                yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _mutate(data, doc):
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths), label="path")
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        op = data.draw(st.sampled_from(["delete", "replace", "add"]), label="op")
        if op == "delete":
            del parent[path[-1]]
        elif op == "replace":
            parent[path[-1]] = data.draw(documents, label="value")
        else:
            target = parent[path[-1]]
            if isinstance(target, dict):
                target[data.draw(keys, label="key")] = data.draw(documents, label="value")
            elif isinstance(target, list):
                target.append(data.draw(documents, label="value"))
    return doc


def _accept_or_counterfeed_error(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except ScenarioError as exc:
        # one line per problem (issue 14 item 13: every problem shown), each located like the first
        lines = str(exc).splitlines()
        assert lines and len(lines) == 1 + len(exc.also), str(exc)
        where = f"{exc.file}:" if exc.file else None
        assert all(line.strip() and "Traceback" not in line for line in lines), str(exc)
        assert where is None or all(line.startswith((where, "--set:")) for line in lines), str(exc)
        return None
    except CounterfeedError as exc:
        assert "\n" not in str(exc), str(exc)
        return None


@settings(FAST, max_examples=300)
@given(documents)
def test_random_documents(doc):
    FUZZ_COUNTS["random documents (from_dict)"] += 1
    _accept_or_counterfeed_error(Scenario.from_dict, doc, file="f.yaml")


@settings(FAST, max_examples=300)
@given(st.data())
def test_mutated_valid_scenario(data):
    FUZZ_COUNTS["mutated scenarios (from_dict + resolve)"] += 1
    doc = _mutate(data, SMALL)
    sc = _accept_or_counterfeed_error(Scenario.from_dict, doc, file="f.yaml")
    if sc is not None:
        _accept_or_counterfeed_error(resolve, sc)


@settings(FAST, max_examples=200)
@given(st.data())
def test_mutated_scenario_as_yaml_text(data):
    FUZZ_COUNTS["mutated scenarios as YAML text (load_scenario)"] += 1
    try:
        text = yaml.safe_dump(_mutate(data, SMALL), allow_unicode=True)
    except (yaml.YAMLError, ValueError):
        return
    if data.draw(st.booleans(), label="corrupt"):
        i = data.draw(st.integers(0, len(text)), label="at")
        text = text[:i] + data.draw(st.sampled_from(["\t", ": ", "- ", "[", "{", "&a ", "*a", "!!python/name:os.system ",
                                                     "\x00", "\n  ", "'", "<<: "]), label="junk") + text[i:]
    _accept_or_counterfeed_error(load_scenario, "f.yaml", text=text)


@settings(FAST, max_examples=200)
@given(st.text(alphabet=st.sampled_from(list("abc:-[]{}&*!|>'\"#\n\t 0129.%@`,?")), max_size=60))
def test_random_yaml_text(text):
    FUZZ_COUNTS["random YAML-ish text (load_scenario)"] += 1
    _accept_or_counterfeed_error(load_scenario, "f.yaml", text=text)


SEM_TOKENS = ["f", "g", "x1", "x2", "x3", "y", "a", "b", "NA", "log(x1)", "1", "0.5", "-", "1e3", "=~", "~", "~~",
              ":=", "*", "+", "-", "/", "(", ")", ";", "#", "\n", " ", "=", "@"]


@settings(FAST, max_examples=300)
@given(st.lists(st.sampled_from(SEM_TOKENS), max_size=25))
def test_sem_model_strings(tokens):
    FUZZ_COUNTS["SEM token sequences (parse_model + SEM)"] += 1
    from counterfeed.sem import SEM, parse_model

    text = " ".join(tokens)
    if _accept_or_counterfeed_error(parse_model, text) is not None:
        _accept_or_counterfeed_error(SEM, text)


@settings(FAST, max_examples=150)
@given(st.lists(st.sampled_from(["f =~ x1 + x2 + x3", "g =~ x4 + x5 + x6", "g ~ a*f", "y ~ b*g + c*f",
                                 "ind := a*b", "x1 ~~ x2", "f ~~ 1*f", "y ~ 1", "tot := ind + c",
                                 "x1 ~~ NA*x1", "f =~ NA*x1"]), min_size=1, max_size=6), st.booleans())
def test_sem_statement_combinations(statements, std_lv):
    FUZZ_COUNTS["SEM statement combinations (SEM)"] += 1
    from counterfeed.sem import SEM

    _accept_or_counterfeed_error(SEM, "\n".join(statements), std_lv=std_lv)


cells = (st.none() | st.booleans() | st.integers(-3, 5) | st.floats(allow_nan=True, allow_infinity=True)
         | st.sampled_from(["a", "1", "0.5", ""]))


@settings(FAST, max_examples=200)
@given(st.integers(0, 6), st.data())
def test_ope_log_frames(n_rows, data):
    FUZZ_COUNTS["OPE log frames (log_from_frame)"] += 1
    import pandas as pd

    from counterfeed.ope import log_from_frame

    names = data.draw(st.lists(st.sampled_from(["round", "item", "position", "reward", "propensity", "user",
                                                "session", "click", "context_x", "other"]),
                               min_size=1, max_size=7, unique=True), label="columns")
    frame = pd.DataFrame({c: data.draw(st.lists(cells, min_size=n_rows, max_size=n_rows), label=c) for c in names})
    _accept_or_counterfeed_error(log_from_frame, frame, source="fuzz.csv",
                                 slate_size=data.draw(st.none() | st.integers(1, 4), label="slate_size"))
