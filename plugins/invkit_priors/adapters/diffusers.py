"""Adapter from a diffusers ``UNet2DModel`` to the ``model(x, t, y)`` call of :class:`~invkit_priors.adapters.vp.VPDiffusionPrior`.

The folder reader is :mod:`invkit_priors.checkpoints.diffusers_folder` (optional extra
``invkit[diffusers]``).
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["DiffusersUNet"]


class DiffusersUNet(nn.Module):
    """``model(x, t, y=None)`` around a diffusers ``UNet2DModel`` (returns the ``.sample`` tensor)."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.unet = unet
        cfg = unet.config
        self.in_channels = int(cfg.in_channels)
        self.out_channels = int(cfg.out_channels)
        size = cfg.sample_size
        self.image_size = tuple(size) if isinstance(size, (list, tuple)) else size

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """The UNet's output for inputs ``x``, timesteps ``t`` and class labels ``y``."""
        return self.unet(x, t, class_labels=y, return_dict=False)[0]
