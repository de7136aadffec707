"""Adapters from diffusion networks to invkit's :class:`~invkit.prior.Prior` (``denoise(x, sigma)`` in [0, 1] units).

* :mod:`~invkit_priors.adapters.vp`: any variance-preserving (DDPM/ADM) network.
* :mod:`~invkit_priors.adapters.diffusers`: a diffusers ``UNet2DModel`` called as ``model(x, t, y)``.
"""
