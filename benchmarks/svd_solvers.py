#!/usr/bin/env python
"""DDNM/DDNM⁺, ΠGDM and DiffPIR beside DDRM and DPS on the evaluation photos (issue 15): one
sample and the mean of 4, at the papers' 100 steps and at 20, with the default prior; prints
markdown tables.

Tasks (RGB crops of :mod:`_eval_data` resized to ``--size``², default 128: short side resized,
centre crop; one evaluation photo per task, never tuned on):

* **deblur**: ``gaussian_blur sigma=1.5``, Gaussian noise σ_y = 0.05;
* **sr4**: ``bicubic_super_resolution factor=4``, σ_y = 0.05 (noisy bicubic SR: what the
  official DDNM code leaves unimplemented);
* **inpaint50**: ``inpainting mask=random fraction=0.5``, noiseless;
* **colorization**: ``colorization``, noiseless.

Every solver runs at its defaults (its presets for the operator family); ``ddnm`` is used where
the measurement is noiseless, ``ddnm_plus`` where not (plain ``ddnm`` refuses noise). Steps
(:data:`GRID`): DDNM, ΠGDM and DiffPIR at 100 (their papers') and 20; DDRM at its paper's 20;
DPS at 100 (a tenth of its paper's 1000, with its presets scaled to the step count; at 20 steps
it needs clipping and was measured at 19–20 dB on motion deblurring, docs/measurements.md) —
this keeps the grid within 2 CPU-hours at 128².
K = 4 samples are drawn in one batch (seeds 0..3 per row): ``PSNR 1`` scores sample 0 (what a
user gets from one run), ``PSNR mean`` the mean of the 4 (the posterior-mean estimate). Seconds
are the solve's CPU time on one thread divided by K (per sample), NFE the prior evaluations per
sample (a step of ΠGDM or DPS also differentiates through the prior: ~3 evaluations' cost).

Every job runs in its own process with one thread (``--workers`` at a time); results are appended
to ``--results`` (JSON lines) and a job already there is not run again. The full grid is about
2 CPU-hours at 128² (``--report`` prints the measured total).

Usage:
    python benchmarks/svd_solvers.py --workers 2
    python benchmarks/svd_solvers.py --workers 1 --steps 20 --task deblur   # a part of the grid
    python benchmarks/svd_solvers.py --report
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dps import _load, _peak_mb  # noqa: E402  (one home for the job-queue helpers)

K = 4
STEPS = (100, 20)
#: solver -> the step counts it runs at
GRID: dict[str, tuple[int, ...]] = {"ddrm": (20,), "ddnm": (100, 20), "pigdm": (100, 20), "diffpir": (100, 20), "dps": (100,)}
#: operator, its arguments, σ_y and the evaluation photo of each task
TASKS: dict[str, dict[str, Any]] = {
    "deblur": {"op": "gaussian_blur", "args": {"sigma": 1.5}, "sigma_y": 0.05, "image": "coffee"},
    "sr4": {"op": "bicubic_super_resolution", "args": {"factor": 4}, "sigma_y": 0.05, "image": "astronaut"},
    "inpaint50": {"op": "inpainting", "args": {"mask": "random", "fraction": 0.5}, "sigma_y": 0.0, "image": "chelsea"},
    "colorization": {"op": "colorization", "args": {}, "sigma_y": 0.0, "image": "rocket"},
}


def solver_name(solver: str, sigma_y: float) -> str:
    """``ddnm`` for noiseless measurements, ``ddnm_plus`` for noisy ones; the others as named."""
    return ("ddnm_plus" if sigma_y > 0 else "ddnm") if solver == "ddnm" else solver


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One batch of K samples in this process (one thread): the job's keys plus scores and costs."""
    import torch

    torch.set_num_threads(1)
    import invkit
    from _eval_data import load_eval
    from invkit.metrics import psnr, ssim
    from invkit.runner.inputs import simulate_measurement

    task = TASKS[job["task"]]
    reg = invkit.get_registry()
    clean = load_eval(task["image"], job["size"])[None].double()
    op = reg.build_operator(task["op"], tuple(clean.shape[1:]), dict(task["args"]))
    noise = invkit.GaussianNoise(task["sigma_y"])
    y = simulate_measurement(op, clean, noise, seed=0, name=task["op"]).float()
    problem = invkit.Problem(op, y.expand(K, *y.shape[1:]).contiguous(), noise)
    prior = reg.build("prior", "default", [])
    with torch.no_grad():
        prior.denoise(torch.rand(1, 3, 16, 16), 0.5)
    base = _peak_mb()
    solver = reg.build("solver", job["solver"], [])
    gens = [torch.Generator().manual_seed(i) for i in range(K)]
    start, cpu = time.perf_counter(), time.process_time()
    out = solver.solve(problem, prior, steps=job["steps"], generator=gens)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    x = out.x.double().clamp(0, 1)
    mean = x.mean(0, keepdim=True)
    evaluations = out.info.get("evaluations", len(out.info.get("sigmas", [0])) - 1)
    return {
        **job,
        "psnr_1": psnr(x[:1], clean), "ssim_1": ssim(x[:1], clean),
        "psnr_mean": psnr(mean, clean), "ssim_mean": ssim(mean, clean),
        "psnr_each": [psnr(x[i : i + 1], clean) for i in range(K)],
        "residual": problem.residual_norms(out.x).tolist(),
        "params": {k: v for k, v in out.info.items() if k not in ("solver", "observed") and isinstance(v, (int, float, str, bool))},
        "nfe": evaluations, "seconds": seconds / K, "cpu_seconds": cpu_seconds / K, "peak_mb": _peak_mb() - base, "threads": 1,
    }


