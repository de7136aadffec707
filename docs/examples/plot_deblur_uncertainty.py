"""
Deblurring with uncertainty
===========================

Restore a blurred, noisy photo with DDRM and the built-in ``default`` prior, draw K = 4
posterior samples, and look at their mean and at their per-pixel standard deviation: where the
samples disagree, the measurement did not pin the image down and the prior filled it in.
"""

# %%
# The problem
# -----------
#
# A 128×128 crop of scikit-image's ``astronaut`` (short side resized to 256 first), in
# invkit's units: a float tensor ``(B, C, H, W)`` with pixels in [0, 1].
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from skimage import data

import invkit
from invkit.metrics import psnr


def photo(name, top, left, size=128):
    """A ``size``² crop of a scikit-image photo whose short side was resized to 256, as (1, 3, H, W) in [0, 1]."""
    img = torch.from_numpy(getattr(data, name)()).float().div(255)
    x = img.permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    scale = 256 / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="area")
    return x[..., top : top + size, left : left + size].contiguous()


x = photo("astronaut", top=0, left=64)
print(tuple(x.shape))

# %%
# The degradation is a Gaussian blur of std 2 pixels (reflecting boundaries) followed by
# Gaussian noise of std σ_y = 0.02 in [0, 1] units (about 5 grey levels of 255). Operators
# are built by name from the registry, with the same ``key=value`` arguments as
# ``invkit solve --arg``; :meth:`invkit.Problem.simulate` applies the operator and draws the
# noise from a seeded generator.
registry = invkit.get_registry()
op = registry.build_operator("gaussian_blur", x.shape[1:], ["sigma=2.0"])
problem = invkit.Problem.simulate(op, x, noise=0.02, generator=torch.Generator().manual_seed(0))
print(op, problem.noise)

# %%
# Posterior samples
# -----------------
#
# The prior is the built-in one (``--prior default`` on the command line); the solver is DDRM
# with its default parameters (η = 0.85, η_b = 1). :meth:`invkit.Problem.repeat` repeats the
# measurement K times, so one call draws K samples; ``invkit.sample_generators(seed, 0, K)``
# gives each sample its own generator, the ones ``invkit solve --seed 0 --samples 4`` uses, so
# every sample is reproducible on its own whatever the batch. Ten steps keep this page fast
# (DDRM's default is 20).
K, STEPS = 4, 10
prior = registry.build("prior", "default", [])
solver = registry.build("solver", "ddrm", [])

start = time.perf_counter()
result = solver.solve(problem.repeat(K), prior, steps=STEPS, generator=invkit.sample_generators(0, 0, K))
seconds = time.perf_counter() - start
samples = result.x.clamp(0, 1)
print(f"{K} samples x {STEPS} steps in {seconds:.1f} s")

# %%
# The posterior mean is the average of the samples. The uncertainty map is the per-pixel
# standard deviation of the samples, root mean square over the colour channels (what
# ``invkit solve --samples 4`` writes as ``OUT_std.png``).
mean = samples.mean(dim=0, keepdim=True)
std = samples.std(dim=0).pow(2).mean(dim=0).sqrt()
error = (mean - x)[0].pow(2).mean(dim=0).sqrt()

print(f"PSNR blurred input: {psnr(problem.y, x):.2f} dB")
for i in range(K):
    print(f"PSNR sample {i + 1}: {psnr(samples[i : i + 1], x):.2f} dB")
print(f"PSNR posterior mean: {psnr(mean, x):.2f} dB")
print(f"std map: mean {std.mean():.4f}, max {std.max():.4f}; error of the mean: mean {error.mean():.4f}, max {error.max():.4f}")

# %%
# Side by side
# ------------
#
# Top row: the measurement, the posterior mean, the std map and, for comparison, the actual
# error of the mean (which needs the clean image, unlike the std map), each on its own colour
# scale in [0, 1] units. Compare the scales: the std of the samples is smaller than the actual
# error. Four samples give a rough estimate, and DDRM's samples are less spread than the
# exact posterior's (measured on analytic priors, :doc:`/concepts/posterior`), so read the std
# map as *where* to distrust the restoration rather than *by how much*. Bottom row: the clean
# crop and three of the samples. The samples differ in fine texture (hair, the suit's
# fabric); the std map is bright at edges and textures, where the blur removed most of the
# signal, and dark on flat regions, where any plausible image looks the same.


def show(ax, img, title):
    ax.imshow(img[0].permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_title(title, fontsize=9)
    ax.axis("off")


fig, axes = plt.subplots(2, 4, figsize=(10, 5.4), layout="constrained")
show(axes[0, 0], problem.y, f"blurred + noise\n{psnr(problem.y, x):.2f} dB")
show(axes[0, 1], mean, f"posterior mean of {K}\n{psnr(mean, x):.2f} dB")
for ax, img, title in ((axes[0, 2], std, "posterior std\n(per pixel)"), (axes[0, 3], error, "|mean − clean|\n(needs the clean image)")):
    im = ax.imshow(img.numpy(), cmap="magma", vmin=0)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.colorbar(im, ax=ax, shrink=0.8)
show(axes[1, 0], x, "clean")
for i in range(3):
    show(axes[1, i + 1], samples[i : i + 1], f"sample {i + 1}\n{psnr(samples[i : i + 1], x):.2f} dB")
plt.show()

# %%
# On the command line, the same restoration of a whole clean photo (``--simulate`` degrades
# it first and reports the scores)::
#
#     invkit solve --simulate --input astronaut.png --output restored.png \
#         --operator gaussian_blur --arg sigma=2.0 --sigma-y 0.02 --samples 4 --steps 10
#
# which writes the mean, ``restored_std.png`` and the samples; see :doc:`/guide/restore_photo`.
