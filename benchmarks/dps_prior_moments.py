#!/usr/bin/env python
"""DPS without guidance (ζ′ = 0) is DDPM's ancestral sampler with the fixed β̃: how close are its
samples to the prior's variance at 50, 200 and all 1000 steps? (docs/measurements.md, "DPS
without guidance"; issue 14.)

A Gaussian prior with its exact denoiser (``GaussianPrior.power_law(0.4, 0.05, 1.0, 0.25)``,
variance 0.05 per pixel, 1×2×2), ``--samples`` seeded samples per step count; prints the mean
per-pixel sample variance against the prior's, and the sample mean's largest error in standard
errors. Seconds are wall time of the solve on this machine (compare rows of one run only).

Usage:
    python benchmarks/dps_prior_moments.py --samples 4000
"""

from __future__ import annotations

import argparse
import time

import torch

import invkit
from invkit_operators.denoising import Denoising
from invkit_priors.analytic import GaussianPrior
from invkit_solvers.dps import DPS

F64 = torch.float64


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=4000)
    p.add_argument("--steps", default="50,200,1000", help="comma-separated step counts")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    shape = (1, 2, 2)
    prior = GaussianPrior.power_law(0.4, 0.05, 1.0, 0.25)
    form = prior.gaussian_form(shape).components[0]
    prior_var = float(form.eigenvalues.to(F64).mean())  # tr C / n: the mean per-pixel variance
    mean = form.mean.reshape(-1).to(F64)
    op = Denoising(shape)
    n = args.samples
    problem = invkit.Problem(op, torch.zeros((n, *op.out_shape), dtype=F64), invkit.GaussianNoise(0.1))
    print(f"Gaussian prior (power law, per-pixel variance {prior_var:.3f}), 1x2x2, {n} samples, ζ′ = 0\n")
    print("| steps | sample variance | / prior | max mean error (std. errors) | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for steps in (int(s) for s in args.steps.split(",")):
        t0 = time.perf_counter()
        out = DPS(zeta=0.0).solve(problem, prior, steps=steps, generator=torch.Generator().manual_seed(0)).x.reshape(n, -1)
        seconds = time.perf_counter() - t0
        var = float(out.var(0).mean())
        z = float(((out.mean(0) - mean).abs() / (out.var(0) / n).sqrt()).max())
        print(f"| {steps} | {var:.4f} | {var / prior_var:.3f} | {z:.2f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
