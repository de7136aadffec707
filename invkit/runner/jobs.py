"""Planning a run: every input file (one, or each image in a folder) with every output it
produces, all checked (not an input, not clobbered without ``force``, no two the same) before
any work starts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..io import IMAGE_SUFFIXES, MEASUREMENT_SUFFIX, READ_SUFFIXES, VIEW_SUFFIX, list_images
from .errors import RestoreError
from .files import refuse_input, same_file
from .options import RestoreOptions

__all__ = ["Job", "plan_jobs", "check_jobs", "input_suffixes", "output_folder", "skipped_in_folder", "is_measurement_view"]


@dataclass
class Job:
    """One input file and every output it produces.

    Attributes:
        src: The input file.
        out: The restoration (the posterior mean when there are several samples).
        std: The per-pixel std map (several samples only).
        samples: One file per sample (several samples only).
        figure: The side-by-side picture, if one is written.
    """

    src: Path
    out: Path
    std: Path | None = None
    samples: list[Path] = field(default_factory=list)
    figure: Path | None = None

    def outputs(self) -> list[Path]:
        """Every file this job writes."""
        return [p for p in (self.out, self.std, *self.samples, self.figure) if p is not None]


def _derived(out: Path, tag: str, suffix: str | None = None) -> Path:
    return out.with_name(f"{out.stem}_{tag}{suffix if suffix is not None else out.suffix}")


def _make_job(src: Path, out: Path, opts: RestoreOptions, figure_dir: Path | None) -> Job:
    job = Job(src=src, out=out)
    n = opts.samples
    if n > 1:
        job.std = _derived(out, "std")
        width = len(str(n))
        job.samples = [_derived(out, f"sample{i:0{width}d}") for i in range(1, n + 1)]
    if opts.figure is not None or opts.simulate:
        if opts.figure is None or opts.figure is True:
            job.figure = _derived(out, "figure", ".png")
        elif figure_dir is not None:
            job.figure = figure_dir / f"{out.stem}_figure.png"
        else:
            job.figure = Path(opts.figure)
    return job


def input_suffixes(simulate: bool) -> tuple[str, ...]:
    """The suffixes of files a run reads as inputs: images (:data:`~invkit.io.READ_SUFFIXES`),
    and ``.safetensors`` measurements unless simulating (which needs clean images)."""
    return READ_SUFFIXES if simulate else (*READ_SUFFIXES, MEASUREMENT_SUFFIX)


def skipped_in_folder(folder: Path, simulate: bool) -> list[Path]:
    """The visible files of an input folder a run does not read (other suffixes, and the views
    ``degrade`` writes beside measurements: :func:`is_measurement_view`), to be named to the user."""
    read = {p for p in list_images(folder, input_suffixes(simulate)) if not is_measurement_view(p, simulate)}
    return [p for p in list_images(folder, None) if p not in read]


def is_measurement_view(path: Path, simulate: bool) -> bool:
    """Whether ``path`` is ``<stem>_view.png`` beside a ``<stem>.safetensors`` measurement (the image
    ``invkit degrade`` writes of a mask measurement): in a folder run the measurement is restored,
    not its view a second time. A simulation reads no measurements, so it reads views as images."""
    if simulate or not path.name.endswith(VIEW_SUFFIX):
        return False
    return path.with_name(path.name[: -len(VIEW_SUFFIX)] + MEASUREMENT_SUFFIX).is_file()


def plan_jobs(opts: RestoreOptions) -> list[Job]:
    """The jobs of a run: one for a file input, one per image for a folder input.

    Raises:
        RestoreError: A missing input, an input of the wrong kind, or an output that does not
            fit the input (a file for a folder, two inputs restored to one name).
    """
    src, out = opts.input, opts.output
    if not src.exists():
        raise RestoreError(f"input {src} does not exist")
    suffixes = input_suffixes(opts.simulate)
    if src.is_dir():
        files = [f for f in list_images(src, suffixes) if not is_measurement_view(f, opts.simulate)]
        if not files:
            raise RestoreError(f"input folder {src} holds no {'images' if opts.simulate else 'images or measurements'} ({', '.join(suffixes)})")
        if (out.exists() and not out.is_dir()) or (not out.exists() and out.suffix.lower() in IMAGE_SUFFIXES):
            raise RestoreError(f"output {out} is a file name; with a folder --input, --output must be a folder")
        if out.exists() and same_file(out, src):
            raise RestoreError(f"output folder {out} is the input folder; choose another folder")
        figure_dir = None
        if isinstance(opts.figure, Path):
            figure_dir = opts.figure
            if figure_dir.exists() and not figure_dir.is_dir():
                raise RestoreError(f"--figure {figure_dir}: with a folder --input it must be a folder")
        stems: dict[str, Path] = {}
        jobs = []
        for f in files:
            if f.stem in stems:
                raise RestoreError(f"{stems[f.stem].name} and {f.name} in {src} would both be restored to {f.stem}.png; rename one")
            stems[f.stem] = f
            jobs.append(_make_job(f, out / f"{f.stem}.png", opts, figure_dir))
        return jobs
    if src.suffix.lower() not in suffixes:
        if opts.simulate and src.suffix == MEASUREMENT_SUFFIX:
            raise RestoreError(f"--simulate needs a clean image, but {src} is a measurement file; drop --simulate to restore it")
        raise RestoreError(f"input {src} is not an image or measurement file ({', '.join(suffixes)})")
    if output_folder(opts) is not None:
        return [_make_job(src, out / f"{src.stem}.png", opts, None)]
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise RestoreError(f"output {out} must be an image file ({', '.join(IMAGE_SUFFIXES)}) or a folder")
    return [_make_job(src, out, opts, None)]


def output_folder(opts: RestoreOptions) -> Path | None:
    """The folder ``--output`` names, created if needed, or None when it names a file.

    It is a folder for a folder ``--input``, and for one input file when it is an existing
    folder or a name without a suffix (``--output restored/``): that input is then restored to
    ``<folder>/<input name>.png``.
    """
    out = opts.output
    return out if opts.input.is_dir() or out.is_dir() or not out.suffix else None


def check_jobs(jobs: list[Job], force: bool, other_inputs: Sequence[Path] = (), creates: Path | None = None) -> None:
    """Refuse outputs that are inputs, folders, not images, written twice, or exist (unless ``force``).

    Args:
        jobs: The run's inputs and outputs.
        force: Whether existing outputs may be overwritten.
        other_inputs: Further files the run reads (an operator's ``mask_file``, ``kernel_file``:
            :func:`~invkit.runner.files.file_arguments`); no output may be one of them.
        creates: The output folder the run creates (:func:`~invkit.runner.jobs.output_folder`); every other
            output's folder must exist.

    Raises:
        RestoreError: The first problem found, naming the file.
    """
    sources, others = [j.src for j in jobs], list(other_inputs)
    seen: set[Path] = set()
    existing = []
    for job in jobs:
        for path in job.outputs():
            refuse_input(path, sources, others)
            if path.is_dir():
                raise RestoreError(f"output {path} is a folder; choose another output path")
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                what = "--figure" if path == job.figure else "output"
                raise RestoreError(f"{what} {path} must be an image file ({', '.join(IMAGE_SUFFIXES)})")
            key = path.resolve()
            if key in seen:
                raise RestoreError(f"two outputs would be written to {path}; choose another --figure or --output")
            seen.add(key)
            if path.exists():
                existing.append(path)
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise RestoreError(f"output {existing[0]} exists{more}; pass --force to overwrite")
    if len(jobs) == 1 and not jobs[0].src.is_dir():
        for path in jobs[0].outputs():
            if not path.parent.is_dir() and path.parent != creates:
                raise RestoreError(f"output folder {path.parent} does not exist; create it first")
