"""A progress line on stderr: count, rate and ETA; redrawn in place on a terminal, periodic otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class ProgressLine:
    def __init__(self, label: str, stream: TextIO | None = None, every: float = 5.0) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.every = every if not self.tty else 0.1
        self.started = time.monotonic()
        self._last = 0.0
        self._drawn = False

    def update(self, done: int, total: int, current: str = "") -> None:
        now = time.monotonic()
        if now - self._last < self.every and done < total:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        eta = _clock((total - done) / rate) if rate > 0 and total >= done else "?"
        share = done / total if total else 1.0
        if self.tty:
            bar = "#" * int(share * 24)
            line = f"\r{self.label} [{bar:<24}] {done}/{total} {rate:5.1f}/s ETA {eta}"
            self.stream.write(line[:200].ljust(80))
        else:
            self.stream.write(f"{self.label}: {done}/{total} ({share:.0%}) {rate:.1f}/s ETA {eta}\n")
        self.stream.flush()
        self._drawn = True

    def finish(self) -> None:
        if self._drawn and self.tty:
            self.stream.write("\n")
            self.stream.flush()
