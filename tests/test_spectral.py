"""The shared spectral set-up (ȳ, σ_y/s_i, observed mask) against the dense SVD."""

from __future__ import annotations

import math

import numpy as np
import torch

import invkit
from invkit import DenseSVD, GaussianNoise, Problem, spectral_setup


def test_spectral_setup_matches_the_dense_svd():
    reg = invkit.get_registry()
    op = reg.build_operator("gaussian_blur", (1, 10, 11), ["sigma=1.0"])
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, *op.out_shape, generator=g, dtype=torch.float64)
    setup = spectral_setup(Problem(op, y, GaussianNoise(0.03)), svd_rtol=1e-3)
    dense = DenseSVD(op)
    # per coefficient, (s_i, ȳ_i) of the efficient SVD equal the dense ones up to sign and order
    s = setup.s.numpy()
    assert np.allclose(np.sort(s)[::-1], dense.s, atol=1e-12)
    keep = s > 1e-3 * s.max()
    assert np.array_equal(setup.observed.numpy(), keep)
    assert np.allclose(setup.nstd.numpy()[keep], 0.03 / s[keep], rtol=1e-12)
    assert np.all(np.isinf(setup.nstd.numpy()[~keep])) and np.all(setup.ybar.numpy()[:, ~keep] == 0)
    # ȳ is Σ⁺ Uᵀ y on the observed coefficients: V ȳ = H⁺ y with the same cut-off
    pinv = op.pinv(y, rcond=1e-3)
    assert torch.allclose(op.V(setup.ybar), pinv, atol=1e-10)
    assert setup.sigma_y == 0.03


def test_no_observed_coefficients_when_all_singular_values_vanish():
    class Zero(invkit.LinearOperator):
        @property
        def out_shape(self):
            return self.in_shape

        def forward(self, x):
            return 0 * x

        def adjoint(self, y):
            return 0 * y

    setup = spectral_setup(Problem(Zero((1, 2, 2)), torch.ones(1, 1, 2, 2, dtype=torch.float64)))
    assert not bool(setup.observed.any()) and math.isinf(float(setup.nstd.min()))
