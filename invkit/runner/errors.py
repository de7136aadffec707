"""The runner's error type."""

from __future__ import annotations

__all__ = ["RestoreError"]


class RestoreError(ValueError):
    """A user-fixable problem with the options or the files of a restore run.

    Its message is one sentence that names the problem and the fix; it names options by their
    command-line spelling (``--sigma-y``, ``--pad``), which are the :class:`RestoreOptions`
    fields with ``_`` for ``-``. The command line prints it as one line and exits with status 2.
    """
