"""The daily comic budget: what today's jobs count against comic_daily_budget_usd."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from petwatch import locations
from petwatch.comics.jobs import ComicJob, utc_now
from petwatch.errors import PetwatchError


def spent_today_usd(jobs: Iterable[ComicJob]) -> float:
    """Today's (local date) cost: reported usage, else estimates of queued/running/succeeded jobs."""
    today = utc_now().astimezone().date()
    return round(sum(job.chargeable_usd for job in jobs if _local_date(job.created_at) == today), 6)


def within(budget_usd: float, spent_usd: float, usd: float) -> bool:
    """Whether a comic costing ``usd`` fits; a budget of 0 switches comics off."""
    return budget_usd > 0 and spent_usd + usd <= budget_usd + 1e-9


def check(budget_usd: float, spent_usd: float, estimate_usd: float) -> None:
    """PetwatchError, saying what to do, when a comic of ``estimate_usd`` does not fit."""
    config = locations.config_file()
    if budget_usd <= 0:
        raise PetwatchError(f"comics are switched off: comic_daily_budget_usd is 0; raise it in {config}")
    if not within(budget_usd, spent_usd, estimate_usd):
        raise PetwatchError(
            f"this comic (about ${estimate_usd:.2f}) would exceed today's comic budget: "
            f"${spent_usd:.2f} of ${budget_usd:.2f} is already spent or queued. Try again "
            f"tomorrow, or raise comic_daily_budget_usd in {config}."
        )


def _local_date(iso: str) -> date:
    return datetime.fromisoformat(iso).astimezone().date()
