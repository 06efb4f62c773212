"""One comic drawn through the OpenAI image-edit API: the request, its retries, the answer.

Nothing is ever written next to the user's photos: the API gets downscaled, upright PNG
copies made in memory.

Retries: 429 (except an exhausted quota), 408/409, 5xx and refused connections are retried
``comic_max_retries`` times with exponential backoff (or the server's Retry-After). A timeout
is not retried: the request may still be running, and billed, on the server.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

import openai
from PIL import Image, UnidentifiedImageError

from petwatch.comics.failures import (
    ComicFailure,
    explain_api_error,
    no_key_failure,
    retry_after_seconds,
)
from petwatch.comics.jobs import ComicJob
from petwatch.comics.pricing import cost_from_usage
from petwatch.photos import PhotoError, downscaled_png
from petwatch.settings import Settings

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The job was cancelled between attempts or while its request was in flight."""


def draw(
    job: ComicJob,
    settings: Settings,
    cancelled: threading.Event,
    update: Callable[..., None],
    *,
    backoff_base_seconds: float,
    backoff_max_seconds: float,
) -> tuple[bytes, dict[str, Any] | None]:
    """The comic's PNG and the API's usage; ``update(**changes)`` records progress on the job.

    Raises ComicFailure (in words for the user) or Cancelled.
    """
    api_key = settings.effective_openai_api_key
    if not api_key:
        raise no_key_failure()
    images = _reference_images(job, settings)
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
                raise Cancelled
            update(
                attempts=attempt,
                progress=f"drawing with {job.model}" + (f" (attempt {attempt}/{attempts})" if attempt > 1 else ""),
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
                delay = _backoff(attempt, error, backoff_base_seconds, backoff_max_seconds)
                log.info("comic %s: %s; retrying in %.1f s", job.id, failure.kind, delay)
                update(progress=f"{failure.kind.replace('_', ' ')}; retrying in {delay:.0f} s")
                if cancelled.wait(delay):
                    raise Cancelled from None
                continue
            usage = response.usage.model_dump() if response.usage else None
            if cancelled.is_set():  # the answer is dropped; what it may have cost is kept
                update(usage=usage, cost_usd=cost_from_usage(usage) if usage else None)
                raise Cancelled
            update(progress="saving")
            return _decode_image(response), usage
    raise AssertionError("unreachable")  # pragma: no cover


def _reference_images(job: ComicJob, settings: Settings) -> list[tuple[str, bytes, str]]:
    """Upright PNG copies no larger than comic_reference_px, made in memory."""
    images = []
    for number, path in enumerate(job.references, 1):
        try:
            data = downscaled_png(path, settings.comic_reference_px, settings.max_image_pixels)
        except PhotoError as error:
            raise ComicFailure("bad_photo", f"cannot use {path}: {error}. Deselect it and submit again.") from None
        images.append((f"reference-{number:02d}.png", data, "image/png"))
    return images


def _backoff(attempt: int, error: openai.APIError, base_seconds: float, max_seconds: float) -> float:
    server_says = retry_after_seconds(error)
    if server_says is not None and server_says >= 0:
        return min(server_says, max_seconds)
    delay = base_seconds * 2 ** (attempt - 1) * (1 + random.random() / 4)
    return min(delay, max_seconds)


def _decode_image(response: Any) -> bytes:
    first = response.data[0] if response.data else None
    if first is None or not first.b64_json:
        raise ComicFailure("bad_response", "the image API answered without an image; retry the comic.")
    try:
        data = base64.b64decode(first.b64_json, validate=True)
    except (binascii.Error, ValueError):
        raise ComicFailure("bad_response", "the image API returned an image that is not valid base64.") from None
    return _as_png(data)


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
