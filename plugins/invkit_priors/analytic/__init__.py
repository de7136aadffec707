"""Analytic priors with exact denoisers: Gaussians and Gaussian mixtures, and their orthogonal bases.

* :mod:`~invkit_priors.analytic.gaussian`: :class:`GaussianPrior`, :class:`GaussianMixturePrior`
  and the registered factories ``gaussian`` and ``gaussian_mixture``.
* :mod:`~invkit_priors.analytic.bases`: identity, DCT and explicit orthogonal bases.
"""

from .bases import DCTBasis, IdentityBasis, MatrixBasis, OrthogonalBasis
from .gaussian import GaussianMixturePrior, GaussianPrior, PowerLawSpectrum, gaussian, gaussian_mixture

__all__ = [
    "GaussianPrior", "GaussianMixturePrior", "PowerLawSpectrum", "gaussian", "gaussian_mixture",
    "OrthogonalBasis", "IdentityBasis", "DCTBasis", "MatrixBasis",
]
