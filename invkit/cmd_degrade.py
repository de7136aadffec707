"""The ``invkit degrade`` command: a measurement ``y = H x + noise`` from a clean image.

Image-shaped measurements go to an image file (quantised to the input's bit depth where the
format allows, else 8 bits; its rounding noise is part of the measurement) or, losslessly, to a
``.safetensors`` file; compact measurements (masks, compressed sensing) always go to
``.safetensors`` with the operator's name and parameters, which ``solve`` reads back.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from .cli_common import CommandError, check_finite, check_output, output_bits
from .io import MEASUREMENT_SUFFIX, Measurement, read_image, write_image, write_measurement
from .noise import GaussianNoise
from .registry import Registry


def setup_degrade(p: argparse.ArgumentParser) -> None:
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


def run_degrade(args: argparse.Namespace, registry: Registry) -> int:
    check_output(args.output, [args.input], args.force)
    if not math.isfinite(args.sigma_y) or args.sigma_y < 0:
        raise CommandError(f"--sigma-y must be a finite number >= 0, got {args.sigma_y}")
    image = read_image(args.input)
    check_finite(image.x, f"image {args.input}")
    op = registry.build_operator(args.operator, tuple(image.x.shape[1:]), args.arg)
    noise = GaussianNoise(args.sigma_y)
    y = noise.sample(op.forward(image.x.double()), torch.Generator().manual_seed(args.seed)).float()
    if args.output.suffix == MEASUREMENT_SUFFIX:
        meta = Measurement(y=y, operator=args.operator, params=_portable(op.config), in_shape=op.in_shape, sigma_y=args.sigma_y)
        write_measurement(args.output, meta)
        kind = "lossless measurement"
    else:
        if len(op.out_shape) != 3 or op.out_shape[0] not in (1, 3):
            raise CommandError(
                f"operator '{args.operator}' makes a compact measurement of shape {op.out_shape}; write it to a {MEASUREMENT_SUFFIX} file"
            )
        bits = output_bits(args.bits, image.bits, args.output, op.out_shape[0])
        write_image(args.output, y, bits=bits)
        kind = f"{bits}-bit image (clipped to [0, 1] and rounded)"
    if not args.quiet:
        print(f"wrote {args.output}: {kind}, operator {args.operator} on {op.in_shape} -> {tuple(op.out_shape)}, sigma_y={args.sigma_y}")
    return 0


def _portable(config: dict) -> dict:
    """Operator parameters as recorded in a measurement: file paths (a mask or kernel file) made
    absolute, so `invkit solve` run from another folder reads the same file, not a namesake."""
    out = {}
    for key, value in config.items():
        if isinstance(value, str) and key.endswith("_file") and Path(value).is_file():
            value = str(Path(value).resolve())
        out[key] = value
    return out
