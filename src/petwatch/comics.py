"""Reference photos + a prompt to a saved comic, through the OpenAI image-edit API; the jobs.

A comic request is a job: ``ComicStudio.submit`` validates it, checks the daily budget and
persists it as ``queued``; the daemon calls ``run`` in a worker thread; ``cancel`` works in
any state. Every job is one JSON file in ``locations.comics_dir()`` (written atomically), the
sidecar of its ``<id>.png``, so the prompt, the photo selection and the outcome survive any
failure and a daemon restart. Nothing is ever written next to the user's photos: the API gets
downscaled, upright PNG copies made in memory.

Restart policy: a job found ``running`` was interrupted mid-request (which may or may not
have been billed), so it becomes ``failed`` with "interrupted by a restart; retry it" rather
than being sent again unasked. ``queued`` jobs stay queued; the daemon runs them again.

Retries: 429 (except an exhausted quota), 408/409, 5xx and refused connections are retried
``comic_max_retries`` times with exponential backoff (or the server's Retry-After). A timeout
is not retried: the request may still be running, and billed, on the server.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import os
import random
import secrets
import threading
import typing
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import openai
from PIL import Image, UnidentifiedImageError

from petwatch import locations
from petwatch.errors import PetwatchError
from petwatch.photos import PhotoError, downscaled_png
from petwatch.settings import Settings

log = logging.getLogger(__name__)

MAX_REFERENCES = 16  # the image-edit API's limit on input images

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED})

# The one place sizes and qualities are defined is the settings' own Literal types.
SIZES: tuple[str, ...] = typing.get_args(Settings.model_fields["comic_size"].annotation)
QUALITIES: tuple[str, ...] = typing.get_args(Settings.model_fields["comic_quality"].annotation)

HOUSE_PROMPT = (
    "Draw a comic starring the pet shown in the reference photos. Keep the pet's identity "
    "exactly: the same kind of animal and breed, the same markings, fur colours and patterns, "
    "eye colour and build, recognisable in every panel."
)
REFINE_PROMPT = (
    "The first image is the current comic; the other images are photos of its pet. Revise the "
    "comic as asked and change nothing else. Keep the pet exactly as in the photos: the same "
    "animal, markings and colours."
)

# --- pricing (estimates) ---------------------------------------------------------------------
# USD per output image of gpt-image-1.5 by quality and size: OpenAI's per-image price list
# for gpt-image-1.5 (released Dec 2025), as republished by llmreference.com (refreshed
# 2026-05) and runware.ai's model docs. Check https://openai.com/api/pricing/ when it moves.
# Other models are estimated with this table too. "auto" is priced as the dearest option.
OUTPUT_IMAGE_USD: dict[str, dict[str, float]] = {
    "low": {"1024x1024": 0.009, "1536x1024": 0.013, "1024x1536": 0.013},
    "medium": {"1024x1024": 0.034, "1536x1024": 0.050, "1024x1536": 0.051},
    "high": {"1024x1024": 0.133, "1536x1024": 0.199, "1024x1536": 0.200},
}
# USD per token of gpt-image-1.5 (same sources): what turns a response's `usage` into dollars.
TOKEN_USD = {"text_input": 5e-6, "image_input": 8e-6, "text_output": 10e-6, "image_output": 32e-6}
# Input tokens per reference image: a rough, deliberately high guess (high input fidelity
# spends several times more tokens per image); the recorded usage replaces it afterwards.
REFERENCE_IMAGE_TOKENS = {"low": 1_300, "high": 4_200}
PROMPT_TOKENS_ALLOWANCE = 500
PRICING_BASIS = (
    "estimate from gpt-image-1.5 list prices (per output image by size and quality, plus "
    "input tokens per reference image); the API's reported usage replaces it after the run"
)


def estimate_cost_usd(
    n_references: int, size: str, quality: str, input_fidelity: str | None
) -> tuple[float, float]:
    """(output image USD, input USD) for one comic."""
    by_size = OUTPUT_IMAGE_USD["high" if quality == "auto" else quality]
    output_usd = max(by_size.values()) if size == "auto" else by_size[size]
    image_tokens = n_references * REFERENCE_IMAGE_TOKENS[input_fidelity or "high"]
    input_usd = (
        image_tokens * TOKEN_USD["image_input"] + PROMPT_TOKENS_ALLOWANCE * TOKEN_USD["text_input"]
    )
    return output_usd, input_usd


def cost_from_usage(usage: dict[str, Any]) -> float:
    """Dollars for a response's token ``usage``; an unknown split is priced as image tokens."""
    input_details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    input_tokens = usage.get("input_tokens") or 0
    output_tokens = usage.get("output_tokens") or 0
    text_in = input_details.get("text_tokens") or 0
    image_in = input_details.get("image_tokens") if input_details else input_tokens
    text_out = output_details.get("text_tokens") or 0
    image_out = output_details.get("image_tokens") if output_details else output_tokens
    usd = (
        text_in * TOKEN_USD["text_input"]
        + (image_in or 0) * TOKEN_USD["image_input"]
        + text_out * TOKEN_USD["text_output"]
        + (image_out or 0) * TOKEN_USD["image_output"]
    )
    return round(usd, 6)


