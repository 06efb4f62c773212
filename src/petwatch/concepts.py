"""Words for what a photo shows, as ImageNet-1k classes: the classifier every petwatch model
ships with gives each photo a probability for each of its 1,000 classes, and a word matches a
photo by the probability mass on the word's classes.

A word's classes come from, in order: the curated roll-ups shipped with petwatch
(``concepts.toml``: "dog" is the 118 dog breeds, "beach" the seashore and sandbar classes);
ImageNet's own names and synonyms (timm's lemma file: "golden retriever", "teapot", "alsatian");
the last word of a class's name ("retriever" is every retriever, "terrier" every terrier). Plurals
are read as their singular ("dogs", "puppies", "boxes").

No torch here: timm's class files are read from its installed package without importing it,
so commands that need no model stay light.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import tomllib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from petwatch.errors import PetwatchError

IMAGENET_CLASSES = 1000
# What each photo keeps of its probabilities (bench/bench_words.py, efficientnet_lite2): its
# 10 best classes at 1% or more, 5.9 a photo on average, rank breeds at 0.931 mAP against
# 0.944 with all 1,000 kept and the word list as well as all 1,000 (the top label alone: 0.831);
# top 5 at 2% (3.3 a photo) loses 0.02 on breeds and 0.07 on the word list.
TOP_K = 10
MIN_PROB = 0.01
# Irregular plurals people type; regular ones are undone by rule (_singulars).
PUNCTUATION = re.compile(r"[^\w]+")  # hyphens, dots ("Mr. Biscuit"), slashes: word breaks
POSSESSIVE = re.compile(r"'s\b")  # "rex's", "lady's slipper": the owner's name alone
IRREGULAR = {
    "mice": "mouse",
    "geese": "goose",
    "teeth": "tooth",
    "feet": "foot",
    "people": "person",
    "children": "child",
    "men": "man",
    "women": "woman",
    "oxen": "ox",
    "knives": "knife",
    "wolves": "wolf",
    "leaves": "leaf",
    "loaves": "loaf",
    "shelves": "shelf",
}


def _timm_info() -> Path:
    spec = importlib.util.find_spec("timm")  # the package's folder, without importing torch
    if spec is None or not spec.submodule_search_locations:
        raise PetwatchError("concepts need timm's ImageNet class names: pip install timm")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "_info"


def fold(text: str) -> str:
    """A word or name as matched: lower case, no accents, punctuation and runs of spaces as
    one space, no apostrophes ("Yellow lady's-slipper" = "yellow lady slipper", "Zürich" =
    "zurich"). Concepts, places and pets' names are all matched folded."""
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    plain = POSSESSIVE.sub("", plain.lower().replace("’", "'")).replace("'", "")
    return " ".join(PUNCTUATION.sub(" ", plain).split())


@dataclass(frozen=True)
class _Vocabulary:
    names: tuple[str, ...]  # each class's short name ("golden retriever")
    synonyms: tuple[tuple[str, ...], ...]  # each class's lemmas, as timm writes them
    definitions: tuple[str, ...]
    rollups: dict[str, frozenset[int]]  # folded word -> classes (concepts.toml)
    lemmas: dict[str, frozenset[int]]  # folded lemma -> classes
    heads: dict[str, frozenset[int]]  # folded last word of a multi-word lemma -> classes


def _ranges(items: Iterable[str]) -> frozenset[int]:
    found: set[int] = set()
    for item in items:
        low, _, high = str(item).partition("-")
        found.update(range(int(low), int(high or low) + 1))
    if not found <= set(range(IMAGENET_CLASSES)):
        raise PetwatchError(f"concepts.toml names a class outside 0-{IMAGENET_CLASSES - 1}")
    return frozenset(found)