def jobs(size: int) -> list[dict[str, Any]]:
    return [
        {"task": t, "solver": solver_name(s, spec["sigma_y"]), "steps": n, "size": size}
        for t, spec in TASKS.items() for s, counts in GRID.items() for n in counts
    ]


def _key(job: dict[str, Any]) -> str:
    return json.dumps({k: job[k] for k in ("task", "solver", "steps", "size")}, sort_keys=True)


def report(rows: list[dict[str, Any]], size: int) -> None:
    rows = [r for r in rows if r["size"] == size]
    for n in STEPS:
        sel = [r for r in rows if r["steps"] == n]
        if not sel:
            continue
        print(f"\n### {n} steps, {size}², default prior, K = {K} samples (PSNR dB / SSIM; CPU s per sample, one thread)\n")
        print("| task | photo | σ_y | solver | NFE | PSNR 1 | SSIM 1 | PSNR mean | SSIM mean | PSNR range of the 4 | CPU s | parameters |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        order = {s: i for i, s in enumerate(("ddrm", "ddnm", "ddnm_plus", "pigdm", "diffpir", "dps"))}
        for r in sorted(sel, key=lambda r: (list(TASKS).index(r["task"]), order.get(r["solver"], 99))):
            spec = TASKS[r["task"]]
            lo, hi = min(r["psnr_each"]), max(r["psnr_each"])
            print(f"| {r['task']} | {spec['image']} | {spec['sigma_y']:g} | {r['solver']} | {r['nfe']} | {r['psnr_1']:.2f} | {r['ssim_1']:.4f} | "
                  f"{r['psnr_mean']:.2f} | {r['ssim_mean']:.4f} | {lo:.2f}–{hi:.2f} | {r['cpu_seconds']:.0f} | "
                  + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in r.get("params", {}).items()) + " |")
    total = sum(r["cpu_seconds"] * K for r in rows)
    print(f"\n(total {total / 3600:.2f} CPU-hours over {len(rows)} jobs)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--size", type=int, default=128, help="crop side in pixels")
    p.add_argument("--report", action="store_true", help="print the tables of the results so far, run nothing")
    p.add_argument("--steps", type=int, action="append", choices=STEPS, default=None,
                   help="run only the grid's jobs at this step count (repeatable; default: all)")
    p.add_argument("--task", action="append", choices=list(TASKS), default=None,
                   help="run only this task's jobs (repeatable; default: all)")
    p.add_argument("--results", type=Path, default=Path.home() / ".cache" / "invkit" / "bench_svd_solvers.jsonl")
    args = p.parse_args()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    if not args.report:
        done = {_key(r) for r in _load(args.results)}
        todo = [j for j in jobs(args.size) if _key(j) not in done
                and (args.steps is None or j["steps"] in args.steps) and (args.task is None or j["task"] in args.task)]
        cost = {"pigdm": 3, "dps": 3}
        todo.sort(key=lambda j: -j["steps"] * cost.get(j["solver"], 1))  # the longest first
        with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
            for row in pool.imap_unordered(run_job, todo):
                with args.results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps({k: row[k] for k in ("task", "solver", "steps", "psnr_1", "psnr_mean", "cpu_seconds")}), flush=True)
    report(_load(args.results), args.size)


if __name__ == "__main__":
    main()
