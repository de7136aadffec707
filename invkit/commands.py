"""The ``invkit degrade`` and ``invkit solve`` commands.

``degrade`` makes a measurement from a clean image: image-shaped measurements go to an image
file (quantised to the input's bit depth where the format allows, else 8 bits; its rounding
noise is part of the measurement) or, losslessly, to a ``.safetensors`` file; compact
measurements (masks, compressed sensing) always go to ``.safetensors`` with the operator's name
and parameters, which ``solve`` reads back.

``solve`` restores images, in one of two modes:

* **measurement mode** (default): the input *is* the measurement -- a real degraded photo, or a
  file from ``invkit degrade``. When ``--sigma-y`` is not given it uses the noise recorded in a
  ``.safetensors`` measurement, or, for an image file, that file's quantisation noise
  (``1/(255·√12)`` for 8 bits) -- never an exact 0 that would magnify rounding. ``--sigma-y
  auto`` estimates it from the image instead (:func:`invkit.metrics.estimate_noise_sigma`).
* **simulate mode** (``--simulate``): the input is a clean image; it is degraded first (the same
  draw as ``invkit degrade --seed``), restored, and compared with the original (PSNR, SSIM and,
  where available locally, LPIPS), as a table or as JSON lines.

Both take a folder (every image in it, into an output folder), draw ``--samples N`` posterior
samples (mean, per-pixel std map and the samples are written), fix sizes that an operator or
the prior cannot take only when asked (``--pad``/``--crop``/``--resize``), state the cost of
large images up front and refuse those over ``--max-megapixels`` with the options that would work.
The full contract is the ``--help`` text below (:data:`SOLVE_EPILOG`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .io import IMAGE_SUFFIXES, MEASUREMENT_SUFFIX, Measurement, list_images, read_image, read_measurement, write_figure, write_image, write_measurement
from .noise import GaussianNoise, quantization_sigma
from .operator import Operator
from .params import parse_kv, parse_params
from .progress import ProgressBar, format_duration, is_terminal
from .registry import Registry
from .solver import Problem, Step

__all__ = ["add_core_commands", "build_prior", "CHECKPOINT_SUFFIXES", "CommandError", "SOLVE_EPILOG", "JSON_KEYS"]

#: File suffixes that make ``--prior VALUE`` a checkpoint path even before the file exists.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors")

#: Images above this many pixels get an up-front cost estimate (a timed prior evaluation).
ESTIMATE_PIXELS = 512 * 512
#: Default of ``--max-megapixels``.
DEFAULT_MAX_MEGAPIXELS = 4.0
#: A projected solve longer than this (seconds) is announced on stderr even without a terminal.
ANNOUNCE_SECONDS = 30.0
#: Steps assumed for estimates when ``--steps`` is not given (DDRM's default).
ASSUMED_STEPS = 20

#: Keys of every ``--json`` record, in order (documented in ``invkit solve --help``).
JSON_KEYS = (
    "image",
    "output",
    "mode",
    "operator",
    "operator_params",
    "solver",
    "prior",
    "shape",
    "sigma_y",
    "steps",
    "samples",
    "seed",
    "device",
    "seconds",
    "psnr_measurement",
    "psnr_restored",
    "ssim_measurement",
    "ssim_restored",
    "lpips_measurement",
    "lpips_restored",
    "measurement_metrics_from",
    "std_mean",
    "std_max",
    "files",
)


class CommandError(ValueError):
    """A user-fixable problem with the command's arguments or files."""


# ---------------------------------------------------------------------- shared helpers
def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _is_input(output: Path, inputs: list[Path]) -> bool:
    return any(output.resolve() == src.resolve() or _same_file(output, src) for src in inputs)


def _operator_params(cls: Any, name: str, given: list[str] | None, meas: Measurement, src: Path) -> dict[str, Any]:
    """Operator parameters: the ones a measurement file recorded, plus ``--arg`` values that agree with them.

    An ``--arg`` that contradicts a recorded value (say another mask seed) would silently restore
    with a different operator than the one that made the measurement, so it is refused.
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
            raise CommandError(
                f"measurement {src} was made with {key}={recorded[key]!r}; --arg {key}={asked[key]} contradicts it (drop that --arg)"
            )
    return recorded


def _check_output(output: Path, inputs: list[Path], force: bool) -> None:
    if _is_input(output, inputs):
        raise CommandError(f"output {output} is the input file; choose another output path")
    if output.is_dir():
        raise CommandError(f"output {output} is a folder; give a file name (a folder output needs a folder --input)")
    if output.exists() and not force:
        raise CommandError(f"output {output} exists; pass --force to overwrite it")


def build_prior(registry: Registry, value: str, args: Any = None, device: str | None = None) -> Any:
    """Build ``--prior VALUE`` with ``--prior-arg`` values: a registered prior name, or a checkpoint path.

    A value that is not a registered name but looks like a path (it exists, or ends in one of
    :data:`CHECKPOINT_SUFFIXES`) builds the registered prior ``checkpoint`` with ``path=VALUE``
    plus ``args``; a missing file is a :class:`CommandError` (one line). Anything else goes to the
    registry, whose error lists the known names. ``device`` is passed as the prior's ``device``
    parameter when it has one and ``args`` does not set it (analytic priors follow their input).
    """
    given = dict(args) if isinstance(args, dict) else parse_kv(args or [])
    name = value
    if value not in registry.names("prior"):
        path = Path(value).expanduser()
        if path.exists() or path.suffix.lower() in CHECKPOINT_SUFFIXES:
            if not path.exists():
                raise CommandError(f"prior checkpoint not found: {path} (a prior name or a checkpoint file/folder; see `invkit plugins`)")
            if "path" in given:
                raise CommandError(f"--prior {value} is a checkpoint path; drop --prior-arg path=...")
            name = "checkpoint"
            given = {"path": str(path), **given}
    if device is not None and "device" not in given:
        if any(p.name == "device" for p in registry.get("prior", name).params):
            given["device"] = device
    return registry.build("prior", name, given)


def _check_prior_name(registry: Registry, value: str) -> None:
    """Fail fast (before reading images) on a prior that is neither a registered name nor a path."""
    if value in registry.names("prior"):
        return
    path = Path(value).expanduser()
    if path.exists() or path.suffix.lower() in CHECKPOINT_SUFFIXES:
        if not path.exists():
            raise CommandError(f"prior checkpoint not found: {path} (a prior name or a checkpoint file/folder; see `invkit plugins`)")
        return
    registry.get("prior", value)  # raises, listing the known priors


def _resolve_device(text: str) -> torch.device:
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise CommandError(f"--device {text!r} is not a device; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {text}: CUDA is not available here (torch {torch.__version__}); use --device cpu or --device auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise CommandError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise CommandError(f"--device {text}: MPS is not available here; use --device cpu")
    return dev


def _output_bits(requested: int | None, source_bits: int | None, path: Path) -> int:
    """``--bits``, else the source's bit depth where the format holds it (PNG/TIFF), else 8."""
    if requested is not None:
        return requested
    if source_bits and source_bits >= 16 and path.suffix.lower() in (".png", ".tif", ".tiff"):
        return 16
    return 8


