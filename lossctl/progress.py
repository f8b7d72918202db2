"""A progress display on stderr for long evaluations: only on a terminal, only after a moment.

The callback costs one clock read per batch until the run has taken ``delay`` seconds; only then is a
line drawn, and redrawn from the callback at most ``refresh`` times a second: no refresh thread competing
with the evaluation for the interpreter, and no import (drawing it with rich.progress cost 35-50 ms of
imports per run, a few percent of a one-second evaluation).  The line is erased when the run ends.
"""
from __future__ import annotations

import sys
import time

_SPIN = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_WIDTH = 30


class RowProgress:
    def __init__(self, total_rows: int | None = None, delay: float = 0.75, enabled: bool | None = None,
                 refresh: float = 8.0, stream=None):
        import os
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            enabled = self.stream.isatty() and not os.environ.get("CI")
        self.enabled = enabled
        self.total = total_rows
        self.delay = delay
        self.interval = 1.0 / refresh
        self.start = time.monotonic()
        self._next = self.start + delay
        self._drawn = 0

    def render(self, rows: int, now: float) -> str:
        secs = now - self.start
        rate = rows / secs if secs > 0 else 0.0
        if self.total:
            done = min(1.0, rows / self.total)
            filled = int(done * _WIDTH)
            bar = "━" * filled + " " * (_WIDTH - filled)
            head = f"evaluating {bar} {100 * done:3.0f}%"
        else:
            head = f"evaluating {_SPIN[self._drawn % len(_SPIN)]}"
        return (f"{head} {rows:,} rows  {int(secs) // 60}:{int(secs) % 60:02d}  "
                f"{rate / 1e6:.1f}M rows/s")

    def __call__(self, rows: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        try:
            self.stream.write("\r\x1b[2K" + self.render(rows, now))
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: stop drawing
            self.enabled = False
            return
        self._drawn += 1

    def close(self) -> None:
        if self._drawn:
            self._drawn = 0
            try:
                self.stream.write("\r\x1b[2K")  # erase the line: the bar leaves nothing behind
                self.stream.flush()
            except (OSError, ValueError):
                pass
