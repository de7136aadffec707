"""One input made ready to restore: read it, fix its size as asked, build the operator and the
measurement (degrading a clean image when simulating), and settle the noise model and, for
Gaussian noise, its level ``sigma_y`` (:mod:`invkit.runner.noise_level`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..forward import Operator
from ..io import MEASUREMENT_SUFFIX, Measurement, image_size, read_image, read_measurement
from ..noise import GaussianNoise, NoiseModel, check_operator_nonnegative, nonnegative_clean
from ..params import parse_kv, parse_params
from ..registry import Registry
from .errors import RestoreError
from .files import output_bits
from .jobs import Job
from .model_check import ModelCheck, effective_sigma, params_used, tail_ratio
from .noise_level import measurement_noise, simulate_noise
from .options import RestoreOptions
from .sizing import Geometry, SizeRules, apply_geometry, crop_back, planned_size, prior_multiple, resized_size

__all__ = ["Prepared", "prepare", "simulate_measurement", "check_noise_fits", "measurement_view", "operator_params", "check_finite"]

#: ``too_big(name, C, H, W, scale=1, resizable=True, memory_only=False)``: called with the image size a run will restore (after ``--resize`` and
#: ``--crop``, at the operator's input: ×factor for super-resolution), from the file's header,
#: before its pixels are read; it raises to refuse. ``memory_only``: a size allocated on the way
#: (``--resize`` before ``--crop``), not restored: only ``--max-megapixels`` applies.
TooBig = Callable[..., None]


@dataclass
class Prepared:
    """One input, ready to restore.

    Attributes:
        job: The input and its outputs.
        op: The operator, for the (possibly resized, cropped or padded) image size.
        name: The operator's registered name.
        y: The measurement ``(1, *op.out_shape)``, float32, CPU.
        sigma_y: The Gaussian noise level restored with (None for a model without one: Poisson).
        bits: Bits per sample of the image outputs.
        geo: What was done to the input's size.
        clean: The original image ``(1, C, H, W)`` when simulating (for the metrics), else None.
        notes: Messages for the user (how ``sigma_y`` was chosen).
        noise: The noise model restored with; None: ``GaussianNoise(sigma_y)``.
        clean_padded: ``clean`` at the operator's size (padded like the image the operator sees)
            when simulating: the reference of an operator's ambiguity alignment (``op.align``).
        check: The measurement checked against its model (:mod:`invkit.runner.model_check`):
            the before-solve verdict here, the residual added after the solve.
        defaults: The operator parameters left at their defaults (neither given nor recorded).
    """

    job: Job
    op: Operator
    name: str
    y: Tensor
    sigma_y: float | None
    bits: int
    geo: Geometry
    clean: Tensor | None = None
    notes: list[str] = field(default_factory=list)
    noise: NoiseModel = None  # type: ignore[assignment]  # filled in from sigma_y
    clean_padded: Tensor | None = None
    check: ModelCheck = field(default_factory=ModelCheck)
    defaults: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.noise is None:
            if self.sigma_y is None:
                raise ValueError("Prepared needs a noise model or a Gaussian sigma_y")
            self.noise = GaussianNoise(self.sigma_y)


#: The note for an input whose alpha channel was dropped.
_ALPHA_NOTE = "{name}: its alpha channel (transparency) was dropped; the colour channels are restored as they are (flatten it onto a background first if that matters)"


def check_finite(t: Tensor, what: str) -> None:
    """Refuse a tensor with NaN or infinite values.

    Raises:
        RestoreError: Naming ``what`` and how many values are bad.
    """
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise RestoreError(f"{what} contains {bad} NaN or infinite value(s) out of {t.numel()}; clean or crop it first")


def simulate_measurement(op: Operator, clean: Tensor, noise: float | NoiseModel, seed: int, name: str | None = None) -> Tensor:
    """The measurement ``invkit degrade --seed`` and ``invkit solve --simulate --seed`` make of ``clean``.

    ``H x`` in float64, then the noise drawn from a CPU generator seeded with ``seed``, returned
    as float32 (so the same on every device). A noise model that needs ``H x >= 0`` (Poisson)
    gets float rounding below 0 set to 0, and a clearly negative ``H x`` is refused
    (:func:`invkit.noise.nonnegative_clean`).

    Args:
        op: The operator.
        clean: Clean images ``(B, *op.in_shape)`` in [0, 1].
        noise: A noise model, or a Gaussian noise std in [0, 1] pixel units.
        seed: Seed of the noise draw.
        name: The operator's registered name, for messages (default: its ``name``).

    Returns:
        ``(B, *op.out_shape)`` float32.

    Raises:
        RestoreError: ``H x`` has negative values and the noise model needs non-negative ones.
    """
    model = noise if isinstance(noise, NoiseModel) else GaussianNoise(float(noise))
    with torch.no_grad():
        z = op.forward(clean.double())
    try:
        z = nonnegative_clean(z, model, name or op.name)
    except ValueError as exc:
        raise RestoreError(str(exc)) from None
    return model.sample(z, torch.Generator().manual_seed(seed)).float()


def check_noise_fits(op: Any, noise: NoiseModel, name: str) -> None:
    """Refuse, before any work, an operator (or operator class) that can make negative clean
    measurements for a noise model that needs non-negative ones (:func:`invkit.noise.check_operator_nonnegative`).

    Raises:
        RestoreError: One line naming the operator and the fix.
    """
    try:
        check_operator_nonnegative(op, noise, name)
    except ValueError as exc:
        raise RestoreError(str(exc)) from None


def operator_params(cls: Any, name: str, given: list[str] | None, meas: Measurement, src: Path) -> dict[str, Any]:
    """Operator parameters: the ones a measurement file recorded, plus ``--arg`` values that agree with them.

    An ``--arg`` that contradicts a recorded value (say another mask seed) would silently restore
    with a different operator than the one that made the measurement, so it is refused.

    Raises:
        RestoreError: An ``--arg`` contradicts a recorded value.
    """
    owner = f"operator '{name}'"
    if name != meas.operator or not meas.params:
        return parse_params(cls.params, given or [], owner=owner)
    recorded = parse_params(cls.params, meas.params, owner=owner)
    if not given:
        return recorded
    explicit = parse_params(cls.params, given, owner=owner)
    asked = parse_kv(given)
    for key in asked:
        if explicit[key] != recorded[key]:
            raise RestoreError(
                f"measurement {src} was made with {key}={recorded[key]!r}; --arg {key}={asked[key]} contradicts it (drop that --arg)"
            )
    return recorded


def _refuse_planned(
    src: Path, opts: RestoreOptions, too_big: TooBig, to_in_shape: Callable[[tuple[int, int, int]], Any] | None = None,
    size: tuple[int, int, int] | None = None,
) -> None:
    """Before an input's pixels are used: ``too_big`` with what ``--resize`` allocates and with the
    image size the run will restore from it (its size, from the image file's header or ``size``,
    after ``--resize``/``--crop``, through ``to_in_shape``, an operator's ``infer_in_shape``:
    ×factor for super-resolution)."""
    c, h0, w0 = size if size is not None else image_size(src)
    _refuse_resize(src, c, h0, w0, opts, too_big)
    h, w = planned_size(h0, w0, opts)
    shape: tuple[int, ...] = (c, h, w)
    if to_in_shape is not None:
        try:
            shape = tuple(to_in_shape((c, h, w)))
        except (ValueError, TypeError, RestoreError):
            pass  # a size this operator cannot take: the size rules say so after reading
    if len(shape) == 3:
        scale = shape[1] // h if shape[1] % h == 0 and shape[1] > h else 1
        too_big(_planned_label(src, h0, w0, h, w), *shape, scale=scale)


def _refuse_resize(src: Path, c: int, h0: int, w0: int, opts: RestoreOptions, too_big: TooBig) -> None:
    """``too_big`` with what ``--resize`` allocates, when that is larger than the input (a crop
    after it keeps a small region, but the resized image is made first)."""
    r = resized_size(h0, w0, opts)
    if r is not None and r[0] * r[1] > h0 * w0:
        too_big(f"{src.name} ({h0}x{w0}, {r[0]}x{r[1]} after --resize, before --crop)", c, *r, memory_only=True)


def _planned_label(src: Path, h0: int, w0: int, h: int, w: int) -> str:
    """The input's name for a size refusal, with what ``--resize``/``--crop`` made of its size."""
    return src.name if (h, w) == (h0, w0) else f"{src.name} ({h0}x{w0}, {h}x{w} after --resize/--crop)"


