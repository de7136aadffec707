"""The ``invkit solve`` command: argparse options -> :class:`~invkit.runner.RestoreOptions` ->
:func:`invkit.runner.restore`, with a progress bar, notes, a summary line per image, ``--json``
records and the metrics table.

The restore loop and its policies (σ_y, sizes, cost, seeding, outputs, metrics) are the runner's
(:mod:`invkit.runner`); the help text is :mod:`invkit.cli.solve_help`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..noise import NOISE_MODELS, describe_noise
from ..registry import Registry
from ..tiled import DEFAULT_OVERLAP, DEFAULT_TILE
from ..runner import (
    DEFAULT_MAX_MEGAPIXELS,
    DEFAULT_MAX_MINUTES,
    SELECT_CHOICES,
    TILE_AUTO_PIXELS,
    TILE_CHOICES,
    Prepared,
    RestoreOptions,
    metrics_table,
    parse_crop,
    parse_resize,
    parse_size,
    restore,
)
from .progress import SolveProgress
from .solve_help import SOLVE_DESCRIPTION, SOLVE_EPILOG

__all__ = ["add_solve_command", "setup_solve", "run_solve", "to_options"]


def _steps_help(registry: Registry) -> str:
    """``--steps`` help with each registered solver's default, read from the solvers (cannot drift)."""
    defaults: dict[str, list[str]] = {}
    try:
        for entry in registry.entries("solver"):
            steps = getattr(entry.factory, "default_steps", None)
            if isinstance(steps, int):
                defaults.setdefault(str(steps), []).append(entry.name)
    except Exception:  # a broken plugin is reported by the command itself, not by --help
        defaults = {}
    listed = "; ".join(f"{', '.join(names)} {steps}" for steps, names in defaults.items())
    return (
        "steps per sample: one prior evaluation each for most solvers (solver default if omitted"
        + (f": {listed}" if listed else "")
        + "); dps and pigdm differentiate through the prior (about 3 evaluations' cost a step), ddnm_plus's time travel "
        "walks levels again, hio counts its iterations (default 500)"
    )


