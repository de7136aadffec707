"""The ``invkit`` command line.

Subcommands in the core: ``plugins`` (what is installed, by distribution) and
``check-operator`` (run the conformance checks on any registered operator). Plugins add their
own subcommands through the ``invkit_register_commands`` hook.

Errors a user can fix (unknown names, bad parameters, bad sizes, missing or unreadable files)
print one line and exit with status 2; any other failure prints one line and exits with status
1; ``--debug`` (before or after the subcommand) shows the traceback. A failed check exits with
status 1; Ctrl-C exits with status 130.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from .checks import run_checks
from .commands import add_core_commands
from .dense import DenseSizeError
from .forward import LinearOperator, SVDOperator
from .hookspecs import CommandRegistry
from .params import ParamError, format_schema
from .registry import KINDS, PluginError, PluginWarning, Registry, get_registry

__all__ = ["main", "build_parser", "CommandRegistry", "CommandTable"]

EXIT_FAIL = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A user-fixable error: printed as one line, exit status 2."""


@dataclass
class _Command:
    name: str
    help: str
    setup: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int | None]
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

    def add_command(
        self,
        name: str,
        help: str,
        setup: Callable[[argparse.ArgumentParser], None],
        run: Callable[[argparse.Namespace], int | None],
    ) -> None:
        """Add subcommand ``name``; ``setup(parser)`` adds arguments, ``run(args)`` returns an exit code."""
        if name in self.commands:
            other = self.commands[name]
            raise ValueError(f"command '{name}' is already provided by '{other.distribution}' (plugin '{other.plugin}')")
        self.commands[name] = _Command(name, help, setup, run, self._plugin, self._dist)


def _cmd_plugins(args: argparse.Namespace, registry: Registry) -> int:
    rows = []
    for kind in KINDS:
        for reg in registry.entries(kind):
            rows.append({"kind": kind, "name": reg.name, "distribution": reg.distribution, "plugin": reg.plugin, "summary": reg.summary})
    if args.json:
        print(json.dumps({"plugins": rows, "warnings": registry.warnings, "skipped": registry.skipped}, indent=2))
        return 0
    for kind in KINDS:
        sub = [r for r in rows if r["kind"] == kind]
        print(f"{kind}s:")
        if not sub:
            print("  (none)")
        width = max((len(r["name"]) for r in sub), default=0)
        dwidth = max((len(r["distribution"]) for r in sub), default=0)
        for r in sub:
            print(f"  {r['name'].ljust(width)}  {r['distribution'].ljust(dwidth)}  {r['summary']}")
    if registry.skipped:
        print("blocked: " + ", ".join(registry.skipped))
    return 0


def _cmd_check_operator(args: argparse.Namespace, registry: Registry) -> int:
    cls = registry.operator_class(args.name)
    if args.list_params:
        print(f"operator '{args.name}' parameters:\n{format_schema(cls.params)}")
        return 0
    shape = args.size if args.size is not None else cls.check_shape
    op = registry.build_operator(args.name, shape, args.arg)
    report = run_checks(op, tol=args.tol)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        params = ", ".join(f"{k}={v!r}" for k, v in op.config.items()) or "defaults"
        rung = "SVD operator" if isinstance(op, SVDOperator) else ("linear operator" if isinstance(op, LinearOperator) else "forward model")
        print(f"operator {args.name} ({registry.get('operator', args.name).distribution}), {rung}: in {op.in_shape} -> out {op.out_shape}; {params}")
        print(report.table())
        print("PASSED" if report.passed else "FAILED")
    return 0 if report.passed else EXIT_FAIL


def build_parser(registry: Registry | None = None) -> tuple[argparse.ArgumentParser, CommandTable]:
    """The argument parser, with plugin subcommands added from ``registry``."""
    registry = registry or get_registry()
    parser = argparse.ArgumentParser(prog="invkit", description="Image restoration with diffusion priors.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list registered operators, priors and solvers with their distributions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    p.set_defaults(handler=lambda a: _cmd_plugins(a, registry))

    p = sub.add_parser(
        "check-operator",
        help="check a registered operator for what its rung claims (VJP, adjoint, SVD vs dense)",
        description="Every forward model: shapes and its VJP against central finite differences. Linear "
        "operators also: <Hx,y> = <x,H^T y> and autograd's VJP of forward = adjoint. SVD operators also: the "
        "efficient SVD against the dense matrix (singular values, U S V^T = A, V^T V = I, U^T U = I, forward = "
        "SVD form). Exit 1 on failure.",
    )
    p.add_argument("name", help="operator name (see `invkit plugins`)")
    p.add_argument("--size", type=_shape_arg, default=None, metavar="C,H,W", help="image shape (default: the operator's check size)")
    p.add_argument("--arg", action="append", default=[], metavar="K=V", help="operator parameter (repeatable)")
    p.add_argument("--tol", type=float, default=1e-9, help="tolerance for every exact identity (default 1e-9; the "
                   "finite-difference VJP check has its own, 1e-6)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--list-params", action="store_true", help="show the operator's parameters and exit")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    p.set_defaults(handler=lambda a: _cmd_check_operator(a, registry))

    add_core_commands(sub, registry)

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


def _shape_arg(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not C,H,W (e.g. 3,16,24)") from None
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} is not three positive integers C,H,W")
    return values


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``invkit`` command; returns the exit status."""
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
        registry = get_registry()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginWarning)  # printed once below, as one line each
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
        return 1
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("invkit: interrupted (every file written is complete; the one being written was discarded, later ones were not written)", file=sys.stderr)
        return 130
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
