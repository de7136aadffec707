"""
Inpainting half of the pixels
=============================

Half of the pixels of a photo are missing, at random (the same pixels in every channel).
The measurement is the compact vector of the pixels that remain, and the SVD of the
operator is a permutation: kept pixels first, every singular value 1. DDRM stays close to the
measured pixels and lets the prior fill in the others.
"""

# %%
# The problem
# -----------
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


x = photo("chelsea", top=40, left=120)
registry = invkit.get_registry()
op = registry.build_operator("inpainting", x.shape[1:], ["mask=random", "fraction=0.5", "seed=0"])
problem = invkit.Problem.simulate(op, x, noise=0.01, generator=torch.Generator().manual_seed(0))
print(f"image {op.in_shape}: {op.in_numel} values; measurement {op.out_shape}: the {op.out_numel} kept ones")

# %%
# The measurement is not an image. Its adjoint ``Hᵀ y`` (here also the pseudo-inverse) puts
# the kept values back in place, with zeros (black) in the holes: that is how the measurement
# is shown below.
holes = op.adjoint(problem.y)

# %%
# DDRM with the default prior
# ---------------------------
prior = registry.build("prior", "default", [])
solver = registry.build("solver", "ddrm", [])
start = time.perf_counter()
result = solver.solve(problem, prior, steps=20, generator=torch.Generator().manual_seed(0))
seconds = time.perf_counter() - start
restored = result.x.clamp(0, 1)
print(f"20 steps in {seconds:.1f} s")
print(f"PSNR measurement (holes at 0): {psnr(holes, x):.2f} dB")
print(f"PSNR DDRM sample: {psnr(restored, x):.2f} dB")

# %%
# The error is larger on the missing pixels, which the prior filled in, than on the measured
# ones.
missing = ~op.mask[0]
err = (restored - x)[0].pow(2).mean(dim=0).sqrt()
print(f"RMS error on the kept pixels: {err[~missing].pow(2).mean().sqrt():.4f}, on the missing ones: {err[missing].pow(2).mean().sqrt():.4f}")


# %%
def show(ax, img, title):
    ax.imshow(img[0].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.axis("off")


fig, axes = plt.subplots(1, 4, figsize=(10, 2.9), layout="constrained")
show(axes[0], holes, f"50 % of the pixels\n{psnr(holes, x):.2f} dB")
show(axes[1], restored, f"DDRM, 20 steps\n{psnr(restored, x):.2f} dB")
axes[2].imshow(err.numpy(), cmap="magma", vmin=0, vmax=0.25)
axes[2].set_title("|restored − clean|", fontsize=9)
axes[2].axis("off")
show(axes[3], x, "clean")
plt.show()

# %%
# Other masks: ``mask=box`` removes a rectangle (``top``, ``left``, ``height``, ``width``),
# ``mask=file mask_file=PATH`` reads a black-and-white image (white = kept). A large box is a
# harder problem than scattered pixels: far from every measured pixel, the prior alone
# decides. On the prior's evaluation set (``docs/default_prior.md``), DDRM on 50 % random
# inpainting trails classical biharmonic inpainting (``skimage.restoration.inpaint_biharmonic``)
# by 3.0 dB: a small, young prior is not yet a better interpolator of smooth regions.