# ---------------------------------------------------------------------- degrade
def _setup_degrade(p: argparse.ArgumentParser) -> None:
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


def _run_degrade(args: argparse.Namespace, registry: Registry) -> int:
    _check_output(args.output, [args.input], args.force)
    if not math.isfinite(args.sigma_y) or args.sigma_y < 0:
        raise CommandError(f"--sigma-y must be a finite number >= 0, got {args.sigma_y}")
    image = read_image(args.input)
    _check_finite(image.x, f"image {args.input}")
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
        bits = _output_bits(args.bits, image.bits, args.output)
        write_image(args.output, y, bits=bits)
        kind = f"{bits}-bit image (clipped to [0, 1] and rounded)"
    if not args.quiet:
        print(f"wrote {args.output}: {kind}, operator {args.operator} on {op.in_shape} -> {tuple(op.out_shape)}, sigma_y={args.sigma_y}")
    return 0


def _check_finite(t: Tensor, what: str) -> None:
    bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise CommandError(f"{what} contains {bad} NaN or infinite value(s) out of {t.numel()}; clean or crop it first")


# ---------------------------------------------------------------------- solve: help text
SOLVE_DESCRIPTION = """\
Restore images y = H x + noise with a solver (DDRM by default) and a diffusion prior (the
built-in 'default' prior unless --prior is given).

Two modes:
  measurement mode (default)  --input is the measurement: a real degraded photo, or a file made
                              by `invkit degrade` (.safetensors measurements carry their operator,
                              parameters and noise level, so --operator/--arg may be omitted).
  --simulate                  --input is a clean image: invkit degrades it (operator, --arg,
                              --sigma-y, noise seed --seed: the same draw as `invkit degrade`),
                              restores it and prints PSNR/SSIM of the measurement and of the
                              restoration against it, and writes a side-by-side picture.
A folder as --input processes every image in it (PNG/JPEG/TIFF/BMP, and .safetensors
measurements in measurement mode) into the folder --output (created if needed)."""

SOLVE_EPILOG = """\
output files (OUT = --output without its suffix, EXT = its suffix; folder mode: OUT is
OUTDIR/<input name>, EXT is .png):
  OUT.EXT              the restoration; with --samples N > 1 the posterior mean
  OUT_std.EXT          --samples N > 1: per-pixel posterior std (root mean square over channels),
                       grayscale, scaled so that white = its maximum (printed as std_max)
  OUT_sample<i>.EXT    --samples N > 1: the samples, i = 1..N (zero-padded to the width of N)
  OUT_figure.png       side by side: clean | measurement | restoration | std map (the panels
                       that exist); always in --simulate mode, else with --figure; --figure PATH
                       names it (a folder in folder mode)
  Outputs are written atomically; an output equal to an input is refused, and an existing one
  is kept unless --force. All outputs are checked before any work starts. 16-bit inputs give
  16-bit PNG/TIFF outputs (--bits to choose).

noise level (--sigma-y, [0, 1] pixel units):
  measurement mode: the value recorded in a .safetensors measurement, else the file's
  quantisation noise (1/(255*sqrt(12)) = 0.00113 for 8 bits); `auto` estimates it from the image
  (median absolute diagonal Haar detail), and a note suggests it when the image looks noisier
  than its quantisation. A sigma_y below the photo's real noise makes DDRM amplify that noise
  (the result can be ruined); one above it only smooths more. --simulate: the noise added
  (default 0: noiseless, not quantised).

metrics (--simulate; restoration = the posterior mean when --samples > 1; all images clipped to
[0, 1], before rounding to the output's bits):
  PSNR  10 log10(1 / MSE) over all pixels and channels, in dB (kornia.metrics.psnr)
  SSIM  Gaussian window 11, sigma 1.5, valid region, mean over channels (kornia.metrics.ssim;
        equals scikit-image's structural_similarity with gaussian_weights=True,
        use_sample_covariance=False, data_range=1)
  LPIPS AlexNet LPIPS, only if the `lpips` package and its AlexNet weights are already on this
        machine (never downloaded); otherwise null / not shown
  The measurement is compared as is when it is an image of the clean image's shape (blur,
  denoising); otherwise through its pseudo-inverse H+ y (super-resolution: block replication;
  inpainting: holes at 0; colorization: grey; compressed sensing: back-projection), marked *
  in the table and "pseudo_inverse" in JSON; null when the operator has no pseudo-inverse.

--json: one JSON object per image on stdout (JSON Lines; messages go to stderr), keys:
  image, output, mode ("measurement" | "simulate"), operator, operator_params, solver, prior,
  shape [C, H, W] of the restoration, sigma_y, steps (prior evaluations per sample), samples,
  seed, device, seconds, psnr_measurement, psnr_restored, ssim_measurement, ssim_restored,
  lpips_measurement, lpips_restored (numbers, or null: measurement mode, not available, or
  infinite), measurement_metrics_from ("measurement" | "pseudo_inverse" | null),
  std_mean, std_max (--samples > 1, else null), files {"restored", "std", "samples", "figure"}.

sizes: an image the operator or the prior cannot take (e.g. the default prior needs H and W
divisible by 8, compressed sensing powers of two) is refused with the sizes that would work;
--pad (symmetric reflection, edge repeated as scipy's 'reflect'; the result is cropped back),
--crop (centred, or an explicit Y,X,H,W region) and --resize (N = longest side, adjusted to the
nearest size that works; or exact H,W) fix it. They act on the input file (the measurement in
measurement mode: operator parameters such as a blur's sigma stay in its pixels, and resizing a
measurement changes its noise level: prefer --pad or --crop there).

cost: images over 0.26 MP get an up-front estimate from a timed prior evaluation; a progress
bar (stderr, terminals only, not with --quiet) shows steps, time per step and time left, and
without a terminal the projection after the first step is printed when it exceeds 30 s.
Images over --max-megapixels are refused before any work, with the estimate and the --resize
that fits.

reproducibility: the same --seed, --batch, device and inputs give the same draws (float
rounding in CPU BLAS may still differ in the last bits between runs)."""


