"""A measurement ``y = H x + noise`` from a clean image (``invkit degrade``): :class:`DegradeOptions`
in, the measurement file written, :class:`Degraded` out.

Image-shaped measurements go to an image file (quantised to the input's bit depth where the
format allows, else 8 bits; its rounding noise is part of the measurement) or, losslessly, to a
``.safetensors`` file; compact measurements (masks, compressed sensing) always go to
``.safetensors`` with the operator's name and parameters, which ``solve`` reads back. The noise
is the draw ``solve --simulate`` makes with the same seed
(:func:`~invkit.runner.inputs.simulate_measurement`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..forward import Operator
from ..io import MEASUREMENT_SUFFIX, Measurement, read_image, write_image, write_measurement
from ..registry import Registry, get_registry
from .errors import RestoreError
from .files import check_output, output_bits
from .inputs import check_finite, simulate_measurement
from .noise_level import check_sigma

__all__ = ["DegradeOptions", "Degraded", "degrade"]


@dataclass
class DegradeOptions:
    """The options of ``invkit degrade`` (same names, ``_`` for ``-``; ``operator_args`` is ``--arg``).

    Attributes:
        input: The clean image (PNG/JPEG/TIFF, 8 or 16 bits).
        output: The measurement: an image file, or ``.safetensors`` (lossless; required for
            compact measurements).
        operator: Operator name.
        operator_args: Operator parameters as ``"K=V"`` strings.
        sigma_y: Gaussian noise std added, in [0, 1] pixel units.
        seed: Seed of the noise.
        bits: Bits per sample of an image output (8 or 16); None: the input's where the format
            allows, else 8.
        force: Overwrite an existing output.
    """

    input: Path
    output: Path
    operator: str
    operator_args: list[str] = field(default_factory=list)
    sigma_y: float = 0.0
    seed: int = 0
    bits: int | None = None
    force: bool = False

    def __post_init__(self) -> None:
        for name in ("input", "output"):
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                setattr(self, name, Path(value))


@dataclass
class Degraded:
    """What :func:`degrade` wrote.

    Attributes:
        output: The measurement file.
        kind: What it holds, in words (``lossless measurement``, ``8-bit image (...)``).
        op: The operator, built for the image's shape.
    """

    output: Path
    kind: str
    op: Operator


def degrade(opts: DegradeOptions, *, registry: Registry | None = None) -> Degraded:
    """Write the measurement of ``opts.input`` that ``opts`` asks for.

    Raises:
        RestoreError: A bad value, an output that cannot be written, or a compact measurement
            asked for as an image.
        PluginError: An unknown operator name.
    """
    registry = registry or get_registry()
    if not isinstance(opts.input, Path) or not isinstance(opts.output, Path):
        raise RestoreError(f"--input and --output must be paths, got {opts.input!r} and {opts.output!r}")
    check_output(opts.output, [opts.input], opts.force)
    check_sigma(opts.sigma_y, auto=False)
    if opts.bits not in (None, 8, 16) or isinstance(opts.bits, bool):
        raise RestoreError(f"--bits must be 8, 16 or None, got {opts.bits!r}")
    if not isinstance(opts.seed, int) or isinstance(opts.seed, bool):
        raise RestoreError(f"--seed must be an integer, got {opts.seed!r}")
    image = read_image(opts.input)
    check_finite(image.x, f"image {opts.input}")
    op = registry.build_operator(opts.operator, tuple(image.x.shape[1:]), opts.operator_args)
    y = simulate_measurement(op, image.x, opts.sigma_y, opts.seed)
    if opts.output.suffix == MEASUREMENT_SUFFIX:
        meta = Measurement(y=y, operator=opts.operator, params=_portable(op.config), in_shape=op.in_shape, sigma_y=opts.sigma_y)
        write_measurement(opts.output, meta)
        return Degraded(opts.output, "lossless measurement", op)
    if len(op.out_shape) != 3 or op.out_shape[0] not in (1, 3):
        raise RestoreError(f"operator '{opts.operator}' makes a compact measurement of shape {op.out_shape}; write it to a {MEASUREMENT_SUFFIX} file")
    bits = output_bits(opts.bits, image.bits, opts.output, op.out_shape[0])
    write_image(opts.output, y, bits=bits)
    return Degraded(opts.output, f"{bits}-bit image (clipped to [0, 1] and rounded)", op)


def _portable(config: dict[str, Any]) -> dict[str, Any]:
    """Operator parameters as recorded in a measurement: file paths (a mask or kernel file) made
    absolute, so `invkit solve` run from another folder reads the same file, not a namesake."""
    out = {}
    for key, value in config.items():
        if isinstance(value, str) and key.endswith("_file") and Path(value).is_file():
            value = str(Path(value).resolve())
        out[key] = value
    return out
