"""Searches as tests look at them: ``find`` (the top hits of a photo, with scores and views) and
``search_reply`` (the reply a front end gets), both through the product's one query value
(petwatch.search.SearchQuery)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from petwatch.library import Library
from petwatch.protocol import SearchReply, UpgradeProgress
from petwatch.search import SearchQuery
from petwatch.store import Hit, PhotoFilter


@dataclass
class Found:
    """A search's hits, and whether they come from an index still being upgraded."""

    hits: list[Hit]
    partial: UpgradeProgress | None = None  # set when only part of the library was searched


def _query(image: str, top_k, min_score, species, expand, **rest) -> SearchQuery:
    only = PhotoFilter(species=tuple(sorted(set(species or ()))))
    return SearchQuery(image=image, top_k=top_k, min_score=min_score, only=only, expand=expand, **rest)


def find(
    library: Library,
    image: str,
    top_k: int | None = None,
    min_score: float | None = None,
    species: Sequence[str] | None = None,
    expand: bool | None = None,
) -> Found:
    """The photos most like ``image``, best first (no stacks, one page)."""
    hits, partial = library.searcher.hits(_query(image, top_k, min_score, species, expand))
    return Found(hits, partial)


def search_reply(
    library: Library,
    image: str,
    top_k: int | None = None,
    min_score: float | None = None,
    species: Sequence[str] | None = None,
    offset: int = 0,
    folders: Sequence[str] = (),
    stacks: bool = True,
    expand: bool | None = None,
) -> SearchReply:
    return library.search(_query(image, top_k, min_score, species, expand, offset=offset, stacks=stacks), folders)
