"""The daemon noticing that its config file changed: what can change under a running daemon is
applied at once, the rest is reported as "restart to apply", and a broken file is reported
(in the log and in `petwatch status`) instead of being ignored until the next start.

The file is checked by its size and mtime from the daemon's clock (every couple of seconds):
editors replace the file rather than write it in place, which a stat sees either way.
"""

from __future__ import annotations

import logging
import os

from petwatch import locations
from petwatch import settings as settings_module
from petwatch.errors import PetwatchError
from petwatch.settings import Settings

log = logging.getLogger(__name__)

# Read where they are used, at each use: search defaults, comics (their key, server, costs and
# cap), the walk's interval, the log level. Folders are applied by the daemon (watch, walk, drop).
LIVE = frozenset(
    {
        "top_k",
        "min_score",
        "rescan_minutes",
        "log_level",
        "openai_api_key",
        "openai_base_url",
        *(name for name in Settings.model_fields if name.startswith("comic_")),
    }
)


def _stamp() -> tuple[int, int] | None:
    try:
        status = os.stat(locations.config_file())
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


class ConfigWatch:
    """``check()`` from a clock: the settings object the daemon shares is updated in place."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stamp = _stamp()
        self.problem: str | None = None  # for `petwatch status`: a broken file, or what needs a restart

    def check(self) -> list[str] | None:
        """The folders the file now names when they changed (the daemon applies them), else None."""
        stamp = _stamp()
        if stamp == self._stamp:
            return None
        self._stamp = stamp
        try:
            new = settings_module.load()
        except PetwatchError as error:
            self.problem = f"{error}; running on the settings it had, fix the file and it is read again"
            log.error("config file changed, but %s", self.problem)
            return None
        changed = [name for name in Settings.model_fields if getattr(new, name) != getattr(self.settings, name)]
        applied = [name for name in changed if name in LIVE]
        for name in applied:
            setattr(self.settings, name, getattr(new, name))
        if "log_level" in applied:
            logging.getLogger().setLevel(new.log_level)  # the root, as setup_logging set it
        waiting = [name for name in changed if name not in LIVE and name != "folders"]
        self.problem = (
            f"{', '.join(waiting)} changed in {locations.config_file()}: restart the daemon to apply"
            if waiting
            else None
        )
        if applied:
            log.info("config file changed: applied %s", ", ".join(applied))
        if self.problem:
            log.warning("%s", self.problem)
        if "folders" in changed:
            self.settings.folders = new.folders
            return [str(folder) for folder in new.folders]
        return None
