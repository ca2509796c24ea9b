"""Progress of long work (simulate, run, batch, bench) on a terminal.

Long-running functions take an optional ``progress`` callback, ``progress(done, total, label)``,
called after each unit of work; they never print themselves. The command line passes
:func:`terminal_progress`, a tqdm bar on stderr that stays silent when stderr is not a terminal
(logs, systemd, pipes), so scripted use sees only the results.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

__all__ = ["ProgressFn", "TerminalProgress", "terminal_progress"]

ProgressFn = Callable[[int, int, str], None]
"""``progress(done, total, label)``: ``done`` of ``total`` units finished, the last one named ``label``."""


class TerminalProgress:
    """A tqdm bar on ``stream`` when it is a terminal (or ``enabled`` says so); a no-op otherwise."""

    def __init__(
        self, description: str, unit: str = "it", stream: TextIO | None = None, enabled: bool | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.description, self.unit = description, unit
        self._bar: tqdm | None = None

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self.enabled:
            return
        if self._bar is None or self._bar.total != total:
            self.close()
            columns = shutil.get_terminal_size().columns
            self._bar = tqdm(
                total=total,
                desc=self.description,
                unit=self.unit,
                file=self.stream,
                ncols=columns
                if columns > 0
                else 80,  # a pty without a size reports 0 columns (tqdm then draws nothing)
                leave=True,
            )
        self._bar.set_postfix_str(label[:40], refresh=False)
        self._bar.update(done - self._bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        """End the bar (leaves its last line on the terminal)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def terminal_progress(description: str, unit: str = "it") -> TerminalProgress:
    """The progress callback the command line gives to long work: a bar on a terminal, else silent."""
    return TerminalProgress(description, unit)
