"""The ``invkit`` command line: argparse -> :class:`~invkit.runner.RestoreOptions` (or the
operator/registry calls) -> the library, one module per command.

* :mod:`invkit.cli.app` -- the parser and :func:`main` (errors as one line, exit statuses);
* :mod:`invkit.cli.plugins`, :mod:`invkit.cli.check_operator`, :mod:`invkit.cli.degrade`,
  :mod:`invkit.cli.solve` (with its help text in :mod:`invkit.cli.solve_help`) -- the commands;
* :mod:`invkit.cli.progress` -- the ``solve`` progress bar (tqdm);
* :mod:`invkit.cli.exits` -- the exit statuses.

Errors a user can fix (unknown names, bad parameters, bad sizes, missing or unreadable files)
print one line and exit with status 2; any other failure prints one line and exits with status
1; ``--debug`` (before or after the subcommand) shows the traceback. A failed check exits with
status 1; Ctrl-C exits with status 130.
"""

from __future__ import annotations

from ..hookspecs import CommandRegistry
from .app import CommandTable, build_parser, main

__all__ = ["main", "build_parser", "CommandRegistry", "CommandTable"]
