"""The ``invkit`` program: its parser (the core's subcommands, then the plugins'), and
:func:`main`, which runs one subcommand and turns errors into one line and an exit status.

The core's subcommands are one module each: ``plugins`` (:mod:`invkit.cli.plugins`),
``check-operator`` (:mod:`invkit.cli.check_operator`), ``degrade`` (:mod:`invkit.cli.degrade`)
and ``solve`` (:mod:`invkit.cli.solve`). Plugins add their own subcommands through the
``invkit_register_commands`` hook.

Errors a user can fix (unknown names, bad parameters, bad sizes, missing or unreadable files)
print one line and exit with status 2; any other failure prints one line and exits with status
1; ``--debug`` (before or after the subcommand) shows the traceback. A failed check exits with
status 1; Ctrl-C exits with status 130.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from ..allocator import keep_freed_memory
from ..dense import DenseSizeError
from ..hookspecs import CommandRegistry, CommandRun, CommandSetup
from ..params import ParamError
from ..registry import PluginError, PluginWarning, Registry, get_registry
from .check_operator import add_check_operator_command
from .degrade import add_degrade_command
from .exits import EXIT_FAIL, EXIT_INTERRUPTED, EXIT_USAGE
from .plugins import add_plugins_command
from .solve import add_solve_command

__all__ = ["main", "build_parser", "CommandTable", "UsageError"]


class UsageError(Exception):
    """A user-fixable error: printed as one line, exit status 2."""


@dataclass
class _Command:
    name: str
    help: str
    setup: CommandSetup
    run: CommandRun
    plugin: str
    distribution: str


class CommandTable(CommandRegistry):
    """The command line's :class:`~invkit.hookspecs.CommandRegistry`: what ``invkit_register_commands(cli)``
    receives (``cli.add_command(...)``), holding the added commands by name."""

    def __init__(self) -> None:
        self.commands: dict[str, _Command] = {}
        self._plugin = "invkit"
        self._dist = "invkit"

    def for_plugin(self, plugin: str, distribution: str) -> "CommandTable":
        """A view that attributes the commands added through it to ``plugin``."""
        view = CommandTable()
        view.commands = self.commands
        view._plugin, view._dist = plugin, distribution
        return view

    def add_command(self, name: str, help: str, setup: CommandSetup, run: CommandRun) -> None:
        """Add subcommand ``name``; ``setup(parser)`` adds arguments, ``run(args)`` returns an exit code."""
        if name in self.commands:
            other = self.commands[name]
            raise ValueError(f"command '{name}' is already provided by '{other.distribution}' (plugin '{other.plugin}')")
        self.commands[name] = _Command(name, help, setup, run, self._plugin, self._dist)


def _version_text() -> str:
    """``invkit X (torch Y, Python Z)``."""
    import platform

    import torch

    from .. import __version__

    return f"invkit {__version__} (torch {torch.__version__}, Python {platform.python_version()})"


def build_parser(registry: Registry | None = None) -> tuple[argparse.ArgumentParser, CommandTable]:
    """The argument parser, with plugin subcommands added from ``registry``."""
    registry = registry or get_registry()
    parser = argparse.ArgumentParser(prog="invkit", description="Image restoration with diffusion priors.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action="version", version=_version_text(), help="print the versions of invkit, torch and Python, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for add in (add_plugins_command, add_check_operator_command, add_degrade_command, add_solve_command):
        add(sub, registry)

    commands = CommandTable()
    registry.add_commands(commands)
    for cmd in list(commands.commands.values()):
        who = f"invkit plugin '{cmd.plugin}' from distribution '{cmd.distribution}'"
        if cmd.name in sub.choices:
            registry.warn(f"{who} adds command '{cmd.name}', which already exists; the plugin's command is skipped")
            del commands.commands[cmd.name]
            continue
        try:  # a plugin's setup runs on a throwaway parser first, so a failure leaves no half-built command
            cmd.setup(argparse.ArgumentParser(prog=f"invkit {cmd.name}"))
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the CLI
            registry.warn(f"{who} failed to set up command '{cmd.name}' ({type(exc).__name__}: {exc}); skipped")
            del commands.commands[cmd.name]
            continue
        cp = sub.add_parser(cmd.name, help=cmd.help)
        cmd.setup(cp)
        cp.set_defaults(handler=cmd.run)
    return parser, commands


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``invkit`` command; returns the exit status."""
    if argv is None:  # the command (not a Python caller): large tensors reused, not page-faulted in at every step
        keep_freed_memory()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    handle_term = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    if handle_term:  # SIGTERM unwinds like Ctrl-C, so temporary files are removed
        signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return _main(argv, debug)
    finally:
        if handle_term:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _main(argv: list[str], debug: bool) -> int:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginWarning)  # printed once below, as one line each
            registry = get_registry()  # (importing the plugins warns too)
            parser, _ = build_parser(registry)
            registry.names("operator")  # run the registration hooks now, so their failures are reported
        for message in registry.warnings:
            print(f"invkit: warning: {message}", file=sys.stderr)
        args = parser.parse_args(argv)
        if getattr(args, "handler", None) is None:
            parser.print_help()
            return EXIT_USAGE
        code = args.handler(args)
        return int(code or 0)
    except BrokenPipeError:  # e.g. `invkit plugins | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAIL
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("invkit: interrupted (every file written is complete; the one being written was discarded, later ones were not written)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (PluginError, ParamError, UsageError, DenseSizeError, ValueError, OSError) as exc:
        if debug:
            traceback.print_exc()
        print(f"invkit: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - an unexpected failure: one line, the traceback with --debug
        if debug:
            traceback.print_exc()
        print(f"invkit: error: {type(exc).__name__}: {_one_line(exc)} (run with --debug for the traceback)", file=sys.stderr)
        return EXIT_FAIL


def _one_line(exc: BaseException) -> str:
    """The exception's message on one line."""
    text = str(exc)
    if isinstance(exc, KeyError) and not isinstance(exc, PluginError) and text.startswith("'"):
        text = text.strip("'")
    return " ".join(text.split()) or type(exc).__name__
