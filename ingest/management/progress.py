"""Progress of a long command, the way command-line users expect it.

On a terminal: one line redrawn in place (bar, percent, count, rate, ETA), at most ten
times a second. Anywhere else (a log file, a pipe, systemd's journal): a plain line every
PLAIN_LINE_SECONDS or every tenth of the work, whichever comes first, and never a ``\\r``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 30
REDRAW_SECONDS = 0.1
PLAIN_LINE_SECONDS = 5.0
PLAIN_LINE_STEP = 0.10


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:d}:{seconds:02d}"


class ProgressReport:
    """Report ``done`` of ``total`` (any unit, e.g. bytes read) plus a count of ``unit``."""

    def __init__(
        self,
        stream: TextIO,
        *,
        unit: str,
        is_terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.unit = unit
        self.is_terminal = stream.isatty() if is_terminal is None else is_terminal
        self.clock = clock
        self.started = clock()
        self.last_shown = float("-inf")
        self.last_fraction_shown = 0.0
        self.drawn = False

    def update(self, done: int, total: int, count: int) -> None:
        now = self.clock()
        fraction = min(1.0, done / total) if total else 1.0
        if self.is_terminal:
            if now - self.last_shown >= REDRAW_SECONDS or fraction >= 1.0:
                self._draw(fraction, count, now)
                self.last_shown = now
            return
        if (
            (now - self.last_shown >= PLAIN_LINE_SECONDS and now - self.started >= PLAIN_LINE_SECONDS)
            or fraction - self.last_fraction_shown >= PLAIN_LINE_STEP
            or (fraction >= 1.0 > self.last_fraction_shown)
        ):
            self.stream.write(self._summary(fraction, count, now) + "\n")
            self.stream.flush()
            self.last_fraction_shown = fraction
            self.last_shown = now

    def finish(self) -> None:
        """End the redrawn line so that what follows starts on its own."""
        if self.is_terminal and self.drawn:
            self.stream.write("\n")
            self.stream.flush()

    def _summary(self, fraction: float, count: int, now: float) -> str:
        elapsed = max(now - self.started, 1e-9)
        rate = count / elapsed
        if fraction >= 1.0:
            eta = f"done in {_duration(elapsed)}"
        elif fraction > 0:
            eta = f"ETA {_duration(elapsed * (1 - fraction) / fraction)}"
        else:
            eta = "ETA --:--"
        return f"{fraction:4.0%}  {count:,} {self.unit}  {rate:,.0f} {self.unit}/s  {eta}"

    def _draw(self, fraction: float, count: int, now: float) -> None:
        filled = int(BAR_WIDTH * fraction)
        bar = "█" * filled + "░" * (BAR_WIDTH - filled)
        # \r back to the start, the line, then erase whatever a longer previous line left.
        self.stream.write(f"\r{bar} {self._summary(fraction, count, now)}\x1b[K")
        self.stream.flush()
        self.drawn = True
