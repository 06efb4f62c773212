"""What is asked of the model: house rules that keep the pet's identity, then the user's words."""

from __future__ import annotations

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