def prepare(job: Job, opts: RestoreOptions, registry: Registry, prior: Any, too_big: TooBig | None = None) -> Prepared:
    """Read one input, fix its size as asked, build the operator and the measurement, settle ``sigma_y``.

    Args:
        job: The input and its outputs.
        opts: The run's options.
        registry: Where the operators are registered.
        prior: The prior (for its size multiple).
        too_big: Called with the image size the run will restore (``TooBig``) before the
            input's pixels are read or any size is allocated, so an oversized photo, resize or
            super-resolution output is refused for its size first.

    Raises:
        RestoreError: An input that does not fit the options (the message says how to fix it).
    """
    src = job.src
    prior_label = f"prior '{opts.prior}'"
    multiple = prior_multiple(prior)
    notes: list[str] = []
    if opts.simulate:
        if opts.operator is None:
            raise RestoreError("--simulate needs --operator NAME (see `invkit plugins`)")
        name = opts.operator
        cls = registry.operator_class(name)
        params = parse_params(cls.params, opts.operator_args or [], owner=f"operator '{name}'")
        if too_big is not None:
            _refuse_planned(src, opts, too_big)
        image = read_image(src)
        check_finite(image.x, f"image {src}")
        if image.alpha:
            notes.append(_ALPHA_NOTE.format(name=src.name))
        c = image.x.shape[1]
        rules = SizeRules(lambda h, w: (c, h, w), lambda s: cls(s, **params), multiple, prior_label, (1, 1))
        clean, geo, op = apply_geometry(image.x, rules, opts, True, f"image {src.name}", "")
        noise = simulate_noise(opts.noise, opts.noise_args, opts.sigma_y)
        check_noise_fits(op, noise, name)
        y = simulate_measurement(op, clean, noise, opts.seed, name)
        bits = output_bits(opts.bits, image.bits, job.out, op.in_shape[0])
        prep = Prepared(job, op, name, y, noise.sigma, bits, geo, clean=crop_back(clean, geo), notes=notes, noise=noise, clean_padded=clean)
        return _check_model(prep, cls, set(parse_kv(opts.operator_args or [])), set(), None)

    if src.suffix == MEASUREMENT_SUFFIX:
        meas = read_measurement(src)
        from_image = False
    else:
        if opts.operator is None:
            raise RestoreError(f"{src.name} is an image, which records no operator; pass --operator NAME (see `invkit plugins`)")
        if too_big is not None and opts.size is not None:
            too_big(src.name, *image_size(src), resizable=False, memory_only=True)  # the file as decoded
            too_big(src.name, *opts.size, resizable=False)  # the image restored
        elif too_big is not None:
            cls0, owner = registry.operator_class(opts.operator), f"operator '{opts.operator}'"
            _refuse_planned(src, opts, too_big, lambda shape: cls0.infer_in_shape(shape, parse_params(cls0.params, opts.operator_args or [], owner=owner)))
        image = read_image(src)
        if image.alpha:
            notes.append(_ALPHA_NOTE.format(name=src.name))
        meas = Measurement(y=image.x, bits=image.bits)
        from_image = True
    if meas.y.dim() < 2 or meas.y.shape[0] != 1:
        raise RestoreError(f"measurement {src} holds a batch of shape {tuple(meas.y.shape)}; expected one measurement (1, ...)")
    check_finite(meas.y, f"measurement {src}")
    name = opts.operator or meas.operator
    if name is None:
        raise RestoreError("no operator given; pass --operator NAME (see `invkit plugins`)")
    if meas.operator is not None and opts.operator is not None and opts.operator != meas.operator:
        raise RestoreError(f"measurement {src} was made by operator '{meas.operator}', not '{opts.operator}'; drop --operator")
    cls = registry.operator_class(name)
    params = operator_params(cls, name, opts.operator_args, meas, src)
    y0 = meas.y
    image_like = y0.dim() == 4
    photo: Tensor | None = None  # a photo read as a mask operator's measurement (its noise is estimated from it)
    keep: Tensor | None = None  # and its measured pixels
    geometry_asked = opts.pad or opts.crop is not None or opts.resize is not None

    if opts.size is not None or meas.in_shape is not None or not image_like:
        if geometry_asked:
            raise RestoreError("--pad/--crop/--resize need an image measurement whose size gives the image size (not --size or a compact measurement)")
        if opts.size is not None:
            in_shape: Any = tuple(opts.size)
        elif meas.in_shape is not None:
            in_shape = meas.in_shape
        else:
            in_shape = cls.infer_in_shape(tuple(y0.shape[1:]), params)
        if too_big is not None and len(in_shape) == 3:
            too_big(src.name, *in_shape, resizable=False)
        op = registry.build_operator(name, in_shape, params)
        if tuple(y0.shape[1:]) != tuple(op.out_shape):
            raise RestoreError(f"measurement {src} has shape {tuple(y0.shape[1:])}, but operator '{name}' on images {op.in_shape} measures {op.out_shape}")
        m = multiple
        if m > 1 and (op.in_shape[1] % m or op.in_shape[2] % m):
            raise RestoreError(f"{prior_label} needs image H and W divisible by {m}, got {op.in_shape[1]}x{op.in_shape[2]} (--size or the measurement file); make the measurement at a size that works")
        y, geo = y0, Geometry()
    else:
        c, h, w = y0.shape[1:]
        if too_big is not None and not from_image:  # an image file was size-checked from its header already
            _refuse_planned(src, opts, too_big, lambda shape: cls.infer_in_shape(shape, params), size=(c, h, w))
        shape0 = cls.infer_in_shape((c, h, w), params)
        scale = (shape0[1] // h, shape0[2] // w) if shape0[1] % h == 0 and shape0[2] % w == 0 else (1, 1)
        rules = SizeRules(
            lambda hh, ww: cls.infer_in_shape((c, hh, ww), params),
            lambda s: cls(s, **params),
            multiple,
            prior_label,
            scale,
        )
        unit = " measurement pixels" if scale != (1, 1) else ""
        y, geo, op = apply_geometry(y0, rules, opts, from_image, f"measurement {src.name}", unit)
        if from_image and cls.measures_pixels and tuple(y.shape[1:]) == tuple(op.in_shape) != tuple(op.out_shape):
            # a photo with holes: the measurement is its pixels where the mask keeps them
            photo = y
            y = op.forward(photo.double()).float()
            with torch.no_grad():  # the measured pixels: H^T 1 > 0 for a selection
                keep = op.adjoint(torch.ones((1, *op.out_shape), dtype=torch.float64)) > 0
            notes.append(f"{src.name}: the measurement is the photo's {op.out_numel} pixels that operator {name} keeps (of {photo[0].numel()})")
        if tuple(y.shape[1:]) != tuple(op.out_shape):
            raise RestoreError(f"measurement {src} has shape {tuple(y.shape[1:])}, but operator '{name}' on images {op.in_shape} measures {op.out_shape}")

    noise, note = measurement_noise(opts.noise, opts.noise_args, opts.sigma_y, meas, photo if photo is not None else y, src, keep)
    if note is not None:
        notes.append(note)
    if noise.needs_nonnegative and opts.resize is not None:
        raise RestoreError(f"--resize interpolates measurement {src.name} and so changes its {type(noise).name} photon counts; use --pad or --crop")
    check_noise_fits(op, noise, name)
    bits = output_bits(opts.bits, meas.bits, job.out, op.in_shape[0])
    prep = Prepared(job, op, name, y.float(), noise.sigma, bits, geo, notes=notes, noise=noise)
    recorded = set(meas.params or {}) if name == meas.operator else set()
    return _check_model(prep, cls, set(parse_kv(opts.operator_args or [])), recorded, meas.bits)


def _check_model(prep: Prepared, cls: Any, given: set[str], recorded: set[str], bits: int | None) -> Prepared:
    """Say the operator parameters used (defaults marked), and check the measurement against the
    model before the solve (:func:`~invkit.runner.model_check.tail_ratio`; a warning note when it
    does not fit). ``bits``: the measurement file's bit depth (its rounding is noise too)."""
    config = dict(prep.op.config)
    prep.defaults = [p.name for p in cls.params if p.name in config and config[p.name] is not None and p.name not in given and p.name not in recorded]
    used = params_used(cls.params, config, given, recorded)
    if used:
        prep.notes.append(f"{prep.job.src.name}: operator {prep.name} with {used}")
    sigma = effective_sigma(prep.noise, bits)
    prep.check = ModelCheck(sigma=sigma)
    prep.check.tail, prep.check.tail_count = tail_ratio(prep.op, prep.y, sigma)
    prep.notes += [f"{prep.job.src.name}: warning: {w}" for w in prep.check.before()]
    return prep


def measurement_view(prep: Prepared) -> tuple[Tensor | None, str | None]:
    """The measurement as an image comparable with the restoration, and how it was made.

    Returns:
        ``(view, "measurement")`` for an image measurement of the image's shape,
        ``(H⁺ y, "pseudo_inverse")`` otherwise, ``(None, None)`` without a pseudo-inverse.
    """
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
