"""A progress line on stderr: count, rate and ETA; a rich bar on a terminal, periodic lines otherwise."""

from __future__ import annotations

import atexit
import sys
import time
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class _RateColumn(ProgressColumn):
    """Items per second (rich's own speed columns count bytes)."""

    def render(self, task: Task) -> Text:
        return Text(f"{task.speed or 0.0:5.1f}/s")


class ProgressLine:
    """``update(done, total)`` as often as you like; ``finish()`` once, when done.

    Not a terminal (a log, a pipe, a test reading stderr): one plain line every ``every``
    seconds and one at the end, so the output stays readable and small.
    """

    def __init__(self, label: str, stream: TextIO | None = None, every: float = 5.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every
        # The rate is counted from the first update, not from here: loading the model and
        # walking the folders come before it, and are not "items per second".
        self.started: float | None = None
        self._last = 0.0
        self._bar: Progress | None = None  # started at the first update, on a terminal only
        self._task: TaskID | None = None
        self._finished = False

    def update(self, done: int, total: int, current: str = "") -> None:
        if self.started is None:
            self.started = time.monotonic()
        if self.tty:
            self._draw(done, total)
            return
        now = time.monotonic()
        if now - self._last < self.every and done < total:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        eta = _clock((total - done) / rate) if rate > 0 and total >= done else "?"
        share = done / total if total else 1.0
        self.stream.write(f"{self.label}: {done}/{total} ({share:.0%}) {rate:.1f}/s ETA {eta}\n")
        self.stream.flush()

    def _draw(self, done: int, total: int) -> None:
        if self._finished:  # a late update (from an event thread) must not start a new bar
            return
        if self._bar is None:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(bar_width=24),
                MofNCompleteColumn(),
                _RateColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(file=self.stream, force_terminal=True),
            )
            self._task = self._bar.add_task(self.label, total=total, completed=done)
            self._bar.start()
            atexit.register(self.finish)  # the bar hides the cursor: show it even after a crash
        elif self._task is not None:
            self._bar.update(self._task, completed=done, total=total)

    def finish(self) -> None:
        self._finished = True
        if self._bar is not None:
            self._bar.stop()  # leaves the last state of the bar on its own line
            self._bar = None
            atexit.unregister(self.finish)
