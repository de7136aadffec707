"""Input handling shared by the UNet implementations (ADM and DDPM): their configuration and their tensors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import Tensor

__all__ = ["check_unet_inputs", "network_config"]

C = TypeVar("C")


def network_config(config: Any, cls: type[C], parse: Callable[[Any], C]) -> C:
    """The network's own copy of its configuration argument.

    Args:
        config: ``None`` (the defaults), an instance of ``cls`` (copied, so the network never
            shares it), or anything ``parse`` reads (a mapping of flags or config keys).
        cls: The configuration dataclass (:class:`~invkit_priors.networks.adm.ADMConfig`,
            :class:`~invkit_priors.networks.ddpm.DDPMConfig`).
        parse: How ``cls`` reads other forms (``ADMConfig.from_flags``, ``DDPMConfig.from_dict``).

    Raises:
        ValueError: Whatever ``parse`` raises for a configuration it does not accept.
        TypeError: Text: the networks take configurations, not text
            (:func:`invkit_priors.checkpoints.flags.parse_flags` reads every text form).
    """
    if isinstance(config, str):
        raise TypeError(
            f"{cls.__name__}: got text {config[:40]!r}; read it with invkit_priors.checkpoints.flags.parse_flags(text, arch) first"
        )
    if config is None:
        config = cls()
    elif not isinstance(config, cls):
        config = parse(config)
    return dataclasses.replace(config)  # type: ignore[type-var]


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
