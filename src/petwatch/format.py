"""Pure text formatting for the front ends (the TUI and the CLI): numbers, durations, sizes, dates, paths."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import datetime
from typing import Any


def count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def plural(value: int, word: str) -> str:
    return f"{count(value)} {word}{'' if value == 1 else 's'}"


def duration(seconds: float | None) -> str:
    """A short human duration: 42s, 3m05s, 2h10m; "-" when unknown."""
    if seconds is None or seconds < 0:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def rate(per_second: float | None) -> str:
    if not per_second:
        return "-"
    return f"{per_second:.1f}/s" if per_second < 100 else f"{per_second:.0f}/s"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    amount = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if amount < 1024 or unit == "GB":
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return str(value)


def taken(unix_seconds: int | float | None) -> str:
    """The EXIF capture time in local time; 0 or missing means unknown."""
    if not unix_seconds:
        return "unknown"
    try:
        return datetime.fromtimestamp(unix_seconds).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return "unknown"


def home_relative(path: str) -> str:
    home = os.path.expanduser("~")
    if home not in ("", "/") and (path == home or path.startswith(home + os.sep)):
        return "~" + path[len(home) :]
    return path


def usd(value: float | None) -> str:
    """Dollars as the CLI shows them: $0.07; "-" when unknown."""
    if value is None:
        return "-"
    if 0 < value < 0.005:
        return "<$0.01"
    return f"${value:.2f}"


def comic_cost(spent_usd: float | None, estimated_usd: float | None) -> str:
    """A comic's money: what it spent, apart from the estimate (a failed one spent nothing)."""
    if spent_usd is None:
        return f"est. {usd(estimated_usd)}"
    return f"spent {usd(spent_usd) if spent_usd else '$0'} (est. {usd(estimated_usd)})"


def short_text(text: str, width: int) -> str:
    """One line of at most ``width`` characters, cut with "…"."""
    line = " ".join(text.split())
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def no_pets_found(why: Mapping[str, Any]) -> str:
    """Why "pets found for you" shows nothing, from a DiscoveryWhyReply: what was seen, and
    what the rule needs."""
    rule = (
        f"a pet shows here once at least {why['min_group']} photos of it, from {why['min_moments']} "
        "different days or folders, are alike enough to link"
    )
    if not why["pet_photos"]:
        return f"No pets found yet: no indexed photo shows a dog or a cat. {rule[0].upper()}{rule[1:]}."
    seen = (
        f"No pets found yet: {plural(why['pet_photos'], 'photo')} show a dog or a cat, "
        f"{plural(why['close_pairs'], 'pair')} of them alike enough to link"
    )
    if why["one_moment"]:
        seen += f"; {plural(why['one_moment'], 'group')} of {why['min_group']}+ all from one day and folder"
    elif why["largest"] > 1:
        seen += f" (the largest cluster: {plural(why['largest'], 'photo')})"
    return f"{seen}. {rule[0].upper()}{rule[1:]}."
