"""The index and search tests that matter, run again on the Milvus server (the Lite run is
the original in tests/test_index.py): this directory's ``home`` points them at it."""

from __future__ import annotations

import pytest
from tests.test_index import (  # noqa: F401 - collected here, with their fixtures
    embedder,
    library,
    test_edited_copy_finds_its_original_first,
    test_identical_bytes_under_two_names_are_embedded_once,
    test_model_change_is_refused_with_how_to_reindex,
    test_scores_are_cosine_similarities,
    test_second_run_skips_unchanged_and_follows_changes,
)

pytestmark = pytest.mark.server  # the Milvus server tier: -m server
