"""Input checks shared by the UNet implementations (ADM and DDPM)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["check_unet_inputs"]


def check_unet_inputs(model: str, x: Tensor, timesteps: Any, in_channels: int, multiple: int, levels: int) -> Tensor:
    """Validate ``x`` (B, C, H, W) and return the timesteps as a ``(B,)`` tensor on ``x``'s device.

    Raises:
        ValueError: Wrong channel count, H or W not divisible by ``multiple``, or timesteps that
            are neither a scalar nor one per batch element.
    """
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{model} expects (B, {in_channels}, H, W), got {tuple(x.shape)}")
    b, _, height, width = x.shape
    if height % multiple or width % multiple:
        raise ValueError(f"{model} with {levels} levels needs H and W divisible by {multiple}, got {height}x{width}; pad or crop the image")
    t = torch.as_tensor(timesteps, device=x.device)
    if t.ndim == 0:
        t = t.expand(b)
    if t.shape != (b,):
        raise ValueError(f"timesteps must be a scalar or have shape ({b},), got {tuple(t.shape)}")
    return t
