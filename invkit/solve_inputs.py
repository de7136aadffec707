"""One ``solve`` input made ready to restore: read it, fix its size as asked, build the operator
and the measurement (degrading a clean image in ``--simulate`` mode), and settle the noise
level ``sigma_y``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .cli_common import CommandError, check_finite, check_sigma, operator_params, output_bits
from .io import MEASUREMENT_SUFFIX, Measurement, read_image, read_measurement
from .noise import GaussianNoise, quantization_sigma
from .forward import Operator
from .params import parse_params
from .registry import Registry
from .sizing import Geometry, SizeRules, apply_geometry, crop_back, prior_multiple
from .solve_jobs import Job


@dataclass
class Prepared:
    job: Job
    op: Operator
    name: str
    y: Tensor  # (1, *out_shape), float32, CPU
    sigma_y: float
    bits: int
    geo: Geometry
    clean: Tensor | None = None  # (1, C, H, W) original region (simulate)
    notes: list[str] = field(default_factory=list)


def prepare(job: Job, args: argparse.Namespace, registry: Registry, prior: Any, too_big: Any = None) -> Prepared:
    """Read one input, fix its size as asked, build the operator and the measurement.

    ``too_big(channels, H, W)`` is called with the image size before any size fix is checked
    (unless --resize/--crop may shrink it), so an oversized photo is refused for its size first.
    """
    src = job.src
    prior_label = f"prior '{args.prior}'"
    multiple = prior_multiple(prior)
    notes: list[str] = []
    if args.simulate:
        if args.operator is None:
            raise CommandError("--simulate needs --operator NAME (see `invkit plugins`)")
        name = args.operator
        cls = registry.operator_class(name)
        params = parse_params(cls.params, args.arg or [], owner=f"operator '{name}'")
        image = read_image(src)
        check_finite(image.x, f"image {src}")
        c = image.x.shape[1]
        if too_big is not None and args.resize is None and args.crop is None:
            too_big(job.src.name, c, *image.x.shape[-2:])
        rules = SizeRules(lambda h, w: (c, h, w), lambda s: cls(s, **params), multiple, prior_label, (1, 1))
        clean, geo, op = apply_geometry(image.x, rules, args, True, f"image {src.name}", "")
        sigma = 0.0 if args.sigma_y is None else args.sigma_y
        if sigma == "auto":
            raise CommandError("--sigma-y auto estimates the noise of a measurement; with --simulate give the noise to add (e.g. --sigma-y 0.05)")
        check_sigma(sigma)
        y = GaussianNoise(sigma).sample(op.forward(clean.double()), torch.Generator().manual_seed(args.seed)).float()
        prep = Prepared(job, op, name, y, sigma, output_bits(args.bits, image.bits, job.out, op.in_shape[0]), geo, clean=crop_back(clean, geo), notes=notes)
        return prep

    if src.suffix == MEASUREMENT_SUFFIX:
        meas = read_measurement(src)
        from_image = False
    else:
        image = read_image(src)
        meas = Measurement(y=image.x, bits=image.bits)
        from_image = True
    if meas.y.dim() < 2 or meas.y.shape[0] != 1:
        raise CommandError(f"measurement {src} holds a batch of shape {tuple(meas.y.shape)}; expected one measurement (1, ...)")
    check_finite(meas.y, f"measurement {src}")
    name = args.operator or meas.operator
    if name is None:
        raise CommandError("no operator given; pass --operator NAME (see `invkit plugins`)")
    if meas.operator is not None and args.operator is not None and args.operator != meas.operator:
        raise CommandError(f"measurement {src} was made by operator '{meas.operator}', not '{args.operator}'; drop --operator")
    cls = registry.operator_class(name)
    params = operator_params(cls, name, args.arg, meas, src)
    y0 = meas.y
    image_like = y0.dim() == 4
    geometry_asked = args.pad or args.crop is not None or args.resize is not None

    if args.size is not None or meas.in_shape is not None or not image_like:
        if geometry_asked:
            raise CommandError("--pad/--crop/--resize need an image measurement whose size gives the image size (not --size or a compact measurement)")
        if args.size is not None:
            try:
                in_shape: Any = tuple(int(v) for v in args.size.replace("x", ",").split(","))
            except ValueError:
                raise CommandError(f"--size {args.size!r} is not C,H,W") from None
        elif meas.in_shape is not None:
            in_shape = meas.in_shape
        else:
            in_shape = cls.infer_in_shape(tuple(y0.shape[1:]), params)
        op = registry.build_operator(name, in_shape, params)
        if tuple(y0.shape[1:]) != tuple(op.out_shape):
            raise CommandError(f"measurement {src} has shape {tuple(y0.shape[1:])}, but operator '{name}' on images {op.in_shape} measures {op.out_shape}")
        m = multiple
        if m > 1 and (op.in_shape[1] % m or op.in_shape[2] % m):
            raise CommandError(f"{prior_label} needs image H and W divisible by {m}, got {op.in_shape[1]}x{op.in_shape[2]} (--size or the measurement file); make the measurement at a size that works")
        y, geo = y0, Geometry()
    else:
        c, h, w = y0.shape[1:]
        shape0 = cls.infer_in_shape((c, h, w), params)
        scale = (shape0[1] // h, shape0[2] // w) if shape0[1] % h == 0 and shape0[2] % w == 0 else (1, 1)
        if too_big is not None and args.resize is None and args.crop is None:
            too_big(src.name, *shape0)
        rules = SizeRules(
            lambda hh, ww: cls.infer_in_shape((c, hh, ww), params),
            lambda s: cls(s, **params),
            multiple,
            prior_label,
            scale,
        )
        unit = " measurement pixels" if scale != (1, 1) else ""
        y, geo, op = apply_geometry(y0, rules, args, from_image, f"measurement {src.name}", unit)
        if tuple(y.shape[1:]) != tuple(op.out_shape):
            raise CommandError(f"measurement {src} has shape {tuple(y.shape[1:])}, but operator '{name}' on images {op.in_shape} measures {op.out_shape}")

    # noise level
    if args.sigma_y == "auto" and not image_like:
        raise CommandError("--sigma-y auto needs an image measurement; give a number")
    if args.sigma_y is not None and args.sigma_y != "auto":
        sigma = args.sigma_y
    elif args.sigma_y is None and meas.sigma_y is not None:
        sigma = meas.sigma_y
    elif image_like and (args.sigma_y == "auto" or meas.bits is not None):
        # A photo's noise is rarely just its rounding: too small a sigma_y makes DDRM amplify the
        # real noise (measured: a photo with noise 0.02 restored with 0.0011 is ruined), too large
        # one only smooths. So the default is the estimate, never below the quantisation noise.
        from .metrics import estimate_noise_sigma

        floor = quantization_sigma(meas.bits) if meas.bits else 0.0
        est = estimate_noise_sigma(y)
        sigma = max(est, floor)
        notes.append(
            f"sigma_y = {sigma:.4g} (estimated {est:.2g} from the image, at least the {meas.bits}-bit quantisation noise "
            f"{floor:.2g}); pass --sigma-y to set it"
            if meas.bits
            else f"sigma_y estimated from the image: {sigma:.4g}"
        )
    elif meas.bits is not None:
        sigma = quantization_sigma(meas.bits)
    else:
        sigma = 0.0
    check_sigma(sigma)
    return Prepared(job, op, name, y.float(), float(sigma), output_bits(args.bits, meas.bits, job.out, op.in_shape[0]), geo, notes=notes)


def measurement_view(prep: Prepared) -> tuple[Tensor | None, str | None]:
    """The measurement as an image comparable with the restoration, and how it was made."""
    y = prep.y
    in_shape = tuple(prep.op.in_shape)
    if y.dim() == 4 and tuple(y.shape[1:]) == in_shape:
        return crop_back(y, prep.geo), "measurement"
    pinv = getattr(prep.op, "pinv", None)
    if pinv is None:
        return None, None
    with torch.no_grad():
        x = pinv(y.double()).float()
    return crop_back(x, prep.geo), "pseudo_inverse"
