"""Pet-profile tests that matter, run again on the Milvus server (originals: tests/test_pets.py):
profiles search by range over the whole library, which pages differently on HNSW."""

from __future__ import annotations

import pytest
from tests.test_pets import (  # noqa: F401 - collected here, with their fixtures
    library,
    pet_setup,
    test_marks_survive_a_restart_a_rename_and_a_reindex,
    test_new_photo_of_the_pet_joins_its_album_live_with_an_event,
    test_profile_from_three_photos_beats_a_single_photo,
)

pytestmark = pytest.mark.server  # the Milvus server tier: -m server
