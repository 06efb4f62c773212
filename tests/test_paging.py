"""A search's further pages: page 2 continues page 1 exactly, with stacks collapsed or not, and
costs no forward pass: the query's vector (embedded, expanded) is kept; a changed query file
is embedded again."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests.conftest import write_photos
from tests.finding import search_reply

from petwatch import settings
from petwatch.library import Library

PAGE = 5


@pytest.fixture
def library(home, tmp_path):
    album = tmp_path / "album"
    photos = write_photos(album, 30)
    for photo in photos[:6]:  # copies: stacks that collapse into one hit each
        shutil.copyfile(photo, album / f"copy_{photo.name}")
    library = Library(settings.load())
    library.indexer.reconcile([str(album)])
    yield library
    library.close()


def _paths(reply: dict) -> list[str]:
    return [hit["path"] for hit in reply["hits"]]


def _no_forward_pass(*_args, **_kwargs):
    raise AssertionError("a further page embedded its query again")


@pytest.mark.parametrize("stacks", [True, False])
def test_page_two_continues_page_one_without_embedding_the_query_again(library, tmp_path, stacks):
    query = tmp_path / "query.jpg"  # not indexed: its vector needs a forward pass
    shutil.copyfile(write_photos(tmp_path / "elsewhere", 31)[-1], query)
    whole = search_reply(library, str(query), 2 * PAGE, -1.0, stacks=stacks, expand=True)
    first = search_reply(library, str(query), PAGE, -1.0, stacks=stacks, expand=True)

    library.embedder.embed_prepared = _no_forward_pass  # type: ignore[method-assign]
    second = search_reply(library, str(query), PAGE, -1.0, offset=PAGE, stacks=stacks, expand=True)
    third = search_reply(library, str(query), PAGE, -1.0, offset=2 * PAGE, stacks=stacks, expand=True)

    assert _paths(first) + _paths(second) == _paths(whole)
    pages = _paths(first) + _paths(second) + _paths(third)
    assert len(pages) == 3 * PAGE and len(set(pages)) == len(pages)  # no gap, no repeat
    if stacks:
        assert any(hit["stack"] for hit in whole["hits"])  # the copies collapsed

    # The query file changed: a new query, embedded again.
    os.utime(query, ns=(os.stat(query).st_atime_ns, os.stat(query).st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="embedded its query again"):
        search_reply(library, str(query), PAGE, -1.0, offset=PAGE, stacks=stacks, expand=True)
    del library.embedder.embed_prepared


def test_a_new_search_makes_its_query_afresh(library, tmp_path):
    """Page 1 is a new search (an expansion depends on what was indexed since): embedded again."""
    query: Path = tmp_path / "query.jpg"
    shutil.copyfile(write_photos(tmp_path / "elsewhere", 31)[-1], query)
    search_reply(library, str(query), PAGE, -1.0)
    library.embedder.embed_prepared = _no_forward_pass  # type: ignore[method-assign]
    with pytest.raises(AssertionError):
        search_reply(library, str(query), PAGE, -1.0)
    del library.embedder.embed_prepared
