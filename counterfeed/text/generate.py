"""Item titles and descriptions generated from topic vocabularies (see :mod:`.vocabulary`).

Each text mixes words of its topic (nouns, verbs, adjectives, named things), generic filler shared
by every topic and, with probability ``borrow``, one word from another topic, so a classifier can
recover the topic from the words but no single word gives it away. Generation is deterministic given
the generator.
"""

from __future__ import annotations

import re

import numpy as np

from counterfeed.text.vocabulary import (AUDIENCES, GENERIC_ADJECTIVES, GENERIC_NOUNS, GENERIC_VERBS,
                                         TOPICS, Topic)

__all__ = ["generate_texts", "topic_descriptions", "topic_names", "max_topics"]

_TITLES = (
    "{Adj} {noun}: {gadj} {gnoun} for {aud}",
    "{Named}: the {gadj} {gnoun} about {adj} {noun}",
    "Why every {noun} {gverb} the {named}",
    "The {adj} {noun} that {verb} {gadj} {noun2}",
    "Inside the {named}: {adj} {noun} and {noun2}",
    "{Gadj} {gnoun}: how a {noun} {verb}",
    "{Named} and the {adj} {noun}",
    "A {gadj} {gnoun} of the {adj} {noun2}",
)
_SENTENCES = (
    "A {gadj} {gnoun} on the {noun}, the {noun2} and the {named}.",
    "{Aud} learn how a {adj} {noun} {verb} the {noun2}.",
    "Our {gnoun} {gverb} why the {named} still matters this {gnoun2}.",
    "Expect {adj} {noun2} and a {gadj} look at the {noun}.",
    "The {noun} {verb}, the {gnoun} {gverb} what comes next.",
    "From the {named} to the {adj} {noun}, nothing is quite {gadj}.",
    "One {gadj} {gnoun2}: the {noun2} {verb} when nobody expects it.",
    "It {gverb} the {adj} {noun} with a {gadj} {gnoun}.",
)
_BORROW = ("With a detour through the {bnoun}.", "Also: the {bnamed}, briefly.",
           "Somewhere a {bnoun} {bverb}.")
_N_DRAWS = 16
_ARTICLE = re.compile(r"\b([Aa]) ([aeiouAEIOU])")


def max_topics() -> int:
    """How many topics the built-in vocabularies provide."""
    return len(TOPICS)


def topic_names(n_topics: int) -> list[str]:
    return [t.name for t in TOPICS[:n_topics]]


def topic_descriptions(n_topics: int) -> list[str]:
    """One paragraph per topic (the ``Items.topic_text`` of the synthetic text catalog).

    The description is followed by the topic's typical words, so that a bag-of-words embedder
    (``hashing``) also places item texts near their topic's paragraph; a language model does so from
    the description alone.
    """
    return [f"{t.description} Typical words: {', '.join(t.nouns + t.named + t.adjectives + t.verbs)}."
            for t in TOPICS[:n_topics]]


def _pick(words: tuple[str, ...], u: float) -> str:
    return words[min(int(u * len(words)), len(words) - 1)]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _fill(topic: Topic, other: Topic, u: np.ndarray) -> dict[str, str]:
    noun = _pick(topic.nouns, u[0])
    noun2 = _pick(topic.nouns, u[1])
    if noun2 == noun:
        noun2 = topic.nouns[(topic.nouns.index(noun) + 1) % len(topic.nouns)]
    w = {
        "noun": noun, "noun2": noun2,
        "verb": _pick(topic.verbs, u[2]), "adj": _pick(topic.adjectives, u[3]),
        "named": _pick(topic.named, u[4]),
        "gnoun": _pick(GENERIC_NOUNS, u[5]), "gnoun2": _pick(GENERIC_NOUNS, u[6]),
        "gadj": _pick(GENERIC_ADJECTIVES, u[7]), "gverb": _pick(GENERIC_VERBS, u[8]),
        "aud": _pick(AUDIENCES, u[9]),
        "bnoun": _pick(other.nouns, u[10]), "bverb": _pick(other.verbs, u[10]),
        "bnamed": _pick(other.named, u[10]),
    }
    w.update({"Adj": _cap(w["adj"]), "Named": _cap(w["named"]), "Gadj": _cap(w["gadj"]),
              "Aud": _cap(w["aud"])})
    return w


def generate_texts(topics: np.ndarray, rng: np.random.Generator, *, borrow: float = 0.3) -> list[str]:
    """One ``"Title. Description"`` text per entry of ``topics`` (topic indexes into the vocabularies).

    Parameters
    ----------
    topics : (n,) int topic of each text, in ``[0, max_topics())``.
    rng : the generator all choices come from (pre-drawn in one block, so the result depends only on
        the generator's state and ``topics``).
    borrow : probability that a text carries one sentence with a word from another, random topic.
    """
    topics = np.asarray(topics, dtype=np.int64)
    n = topics.size
    if n and (topics.min() < 0 or topics.max() >= len(TOPICS)):
        raise ValueError(f"topics must be in [0, {len(TOPICS)})")
    u = rng.random((n, 3, _N_DRAWS))
    template = rng.random((n, 5))
    other = (topics + 1 + rng.integers(0, len(TOPICS) - 1, n)) % len(TOPICS)
    out: list[str] = []
    for i in range(n):
        topic, oth = TOPICS[topics[i]], TOPICS[other[i]]
        title = _pick(_TITLES, template[i, 0]).format(**_fill(topic, oth, u[i, 0]))
        s1 = _pick(_SENTENCES, template[i, 1]).format(**_fill(topic, oth, u[i, 1]))
        j2 = (int(template[i, 2] * (len(_SENTENCES) - 1)) + 1 + _SENTENCES.index(
            _pick(_SENTENCES, template[i, 1]))) % len(_SENTENCES)
        s2 = _SENTENCES[j2].format(**_fill(topic, oth, u[i, 2]))
        parts = [title + ".", _cap(s1), _cap(s2)]
        if template[i, 3] < borrow:
            parts.append(_pick(_BORROW, template[i, 4]).format(**_fill(topic, oth, u[i, 2])))
        out.append(_ARTICLE.sub(r"\1n \2", " ".join(parts)))
    return out
