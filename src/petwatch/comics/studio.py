"""ComicStudio: the comic jobs' lifecycle, from a validated request to a saved comic.

A comic request is a job: ``submit`` validates it, checks the daily budget and persists it as
``queued``; the daemon calls ``run`` in a worker thread; ``cancel`` works in any state.

Restart policy: a job found ``running`` was interrupted mid-request (which may or may not
have been billed), so it becomes ``failed`` with "interrupted by a restart; retry it" rather
than being sent again unasked. ``queued`` jobs stay queued; the daemon runs them again.
"""

from __future__ import annotations

import builtins
import logging
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from petwatch.comics import budget, openai_call
from petwatch.comics.failures import ComicFailure, no_key_failure
from petwatch.comics.jobs import ComicJob, JobFiles, utc_now
from petwatch.comics.pricing import (
    PRICING_BASIS,
    QUALITIES,
    SIZES,
    cost_from_usage,
    estimate_cost_usd,
    input_fidelity_for,
)
from petwatch.comics.prompts import compose_prompt
from petwatch.errors import PetwatchError
from petwatch.protocol import (
    CANCELLED,
    COMIC_FINAL_STATES,
    FAILED,
    MAX_REFERENCES,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    ComicEstimateReply,
)
from petwatch.settings import Settings

log = logging.getLogger(__name__)


