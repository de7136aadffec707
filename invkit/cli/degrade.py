"""The ``invkit degrade`` command: argparse options -> :class:`~invkit.runner.DegradeOptions` ->
:func:`invkit.runner.degrade` (the measurement ``y = H x + noise`` of a clean image), and its
summary line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..registry import Registry
from ..runner import DegradeOptions, degrade

__all__ = ["add_degrade_command", "setup_degrade", "run_degrade", "to_degrade_options"]


def add_degrade_command(sub: Any, registry: Registry) -> None:
    """Add ``degrade`` to the ``invkit`` subcommand parser ``sub``."""
    p = sub.add_parser("degrade", help="make a measurement y = H x + noise from a clean image")
    setup_degrade(p)
    p.set_defaults(handler=lambda a: run_degrade(a, registry))


def setup_degrade(p: argparse.ArgumentParser) -> None:
    """Add ``degrade``'s options to ``p``."""
    p.add_argument("--operator", required=True, help="operator name (see `invkit plugins`)")
    p.add_argument("--arg", action="append", default=[], metavar="K=V", help="operator parameter (repeatable)")
    p.add_argument("--input", required=True, type=Path, help="clean image (PNG/JPEG/TIFF, 8 or 16 bits)")
    p.add_argument("--output", required=True, type=Path, help="measurement: an image file, or .safetensors (lossless; required for compact measurements)")
    p.add_argument("--sigma-y", type=float, default=0.0, help="Gaussian noise std added, in [0, 1] pixel units (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=None, help="bits per sample of an image output (default: the input's where the format allows, else 8)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")


def to_degrade_options(args: argparse.Namespace) -> DegradeOptions:
    """The runner's options for parsed ``degrade`` arguments."""
    return DegradeOptions(
        input=args.input, output=args.output, operator=args.operator, operator_args=args.arg,
        sigma_y=args.sigma_y, seed=args.seed, bits=args.bits, force=args.force,
    )


def run_degrade(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``invkit degrade``; returns the exit status."""
    done = degrade(to_degrade_options(args), registry=registry)
    if not args.quiet:
        op = done.op
        print(f"wrote {done.output}: {done.kind}, operator {args.operator} on {op.in_shape} -> {tuple(op.out_shape)}, sigma_y={args.sigma_y}")
    return 0
