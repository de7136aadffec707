#!/usr/bin/env python
"""Peak memory of one DPS step against one plain prior evaluation, with and without gradient
checkpointing of the prior's network (issue 14, "Measure"); prints a markdown table.

Each case runs in a fresh subprocess (CPU): the peak resident set size after the work minus the
peak after loading the prior and allocating the input, so the numbers are the extra memory the
step itself needs. Cases: ``denoise`` under ``torch.no_grad`` (what DDRM does per step), a DPS
step (``denoise`` with autograd, the measurement residual's gradient through the network) and the
same with ``grad_checkpoint=true``. Default prior, one 3×S×S image.

Usage:
    python benchmarks/dps_memory.py --size 256 --threads 1
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = ("denoise (no grad)", "DPS step", "DPS step, grad_checkpoint")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_case(case: str, size: int, threads: int) -> dict:
    import torch

    import invkit
    from invkit_solvers.dps import DPS

    torch.set_num_threads(threads)
    args = ["grad_checkpoint=true"] if case.endswith("grad_checkpoint") else []
    prior = invkit.get_registry().build("prior", "default", args)
    op = invkit.get_registry().build_operator("gaussian_blur", (3, size, size))
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    problem = invkit.Problem(op, op.forward(x), invkit.GaussianNoise(0.05))
    with torch.no_grad():
        prior.denoise(torch.rand(1, 3, 16, 16), 0.5)  # warm-up at a tiny size: allocator and kernels loaded
    base = _peak_mb()
    start = time.perf_counter()
    if case.startswith("denoise"):
        with torch.no_grad():
            prior.denoise(x, 0.5)
    else:
        sig = float(prior.sigma_grid[500])
        # one step: σ → 0 (a schedule [σ, σ′] would get a final 0 appended: two steps)
        DPS(zeta=0.3).solve(problem, prior, sigmas=[sig, 0.0], generator=torch.Generator().manual_seed(1))
    seconds = time.perf_counter() - start
    return {"case": case, "extra_mb": _peak_mb() - base, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256, help="image side S (multiple of 8)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--case", default=None, help=argparse.SUPPRESS)  # internal: run one case in this process
    args = p.parse_args()
    if args.case is not None:
        print(json.dumps(run_case(args.case, args.size, args.threads)))
        return
    rows = []
    for case in CASES:
        out = subprocess.run([sys.executable, __file__, "--case", case, "--size", str(args.size), "--threads", str(args.threads)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"Default prior, 1×3×{args.size}×{args.size}, {args.threads} thread(s); extra peak RSS over the loaded prior\n")
    print("| case | extra peak memory (MB) | seconds |")
    print("| --- | --- | --- |")
    for r in rows:
        print(f"| {r['case']} | {r['extra_mb']:.0f} | {r['seconds']:.2f} |")


if __name__ == "__main__":
    main()
