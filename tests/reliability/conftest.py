"""Reliability suite: petwatch broken on purpose, against a real daemon, socket and Milvus Lite."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def albums(tmp_path) -> Path:
    """Where the user's photos live: outside PETWATCH_HOME, as in real life."""
    root = tmp_path / "Pictures"
    root.mkdir()
    return root
