"""
Writing an operator plugin
==========================

Add a degradation of your own, check it, register it and restore with it. The example is
**vignetting**: a lens darkens the corners of the picture, and the dark corners are the noisy
ones. As an operator ``H`` multiplies each pixel by a gain ``g = (1 + (r/f)²)⁻²`` (the
"cos⁴ law" of a thin lens) that falls off with the distance ``r`` from the centre, in units of
the half-diagonal (a corner has ``r = 1``), the same in every channel; ``f`` sets how fast.

The operator climbs the forward-model ladder of ``invkit.forward`` in two rungs:

1. an :class:`invkit.LinearOperator` with ``forward`` and ``adjoint`` only: the checks verify
   it, and SVD-based solvers already take it at small sizes through the dense-SVD fallback;
2. an :class:`invkit.SVDOperator` that also states its SVD ``H = U Σ Vᵀ``: then it works at any
   size.

The plugin author's guide (:doc:`/guide/plugins`) shows how a package exposes such a class
through an entry point; here it is registered in a throwaway registry instead.
"""

# %%
# Rung 1: forward and adjoint
# ---------------------------
#
# The parameter is declared once, in the ``__init__`` signature (``Annotated`` with an
# :class:`invkit.Arg`): invkit derives the ``params`` schema from it, so ``--arg falloff=0.5``
# strings and Python values are validated the same way. ``check_shape`` is the small shape
# ``invkit check-operator`` and the conformance tests use. Constants are built once in float64
# and cast to the input's device and dtype by ``self.const`` (cached).
import time
from typing import Annotated

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from skimage import data

import invkit
from invkit.metrics import psnr
from invkit.params import format_schema


