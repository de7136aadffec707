"""``invkit plugins``: the registered operators, priors and solvers, by distribution."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..registry import KINDS, Registry

__all__ = ["add_plugins_command"]


def add_plugins_command(sub: Any, registry: Registry) -> None:
    """Add ``plugins`` to the ``invkit`` subcommand parser ``sub``."""
    p = sub.add_parser("plugins", help="list registered operators, priors and solvers with their distributions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    p.set_defaults(handler=lambda a: _cmd_plugins(a, registry))


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
