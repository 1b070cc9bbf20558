"""Progress of long runs: one small record, and a terminal progress line (no dependency).

The engines (analyze, migrate, validate, ...) call ``progress(Progress(...))``
every few hundred files; the CLI passes a :class:`ProgressBar` that redraws
one line on stderr, but only when stderr is a terminal, so logs and Ansible
output stay clean.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import TextIO


@dataclasses.dataclass(frozen=True)
class Progress:
    """Where a run is: files handled so far, the total if known, and named counts."""

    task: str
    done: int
    total: int | None = None
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


ProgressCallback = Callable[[Progress], None]


class ProgressBar:
    """Redraw one status line on a terminal, at most ``hz`` times a second.

    Use as a progress callback and call :meth:`close` (or use it as a context
    manager) to end the line.
    """

    def __init__(self, stream: TextIO | None = None, *, width: int = 24, hz: float = 8.0,
                 force: bool = False):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or _is_tty(self.stream)
        self.width = width
        self.interval = 1.0 / hz
        self._last_draw = 0.0
        self._last_line = ""

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last_draw < self.interval:
            return
        self._last_draw = now
        self._draw(format_line(progress, self.width))

    def _draw(self, line: str) -> None:
        padding = " " * max(len(self._last_line) - len(line), 0)
        self.stream.write("\r" + line + padding)
        self.stream.flush()
        self._last_line = line

    def close(self) -> None:
        if self.enabled and self._last_line:
            self.stream.write("\n")
            self.stream.flush()
            self._last_line = ""

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def format_line(progress: Progress, width: int = 24) -> str:
    """``migrate [#####.....]  42% 84,000/200,000 files  written 80,000  12,345/s  0:07``."""
    parts = [progress.task]
    if progress.total:
        fraction = min(progress.done / progress.total, 1.0)
        filled = int(fraction * width)
        parts.append(f"[{'#' * filled}{'.' * (width - filled)}] {fraction:4.0%}")
        parts.append(f"{progress.done:,}/{progress.total:,} files")
    else:
        parts.append(f"{progress.done:,} files")
    parts += [f"{name} {value:,}" for name, value in progress.counts.items() if value]
    parts.append(f"{progress.rate:,.0f}/s")
    minutes, seconds = divmod(int(progress.elapsed), 60)
    parts.append(f"{minutes}:{seconds:02d}")
    return "  ".join(parts)


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
