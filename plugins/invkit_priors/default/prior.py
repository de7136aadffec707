"""invkit's built-in natural-image prior (``--prior default``, used when ``--prior`` is omitted).

A small ADM UNet (:meth:`~invkit_priors.networks.adm.ADMConfig.small`, 7.6 M parameters, attention
only at 1/8 resolution, fully convolutional: any size divisible by 8) trained here on CPU with
``scripts/train_default_prior.py`` on photographs from Debian's wallpaper packages and
scikit-image (never on the evaluation images). Weights ship inside the package as float16
safetensors (``weights/default.safetensors``), with the architecture flags, noise schedule and
training provenance in the file's metadata; docs/default_prior.md is the model card.

RGB images are denoised directly. A grayscale image (C = 1), ``y = x + sigma n``, is copied
to R, G and B and given extra noise ``sqrt(3) sigma (z_c - mean_c z_c)`` with ``z`` standard
normal per channel. Each channel's noise is then independent with std ``sqrt(3) sigma`` (the
noise the network saw on the 10% grey training crops), while the channel mean is still ``y``
(to float rounding): nothing is added to or lost from the measurement. The network denoises
at ``sqrt(3) sigma`` and the mean of the three channels is returned.

Copying the grey image alone gives noise that is identical in the three channels, which the
network has never seen: at large sigma its estimate is useless, and DDRM on grey images then
fails (measured in docs/measurements.md; the evaluation numbers are in docs/default_prior.md).

The extra noise comes from one generator per image, seeded from its sigma, its size and a
subsample of its pixels. So ``denoise`` stays a deterministic function of its inputs that does
not depend on the batch, while different inputs (such as DDRM's independent samples) get
different extra noise. Where sigma is 0 the input is returned unchanged.

Example:
    >>> import torch
    >>> from invkit_priors.default.prior import load_default_prior
    >>> prior = load_default_prior()
    >>> x = torch.full((1, 3, 16, 16), 0.5)
    >>> tuple(prior.denoise(x, 0.1).shape)
    (1, 3, 16, 16)
"""

from __future__ import annotations

import hashlib
import math
from importlib import resources
from pathlib import Path
from typing import Annotated

import torch
from torch import Tensor

from invkit.params import Arg, validated
from invkit.prior import Prior, sigma_rows

from ..adapters.vp import VPDiffusionPrior

__all__ = ["DefaultPrior", "load_default_prior", "default_weights_path"]


def default_weights_path() -> Path:
    """Where the packaged weights are."""
    return Path(str(resources.files("invkit_priors.default") / "weights" / "default.safetensors"))


class DefaultPrior(Prior):
    """The built-in natural-image prior: RGB diffusion model, grayscale through the grey axis.

    Args:
        rgb: The RGB prior (a :class:`~invkit_priors.adapters.vp.VPDiffusionPrior`).
    """

    name = "default"
    tileable = True  # a convolutional network trained on crops (docs/measurements.md, "The prior on tiles")

    def __init__(self, rgb: VPDiffusionPrior) -> None:
        self.rgb = rgb
        self.sigma_grid = rgb.sigma_grid
        self.data_center = rgb.data_center
        self.channels = None  # 1 or 3
        self.image_size = None  # any size divisible by the network's multiple (8)
        self.size_multiple = max(int(getattr(rgb, "size_multiple", 1)), 1)

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"prior 'default' takes (B, 1, H, W) or (B, 3, H, W) images in [0, 1], got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(
                f"prior 'default' needs H and W divisible by {self.size_multiple}, got {h}x{w}; "
                f"pad or crop to {h - h % 8 or 8}x{w - w % 8 or 8} (the CLI's --pad/--crop)"
            )
        if x.shape[1] == 3:
            return self.rgb.denoise(x, sigma)
        return self._denoise_grey(x, sigma)

    def _denoise_grey(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        b = x.shape[0]
        s = sigma_rows(sigma, b)
        if not bool(torch.any(s > 0)):
            return x
        # One generator per image, seeded from its sigma (as float32, so 0.1 and a float32 tensor
        # agree), its size and a subsample of its pixels: deterministic, independent of the batch,
        # and different for different inputs (DDRM's samples do not share one noise pattern).
        probe = x.detach().reshape(b, -1)[:, ::61].to(device="cpu", dtype=torch.float32).contiguous()
        z = torch.empty((b, 3, *x.shape[2:]), dtype=torch.float64)
        for i in range(b):
            key = s[i : i + 1].float().numpy().tobytes() + repr(tuple(x.shape[1:])).encode() + probe[i].numpy().tobytes()
            seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
            z[i] = torch.randn(z.shape[1:], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        extra = (math.sqrt(3.0) * s.view(b, 1, 1, 1)) * (z - z.mean(dim=1, keepdim=True))
        y3 = x.expand(-1, 3, -1, -1) + extra.to(device=x.device, dtype=x.dtype)
        out = self.rgb.denoise(y3, math.sqrt(3.0) * s, clip=False).mean(dim=1, keepdim=True)
        if self.rgb.clip:  # the average clipped, not the channels: never further from a grey truth
            out = out.clamp(0.0, 1.0)
        zero = (s == 0).to(x.device).view(b, 1, 1, 1)
        return torch.where(zero, x, out) if bool(zero.any()) else out


def load_default_prior(
    device: str = "cpu", half: bool = False, weights: str | Path | None = None, *, clip: bool = False
) -> DefaultPrior:
    """Load the packaged default prior.

    Args:
        device: ``"cpu"``, ``"cuda"``, or ``"auto"`` (CUDA when available).
        half: Run the network in float16 (GPU).
        weights: Another weights file of the same format (e.g. a training run's export, to compare
            with the packaged one); default: the packaged weights.
        clip: Clip ``denoise``'s estimate to [0, 1] (``--prior-arg clip=true``; on grey input the
            channel average is clipped, see :meth:`DefaultPrior.denoise`).
    """
    from ..checkpoints.load import load_checkpoint_prior

    path = default_weights_path() if weights is None else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"the default prior's weights are missing from the installation ({path}); reinstall invkit")
    rgb = load_checkpoint_prior(path, half=half, device=device, clip=clip)
    # NHWC convolves faster on the CPU, and its GroupNorm error was measured small for these
    # weights (docs/measurements.md).
    rgb.set_channels_last(next(rgb.model.parameters()).device.type == "cpu")
    return DefaultPrior(rgb)


@validated
def default(
    device: Annotated[str, Arg("where the network runs: cpu, cuda or auto")] = "cpu",
    half: Annotated[bool, Arg("float16 inference (GPU)")] = False,
    grad_checkpoint: Annotated[
        bool, Arg("recompute activations when a solver differentiates through the prior (dps): less memory, slower")
    ] = False,
    clip: Annotated[
        bool, Arg("clip denoise's estimate to [0, 1] (guided-diffusion's clip_denoised): an exact MMSE estimate lies there; "
                  "+0.3 dB on DDRM colorization of the default prior (docs/default_prior.md)")
    ] = False,
) -> DefaultPrior:
    """invkit's built-in natural-image diffusion prior (small ADM trained here; see docs/default_prior.md)."""
    prior = load_default_prior(device=device, half=half, clip=clip)
    prior.rgb.set_gradient_checkpointing(grad_checkpoint)
    return prior
