#!/usr/bin/env python
"""DPS with the default prior (issue 14, "Measure"): ζ′ tuning on the tuning images, then motion
deblurring, Poisson deblurring (and its Gaussian-likelihood variant), phase retrieval against HIO,
and quality against the number of steps on the evaluation photos; prints markdown tables.

Set-up (all at 128×128, RGB crops of :mod:`_eval_data`: short side resized to 128, centre crop):

* **motion**: ``blur kernel=trajectory size=31 intensity=0.5`` (the paper's random-trajectory
  camera shake, 61×61 at 256², scaled to 31×31 at 128²; trajectory seed = image index), Gaussian
  noise σ_y = 0.025 (the paper's 0.05 on [−1, 1] data is 0.025 on our [0, 1] data).
* **poisson**: ``gaussian_blur sigma=1.5`` (the paper's σ = 3 at 256², halved) with Poisson noise
  at rate 255 (255 photons at white); solved with DPS's Algorithm 2 (shot-noise weights, eq. 20)
  and, on the same measurement, with Algorithm 1 (the Gaussian likelihood, ``Λ = I``).
* **phase retrieval**: ``phase_retrieval`` (oversample 2), Gaussian noise σ_y = 0.025; DPS draws
  K = 4 samples and keeps the one of least residual ``‖y − A(x)‖`` (needs no ground truth); the
  oracle best of 4 (the paper's protocol) is reported beside it; HIO (invkit's ``hio``, 4
  restarts, least residual kept) is the classical baseline. Scores after ``op.align`` (the
  180° rotation and shifts).
* **super-resolution** (tuning only): ``super_resolution factor=4``, σ_y = 0.025.
* **inpainting** (tuning only): ``inpainting mask=random fraction=0.5``, σ_y = 0.025.

Tuning (``--part tune``): ζ′ = the official value × 1, (2,) 4, 8, (16) (see :data:`TUNE_GRID`) at 250 steps on
the tuning image ``wallpaper:Autumn`` (KDE's plasma-workspace-wallpapers, in the prior's training
data; never an evaluation image), one sample, seed 0; the best PSNR wins. Evaluation (``--part
eval``) uses the presets in ``invkit_solvers.dps`` at 250 steps (``--steps``); ``--part steps``
runs 100/250/1000 steps on one image (motion deblurring).

Every job runs in its own process with one thread (``--workers`` at a time): seconds are the
solve's CPU time (``time.process_time``, one thread: the wall time it takes on an idle core, and
robust to other jobs sharing the machine; the wall time is recorded too), peak memory the
process's peak RSS increase over the loaded prior. Results are
appended to ``--results`` (JSON lines) and a job already there is not run again.

Usage:
    INVKIT_WALLPAPERS=.../usr/share/wallpapers python benchmarks/dps.py --part tune --workers 2
    python benchmarks/dps.py --part eval --workers 2
    python benchmarks/dps.py --part steps --workers 2
    python benchmarks/dps.py --part report
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZE = 128
SIGMA_Y = 0.025
RATE = 255.0
#: Operator, its arguments and the noise of each task family.
TASKS: dict[str, dict[str, Any]] = {
    "motion": {"op": "blur", "args": {"kernel": "trajectory", "size": 31, "intensity": 0.5}, "noise": "gaussian"},
    "poisson": {"op": "gaussian_blur", "args": {"sigma": 1.5}, "noise": "poisson"},
    "poisson_as_gaussian": {"op": "gaussian_blur", "args": {"sigma": 1.5}, "noise": "poisson", "likelihood": "gaussian"},
    "phase_retrieval": {"op": "phase_retrieval", "args": {}, "noise": "gaussian"},
    "super_resolution": {"op": "super_resolution", "args": {"factor": 4}, "noise": "gaussian"},
    "inpainting": {"op": "inpainting", "args": {"mask": "random", "fraction": 0.5}, "noise": "gaussian"},
}
#: The official configs' ζ′ per tuning family, and the multiples tried.
OFFICIAL = {"motion": 0.3, "poisson": 0.3, "phase_retrieval": 0.4, "super_resolution": 0.3, "inpainting": 0.5}
TUNE_GRID = {"motion": (1.0, 2.0, 4.0, 8.0, 16.0), "poisson": (1.0, 4.0, 8.0), "phase_retrieval": (1.0, 4.0, 8.0),
             "super_resolution": (1.0, 4.0, 8.0, 16.0), "inpainting": (1.0, 4.0, 8.0, 16.0)}
TUNE_IMAGE = "wallpaper:Autumn"
TUNE_STEPS = 250
EVAL = {"motion": ("coffee", "rocket"), "poisson": ("astronaut", "motorcycle_left"),
        "poisson_as_gaussian": ("astronaut", "motorcycle_left"), "phase_retrieval": ("astronaut", "chelsea")}
STEPS_IMAGE, STEPS_CURVE = "coffee", (100, 250, 1000)
#: Few steps (``--part fewsteps``): motion deblurring on the tuning image, multiples of the official ζ′ per step count.
FEW_STEPS = {20: (4.0, 10.0, 20.0, 50.0), 100: (4.0, 10.0)}
#: The same with x̂0 clipped (``clip_x0=true``), and the prior alone (ζ′ = 0) at 20 steps.
FEW_STEPS_CLIPPED = {20: (0.0, 10.0, 50.0), 100: (10.0,)}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _image(name: str):
    from _eval_data import load_eval, load_tuning

    if name.startswith("wallpaper:"):
        return load_tuning(SIZE)[name]
    return load_eval(name, SIZE)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """One solve in this process (one thread): the job's keys plus psnr/ssim, seconds, peak memory."""
    import torch

    torch.set_num_threads(1)
    import invkit
    from invkit.metrics import psnr, ssim
    from invkit.runner.inputs import simulate_measurement

    task = TASKS[job["task"]]
    reg = invkit.get_registry()
    clean = _image(job["image"])[None].double()
    args = dict(task["args"])
    if args.get("kernel") == "trajectory":
        args["seed"] = job["seed_op"]
    op = reg.build_operator(task["op"], tuple(clean.shape[1:]), args)
    noise = invkit.PoissonNoise(RATE) if task["noise"] == "poisson" else invkit.GaussianNoise(SIGMA_Y)
    y = simulate_measurement(op, clean, noise, seed=0, name=task["op"]).float()
    solve_noise = invkit.GaussianNoise(SIGMA_Y) if task.get("likelihood") == "gaussian" else noise
    k = job.get("samples", 1)
    problem = invkit.Problem(op, y.expand(k, *y.shape[1:]).contiguous(), solve_noise)
    prior = reg.build("prior", "default", [])
    with torch.no_grad():
        prior.denoise(torch.rand(1, 3, 16, 16), 0.5)
    base = _peak_mb()
    gens = [torch.Generator().manual_seed(1000 * job.get("seed", 0) + i) for i in range(k)]
    if job["solver"] == "hio":
        solver = reg.build("solver", "hio", [])
        start, cpu = time.perf_counter(), time.process_time()
        out = solver.solve(problem, prior, generator=gens)
    else:
        args = [] if job.get("zeta") is None else [f"zeta={job['zeta']}"]
        if job.get("clip") is not None:
            args.append(f"clip_x0={str(job['clip']).lower()}")
        solver = reg.build("solver", "dps", args)
        start, cpu = time.perf_counter(), time.process_time()
        out = solver.solve(problem, prior, steps=job["steps"], generator=gens)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    x = out.x.double().clamp(0, 1)
    residuals = problem.residual_norms(out.x).tolist()
    if hasattr(op, "align"):
        x = op.align(x, clean)
    scores = [(psnr(x[i : i + 1], clean), ssim(x[i : i + 1], clean)) for i in range(k)]
    pick = min(range(k), key=lambda i: residuals[i])
    best = max(range(k), key=lambda i: scores[i][0])
    return {
        **job,
        "psnr": scores[pick][0], "ssim": scores[pick][1],
        "psnr_oracle": scores[best][0], "ssim_oracle": scores[best][1],
        "zeta_used": out.info.get("zeta"), "nfe": (len(out.info["sigmas"]) - 1) * k if "sigmas" in out.info else 0,
        "seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mb": _peak_mb() - base, "threads": 1,
    }


