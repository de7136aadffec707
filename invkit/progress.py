"""A small progress bar for the command line (stderr), and duration formatting.

The bar draws only when its stream is a terminal and it is enabled (``--quiet`` disables it),
so logs and pipes stay clean. While a step is running, a background thread redraws the bar
every half second with the time spent in that step, so a slow prior evaluation (a large photo
on a CPU) never looks like a hang.

Example:
    >>> from invkit.progress import format_duration
    >>> format_duration(0.42), format_duration(75), format_duration(3725)
    ('0.4 s', '1 min 15 s', '1 h 02 min')
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

__all__ = ["ProgressBar", "format_duration", "is_terminal"]


def format_duration(seconds: float) -> str:
    """Human duration: ``0.4 s``, ``12 s``, ``3 min 20 s``, ``1 h 05 min``."""
    if seconds != seconds or seconds < 0:  # NaN
        return "?"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        m, s = divmod(int(round(seconds)), 60)
        return f"{m} min {s:02d} s" if m < 10 else f"{m} min"
    h, rest = divmod(int(round(seconds)), 3600)
    return f"{h} h {rest // 60:02d} min"


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class ProgressBar:
    """``label  [#####.....]  7/20 steps  1.52 s/step  left ~20 s`` on one terminal line.

    Args:
        label: What is being processed (an image name).
        total: Number of steps (may be set later with :meth:`set_total`).
        unit: Name of one step.
        enabled: Draw at all (``False`` for ``--quiet``); it also needs a terminal.
        stream: Where to draw (default ``sys.stderr``).
    """

    def __init__(self, label: str, total: int | None = None, unit: str = "steps", enabled: bool = True, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled and is_terminal(self.stream)
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self.note = ""
        self.started = time.perf_counter()
        self.last = self.started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.enabled:
            self._draw()
            self._thread = threading.Thread(target=self._tick, name="invkit-progress", daemon=True)
            self._thread.start()

    def set_total(self, total: int) -> None:
        """Set the number of steps once it is known."""
        self.total = total

    def update(self, n: int = 1, note: str | None = None) -> None:
        """Count ``n`` finished steps."""
        with self._lock:
            self.done += n
            self.last = time.perf_counter()
            if note is not None:
                self.note = note
        if self.enabled:
            self._draw()

    def close(self) -> None:
        """Stop redrawing and end the line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        self.enabled = False

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ drawing
    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw()

    def _line(self) -> str:
        now = time.perf_counter()
        with self._lock:
            done, total, note = self.done, self.total, self.note
            elapsed = now - self.started
            in_step = now - self.last
        parts = [self.label]
        if total:
            width = 20
            filled = int(width * min(done, total) / total)
            parts.append("[" + "#" * filled + "." * (width - filled) + "]")
            parts.append(f"{done}/{total} {self.unit}")
        else:
            parts.append(f"{done} {self.unit}")
        if done:
            rate = elapsed / done
            parts.append(f"{rate:.2f} s/step" if rate < 100 else f"{format_duration(rate)}/step")
            if total and done < total:
                parts.append(f"left ~{format_duration(rate * (total - done))}")
            else:
                parts.append(format_duration(elapsed))
        else:
            parts.append(f"first step running {format_duration(in_step)}")
        if note:
            parts.append(note)
        return "  ".join(parts)

    def _draw(self) -> None:
        try:
            columns = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, AttributeError, ValueError):
            columns = 0
        if columns < 40:  # unknown (0 on a bare pseudo-terminal) or tiny: do not cut the line short
            columns = 120
        line = self._line()[: max(10, columns - 1)]
        with self._lock:
            if self._stop.is_set() and not self.enabled:
                return
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
