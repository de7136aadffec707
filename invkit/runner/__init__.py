"""The restore loop as a library: typed options in, restored files and records out.

:func:`restore` runs one :class:`RestoreOptions` (a measurement file, a clean image with
``simulate=True``, or a folder of them): it checks every option, input and output before any
work, then draws the posterior samples of each image (sample ``i`` from its own generator,
seeded from ``(seed, i)``), writes the restoration, std map, samples and figure, and scores it
against the clean image when simulating. ``invkit solve`` is this function behind argparse; the
default-prior benchmark (``benchmarks/default_prior.py``) computes each DDRM case with the same
pieces (:func:`~invkit.runner.inputs.simulate_measurement`,
:func:`~invkit.runner.sampling.posterior_samples`, :func:`~invkit.runner.report.score`).
:func:`degrade` (``invkit degrade``) writes the measurement of a clean image
(:class:`DegradeOptions`).

Progress goes to ``on_progress`` (:class:`ProgressEvent`), messages to ``on_note``; nothing is
printed. The runner imports no command-line module (an import-linter contract).

Modules: :mod:`~invkit.runner.options`, :mod:`~invkit.runner.restore` (the loop),
:mod:`~invkit.runner.degrade` (a measurement from a clean image),
:mod:`~invkit.runner.jobs` (inputs and their outputs), :mod:`~invkit.runner.inputs` (one input
read and made into an operator and a measurement), :mod:`~invkit.runner.noise_level` (the noise
model and the σ_y policy), :mod:`~invkit.runner.sizing` (pad/crop/resize), :mod:`~invkit.runner.cost`,
:mod:`~invkit.runner.sampling`, :mod:`~invkit.runner.outputs`, :mod:`~invkit.runner.report`,
:mod:`~invkit.runner.progress`, :mod:`~invkit.runner.priors`, :mod:`~invkit.runner.devices`,
:mod:`~invkit.runner.files`, :mod:`~invkit.runner.errors`.

Example (simulate: blur and add noise to a small image, restore it, score it):
    >>> import tempfile, torch
    >>> from pathlib import Path
    >>> from invkit.io import write_image
    >>> from invkit.runner import RestoreOptions, restore
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = write_image(folder / "clean.png", torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)), bits=8)
    >>> opts = RestoreOptions(folder / "clean.png", folder / "restored.png", simulate=True, operator="gaussian_blur",
    ...                       operator_args=["sigma=1.0"], sigma_y=0.05, prior="gaussian", steps=5, samples=2, device="cpu")
    >>> [record] = restore(opts)
    >>> sorted(p.name for p in folder.iterdir())
    ['clean.png', 'restored.png', 'restored_figure.png', 'restored_sample1.png', 'restored_sample2.png', 'restored_std.png']
    >>> record["mode"], record["steps"], record["samples"], record["psnr_restored"] > 0
    ('simulate', 5, 2, True)
    >>> import shutil; shutil.rmtree(folder)
"""

from __future__ import annotations

from .cost import ANNOUNCE_SECONDS, Estimate, Timer, cost_or_refuse, projection_note
from .degrade import Degraded, DegradeOptions, degrade
from .devices import resolve_device
from .errors import RestoreError
from .files import check_output, output_bits
from .inputs import Prepared, check_finite, measurement_view, prepare, simulate_measurement
from .jobs import Job, check_jobs, plan_jobs
from .options import DEFAULT_MAX_MEGAPIXELS, DEFAULT_MAX_MINUTES, SELECT_CHOICES, TILE_AUTO_PIXELS, TILE_CHOICES, RestoreOptions, check_values
from .priors import CHECKPOINT_SUFFIXES, build_prior, check_prior_name
from .progress import ProgressCallback, ProgressEvent, format_duration, is_terminal, terminal_size
from .report import JSON_KEYS, metrics_table, oracle_best, score
from .restore import check_options, restore, restore_prepared
from .sampling import Samples, default_select, posterior_samples, sample_residuals, select_restoration, std_map
from .sizing import parse_crop, parse_resize, parse_size

__all__ = [
    "RestoreOptions",
    "RestoreError",
    "restore",
    "restore_prepared",
    "check_options",
    "check_values",
    "DegradeOptions",
    "Degraded",
    "degrade",
    "ProgressEvent",
    "ProgressCallback",
    "format_duration",
    "is_terminal",
    "terminal_size",
    "JSON_KEYS",
    "score",
    "metrics_table",
    "oracle_best",
    "Samples",
    "posterior_samples",
    "std_map",
    "sample_residuals",
    "default_select",
    "select_restoration",
    "SELECT_CHOICES",
    "TILE_CHOICES",
    "TILE_AUTO_PIXELS",
    "simulate_measurement",
    "Prepared",
    "prepare",
    "measurement_view",
    "check_finite",
    "Job",
    "plan_jobs",
    "check_jobs",
    "build_prior",
    "check_prior_name",
    "CHECKPOINT_SUFFIXES",
    "resolve_device",
    "check_output",
    "output_bits",
    "Timer",
    "Estimate",
    "cost_or_refuse",
    "projection_note",
    "ANNOUNCE_SECONDS",
    "DEFAULT_MAX_MEGAPIXELS",
    "DEFAULT_MAX_MINUTES",
    "parse_crop",
    "parse_resize",
    "parse_size",
]