def jobs_for(part: str, steps: int) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    if part == "tune":
        for fam, mults in TUNE_GRID.items():
            for m in mults:
                jobs.append({"part": "tune", "task": fam, "image": TUNE_IMAGE, "seed_op": 100, "solver": "dps",
                             "zeta": round(OFFICIAL[fam] * m, 4), "steps": TUNE_STEPS})
    elif part == "eval":
        for fam, images in EVAL.items():
            for idx, image in enumerate(images):
                k = 4 if fam == "phase_retrieval" else 1
                jobs.append({"part": "eval", "task": fam, "image": image, "seed_op": idx, "solver": "dps", "zeta": None,
                             "steps": steps, "samples": k})
                if fam == "phase_retrieval":
                    jobs.append({"part": "eval", "task": fam, "image": image, "seed_op": idx, "solver": "hio", "zeta": None,
                                 "steps": None, "samples": k})
    elif part == "fewsteps":
        for n, mults in FEW_STEPS.items():
            for m in mults:
                jobs.append({"part": "fewsteps", "task": "motion", "image": TUNE_IMAGE, "seed_op": 100, "solver": "dps",
                             "zeta": round(OFFICIAL["motion"] * m, 4), "steps": n, "clip": False})
        for n, mults in FEW_STEPS_CLIPPED.items():
            for m in mults:
                jobs.append({"part": "fewsteps", "task": "motion", "image": TUNE_IMAGE, "seed_op": 100, "solver": "dps",
                             "zeta": round(OFFICIAL["motion"] * m, 4), "steps": n, "clip": True})
        jobs.append({"part": "fewsteps", "task": "motion", "image": TUNE_IMAGE, "seed_op": 100, "solver": "dps", "zeta": 0.0,
                     "steps": 20, "clip": False})
    elif part == "steps":
        for n in STEPS_CURVE:
            jobs.append({"part": "eval" if n == steps else "steps", "task": "motion", "image": STEPS_IMAGE, "seed_op": 0,
                         "solver": "dps", "zeta": None, "steps": n, "samples": 1})
    return jobs