def add_solve_command(sub: Any, registry: Registry) -> None:
    """Add ``solve`` to the ``invkit`` subcommand parser ``sub``."""
    p = sub.add_parser(
        "solve",
        help="restore images from measurements (or simulate and score with --simulate)",
        description=SOLVE_DESCRIPTION,
        epilog=SOLVE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    setup_solve(p, registry)
    p.set_defaults(handler=lambda a: run_solve(a, registry))


def _sigma_arg(text: str) -> float | str:
    """``--sigma-y`` text: a number, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'auto'") from None
    return value


def setup_solve(p: argparse.ArgumentParser, registry: Registry | None = None) -> None:
    """Add ``solve``'s options to ``p`` (``registry``: whose solvers' default steps ``--steps`` lists)."""
    g = p.add_argument_group("what to run")
    g.add_argument("--solver", default="ddrm", help="solver name (default ddrm; see `invkit plugins`)")
    g.add_argument("--solver-arg", action="append", default=[], metavar="K=V", help="solver parameter (repeatable), e.g. eta=0.85")
    g.add_argument("--operator", default=None, help="operator name (read from a .safetensors measurement if omitted)")
    g.add_argument("--arg", action="append", default=None, metavar="K=V", help="operator parameter (repeatable), e.g. sigma=2.0")
    g.add_argument("--prior", default="default", metavar="NAME|PATH", help="prior name or checkpoint file/diffusers folder (default: the built-in 'default' prior)")
    g.add_argument("--prior-arg", action="append", default=[], metavar="K=V", help="prior parameter (repeatable), e.g. arch=adm, class_label=N")

    g = p.add_argument_group("input and output")
    g.add_argument("--input", required=True, type=Path, help="measurement (or clean image with --simulate): an image file, a .safetensors measurement, or a folder")
    g.add_argument("--output", required=True, type=Path, help="restored image file (PNG/TIFF/JPEG), or a folder (created if needed; one for a folder --input)")
    g.add_argument("--simulate", action="store_true", help="--input is a clean image: degrade it first, then report metrics against it")
    g.add_argument("--figure", nargs="?", const=True, default=None, metavar="PATH", help="write the side-by-side picture (always written with --simulate); PATH names it, and its suffix picks the format (.png, .jpg, .tif, .bmp)")
    g.add_argument("--size", default=None, metavar="C,H,W", help="image shape, when the measurement does not determine it")
    g.add_argument("--bits", type=int, choices=(8, 16), default=None, help="bits per sample of image outputs (default: 16 for 16-bit inputs written to PNG/TIFF, else 8)")
    g.add_argument("--force", action="store_true", help="overwrite existing outputs")
    g.add_argument("--skip-existing", action="store_true", help="skip inputs whose outputs all exist (resume an interrupted folder run)")
    g.add_argument("--keep-going", action="store_true", help="with a folder, restore the other images when one fails; list the failures at the end (exit 2)")

    g = p.add_argument_group("noise and sampling")
    g.add_argument("--noise", default=None, metavar="|".join(NOISE_MODELS),
                   help="measurement noise model (default: the one a .safetensors measurement recorded, else gaussian; see 'noise' below)")
    g.add_argument("--noise-arg", action="append", default=[], metavar="K=V", help="noise model parameter (repeatable), e.g. rate=255 for poisson")
    g.add_argument("--sigma-y", type=_sigma_arg, default=None, metavar="SIGMA|auto", help="Gaussian measurement noise std in [0, 1] units (see 'noise' below)")
    g.add_argument("--steps", type=int, default=None, help=_steps_help(registry) if registry is not None else "steps per sample (solver default if omitted)")
    g.add_argument("--seed", type=int, default=0, help="seed of every random draw (default 0); sample i uses its own generator seeded from (seed, i), see 'reproducibility' below")
    g.add_argument("--samples", type=int, default=1, metavar="N", help="posterior samples per image (default 1); N > 1 writes the mean (or see --select), a std map and the samples")
    g.add_argument("--select", default=None, metavar="|".join(SELECT_CHOICES),
                   help="with N > 1 samples, the restoration written: their mean, or the sample of smallest residual ||y - A(x)|| "
                        "(default: mean, or residual for an operator whose posterior mean is meaningless, e.g. phase retrieval)")
    g.add_argument("--batch", type=int, default=1, metavar="B", help="samples per solver call (default 1; larger is faster on a GPU and uses more memory)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available); the prior and the tensors run there")

    g = p.add_argument_group("image size")
    g.add_argument("--pad", action="store_true", help="reflect-pad to the nearest size that works; the result is cropped back")
    g.add_argument("--crop", nargs="?", const="centre", default=None, metavar="Y,X,H,W", help="crop to the largest centred size that works, or to the region Y,X,H,W")
    g.add_argument("--resize", default=None, metavar="N|H,W", help="resize first: N = longest side in pixels (adjusted to a size that works), or exactly H,W")
    g.add_argument("--max-megapixels", type=float, default=DEFAULT_MAX_MEGAPIXELS, metavar="MP", help=f"refuse larger images up front, with an estimate and the options that work (default {DEFAULT_MAX_MEGAPIXELS:g})")
    g.add_argument("--max-minutes", type=float, default=DEFAULT_MAX_MINUTES, metavar="MIN", help=f"refuse an image over 0.26 MP whose estimated solve (its low end, prior evaluations) is longer, up front, with the options that fit (default {DEFAULT_MAX_MINUTES:g})")

    g.add_argument("--tile", default="auto", choices=TILE_CHOICES,
                   help=f"evaluate the prior on overlapping tiles (its cost linear in pixels; each step still sees the whole image): "
                        f"on, off, or auto (default: above {TILE_AUTO_PIXELS / 1e6:.2g} MP)")
    g.add_argument("--tile-size", type=int, default=DEFAULT_TILE, metavar="N", help=f"tile side in pixels (default {DEFAULT_TILE})")
    g.add_argument("--tile-overlap", type=int, default=DEFAULT_OVERLAP, metavar="N", help=f"overlap of neighbouring tiles in pixels (default {DEFAULT_OVERLAP})")

    g = p.add_argument_group("reporting")
    g.add_argument("--json", action="store_true", help="one JSON object per image on stdout (keys below)")
    g.add_argument("--quiet", action="store_true", help="no progress bar, notes or summary lines (errors and --json still print)")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")


def to_options(args: argparse.Namespace) -> RestoreOptions:
    """The runner's options for parsed ``solve`` arguments.

    Raises:
        RestoreError: ``--crop``, ``--resize`` or ``--size`` text that does not parse.
    """
    same = ("input", "output", "operator", "solver", "prior", "simulate", "figure", "bits", "force", "sigma_y", "noise", "select", "steps", "seed", "samples", "batch", "device", "pad", "max_megapixels", "max_minutes", "skip_existing", "keep_going", "tile", "tile_size", "tile_overlap")
    return RestoreOptions(
        **{name: getattr(args, name) for name in same},
        operator_args=args.arg,
        solver_args=args.solver_arg,
        prior_args=args.prior_arg,
        noise_args=args.noise_arg,
        size=parse_size(args.size) if args.size is not None else None,
        crop=parse_crop(args.crop) if args.crop is not None else None,
        resize=parse_resize(args.resize) if args.resize is not None else None,
    )


def run_solve(args: argparse.Namespace, registry: Registry) -> int:
    """Run ``invkit solve``; returns the exit status."""
    out_stream = sys.stderr if args.json else sys.stdout

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=out_stream, flush=True)

    def note(message: str) -> None:
        if not args.quiet:
            print(f"invkit: {message}", file=sys.stderr, flush=True)

    def done(record: dict[str, Any], prep: Prepared) -> None:
        if args.json:
            print(json.dumps(record, allow_nan=False), flush=True)
        steps = record["steps"]
        what = "solver default steps" if steps is None else f"{steps} step{'s' if steps != 1 else ''}"
        if args.samples > 1:
            chosen = record["selected_sample"]
            restored = "mean, " if chosen is None else f"least residual: sample {chosen}; "
            what += f" x {args.samples} samples ({restored}std map and samples written)"
        say(
            f"wrote {prep.job.out}: {args.solver} with prior {args.prior}, operator {prep.name} on {prep.op.in_shape}, "
            f"{describe_noise(prep.noise)}, {what}, {record['seconds']:.1f} s"
            + (f"; figure {prep.job.figure}" if prep.job.figure is not None else "")
        )

    opts = to_options(args)
    progress = SolveProgress(args.quiet, note)
    try:
        records = restore(opts, registry=registry, on_progress=progress, on_note=note, on_record=done)
    finally:
        progress.close()
    if args.simulate and not args.json and not args.quiet:
        print(metrics_table(records))
    return 0
