"""A measurement ``y = H x + noise`` from a clean image (``invkit degrade``): :class:`DegradeOptions`
in, the measurement file written, :class:`Degraded` out. The noise is Gaussian (``--sigma-y``) or
Poisson (``--noise poisson --noise-arg rate=N``: ``y = clip(Poisson(rate · H x) / rate, 0, 1)``,
which needs ``H x >= 0``: an operator that can make negative measurements is refused before the
image is measured, :func:`invkit.noise.check_operator_nonnegative`).

Image-shaped measurements go to an image file (quantised to the input's bit depth where the
format allows, else 8 bits; its rounding noise is part of the measurement) or, losslessly, to a
``.safetensors`` file; compact measurements (masks, compressed sensing) always go to
``.safetensors`` with the operator's name and parameters and the noise model, which ``solve``
reads back (an image file keeps no noise model: pass ``--noise`` to ``solve`` again). The noise
is the draw ``solve --simulate`` makes with the same seed
(:func:`~invkit.runner.inputs.simulate_measurement`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..forward import Operator
from ..io import MEASUREMENT_SUFFIX, VIEW_SUFFIX, Measurement, read_image, write_image, write_measurement, output_transaction
from ..noise import GaussianNoise, NoiseModel, PoissonNoise
from ..params import ParamError
from ..registry import Registry, get_registry
from .errors import RestoreError
from .files import check_output, file_arguments, output_bits, probe_writable
from .inputs import check_finite, check_noise_fits, simulate_measurement
from .noise_level import asked_noise, check_sigma

__all__ = ["DegradeOptions", "Degraded", "degrade", "view_path"]


@dataclass
class DegradeOptions:
    """The options of ``invkit degrade`` (same names, ``_`` for ``-``; ``operator_args`` is ``--arg``).

    Attributes:
        input: The clean image (PNG/JPEG/TIFF, 8 or 16 bits).
        output: The measurement: an image file, or ``.safetensors`` (lossless; required for
            compact measurements).
        operator: Operator name.
        operator_args: Operator parameters as ``"K=V"`` strings.
        sigma_y: Gaussian noise std added, in [0, 1] pixel units (None: 0); refused with Poisson noise.
        seed: Seed of the noise.
        bits: Bits per sample of an image output (8 or 16); None: the input's where the format
            allows, else 8.
        force: Overwrite an existing output.
        noise: Noise model name (``gaussian``, ``poisson``; :data:`invkit.noise.NOISE_MODELS`).
        noise_args: Its parameters as ``"K=V"`` strings (Poisson: ``rate``, photons per unit
            intensity, default 255: the DPS paper's 255 photons at white).
    """

    input: Path
    output: Path
    operator: str
    operator_args: list[str] = field(default_factory=list)
    sigma_y: float | None = None
    seed: int = 0
    bits: int | None = None
    force: bool = False
    noise: str = "gaussian"
    noise_args: list[str] = field(default_factory=list)

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
        noise: The noise model drawn from.
        view: The measurement as a viewable image, for an operator that measures pixels
            (``measures_pixels``: a mask): ``<output>_view.png``, the kept pixels and black
            elsewhere (:func:`~invkit.runner.degrade.view_path`); ``invkit solve`` reads it back as a measurement.
    """

    output: Path
    kind: str
    op: Operator
    noise: NoiseModel = field(default_factory=GaussianNoise)
    view: Path | None = None


def degrade(opts: DegradeOptions, *, registry: Registry | None = None) -> Degraded:
    """Write the measurement of ``opts.input`` that ``opts`` asks for.

    Everything is checked before the image is measured: the options, the output, the noise model,
    and (for Poisson noise) that the operator cannot make negative measurements.

    Raises:
        RestoreError: A bad value, an output that cannot be written, an operator that does not fit
            the noise model, or a compact measurement asked for as an image.
        PluginError: An unknown operator name.
    """
    registry = registry or get_registry()
    if not isinstance(opts.input, Path) or not isinstance(opts.output, Path):
        raise RestoreError(f"--input and --output must be paths, got {opts.input!r} and {opts.output!r}")
    inputs = [opts.input, *file_arguments(opts.operator_args)]
    check_output(opts.output, inputs, opts.force)
    op_class = registry.operator_class(opts.operator)
    view = view_path(opts.output) if opts.output.suffix == MEASUREMENT_SUFFIX and op_class.measures_pixels else None
    if view is not None:
        check_output(view, inputs, opts.force)
    probe_writable(opts.output.parent)
    if not (isinstance(opts.noise_args, (list, tuple)) and all(isinstance(v, str) for v in opts.noise_args)):
        raise RestoreError(f'--noise-arg must be a list of "K=V" strings, got {opts.noise_args!r}')
    noise = asked_noise(opts.noise or GaussianNoise.name, opts.noise_args, opts.sigma_y)
    if noise is None or isinstance(noise, GaussianNoise):
        sigma = 0.0 if opts.sigma_y is None else opts.sigma_y
        check_sigma(sigma, auto=False)
        noise = GaussianNoise(float(sigma))
    if opts.bits not in (None, 8, 16) or isinstance(opts.bits, bool):
        raise RestoreError(f"--bits must be 8, 16 or None, got {opts.bits!r}")
    if not isinstance(opts.seed, int) or isinstance(opts.seed, bool):
        raise RestoreError(f"--seed must be an integer, got {opts.seed!r}")
    check_noise_fits(op_class, noise, opts.operator)
    if opts.output.suffix != MEASUREMENT_SUFFIX and not getattr(op_class, "image_like", True):
        raise RestoreError(
            f"operator '{opts.operator}' measures values an image file cannot hold (not pixels in [0, 1]); write it to a {MEASUREMENT_SUFFIX} file"
        )
    image = read_image(opts.input)
    check_finite(image.x, f"image {opts.input}")
    try:
        op = registry.build_operator(opts.operator, tuple(image.x.shape[1:]), opts.operator_args)
    except ParamError:
        raise
    except ValueError as exc:  # the image's size: degrade has no --crop/--pad/--resize
        raise RestoreError(
            f"{exc} (image {opts.input.name}: `invkit degrade` measures the image as it is; crop or pad the file first, "
            "or use `invkit solve --simulate`, which has --crop, --pad and --resize)"
        ) from None
    check_noise_fits(op, noise, opts.operator)
    lossless = opts.output.suffix == MEASUREMENT_SUFFIX
    if not lossless and (len(op.out_shape) != 3 or op.out_shape[0] not in (1, 3)):
        raise RestoreError(f"operator '{opts.operator}' makes a compact measurement of shape {op.out_shape}; write it to a {MEASUREMENT_SUFFIX} file")
    bits = None if lossless else output_bits(opts.bits, image.bits, opts.output, op.out_shape[0])
    if bits is not None and isinstance(noise, PoissonNoise):
        _check_counts_fit(noise.rate, bits)
    y = simulate_measurement(op, image.x, noise, opts.seed, opts.operator)
    if bits is None:
        meta = Measurement(y=y, operator=opts.operator, params=_portable(op.config), in_shape=op.in_shape, noise=noise)
        with output_transaction(overwrite=opts.force):  # created exclusively unless --force; both files or neither
            write_measurement(opts.output, meta)
            if view is not None:
                with torch.no_grad():
                    write_image(view, op.adjoint(y.double()).clamp(0, 1), bits=output_bits(opts.bits, image.bits, view, op.in_shape[0]))
        return Degraded(opts.output, "lossless measurement", op, noise, view)
    with output_transaction(overwrite=opts.force):
        write_image(opts.output, y, bits=bits)
    return Degraded(opts.output, f"{bits}-bit image (clipped to [0, 1] and rounded)", op, noise)


def view_path(output: Path) -> Path:
    """Where ``degrade`` writes the viewable image of a pixel-subset measurement written to ``output``.

    Example:
        >>> view_path(Path("m.safetensors")).name
        'm_view.png'
    """
    return output.with_name(output.stem + VIEW_SUFFIX)


def _check_counts_fit(rate: float, bits: int) -> None:
    """Refuse Poisson counts that an image of ``bits`` cannot hold exactly: ``y = k / rate`` is a
    whole step of the ``2^bits − 1`` levels for every count ``k`` only when ``rate`` divides them."""
    levels = 2**bits - 1
    steps = levels / rate
    if abs(steps - round(steps)) > 1e-9 or round(steps) < 1:
        raise RestoreError(
            f"Poisson counts at rate {rate:g} are not whole steps of a {bits}-bit image (they would be rounded and the photon "
            f"counts lost); write a {MEASUREMENT_SUFFIX} file, or use a rate that divides {levels} (e.g. 255)"
        )


def _portable(config: dict[str, Any]) -> dict[str, Any]:
    """Operator parameters as recorded in a measurement: file paths (a mask or kernel file) made
    absolute, so `invkit solve` run from another folder reads the same file, not a namesake."""
    out = {}
    for key, value in config.items():
        if isinstance(value, str) and key.endswith("_file") and Path(value).is_file():
            value = str(Path(value).resolve())
        out[key] = value
    return out
