"""The exit statuses of the ``invkit`` command."""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_FAIL", "EXIT_USAGE", "EXIT_INTERRUPTED"]

#: Success.
EXIT_OK = 0
#: A failed check (``check-operator``), or an unexpected failure.
EXIT_FAIL = 1
#: A user-fixable error: unknown names, bad parameters, sizes or files.
EXIT_USAGE = 2
#: Interrupted (Ctrl-C, SIGTERM).
EXIT_INTERRUPTED = 130