def input_fidelity_for(model: str, wanted: str) -> str | None:
    """The input_fidelity to send, or None to omit it: only the gpt-image-1 family takes it."""
    if not model.startswith("gpt-image-1"):
        return None  # gpt-image-2 and later: "omit this parameter"
    return "low" if model.startswith("gpt-image-1-mini") else wanted  # mini supports only low


def compose_prompt(prompt: str, earlier_prompts: list[str]) -> str:
    """The full prompt: house rules for the pet's identity, then the user's words.

    ``earlier_prompts`` are the chain's previous turns, oldest first (empty for a new comic).
    """
    if not earlier_prompts:
        return f"{HOUSE_PROMPT}\n\nThe comic: {prompt}"
    lines = [REFINE_PROMPT, "", f"The comic was first made from: {earlier_prompts[0]}"]
    lines += [f"Then changed: {earlier}" for earlier in earlier_prompts[1:]]
    lines.append(f"Now change: {prompt}")
    return "\n".join(lines)


# --- the job record --------------------------------------------------------------------------
@dataclass
class ComicJob:
    """One comic request; also the JSON sidecar of its PNG."""

    id: str
    prompt: str  # the user's words for this turn
    photos: list[str]  # the selection, absolute paths, kept for resubmitting
    parent: str | None  # the comic this one refines
    model: str
    size: str
    quality: str
    input_fidelity: str | None  # None when the model takes no such parameter
    created_at: str  # ISO 8601, UTC
    full_prompt: str = ""  # exactly what is sent
    references: list[str] = field(
        default_factory=list
    )  # what is sent, in order (parent comic first)
    state: str = QUEUED
    progress: str = "queued"
    started_at: str | None = None
    finished_at: str | None = None
    attempts: int = 0
    image: str | None = None  # the comic PNG, in comics_dir()
    estimated_cost_usd: float = 0.0
    usage: dict[str, Any] | None = None  # the API's token usage, as returned
    cost_usd: float | None = None  # from usage, when the API reported it
    error: str | None = None  # what happened and what to do, for the user
    error_kind: str | None = None  # no_key, rejected, bad_request, auth, forbidden, not_found,
    # quota, rate_limit, server, timeout, network, bad_photo, bad_response, interrupted, internal

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ComicJob:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def copy(self) -> ComicJob:
        return ComicJob.from_dict(json.loads(json.dumps(self.to_dict())))

    @property
    def chargeable_usd(self) -> float:
        """What this job counts against today's budget."""
        if self.cost_usd is not None:
            return self.cost_usd
        return self.estimated_cost_usd if self.state in (QUEUED, RUNNING, SUCCEEDED) else 0.0


