"""A plugin module that adds a prior: an isotropic Gaussian N(c, v I) with its exact denoiser.

Shown in docs/guide/plugins.rst and run by tests/test_examples.py. A prior is an MMSE
denoiser in [0, 1] units: given ``x = x0 + sigma * n`` it returns its estimate of ``x0``. For
``x0 ~ N(c, v I)`` that estimate is exact and linear: ``c + v / (v + sigma²) (x - c)``.
"""

from typing import Annotated

import torch

from invkit import Arg, Prior, hookimpl, sigma_rows


class Shrink(Prior):
    """Isotropic Gaussian prior N(center, variance I): its denoiser shrinks towards center."""

    name = "acme_shrink"

    def __init__(self, variance, center):
        self.variance = float(variance)
        self.data_center = float(center)  # solvers start unobserved coefficients here

    def denoise(self, x, sigma):
        # sigma: a float, or one level per batch row; sigma_rows reads both as a (B,) tensor
        s2 = sigma_rows(sigma, x.shape[0]).to(device=x.device, dtype=x.dtype).reshape(-1, 1, 1, 1) ** 2
        gain = self.variance / (self.variance + s2)
        return self.data_center + gain * (x - self.data_center)


def shrink(
    variance: Annotated[float, Arg("prior variance per pixel, [0, 1] units squared", min=0.0, min_inclusive=False)] = 0.05,
    center: Annotated[float, Arg("prior mean (grey level), [0, 1] units", min=0.0, max=1.0)] = 0.5,
) -> Shrink:
    """Isotropic Gaussian prior N(center, variance I) with its exact denoiser (a linear shrinkage)."""
    return Shrink(variance, center)


@hookimpl
def invkit_register_priors(register):
    # the factory's signature is the --prior-arg schema; it is called only when the prior is used
    register("acme_shrink", shrink)