def _sigma_arg(text: str) -> float | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'auto'") from None
    return value


_FIGURE_AUTO = "<next to the output>"


def _setup_solve(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to run")
    g.add_argument("--solver", default="ddrm", help="solver name (default ddrm; see `invkit plugins`)")
    g.add_argument("--solver-arg", action="append", default=[], metavar="K=V", help="solver parameter (repeatable), e.g. eta=0.85")
    g.add_argument("--operator", default=None, help="operator name (read from a .safetensors measurement if omitted)")
    g.add_argument("--arg", action="append", default=None, metavar="K=V", help="operator parameter (repeatable), e.g. sigma=2.0")
    g.add_argument("--prior", default="default", metavar="NAME|PATH", help="prior name or checkpoint file/diffusers folder (default: the built-in 'default' prior)")
    g.add_argument("--prior-arg", action="append", default=[], metavar="K=V", help="prior parameter (repeatable), e.g. arch=adm, class_label=N")

    g = p.add_argument_group("input and output")
    g.add_argument("--input", required=True, type=Path, help="measurement (or clean image with --simulate): an image file, a .safetensors measurement, or a folder")
    g.add_argument("--output", required=True, type=Path, help="restored image file (PNG/TIFF/JPEG), or a folder when --input is a folder")
    g.add_argument("--simulate", action="store_true", help="--input is a clean image: degrade it first, then report metrics against it")
    g.add_argument("--figure", nargs="?", const=_FIGURE_AUTO, default=None, metavar="PATH", help="write the side-by-side picture (always written with --simulate); PATH names it")
    g.add_argument("--size", default=None, metavar="C,H,W", help="image shape, when the measurement does not determine it")
    g.add_argument("--bits", type=int, choices=(8, 16), default=None, help="bits per sample of image outputs (default: 16 for 16-bit inputs written to PNG/TIFF, else 8)")
    g.add_argument("--force", action="store_true", help="overwrite existing outputs")

    g = p.add_argument_group("noise and sampling")
    g.add_argument("--sigma-y", type=_sigma_arg, default=None, metavar="SIGMA|auto", help="measurement noise std in [0, 1] units (see 'noise level' below)")
    g.add_argument("--steps", type=int, default=None, help="prior evaluations per sample (solver default if omitted; DDRM: 20)")
    g.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0)")
    g.add_argument("--samples", type=int, default=1, metavar="N", help="posterior samples per image (default 1); N > 1 writes the mean, a std map and the samples")
    g.add_argument("--batch", type=int, default=1, metavar="B", help="samples per solver call (default 1; larger is faster on a GPU and uses more memory)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available); the prior and the tensors run there")

    g = p.add_argument_group("image size")
    g.add_argument("--pad", action="store_true", help="reflect-pad to the nearest size that works; the result is cropped back")
    g.add_argument("--crop", nargs="?", const="centre", default=None, metavar="Y,X,H,W", help="crop to the largest centred size that works, or to the region Y,X,H,W")
    g.add_argument("--resize", default=None, metavar="N|H,W", help="resize first: N = longest side in pixels (adjusted to a size that works), or exactly H,W")
    g.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS, metavar="MP", help=f"refuse larger images up front, with an estimate and the options that work (default {DEFAULT_MAX_MEGAPIXELS:g})")

    g = p.add_argument_group("reporting")
    g.add_argument("--json", action="store_true", help="one JSON object per image on stdout (keys below)")
    g.add_argument("--quiet", action="store_true", help="no progress bar, notes or summary lines (errors and --json still print)")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")


# ---------------------------------------------------------------------- solve: planning
@dataclass
class _Job:
    """One input file and every output it produces."""

    src: Path
    out: Path
    std: Path | None = None
    samples: list[Path] = field(default_factory=list)
    figure: Path | None = None

    def outputs(self) -> list[Path]:
        return [p for p in (self.out, self.std, *self.samples, self.figure) if p is not None]


def _derived(out: Path, tag: str, suffix: str | None = None) -> Path:
    return out.with_name(f"{out.stem}_{tag}{suffix if suffix is not None else out.suffix}")


def _make_job(src: Path, out: Path, args: argparse.Namespace, figure_dir: Path | None) -> _Job:
    job = _Job(src=src, out=out)
    n = args.samples
    if n > 1:
        job.std = _derived(out, "std")
        width = len(str(n))
        job.samples = [_derived(out, f"sample{i:0{width}d}") for i in range(1, n + 1)]
    if args.figure is not None or args.simulate:
        if args.figure in (None, _FIGURE_AUTO):
            job.figure = _derived(out, "figure", ".png")
        elif figure_dir is not None:
            job.figure = figure_dir / f"{out.stem}_figure.png"
        else:
            job.figure = Path(args.figure)
    return job


