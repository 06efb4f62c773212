"""Comics: reference photos + a prompt to a saved comic, through the OpenAI image-edit API.

A comic request is a job (``jobs``), made by a ``ComicStudio`` (``studio``): priced and checked
against the daily budget first (``pricing``, ``budget``), drawn by one API call with its
retries (``openai_call``), its failures put in words the user can act on (``failures``). Every
job is one JSON file in ``locations.comics_dir()``, the sidecar of its ``<id>.png``, so the
prompt, the photo selection and the outcome survive any failure and a daemon restart.

The states and the reference limit are the daemon's contract with its front ends, so they
live in ``petwatch.protocol`` (which the CLI and the TUI import without the OpenAI SDK).
"""

from petwatch.comics.jobs import ComicJob
from petwatch.comics.pricing import QUALITIES, SIZES, cost_from_usage
from petwatch.comics.studio import ComicStudio
from petwatch.protocol import MAX_REFERENCES  # re-exported: the studio's limit

__all__ = ["MAX_REFERENCES", "QUALITIES", "SIZES", "ComicJob", "ComicStudio", "cost_from_usage"]
