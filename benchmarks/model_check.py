#!/usr/bin/env python
"""The model checks' ratios (:mod:`invkit.runner.model_check`) on correct and wrong models.

Each case writes an 8-bit PNG measurement of a **tuning** image (the scikit-image tuning photos
and, with ``INVKIT_WALLPAPERS``, the tuning wallpapers; never the evaluation photos) and restores
it with ``invkit solve``'s runner exactly as a user would (``sigma_y`` estimated from the image
unless the case gives it; DDRM, default prior, its default 20 steps, one sample), then prints the
before-solve ratio (noise-only coefficients' RMS / σ_eff) and the after-solve one (residual RMS /
σ_eff). The thresholds ``TAIL_WARN`` and ``RESIDUAL_WARN`` were chosen between the two groups.

Usage:
    python benchmarks/model_check.py --threads 1 [--size 128]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import invkit  # noqa: E402
from _eval_data import TUNING_SKIMAGE, TUNING_WALLPAPERS, load_tuning  # noqa: E402
from invkit.io import write_image  # noqa: E402
from invkit.runner import RestoreOptions, restore  # noqa: E402
from invkit.runner.inputs import simulate_measurement  # noqa: E402
from invkit.runner.model_check import RESIDUAL_WARN, TAIL_WARN  # noqa: E402

#: (label, correct?, made with (operator, params, sigma_y) or None for the sharp image, restored with (operator, params, --sigma-y or None))
CASES = [
    ("blur σ=3, σ_y 0.02", True, ("gaussian_blur", {"sigma": 3.0}, 0.02), ("gaussian_blur", ["sigma=3"], None)),
    ("blur σ=3, σ_y 0.005", True, ("gaussian_blur", {"sigma": 3.0}, 0.005), ("gaussian_blur", ["sigma=3"], None)),
    ("blur σ=3, σ_y 0.05", True, ("gaussian_blur", {"sigma": 3.0}, 0.05), ("gaussian_blur", ["sigma=3"], None)),
    ("blur σ=3, noiseless (8-bit)", True, ("gaussian_blur", {"sigma": 3.0}, 0.0), ("gaussian_blur", ["sigma=3"], None)),
    ("blur σ=3, σ_y 0.02 given", True, ("gaussian_blur", {"sigma": 3.0}, 0.02), ("gaussian_blur", ["sigma=3"], 0.02)),
    ("blur σ=1, σ_y 0.02", True, ("gaussian_blur", {"sigma": 1.0}, 0.02), ("gaussian_blur", ["sigma=1"], None)),
    ("uniform blur 9, σ_y 0.02", True, ("uniform_blur", {}, 0.02), ("uniform_blur", [], None)),
    ("bicubic SR ×4, σ_y 0.02", True, ("bicubic_super_resolution", {"factor": 4}, 0.02), ("bicubic_super_resolution", ["factor=4"], None)),
    ("sharp photo as blur σ=3", False, None, ("gaussian_blur", ["sigma=3"], None)),
    ("sharp photo as blur σ=1", False, None, ("gaussian_blur", ["sigma=1"], None)),
    ("blur σ=1 as σ=3", False, ("gaussian_blur", {"sigma": 1.0}, 0.02), ("gaussian_blur", ["sigma=3"], None)),
    ("blur σ=2 as σ=3", False, ("gaussian_blur", {"sigma": 2.0}, 0.02), ("gaussian_blur", ["sigma=3"], None)),
    ("blur σ=3, σ_y 0.05 given as 0.005", False, ("gaussian_blur", {"sigma": 3.0}, 0.05), ("gaussian_blur", ["sigma=3"], 0.005)),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--images", type=int, default=3, help="how many tuning images (skimage's first, then the wallpapers)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tuning = load_tuning(args.size)
    names = [k for k in tuning if k.split(":", 1)[-1] in TUNING_WALLPAPERS][: args.images]
    names += [k for k in tuning if k.split(":", 1)[-1] in TUNING_SKIMAGE and tuning[k].shape[0] == 3][: max(0, args.images - len(names))]
    if not names:
        raise SystemExit("no tuning images found")
    reg = invkit.get_registry()
    rows = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for label, correct, made, restored in CASES:
            for name in names:
                clean = tuning[name][None].double()
                src = Path(tmp) / f"{len(rows)}.png"
                if made is None:
                    y = clean
                else:
                    op = reg.build_operator(made[0], tuple(clean.shape[1:]), made[1])
                    y = simulate_measurement(op, clean, made[2], seed=0)
                write_image(src, y.clamp(0, 1), bits=8)
                opts = RestoreOptions(src, Path(tmp) / f"{len(rows)}_out.png", operator=restored[0], operator_args=restored[1], sigma_y=restored[2])
                record = restore(opts, registry=reg)[0]["model_check"]
                rows.append((label, correct, name.split(":", 1)[-1], record["tail_rms_over_sigma"], record["residual_rms_over_sigma"]))
                print(f"{label} | {name}: before {record['tail_rms_over_sigma']} after {record['residual_rms_over_sigma']}", flush=True)
    print(f"\nModel checks, {args.size}² 8-bit PNG measurements of tuning images, DDRM default prior 20 steps ({time.perf_counter() - start:.0f} s); "
          f"warn above {TAIL_WARN} (before) and {RESIDUAL_WARN} (after)\n")
    print("| case | model | image | before: tail RMS / σ_eff | after: residual RMS / σ_eff |")
    print("|---|---|---|---|---|")
    for label, correct, name, tail, res in rows:
        fmt = lambda v, warn: "–" if v is None else f"{v:.2f}{' ⚠' if v > warn else ''}"  # noqa: E731
        print(f"| {label} | {'right' if correct else 'wrong'} | {name} | {fmt(tail, TAIL_WARN)} | {fmt(res, RESIDUAL_WARN)} |")


if __name__ == "__main__":
    main()
