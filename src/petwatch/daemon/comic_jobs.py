"""The daemon's comic jobs: one ComicStudio and one worker thread (routes: comic_routes).

Jobs run one at a time, oldest first, in the ``comics`` thread: queued jobs found on disk at
start (left over from before a restart) first, then new ones as they are submitted. Every
change of a job (state, progress) is pushed to socket subscribers as a ``comic`` event whose
data is the job record, the same dict ``GET /comics/{id}`` returns.

Stopping does not wait for a request in flight (it may take minutes): the job stays
``running`` on disk and the next start marks it failed, "interrupted by a restart; retry it"
(see ``petwatch.comics``); queued jobs stay queued and run after the restart.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import Unpack

from petwatch import photos as photos_module
from petwatch.comics import ComicJob, ComicStudio
from petwatch.daemon.events import EventBus
from petwatch.errors import PetwatchError
from petwatch.protocol import (
    MAX_REFERENCES,
    QUEUED,
    ComicEstimateReply,
    ComicJobReply,
    ComicOptions,
    ComicShowReply,
    Event,
)
from petwatch.settings import Settings

log = logging.getLogger(__name__)


# --- the jobs --------------------------------------------------------------------------------
class ComicJobs:
    """The daemon's ComicStudio and the worker thread that runs its queued jobs in order."""

    def __init__(self, settings: Settings, bus: EventBus, *, backoff_base_seconds: float = 1.0) -> None:
        self.bus = bus
        self.studio = ComicStudio(settings, backoff_base_seconds=backoff_base_seconds, on_change=self._changed)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._work_loop, name="comics", daemon=True)

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Queue the jobs left queued before a restart, oldest first, and start the worker."""
        leftovers = [job for job in reversed(self.studio.list()) if job.state == QUEUED]
        for job in leftovers:
            self._queue.put(job.id)
        if leftovers:
            log.info("%d comic job(s) still queued from before; running them", len(leftovers))
        self._thread.start()

    def stop(self) -> None:
        """Stop taking jobs; a request in flight is abandoned (the next start says so)."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout=1)

    def _work_loop(self) -> None:
        while not self._stopping.is_set():
            job_id = self._queue.get()
            if job_id is None or self._stopping.is_set():
                return
            try:
                job = self.studio.run(job_id)  # a cancelled job is returned as it is
                if job.error:
                    log.warning("comic %s %s: %s", job_id, job.state, job.error)
                elif job.image:
                    log.info("comic %s done: %s", job_id, job.image)
            except Exception:  # noqa: BLE001 - the worker outlives any one job
                log.exception("comic %s failed", job_id)

    def _changed(self, job: ComicJob) -> None:
        self.bus.publish(Event.COMIC, job.to_dict())

    # --- requests (API threads) ----------------------------------------------------------
    def submit(self, photos: list[str], prompt: str, **options: Unpack[ComicOptions]) -> ComicJobReply:
        _check_photos(photos)
        job = self.studio.submit(photos, prompt, options.get("size"), options.get("quality"), options.get("parent"))
        self._queue.put(job.id)
        return job.to_dict()

    def estimate(
        self, n: int | None = None, photos: list[str] | None = None, **options: Unpack[ComicOptions]
    ) -> ComicEstimateReply:
        parent = options.get("parent")
        if photos:
            _check_photos(photos)
        if n is None:
            if photos:
                n = len(set(photos))
            elif parent:
                n = len(self.studio.get(parent).photos)
            else:
                raise PetwatchError("give the number of reference images (n) or the photos")
        if parent:
            self.studio.get(parent)  # an unknown parent is an error here too
            n = min(n + 1, MAX_REFERENCES)  # the comic being refined goes first
        return self.studio.estimate(n, options.get("size"), options.get("quality"))

    def retry(self, job_id: str, prompt: str | None = None) -> ComicJobReply:
        _check_photos(self.studio.get(job_id).photos)
        job = self.studio.resubmit(job_id, prompt)
        self._queue.put(job.id)
        return job.to_dict()

    def records(self) -> list[ComicJobReply]:
        """Every job record, newest first."""
        return [job.to_dict() for job in self.studio.list()]

    def cancel(self, job_id: str) -> ComicJobReply:
        return self.studio.cancel(job_id).to_dict()

    def show(self, job_id: str) -> ComicShowReply:
        job = self.studio.get(job_id)
        return {**job.to_dict(), "chain": [link.to_dict() for link in self.studio.chain(job_id)]}

    def image(self, job_id: str) -> bytes:
        job = self.studio.get(job_id)
        if not job.image or not os.path.isfile(job.image):
            raise PetwatchError(f"comic {job_id} has no image ({job.state})")
        with open(job.image, "rb") as handle:
            return handle.read()


def _check_photos(paths: list[str]) -> None:
    """Refuse paths that are relative, missing or not photos, before anything is queued."""
    for path in paths:
        if not os.path.isabs(path):
            raise PetwatchError(f"photo paths must be absolute (the daemon has its own working directory): {path}")
        if not os.path.isfile(path):
            raise PetwatchError(f"photo not found: {path}")
        try:
            with open(path, "rb") as handle:
                head = handle.read(32)
        except OSError as error:
            raise PetwatchError(f"cannot read photo {path}: {error.strerror}") from None
        if photos_module.sniff_format(head) is None:
            raise PetwatchError(f"not a photo (JPEG, PNG, WebP, HEIC, AVIF or TIFF): {path}")
