#!/usr/bin/env python
"""DiffPIR's λ floor (``kappa``) on the tuning wallpapers: noisy deblurring at few and many steps.

With noise, the paper's fixed λ lets the data step add more measurement noise than the next
level tells the denoiser (``invkit_solvers.diffpir.diffpir_lambda``); at 10-20 steps the result
falls off a cliff. This script measures PSNR (one sample, seed 0, default prior) of
``gaussian_blur sigma=1.5`` with σ_y = 0.05 at 128² on the **tuning** wallpapers only
(:data:`_eval_data.TUNING_WALLPAPERS`; never the evaluation photos) for each step count and κ
(κ = 0 is the paper), and the λ each run used. It is how κ = 1.25 was chosen.

Usage:
    INVKIT_WALLPAPERS=/path/to/usr/share/wallpapers python benchmarks/diffpir_floor.py --threads 1
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import invkit  # noqa: E402
from _eval_data import TUNING_WALLPAPERS, load_tuning  # noqa: E402
from invkit.metrics import psnr  # noqa: E402
from invkit.runner.inputs import simulate_measurement  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--steps", default="10,20,50,100", help="comma-separated step counts")
    p.add_argument("--kappas", default="0,1,1.25,1.5,2", help="comma-separated κ values (0: the paper's fixed λ)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    steps = [int(v) for v in args.steps.split(",")]
    kappas = [float(v) for v in args.kappas.split(",")]
    images = {k.split(":", 1)[1]: v for k, v in load_tuning(args.size).items() if k.split(":", 1)[-1] in TUNING_WALLPAPERS}
    if not images:
        raise SystemExit("no tuning wallpapers found: set INVKIT_WALLPAPERS to the extracted plasma-workspace-wallpapers folder")
    reg = invkit.get_registry()
    prior = reg.build("prior", "default", [])
    rows: dict[tuple[int, float], list[tuple[float, float]]] = {}
    start = time.perf_counter()
    for name, clean in images.items():
        clean = clean[None].double()
        op = reg.build_operator("gaussian_blur", tuple(clean.shape[1:]), {"sigma": 1.5})
        noise = invkit.GaussianNoise(0.05)
        problem = invkit.Problem(op, simulate_measurement(op, clean, noise, seed=0, name="gaussian_blur"), noise)
        for n in steps:
            for kappa in kappas:
                out = reg.build("solver", "diffpir", [f"kappa={kappa}"]).solve(problem, prior, steps=n, generator=[torch.Generator().manual_seed(0)])
                value = psnr(out.x.double().clamp(0, 1), clean)
                rows.setdefault((n, kappa), []).append((value, float(out.info["lam"])))
                print(f"{name} steps {n} kappa {kappa:g}: {value:.2f} dB (λ {out.info['lam']:.3g})", flush=True)
    names = list(images)
    print(f"\nDiffPIR, gaussian_blur sigma=1.5, σ_y = 0.05, {args.size}², default prior, one sample; PSNR (dB) per tuning image "
          f"({', '.join(names)}) and the λ used ({time.perf_counter() - start:.0f} s)\n")
    print("| steps | κ | " + " | ".join(names) + " | mean | λ used |")
    print("|---|---|" + "---|" * len(names) + "---|---|")
    for (n, kappa), vals in rows.items():
        lams = sorted({round(lam, 3) for _, lam in vals})
        print(f"| {n} | {kappa:g}{' (paper)' if kappa == 0 else ''} | " + " | ".join(f"{v:.2f}" for v, _ in vals)
              + f" | {sum(v for v, _ in vals) / len(vals):.2f} | {', '.join(f'{lam:g}' for lam in lams)} |")


if __name__ == "__main__":
    main()
