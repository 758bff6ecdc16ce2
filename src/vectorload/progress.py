"""A small terminal progress bar for long CLI work (ingest, sample, build, demo).

Draws in place on a TTY; on a pipe or under CI it prints a line every ~10 % so logs stay short.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


class ProgressBar:
    def __init__(self, total: float, label: str = "", unit: str = "", stream: TextIO | None = None) -> None:
        self.total = max(float(total), 1e-9)
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0.0
        self._start = time.monotonic()
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1
        self._last_draw = 0.0

    def __enter__(self) -> ProgressBar:
        self._draw(force=True)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self.update_to(self.total)
        self._draw(force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()

    def update(self, amount: float = 1.0) -> None:
        self.update_to(self.done + amount)

    def update_to(self, value: float) -> None:
        self.done = min(float(value), self.total)
        self._draw()

    def render(self) -> str:
        fraction = self.done / self.total
        width = 30
        filled = round(fraction * width)
        bar = "█" * filled + "░" * (width - filled)
        elapsed = time.monotonic() - self._start
        unit = f" {self.unit}" if self.unit else ""
        return (
            f"{self.label} |{bar}| {fraction * 100:5.1f}% "
            f"{_fmt(self.done)}/{_fmt(self.total)}{unit} {elapsed:5.1f}s"
        )

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._tty:
            if force or now - self._last_draw >= 0.1:
                self.stream.write("\r" + self.render())
                self.stream.flush()
                self._last_draw = now
            return
        decile = int(self.done / self.total * 10)
        if force or decile != self._last_decile:
            if decile != self._last_decile:
                self.stream.write(self.render() + "\n")
                self.stream.flush()
            self._last_decile = decile


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"
