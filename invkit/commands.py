"""The ``invkit degrade`` and ``invkit solve`` commands, as :mod:`invkit.cli` adds them.

``degrade`` (:mod:`invkit.cmd_degrade`) makes a measurement from a clean image; ``solve``
(:mod:`invkit.cmd_solve`) restores images from measurements, or simulates and scores with
``--simulate``. Their parts live in modules named for what they hold:

* :mod:`invkit.cli_common` -- :class:`CommandError`, output/input safety checks,
  :func:`build_prior`, device resolution, bit depth, finite checks;
* :mod:`invkit.solve_options` -- ``solve``'s help text, options and ``--json`` keys;
* :mod:`invkit.solve_jobs` -- inputs and the outputs each produces, checked up front;
* :mod:`invkit.solve_inputs` -- one input read and made into an operator and a measurement;
* :mod:`invkit.sizing` -- ``--pad``/``--crop``/``--resize`` and the sizes that work;
* :mod:`invkit.cost` -- cost estimates and ``--max-megapixels`` refusals.

This module keeps the names other code imports from ``invkit.commands``.
"""

from __future__ import annotations

import argparse
from typing import Any

from .cli_common import CHECKPOINT_SUFFIXES, CommandError, build_prior
from .cmd_degrade import run_degrade, setup_degrade
from .cmd_solve import run_solve
from .registry import Registry
from .solve_options import JSON_KEYS, SOLVE_DESCRIPTION, SOLVE_EPILOG, setup_solve

__all__ = ["add_core_commands", "build_prior", "CHECKPOINT_SUFFIXES", "CommandError", "SOLVE_EPILOG", "JSON_KEYS"]


def add_core_commands(sub: Any, registry: Registry) -> None:
    """Add ``degrade`` and ``solve`` to the ``invkit`` subcommand parser."""
    p = sub.add_parser("degrade", help="make a measurement y = H x + noise from a clean image")
    setup_degrade(p)
    p.set_defaults(handler=lambda a: run_degrade(a, registry))
    p = sub.add_parser(
        "solve",
        help="restore images from measurements (or simulate and score with --simulate)",
        description=SOLVE_DESCRIPTION,
        epilog=SOLVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    setup_solve(p)
    p.set_defaults(handler=lambda a: run_solve(a, registry))
