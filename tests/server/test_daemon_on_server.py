"""Daemon tests that matter, run again on the Milvus server (originals: tests/test_daemon.py)."""

from __future__ import annotations

import pytest
from tests.test_daemon import (  # noqa: F401 - collected here, with their fixtures
    albums,
    small_jpegs,
    test_renames_moves_and_deletes_are_reflected_without_re_embedding,
    test_slowly_copied_photo_is_searchable_soon_and_never_read_half_written,
    test_stop_signal_mid_batch_exits_cleanly_and_resumes,
)

pytestmark = pytest.mark.server  # the Milvus server tier: -m server
