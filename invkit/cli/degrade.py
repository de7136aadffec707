"""The ``invkit degrade`` command: argparse options -> :class:`~invkit.runner.DegradeOptions` ->
:func:`invkit.runner.degrade` (the measurement ``y = H x + noise`` of a clean image, the noise
Gaussian or Poisson), and its summary line."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..noise import NOISE_MODELS, describe_noise
from ..registry import Registry
from ..runner import DegradeOptions, degrade

__all__ = ["add_degrade_command", "setup_degrade", "run_degrade", "to_degrade_options", "DEGRADE_DESCRIPTION"]

DEGRADE_DESCRIPTION = """\
Make a measurement y = H x + noise of a clean image, the draw `invkit solve --simulate` makes with
the same --seed. Noise:
  gaussian (default)  y = H x + sigma_y n, n ~ N(0, I); --sigma-y in [0, 1] pixel units.
  poisson             y = clip(Poisson(rate * H x) / rate, 0, 1) (the clip is the official DPS
                      code's); --noise-arg rate=N photons per unit intensity, default 255 (the DPS
                      paper's setting: 255 photons at white). Needs H x >= 0: an operator that can
                      make negative measurements (compressed sensing) is refused.
A .safetensors output records the operator, its parameters and the noise model for `invkit solve`."""


def add_degrade_command(sub: Any, registry: Registry) -> None:
    """Add ``degrade`` to the ``invkit`` subcommand parser ``sub``."""
    p = sub.add_parser(
        "degrade",
        help="make a measurement y = H x + noise from a clean image",
        description=DEGRADE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    setup_degrade(p)
    p.set_defaults(handler=lambda a: run_degrade(a, registry))


def setup_degrade(p: argparse.ArgumentParser) -> None:
    """Add ``degrade``'s options to ``p``."""
    p.add_argument("--operator", required=True, help="operator name (see `invkit plugins`)")
    p.add_argument("--arg", action="append", default=[], metavar="K=V", help="operator parameter (repeatable)")
    p.add_argument("--input", required=True, type=Path, help="clean image (PNG/JPEG/TIFF, 8 or 16 bits)")
    p.add_argument("--output", required=True, type=Path, help="measurement: an image file, or .safetensors (lossless; required for compact measurements)")
    p.add_argument("--noise", default="gaussian", metavar="|".join(NOISE_MODELS), help="noise model (default gaussian; see above)")
    p.add_argument("--noise-arg", action="append", default=[], metavar="K=V", help="noise model parameter (repeatable), e.g. rate=255 for poisson")
    p.add_argument("--sigma-y", type=float, default=None, help="Gaussian noise std added, in [0, 1] pixel units (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=None, help="bits per sample of an image output (default: the input's where the format allows, else 8)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")


def to_degrade_options(args: argparse.Namespace) -> DegradeOptions:
    """The runner's options for parsed ``degrade`` arguments."""
    return DegradeOptions(
        input=args.input, output=args.output, operator=args.operator, operator_args=args.arg,
        sigma_y=args.sigma_y, seed=args.seed, bits=args.bits, force=args.force, noise=args.noise, noise_args=args.noise_arg,
    )


def run_degrade(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``invkit degrade``; returns the exit status."""
    done = degrade(to_degrade_options(args), registry=registry)
    if not args.quiet:
        op = done.op
        print(f"wrote {done.output}: {done.kind}, operator {args.operator} on {op.in_shape} -> {tuple(op.out_shape)}, {describe_noise(done.noise)}")
        if done.view is not None:
            print(f"wrote {done.view}: the measurement as an image (the kept pixels; black where none is measured)")
    return 0
