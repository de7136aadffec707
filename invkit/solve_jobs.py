"""Planning a ``solve`` run: every input file (one, or each image in a folder) with every output
it produces, all checked (not an input, not clobbered without ``--force``, no two the same)
before any work starts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from .cli_common import CommandError, is_input, same_file
from .io import IMAGE_SUFFIXES, MEASUREMENT_SUFFIX, list_images
from .solve_options import FIGURE_AUTO


@dataclass
class Job:
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


def _make_job(src: Path, out: Path, args: argparse.Namespace, figure_dir: Path | None) -> Job:
    job = Job(src=src, out=out)
    n = args.samples
    if n > 1:
        job.std = _derived(out, "std")
        width = len(str(n))
        job.samples = [_derived(out, f"sample{i:0{width}d}") for i in range(1, n + 1)]
    if args.figure is not None or args.simulate:
        if args.figure in (None, FIGURE_AUTO):
            job.figure = _derived(out, "figure", ".png")
        elif figure_dir is not None:
            job.figure = figure_dir / f"{out.stem}_figure.png"
        else:
            job.figure = Path(args.figure)
    return job


def plan_jobs(args: argparse.Namespace) -> list[Job]:
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
        if out.exists() and same_file(out, src):
            raise CommandError(f"output folder {out} is the input folder; choose another folder")
        figure_dir = None
        if args.figure not in (None, FIGURE_AUTO):
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


def check_jobs(jobs: list[Job], force: bool) -> None:
    inputs = [j.src for j in jobs]
    seen: set[Path] = set()
    existing = []
    for job in jobs:
        for path in job.outputs():
            if is_input(path, inputs):
                raise CommandError(f"output {path} is the input file; choose another output path")
            if path.is_dir():
                raise CommandError(f"output {path} is a folder; choose another output path")
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                what = "--figure" if path == job.figure else "output"
                raise CommandError(f"{what} {path} must be an image file ({', '.join(IMAGE_SUFFIXES)})")
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
