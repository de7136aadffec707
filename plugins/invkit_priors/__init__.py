"""invkit's built-in priors, one subpackage per concept (each imports only those below it).

* :mod:`invkit_priors.plugin`: the entry point (group ``invkit``, name ``priors``): registers the
  priors and the ``invkit prior`` command.
* :mod:`invkit_priors.default`: the built-in natural-image prior and its packaged weights.
* :mod:`invkit_priors.checkpoints`: checkpoint files (safe reading, the one writer, flags,
  schedules, invkit's own prior format, diffusers folders), the public catalogue and downloads.
* :mod:`invkit_priors.adapters`: a VP diffusion network as ``denoise(x, sigma)``; a diffusers UNet
  as such a network.
* :mod:`invkit_priors.networks`: the ADM and DDPM U-Nets (pure ``nn.Module`` s and configs).
* :mod:`invkit_priors.analytic`: Gaussian and Gaussian-mixture priors with exact denoisers (apart
  from the diffusion-network stack).

The layering is an import-linter contract in pyproject.toml (tests/test_layers.py).
"""
