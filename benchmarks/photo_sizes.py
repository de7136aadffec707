#!/usr/bin/env python
"""Seconds per megapixel of one DDRM step with the default prior at photo sizes (issue 18).

For each operator and size: build the operator (its set-up timed apart), then run DDRM for
``--steps`` steps (one sample) on a synthetic photo-like image with the prior as the runner
would use it (``--tile auto``: tiles above ``TILE_AUTO_PIXELS``; ``--tile on|off|both`` to compare), and print the seconds per step,
per step and megapixel, the ratio to the 1 MP figure, the runner's estimate of a step's prior
evaluation made before it (:class:`invkit.runner.Timer`: its range, and the measured step over
the range's middle), the step's system CPU time and minor page faults (memory zero-filled by the
kernel: what :func:`invkit.keep_freed_memory` avoids), and the process's peak resident memory so far. ``denoising`` times the prior's path alone; ``gaussian_blur`` adds the separable SVD's
O(C H W (H + W)) products, ``blur`` the FFT's O(n log n); ``compressed_sensing`` needs
power-of-two sides and runs at 4096x2048 only.

Stop the background training first; the table states the threads.

Usage:
    python benchmarks/photo_sizes.py --threads 2 [--sizes 0.25,1,4,12] [--operators denoising,gaussian_blur,blur,compressed_sensing]
    python benchmarks/photo_sizes.py --sizes 0.25,624x832,1 --operators denoising --steps 3 --tile both   # where tiles start to pay
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import torch

import invkit
from invkit.runner import Timer
from invkit.runner.inputs import simulate_measurement
from invkit.runner.options import TILE_AUTO_PIXELS
from invkit.runner.progress import format_duration

#: Sizes (H, W) for the megapixel figures: 4:3 photos, sides multiples of 8.
SIZES = {0.25: (432, 576), 1: (864, 1152), 4: (1728, 2304), 12: (3000, 4000)}


def _photo(h: int, w: int) -> torch.Tensor:
    """A smooth, photo-like test image (1, 3, h, w) in [0, 1]: low-frequency colour fields plus fine texture."""
    g = torch.Generator().manual_seed(0)
    low = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 8, generator=g), size=(h, w), mode="bicubic", align_corners=False)
    return (low + 0.05 * torch.randn(1, 3, h, w, generator=g)).clamp(0, 1).double()


def _size(text: str) -> tuple[int, int]:
    """A ``--sizes`` entry: one of :data:`SIZES` (megapixels), or ``HxW``."""
    if "x" in text:
        h, w = (int(v) for v in text.split("x"))
        return h, w
    return SIZES[next(k for k in SIZES if math.isclose(k, float(text)))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sizes", default="0.25,1,4,12", help="megapixel sizes among " + ", ".join(map(str, SIZES)) + ", or HxW")
    p.add_argument("--operators", default="denoising,gaussian_blur,blur,compressed_sensing")
    p.add_argument("--steps", type=int, default=1)
    p.add_argument("--tile", choices=("auto", "on", "off", "both"), default="auto",
                   help="as the runner's --tile (auto: tiles above TILE_AUTO_PIXELS); both: each size untiled, then tiled")
    p.add_argument("--returned", action="store_true", help="leave glibc's default (freed memory returned): the invkit command keeps it")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    kept = False if args.returned else invkit.keep_freed_memory()  # as the invkit command does
    reg = invkit.get_registry()
    prior = reg.build("prior", "default", [])
    tiled = invkit.TiledPrior(prior)
    solver = reg.build("solver", "ddrm", [])
    print(f"threads {args.threads}, torch {torch.__version__}; DDRM {args.steps} steps, one sample; tiles above {TILE_AUTO_PIXELS / 1e6:g} MP; freed memory kept: {kept}\n")
    def auto(shape: tuple[int, int, int]) -> invkit.Prior:
        """As the runner's ``--tile auto``: tiles above TILE_AUTO_PIXELS."""
        return tiled if shape[1] * shape[2] > TILE_AUTO_PIXELS else prior

    choices = {"auto": [auto], "on": [lambda shape: tiled], "off": [lambda shape: prior]}
    choices["both"] = choices["off"] + choices["on"]
    timers = [Timer(prior, torch.device("cpu"), prior.size_multiple, solver, prior_for=f) for f in choices[args.tile]]
    print("| operator | size | MP | tiled | set-up (s) | s/step | s/step/MP | vs 1 MP | estimate of a step | step / estimate | system CPU s/step | page faults/step | peak RSS (GB) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.operators.split(","):
        per_mp_1: dict[int, float] = {}  # per tiling choice
        sizes = [(2048, 4096)] if name == "compressed_sensing" else [_size(v) for v in args.sizes.split(",")]
        for (h, w), timer in ((size, timer) for size in sizes for timer in timers):
            prior_for = timer.prior_for
            clean = _photo(h, w)
            t0 = time.perf_counter()
            op = reg.build_operator(name, (3, h, w), {"sigma": 2.0} if name == "gaussian_blur" else {})
            if isinstance(op, invkit.SVDOperator):
                op.singular_values  # noqa: B018 - lazy factors are set-up
            setup = time.perf_counter() - t0
            noise = invkit.GaussianNoise(0.02)
            problem = invkit.Problem(op, simulate_measurement(op, clean, noise, seed=0), noise)
            use = prior_for((3, h, w))
            est = timer.per_eval(3, h, w)
            before = resource.getrusage(resource.RUSAGE_SELF)
            t0 = time.perf_counter()
            solver.solve(problem, use, steps=args.steps, generator=[torch.Generator().manual_seed(0)])
            per_step = (time.perf_counter() - t0) / args.steps
            after = resource.getrusage(resource.RUSAGE_SELF)
            sys_step, faults = (after.ru_stime - before.ru_stime) / args.steps, (after.ru_minflt - before.ru_minflt) / args.steps
            mp = h * w / 1e6
            per_mp = per_step / mp
            if math.isclose(mp, 1.0, rel_tol=0.01):
                per_mp_1[id(timer)] = per_mp
            ratio = f"{per_mp / per_mp_1[id(timer)]:.2f}" if id(timer) in per_mp_1 else "–"
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # KiB -> GB (10^9 bytes)
            guess = f"{format_duration(est.low)} to {format_duration(est.high)}" if est else "–"
            vs = f"{per_step / est.mid:.2f}" if est else "–"
            print(f"| {name} | {w}x{h} | {mp:.2f} | {'yes' if use is tiled else 'no'} | {setup:.1f} | {per_step:.1f} | {per_mp:.1f} | {ratio} | {guess} | {vs} | {sys_step:.1f} | {faults:.0f} | {peak:.1f} |", flush=True)


if __name__ == "__main__":
    main()
