"""A progress display on stderr for long evaluations: only on a terminal, only after a moment.

The callback costs one clock read per batch until the run has taken ``delay`` seconds; only then is
rich.progress imported and drawn, so short runs and pipes pay nothing (and see nothing).
"""
from __future__ import annotations

import sys
import time


class RowProgress:
    def __init__(self, total_rows: int | None = None, delay: float = 0.75, enabled: bool | None = None):
        import os
        if enabled is None:
            enabled = sys.stderr.isatty() and not os.environ.get("CI")
        self.enabled = enabled
        self.total = total_rows
        self.delay = delay
        self.start = time.monotonic()
        self._bar = None
        self._task = None

    def __call__(self, rows: int) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            if time.monotonic() - self.start < self.delay:
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
            self._bar = Progress(TextColumn("evaluating"), BarColumn(), TextColumn("{task.completed:,} rows"),
                                 TimeElapsedColumn(), console=Console(file=sys.stderr), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("rows", total=self.total)
        self._bar.update(self._task, completed=rows)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
