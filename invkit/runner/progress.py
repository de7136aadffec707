"""Progress of a run, as events passed to a callback, and durations in words.

The runner draws nothing: :func:`invkit.runner.restore` calls ``on_progress(event)`` when an
image starts, after every solver step, and when the image is done; the command line turns the
events into a progress bar (:mod:`invkit.cli.progress`), as the download of a checkpoint does
its bytes (``invkit_priors.checkpoints.download``); both size their tqdm bar with
:func:`invkit.terminal.terminal_size` (re-exported here for the runner's callers).

Example:
    >>> from invkit.runner.progress import format_duration
    >>> format_duration(0.42), format_duration(75), format_duration(3725)
    ('0.4 s', '1 min 15 s', '1 h 02 min')
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..terminal import is_terminal, terminal_size

__all__ = ["ProgressEvent", "ProgressCallback", "format_duration", "is_terminal", "terminal_size"]


@dataclass(frozen=True)
class ProgressEvent:
    """Where a run stands.

    Attributes:
        kind: ``"start"`` (an image begins; ``total`` is not known yet), ``"step"`` (one solver
            step done) or ``"done"`` (the image's samples are drawn).
        image: The input file.
        index: Index of the image in the run, from 0.
        images: Number of images in the run.
        done: Solver steps done for this image, over all its samples.
        total: Solver steps for this image over all samples (None until the first step).
        first: First sample (from 1) of the solver call running.
        last: Last sample (from 1) of the solver call running.
        samples: Samples drawn for this image.
        elapsed: Seconds since the image started.
        estimate: The image's solve as estimated before the run (seconds, ``(low, high)``:
            :mod:`invkit.runner.cost`), or None (a small image, or no estimate).
    """

    kind: Literal["start", "step", "done"]
    image: Path
    index: int
    images: int
    done: int
    total: int | None
    first: int
    last: int
    samples: int
    elapsed: float
    estimate: tuple[float, float] | None = None


#: What ``on_progress`` is: called with every :class:`ProgressEvent`.
ProgressCallback = Callable[[ProgressEvent], None]


def format_duration(seconds: float) -> str:
    """Human duration: ``0.4 s``, ``12 s``, ``3 min 20 s``, ``1 h 05 min`` (``?`` for NaN or negative)."""
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