def _plan_jobs(args: argparse.Namespace) -> list[_Job]:
    src, out = args.input, args.output
    if not src.exists():
        raise CommandError(f"input {src} does not exist")
    suffixes = IMAGE_SUFFIXES if args.simulate else (*IMAGE_SUFFIXES, MEASUREMENT_SUFFIX)
    if src.is_dir():
        files = list_images(src, suffixes)
        if not files:
            raise CommandError(f"input folder {src} holds no {'images' if args.simulate else 'images or measurements'} ({', '.join(suffixes)})")
        if (out.exists() and not out.is_dir()) or (not out.exists() and out.suffix.lower() in IMAGE_SUFFIXES):
            raise CommandError(f"output {out} is a file name; with a folder --input, --output must be a folder")
        if out.exists() and _same_file(out, src):
            raise CommandError(f"output folder {out} is the input folder; choose another folder")
        figure_dir = None
        if args.figure not in (None, _FIGURE_AUTO):
            figure_dir = Path(args.figure)
            if figure_dir.exists() and not figure_dir.is_dir():
                raise CommandError(f"--figure {figure_dir}: with a folder --input it must be a folder")
        stems: dict[str, Path] = {}
        jobs = []
        for f in files:
            if f.stem in stems:
                raise CommandError(f"{stems[f.stem].name} and {f.name} in {src} would both be restored to {f.stem}.png; rename one")
            stems[f.stem] = f
            jobs.append(_make_job(f, out / f"{f.stem}.png", args, figure_dir))
        return jobs
    if src.suffix.lower() not in suffixes:
        if args.simulate and src.suffix == MEASUREMENT_SUFFIX:
            raise CommandError(f"--simulate needs a clean image, but {src} is a measurement file; drop --simulate to restore it")
        raise CommandError(f"input {src} is not an image or measurement file ({', '.join(suffixes)})")
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise CommandError(f"output {out} must be an image file ({', '.join(IMAGE_SUFFIXES)})" + (" or a folder for a folder --input" if not out.suffix else ""))
    return [_make_job(src, out, args, None)]


def _check_jobs(jobs: list[_Job], force: bool) -> None:
    inputs = [j.src for j in jobs]
    seen: set[Path] = set()
    existing = []
    for job in jobs:
        for path in job.outputs():
            if _is_input(path, inputs):
                raise CommandError(f"output {path} is the input file; choose another output path")
            if path.is_dir():
                raise CommandError(f"output {path} is a folder; choose another output path")
            key = path.resolve()
            if key in seen:
                raise CommandError(f"two outputs would be written to {path}; choose another --figure or --output")
            seen.add(key)
            if path.exists():
                existing.append(path)
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise CommandError(f"output {existing[0]} exists{more}; pass --force to overwrite")
    if len(jobs) == 1 and not jobs[0].src.is_dir():
        for path in jobs[0].outputs():
            if not path.parent.is_dir():
                raise CommandError(f"output folder {path.parent} does not exist; create it first")


# ---------------------------------------------------------------------- solve: geometry
@dataclass
class _Geometry:
    """What was done to the input file's size: for the message and for cropping back."""

    note: str = ""
    # (top, bottom, left, right) padding in input-file pixels, and the image/input scale
    pad: tuple[int, int, int, int] | None = None
    scale: tuple[int, int] = (1, 1)


def _parse_crop(text: str) -> tuple[int, int, int, int] | None:
    if text == "centre":
        return None
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4 or vals[0] < 0 or vals[1] < 0 or vals[2] < 1 or vals[3] < 1:
        raise CommandError(f"--crop {text!r}: give Y,X,H,W (top row, left column, height, width), or --crop alone for a centred crop")
    return vals  # type: ignore[return-value]


def _parse_resize(text: str) -> tuple[str, tuple[int, ...]]:
    try:
        vals = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        vals = ()
    if len(vals) == 1 and vals[0] >= 1:
        return "longest", vals
    if len(vals) == 2 and min(vals) >= 1:
        return "exact", vals
    raise CommandError(f"--resize {text!r}: give N (longest side in pixels) or H,W")


def _pad_symmetric(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    a = np.pad(x.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), mode="symmetric")
    return torch.from_numpy(np.ascontiguousarray(a))


def _resize(x: Tensor, h: int, w: int, clip: bool) -> Tensor:
    out = torch.nn.functional.interpolate(x.double(), size=(h, w), mode="bicubic", antialias=True, align_corners=False)
    return (out.clamp(0, 1) if clip else out).to(x.dtype)


def _candidates(n: int, grow: bool, multiple: int, count: int = 48) -> list[int]:
    out: list[int] = []
    v = n
    while len(out) < count and v >= 1 and v <= n + 65536:
        if v % multiple == 0:
            out.append(v)
        v += 1 if grow else -1
    return out


class _SizeRules:
    """Which input-file sizes (h, w) the operator and the prior accept, and the nearest ones that do."""

    def __init__(self, to_in_shape: Any, build: Any, prior_multiple: int, prior_label: str, scale: tuple[int, int]) -> None:
        self.to_in_shape = to_in_shape  # (h, w) -> (C, H, W), may raise ValueError
        self.build = build  # in_shape -> Operator, may raise ValueError
        self.multiple = prior_multiple
        self.prior_label = prior_label
        self.scale = scale
        self.built: dict[tuple[int, int], Operator] = {}

    def reason(self, h: int, w: int) -> str | None:
        """None if (h, w) works (the operator is kept), else why not."""
        if (h, w) in self.built:
            return None
        try:
            shape = self.to_in_shape(h, w)
        except ValueError as exc:
            return str(exc)
        _, hh, ww = shape
        m = self.multiple
        if m > 1 and (hh % m or ww % m):
            return f"{self.prior_label} needs image H and W divisible by {m}, got {hh}x{ww}"
        try:
            op = self.build(shape)
        except ValueError as exc:
            return str(exc)
        self.built[(h, w)] = op
        return None

    def nearest(self, h: int, w: int, grow: bool, budget: int = 400) -> tuple[int, int] | None:
        mh = self.multiple // math.gcd(self.multiple, self.scale[0])
        mw = self.multiple // math.gcd(self.multiple, self.scale[1])
        hs, ws = _candidates(h, grow, mh), _candidates(w, grow, mw)
        pairs = sorted(((a, b) for a in hs for b in ws), key=lambda ab: (abs(ab[0] * ab[1] - h * w), abs(ab[0] - h) + abs(ab[1] - w)))
        for a, b in pairs[:budget]:
            if self.reason(a, b) is None:
                return a, b
        return None

    def fixes(self, h: int, w: int, unit: str) -> str:
        """The --pad / --crop sizes that would work, as a sentence."""
        parts = []
        up = self.nearest(h, w, True)
        if up:
            parts.append(f"--pad (reflect to {up[0]}x{up[1]}{unit}, cropped back after)")
        down = self.nearest(h, w, False)
        if down:
            parts.append(f"--crop (centre {down[0]}x{down[1]}{unit})")
        parts.append("--resize H,W")
        return "fix the size with " + ", ".join(parts[:-1]) + f" or {parts[-1]}" if len(parts) > 1 else "resize it with --resize H,W"


