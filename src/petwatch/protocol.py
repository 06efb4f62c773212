"""The contract between the daemon and its front ends (CLI, TUI): names both sides use.

No torch, no openai: the CLI and the TUI import this without loading a model.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from petwatch.paths import decode_path

# What the classifier says a photo shows (stored per photo, filterable in search).
DOG, CAT, ANIMAL, NO_PET = "dog", "cat", "animal", "none"
SPECIES = (DOG, CAT, ANIMAL, NO_PET)
PET_SPECIES = (DOG, CAT)  # "shows a pet": what --pets-only keeps

# A comic job's state (petwatch.comics); a job ends in one of the final three.
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
COMIC_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
COMIC_FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})
MAX_PATH_CHARS = 8192  # the longest path a request may carry
# A path as the clients send it: any file name, the non-UTF-8 ones as b64: (petwatch.paths),
# decoded when the daemon validates the request.
PhotoPath = Annotated[str, Field(min_length=1, max_length=MAX_PATH_CHARS), AfterValidator(decode_path)]
MAX_REFERENCES = 16  # reference images per comic: the image-edit API's limit on input images
