"""invkit's built-in priors: analytic priors with closed-form MMSE denoisers (and, later,
checkpoint adapters and the default natural-image prior), plus the ``exact`` solver."""
