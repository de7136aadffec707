"""The restore loop: :func:`restore` runs a whole :class:`RestoreOptions` (one input file or a
folder), :func:`restore_prepared` one input that :func:`~invkit.runner.inputs.prepare` made ready.

A run checks everything before any work (numbers, names, paths, every output; then every input
read, sized, matched with the noise model and the solver's requirements, and priced), then
restores image by image: samples and the restoration made of them, their mean or the sample of
smallest residual (:mod:`invkit.runner.sampling`), outputs (:mod:`invkit.runner.outputs`),
metrics and the record (:mod:`invkit.runner.report`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from ..io import MEASUREMENT_SUFFIX, output_transaction
from ..noise import noise_spec
from ..params import parse_params
from ..problem import Problem
from ..registry import Registry, get_registry
from ..requirements import Capability, RequirementError
from ..solver import Step
from ..tiled import TiledPrior, tile_grid
from .cost import ESTIMATE_PIXELS, Estimate, Timer, cost_or_refuse, pixel_limit
from .devices import resolve_device
from .errors import RestoreError
from .inputs import Prepared, check_noise_fits, measurement_view, prepare
from .files import file_arguments, probe_writable, recorded_file_arguments
from .jobs import Job, check_jobs, output_folder, plan_jobs, skipped_in_folder
from .model_check import residual_calibrated, residual_ratio
from .noise_level import asked_noise
from .options import TILE_AUTO_PIXELS, RestoreOptions, check_values
from .outputs import write_figure_for, write_restoration
from .priors import check_prior_name, prior_request
from .progress import ProgressCallback, ProgressEvent
from .report import new_record, oracle_best, record_value, score
from .sampling import default_select, posterior_samples, sample_residuals, select_restoration, std_map
from .sizing import crop_back, prior_multiple

__all__ = ["restore", "restore_prepared", "check_options"]

#: ``on_note(message)``: something the user should know (a size fixed, sigma_y estimated, a cost).
NoteCallback = Callable[[str], None]
#: ``on_record(record, prepared)``: one image is done and its files are written.
RecordCallback = Callable[[dict[str, Any], Prepared], None]


def check_options(opts: RestoreOptions, registry: Registry) -> None:
    """The checks that need no file: every field's type and range
    (:func:`~invkit.runner.options.check_values`), then the solver, operator and prior names, and
    an operator that declares negative measurements (``nonnegative = False``) with Poisson noise.

    Raises:
        RestoreError: A bad value or combination.
        PluginError: An unknown name (the message lists the known ones).
    """
    check_values(opts)
    registry.get("solver", opts.solver)
    if opts.operator is not None:
        cls = registry.operator_class(opts.operator)
        noise = asked_noise(opts.noise, opts.noise_args, opts.sigma_y)
        if noise is not None:
            check_noise_fits(cls, noise, opts.operator)
    check_prior_name(registry, opts.prior)


def restore(
    opts: RestoreOptions,
    *,
    registry: Registry | None = None,
    on_progress: ProgressCallback | None = None,
    on_note: NoteCallback | None = None,
    on_record: RecordCallback | None = None,
) -> list[dict[str, Any]]:
    """Restore ``opts.input`` (a file, or every image in a folder) into ``opts.output``.

    Everything is checked before any work: a bad option, input or output raises before a file
    is written. Then each image is restored in turn and its files written; ``on_record`` is
    called after each.

    Args:
        opts: What to run.
        registry: Where operators, priors and solvers are registered (default: the global one).
        on_progress: Called when an image starts, after every solver step, and when it is done.
        on_note: Called with messages for the user.
        on_record: Called with each image's record and prepared input once its files are written.

    Returns:
        One record per image (keys :data:`~invkit.runner.report.JSON_KEYS`).

    Raises:
        RestoreError: A user-fixable problem (one line saying what to do).
        PluginError: An unknown operator, prior or solver name.
    """
    registry = registry or get_registry()
    note = on_note or (lambda message: None)

    # 1. cheap checks: numbers, names, paths, outputs
    check_options(opts, registry)
    device = resolve_device(opts.device)
    jobs = plan_jobs(opts)
    folder = opts.input.is_dir()
    if folder and (other := skipped_in_folder(opts.input, opts.simulate)):
        note(f"{opts.input}: skipping {len(other)} file(s) that are not images or measurements (or are views beside a measurement): {_some(p.name for p in other)}")
    if opts.skip_existing:
        done = [job for job in jobs if all(path.exists() for path in job.outputs())]
        if done:
            note(f"skipping {len(done)} of {len(jobs)} input(s) whose outputs all exist (--skip-existing): {_some(job.src.name for job in done)}")
            jobs = [job for job in jobs if job not in done]
            if not jobs:
                return []
    out_folder = output_folder(opts)
    read_too = [*file_arguments(opts.operator_args), *recorded_file_arguments(job.src for job in jobs)]
    check_jobs(jobs, opts.force, read_too, creates=out_folder)
    for out_dir in dict.fromkeys(path.parent for job in jobs for path in job.outputs()):
        probe_writable(out_dir)

    # 2. the prior and solver, then every input checked before any work
    solver = registry.build("solver", opts.solver, opts.solver_args)
    prior_name, prior_given = prior_request(registry, opts.prior, opts.prior_args, device=str(device))
    prior = registry.build("prior", prior_name, prior_given)
    params = {"solver_params": _params_used(registry, "solver", opts.solver, opts.solver_args),
              "prior_params": _params_used(registry, "prior", prior_name, prior_given)}
    prior_for = tiling(prior, opts)
    timer = Timer(prior, device, prior_multiple(prior), solver, prior_for=prior_for)
    estimates: dict[Path, Estimate | None] = {}
    first: Prepared | None = None

    def too_big(name: str, c: int, h: int, w: int, scale: int = 1, resizable: bool = True, memory_only: bool = False) -> None:
        # from the file's header: over --max-megapixels, or (the size restored) over --max-minutes,
        # before the pixels are read or the operator set up
        if h * w > pixel_limit(opts, timer) or (not memory_only and h * w > ESTIMATE_PIXELS):
            cost_or_refuse(name, c, h, w, opts=opts, timer=timer, scale=scale, resizable=resizable,
                           alternatives=lambda: _gradient_free_solvers(registry))

    failures: list[tuple[Job, str]] = []

    def failed(job: Job, exc: Exception) -> None:
        """An input failed: re-raise it, or with --keep-going (a folder) note it and go on."""
        if not (opts.keep_going and folder):
            raise exc
        failures.append((job, " ".join(str(exc).split()) or type(exc).__name__))
        note(f"{job.src.name}: failed: {failures[-1][1]} (--keep-going: going on)")

    checked = []
    for job in jobs:
        try:
            prep = prepare(job, opts, registry, prior, too_big)
            _check_channels(prior, prep)
            _check_requirements(registry, opts, prep, prior)
            estimates[job.src] = cost_or_refuse(prep.job.src.name, *prep.op.in_shape, opts=opts, timer=timer, say_note=note,
                                                scale=1 if opts.simulate else _input_scale(prep), resizable=prep.job.src.suffix != MEASUREMENT_SUFFIX,
                                                alternatives=lambda: _gradient_free_solvers(registry, Problem(prep.op, prep.y, prep.noise), prior))
        except _PER_INPUT_ERRORS as exc:
            failed(job, exc)
            continue
        checked.append(job)
        if not folder:
            first = prep
    jobs = checked
    if out_folder is not None:
        out_folder.mkdir(parents=True, exist_ok=True)
    if folder:
        if opts.figure is not None and opts.figure is not True:
            opts.figure.mkdir(parents=True, exist_ok=True)

    # 3. restore
    records = []
    for i, job in enumerate(jobs):
        try:
            prep = first if first is not None else prepare(job, opts, registry, prior)
            for message in prep.notes:
                note(message)
            if prep.geo.note:
                note(f"{job.src.name}: {prep.geo.note}")
            run_prior = prior_for(prep.op.in_shape)
            if isinstance(run_prior, TiledPrior):
                _, h, w = prep.op.in_shape
                count = len(tile_grid(h, w, run_prior.tile, run_prior.overlap, run_prior.size_multiple))
                note(f"{job.src.name}: the prior runs on {count} tiles of {run_prior.tile}x{run_prior.tile} (overlap {run_prior.overlap}) per evaluation (--tile {opts.tile})")
            record = restore_prepared(prep, opts, solver, run_prior, device, index=i, images=len(jobs), on_progress=on_progress,
                                      estimate=estimates.get(job.src), params=params)
        except _PER_INPUT_ERRORS as exc:
            failed(job, exc)
            continue
        records.append(record)
        for message in prep.check.after():
            note(f"{job.src.name}: warning: {message}")
        if on_record is not None:
            on_record(record, prep)
    if failures:
        listed = "; ".join(f"{job.src.name}: {why}" for job, why in failures[:3]) + ("; ..." if len(failures) > 3 else "")
        raise RestoreError(f"{len(failures)} of {len(failures) + len(records)} input(s) failed (the others were restored): {listed}")
    return records


#: What one input can fail with (bad file, size, requirements, a write, memory for its size):
#: --keep-going goes on after these.
_PER_INPUT_ERRORS = (RestoreError, RequirementError, ValueError, OSError, MemoryError, torch.OutOfMemoryError)


def tiling(prior: Any, opts: RestoreOptions) -> Callable[[tuple[int, ...]], Any]:
    """The prior to restore an image of a given shape with: ``prior`` itself, or (``--tile on``, or
    ``auto`` above :data:`~invkit.runner.options.TILE_AUTO_PIXELS` pixels for a prior whose
    :attr:`~invkit.Prior.tileable` is true) ``prior`` evaluated on overlapping tiles
    (:class:`invkit.TiledPrior`; an image no larger than one tile is the same either way).

    Raises:
        RestoreError: A tile size or overlap the prior cannot take (not a multiple of its size multiple).
    """
    if opts.tile == "off" or (opts.tile == "auto" and not getattr(prior, "tileable", False)):
        return lambda shape: prior
    try:
        tiled = TiledPrior(prior, tile=opts.tile_size, overlap=opts.tile_overlap)
    except ValueError as exc:
        raise RestoreError(f"--tile-size/--tile-overlap: {exc}".replace("tile=", "--tile-size ").replace("overlap=", "--tile-overlap ")) from None

    def choose(shape: tuple[int, ...]) -> Any:
        pixels = shape[-1] * shape[-2] if len(shape) == 3 else 0
        return tiled if opts.tile == "on" or pixels > TILE_AUTO_PIXELS else prior

    return choose


def _params_used(registry: Registry, kind: str, name: str, given: Iterable[str] | dict[str, Any]) -> dict[str, Any]:
    """Every parameter the solver or prior ``name`` was built with: ``given`` converted, and the
    declared defaults (None where the plugin picks its own later, e.g. DiffPIR's per-operator
    presets), as :func:`~invkit.runner.report.record_value` writes them."""
    return record_value(parse_params(registry.get(kind, name).params, given, owner=f"{kind} '{name}'"))


def _input_scale(prep: Prepared) -> int:
    """Restored pixels per measured pixel along a side (a super-resolution factor), else 1 (for a
    measurement: with ``--simulate`` the input is the image restored, scale 1)."""
    h, y = prep.op.in_shape[-1], prep.y
    if y.dim() != 4 or y.shape[-1] >= h or h % y.shape[-1]:
        return 1
    return h // y.shape[-1]


def _some(names: Iterable[str], limit: int = 5) -> str:
    """The first ``limit`` names, comma-separated, with ``...`` when there are more."""
    names = list(names)
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def restore_prepared(
    prep: Prepared,
    opts: RestoreOptions,
    solver: Any,
    prior: Any,
    device: torch.device,
    *,
    index: int = 0,
    images: int = 1,
    on_progress: ProgressCallback | None = None,
    estimate: Estimate | None = None,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Restore one prepared input: draw the samples, write the files, score, and return the record.

    The restoration written is the samples' mean, or with ``opts.select == "residual"`` (the
    default for an operator with ``mean_is_meaningful = False``) the sample of smallest
    ‖y − A(x)‖; a simulation with several samples also records the oracle best of them.

    Args:
        prep: The input, ready to restore.
        opts: ``samples``, ``batch``, ``seed``, ``steps``, ``select`` and the names recorded.
        solver: The solver.
        prior: The prior.
        device: Where the prior runs.
        index: Index of this image in the run (for progress events).
        images: Number of images in the run (for progress events).
        on_progress: Called when the image starts, after every solver step, and when it is done.
        estimate: The solve's cost as estimated before the run (:func:`~invkit.runner.cost_or_refuse`),
            passed on in progress events and recorded.
        params: The record's ``solver_params`` and ``prior_params`` (every parameter as built;
            :func:`restore` passes them), else left null.

    Returns:
        The image's record (keys :data:`~invkit.runner.report.JSON_KEYS`).
    """
    job = prep.job
    n = opts.samples
    started = time.perf_counter()
    done = 0
    total: int | None = None

    def event(kind: str, first: int = 1, last: int = 1) -> None:
        if on_progress is not None:
            elapsed = time.perf_counter() - started
            before = None if estimate is None else (estimate.low, estimate.high)
            on_progress(ProgressEvent(kind, job.src, index, images, done, total, first, last, n, elapsed, before))  # type: ignore[arg-type]

    def on_step(step: Step, start: int, count: int) -> None:
        nonlocal done, total
        if total is None:
            calls = -(-n // min(opts.batch, n))
            total = step.total * calls
        done += 1
        event("step", start + 1, start + count)

    event("start", 1, min(opts.batch, n))
    drawn = posterior_samples(
        prep.op, prep.y, prep.noise, solver, prior,
        samples=n, batch=opts.batch, seed=opts.seed, steps=opts.steps, device=device, on_step=on_step,
    )
    event("done", n, n)
    seconds = time.perf_counter() - started
    residuals = sample_residuals(prep.op, prep.y, drawn.x)
    prep.check.residual = residual_ratio(residuals, prep.op.out_numel, prep.check.sigma)
    prep.check.calibrated = residual_calibrated(prep.op, drawn.steps)
    samples = crop_back(drawn.x, prep.geo)
    select = opts.select or default_select(prep.op)
    restored, chosen = select_restoration(samples, residuals, select)
    std = std_map(samples) if n > 1 else None
    label = "restoration" if n == 1 else f"posterior mean (N={n})" if chosen is None else f"least residual (sample {chosen + 1} of {n})"
    # every file of this image appears together, or none (created exclusively unless --force)
    with output_transaction(overwrite=opts.force):
        files, std_max, std_mean = write_restoration(prep, samples, restored, std)

        view, view_kind = measurement_view(prep) if (prep.clean is not None or job.figure is not None) else (None, None)
        record = new_record(
            image=str(job.src),
            output=str(job.out),
            mode="simulate" if opts.simulate else "measurement",
            operator=prep.name,
            operator_params=dict(prep.op.config),
            solver=opts.solver,
            prior=opts.prior,
            shape=list(restored.shape[1:]),
            sigma_y=prep.sigma_y,
            steps=drawn.steps,
            samples=n,
            seed=opts.seed,
            device=str(device),
            seconds=round(seconds, 3),
            std_mean=std_mean,
            std_max=std_max,
            files=files,
            noise=noise_spec(prep.noise),
            select=select,
            selected_sample=None if chosen is None else chosen + 1,
            residuals=[r if math.isfinite(r) else None for r in residuals],
            model_check=prep.check.record(),
            operator_defaults=list(prep.defaults),
            prior_tiles=[prior.tile, prior.overlap] if isinstance(prior, TiledPrior) else None,
            estimated_seconds=None if estimate is None else [round(estimate.low, 3), round(estimate.high, 3)],
            **(params or {}),
        )
        if prep.clean is not None:
            scored, scored_samples = _aligned(prep, drawn.x, chosen)
            if scored is None:
                scored, scored_samples = restored, samples
            else:
                record["scored_up_to_ambiguities"] = True
            record.update(score(scored, prep.clean, view, view_kind))
            if n > 1:
                record.update(oracle_best(scored_samples, prep.clean))
        if job.figure is not None:
            write_figure_for(prep, view, view_kind, restored, std, std_max, label)
            files["figure"] = str(job.figure)
    return record


def _aligned(prep: Prepared, x: torch.Tensor, chosen: int | None) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The restoration and samples as scored when the operator has ambiguities: each moved by the
    operator's ``align(x, truth)`` to the member of its ambiguity set closest to the clean image
    (phase retrieval: the 180° rotation, and the shifts that keep the content inside the image), at
    the operator's size, then cropped back.

    Only the scores use it (a simulation knows the truth); the files hold what was restored.
    Returns ``(None, x)`` for an operator without ``align``.
    """
    align = getattr(prep.op, "align", None)
    if not callable(align) or prep.clean_padded is None:
        return None, x
    ref = prep.clean_padded.to(x.dtype)
    x = x.clamp(0.0, 1.0)  # as written and as scored
    full = x[chosen : chosen + 1] if chosen is not None else x.mean(dim=0, keepdim=True)
    return crop_back(align(full, ref), prep.geo), crop_back(align(x, ref), prep.geo)


def _check_requirements(registry: Registry, opts: RestoreOptions, prep: Prepared, prior: Any) -> None:
    """Refuse a problem the solver cannot take (its declared requirements, the noise model's kind included) before any work."""
    problem = Problem(prep.op, prep.y, prep.noise)
    try:
        registry.check_solver(opts.solver, problem, prior, opts.solver_args)
    except RequirementError as exc:
        raise RestoreError(f"{prep.job.src.name}: {exc}") from None


def _gradient_free_solvers(registry: Registry, problem: Problem | None = None, prior: Any = None) -> list[str]:
    """What to use instead of a solver whose gradients through the prior do not fit in memory.

    Args:
        registry: The registry whose solvers are judged, from their classes' declarations.
        problem: The problem, when it is known: then only solvers whose declared requirements it
            and ``prior`` meet (:meth:`~invkit.Registry.solvers_for`).
        prior: The prior the run uses.

    Returns:
        Names of the registered solvers that declare their requirements (``requires``; as
        :meth:`~invkit.Registry.solvers_for` counts them), evaluate the prior (a class-level
        ``evaluations_per_step`` of 0 does not), and need neither its gradients nor a Gaussian form.
    """
    names = registry.solvers_for(problem, prior) if problem is not None else registry.names("solver")
    out = []
    for name in names:
        cls = registry.get("solver", name).factory
        requires = getattr(cls, "requires", None)
        per_step = getattr(cls, "evaluations_per_step", 1.0)  # may be a property on the class: depends on parameters
        if requires is None or {Capability.PRIOR_GRADIENTS, Capability.GAUSSIAN_PRIOR} & set(requires) or per_step == 0:
            continue
        out.append(name)
    return out


def _check_channels(prior: Any, prep: Prepared) -> None:
    want = getattr(prior, "channels", None)
    have = prep.op.in_shape[0]
    if isinstance(want, int) and want != have:
        raise RestoreError(f"prior models {want}-channel images but {prep.job.src.name} restores to {have} channel(s); use a prior for {have}-channel images")
