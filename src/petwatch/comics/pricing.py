"""What a comic costs: its sizes and qualities, the price tables, the estimate before a run
and the cost of its reported usage after."""

from __future__ import annotations

import typing
from typing import Any

from petwatch.settings import Settings

# The one place sizes and qualities are defined is the settings' own Literal types.
SIZES: tuple[str, ...] = typing.get_args(Settings.model_fields["comic_size"].annotation)
QUALITIES: tuple[str, ...] = typing.get_args(Settings.model_fields["comic_quality"].annotation)

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


def estimate_cost_usd(n_references: int, size: str, quality: str, input_fidelity: str | None) -> tuple[float, float]:
    """(output image USD, input USD) for one comic."""
    by_size = OUTPUT_IMAGE_USD["high" if quality == "auto" else quality]
    output_usd = max(by_size.values()) if size == "auto" else by_size[size]
    image_tokens = n_references * REFERENCE_IMAGE_TOKENS[input_fidelity or "high"]
    input_usd = image_tokens * TOKEN_USD["image_input"] + PROMPT_TOKENS_ALLOWANCE * TOKEN_USD["text_input"]
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
