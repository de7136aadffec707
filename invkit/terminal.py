"""Terminal facts for whoever draws a progress bar: whether a stream is a terminal, and its size.

One home for the command line's ``solve`` bar (:mod:`invkit.cli.progress`) and the checkpoint
downloads (``invkit_priors.checkpoints.download``), which both draw tqdm bars on stderr.

Example:
    >>> import io
    >>> is_terminal(io.StringIO()), terminal_size(io.StringIO())
    (False, (120, 24))
"""

from __future__ import annotations

import os
from typing import TextIO

__all__ = ["is_terminal", "terminal_size"]


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def terminal_size(stream: TextIO) -> tuple[int, int]:
    """The (columns, rows) of the terminal ``stream`` draws on, for a tqdm bar's ``ncols``/``nrows``.

    120 columns and 24 rows where unknown or tiny: a bare pseudo-terminal reports 0 rows, and
    tqdm hides a bar whose terminal has none; too few columns would cut its line short.
    """
    try:
        columns, rows = os.get_terminal_size(stream.fileno())
    except (OSError, AttributeError, ValueError):
        columns, rows = 0, 0
    return (columns if columns >= 40 else 120), (rows if rows >= 2 else 24)