class ComicStudio:
    """The comic jobs; the daemon owns one. Thread-safe: ``run`` blocks in a worker thread
    while other threads submit, list, get and cancel.

    ``settings`` may be replaced at any time (a config reload); a job uses the settings of
    the moment it is submitted (model, size, quality) and run (key, URL, timeout, retries).
    ``backoff_base_seconds`` is the first retry delay, doubled each retry: tests pass a tiny one.
    ``on_change(job)`` is called with a copy after every change of a job (state, progress),
    from whichever thread made it, so the daemon can push events; it must not block.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        directory: Path | None = None,
        backoff_base_seconds: float = 1.0,
        backoff_max_seconds: float = 30.0,
        on_change: Callable[[ComicJob], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_change = on_change
        self.files = JobFiles(directory)
        self.backoff_base_seconds = backoff_base_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self._lock = threading.RLock()
        self._jobs: dict[str, ComicJob] = {}
        self._cancel_events: dict[str, threading.Event] = {}
        self._load()

    # --- queries ---------------------------------------------------------------------------
    def get(self, job_id: str) -> ComicJob:
        with self._lock:
            return self._job(job_id).copy()

    def list(self) -> list[ComicJob]:
        """Every job, newest first."""
        with self._lock:
            jobs = [job.copy() for job in self._jobs.values()]
        return sorted(jobs, key=lambda job: (job.created_at, job.id), reverse=True)

    def chain(self, job_id: str) -> builtins.list[ComicJob]:  # builtins: ``list`` is the method here
        """The refinement chain ending at ``job_id``, first comic first."""
        with self._lock:
            chain = [self._job(job_id)]
            while chain[-1].parent and chain[-1].parent in self._jobs and len(chain) <= len(self._jobs):
                chain.append(self._jobs[chain[-1].parent])
            return [job.copy() for job in reversed(chain)]

    def spent_today_usd(self) -> float:
        """Today's (local date) cost: reported usage, else estimates of queued/running/succeeded jobs."""
        with self._lock:
            return budget.spent_today_usd(self._jobs.values())

    def estimate(self, n_refs: int, size: str | None = None, quality: str | None = None) -> ComicEstimateReply:
        """The cost of one comic with ``n_refs`` reference images, and where today's budget stands."""
        if not 1 <= n_refs <= MAX_REFERENCES:
            raise PetwatchError(f"a comic takes 1 to {MAX_REFERENCES} reference images, not {n_refs}")
        size, quality = self._size_and_quality(size, quality)
        fidelity = input_fidelity_for(self.settings.comic_model, self.settings.comic_input_fidelity)
        output_usd, input_usd = estimate_cost_usd(n_refs, size, quality, fidelity)
        usd = round(output_usd + input_usd, 4)
        spent = self.spent_today_usd()
        budget_usd = self.settings.comic_daily_budget_usd
        return {
            "model": self.settings.comic_model,
            "references": n_refs,
            "size": size,
            "quality": quality,
            "input_fidelity": fidelity,
            "output_usd": round(output_usd, 4),
            "input_usd": round(input_usd, 4),
            "usd": usd,
            "spent_today_usd": round(spent, 4),
            "budget_usd": budget_usd,
            "within_budget": budget.within(budget_usd, spent, usd),
            "basis": PRICING_BASIS,
            "no_key": None if self.settings.effective_openai_api_key else str(no_key_failure()),
        }

    # --- commands --------------------------------------------------------------------------
    def submit(
        self,
        photos: Sequence[str | os.PathLike[str]],
        prompt: str,
        size: str | None = None,
        quality: str | None = None,
        parent: str | None = None,
    ) -> ComicJob:
        """Validate, check the budget and persist a queued job; PetwatchError says why not.

        With ``parent`` the new job refines that comic: its PNG goes first among the
        references, and ``photos`` defaults to the parent's selection.
        """
        prompt = prompt.strip()
        if not prompt:
            raise PetwatchError("the comic needs a prompt: say what should happen in it")
        size, quality = self._size_and_quality(size, quality)
        settings = self.settings
        if not settings.effective_openai_api_key:  # refused before a job is queued, not failed after
            raise no_key_failure()
        with self._lock:
            parent_job = self._parent(parent) if parent else None
            selection = _absolute_unique(photos) if photos else list(parent_job.photos if parent_job else [])
            if not selection:
                raise PetwatchError("select at least one photo of your pet for the comic")
            if len(selection) > MAX_REFERENCES:
                raise PetwatchError(
                    f"{len(selection)} photos selected, but the image API takes at most {MAX_REFERENCES} "
                    f"reference images: pick the {MAX_REFERENCES} that show your pet best"
                )
            for photo in selection:
                if not os.path.isfile(photo):
                    raise PetwatchError(f"photo not found: {photo}")
            references = selection
            earlier: list[str] = []
            if parent_job:
                # The comic carries the look; keep the total within the API's limit.
                references = [parent_job.image or ""] + selection[: MAX_REFERENCES - 1]
                earlier = [job.prompt for job in self.chain(parent_job.id)]
            fidelity = input_fidelity_for(settings.comic_model, settings.comic_input_fidelity)
            output_usd, input_usd = estimate_cost_usd(len(references), size, quality, fidelity)
            estimate = round(output_usd + input_usd, 4)
            budget.check(settings.comic_daily_budget_usd, self.spent_today_usd(), estimate)
            created = utc_now()
            job = ComicJob(
                id=f"{created:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}",
                prompt=prompt,
                photos=selection,
                parent=parent_job.id if parent_job else None,
                model=settings.comic_model,
                size=size,
                quality=quality,
                input_fidelity=fidelity,
                created_at=created.isoformat(),
                full_prompt=compose_prompt(prompt, earlier),
                references=references,
                estimated_cost_usd=estimate,
            )
            self._jobs[job.id] = job
            self._save(job)
            return job.copy()

    def resubmit(self, job_id: str, prompt: str | None = None) -> ComicJob:
        """A new job with a finished job's selection, size, quality and parent; ``prompt``
        replaces its prompt (after a safety rejection, say)."""
        old = self.get(job_id)
        if old.state not in COMIC_FINAL_STATES:
            raise PetwatchError(f"comic {job_id} is still {old.state}; cancel it first")
        return self.submit(old.photos, prompt or old.prompt, old.size, old.quality, old.parent)

    def cancel(self, job_id: str) -> ComicJob:
        """Cancel a queued or running job; a finished job is returned unchanged.

        A request already sent cannot be recalled: its answer is dropped when it comes, and
        any usage it reports is still recorded (it may have been billed).
        """
        with self._lock:
            job = self._job(job_id)
            if job.state in COMIC_FINAL_STATES:
                return job.copy()
            was_running = job.state == RUNNING
            job.state = CANCELLED
            job.progress = "cancelled" + (
                "; the answer to the request in flight will be dropped" if was_running else ""
            )
            job.finished_at = utc_now().isoformat()
            if job_id in self._cancel_events:
                self._cancel_events[job_id].set()
            self._save(job)
            return job.copy()

    def run(self, job_id: str) -> ComicJob:
        """Make the comic (blocking). Returns the finished job; a job that is not queued is
        returned as it is. Never raises for API or photo failures: they land in ``error``."""
        with self._lock:
            job = self._job(job_id)
            if job.state != QUEUED:
                return job.copy()
            cancelled = self._cancel_events.setdefault(job_id, threading.Event())
            job.state, job.started_at = RUNNING, utc_now().isoformat()
            job.progress = f"preparing {len(job.references)} reference image(s)"
            self._save(job)
            snapshot = job.copy()
        try:
            png, usage = openai_call.draw(
                snapshot,
                self.settings,
                cancelled,
                lambda **changes: self._update(job_id, **changes),
                backoff_base_seconds=self.backoff_base_seconds,
                backoff_max_seconds=self.backoff_max_seconds,
            )
            image_path = self.files.image_path(job_id)
            with self._lock:  # a cancel now must not leave an orphan PNG behind
                if self._jobs[job_id].state == RUNNING:
                    self.files.save_image(job_id, png)
                self._finish(job_id, SUCCEEDED, usage=usage, image=str(image_path))
        except openai_call.Cancelled:
            self._finish(job_id, CANCELLED)
        except ComicFailure as failure:
            self._finish(job_id, FAILED, error=str(failure), kind=failure.kind)
        except Exception as error:  # noqa: BLE001 - a job must never stay "running"
            log.exception("comic %s failed unexpectedly", job_id)
            self._finish(job_id, FAILED, error=f"unexpected error: {error}", kind="internal")
        finally:
            with self._lock:
                self._cancel_events.pop(job_id, None)
        return self.get(job_id)

    # --- records ---------------------------------------------------------------------------
    def _job(self, job_id: str) -> ComicJob:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise PetwatchError(f"no comic job {job_id!r}") from None

    def _parent(self, parent_id: str) -> ComicJob:
        parent = self._job(parent_id)
        if parent.state != SUCCEEDED or not parent.image or not os.path.isfile(parent.image):
            raise PetwatchError(f"comic {parent_id} has no finished image to refine ({parent.state})")
        return parent

    def _size_and_quality(self, size: str | None, quality: str | None) -> tuple[str, str]:
        size = size or self.settings.comic_size
        quality = quality or self.settings.comic_quality
        if size not in SIZES:
            raise PetwatchError(f"unknown comic size {size!r}; one of {', '.join(SIZES)}")
        if quality not in QUALITIES:
            raise PetwatchError(f"unknown comic quality {quality!r}; one of {', '.join(QUALITIES)}")
        return size, quality

    def _update(self, job_id: str, **changes: Any) -> None:
        with self._lock:
            job = self._jobs[job_id]
            for name, value in changes.items():
                if name == "progress" and job.state != RUNNING:
                    continue  # a cancel's words stay
                setattr(job, name, value)
            self._save(job)

    def _finish(
        self,
        job_id: str,
        state: str,
        *,
        usage: dict[str, Any] | None = None,
        image: str | None = None,
        error: str | None = None,
        kind: str | None = None,
    ) -> None:
        with self._lock:
            job = self._jobs[job_id]
            if usage is not None:
                job.usage, job.cost_usd = usage, cost_from_usage(usage)
            if job.state == RUNNING:  # a cancel that came first stands
                job.state = state
                job.finished_at = utc_now().isoformat()
                job.image = image if state == SUCCEEDED else None
                job.error, job.error_kind = error, kind
                job.progress = {
                    SUCCEEDED: f"done: {image}",
                    FAILED: "failed",
                    CANCELLED: "cancelled",
                }[state]
            self._save(job)

    def _save(self, job: ComicJob) -> None:
        self.files.save(job)
        if self.on_change is not None:
            try:
                self.on_change(job.copy())
            except Exception:  # noqa: BLE001 - a listener's bug must not fail the job
                log.exception("comic on_change listener failed")

    def _load(self) -> None:
        for job in self.files.load():
            if job.state == RUNNING:  # maybe billed, so not sent again unasked
                job.state, job.progress = FAILED, "failed"
                job.error, job.error_kind = "interrupted by a restart; retry it", "interrupted"
                job.finished_at = utc_now().isoformat()
                self._save(job)
            self._jobs[job.id] = job


def _absolute_unique(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for path in paths:
        seen[os.path.abspath(os.path.expanduser(os.fspath(path)))] = None
    return list(seen)
