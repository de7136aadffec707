"""The ``solve`` progress bar: :class:`SolveProgress` turns the runner's progress events into a
tqdm bar on stderr.

It draws only when stderr is a terminal and ``--quiet`` is off, so logs and pipes stay clean:
``chelsea.png  [########............]  8/20 steps  00:12<00:18  1.52s/step, sample 2/4``. While
a step runs the bar is redrawn every half second, so a slow prior evaluation (a large photo on a
CPU) never looks like a hang. Without a terminal the runner's projections after the first and second steps
(:func:`~invkit.runner.projection_note`) are printed instead, when there are any.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TextIO

from tqdm import tqdm

from ..runner import ProgressEvent, is_terminal, projection_note, terminal_size

__all__ = ["SolveProgress", "is_terminal", "BAR_FORMAT", "BAR_CHARS"]

#: The bar's layout (tqdm's ``bar_format``).
BAR_FORMAT = "{desc}  [{bar:20}]  {n_fmt}/{total_fmt} steps  {elapsed}<{remaining}  {rate_inv_fmt}{postfix}"
#: The bar's characters (tqdm's ``ascii``): empty, then full.
BAR_CHARS = ".#"


class SolveProgress:
    """A progress callback for :func:`invkit.runner.restore`: one bar per image.

    Args:
        quiet: Draw nothing and announce nothing (``--quiet``).
        note: Where the projection is announced without a terminal.
        stream: Where to draw (default ``sys.stderr``).
    """

    def __init__(self, quiet: bool, note: Callable[[str], None], stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = is_terminal(self.stream)
        self.note = note
        self.bar: tqdm | None = None
        self._previous: float | None = None  # elapsed at the image's previous step
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __call__(self, event: ProgressEvent) -> None:
        if event.kind == "start":
            self.close()
            self._previous = None
            columns, rows = terminal_size(self.stream)
            label = f"[{event.index + 1}/{event.images}] {event.image.name}" if event.images > 1 else event.image.name
            self.bar = tqdm(
                desc=label, total=None, unit="step", file=self.stream, disable=self.quiet or not self.tty,
                bar_format=BAR_FORMAT, ascii=BAR_CHARS, ncols=columns, nrows=rows, mininterval=0.1,
            )
            if not self.bar.disable:
                self._stop.clear()
                self._thread = threading.Thread(target=self._tick, name="invkit-progress", daemon=True)
                self._thread.start()
        elif event.kind == "step" and self.bar is not None:
            if self.bar.total is None:
                self.bar.total = event.total
            if event.samples > 1:
                which = f"{event.first}" if event.first == event.last else f"{event.first}-{event.last}"
                self.bar.set_postfix_str(f"sample {which}/{event.samples}", refresh=False)
            self.bar.update(1)
            if not self.quiet and not self.tty:
                projection = projection_note(event, self._previous)
                if projection is not None:
                    self.note(projection)
            self._previous = event.elapsed
        elif event.kind == "done":
            self.close()

    def close(self) -> None:
        """Stop redrawing and end the bar's line (safe to call more than once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            bar = self.bar
            if bar is not None:
                bar.refresh()