def _apply_geometry(x: Tensor, rules: _SizeRules, args: argparse.Namespace, clip: bool, what: str, unit: str) -> tuple[Tensor, _Geometry, Operator]:
    """Resize / crop / pad the input-file tensor ``x`` (1, C, h, w) as asked; refuse a size that does not work."""
    geo = _Geometry(scale=rules.scale)
    notes = []
    h, w = x.shape[-2:]
    if args.pad and args.crop is not None:
        raise CommandError("--pad and --crop exclude each other; choose one")
    if args.resize is not None:
        kind, vals = _parse_resize(args.resize)
        if kind == "exact":
            th, tw = vals
        else:
            s = vals[0] / max(h, w)
            th, tw = max(1, round(h * s)), max(1, round(w * s))
            if rules.reason(th, tw) is not None and not args.pad and args.crop is None:
                near = [c for c in (rules.nearest(th, tw, False), rules.nearest(th, tw, True)) if c]
                if near:
                    th, tw = min(near, key=lambda c: abs(c[0] - th) + abs(c[1] - tw))
        x = _resize(x, th, tw, clip)
        notes.append(f"resized {h}x{w} -> {th}x{tw}{unit}")
        h, w = th, tw
    if args.crop is not None:
        region = _parse_crop(args.crop)
        if region is None:
            target = rules.nearest(h, w, False) if rules.reason(h, w) is not None else (h, w)
            if target is None:
                raise CommandError(f"{what}: no smaller size works ({rules.reason(h, w)}); use --pad or --resize")
            th, tw = target
            top, left = (h - th) // 2, (w - tw) // 2
        else:
            top, left, th, tw = region
            if top + th > h or left + tw > w:
                raise CommandError(f"--crop {args.crop}: the region exceeds the {h}x{w}{unit} {what}")
        if (th, tw) != (h, w):
            x = x[..., top : top + th, left : left + tw].contiguous()
            notes.append(f"cropped {h}x{w} -> {th}x{tw}{unit} at ({top}, {left})")
        h, w = th, tw
    if args.pad:
        if rules.reason(h, w) is not None:
            target = rules.nearest(h, w, True)
            if target is None:
                raise CommandError(f"{what}: no larger size works ({rules.reason(h, w)}); use --crop or --resize")
            th, tw = target
            top, left = (th - h) // 2, (tw - w) // 2
            geo.pad = (top, th - h - top, left, tw - w - left)
            x = _pad_symmetric(x, *geo.pad)
            notes.append(f"padded {h}x{w} -> {th}x{tw}{unit} (reflect; cropped back after)")
            h, w = th, tw
    why = rules.reason(h, w)
    if why is not None:
        done = f" ({'; '.join(notes)})" if notes else ""
        raise CommandError(f"{what} is {h}x{w}{unit}{done}: {why}; {rules.fixes(h, w, unit)}")
    geo.note = "; ".join(notes)
    return x, geo, rules.built[(h, w)]


def _crop_back(x: Tensor, geo: _Geometry) -> Tensor:
    if geo.pad is None:
        return x
    top, bottom, left, right = geo.pad
    sh, sw = geo.scale
    H, W = x.shape[-2:]
    return x[..., top * sh : H - bottom * sh, left * sw : W - right * sw]


def _prior_multiple(prior: Any) -> int:
    for obj in (prior, getattr(prior, "model", None), getattr(getattr(prior, "rgb", None), "model", None)):
        m = getattr(obj, "size_multiple", None)
        if isinstance(m, int) and m > 1:
            return m
    return 1


# ---------------------------------------------------------------------- solve: one image
@dataclass
class _Prepared:
    job: _Job
    op: Operator
    name: str
    y: Tensor  # (1, *out_shape), float32, CPU
    sigma_y: float
    bits: int
    geo: _Geometry
    clean: Tensor | None = None  # (1, C, H, W) original region (simulate)
    notes: list[str] = field(default_factory=list)