class ComicFailure(PetwatchError):
    """A comic request failed; ``kind`` names the cause, ``retryable`` whether to try again."""

    def __init__(self, kind: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


class _Cancelled(Exception):
    pass


# --- API errors in words ---------------------------------------------------------------------
def _server_reason(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"].strip():
        return body["message"].strip()
    return error.message.split(" - ", 1)[-1].strip()


def _is_safety_rejection(error: openai.APIStatusError) -> bool:
    body = error.body if isinstance(error.body, dict) else {}
    code = str(body.get("code") or "")
    text = f"{code} {body.get('type') or ''} {_server_reason(error)}".lower()
    return (
        code in ("moderation_blocked", "content_policy_violation")
        or "safety" in text
        or "moderation" in text
    )


def explain_api_error(
    error: openai.APIError, *, model: str, base_url: str | None, timeout: float, attempts: int
) -> ComicFailure:
    """A user-facing ComicFailure for an SDK error; ``attempts`` made so far."""
    config = locations.config_file()
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    if isinstance(error, openai.APITimeoutError):
        return ComicFailure(
            "timeout",
            f"the image API did not answer within {timeout:g} s (comic_timeout_seconds). "
            f"Retry the comic, or raise comic_timeout_seconds in {config}.",
        )
    if isinstance(error, openai.APIConnectionError):
        cause = str(error.__cause__ or error.message)
        where = base_url or "api.openai.com"
        hint = " and openai_base_url / OPENAI_BASE_URL" if base_url else ""
        return ComicFailure(
            "network",
            f"cannot reach the image API at {where}{tries}: {cause}. Check the network connection{hint}, then retry.",
            retryable=True,
        )
    if not isinstance(error, openai.APIStatusError):
        return ComicFailure(
            "bad_response", f"the image API sent an unusable answer: {error.message}"
        )
    status, reason = error.status_code, _server_reason(error)
    if status == 400 and _is_safety_rejection(error):
        return ComicFailure(
            "rejected",
            f"the image API refused this comic for safety reasons: {reason} "
            "Your prompt and photo selection are kept: edit them and submit again.",
        )
    if status == 400:
        return ComicFailure(
            "bad_request",
            f"the image API rejected the request (HTTP 400): {reason} "
            "Your prompt and photo selection are kept: edit them and submit again.",
        )
    if status == 401:
        return ComicFailure(
            "auth",
            f"the image API refused the API key (HTTP 401): {reason} Set a valid key with "
            f"`export OPENAI_API_KEY=sk-...` or openai_api_key in {config}.",
        )
    if status == 403:
        return ComicFailure(
            "forbidden",
            f"this API key may not use {model} (HTTP 403): {reason} Check the key's project "
            f"and the organization's verification, or choose another comic_model in {config}.",
        )
    if status == 404:
        return ComicFailure(
            "not_found",
            f"the image API does not offer the model {model} (HTTP 404): {reason} "
            f"Set comic_model in {config}.",
        )
    body = error.body if isinstance(error.body, dict) else {}
    if status == 429 and "insufficient_quota" in (str(body.get("code")), str(body.get("type"))):
        return ComicFailure(
            "quota",
            f"the OpenAI account has no credit left (HTTP 429): {reason} "
            "Add credit to the account, then retry the comic.",
        )
    if status == 429:
        return ComicFailure(
            "rate_limit",
            f"the image API is rate limiting this key (HTTP 429){tries}: {reason} Wait a minute, then retry.",
            retryable=True,
        )
    if status >= 500 or status in (408, 409):
        return ComicFailure(
            "server",
            f"the image API kept failing (HTTP {status}){tries}: {reason} "
            "It is probably a temporary outage; retry later.",
            retryable=True,
        )
    return ComicFailure("api", f"the image API answered HTTP {status}: {reason}")


def _retry_after_seconds(error: openai.APIError) -> float | None:
    response = getattr(error, "response", None)
    if response is None:
        return None
    for header, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = response.headers.get(header)
        if value is None:
            continue
        try:
            return float(value) / divisor
        except ValueError:  # an HTTP date: fall back to our own backoff
            continue
    return None


def no_key_failure() -> ComicFailure:
    return ComicFailure(
        "no_key",
        "no OpenAI API key: run `export OPENAI_API_KEY=sk-...` before starting the daemon, "
        f"or set openai_api_key in {locations.config_file()}.",
    )


# --- small helpers ---------------------------------------------------------------------------
def _now() -> datetime:
    return datetime.now(timezone.utc)


def _local_date(iso: str) -> date:
    return datetime.fromisoformat(iso).astimezone().date()


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _as_png(data: bytes) -> bytes:
    """The returned image as PNG bytes, or ComicFailure when it is not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.format == "PNG":
                return data
            out = io.BytesIO()
            image.save(out, "PNG")
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ComicFailure(
            "bad_response", f"the image API returned something that is not an image ({error})."
        ) from None


# --- the studio ------------------------------------------------------------------------------
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
        self.directory = locations.ensure_private_dir(directory or locations.comics_dir())
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

    def chain(self, job_id: str) -> list[ComicJob]:
        """The refinement chain ending at ``job_id``, first comic first."""
        with self._lock:
            chain = [self._job(job_id)]
            while (
                chain[-1].parent
                and chain[-1].parent in self._jobs
                and len(chain) <= len(self._jobs)
            ):
                chain.append(self._jobs[chain[-1].parent])
            return [job.copy() for job in reversed(chain)]

    def spent_today_usd(self) -> float:
        """Today's (local date) cost: reported usage, else estimates of queued/running/succeeded jobs."""
        today = _now().astimezone().date()
        with self._lock:
            return round(
                sum(
                    job.chargeable_usd
                    for job in self._jobs.values()
                    if _local_date(job.created_at) == today
                ),
                6,
            )

    def estimate(
        self, n_refs: int, size: str | None = None, quality: str | None = None
    ) -> dict[str, Any]:
        """The cost of one comic with ``n_refs`` reference images, and where today's budget stands."""
        if not 1 <= n_refs <= MAX_REFERENCES:
            raise PetwatchError(
                f"a comic takes 1 to {MAX_REFERENCES} reference images, not {n_refs}"
            )
        size, quality = self._size_and_quality(size, quality)
        fidelity = input_fidelity_for(self.settings.comic_model, self.settings.comic_input_fidelity)
        output_usd, input_usd = estimate_cost_usd(n_refs, size, quality, fidelity)
        usd = round(output_usd + input_usd, 4)
        spent = self.spent_today_usd()
        budget = self.settings.comic_daily_budget_usd
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
            "budget_usd": budget,
            "within_budget": budget > 0 and spent + usd <= budget + 1e-9,
            "basis": PRICING_BASIS,
        }

    # --- commands --------------------------------------------------------------------------
    def submit(
        self,
        photos: list[str | os.PathLike[str]],
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
        with self._lock:
            parent_job = self._parent(parent) if parent else None
            selection = (
                _absolute_unique(photos)
                if photos
                else list(parent_job.photos if parent_job else [])
            )
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
            self._check_budget(estimate)
            created = _now()
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
        if old.state not in FINAL_STATES:
            raise PetwatchError(f"comic {job_id} is still {old.state}; cancel it first")
        return self.submit(old.photos, prompt or old.prompt, old.size, old.quality, old.parent)

    def cancel(self, job_id: str) -> ComicJob:
        """Cancel a queued or running job; a finished job is returned unchanged.

        A request already sent cannot be recalled: its answer is dropped when it comes, and
        any usage it reports is still recorded (it may have been billed).
        """
        with self._lock:
            job = self._job(job_id)
            if job.state in FINAL_STATES:
                return job.copy()
            was_running = job.state == RUNNING
            job.state = CANCELLED
            job.progress = "cancelled" + (
                "; the answer to the request in flight will be dropped" if was_running else ""
            )
            job.finished_at = _now().isoformat()
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
            job.state, job.started_at = RUNNING, _now().isoformat()
            job.progress = f"preparing {len(job.references)} reference image(s)"
            self._save(job)
            snapshot = job.copy()
        try:
            png, usage = self._generate(snapshot, cancelled)
            image_path = self.directory / f"{job_id}.png"
            with self._lock:  # a cancel now must not leave an orphan PNG behind
                if self._jobs[job_id].state == RUNNING:
                    _write_atomically(image_path, png)
                self._finish(job_id, SUCCEEDED, usage=usage, image=str(image_path))
        except _Cancelled:
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

    # --- the request -----------------------------------------------------------------------
    def _generate(
        self, job: ComicJob, cancelled: threading.Event
    ) -> tuple[bytes, dict[str, Any] | None]:
        settings = self.settings
        api_key = settings.effective_openai_api_key
        if not api_key:
            raise no_key_failure()
        images = self._reference_images(job)
        request: dict[str, Any] = {
            "model": job.model,
            "image": images,
            "prompt": job.full_prompt,
            "size": job.size,
            "quality": job.quality,
            "output_format": "png",
        }
        if job.input_fidelity:
            request["input_fidelity"] = job.input_fidelity
        base_url = settings.effective_openai_base_url
        attempts = settings.comic_max_retries + 1
        # Our own retry loop rather than the SDK's: progress text, cancel between tries, and
        # a configurable backoff.
        with openai.OpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=settings.comic_timeout_seconds,
            max_retries=0,
        ) as client:
            for attempt in range(1, attempts + 1):
                if cancelled.is_set():
                    raise _Cancelled
                self._update(
                    job.id,
                    attempts=attempt,
                    progress=f"drawing with {job.model}"
                    + (f" (attempt {attempt}/{attempts})" if attempt > 1 else ""),
                )
                try:
                    response = client.images.edit(**request)
                except openai.APIError as error:
                    failure = explain_api_error(
                        error,
                        model=job.model,
                        base_url=base_url,
                        timeout=settings.comic_timeout_seconds,
                        attempts=attempt,
                    )
                    if not failure.retryable or attempt == attempts:
                        raise failure from None
                    delay = self._backoff(attempt, error)
                    log.info("comic %s: %s; retrying in %.1f s", job.id, failure.kind, delay)
                    self._update(
                        job.id,
                        progress=f"{failure.kind.replace('_', ' ')}; retrying in {delay:.0f} s",
                    )
                    if cancelled.wait(delay):
                        raise _Cancelled from None
                    continue
                usage = response.usage.model_dump() if response.usage else None
                if cancelled.is_set():
                    self._update(
                        job.id, usage=usage, cost_usd=cost_from_usage(usage) if usage else None
                    )
                    raise _Cancelled
                self._update(job.id, progress="saving")
                return _decode_image(response), usage
        raise AssertionError("unreachable")  # pragma: no cover

    def _reference_images(self, job: ComicJob) -> list[tuple[str, bytes, str]]:
        """Upright PNG copies no larger than comic_reference_px, made in memory."""
        settings = self.settings
        images = []
        for number, path in enumerate(job.references, 1):
            try:
                data = downscaled_png(path, settings.comic_reference_px, settings.max_image_pixels)
            except PhotoError as error:
                raise ComicFailure(
                    "bad_photo", f"cannot use {path}: {error}. Deselect it and submit again."
                ) from None
            images.append((f"reference-{number:02d}.png", data, "image/png"))
        return images

    def _backoff(self, attempt: int, error: openai.APIError) -> float:
        server_says = _retry_after_seconds(error)
        if server_says is not None and server_says >= 0:
            return min(server_says, self.backoff_max_seconds)
        delay = self.backoff_base_seconds * 2 ** (attempt - 1) * (1 + random.random() / 4)
        return min(delay, self.backoff_max_seconds)

    # --- records ---------------------------------------------------------------------------
    def _job(self, job_id: str) -> ComicJob:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise PetwatchError(f"no comic job {job_id!r}") from None

    def _parent(self, parent_id: str) -> ComicJob:
        parent = self._job(parent_id)
        if parent.state != SUCCEEDED or not parent.image or not os.path.isfile(parent.image):
            raise PetwatchError(
                f"comic {parent_id} has no finished image to refine ({parent.state})"
            )
        return parent

    def _size_and_quality(self, size: str | None, quality: str | None) -> tuple[str, str]:
        size = size or self.settings.comic_size
        quality = quality or self.settings.comic_quality
        if size not in SIZES:
            raise PetwatchError(f"unknown comic size {size!r}; one of {', '.join(SIZES)}")
        if quality not in QUALITIES:
            raise PetwatchError(f"unknown comic quality {quality!r}; one of {', '.join(QUALITIES)}")
        return size, quality

    def _check_budget(self, estimate: float) -> None:
        budget = self.settings.comic_daily_budget_usd
        config = locations.config_file()
        if budget <= 0:
            raise PetwatchError(
                f"comics are switched off: comic_daily_budget_usd is 0; raise it in {config}"
            )
        spent = self.spent_today_usd()
        if spent + estimate > budget + 1e-9:
            raise PetwatchError(
                f"this comic (about ${estimate:.2f}) would exceed today's comic budget: "
                f"${spent:.2f} of ${budget:.2f} is already spent or queued. Try again tomorrow, "
                f"or raise comic_daily_budget_usd in {config}."
            )

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
                job.finished_at = _now().isoformat()
                job.image = image if state == SUCCEEDED else None
                job.error, job.error_kind = error, kind
                job.progress = {
                    SUCCEEDED: f"done: {image}",
                    FAILED: "failed",
                    CANCELLED: "cancelled",
                }[state]
            self._save(job)

    def _save(self, job: ComicJob) -> None:
        data = json.dumps(job.to_dict(), indent=2, ensure_ascii=False).encode() + b"\n"
        _write_atomically(self.directory / f"{job.id}.json", data)
        if self.on_change is not None:
            try:
                self.on_change(job.copy())
            except Exception:  # noqa: BLE001 - a listener's bug must not fail the job
                log.exception("comic on_change listener failed")

    def _load(self) -> None:
        for leftover in self.directory.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)  # a write cut short by a crash; the old file stands
        for path in sorted(self.directory.glob("*.json")):
            try:
                job = ComicJob.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, TypeError) as error:
                log.warning("skipping unreadable comic record %s: %s", path, error)
                continue
            if job.state == RUNNING:
                job.state, job.progress = FAILED, "failed"
                job.error, job.error_kind = "interrupted by a restart; retry it", "interrupted"
                job.finished_at = _now().isoformat()
                self._save(job)
            self._jobs[job.id] = job


def _decode_image(response: Any) -> bytes:
    first = response.data[0] if response.data else None
    if first is None or not first.b64_json:
        raise ComicFailure(
            "bad_response", "the image API answered without an image; retry the comic."
        )
    try:
        data = base64.b64decode(first.b64_json, validate=True)
    except (binascii.Error, ValueError):
        raise ComicFailure(
            "bad_response", "the image API returned an image that is not valid base64."
        ) from None
    return _as_png(data)


def _absolute_unique(paths: list[str | os.PathLike[str]]) -> list[str]:
    seen: dict[str, None] = {}
    for path in paths:
        seen[os.path.abspath(os.path.expanduser(os.fspath(path)))] = None
    return list(seen)
