"""The ``invkit solve`` command: restore images, in one of two modes.

* **measurement mode** (default): the input *is* the measurement -- a real degraded photo, or a
  file from ``invkit degrade``. When ``--sigma-y`` is not given it uses the noise recorded in a
  ``.safetensors`` measurement, or, for an image file, the noise estimated from the image
  (:func:`invkit.metrics.estimate_noise_sigma`), never below that file's quantisation noise
  (``1/(255·√12)`` for 8 bits) and so never an exact 0 that would magnify rounding.
* **simulate mode** (``--simulate``): the input is a clean image; it is degraded first (the same
  draw as ``invkit degrade --seed``), restored, and compared with the original (PSNR, SSIM and,
  where available locally, LPIPS), as a table or as JSON lines.

It takes a folder (every image in it, into an output folder), draws ``--samples N`` posterior
samples (mean, per-pixel std map and the samples are written), fixes sizes that an operator or
the prior cannot take only when asked (``--pad``/``--crop``/``--resize``), states the cost of
large images up front and refuses those over ``--max-megapixels`` with the options that would
work. The full contract is the ``--help`` text (:data:`invkit.solve_options.SOLVE_EPILOG`).

Here: the run itself (checks, then every input prepared, then each image solved), one image's
solve with its outputs and JSON record, and the metrics table. The options are in
:mod:`invkit.solve_options`, output planning in :mod:`invkit.solve_jobs`, reading an input in
:mod:`invkit.solve_inputs`, sizes in :mod:`invkit.sizing`, cost in :mod:`invkit.cost`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .cli_common import CommandError, build_prior, check_prior_name, check_sigma, resolve_device
from .cost import ANNOUNCE_SECONDS, Timer, check_cost, cost_or_refuse
from .io import write_figure, write_image
from .noise import GaussianNoise
from .progress import ProgressBar, format_duration, is_terminal
from .registry import Registry
from .sizing import crop_back, parse_crop, parse_resize, prior_multiple
from .solve_inputs import Prepared, measurement_view, prepare
from .solve_jobs import check_jobs, plan_jobs
from .solve_options import FIGURE_AUTO, JSON_KEYS
from .problem import Problem
from .requirements import RequirementError
from .random import sample_generators
from .solver import Step


def _std_map(samples: Tensor) -> Tensor:
    """(N, C, H, W) -> (1, 1, H, W): per-pixel std across samples, root mean square over channels."""
    var = samples.double().var(dim=0, correction=1)  # (C, H, W)
    return var.mean(dim=0, keepdim=True).sqrt()[None]


def _finite_or_none(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _solve_one(prep: Prepared, args: argparse.Namespace, solver: Any, prior: Any, device: torch.device, index: str, say_note: Any) -> dict[str, Any]:
    job = prep.job
    n, batch = args.samples, min(args.batch, args.samples)
    chunks = math.ceil(n / batch)
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

            # one generator per sample, seeded from (--seed, sample index), so a sample does not
            # depend on --batch; a solver without row_generators gets the first one for the chunk
            gens = sample_generators(args.seed, k * batch, b, device)
            generator = gens if getattr(solver, "row_generators", False) else gens[0]
            result = solver.solve(problem, prior, steps=args.steps, generator=generator, callback=callback)
            outs.append(result.x.detach().to("cpu", torch.float32))
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    samples = torch.cat(outs)
    samples = crop_back(samples, prep.geo)
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

    view, view_kind = measurement_view(prep) if (prep.clean is not None or job.figure is not None) else (None, None)
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


def run_solve(args: argparse.Namespace, registry: Registry) -> int:
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
        check_sigma(args.sigma_y)
    if args.crop is not None:
        parse_crop(args.crop)
    if args.resize is not None:
        parse_resize(args.resize)
    if args.pad and args.crop is not None:
        raise CommandError("--pad and --crop exclude each other; choose one")
    registry.get("solver", args.solver)
    if args.operator is not None:
        registry.operator_class(args.operator)
    check_prior_name(registry, args.prior)
    device = resolve_device(args.device)
    jobs = plan_jobs(args)
    check_jobs(jobs, args.force)

    # 2. the prior and solver, then every input checked before any work
    solver = registry.build("solver", args.solver, args.solver_arg)
    prior = build_prior(registry, args.prior, args.prior_arg, device=str(device))
    timer = Timer(prior, device, prior_multiple(prior))
    folder = args.input.is_dir()
    first: Prepared | None = None
    def too_big(name: str, c: int, h: int, w: int) -> None:
        if h * w > args.max_megapixels * 1e6:
            cost_or_refuse(name, c, h, w, args=args, timer=timer)

    for job in jobs:
        prep = prepare(job, args, registry, prior, too_big)
        _check_channels(prior, prep)
        _check_requirements(registry, args, prep, prior)
        check_cost(prep, args, timer, note)
        if not folder:
            first = prep
    if folder:
        args.output.mkdir(parents=True, exist_ok=True)
        if args.figure not in (None, FIGURE_AUTO):
            Path(args.figure).mkdir(parents=True, exist_ok=True)

    # 3. solve
    records = []
    for i, job in enumerate(jobs):
        prep = first if first is not None else prepare(job, args, registry, prior)
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


def _check_requirements(registry: Registry, args: argparse.Namespace, prep: Prepared, prior: Any) -> None:
    """Refuse a problem the solver cannot take (its declared requirements) before any work."""
    problem = Problem(prep.op, prep.y, GaussianNoise(prep.sigma_y))
    try:
        registry.check_solver(args.solver, problem, prior, args.solver_arg)
    except RequirementError as exc:
        raise CommandError(f"{prep.job.src.name}: {exc}") from None


def _check_channels(prior: Any, prep: Prepared) -> None:
    want = getattr(prior, "channels", None)
    have = prep.op.in_shape[0]
    if isinstance(want, int) and want != have:
        raise CommandError(f"prior models {want}-channel images but {prep.job.src.name} restores to {have} channel(s); use a prior for {have}-channel images")