class Vignetting(invkit.LinearOperator):
    """Vignetting: each pixel times the gain (1 + (r/f)²)⁻², r = distance from the centre / half-diagonal."""

    name = "vignetting"
    check_shape = (2, 6, 5)

    def __init__(
        self,
        in_shape,
        *,
        falloff: Annotated[float, invkit.Arg("f: the gain is 1/4 at r = f (r = 1 in the corners)", min=0.0, min_inclusive=False)] = 0.6,
    ):
        super().__init__(in_shape)
        _, h, w = self.in_shape
        yy = torch.arange(h, dtype=torch.float64) - (h - 1) / 2
        xx = torch.arange(w, dtype=torch.float64) - (w - 1) / 2
        r2 = (yy[:, None] ** 2 + xx[None, :] ** 2) / (((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2 + 1e-300)
        self.gain = (1 + r2 / falloff**2) ** -2  # (H, W), float64, in (0, 1]

    @property
    def out_shape(self):
        return self.in_shape

    def forward(self, x):
        self.check_image(x)
        return x * self.const("gain", self.gain, x)

    def adjoint(self, y):
        self.check_measurement(y)
        return y * self.const("gain", self.gain, y)  # a diagonal matrix is its own transpose


print(format_schema(Vignetting.params))
op = Vignetting((2, 6, 5), falloff=0.5)
print(op, "corner gain", float(op.gain[0, 0]))

# %%
# Check it
# --------
#
# :func:`invkit.run_checks` is what ``invkit check-operator`` runs: every check its rung
# claims, with the measured error and the tolerance. For a linear operator: the shapes, the
# vector-Jacobian product against finite differences, ``<H x, y> = <x, Hᵀ y>``, and autograd's
# gradient of ``forward`` equal to ``adjoint`` (gradient-based solvers such as DPS rely on it).
report = invkit.run_checks(op)
print(report.table())
assert report.passed


# %%
# A classic slip does not get through: an "adjoint" that undoes the vignetting (divides by the
# gain) instead of transposing it.
class InverseNotAdjoint(Vignetting):
    def adjoint(self, y):
        return y / self.const("gain", self.gain, y)


report = invkit.run_checks(InverseNotAdjoint((2, 6, 5)))
print(report.table())
print("PASSED" if report.passed else "FAILED, as it should")

# %%
# Already usable: the dense fallback
# ----------------------------------
#
# A linear operator without an SVD of its own still works with the SVD-based solvers when it
# is small: :meth:`invkit.Problem.require_svd` materialises its matrix and factors it
# (:class:`invkit.DenseSVD`, up to ``max(m, n) = 4096`` by default). A 32×32 grey crop of
# ``camera`` has ``n = 1024``.


def photo(name, top, left, size, short=256):
    """A ``size``² crop of a scikit-image photo whose short side was resized to ``short``, (1, C, H, W) in [0, 1]."""
    img = torch.from_numpy(getattr(data, name)()).float().div(255)
    x = img.permute(2, 0, 1)[None] if img.dim() == 3 else img[None, None]
    h, w = x.shape[-2:]
    scale = short / min(h, w)
    x = F.interpolate(x, size=(round(h * scale), round(w * scale)), mode="area")
    return x[..., top : top + size, left : left + size].contiguous()


registry = invkit.get_registry()
prior = registry.build("prior", "default", [])
ddrm = registry.build("solver", "ddrm", [])

small = photo("camera", top=12, left=28, size=32, short=128)
small_problem = invkit.Problem.simulate(Vignetting(small.shape[1:]), small, noise=0.02, generator=torch.Generator().manual_seed(0))
print("solvers that take it:", ", ".join(registry.solvers_for(small_problem, prior)))
start = time.perf_counter()
small_result = ddrm.solve(small_problem, prior, steps=10, generator=torch.Generator().manual_seed(0))
print(f"DDRM through the dense SVD: {time.perf_counter() - start:.1f} s")


# %%
# Rung 2: the SVD
# ---------------
#
# ``H`` is diagonal, so its SVD needs no computation: ``U = V = I`` (an image is its own
# spectral vector, flattened) and the singular values are the gains, one per pixel and
# channel. The SVD protocol asks for exactly that: ``Vt``/``V`` between images and flat
# spectral vectors, ``Ut``/``U`` between measurements and flat vectors, and
# ``singular_values`` (float64) for the first ``min(m, n)`` spectral coordinates, in the
# operator's own order (solvers never assume they are sorted). ``forward`` and ``adjoint`` stay
# the direct ones; the checks compare them with the SVD form and the SVD with the dense matrix.
class VignettingSVD(Vignetting, invkit.SVDOperator):
    """Vignetting with its SVD (diagonal: U = V = I, singular values = gains): any size."""

    @property
    def singular_values(self):
        return self.gain.expand(self.in_shape).reshape(-1)

    def Vt(self, x):
        self.check_image(x)
        return x.reshape(x.shape[0], -1)

    def V(self, z):
        self.check_spectral(z)
        return z.reshape(z.shape[0], *self.in_shape)

    def Ut(self, y):
        self.check_measurement(y)
        return y.reshape(y.shape[0], -1)

    def U(self, z):
        self.check_coordinates(z)
        return z.reshape(z.shape[0], *self.out_shape)


report = invkit.run_checks(VignettingSVD((2, 6, 5), falloff=0.5))
print(report.table())
assert report.passed

# %%
# Register it
# -----------
#
# A plugin is an object with hook implementations (``invkit.hookimpl``); the
# ``invkit_register_operators`` hook registers classes by name. An installed package exposes
# its plugin module through the entry-point group ``invkit``; here an in-process plugin goes
# into a registry of our own (the built-ins plus this plugin, attributed to a made-up
# distribution name), and :func:`invkit.use_registry` makes it the process-wide one inside the
# ``with`` block, so that everything that calls :func:`invkit.get_registry` sees it.


class VignettingPlugin:
    @invkit.hookimpl
    def invkit_register_operators(self, register):
        register("vignetting", VignettingSVD)


mine = invkit.Registry(plugins=[(VignettingPlugin(), "vignetting", "my-invkit-vignetting")])
print("registered by:", mine.get("operator", "vignetting").distribution)

# %%
# Restore with it
# ---------------
#
# The whole ``astronaut`` photo resized to 128×128, strong vignetting (``falloff=0.5``: the
# corners keep 4 % of their light) and noise σ_y = 0.02. Dividing by the gain (the
# pseudo-inverse ``H⁺ y``) restores the brightness but multiplies the noise by up to 25 in the
# corners; DDRM weighs each pixel by its own signal-to-noise ratio.
x = photo("astronaut", top=0, left=0, size=128, short=128)
with invkit.use_registry(mine):
    reg = invkit.get_registry()
    op = reg.build_operator("vignetting", x.shape[1:], ["falloff=0.5"])
    problem = invkit.Problem.simulate(op, x, noise=0.02, generator=torch.Generator().manual_seed(0))
    print("solvers that take it:", ", ".join(reg.solvers_for(problem, prior)))
    start = time.perf_counter()
    result = ddrm.solve(problem, prior, steps=10, generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - start
restored = result.x.clamp(0, 1)
pinv = op.pinv(problem.y).clamp(0, 1)
print(f"DDRM, 10 steps: {seconds:.1f} s")
print(f"PSNR measurement: {psnr(problem.y, x):.2f} dB")
print(f"PSNR pseudo-inverse: {psnr(pinv, x):.2f} dB")
print(f"PSNR DDRM: {psnr(restored, x):.2f} dB")


# %%
def show(ax, img, title):
    ax.imshow(img[0].permute(1, 2, 0).clamp(0, 1).numpy().squeeze(), interpolation="nearest", cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.axis("off")


fig, axes = plt.subplots(1, 4, figsize=(10, 2.9), layout="constrained")
show(axes[0], problem.y, f"vignetted + noise\n{psnr(problem.y, x):.2f} dB")
show(axes[1], pinv, f"divided by the gain\n{psnr(pinv, x):.2f} dB")
show(axes[2], restored, f"DDRM, 10 steps\n{psnr(restored, x):.2f} dB")
show(axes[3], x, "clean")

fig, axes = plt.subplots(1, 3, figsize=(6.5, 2.5), layout="constrained")
show(axes[0], small_problem.y, "32×32, vignetted")
show(axes[1], small_result.x, "DDRM via DenseSVD")
show(axes[2], small, "clean")
plt.show()

# %%
# From here to a package: put the class and the hook function in a module, name the module in
# ``[project.entry-points.invkit]`` of your ``pyproject.toml`` and install the package. Then
# ``invkit plugins`` lists the operator with its distribution, ``invkit check-operator
# vignetting --arg falloff=0.5`` checks it, ``invkit solve --operator vignetting`` restores
# with it, and invkit's conformance suites cover it; see :doc:`/guide/plugins`.
