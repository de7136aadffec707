"""The ``invkit degrade`` and ``invkit solve`` commands (first cut).

``degrade`` makes a measurement from a clean image: image-shaped measurements go to an image
file (quantised to 8 bits; its rounding noise is part of the measurement) or, losslessly, to a
``.safetensors`` file; compact measurements (masks, compressed sensing) always go to
``.safetensors`` with the operator's name and parameters, which ``solve`` reads back.

``solve`` restores a measurement. When ``--sigma-y`` is not given it uses the noise recorded in
a ``.safetensors`` measurement, or, for a quantised image, that quantisation's noise
(``1/(255·√12)`` for 8 bits) — never an exact 0 that would magnify rounding.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from .io import MEASUREMENT_SUFFIX, Measurement, read_image, read_measurement, write_image, write_measurement
from .noise import GaussianNoise, quantization_sigma
from .params import parse_kv, parse_params
from .registry import Registry
from .solver import Problem, Step

__all__ = ["add_core_commands", "build_prior", "CHECKPOINT_SUFFIXES"]

#: File suffixes that make ``--prior VALUE`` a checkpoint path even before the file exists.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")


class CommandError(ValueError):
    """A user-fixable problem with the command's arguments or files."""


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _check_output(output: Path, inputs: list[Path], force: bool) -> None:
    for src in inputs:
        if output.resolve() == src.resolve() or _same_file(output, src):
            raise CommandError(f"output {output} is the input file; choose another output path")
    if output.exists() and not force:
        raise CommandError(f"output {output} exists; pass --force to overwrite it")


def build_prior(registry: Registry, value: str, args: Any = None) -> Any:
    """Build ``--prior VALUE`` with ``--prior-arg`` values: a registered prior name, or a checkpoint path.

    A value that is not a registered name but looks like a path (it exists, or ends in one of
    :data:`CHECKPOINT_SUFFIXES`) builds the registered prior ``checkpoint`` with ``path=VALUE``
    plus ``args``; a missing file is a :class:`CommandError` (one line). Anything else goes to the
    registry, whose error lists the known names.
    """
    if value not in registry.names("prior"):
        path = Path(value).expanduser()
        if path.exists() or path.suffix.lower() in CHECKPOINT_SUFFIXES:
            if not path.exists():
                raise CommandError(f"prior checkpoint not found: {path} (a prior name or a checkpoint file/folder; see `invkit plugins`)")
            given = dict(args) if isinstance(args, dict) else parse_kv(args or [])
            if "path" in given:
                raise CommandError(f"--prior {value} is a checkpoint path; drop --prior-arg path=...")
            return registry.build("prior", "checkpoint", {"path": str(path), **given})
    return registry.build("prior", value, args)


def _setup_degrade(p: argparse.ArgumentParser) -> None:
    p.add_argument("--operator", required=True, help="operator name (see `invkit plugins`)")
    p.add_argument("--arg", action="append", default=[], metavar="K=V", help="operator parameter (repeatable)")
    p.add_argument("--input", required=True, type=Path, help="clean image (PNG/JPEG/TIFF)")
    p.add_argument("--output", required=True, type=Path, help="measurement: an image file, or .safetensors (lossless; required for compact measurements)")
    p.add_argument("--sigma-y", type=float, default=0.0, help="Gaussian noise std added, in [0, 1] pixel units (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")


def _run_degrade(args: argparse.Namespace, registry: Registry) -> int:
    _check_output(args.output, [args.input], args.force)
    image = read_image(args.input)
    op = registry.build_operator(args.operator, tuple(image.x.shape[1:]), args.arg)
    noise = GaussianNoise(args.sigma_y)
    y = noise.sample(op.forward(image.x.double()), torch.Generator().manual_seed(args.seed)).float()
    if args.output.suffix == MEASUREMENT_SUFFIX:
        meta = Measurement(y=y, operator=args.operator, params=dict(op.config), in_shape=op.in_shape, sigma_y=args.sigma_y)
        write_measurement(args.output, meta)
        kind = "lossless measurement"
    else:
        if len(op.out_shape) != 3 or op.out_shape[0] not in (1, 3):
            raise CommandError(
                f"operator '{args.operator}' makes a compact measurement of shape {op.out_shape}; write it to a {MEASUREMENT_SUFFIX} file"
            )
        write_image(args.output, y)
        kind = "8-bit image (clipped to [0, 1] and rounded)"
    print(f"wrote {args.output}: {kind}, operator {args.operator} on {op.in_shape} -> {tuple(op.out_shape)}, sigma_y={args.sigma_y}")
    return 0