@functools.cache
def _vocabulary() -> _Vocabulary:
    info = _timm_info()
    synsets = (info / "imagenet_synsets.txt").read_text().split()
    lemma_of = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines())
    wanted = set(synsets)
    definition_of = {}
    for line in (info / "imagenet_synset_to_definition.txt").read_text().splitlines():
        synset, _, text = line.partition("\t")
        if synset in wanted:
            definition_of[synset] = text
    synonyms = tuple(tuple(part.strip() for part in lemma_of[s].split(",")) for s in synsets)
    lemmas: dict[str, set[int]] = {}
    heads: dict[str, set[int]] = {}
    for index, names in enumerate(synonyms):
        for name in names:
            lemmas.setdefault(fold(name), set()).add(index)
        # the last word of the class's own name only: "golden retriever" is a retriever, but
        # "movie house" (a synonym of cinema) does not make a cinema a house
        main = fold(names[0])
        if " " in main:
            heads.setdefault(main.rsplit(" ", 1)[1], set()).add(index)
    table = tomllib.loads(resources.files("petwatch").joinpath("concepts.toml").read_text())
    rollups: dict[str, frozenset[int]] = {}
    for word, entry in table.items():
        classes = _ranges(entry["classes"])
        for name in [word, *entry.get("also", [])]:
            rollups[fold(name)] = classes
    return _Vocabulary(
        names=tuple(names[0] for names in synonyms),
        synonyms=synonyms,
        definitions=tuple(definition_of.get(s, "") for s in synsets),
        rollups=rollups,
        lemmas={k: frozenset(v) for k, v in lemmas.items()},
        heads={k: frozenset(v) for k, v in heads.items() if k not in lemmas},
    )


def concept_name(index: int) -> str:
    """A short human name for an ImageNet class ("golden retriever", "seashore")."""
    return _vocabulary().names[index]


def concept_definition(index: int) -> str:
    """WordNet's definition of an ImageNet class, for explaining a match."""
    return _vocabulary().definitions[index]


def _singulars(word: str) -> list[str]:
    """The word and the singulars it may be the plural of, most likely first."""
    forms = [word]
    if word in IRREGULAR:
        forms.append(IRREGULAR[word])
    if word.endswith("ies") and len(word) > 4:
        forms.append(word[:-3] + "y")  # puppies
    if word.endswith("ves"):
        forms += [word[:-3] + "f", word[:-3] + "fe"]
    if word.endswith(("ses", "xes", "zes", "ches", "shes", "oes")):
        forms.append(word[:-2])  # boxes, dishes, tomatoes
    if word.endswith("s") and not word.endswith("ss"):
        forms.append(word[:-1])
    return forms


def lookup(phrase: str) -> frozenset[int] | None:
    """The ImageNet classes a word or phrase names (plurals read as singular), or None."""
    vocabulary = _vocabulary()
    words = fold(phrase).split(" ")
    if not words or not words[-1]:
        return None
    stem = " ".join(words[:-1])
    for table in (vocabulary.rollups, vocabulary.lemmas, vocabulary.heads):
        for last in _singulars(words[-1]):
            key = f"{stem} {last}" if stem else last
            if key in table:
                return table[key]
    return None


def vocabulary_words() -> list[str]:
    """Every word and phrase ``lookup`` knows (folded): roll-ups, class names, their last words."""
    vocabulary = _vocabulary()
    return sorted({*vocabulary.rollups, *vocabulary.lemmas, *vocabulary.heads})


def everyday_words() -> list[str]:
    """The roll-up words (concepts.toml): what people type most, for suggestions."""
    return sorted(_vocabulary().rollups)


def describe(classes: frozenset[int], limit: int = 4) -> str:
    """The classes as a short phrase: "seashore, sandbar (ImageNet classes)"."""
    names = [concept_name(i) for i in sorted(classes)]
    if len(names) <= limit:
        return f"{', '.join(names)} (ImageNet class{'es' if len(names) > 1 else ''})"
    return f"{len(names)} ImageNet classes: {', '.join(names[:limit])}, ..."


def top_concepts(probs: np.ndarray, k: int = TOP_K, min_prob: float = MIN_PROB) -> list[tuple[int, float]]:
    """What one photo keeps of its classifier's view: its ``k`` most probable ImageNet classes
    with a probability of at least ``min_prob``, best first, as (class index, probability)."""
    row = np.asarray(probs, dtype=np.float32).reshape(-1)
    if row.shape[0] != IMAGENET_CLASSES:
        raise ValueError(f"expected {IMAGENET_CLASSES} class probabilities, got {row.shape[0]}")
    k = min(k, IMAGENET_CLASSES)
    top = np.argpartition(-row, k - 1)[:k]
    top = top[np.argsort(-row[top], kind="stable")]
    return [(int(i), float(row[i])) for i in top if row[i] >= min_prob]


def concept_score(probs: np.ndarray, classes: Iterable[int]) -> np.ndarray:
    """The probability mass on ``classes`` of each row of class probabilities (or of one row)."""
    index = np.fromiter(sorted(classes), dtype=np.intp)
    return np.asarray(probs)[..., index].sum(axis=-1)
