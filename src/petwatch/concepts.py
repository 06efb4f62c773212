"""Words for what a photo shows, as ImageNet-1k classes: the classifier every petwatch model
ships with gives each photo a probability for each of its 1,000 classes, and a word matches a
photo by the probability mass on the word's classes.

A word's classes come from, in order: the curated roll-ups shipped with petwatch
(``concepts.toml``: "dog" is the 118 dog breeds, "beach" the seashore and sandbar classes);
ImageNet's own names and synonyms (timm's lemma file: "golden retriever", "teapot", "alsatian");
the last word of those names ("retriever" is every retriever, "boot" the cowboy boot). Plurals
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
# What each photo keeps of its probabilities (bench/bench_words.py: top 5 above 2% ranks
# almost as well as all 1,000, for 5 numbers a photo).
TOP_K = 5
MIN_PROB = 0.02
# Irregular plurals people type; regular ones are undone by rule (_singulars).
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
    """A word or name as matched: lower case, no accents, hyphens and runs of spaces as one
    space, no apostrophes ("Yellow lady's-slipper" = "yellow lady slipper", "Zürich" =
    "zurich"). Concepts, places and pets' names are all matched folded."""
    plain = "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch))
    plain = POSSESSIVE.sub("", plain.lower().replace("’", "'")).replace("'", "")
    return " ".join(plain.replace("-", " ").replace("–", " ").split())


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
            key = fold(name)
            lemmas.setdefault(key, set()).add(index)
            if " " in key:
                heads.setdefault(key.rsplit(" ", 1)[1], set()).add(index)
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
