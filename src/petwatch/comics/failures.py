"""Why a comic failed, in words the user can act on: ComicFailure and the SDK's errors explained."""

from __future__ import annotations

import openai

from petwatch import locations
from petwatch.errors import PetwatchError


class ComicFailure(PetwatchError):
    """A comic request failed; ``kind`` names the cause, ``retryable`` whether to try again."""

    def __init__(self, kind: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.retryable = retryable


def _server_reason(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"].strip():
        return body["message"].strip()
    return error.message.split(" - ", 1)[-1].strip()


def _is_safety_rejection(error: openai.APIStatusError) -> bool:
    body = error.body if isinstance(error.body, dict) else {}
    code = str(body.get("code") or "")
    text = f"{code} {body.get('type') or ''} {_server_reason(error)}".lower()
    return code in ("moderation_blocked", "content_policy_violation") or "safety" in text or "moderation" in text


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
        return ComicFailure("bad_response", f"the image API sent an unusable answer: {error.message}")
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
            f"the image API does not offer the model {model} (HTTP 404): {reason} Set comic_model in {config}.",
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


def retry_after_seconds(error: openai.APIError) -> float | None:
    """The delay the server asked for (Retry-After), in seconds; None when it names none."""
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
