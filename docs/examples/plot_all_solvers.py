"""
Every solver on one problem
===========================

Ask the registry which solvers can take a problem, run each of them on it, and compare. Solvers
declare what they need (an SVD, Gaussian noise, gradients through the prior, ...) as data, so
the registry can answer before any work is done, and a plugin solver that a third-party package
installs shows up here with no change to this script.
"""

# %%
# Two problems
# ------------
#
# A Gaussian blur (std 1.5 pixels) of a 64×64 crop of scikit-image's ``rocket`` (short side
# resized to 128 first), measured twice: without noise, and with Gaussian noise of std
# σ_y = 0.02 in [0, 1] units. The crop is small because some solvers differentiate through
# the prior and cost about three prior evaluations a step.
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from skimage import data

import invkit
from invkit.metrics import psnr


def photo(name, top, left, size, short=256):
    """A ``size``² crop of a scikit-image photo whose short side was resized to ``short``, as (1, 3, H, W) in [0, 1]."""
    img = torch.from_numpy(getattr(data, name)()).float().div(255)
    x = img.permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    scale = short / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="area")
    return x[..., top : top + size, left : left + size].contiguous()


x = photo("rocket", top=64, left=90, size=64, short=128)
registry = invkit.get_registry()
op = registry.build_operator("gaussian_blur", x.shape[1:], ["sigma=1.5"])
problems = {
    "noiseless": invkit.Problem.simulate(op, x, noise=0.0),
    "σ_y = 0.02": invkit.Problem.simulate(op, x, noise=0.02, generator=torch.Generator().manual_seed(0)),
}
prior = registry.build("prior", "default", [])

# %%
# Which solvers take them
# -----------------------
#
# :meth:`invkit.Registry.solvers_for` checks each registered solver's ``requires`` against
# what a problem and the prior offer (:func:`invkit.capabilities`). For the others,
# :func:`invkit.missing_capabilities` says what is lacking. Plain DDNM needs a noiseless
# measurement, so the two problems do not get the same set.
takers = {}
for label, problem in problems.items():
    takers[label] = registry.solvers_for(problem, prior)
    print(f"{label}: offered {', '.join(sorted(c.value for c in invkit.capabilities(problem, prior)))}")
    print(f"  taken by {', '.join(takers[label])}")
    for entry in registry.entries("solver"):
        if entry.name not in takers[label]:
            lacking = invkit.missing_capabilities(entry.factory.requires, problem, prior)
            print(f"  refused by {entry.name} (needs {', '.join(c.value for c in lacking)})")

# %%
# Run them all
# ------------
#
# Each solver with its default parameters, 10 steps (well below the solvers' own defaults:
# DDRM 20, DDNM, DDNM⁺, ΠGDM and DiffPIR 100, DPS 1000), one sample, the same seed. A step
# costs one prior evaluation for most solvers and about three for those that differentiate
# through the prior (their ``evaluations_per_step``).
STEPS = 10
results = {}
for label, problem in problems.items():
    print(f"{label}: PSNR blurred input: {psnr(problem.y, x):.2f} dB")
    for name in takers[label]:
        solver = registry.build("solver", name, [])
        start = time.perf_counter()
        out = solver.solve(problem, prior, steps=STEPS, generator=torch.Generator().manual_seed(0))
        seconds = time.perf_counter() - start
        restored = out.x.clamp(0, 1)
        results[label, name] = (restored, seconds)
        print(f"{label}: PSNR {name}: {psnr(restored, x):.2f} dB ({seconds:.1f} s, {solver.evaluations_per_step:g} evaluations/step)")

# %%
# The grids
# ---------
for label, problem in problems.items():
    panels = [("clean", x, None), (f"blurred, {label}", problem.y, None)]
    panels += [(name, *results[label, name]) for name in takers[label]]
    fig, axes = plt.subplots(2, 4, figsize=(10, 5.6), layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, img, seconds) in zip(axes.flat, panels):
        ax.imshow(img[0].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
        score = "" if title == "clean" else f"\n{psnr(img, x):.2f} dB"
        timing = "" if seconds is None else f", {seconds:.1f} s"
        ax.set_title(f"{title}{score}{timing}", fontsize=9)
    fig.suptitle(f"Gaussian blur, {label}, {STEPS} steps")
plt.show()

# %%
# Reading the grids
# -----------------
#
# Ten steps is far below what most of these methods were designed for, so this shows how they
# behave at a tiny budget, not how good they are:
#
# * DDRM and DDNM⁺ work at ten steps with or without noise, and so does DDNM, which takes
#   noiseless measurements only. With noise DDNM⁺ is DDRM (η_b = 1): their results agree.
# * ΠGDM and DiffPIR, at their default parameters, do well without noise but come apart with
#   it at ten steps: their samples keep most of the noise of the start. Give them their
#   papers' 100 steps.
# * DPS fails at ten steps on both: its guidance step is normalised by the residual and its
#   default is the paper's 1000 steps. ``docs/measurements.md`` has its few-step measurements
#   (19–20 dB on motion deblurring at 20 steps with x̂₀ clipped, about 25 dB at 100).
#
# How close each solver's samples come to the exact posterior, measured where it is known
# (analytic priors, 100 steps or more), is in :doc:`/concepts/posterior`.
#
# Solver parameters (``eta`` for DDRM, ``zeta`` for DPS, ``lam`` for DiffPIR, ...) go in the
# ``build`` call as ``key=value`` strings, e.g. ``registry.build("solver", "ddrm", ["eta=0.5"])``,
# as with ``invkit solve --solver-arg``.