def _setup_solve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--solver", default="ddrm", help="solver name (default ddrm)")
    p.add_argument("--solver-arg", action="append", default=[], metavar="K=V", help="solver parameter (repeatable)")
    p.add_argument("--operator", default=None, help="operator name (read from a .safetensors measurement if omitted)")
    p.add_argument("--arg", action="append", default=None, metavar="K=V", help="operator parameter (repeatable)")
    p.add_argument("--prior", default="default", metavar="NAME|PATH", help="prior name (see `invkit plugins`) or checkpoint file/diffusers folder (default: the built-in 'default' prior)")
    p.add_argument("--prior-arg", action="append", default=[], metavar="K=V", help="prior parameter (repeatable), e.g. arch=adm, flags=..., class_label=N")
    p.add_argument("--input", required=True, type=Path, help="the measurement: an image file or a .safetensors from `invkit degrade`")
    p.add_argument("--output", required=True, type=Path, help="restored image (PNG/TIFF/JPEG)")
    p.add_argument("--size", default=None, metavar="C,H,W", help="image shape, when the measurement does not determine it")
    p.add_argument("--sigma-y", type=float, default=None, help="measurement noise std in [0, 1] units (default: recorded value, or the file's quantisation noise)")
    p.add_argument("--steps", type=int, default=None, help="number of prior evaluations (solver default if omitted)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _run_solve(args: argparse.Namespace, registry: Registry) -> int:
    _check_output(args.output, [args.input], args.force)
    if args.input.suffix == MEASUREMENT_SUFFIX:
        meas = read_measurement(args.input)
    else:
        image = read_image(args.input)
        meas = Measurement(y=image.x, bits=image.bits)
    name = args.operator or meas.operator
    if name is None:
        raise CommandError("no operator given; pass --operator NAME (see `invkit plugins`)")
    if meas.operator is not None and args.operator is not None and args.operator != meas.operator:
        raise CommandError(f"measurement {args.input} was made by operator '{meas.operator}', not '{args.operator}'; drop --operator")
    cls = registry.operator_class(name)
    given: Any = args.arg if args.arg is not None else (meas.params if name == meas.operator else [])
    params = parse_params(cls.params, given, owner=f"operator '{name}'")
    if args.size is not None:
        in_shape: Any = args.size
    elif meas.in_shape is not None:
        in_shape = meas.in_shape
    else:
        in_shape = cls.infer_in_shape(tuple(meas.y.shape[1:]), params)
    op = registry.build_operator(name, in_shape, params)
    y = meas.y
    if tuple(y.shape[1:]) != tuple(op.out_shape):
        raise CommandError(f"measurement shape {tuple(y.shape[1:])} does not match operator '{name}' output {op.out_shape} for images {op.in_shape}")
    if args.sigma_y is not None:
        sigma_y = args.sigma_y
    elif meas.sigma_y is not None:
        sigma_y = meas.sigma_y
    elif meas.bits is not None:
        sigma_y = quantization_sigma(meas.bits)
    else:
        sigma_y = 0.0
    if not math.isfinite(sigma_y) or sigma_y < 0:
        raise CommandError(f"--sigma-y must be a finite number >= 0, got {sigma_y}")
    problem = Problem(op, y.to(torch.float32), GaussianNoise(sigma_y))
    prior = build_prior(registry, args.prior, args.prior_arg)
    solver = registry.build("solver", args.solver, args.solver_arg)
    generator = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()

    def progress(step: Step) -> None:
        if not args.quiet and sys.stderr.isatty():
            print(f"\rstep {step.index + 1}/{step.total} sigma={step.sigma:.4g}", end="", file=sys.stderr, flush=True)

    result = solver.solve(problem, prior, steps=args.steps, generator=generator, callback=progress)
    if not args.quiet and sys.stderr.isatty():
        print(file=sys.stderr)
    write_image(args.output, result.x[0])
    if not args.quiet:
        print(
            f"wrote {args.output}: {args.solver} with prior {args.prior}, operator {name} on {op.in_shape}, "
            f"sigma_y={sigma_y:.4g}, {time.perf_counter() - started:.1f} s"
        )
    return 0


def add_core_commands(sub: Any, registry: Registry) -> None:
    """Add ``degrade`` and ``solve`` to the ``invkit`` subcommand parser."""
    p = sub.add_parser("degrade", help="make a measurement y = H x + noise from a clean image")
    _setup_degrade(p)
    p.set_defaults(handler=lambda a: _run_degrade(a, registry))
    p = sub.add_parser("solve", help="restore an image from a measurement")
    _setup_solve(p)
    p.set_defaults(handler=lambda a: _run_solve(a, registry))
