"""What a restore run is asked to do: :class:`RestoreOptions`, one field per ``invkit solve`` option,
and :func:`check_values`, the check of every field's type and range (whoever set it: the command
line's parsers only turn text into values)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..tiled import DEFAULT_OVERLAP, DEFAULT_TILE
from .errors import RestoreError
from .noise_level import asked_noise, check_sigma, simulate_noise

__all__ = ["RestoreOptions", "DEFAULT_MAX_MEGAPIXELS", "DEFAULT_MAX_MINUTES", "SELECT_CHOICES", "TILE_CHOICES", "TILE_AUTO_PIXELS", "check_values"]

#: Default of :attr:`RestoreOptions.max_megapixels` (``--max-megapixels``): a bound on memory.
#: Above :data:`TILE_AUTO_PIXELS` the prior runs on tiles (its memory set by the tile batch); the
#: operators and the solver's images grow with the pixels (a 12 MP DDRM deblur with the default
#: prior peaked at 4.3 GB: docs/measurements.md "Peak memory of a 12 MP solve, bounded").
DEFAULT_MAX_MEGAPIXELS = 16.0

#: Default of :attr:`RestoreOptions.max_minutes` (``--max-minutes``): images over
#: :data:`~invkit.runner.cost.ESTIMATE_PIXELS` whose estimated solve (:mod:`invkit.runner.cost`,
#: its low end) is longer are refused before their pixels are read.
DEFAULT_MAX_MINUTES = 240.0

#: What :attr:`RestoreOptions.tile` (``--tile``) may be.
TILE_CHOICES = ("auto", "on", "off")
#: ``--tile auto`` tiles the prior above this many restored pixels: with the default prior on
#: 2 CPU threads (freed memory kept, one tile per network call), a whole DDRM step was faster
#: untiled at 0.74 MP (1.18x) and tiled at 0.87 MP (1.07x) and 1.0 MP (1.39x); the prior alone
#: agreed (tiles faster from about 0.8 MP); the whole image's self-attention grows
#: quadratically beyond (docs/measurements.md, ``benchmarks/photo_sizes.py --tile both``).
TILE_AUTO_PIXELS = 800_000

#: What :attr:`RestoreOptions.select` (``--select``) may be: write the posterior ``mean`` of the
#: samples, or the sample with the smallest ``residual`` ‖y − A(x)‖.
SELECT_CHOICES = ("mean", "residual")


@dataclass
class RestoreOptions:
    """The options of one restore run (``invkit solve``): what to run, on what, and how.

    Every field has the meaning of the ``invkit solve`` option of the same name (``_`` for
    ``-``; ``operator_args`` is ``--arg``, ``solver_args`` ``--solver-arg``, ``prior_args``
    ``--prior-arg``, ``noise_args`` ``--noise-arg``); ``invkit solve --help`` is the full contract. Values are checked by
    :func:`invkit.runner.restore`, which raises :class:`~invkit.runner.RestoreError` before any
    work for a bad one.

    Attributes:
        input: A measurement (an image file or a ``.safetensors`` measurement), a clean image
            with ``simulate``, or a folder of them.
        output: The restored image file, or a folder when ``input`` is a folder.
        operator: Operator name; read from a ``.safetensors`` measurement when None.
        operator_args: Operator parameters as ``"K=V"`` strings; None when none were given (a
            measurement's recorded parameters are then used as they are).
        solver: Solver name.
        solver_args: Solver parameters as ``"K=V"`` strings.
        prior: Prior name, or a checkpoint file / diffusers folder.
        prior_args: Prior parameters as ``"K=V"`` strings.
        simulate: ``input`` is a clean image: degrade it (noise seed ``seed``), restore, score.
        figure: Write the side-by-side picture: ``True`` next to the output, a path to name it
            (a folder for a folder input), None for none (always written with ``simulate``).
        size: Image shape ``(C, H, W)`` when the measurement does not determine it.
        bits: Bits per sample of image outputs (8 or 16); None: from the input.
        force: Overwrite existing outputs.
        skip_existing: Skip an input whose outputs all exist (resume an interrupted folder run:
            an image's outputs appear all together, so existing ones are complete).
        keep_going: Restore the other images when one fails (unreadable, wrong size, ...), and
            report the failures at the end (a non-zero exit) instead of stopping at the first.
        sigma_y: Gaussian measurement noise std in [0, 1] units, ``"auto"`` to estimate it from an
            image measurement, None for the default policy (:mod:`invkit.runner.noise_level`);
            refused with a noise model that has no std (Poisson).
        noise: Noise model name (``gaussian``, ``poisson``; :data:`invkit.noise.NOISE_MODELS`);
            None: the one a ``.safetensors`` measurement recorded, else Gaussian.
        noise_args: The noise model's parameters as ``"K=V"`` strings (Poisson: ``rate``).
        select: What the restoration is with several samples: ``"mean"`` (the posterior mean),
            ``"residual"`` (the sample with the smallest ‖y − A(x)‖), or None for the operator's
            default (``residual`` where the operator says its posterior mean is meaningless,
            ``mean_is_meaningful = False``; else ``mean``).
        steps: Prior evaluations per sample (None: the solver's default).
        seed: Seed of every random draw; sample ``i`` uses ``sample_seed(seed, i)``.
        samples: Posterior samples per image.
        batch: Samples per solver call.
        device: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``.
        pad: Reflect-pad to the nearest size that works (cropped back after).
        crop: ``True`` for the largest centred size that works, or a region ``(Y, X, H, W)``.
        resize: Longest side in pixels (adjusted to a size that works), or an exact ``(H, W)``.
        max_megapixels: Refuse larger images before any work.
        max_minutes: Refuse an image over :data:`~invkit.runner.cost.ESTIMATE_PIXELS` whose estimated
            solve (its range's low end) is longer, before its pixels are read.
        tile: Evaluate the prior on overlapping tiles (:class:`invkit.TiledPrior`): ``"on"``,
            ``"off"``, or ``"auto"`` (above :data:`TILE_AUTO_PIXELS` restored pixels, where tiles
            were measured faster than the whole image).
        tile_size: Tile side in pixels (a multiple of the prior's size multiple).
        tile_overlap: Overlap of neighbouring tiles in pixels (same rule, below ``tile_size``).
    """

    input: Path
    output: Path
    operator: str | None = None
    operator_args: list[str] | None = None
    solver: str = "ddrm"
    solver_args: list[str] = field(default_factory=list)
    prior: str = "default"
    prior_args: list[str] = field(default_factory=list)
    simulate: bool = False
    figure: Path | Literal[True] | None = None
    size: tuple[int, int, int] | None = None
    bits: int | None = None
    force: bool = False
    skip_existing: bool = False
    keep_going: bool = False
    sigma_y: float | Literal["auto"] | None = None
    noise: str | None = None
    noise_args: list[str] = field(default_factory=list)
    select: Literal["mean", "residual"] | None = None
    steps: int | None = None
    seed: int = 0
    samples: int = 1
    batch: int = 1
    device: str = "auto"
    pad: bool = False
    crop: tuple[int, int, int, int] | Literal[True] | None = None
    resize: int | tuple[int, int] | None = None
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    max_minutes: float = DEFAULT_MAX_MINUTES
    tile: Literal["auto", "on", "off"] = "auto"
    tile_size: int = DEFAULT_TILE
    tile_overlap: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        # paths given as text become Paths; anything else is left for check_values to refuse
        for name in ("input", "output", "figure"):
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)):
                setattr(self, name, Path(value))
        for name in ("size", "crop", "resize"):  # sequences of numbers as tuples
            value = getattr(self, name)
            if isinstance(value, list):
                setattr(self, name, tuple(value))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ints(value: Any, n: int) -> bool:
    """Whether ``value`` is a tuple or list of ``n`` integers."""
    return isinstance(value, (tuple, list)) and len(value) == n and all(_is_int(v) for v in value)


def check_values(opts: RestoreOptions) -> None:
    """Refuse a field of the wrong type or out of range, naming it by its option (``--crop``).

    Names (solver, operator, prior, device) are checked against what exists elsewhere
    (:func:`invkit.runner.check_options`); here only their type.

    Raises:
        RestoreError: One line: the option, what it must be, and the value given.
    """

    def bad(flag: str, must: str, value: Any) -> RestoreError:
        return RestoreError(f"{flag} must be {must}, got {value!r}")

    for name in ("input", "output"):
        if not isinstance(getattr(opts, name), Path):
            raise bad(f"--{name}", "a path", getattr(opts, name))
    if not (opts.figure is None or opts.figure is True or isinstance(opts.figure, Path)):
        raise bad("--figure", "True, a path or None", opts.figure)
    for flag, value, optional in (("--solver", opts.solver, False), ("--prior", opts.prior, False),
                                  ("--operator", opts.operator, True), ("--device", opts.device, False)):
        if not (isinstance(value, str) and value) and not (optional and value is None):
            raise bad(flag, "a name" + (" or None" if optional else ""), value)
    for flag, value, optional in (("--arg", opts.operator_args, True), ("--solver-arg", opts.solver_args, False),
                                  ("--prior-arg", opts.prior_args, False), ("--noise-arg", opts.noise_args, False)):
        if not (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)) and not (optional and value is None):
            raise bad(flag, 'a list of "K=V" strings' + (" or None" if optional else ""), value)
    for flag, value in (("--simulate", opts.simulate), ("--force", opts.force), ("--pad", opts.pad),
                        ("--skip-existing", opts.skip_existing), ("--keep-going", opts.keep_going)):
        if not isinstance(value, bool):
            raise bad(flag, "True or False", value)
    for flag, value, optional in (("--samples", opts.samples, False), ("--batch", opts.batch, False), ("--steps", opts.steps, True)):
        if optional and value is None:
            continue
        if not _is_int(value):
            raise bad(flag, "an integer >= 1" + (" or None" if optional else ""), value)
        if value < 1:
            raise bad(flag, ">= 1", value)
    if not _is_int(opts.seed):
        raise bad("--seed", "an integer", opts.seed)
    if opts.bits not in (None, 8, 16) or isinstance(opts.bits, bool):
        raise bad("--bits", "8, 16 or None", opts.bits)
    for flag, limit in (("--max-megapixels", opts.max_megapixels), ("--max-minutes", opts.max_minutes)):
        if not isinstance(limit, (int, float)) or isinstance(limit, bool):
            raise bad(flag, "a number > 0", limit)
        if not limit > 0:  # NaN too
            raise bad(flag, "> 0", limit)
    if opts.sigma_y is not None and opts.sigma_y != "auto":
        check_sigma(opts.sigma_y, auto=True)
    if not (opts.noise is None or (isinstance(opts.noise, str) and opts.noise)):
        raise bad("--noise", "a noise model name or None", opts.noise)
    if opts.simulate:
        simulate_noise(opts.noise, opts.noise_args, opts.sigma_y)
    else:
        asked_noise(opts.noise, opts.noise_args, opts.sigma_y)
    if opts.select is not None and opts.select not in SELECT_CHOICES:
        raise bad("--select", f"one of {', '.join(SELECT_CHOICES)} or None", opts.select)
    if opts.size is not None and not (_ints(opts.size, 3) and min(opts.size) >= 1):
        raise bad("--size", "three integers (C, H, W) >= 1 or None", opts.size)
    crop = opts.crop
    if not (crop is None or crop is True or (_ints(crop, 4) and min(crop[:2]) >= 0 and min(crop[2:]) >= 1)):
        raise bad("--crop", "True (centred) or a region (Y, X, H, W) of integers, Y, X >= 0 and H, W >= 1, or None", crop)
    resize = opts.resize
    if not (resize is None or (_is_int(resize) and resize >= 1) or (_ints(resize, 2) and min(resize) >= 1)):
        raise bad("--resize", "an integer N >= 1 (longest side), two integers (H, W) >= 1, or None", resize)
    if opts.pad and opts.crop is not None:
        raise RestoreError("--pad and --crop exclude each other; choose one")
    if opts.skip_existing and opts.force:
        raise RestoreError("--skip-existing and --force exclude each other: keep the existing outputs, or overwrite them")
    if opts.tile not in TILE_CHOICES:
        raise bad("--tile", f"one of {', '.join(TILE_CHOICES)}", opts.tile)
    for flag, value in (("--tile-size", opts.tile_size), ("--tile-overlap", opts.tile_overlap)):
        if not _is_int(value) or value < 0 or (flag == "--tile-size" and value < 1):
            raise bad(flag, "an integer number of pixels" + (" >= 1" if flag == "--tile-size" else " >= 0"), value)
    if opts.tile_overlap >= opts.tile_size:
        raise RestoreError(f"--tile-overlap {opts.tile_overlap} must be below --tile-size {opts.tile_size}")
