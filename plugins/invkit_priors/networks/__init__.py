"""Diffusion networks as pure ``nn.Module`` s with their configuration dataclasses.

* :mod:`~invkit_priors.networks.adm`: the ADM U-Net (guided-diffusion), :class:`ADMConfig` and its presets.
* :mod:`~invkit_priors.networks.ddpm`: the DDPM U-Net (Ho et al.; DDIM/DDRM port), :class:`DDPMConfig` and its presets.
* :mod:`~invkit_priors.networks.inputs`: the input checks both share.

Nothing here reads files or parses text flags (that is :mod:`invkit_priors.checkpoints`).
"""

from .adm import ADM_PRESETS, ADMConfig, ADMUNet
from .ddpm import DDPM_PRESETS, DDPMConfig, DDPMUNet

__all__ = ["ADMConfig", "ADMUNet", "ADM_PRESETS", "DDPMConfig", "DDPMUNet", "DDPM_PRESETS"]
