"""invkit's built-in natural-image prior (``--prior default``, used when ``--prior`` is omitted).

A small ADM UNet (:meth:`~invkit_priors.adm_unet.ADMConfig.small`, 7.6 M parameters, attention
only at 1/8 resolution, fully convolutional: any size divisible by 8) trained here on CPU with
``scripts/train_default_prior.py`` on photographs from Debian's wallpaper packages and
scikit-image (never on the evaluation images). Weights ship inside the package as float16
safetensors (``weights/default.safetensors``), with the architecture flags, noise schedule and
training provenance in the file's metadata; docs/default_prior.md is the model card.

RGB images are denoised directly. A grayscale image (C = 1) is replicated to RGB, denoised at
the same sigma, and the channel mean returned. (Its noise is then identical in the three
channels, sqrt(3) sigma along the grey axis; telling the network sqrt(3) sigma instead was
measured 2-5x worse in MSE on 64×64 grey crops of `camera` and `astronaut` at sigma 0.05-0.2.)

Example:
    >>> import torch
    >>> from invkit_priors.default_prior import load_default_prior
    >>> prior = load_default_prior()
    >>> x = torch.full((1, 3, 16, 16), 0.5)
    >>> tuple(prior.denoise(x, 0.1).shape)
    (1, 3, 16, 16)
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from torch import Tensor

from invkit.params import Param
from invkit.prior import Prior

__all__ = ["DefaultPrior", "load_default_prior", "default_weights_path"]


def default_weights_path() -> Path:
    """Where the packaged weights are."""
    return Path(str(resources.files("invkit_priors") / "weights" / "default.safetensors"))


class DefaultPrior(Prior):
    """The built-in natural-image prior: RGB diffusion model, grayscale through the grey axis.

    Args:
        rgb: The RGB prior (a :class:`~invkit_priors.vp.VPDiffusionPrior`).
    """

    name = "default"

    def __init__(self, rgb: Prior) -> None:
        self.rgb = rgb
        self.sigma_grid = rgb.sigma_grid
        self.data_center = rgb.data_center
        self.channels = None  # 1 or 3
        self.image_size = None  # any size divisible by 8
        self.size_multiple = 8

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
        return self.rgb.denoise(x.expand(-1, 3, -1, -1), sigma).mean(dim=1, keepdim=True)


def load_default_prior(device: str = "cpu", half: bool = False) -> DefaultPrior:
    """Load the packaged default prior.

    Args:
        device: ``"cpu"``, ``"cuda"``, or ``"auto"`` (CUDA when available).
        half: Run the network in float16 (GPU).
    """
    from .loaders import load_checkpoint_prior

    path = default_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"the default prior's weights are missing from the installation ({path}); reinstall invkit")
    rgb = load_checkpoint_prior(path, half=half, device=device)
    # NHWC convolves faster on the CPU (1.16 s vs 1.41 s at 256², benchmarks/prior_speed.py); its
    # GroupNorm error was measured small for these weights (see the notes of invkit_priors.vp).
    rgb.set_channels_last(next(rgb.model.parameters()).device.type == "cpu")
    return DefaultPrior(rgb)


def default(device: str = "cpu", half: bool = False) -> DefaultPrior:
    """invkit's built-in natural-image diffusion prior (small ADM trained here; see docs/default_prior.md)."""
    return load_default_prior(device=device, half=half)


default.name = "default"  # type: ignore[attr-defined]
default.params = (  # type: ignore[attr-defined]
    Param("device", str, "cpu", "where the network runs: cpu, cuda or auto"),
    Param("half", bool, False, "float16 inference (GPU)"),
)
