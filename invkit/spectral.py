"""The spectral set-up that SVD-based samplers (DDRM, DDNM, ΠGDM) share.

For ``y = H x + σ_y n`` with ``H = U Σ Vᵀ`` (``k = min(m, n)`` singular values ``s_i``), the
measurement seen in the spectral space of ``x̄ = Vᵀ x`` is

* ``ȳ_i = (Uᵀ y)_i / s_i`` for an **observed** coefficient (``s_i > svd_rtol · max(s)``),
  with noise std ``σ_y / s_i``;
* nothing for an unobserved one (``s_i`` zero, below the threshold, or ``i ≥ k``): ``ȳ_i = 0``
  and noise std ``+inf``.

The threshold keeps float32 rounding from being magnified: an exact blur has singular values
near 1e-7, whose ``ȳ_i`` would multiply the rounding of ``y`` by 1e7 (DDRM's default
``svd_rtol = 1e-3`` bounds the magnification by ~1e3).

Example:
    >>> import torch, invkit
    >>> op = invkit.get_registry().build_operator("inpainting", (1, 2, 2), ["fraction=0.5", "seed=0"])
    >>> setup = spectral_setup(invkit.Problem(op, torch.ones(1, 2), invkit.GaussianNoise(0.1)))
    >>> int(setup.observed.sum()), setup.ybar.shape, round(float(setup.nstd[setup.observed][0]), 6)
    (2, torch.Size([1, 4]), 0.1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .dense import DEFAULT_MAX_SIZE
from .forward import SVDOperator
from .problem import Problem

__all__ = ["SpectralSetup", "spectral_setup"]


@dataclass
class SpectralSetup:
    """A problem seen in the spectral space of its operator (on ``y``'s device and dtype).

    Attributes:
        op: The SVD surface used (the operator's own, or the dense fallback).
        s: ``(n,)`` singular values padded with zeros beyond ``k``.
        observed: ``(n,)`` bool: ``s_i > svd_rtol · max(s)``.
        ybar: ``(B, n)`` ``ȳ_i = (Uᵀy)_i / s_i`` where observed, 0 elsewhere.
        nstd: ``(n,)`` noise std of ``ȳ_i``: ``σ_y / s_i`` where observed, ``+inf`` elsewhere.
        sigma_y: The measurement noise std in [0, 1] pixel units.
    """

    op: SVDOperator
    s: Tensor
    observed: Tensor
    ybar: Tensor
    nstd: Tensor
    sigma_y: float


def spectral_setup(problem: Problem, *, svd_rtol: float = 1e-3, max_dense: int = DEFAULT_MAX_SIZE) -> SpectralSetup:
    """``ȳ``, ``σ_y / s_i`` and the observed mask of ``problem`` (see the module docstring).

    Args:
        problem: A linear problem with Gaussian noise.
        svd_rtol: Relative singular-value threshold below which a coefficient is unobserved.
        max_dense: Largest ``max(m, n)`` for the dense SVD fallback of operators without an SVD.

    Raises:
        ValueError: No SVD (not linear, or too large for the dense fallback), or a noise model
            without a standard deviation. (Whether the noise is Gaussian is the solver's
            requirement, checked by :meth:`invkit.Solver.check` before this is called.)
    """
    op = problem.require_svd(max_dense)
    y = problem.y
    sigma_y = problem.sigma_y
    n = op.in_numel
    s = op.s_like(y)
    k = s.shape[0]
    s_full = y.new_zeros(n)
    s_full[:k] = s
    s_max = float(s.max()) if k else 0.0
    observed = s_full > svd_rtol * s_max
    if s_max == 0.0:
        observed = torch.zeros_like(observed)
    safe_s = torch.where(observed, s_full, torch.ones_like(s_full))
    ybar = y.new_zeros(y.shape[0], n)
    ybar[:, :k] = op.Ut(y)[:, :k]
    ybar = torch.where(observed, ybar / safe_s, torch.zeros_like(ybar))
    nstd = torch.where(observed, sigma_y / safe_s, torch.full_like(s_full, math.inf))
    return SpectralSetup(op=op, s=s_full, observed=observed, ybar=ybar, nstd=nstd, sigma_y=sigma_y)