def _key(job: dict[str, Any]) -> str:
    key = {k: job.get(k) for k in ("part", "task", "image", "seed_op", "solver", "zeta", "steps", "samples")}
    if job.get("part") == "fewsteps":  # rows run before clip_x0 existed were unclipped
        key["clip"] = bool(job.get("clip"))
    return json.dumps(key, sort_keys=True)


def _load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _fmt(v: Any, f: str) -> str:
    return "-" if v is None else f.format(v)


def report(rows: list[dict[str, Any]]) -> None:
    tune = [r for r in rows if r["part"] == "tune"]
    if tune:
        print(f"\n### ζ′ tuning: {TUNE_IMAGE}, {SIZE}², {TUNE_STEPS} steps, 1 sample\n")
        print("| family | ζ′ | PSNR | SSIM | seconds (CPU, or wall for rows run before it was recorded) |\n| --- | --- | --- | --- | --- |")
        for r in sorted(tune, key=lambda r: (r["task"], r["zeta"])):
            print(f"| {r['task']} | {r['zeta']} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r.get('cpu_seconds', r['seconds']):.0f} |")
    few = [r for r in rows if r["part"] == "fewsteps"]
    if few:
        print(f"\n### Few steps: motion deblurring, {TUNE_IMAGE}, {SIZE}², ζ′ as multiples of the official 0.3\n")
        print("| steps | ζ′ | × official | x̂0 clipped | PSNR | SSIM |\n| --- | --- | --- | --- | --- | --- |")
        for r in sorted(few, key=lambda r: (r["steps"], bool(r.get("clip")), r["zeta"])):
            clip = "yes" if r.get("clip") else "no"  # rows without the key ran before clip_x0 existed: unclipped
            print(f"| {r['steps']} | {r['zeta']} | {r['zeta'] / OFFICIAL['motion']:.0f} | {clip} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    ev = [r for r in rows if r["part"] == "eval"]
    if ev:
        print(f"\n### Evaluation photos, {SIZE}², default prior, 1 thread per job\n")
        print("| task | image | solver | ζ′ | steps | K | NFE | PSNR | SSIM | PSNR oracle | SSIM oracle | CPU s | peak MB |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for r in sorted(ev, key=lambda r: (r["task"], r["image"], r["solver"])):
            k = r.get("samples", 1)
            print(f"| {r['task']} | {r['image']} | {r['solver']} | {_fmt(r.get('zeta_used'), '{}')} | {_fmt(r.get('steps'), '{}')} | {k} | "
                  f"{_fmt(r.get('nfe'), '{}')} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                  f"{_fmt(r['psnr_oracle'] if k > 1 else None, '{:.2f}')} | {_fmt(r['ssim_oracle'] if k > 1 else None, '{:.4f}')} | "
                  f"{r.get('cpu_seconds', r['seconds']):.0f} | {r['peak_mb']:.0f} |")
    curve = [r for r in rows if r["task"] == "motion" and r["image"] == STEPS_IMAGE and r["part"] in ("steps", "eval")]
    if len(curve) > 1:
        print(f"\n### Quality vs steps: motion deblurring, {STEPS_IMAGE}, {SIZE}²\n")
        print("| steps | ζ′ | PSNR | SSIM | CPU s |\n| --- | --- | --- | --- | --- |")
        for r in sorted(curve, key=lambda r: r["steps"]):
            print(f"| {r['steps']} | {r.get('zeta_used')} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r.get('cpu_seconds', r['seconds']):.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", required=True, help="tune, fewsteps, eval, steps or report; several comma-separated share one queue")
    p.add_argument("--tasks", default=None,
                   help="only these task families (comma-separated), e.g. phase_retrieval,poisson; PART:TASK limits one part")
    p.add_argument("--steps", type=int, default=250, help="evaluation steps")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--results", type=Path, default=Path.home() / ".cache" / "invkit" / "bench_dps.jsonl")
    args = p.parse_args()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    parts = [s.strip() for s in args.part.split(",")]
    unknown = set(parts) - {"tune", "fewsteps", "eval", "steps", "report"}
    if unknown:
        p.error(f"unknown --part {', '.join(sorted(unknown))}")
    if parts != ["report"]:
        done = {_key(r) for r in _load(args.results)}
        tasks = set(args.tasks.split(",")) if args.tasks else None
        todo = []
        for part in parts:
            for j in jobs_for(part, args.steps):
                if _key(j) not in done and (tasks is None or j["task"] in tasks or f"{part}:{j['task']}" in tasks):
                    todo.append(j)
                    done.add(_key(j))  # a job two parts share (the steps curve's evaluation point) runs once
        # the longest first, so the workers finish together
        todo.sort(key=lambda j: -(j.get("steps") or 0) * j.get("samples", 1))
        with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
            for row in pool.imap_unordered(run_job, todo):
                with args.results.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps({k: row[k] for k in ("task", "image", "solver", "zeta", "steps", "psnr", "seconds")}), flush=True)
    report(_load(args.results))


if __name__ == "__main__":
    main()