def _prepare(job: _Job, args: argparse.Namespace, registry: Registry, prior: Any, too_big: Any = None) -> _Prepared:
    """Read one input, fix its size as asked, build the operator and the measurement.

    ``too_big(channels, H, W)`` is called with the image size before any size fix is checked
    (unless --resize/--crop may shrink it), so an oversized photo is refused for its size first.
    """
    src = job.src
    prior_label = f"prior '{args.prior}'"
    multiple = _prior_multiple(prior)
    notes: list[str] = []
    if args.simulate:
        if args.operator is None:
            raise CommandError("--simulate needs --operator NAME (see `invkit plugins`)")
        name = args.operator
        cls = registry.operator_class(name)
        params = parse_params(cls.params, args.arg or [], owner=f"operator '{name}'")
        image = read_image(src)
        _check_finite(image.x, f"image {src}")
        c = image.x.shape[1]
        if too_big is not None and args.resize is None and args.crop is None:
            too_big(job.src.name, c, *image.x.shape[-2:])
        rules = _SizeRules(lambda h, w: (c, h, w), lambda s: cls(s, **params), multiple, prior_label, (1, 1))
        clean, geo, op = _apply_geometry(image.x, rules, args, True, f"image {src.name}", "")
        sigma = 0.0 if args.sigma_y is None else args.sigma_y
        if sigma == "auto":
            raise CommandError("--sigma-y auto estimates the noise of a measurement; with --simulate give the noise to add (e.g. --sigma-y 0.05)")
        _check_sigma(sigma)
        y = GaussianNoise(sigma).sample(op.forward(clean.double()), torch.Generator().manual_seed(args.seed)).float()
        prep = _Prepared(job, op, name, y, sigma, _output_bits(args.bits, image.bits, job.out), geo, clean=_crop_back(clean, geo), notes=notes)
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
    _check_finite(meas.y, f"measurement {src}")
    name = args.operator or meas.operator
    if name is None:
        raise CommandError("no operator given; pass --operator NAME (see `invkit plugins`)")
    if meas.operator is not None and args.operator is not None and args.operator != meas.operator:
        raise CommandError(f"measurement {src} was made by operator '{meas.operator}', not '{args.operator}'; drop --operator")
    cls = registry.operator_class(name)
    params = _operator_params(cls, name, args.arg, meas, src)
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
        y, geo = y0, _Geometry()
    else:
        c, h, w = y0.shape[1:]
        shape0 = cls.infer_in_shape((c, h, w), params)
        scale = (shape0[1] // h, shape0[2] // w) if shape0[1] % h == 0 and shape0[2] % w == 0 else (1, 1)
        if too_big is not None and args.resize is None and args.crop is None:
            too_big(src.name, *shape0)
        rules = _SizeRules(
            lambda hh, ww: cls.infer_in_shape((c, hh, ww), params),
            lambda s: cls(s, **params),
            multiple,
            prior_label,
            scale,
        )
        unit = " measurement pixels" if scale != (1, 1) else ""
        y, geo, op = _apply_geometry(y0, rules, args, from_image, f"measurement {src.name}", unit)
        if tuple(y.shape[1:]) != tuple(op.out_shape):
            raise CommandError(f"measurement {src} has shape {tuple(y.shape[1:])}, but operator '{name}' on images {op.in_shape} measures {op.out_shape}")

    # noise level
    if args.sigma_y == "auto":
        if not image_like:
            raise CommandError("--sigma-y auto needs an image measurement; give a number")
        from .metrics import estimate_noise_sigma

        sigma = max(estimate_noise_sigma(y), quantization_sigma(meas.bits) if meas.bits else 0.0)
        notes.append(f"sigma_y estimated from the image: {sigma:.4g}")
    elif args.sigma_y is not None:
        sigma = args.sigma_y
    elif meas.sigma_y is not None:
        sigma = meas.sigma_y
    elif meas.bits is not None:
        sigma = quantization_sigma(meas.bits)
        if image_like:
            from .metrics import estimate_noise_sigma

            est = estimate_noise_sigma(y)
            if est > max(4 * sigma, 0.01):
                notes.append(
                    f"note: {src.name} looks noisier than its {meas.bits}-bit quantisation (sigma_y {sigma:.2g} assumed, "
                    f"about {est:.2g} estimated); pass --sigma-y {est:.2g} or --sigma-y auto if it is noisy"
                )
    else:
        sigma = 0.0
    _check_sigma(sigma)
    return _Prepared(job, op, name, y.float(), float(sigma), _output_bits(args.bits, meas.bits, job.out), geo, notes=notes)


def _check_sigma(sigma: Any) -> None:
    if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise CommandError(f"--sigma-y must be a finite number >= 0 (or auto), got {sigma}")


def _measurement_view(prep: _Prepared) -> tuple[Tensor | None, str | None]:
    """The measurement as an image comparable with the restoration, and how it was made."""
    y = prep.y
    in_shape = tuple(prep.op.in_shape)
    if y.dim() == 4 and tuple(y.shape[1:]) == in_shape:
        return _crop_back(y, prep.geo), "measurement"
    pinv = getattr(prep.op, "pinv", None)
    if pinv is None:
        return None, None
    with torch.no_grad():
        x = pinv(y.double()).float()
    return _crop_back(x, prep.geo), "pseudo_inverse"


class _Timer:
    """Wall time of one prior evaluation at a small size, to extrapolate the cost of large images."""

    def __init__(self, prior: Any, device: torch.device, multiple: int) -> None:
        self.prior, self.device = prior, device
        self.side = max(128 // max(multiple, 1) * max(multiple, 1), multiple)
        self.cache: dict[int, float | None] = {}

    def seconds_per_pixel(self, channels: int) -> float | None:
        if channels not in self.cache:
            try:
                g = torch.Generator().manual_seed(0)
                x = (0.5 + 0.1 * torch.randn(1, channels, self.side, self.side, generator=g)).to(self.device)
                self.prior.denoise(x, 0.2)  # warm-up (lazy set-up, allocator)
                _sync(self.device)
                t0 = time.perf_counter()
                self.prior.denoise(x, 0.2)
                _sync(self.device)
                self.cache[channels] = (time.perf_counter() - t0) / (self.side * self.side)
            except Exception:  # noqa: BLE001 - an estimate must never break a run
                self.cache[channels] = None
        return self.cache[channels]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _cost_text(per_eval: float, steps: int, samples: int, batch: int) -> str:
    chunks = math.ceil(samples / batch)
    total = per_eval * min(batch, samples) * steps * chunks
    what = f"{steps} steps" + (f" x {samples} samples" if samples > 1 else "")
    return f"about {format_duration(per_eval)} per prior evaluation, {format_duration(total)} for {what}"


def _check_cost(prep: _Prepared, args: argparse.Namespace, timer: _Timer, say_note: Any) -> None:
    """Refuse images over --max-megapixels (with the estimate and a --resize that fits); announce large ones."""
    _cost_or_refuse(prep.job.src.name, *prep.op.in_shape, args=args, timer=timer, say_note=say_note)


def _cost_or_refuse(name: str, c: int, H: int, W: int, *, args: argparse.Namespace, timer: _Timer, say_note: Any = None) -> None:
    pixels = H * W
    limit = args.max_megapixels * 1e6
    steps = args.steps or ASSUMED_STEPS
    if pixels <= ESTIMATE_PIXELS and pixels <= limit:
        return
    spp = timer.seconds_per_pixel(c)
    per_eval = spp * pixels if spp is not None else None
    estimate = f"{_cost_text(per_eval, steps, args.samples, args.batch)} on {timer.device.type}, extrapolated from a {timer.side}x{timer.side} timing" if per_eval else "no estimate (the prior failed on a small test image)"
    if pixels > limit:
        side = max(H, W) * math.sqrt(limit / pixels)
        m = max(_prior_multiple(timer.prior), 1)
        n = max(m, int(side // m * m))
        small = pixels * (n / max(H, W)) ** 2
        small_cost = f", {_cost_text(spp * small, steps, args.samples, args.batch)}" if spp else ""
        raise CommandError(
            f"{name} is {W}x{H} pixels ({pixels / 1e6:.3g} MP), over --max-megapixels {args.max_megapixels:g}: {estimate}; "
            f"pass --resize {n} (longest side, {small / 1e6:.3g} MP{small_cost}), crop a region with --crop Y,X,H,W, "
            f"or --max-megapixels {math.ceil(pixels / 1e6 * 10) / 10:g} to run it anyway"
        )
    if say_note is not None:
        say_note(f"{name}: {W}x{H} pixels ({pixels / 1e6:.3g} MP): {estimate}")


def _std_map(samples: Tensor) -> Tensor:
    """(N, C, H, W) -> (1, 1, H, W): per-pixel std across samples, root mean square over channels."""
    var = samples.double().var(dim=0, correction=1)  # (C, H, W)
    return var.mean(dim=0, keepdim=True).sqrt()[None]


def _finite_or_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _solve_one(prep: _Prepared, args: argparse.Namespace, solver: Any, prior: Any, device: torch.device, index: str, say_note: Any) -> dict[str, Any]:
    job = prep.job
    n, batch = args.samples, min(args.batch, args.samples)
    chunks = math.ceil(n / batch)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    y = prep.y.to(device)
    started = time.perf_counter()
    state: dict[str, Any] = {"announced": False, "steps": None}
    quiet = args.quiet
    tty = is_terminal(sys.stderr)
    bar = ProgressBar(f"{index}{job.src.name}", enabled=not quiet)
    outs = []
    try:
        for k in range(chunks):
            b = min(batch, n - k * batch)
            problem = Problem(prep.op, y.expand(b, *y.shape[1:]).contiguous(), GaussianNoise(prep.sigma_y))

            def callback(step: Step, k: int = k) -> None:
                if state["steps"] is None:
                    state["steps"] = step.total
                    bar.set_total(step.total * chunks)
                which = f"{k * batch + 1}" if b == 1 else f"{k * batch + 1}-{k * batch + b}"
                bar.update(1, note=f"sample {which}/{n}" if n > 1 else None)
                if not state["announced"] and not quiet and not tty:
                    state["announced"] = True
                    elapsed = time.perf_counter() - started
                    projected = elapsed * step.total * chunks
                    if projected > ANNOUNCE_SECONDS:
                        say_note(f"{job.src.name}: first step took {format_duration(elapsed)}; projected {format_duration(projected)} for this image")

            result = solver.solve(problem, prior, steps=args.steps, generator=generator, callback=callback)
            outs.append(result.x.detach().to("cpu", torch.float32))
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    samples = torch.cat(outs)
    samples = _crop_back(samples, prep.geo)
    mean = samples.mean(dim=0, keepdim=True)
    std = _std_map(samples) if n > 1 else None

    files: dict[str, Any] = {"restored": str(job.out), "std": None, "samples": [], "figure": None}
    write_image(job.out, mean, bits=prep.bits)
    std_max = std_mean = None
    if std is not None and job.std is not None:
        std_max, std_mean = float(std.max()), float(std.mean())
        write_image(job.std, std / std_max if std_max > 0 else std, bits=8)
        files["std"] = str(job.std)
        for i, path in enumerate(job.samples):
            write_image(path, samples[i : i + 1], bits=prep.bits)
        files["samples"] = [str(p) for p in job.samples]

    view, view_kind = _measurement_view(prep) if (prep.clean is not None or job.figure is not None) else (None, None)
    record: dict[str, Any] = {k: None for k in JSON_KEYS}
    record.update(
        image=str(job.src),
        output=str(job.out),
        mode="simulate" if args.simulate else "measurement",
        operator=prep.name,
        operator_params=dict(prep.op.config),
        solver=args.solver,
        prior=args.prior,
        shape=list(mean.shape[1:]),
        sigma_y=prep.sigma_y,
        steps=state["steps"],
        samples=n,
        seed=args.seed,
        device=str(device),
        seconds=round(seconds, 3),
        std_mean=std_mean,
        std_max=std_max,
        files=files,
    )
    if prep.clean is not None:
        from .metrics import lpips, psnr, ssim

        clean = prep.clean
        record["psnr_restored"] = _finite_or_none(psnr(mean, clean))
        record["ssim_restored"] = _finite_or_none(ssim(mean, clean))
        record["lpips_restored"] = _finite_or_none(lpips(mean, clean))
        if view is not None and tuple(view.shape) == tuple(clean.shape):
            record["psnr_measurement"] = _finite_or_none(psnr(view, clean))
            record["ssim_measurement"] = _finite_or_none(ssim(view, clean))
            record["lpips_measurement"] = _finite_or_none(lpips(view, clean))
            record["measurement_metrics_from"] = view_kind
    if job.figure is not None:
        panels: list[tuple[str, Tensor]] = []
        if prep.clean is not None:
            panels.append(("clean", prep.clean))
        if view is not None:
            panels.append(("measurement" if view_kind == "measurement" else "measurement (H+ y)", view))
        panels.append(("restoration" if n == 1 else f"posterior mean (N={n})", mean))
        if std is not None:
            panels.append((f"std (white = {std_max:.3g})", std / std_max if std_max else std))
        write_figure(job.figure, panels)
        files["figure"] = str(job.figure)
    return record


def _metrics_table(records: list[dict[str, Any]]) -> str:
    show_lpips = any(r["lpips_restored"] is not None for r in records)
    cols = [("PSNR meas.", "psnr_measurement", "{:.2f}"), ("PSNR rest.", "psnr_restored", "{:.2f}"),
            ("SSIM meas.", "ssim_measurement", "{:.4f}"), ("SSIM rest.", "ssim_restored", "{:.4f}")]
    if show_lpips:
        cols += [("LPIPS meas.", "lpips_measurement", "{:.4f}"), ("LPIPS rest.", "lpips_restored", "{:.4f}")]
    names = [Path(r["image"]).name for r in records]
    rows = []
    for name, r in zip(names, records):
        star = "*" if r["measurement_metrics_from"] == "pseudo_inverse" else ""
        cells = []
        for _, key, fmt in cols:
            v = r[key]
            cell = "-" if v is None else fmt.format(v)
            cells.append(cell + (star if key.endswith("_measurement") and v is not None else ""))
        rows.append([name, *cells])
    if len(records) > 1:
        cells = []
        for _, key, fmt in cols:
            vals = [r[key] for r in records if r[key] is not None]
            cells.append(fmt.format(sum(vals) / len(vals)) if vals and len(vals) == len(records) else "-")
        rows.append(["mean", *cells])
    header = ["image", *(c[0] for c in cols)]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(widths[0]) if i == 0 else str(v).rjust(widths[i]) for i, v in enumerate(row)) for row in [header, *rows]]
    if any(r["measurement_metrics_from"] == "pseudo_inverse" for r in records):
        lines.append("* measurement scored through its pseudo-inverse H+ y (it is not an image of the clean image's shape)")
    return "\n".join(lines)


def _run_solve(args: argparse.Namespace, registry: Registry) -> int:
    out_stream = sys.stderr if args.json else sys.stdout

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=out_stream, flush=True)

    def note(message: str) -> None:
        if not args.quiet:
            print(f"invkit: {message}", file=sys.stderr, flush=True)

    # 1. cheap checks: numbers, names, paths, outputs
    for flag, value in (("--samples", args.samples), ("--batch", args.batch)):
        if value < 1:
            raise CommandError(f"{flag} must be >= 1, got {value}")
    if args.steps is not None and args.steps < 1:
        raise CommandError(f"--steps must be >= 1, got {args.steps}")
    if not (args.max_megapixels > 0):
        raise CommandError(f"--max-megapixels must be > 0, got {args.max_megapixels}")
    if isinstance(args.sigma_y, float):
        _check_sigma(args.sigma_y)
    if args.crop is not None:
        _parse_crop(args.crop)
    if args.resize is not None:
        _parse_resize(args.resize)
    if args.pad and args.crop is not None:
        raise CommandError("--pad and --crop exclude each other; choose one")
    registry.get("solver", args.solver)
    if args.operator is not None:
        registry.operator_class(args.operator)
    _check_prior_name(registry, args.prior)
    device = _resolve_device(args.device)
    jobs = _plan_jobs(args)
    _check_jobs(jobs, args.force)

    # 2. the prior and solver, then every input checked before any work
    solver = registry.build("solver", args.solver, args.solver_arg)
    prior = build_prior(registry, args.prior, args.prior_arg, device=str(device))
    timer = _Timer(prior, device, _prior_multiple(prior))
    folder = args.input.is_dir()
    first: _Prepared | None = None
    def too_big(name: str, c: int, h: int, w: int) -> None:
        if h * w > args.max_megapixels * 1e6:
            _cost_or_refuse(name, c, h, w, args=args, timer=timer)

    for job in jobs:
        prep = _prepare(job, args, registry, prior, too_big)
        _check_channels(prior, prep)
        _check_cost(prep, args, timer, note)
        if not folder:
            first = prep
    if folder:
        args.output.mkdir(parents=True, exist_ok=True)
        if args.figure not in (None, _FIGURE_AUTO):
            Path(args.figure).mkdir(parents=True, exist_ok=True)

    # 3. solve
    records = []
    for i, job in enumerate(jobs):
        prep = first if first is not None else _prepare(job, args, registry, prior)
        for message in prep.notes:
            note(message)
        if prep.geo.note:
            note(f"{job.src.name}: {prep.geo.note}")
        index = f"[{i + 1}/{len(jobs)}] " if len(jobs) > 1 else ""
        record = _solve_one(prep, args, solver, prior, device, index, note)
        records.append(record)
        if args.json:
            print(json.dumps(record, allow_nan=False), flush=True)
        steps = record["steps"]
        what = "solver default steps" if steps is None else f"{steps} step{'s' if steps != 1 else ''}"
        if args.samples > 1:
            what += f" x {args.samples} samples (mean, std map and samples written)"
        say(
            f"wrote {job.out}: {args.solver} with prior {args.prior}, operator {prep.name} on {prep.op.in_shape}, "
            f"sigma_y={prep.sigma_y:.4g}, {what}, {record['seconds']:.1f} s"
            + (f"; figure {job.figure}" if job.figure is not None else "")
        )
    if args.simulate and not args.json and not args.quiet:
        print(_metrics_table(records))
    return 0


def _check_channels(prior: Any, prep: _Prepared) -> None:
    want = getattr(prior, "channels", None)
    have = prep.op.in_shape[0]
    if isinstance(want, int) and want != have:
        raise CommandError(f"prior models {want}-channel images but {prep.job.src.name} restores to {have} channel(s); use a prior for {have}-channel images")


def add_core_commands(sub: Any, registry: Registry) -> None:
    """Add ``degrade`` and ``solve`` to the ``invkit`` subcommand parser."""
    p = sub.add_parser("degrade", help="make a measurement y = H x + noise from a clean image")
    _setup_degrade(p)
    p.set_defaults(handler=lambda a: _run_degrade(a, registry))
    p = sub.add_parser(
        "solve",
        help="restore images from measurements (or simulate and score with --simulate)",
        description=SOLVE_DESCRIPTION,
        epilog=SOLVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _setup_solve(p)
    p.set_defaults(handler=lambda a: _run_solve(a, registry))
