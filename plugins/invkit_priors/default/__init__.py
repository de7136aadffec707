"""invkit's built-in natural-image prior (a ``small`` ADM trained here) and its packaged weights.

:mod:`~invkit_priors.default.prior` holds :class:`~invkit_priors.default.prior.DefaultPrior`, :func:`~invkit_priors.default.prior.load_default_prior` and the
registered factory ``default``; ``weights/default.safetensors`` the weights (an invkit prior
file, :mod:`invkit_priors.checkpoints.invkit_format`). The model card is docs/default_prior.md.
"""
